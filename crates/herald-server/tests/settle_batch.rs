//! Many settles in one call, over the WebSocket protocol, over HTTP and
//! through the remote client: one answer per item, an item refused alone
//! leaving the others applied, a malformed or oversized batch settling
//! nothing, and a session giving back only what its batch did not let go.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use herald::{MAX_NAK_DELAY, MAX_SETTLE_BATCH, Settle};
use serde_json::{Value, json};

/// An hour: a lease that only a give-back, never its expiry, can end in a test.
const LONG_ACK_WAIT: Duration = Duration::from_secs(3600);

/// The safety net on waits that must end by themselves far sooner.
const PATIENCE: Duration = Duration::from_secs(10);

const SETTLE_BATCH: &str = "/v1/streams/jobs/consumers/worker/settle_batch";

/// A server for a bus with stream `jobs` holding three messages and consumer
/// `worker` (leases of an hour).
async fn hosted() -> (herald::Bus, SocketAddr) {
    let bus = herald::Bus::memory().unwrap();
    bus.create_stream(herald::StreamConfig::new("jobs").unwrap())
        .await
        .unwrap();
    bus.consumer("jobs", "worker")
        .ack_wait(LONG_ACK_WAIT)
        .create()
        .await
        .unwrap();
    for subject in ["jobs.a", "jobs.b", "jobs.c"] {
        bus.publish(subject, "work").await.unwrap();
    }
    let addr = common::start(herald_server::Server::new(bus.clone())).await;
    (bus, addr)
}

/// Consumer `worker` as `name`.
async fn member(bus: &herald::Bus, name: &str) -> herald::Consumer {
    bus.bind_consumer("jobs", "worker").await.unwrap().member(name).unwrap()
}

async fn info(bus: &herald::Bus) -> herald::ConsumerInfo {
    member(bus, "observer").await.info().await.unwrap()
}

/// Fetches `max` deliveries over the socket as `member`: their (seq, deliveries).
async fn ws_fetch(socket: &mut common::Socket, member: &str, max: usize) -> Vec<(u64, u64)> {
    let fetch = json!({"id": 1, "op": "fetch", "stream": "jobs", "consumer": "worker", "member": member, "max": max});
    let answer = common::ws_call(socket, &fetch).await;
    leases(&answer["result"])
}

fn leases(deliveries: &Value) -> Vec<(u64, u64)> {
    deliveries
        .as_array()
        .unwrap_or_else(|| panic!("deliveries: {deliveries}"))
        .iter()
        .map(|d| (d["message"]["seq"].as_u64().unwrap(), d["deliveries"].as_u64().unwrap()))
        .collect()
}

fn settle_batch(id: u64, member: &str, items: Value) -> Value {
    json!({"id": id, "op": "settle_batch", "stream": "jobs", "consumer": "worker", "member": member, "items": items})
}

/// One item's answer: `None` for settled, else its (code, kind).
fn outcomes(results: &Value) -> Vec<Option<(u64, String)>> {
    results
        .as_array()
        .unwrap_or_else(|| panic!("results: {results}"))
        .iter()
        .map(|r| match r {
            Value::Null => None,
            error => Some((
                error["code"].as_u64().unwrap(),
                error["kind"].as_str().unwrap().to_owned(),
            )),
        })
        .collect()
}

fn lease_lost() -> Option<(u64, String)> {
    Some((3003, "lease_lost".to_owned()))
}

/// Acks (1, 1) and (2, 1) and names seq 3, which nobody fetched.
fn two_held_and_one_not() -> Value {
    json!([{"seq": 1, "deliveries": 1}, {"seq": 2, "deliveries": 1, "settle": "ack"}, {"seq": 3, "deliveries": 1}])
}

