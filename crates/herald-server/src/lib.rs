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
pub use tls::TlsConfig;

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use herald::Bus;
use herald_core::Backend;
use tokio::sync::{mpsc, watch};

/// The server's limits. Defaults: 1 MiB payloads, 1,024 connections (no
/// limit per peer address or per token), 16 KiB for a request's head (its request line
/// and headers), 10 s for a request's headers, 60 s of silence
/// between requests, 1,024 subscriptions and responders per connection, 256
/// operations in flight per connection, 4,096 frames and 16 MiB queued per
/// connection, and 5 s for a subscriber to make room in a full queue.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// The largest payload a publish may carry, in bytes (streams may set lower).
    pub max_payload: usize,
    /// Connections open at once, HTTP and WebSocket together, at most: past
    /// it, [`Server::serve`] closes a new connection as it accepts it (and
    /// counts it in `/metrics`). A router nested in an app limits WebSocket
    /// sessions to this many (503 past it); the app's server owns its
    /// connections.
    pub max_connections: usize,
    /// Connections open at once from one peer address, at most; `None`: only
    /// `max_connections` applies. Behind a proxy every client shares its
    /// address, so set this only where clients connect directly.
    pub max_connections_per_peer: Option<std::num::NonZeroUsize>,
    /// WebSocket sessions and live tails (`/v1/tail`) open at once with one
    /// access token, at most; `None`: no limit per token. Past it the
    /// upgrade or the tail is answered 429 with the error object (1004), and
    /// the others of that token go on. Without access tokens it does not
    /// apply.
    pub max_connections_per_token: Option<std::num::NonZeroUsize>,
    /// How long a request's headers may take to arrive, from its first byte
    /// (or, for a new connection's first request, from the accept): a
    /// connection that sends half a request, or nothing, is closed after it.
    pub header_read_timeout: std::time::Duration,
    /// The largest request head [`Server::serve`] reads, in bytes: the
    /// request line and every header together (and at most 100 headers).
    /// A bigger one is answered 431 with the error object (1006) and its
    /// connection closed. A raw publish carries its message headers here, so
    /// larger message headers go in a JSON publish.
    pub max_header_bytes: usize,
    /// How long a connection may stay silent between requests before it is
    /// closed. A request in hand (a long poll, an SSE tail) is never idle,
    /// except while its body is still arriving: a body that stops arriving
    /// for this long closes the connection too. WebSocket sessions are not
    /// subject to it.
    pub idle_timeout: std::time::Duration,
    /// Live subscriptions plus responders per connection at most.
    pub max_subscriptions: usize,
    /// Operations one connection may have started and not yet answered;
    /// the server reads its next frame once one is answered.
    pub max_in_flight: usize,
    /// Frames queued for one connection's socket, so a slow reader never
    /// grows the server's memory.
    pub outbound_buffer: usize,
    /// Bytes of frames queued for one connection's socket, at most (a frame
    /// bigger than this waits for an empty queue).
    pub outbound_bytes: usize,
    /// A subscriber whose queue stays full this long is disconnected with a
    /// reason frame (the log is durable: it resumes from its seq).
    pub slow_consumer_timeout: std::time::Duration,
}

/// 16 KiB: room for a bearer token, cookies a browser adds and a raw
/// publish's message headers, far from what a client that sends 64 KiB of
/// headers could be up to.
const DEFAULT_MAX_HEADER_BYTES: usize = 16 * 1024;

/// 1 KiB: a request line and a token always fit.
const MIN_MAX_HEADER_BYTES: usize = 1024;

/// 256 KiB: under hyper's own read buffer (about 400 KiB), so that this
/// limit, not hyper's, is the one that refuses.
const MAX_MAX_HEADER_BYTES: usize = 256 * 1024;

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_payload: 1024 * 1024,
            max_connections: 1024,
            max_connections_per_peer: None,
            max_connections_per_token: None,
            header_read_timeout: std::time::Duration::from_secs(10),
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
            idle_timeout: std::time::Duration::from_secs(60),
            max_subscriptions: 1024,
            max_in_flight: 256,
            outbound_buffer: 4096,
            outbound_bytes: 16 * 1024 * 1024,
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

    /// Sets [`max_connections_per_peer`](Limits::max_connections_per_peer).
    pub fn max_connections_per_peer(mut self, n: Option<std::num::NonZeroUsize>) -> Self {
        self.max_connections_per_peer = n;
        self
    }

    /// Sets [`max_connections_per_token`](Limits::max_connections_per_token).
    pub fn max_connections_per_token(mut self, n: Option<std::num::NonZeroUsize>) -> Self {
        self.max_connections_per_token = n;
        self
    }

    /// Sets [`header_read_timeout`](Limits::header_read_timeout).
    pub fn header_read_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.header_read_timeout = timeout;
        self
    }

    /// Sets [`max_header_bytes`](Limits::max_header_bytes) (at least 1 KiB,
    /// at most 256 KiB: hyper reads no more than about 400 KiB whatever is
    /// set).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.max_header_bytes = bytes.clamp(MIN_MAX_HEADER_BYTES, MAX_MAX_HEADER_BYTES);
        self
    }

    /// Sets [`idle_timeout`](Limits::idle_timeout).
    pub fn idle_timeout(mut self, timeout: std::time::Duration) -> Self {
        self.idle_timeout = timeout;
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

    /// Sets [`outbound_bytes`](Limits::outbound_bytes) (at least 1, at most 4 GiB).
    pub fn outbound_bytes(mut self, bytes: usize) -> Self {
        self.outbound_bytes = bytes.clamp(1, u32::MAX as usize);
        self
    }

    /// Sets [`max_in_flight`](Limits::max_in_flight) (at least 1).
    pub fn max_in_flight(mut self, operations: usize) -> Self {
        self.max_in_flight = operations.max(1);
        self
    }
}

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

    /// Sets the limits.
    pub fn limits(mut self, limits: Limits) -> Server {
        self.limits = limits;
        self
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
