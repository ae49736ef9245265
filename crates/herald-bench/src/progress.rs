//! What a long run shows while it works: a line per step, and on a terminal a
//! live count within the step.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often the live count is redrawn.
const TICK: Duration = Duration::from_millis(250);

/// The messages a step has done, out of how many, in which phase.
#[derive(Clone, Default)]
pub(crate) struct Counter {
    inner: Arc<CounterInner>,
}

#[derive(Default)]
struct CounterInner {
    done: AtomicU64,
    total: AtomicU64,
    phase: Mutex<&'static str>,
}

impl Counter {
    /// Sets the expected total.
    pub(crate) fn expect(&self, total: u64) {
        self.inner.total.store(total, Ordering::Relaxed);
    }

    /// Counts `n` more done.
    pub(crate) fn add(&self, n: u64) {
        self.inner.done.fetch_add(n, Ordering::Relaxed);
    }

    /// Starts the count again (a new phase of the same step).
    pub(crate) fn reset(&self) {
        self.inner.done.store(0, Ordering::Relaxed);
    }

    /// Names the phase shown beside the count.
    pub(crate) fn phase(&self, phase: &'static str) {
        *self.inner.phase.lock().unwrap_or_else(|p| p.into_inner()) = phase;
    }

    fn line(&self) -> String {
        let done = self.inner.done.load(Ordering::Relaxed);
        let total = self.inner.total.load(Ordering::Relaxed).max(1);
        let phase = *self.inner.phase.lock().unwrap_or_else(|p| p.into_inner());
        format!("{phase} {done}/{total} ({:.0}%)", done as f64 * 100.0 / total as f64)
    }
}

/// A step under way: prints its heading, redraws its count on a terminal, and
/// prints its result when done.
pub(crate) struct Step {
    heading: String,
    counter: Counter,
    started: Instant,
    ticker: Option<tokio::task::JoinHandle<()>>,
}

impl Step {
    /// Starts step `index` of `total`.
    pub(crate) fn start(index: usize, total: usize, what: String) -> Step {
        let heading = format!("[{index:>2}/{total}] {what}");
        let counter = Counter::default();
        let ticker = if std::io::stderr().is_terminal() {
            let (counter, heading) = (counter.clone(), heading.clone());
            Some(tokio::spawn(async move {
                let mut tick = tokio::time::interval(TICK);
                loop {
                    tick.tick().await;
                    eprint!("\r\x1b[2K{heading} … {}", counter.line());
                    let _ = std::io::stderr().flush();
                }
            }))
        } else {
            eprintln!("{heading} …");
            None
        };
        Step {
            heading,
            counter,
            started: Instant::now(),
            ticker,
        }
    }

    /// The step's counter, for the workload to advance.
    pub(crate) fn counter(&self) -> &Counter {
        &self.counter
    }

    /// Ends the step with a one-line result.
    pub(crate) fn finish(mut self, result: &str) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
            eprint!("\r\x1b[2K");
        }
        eprintln!(
            "{}: {result} ({:.1} s)",
            self.heading,
            self.started.elapsed().as_secs_f64()
        );
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
            eprintln!();
        }
    }
}
