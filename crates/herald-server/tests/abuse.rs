//! The server under abuse. Every operation its OpenAPI document lists (so a
//! new route is covered the day it is added) is called with no token, a
//! wrong one, and a narrow token reaching for what it is denied — through
//! wildcards, consumers, reads by seq, dead letters, KV and `$` streams, the
//! SSE tail and the WebSocket protocol — then with malformed, oversized and
//! deeply nested input, then over connections that are slow to say anything
//! and a token that holds more sessions and tails than its share.
//!
//! Nothing may get through, and every refusal must be typed: a 4xx (or a
//! WebSocket error frame) carrying the server's error object, never a 5xx,
//! an empty body or a parser's own words; the server goes on serving and
//! its data is unchanged. A table of attempts per class is printed (run
//! with `--nocapture` to see it) and its zeros asserted.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald::{Bus, StreamConfig};
use herald_server::{Access, Limits, Permissions, Server, Token};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;

const ADMIN: &str = "abuse-admin-secret";
const NARROW: &str = "abuse-narrow-secret";
const WRONG: &str = "abuse-wrong-secret";

/// The largest payload the server under test takes: small, so that
/// oversized bodies are cheap to send.
const MAX_PAYLOAD: usize = 1024;

/// A safety net on every wait, far beyond what any answer takes.
const PATIENCE: Duration = Duration::from_secs(10);

/// The kinds of abuse, one row each in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Class {
    NoToken,
    WrongToken,
    Restricted,
    Malformed,
    Oversized,
    Nested,
    /// Connections held open: heads sent slowly or not at all, idle
    /// keep-alives, one token's sessions and tails past its share.
    Slow,
}

impl Class {
    fn label(self) -> &'static str {
        match self {
            Class::NoToken => "no token",
            Class::WrongToken => "wrong token",
            Class::Restricted => "restricted token",
            Class::Malformed => "malformed",
            Class::Oversized => "oversized",
            Class::Nested => "nested",
            Class::Slow => "slow",
        }
    }
}

/// One class's counts.
#[derive(Debug, Default)]
struct Row {
    attempts: usize,
    /// A caller did what its token (or lack of one) does not allow.
    unauthorized: usize,
    /// Bad input taken as good, or a slow connection kept past its bound.
    accepted: usize,
    /// A refusal without the error object: a 5xx, an empty body, a
    /// connection closed without an answer, parser or internal text.
    untyped: usize,
}

/// Attempts and what went wrong with them.
#[derive(Debug, Default)]
struct Tally {
    rows: BTreeMap<Class, Row>,
    /// Each failure, for the assertion's message.
    failures: Vec<String>,
}

/// What a refusal answered: a status (none when the connection closed
/// without an answer), its content type and body.
#[derive(Debug, Clone)]
struct Answer {
    status: Option<u16>,
    content_type: Option<String>,
    body: Vec<u8>,
}

impl Answer {
    fn of(response: &common::Response) -> Answer {
        Answer {
            status: Some(response.status),
            content_type: response.header("content-type").map(str::to_owned),
            body: response.body.clone(),
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).chars().take(300).collect()
    }

