//! Stream configuration, state, purge and read requests.

use std::num::{NonZeroU32, NonZeroU64};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::duration::{MAX_RETENTION_AGE, said};
use crate::error::{Error, ErrorKind};
use crate::message::Timestamp;
use crate::subject::{Pattern, StreamName, Subject};

/// 1 MiB: the default largest payload a stream accepts, as in NATS; raise it
/// per stream for bigger messages.
pub const DEFAULT_MAX_PAYLOAD: NonZeroU32 = NonZeroU32::new(1024 * 1024).expect("non-zero");

/// 2 minutes: the default duplicate window, as in NATS; long enough to cover a
/// publisher's retries after a reconnect.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// 64 MiB: the hard upper bound on any stream's `max_payload`; one message has to
/// fit comfortably in one write transaction.
pub const MAX_PAYLOAD_LIMIT: u32 = 64 * 1024 * 1024;

/// When a stream deletes messages, besides its limits.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Retention {
    /// Only the limits (count, bytes, age, per subject) delete. Consumers never hold
    /// messages back.
    #[default]
    Limits,
    /// A message is deleted once every consumer of the stream has acked it.
    Interest,
    /// A message is deleted once one consumer acked it.
    WorkQueue,
}

/// What happens when a publish would take a stream over a limit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Discard {
    /// Delete the oldest messages to make room.
    #[default]
    Old,
    /// Reject the new message with [`ErrorKind::StreamFull`].
    New,
}

/// When a publish is acknowledged relative to the disk.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Durability {
    /// The commit holding the message is fsynced before the publish returns.
    #[default]
    Fsync,
    /// The publish returns after the commit, before the fsync; the engine fsyncs
    /// within a bounded interval (docs/semantics.md states it: 100 ms). A crash can
    /// lose the relaxed messages of that interval, never older ones.
    Relaxed,
}

/// A stream's configuration.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use herald_core::{Discard, StreamConfig};
///
/// let config = StreamConfig::new("orders")?
///     .subjects(["orders.>"])?
///     .max_msgs(1_000_000)
///     .max_age(Duration::from_secs(7 * 24 * 3600))
///     .discard(Discard::Old);
/// assert_eq!(config.subjects.len(), 1);
/// # Ok::<(), herald_core::Error>(())
/// ```
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(description = "A stream's configuration: the subjects it captures, its limits and policies.")
)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// The stream's name.
    pub name: StreamName,
    /// The subject patterns it captures. Default: the name and `name.>`.
    pub subjects: Vec<Pattern>,
    /// Keep at most this many messages. Default: no limit.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 1))]
    #[serde(default)]
    pub max_msgs: Option<NonZeroU64>,
    /// Keep at most this many bytes of messages. Default: no limit.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 1))]
    #[serde(default)]
    pub max_bytes: Option<NonZeroU64>,
    /// Delete messages older than this, at most [`MAX_RETENTION_AGE`].
    /// Default: kept forever.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Duration>))]
    #[serde(default, with = "crate::duration::strict_option")]
    pub max_age: Option<Duration>,
    /// Keep at most this many messages per subject (1 gives last-value compaction).
    /// Default: no limit.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 1))]
    #[serde(default)]
    pub max_msgs_per_subject: Option<NonZeroU64>,
    /// The largest payload accepted. Default: [`DEFAULT_MAX_PAYLOAD`].
    #[cfg_attr(feature = "openapi", schema(value_type = u32, minimum = 1))]
    #[serde(default = "default_max_payload")]
    pub max_payload: NonZeroU32,
    /// When messages are deleted besides the limits. Default: [`Retention::Limits`].
    #[serde(default)]
    pub retention: Retention,
    /// What a publish over a limit does. Default: [`Discard::Old`].
    #[serde(default)]
    pub discard: Discard,
    /// How long message ids are remembered for dedup, at most
    /// [`MAX_RETENTION_AGE`]. Default: [`DEFAULT_DUPLICATE_WINDOW`]; `None`
    /// turns dedup off.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Duration>))]
    #[serde(default = "default_duplicate_window", with = "crate::duration::strict_option")]
    pub duplicate_window: Option<Duration>,
    /// When a publish is acknowledged. Default: [`Durability::Fsync`].
    #[serde(default)]
    pub durability: Durability,
    /// Keep a per-subject history index, so that all messages of one subject
    /// can be read in order without scanning the stream (event-sourced
    /// aggregates, KV history). It costs one more index write per message, so it
    /// is off by default; `max_msgs_per_subject` turns it on. Fixed at creation.
    #[serde(default)]
    pub subject_index: bool,
}

