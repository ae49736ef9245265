//! Results: what one workload measured on one target, merged over rounds, and
//! the markdown table and JSON made from them.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::machine::Machine;
use crate::plan::{Plan, Target, Workload};

/// What one workload measured on one target.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Outcome {
    /// The workload.
    pub workload: Workload,
    /// The target it ran on.
    pub target: Target,
    /// Messages published (a-c), consumed (d, d1, e) or probed (f, g).
    pub messages: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Per call for (a)-(c), publish-to-receive for (f) and (g).
    pub latency: Option<Latency>,
    /// How the rate of a consuming workload, (d), (d1) and (e), moved from
    /// its first tenth to its last.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catch_up: Option<CatchUp>,
    /// Checks made and other details.
    pub note: String,
    /// The raw latency samples in microseconds (between processes only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub samples_us: Vec<u32>,
}

impl Outcome {
    pub(crate) fn new(workload: Workload, messages: u64, seconds: f64, samples_us: Vec<u32>) -> Outcome {
        Outcome {
            workload,
            target: Target::HeraldDurable,
            messages,
            seconds,
            latency: Latency::of(&samples_us),
            catch_up: None,
            note: String::new(),
            samples_us,
        }
    }

    /// Messages per second.
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.messages as f64 / self.seconds
        } else {
            0.0
        }
    }
}

/// Latency percentiles, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Latency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// 99.9th percentile.
    pub p999_ms: f64,
    /// Mean.
    pub mean_ms: f64,
    /// Samples they come from.
    pub samples: u64,
}

impl Latency {
    fn of(samples_us: &[u32]) -> Option<Latency> {
        if samples_us.is_empty() {
            return None;
        }
        let mut sorted = samples_us.to_vec();
        sorted.sort_unstable();
        let at = |p: f64| f64::from(nearest_rank(&sorted, p)) / 1000.0;
        let sum: u64 = sorted.iter().map(|&s| u64::from(s)).sum();
        Some(Latency {
            p50_ms: at(0.50),
            p99_ms: at(0.99),
            p999_ms: at(0.999),
            mean_ms: sum as f64 / sorted.len() as f64 / 1000.0,
            samples: sorted.len() as u64,
        })
    }
}

/// The catch-up profile of a consuming workload: when each tenth of the
/// distinct messages was reached, and the rate of the first tenth against the
/// last, so a consumer that slows down as it goes shows.
///
/// Progress is observed once per take (a batch, or a message in the plain
/// loop), so a window spans whole takes: the first runs from the start to the
/// first take that reached 10%, the last from the last take at or below 90%
/// to the N-th distinct message. Each covers at least a tenth.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatchUp {
    /// Per round, seconds from the start until 10%, 20%, ... 100% of the
    /// distinct messages had been taken.
    pub reached_s: Vec<Vec<f64>>,
    /// The first window, summed over rounds.
    pub first: Window,
    /// The last window, summed over rounds.
    pub last: Window,
    /// Messages per second in the first window.
    pub first_tenth_per_s: f64,
    /// Messages per second in the last window.
    pub last_tenth_per_s: f64,
    /// Last over first: below 1 means the consumer slowed down.
    pub last_over_first: f64,
}

/// Messages taken in a span of time.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    /// Distinct messages taken in it.
    pub messages: u64,
    /// Its length.
    pub seconds: f64,
}

impl Window {
    /// Messages per second; 0 for an empty window.
    pub fn rate(self) -> f64 {
        if self.seconds > 0.0 {
            self.messages as f64 / self.seconds
        } else {
            0.0
        }
    }
}

impl CatchUp {
    pub(crate) fn new(reached_s: Vec<f64>, first: Window, last: Window) -> CatchUp {
        let mut profile = CatchUp {
            reached_s: vec![reached_s],
            first,
            last,
            first_tenth_per_s: 0.0,
            last_tenth_per_s: 0.0,
            last_over_first: 0.0,
        };
        profile.derive();
        profile
    }

    /// Pools another round: windows summed, the tenths kept per round.
    fn merge(&mut self, other: CatchUp) {
        self.reached_s.extend(other.reached_s);
        self.first.messages += other.first.messages;
        self.first.seconds += other.first.seconds;
        self.last.messages += other.last.messages;
        self.last.seconds += other.last.seconds;
        self.derive();
    }