    fn success(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// Words that only a parser, a framework or a crash would put in a message.
const LEAKS: &[&str] = &[
    "serde",
    " at line ",
    " column ",
    "hyper",
    "axum",
    "tungstenite",
    "panicked",
    "RUST_BACKTRACE",
    "Error {",
    "Utf8Error",
    "invalid type:",
    "recursion limit",
    "u64",
    "u32",
    "usize",
    "i64",
    "Option<",
];

/// Why `error` (the error object, from a body or a frame) is not a typed
/// refusal, if it is not.
fn untyped_object(error: &Value) -> Option<String> {
    let Some(object) = error.as_object() else {
        return Some("not a JSON object".to_owned());
    };
    if let Some(key) = object
        .keys()
        .find(|k| !matches!(k.as_str(), "code" | "kind" | "message" | "detail"))
    {
        return Some(format!("unexpected field `{key}`"));
    }
    let code = error["code"].as_u64();
    if !code.is_some_and(|c| (1000..5000).contains(&c)) {
        return Some(format!("code {:?} is not a client error's", error["code"]));
    }
    if error["kind"].as_str().is_none_or(str::is_empty) {
        return Some("no kind".to_owned());
    }
    let message = error["message"].as_str().unwrap_or_default();
    if message.trim().is_empty() {
        return Some("no message".to_owned());
    }
    LEAKS
        .iter()
        .find(|leak| message.contains(*leak))
        .map(|leak| format!("the message leaks `{leak}`"))
}

/// Why `answer` is not a typed refusal, if it is not.
fn untyped(answer: &Answer) -> Option<String> {
    let Some(status) = answer.status else {
        return Some("closed without an answer".to_owned());
    };
    if !(400..500).contains(&status) {
        return Some(format!("status {status}"));
    }
    if !answer
        .content_type
        .as_deref()
        .is_some_and(|t| t.starts_with("application/json"))
    {
        return Some(format!("content type {:?}", answer.content_type));
    }
    let Ok(error) = serde_json::from_slice::<Value>(&answer.body) else {
        return Some("the body is not JSON".to_owned());
    };
    if let Some(why) = untyped_object(&error) {
        return Some(why);
    }
    // The status and the code agree.
    let code = error["code"].as_u64().unwrap();
    let agrees = match status {
        401 | 403 => code == 4005,
        413 => code == 1005,
        431 => code == 1006,
        _ => true,
    };
    (!agrees).then(|| format!("status {status} with code {code}"))
}

impl Tally {
    fn row(&mut self, class: Class) -> &mut Row {
        self.rows.entry(class).or_default()
    }

    /// `answer` to an attempt of `class` that must be refused.
    fn refused(&mut self, class: Class, what: &str, answer: &Answer) {
        self.row(class).attempts += 1;
        if answer.success() {
            let row = self.row(class);
            match class {
                Class::NoToken | Class::WrongToken | Class::Restricted => row.unauthorized += 1,
                _ => row.accepted += 1,
            }
            self.failures.push(format!(
                "{}: {what}: answered {:?} {}",
                class.label(),
                answer.status,
                answer.text()
            ));
            return;
        }
        if let Some(why) = untyped(answer) {
            self.row(class).untyped += 1;
            self.failures
                .push(format!("{}: {what}: untyped ({why}): {}", class.label(), answer.text()));
        }
    }

    /// An attempt whose answer must be exactly `status`, typed.
    fn refused_with(&mut self, class: Class, what: &str, answer: &Answer, status: u16) {
        self.refused(class, what, answer);
        if !answer.success() && answer.status != Some(status) {
            self.failures.push(format!(
                "{}: {what}: expected {status}, got {:?}: {}",
                class.label(),
                answer.status,
                answer.text()
            ));
        }
    }

    /// A WebSocket answer to a frame that must be refused.
    fn refused_frame(&mut self, class: Class, what: &str, frame: Option<&Value>) {
        self.row(class).attempts += 1;
        let Some(frame) = frame else {
            self.row(class).untyped += 1;
            self.failures.push(format!(
                "{}: {what}: the connection closed without an error frame",
                class.label()
            ));
            return;
        };
        if frame["type"] != "error" {
            let row = self.row(class);
            match class {
                Class::NoToken | Class::WrongToken | Class::Restricted => row.unauthorized += 1,
                _ => row.accepted += 1,
            }
            self.failures
                .push(format!("{}: {what}: answered {frame}", class.label()));
            return;
        }
        if let Some(why) = untyped_object(&frame["error"]) {
            self.row(class).untyped += 1;
            self.failures
                .push(format!("{}: {what}: untyped ({why}): {frame}", class.label()));
        }
    }

    /// A failure that is no refusal: data changed, a server stopped serving.
    fn broken(&mut self, class: Class, what: String) {
        self.failures.push(format!("{}: {what}", class.label()));
    }

    fn table(&self) -> String {
        let mut out = format!(
            "{:<18} {:>8} {:>13} {:>9} {:>8}\n",
            "class", "attempts", "unauthorized", "accepted", "untyped"
        );
        for (class, row) in &self.rows {
            out.push_str(&format!(
                "{:<18} {:>8} {:>13} {:>9} {:>8}\n",
                class.label(),
                row.attempts,
                row.unauthorized,
                row.accepted,
                row.untyped
            ));
        }
        out
    }
}

/// The server under abuse and what it holds.
struct World {
    addr: SocketAddr,
    bus: Bus,
    /// The KV bucket's stream and one key's subject.
    kv_stream: String,
    kv_subject: String,
    /// The dead-letter stream of `orders`/`secret`, which holds one message.
    dlq_stream: String,
    /// Every operation of the OpenAPI document.
    operations: Vec<Operation>,
}

/// One operation of the OpenAPI document.
#[derive(Debug, Clone)]
struct Operation {
    id: String,
    method: String,
    path: String,
    /// Served without a token.
    public: bool,
    /// Its request body's media type, when it takes one.
    body: Option<String>,
    /// Its query parameters.
    query: Vec<String>,
}

/// Streams `orders` (a message on `orders.eu.1` and one on the denied
/// `orders.secret.plan`) and `payments`; consumers `orders`/`eu`,
/// `orders`/`secret` (its one message dead-lettered), `orders`/`everything`
/// and `payments`/`billing`; a KV bucket `config`. The `narrow` token may
/// publish and read `orders.>` except `orders.secret.>`; `admin` may do all.
async fn world(limits: Limits) -> World {
    let bus = Bus::memory().unwrap();
    let orders = StreamConfig::new("orders").unwrap().subject_index(true);
    bus.create_stream(orders).await.unwrap();
    bus.create_stream(StreamConfig::new("payments").unwrap()).await.unwrap();
    bus.publish("orders.eu.1", "one").await.unwrap();
    bus.publish("orders.secret.plan", "hidden").await.unwrap();
    bus.publish("payments.sent", "paid").await.unwrap();
    for (stream, name, filter) in [
        ("orders", "eu", Some("orders.eu.>")),
        ("orders", "secret", Some("orders.secret.>")),
        ("orders", "everything", None),
        ("payments", "billing", None),
    ] {
        let builder = bus.consumer(stream, name);
        match filter {
            Some(filter) => builder.filter(filter).create().await.unwrap(),
            None => builder.create().await.unwrap(),
        };
    }
    let secret = bus.bind_consumer("orders", "secret").await.unwrap();
    let fetched = secret.fetch(1, Duration::ZERO).await.unwrap();
    fetched[0].term("abuse fixture").await.unwrap();
    let dlq_stream = herald_core::dead_letter_stream(
        &herald::StreamName::new("orders").unwrap(),
        &herald::ConsumerName::new("secret").unwrap(),
    )
    .unwrap()
    .to_string();
    let kv = bus.kv("config").open().await.unwrap();
    kv.put("db", "the-database-password").await.unwrap();
    let kv_stream = kv.stream().to_string();
    let kv_subject = format!("{kv_stream}.db");

    let narrow = Permissions::new(["orders.>"], ["orders.secret.>"]).unwrap();
    let access = Access::Tokens(vec![
        Token::new("narrow", NARROW).publish(narrow.clone()).subscribe(narrow),
        Token::new("admin", ADMIN).admin(),
    ]);
    let addr = common::start(Server::new(bus.clone()).access(access).limits(limits).unwrap()).await;
    let document = common::get(addr, "/v1/openapi.json", &[]).await.json();
    World {
        addr,
        bus,
        kv_stream,
        kv_subject,
        dlq_stream,
        operations: operations(&document),
    }
}

fn operations(document: &Value) -> Vec<Operation> {
    let mut all = Vec::new();
    for (path, item) in document["paths"].as_object().unwrap() {
        for method in ["get", "put", "post", "delete", "patch"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let public = operation["security"]
                .as_array()
                .is_some_and(|s| s.iter().any(|r| r.as_object().is_some_and(|r| r.is_empty())));
            let body = operation["requestBody"]["content"]
                .as_object()
                .and_then(|content| content.keys().next().cloned());
            let query = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| p["in"] == "query")
                .map(|p| p["name"].as_str().unwrap().to_owned())
                .collect();
            all.push(Operation {
                id: operation["operationId"].as_str().unwrap().to_owned(),
                method: method.to_uppercase(),
                path: path.clone(),
                public,
                body,
                query,
            });
        }
    }
    assert!(all.len() >= 25, "the document lists {} operations", all.len());
    all
}

/// `path` with its parameters filled in.
fn fill(path: &str, stream: &str, consumer: &str, seq: &str, subject: &str) -> String {
    path.replace("{stream}", stream)
        .replace("{consumer}", consumer)
        .replace("{seq}", seq)
        .replace("{subject}", subject)
}

/// `$` as a URL writes it in a path.
fn url(name: &str) -> String {
    name.replace('$', "%24").replace('>', "%3E")
}

/// A request and its whole answer; a tail's events are not waited for (an
/// answer 200 is all there is to know).
async fn call(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let call = async {
        if method == "GET" && path.starts_with("/v1/tail") {
            let events = common::events(addr, path, headers).await;
            let content_type = events
                .headers
                .iter()
                .find(|(k, _)| k == "content-type")
                .map(|(_, v)| v.clone());
            return Answer {
                status: Some(events.status),
                content_type,
                body: events.body,
            };
        }
        Answer::of(&common::request(addr, method, path, headers, body).await)
    };
    tokio::time::timeout(PATIENCE, call)
        .await
        .unwrap_or_else(|_| panic!("{method} {path}: no answer within {PATIENCE:?}"))
}

/// Sends `body` to `operation` at `path` and counts the answer as a
/// refusal of the class, which must have `status`.
#[allow(clippy::too_many_arguments)]
async fn expect_refused(
    world: &World,
    tally: &mut Tally,
    class: Class,
    operation: &Operation,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    what: &str,
    status: u16,
) {
    let answer = call(world.addr, &operation.method, path, headers, body).await;
    tally.refused_with(class, what, &answer, status);
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A valid body for each operation that takes one, so that what refuses it
/// is the token and nothing else.
fn sample_body(operation: &Operation) -> Value {
    match operation.id.as_str() {
        "create_stream" => json!({"name": "intruder", "subjects": ["intruder.>"]}),
        "update_stream" => json!({"name": "orders", "subjects": ["orders.>"], "max_msgs": 1}),
        "purge_stream" => json!({"all": true}),
        "publish" => json!({"subject": "orders.eu.9", "payload": "x"}),
        "publish_batch" => json!([{"subject": "orders.eu.9", "payload": "x"}]),
        "create_consumer" => json!({"name": "intruder"}),
        "update_consumer" => json!({"name": "eu", "filters": ["orders.>"]}),
        "reset_consumer" => json!({"to": {"seq": 1}}),
        "fetch" => json!({"member": "m", "max": 10, "wait_ms": 0}),
        "settle" => json!({"member": "m", "seq": 1, "deliveries": 1}),
        "settle_batch" => json!({"member": "m", "items": [{"seq": 1, "deliveries": 1}]}),
        _ => json!({}),
    }
}

/// The sample body as text, or none for an operation without a body.
fn body_text(operation: &Operation) -> String {
    match operation.body {
        Some(_) => sample_body(operation).to_string(),
        None => String::new(),
    }
}

/// Request headers.
type Headers<'a> = Vec<(&'a str, &'a str)>;

/// What the data looks like, to show that refusals change nothing: each
/// stream's state, each consumer's delivered and acked counts, the KV value.
async fn snapshot(world: &World) -> Value {
    let mut streams = BTreeMap::new();
    for info in world.bus.streams().await.unwrap() {
        let name = info.config.name.to_string();
        let mut consumers = BTreeMap::new();
        for consumer in world.bus.backend().list_consumers(&info.config.name).await.unwrap() {
            consumers.insert(
                consumer.config.name.to_string(),
                json!([consumer.delivered, consumer.ack_floor, consumer.config.filters]),
            );
        }
        streams.insert(
            name,
            json!({"state": serde_json::to_value(&info.state).unwrap(), "config": serde_json::to_value(&info.config).unwrap(), "consumers": consumers}),
        );
    }
    let kv = world.bus.kv("config").open().await.unwrap();
    let value = kv.get("db").await.unwrap().map(|e| e.value);
    json!({"streams": streams, "kv": format!("{value:?}")})
}

/// The server still answers a good request, and its data is as `before`.
async fn still_serving(world: &World, tally: &mut Tally, class: Class, after: &str, before: &Value) {
    let admin = bearer(ADMIN);
    let good = call(
        world.addr,
        "GET",
        "/v1/streams/orders",
        &[("authorization", &admin)],
        b"",
    )
    .await;
    if good.status != Some(200) {
        tally.broken(class, format!("after {after}: a good request got {:?}", good.status));
    }
    let now = snapshot(world).await;
    if &now != before {
        tally.broken(class, format!("after {after}: the data changed:\n{before}\n{now}"));
    }
}

#[test]
fn nothing_gets_through_and_every_refusal_is_typed() {
    let mut tally = Tally::default();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let world = world(Limits::default().max_payload(MAX_PAYLOAD)).await;
        without_a_valid_token(&world, &mut tally).await;
        restricted(&world, &mut tally).await;
        malformed(&world, &mut tally).await;
        oversized(&world, &mut tally).await;
        nested(&world, &mut tally).await;
        held_per_token(&mut tally).await;
    });
    drop(runtime);
    // The slow class runs on paused time: the server's header and idle
    // timers fire as soon as nothing else is left to do.
    let paused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    paused.block_on(slow(&mut tally));

    println!("\n{}", tally.table());
    for failure in &tally.failures {
        println!("FAILED {failure}");
    }
    for class in [
        Class::NoToken,
        Class::WrongToken,
        Class::Restricted,
        Class::Malformed,
        Class::Oversized,
        Class::Nested,
        Class::Slow,
    ] {
        assert!(
            tally.rows.get(&class).is_some_and(|r| r.attempts > 0),
            "no {} attempts",
            class.label()
        );
    }
    let totals = tally.rows.values().fold((0, 0, 0), |(u, a, t), r| {
        (u + r.unauthorized, a + r.accepted, t + r.untyped)
    });
    assert_eq!(totals, (0, 0, 0), "unauthorized, accepted, untyped:\n{}", tally.table());
    assert!(
        tally.failures.is_empty(),
        "{} failures:\n{}",
        tally.failures.len(),
        tally.failures.join("\n")
    );
}

