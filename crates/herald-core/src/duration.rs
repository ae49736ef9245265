//! Durations: how long each kind may be, and how they are read off the wire.
//!
//! JSON carries a duration as serde writes `std::time::Duration`, whole
//! seconds plus the nanoseconds past them: `{"secs": 30, "nanos": 0}`. serde's
//! own reader carries a `nanos` of a billion or more over into the seconds,
//! so `{"secs": 1, "nanos": 4000000000}` would quietly mean 5 s; the readers
//! here refuse it instead. Fields use them with `#[serde(with = …)]`.
//!
//! The bounds (docs/semantics.md, "Bounds") are far above any sensible
//! setting and far below what the clocks can hold: leases and nak delays run
//! on tokio's clock, whose `Instant` panics on overflow long before
//! `u64::MAX` seconds, and JetStream takes durations as signed 64-bit
//! nanoseconds (292 years).

use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// 36,500 days (100 years): the longest `max_age`, `duplicate_window` and
/// message `ttl`. Keeping data longer is keeping it forever, which is what
/// leaving the limit out says.
pub const MAX_RETENTION_AGE: Duration = Duration::from_secs(36_500 * 24 * 3600);

/// 7 days: the longest lease (`ack_wait`, each `backoff` step). A lease is
/// how long a crashed member's messages wait before another member gets
/// them; work that takes longer extends its lease with `in_progress`, and a
/// longer setting is almost surely a unit mistake.
pub const MAX_LEASE: Duration = Duration::from_secs(7 * 24 * 3600);

/// 365 days: the longest nak delay. A nak delay schedules a retry (tomorrow,
/// next month), so it may be much longer than a lease.
pub const MAX_NAK_DELAY: Duration = Duration::from_secs(365 * 24 * 3600);

/// 36,500 days (100 years): the longest a fetch waits. A longer wait, up to
/// `Duration::MAX`, waits this long (for ever, in practice) rather than
/// overflow the clock. Not a refusal: "wait as long as it takes" is a fair
/// thing to ask.
pub const MAX_WAIT: Duration = MAX_RETENTION_AGE;

/// How a bound is said in an error: in days when it is whole days.
pub(crate) fn said(d: Duration) -> String {
    const DAY: u64 = 24 * 3600;
    match d.as_secs() {
        secs if secs % DAY == 0 && d.subsec_nanos() == 0 => format!("{} days", secs / DAY),
        _ => format!("{d:?}"),
    }
}

/// A duration's two fields, as serde's own `Duration` names them (so that
/// input errors read "a duration {"secs": …, "nanos": …}").
#[derive(Deserialize)]
#[serde(rename = "Duration", deny_unknown_fields)]
struct Parts {
    secs: u64,
    nanos: u32,
}

/// 1,000,000,000: the nanoseconds in a second, so the most `nanos` may be
/// is one less.
const NANOS_PER_SEC: u32 = 1_000_000_000;

fn read<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let Parts { secs, nanos } = Parts::deserialize(deserializer)?;
    if nanos >= NANOS_PER_SEC {
        return Err(D::Error::custom(format!(
            "`nanos` must be below 1000000000 (one second), got {nanos}; whole seconds go in `secs`"
        )));
    }
    Ok(Duration::new(secs, nanos))
}

/// A duration, read strictly.
pub(crate) mod strict {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        d.serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        read(deserializer)
    }
}

/// An optional duration (`null` for none), read strictly.
pub(crate) mod strict_option {
    use super::*;

    /// One duration, read strictly, for `Option`'s reader.
    struct Strict(Duration);

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
            read(deserializer).map(Strict)
        }
    }

    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, serializer: S) -> Result<S::Ok, S::Error> {
        d.serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<Strict>::deserialize(deserializer)?.map(|s| s.0))
    }
}

/// A list of durations, each read strictly.
pub(crate) mod strict_list {
    use super::*;

    struct Strict(Duration);

    impl<'de> Deserialize<'de> for Strict {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Strict, D::Error> {
            read(deserializer).map(Strict)
        }
    }

    pub(crate) fn serialize<S: Serializer>(d: &[Duration], serializer: S) -> Result<S::Ok, S::Error> {
        d.serialize(serializer)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Duration>, D::Error> {
        Ok(Vec::<Strict>::deserialize(deserializer)?
            .into_iter()
            .map(|s| s.0)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, Deserialize, Serialize)]
    struct Fields {
        #[serde(with = "strict")]
        one: Duration,
        #[serde(default, with = "strict_option")]
        maybe: Option<Duration>,
        #[serde(default, with = "strict_list")]
        list: Vec<Duration>,
    }

    #[test]
    fn durations_keep_serdes_shape_and_round_trip() {
        let fields = Fields {
            one: Duration::new(2, 5),
            maybe: Some(Duration::from_millis(1500)),
            list: vec![Duration::from_secs(1), Duration::new(0, 999_999_999)],
        };
        let json = serde_json::to_string(&fields).unwrap();
        assert_eq!(
            json,
            r#"{"one":{"secs":2,"nanos":5},"maybe":{"secs":1,"nanos":500000000},"list":[{"secs":1,"nanos":0},{"secs":0,"nanos":999999999}]}"#
        );
        assert_eq!(serde_json::from_str::<Fields>(&json).unwrap(), fields);
        let none: Fields = serde_json::from_str(r#"{"one":{"secs":0,"nanos":0},"maybe":null}"#).unwrap();
        assert_eq!((none.maybe, none.list), (None, Vec::new()));
    }

    #[test]
    fn nanos_of_a_second_or_more_are_refused_not_carried_over() {
        for json in [
            r#"{"one":{"secs":0,"nanos":4000000000}}"#,
            r#"{"one":{"secs":1,"nanos":1000000000}}"#,
            r#"{"one":{"secs":0,"nanos":0},"maybe":{"secs":0,"nanos":1000000000}}"#,
            r#"{"one":{"secs":0,"nanos":0},"list":[{"secs":1,"nanos":0},{"secs":0,"nanos":4000000000}]}"#,
        ] {
            let err = serde_json::from_str::<Fields>(json).unwrap_err().to_string();
            assert!(err.contains("`nanos` must be below 1000000000"), "{json}: {err}");
        }
    }

    #[test]
    fn durations_need_both_fields_and_no_others() {
        for json in [
            r#"{"one":{"secs":5}}"#,
            r#"{"one":{"secs":5,"nanos":0,"millis":3}}"#,
            r#"{"one":5}"#,
        ] {
            assert!(serde_json::from_str::<Fields>(json).is_err(), "{json}");
        }
    }

    #[test]
    fn bounds_are_said_in_days() {
        assert_eq!(said(MAX_RETENTION_AGE), "36500 days");
        assert_eq!(said(MAX_LEASE), "7 days");
        assert_eq!(said(MAX_NAK_DELAY), "365 days");
        assert_eq!(said(Duration::from_millis(1500)), "1.5s");
    }
}
