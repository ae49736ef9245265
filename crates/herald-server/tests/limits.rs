//! The server's limits: payload size, connections, subscriptions per
//! connection, and the bounded outbound queue that disconnects a slow
//! subscriber (who then resumes from its seq, missing nothing).
#![allow(clippy::unwrap_used)]

use futures_util::{SinkExt, StreamExt};
use herald_server::Limits;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn server(limits: Limits) -> (String, herald::Bus) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let bus = herald::Bus::memory().unwrap();
    tokio::spawn(
        herald_server::Server::new(bus.clone())
            .limits(limits)
            .unwrap()
            .serve(listener, std::future::pending()),
    );
    (format!("ws://{addr}/v1/ws"), bus)
}

async fn connect(url: &str) -> Socket {
    let (mut socket, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    assert_eq!(next(&mut socket).await.unwrap()["type"], "hello");
    socket
}

async fn next(socket: &mut Socket) -> Option<Value> {
    loop {
        match socket.next().await? {
            Ok(Message::Text(text)) => return Some(serde_json::from_str(text.as_str()).unwrap()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

async fn send(socket: &mut Socket, frame: Value) -> Value {
    socket.send(Message::Text(frame.to_string().into())).await.unwrap();
    next(socket).await.unwrap()
}

/// Publishes `total` messages to `subject`, each its number padded with zeros to `width` bytes.
async fn publish_padded(bus: &herald::Bus, subject: &str, total: u64, width: usize) {
    let subject = herald::Subject::new(subject).unwrap();
    let messages = (0..total)
        .map(|i| herald::OutgoingMessage::new(subject.clone(), format!("{i:0>width$}")))
        .collect();
    bus.publish_batch(messages).await.unwrap();
}

#[tokio::test]
async fn a_payload_over_the_servers_limit_is_refused_with_its_size_and_limit() {
    let (url, bus) = server(Limits::default().max_payload(1024)).await;
    let mut socket = connect(&url).await;
    let publish =
        |payload: String| json!({"id": 1, "op": "publish", "message": {"subject": "p.x", "payload": payload}});
    let answer = send(&mut socket, publish("x".repeat(1025))).await;
    assert_eq!(answer["error"]["code"], 1005, "{answer}");
    assert_eq!(
        answer["error"]["detail"],
        json!({"type": "too_large", "size": 1025, "limit": 1024})
    );
    assert!(bus.streams().await.unwrap().is_empty(), "nothing was written");
    assert_eq!(send(&mut socket, publish("x".repeat(1024))).await["type"], "ok");
}

#[tokio::test]
async fn connections_over_the_limit_are_refused_until_one_closes() {
    let (url, _bus) = server(Limits::default().max_connections(2)).await;
    let first = connect(&url).await;
    let _second = connect(&url).await;
    // Past the limit the server closes the connection as it accepts it.
    assert!(tokio_tungstenite::connect_async(url.as_str()).await.is_err());
    drop(first);
    // The slot frees once the server sees the close.
    let started = std::time::Instant::now();
    loop {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Ok(_) => break,
            Err(err) => assert!(started.elapsed().as_secs() < 10, "{err}"),
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn subscriptions_over_the_limit_are_refused_and_the_connection_stays_usable() {
    let (url, _bus) = server(Limits::default().max_subscriptions(2)).await;
    let mut socket = connect(&url).await;
    for sub in 1..=2 {
        let answer = send(
            &mut socket,
            json!({"id": sub, "op": "subscribe", "sub": sub, "pattern": "a.>"}),
        )
        .await;
        assert_eq!(answer["type"], "ok", "{answer}");
    }
    let answer = send(
        &mut socket,
        json!({"id": 3, "op": "serve", "responder": 3, "pattern": "b.>"}),
    )
    .await;
    assert_eq!(answer["error"]["code"], 1004, "{answer}");
    assert_eq!(
        send(&mut socket, json!({"id": 4, "op": "unsubscribe", "sub": 1})).await["type"],
        "ok"
    );
    let answer = send(
        &mut socket,
        json!({"id": 5, "op": "subscribe", "sub": 5, "pattern": "a.>"}),
    )
    .await;
    assert_eq!(answer["type"], "ok", "{answer}");
}

#[tokio::test]
async fn a_slow_subscriber_is_disconnected_with_a_reason_and_resumes_without_a_gap() {
    const TOTAL: u64 = 20_000;
    let limits = Limits::default()
        .outbound_buffer(16)
        .slow_consumer_timeout(std::time::Duration::from_millis(200));
    let (url, bus) = server(limits).await;
    publish_padded(&bus, "slow.x", TOTAL, 400).await;
    let mut socket = connect(&url).await;
    socket
        .send(Message::Text(
            json!({"id": 1, "op": "subscribe", "sub": 1, "pattern": "slow.>", "from": {"seq": 1}})
                .to_string()
                .into(),
        ))
        .await
        .unwrap();
    // Do not read for a while: the socket's buffers and then the queue of 16
    // frames fill, and stay full past the 200 ms the server allows.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let mut last = 0;
    let mut reason = None;
    while let Some(frame) = next(&mut socket).await {
        match frame["type"].as_str().unwrap() {
            "message" => {
                let seq = frame["message"]["seq"].as_u64().unwrap();
                assert_eq!(seq, last + 1, "in order, no gap");
                last = seq;
            }
            "error" => reason = Some(frame["error"]["message"].as_str().unwrap().to_owned()),
            _ => {}
        }
    }
    assert!(reason.unwrap().contains("slow consumer"));
    assert!(last < TOTAL, "disconnected before the end ({last})");
    // Resume from the next seq on a new connection, as often as it takes:
    // nothing is missing, nothing repeats.
    let mut reconnects = 0;
    while last < TOTAL {
        reconnects += 1;
        assert!(reconnects < 1000, "no progress at {last}");
        let mut socket = connect(&url).await;
        let subscribe = json!({"id": 1, "op": "subscribe", "sub": 1, "pattern": "slow.>", "from": {"seq": last + 1}});
        socket.send(Message::Text(subscribe.to_string().into())).await.unwrap();
        while let Some(frame) = next(&mut socket).await {
            if frame["type"] == "message" {
                let seq = frame["message"]["seq"].as_u64().unwrap();
                assert_eq!(seq, last + 1, "in order, no gap");
                last = seq;
                if last == TOTAL {
                    break;
                }
            }
        }
    }
}

#[tokio::test]
async fn reads_and_fetches_of_large_messages_come_in_pages_that_fit_a_frame() {
    let (url, hosted) = server(Limits::default()).await;
    hosted
        .create_stream(herald::StreamConfig::new("blobs").unwrap().subject_index(true))
        .await
        .unwrap();
    // 24 messages of 1 MiB of binary (base64 on the wire): 32 MiB in one
    // answer would be twice the largest frame a WebSocket client takes by default.
    let blob = |i: u8| vec![i; 1024 * 1024];
    for i in 0..24 {
        hosted.publish("blobs.b", blob(i)).await.unwrap();
    }

    // A read asking for 100 gets a page of 4 MiB, cut short; the next page
    // starts after its last seq.
    let mut socket = connect(&url).await;
    let read = |id: u64, from: u64| json!({"id": id, "op": "read_range", "stream": "blobs", "range": {"from": {"seq": from}, "limit": 100}});
    let page = send(&mut socket, read(1, 1)).await;
    let seqs: Vec<u64> = page["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, vec![1, 2, 3, 4], "a page stops once it holds 4 MiB");
    let fetch = json!({"id": 2, "op": "create_consumer", "stream": "blobs", "config": {"name": "c"}});
    assert_eq!(send(&mut socket, fetch).await["type"], "ok");
    let fetch = json!({"id": 3, "op": "fetch", "stream": "blobs", "consumer": "c", "member": "m", "max": 100});
    assert_eq!(send(&mut socket, fetch).await["result"].as_array().unwrap().len(), 4);

    // The Rust client reads on page by page: the same answer as embedded.
    let remote = herald::Bus::connect(url.as_str()).await.unwrap();
    let all = remote.read("blobs", herald::ReadRange::from_seq(1, 100)).await.unwrap();
    assert_eq!(all.len(), 24);
    for (i, message) in all.iter().enumerate() {
        assert_eq!(message.seq, i as u64 + 1);
        assert_eq!(message.payload, blob(i as u8));
    }
    let subject = remote.read_subject("blobs", "blobs.b", 3, 100).await.unwrap();
    assert_eq!(
        subject.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (3..=24).collect::<Vec<_>>()
    );
    let some = remote.read("blobs", herald::ReadRange::from_seq(20, 3)).await.unwrap();
    assert_eq!(some.iter().map(|m| m.seq).collect::<Vec<_>>(), vec![20, 21, 22]);

    // A consumer fetching 100 at a time gets every message, a page at a time.
    let consumer = remote.consumer("blobs", "remote").create().await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 24 {
        let batch = consumer.fetch(100, std::time::Duration::ZERO).await.unwrap();
        assert!(!batch.is_empty() && batch.len() <= 5, "{} deliveries", batch.len());
        for delivery in batch {
            seen.push(delivery.message.seq);
            delivery.ack().await.unwrap();
        }
    }
    assert_eq!(seen, (1..=24).collect::<Vec<_>>());
}

#[tokio::test]
async fn the_outbound_queue_is_bounded_in_bytes_as_well_as_in_frames() {
    // 4,000 frames of 8 KiB (31 MiB) fit a queue of 4,096 frames; they do not
    // fit 1 MiB, nor the socket's buffers.
    const TOTAL: u64 = 4_000;
    let limits = Limits::default()
        .outbound_buffer(4096)
        .outbound_bytes(1024 * 1024)
        .slow_consumer_timeout(std::time::Duration::from_millis(200));
    let (url, bus) = server(limits).await;
    publish_padded(&bus, "big.x", TOTAL, 8192).await;
    let mut socket = connect(&url).await;
    let subscribe = json!({"id": 1, "op": "subscribe", "sub": 1, "pattern": "big.>", "from": {"seq": 1}});
    socket.send(Message::Text(subscribe.to_string().into())).await.unwrap();
    // Read nothing while the buffers and the 1 MiB queue fill and stay full.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let (mut messages, mut reason) = (0, None);
    loop {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), next(&mut socket))
            .await
            .expect("the slow subscriber is disconnected, not left to queue every frame");
        let Some(frame) = frame else { break };
        match frame["type"].as_str().unwrap() {
            "message" => messages += 1,
            "error" => reason = Some(frame["error"]["message"].as_str().unwrap().to_owned()),
            _ => {}
        }
    }
    assert!(reason.unwrap().contains("slow consumer"));
    assert!(messages < TOTAL, "disconnected before the end ({messages} of {TOTAL})");
}

#[tokio::test]
async fn past_its_operations_in_flight_a_connection_is_read_no_further_until_one_is_answered() {
    let (url, bus) = server(Limits::default().max_in_flight(2)).await;
    bus.create_stream(herald::StreamConfig::new("jobs").unwrap())
        .await
        .unwrap();
    bus.consumer("jobs", "w").create().await.unwrap();
    let mut socket = connect(&url).await;
    for id in 1..=2 {
        let fetch = json!({"id": id, "op": "fetch", "stream": "jobs", "consumer": "w", "member": "m", "max": 1, "wait_ms": 60_000});
        socket.send(Message::Text(fetch.to_string().into())).await.unwrap();
    }
    let list = json!({"id": 3, "op": "list_streams"});
    socket.send(Message::Text(list.to_string().into())).await.unwrap();
    // Both fetches wait for work and hold the two places: the third frame is not read.
    let early = tokio::time::timeout(std::time::Duration::from_millis(300), next(&mut socket)).await;
    assert!(
        early.is_err(),
        "answered while two operations were in flight: {early:?}"
    );
    bus.publish("jobs.a", "work").await.unwrap();
    let fetched = next(&mut socket).await.unwrap();
    assert!(fetched["id"] == 1 || fetched["id"] == 2, "{fetched}");
    assert_eq!(fetched["result"].as_array().unwrap().len(), 1);
    let listed = next(&mut socket).await.unwrap();
    assert_eq!(
        (listed["id"].as_u64(), listed["type"].as_str()),
        (Some(3), Some("ok")),
        "{listed}"
    );
}

#[tokio::test]
async fn a_reply_is_read_even_when_the_requests_waiting_for_it_fill_the_places_in_flight() {
    let (url, _bus) = server(Limits::default().max_in_flight(1)).await;
    let mut socket = connect(&url).await;
    let serve = json!({"id": 1, "op": "serve", "responder": 7, "pattern": "svc.>"});
    assert_eq!(send(&mut socket, serve).await["type"], "ok");
    // The request holds the only place while it waits for the reply below.
    let request = json!({"id": 2, "op": "request", "subject": "svc.echo", "payload": "ping", "timeout_ms": 30_000});
    let incoming = send(&mut socket, request).await;
    assert_eq!(incoming["type"], "request", "{incoming}");
    let respond = json!({"id": 3, "op": "respond", "request": incoming["request"], "reply": {"payload": "pong"}});
    socket.send(Message::Text(respond.to_string().into())).await.unwrap();
    let mut answers = [next(&mut socket).await.unwrap(), next(&mut socket).await.unwrap()];
    answers.sort_by_key(|a| a["id"].as_u64());
    assert_eq!(answers[0]["result"]["payload"], "pong", "{answers:?}");
    assert_eq!(
        (answers[1]["id"].as_u64(), answers[1]["type"].as_str()),
        (Some(3), Some("ok"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_more_calls_waiting_than_places_in_flight_still_answers_requests() {
    let (url, hosted) = server(Limits::default()).await;
    hosted
        .create_stream(herald::StreamConfig::new("idle").unwrap())
        .await
        .unwrap();
    let busy = herald::Bus::connect(url.as_str()).await.unwrap();
    let _service = busy
        .serve("svc.>", |_| async { herald::Reply::new("pong") })
        .await
        .unwrap();
    // More long-polling fetches (300) than the server lets one connection have
    // in flight (256).
    let consumer = busy.consumer("idle", "pollers").create().await.unwrap();
    let pollers: Vec<_> = (0..300)
        .map(|_| {
            let consumer = consumer.clone();
            tokio::spawn(async move { consumer.fetch(1, std::time::Duration::from_secs(60)).await })
        })
        .collect();
    // Let them all be sent or queued.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let asker = herald::Bus::connect(url.as_str()).await.unwrap();
    let reply = asker
        .request("svc.echo", "ping", std::time::Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(reply.payload, "pong");
    for poller in pollers {
        poller.abort();
    }
}

#[tokio::test]
async fn the_client_takes_a_message_as_large_as_the_servers_payload_limit() {
    // 20 MiB of binary is a 27 MiB frame as base64: beyond a WebSocket
    // client's default 16 MiB frame, within what this server sends.
    let limit = 20 * 1024 * 1024;
    let (url, hosted) = server(Limits::default().max_payload(limit)).await;
    hosted
        .create_stream(
            herald::StreamConfig::new("huge")
                .unwrap()
                .max_payload(std::num::NonZeroU32::new(limit as u32).unwrap()),
        )
        .await
        .unwrap();
    let remote = herald::Bus::connect(url.as_str()).await.unwrap();
    let payload = vec![0xA5_u8; limit];
    remote.publish("huge.x", payload.clone()).await.unwrap();
    let read = remote.read("huge", herald::ReadRange::from_seq(1, 1)).await.unwrap();
    assert_eq!(read.len(), 1);
    assert!(read[0].payload == payload, "the payload came back whole");
}

#[tokio::test]
async fn a_frame_over_the_limit_gets_an_error_frame_and_a_1009_close_after_the_answers_owed() {
    let (url, bus) = server(Limits::default().max_payload(1024)).await;
    let mut socket = connect(&url).await;
    let publish = json!({"id": 1, "op": "publish", "message": {"subject": "p.x", "payload": "kept"}});
    socket.send(Message::Text(publish.to_string().into())).await.unwrap();
    // The frame limit is the payload's, eight times over (room for escaped
    // JSON), plus 1 MiB for the rest of a frame.
    let huge = json!({"id": 2, "op": "publish", "message": {"subject": "p.x", "payload": "x".repeat(2 << 20)}});
    socket.send(Message::Text(huge.to_string().into())).await.unwrap();
    let mut frames = Vec::new();
    let close = loop {
        let next = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next()).await;
        let next = next.unwrap_or_else(|_| panic!("nothing for 10 s after {frames:?}"));
        match next {
            Some(Ok(Message::Text(text))) => frames.push(serde_json::from_str::<Value>(text.as_str()).unwrap()),
            Some(Ok(Message::Close(close))) => break close,
            Some(Ok(_)) => continue,
            other => panic!("no close frame: {other:?} after {frames:?}"),
        }
    };
    assert_eq!(frames.len(), 2, "{frames:?}");
    assert_eq!(
        (frames[0]["type"].as_str(), frames[0]["id"].as_u64()),
        (Some("ok"), Some(1))
    );
    assert_eq!(frames[1]["type"], "error");
    assert_eq!(frames[1]["error"]["code"], 1005, "{}", frames[1]);
    assert!(frames[1]["error"]["detail"]["size"].as_u64().unwrap() > 2 << 20);
    let close = close.expect("a close frame with a code");
    assert_eq!(u16::from(close.code), 1009);
    assert_eq!(bus.stream_info("p").await.unwrap().state.messages, 1);
}
