//! Herald as a service: the embedded engine behind a WebSocket protocol any
//! language can speak, served by axum.
//!
//! [`Server::router`] gives the routes as an `axum::Router`, to nest in an
//! existing axum app; [`Server::serve`] serves them on their own:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let bus = herald::Bus::open("./herald-data").await?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7878").await?;
//! herald_server::Server::new(bus).serve(listener, std::future::pending()).await?;
//! # Ok(()) }
//! ```

mod auth;
pub mod fuzzing;
mod limits;
mod listen;
mod metrics;
mod openapi;
mod page;
mod payload;
mod release;
mod rest;
mod settle;
mod sse;
mod tls;
mod token_places;
mod unparsed;
mod ws;

pub use auth::{Access, Permissions, Token, new_token_secret, token_hash};
pub use limits::{InvalidLimit, Limits};
pub use tls::TlsConfig;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use herald::Bus;
use herald_core::Backend;
use tokio::sync::{mpsc, watch};

/// Maps shared by tasks stay usable after a panic elsewhere: the data is plain.
fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// What every handler shares.
#[derive(Clone)]
struct AppState {
    backend: Arc<dyn Backend>,
    limits: Arc<Limits>,
    keyring: Arc<auth::Keyring>,
    metrics: Arc<metrics::Metrics>,
    connections: Arc<tokio::sync::Semaphore>,
    /// WebSocket sessions and tails each token holds.
    token_places: Arc<token_places::TokenPlaces>,
    /// Turns true when the server is stopping: WebSocket sessions close.
    stopping: watch::Receiver<bool>,
    /// Held by every session until it has finished, so [`Server::serve`] can wait for them.
    alive: mpsc::Sender<()>,
}

/// A Herald server: a bus, its limits and who may use it.
///
/// [`Server::router`] gives the routes to nest in an existing axum app;
/// [`Server::serve`] serves them on a listener until told to stop.
#[derive(Clone)]
pub struct Server {
    bus: Bus,
    limits: Limits,
    access: Access,
    tls: Option<tls::TlsConfig>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("limits", &self.limits)
            .field("requires_token", &self.access.requires_token())
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server for `bus` with default limits and no access tokens.
    pub fn new(bus: Bus) -> Server {
        Server {
            bus,
            limits: Limits::default(),
            access: Access::Open,
            tls: None,
        }
    }

    /// Sets the limits, once [`Limits::validate`] has checked them: a server
    /// never starts with limits it could not size its queues and counters
    /// by.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`](herald_core::ErrorKind::InvalidConfig),
    /// naming the field out of range and its range.
    ///
    /// # Examples
    ///
    /// ```
    /// # fn main() -> Result<(), herald_core::Error> {
    /// let bus = herald::Bus::memory()?;
    /// let limits = herald_server::Limits::default().max_connections(64);
    /// let server = herald_server::Server::new(bus.clone()).limits(limits)?;
    ///
    /// let mut limits = herald_server::Limits::default();
    /// limits.outbound_buffer = 0;
    /// let refused = herald_server::Server::new(bus).limits(limits).unwrap_err();
    /// assert_eq!(refused.kind(), herald_core::ErrorKind::InvalidConfig);
    /// # drop(server);
    /// # Ok(()) }
    /// ```
    pub fn limits(mut self, limits: Limits) -> Result<Server, herald_core::Error> {
        limits.validate()?;
        self.limits = limits;
        Ok(self)
    }

    /// Sets who may connect.
    pub fn access(mut self, access: Access) -> Server {
        self.access = access;
        self
    }

    /// Serves HTTPS and `wss://` with this certificate (used by
    /// [`serve`](Server::serve); an app nesting [`router`](Server::router)
    /// terminates TLS itself).
    pub fn tls(mut self, tls: tls::TlsConfig) -> Server {
        self.tls = Some(tls);
        self
    }

    /// Herald's routes: `/v1/ws`, the HTTP API under `/v1`, `/metrics` and
    /// `/healthz`, to nest in an existing axum app. WebSocket sessions last
    /// until their clients leave.
    pub fn router(self) -> Router {
        let (stop, stopping) = watch::channel(false);
        // Never told to stop: the app that embeds the routes owns their life.
        std::mem::drop(stop);
        let (alive, _) = mpsc::channel(1);
        self.routes(stopping, alive, Arc::default())
    }

