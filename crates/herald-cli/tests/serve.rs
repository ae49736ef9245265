//! `herald serve` as a user runs it: the binary on a temp data directory,
//! a client publishing through it, a clean stop on SIGTERM, and the data
//! still there when it is served again.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, Write};
use std::time::Duration;

use herald::Bus;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_publishes_stops_on_sigterm_and_keeps_the_data() {
    let data = tempfile::tempdir().unwrap();
    let (mut server, url) = common::serve(data.path(), [] as [&str; 0]);
    // Calls give up on a stopped server after a second, not the default 30 s.
    let options = herald::ConnectOptions::new(url.as_str()).reconnect_wait(Duration::from_secs(1));
    let bus = Bus::connect_with(options).await.unwrap();
    for i in 0..10 {
        bus.publish("orders.created", format!("order {i}")).await.unwrap();
    }
    // An open session does not hold the server up: SIGTERM closes it.
    let status = common::terminate(&mut server);
    assert!(status.success(), "{status}");
    let stopped = std::time::Instant::now();
    assert!(bus.publish("orders.created", "after").await.is_err());
    assert!(
        stopped.elapsed() < Duration::from_secs(20),
        "the call waited {:?}, not the second it was given",
        stopped.elapsed()
    );

    let (mut again, url) = common::serve(data.path(), [] as [&str; 0]);
    let bus = Bus::connect(url.as_str()).await.unwrap();
    let info = bus.stream_info("orders").await.unwrap();
    assert_eq!((info.state.messages, info.state.last_seq), (10, 10));
    assert!(common::terminate(&mut again).success());
}

#[test]
fn serve_refuses_a_public_address_without_tokens() {
    let data = tempfile::tempdir().unwrap();
    let output = common::herald()
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0"), "{stderr}");
}

fn tls_fixture(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../herald-server/tests/tls")
        .join(name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_with_tokens_and_tls_serves_a_public_address() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "hrd_config-test-secret";
    let config = format!(
        "data_dir = \"data\"\nlisten = \"0.0.0.0:0\"\n\n[limits]\nmax_payload = 64\nmax_in_flight = 64\noutbound_bytes = 1048576\n\n\
         [tls]\ncert = \"{}\"\nkey = \"{}\"\n\n\
         [[tokens]]\nname = \"app\"\nsha256 = \"{}\"\n\
         publish = {{ allow = [\"orders.>\"] }}\nsubscribe = {{ allow = [\"orders.>\"] }}\n",
        tls_fixture("server.pem").display(),
        tls_fixture("server.key").display(),
        herald_server::token_hash(secret),
    );
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, config).unwrap();
    let mut command = common::herald();
    command.arg("serve").arg("--config").arg(&file);
    let (mut server, url) = common::serve_with(command);
    assert!(url.starts_with("wss://0.0.0.0:"), "{url}");
    let port = url.rsplit(':').next().unwrap().split('/').next().unwrap().to_owned();
    let url = format!("wss://127.0.0.1:{port}/v1/ws");
    let options = || herald::ConnectOptions::new(url.as_str()).ca_file(tls_fixture("ca.pem"));

    let refused = Bus::connect_with(options()).await.unwrap_err();
    assert_eq!(refused.kind(), herald::ErrorKind::PermissionDenied, "{refused}");
    let bus = Bus::connect_with(options().token(secret)).await.unwrap();
    bus.publish("orders.created", "within the file's 64-byte limit")
        .await
        .unwrap();
    let large = bus.publish("orders.created", vec![b'x'; 65]).await.unwrap_err();
    assert_eq!(large.kind(), herald::ErrorKind::PayloadTooLarge, "{large}");
    let denied = bus.publish("payments.sent", "x").await.unwrap_err();
    assert_eq!(denied.kind(), herald::ErrorKind::PermissionDenied, "{denied}");
    assert!(common::terminate(&mut server).success());
    // The data directory is relative to the config file.
    assert!(dir.path().join("data").join(herald::DATA_FILE).exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flags_beat_the_environment_which_beats_the_config_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "[limits]\nmax_payload = 10\n").unwrap();
    let payload_limit = async |env: Option<&str>, flag: Option<&str>| {
        let mut command = common::herald();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&file)
            .arg("--data-dir")
            .arg(dir.path().join("data"));
        if let Some(env) = env {
            command.env("HERALD_MAX_PAYLOAD", env);
        }
        if let Some(flag) = flag {
            command.args(["--max-payload", flag]);
        }
        let (mut server, url) = common::serve_with(command);
        let bus = Bus::connect(url.as_str()).await.unwrap();
        let mut limit = 0;
        for size in [10, 20, 30] {
            if bus.publish("limits.probe", vec![b'x'; size]).await.is_ok() {
                limit = size;
            }
        }
        drop(bus);
        assert!(common::terminate(&mut server).success());
        limit
    };
    assert_eq!(payload_limit(None, None).await, 10, "the file");
    assert_eq!(
        payload_limit(Some("20"), None).await,
        20,
        "the environment over the file"
    );
    assert_eq!(payload_limit(Some("20"), Some("30")).await, 30, "the flag over both");
}