    fn derive(&mut self) {
        self.first_tenth_per_s = self.first.rate();
        self.last_tenth_per_s = self.last.rate();
        self.last_over_first = if self.first_tenth_per_s > 0.0 {
            self.last_tenth_per_s / self.first_tenth_per_s
        } else {
            0.0
        };
    }

    /// `first 10% 812,000 msgs/s, last 10% 790,000 msgs/s (last/first 0.97x)`.
    pub fn summary(&self) -> String {
        format!(
            "first 10% {} msgs/s, last 10% {} msgs/s (last/first {:.2}x)",
            group_thousands(self.first_tenth_per_s.round() as u64),
            group_thousands(self.last_tenth_per_s.round() as u64),
            self.last_over_first
        )
    }
}

/// What a child process sends back: a round of one target.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoundResult {
    pub(crate) outcomes: Vec<Outcome>,
    pub(crate) peak_rss_bytes: Option<u64>,
}

/// The whole run.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// When it ran (seconds since the Unix epoch).
    pub started_unix: u64,
    /// What it ran.
    pub plan: Plan,
    /// The disk's own limits, measured in the same run.
    pub machine: Machine,
    /// One per workload and target, rounds merged.
    pub outcomes: Vec<Outcome>,
    /// Peak resident memory per target, in bytes, over all rounds.
    pub peak_rss_bytes: BTreeMap<Target, u64>,
}

impl Report {
    /// Merges the rounds: messages and seconds summed, latency samples pooled.
    pub(crate) fn merge(started_unix: u64, plan: Plan, machine: Machine, rounds: Vec<(Target, RoundResult)>) -> Report {
        let mut merged: BTreeMap<(Workload, Target), Outcome> = BTreeMap::new();
        let mut peak_rss_bytes = BTreeMap::new();
        for (target, round) in rounds {
            if let Some(rss) = round.peak_rss_bytes {
                let peak = peak_rss_bytes.entry(target).or_insert(0);
                *peak = rss.max(*peak);
            }
            for outcome in round.outcomes {
                match merged.get_mut(&(outcome.workload, target)) {
                    None => {
                        merged.insert((outcome.workload, target), outcome);
                    }
                    Some(sum) => {
                        sum.messages += outcome.messages;
                        sum.seconds += outcome.seconds;
                        sum.samples_us.extend(outcome.samples_us);
                        sum.latency = Latency::of(&sum.samples_us);
                        match (&mut sum.catch_up, outcome.catch_up) {
                            (Some(profile), Some(other)) => profile.merge(other),
                            (None, other) => sum.catch_up = other,
                            (Some(_), None) => {}
                        }
                        if !outcome.note.is_empty() {
                            sum.note = format!("{}; {}", sum.note, outcome.note);
                        }
                    }
                }
            }
        }
        let outcomes = merged
            .into_values()
            .map(|mut o| {
                o.samples_us = Vec::new();
                o
            })
            .collect();
        Report {
            started_unix,
            plan,
            machine,
            outcomes,
            peak_rss_bytes,
        }
    }

    /// The outcome of one workload on one target.
    pub fn get(&self, workload: Workload, target: Target) -> Option<&Outcome> {
        self.outcomes
            .iter()
            .find(|o| o.workload == workload && o.target == target)
    }

    /// The results as markdown: the machine's limits, then a row per figure
    /// with a column per target and the Herald/NATS ratio beside each pair.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "Machine: {} cores, data directory on `{}`.\n", m.cores, m.data_dir);
        let _ = writeln!(md, "| machine limit | value |\n| --- | ---: |");
        let _ = writeln!(
            md,
            "| fsync of a 4 KiB append, p50 / p99 | {:.3} ms / {:.3} ms |",
            m.fsync.p50_ms, m.fsync.p99_ms
        );
        let _ = writeln!(
            md,
            "| one fsync per write, ceiling | {:.0} writes/s |",
            1000.0 / m.fsync.p50_ms.max(1e-6)
        );
        let _ = writeln!(
            md,
            "| sequential write, fsynced | {:.0} MiB/s |\n",
            m.sequential_mib_per_s
        );