/// Every operation that needs a token, with none and with wrong ones: 401.
async fn without_a_valid_token(world: &World, tally: &mut Tally) {
    let before = snapshot(world).await;
    let wrong = bearer(WRONG);
    for operation in &world.operations {
        let path = fill(&operation.path, "orders", "eu", "1", "orders.eu.1");
        let path = if operation.id == "tail" {
            format!("{path}?pattern=orders.eu.%3E")
        } else {
            path
        };
        let body = body_text(operation);
        let what = format!("{} {}", operation.method, path);
        if operation.public {
            let answer = call(world.addr, &operation.method, &path, &[], body.as_bytes()).await;
            assert_eq!(answer.status, Some(200), "{what} is public");
            continue;
        }
        let separator = if path.contains('?') { '&' } else { '?' };
        let tries: Vec<(Class, String, Headers<'_>)> = vec![
            (Class::NoToken, path.clone(), vec![]),
            (Class::NoToken, path.clone(), vec![("authorization", "Bearer")]),
            (Class::NoToken, path.clone(), vec![("authorization", "Bearer ")]),
            (
                Class::NoToken,
                path.clone(),
                vec![("authorization", "Basic YWRtaW46YWRtaW4=")],
            ),
            (Class::NoToken, format!("{path}{separator}access_token="), vec![]),
            (Class::WrongToken, path.clone(), vec![("authorization", &wrong)]),
            (
                Class::WrongToken,
                path.clone(),
                vec![("authorization", "bearer abuse-admin-secretX")],
            ),
            // Another token's hash is not its secret.
            (
                Class::WrongToken,
                path.clone(),
                vec![(
                    "authorization",
                    "Bearer 8a3b5f3c1e0bd2e6d0e8a1a9f0c4b8f7e2d1c0b9a8f7e6d5c4b3a2f1e0d9c8b7",
                )],
            ),
            (
                Class::WrongToken,
                format!("{path}{separator}access_token={WRONG}"),
                vec![],
            ),
            // A wrong token in the header is not rescued by a right one in the query.
            (
                Class::WrongToken,
                format!("{path}{separator}access_token={ADMIN}"),
                vec![("authorization", &wrong)],
            ),
        ];
        for (class, path, headers) in tries {
            expect_refused(
                world,
                tally,
                class,
                operation,
                &path,
                &headers,
                body.as_bytes(),
                &format!("{what} {headers:?}"),
                401,
            )
            .await;
        }
    }
    // The routes outside the document: metrics and the WebSocket upgrade.
    for (class, headers) in [
        (Class::NoToken, vec![]),
        (Class::WrongToken, vec![("authorization", wrong.as_str())]),
    ] {
        let answer = call(world.addr, "GET", "/metrics", &headers, b"").await;
        tally.refused_with(class, "GET /metrics", &answer, 401);
        let upgrade = [
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        let mut all = upgrade.to_vec();
        all.extend(headers.iter().copied());
        let answer = call(world.addr, "GET", "/v1/ws", &all, b"").await;
        tally.refused_with(class, "the WebSocket upgrade", &answer, 401);
        let url = format!("ws://{}/v1/ws", world.addr);
        let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
        if let Some((_, value)) = headers.first() {
            request.headers_mut().insert("authorization", value.parse().unwrap());
        }
        tally.row(class).attempts += 1;
        if tokio_tungstenite::connect_async(request).await.is_ok() {
            tally.row(class).unauthorized += 1;
            tally.broken(class, "a WebSocket session opened".to_owned());
        }
    }
    still_serving(world, tally, Class::NoToken, "calls without a valid token", &before).await;
}

/// The requests through which the narrow token reaches for what it is
/// denied, for one operation; empty for operations every token may use.
fn denied_forms(world: &World, operation: &Operation) -> Vec<(String, Value)> {
    let (kv, kv_subject, dlq) = (url(&world.kv_stream), url(&world.kv_subject), url(&world.dlq_stream));
    let at =
        |stream: &str, consumer: &str, seq: &str, subject: &str| fill(&operation.path, stream, consumer, seq, subject);
    let none = Value::Null;
    match operation.id.as_str() {
        // Any valid token may list and inspect; the document is public.
        "list_streams" | "stream_info" | "list_consumers" | "consumer_info" | "openapi" => vec![],
        "create_stream" => vec![
            (at("", "", "", ""), sample_body(operation)),
            (
                at("", "", "", ""),
                json!({"name": "shadow", "subjects": ["orders.secret.>"]}),
            ),
        ],
        "update_stream" => vec![
            (at("orders", "", "", ""), sample_body(operation)),
            (
                at(&kv, "", "", ""),
                json!({"name": world.kv_stream, "subjects": [format!("{}.>", world.kv_stream)]}),
            ),
        ],
        "delete_stream" => vec![
            (at("orders", "", "", ""), none.clone()),
            (at(&kv, "", "", ""), none.clone()),
            (at(&dlq, "", "", ""), none.clone()),
        ],
        "purge_stream" => vec![
            (at("orders", "", "", ""), json!({"all": true})),
            (at("orders", "", "", ""), json!({"subject": "orders.secret.plan"})),
            (at(&kv, "", "", ""), json!({"all": true})),
        ],
        "publish" => [
            "orders.secret.plan",
            "orders.secret.new.deep",
            "payments.sent",
            world.kv_subject.as_str(),
            "$dlq.orders.secret",
            "$kv-config.db",
            "orders.*",
            "orders.>",
            ">",
        ]
        .iter()
        .map(|subject| (at("", "", "", ""), json!({"subject": subject, "payload": "x"})))
        .collect(),
        "publish_batch" => vec![
            (
                at("", "", "", ""),
                json!([{"subject": "orders.eu.9", "payload": "ok"}, {"subject": "orders.secret.plan", "payload": "x"}]),
            ),
            (
                at("", "", "", ""),
                json!([{"subject": world.kv_subject, "payload": "x"}]),
            ),
        ],
        "publish_raw" => ["orders.secret.plan", "payments.sent", kv_subject.as_str(), "orders.%2A"]
            .iter()
            .map(|subject| (at("", "", "", subject), none.clone()))
            .collect(),
        "get_message" => vec![
            (at("orders", "", "2", ""), none.clone()),
            // Seq 1 is on an allowed subject, but a read by seq reads the stream.
            (at("orders", "", "1", ""), none.clone()),
            (at("payments", "", "1", ""), none.clone()),
            (at(&kv, "", "1", ""), none.clone()),
            (at(&dlq, "", "1", ""), none.clone()),
        ],
        "read_messages" => {
            let mut forms: Vec<(String, Value)> = [
                "from_seq=1",
                "filter=orders.%3E",
                "filter=orders.secret.*",
                "filter=*.secret.%3E",
                "filter=%3E",
                "subject=orders.secret.plan",
            ]
            .iter()
            .map(|query| (format!("{}?{query}", at("orders", "", "", "")), none.clone()))
            .collect();
            for stream in ["payments", kv.as_str(), dlq.as_str()] {
                forms.push((format!("{}?from_seq=1", at(stream, "", "", "")), none.clone()));
            }
            forms
        }
        "last_message" => vec![
            (at("orders", "", "", "orders.secret.plan"), none.clone()),
            (at("orders", "", "", "orders.*"), none.clone()),
            (at("orders", "", "", "orders.%3E"), none.clone()),
            (at("payments", "", "", "payments.sent"), none.clone()),
            (at(&kv, "", "", &kv_subject), none.clone()),
        ],
        "create_consumer" => vec![
            (
                at("orders", "", "", ""),
                json!({"name": "sneaky", "filters": ["orders.secret.>"]}),
            ),
            (at("orders", "", "", ""), json!({"name": "sneaky"})),
            (at(&kv, "", "", ""), json!({"name": "sneaky"})),
        ],
        "update_consumer" => vec![
            (at("orders", "eu", "", ""), sample_body(operation)),
            (
                at("orders", "secret", "", ""),
                json!({"name": "secret", "filters": ["orders.secret.>"]}),
            ),
        ],
        "delete_consumer" => vec![
            (at("orders", "eu", "", ""), none.clone()),
            (at("orders", "secret", "", ""), none.clone()),
        ],
        "reset_consumer" => vec![
            (at("orders", "secret", "", ""), sample_body(operation)),
            (at("orders", "eu", "", ""), sample_body(operation)),
        ],
        "fetch" | "settle" | "settle_batch" => {
            [("orders", "secret"), ("orders", "everything"), ("payments", "billing")]
                .iter()
                .map(|(stream, consumer)| (at(stream, consumer, "", ""), sample_body(operation)))
                .collect()
        }
        "dead_letters" | "replay_dead_letters" | "purge_dead_letters" => vec![
            (at("orders", "secret", "", ""), none.clone()),
            (at("orders", "eu", "", ""), none.clone()),
        ],
        "tail" => [
            ">",
            "orders.secret.%3E",
            "payments.%3E",
            "*.secret.%3E",
            "%24kv-config.%3E",
            "%24dlq.%3E",
            "*.%3E",
        ]
        .iter()
        .map(|pattern| {
            (
                format!("{}?pattern={pattern}&from_seq=1", at("", "", "", "")),
                none.clone(),
            )
        })
        .collect(),
        other => panic!("no abuse case for the operation `{other}`: add its denied forms to this test"),
    }
}

/// The narrow token reaching past its grants, over HTTP, SSE and WebSocket.
async fn restricted(world: &World, tally: &mut Tally) {
    tail_skips_what_it_may_not_see(world, tally).await;
    subscription_skips_what_it_may_not_see(world, tally).await;
    let before = snapshot(world).await;
    let narrow = bearer(NARROW);
    for operation in &world.operations {
        for (path, body) in denied_forms(world, operation) {
            let body = if body.is_null() {
                Vec::new()
            } else {
                body.to_string().into_bytes()
            };
            let what = format!("{} {path}", operation.method);
            let answer = call(
                world.addr,
                &operation.method,
                &path,
                &[("authorization", &narrow)],
                &body,
            )
            .await;
            tally.refused(Class::Restricted, &what, &answer);
            // The same with the token in the query string.
            let separator = if path.contains('?') { '&' } else { '?' };
            let path = format!("{path}{separator}access_token={NARROW}");
            let answer = call(world.addr, &operation.method, &path, &[], &body).await;
            tally.refused(Class::Restricted, &format!("{what} (token in the query)"), &answer);
        }
    }
    over_websocket(world, tally).await;
    still_serving(world, tally, Class::Restricted, "the narrow token's attempts", &before).await;
}

/// A tail the narrow token may open (`orders.>`) replays and follows only
/// what it may read: the secret message is stored and never sent.
async fn tail_skips_what_it_may_not_see(world: &World, tally: &mut Tally) {
    let narrow = bearer(NARROW);
    let mut tail = common::events(
        world.addr,
        "/v1/tail?pattern=orders.%3E&from_seq=1",
        &[("authorization", &narrow)],
    )
    .await;
    assert_eq!(tail.status, 200);
    // A marker after the secret: everything before it has been decided.
    let marker = world.bus.publish("orders.eu.marker", "end").await.unwrap();
    loop {
        let event = tail.expect().await;
        let message = event.json();
        tally.row(Class::Restricted).attempts += 1;
        let subject = message["subject"].as_str().unwrap_or_default().to_owned();
        if subject.starts_with("orders.secret.") {
            tally.row(Class::Restricted).unauthorized += 1;
            tally.broken(Class::Restricted, format!("the tail sent {subject}"));
        }
        if message["seq"] == marker.seq {
            break;
        }
    }
    // The marker is the one thing published here: take it back out.
    world
        .bus
        .purge_stream(
            "orders",
            herald::Purge::subject(herald::Subject::new("orders.eu.marker").unwrap()),
        )
        .await
        .unwrap();
}

async fn ws_narrow(addr: SocketAddr) -> common::Socket {
    let url = format!("ws://{addr}/v1/ws");
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request
        .headers_mut()
        .insert("authorization", bearer(NARROW).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(common::ws_next(&mut socket).await["type"], "hello");
    socket
}

/// The next text frame as JSON, or `None` once the connection is closed.
async fn ws_frame(socket: &mut common::Socket) -> Option<Value> {
    let next = async {
        loop {
            match socket.next().await? {
                Ok(WsMessage::Text(text)) => return serde_json::from_str(text.as_str()).ok(),
                Ok(WsMessage::Close(_)) | Err(_) => return None,
                Ok(_) => continue,
            }
        }
    };
    tokio::time::timeout(PATIENCE, next)
        .await
        .expect("a frame within the patience")
}

async fn over_websocket(world: &World, tally: &mut Tally) {
    let mut socket = ws_narrow(world.addr).await;
    let (kv, kv_subject, dlq) = (&world.kv_stream, &world.kv_subject, &world.dlq_stream);
    let frames = [
        json!({"op": "subscribe", "sub": 1, "pattern": ">"}),
        json!({"op": "subscribe", "sub": 2, "pattern": "orders.secret.>"}),
        json!({"op": "subscribe", "sub": 3, "pattern": "*.secret.>", "from": {"seq": 1}}),
        json!({"op": "subscribe", "sub": 4, "pattern": format!("{kv}.>")}),
        json!({"op": "subscribe", "sub": 5, "pattern": "$dlq.>"}),
        json!({"op": "get_message", "stream": "orders", "seq": 2}),
        json!({"op": "get_message", "stream": kv, "seq": 1}),
        json!({"op": "get_message", "stream": dlq, "seq": 1}),
        json!({"op": "read_range", "stream": "orders", "range": {"from": {"seq": 1}, "limit": 10}}),
        json!({"op": "read_range", "stream": "orders", "range": {"from": {"seq": 1}, "filter": ["orders.secret.>"], "limit": 10}}),
        json!({"op": "read_subject", "stream": "orders", "subject": "orders.secret.plan", "from_seq": 1, "limit": 10}),
        json!({"op": "last_message", "stream": kv, "subject": kv_subject}),
        json!({"op": "fetch", "stream": "orders", "consumer": "secret", "member": "m", "max": 10, "wait_ms": 0}),
        json!({"op": "fetch", "stream": "orders", "consumer": "everything", "member": "m", "max": 10, "wait_ms": 0}),
        json!({"op": "settle", "stream": "orders", "consumer": "secret", "member": "m", "seq": 2, "deliveries": 1, "settle": "ack"}),
        json!({"op": "reset_consumer", "stream": "orders", "consumer": "secret", "to": {"seq": 1}}),
        json!({"op": "publish", "message": {"subject": "orders.secret.plan", "payload": "x"}}),
        json!({"op": "publish", "message": {"subject": kv_subject, "payload": "x"}}),
        json!({"op": "publish_batch", "messages": [{"subject": "orders.eu.9", "payload": "x"}, {"subject": "payments.x", "payload": "x"}]}),
        json!({"op": "create_stream", "config": {"name": "intruder"}}),
        json!({"op": "delete_stream", "stream": dlq}),
        json!({"op": "purge_stream", "stream": "orders", "purge": {"all": true}}),
        json!({"op": "delete_consumer", "stream": "orders", "consumer": "eu"}),
        json!({"op": "serve", "responder": 1, "pattern": "orders.>"}),
        json!({"op": "request", "subject": "payments.charge", "payload": "x", "timeout_ms": 100}),
    ];
    for (id, mut frame) in frames.into_iter().enumerate() {
        frame["id"] = json!(id + 1);
        common::ws_send(&mut socket, &frame).await;
        let answer = ws_frame(&mut socket).await;
        tally.refused_frame(Class::Restricted, &format!("WebSocket {frame}"), answer.as_ref());
    }
}

/// A subscription the narrow token may make (`orders.>`) replays and
/// follows only what it may read.
async fn subscription_skips_what_it_may_not_see(world: &World, tally: &mut Tally) {
    let mut socket = ws_narrow(world.addr).await;
    common::ws_send(
        &mut socket,
        &json!({"id": 100, "op": "subscribe", "sub": 9, "pattern": "orders.>", "from": {"seq": 1}}),
    )
    .await;
    let marker = world.bus.publish("orders.eu.marker", "end").await.unwrap();
    loop {
        let frame = ws_frame(&mut socket).await.expect("the session goes on");
        if frame["type"] != "message" {
            continue;
        }
        tally.row(Class::Restricted).attempts += 1;
        let subject = frame["message"]["subject"].as_str().unwrap_or_default().to_owned();
        if subject.starts_with("orders.secret.") {
            tally.row(Class::Restricted).unauthorized += 1;
            tally.broken(Class::Restricted, format!("a subscription sent {subject}"));
        }
        if frame["message"]["seq"] == marker.seq {
            break;
        }
    }
    world
        .bus
        .purge_stream(
            "orders",
            herald::Purge::subject(herald::Subject::new("orders.eu.marker").unwrap()),
        )
        .await
        .unwrap();
}

/// Bodies no operation takes: broken JSON, other types, invalid UTF-8.
const BAD_BODIES: &[&[u8]] = &[
    b"",
    b"   ",
    b"{",
    b"nul",
    b"[1,",
    b"{\"a\":1}}",
    b"{\"a\" 1}",
    b"{'single': 'quotes'}",
    b"\xff\xfe\xfd",
    b"{\"name\": \"\xff\xfe\"}",
    b"\"just a string\"",
    b"12345678901234567890123456789",
    b"1e999",
    b"null",
    b"true",
    b"{\"zzz_unknown\": 1}",
];

/// Bad values for a path parameter, by its name.
fn bad_path_values(name: &str) -> &'static [&'static str] {
    match name {
        "stream" | "consumer" => &["bad%20name", "%FF%FE", "a.b", "%2E%2E", "a*", "%3E"],
        "seq" => &["abc", "-1", "0x10", "1.5", "99999999999999999999999", "%FF"],
        "subject" => &["a..b", ".a", "a.", "%FF%FE", "a%20b"],
        other => panic!("no bad values for the path parameter `{other}`"),
    }
}

/// Bad values for a query parameter, by its name.
fn bad_query_values(name: &str) -> &'static [&'static str] {
    match name {
        "limit" => &["abc", "-1", "0", "1.5", "99999999999999999999999", "%zz"],
        "from_seq" => &["abc", "-1", "99999999999999999999999", "1e3"],
        "from_time" => &["yesterday", "1969-12-31T23:59:59Z", "2026-13-45T99:99:99Z", "-5"],
        "pattern" | "filter" => &["a..b", "a.>.b", "%FF%FE", ""],
        "subject" => &["a..b", "orders.*", "%FF"],
        other => panic!("no bad values for the query parameter `{other}`"),
    }
}

