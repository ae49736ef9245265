//! Small frames are not held back: request/reply over the WebSocket, back
//! to back, answers within milliseconds (Nagle's algorithm against delayed
//! ACKs held each reply ~40 ms when accepted sockets lacked TCP_NODELAY).
//! Alone in its file, so no other test shares the machine while it runs.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, Instant};

use serde_json::json;

/// Far above a loopback round trip through the server (well under 1 ms),
/// far below the 40 ms a delayed ACK adds.
const BOUND: Duration = Duration::from_millis(5);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_requests_over_the_websocket_answer_within_milliseconds() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bus = herald::Bus::memory().unwrap();
    tokio::spawn(herald_server::Server::new(bus).serve(listener, std::future::pending()));

    // One connection serves `echo`; another asks it, 20 times in a row.
    let mut responder = common::ws_connect(addr).await;
    let serve = json!({"id": 1, "op": "serve", "responder": 1, "pattern": "echo"});
    assert_eq!(common::ws_call(&mut responder, &serve).await["type"], "ok");
    tokio::spawn(async move {
        let mut id = 1;
        loop {
            let request = common::ws_next(&mut responder).await;
            if request["type"] != "request" {
                continue;
            }
            id += 1;
            let reply = json!({"id": id, "op": "respond", "request": request["request"],
                               "reply": {"payload": request["payload"]}});
            common::ws_send(&mut responder, &reply).await;
        }
    });
    let mut asker = common::ws_connect(addr).await;
    let mut took = Vec::new();
    for n in 0..20u64 {
        let asked = Instant::now();
        let request =
            json!({"id": n, "op": "request", "subject": "echo", "payload": n.to_string(), "timeout_ms": 5000});
        let answer = common::ws_call(&mut asker, &request).await;
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