/// A safety net only: how long the test waits for a line or an exit.
const PATIENCE: Duration = Duration::from_secs(10);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_interrupt_exits_at_once_and_every_acknowledged_message_is_on_disk() {
    let data = tempfile::tempdir().unwrap();
    let mut command = common::herald();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path());
    let (server, url, lines) = common::serve_watched(command);
    let bus = Bus::connect(url.as_str()).await.unwrap();
    let mut acked = Vec::new();
    for i in 0..100 {
        let payload = format!("order {i}");
        let ack = bus.publish("orders.created", payload.clone()).await.unwrap();
        acked.push((ack.seq, payload));
    }

    // An HTTP request whose body never comes holds a graceful stop: the
    // server answers `100 Continue` once a handler waits for the body.
    let addr = url.trim_start_matches("ws://").split('/').next().unwrap().to_owned();
    let mut held = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        held,
        "POST /v1/messages HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: 64\r\nExpect: 100-continue\r\n\r\n"
    )
    .unwrap();
    let mut reply = std::io::BufReader::new(held.try_clone().unwrap());
    let mut status = String::new();
    reply.read_line(&mut status).unwrap();
    assert!(status.starts_with("HTTP/1.1 100"), "{status:?}");

    common::signal(&server, "INT");
    let stopping = common::expect_line(&lines, "herald stopping", PATIENCE);
    assert!(stopping.contains("Ctrl-C again"), "{stopping}");
    common::signal(&server, "INT");
    let exiting = common::expect_line(&lines, "herald exiting now", PATIENCE);
    let status = common::exits_within(server, PATIENCE);
    assert_eq!(status.code(), Some(130), "{status} after {exiting:?}");
    drop((held, bus));

    let reopened = Bus::open(data.path()).await.unwrap();
    for (seq, payload) in acked {
        let message = reopened.get("orders", seq).await.unwrap();
        assert_eq!(message.payload, payload.as_bytes(), "seq {seq}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limits_and_timeouts_come_from_the_file_the_environment_and_flags() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("herald.toml");
    std::fs::write(
        &file,
        "[limits]\nmax_connections_per_peer = 1\nmax_header_bytes = 2048\nmax_connections_per_token = 3\n",
    )
    .unwrap();
    let mut command = common::herald();
    command
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--idle-timeout-ms",
            "300",
            "--config",
        ])
        .arg(&file)
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .env("HERALD_HEADER_READ_TIMEOUT_MS", "300");
    let (mut server, url) = common::serve_with(command);
    let addr = url.trim_start_matches("ws://").trim_end_matches("/v1/ws").to_owned();
    // Far below the defaults (10 s, 60 s): a close within it is the setting's doing.
    let within = Duration::from_secs(5);
    let closed = async |socket: &mut tokio::net::TcpStream| {
        let mut got = Vec::new();
        tokio::time::timeout(within, socket.read_to_end(&mut got))
            .await
            .expect("not closed within 5 s")
            .ok();
        got
    };

    // One connection per address (the file): a second is closed unanswered.
    let mut first = tokio::net::TcpStream::connect(&addr).await.unwrap();
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n")
        .await
        .unwrap();
    let mut answer = [0u8; 12];
    first.read_exact(&mut answer).await.unwrap();
    assert_eq!(&answer, b"HTTP/1.1 200");
    let mut second = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let _ = second.write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n").await;
    assert!(
        closed(&mut second).await.is_empty(),
        "a second connection from one address was served"
    );
    // Idle after its answer (the flag), the first is closed.
    closed(&mut first).await;
    // A connection that sends nothing is closed (the environment's header timeout).
    let mut silent = tokio::net::TcpStream::connect(&addr).await.unwrap();
    assert!(closed(&mut silent).await.is_empty());
    // A head over 2 KiB (the file) is refused with the error object.
    let mut heavy = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "GET /healthz HTTP/1.1\r\nhost: herald\r\nx-filler: {}\r\n\r\n",
        "f".repeat(3000)
    );
    heavy.write_all(head.as_bytes()).await.unwrap();
    let answer = String::from_utf8(closed(&mut heavy).await).unwrap();
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    assert!(
        answer.contains(r#""code":1006"#) && answer.contains("2048 bytes"),
        "{answer}"
    );
    assert!(common::terminate(&mut server).success());
}

