//! Durations (`30s`, `1h30m`), points in time (RFC 3339 or "this long ago")
//! and byte sizes (`64MiB`) as people type them, and back as people read them.

use std::num::NonZeroU64;
use std::time::Duration;

use anyhow::{Context, bail};
use herald::Timestamp;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The units a duration may use, longest suffix first so `ms` is not read as `m`.
const DURATION_UNITS: [(&str, u64); 6] = [
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60 * 1_000_000_000),
    ("h", 3_600 * 1_000_000_000),
    ("d", 86_400 * 1_000_000_000),
    ("w", 7 * 86_400 * 1_000_000_000),
];

/// Parses `500ms`, `30s`, `10m`, `2h`, `7d`, `1w` or a sum such as `1h30m`.
pub(crate) fn parse_duration(text: &str) -> anyhow::Result<Duration> {
    let mut rest = text.trim();
    if rest.is_empty() {
        bail!("empty duration; write it like 30s, 10m, 2h or 1h30m");
    }
    let mut nanos: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            bail!("`{text}` is not a duration; write it like 30s, 10m, 2h or 1h30m");
        }
        let number: u64 = rest[..digits]
            .parse()
            .with_context(|| format!("`{text}` is too long a duration"))?;
        rest = &rest[digits..];
        let (unit, scale) = DURATION_UNITS
            .iter()
            .find(|(unit, _)| rest.starts_with(unit) && !rest[unit.len()..].starts_with(char::is_alphabetic))
            .with_context(|| format!("`{text}` needs a unit after {number}: ms, s, m, h, d or w"))?;
        rest = &rest[unit.len()..];
        nanos = number
            .checked_mul(*scale)
            .and_then(|n| n.checked_add(nanos))
            .with_context(|| format!("`{text}` is too long a duration"))?;
    }
    Ok(Duration::from_nanos(nanos))
}

/// A duration the way [`parse_duration`] reads it, to the largest two units:
/// `1h30m`, `45s`, `250ms`.
pub(crate) fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    if secs == 0 {
        return format!("{}ms", duration.subsec_millis());
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    let first = parts.iter().position(|(n, _)| *n > 0).unwrap_or(3);
    parts[first..]
        .iter()
        .take(2)
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect()
}

/// A point in time as typed: an instant, or a duration before whenever it is
/// read ([`When::at`]), so that "10m" means ten minutes before the bus's clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum When {
    /// This instant.
    At(Timestamp),
    /// This long before now.
    Ago(Duration),
}

impl When {
    /// The instant, taking `now` for the present.
    pub(crate) fn at(self, now: Timestamp) -> Timestamp {
        match self {
            When::At(time) => time,
            When::Ago(ago) => now.saturating_sub(ago),
        }
    }
}

/// The forms [`parse_when`] reads, named when it refuses something else.
const TIME_FORMS: &str = "give an RFC 3339 time (2026-03-01T12:00:00Z, or with an offset such as \
                          2026-03-01T13:00:00+01:00) or a duration ago (10m, 2h, 1h30m, 7d)";

/// Parses a point in time: RFC 3339 (`2025-01-31T12:00:00Z`), or a duration
/// meaning that long ago (`10m`).
pub(crate) fn parse_when(text: &str) -> anyhow::Result<When> {
    if let Ok(ago) = parse_duration(text) {
        return Ok(When::Ago(ago));
    }
    // The parser's own complaint ("the 'year' component could not be
    // parsed") means nothing to someone who typed `yesterday`: name the forms.
    let Ok(time) = OffsetDateTime::parse(text.trim(), &Rfc3339) else {
        bail!("`{text}` is not a time: {TIME_FORMS}");
    };
    let nanos = time.unix_timestamp_nanos();
    if nanos < 0 {
        bail!("`{text}` is before 1970, where no message can be");
    }
    // Past 2554 (the last nanosecond a timestamp holds) is later than every message.
    Ok(When::At(Timestamp(u64::try_from(nanos).unwrap_or(u64::MAX))))
}

/// A time in RFC 3339 at whole seconds, UTC; the raw nanoseconds if the
/// calendar cannot hold it.
pub(crate) fn format_time(time: Timestamp) -> String {
    let whole = i128::from(time.as_nanos() / 1_000_000_000 * 1_000_000_000);
    OffsetDateTime::from_unix_timestamp_nanos(whole)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| time.as_nanos().to_string())
}

/// Binary units for sizes, longest suffix first.
const SIZE_UNITS: [(&str, u64); 7] = [
    ("KiB", 1 << 10),
    ("MiB", 1 << 20),
    ("GiB", 1 << 30),
    ("TiB", 1 << 40),
    ("K", 1 << 10),
    ("M", 1 << 20),
    ("G", 1 << 30),
];

/// Parses a byte size above zero: `1048576`, `512KiB`, `64MiB`, `10G`
/// (binary units either way).
pub(crate) fn parse_size(text: &str) -> anyhow::Result<NonZeroU64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 {
        bail!("`{text}` is not a size; write it like 1048576, 512KiB or 64MiB");
    }
    // Only digits: the one way to fail is too many of them.
    let number: u64 = text[..digits]
        .parse()
        .ok()
        .with_context(|| format!("`{text}` is too large a size"))?;
    let suffix = text[digits..].trim();
    let scale = match suffix {
        "" | "B" => 1,
        _ => SIZE_UNITS
            .iter()
            .find(|(unit, _)| unit.eq_ignore_ascii_case(suffix))
            .map(|(_, scale)| *scale)
            .with_context(|| format!("`{text}`: unknown unit `{suffix}`; use KiB, MiB, GiB or TiB"))?,
    };
    let bytes = number
        .checked_mul(scale)
        .with_context(|| format!("`{text}` is too large a size"))?;
    NonZeroU64::new(bytes).with_context(|| format!("`{text}`: a size limit must be above zero"))
}

