//! Connections that cannot exhaust the server: a cap on all of them (and
//! per peer address), and timeouts for a request that never completes and
//! for a connection that says nothing. Real sockets on 127.0.0.1 with short
//! timeouts; every wait is bounded.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use herald_server::Limits;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The safety net: far beyond any timeout these tests configure.
const PATIENCE: Duration = Duration::from_secs(10);

async fn server(limits: Limits) -> SocketAddr {
    common::start(
        herald_server::Server::new(herald::Bus::memory().unwrap())
            .limits(limits)
            .unwrap(),
    )
    .await
}

/// Reads until the server closes the connection; what it sent, and when it closed.
async fn until_closed(socket: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    tokio::time::timeout(PATIENCE, socket.read_to_end(&mut got))
        .await
        .expect("the server never closed the connection")
        .ok();
    (got, Instant::now())
}

/// One keep-alive request on `socket`; the response's status line and body.
async fn keep_alive_get(socket: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: herald\r\n\r\n");
    socket.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    // The answers here are small: read until the headers and a body of
    // the declared length are in.
    loop {
        let n = tokio::time::timeout(PATIENCE, socket.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed while answering: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(|v| v.trim().parse().unwrap())
                })
                .unwrap_or(0);
            if body.len() >= length {
                return text;
            }
        }
    }
}

