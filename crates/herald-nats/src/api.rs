//! The JetStream API as Herald calls it: JSON requests on `$JS.API.>`, errors
//! mapped onto Herald's kinds, and JetStream's RFC 3339 times.

use std::time::Duration;

use async_nats::RequestErrorKind;
use herald_core::{Error, ErrorKind, Result, Timestamp};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// JetStream's error codes that Herald gives a kind of its own.
pub(crate) mod code {
    pub(crate) const CONSUMER_NOT_FOUND: u64 = 10014;
    pub(crate) const CONSUMER_NAME_EXISTS: u64 = 10013;
    pub(crate) const CONSUMER_ALREADY_EXISTS: u64 = 10148;
    pub(crate) const NO_MESSAGE_FOUND: u64 = 10037;
    pub(crate) const STREAM_NOT_FOUND: u64 = 10059;
    pub(crate) const STREAM_NAME_EXISTS: u64 = 10058;
    pub(crate) const STREAM_SUBJECT_OVERLAP: u64 = 10065;
    pub(crate) const STREAM_WRONG_LAST_SEQUENCE: u64 = 10071;
    pub(crate) const STREAM_MESSAGE_EXCEEDS_MAXIMUM: u64 = 10054;
    pub(crate) const STREAM_INVALID_CONFIG: u64 = 10052;
    pub(crate) const STREAM_STORE_FAILED: u64 = 10077;
    pub(crate) const BAD_REQUEST: u64 = 10003;
    pub(crate) const ATOMIC_BATCH_DUPLICATE_ID: u64 = 10201;
    pub(crate) const ATOMIC_PUBLISH_DISABLED: u64 = 10174;
    pub(crate) const ATOMIC_BATCH_WRONG_LAST_SEQUENCE: u64 = 10164;
    pub(crate) const WORK_QUEUE_CONSUMERS_OVERLAP: u64 = 10099;
    pub(crate) const WORK_QUEUE_FILTER_NOT_UNIQUE: u64 = 10100;
    /// Older servers (before 2.10) refuse a filter that is not a subset of
    /// the stream's subjects; Herald checks filters itself first.
    pub(crate) const CONSUMER_FILTER_NOT_SUBSET: u64 = 10093;
}

/// An error as JetStream reports it.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JsError {
    #[serde(default)]
    pub(crate) code: u16,
    #[serde(default)]
    pub(crate) err_code: u64,
    #[serde(default)]
    pub(crate) description: String,
}

#[derive(Deserialize)]
struct MaybeError {
    error: Option<JsError>,
}

/// Turns a JetStream error into Herald's, `what` naming the thing acted on.
pub(crate) fn js_error(err: JsError, what: &str) -> Error {
    let kind = match err.err_code {
        code::STREAM_NOT_FOUND => ErrorKind::StreamNotFound,
        code::CONSUMER_NOT_FOUND => ErrorKind::ConsumerNotFound,
        code::STREAM_NAME_EXISTS => ErrorKind::StreamExists,
        code::CONSUMER_NAME_EXISTS | code::CONSUMER_ALREADY_EXISTS => ErrorKind::ConsumerExists,
        code::STREAM_SUBJECT_OVERLAP => ErrorKind::SubjectConflict,
        code::NO_MESSAGE_FOUND => ErrorKind::MessageNotFound,
        code::STREAM_MESSAGE_EXCEEDS_MAXIMUM => ErrorKind::PayloadTooLarge,
        code::STREAM_WRONG_LAST_SEQUENCE => ErrorKind::WrongExpectedSeq,
        code::STREAM_INVALID_CONFIG | code::CONSUMER_FILTER_NOT_SUBSET => ErrorKind::InvalidConfig,
        code::BAD_REQUEST => ErrorKind::InvalidRequest,
        code::STREAM_STORE_FAILED if is_limit(&err.description) => return stream_full(&err, what),
        _ if err.code == 503 => ErrorKind::Timeout,
        code::WORK_QUEUE_CONSUMERS_OVERLAP..=code::WORK_QUEUE_FILTER_NOT_UNIQUE => ErrorKind::InvalidConfig,
        _ => ErrorKind::Storage,
    };
    Error::new(
        kind,
        format!("{what}: JetStream says {} (code {})", err.description, err.err_code),
    )
}

/// A publish refused under `discard: new`, named by Herald's limit.
fn stream_full(err: &JsError, what: &str) -> Error {
    let limit = if err.description.contains("per subject") {
        "max_msgs_per_subject"
    } else if err.description.contains("bytes") {
        "max_bytes"
    } else {
        "max_msgs"
    };
    Error::new(
        ErrorKind::StreamFull,
        format!("{what}: the stream is full ({limit} reached, discard: new)"),
    )
}