    fn routes(
        self,
        stopping: watch::Receiver<bool>,
        alive: mpsc::Sender<()>,
        metrics: Arc<metrics::Metrics>,
    ) -> Router {
        let state = AppState {
            backend: self.bus.backend().clone(),
            connections: Arc::new(tokio::sync::Semaphore::new(self.limits.max_connections)),
            token_places: Arc::new(token_places::TokenPlaces::new(self.limits.max_connections_per_token)),
            limits: Arc::new(self.limits),
            keyring: Arc::new(self.access.into()),
            metrics,
            stopping,
            alive,
        };
        Router::new()
            .route("/v1/ws", get(ws::upgrade))
            .route("/metrics", get(metrics::handler))
            .route("/healthz", get(|| async { "ok" }))
            .merge(rest::routes(&state.limits))
            .fallback(not_found)
            .method_not_allowed_fallback(method_not_allowed)
            .with_state(state)
    }

    /// Serves on `listener` until `shutdown` completes; then it stops taking
    /// connections, answers waiting fetches at once, lets other HTTP
    /// requests in flight finish, closes WebSocket sessions (each finishes
    /// the operations it had started and gives back the deliveries it held)
    /// and returns once they are done.
    ///
    /// Every accepted socket is tuned for latency (TCP_NODELAY) and held to
    /// the [`Limits`]' connection caps and header and idle timeouts.
    ///
    /// # Errors
    ///
    /// The listener failed.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (stop, stopping) = watch::channel(false);
        let (alive, mut sessions) = mpsc::channel(1);
        let tls = self.tls.clone();
        let limits = Arc::new(self.limits.clone());
        let metrics: Arc<metrics::Metrics> = Arc::default();
        let app = self.routes(stopping.clone(), alive, metrics.clone());
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop.send(true);
        });
        match tls {
            None => {
                let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| tune(tcp));
                listen::serve(listener, app, limits, metrics, stopping).await;
            }
            Some(tls) => {
                let listener = tls::TlsListener::new(listener, &tls);
                listen::serve(listener, app, limits, metrics, stopping).await;
            }
        }
        // WebSocket sessions outlive their HTTP connections: wait for each to
        // finish, so the engine is closed when this returns.
        while sessions.recv().await.is_some() {}
        Ok(())
    }
}

/// Tunes an accepted socket for latency: replies and pushes are small
/// frames, and Nagle's algorithm would hold each one back until the peer's
/// delayed ACK (about 40 ms on Linux) of the one before.
fn tune(tcp: &tokio::net::TcpStream) {
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(%err, "TCP_NODELAY could not be set on an accepted connection");
    }
}

/// A path no route serves: the error object, like every other failure.
async fn not_found(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    let error = herald_core::Error::new(
        herald_core::ErrorKind::InvalidRequest,
        format!("no such resource: {method} {} (docs/http.md lists the API)", uri.path()),
    );
    with_status(axum::http::StatusCode::NOT_FOUND, &error)
}

/// A route that exists, asked with a method it does not take.
async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    let error = herald_core::Error::new(
        herald_core::ErrorKind::InvalidRequest,
        format!("{} does not take {method} (docs/http.md lists the API)", uri.path()),
    );
    with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED, &error)
}

/// `error` as its JSON object under another status than its kind's.
fn with_status(status: axum::http::StatusCode, error: &herald_core::Error) -> axum::response::Response {
    use axum::response::IntoResponse;
    (status, axum::Json(wire_error(error))).into_response()
}

