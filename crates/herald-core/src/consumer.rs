//! Durable consumers: configuration, deliveries and info.
//!
//! A consumer is a named cursor on one stream. Several members may share it (a
//! consumer group): each message in flight is leased to one member at a time.

use std::fmt;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::dead_letter::dead_letter_names;
use crate::duration::{MAX_LEASE, MAX_NAK_DELAY, said};
use crate::error::Error;
use crate::message::{Message, Timestamp};
use crate::subject::{Pattern, StreamName, check_name};

/// 30 s: the default lease, as in NATS: long enough for ordinary handlers, short
/// enough that a crashed member's messages come back within a minute.
pub const DEFAULT_ACK_WAIT: Duration = Duration::from_secs(30);

/// 1,000: the default bound on messages in flight per consumer, as in NATS.
pub const DEFAULT_MAX_ACK_PENDING: NonZeroU32 = NonZeroU32::new(1000).expect("non-zero");

/// A validated consumer (or member) name: the same rules as stream names.
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(value_type = String, example = "billing")
)]
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ConsumerName(Arc<str>);

impl ConsumerName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidName`] as for stream names (no leading `$`).
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        let name = name.as_ref();
        if name.starts_with('$') {
            return Err(Error::new(
                crate::ErrorKind::InvalidName,
                format!("consumer name `{name}` may not start with `$`"),
            ));
        }
        check_name(name, "consumer")?;
        Ok(Self(Arc::from(name)))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

crate::subject::text_newtype!(ConsumerName);

/// Where a new consumer starts.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartPolicy {
    /// From the first message held.
    #[default]
    All,
    /// From the next message published after the consumer is created.
    New,
    /// From this sequence.
    FromSeq(u64),
    /// From the first message appended at or after this time.
    FromTime(Timestamp),
    /// From the last message of each subject (then everything after).
    LastPerSubject,
}

/// Where a consumer's dead letters go.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetter {
    /// To the consumer's own stream `$dlq-<stream>-<consumer>`, subject
    /// `$dlq.<stream>.<consumer>`.
    #[default]
    PerConsumer,
    /// Dropped: a message past `max_deliver` or termed is acked and forgotten.
    Discard,
}

/// A durable consumer's configuration.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use herald_core::ConsumerConfig;
///
/// let config = ConsumerConfig::new("billing")?
///     .filter("orders.created")?
///     .ack_wait(Duration::from_secs(10))
///     .max_deliver(5)
///     .backoff([Duration::from_secs(1), Duration::from_secs(5)]);
/// assert_eq!(config.filters.len(), 1);
/// # Ok::<(), herald_core::Error>(())
/// ```
#[cfg_attr(
    feature = "openapi",
    derive(utoipa::ToSchema),
    schema(description = "A durable consumer's configuration: filters, start, lease, redelivery and dead letters.")
)]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsumerConfig {
    /// The consumer's name, unique within its stream.
    pub name: ConsumerName,
    /// Only messages whose subject matches one of these; empty means all.
    #[serde(default)]
    pub filters: Vec<Pattern>,
    /// Where it starts. Default: [`StartPolicy::All`].
    #[serde(default)]
    pub start: StartPolicy,
    /// How long a delivery is leased before it is redelivered, at most
    /// [`MAX_LEASE`]. Default: 30 s.
    #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Duration))]
    #[serde(default = "default_ack_wait", with = "crate::duration::strict")]
    pub ack_wait: Duration,
    /// After this many deliveries a message is dead-lettered instead. Default: no limit.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u32>, minimum = 1))]
    #[serde(default)]
    pub max_deliver: Option<NonZeroU32>,
    /// The lease of the n-th delivery is `backoff[n-1]` (the last entry repeats);
    /// empty means `ack_wait` for every delivery. Each at most [`MAX_LEASE`].
    /// Default: empty.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<crate::openapi::Duration>))]
    #[serde(default, with = "crate::duration::strict_list")]
    pub backoff: Vec<Duration>,
    /// At most this many messages in flight. Default: 1,000.
    #[cfg_attr(feature = "openapi", schema(value_type = u32, minimum = 1))]
    #[serde(default = "default_max_ack_pending")]
    pub max_ack_pending: NonZeroU32,
    /// Where dead letters go. Default: [`DeadLetter::PerConsumer`].
    #[serde(default)]
    pub dead_letter: DeadLetter,
}