/// A config file with two tokens: `app` (publish and read `orders.>`, its
/// secret returned) and `ops`; `extra` lines go before the tokens.
fn config_with_tokens(dir: &std::path::Path, extra: &str) -> (std::path::PathBuf, &'static str) {
    let secret = "hrd_log-test-secret";
    let config = format!(
        "data_dir = \"data\"\n{extra}\n\
         [[tokens]]\nname = \"app\"\nsha256 = \"{}\"\n\
         publish = {{ allow = [\"orders.>\"] }}\nsubscribe = {{ allow = [\"orders.>\"] }}\n\n\
         [[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nadmin = true\n",
        herald_server::token_hash(secret),
        herald_server::token_hash("hrd_ops-secret"),
    );
    let file = dir.join("herald.toml");
    std::fs::write(&file, config).unwrap();
    (file, secret)
}

/// Waits for the JSON log line whose `message` is `message`; it, parsed.
fn expect_log(log: &std::sync::mpsc::Receiver<String>, message: &str) -> (String, serde_json::Value) {
    let line = common::expect_line(log, &format!("\"message\":\"{message}\""), PATIENCE);
    let value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
    (line, value)
}

#[test]
fn the_json_log_gives_the_settings_and_token_names_but_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let (file, secret) = config_with_tokens(dir.path(), "");
    let mut command = common::herald();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--config"])
        .arg(&file)
        .env("HERALD_MAX_CONNECTIONS_PER_TOKEN", "4");
    let (mut server, url, log) = common::serve_logged(command);
    let (line, start) = expect_log(&log, "serving");
    let addr = url.trim_start_matches("ws://").trim_end_matches("/v1/ws");
    assert_eq!(start["level"], "INFO", "{line}");
    assert_eq!(start["listen"], addr, "{line}");
    assert_eq!(start["tokens"], 2, "{line}");
    assert_eq!(start["token_names"], "app,ops", "{line}");
    assert_eq!(start["tls"], false, "{line}");
    assert_eq!(start["auto_create_streams"], true, "{line}");
    assert_eq!(start["max_payload"], 1024 * 1024, "{line}");
    assert_eq!(start["idle_timeout_ms"], 60_000, "{line}");
    assert_eq!(start["max_header_bytes"], 16 * 1024, "{line}");
    assert_eq!(start["max_connections_per_token"], "4", "{line}");
    assert!(start["data_dir"].as_str().unwrap().ends_with("data"), "{line}");
    for secret in [secret, "hrd_ops-secret"] {
        assert!(!line.contains(secret), "a secret in the log: {line}");
        assert!(
            !line.contains(&herald_server::token_hash(secret)),
            "a hash in the log: {line}"
        );
    }
    assert!(common::terminate(&mut server).success());
    expect_log(&log, "stopping: waiting for open connections to finish");
    expect_log(&log, "stopped");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_tokens_and_actions_are_logged_as_warnings_without_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    // The format from the config file this time.
    let (file, secret) = config_with_tokens(dir.path(), "log_format = \"json\"");
    let mut command = common::herald();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file);
    let (mut server, url, log) = common::serve_logged(command);
    let options = || herald::ConnectOptions::new(url.as_str());

    let wrong = "hrd_not-a-token-of-this-server";
    let refused = Bus::connect_with(options().token(wrong)).await.unwrap_err();
    assert_eq!(refused.kind(), herald::ErrorKind::PermissionDenied, "{refused}");
    let (line, warning) = expect_log(&log, "access refused: unknown access token");
    assert_eq!(warning["level"], "WARN", "{line}");
    assert_eq!(warning["token"], "unknown", "{line}");
    assert_eq!(warning["request"], "GET /v1/ws", "{line}");
    assert!(warning["peer"].as_str().unwrap().starts_with("127.0.0.1:"), "{line}");
    assert!(!line.contains(wrong), "the presented secret in the log: {line}");

    let bus = Bus::connect_with(options().token(secret)).await.unwrap();
    let denied = bus.publish("payments.sent", "a payload").await.unwrap_err();
    assert_eq!(denied.kind(), herald::ErrorKind::PermissionDenied, "{denied}");
    let (line, warning) = expect_log(&log, "access refused: not granted");
    assert_eq!(warning["level"], "WARN", "{line}");
    assert_eq!(warning["token"], "app", "{line}");
    assert_eq!(warning["action"], "publish to `payments.sent`", "{line}");
    assert!(!line.contains(secret) && !line.contains("a payload"), "{line}");
    drop(bus);
    assert!(common::terminate(&mut server).success());
}