fn default_max_payload() -> NonZeroU32 {
    DEFAULT_MAX_PAYLOAD
}

fn default_duplicate_window() -> Option<Duration> {
    Some(DEFAULT_DUPLICATE_WINDOW)
}

impl StreamConfig {
    /// The default configuration for a stream named `name`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`] for an invalid name.
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = StreamName::new(name)?;
        Ok(Self::with_name(name))
    }

    /// The default configuration for an already validated name.
    pub fn with_name(name: StreamName) -> Self {
        Self {
            subjects: name.default_patterns(),
            name,
            max_msgs: None,
            max_bytes: None,
            max_age: None,
            max_msgs_per_subject: None,
            max_payload: DEFAULT_MAX_PAYLOAD,
            retention: Retention::Limits,
            discard: Discard::Old,
            duplicate_window: Some(DEFAULT_DUPLICATE_WINDOW),
            durability: Durability::Fsync,
            subject_index: false,
        }
    }

    /// Sets the captured subject patterns.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidSubject`] for an invalid pattern.
    pub fn subjects<I, S>(mut self, patterns: I) -> Result<Self, Error>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        self.subjects = patterns.into_iter().map(Pattern::new).collect::<Result<_, _>>()?;
        Ok(self)
    }

    /// Keeps at most `n` messages (`0` means no limit).
    pub fn max_msgs(mut self, n: u64) -> Self {
        self.max_msgs = NonZeroU64::new(n);
        self
    }

    /// Keeps at most `n` bytes (`0` means no limit).
    pub fn max_bytes(mut self, n: u64) -> Self {
        self.max_bytes = NonZeroU64::new(n);
        self
    }

    /// Deletes messages older than `age`.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// Keeps at most `n` messages per subject (`0` means no limit).
    pub fn max_msgs_per_subject(mut self, n: u64) -> Self {
        self.max_msgs_per_subject = NonZeroU64::new(n);
        self
    }

    /// Sets the largest accepted payload, in bytes.
    pub fn max_payload(mut self, bytes: NonZeroU32) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets the retention kind.
    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }

    /// Sets the discard policy.
    pub fn discard(mut self, discard: Discard) -> Self {
        self.discard = discard;
        self
    }

    /// Sets the duplicate window; `None` turns dedup off.
    pub fn duplicate_window(mut self, window: Option<Duration>) -> Self {
        self.duplicate_window = window;
        self
    }

    /// Sets the durability.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Keeps a per-subject history index (default: off; see the field).
    pub fn subject_index(mut self, enabled: bool) -> Self {
        self.subject_index = enabled;
        self
    }

    /// Whether the stream keeps the per-subject history index: asked for, or
    /// needed by `max_msgs_per_subject` (which deletes each subject's oldest).
    pub fn indexes_subjects(&self) -> bool {
        self.subject_index || self.max_msgs_per_subject.is_some()
    }

    /// Checks the configuration on its own (not against other streams).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for no subjects, overlapping subjects, a zero
    /// `max_age` or `duplicate_window`, one above [`MAX_RETENTION_AGE`], or a
    /// `max_payload` above [`MAX_PAYLOAD_LIMIT`].
    pub fn validate(&self) -> Result<(), Error> {
        if self.subjects.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("stream `{}` captures no subjects", self.name),
            ));
        }
        for (i, a) in self.subjects.iter().enumerate() {
            for b in &self.subjects[i + 1..] {
                if a.overlaps(b) {
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!("stream `{}`: subjects `{a}` and `{b}` overlap", self.name),
                    ));
                }
            }
            if a.as_str().starts_with('$') != self.name.is_reserved() {
                return Err(Error::new(
                    ErrorKind::InvalidSubject,
                    format!(
                        "stream `{}`: `$` subjects belong to `$` streams only (`{a}`)",
                        self.name
                    ),
                ));
            }
        }
        if self.max_age == Some(Duration::ZERO) {
            return Err(Error::new(ErrorKind::InvalidConfig, "max_age must be above zero"));
        }
        if self.duplicate_window == Some(Duration::ZERO) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                "duplicate_window must be above zero; use None to turn dedup off",
            ));
        }
        for (field, age) in [("max_age", self.max_age), ("duplicate_window", self.duplicate_window)] {
            if let Some(age) = age.filter(|age| *age > MAX_RETENTION_AGE) {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "stream `{}`: {field} of {} is over the limit of {}; leave it out to keep messages forever",
                        self.name,
                        said(age),
                        said(MAX_RETENTION_AGE)
                    ),
                ));
            }
        }
        if self.max_payload.get() > MAX_PAYLOAD_LIMIT {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "max_payload {} is over the limit of {MAX_PAYLOAD_LIMIT}",
                    self.max_payload
                ),
            ));
        }
        Ok(())
    }

    /// Whether the stream captures `subject`.
    pub fn captures(&self, subject: &Subject) -> bool {
        self.subjects.iter().any(|p| p.matches(subject))
    }
}