fn default_ack_wait() -> Duration {
    DEFAULT_ACK_WAIT
}

fn default_max_ack_pending() -> NonZeroU32 {
    DEFAULT_MAX_ACK_PENDING
}

impl ConsumerConfig {
    /// The default configuration for a consumer named `name`.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidName`].
    pub fn new(name: impl AsRef<str>) -> Result<Self, Error> {
        Ok(Self {
            name: ConsumerName::new(name)?,
            filters: Vec::new(),
            start: StartPolicy::All,
            ack_wait: DEFAULT_ACK_WAIT,
            max_deliver: None,
            backoff: Vec::new(),
            max_ack_pending: DEFAULT_MAX_ACK_PENDING,
            dead_letter: DeadLetter::PerConsumer,
        })
    }

    /// Adds a subject filter (may be called several times).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidSubject`].
    pub fn filter(mut self, pattern: impl AsRef<str>) -> Result<Self, Error> {
        self.filters.push(Pattern::new(pattern)?);
        Ok(self)
    }

    /// Sets the start policy.
    pub fn start(mut self, start: StartPolicy) -> Self {
        self.start = start;
        self
    }

    /// Sets the lease.
    pub fn ack_wait(mut self, ack_wait: Duration) -> Self {
        self.ack_wait = ack_wait;
        self
    }

    /// Dead-letters a message after `n` deliveries (`0` means no limit).
    pub fn max_deliver(mut self, n: u32) -> Self {
        self.max_deliver = NonZeroU32::new(n);
        self
    }

    /// Sets the per-delivery leases.
    pub fn backoff(mut self, schedule: impl IntoIterator<Item = Duration>) -> Self {
        self.backoff = schedule.into_iter().collect();
        self
    }

    /// Bounds the messages in flight.
    pub fn max_ack_pending(mut self, n: NonZeroU32) -> Self {
        self.max_ack_pending = n;
        self
    }

    /// Sets where dead letters go.
    pub fn dead_letter(mut self, dead_letter: DeadLetter) -> Self {
        self.dead_letter = dead_letter;
        self
    }

    /// The lease of the `delivery`-th delivery (1-based), at most
    /// [`MAX_LEASE`]: a consumer stored before the bound existed is held to
    /// it rather than overflow the clock its leases run on.
    pub fn lease_for(&self, delivery: u32) -> Duration {
        let i = (delivery.max(1) - 1) as usize;
        self.backoff
            .get(i)
            .or(self.backoff.last())
            .copied()
            .unwrap_or(self.ack_wait)
            .min(MAX_LEASE)
    }

    /// Checks the configuration for a consumer of `stream`: as
    /// [`validate`](ConsumerConfig::validate), and that its dead-letter
    /// stream's name fits the name limit (a consumer on a dead-letter stream
    /// adds its name to an already long one).
    ///
    /// # Errors
    ///
    /// As [`validate`](ConsumerConfig::validate); [`crate::ErrorKind::InvalidName`]
    /// when the dead-letter stream's name would be too long.
    pub fn validate_on(&self, stream: &StreamName) -> Result<(), Error> {
        self.validate()?;
        if self.dead_letter == DeadLetter::PerConsumer {
            dead_letter_names(stream, &self.name)?;
        }
        Ok(())
    }

