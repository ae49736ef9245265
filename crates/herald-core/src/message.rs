//! Messages: what is published, what is stored, and what a publish returns.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::duration::{MAX_RETENTION_AGE, said};
use crate::error::{Error, ErrorDetail, ErrorKind};
use crate::subject::{StreamName, Subject};

/// 64 KiB: headers carry ids and routing facts, not data; the limit keeps one
/// message's metadata well inside a redb page run.
pub const MAX_HEADER_BYTES: usize = 64 * 1024;

/// 255 bytes: message ids are dedup keys, kept in memory for the dedup window.
pub const MAX_ID_LEN: usize = 255;

/// A point in time: nanoseconds since the Unix epoch, UTC.
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(example = 1_795_431_715_845_421_214_u64)
)]
#[derive(Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The system clock's current time.
    pub fn now() -> Self {
        let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        Self(u64::try_from(since.as_nanos()).unwrap_or(u64::MAX))
    }

    /// Nanoseconds since the Unix epoch.
    pub fn as_nanos(self) -> u64 {
        self.0
    }

    /// This time plus `d`, saturating.
    pub fn saturating_add(self, d: Duration) -> Self {
        Self(self.0.saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }

    /// This time minus `d`, saturating at the epoch.
    pub fn saturating_sub(self, d: Duration) -> Self {
        Self(self.0.saturating_sub(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)))
    }

    /// The time from `earlier` to `self`, zero when `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({}.{:09})", self.0 / 1_000_000_000, self.0 % 1_000_000_000)
    }
}

/// Message headers: a string map, sorted by name. Correlation and causation ids
/// live here.
pub type Headers = BTreeMap<String, String>;

/// A stored message, as read back from a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The stream holding it.
    pub stream: StreamName,
    /// Its position in the stream, from 1, gap-free at append time.
    pub seq: u64,
    /// The subject it was published to.
    pub subject: Subject,
    /// The message id: the publisher's, or one Herald generated.
    pub id: String,
    /// When the stream appended it (UTC). Non-decreasing within a stream.
    pub time: Timestamp,
    /// Its headers.
    pub headers: Headers,
    /// The payload.
    pub payload: Bytes,
    /// The payload's media type, if the publisher named one.
    pub content_type: Option<String>,
    /// When it expires, for messages published with a TTL.
    pub expires: Option<Timestamp>,
}

/// A message to publish, with the checks the stream applies before it appends it.
///
/// # Examples
///
/// ```
/// use herald_core::{OutgoingMessage, Subject};
///
/// let msg = OutgoingMessage::new(Subject::new("orders.created")?, "{\"id\":1}")
///     .id("order-1")
///     .header("correlation-id", "c-42")
///     .content_type("application/json")
///     .expect_last_subject_seq(0);
/// assert_eq!(msg.payload.len(), 8);
/// # Ok::<(), herald_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutgoingMessage {
    /// The subject to publish to; it picks the stream.
    pub subject: Subject,
    /// The payload.
    pub payload: Bytes,
    /// Headers.
    #[serde(default)]
    pub headers: Headers,
    /// The message id. Set it to make retries safe: a second publish with the same
    /// id inside the stream's duplicate window writes nothing. Generated when absent.
    #[serde(default)]
    pub id: Option<String>,
    /// The payload's media type.
    #[serde(default)]
    pub content_type: Option<String>,
    /// Publish only if the stream's last sequence is this (0: the stream is empty).
    #[serde(default)]
    pub expected_last_seq: Option<u64>,
    /// Publish only if the subject's last sequence in the stream is this
    /// (0: the subject has no message). Optimistic concurrency for aggregates and KV.
    #[serde(default)]
    pub expected_last_subject_seq: Option<u64>,
    /// Delete the message this long after it is appended (at most
    /// [`MAX_RETENTION_AGE`]).
    #[serde(default, with = "crate::duration::strict_option")]
    pub ttl: Option<Duration>,
}

impl OutgoingMessage {
    /// A message with no headers, id, checks or TTL.
    pub fn new(subject: Subject, payload: impl Into<Bytes>) -> Self {
        Self {
            subject,
            payload: payload.into(),
            headers: Headers::new(),
            id: None,
            content_type: None,
            expected_last_seq: None,
            expected_last_subject_seq: None,
            ttl: None,
        }
    }

