//! Small frames are not held back: request/reply over the WebSocket, back
//! to back, answers within milliseconds (Nagle's algorithm against delayed
//! ACKs held each reply ~40 ms when accepted sockets lacked TCP_NODELAY).
//! Alone in its file, so no other test shares the machine while it runs.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Far above a loopback round trip through the server (well under 1 ms),
/// far below the 40 ms a delayed ACK adds.
const BOUND: Duration = Duration::from_millis(5);

async fn connect(url: &str) -> Socket {
    // The client side sets TCP_NODELAY itself, so only the server's sockets are tested.
    let (mut socket, _) = tokio_tungstenite::connect_async_with_config(url, None, true)
        .await
        .unwrap();
    assert_eq!(next(&mut socket).await["type"], "hello");
    socket
}

async fn next(socket: &mut Socket) -> Value {
    loop {
        match socket.next().await.unwrap().unwrap() {
            Message::Text(text) => return serde_json::from_str(text.as_str()).unwrap(),
            _ => continue,
        }
    }
}

async fn send(socket: &mut Socket, frame: Value) {
    socket.send(Message::Text(frame.to_string().into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_requests_over_the_websocket_answer_within_milliseconds() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bus = herald::Bus::memory().unwrap();
    tokio::spawn(herald_server::Server::new(bus).serve(listener, std::future::pending()));
    let url = format!("ws://{addr}/v1/ws");

    // One connection serves `echo`; another asks it, 20 times in a row.
    let mut responder = connect(&url).await;
    send(
        &mut responder,
        json!({"id": 1, "op": "serve", "responder": 1, "pattern": "echo"}),
    )
    .await;
    assert_eq!(next(&mut responder).await["type"], "ok");
    tokio::spawn(async move {
        let mut id = 1;
        loop {
            let request = next(&mut responder).await;
            if request["type"] != "request" {
                continue;
            }
            id += 1;
            let reply = json!({"id": id, "op": "respond", "request": request["request"],
                               "reply": {"payload": request["payload"]}});
            send(&mut responder, reply).await;
        }
    });
    let mut asker = connect(&url).await;
    let mut took = Vec::new();
    for n in 0..20u64 {
        let asked = Instant::now();
        send(
            &mut asker,
            json!({"id": n, "op": "request", "subject": "echo", "payload": n.to_string(), "timeout_ms": 5000}),
        )
        .await;
        let answer = next(&mut asker).await;
        took.push(asked.elapsed());
        assert_eq!(answer["result"]["payload"], n.to_string(), "{answer}");
    }
    eprintln!("back-to-back round trips: {took:?}");
    let slow: Vec<_> = took.iter().filter(|t| **t >= BOUND).collect();
    assert!(
        slow.is_empty(),
        "round trips at or over {BOUND:?}: {slow:?} (all: {took:?})"
    );
}
