//! The bus a conformance test runs on, with what the test needs to control it.

use std::ops::Deref;
use std::time::Duration;

use herald::{Bus, ManualClock};

use crate::nats_server::{NatsServer, NatsSync};

/// A bus under test, with a way to move time forward.
///
/// Embedded buses run on a [`ManualClock`], so TTL and age tests are exact and
/// instant; other backends move with real time.
pub struct TestBus {
    bus: Bus,
    clock: Option<ManualClock>,
    paused: bool,
    _dir: Option<tempfile::TempDir>,
    _server: Option<NatsServer>,
    /// The engine behind a Herald server, and the server's task.
    hosted: Option<(herald::Engine, ServerTask)>,
    unsupported: &'static [(&'static str, &'static str)],
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
            clock: Some(clock),
            ..TestBus::real_time(Bus::from_engine(engine))
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
            clock: Some(clock),
            _dir: Some(dir),
            ..TestBus::real_time(bus)
        }
    }

    /// Any other bus; time moves for real.
    pub fn real_time(bus: Bus) -> TestBus {
        TestBus {
            bus,
            clock: None,
            paused: false,
            _dir: None,
            _server: None,
            hosted: None,
            unsupported: &[],
        }
    }

    /// A bus on a fresh nats-server of its own (`sync_interval: always`, its
    /// own store directory, a free port), stopped when the bus is dropped.
    pub async fn nats() -> TestBus {
        let server = NatsServer::start(NatsSync::Always, None).expect("nats-server starts");
        let bus = Bus::nats(server.url()).await.expect("connects to nats-server");
        TestBus {
            _server: Some(server),
            ..TestBus::real_time(bus)
        }
    }

    /// Marks the test as running on paused tokio time, so [`advance`](TestBus::advance)
    /// moves tokio's clock (leases, backoff) along with the bus's.
    pub fn with_paused_time(mut self) -> TestBus {
        self.paused = true;
        self
    }

    /// A bus on a Herald server of its own on `127.0.0.1:0` (an in-memory
    /// engine), reached through the remote client over the WebSocket protocol.
    pub async fn remote() -> TestBus {
        let engine = herald::Engine::memory().expect("in-memory engine opens");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let hosted = Bus::from_engine(engine.clone());
        let task = tokio::spawn(async move {
            let _ = herald_server::Server::new(hosted)
                .serve(listener, std::future::pending())
                .await;
        });
        let bus = Bus::connect(format!("ws://{addr}/v1/ws"))
            .await
            .expect("connects to the server");
        TestBus {
            hosted: Some((engine, ServerTask(task))),
            ..TestBus::real_time(bus)
        }
    }

    /// Marks conformance tests whose promise this backend cannot keep, each
    /// with the reason (docs name the same differences). A marked test must
    /// still fail on the backend, so a mark never outlives the gap it explains.
    pub fn with_unsupported(mut self, cases: &'static [(&'static str, &'static str)]) -> TestBus {
        self.unsupported = cases;
        self
    }

    /// Why the conformance test `name` is marked unsupported on this bus, if it is.
    pub fn unsupported_reason(&self, name: &str) -> Option<&'static str> {
        self.unsupported
            .iter()
            .find(|(case, _)| *case == name)
            .map(|(_, why)| *why)
    }

    /// How late a timer may fire on this bus: nothing on virtual time, a
    /// quarter second on a real server's clock (network and scheduling).
    pub fn timer_slack(&self) -> Duration {
        if self.paused || self.clock.is_some() {
            Duration::ZERO
        } else {
            Duration::from_millis(250)
        }
    }

    /// Moves time forward by `by` and lets time-based retention run.
    pub async fn advance(&self, by: Duration) {
        if self.paused {
            tokio::time::advance(by).await;
        }
        match &self.clock {
            Some(clock) => {
                clock.advance(by);
                self.bus.enforce_retention().await.expect("retention runs");
            }
            None if !self.paused => {
                tokio::time::sleep(by).await;
                // A hosted engine enforces age and TTL every second; run it now.
                if let Some((engine, _)) = &self.hosted {
                    engine.enforce_retention().await.expect("retention runs");
                }
            }
            None => {}
        }
    }
}

/// A server task, stopped when the test's bus is dropped.
struct ServerTask(tokio::task::JoinHandle<()>);

impl Drop for ServerTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl Deref for TestBus {
    type Target = Bus;
    fn deref(&self) -> &Bus {
        &self.bus
    }
}