/// A stream's current state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamState {
    /// Messages held.
    pub messages: u64,
    /// Bytes held (payload, subject, id and headers).
    pub bytes: u64,
    /// The first sequence held; `last_seq + 1` when empty.
    pub first_seq: u64,
    /// When the first message held was appended.
    pub first_time: Option<Timestamp>,
    /// The last sequence ever assigned (not reset by purges or deletions).
    pub last_seq: u64,
    /// When the last message was appended.
    pub last_time: Option<Timestamp>,
    /// Distinct subjects among the messages held.
    pub subjects: u64,
    /// Messages deleted over the stream's life (limits, TTL, purges, acks).
    pub deleted: u64,
}

/// A stream's configuration and state.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamInfo {
    /// Its configuration.
    pub config: StreamConfig,
    /// Its state.
    pub state: StreamState,
    /// When it was created.
    pub created: Timestamp,
}

/// Which messages a purge deletes.
///
/// # Examples
///
/// ```
/// use herald_core::{Purge, Subject};
///
/// let all = Purge::all();
/// let one_subject_before_100 = Purge::subject(Subject::new("orders.eu")?).before(100);
/// # let _ = (all, one_subject_before_100);
/// # Ok::<(), herald_core::Error>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "PurgeSelector", into = "PurgeSelector")]
pub struct Purge {
    /// Only messages of this subject.
    pub subject: Option<Subject>,
    /// Only messages with a sequence below this.
    pub before_seq: Option<u64>,
}

/// A purge as it travels: a destructive request says what it destroys, so
/// every message is `{"all": true}` and never an empty or misspelt selector.
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(
        description = "Which messages a purge deletes: `{\"all\": true}` for every one, or one subject's, \
                          those below a seq, or both."
    )
)]
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeSelector {
    /// Every message of the stream (alone: not with the other fields).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Only messages of this subject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Subject>,
    /// Only messages with a sequence below this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before_seq: Option<u64>,
}

impl TryFrom<PurgeSelector> for Purge {
    type Error = Error;

    fn try_from(selector: PurgeSelector) -> Result<Purge, Error> {
        let narrowed = selector.subject.is_some() || selector.before_seq.is_some();
        match (selector.all, narrowed) {
            (true, true) => Err(Error::new(
                ErrorKind::InvalidRequest,
                "a purge is either `all` or narrowed by `subject` and `before_seq`, not both",
            )),
            (false, false) => Err(Error::new(
                ErrorKind::InvalidRequest,
                "say what to purge: {\"all\": true} for every message, or `subject` and/or `before_seq`",
            )),
            _ => Ok(Purge {
                subject: selector.subject,
                before_seq: selector.before_seq,
            }),
        }
    }
}