/// A valid query for an operation with required parameters.
fn base_query(operation: &Operation) -> &'static str {
    match operation.id.as_str() {
        "tail" => "pattern=orders.%3E",
        _ => "",
    }
}

/// Malformed input on every operation, as an admin (so that the input,
/// not the token, is what gets refused), then the claims a manual probe made.
async fn malformed(world: &World, tally: &mut Tally) {
    let before = snapshot(world).await;
    let admin = bearer(ADMIN);
    let auth = [("authorization", admin.as_str())];
    let class = Class::Malformed;
    for operation in &world.operations {
        let good_path = fill(&operation.path, "orders", "eu", "1", "orders.eu.1");
        // Bodies.
        if operation.body.as_deref() == Some("application/json") {
            for body in BAD_BODIES {
                expect_refused(
                    world,
                    tally,
                    class,
                    operation,
                    &good_path,
                    &auth,
                    body,
                    &format!(
                        "{} {good_path} with {:?}",
                        operation.method,
                        String::from_utf8_lossy(body)
                    ),
                    400,
                )
                .await;
            }
            // The wrong shape: an object for a list, a list for an object.
            let sample = sample_body(operation);
            let wrong = if sample.is_array() {
                json!({"subject": "orders.eu.1"})
            } else {
                json!([sample])
            };
            expect_refused(
                world,
                tally,
                class,
                operation,
                &good_path,
                &auth,
                wrong.to_string().as_bytes(),
                &format!("{} {good_path} with {wrong}", operation.method),
                400,
            )
            .await;
            // Each field of the sample with a value of the wrong type.
            if let Some(fields) = sample.as_object() {
                for field in fields.keys() {
                    let mut body = sample.clone();
                    body[field] = json!({"nested": [true]});
                    expect_refused(
                        world,
                        tally,
                        class,
                        operation,
                        &good_path,
                        &auth,
                        body.to_string().as_bytes(),
                        &format!("{} {good_path} with {body}", operation.method),
                        400,
                    )
                    .await;
                }
                // A typo of a field.
                if let Some(field) = fields.keys().next() {
                    let mut body = sample.as_object().unwrap().clone();
                    let value = body.remove(field).unwrap();
                    body.insert(format!("{field}x"), value);
                    let body = Value::Object(body);
                    expect_refused(
                        world,
                        tally,
                        class,
                        operation,
                        &good_path,
                        &auth,
                        body.to_string().as_bytes(),
                        &format!("{} {good_path} with {body}", operation.method),
                        400,
                    )
                    .await;
                }
            }
        }
        // Path parameters, one at a time.
        for name in ["stream", "consumer", "seq", "subject"] {
            if !operation.path.contains(&format!("{{{name}}}")) {
                continue;
            }
            for bad in bad_path_values(name) {
                let (mut stream, mut consumer, mut seq, mut subject) = ("orders", "eu", "1", "orders.eu.1");
                match name {
                    "stream" => stream = bad,
                    "consumer" => consumer = bad,
                    "seq" => seq = bad,
                    _ => subject = bad,
                }
                let path = fill(&operation.path, stream, consumer, seq, subject);
                let path = match base_query(operation) {
                    "" => path,
                    query => format!("{path}?{query}"),
                };
                let body = body_text(operation);
                let answer = call(world.addr, &operation.method, &path, &auth, body.as_bytes()).await;
                // A name that cannot exist may be answered 404 as well as 400.
                tally.refused(class, &format!("{} {path}", operation.method), &answer);
            }
        }
        // Query parameters: a typo of each, a parameter no route takes, bad values.
        let body = body_text(operation);
        let base = base_query(operation);
        let joined = |extra: &str| match base {
            "" => format!("{good_path}?{extra}"),
            base => format!("{good_path}?{base}&{extra}"),
        };
        let mut queries: Vec<String> = vec![joined("limt=10"), joined("a%5Bb%5D=1"), joined("%zz=1")];
        for name in &operation.query {
            queries.push(joined(&format!("{name}x=1")));
            for bad in bad_query_values(name) {
                let query = if name == "pattern" {
                    format!("pattern={bad}")
                } else {
                    match base {
                        "" => format!("{name}={bad}"),
                        base => format!("{base}&{name}={bad}"),
                    }
                };
                queries.push(format!("{good_path}?{query}"));
            }
        }
        if operation.id == "read_messages" {
            queries.push(format!("{good_path}?from_seq=1&from_time=1"));
            queries.push(format!("{good_path}?filter=orders.%3E&subject=orders.eu.1"));
        }
        if operation.id == "tail" {
            queries.push(format!("{good_path}?pattern=orders.%3E&from_seq=1&from_time=1"));
            queries.push(good_path.clone());
        }
        for path in queries {
            expect_refused(
                world,
                tally,
                class,
                operation,
                &path,
                &auth,
                body.as_bytes(),
                &format!("{} {path}", operation.method),
                400,
            )
            .await;
        }
        // A method the route does not take.
        let answer = call(world.addr, "PATCH", &good_path, &auth, b"{}").await;
        tally.refused_with(class, &format!("PATCH {good_path}"), &answer, 405);
    }
    for path in [
        "/v1/nope",
        "/v1/streams/orders/nope",
        "/nope",
        "/v1/streams/orders/messages/1/extra",
        "/v1/",
        "/v2/streams",
    ] {
        let answer = call(world.addr, "GET", path, &auth, b"").await;
        tally.refused_with(class, &format!("GET {path}"), &answer, 404);
    }
    // A plain GET of the WebSocket endpoint.
    let answer = call(world.addr, "GET", "/v1/ws", &auth, b"").await;
    tally.refused_with(class, "GET /v1/ws without an upgrade", &answer, 426);
    probed_claims(world, tally).await;
    bad_values(world, tally).await;
    broken_http(world, tally).await;
    malformed_frames(world, tally).await;
    still_serving(world, tally, class, "malformed input", &before).await;
}

