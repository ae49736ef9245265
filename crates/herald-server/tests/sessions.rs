//! What a session holds is let go when it ends: a stopping server ends
//! waiting fetches at once, a departed member's deliveries go back to its
//! consumer, and a destructive frame with a typo changes nothing.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use serde_json::json;

/// An hour: a lease that only a give-back, never its expiry, can end in a test.
const LONG_ACK_WAIT: Duration = Duration::from_secs(3600);

/// The safety net on waits that must end by themselves far sooner.
const PATIENCE: Duration = Duration::from_secs(10);

/// A bus with stream `jobs` and consumer `worker` (leases of an hour).
async fn hosted() -> herald::Bus {
    let bus = herald::Bus::memory().unwrap();
    bus.create_stream(herald::StreamConfig::new("jobs").unwrap())
        .await
        .unwrap();
    bus.consumer("jobs", "worker")
        .ack_wait(LONG_ACK_WAIT)
        .create()
        .await
        .unwrap();
    bus
}

/// Consumer `worker` as `name`.
async fn member(bus: &herald::Bus, name: &str) -> herald::Consumer {
    bus.bind_consumer("jobs", "worker").await.unwrap().member(name).unwrap()
}

#[tokio::test]
async fn stopping_the_server_ends_waiting_fetches_at_once_and_returns() {
    let bus = hosted().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(herald_server::Server::new(bus.clone()).serve(listener, async {
        let _ = stopped.await;
    }));
    // A WebSocket fetch and an HTTP long poll, each ready to wait 30 s.
    let mut socket = common::ws_connect(addr).await;
    let fetch = json!({"id": 1, "op": "fetch", "stream": "jobs", "consumer": "worker", "member": "ws",
                       "max": 1, "wait_ms": 30000});
    common::ws_send(&mut socket, &fetch).await;
    // Frames are taken in order, each operation started as it is read: an
    // answer to the next frame means the fetch is under way.
    let listed = common::ws_call(&mut socket, &json!({"id": 2, "op": "list_streams"})).await;
    assert_eq!(listed["id"], 2, "{listed}");
    let body = json!({"member": "http", "max": 1, "wait_ms": 30000});
    let poll = common::InHand::send(addr, "POST", "/v1/streams/jobs/consumers/worker/fetch", &body).await;

    let asked = tokio::time::Instant::now();
    stop.send(()).unwrap();
    let answer = tokio::time::timeout(PATIENCE, common::ws_next(&mut socket))
        .await
        .unwrap();
    assert_eq!(
        (
            answer["type"].as_str(),
            answer["id"].as_u64(),
            answer["error"]["code"].as_u64()
        ),
        (Some("error"), Some(1), Some(5002)),
        "{answer}"
    );
    let polled = tokio::time::timeout(PATIENCE, poll.response()).await.unwrap();
    assert_eq!(polled.status, 503, "{}", polled.text());
    assert_eq!(polled.json()["code"], 5002);
    tokio::time::timeout(PATIENCE, server).await.unwrap().unwrap().unwrap();
    let took = asked.elapsed();
    assert!(
        took < Duration::from_secs(1),
        "stopping took {took:?} with fetches waiting"
    );
    // Nothing was leased to the fetches that were told to go.
    bus.publish("jobs.email", "after").await.unwrap();
    let worker = bus.bind_consumer("jobs", "worker").await.unwrap();
    let got = worker.fetch(1, Duration::ZERO).await.unwrap();
    assert_eq!(got[0].deliveries, 1);
}

#[tokio::test]
async fn a_member_that_disconnects_gives_its_deliveries_back_at_once() {
    let bus = hosted().await;
    let addr = common::start(herald_server::Server::new(bus.clone())).await;
    bus.publish("jobs.a", "one").await.unwrap();
    bus.publish("jobs.b", "two").await.unwrap();

    // A protocol client leases both, settles neither, and vanishes.
    let mut ghost = common::ws_connect(addr).await;
    let fetch = json!({"id": 1, "op": "fetch", "stream": "jobs", "consumer": "worker", "member": "ghost", "max": 2});
    let answer = common::ws_call(&mut ghost, &fetch).await;
    assert_eq!(answer["result"].as_array().map(Vec::len), Some(2), "{answer}");
    drop(ghost);

    // Another member gets both long before the hour-long lease would end.
    let other = member(&bus, "other").await;
    let mut got = Vec::new();
    while got.len() < 2 {
        got.extend(other.fetch(2, PATIENCE).await.unwrap());
        assert!(!got.is_empty(), "the departed member's deliveries did not come back");
    }
    let redelivered: Vec<(u64, u32)> = got.iter().map(|r| (r.message.seq, r.deliveries)).collect();
    assert_eq!(
        redelivered,
        [(1, 2), (2, 2)],
        "given back as if nak'd, the delivery count kept"
    );
}