impl From<Purge> for PurgeSelector {
    fn from(purge: Purge) -> PurgeSelector {
        PurgeSelector {
            all: purge.subject.is_none() && purge.before_seq.is_none(),
            subject: purge.subject,
            before_seq: purge.before_seq,
        }
    }
}

impl Purge {
    /// Every message.
    pub fn all() -> Self {
        Self::default()
    }

    /// Every message of `subject`.
    pub fn subject(subject: Subject) -> Self {
        Self {
            subject: Some(subject),
            before_seq: None,
        }
    }

    /// Narrows the purge to sequences below `seq`.
    pub fn before(mut self, seq: u64) -> Self {
        self.before_seq = Some(seq);
        self
    }
}

/// Where a range read starts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadFrom {
    /// At this sequence (or the first held after it).
    Seq(u64),
    /// At the first message appended at or after this time.
    Time(Timestamp),
}

/// A range read: messages in sequence order from a start, optionally filtered
/// by subject patterns, up to a limit.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadRange {
    /// Where to start.
    pub from: ReadFrom,
    /// Only messages whose subject matches one of these; empty means all.
    #[serde(default)]
    pub filter: Vec<Pattern>,
    /// At most this many messages.
    pub limit: usize,
}

impl ReadRange {
    /// Up to `limit` messages from sequence `seq`.
    pub fn from_seq(seq: u64, limit: usize) -> Self {
        Self {
            from: ReadFrom::Seq(seq),
            filter: Vec::new(),
            limit,
        }
    }

    /// Up to `limit` messages appended at or after `time`.
    pub fn from_time(time: Timestamp, limit: usize) -> Self {
        Self {
            from: ReadFrom::Time(time),
            filter: Vec::new(),
            limit,
        }
    }

    /// Only messages matching `pattern` (may be called several times).
    pub fn filter(mut self, pattern: Pattern) -> Self {
        self.filter.push(pattern);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::duration::MAX_RETENTION_AGE;

    #[test]
    fn ages_and_windows_are_bounded_and_the_error_names_the_field_and_the_bound() {
        let at = StreamConfig::new("s")
            .unwrap()
            .max_age(MAX_RETENTION_AGE)
            .duplicate_window(Some(MAX_RETENTION_AGE));
        at.validate().unwrap();
        let over = MAX_RETENTION_AGE + Duration::from_nanos(1);
        for (config, field) in [
            (at.clone().max_age(over), "max_age"),
            (at.clone().max_age(Duration::from_secs(u64::MAX)), "max_age"),
            (at.clone().duplicate_window(Some(over)), "duplicate_window"),
            (at.clone().duplicate_window(Some(Duration::MAX)), "duplicate_window"),
        ] {
            let err = config.validate().unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
            assert!(err.to_string().contains(field), "{err}");
            assert!(err.to_string().contains("over the limit of 36500 days"), "{err}");
        }
    }

    #[test]
    fn a_duration_with_nanos_of_a_second_or_more_is_refused_on_the_wire() {
        for field in ["max_age", "duplicate_window"] {
            let json = format!(r#"{{"name": "s", "subjects": ["s"], "{field}": {{"secs": 1, "nanos": 4000000000}}}}"#);
            let err = crate::input::from_json::<StreamConfig>("body", json.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest);
            assert!(err.message().contains(&format!("in `{field}`")), "{err}");
            assert!(err.message().contains("`nanos` must be below 1000000000"), "{err}");
        }
        let json =
            r#"{"name": "s", "subjects": ["s"], "max_age": {"secs": 1, "nanos": 999999999}, "duplicate_window": null}"#;
        let config = crate::input::from_json::<StreamConfig>("body", json.as_bytes()).unwrap();
        assert_eq!(config.max_age, Some(Duration::new(1, 999_999_999)));
        assert_eq!(config.duplicate_window, None);
        let round = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<StreamConfig>(&round).unwrap(), config);
    }
}