/// What a manual probe found, each sent again.
async fn probed_claims(world: &World, tally: &mut Tally) {
    let admin = bearer(ADMIN);
    let auth = [("authorization", admin.as_str())];
    let class = Class::Malformed;
    let attempts = [
        // (1) Both payload fields, and the name the probe used.
        (
            "/v1/messages",
            json!({"subject": "orders.eu.7", "payload": "x", "payload_b64": "eA=="}),
        ),
        (
            "/v1/messages",
            json!({"subject": "orders.eu.7", "payload": "x", "payload_base64": "eA=="}),
        ),
        (
            "/v1/messages",
            json!({"subject": "orders.eu.7", "payload_base64": "eA=="}),
        ),
        (
            "/v1/messages/batch",
            json!([{"subject": "orders.eu.7", "payload": "x", "payload_b64": "eA=="}]),
        ),
        // (2) A duration whose nanos are over a second.
        (
            "/v1/streams/orders/consumers",
            json!({"name": "n1", "ack_wait": {"secs": 1, "nanos": 1_000_000_000u64}}),
        ),
        (
            "/v1/streams/orders/consumers",
            json!({"name": "n2", "ack_wait": {"secs": 0, "nanos": 4_000_000_000u64}}),
        ),
        (
            "/v1/streams/orders/consumers",
            json!({"name": "n3", "backoff": [{"secs": 1, "nanos": 1_500_000_000u64}]}),
        ),
        (
            "/v1/streams",
            json!({"name": "n4", "duplicate_window": {"secs": 1, "nanos": 1_000_000_000u64}}),
        ),
        // (3) A max_age of u64::MAX seconds, and past any bound.
        (
            "/v1/streams",
            json!({"name": "n5", "max_age": {"secs": u64::MAX, "nanos": 0}}),
        ),
        (
            "/v1/streams",
            json!({"name": "n6", "max_age": {"secs": 36_500u64 * 24 * 3600 + 1, "nanos": 0}}),
        ),
        (
            "/v1/streams/orders/consumers",
            json!({"name": "n7", "ack_wait": {"secs": u64::MAX, "nanos": 999_999_999}}),
        ),
    ];
    for (path, body) in attempts {
        let answer = call(world.addr, "POST", path, &auth, body.to_string().as_bytes()).await;
        tally.refused_with(class, &format!("POST {path} with {body}"), &answer, 400);
    }
}

