//! The one error type every Backend and the facade return.
//!
//! Each crate keeps its own structured error enum inside; at the Backend seam
//! they become an [`Error`] with a matchable [`ErrorKind`] (with a stable wire
//! code), a message, optional structured detail and the cause as `source()`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What went wrong, as a caller matches on it.
///
/// Every kind has a stable numeric [`code`](ErrorKind::code) used on the wire. A
/// retired code is never reused.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorKind {
    /// A subject or pattern breaks the subject rules, or is reserved.
    InvalidSubject,
    /// A stream, consumer or bucket name breaks the naming rules.
    InvalidName,
    /// A configuration value is out of range or inconsistent.
    InvalidConfig,
    /// A request is malformed (for example an empty batch, or a malformed frame).
    InvalidRequest,
    /// A payload is over the stream's maximum message size.
    PayloadTooLarge,
    /// Headers are over the maximum header size.
    HeadersTooLarge,
    /// The stream does not exist.
    StreamNotFound,
    /// A stream with that name already exists with a different configuration.
    StreamExists,
    /// The stream's subjects overlap another stream's, or no stream captures a subject.
    SubjectConflict,
    /// No message at that sequence or for that subject.
    MessageNotFound,
    /// The expected last sequence (of the stream or the subject) did not match.
    WrongExpectedSeq,
    /// The stream is at a limit and its discard policy rejects new messages.
    StreamFull,
    /// The consumer does not exist.
    ConsumerNotFound,
    /// A consumer with that name exists with a different configuration.
    ConsumerExists,
    /// An ack for a delivery whose lease is no longer held by the caller.
    LeaseLost,
    /// Nobody serves the requested subject.
    NoResponders,
    /// The operation did not complete in time.
    Timeout,
    /// The backend cannot keep this promise (see its docs).
    Unsupported,
    /// The storage failed (I/O, corruption); nothing in the failed request was acknowledged.
    Storage,
    /// The bus has been closed.
    Closed,
    /// A subscriber fell behind a bounded buffer and missed messages.
    Lagged,
    /// Not allowed for these credentials.
    PermissionDenied,
    /// A bug in Herald; please report it.
    Internal,
}

impl ErrorKind {
    /// The stable wire code of this kind.
    pub fn code(self) -> u16 {
        match self {
            ErrorKind::InvalidSubject => 1001,
            ErrorKind::InvalidName => 1002,
            ErrorKind::InvalidConfig => 1003,
            ErrorKind::InvalidRequest => 1004,
            ErrorKind::PayloadTooLarge => 1005,
            ErrorKind::HeadersTooLarge => 1006,
            ErrorKind::StreamNotFound => 2001,
            ErrorKind::StreamExists => 2002,
            ErrorKind::SubjectConflict => 2003,
            ErrorKind::MessageNotFound => 2004,
            ErrorKind::ConsumerNotFound => 2005,
            ErrorKind::ConsumerExists => 2006,
            ErrorKind::WrongExpectedSeq => 3001,
            ErrorKind::StreamFull => 3002,
            ErrorKind::LeaseLost => 3003,
            ErrorKind::NoResponders => 4001,
            ErrorKind::Timeout => 4002,
            ErrorKind::Unsupported => 4003,
            ErrorKind::Lagged => 4004,
            ErrorKind::PermissionDenied => 4005,
            ErrorKind::Storage => 5001,
            ErrorKind::Closed => 5002,
            ErrorKind::Internal => 5999,
        }
    }

    /// The kind for a wire code, if it is one Herald knows.
    pub fn from_code(code: u16) -> Option<Self> {
        ALL_KINDS.iter().copied().find(|k| k.code() == code)
    }
}

/// Every kind, for code round-trips.
const ALL_KINDS: [ErrorKind; 23] = [
    ErrorKind::InvalidSubject,
    ErrorKind::InvalidName,
    ErrorKind::InvalidConfig,
    ErrorKind::InvalidRequest,
    ErrorKind::PayloadTooLarge,
    ErrorKind::HeadersTooLarge,
    ErrorKind::StreamNotFound,
    ErrorKind::StreamExists,
    ErrorKind::SubjectConflict,
    ErrorKind::MessageNotFound,
    ErrorKind::WrongExpectedSeq,
    ErrorKind::StreamFull,
    ErrorKind::ConsumerNotFound,
    ErrorKind::ConsumerExists,
    ErrorKind::LeaseLost,
    ErrorKind::NoResponders,
    ErrorKind::Timeout,
    ErrorKind::Unsupported,
    ErrorKind::Storage,
    ErrorKind::Closed,
    ErrorKind::Lagged,
    ErrorKind::PermissionDenied,
    ErrorKind::Internal,
];