/// Parses a size as [`parse_size`] for a limit of at most `max` bytes, held
/// in a `T` (`NonZeroU32`, `NonZeroUsize`) that holds `max`; `whose` names the
/// limit in the error ("more than a stream accepts").
pub(crate) fn parse_size_within<T: TryFrom<NonZeroU64>>(text: &str, max: u64, whose: &str) -> anyhow::Result<T> {
    let size = parse_size(text)?;
    match T::try_from(size) {
        Ok(value) if size.get() <= max => Ok(value),
        // A conversion error says only "out of range integral type conversion attempted".
        _ => bail!("`{}` is more than {whose}: at most {}", text.trim(), format_size(max)),
    }
}

/// A byte count for people: `512 B`, `1.5 KiB`, `64.0 MiB`.
pub(crate) fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Display only: the precision of an f64 is plenty for one decimal.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn durations_read_single_and_summed_units() {
        assert_eq!(parse_duration("500ms").unwrap(), Duration::from_millis(500));
        assert_eq!(parse_duration("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse_duration("10m").unwrap(), Duration::from_secs(600));
        assert_eq!(parse_duration("1h30m").unwrap(), Duration::from_secs(5_400));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        for bad in ["", "10", "m", "10x", "1h30", "10 mins", "-5s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn durations_print_as_they_are_typed() {
        assert_eq!(format_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_duration(Duration::from_secs(45)), "45s");
        assert_eq!(format_duration(Duration::from_secs(5_400)), "1h30m");
        assert_eq!(format_duration(Duration::from_secs(3_600)), "1h");
        assert_eq!(format_duration(Duration::from_secs(90_061)), "1d1h");
        assert_eq!(
            parse_duration(&format_duration(Duration::from_secs(5_400)))
                .unwrap()
                .as_secs(),
            5_400
        );
    }

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let now = Timestamp(1_700_000_000_000_000_000);
        let at = |text: &str| parse_when(text).unwrap().at(now);
        assert_eq!(at("10m"), Timestamp(now.0 - 600_000_000_000));
        assert_eq!(at("2023-11-14T22:13:20Z"), now);
        assert_eq!(at("2023-11-14T23:13:20+01:00"), now);
        assert_eq!(format_time(Timestamp(now.0 + 123)), "2023-11-14T22:13:20Z");
        assert!(parse_when("1969-12-31T23:59:59Z").is_err());
        assert_eq!(at("2999-01-01T00:00:00Z"), Timestamp(u64::MAX));
    }

    #[test]
    fn a_word_that_is_not_a_time_gets_the_forms_that_are() {
        for typed in ["yesterday", "2026-02-30T00:00:00Z", "2026-03-01", "10"] {
            let err = parse_when(typed).unwrap_err();
            assert_eq!(
                err.chain().count(),
                1,
                "{err:#}: the parser's own text is not passed on"
            );
            let text = err.to_string();
            assert!(
                text.starts_with(&format!(
                    "`{typed}` is not a time: give an RFC 3339 time (2026-03-01T12:00:00Z"
                )) && text.contains("a duration ago (10m, 2h"),
                "{text}"
            );
        }
    }

    #[test]
    fn sizes_take_binary_units_and_refuse_zero() {
        assert_eq!(parse_size("1048576").unwrap().get(), 1 << 20);
        assert_eq!(parse_size("512KiB").unwrap().get(), 512 << 10);
        assert_eq!(parse_size("64mib").unwrap().get(), 64 << 20);
        assert_eq!(parse_size("10G").unwrap().get(), 10 << 30);
        assert!(parse_size("0").is_err());
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("KiB").is_err());
        assert_eq!(format_size(512), "512 B");
        assert_eq!(format_size(1536), "1.5 KiB");
        assert_eq!(format_size(64 << 20), "64.0 MiB");
    }

    #[test]
    fn a_size_over_its_limit_says_the_limit_in_our_words() {
        use std::num::NonZeroU32;
        let payload = |text: &str| parse_size_within::<NonZeroU32>(text, 64 << 20, "a stream accepts");
        assert_eq!(payload("64MiB").unwrap().get(), 64 << 20);
        // Over the limit, and over what a u32 holds: both say the limit.
        for typed in ["65MiB", "1TiB"] {
            let err = payload(typed).unwrap_err();
            assert_eq!(err.chain().count(), 1, "{err:#}");
            assert_eq!(
                err.to_string(),
                format!("`{typed}` is more than a stream accepts: at most 64.0 MiB")
            );
        }
        let err = parse_size_within::<NonZeroU32>("8GiB", u32::MAX.into(), "a u32 holds").unwrap_err();
        assert_eq!(err.to_string(), "`8GiB` is more than a u32 holds: at most 4.0 GiB");
        for typed in ["99999999999999999999999", "99999999TiB"] {
            let err = parse_size(typed).unwrap_err();
            assert_eq!(err.chain().count(), 1, "{err:#}");
            assert_eq!(err.to_string(), format!("`{typed}` is too large a size"));
        }
    }
}
