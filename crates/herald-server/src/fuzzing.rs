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

use crate::rest::{FetchRequest, ResetRequest, SettleBatchRequest, SettleRequest, parse_json};

/// Reads `data` as the JSON body of every route that takes one. A body
/// that is read is written out and must read back equal; the checks the
/// handler runs next on it must answer, not panic.
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