#[test]
fn an_invalid_log_filter_or_format_is_refused_naming_its_setting() {
    let data = tempfile::tempdir().unwrap();
    let fails = |args: &[&str], env: Option<(&str, &str)>| {
        let mut command = common::herald();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(args);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success(), "{args:?} {env:?} was taken");
        String::from_utf8(output.stderr).unwrap()
    };
    let stderr = fails(&["--log", "nonsense=="], None);
    assert!(
        stderr.contains("'--log <FILTER>'") && stderr.contains("`nonsense==` is not a log filter"),
        "{stderr}"
    );
    let stderr = fails(&[], Some(("HERALD_LOG", "nonsense==")));
    assert!(stderr.contains("`nonsense==` is not a log filter"), "{stderr}");
    let stderr = fails(&[], Some(("RUST_LOG", "nonsense==")));
    assert!(
        stderr.contains("RUST_LOG: `nonsense==` is not a log filter"),
        "{stderr}"
    );
    let stderr = fails(&["--log-format", "xml"], None);
    assert!(stderr.contains("'--log-format <FORMAT>'"), "{stderr}");
}

#[test]
fn a_limit_the_server_cannot_hold_is_refused_at_start_naming_its_setting() {
    // One past tokio's largest semaphore (usize::MAX >> 3 on a 64-bit target).
    let past = "2305843009213693952";
    let dir = tempfile::tempdir().unwrap();
    let fails = |args: &[&str], env: Option<(&str, &str)>| {
        let mut command = common::herald();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(dir.path().join("data"))
            .args(args);
        if let Some((name, value)) = env {
            command.env(name, value);
        }
        let output = command.output().unwrap();
        assert!(!output.status.success(), "{args:?} {env:?} was taken");
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        stderr
    };
    let stderr = fails(&["--max-connections", past], None);
    assert!(
        stderr.contains(&format!(
            "--max-connections (or HERALD_MAX_CONNECTIONS) is {past}; it must be from 1 to 2305843009213693951"
        )),
        "{stderr}"
    );
    let stderr = fails(&["--max-connections", "0"], None);
    assert!(
        stderr.contains("--max-connections (or HERALD_MAX_CONNECTIONS) is 0"),
        "{stderr}"
    );
    let stderr = fails(&[], Some(("HERALD_MAX_IN_FLIGHT", past)));
    assert!(stderr.contains("HERALD_MAX_IN_FLIGHT) is"), "{stderr}");
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, format!("[limits]\noutbound_buffer = {past}\n")).unwrap();
    let stderr = fails(&["--config", file.to_str().unwrap()], None);
    assert!(
        stderr.contains(&format!("`outbound_buffer` under [limits] in {}", file.display())),
        "{stderr}"
    );
    // Nothing was made.
    assert!(!dir.path().join("data").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_runs_and_purges_are_logged_with_what_they_removed() {
    let dir = tempfile::tempdir().unwrap();
    let mut command = common::herald();
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "json", "--data-dir"])
        .arg(dir.path().join("data"));
    let (mut server, url, log) = common::serve_logged(command);
    let bus = Bus::connect(url.as_str()).await.unwrap();
    bus.create_stream(herald::StreamConfig::new("sessions").unwrap())
        .await
        .unwrap();
    let brief = herald::OutgoingMessage::new(herald::Subject::new("sessions.a").unwrap(), "secret payload")
        .ttl(Duration::from_millis(1));
    bus.publish_message(brief).await.unwrap();
    // The maintenance timer (every second) deletes it and says so.
    let (line, run) = expect_log(&log, "retention removed messages whose TTL passed");
    assert_eq!(run["level"], "INFO", "{line}");
    assert_eq!(
        (&run["stream"], &run["removed"], &run["left"]),
        (&"sessions".into(), &1.into(), &0.into()),
        "{line}"
    );
    assert!(!line.contains("secret payload"), "a payload in the log: {line}");

    for i in 0..3 {
        bus.publish("sessions.b", format!("kept {i}")).await.unwrap();
    }
    assert_eq!(bus.purge_stream("sessions", herald::Purge::all()).await.unwrap(), 3);
    let (line, purge) = expect_log(&log, "stream purged");
    assert_eq!(
        (&purge["stream"], &purge["removed"]),
        (&"sessions".into(), &3.into()),
        "{line}"
    );
    drop(bus);
    assert!(common::terminate(&mut server).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_data_file_is_refused_at_start_and_served_without_the_check_to_read_what_is_intact() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, url) = common::serve(&data, std::iter::empty::<&str>());
    let bus = Bus::connect(url.as_str()).await.unwrap();
    bus.create_stream(herald::StreamConfig::new("orders").unwrap())
        .await
        .unwrap();
    for i in 1..=20 {
        bus.publish("orders.new", format!("order {i:03} for the damage test"))
            .await
            .unwrap();
    }
    drop(bus);
    assert!(common::terminate(&mut server).success());

    let file = data.join("herald.redb");
    let mut bytes = std::fs::read(&file).unwrap();
    // Every copy: pages of earlier commits may still hold one.
    let needle = b"order 007 for the damage test";
    let copies: Vec<usize> = (0..bytes.len() - needle.len())
        .filter(|&at| &bytes[at..at + needle.len()] == needle)
        .collect();
    assert!(!copies.is_empty());
    for at in copies {
        bytes[at + 10] ^= 0x01;
    }
    std::fs::write(&file, bytes).unwrap();

    // Bounded: were the damage missed, the server would serve for ever.
    let mut refused = common::herald()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut pipe = refused.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut pipe, &mut text).unwrap();
        text
    });
    assert!(!common::exits_within(refused, PATIENCE).success());
    let stderr = reader.join().unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("the data file is damaged") && stderr.contains("--no-verify-on-open"),
        "{stderr}"
    );

    let (mut server, url) = common::serve(&data, ["--no-verify-on-open"]);
    let bus = Bus::connect(url.as_str()).await.unwrap();
    let refused = bus.get("orders", 7).await.unwrap_err();
    assert_eq!(refused.kind(), herald::ErrorKind::Storage, "{refused}");
    let eighth = bus.get("orders", 8).await.unwrap();
    assert_eq!(&eighth.payload[..], b"order 008 for the damage test");
    drop(bus);
    assert!(common::terminate(&mut server).success());
}