/// Whether a store failure is a stream limit under `discard: new`.
fn is_limit(description: &str) -> bool {
    description.contains("maximum") && description.contains("exceeded")
}

/// The actual seq in JetStream's "wrong last sequence: N".
pub(crate) fn wrong_seq(err: &JsError, expected: u64) -> Error {
    let actual = err
        .description
        .rsplit(':')
        .next()
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Error::wrong_expected_seq("the stream or subject", expected, actual)
}

/// A failed core request.
pub(crate) fn request_error(err: async_nats::RequestError, what: &str) -> Error {
    match err.kind() {
        RequestErrorKind::NoResponders => Error::new(ErrorKind::NoResponders, format!("{what}: no responders")),
        RequestErrorKind::TimedOut => Error::new(ErrorKind::Timeout, format!("{what}: timed out")),
        RequestErrorKind::InvalidSubject => Error::new(ErrorKind::InvalidSubject, format!("{what}: {err}")),
        RequestErrorKind::MaxPayloadExceeded => Error::new(ErrorKind::PayloadTooLarge, format!("{what}: {err}")),
        _ => Error::new(ErrorKind::Closed, format!("{what}: {err}")).with_source(err),
    }
}

/// An error of the connection itself.
pub(crate) fn closed(what: &str, err: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::new(ErrorKind::Closed, format!("{what}: {err}")).with_source(err)
}

/// A JSON answer JetStream sent that Herald could not read.
pub(crate) fn bad_answer(what: &str, err: serde_json::Error) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("{what}: unreadable JetStream answer: {err}"),
    )
    .with_source(err)
}

/// Parses an API answer: its error mapped, or the value.
pub(crate) fn parse<T: DeserializeOwned>(payload: &[u8], what: &str) -> Result<T> {
    if let Ok(MaybeError { error: Some(err) }) = serde_json::from_slice::<MaybeError>(payload) {
        return Err(js_error(err, what));
    }
    serde_json::from_slice(payload).map_err(|e| bad_answer(what, e))
}

/// Sends a request to `$JS.API.<subject>` and parses the answer.
pub(crate) async fn call<T: DeserializeOwned>(
    client: &async_nats::Client,
    subject: String,
    body: &impl serde::Serialize,
    what: &str,
) -> Result<T> {
    let mut body = serde_json::to_vec(body).map_err(|e| bad_answer(what, e))?;
    if body == b"null" {
        // JetStream wants no payload at all for requests without a body.
        body.clear();
    }
    let answer = client
        .request(format!("$JS.API.{subject}"), body.into())
        .await
        .map_err(|e| match e.kind() {
            RequestErrorKind::NoResponders => Error::new(
                ErrorKind::Unsupported,
                format!("{what}: JetStream is not enabled on this NATS server (or is electing a leader)"),
            ),
            _ => request_error(e, what),
        })?;
    parse(&answer.payload, what)
}

/// A JetStream time as a Herald timestamp (`None` for Go's zero time).
pub(crate) fn timestamp(time: OffsetDateTime) -> Option<Timestamp> {
    u64::try_from(time.unix_timestamp_nanos())
        .ok()
        .filter(|n| *n > 0)
        .map(Timestamp)
}

/// Parses an RFC 3339 time, as in the `Nats-Time-Stamp` header.
pub(crate) fn parse_time(text: &str) -> Option<Timestamp> {
    OffsetDateTime::parse(text, &Rfc3339).ok().and_then(timestamp)
}

/// Formats a Herald timestamp as RFC 3339 for a request.
pub(crate) fn format_time(time: Timestamp) -> String {
    let nanos = i128::from(time.as_nanos());
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".to_owned())
}

/// A duration in nanoseconds, as JetStream's JSON carries them.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_through_rfc3339() {
        let t = Timestamp(1_795_000_000_123_456_789);
        assert_eq!(parse_time(&format_time(t)), Some(t));
        assert_eq!(
            parse_time("2026-11-23T10:49:52.445888998Z").map(|t| t.0 % 1_000_000_000),
            Some(445_888_998)
        );
        assert_eq!(parse_time("0001-01-01T00:00:00Z"), None);
    }

    #[test]
    fn the_actual_seq_is_read_from_a_wrong_last_sequence_error() {
        let err = JsError {
            code: 400,
            err_code: code::STREAM_WRONG_LAST_SEQUENCE,
            description: "wrong last sequence: 42".into(),
        };
        assert_eq!(wrong_seq(&err, 7).actual_seq(), Some(42));
        assert_eq!(js_error(err, "x").kind(), ErrorKind::WrongExpectedSeq);
    }
}