#[tokio::test]
async fn a_websocket_batch_answers_each_item_and_refuses_only_the_lease_it_does_not_hold() {
    let (bus, addr) = hosted().await;
    let mut socket = common::ws_connect(addr).await;
    assert_eq!(ws_fetch(&mut socket, "ws", 2).await, [(1, 1), (2, 1)]);

    let answer = common::ws_call(&mut socket, &settle_batch(2, "ws", two_held_and_one_not())).await;
    assert_eq!(
        (answer["type"].as_str(), answer["id"].as_u64()),
        (Some("ok"), Some(2)),
        "{answer}"
    );
    assert_eq!(outcomes(&answer["result"]), [None, None, lease_lost()], "{answer}");
    assert!(answer["result"][2]["message"].is_string(), "{answer}");
    let info = info(&bus).await;
    assert_eq!((info.ack_floor, info.in_flight), (2, 0));
}

#[tokio::test]
async fn an_http_batch_answers_each_item_and_refuses_only_the_lease_it_does_not_hold() {
    let (bus, addr) = hosted().await;
    let fetch = json!({"member": "http", "max": 2});
    let fetched = common::send_json(addr, "POST", "/v1/streams/jobs/consumers/worker/fetch", &[], &fetch).await;
    assert_eq!(leases(&fetched.json()), [(1, 1), (2, 1)]);

    let body = json!({"member": "http", "items": two_held_and_one_not()});
    let answer = common::send_json(addr, "POST", SETTLE_BATCH, &[], &body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    let answer = answer.json();
    assert_eq!(outcomes(&answer["results"]), [None, None, lease_lost()], "{answer}");
    assert_eq!(info(&bus).await.ack_floor, 2);
}

#[tokio::test]
async fn a_batch_with_an_unknown_field_in_an_item_is_refused_and_settles_nothing() {
    let (bus, addr) = hosted().await;
    let mut socket = common::ws_connect(addr).await;
    assert_eq!(ws_fetch(&mut socket, "ws", 2).await, [(1, 1), (2, 1)]);
    let misspelt = json!([{"seq": 1, "deliveries": 1}, {"seq": 2, "deliveries": 1, "setle": "ack"}]);

    let answer = common::ws_call(&mut socket, &settle_batch(2, "ws", misspelt.clone())).await;
    assert_eq!(
        (
            answer["type"].as_str(),
            answer["id"].as_u64(),
            answer["error"]["code"].as_u64()
        ),
        (Some("error"), Some(2), Some(1004)),
        "{answer}"
    );
    let said = answer["error"]["message"].as_str().unwrap();
    assert!(said.contains("`setle` (did you mean `settle`?)"), "{said}");

    let body = json!({"member": "ws", "items": misspelt});
    let answer = common::send_json(addr, "POST", SETTLE_BATCH, &[], &body).await;
    assert_eq!(
        (answer.status, answer.json()["code"].as_u64()),
        (400, Some(1004)),
        "{}",
        answer.text()
    );
    let said = answer.json()["message"].as_str().unwrap().to_owned();
    assert!(said.contains("did you mean `settle`?"), "{said}");
    let body = json!({"member": "ws", "items": [{"seq": 1, "deliveries": 1}], "force": true});
    let answer = common::send_json(addr, "POST", SETTLE_BATCH, &[], &body).await;
    assert_eq!(answer.status, 400, "{}", answer.text());

    let info = info(&bus).await;
    assert_eq!((info.ack_floor, info.in_flight), (0, 2), "nothing was settled");
}

#[tokio::test]
async fn a_batch_over_the_limit_is_refused_whole() {
    let (bus, addr) = hosted().await;
    let mut socket = common::ws_connect(addr).await;
    assert_eq!(ws_fetch(&mut socket, "ws", 1).await, [(1, 1)]);
    let too_many = Value::Array(vec![json!({"seq": 1, "deliveries": 1}); MAX_SETTLE_BATCH + 1]);

    let answer = common::ws_call(&mut socket, &settle_batch(2, "ws", too_many.clone())).await;
    assert_eq!(
        (answer["type"].as_str(), answer["error"]["code"].as_u64()),
        (Some("error"), Some(1004)),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("over the limit of 10000"),
        "{answer}"
    );
    let body = json!({"member": "ws", "items": too_many});
    let answer = common::send_json(addr, "POST", SETTLE_BATCH, &[], &body).await;
    assert_eq!(
        (answer.status, answer.json()["code"].as_u64()),
        (400, Some(1004)),
        "{}",
        answer.text()
    );

    let info = info(&bus).await;
    assert_eq!((info.ack_floor, info.in_flight), (0, 1), "nothing was settled");
    // The OpenAPI document states the same limit.
    let document = common::get(addr, "/v1/openapi.json", &[]).await.json();
    let items = &document["components"]["schemas"]["SettleBatchRequest"]["properties"]["items"];
    assert_eq!(items["maxItems"].as_u64(), Some(MAX_SETTLE_BATCH as u64), "{items}");
}

#[tokio::test]
async fn a_session_that_ends_gives_back_only_what_its_batch_did_not_let_go() {
    let (bus, addr) = hosted().await;
    let mut socket = common::ws_connect(addr).await;
    assert_eq!(ws_fetch(&mut socket, "ghost", 3).await, [(1, 1), (2, 1), (3, 1)]);
    // Two acked; the third only extended, then named with the wrong count:
    // it is still the session's.
    let items = json!([
        {"seq": 1, "deliveries": 1},
        {"seq": 2, "deliveries": 1},
        {"seq": 3, "deliveries": 1, "settle": "in_progress"},
        {"seq": 3, "deliveries": 9},
    ]);
    let answer = common::ws_call(&mut socket, &settle_batch(2, "ghost", items)).await;
    assert_eq!(
        outcomes(&answer["result"]),
        [None, None, None, lease_lost()],
        "{answer}"
    );
    socket.close(None).await.unwrap();

    // Another member gets the third long before its hour-long lease ends,
    // and nothing else.
    let other = member(&bus, "other").await;
    let back = other.fetch(3, PATIENCE).await.unwrap();
    let back: Vec<(u64, u32)> = back.iter().map(|r| (r.message.seq, r.deliveries)).collect();
    assert_eq!(back, [(3, 2)], "given back as if nak'd, the delivery count kept");
    assert!(other.fetch(3, Duration::ZERO).await.unwrap().is_empty());
    assert_eq!(info(&bus).await.ack_floor, 2);
}

#[tokio::test]
async fn the_remote_clients_settle_all_reports_each_delivery_with_its_kind() {
    let (bus, addr) = hosted().await;
    let remote = herald::Bus::connect(format!("ws://{addr}/v1/ws")).await.unwrap();
    let held = member(&remote, "remote").await;
    let got = held.fetch(2, Duration::ZERO).await.unwrap();
    assert_eq!(got.len(), 2);

    // An invalid settle refuses the whole call, before anything applies.
    let too_long = Settle::Nak {
        delay: MAX_NAK_DELAY + Duration::from_secs(1),
    };
    let refused = held
        .settle_all([(&got[0], Settle::Ack), (&got[1], too_long)])
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), herald::ErrorKind::InvalidRequest, "{refused}");
    assert_eq!(info(&bus).await.ack_floor, 0);

    // The second is acked on its own first: a nak of it is refused alone.
    got[1].ack().await.unwrap();
    let outcomes = held
        .settle_all([(&got[0], Settle::Ack), (&got[1], Settle::Nak { delay: Duration::ZERO })])
        .await
        .unwrap();
    assert!(outcomes[0].is_ok(), "{outcomes:?}");
    let lost = outcomes[1].as_ref().unwrap_err();
    assert_eq!(lost.kind(), herald::ErrorKind::LeaseLost, "{lost}");
    assert_eq!(info(&bus).await.ack_floor, 2);
}
