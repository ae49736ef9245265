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
//! herald_server::serve(listener, bus, std::future::pending()).await?;
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

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    backend: Arc<dyn Backend>,
    /// Turns true when the server is stopping: WebSocket sessions close.
    stopping: watch::Receiver<bool>,
    /// Held by every session until it has finished, so [`serve`] can wait for them.
    alive: mpsc::Sender<()>,
}

/// Herald's routes: `/v1/ws` (the WebSocket protocol) and `/healthz`, to
/// nest in an existing axum app. Sessions last until their clients leave.
pub fn router(bus: Bus) -> Router {
    let (stop, stopping) = watch::channel(false);
    // Never told to stop: the app that embeds the routes owns their life.
    std::mem::drop(stop);
    let (alive, _) = mpsc::channel(1);
    routes(&bus, stopping, alive)
}

fn routes(bus: &Bus, stopping: watch::Receiver<bool>, alive: mpsc::Sender<()>) -> Router {
    let state = AppState {
        backend: bus.backend().clone(),
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
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop, stopping) = watch::channel(false);
    let (alive, mut sessions) = mpsc::channel(1);
    let app = routes(&bus, stopping, alive);
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