/// An error as an HTTP response: a status for its kind and the error as JSON
/// (the same object as a WebSocket error frame's `error`).
fn http_error(error: &herald_core::Error) -> axum::response::Response {
    use axum::http::StatusCode;
    use herald_core::ErrorKind as K;
    let status = match error.kind() {
        K::InvalidSubject | K::InvalidName | K::InvalidConfig | K::InvalidRequest | K::HeadersTooLarge => {
            StatusCode::BAD_REQUEST
        }
        K::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        K::StreamNotFound | K::MessageNotFound | K::ConsumerNotFound => StatusCode::NOT_FOUND,
        K::StreamExists | K::ConsumerExists | K::SubjectConflict | K::LeaseLost => StatusCode::CONFLICT,
        K::WrongExpectedSeq => StatusCode::PRECONDITION_FAILED,
        K::StreamFull => StatusCode::INSUFFICIENT_STORAGE,
        K::PermissionDenied => StatusCode::FORBIDDEN,
        // The server is stopping (or the bus closed): try again, maybe elsewhere.
        K::NoResponders | K::Closed => StatusCode::SERVICE_UNAVAILABLE,
        K::Timeout => StatusCode::GATEWAY_TIMEOUT,
        K::Unsupported => StatusCode::NOT_IMPLEMENTED,
        K::Lagged | K::Storage | K::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    with_status(status, error)
}

/// An error as clients see it. Internal and storage failures are logged here
/// with their causes, and the client is told only their kind: what went wrong
/// inside the server is the operator's to read, not the caller's.
fn wire_error(error: &herald_core::Error) -> herald_core::wire::WireError {
    use herald_core::ErrorKind as K;
    let mut wire = herald_core::wire::WireError::from(error);
    if matches!(error.kind(), K::Internal | K::Storage) {
        // One event, the whole chain in its message.
        tracing::error!(kind = ?error.kind(), "{}", herald_core::cause_chain(error));
        wire.message = match error.kind() {
            K::Storage => "the server could not read or write its data (details are in its log)".to_owned(),
            _ => "the server failed inside (details are in its log)".to_owned(),
        };
    }
    wire
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use herald_core::{Error, ErrorKind};

    #[test]
    fn internal_details_stay_in_the_log_and_user_errors_reach_the_client() {
        let io = std::io::Error::other("/var/lib/herald/herald.redb: no space left on device");
        let storage = Error::new(ErrorKind::Storage, "committing a batch").with_source(io);
        let wire = super::wire_error(&storage);
        assert_eq!((wire.code, wire.kind), (5001, ErrorKind::Storage));
        assert!(!wire.message.contains("committing") && !wire.message.contains("/var/lib"));
        let user = Error::new(ErrorKind::StreamNotFound, "stream `orders` not found");
        assert_eq!(super::wire_error(&user).message, "stream `orders` not found");
    }

    /// What `f` logs, as the human format writes it.
    fn logged(f: impl FnOnce()) -> String {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buffer(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buffer {
            fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(bytes);
                Ok(bytes.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buffer = Buffer::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, f);
        String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_storage_error_is_logged_once_with_its_cause_chain() {
        let io = std::io::Error::other("no space left on device");
        let commit = Error::new(ErrorKind::Storage, "commit failed: no space left on device").with_source(io);
        let storage = Error::new(ErrorKind::Storage, "publishing to `orders`").with_source(commit);
        let log = logged(|| {
            super::wire_error(&storage);
        });
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(lines[0].contains("ERROR"), "{log}");
        assert!(
            lines[0].ends_with("publishing to `orders`: commit failed: no space left on device kind=Storage"),
            "{log}"
        );
        // A user's error is the user's: nothing to log.
        let user = Error::new(ErrorKind::StreamNotFound, "stream `orders` not found");
        assert_eq!(logged(|| drop(super::wire_error(&user))), "");
    }

    #[test]
    fn a_cause_chain_names_each_layer_once() {
        let io = std::io::Error::other("no space left on device");
        let storage = Error::new(ErrorKind::Storage, "committing a batch").with_source(io);
        assert_eq!(
            herald_core::cause_chain(&storage),
            "committing a batch: no space left on device"
        );
        // A layer that already printed its source is not followed by it again.
        let io = std::io::Error::other("no space left on device");
        let repeated = Error::new(ErrorKind::Storage, "commit failed: no space left on device").with_source(io);
        assert_eq!(
            herald_core::cause_chain(&repeated),
            "commit failed: no space left on device"
        );
    }
}
