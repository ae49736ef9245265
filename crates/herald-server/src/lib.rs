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
//! herald_server::serve(listener, herald_server::router(bus), std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod ws;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use herald::Bus;
use herald_core::Backend;

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    backend: Arc<dyn Backend>,
}

/// Herald's routes: `/v1/ws` (the WebSocket protocol) and `/healthz`.
pub fn router(bus: Bus) -> Router {
    let state = AppState {
        backend: bus.backend().clone(),
    };
    Router::new()
        .route("/v1/ws", get(ws::upgrade))
        .route("/healthz", get(|| async { "ok" }))
        .with_state(state)
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// taking connections and lets the ones in flight finish.
///
/// # Errors
///
/// The listener failed.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await
}