        let targets = &self.plan.targets;
        let mut header = String::from("| workload | figure |");
        let mut rule = String::from("| --- | --- |");
        for &target in targets {
            let _ = write!(header, " {} |", target.label());
            rule.push_str(" ---: |");
            if let Some(peer) = target.peer().filter(|p| targets.contains(p)) {
                let _ = write!(header, " {} / {} |", target.label(), peer.label());
                rule.push_str(" ---: |");
            }
        }
        let _ = writeln!(md, "{header}\n{rule}");
        for &workload in &self.plan.workloads {
            for figure in Figure::of(workload) {
                let mut row = format!("| {} | {} |", workload.title(), figure.label());
                for &target in targets {
                    let value = self.get(workload, target).and_then(|o| figure.value(o));
                    let _ = write!(row, " {} |", value.map_or("-".to_string(), |v| figure.format(v)));
                    if let Some(peer) = target.peer().filter(|p| targets.contains(p)) {
                        let theirs = self.get(workload, peer).and_then(|o| figure.value(o));
                        let cell = match figure.higher_is_better() {
                            Some(higher) => ratio_cell(value, theirs, Some(higher)),
                            // A ratio of ratios says nothing on its own.
                            None => "-".to_string(),
                        };
                        let _ = write!(row, " {cell} |");
                    }
                }
                let _ = writeln!(md, "{row}");
            }
        }
        let mut row = String::from("| all | peak RSS (MiB) |");
        for &target in targets {
            let value = self.peak_rss_bytes.get(&target).map(|&b| b as f64 / 1048576.0);
            let _ = write!(row, " {} |", value.map_or("-".to_string(), |v| format!("{v:.0}")));
            if let Some(peer) = target.peer().filter(|p| targets.contains(p)) {
                let theirs = self.peak_rss_bytes.get(&peer).map(|&b| b as f64 / 1048576.0);
                let _ = write!(row, " {} |", ratio_cell(value, theirs, None));
            }
        }
        let _ = writeln!(md, "{row}");
        let _ = writeln!(
            md,
            "\n✓ marks Herald ahead (more messages per second, or lower latency). \
             Herald's RSS is the benchmark process's, load generator included; NATS's is nats-server's."
        );
        let notes: Vec<String> = self
            .outcomes
            .iter()
            .filter(|o| !o.note.is_empty())
            .map(|o| format!("- {} on {}: {}", o.workload.title(), o.target.label(), o.note))
            .collect();
        if !notes.is_empty() {
            let _ = writeln!(md, "\nChecks:\n\n{}", notes.join("\n"));
        }
        md
    }
}

/// `1.50x ✓`: ours over theirs, marked by who is ahead when the figure has a
/// better direction; `-` when either is missing.
fn ratio_cell(ours: Option<f64>, theirs: Option<f64>, higher_is_better: Option<bool>) -> String {
    match (ours, theirs) {
        (Some(ours), Some(theirs)) if theirs > 0.0 => {
            let ratio = ours / theirs;
            match higher_is_better {
                Some(higher) => {
                    let ahead = if higher { ratio > 1.0 } else { ratio < 1.0 };
                    format!("{ratio:.2}x {}", if ahead { "✓" } else { "✗" })
                }
                None => format!("{ratio:.2}x"),
            }
        }
        _ => "-".to_string(),
    }
}

