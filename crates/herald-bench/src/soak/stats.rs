//! What the load tasks count, and the rows the soak prints from it.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::report::nearest_rank;

/// Counters shared by the load tasks; the soak reads them once per row.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    /// Messages acknowledged to publishers.
    pub(crate) published: AtomicU64,
    /// Group deliveries acked.
    pub(crate) consumed: AtomicU64,
    /// Group deliveries nak'd (they come back).
    pub(crate) naked: AtomicU64,
    /// KV puts and successful compare-and-sets.
    pub(crate) kv_writes: AtomicU64,
    /// Compare-and-sets refused because another writer got there first.
    pub(crate) cas_conflicts: AtomicU64,
    /// Reads by seq.
    pub(crate) reads: AtomicU64,
    /// Messages the live subscription received.
    pub(crate) live: AtomicU64,
    /// Publish latencies of the current row, in milliseconds (a batch counts once).
    latencies: Mutex<Vec<f32>>,
    /// Client-side errors and findings by kind (`publish:Closed`), since the start.
    errors: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Stats {
    /// Counts an error of operation `op` (`publish`, `fetch`, …).
    pub(crate) fn error(&self, op: &str, err: &herald::Error) {
        self.note(&format!("{op}:{:?}", err.kind()));
    }

    /// Counts something by name.
    pub(crate) fn note(&self, what: &str) {
        *lock(&self.errors).entry(what.to_string()).or_insert(0) += 1;
    }

    /// Records one acknowledged publish call's latency.
    pub(crate) fn latency(&self, took: Duration) {
        lock(&self.latencies).push(took.as_secs_f32() * 1000.0);
    }

    /// The errors so far, by kind.
    pub(crate) fn errors(&self) -> BTreeMap<String, u64> {
        lock(&self.errors).clone()
    }

    /// The latencies since the last call, sorted.
    fn take_latencies(&self) -> Vec<f32> {
        let mut taken = std::mem::take(&mut *lock(&self.latencies));
        taken.sort_by(f32::total_cmp);
        taken
    }

    fn counters(&self) -> Counters {
        Counters {
            published: self.published.load(Ordering::Relaxed),
            consumed: self.consumed.load(Ordering::Relaxed),
        }
    }
}

/// The counters a row takes differences of.
#[derive(Debug, Default, Clone, Copy)]
struct Counters {
    published: u64,
    consumed: u64,
}

/// One progress row.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    /// Seconds since the start.
    pub(crate) elapsed: f64,
    /// The server's resident memory, MiB (`None` while it is down).
    pub(crate) server_mib: Option<f64>,
    /// The size of the data directory, MiB.
    pub(crate) data_mib: Option<f64>,
    /// This program's resident memory (the clients and the ledger), MiB.
    pub(crate) client_mib: Option<f64>,
    /// Messages acknowledged per second in the row.
    pub(crate) publish_rate: f64,
    /// Publish call latency percentiles in the row, ms.
    pub(crate) p50: Option<f32>,
    pub(crate) p99: Option<f32>,
    pub(crate) max: Option<f32>,
    /// Group deliveries acked per second in the row.
    pub(crate) consume_rate: f64,
    /// The group's lag at the row's end.
    pub(crate) lag: Option<u64>,
    /// Kills so far.
    pub(crate) kills: u32,
    /// Acknowledged publishes so far.
    pub(crate) acked: u64,
    /// Acknowledged writes found lost so far.
    pub(crate) lost: u64,
    /// Errors new in this row, by kind.
    pub(crate) new_errors: BTreeMap<String, u64>,
}

/// Cuts the counters into rows.
#[derive(Debug, Default)]
pub(crate) struct Rows {
    last_elapsed: f64,
    last: Counters,
    last_errors: BTreeMap<String, u64>,
    /// Every row so far.
    pub(crate) rows: Vec<Row>,
    /// Every publish latency of the run, for the summary's percentiles.
    all_latencies: Vec<f32>,
}

/// What a row needs beside the counters.
pub(crate) struct Now {
    pub(crate) elapsed: f64,
    pub(crate) server_rss: Option<u64>,
    pub(crate) data: Option<u64>,
    pub(crate) client_rss: Option<u64>,
    pub(crate) lag: Option<u64>,
    pub(crate) kills: u32,
    pub(crate) acked: u64,
    pub(crate) lost: u64,
}

fn mib(bytes: Option<u64>) -> Option<f64> {
    bytes.map(|b| b as f64 / (1024.0 * 1024.0))
}

