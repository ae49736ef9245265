//! Where the engine gets the time: the system clock, or a manual one for tests.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use herald_core::Timestamp;

/// A source of wall-clock time for message times, TTLs, age retention and the
/// duplicate window.
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time.
    fn now(&self) -> Timestamp;
}

/// The system clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to, for deterministic tests of TTLs, age
/// retention and dedup windows.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use herald_engine::{Clock, ManualClock};
///
/// let clock = ManualClock::starting_now();
/// let before = clock.now();
/// clock.advance(Duration::from_secs(5));
/// assert_eq!(clock.now().since(before), Duration::from_secs(5));
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicU64>);

impl ManualClock {
    /// A manual clock set to the system clock's current time.
    pub fn starting_now() -> Self {
        Self::at(Timestamp::now())
    }

    /// A manual clock set to `time`.
    pub fn at(time: Timestamp) -> Self {
        Self(Arc::new(AtomicU64::new(time.as_nanos())))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0.fetch_add(nanos, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}
