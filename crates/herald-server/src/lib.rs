//! Herald as a service: the embedded engine behind a WebSocket protocol any
//! language can speak, served by axum.
//!
//! [`router`] gives the routes as an `axum::Router`, to serve on its own with
//! [`serve`] or to nest in an existing axum app:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = herald::Bus::open("./herald-data").await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7878").await?;
//! herald_server::serve(listener, bus, herald_server::Limits::default(), std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod ws;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use herald::Bus;
use herald_core::Backend;
use tokio::sync::{mpsc, watch};

/// The server's limits. Defaults: 1 MiB payloads, 1,024 connections, 1,024
/// subscriptions and responders per connection, 4,096 frames queued per
/// connection, and 5 s for a subscriber to make room in a full queue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// The largest payload a publish may carry, in bytes (streams may set lower).
    pub max_payload: usize,
    /// Open WebSocket sessions at most; more are refused with 503.
    pub max_connections: usize,
    /// Live subscriptions plus responders per connection at most.
    pub max_subscriptions: usize,
    /// Frames queued for one connection's socket, so a slow reader never
    /// grows the server's memory.
    pub outbound_buffer: usize,
    /// A subscriber whose queue stays full this long is disconnected with a
    /// reason frame (the log is durable: it resumes from its seq).
    pub slow_consumer_timeout: std::time::Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_payload: 1024 * 1024,
            max_connections: 1024,
            max_subscriptions: 1024,
            outbound_buffer: 4096,
            slow_consumer_timeout: std::time::Duration::from_secs(5),
        }
    }
}

impl Limits {
    /// Sets [`max_payload`](Limits::max_payload).
    pub fn max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Sets [`max_connections`](Limits::max_connections).
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n;
        self
    }

    /// Sets [`max_subscriptions`](Limits::max_subscriptions).
    pub fn max_subscriptions(mut self, n: usize) -> Self {
        self.max_subscriptions = n;
        self
    }

    /// Sets [`slow_consumer_timeout`](Limits::slow_consumer_timeout).
    pub fn slow_consumer_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.slow_consumer_timeout = timeout;
        self
    }

    /// Sets [`outbound_buffer`](Limits::outbound_buffer) (at least 1).
    pub fn outbound_buffer(mut self, frames: usize) -> Self {
        self.outbound_buffer = frames.max(1);
        self
    }
}

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    backend: Arc<dyn Backend>,
    limits: Arc<Limits>,
    connections: Arc<tokio::sync::Semaphore>,
    /// Turns true when the server is stopping: WebSocket sessions close.
    stopping: watch::Receiver<bool>,
    /// Held by every session until it has finished, so [`serve`] can wait for them.
    alive: mpsc::Sender<()>,
}

/// Herald's routes: `/v1/ws` (the WebSocket protocol) and `/healthz`, to
/// nest in an existing axum app. Sessions last until their clients leave.
pub fn router(bus: Bus, limits: Limits) -> Router {
    let (stop, stopping) = watch::channel(false);
    // Never told to stop: the app that embeds the routes owns their life.
    std::mem::drop(stop);
    let (alive, _) = mpsc::channel(1);
    routes(&bus, limits, stopping, alive)
}

fn routes(bus: &Bus, limits: Limits, stopping: watch::Receiver<bool>, alive: mpsc::Sender<()>) -> Router {
    let state = AppState {
        backend: bus.backend().clone(),
        connections: Arc::new(tokio::sync::Semaphore::new(limits.max_connections)),
        limits: Arc::new(limits),
        stopping,
        alive,
    };
    Router::new()
        .route("/v1/ws", get(ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves `bus` on `listener` until `shutdown` completes; then it stops
/// taking connections, closes WebSocket sessions (each finishes the
/// operations it had started) and returns once they are done.
///
/// # Errors
///
/// The listener failed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    bus: Bus,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let (alive, mut sessions) = mpsc::channel(1);
    let app = routes(&bus, limits, stopping, alive);
    drop(bus);
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            shutdown.await;
            let _ = stop.send(true);
        })
        .await?;
    // WebSocket sessions outlive their HTTP connections: wait for each to
    // finish, so the engine is closed when this returns.
    while sessions.recv().await.is_some() {}
    Ok(())
}
