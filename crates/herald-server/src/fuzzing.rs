//! Entry points for the fuzzers (herald-testkit's `fuzz` module and the
//! cargo-fuzz crate in `fuzz/`): what a client sends, as arbitrary bytes,
//! through the same readers the routes and the WebSocket session use. Not
//! part of the server's API; docs/testing.md says how they are run.
//!
//! Bad input must be answered with a typed error, never a panic; what is
//! accepted must read back the same once written out again.
#![doc(hidden)]

use std::fmt::Debug;

use herald_core::wire::{ClientFrame, Op, ServerFrame, WireOutgoing};
use herald_core::{ConsumerConfig, ErrorKind, Purge, StreamConfig, StreamName};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::rest::{
    FetchRequest, LimitQuery, RangeQuery, ResetRequest, SettleBatchRequest, SettleRequest, parse_json, parse_query,
};

/// Reads `data` as the JSON body of every route that takes one, and as the
/// query strings and times the read routes take. A body that is read is
/// written out and must read back equal; the checks the handler runs next
/// on it must answer, not panic.
///
/// # Panics
///
/// When a reader or check panics, a refusal is not `InvalidRequest`, or a
/// body does not read back as it was written.
pub fn http_body(data: &[u8]) {
    if let Some(config) = read_back::<StreamConfig>(data) {
        let _ = config.validate();
    }
    if let Some(config) = read_back::<ConsumerConfig>(data) {
        let stream = StreamName::new("fuzz").expect("a valid stream name");
        let _ = config.validate_on(&stream);
    }
    if let Some(message) = read_back::<WireOutgoing>(data) {
        publishable(message);
    }
    if let Some(messages) = read_back::<Vec<WireOutgoing>>(data) {
        messages.into_iter().for_each(publishable);
    }
    read_back::<Purge>(data);
    read_back::<ResetRequest>(data);
    read_back::<FetchRequest>(data);
    read_back::<SettleRequest>(data);
    read_back::<SettleBatchRequest>(data);
    if let Ok(text) = std::str::from_utf8(data) {
        query::<RangeQuery>(text);
        query::<LimitQuery>(text);
        let _ = crate::rest::parse_time(text);
    }
}

/// Reads `text` as a query string for a `T`, as a route does.
fn query<T: DeserializeOwned + Debug>(text: &str) {
    if let Err(error) = parse_query::<T>(text) {
        assert_eq!(error.kind(), ErrorKind::InvalidRequest, "a query refused as {error:?}");
    }
}

/// Reads `data` as a WebSocket text frame, as a session does. A frame that
/// is refused is answered with an error frame carrying its id when it had
/// one; a frame that is read must read back equal once written out, and
/// the checks its operation runs before it reaches the bus must answer,
/// not panic.
///
/// # Panics
///
/// When the reader or a check panics, a refusal is not `InvalidRequest`,
/// the error frame does not read back, or a frame does not read back as it
/// was written.
pub fn ws_frame(data: &[u8]) {
    // A WebSocket text frame is UTF-8: the socket refuses anything else.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let frame = match ClientFrame::parse(text) {
        Ok(frame) => frame,
        Err((id, error)) => {
            assert_eq!(error.kind(), ErrorKind::InvalidRequest, "a frame refused as {error:?}");
            let answer = crate::ws::error_frame(id, &error);
            let json = serde_json::to_string(&answer).expect("an error frame encodes");
            let back: ServerFrame = serde_json::from_str(&json).expect("an error frame reads back");
            assert_eq!(back, answer, "an error frame changed on its way through JSON");
            return;
        }
    };
    let json = serde_json::to_string(&frame).expect("a frame that was read encodes");
    match ClientFrame::parse(&json) {
        Ok(back) => assert_eq!(back, frame, "a frame changed on its way through JSON: {json}"),
        Err((_, error)) => panic!("a frame that was read does not read back: {json}: {error}"),
    }
    match frame.op {
        Op::CreateStream { config } | Op::UpdateStream { config } => {
            let _ = config.validate();
        }
        Op::CreateConsumer { stream, config } | Op::UpdateConsumer { stream, config } => {
            let _ = config.validate_on(&stream);
        }
        Op::Publish { message } => publishable(message),
        Op::PublishBatch { messages } => messages.into_iter().for_each(publishable),
        Op::Fetch { wait_ms, .. } => {
            let _ = crate::page::fetch_wait(wait_ms);
        }
        Op::Settle { settle, .. } => {
            let _ = settle.validate();
        }
        Op::SettleBatch { items, .. } => {
            let _ = herald_core::SettleItem::validate_batch(&items);
        }
        Op::Respond { reply: Some(reply), .. } => {
            let _ = reply.into_reply();
        }
        Op::Request {
            payload, payload_b64, ..
        } => {
            if let Ok(body) = herald_core::wire::Body::from_fields(payload, payload_b64) {
                let _ = body.bytes();
            }
        }
        _ => {}
    }
}