impl Rows {
    /// Takes a row from `stats` as of `now`.
    pub(crate) fn take(&mut self, stats: &Stats, now: Now) -> &Row {
        let counters = stats.counters();
        let seconds = (now.elapsed - self.last_elapsed).max(1e-9);
        let latencies = stats.take_latencies();
        let errors = stats.errors();
        let new_errors = errors
            .iter()
            .filter_map(|(kind, n)| {
                let new = n - self.last_errors.get(kind).copied().unwrap_or(0);
                (new > 0).then(|| (kind.clone(), new))
            })
            .collect();
        let percentile = |p| (!latencies.is_empty()).then(|| nearest_rank(&latencies, p));
        let row = Row {
            elapsed: now.elapsed,
            server_mib: mib(now.server_rss),
            data_mib: mib(now.data),
            client_mib: mib(now.client_rss),
            publish_rate: (counters.published - self.last.published) as f64 / seconds,
            p50: percentile(0.50),
            p99: percentile(0.99),
            max: latencies.last().copied(),
            consume_rate: (counters.consumed - self.last.consumed) as f64 / seconds,
            lag: now.lag,
            kills: now.kills,
            acked: now.acked,
            lost: now.lost,
            new_errors,
        };
        self.all_latencies.extend(latencies);
        self.last_elapsed = now.elapsed;
        self.last = counters;
        self.last_errors = errors;
        self.rows.push(row);
        self.rows.last().expect("a row was just pushed")
    }

    /// p50, p99, p99.9 and max of every publish of the run, ms.
    pub(crate) fn overall(&mut self) -> Option<[f32; 4]> {
        self.all_latencies.sort_by(f32::total_cmp);
        let all = &self.all_latencies;
        let last = *all.last()?;
        Some([
            nearest_rank(all, 0.50),
            nearest_rank(all, 0.99),
            nearest_rank(all, 0.999),
            last,
        ])
    }
}

/// The table's heading, as markdown.
pub(crate) const HEADER: &str = "| elapsed | server RSS MiB | data MiB | soak RSS MiB | publishes/s | p50 ms | p99 ms | max ms | consumed/s | group lag | kills | acked | acked-lost | new errors |\n\
|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|:---|";

fn opt<T: std::fmt::Display>(value: Option<T>, f: impl Fn(T) -> String) -> String {
    value.map_or("–".to_string(), f)
}

/// `1h02m05s`.
pub(crate) fn clock(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 3600 {
        format!("{}h{:02}m{:02}s", s / 3600, s / 60 % 60, s % 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

impl Row {
    /// The row as a markdown table line.
    pub(crate) fn markdown(&self) -> String {
        let errors: Vec<String> = self.new_errors.iter().map(|(k, n)| format!("{k} {n}")).collect();
        format!(
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} | {:.0} | {} | {} | {} | {} | {} |",
            clock(self.elapsed),
            opt(self.server_mib, |v| format!("{v:.1}")),
            opt(self.data_mib, |v| format!("{v:.0}")),
            opt(self.client_mib, |v| format!("{v:.1}")),
            self.publish_rate,
            opt(self.p50, |v| format!("{v:.2}")),
            opt(self.p99, |v| format!("{v:.2}")),
            opt(self.max, |v| format!("{v:.1}")),
            self.consume_rate,
            opt(self.lag, |v| v.to_string()),
            self.kills,
            self.acked,
            self.lost,
            if errors.is_empty() {
                "–".to_string()
            } else {
                errors.join(", ")
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_holds_the_differences_since_the_last() {
        let stats = Stats::default();
        let mut rows = Rows::default();
        let now = |elapsed| Now {
            elapsed,
            server_rss: Some(64 << 20),
            data: Some(3 << 20),
            client_rss: None,
            lag: Some(3),
            kills: 1,
            acked: 10,
            lost: 0,
        };
        stats.published.store(100, Ordering::Relaxed);
        stats.latency(Duration::from_millis(2));
        stats.note("publish:Closed");
        rows.take(&stats, now(10.0));
        stats.published.store(400, Ordering::Relaxed);
        stats.latency(Duration::from_millis(4));
        stats.note("publish:Closed");
        stats.note("ack:LeaseLost");
        let row = rows.take(&stats, now(20.0)).clone();
        assert_eq!(row.publish_rate, 30.0);
        assert_eq!(row.p99, Some(4.0));
        assert_eq!(row.new_errors.get("publish:Closed"), Some(&1));
        assert_eq!(row.new_errors.get("ack:LeaseLost"), Some(&1));
        assert!(
            row.markdown().starts_with("| 0m20s | 64.0 | 3 | – | 30 |"),
            "{}",
            row.markdown()
        );
        assert_eq!(rows.overall(), Some([2.0, 4.0, 4.0, 4.0]));
        assert_eq!(clock(3725.0), "1h02m05s");
    }
}