/// Values that parse as JSON and mean nothing valid.
async fn bad_values(world: &World, tally: &mut Tally) {
    let admin = bearer(ADMIN);
    let auth = [("authorization", admin.as_str())];
    let class = Class::Malformed;
    let raw_bodies: &[(&str, &str, &str)] = &[
        (
            "POST",
            "/v1/messages",
            r#"{"subject": "orders.eu.7", "payload_b64": "!!!not base64"}"#,
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"subject": "orders.eu.7", "payload_b64": "eA="}"#,
        ),
        ("POST", "/v1/messages", r#"{"subject": "orders.eu.7"}"#),
        ("POST", "/v1/messages", r#"{"subject": "orders..7", "payload": "x"}"#),
        ("POST", "/v1/messages", r#"{"subject": "", "payload": "x"}"#),
        (
            "POST",
            "/v1/messages",
            r#"{"subject": "orders.eu.7", "payload": "x", "ttl_ms": -1}"#,
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"subject": "orders.eu.7", "payload": "x", "ttl_ms": 1e400}"#,
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"subject": "orders.eu.7", "payload": "x", "expected_last_seq": 18446744073709551616}"#,
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"subject": "orders.eu.7", "payload": "x", "headers": {"a": 5}}"#,
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"subject": "orders.eu.7", "payload": "x", "headers": {"": "v"}}"#,
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"subject": "orders.eu.7", "payload": "x", "id": ""}"#,
        ),
        (
            "POST",
            "/v1/messages",
            r#"{"subject": "orders.eu.7", "payload": "x", "subject": "orders.eu.8"}"#,
        ),
        ("POST", "/v1/messages/batch", "[]"),
        (
            "POST",
            "/v1/messages/batch",
            r#"[{"subject": "orders.eu.7", "payload": "x"}, {"subject": "payments.x", "payload": "y"}]"#,
        ),
        ("POST", "/v1/streams", r#"{"name": "n8", "max_msgs": -1}"#),
        ("POST", "/v1/streams", r#"{"name": "n8", "max_msgs": 1.5}"#),
        (
            "POST",
            "/v1/streams",
            r#"{"name": "n8", "max_msgs": 18446744073709551616}"#,
        ),
        (
            "POST",
            "/v1/streams",
            r#"{"name": "n8", "max_age": {"secs": 0, "nanos": 0}}"#,
        ),
        ("POST", "/v1/streams", r#"{"name": "n8", "max_age": 60}"#),
        ("POST", "/v1/streams", r#"{"name": "n8", "retention": "forever"}"#),
        ("POST", "/v1/streams", r#"{"name": "n8", "subjects": ["a..b"]}"#),
        ("POST", "/v1/streams", r#"{"name": "n8", "subjects": ["orders.>"]}"#),
        ("POST", "/v1/streams", r#"{"name": "$kv-mine"}"#),
        ("POST", "/v1/streams", r#"{"name": "bad name"}"#),
        (
            "PUT",
            "/v1/streams/orders",
            r#"{"name": "payments", "subjects": ["payments.>"]}"#,
        ),
        ("POST", "/v1/streams/orders/purge", "{}"),
        ("POST", "/v1/streams/orders/purge", r#"{"all": false}"#),
        ("POST", "/v1/streams/orders/purge", r#"{"before_seq": "x"}"#),
        (
            "POST",
            "/v1/streams/orders/consumers",
            r#"{"name": "n9", "max_deliver": 0}"#,
        ),
        (
            "POST",
            "/v1/streams/orders/consumers",
            r#"{"name": "n9", "max_deliver": -3}"#,
        ),
        (
            "POST",
            "/v1/streams/orders/consumers",
            r#"{"name": "n9", "start": "sometime"}"#,
        ),
        (
            "POST",
            "/v1/streams/orders/consumers",
            r#"{"name": "n9", "ack_wait": {"secs": 0, "nanos": 0}}"#,
        ),
        (
            "POST",
            "/v1/streams/orders/consumers",
            r#"{"name": "n9", "dead_letter": {"stream": "$kv-config"}}"#,
        ),
        ("PUT", "/v1/streams/orders/consumers/eu", r#"{"name": "other"}"#),
        (
            "POST",
            "/v1/streams/orders/consumers/eu/fetch",
            r#"{"member": "m", "max": 0, "wait_ms": 0}"#,
        ),
        (
            "POST",
            "/v1/streams/orders/consumers/eu/fetch",
            r#"{"member": "m", "max": 10, "wait_ms": 60001}"#,
        ),
        (
            "POST",
            "/v1/streams/orders/consumers/eu/fetch",
            r#"{"member": "bad member", "max": 1, "wait_ms": 0}"#,
        ),
        (
            "POST",
            "/v1/streams/orders/consumers/eu/settle",
            r#"{"member": "m", "seq": 1, "deliveries": 1, "settle": "bogus"}"#,
        ),
        (
            "POST",
            "/v1/streams/orders/consumers/eu/settle",
            r#"{"member": "m", "seq": 1, "deliveries": 1, "settle": {"nak": {"delay": {"secs": 1, "nanos": 1000000000}}}}"#,
        ),
        (
            "POST",
            "/v1/streams/orders/consumers/eu/settle_batch",
            r#"{"member": "m", "items": [{"seq": 1, "deliveries": 1, "settle": "bogus"}]}"#,
        ),
        ("POST", "/v1/streams/orders/consumers/eu/reset", r#"{"to": {}}"#),
        (
            "POST",
            "/v1/streams/orders/consumers/eu/reset",
            r#"{"to": {"seq": 1, "time": 1}}"#,
        ),
        (
            "POST",
            "/v1/streams/orders/consumers/eu/reset",
            r#"{"to": {"seq": "x"}}"#,
        ),
    ];
    for (method, path, body) in raw_bodies {
        let answer = call(world.addr, method, path, &auth, body.as_bytes()).await;
        tally.refused(class, &format!("{method} {path} with {body}"), &answer);
    }
    // The raw publish's headers.
    let headers: &[(&str, &str)] = &[
        ("herald-expected-last-seq", "abc"),
        ("herald-expected-last-subject-seq", "-1"),
        ("herald-ttl-ms", "99999999999999999999999"),
        ("herald-ttl-ms", "soon"),
        ("herald-msg-id", ""),
        ("herald-header-", "v"),
    ];
    for header in headers {
        let answer = call(
            world.addr,
            "POST",
            "/v1/subjects/orders.eu.7",
            &[auth[0], *header, ("content-type", "text/plain")],
            b"x",
        )
        .await;
        tally.refused_with(
            class,
            &format!("POST /v1/subjects/orders.eu.7 with {header:?}"),
            &answer,
            400,
        );
    }
    // Invalid UTF-8 where text is expected: a header value, a raw path.
    let raw: &[&[u8]] = &[
        b"GET /v1/streams HTTP/1.1\r\nhost: h\r\nconnection: close\r\nauthorization: Bearer \xff\xfe\r\n\r\n",
        b"POST /v1/subjects/orders.eu.7 HTTP/1.1\r\nhost: h\r\nconnection: close\r\ncontent-length: 1\r\nauthorization: Bearer abuse-admin-secret\r\nherald-header-x: \xff\r\n\r\nx",
        b"POST /v1/subjects/orders.eu.7 HTTP/1.1\r\nhost: h\r\nconnection: close\r\ncontent-length: 1\r\nauthorization: Bearer abuse-admin-secret\r\nherald-msg-id: \xc3\x28\r\n\r\nx",
    ];
    for bytes in raw {
        let answer = raw_request(world.addr, bytes).await;
        tally.refused(class, &format!("{:?}", String::from_utf8_lossy(bytes)), &answer);
    }
}

/// Sends `bytes` as they are and reads whatever comes back until the
/// server closes the connection.
async fn raw_request(addr: SocketAddr, bytes: &[u8]) -> Answer {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    let _ = socket.write_all(bytes).await;
    let mut raw = Vec::new();
    let read = tokio::time::timeout(PATIENCE, socket.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "no answer to {:?}", String::from_utf8_lossy(bytes));
    parse_lenient(&raw)
}

/// A response read off a socket, or no status when nothing came.
fn parse_lenient(raw: &[u8]) -> Answer {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Answer {
            status: None,
            content_type: None,
            body: raw.to_vec(),
        };
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok());
    let mut content_type = None;
    let mut length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            match name.trim().to_ascii_lowercase().as_str() {
                "content-type" => content_type = Some(value.trim().to_owned()),
                "content-length" => length = value.trim().parse::<usize>().ok(),
                _ => {}
            }
        }
    }
    let rest = &raw[split + 4..];
    let body = rest[..length.unwrap_or(rest.len()).min(rest.len())].to_vec();
    Answer {
        status,
        content_type,
        body,
    }
}

/// Requests that are not HTTP/1.1 as it should be written.
async fn broken_http(world: &World, tally: &mut Tally) {
    let class = Class::Malformed;
    let requests: &[&[u8]] = &[
        b"GARBAGE\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /v1/streams HTTP/9.9\r\nhost: h\r\n\r\n",
        b"GET /v1/streams HTTP/1.1\r\nhost: h\r\nno colon here\r\n\r\n",
        b"GET /v1/streams HTTP/1.1\r\nhost: h\r\n bad: folding\r\n\r\n",
        b"GET /v1/str\x00eams HTTP/1.1\r\nhost: h\r\n\r\n",
        b"GET /v1/streams\xff HTTP/1.1\r\nhost: h\r\n\r\n",
        b"G\xffT /v1/streams HTTP/1.1\r\nhost: h\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nhost: h\r\ncontent-length: abc\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nhost: h\r\ncontent-length: 5\r\ncontent-length: 6\r\n\r\nhello!",
        b"POST /v1/messages HTTP/1.1\r\nhost: h\r\ncontent-length: -1\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nhost: h\r\ntransfer-encoding: bogus\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\ncontent-length: 3\r\n\r\n0\r\n\r\n",
        b"POST /v1/messages HTTP/1.1\r\nhost: h\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    ];
    for bytes in requests {
        let answer = raw_request(world.addr, bytes).await;
        tally.refused(class, &format!("{:?}", String::from_utf8_lossy(bytes)), &answer);
    }
}

/// Frames the WebSocket protocol does not take: each answered with an
/// error frame, and the session goes on.
async fn malformed_frames(world: &World, tally: &mut Tally) {
    let class = Class::Malformed;
    let url = format!("ws://{}/v1/ws", world.addr);
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request
        .headers_mut()
        .insert("authorization", bearer(ADMIN).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(common::ws_next(&mut socket).await["type"], "hello");
    let frames: &[&str] = &[
        "{",
        "null",
        "[]",
        "42",
        r#"{"id": 1}"#,
        r#"{"id": 1, "op": "nope"}"#,
        r#"{"id": "x", "op": "list_streams"}"#,
        r#"{"id": 1, "op": "list_streams", "extra": 1}"#,
        r#"{"id": 1, "op": "publish", "message": {"subject": "orders.eu.7", "payload": "x", "payload_b64": "eA=="}}"#,
        r#"{"id": 1, "op": "publish", "message": {"subject": "orders.eu.7", "payload_b64": "!!"}}"#,
        r#"{"id": 1, "op": "create_consumer", "stream": "orders", "config": {"name": "w", "ack_wait": {"secs": 1, "nanos": 1000000000}}}"#,
        r#"{"id": 1, "op": "create_stream", "config": {"name": "w", "max_age": {"secs": 18446744073709551615, "nanos": 0}}}"#,
        r#"{"id": 1, "op": "get_message", "stream": "orders", "seq": -1}"#,
        r#"{"id": 1, "op": "fetch", "stream": "orders", "consumer": "eu", "member": "m", "max": 1, "wait_ms": 99999999999999999999}"#,
    ];
    for text in frames {
        socket.send(WsMessage::Text((*text).into())).await.unwrap();
        let answer = ws_frame(&mut socket).await;
        tally.refused_frame(class, &format!("WebSocket {text}"), answer.as_ref());
    }
    socket.send(WsMessage::Binary(vec![0xff, 0, 1].into())).await.unwrap();
    let answer = ws_frame(&mut socket).await;
    tally.refused_frame(class, "WebSocket binary frame", answer.as_ref());
    let alive = common::ws_call(&mut socket, &json!({"id": 99, "op": "list_streams"})).await;
    if alive["type"] != "ok" {
        tally.broken(
            class,
            format!("the session stopped serving after malformed frames: {alive}"),
        );
    }
}

/// Inputs over every limit: bodies, payloads, request heads, URIs, message
/// headers, batches, names, frames.
async fn oversized(world: &World, tally: &mut Tally) {
    let before = snapshot(world).await;
    let class = Class::Oversized;
    let admin = bearer(ADMIN);
    let auth = [("authorization", admin.as_str())];
    // Declared bodies over the limit, on every operation that takes a body.
    for operation in world.operations.iter().filter(|o| o.body.is_some()) {
        let path = fill(&operation.path, "orders", "eu", "1", "orders.eu.1");
        let answer = Answer::of(&head_only(world.addr, &operation.method, &path, 1 << 40).await);
        tally.refused_with(
            class,
            &format!("{} {path} declaring 1 TiB", operation.method),
            &answer,
            413,
        );
    }
    // A body with no declared length, streamed past the limit.
    let streamed = common::request_chunked_with(
        world.addr,
        "POST",
        "/v1/messages",
        &auth,
        vec![b' '; 4 << 20],
        64 * 1024,
    )
    .await;
    tally.refused_with(class, "POST /v1/messages streaming 4 MiB", &Answer::of(&streamed), 413);
    // Payloads over the server's limit, each way to publish.
    let big = "x".repeat(MAX_PAYLOAD + 1);
    for (path, body) in [
        ("/v1/messages", json!({"subject": "orders.eu.7", "payload": big})),
        (
            "/v1/messages/batch",
            json!([{"subject": "orders.eu.7", "payload": big}]),
        ),
    ] {
        let answer = call(world.addr, "POST", path, &auth, body.to_string().as_bytes()).await;
        tally.refused_with(
            class,
            &format!("POST {path} with a payload over the limit"),
            &answer,
            413,
        );
    }
    let answer = call(world.addr, "POST", "/v1/subjects/orders.eu.7", &auth, big.as_bytes()).await;
    tally.refused_with(
        class,
        "POST /v1/subjects/orders.eu.7 with a payload over the limit",
        &answer,
        413,
    );
    // Request heads: one huge header, many headers, a huge URI.
    let huge_value = "h".repeat(64 * 1024);
    let many: Vec<(String, String)> = (0..500).map(|i| (format!("x-filler-{i}"), "v".to_owned())).collect();
    let many: Vec<(&str, &str)> = many.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let long_path = format!("/v1/streams/{}", "s".repeat(70 * 1024));
    let long_query = format!("/v1/streams/orders/messages?filter={}", "a.".repeat(40 * 1024));
    let heads: Vec<(String, &str, Headers<'_>)> = vec![
        (
            "a 64 KiB header".to_owned(),
            "/v1/streams",
            vec![auth[0], ("x-junk", huge_value.as_str())],
        ),
        (
            "a 64 KiB token".to_owned(),
            "/v1/streams",
            vec![("authorization", huge_value.as_str())],
        ),
        ("500 headers".to_owned(), "/v1/streams", many.clone()),
        ("a 70 KiB path".to_owned(), long_path.as_str(), vec![auth[0]]),
        ("an 80 KiB query".to_owned(), long_query.as_str(), vec![auth[0]]),
    ];
    for (what, path, headers) in heads {
        let answer = call(world.addr, "GET", path, &headers, b"").await;
        tally.refused(class, &what, &answer);
        if answer.status != Some(431) && answer.status != Some(414) {
            tally.broken(class, format!("{what}: expected 431 or 414, got {:?}", answer.status));
        }
    }
    // Message headers over their limit, in a JSON publish and a raw one.
    let mut headers = serde_json::Map::new();
    for i in 0..70 {
        headers.insert(format!("h{i}"), json!("v".repeat(1024)));
    }
    let body = json!({"subject": "orders.eu.7", "payload": "x", "headers": headers});
    let answer = call(world.addr, "POST", "/v1/messages", &auth, body.to_string().as_bytes()).await;
    tally.refused_with(class, "message headers over 64 KiB", &answer, 400);
    // Lists and numbers past their bounds.
    let items: Vec<Value> = (1..=10_001).map(|seq| json!({"seq": seq, "deliveries": 1})).collect();
    let long_name = "n".repeat(10_000);
    let long_subject = format!("orders.{}", "s".repeat(10_000));
    let bodies: Vec<(&str, String, Value)> = vec![
        (
            "POST",
            "/v1/streams/orders/consumers/eu/settle_batch".to_owned(),
            json!({"member": "m", "items": items}),
        ),
        ("POST", "/v1/streams".to_owned(), json!({"name": long_name})),
        (
            "POST",
            "/v1/streams".to_owned(),
            json!({"name": "n10", "subjects": vec!["a.>"; 100_000]}),
        ),
        (
            "POST",
            "/v1/messages".to_owned(),
            json!({"subject": long_subject, "payload": "x"}),
        ),
        (
            "POST",
            "/v1/messages".to_owned(),
            json!({"subject": "orders.eu.7", "payload": "x", "id": long_name}),
        ),
        (
            "POST",
            "/v1/streams/orders/consumers".to_owned(),
            json!({"name": "n11", "filters": vec!["orders.>"; 100_000]}),
        ),
        (
            "POST",
            "/v1/streams/orders/consumers".to_owned(),
            json!({"name": "n12", "backoff": vec![json!({"secs": 1, "nanos": 0}); 100_000]}),
        ),
    ];
    for (method, path, body) in bodies {
        let answer = call(world.addr, method, &path, &auth, body.to_string().as_bytes()).await;
        let shown: String = body.to_string().chars().take(80).collect();
        tally.refused(class, &format!("{method} {path} with {shown}…"), &answer);
    }
    for path in [
        "/v1/streams/orders/messages?limit=1001",
        "/v1/streams/orders/messages?limit=18446744073709551615",
        "/v1/streams/orders/messages?from_seq=18446744073709551616",
    ] {
        let answer = call(world.addr, "GET", path, &auth, b"").await;
        tally.refused_with(class, &format!("GET {path}"), &answer, 400);
    }
    // A WebSocket frame too big to read: an error frame, then a close.
    let url = format!("ws://{}/v1/ws", world.addr);
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request
        .headers_mut()
        .insert("authorization", bearer(ADMIN).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(common::ws_next(&mut socket).await["type"], "hello");
    let frame =
        json!({"id": 1, "op": "publish", "message": {"subject": "orders.eu.7", "payload": "x".repeat(4 << 20)}});
    let _ = socket.send(WsMessage::Text(frame.to_string().into())).await;
    let answer = ws_frame(&mut socket).await;
    tally.refused_frame(class, "a 4 MiB WebSocket frame", answer.as_ref());
    let frame = json!({"id": 2, "op": "publish", "message": {"subject": "orders.eu.7", "payload": big}});
    let mut fresh = ws_socket(world.addr, ADMIN).await;
    common::ws_send(&mut fresh, &frame).await;
    let answer = ws_frame(&mut fresh).await;
    tally.refused_frame(class, "a WebSocket publish over the payload limit", answer.as_ref());
    still_serving(world, tally, class, "oversized input", &before).await;
}

async fn ws_socket(addr: SocketAddr, token: &str) -> common::Socket {
    let url = format!("ws://{addr}/v1/ws");
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request
        .headers_mut()
        .insert("authorization", bearer(token).parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(common::ws_next(&mut socket).await["type"], "hello");
    socket
}

/// Sends a request head declaring `length` bytes of body, with the admin's
/// token, and reads the answer.
async fn head_only(addr: SocketAddr, method: &str, path: &str, length: u64) -> common::Response {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\nauthorization: Bearer {ADMIN}\r\n\
         content-length: {length}\r\n\r\n"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, stream.read_to_end(&mut raw))
        .await
        .unwrap();
    let answer = parse_lenient(&raw);
    common::Response {
        status: answer.status.unwrap_or(0),
        headers: answer
            .content_type
            .map(|t| vec![("content-type".to_owned(), t)])
            .unwrap_or_default(),
        body: answer.body,
    }
}

/// `depth` levels of nesting around `inner`.
fn nest(open: &str, inner: &str, close: &str, depth: usize) -> String {
    format!("{}{inner}{}", open.repeat(depth), close.repeat(depth))
}

/// Deeply nested JSON on every operation that takes JSON, and in a frame.
async fn nested(world: &World, tally: &mut Tally) {
    let before = snapshot(world).await;
    let class = Class::Nested;
    let admin = bearer(ADMIN);
    let auth = [("authorization", admin.as_str())];
    let deep_list = nest("[", "1", "]", 10_000);
    let deep_object = nest("{\"a\":", "1", "}", 10_000);
    for operation in &world.operations {
        if operation.body.as_deref() != Some("application/json") {
            continue;
        }
        let path = fill(&operation.path, "orders", "eu", "1", "orders.eu.1");
        let mut bodies = vec![deep_list.clone(), deep_object.clone()];
        // Deep inside each field of a valid body.
        let sample = sample_body(operation);
        let object = sample.as_object().or_else(|| sample[0].as_object());
        for field in object.into_iter().flat_map(|o| o.keys()) {
            let mut body = object.unwrap().clone();
            body.insert(field.clone(), json!("PLACEHOLDER"));
            let text = Value::Object(body).to_string().replace("\"PLACEHOLDER\"", &deep_object);
            bodies.push(if sample.is_array() { format!("[{text}]") } else { text });
        }
        for body in bodies {
            let answer = call(world.addr, &operation.method, &path, &auth, body.as_bytes()).await;
            let shown: String = body.chars().take(40).collect();
            tally.refused_with(
                class,
                &format!("{} {path} with {shown}…", operation.method),
                &answer,
                400,
            );
        }
    }
    let mut socket = ws_socket(world.addr, ADMIN).await;
    for text in [
        deep_list.clone(),
        deep_object.clone(),
        format!(
            r#"{{"id": 1, "op": "publish", "message": {{"subject": "orders.eu.7", "payload": "x", "headers": {deep_object}}}}}"#
        ),
    ] {
        socket.send(WsMessage::Text(text.into())).await.unwrap();
        let answer = ws_frame(&mut socket).await;
        tally.refused_frame(class, "a WebSocket frame nested 10,000 deep", answer.as_ref());
    }
    let alive = common::ws_call(&mut socket, &json!({"id": 99, "op": "list_streams"})).await;
    if alive["type"] != "ok" {
        tally.broken(
            class,
            format!("the session stopped serving after nested frames: {alive}"),
        );
    }
    still_serving(world, tally, class, "nested input", &before).await;
}

/// How a slow connection holds on.
#[derive(Debug, Clone, Copy)]
enum Slowness {
    /// Connects and sends nothing.
    Silent,
    /// Sends half a request head, then nothing.
    HalfSent,
    /// Sends a head a byte at a time, never finishing it.
    Trickled,
}

/// Connections that say nothing, or too little too slowly, on paused time:
/// each is closed at its bound, not later, and answers nobody's data.
async fn slow(tally: &mut Tally) {
    let class = Class::Slow;
    let header_read = Duration::from_secs(10);
    let idle = Duration::from_secs(60);
    let limits = Limits::default().header_read_timeout(header_read).idle_timeout(idle);
    let server = Server::new(Bus::memory().unwrap()).limits(limits).unwrap();
    let addr = common::start(server).await;
    // How late past its bound a close may come: the server's timer and the
    // client's wake-up, on paused time nothing more.
    let slack = Duration::from_millis(100);

    // Silent connections, half-sent heads and heads trickled a byte at a
    // time, many at once: each closed at the header timeout.
    let mut watchers = Vec::new();
    for i in 0..30 {
        let slowness = [Slowness::Silent, Slowness::HalfSent, Slowness::Trickled][i % 3];
        watchers.push(tokio::spawn(async move {
            let socket = TcpStream::connect(addr).await.unwrap();
            let started = tokio::time::Instant::now();
            let (mut reader, mut writer) = socket.into_split();
            let attack = async move {
                match slowness {
                    Slowness::Silent => {}
                    Slowness::HalfSent => {
                        let _ = writer.write_all(b"GET /healthz HTTP/1.1\r\nhost: h\r\nx-slow: ").await;
                    }
                    // One byte every 100 ms of a header that never ends.
                    Slowness::Trickled => {
                        let _ = writer.write_all(b"GET /healthz HTTP/1.1\r\nx-slow: ").await;
                        loop {
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            if writer.write_all(b"a").await.is_err() {
                                break;
                            }
                        }
                    }
                }
                std::future::pending::<()>().await
            };
            let mut got = Vec::new();
            let closed = tokio::select! {
                _ = reader.read_to_end(&mut got) => tokio::time::Instant::now(),
                () = attack => unreachable!("the attack never ends by itself"),
                () = tokio::time::sleep(header_read * 3) => tokio::time::Instant::now(),
            };
            (format!("{slowness:?} connection {i}"), got, closed - started)
        }));
    }
    for watcher in watchers {
        let (which, got, lasted) = watcher.await.unwrap();
        tally.row(class).attempts += 1;
        if lasted < header_read || lasted > header_read + slack {
            tally.row(class).accepted += 1;
            tally.broken(
                class,
                format!("{which} lasted {lasted:?}, not the {header_read:?} header timeout"),
            );
        }
        if !got.is_empty() {
            tally.row(class).untyped += 1;
            tally.broken(
                class,
                format!("{which} was answered: {}", String::from_utf8_lossy(&got)),
            );
        }
    }
    // A keep-alive connection that goes silent after a request: closed at the idle timeout.
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: h\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0u8; 1024];
    let n = socket.read(&mut answer).await.unwrap();
    assert!(
        answer[..n].starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&answer[..n])
    );
    let answered = tokio::time::Instant::now();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(idle * 3, socket.read_to_end(&mut rest)).await;
    let lasted = answered.elapsed();
    tally.row(class).attempts += 1;
    if lasted < idle || lasted > idle + slack {
        tally.row(class).accepted += 1;
        tally.broken(
            class,
            format!("an idle connection lasted {lasted:?}, not the {idle:?} idle timeout"),
        );
    }
    // A request whose body stops arriving: closed at the idle timeout after its last byte.
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(b"POST /v1/messages HTTP/1.1\r\nhost: h\r\ncontent-length: 1000\r\n\r\n{\"subject\": ")
        .await
        .unwrap();
    let sent = tokio::time::Instant::now();
    let mut got = Vec::new();
    let _ = tokio::time::timeout(idle * 3, socket.read_to_end(&mut got)).await;
    let lasted = sent.elapsed();
    tally.row(class).attempts += 1;
    if lasted < idle || lasted > idle + slack || !got.is_empty() {
        tally.row(class).accepted += 1;
        tally.broken(
            class,
            format!("a stalled body held its connection {lasted:?} (answered {got:?}), not the {idle:?} idle timeout"),
        );
    }
    // Others are served all along.
    let good = common::get(addr, "/healthz", &[]).await;
    if good.status != 200 {
        tally.broken(
            class,
            format!("a good request got {} after the slow connections", good.status),
        );
    }
}

/// A WebSocket session with `token`, or the answer that refused it.
async fn ws_attempt(addr: SocketAddr, token: &str) -> Result<common::Socket, Answer> {
    use tokio_tungstenite::tungstenite::Error;
    let url = format!("ws://{addr}/v1/ws");
    let mut request = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(url).unwrap();
    request
        .headers_mut()
        .insert("authorization", bearer(token).parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Ok((mut socket, _)) => {
            assert_eq!(common::ws_next(&mut socket).await["type"], "hello");
            Ok(socket)
        }
        Err(Error::Http(response)) => Err(Answer {
            status: Some(response.status().as_u16()),
            content_type: response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            body: response.body().clone().unwrap_or_default(),
        }),
        Err(err) => Err(Answer {
            status: None,
            content_type: None,
            body: err.to_string().into_bytes(),
        }),
    }
}

/// One token opening sessions and tails past its share: each one past it
/// is refused with 429 and the error object, while another token and the
/// first token's open sessions are served.
async fn held_per_token(tally: &mut Tally) {
    let class = Class::Slow;
    let share = 3;
    let limits = Limits::default().max_connections_per_token(std::num::NonZeroUsize::new(share));
    let world = world(limits).await;
    let narrow = bearer(NARROW);
    let mut held = Vec::new();
    for _ in 0..share {
        held.push(ws_attempt(world.addr, NARROW).await.unwrap());
    }
    for attempt in 0..20 {
        let answer = if attempt % 2 == 0 {
            match ws_attempt(world.addr, NARROW).await {
                Ok(_) => Answer {
                    status: Some(101),
                    content_type: None,
                    body: b"a session opened past the token's share".to_vec(),
                },
                Err(answer) => answer,
            }
        } else {
            call(
                world.addr,
                "GET",
                "/v1/tail?pattern=orders.eu.%3E",
                &[("authorization", &narrow)],
                b"",
            )
            .await
        };
        // A session past its share is a connection held that should not be.
        if answer.status == Some(101) {
            tally.row(class).attempts += 1;
            tally.row(class).accepted += 1;
            tally.broken(class, "a session opened past the token's share".to_owned());
            continue;
        }
        tally.refused_with(
            class,
            &format!("connection {} of one token", share + attempt + 1),
            &answer,
            429,
        );
    }
    // Another token is served, and so are the sessions the first one holds.
    if ws_attempt(world.addr, ADMIN).await.is_err() {
        tally.broken(class, "another token was refused a session".to_owned());
    }
    for socket in &mut held {
        let answer = common::ws_call(socket, &json!({"id": 1, "op": "list_streams"})).await;
        if answer["type"] != "ok" {
            tally.broken(class, format!("a held session stopped serving: {answer}"));
        }
    }
}
