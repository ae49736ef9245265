//! Which sequences a consuming workload has seen, and how fast it got there.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Instant;

use crate::report::{CatchUp, Window};

/// The sequences a workload has seen, shared by its members: a bitmap over
/// `1..=target`, so redeliveries and strays are counted rather than assumed
/// away, and the progress observed after each take.
pub(crate) struct Seen {
    bits: Vec<AtomicU64>,
    distinct: AtomicU64,
    duplicates: AtomicU64,
    out_of_range: AtomicU64,
    complete_at: OnceLock<Instant>,
    /// (when, distinct so far), one per take; short sections, no `.await`.
    progress: Mutex<Vec<(Instant, u64)>>,
    target: u64,
}

impl Seen {
    pub(crate) fn new(target: u64) -> Seen {
        Seen {
            bits: (0..target.div_ceil(64)).map(|_| AtomicU64::new(0)).collect(),
            distinct: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            out_of_range: AtomicU64::new(0),
            complete_at: OnceLock::new(),
            progress: Mutex::new(Vec::new()),
            target,
        }
    }

    /// Marks seq (1-based); true if it was new.
    pub(crate) fn mark(&self, seq: u64) -> bool {
        if seq == 0 || seq > self.target {
            self.out_of_range.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let (word, bit) = ((seq - 1) / 64, (seq - 1) % 64);
        let before = self.bits[word as usize].fetch_or(1 << bit, Ordering::Relaxed);
        if before & (1 << bit) != 0 {
            self.duplicates.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        if self.distinct.fetch_add(1, Ordering::Relaxed) + 1 == self.target {
            let _ = self.complete_at.set(Instant::now());
        }
        true
    }

    /// Notes the progress after a take, for [`catch_up`](Seen::catch_up).
    pub(crate) fn observe(&self) {
        let point = (Instant::now(), self.distinct());
        self.progress.lock().unwrap_or_else(|p| p.into_inner()).push(point);
    }

    pub(crate) fn complete(&self) -> bool {
        self.distinct() >= self.target
    }

    pub(crate) fn distinct(&self) -> u64 {
        self.distinct.load(Ordering::Relaxed)
    }

    pub(crate) fn duplicates(&self) -> u64 {
        self.duplicates.load(Ordering::Relaxed)
    }

    pub(crate) fn out_of_range(&self) -> u64 {
        self.out_of_range.load(Ordering::Relaxed)
    }

    pub(crate) fn target(&self) -> u64 {
        self.target
    }

    pub(crate) fn complete_at(&self) -> Option<Instant> {
        self.complete_at.get().copied()
    }

    /// The catch-up profile from `started` (see [`CatchUp`] for the windows);
    /// `None` before the last message was seen.
    pub(crate) fn catch_up(&self, started: Instant) -> Option<CatchUp> {
        let end = self.complete_at()?;
        let mut points = self.progress.lock().unwrap_or_else(|p| p.into_inner()).clone();
        points.push((end, self.target));
        // Members observe concurrently: order by time, and let a count
        // read a moment early never go backwards.
        points.sort_by_key(|&(at, _)| at);
        let mut highest = 0;
        for point in &mut points {
            highest = highest.max(point.1);
            point.1 = highest;
        }
        Some(profile(started, &points, self.target))
    }
}

/// The profile of `points` (time-ordered, counts non-decreasing, ending at
/// `(complete, target)`).
fn profile(started: Instant, points: &[(Instant, u64)], target: u64) -> CatchUp {
    let secs = |at: Instant| at.saturating_duration_since(started).as_secs_f64();
    let reached = |count: u64| {
        points
            .iter()
            .find(|&&(_, c)| c >= count)
            .map_or(0.0, |&(at, _)| secs(at))
    };
    let reached_s = (1..=10u64).map(|k| reached((target * k).div_ceil(10))).collect();

    let (first_at, first_count) = points
        .iter()
        .copied()
        .find(|&(_, c)| c >= target.div_ceil(10))
        .expect("the last point holds the target");
    let first = Window {
        messages: first_count,
        seconds: secs(first_at),
    };
    let (from_at, from_count) = points
        .iter()
        .copied()
        .rev()
        .find(|&(_, c)| c <= target * 9 / 10)
        .unwrap_or((started, 0));
    let (end_at, _) = *points.last().expect("the last point holds the target");
    let last = Window {
        messages: target - from_count,
        seconds: end_at.saturating_duration_since(from_at).as_secs_f64(),
    };
    CatchUp::new(reached_s, first, last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_steady_consumer_has_a_ratio_of_one() {
        let started = Instant::now();
        let points: Vec<_> = (1..=100u64)
            .map(|i| (started + Duration::from_millis(i * 10), i * 100))
            .collect();
        let profile = profile(started, &points, 10_000);
        assert_eq!(profile.first.messages, 1000);
        assert!((profile.first_tenth_per_s - 10_000.0).abs() < 1.0, "{profile:?}");
        assert_eq!(profile.last.messages, 1000);
        assert!((profile.last_over_first - 1.0).abs() < 1e-6, "{profile:?}");
        assert_eq!(profile.reached_s[0].len(), 10);
        assert!((profile.reached_s[0][9] - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_consumer_slowing_down_shows_in_the_last_tenth() {
        let started = Instant::now();
        // 9,000 messages in the first 0.9 s, the last 1,000 in 1 s.
        let points = [
            (started + Duration::from_millis(100), 1000),
            (started + Duration::from_millis(900), 9000),
            (started + Duration::from_millis(1900), 10_000),
        ];
        let profile = profile(started, &points, 10_000);
        assert!((profile.last_over_first - 0.1).abs() < 1e-6, "{profile:?}");
    }

    #[test]
    fn big_takes_widen_the_windows_to_whole_takes() {
        let started = Instant::now();
        // Takes of 2,500: the first window is the first take, the last the
        // take that went from 7,500 to 10,000.
        let points: Vec<_> = (1..=4u64)
            .map(|i| (started + Duration::from_secs(i), i * 2500))
            .collect();
        let profile = profile(started, &points, 10_000);
        assert_eq!((profile.first.messages, profile.last.messages), (2500, 2500));
        assert_eq!((profile.first.seconds, profile.last.seconds), (1.0, 1.0));
    }
}