/// The nearest-rank `p` quantile of sorted, non-empty `values`.
pub(crate) fn nearest_rank<T: Copy>(sorted: &[T], p: f64) -> T {
    sorted[((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1]
}

/// A row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Figure {
    Rate,
    P50,
    P99,
    P999,
    /// Rate of the first tenth of a catch-up.
    FirstTenth,
    /// Rate of the last tenth of a catch-up.
    LastTenth,
    /// Last tenth's rate over the first's.
    LastOverFirst,
}

impl Figure {
    pub(crate) fn of(workload: Workload) -> &'static [Figure] {
        match workload {
            Workload::D | Workload::D1 | Workload::E => &[
                Figure::Rate,
                Figure::FirstTenth,
                Figure::LastTenth,
                Figure::LastOverFirst,
            ],
            Workload::F | Workload::G50 | Workload::G2000 => &[Figure::P50, Figure::P99, Figure::P999],
            _ => &[Figure::Rate, Figure::P50, Figure::P99],
        }
    }

    fn label(self) -> &'static str {
        match self {
            Figure::Rate => "msgs/s",
            Figure::P50 => "p50 ms",
            Figure::P99 => "p99 ms",
            Figure::P999 => "p999 ms",
            Figure::FirstTenth => "first 10% msgs/s",
            Figure::LastTenth => "last 10% msgs/s",
            Figure::LastOverFirst => "last 10% / first 10%",
        }
    }

    pub(crate) fn value(self, outcome: &Outcome) -> Option<f64> {
        match self {
            Figure::Rate => Some(outcome.rate()),
            Figure::P50 => outcome.latency.map(|l| l.p50_ms),
            Figure::P99 => outcome.latency.map(|l| l.p99_ms),
            Figure::P999 => outcome.latency.map(|l| l.p999_ms),
            Figure::FirstTenth => outcome.catch_up.as_ref().map(|c| c.first_tenth_per_s),
            Figure::LastTenth => outcome.catch_up.as_ref().map(|c| c.last_tenth_per_s),
            Figure::LastOverFirst => outcome.catch_up.as_ref().map(|c| c.last_over_first),
        }
    }

    /// Which way is better, for the Herald/NATS mark; `None` when the
    /// ratio between two targets means nothing.
    fn higher_is_better(self) -> Option<bool> {
        match self {
            Figure::Rate | Figure::FirstTenth | Figure::LastTenth => Some(true),
            Figure::P50 | Figure::P99 | Figure::P999 => Some(false),
            Figure::LastOverFirst => None,
        }
    }

    fn format(self, value: f64) -> String {
        match self {
            Figure::Rate | Figure::FirstTenth | Figure::LastTenth => group_thousands(value.round() as u64),
            Figure::LastOverFirst => format!("{value:.2}x"),
            Figure::P50 | Figure::P99 | Figure::P999 => format!("{value:.2}"),
        }
    }
}

