//! `herald serve` as a user runs it: the binary on a temp data directory,
//! a client publishing through it, a clean stop on SIGTERM, and the data
//! still there when it is served again.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

use herald::Bus;

/// Starts `herald serve` on a free loopback port; returns it and its URL.
fn serve(data: &std::path::Path) -> (Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (child, url)
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    child.wait().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_takes_publishes_stops_on_sigterm_and_keeps_the_data() {
    let data = tempfile::tempdir().unwrap();
    let (mut server, url) = serve(data.path());
    let bus = Bus::connect(url.as_str()).await.unwrap();
    for i in 0..10 {
        bus.publish("orders.created", format!("order {i}")).await.unwrap();
    }
    // An open session does not hold the server up: SIGTERM closes it.
    let status = terminate(&mut server);
    assert!(status.success(), "{status}");
    assert!(bus.publish("orders.created", "after").await.is_err());

    let (mut again, url) = serve(data.path());
    let bus = Bus::connect(url.as_str()).await.unwrap();
    let info = bus.stream_info("orders").await.unwrap();
    assert_eq!((info.state.messages, info.state.last_seq), (10, 10));
    assert!(terminate(&mut again).success());
}

#[test]
fn serve_refuses_a_public_address_without_tokens() {
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("refusing to listen on 0.0.0.0:0"), "{stderr}");
}