#[tokio::test]
async fn the_remote_clients_dropped_connection_gives_its_deliveries_back() {
    let bus = hosted().await;
    let addr = common::start(herald_server::Server::new(bus.clone())).await;
    bus.publish("jobs.a", "one").await.unwrap();
    let remote = herald::Bus::connect(format!("ws://{addr}/v1/ws")).await.unwrap();
    let held = remote
        .bind_consumer("jobs", "worker")
        .await
        .unwrap()
        .member("remote")
        .unwrap();
    let got = held.fetch(1, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 1);
    // An acked delivery stays acked: only what is unsettled goes back.
    bus.publish("jobs.b", "two").await.unwrap();
    let acked = held.fetch(1, Duration::ZERO).await.unwrap();
    acked[0].ack().await.unwrap();
    drop((held, got, acked, remote));

    let other = member(&bus, "other").await;
    let back = other.fetch(2, PATIENCE).await.unwrap();
    let back: Vec<(u64, u32)> = back.iter().map(|r| (r.message.seq, r.deliveries)).collect();
    assert_eq!(back, [(1, 2)]);
}

#[tokio::test]
async fn an_http_long_poll_whose_client_went_away_leases_nothing() {
    let bus = hosted().await;
    let addr = common::start(herald_server::Server::new(bus.clone())).await;
    // A long poll that its client gives up on once the handler has it.
    let body = json!({"member": "gone", "max": 1, "wait_ms": 30000});
    let poll = common::InHand::send(addr, "POST", "/v1/streams/jobs/consumers/worker/fetch", &body).await;
    drop(poll);
    assert_eq!(common::get(addr, "/healthz", &[]).await.status, 200);
    // The server noticed the closed socket and stopped waiting (or gave back
    // what it had leased): the next message goes to a member that is there,
    // long before an hour-long lease would end.
    bus.publish("jobs.x", "next").await.unwrap();
    let here = member(&bus, "here").await;
    let got = here.fetch(1, PATIENCE).await.unwrap();
    assert_eq!(
        got.len(),
        1,
        "the message stayed leased to a long poll whose client was gone"
    );
    let info = here.info().await.unwrap();
    assert!(
        info.members
            .iter()
            .all(|m| m.in_flight == 0 || m.name.as_str() == "here"),
        "{info:?}"
    );
}

#[tokio::test]
async fn a_purge_frame_with_a_misspelt_selector_is_refused_and_deletes_nothing() {
    let bus = hosted().await;
    let addr = common::start(herald_server::Server::new(bus.clone())).await;
    for subject in ["jobs.k1", "jobs.k1", "jobs.k2"] {
        bus.publish(subject, "x").await.unwrap();
    }
    let mut socket = common::ws_connect(addr).await;
    let frames = [
        json!({"id": 1, "op": "purge_stream", "stream": "jobs", "purge": {"subjct": "jobs.k1"}}),
        json!({"id": 2, "op": "purge_stream", "stream": "jobs", "purge": {"keep": 1}}),
        json!({"id": 3, "op": "purge_stream", "stream": "jobs", "purge": {}}),
        json!({"id": 4, "op": "purge_stream", "stream": "jobs"}),
        json!({"id": 5, "op": "purge_stream", "stream": "jobs", "subject": "jobs.k1"}),
    ];
    for frame in frames {
        let answer = common::ws_call(&mut socket, &frame).await;
        assert_eq!(
            (answer["type"].as_str(), &answer["id"], answer["error"]["code"].as_u64()),
            (Some("error"), &frame["id"], Some(1004)),
            "{frame} -> {answer}"
        );
    }
    assert_eq!(bus.stream_info("jobs").await.unwrap().state.messages, 3);
    let purge_subject = json!({"id": 6, "op": "purge_stream", "stream": "jobs", "purge": {"subject": "jobs.k1"}});
    let answer = common::ws_call(&mut socket, &purge_subject).await;
    assert_eq!(answer["result"], 2, "{answer}");
    let purge_all = json!({"id": 7, "op": "purge_stream", "stream": "jobs", "purge": {"all": true}});
    let answer = common::ws_call(&mut socket, &purge_all).await;
    assert_eq!(answer["result"], 1, "{answer}");
}
