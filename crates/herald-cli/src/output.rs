//! What the client commands print: JSON for scripts (one document, or one
//! line per message), readable lines for people, and notes on stderr.

use std::io::Write;

use anyhow::Context;
use herald::{Bytes, Delivery, Message};
use herald_core::wire::{Body, WireDelivery, WireMessage};
use serde::Serialize;

/// 96 bytes: binary payloads up to this size are shown as base64 on a
/// message's line; larger ones only by their size, to keep it one line.
const INLINE_BINARY: usize = 96;

/// Writes `text` and a newline to stdout.
///
/// # Errors
///
/// When stdout is closed (a pipe whose reader left: see [`is_broken_pipe`]).
pub(crate) fn line(text: impl std::fmt::Display) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{text}")
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// Writes `text` as it is (a rendered table ends in its own newline).
///
/// # Errors
///
/// As [`line`].
pub(crate) fn text(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .context("writing to stdout")
}

/// Prints one JSON document, indented for reading.
///
/// # Errors
///
/// As [`line`].
pub(crate) fn document(value: &impl Serialize) -> anyhow::Result<()> {
    line(serde_json::to_string_pretty(value).context("encoding JSON")?)
}

/// Prints one JSON value on one line (JSON lines, for message streams).
///
/// # Errors
///
/// As [`line`].
pub(crate) fn json_line(value: &impl Serialize) -> anyhow::Result<()> {
    line(serde_json::to_string(value).context("encoding JSON")?)
}

/// Prints what a command without a listing did: `document` for scripts, else
/// `text`.
///
/// # Errors
///
/// As [`line`].
pub(crate) fn done(json: bool, document: serde_json::Value, text: impl std::fmt::Display) -> anyhow::Result<()> {
    if json { self::document(&document) } else { line(text) }
}

/// A note for the person at the terminal, on stderr so that it never mixes
/// with the output a script reads. Scripts and tests may wait for one.
pub(crate) fn note(text: impl std::fmt::Display) {
    let mut err = std::io::stderr().lock();
    // A closed stderr leaves no one to tell.
    let _ = writeln!(err, "{text}").and_then(|()| err.flush());
}

/// Whether `err` is only stdout's reader having gone away (`herald tail | head`),
/// which ends the command quietly rather than as a failure.
pub(crate) fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|cause| cause.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

/// Prints a message: a JSON line, or `[stream seq] subject  payload`.
///
/// # Errors
///
/// As [`line`].
pub(crate) fn message(message: &Message, json: bool) -> anyhow::Result<()> {
    if json {
        json_line(&WireMessage::from(message))
    } else {
        line(message_line(message))
    }
}

/// Prints a consumer's delivery: a JSON line, or the message's line with the
/// delivery count when it is a redelivery.
///
/// # Errors
///
/// As [`line`].
pub(crate) fn delivery(delivery: &Delivery, json: bool) -> anyhow::Result<()> {
    if json {
        return json_line(&WireDelivery::from(delivery));
    }
    let mut text = message_line(&delivery.message);
    if delivery.deliveries > 1 {
        text.push_str(&format!("  (delivery {})", delivery.deliveries));
    }
    line(text)
}

/// `[stream seq] subject  payload` on one line.
pub(crate) fn message_line(message: &Message) -> String {
    format!(
        "[{} {}] {}  {}",
        message.stream,
        message.seq,
        message.subject,
        payload(&message.payload)
    )
}

/// A payload on one line: text with its line breaks escaped, small binary
/// payloads as base64, larger ones as their size.
pub(crate) fn payload(bytes: &Bytes) -> String {
    match Body::of(bytes) {
        Body::Text(text) => text.replace('\\', "\\\\").replace('\n', "\\n").replace('\r', "\\r"),
        Body::Base64(b64) if bytes.len() <= INLINE_BINARY => format!("base64:{b64}"),
        Body::Base64(_) => format!("<{} bytes, binary>", bytes.len()),
    }
}

/// The name a unit enum variant has in JSON (`work_queue`), for tables.
pub(crate) fn variant(value: &impl Serialize) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        _ => String::from("?"),
    }
}

/// `items` joined by `separator` for a details cell, or `empty` when there
/// are none.
pub(crate) fn joined(items: &[impl std::borrow::Borrow<str>], separator: &str, empty: &str) -> String {
    if items.is_empty() {
        empty.to_owned()
    } else {
        items.join(separator)
    }
}

/// Cuts `text` to at most `max` characters for a table cell, marking the cut.
pub(crate) fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_stay_on_one_line() {
        assert_eq!(payload(&Bytes::from_static(b"order 1")), "order 1");
        assert_eq!(payload(&Bytes::from_static(b"a\nb")), "a\\nb");
        assert_eq!(payload(&Bytes::from_static(&[0xff, 0x00])), "base64:/wA=");
        assert_eq!(payload(&Bytes::from(vec![0xff; 200])), "<200 bytes, binary>");
    }

    #[test]
    fn clipped_cells_say_so() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("a long reason", 6), "a lon…");
    }
}