    /// Sets the message id (default: generated, so no dedup).
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.insert(name.into(), value.into());
        self
    }

    /// Sets the content type (default: none).
    pub fn content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Requires the stream's last sequence to be `seq` (default: no check).
    pub fn expect_last_seq(mut self, seq: u64) -> Self {
        self.expected_last_seq = Some(seq);
        self
    }

    /// Requires the subject's last sequence to be `seq` (default: no check).
    pub fn expect_last_subject_seq(mut self, seq: u64) -> Self {
        self.expected_last_subject_seq = Some(seq);
        self
    }

    /// Expires the message `ttl` after it is appended (default: kept by the
    /// stream's limits only).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The bytes of the headers, as counted against [`MAX_HEADER_BYTES`].
    pub fn header_bytes(&self) -> usize {
        self.headers.iter().map(|(k, v)| k.len() + v.len() + 2).sum()
    }

    /// Checks what a stream checks regardless of its config: header size and
    /// names, the id and the TTL.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::HeadersTooLarge`] (over [`MAX_HEADER_BYTES`], plus
    /// [`crate::dlq::ADDED_HEADER_BYTES`] on a dead-letter subject), or
    /// [`ErrorKind::InvalidRequest`] for an empty
    /// header name, an empty or over-long id, an over-long content type, or a TTL
    /// of zero or above [`MAX_RETENTION_AGE`].
    pub fn validate(&self) -> Result<(), Error> {
        let header_bytes = self.header_bytes();
        // A dead letter adds its own bounded headers to a message's
        // (docs/semantics.md, "Dead letters"): room for them, so that a
        // message at the limit can still be dead-lettered.
        let limit = match crate::dead_letter::is_dead_letter_subject(self.subject.as_str()) {
            true => MAX_HEADER_BYTES + crate::dlq::ADDED_HEADER_BYTES,
            false => MAX_HEADER_BYTES,
        };
        if header_bytes > limit {
            return Err(Error::new(
                ErrorKind::HeadersTooLarge,
                format!("headers are {header_bytes} bytes, over the limit of {limit}"),
            )
            .with_detail(ErrorDetail::TooLarge {
                size: header_bytes as u64,
                limit: limit as u64,
            }));
        }
        if let Some(name) = self
            .headers
            .keys()
            .find(|k| k.is_empty() || k.contains(|c: char| c.is_control() || c == ':'))
        {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "header name `{}` is empty or has a control character or `:`",
                    name.escape_debug()
                ),
            ));
        }
        if let Some(id) = self.id.as_ref().filter(|id| id.is_empty() || id.len() > MAX_ID_LEN) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("message id must be 1 to {MAX_ID_LEN} bytes, got {}", id.len()),
            ));
        }
        if let Some(ct) = self
            .content_type
            .as_ref()
            .filter(|ct| ct.len() > 255 || ct.contains(char::is_control))
        {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "content type must be at most 255 bytes without control characters, got {} bytes",
                    ct.len()
                ),
            ));
        }
        if self.ttl == Some(Duration::ZERO) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "a message ttl must be above zero",
            ));
        }
        if let Some(ttl) = self.ttl.filter(|ttl| *ttl > MAX_RETENTION_AGE) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "a message ttl of {} is over the limit of {}; leave it out to keep the message",
                    said(ttl),
                    said(MAX_RETENTION_AGE)
                ),
            ));
        }
        Ok(())
    }
}

/// What a successful publish returns.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishAck {
    /// The stream that holds the message.
    pub stream: StreamName,
    /// Its sequence; for a duplicate, the sequence of the first copy.
    pub seq: u64,
    /// Whether the message id was seen inside the duplicate window, so nothing
    /// was written.
    pub duplicate: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::WireOutgoing;

    fn message() -> OutgoingMessage {
        OutgoingMessage::new(Subject::new("a.b").unwrap(), "x")
    }

    #[test]
    fn a_ttl_is_bounded_and_the_error_names_it_and_the_bound() {
        message().ttl(MAX_RETENTION_AGE).validate().unwrap();
        for ttl in [MAX_RETENTION_AGE + Duration::from_millis(1), Duration::MAX] {
            let err = message().ttl(ttl).validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest);
            assert!(err.to_string().contains("ttl"), "{err}");
            assert!(err.to_string().contains("over the limit of 36500 days"), "{err}");
        }
    }

    #[test]
    fn a_wire_ttl_ms_of_u64_max_is_refused() {
        let json = format!(r#"{{"subject": "a.b", "payload": "x", "ttl_ms": {}}}"#, u64::MAX);
        let wire: WireOutgoing = serde_json::from_str(&json).unwrap();
        let err = wire.into_message().unwrap().validate().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidRequest);
        let json = r#"{"subject": "a.b", "payload": "x", "ttl": {"secs": 0, "nanos": 4000000000}}"#;
        assert!(serde_json::from_str::<OutgoingMessage>(json).is_err());
    }
}