/// An error and its causes on one line, `outer: inner: …`, leaving out a
/// cause whose text an outer message already carries: what logs and
/// one-line error reports print.
pub fn cause_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let part = cause.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = cause.source();
    }
    text
}

/// Structured facts some errors carry, for callers that act on them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
#[non_exhaustive]
pub enum ErrorDetail {
    /// An expected-sequence check failed: what was expected and what the stream
    /// (or subject) actually holds as its last sequence (0 when empty).
    WrongExpectedSeq {
        /// The sequence the caller expected.
        expected: u64,
        /// The actual last sequence.
        actual: u64,
    },
    /// A size limit was exceeded.
    TooLarge {
        /// The size of what was sent, in bytes.
        size: u64,
        /// The limit, in bytes.
        limit: u64,
    },
    /// A subscriber missed messages.
    Lagged {
        /// How many messages it missed.
        missed: u64,
        /// The sequence to resume from.
        resume_from: u64,
    },
}

/// Herald's error: a matchable [`kind`](Error::kind), a message and the cause.
///
/// # Examples
///
/// ```
/// use herald_core::{ErrorKind, Subject};
///
/// let err = Subject::new("orders..created").unwrap_err();
/// assert_eq!(err.kind(), ErrorKind::InvalidSubject);
/// assert_eq!(err.kind().code(), 1001);
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    detail: Option<ErrorDetail>,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    /// An error of `kind` with a lower-case message that describes this layer.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            detail: None,
            source: None,
        }
    }

    /// Attaches structured detail.
    pub fn with_detail(mut self, detail: ErrorDetail) -> Self {
        self.detail = Some(detail);
        self
    }

    /// Attaches the cause, reported through `source()`.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// A [`ErrorKind::PayloadTooLarge`] error carrying the size and the limit;
    /// `whose` names the limit ("the server's", "stream `orders`'s").
    pub fn payload_too_large(size: u64, limit: u64, whose: &str) -> Self {
        Self::new(
            ErrorKind::PayloadTooLarge,
            format!("payload of {size} bytes is over {whose} limit of {limit}"),
        )
        .with_detail(ErrorDetail::TooLarge { size, limit })
    }

    /// A [`ErrorKind::WrongExpectedSeq`] error carrying both sequences.
    pub fn wrong_expected_seq(what: &str, expected: u64, actual: u64) -> Self {
        Self::new(
            ErrorKind::WrongExpectedSeq,
            format!("wrong expected last sequence of {what}: expected {expected}, actual {actual}"),
        )
        .with_detail(ErrorDetail::WrongExpectedSeq { expected, actual })
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message, without the kind or the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Structured detail, when the kind carries any.
    pub fn detail(&self) -> Option<&ErrorDetail> {
        self.detail.as_ref()
    }

    /// For [`ErrorKind::WrongExpectedSeq`]: the actual last sequence.
    pub fn actual_seq(&self) -> Option<u64> {
        match self.detail {
            Some(ErrorDetail::WrongExpectedSeq { actual, .. }) => Some(actual),
            _ => None,
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(detail) = &self.detail {
            d.field("detail", detail);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_deref().map(|s| s as &(dyn std::error::Error + 'static))
    }
}

impl From<std::io::Error> for Error {
    fn from(err: std::io::Error) -> Self {
        Error::new(ErrorKind::Storage, "i/o failed").with_source(err)
    }
}

/// Herald's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn codes_are_unique_and_round_trip() {
        let mut seen = HashSet::new();
        for kind in ALL_KINDS {
            assert!(seen.insert(kind.code()), "duplicate code {}", kind.code());
            assert_eq!(ErrorKind::from_code(kind.code()), Some(kind));
        }
        assert_eq!(ErrorKind::from_code(9), None);
    }

    #[test]
    fn wrong_expected_seq_carries_the_actual_value() {
        let err = Error::wrong_expected_seq("stream `orders`", 3, 7);
        assert_eq!(err.kind(), ErrorKind::WrongExpectedSeq);
        assert_eq!(err.actual_seq(), Some(7));
        assert!(err.to_string().contains("expected 3, actual 7"));
    }

    #[test]
    fn the_source_is_kept_and_not_printed_twice() {
        let io = std::io::Error::other("disk on fire");
        let err = Error::new(ErrorKind::Storage, "commit failed").with_source(io);
        assert_eq!(err.to_string(), "commit failed");
        assert_eq!(
            std::error::Error::source(&err).map(|s| s.to_string()),
            Some("disk on fire".into())
        );
    }
}
