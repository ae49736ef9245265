//! The soak's command line: how long, how often to kill, how much load.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

/// An hour of mixed load on a real `herald serve`, killed with SIGKILL and
/// restarted on its data directory again and again; every acknowledged
/// publish is checked after each restart.
#[derive(Debug, Clone, Parser)]
#[command(name = "herald-soak", version)]
pub struct SoakOptions {
    /// How long to run: `90s`, `5m`, `1h`, `1h30m`.
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub duration: Duration,
    /// Time between two kill -9s of the server.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub kill_every: Duration,
    /// Time between two progress rows.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub report_every: Duration,
    /// Messages per second the publishers aim at together, singles and
    /// batches counted by message.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..))]
    pub rate: u32,
    /// Publishing tasks (each with message ids of its own).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub publishers: u16,
    /// After each kill, read back every message acknowledged so far, not only
    /// the new ones and a rolling slice of older ones (the final check always
    /// reads everything). Costs time that grows with the run.
    #[arg(long)]
    pub full_checks: bool,
    /// Seed of every random choice (batch sizes, payloads, naks, keys) [default: from the clock, printed].
    #[arg(long)]
    pub seed: Option<u64>,
    /// The `herald` binary to run [default: `herald` beside this program, as
    /// `cargo build --release -p herald-cli` puts it].
    #[arg(long, value_name = "PATH")]
    pub herald: Option<PathBuf>,
    /// Where the data directory goes [default: the system temp dir].
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Where the table (`soak.md`) and chart (`soak.png`) go.
    #[arg(long, default_value = "target/herald-soak")]
    pub out: PathBuf,
}

/// A duration as one or more `<number><unit>` parts, units `ms`, `s`, `m`
/// and `h` (`1h30m`, `90s`); above zero.
///
/// # Errors
///
/// A part without a unit or number, an unknown unit, or a total of zero.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let explain = || format!("`{text}` is not a duration: write it like 90s, 5m, 1h or 1h30m");
    let mut total = Duration::ZERO;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(explain());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        let number: u64 = rest[..digits].parse().map_err(|_| explain())?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let part = match &rest[..unit_len] {
            "ms" => Duration::from_millis(number),
            "s" => Duration::from_secs(number),
            "m" => Duration::from_secs(number.saturating_mul(60)),
            "h" => Duration::from_secs(number.saturating_mul(3600)),
            _ => return Err(explain()),
        };
        total = total.saturating_add(part);
        rest = &rest[unit_len..];
    }
    if total.is_zero() {
        return Err(format!("`{text}` is zero: a duration must be above zero"));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn parse(args: &[&str]) -> Result<SoakOptions, clap::Error> {
        SoakOptions::try_parse_from(std::iter::once("herald-soak").chain(args.iter().copied()))
    }

    #[test]
    fn durations_read_units_and_sums() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("5m"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        for bad in ["", "5", "m", "5x", "1.5h", "-5s", "0s", "5 m"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn defaults_are_an_hour_with_a_kill_a_minute() {
        let options = parse(&[]).unwrap();
        assert_eq!(options.duration, Duration::from_secs(3600));
        assert_eq!(options.kill_every, Duration::from_secs(60));
        assert_eq!(options.rate, 1000);
        assert_eq!(options.seed, None);
        assert!(!options.full_checks);
    }

    #[test]
    fn flags_set_the_run() {
        let options = parse(&[
            "--duration",
            "5m",
            "--kill-every",
            "30s",
            "--seed",
            "7",
            "--rate",
            "200",
            "--full-checks",
        ])
        .unwrap();
        assert_eq!(options.duration, Duration::from_secs(300));
        assert_eq!(options.kill_every, Duration::from_secs(30));
        assert_eq!(options.seed, Some(7));
        assert_eq!(options.rate, 200);
        assert!(options.full_checks);
    }

    #[test]
    fn unknown_flags_and_bad_values_are_refused_by_name() {
        let err = parse(&["--durration", "5m"]).unwrap_err().to_string();
        assert!(err.contains("--durration"), "{err}");
        let err = parse(&["--duration", "soon"]).unwrap_err().to_string();
        assert!(err.contains("`soon` is not a duration"), "{err}");
        assert!(parse(&["--rate", "0"]).is_err());
        assert!(parse(&["--publishers", "0"]).is_err());
        assert!(parse(&["--kill-every", "0s"]).is_err());
    }
}