/// 1234567 → "1,234,567".
pub(crate) fn group_thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::machine::FsyncLatency;
    use crate::plan::Options;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        options: Options,
    }

    fn outcome(workload: Workload, target: Target, messages: u64, seconds: f64, samples: Vec<u32>) -> Outcome {
        let mut o = Outcome::new(workload, messages, seconds, samples);
        o.target = target;
        o
    }

    fn machine() -> Machine {
        Machine {
            cores: 2,
            data_dir: "/tmp".into(),
            fsync: FsyncLatency {
                p50_ms: 0.25,
                p99_ms: 0.5,
                samples: 10,
            },
            sequential_mib_per_s: 500.0,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<u32> = (1..=1000).collect();
        let l = Latency::of(&samples).unwrap();
        assert_eq!((l.p50_ms, l.p99_ms, l.p999_ms), (0.5, 0.99, 0.999));
        assert_eq!(l.samples, 1000);
        assert!(Latency::of(&[]).is_none());
    }

    #[test]
    fn rounds_are_summed_and_samples_pooled() {
        let plan = Plan::new(Cli::parse_from(["bench", "--quick"]).options);
        let round = |messages, seconds, samples: Vec<u32>| RoundResult {
            outcomes: vec![outcome(Workload::A, Target::NatsAlways, messages, seconds, samples)],
            peak_rss_bytes: Some(messages << 20),
        };
        let report = Report::merge(
            0,
            plan,
            machine(),
            vec![
                (Target::NatsAlways, round(100, 1.0, vec![1000; 10])),
                (Target::NatsAlways, round(300, 1.0, vec![3000; 30])),
            ],
        );
        let merged = report.get(Workload::A, Target::NatsAlways).unwrap();
        assert_eq!((merged.messages, merged.seconds), (400, 2.0));
        assert_eq!(merged.rate(), 200.0);
        let latency = merged.latency.unwrap();
        assert_eq!((latency.samples, latency.p50_ms, latency.p99_ms), (40, 3.0, 3.0));
        assert!(merged.samples_us.is_empty(), "raw samples stay out of the report");
        assert_eq!(report.peak_rss_bytes[&Target::NatsAlways], 300 << 20);
    }

    #[test]
    fn ratios_mark_who_is_ahead_by_the_figure_direction() {
        let plan = Plan::new(
            Cli::parse_from(["bench", "--targets", "herald-durable,nats-always", "--workloads", "a"]).options,
        );
        let report = Report::merge(
            0,
            plan,
            machine(),
            vec![
                (
                    Target::HeraldDurable,
                    RoundResult {
                        outcomes: vec![outcome(Workload::A, Target::HeraldDurable, 3000, 1.0, vec![400; 10])],
                        peak_rss_bytes: None,
                    },
                ),
                (
                    Target::NatsAlways,
                    RoundResult {
                        outcomes: vec![outcome(Workload::A, Target::NatsAlways, 2000, 1.0, vec![200; 10])],
                        peak_rss_bytes: None,
                    },
                ),
            ],
        );
        let md = report.markdown();
        assert!(
            md.contains("| (a) 1 publisher | msgs/s | 3,000 | 1.50x ✓ | 2,000 |"),
            "{md}"
        );
        assert!(
            md.contains("| (a) 1 publisher | p99 ms | 0.40 | 2.00x ✗ | 0.20 |"),
            "{md}"
        );
    }

    #[test]
    fn catch_up_windows_are_pooled_over_rounds_and_shown_per_target() {
        let plan = Plan::new(
            Cli::parse_from(["bench", "--targets", "herald-durable,nats-always", "--workloads", "d"]).options,
        );
        let round = |target, first: f64, last: f64| {
            let mut o = outcome(Workload::D, target, 1000, 1.0, Vec::new());
            o.catch_up = Some(CatchUp::new(
                vec![0.1; 10],
                Window {
                    messages: 100,
                    seconds: first,
                },
                Window {
                    messages: 100,
                    seconds: last,
                },
            ));
            (
                target,
                RoundResult {
                    outcomes: vec![o],
                    peak_rss_bytes: None,
                },
            )
        };
        let report = Report::merge(
            0,
            plan,
            machine(),
            vec![
                round(Target::HeraldDurable, 0.1, 0.1),
                round(Target::HeraldDurable, 0.1, 0.3),
                round(Target::NatsAlways, 0.1, 0.1),
            ],
        );
        let profile = report
            .get(Workload::D, Target::HeraldDurable)
            .unwrap()
            .catch_up
            .clone()
            .unwrap();
        assert_eq!(profile.reached_s.len(), 2);
        assert_eq!((profile.first_tenth_per_s, profile.last_tenth_per_s), (1000.0, 500.0));
        let md = report.markdown();
        assert!(
            md.contains("| (d) 1 consumer catching up | last 10% msgs/s | 500 | 0.50x ✗ | 1,000 |"),
            "{md}"
        );
        assert!(
            md.contains("| (d) 1 consumer catching up | last 10% / first 10% | 0.50x | - | 1.00x |"),
            "{md}"
        );
    }

    #[test]
    fn thousands_are_grouped() {
        assert_eq!(group_thousands(0), "0");
        assert_eq!(group_thousands(999), "999");
        assert_eq!(group_thousands(1000), "1,000");
        assert_eq!(group_thousands(1234567), "1,234,567");
    }
}

#[cfg(test)]
mod saved_reports {
    use super::Report;

    /// `--redraw` reads a saved report: the one in the docs reads, and a
    /// field it does not know is refused rather than ignored.
    #[test]
    fn a_saved_report_reads_back_and_an_unknown_field_is_refused() {
        let saved = include_str!("../../../docs/performance/report.json");
        let report: Report = serde_json::from_str(saved).expect("the docs' report reads");
        assert!(!report.plan.targets.is_empty());
        let typo = saved.replacen('{', "{\"plann\": null,", 1);
        let err = serde_json::from_str::<Report>(&typo).unwrap_err();
        assert!(err.to_string().contains("plann"), "{err}");
    }
}
