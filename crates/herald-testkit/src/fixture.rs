//! The bus a conformance test runs on, with what the test needs to control it.

use std::ops::Deref;
use std::time::Duration;

use herald::{Bus, ManualClock};

/// A bus under test, with a way to move time forward.
///
/// Embedded buses run on a [`ManualClock`], so TTL and age tests are exact and
/// instant; other backends move with real time.
pub struct TestBus {
    bus: Bus,
    clock: Option<ManualClock>,
    _dir: Option<tempfile::TempDir>,
}

impl TestBus {
    /// An embedded in-memory bus on a manual clock.
    pub fn memory() -> TestBus {
        let clock = ManualClock::starting_now();
        let engine = herald::Engine::builder()
            .memory()
            .clock(clock.clone())
            .open()
            .expect("in-memory engine opens");
        TestBus {
            bus: Bus::from_engine(engine),
            clock: Some(clock),
            _dir: None,
        }
    }

    /// An embedded bus in a fresh temporary directory on a manual clock.
    pub async fn on_disk() -> TestBus {
        let dir = tempfile::tempdir().expect("a temp dir can be created");
        let clock = ManualClock::starting_now();
        let bus = Bus::builder()
            .path(dir.path())
            .clock(clock.clone())
            .open()
            .await
            .expect("engine opens");
        TestBus {
            bus,
            clock: Some(clock),
            _dir: Some(dir),
        }
    }

    /// Any other bus; time moves for real.
    pub fn real_time(bus: Bus) -> TestBus {
        TestBus {
            bus,
            clock: None,
            _dir: None,
        }
    }

    /// Moves time forward by `by` and lets time-based retention run.
    pub async fn advance(&self, by: Duration) {
        match &self.clock {
            Some(clock) => {
                clock.advance(by);
                self.bus.enforce_retention().await.expect("retention runs");
            }
            None => tokio::time::sleep(by).await,
        }
    }
}

impl Deref for TestBus {
    type Target = Bus;
    fn deref(&self) -> &Bus {
        &self.bus
    }
}