async fn metric(addr: SocketAddr, name: &str) -> u64 {
    let text = common::get(addr, "/metrics", &[]).await.text();
    let line = text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap();
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_half_sent_request_and_a_silent_connection_are_closed_after_the_header_timeout() {
    let timeout = Duration::from_millis(300);
    let addr = server(Limits::default().header_read_timeout(timeout)).await;
    let opened = Instant::now();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /healthz HTTP/1.1\r\nhost: her").await.unwrap();
    for socket in [&mut silent, &mut half] {
        let (got, closed) = until_closed(socket).await;
        assert!(got.is_empty(), "answered: {}", String::from_utf8_lossy(&got));
        assert!(closed - opened >= timeout, "closed before its timeout");
    }
    assert_eq!(metric(addr, "herald_connections_timed_out_total").await, 2);
}

#[tokio::test]
async fn a_keep_alive_connection_idle_past_the_idle_timeout_is_closed_and_a_long_poll_is_not() {
    // Idle is timed apart from headers: a connection between requests
    // outlives the (shorter) header timeout.
    let idle = Duration::from_millis(600);
    let limits = Limits::default()
        .idle_timeout(idle)
        .header_read_timeout(Duration::from_millis(150));
    let addr = server(limits).await;
    let mut socket = TcpStream::connect(addr).await.unwrap();
    assert!(
        keep_alive_get(&mut socket, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let answered = Instant::now();
    let (_, closed) = until_closed(&mut socket).await;
    assert!(closed - answered >= idle, "closed before the idle timeout");

    // A request in hand is not idle, however long it waits.
    let bus_stream = serde_json::json!({"name": "jobs", "subjects": ["jobs.>"]});
    assert_eq!(
        common::send_json(addr, "POST", "/v1/streams", &[], &bus_stream)
            .await
            .status,
        201
    );
    let consumer = serde_json::json!({"name": "w"});
    assert_eq!(
        common::send_json(addr, "POST", "/v1/streams/jobs/consumers", &[], &consumer)
            .await
            .status,
        201
    );
    let poll = serde_json::json!({"member": "m", "max": 1, "wait_ms": 1000});
    let started = Instant::now();
    let answer = common::send_json(addr, "POST", "/v1/streams/jobs/consumers/w/fetch", &[], &poll).await;
    assert_eq!((answer.status, answer.text()), (200, "[]".to_owned()));
    assert!(started.elapsed() >= Duration::from_millis(1000));
}

#[tokio::test]
async fn a_request_whose_body_stops_arriving_is_closed_after_the_idle_timeout() {
    let idle = Duration::from_millis(300);
    let addr = server(Limits::default().idle_timeout(idle)).await;
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let head = "POST /v1/messages HTTP/1.1\r\nhost: herald\r\ncontent-length: 100\r\n\r\n{\"subject\"";
    stalled.write_all(head.as_bytes()).await.unwrap();
    let sent = Instant::now();
    let (got, closed) = until_closed(&mut stalled).await;
    assert!(got.is_empty(), "answered: {}", String::from_utf8_lossy(&got));
    assert!(closed - sent >= idle, "closed before the idle timeout");
    assert_eq!(metric(addr, "herald_connections_timed_out_total").await, 1);
    // A body that arrives whole is read as usual.
    let stream = serde_json::json!({"name": "q", "subjects": ["q.>"]});
    let created = common::send_json(addr, "POST", "/v1/streams", &[], &stream).await;
    assert_eq!(created.status, 201, "{}", created.text());
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_while_open_ones_are_served() {
    let addr = server(Limits::default().max_connections(3)).await;
    let mut kept = Vec::new();
    for _ in 0..3 {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        assert!(
            keep_alive_get(&mut socket, "/healthz")
                .await
                .starts_with("HTTP/1.1 200")
        );
        kept.push(socket);
    }
    // Refused: closed at once, nothing read from it, nothing answered.
    for _ in 0..5 {
        let mut refused = TcpStream::connect(addr).await.unwrap();
        let _ = refused
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n")
            .await;
        let (got, _) = until_closed(&mut refused).await;
        assert!(got.is_empty(), "a connection past the cap was served");
    }
    // The connections already open are still served, and the refusals counted.
    let metrics = keep_alive_get(&mut kept[0], "/metrics").await;
    assert!(metrics.contains("herald_connections_refused_total 5"), "{metrics}");
    assert!(
        keep_alive_get(&mut kept[1], "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    // A closed connection gives its place back.
    drop(kept.pop());
    tokio::time::timeout(PATIENCE, async {
        loop {
            let mut socket = TcpStream::connect(addr).await.unwrap();
            let _ = socket
                .write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\nconnection: close\r\n\r\n")
                .await;
            let (got, _) = until_closed(&mut socket).await;
            if got.starts_with(b"HTTP/1.1 200") {
                return;
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn one_peer_address_holds_at_most_its_share() {
    let limits = Limits::default().max_connections_per_peer(NonZeroUsize::new(2));
    let addr = server(limits).await;
    let mut first = TcpStream::connect(addr).await.unwrap();
    let mut second = TcpStream::connect(addr).await.unwrap();
    assert!(keep_alive_get(&mut first, "/healthz").await.starts_with("HTTP/1.1 200"));
    assert!(
        keep_alive_get(&mut second, "/healthz")
            .await
            .starts_with("HTTP/1.1 200")
    );
    let mut third = TcpStream::connect(addr).await.unwrap();
    let _ = third.write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n").await;
    let (got, _) = until_closed(&mut third).await;
    assert!(got.is_empty(), "a third connection from one address was served");
}

#[tokio::test]
async fn a_request_stalled_mid_body_does_not_hold_a_stopping_server() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = herald_server::Server::new(herald::Bus::memory().unwrap());
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    // Headers promising a body that never comes: the request is in hand.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    let head = "POST /v1/messages HTTP/1.1\r\nhost: herald\r\ncontent-length: 100\r\nexpect: 100-continue\r\n\r\n";
    stalled.write_all(head.as_bytes()).await.unwrap();
    let mut go_on = [0u8; 25];
    stalled.read_exact(&mut go_on).await.unwrap();
    assert!(
        go_on.starts_with(b"HTTP/1.1 100"),
        "{}",
        String::from_utf8_lossy(&go_on)
    );
    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, serving).await.unwrap().unwrap().unwrap();
}

#[tokio::test]
async fn a_head_over_the_limit_and_one_that_is_not_http_are_answered_with_the_error_object() {
    let addr = server(Limits::default().max_header_bytes(4096)).await;
    let send = async |bytes: Vec<u8>| {
        let mut socket = TcpStream::connect(addr).await.unwrap();
        socket.write_all(&bytes).await.unwrap();
        let (got, _) = until_closed(&mut socket).await;
        String::from_utf8(got).unwrap()
    };
    let head = |filler: usize| {
        format!(
            "GET /healthz HTTP/1.1\r\nhost: herald\r\nconnection: close\r\nx-filler: {}\r\n\r\n",
            "f".repeat(filler)
        )
        .into_bytes()
    };
    // Just under the limit: served.
    assert!(send(head(3900)).await.starts_with("HTTP/1.1 200"));
    let cases = [
        (head(5000), "431", 1006, "4096 bytes"),
        (b"GARBAGE\r\n\r\n".to_vec(), "400", 1004, "not valid HTTP/1.1"),
        (
            b"POST /v1/messages HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\n".to_vec(),
            "400",
            1004,
            "not valid HTTP/1.1",
        ),
    ];
    for (bytes, status, code, said) in cases {
        let answer = send(bytes).await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with(&format!("HTTP/1.1 {status} ")), "{answer}");
        assert!(head.contains("content-type: application/json"), "{answer}");
        let error: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(error["code"], code, "{answer}");
        assert!(error["message"].as_str().unwrap().contains(said), "{answer}");
    }
    // The server goes on serving.
    assert_eq!(common::get(addr, "/healthz", &[]).await.status, 200);
}

/// Opens a WebSocket session with `token`; the refusal's status and body when refused.
async fn session(addr: SocketAddr, token: &str) -> Result<common::Socket, (u16, serde_json::Value)> {
    use tokio_tungstenite::tungstenite::{Error, client::IntoClientRequest};
    let mut request = format!("ws://{addr}/v1/ws").into_client_request().unwrap();
    let bearer = format!("Bearer {token}");
    request.headers_mut().insert("authorization", bearer.parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(Error::Http(response)) => {
            let body = response.body().clone().unwrap_or_default();
            Err((response.status().as_u16(), serde_json::from_slice(&body).unwrap()))
        }
        Err(err) => panic!("{err}"),
    }
}

#[tokio::test]
async fn one_token_holds_at_most_its_share_of_sessions_and_tails() {
    use herald_server::{Access, Token};
    let access = Access::Tokens(vec![
        Token::new("a", "a-secret").admin(),
        Token::new("b", "b-secret").admin(),
    ]);
    let limits = Limits::default().max_connections_per_token(NonZeroUsize::new(2));
    let server = herald_server::Server::new(herald::Bus::memory().unwrap())
        .access(access)
        .limits(limits)
        .unwrap();
    let addr = common::start(server).await;
    let tail = common::events(addr, "/v1/tail?pattern=a.%3E", &[("authorization", "Bearer a-secret")]).await;
    assert_eq!(tail.status, 200);
    let _first = session(addr, "a-secret").await.unwrap();
    // Token `a` holds its two places: a third session and a second tail are refused.
    let (status, error) = session(addr, "a-secret").await.err().unwrap();
    assert_eq!((status, &error["code"]), (429, &serde_json::json!(1004)), "{error}");
    assert!(
        error["message"].as_str().unwrap().contains("max_connections_per_token"),
        "{error}"
    );
    let refused = common::events(addr, "/v1/tail?pattern=a.%3E", &[("authorization", "Bearer a-secret")]).await;
    assert_eq!((refused.status, refused.json()["code"].as_u64()), (429, Some(1004)));
    // Another token is not held back, and plain requests take no place.
    let _other = session(addr, "b-secret").await.unwrap();
    let streams = common::get(addr, "/v1/streams", &[("authorization", "Bearer a-secret")]).await;
    assert_eq!(streams.status, 200);
    // A tail that ends gives its place back.
    drop(tail);
    tokio::time::timeout(PATIENCE, async { while session(addr, "a-secret").await.is_err() {} })
        .await
        .expect("the tail's place given back");
}

#[tokio::test]
async fn timeouts_too_long_for_the_clock_never_fire_and_never_break_a_connection() {
    let never = Limits::default()
        .header_read_timeout(Duration::MAX)
        .idle_timeout(Duration::MAX);
    let addr = server(never).await;
    let mut socket = TcpStream::connect(addr).await.unwrap();
    // Two requests on one connection: its first request (the header
    // timeout) and the wait between them (the idle timeout).
    for _ in 0..2 {
        socket
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: herald\r\n\r\n")
            .await
            .unwrap();
        let mut answer = [0u8; 12];
        tokio::time::timeout(PATIENCE, socket.read_exact(&mut answer))
            .await
            .expect("no answer")
            .expect("the connection closed");
        assert_eq!(&answer, b"HTTP/1.1 200");
        let mut rest = [0u8; 256];
        let _ = tokio::time::timeout(Duration::from_millis(100), socket.read(&mut rest)).await;
    }
    // A request with a body, whose arrival the idle timeout times, is served too.
    let stream = serde_json::json!({"name": "q", "subjects": ["q.>"]});
    let created = common::send_json(addr, "POST", "/v1/streams", &[], &stream).await;
    assert_eq!(created.status, 201, "{}", created.text());
}