/// Runs `data`, one frame a line, as a WebSocket session on a fresh bus in
/// memory (a stream `orders` with three messages and a consumer `billing`
/// to work on). Waits are cut to nothing so that an input runs in moments:
/// `wait_ms` to 0, a request's `timeout_ms` to at most 1.
///
/// # Panics
///
/// When anything the frames reach panics: a panic in a subscription's or
/// responder's task counts too (libFuzzer aborts on any panic; the stable
/// driver watches the panic hook).
pub fn ws_session(data: &[u8]) {
    let frames: Vec<ClientFrame> = data
        .split(|b| *b == b'\n')
        .take(MAX_SESSION_FRAMES)
        .filter_map(|line| ClientFrame::parse(std::str::from_utf8(line).ok()?).ok())
        .map(|mut frame| {
            match &mut frame.op {
                Op::Fetch { wait_ms, .. } => *wait_ms = 0,
                Op::Request { timeout_ms, .. } => *timeout_ms = (*timeout_ms).min(1),
                _ => {}
            }
            frame
        })
        .collect();
    if frames.is_empty() {
        return;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let bus = herald::Bus::memory().expect("a bus in memory");
        let backend = bus.backend().clone();
        seed(&bus).await;
        crate::ws::run_detached(backend, frames).await;
    });
}

/// 8: frames per session input; more make each input slower, not deeper.
const MAX_SESSION_FRAMES: usize = 8;

/// What a session's frames find on the bus: a stream `orders` (`orders`,
/// `orders.>`) with three messages on two subjects, and a consumer `billing`.
async fn seed(bus: &herald::Bus) {
    let orders = StreamConfig::new("orders").expect("a valid stream");
    bus.create_stream(orders).await.expect("a new stream");
    for (subject, payload) in [("orders.1", "a"), ("orders.2", "b"), ("orders.1", "c")] {
        bus.publish(subject, payload).await.expect("a publish");
    }
    let billing = ConsumerConfig::new("billing").expect("a valid consumer");
    let stream = StreamName::new("orders").expect("a valid stream name");
    bus.backend()
        .create_consumer(&stream, billing)
        .await
        .expect("a new consumer");
}

/// Reads `data` as a `T` the way a route does; what is read is written out
/// and must read back equal.
fn read_back<T>(data: &[u8]) -> Option<T>
where
    T: DeserializeOwned + Serialize + PartialEq + Debug,
{
    let value = match parse_json::<T>(data) {
        Ok(value) => value,
        Err(error) => {
            assert_eq!(error.kind(), ErrorKind::InvalidRequest, "a body refused as {error:?}");
            return None;
        }
    };
    let json = serde_json::to_vec(&value).expect("a body that was read encodes");
    match parse_json::<T>(&json) {
        Ok(back) => assert_eq!(back, value, "a body changed on its way through JSON"),
        Err(error) => panic!(
            "a body that was read does not read back: {}: {error}",
            String::from_utf8_lossy(&json)
        ),
    }
    Some(value)
}

/// A message to publish, through the checks a publish runs before the bus.
fn publishable(message: WireOutgoing) {
    if let Ok(message) = message.into_message() {
        let _ = message.validate();
    }
}
