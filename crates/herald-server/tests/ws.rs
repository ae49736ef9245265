//! The WebSocket protocol spoken by hand, as a client in another language would.
#![allow(clippy::unwrap_used)]

use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

mod common;

use common::{Socket, ws_next as next};

async fn server() -> Socket {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bus = herald::Bus::memory().unwrap();
    tokio::spawn(herald_server::Server::new(bus).serve(listener, std::future::pending()));
    let (mut socket, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/v1/ws"))
        .await
        .unwrap();
    let hello = next(&mut socket).await;
    assert_eq!(
        (hello["type"].as_str(), hello["version"].as_u64()),
        (Some("hello"), Some(1))
    );
    socket
}

async fn send(socket: &mut Socket, frame: Value) -> Value {
    common::ws_call(socket, &frame).await
}

#[tokio::test]
async fn malformed_frames_get_an_error_frame_and_the_connection_stays_usable() {
    let mut socket = server().await;
    socket.send(Message::Text("not json".into())).await.unwrap();
    let answer = next(&mut socket).await;
    assert_eq!(answer["type"], "error");
    assert_eq!(answer["error"]["code"], 1004);
    assert!(answer.get("id").is_none());

    let answer = send(&mut socket, json!({"id": 5, "op": "teleport"})).await;
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_u64()),
        (Some("error"), Some(5))
    );
    assert_eq!(answer["error"]["code"], 1004);

    socket.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(next(&mut socket).await["error"]["code"], 1004);

    let answer = send(
        &mut socket,
        json!({"id": 6, "op": "publish", "message": {"subject": "orders.1", "payload": "still here"}}),
    )
    .await;
    assert_eq!(
        answer,
        json!({"type": "ok", "id": 6, "result": {"stream": "orders", "seq": 1, "duplicate": false}})
    );
    let answer = send(
        &mut socket,
        json!({"id": 7, "op": "get_message", "stream": "orders", "seq": 1}),
    )
    .await;
    assert_eq!(answer["result"]["payload"], "still here");
}

#[tokio::test]
async fn errors_carry_stable_codes_and_detail_and_binary_payloads_travel_as_base64() {
    let mut socket = server().await;
    let big = "x".repeat(1024 * 1024 + 1);
    let answer = send(
        &mut socket,
        json!({"id": 1, "op": "publish", "message": {"subject": "big.x", "payload": big}}),
    )
    .await;
    assert_eq!(answer["error"]["code"], 1005, "{answer}");
    assert_eq!(answer["error"]["detail"]["limit"], 1024 * 1024);

    let answer = send(
        &mut socket,
        json!({"id": 2, "op": "publish", "message": {"subject": "bin.x", "payload_b64": "/wAB"}}),
    )
    .await;
    assert_eq!(answer["type"], "ok", "{answer}");
    let answer = send(
        &mut socket,
        json!({"id": 3, "op": "get_message", "stream": "bin", "seq": 1}),
    )
    .await;
    assert_eq!(answer["result"]["payload_b64"], "/wAB");
    let answer = send(&mut socket, json!({"id": 4, "op": "stream_info", "stream": "nope"})).await;
    assert_eq!(
        (answer["error"]["code"].as_u64(), answer["error"]["kind"].as_str()),
        (Some(2001), Some("stream_not_found"))
    );
}

#[tokio::test]
async fn one_connection_carries_a_subscription_and_requests_answered_out_of_order() {
    let mut socket = server().await;
    socket
        .send(Message::Text(
            json!({"id": 1, "op": "subscribe", "sub": 9, "pattern": "feed.>"})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    assert_eq!(next(&mut socket).await, json!({"type": "ok", "id": 1, "result": null}));
    // A fetch that waits does not hold up the publish sent after it.
    let create = json!({"id": 2, "op": "create_stream", "config": {"name": "feed", "subjects": ["feed.>"]}});
    assert_eq!(send(&mut socket, create).await["type"], "ok");
    let consumer = json!({"id": 3, "op": "create_consumer", "stream": "feed", "config": {"name": "c"}});
    assert_eq!(send(&mut socket, consumer).await["type"], "ok");
    let fetch =
        json!({"id": 4, "op": "fetch", "stream": "feed", "consumer": "c", "member": "m", "max": 1, "wait_ms": 10000});
    socket.send(Message::Text(fetch.to_string().into())).await.unwrap();
    let publish = json!({"id": 5, "op": "publish", "message": {"subject": "feed.a", "payload": "hi"}});
    socket.send(Message::Text(publish.to_string().into())).await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let frame = next(&mut socket).await;
        let what = match frame["type"].as_str().unwrap() {
            "message" => format!("message {} {}", frame["sub"], frame["message"]["payload"]),
            "ok" => format!("ok {}", frame["id"]),
            other => panic!("{other}: {frame}"),
        };
        seen.push(what);
    }
    seen.sort();
    assert_eq!(seen, ["message 9 \"hi\"", "ok 4", "ok 5"]);
}

#[tokio::test]
async fn a_resumed_subscription_is_not_sent_what_its_client_had_seen() {
    let mut socket = server().await;
    for (id, subject) in [(1, "a.x"), (2, "b.x"), (3, "a.x"), (4, "b.x"), (5, "a.x")] {
        let publish = json!({"id": id, "op": "publish", "message": {"subject": subject, "payload": id.to_string()}});
        assert_eq!(send(&mut socket, publish).await["type"], "ok");
    }
    // Streams `a` (seqs 1..=3) and `b` (1..=2): seen up to a:2 and b:2.
    let subscribe = json!({"id": 9, "op": "subscribe", "sub": 1, "pattern": ">", "from": {"seq": 1},
                           "resume": {"a": 2, "b": 2}});
    assert_eq!(send(&mut socket, subscribe).await["type"], "ok");
    let first = next(&mut socket).await;
    assert_eq!(
        (&first["message"]["stream"], &first["message"]["seq"]),
        (&json!("a"), &json!(3))
    );
    let publish = json!({"id": 10, "op": "publish", "message": {"subject": "b.x", "payload": "new"}});
    socket.send(Message::Text(publish.to_string().into())).await.unwrap();
    let mut frames = [next(&mut socket).await, next(&mut socket).await];
    frames.sort_by_key(|f| f["type"].as_str().unwrap().to_owned());
    assert_eq!(
        (&frames[0]["message"]["stream"], &frames[0]["message"]["seq"]),
        (&json!("b"), &json!(3))
    );
    assert_eq!(frames[1]["id"], 10);
}
