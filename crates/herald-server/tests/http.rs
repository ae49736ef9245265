//! The HTTP API and the SSE tail, through a real server on 127.0.0.1:0:
//! every endpoint group, its errors as JSON with stable codes, the payload
//! limit, and tails that follow, replay, resume and hold back.
#![allow(clippy::unwrap_used)]

mod common;

use std::net::SocketAddr;

use common::{Response, get, request, send_json};
use herald_server::{Access, Limits, Permissions, Server, Token};
use serde_json::{Value, json};

async fn server() -> (SocketAddr, herald::Bus) {
    server_with(Limits::default()).await
}

async fn server_with(limits: Limits) -> (SocketAddr, herald::Bus) {
    let bus = herald::Bus::memory().unwrap();
    let addr = common::start(Server::new(bus.clone()).limits(limits).unwrap()).await;
    (addr, bus)
}

async fn post(addr: SocketAddr, path: &str, body: Value) -> Response {
    send_json(addr, "POST", path, &[], &body).await
}

async fn put(addr: SocketAddr, path: &str, body: Value) -> Response {
    send_json(addr, "PUT", path, &[], &body).await
}

async fn delete(addr: SocketAddr, path: &str) -> Response {
    request(addr, "DELETE", path, &[], b"").await
}

/// Asserts an error answer: its status, a JSON body and the code.
fn assert_error(response: &Response, status: u16, code: u64) -> Value {
    assert_eq!(response.status, status, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    let error = response.json();
    assert_eq!(error["code"], code, "{error}");
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    error
}

async fn publish(addr: SocketAddr, subject: &str, payload: &str) -> Value {
    let answer = post(addr, "/v1/messages", json!({"subject": subject, "payload": payload})).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json()
}

#[tokio::test]
async fn a_purge_that_does_not_say_what_it_deletes_is_refused_and_deletes_nothing() {
    let (addr, _bus) = server().await;
    for subject in ["shop.k1", "shop.k1", "shop.k2"] {
        publish(addr, subject, "x").await;
    }
    let purge = |body: &'static [u8]| request(addr, "POST", "/v1/streams/shop/purge", &[], body);
    let misspelt = purge(br#"{"subjct": "shop.k1"}"#).await;
    assert_error(&misspelt, 400, 1004);
    assert!(
        misspelt.text().contains("did you mean `subject`?"),
        "{}",
        misspelt.text()
    );
    // The CLI's word for it, an empty object, an empty body and null: none says what goes.
    for body in [&br#"{"keep": 1}"#[..], b"{}", b"", b"null", br#"{"all": false}"#] {
        let refused = purge(body).await;
        assert_error(&refused, 400, 1004);
    }
    let both = purge(br#"{"all": true, "subject": "shop.k1"}"#).await;
    assert_error(&both, 400, 1004);
    assert_eq!(
        get(addr, "/v1/streams/shop", &[]).await.json()["state"]["messages"],
        3,
        "a refused purge deleted messages"
    );
    assert_eq!(purge(br#"{"all": true}"#).await.json(), json!({"purged": 3}));
}

#[tokio::test]
async fn unknown_fields_and_parameters_are_refused_and_change_nothing() {
    let (addr, _bus) = server().await;
    let stream = post(
        addr,
        "/v1/streams",
        json!({"name": "orders", "subjects": ["orders.>"], "max_mesgs": 5}),
    )
    .await;
    assert_error(&stream, 400, 1004);
    assert!(stream.text().contains("did you mean `max_msgs`?"), "{}", stream.text());
    assert_error(&get(addr, "/v1/streams/orders", &[]).await, 404, 2001);
    assert_eq!(
        post(addr, "/v1/streams", json!({"name": "orders", "subjects": ["orders.>"]}))
            .await
            .status,
        201
    );

    let consumer = post(
        addr,
        "/v1/streams/orders/consumers",
        json!({"name": "billing", "max_delivr": 3}),
    )
    .await;
    assert_error(&consumer, 400, 1004);
    assert!(
        consumer.text().contains("did you mean `max_deliver`?"),
        "{}",
        consumer.text()
    );
    assert_error(&get(addr, "/v1/streams/orders/consumers/billing", &[]).await, 404, 2005);

    publish(addr, "orders.1", "x").await;
    let read = get(addr, "/v1/streams/orders/messages?from_sq=1", &[]).await;
    assert_error(&read, 400, 1004);
    assert!(read.text().contains("did you mean `from_seq`?"), "{}", read.text());
    let listed = get(addr, "/v1/streams?verbose=1", &[]).await;
    assert_error(&listed, 400, 1004);

    let publish_typo = post(
        addr,
        "/v1/messages",
        json!({"subject": "orders.2", "payload": "x", "ttl": 5}),
    )
    .await;
    assert_error(&publish_typo, 400, 1004);
    assert!(
        publish_typo.text().contains("did you mean `ttl_ms`?"),
        "{}",
        publish_typo.text()
    );
    let no_payload = post(addr, "/v1/messages", json!({"subject": "orders.2"})).await;
    assert_error(&no_payload, 400, 1004);
    assert!(!no_payload.text().contains("variant"), "{}", no_payload.text());
    assert_eq!(
        get(addr, "/v1/streams/orders", &[]).await.json()["state"]["messages"],
        1,
        "a refused publish stored a message"
    );
}

#[tokio::test]
async fn the_routers_own_failures_are_error_objects() {
    let (addr, _bus) = server().await;
    let missing = get(addr, "/v1/nosuch", &[]).await;
    assert_error(&missing, 404, 1004);
    let wrong_method = request(addr, "OPTIONS", "/v1/streams", &[], b"").await;
    assert_error(&wrong_method, 405, 1004);
    let delete_all = request(addr, "DELETE", "/v1/streams", &[], b"").await;
    assert_error(&delete_all, 405, 1004);
    let not_a_websocket = get(addr, "/v1/ws", &[]).await;
    assert_error(&not_a_websocket, 426, 1004);
    let bad_query = get(addr, "/v1/streams/s/messages?from_seq=abc", &[]).await;
    assert_error(&bad_query, 400, 1004);
    assert!(!bad_query.text().contains("u64"), "{}", bad_query.text());
    let settle_word = post(
        addr,
        "/v1/streams/s/consumers/c/settle",
        json!({"member": "m", "seq": 1, "deliveries": 1, "settle": "nak"}),
    )
    .await;
    // "nak" is a settle: the consumer is what is missing here.
    assert_error(&settle_word, 404, 2001);
}

#[tokio::test]
async fn streams_are_created_listed_updated_purged_and_deleted() {
    let (addr, _bus) = server().await;
    let config = json!({"name": "orders", "subjects": ["orders.>"]});
    let created = post(addr, "/v1/streams", config.clone()).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("location"), Some("/v1/streams/orders"));
    assert_eq!(created.json()["config"]["subjects"], json!(["orders.>"]));
    // The same config again changes nothing.
    assert_eq!(post(addr, "/v1/streams", config).await.status, 201);
    let clash = post(
        addr,
        "/v1/streams",
        json!({"name": "orders", "subjects": ["orders.eu.>"]}),
    )
    .await;
    assert_error(&clash, 409, 2002);

    let list = get(addr, "/v1/streams", &[]).await.json();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["config"]["name"], "orders");

    let updated = put(
        addr,
        "/v1/streams/orders",
        json!({"name": "orders", "subjects": ["orders.>"], "max_msgs": 10}),
    )
    .await;
    assert_eq!(updated.status, 200, "{}", updated.text());
    assert_eq!(
        get(addr, "/v1/streams/orders", &[]).await.json()["config"]["max_msgs"],
        10
    );
    let renamed = put(
        addr,
        "/v1/streams/orders",
        json!({"name": "other", "subjects": ["orders.>"]}),
    )
    .await;
    assert_error(&renamed, 400, 1004);

    for subject in ["orders.a", "orders.a", "orders.b"] {
        publish(addr, subject, "x").await;
    }
    let one_subject = post(addr, "/v1/streams/orders/purge", json!({"subject": "orders.a"})).await;
    assert_eq!(one_subject.json(), json!({"purged": 2}));
    let everything = post(addr, "/v1/streams/orders/purge", json!({"all": true})).await;
    assert_eq!(everything.json(), json!({"purged": 1}));
    assert_eq!(
        get(addr, "/v1/streams/orders", &[]).await.json()["state"]["messages"],
        0
    );

    assert_eq!(delete(addr, "/v1/streams/orders").await.status, 204);
    assert_error(&get(addr, "/v1/streams/orders", &[]).await, 404, 2001);
    assert_error(&delete(addr, "/v1/streams/orders").await, 404, 2001);
}

#[tokio::test]
async fn messages_are_published_as_json_raw_and_batch_and_ids_deduplicate() {
    let (addr, _bus) = server().await;
    let message = json!({"subject": "orders.1", "payload": "created", "id": "o-1", "headers": {"trace": "t1"}});
    let first = post(addr, "/v1/messages", message.clone()).await.json();
    assert_eq!(first, json!({"stream": "orders", "seq": 1, "duplicate": false}));
    let again = post(addr, "/v1/messages", message).await.json();
    assert_eq!(again, json!({"stream": "orders", "seq": 1, "duplicate": true}));

    let raw_headers = [
        ("content-type", "text/plain"),
        ("herald-msg-id", "o-2"),
        ("herald-header-correlation-id", "c-9"),
    ];
    let raw = request(addr, "POST", "/v1/subjects/orders.2", &raw_headers, b"shipped").await;
    assert_eq!(raw.json(), json!({"stream": "orders", "seq": 2, "duplicate": false}));
    let raw_again = request(addr, "POST", "/v1/subjects/orders.2", &raw_headers, b"shipped").await;
    assert_eq!(raw_again.json()["duplicate"], true);
    let stored = get(addr, "/v1/streams/orders/messages/2", &[]).await.json();
    assert_eq!(stored["payload"], "shipped");
    assert_eq!(stored["id"], "o-2");
    assert_eq!(stored["content_type"], "text/plain");
    assert_eq!(stored["headers"], json!({"correlation-id": "c-9"}));

    let binary = request(addr, "POST", "/v1/subjects/orders.3", &[], &[0xff, 0, 1]).await;
    assert_eq!(binary.json()["seq"], 3);
    let stored = get(addr, "/v1/streams/orders/messages/3", &[]).await.json();
    assert_eq!(stored["payload_b64"], "/wAB");
    assert!(stored.get("content_type").is_none(), "no Content-Type, no content type");

    let batch = json!([
        {"subject": "orders.4", "payload": "a", "id": "o-4"},
        {"subject": "orders.5", "payload_b64": "AAE=", "id": "o-5"},
        {"subject": "orders.1", "payload": "created", "id": "o-1"},
    ]);
    let acks = post(addr, "/v1/messages/batch", batch).await.json();
    assert_eq!(
        acks,
        json!([
            {"stream": "orders", "seq": 4, "duplicate": false},
            {"stream": "orders", "seq": 5, "duplicate": false},
            {"stream": "orders", "seq": 1, "duplicate": true},
        ])
    );
    assert_error(&post(addr, "/v1/messages/batch", json!([])).await, 400, 1004);
}

#[tokio::test]
async fn an_expected_seq_that_does_not_match_is_412_with_the_actual_seq() {
    let (addr, _bus) = server().await;
    publish(addr, "cart.1", "added").await;
    let stale = json!({"subject": "cart.1", "payload": "removed", "expected_last_subject_seq": 5});
    let error = assert_error(&post(addr, "/v1/messages", stale).await, 412, 3001);
    assert_eq!(
        error["detail"],
        json!({"type": "wrong_expected_seq", "expected": 5, "actual": 1})
    );
    let raw = request(
        addr,
        "POST",
        "/v1/subjects/cart.1",
        &[("herald-expected-last-seq", "0")],
        b"removed",
    )
    .await;
    let error = assert_error(&raw, 412, 3001);
    assert_eq!(error["detail"]["actual"], 1);
    let current = json!({"subject": "cart.1", "payload": "removed", "expected_last_subject_seq": 1});
    assert_eq!(post(addr, "/v1/messages", current).await.json()["seq"], 2);
    let bad_header = request(
        addr,
        "POST",
        "/v1/subjects/cart.1",
        &[("herald-expected-last-seq", "two")],
        b"",
    )
    .await;
    assert_error(&bad_header, 400, 1004);
}

#[tokio::test]
async fn messages_are_read_by_seq_range_subject_pattern_time_and_last() {
    let (addr, _bus) = server().await;
    let config = json!({"name": "events", "subjects": ["events.>"], "subject_index": true});
    assert_eq!(post(addr, "/v1/streams", config).await.status, 201);
    for (subject, payload) in [
        ("events.a", "1"),
        ("events.b", "2"),
        ("events.a", "3"),
        ("events.c", "4"),
    ] {
        publish(addr, subject, payload).await;
    }
    let seqs = |messages: Value| -> Vec<u64> {
        messages
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap())
            .collect()
    };
    let one = get(addr, "/v1/streams/events/messages/2", &[]).await.json();
    assert_eq!(
        (one["subject"].as_str(), one["payload"].as_str()),
        (Some("events.b"), Some("2"))
    );
    assert_eq!(
        seqs(get(addr, "/v1/streams/events/messages", &[]).await.json()),
        [1, 2, 3, 4]
    );
    let page = get(addr, "/v1/streams/events/messages?from_seq=2&limit=2", &[])
        .await
        .json();
    assert_eq!(seqs(page), [2, 3]);
    let subject = get(addr, "/v1/streams/events/messages?subject=events.a", &[])
        .await
        .json();
    assert_eq!(seqs(subject), [1, 3]);
    let later = get(addr, "/v1/streams/events/messages?subject=events.a&from_seq=2", &[])
        .await
        .json();
    assert_eq!(seqs(later), [3]);
    let pattern = get(addr, "/v1/streams/events/messages?filter=events.c", &[])
        .await
        .json();
    assert_eq!(seqs(pattern), [4]);
    let third = get(addr, "/v1/streams/events/messages/3", &[]).await.json();
    let time = third["time"].as_u64().unwrap();
    let since = get(addr, &format!("/v1/streams/events/messages?from_time={time}"), &[])
        .await
        .json();
    assert_eq!(seqs(since), [3, 4]);
    let rfc3339 = "/v1/streams/events/messages?from_time=1970-01-01T00:00:00Z&limit=1";
    assert_eq!(seqs(get(addr, rfc3339, &[]).await.json()), [1]);
    let last = get(addr, "/v1/streams/events/subjects/events.a/last", &[]).await.json();
    assert_eq!((last["seq"].as_u64(), last["payload"].as_str()), (Some(3), Some("3")));

    assert_error(&get(addr, "/v1/streams/events/messages/9", &[]).await, 404, 2004);
    assert_error(
        &get(addr, "/v1/streams/events/subjects/events.z/last", &[]).await,
        404,
        2004,
    );
    for bad in [
        "/v1/streams/events/messages?from_seq=1&from_time=0",
        "/v1/streams/events/messages?limit=0",
        "/v1/streams/events/messages?limit=1001",
        "/v1/streams/events/messages?limit=ten",
        "/v1/streams/events/messages?from_time=yesterday",
        "/v1/streams/events/messages?subject=events.a&filter=events.b",
        "/v1/streams/events/messages/first",
    ] {
        assert_error(&get(addr, bad, &[]).await, 400, 1004);
    }
}

async fn fetch(addr: SocketAddr, max: u64) -> Vec<Value> {
    let body = json!({"member": "m1", "max": max, "wait_ms": 5000});
    let answer = post(addr, "/v1/streams/orders/consumers/billing/fetch", body).await;
    assert_eq!(answer.status, 200, "{}", answer.text());
    answer.json().as_array().unwrap().clone()
}

async fn settle(addr: SocketAddr, delivery: &Value, settle: Value) -> Response {
    let body = json!({
        "member": "m1",
        "seq": delivery["message"]["seq"],
        "deliveries": delivery["deliveries"],
        "settle": settle,
    });
    post(addr, "/v1/streams/orders/consumers/billing/settle", body).await
}

#[tokio::test]
async fn consumers_are_created_fetched_settled_reset_and_a_nak_is_redelivered() {
    let (addr, _bus) = server().await;
    post(addr, "/v1/streams", json!({"name": "orders", "subjects": ["orders.>"]})).await;
    let created = post(addr, "/v1/streams/orders/consumers", json!({"name": "billing"})).await;
    assert_eq!(created.status, 201, "{}", created.text());
    assert_eq!(created.header("location"), Some("/v1/streams/orders/consumers/billing"));
    let listed = get(addr, "/v1/streams/orders/consumers", &[]).await.json();
    assert_eq!(listed[0]["config"]["name"], "billing");
    let update = json!({"name": "billing", "ack_wait": {"secs": 60, "nanos": 0}});
    let updated = put(addr, "/v1/streams/orders/consumers/billing", update).await;
    assert_eq!(updated.json()["config"]["ack_wait"], json!({"secs": 60, "nanos": 0}));

    publish(addr, "orders.1", "one").await;
    publish(addr, "orders.2", "two").await;
    let deliveries = fetch(addr, 10).await;
    assert_eq!(deliveries.len(), 2);
    assert_eq!(deliveries[0]["message"]["payload"], "one");
    assert_eq!(deliveries[0]["member"], "m1");
    // An ack is the default settle.
    let ack = json!({"member": "m1", "seq": 1, "deliveries": 1});
    assert_eq!(
        post(addr, "/v1/streams/orders/consumers/billing/settle", ack)
            .await
            .status,
        204
    );
    let nak = settle(addr, &deliveries[1], json!({"nak": {"delay": {"secs": 0, "nanos": 0}}})).await;
    assert_eq!(nak.status, 204, "{}", nak.text());
    let again = fetch(addr, 10).await;
    assert_eq!(again.len(), 1);
    assert_eq!(
        (again[0]["message"]["seq"].as_u64(), again[0]["deliveries"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(settle(addr, &again[0], json!("in_progress")).await.status, 204);
    assert_eq!(settle(addr, &again[0], json!("ack")).await.status, 204);
    let info = get(addr, "/v1/streams/orders/consumers/billing", &[]).await.json();
    assert_eq!(
        (info["ack_floor"].as_u64(), info["redelivered"].as_u64()),
        (Some(2), Some(1))
    );

    let reset = post(
        addr,
        "/v1/streams/orders/consumers/billing/reset",
        json!({"to": {"seq": 2}}),
    )
    .await;
    assert_eq!(reset.status, 200, "{}", reset.text());
    let replayed = fetch(addr, 10).await;
    assert_eq!(replayed[0]["message"]["seq"], 2);

    let bad_max = post(
        addr,
        "/v1/streams/orders/consumers/billing/fetch",
        json!({"member": "m1", "max": 0}),
    )
    .await;
    assert_error(&bad_max, 400, 1004);
    assert_eq!(delete(addr, "/v1/streams/orders/consumers/billing").await.status, 204);
    assert_error(&get(addr, "/v1/streams/orders/consumers/billing", &[]).await, 404, 2005);
    assert_error(&fetch_unknown(addr).await, 404, 2005);
}

async fn fetch_unknown(addr: SocketAddr) -> Response {
    post(
        addr,
        "/v1/streams/orders/consumers/nobody/fetch",
        json!({"member": "m1"}),
    )
    .await
}

#[tokio::test]
async fn dead_letters_are_listed_replayed_and_purged() {
    let (addr, _bus) = server().await;
    post(addr, "/v1/streams", json!({"name": "orders", "subjects": ["orders.>"]})).await;
    post(addr, "/v1/streams/orders/consumers", json!({"name": "billing"})).await;
    let letters = "/v1/streams/orders/consumers/billing/dead-letters";
    assert_eq!(get(addr, letters, &[]).await.json(), json!([]));

    publish(addr, "orders.1", "poison").await;
    let delivery = fetch(addr, 1).await.remove(0);
    assert_eq!(
        settle(addr, &delivery, json!({"term": {"reason": "cannot parse"}}))
            .await
            .status,
        204
    );
    let listed = get(addr, &format!("{letters}?limit=10"), &[]).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["payload"], "poison");
    assert_eq!(listed[0]["headers"]["herald-dlq-reason"], "cannot parse");
    assert_eq!(listed[0]["headers"]["herald-dlq-subject"], "orders.1");

    let replayed = request(addr, "POST", &format!("{letters}/replay"), &[], b"").await;
    assert_eq!(replayed.json(), json!({"replayed": 1}));
    assert_eq!(get(addr, letters, &[]).await.json(), json!([]));
    let redelivered = fetch(addr, 1).await.remove(0);
    assert_eq!(redelivered["message"]["seq"], 2, "replayed to the original subject");
    assert_eq!(redelivered["message"]["payload"], "poison");

    settle(addr, &redelivered, json!({"term": {"reason": "still bad"}})).await;
    assert_eq!(delete(addr, letters).await.json(), json!({"purged": 1}));
    assert_eq!(get(addr, letters, &[]).await.json(), json!([]));
    let unknown = get(addr, "/v1/streams/orders/consumers/nobody/dead-letters", &[]).await;
    assert_error(&unknown, 404, 2005);
}

#[tokio::test]
async fn errors_answer_json_with_stable_codes() {
    let (addr, _bus) = server().await;
    assert_error(&get(addr, "/v1/streams/nowhere", &[]).await, 404, 2001);
    assert_error(&get(addr, "/v1/streams/nowhere/messages/1", &[]).await, 404, 2001);
    assert_error(&get(addr, "/v1/streams/nowhere/consumers", &[]).await, 404, 2001);
    let malformed = request(
        addr,
        "POST",
        "/v1/streams",
        &[("content-type", "application/json")],
        b"{\"name\":",
    )
    .await;
    assert_error(&malformed, 400, 1004);
    let wrong_shape = post(addr, "/v1/messages", json!({"payload": "no subject"})).await;
    assert_error(&wrong_shape, 400, 1004);
    let bad_subject = post(addr, "/v1/messages", json!({"subject": "orders..x", "payload": "x"})).await;
    assert_error(&bad_subject, 400, 1004);
    assert_error(&get(addr, "/v1/streams/not.a.name", &[]).await, 400, 1004);
    assert_error(&get(addr, "/v1/tail", &[]).await, 400, 1004);
    let both = get(addr, "/v1/tail?pattern=a.%3E&from_seq=1&from_time=0", &[]).await;
    assert_error(&both, 400, 1004);
}

#[tokio::test]
async fn a_payload_over_the_limit_is_413_and_nothing_is_stored() {
    let limits = Limits::default().max_payload(1024);
    let max_body = 1024 * 8 + (1 << 20);
    let (addr, bus) = server_with(limits).await;
    let big = "x".repeat(1025);
    let expected = json!({"type": "too_large", "size": 1025, "limit": 1024});

    let json_publish = post(addr, "/v1/messages", json!({"subject": "p.x", "payload": big})).await;
    assert_eq!(assert_error(&json_publish, 413, 1005)["detail"], expected);
    let raw = request(addr, "POST", "/v1/subjects/p.x", &[], big.as_bytes()).await;
    assert_eq!(assert_error(&raw, 413, 1005)["detail"], expected);
    let batch = json!([{"subject": "p.x", "payload": "small"}, {"subject": "p.x", "payload": big}]);
    assert_eq!(
        assert_error(&post(addr, "/v1/messages/batch", batch).await, 413, 1005)["detail"],
        expected
    );
    assert!(bus.streams().await.unwrap().is_empty(), "nothing was stored");

    // A body over what any payload needs is refused before it is read ...
    let declared = common::request_head_only(addr, "POST", "/v1/subjects/p.x", 64 << 20).await;
    let error = assert_error(&declared, 413, 1005);
    assert_eq!(
        error["detail"],
        json!({"type": "too_large", "size": 64u64 << 20, "limit": max_body})
    );
    // ... or, with no declared length, once the limit is reached.
    let streamed = common::request_chunked(addr, "POST", "/v1/messages", vec![b' '; 4 << 20], 64 << 10).await;
    assert_error(&streamed, 413, 1005);
    assert!(bus.streams().await.unwrap().is_empty(), "nothing was stored");

    let fits = post(
        addr,
        "/v1/messages",
        json!({"subject": "p.x", "payload": "x".repeat(1024)}),
    )
    .await;
    assert_eq!(fits.status, 200, "{}", fits.text());
}

#[tokio::test]
async fn the_tail_sends_live_messages_as_events() {
    let (addr, _bus) = server().await;
    let mut tail = common::events(addr, "/v1/tail?pattern=orders.%3E", &[]).await;
    assert_eq!(tail.status, 200);
    assert_eq!(
        tail.headers
            .iter()
            .find(|(k, _)| k == "content-type")
            .map(|(_, v)| v.as_str()),
        Some("text/event-stream")
    );
    publish(addr, "payments.1", "not followed").await;
    publish(addr, "orders.1", "created").await;
    let event = tail.expect().await;
    // The id: when the tail started (nanoseconds), then what it sent of each stream.
    let id = event.id.clone().unwrap();
    let (start, sent) = id.split_once(',').unwrap();
    assert!(start.parse::<u64>().is_ok(), "{id}");
    assert_eq!((event.event.as_str(), sent), ("message", "orders:1"));
    let message = event.json();
    assert_eq!(
        (message["subject"].as_str(), message["payload"].as_str()),
        (Some("orders.1"), Some("created"))
    );
    publish(addr, "orders.2", "paid").await;
    assert_eq!(tail.expect().await.id.unwrap(), format!("{start},orders:2"));
}

#[tokio::test]
async fn the_tail_replays_from_a_seq_or_a_time_then_follows() {
    let (addr, _bus) = server().await;
    for n in 1..=3 {
        publish(addr, &format!("orders.{n}"), "x").await;
    }
    let mut from_seq = common::events(addr, "/v1/tail?pattern=orders.*&from_seq=2", &[]).await;
    assert_eq!(from_seq.expect().await.id.as_deref(), Some("orders:2"));
    assert_eq!(from_seq.expect().await.id.as_deref(), Some("orders:3"));
    let third = get(addr, "/v1/streams/orders/messages/3", &[]).await.json();
    let path = format!("/v1/tail?pattern=orders.*&from_time={}", third["time"]);
    let mut from_time = common::events(addr, &path, &[]).await;
    assert_eq!(from_time.expect().await.id.as_deref(), Some("orders:3"));
    publish(addr, "orders.4", "live").await;
    assert_eq!(from_seq.expect().await.id.as_deref(), Some("orders:4"));
    assert_eq!(from_time.expect().await.id.as_deref(), Some("orders:4"));
}

#[tokio::test]
async fn a_reconnecting_tail_resumes_after_its_last_event_id() {
    let (addr, _bus) = server().await;
    for n in 1..=3 {
        publish(addr, &format!("orders.{n}"), "x").await;
    }
    // After the id, whatever `from_seq` says.
    let headers = [("last-event-id", "orders:2")];
    let mut resumed = common::events(addr, "/v1/tail?pattern=orders.%3E&from_seq=1", &headers).await;
    assert_eq!(resumed.expect().await.id.as_deref(), Some("orders:3"));

    // A live tail of several streams drops after two events; meanwhile both
    // streams go on and a third appears. Resumed with the last id, it gets
    // exactly what it had not: nothing twice, nothing missed.
    let mut live = common::events(addr, "/v1/tail?pattern=*.x", &[]).await;
    publish(addr, "left.x", "l1").await;
    publish(addr, "right.x", "r1").await;
    let sent = [live.expect().await, live.expect().await];
    let last = sent[1].id.clone().unwrap();
    assert!(last.ends_with(",left:1,right:1"), "{last}");
    drop(live);
    publish(addr, "left.x", "l2").await;
    publish(addr, "mid.x", "m1").await;
    publish(addr, "right.x", "r2").await;
    let headers = [("last-event-id", last.as_str())];
    let mut again = common::events(addr, "/v1/tail?pattern=*.x", &headers).await;
    let mut payloads = Vec::new();
    for _ in 0..3 {
        payloads.push(again.expect().await.json()["payload"].as_str().unwrap().to_owned());
    }
    payloads.sort();
    assert_eq!(payloads, ["l2", "m1", "r2"]);
    publish(addr, "left.x", "l3").await;
    let next = again.expect().await;
    assert_eq!(next.json()["payload"], "l3");
    assert!(next.id.unwrap().ends_with(",left:3,mid:1,right:2"));

    // An id that says nothing of the pattern's streams: the query's start.
    let headers = [("last-event-id", "left:1")];
    let mut elsewhere = common::events(addr, "/v1/tail?pattern=orders.%3E&from_seq=3", &headers).await;
    assert_eq!(elsewhere.expect().await.id.as_deref(), Some("left:1,orders:3"));

    for bad in ["seven", "12"] {
        let malformed = common::events(addr, "/v1/tail?pattern=orders.%3E", &[("last-event-id", bad)]).await;
        assert_eq!(malformed.status, 400);
        assert_eq!(malformed.json()["code"], 1004);
    }
}

#[tokio::test]
async fn a_tail_that_lagged_behind_retention_gets_an_error_event_and_carries_on() {
    let (addr, _bus) = server().await;
    post(
        addr,
        "/v1/streams",
        json!({"name": "ticks", "subjects": ["ticks.>"], "max_msgs": 2}),
    )
    .await;
    for n in 1..=5 {
        publish(addr, &format!("ticks.{n}"), "t").await;
    }
    let mut tail = common::events(addr, "/v1/tail?pattern=ticks.%3E&from_seq=1", &[]).await;
    let lagged = tail.expect().await;
    assert_eq!(lagged.event, "error");
    let error = lagged.json();
    assert_eq!(error["code"], 4004);
    assert_eq!(
        error["detail"],
        json!({"type": "lagged", "missed": 3, "resume_from": 4})
    );
    assert_eq!(tail.expect().await.id.as_deref(), Some("ticks:4"));
    assert_eq!(tail.expect().await.id.as_deref(), Some("ticks:5"));
}

#[tokio::test]
async fn the_tail_skips_subjects_the_token_may_not_read_and_needs_a_token() {
    let bus = herald::Bus::memory().unwrap();
    let reader =
        Token::new("reader", "r-secret").subscribe(Permissions::new(["orders.>"], ["orders.secret.>"]).unwrap());
    let access = Access::Tokens(vec![Token::new("admin", "a-secret").admin(), reader]);
    let addr = common::start(Server::new(bus.clone()).access(access)).await;

    let anonymous = common::events(addr, "/v1/tail?pattern=orders.%3E", &[]).await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(anonymous.json()["code"], 4005);
    let beyond = common::events(addr, "/v1/tail?pattern=%3E&access_token=r-secret", &[]).await;
    assert_eq!(beyond.status, 403);

    // Browsers' EventSource cannot set headers: the token may come in the query.
    let mut tail = common::events(addr, "/v1/tail?pattern=orders.%3E&access_token=r-secret", &[]).await;
    assert_eq!(tail.status, 200);
    bus.publish("orders.secret.1", "hidden").await.unwrap();
    bus.publish("orders.public.1", "shown").await.unwrap();
    let event = tail.expect().await;
    assert_eq!(
        event.json()["subject"],
        "orders.public.1",
        "the denied subject was skipped"
    );
}

#[tokio::test]
async fn every_endpoint_checks_the_callers_token() {
    let bus = herald::Bus::memory().unwrap();
    let writer = Token::new("writer", "w-secret").publish(Permissions::new(["orders.>"], Vec::<&str>::new()).unwrap());
    let addr = common::start(Server::new(bus.clone()).access(Access::Tokens(vec![writer]))).await;
    let auth = [("authorization", "Bearer w-secret")];
    let body = json!({"subject": "orders.1", "payload": "x"});

    assert_error(&send_json(addr, "POST", "/v1/messages", &[], &body).await, 401, 4005);
    assert_eq!(send_json(addr, "POST", "/v1/messages", &auth, &body).await.status, 200);
    let elsewhere = json!({"subject": "payments.1", "payload": "x"});
    assert_error(
        &send_json(addr, "POST", "/v1/messages", &auth, &elsewhere).await,
        403,
        4005,
    );
    let raw = request(addr, "POST", "/v1/subjects/payments.1", &auth, b"x").await;
    assert_error(&raw, 403, 4005);
    let config = json!({"name": "payments", "subjects": ["payments.>"]});
    assert_error(&send_json(addr, "POST", "/v1/streams", &auth, &config).await, 403, 4005);
    assert_error(&get(addr, "/v1/streams/orders/messages/1", &auth).await, 403, 4005);
    assert_error(
        &request(addr, "DELETE", "/v1/streams/orders", &auth, b"").await,
        403,
        4005,
    );
    // Inspecting is allowed to any token holder.
    assert_eq!(get(addr, "/v1/streams", &auth).await.status, 200);
    assert_eq!(
        bus.streams().await.unwrap().len(),
        1,
        "only the allowed publish stored anything"
    );
}

/// `herald_delivered_messages_total` from `/metrics`.
async fn delivered(addr: SocketAddr) -> u64 {
    let metrics = get(addr, "/metrics", &[]).await.text();
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("herald_delivered_messages_total "))
        .unwrap()
        .parse()
        .unwrap()
}

#[tokio::test]
async fn publishes_fetches_and_tails_are_counted_in_metrics() {
    let (addr, _bus) = server().await;
    let mut tail = common::events(addr, "/v1/tail?pattern=orders.%3E", &[]).await;
    publish(addr, "orders.1", "x").await;
    post(
        addr,
        "/v1/messages",
        json!({"subject": "orders.1", "payload": "x", "id": "same"}),
    )
    .await;
    post(
        addr,
        "/v1/messages",
        json!({"subject": "orders.1", "payload": "x", "id": "same"}),
    )
    .await;
    tail.expect().await;
    tail.expect().await;
    let metrics = get(addr, "/metrics", &[]).await.text();
    assert!(metrics.contains("herald_published_messages_total 2\n"), "{metrics}");
    post(addr, "/v1/streams/orders/consumers", json!({"name": "billing"})).await;
    assert_eq!(fetch(addr, 10).await.len(), 2);
    assert_eq!(delivered(addr).await, 4, "two by the tail, two by the fetch");
}

#[tokio::test]
async fn a_tail_whose_client_reads_slowly_holds_the_server_back() {
    // 100 messages of 256 KiB: 25 MiB, more than the socket buffers between
    // the two ends can hold (a 64 KiB receive buffer, at most 4 MiB to send).
    const COUNT: u64 = 100;
    const AHEAD: u64 = 32;
    let (addr, bus) = server().await;
    let payload = bytes::Bytes::from(vec![b'x'; 256 << 10]);
    for _ in 0..COUNT {
        bus.publish("big.x", payload.clone()).await.unwrap();
    }
    let mut tail = common::events_with_buffer(addr, "/v1/tail?pattern=big.%3E&from_seq=1", &[], Some(64 << 10)).await;
    for read in 1..=COUNT {
        let event = tail.expect().await;
        assert_eq!(event.id, Some(format!("big:{read}")), "in order, none missed");
        if read % 10 == 1 {
            let sent = delivered(addr).await;
            assert!(
                sent <= read + AHEAD,
                "the server ran {sent} messages ahead of a reader at {read}"
            );
        }
    }
    assert_eq!(delivered(addr).await, COUNT);
}

#[tokio::test]
async fn stopping_the_server_ends_open_tails() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = Server::new(herald::Bus::memory().unwrap());
    let serving = tokio::spawn(server.serve(listener, async {
        let _ = stopped.await;
    }));
    let mut tail = common::events(addr, "/v1/tail?pattern=orders.%3E", &[]).await;
    assert_eq!(tail.status, 200);
    stop.send(()).unwrap();
    let end = tokio::time::timeout(std::time::Duration::from_secs(10), tail.next()).await;
    assert_eq!(end.unwrap(), None, "the event stream ends");
    let served = tokio::time::timeout(std::time::Duration::from_secs(10), serving).await;
    served.unwrap().unwrap().unwrap();
}