    /// Checks the configuration.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidConfig`] for an `ack_wait` or backoff step of
    /// zero or above [`MAX_LEASE`].
    pub fn validate(&self) -> Result<(), Error> {
        if self.ack_wait.is_zero() || self.backoff.iter().any(Duration::is_zero) {
            return Err(Error::new(
                crate::ErrorKind::InvalidConfig,
                format!(
                    "consumer `{}`: ack_wait and backoff steps must be above zero",
                    self.name
                ),
            ));
        }
        let leases =
            std::iter::once(("ack_wait", self.ack_wait)).chain(self.backoff.iter().map(|d| ("a backoff step", *d)));
        for (field, lease) in leases {
            if lease > MAX_LEASE {
                return Err(Error::new(
                    crate::ErrorKind::InvalidConfig,
                    format!(
                        "consumer `{}`: {field} of {} is over the limit of {}; a longer task extends its lease with in_progress",
                        self.name,
                        said(lease),
                        said(MAX_LEASE)
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks that each filter can match a subject of `stream`: a filter
    /// that overlaps none of the stream's subjects would never deliver a
    /// thing. A filter that overlaps them only in part (`>`, or `*.created`
    /// on a stream of `orders.>`) is taken: it delivers what the two share.
    ///
    /// Filters in `kept` (the ones a consumer being updated already has) are
    /// not checked again: a stream whose subjects changed after a consumer
    /// was made does not stop that consumer from being updated, and what the
    /// stream still holds under its old subjects can still match them
    /// (docs/semantics.md, Consumers).
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidConfig`] naming the first filter that can
    /// never match, and the stream's subjects.
    ///
    /// # Examples
    ///
    /// ```
    /// use herald_core::{ConsumerConfig, ErrorKind, StreamConfig};
    ///
    /// let orders = StreamConfig::new("orders")?.subjects(["orders.>"])?;
    /// let billing = ConsumerConfig::new("billing")?.filter("orders.created")?;
    /// assert!(billing.check_filters(&orders, &[]).is_ok());
    /// let lost = ConsumerConfig::new("billing")?.filter("payments.>")?;
    /// let err = lost.check_filters(&orders, &[]).unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::InvalidConfig);
    /// # Ok::<(), herald_core::Error>(())
    /// ```
    pub fn check_filters(&self, stream: &crate::StreamConfig, kept: &[Pattern]) -> Result<(), Error> {
        let never = self
            .filters
            .iter()
            .filter(|filter| !kept.contains(filter))
            .find(|filter| !stream.subjects.iter().any(|subject| subject.overlaps(filter)));
        let Some(filter) = never else {
            return Ok(());
        };
        let subjects: Vec<String> = stream.subjects.iter().map(|s| format!("`{s}`")).collect();
        Err(Error::new(
            crate::ErrorKind::InvalidConfig,
            format!(
                "consumer `{}`: filter `{filter}` matches none of the subjects of stream `{}` ({})",
                self.name,
                stream.name,
                subjects.join(", ")
            ),
        ))
    }

    /// Whether the consumer takes messages of `subject`.
    pub fn wants(&self, subject: &str) -> bool {
        self.filters.is_empty() || self.filters.iter().any(|p| p.matches_str(subject))
    }
}

/// One delivery of a message to a consumer member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The message.
    pub message: Message,
    /// The consumer's own sequence for this delivery (counts every delivery).
    pub consumer_seq: u64,
    /// How many times this message has been delivered, this one included.
    pub deliveries: u32,
    /// Messages matching the consumer after this one, not yet delivered.
    pub pending: u64,
    /// The member holding the lease.
    pub member: ConsumerName,
}

/// The most settles one batch may carry.
pub const MAX_SETTLE_BATCH: usize = 10_000;

/// One settle of a batch: the delivery it names (seq and delivery count, as
/// fetched) and how it is settled.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettleItem {
    /// The message's stream seq.
    pub seq: u64,
    /// The delivery's `deliveries` count: it names the lease being settled.
    pub deliveries: u32,
    /// How: `"ack"` (the default), `"nak"`, `"in_progress"`,
    /// `{"nak": {"delay": …}}` or `{"term": {"reason": "…"}}`.
    #[serde(default = "ack")]
    pub settle: Settle,
}

fn ack() -> Settle {
    Settle::Ack
}

impl SettleItem {
    /// Settles the delivery `deliveries` of `seq` with `settle`.
    pub fn new(seq: u64, deliveries: u32, settle: Settle) -> SettleItem {
        SettleItem {
            seq,
            deliveries,
            settle,
        }
    }

    /// Acks the delivery `deliveries` of `seq`.
    pub fn ack(seq: u64, deliveries: u32) -> SettleItem {
        SettleItem::new(seq, deliveries, Settle::Ack)
    }

    /// Checks that a batch of `asked` settles was answered item for item by
    /// `who`: an answer of another length confirms none of it.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::Internal`] when `answered` is not `asked`.
    pub fn check_answered(asked: usize, answered: usize, who: &str) -> Result<(), Error> {
        if answered == asked {
            return Ok(());
        }
        Err(Error::new(
            crate::ErrorKind::Internal,
            format!("{who} answered {answered} settles for a batch of {asked}"),
        ))
    }

    /// Checks a whole batch before any of it is applied: its size and every
    /// settle on its own.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidRequest`] for more than [`MAX_SETTLE_BATCH`]
    /// items or an invalid settle (naming the item).
    pub fn validate_batch(items: &[SettleItem]) -> Result<(), Error> {
        if items.len() > MAX_SETTLE_BATCH {
            return Err(Error::new(
                crate::ErrorKind::InvalidRequest,
                format!(
                    "a batch of {} settles is over the limit of {MAX_SETTLE_BATCH}",
                    items.len()
                ),
            ));
        }
        for (i, item) in items.iter().enumerate() {
            item.settle
                .validate()
                .map_err(|e| Error::new(e.kind(), format!("settle {i} (seq {}): {}", item.seq, e.message())))?;
        }
        Ok(())
    }
}

/// How a delivery is settled.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
///
/// On the wire: `"ack"`, `"nak"` (redeliver at once), `"in_progress"`,
/// `{"nak": {"delay": …}}` or `{"term": {"reason": "…"}}`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Settle {
    /// Done: never delivered to this consumer again.
    Ack,
    /// Failed: deliver again after `delay` (at once when zero).
    Nak {
        /// How long to wait before redelivering.
        #[cfg_attr(feature = "openapi", schema(value_type = crate::openapi::Duration))]
        delay: Duration,
    },
    /// Still working: extend the lease by the current delivery's lease.
    InProgress,
    /// Give up: dead-letter now, with a reason.
    Term {
        /// Why, recorded in the dead letter's headers.
        reason: String,
    },
}

impl Settle {
    /// Checks the settle on its own.
    ///
    /// # Errors
    ///
    /// [`crate::ErrorKind::InvalidRequest`] for a nak delay above [`MAX_NAK_DELAY`].
    pub fn validate(&self) -> Result<(), Error> {
        match self {
            Settle::Nak { delay } if *delay > MAX_NAK_DELAY => Err(Error::new(
                crate::ErrorKind::InvalidRequest,
                format!(
                    "a nak delay of {} is over the limit of {}",
                    said(*delay),
                    said(MAX_NAK_DELAY)
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// The object forms of [`Settle`], strictly.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum SettleObject {
    Ack {},
    Nak {
        #[serde(default, with = "crate::duration::strict")]
        delay: Duration,
    },
    InProgress {},
    Term {
        reason: String,
    },
}

impl<'de> Deserialize<'de> for Settle {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Settle, D::Error> {
        use serde::de::{self, MapAccess, Visitor, value::MapAccessDeserializer};

        const WORDS: &[&str] = &["ack", "nak", "in_progress", "term"];

        struct Words;

        impl<'de> Visitor<'de> for Words {
            type Value = Settle;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#""ack", "nak", "in_progress", {"nak": {"delay": …}} or {"term": {"reason": "…"}}"#)
            }

            fn visit_str<E: de::Error>(self, word: &str) -> Result<Settle, E> {
                match word {
                    "ack" => Ok(Settle::Ack),
                    "nak" => Ok(Settle::Nak { delay: Duration::ZERO }),
                    "in_progress" => Ok(Settle::InProgress),
                    "term" => Err(E::custom(r#"`term` needs a reason: {"term": {"reason": "…"}}"#)),
                    other => Err(E::unknown_variant(other, WORDS)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Settle, A::Error> {
                Ok(match SettleObject::deserialize(MapAccessDeserializer::new(map))? {
                    SettleObject::Ack {} => Settle::Ack,
                    SettleObject::Nak { delay } => Settle::Nak { delay },
                    SettleObject::InProgress {} => Settle::InProgress,
                    SettleObject::Term { reason } => Settle::Term { reason },
                })
            }
        }

        deserializer.deserialize_any(Words)
    }
}

/// A member of a consumer, as listed in its info.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberInfo {
    /// The member's name.
    pub name: ConsumerName,
    /// When it last fetched or settled.
    pub last_seen: Timestamp,
    /// Messages it holds leases on.
    pub in_flight: u64,
}

/// A consumer's configuration and progress.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsumerInfo {
    /// The stream it reads.
    pub stream: StreamName,
    /// Its configuration.
    pub config: ConsumerConfig,
    /// Every matching message at or below this seq is acked (or dead-lettered).
    pub ack_floor: u64,
    /// The next stream seq it will consider for a first delivery.
    pub next_seq: u64,
    /// Lag in messages: matching messages after the ack floor not yet acked.
    pub pending: u64,
    /// Lag in time: the age of the oldest unacked matching message, if any.
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::openapi::Duration>))]
    pub oldest_unacked_age: Option<Duration>,
    /// Messages delivered and not yet settled.
    pub in_flight: u64,
    /// Deliveries that were redeliveries.
    pub redelivered: u64,
    /// Messages moved to dead letters (or dropped, with [`DeadLetter::Discard`]).
    pub dead_lettered: u64,
    /// Every delivery so far.
    pub delivered: u64,
    /// Members seen, by name.
    pub members: Vec<MemberInfo>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filter_is_refused_only_when_it_overlaps_none_of_the_streams_subjects() {
        let stream = crate::StreamConfig::new("orders")
            .unwrap()
            .subjects(["orders.>", "audit.orders"])
            .unwrap();
        let with = |filters: &[&str]| {
            filters
                .iter()
                .fold(ConsumerConfig::new("c").unwrap(), |c, f| c.filter(f).unwrap())
        };
        for taken in [
            &[][..],
            &["orders.created"],
            &[">"],
            &["*.created"],
            &["audit.*"],
            &["*.*", "orders.>"],
        ] {
            assert!(with(taken).check_filters(&stream, &[]).is_ok(), "{taken:?}");
        }
        for never in [
            &["payments.>"][..],
            &["orders"],
            &["audit.orders.x"],
            &["orders.created", "*"],
        ] {
            let err = with(never).check_filters(&stream, &[]).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidConfig);
            assert!(
                err.message().contains("stream `orders` (`orders.>`, `audit.orders`)"),
                "{err}"
            );
        }
        // A filter the consumer already has is not checked again.
        let kept = [Pattern::new("payments.>").unwrap()];
        assert!(with(&["payments.>"]).check_filters(&stream, &kept).is_ok());
        assert!(
            with(&["payments.>", "refunds.>"])
                .check_filters(&stream, &kept)
                .is_err()
        );
    }

    #[test]
    fn settles_read_as_words_or_objects_and_refuse_anything_else() {
        let read = |json: &str| serde_json::from_str::<Settle>(json);
        assert_eq!(read(r#""ack""#).unwrap(), Settle::Ack);
        assert_eq!(read(r#""nak""#).unwrap(), Settle::Nak { delay: Duration::ZERO });
        assert_eq!(
            read(r#"{"nak": {"delay": {"secs": 2, "nanos": 0}}}"#).unwrap(),
            Settle::Nak {
                delay: Duration::from_secs(2)
            }
        );
        assert_eq!(
            read(r#"{"term": {"reason": "bad"}}"#).unwrap(),
            Settle::Term { reason: "bad".into() }
        );
        assert!(read(r#""term""#).unwrap_err().to_string().contains("needs a reason"));
        assert!(
            read(r#""nack""#)
                .unwrap_err()
                .to_string()
                .contains("unknown variant `nack`")
        );
        assert!(read(r#"{"nak": {"dealy": {"secs": 2, "nanos": 0}}}"#).is_err());
        for settle in [
            Settle::Ack,
            Settle::InProgress,
            Settle::Nak {
                delay: Duration::from_millis(5),
            },
        ] {
            assert_eq!(read(&serde_json::to_string(&settle).unwrap()).unwrap(), settle);
        }
    }

    #[test]
    fn leases_are_bounded_and_the_error_names_the_field_and_the_bound() {
        let config = ConsumerConfig::new("c").unwrap();
        config
            .clone()
            .ack_wait(MAX_LEASE)
            .backoff([Duration::from_secs(1), MAX_LEASE])
            .validate()
            .unwrap();
        let over = MAX_LEASE + Duration::from_nanos(1);
        for (bad, field) in [
            (config.clone().ack_wait(over), "ack_wait"),
            (config.clone().ack_wait(Duration::from_secs(u64::MAX)), "ack_wait"),
            (config.clone().backoff([Duration::from_secs(1), over]), "backoff"),
            (config.clone().backoff([Duration::MAX]), "backoff"),
        ] {
            let err = bad.validate().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidConfig, "{err}");
            assert!(err.to_string().contains(field), "{err}");
            assert!(err.to_string().contains("over the limit of 7 days"), "{err}");
        }
    }

    #[test]
    fn a_lease_stored_before_the_bound_is_held_to_it() {
        let mut config = ConsumerConfig::new("c").unwrap();
        config.ack_wait = Duration::from_secs(u64::MAX);
        assert_eq!(config.lease_for(1), MAX_LEASE);
        config.backoff = vec![Duration::from_secs(2), Duration::MAX];
        assert_eq!(
            (config.lease_for(1), config.lease_for(2)),
            (Duration::from_secs(2), MAX_LEASE)
        );
    }

    #[test]
    fn lease_durations_with_nanos_of_a_second_or_more_are_refused_on_the_wire() {
        for (json, field) in [
            (
                r#"{"name": "c", "ack_wait": {"secs": 0, "nanos": 4000000000}}"#,
                "ack_wait",
            ),
            (
                r#"{"name": "c", "backoff": [{"secs": 1, "nanos": 1000000000}]}"#,
                "backoff",
            ),
        ] {
            let err = crate::input::from_json::<ConsumerConfig>("body", json.as_bytes()).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidRequest);
            assert!(err.message().contains(&format!("in `{field}")), "{err}");
            assert!(err.message().contains("`nanos` must be below 1000000000"), "{err}");
        }
        let config: ConsumerConfig = serde_json::from_str(r#"{"name": "c"}"#).unwrap();
        assert_eq!((config.ack_wait, config.backoff), (DEFAULT_ACK_WAIT, Vec::new()));
    }

    #[test]
    fn nak_delays_are_bounded_and_read_strictly() {
        Settle::Nak { delay: MAX_NAK_DELAY }.validate().unwrap();
        for delay in [MAX_NAK_DELAY + Duration::from_nanos(1), Duration::MAX] {
            let err = Settle::Nak { delay }.validate().unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::InvalidRequest);
            assert!(err.to_string().contains("over the limit of 365 days"), "{err}");
        }
        let json = r#"{"nak": {"delay": {"secs": 0, "nanos": 4000000000}}}"#;
        let err = serde_json::from_str::<Settle>(json).unwrap_err();
        assert!(err.to_string().contains("`nanos` must be below"), "{err}");
    }
}
