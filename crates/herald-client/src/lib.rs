//! The Backend traits over a Herald server's WebSocket protocol
//! (docs/protocol.md), so a remote bus has the same facade as an embedded one.
//!
//! One connection carries every call: requests are numbered and answered in
//! any order, live subscriptions and responders are numbered by the client
//! and fed by the server's pushed frames.
//!
//! When the connection drops, the client reconnects with backoff (10 ms
//! doubling to 2 s), re-attaches every live subscription and responder, and
//! sends again the calls still waiting that are safe to repeat: publishes
//! carry a message id (the client gives one to a message without), so a
//! repeated publish is a duplicate, not a second message. A subscription
//! re-attaches from where it started, telling the server the last seq it saw
//! in each stream (the server sends only what follows, and the client drops
//! any repeat), so it skips nothing and repeats nothing. Calls wait up to
//! [`RECONNECT_WAIT`] (or [`ConnectOptions::reconnect_wait`]) for the server to
//! come back, then fail with `Closed`.
//!
//! ```no_run
//! # async fn run() -> herald_core::Result<()> {
//! let backend = herald_client::RemoteBackend::connect("ws://127.0.0.1:7878/v1/ws").await?;
//! # Ok(()) }
//! ```

mod backend;
mod connection;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_core::wire::{Body, ClientFrame, Op};
use herald_core::{Error, ErrorKind, Headers, Message, Pattern, ReadFrom, Result, StreamName, Subject, Timestamp};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};

/// Connections a call is sent on at most (a frame the server drops the
/// connection for is not sent forever).
const MAX_SENDS: u32 = 3;

/// Calls one client has in flight at most: the server's default
/// `max_in_flight`. More wait their turn in the client, so the server never
/// stops reading the connection for them, and answers to requests (which are
/// not calls) always get through.
pub const MAX_IN_FLIGHT: usize = 256;

/// How long a call waits for a lost connection to come back, unless
/// [`ConnectOptions::reconnect_wait`] says otherwise.
pub const RECONNECT_WAIT: Duration = Duration::from_secs(30);

/// The most payload bytes one subscription holds for its reader (beyond one
/// message, which is always taken): past it the subscription falls behind
/// (see [`Inner::to_subscription`]).
pub const SUBSCRIPTION_BUFFER_BYTES: usize = 8 << 20;
/// The most requests one responder holds unread; past it a request is
/// turned away at once (its requester is told nobody took it) rather than
/// queued without bound.
pub const RESPONDER_BUFFER: usize = 1024;
/// The most messages one subscription holds for its reader.
pub const SUBSCRIPTION_BUFFER_MESSAGES: usize = 4096;

/// A bus on a Herald server, through its WebSocket protocol.
#[derive(Clone)]
pub struct RemoteBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBackend")
            .field("url", &self.inner.options.url)
            .finish_non_exhaustive()
    }
}

/// A request a responder of this client received.
pub(crate) struct Incoming {
    pub(crate) request: u64,
    pub(crate) subject: Subject,
    pub(crate) headers: Headers,
    pub(crate) body: Body,
}

/// A call waiting for its answer.
struct Pending {
    frame: ClientFrame,
    /// Connections this call was sent on; one the server keeps dropping is
    /// given up after [`MAX_SENDS`].
    sends: u32,
    /// Sent again after a reconnect (otherwise failed with `Closed`).
    repeatable: bool,
    waiter: oneshot::Sender<Result<serde_json::Value>>,
}

/// A live subscription, as needed to re-attach it.
pub(crate) struct SubState {
    tx: mpsc::Sender<Result<Message>>,
    /// Payload bytes waiting in `tx` for the reader.
    queued: Arc<AtomicUsize>,
    pattern: Pattern,
    from: Option<ReadFrom>,
    started: Timestamp,
    /// The last seq handed to the reader's queue, per stream.
    last: HashMap<StreamName, u64>,
    /// The reader fell behind: the server was told to stop, and what comes
    /// meanwhile is dropped; the reader takes it up again from `last`.
    behind: bool,
}

/// Where a subscription that fell behind takes up again.
pub(crate) struct Behind {
    pub(crate) pattern: Pattern,
    pub(crate) from: Option<ReadFrom>,
    pub(crate) started: Timestamp,
    pub(crate) last: HashMap<StreamName, u64>,
}

struct RespState {
    tx: mpsc::Sender<Incoming>,
    pattern: Pattern,
}

/// Where and how to connect: the server's WebSocket URL and, when the server
/// requires one, an access token (sent as `Authorization: Bearer …`).
#[derive(Clone)]
pub struct ConnectOptions {
    url: String,
    token: Option<String>,
    /// Extra roots to trust for `wss://` (a PEM file), beside the system's.
    ca_file: Option<std::path::PathBuf>,
    /// Built once at connect for `wss://` URLs (and only for them).
    tls: Option<tokio_rustls::TlsConnector>,
    /// How long calls wait for a lost connection to come back.
    reconnect_wait: Duration,
}

impl std::fmt::Debug for ConnectOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token itself.
        f.debug_struct("ConnectOptions")
            .field("url", &self.url)
            .field("token", &self.token.as_ref().map(|_| "…"))
            .finish()
    }
}

impl ConnectOptions {
    /// The server's WebSocket endpoint (`ws://host:port/v1/ws`).
    pub fn new(url: impl Into<String>) -> ConnectOptions {
        ConnectOptions {
            url: url.into(),
            token: None,
            ca_file: None,
            tls: None,
            reconnect_wait: RECONNECT_WAIT,
        }
    }

    /// Trusts the certificates in this PEM file for `wss://` too (a private
    /// or self-signed CA), beside the system's roots.
    pub fn ca_file(mut self, path: impl Into<std::path::PathBuf>) -> ConnectOptions {
        self.ca_file = Some(path.into());
        self
    }

    /// The access token to present.
    pub fn token(mut self, token: impl Into<String>) -> ConnectOptions {
        self.token = Some(token.into());
        self
    }

    /// How long a call waits for a lost connection to come back before it
    /// fails with `Closed` (default [`RECONNECT_WAIT`]). The client goes on
    /// trying to reconnect after that; later calls wait for it again.
    pub fn reconnect_wait(mut self, wait: Duration) -> ConnectOptions {
        self.reconnect_wait = wait;
        self
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }
}

pub(crate) struct Inner {
    options: ConnectOptions,
    /// The current connection's outbound frames; `None` while reconnecting.
    out: Mutex<Option<mpsc::UnboundedSender<ClientFrame>>>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, Pending>>,
    subscriptions: Mutex<HashMap<u64, SubState>>,
    responders: Mutex<HashMap<u64, RespState>>,
    /// Turns for calls: [`MAX_IN_FLIGHT`] at once.
    in_flight: tokio::sync::Semaphore,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl RemoteBackend {
    /// Connects to the server's WebSocket endpoint (`ws://host:port/v1/ws`).
    ///
    /// # Errors
    ///
    /// `Closed` when the server cannot be reached or refuses the upgrade.
    pub async fn connect(url: impl Into<String>) -> Result<RemoteBackend> {
        RemoteBackend::connect_with(ConnectOptions::new(url)).await
    }

    /// Connects with `options` (an access token, say).
    ///
    /// # Errors
    ///
    /// `PermissionDenied` when the server refuses the token (or wants one),
    /// `Closed` when it cannot be reached or refuses the upgrade.
    pub async fn connect_with(mut options: ConnectOptions) -> Result<RemoteBackend> {
        options.tls = match options.url.split_once("://").map(|(scheme, _)| scheme) {
            Some("wss") => Some(connection::tls_connector(options.ca_file.as_deref())?),
            Some("ws") => None,
            _ => {
                return Err(Error::new(
                    ErrorKind::InvalidRequest,
                    format!("the server URL {} is not ws:// or wss://", options.url),
                ));
            }
        };
        let inner = Arc::new(Inner {
            options,
            out: Mutex::new(None),
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashMap::new()),
            responders: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
        });
        let socket = connection::open(&inner.options).await?;
        connection::attach(&inner, socket);
        Ok(RemoteBackend { inner })
    }

    /// Sends `op` and waits for its result.
    pub(crate) async fn call<T: DeserializeOwned>(&self, op: Op) -> Result<T> {
        let _turn = self.inner.in_flight.acquire().await.map_err(|_| closed())?;
        let repeatable = !matches!(op, Op::Request { .. } | Op::Respond { .. });
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let frame = ClientFrame { id, op };
        let (tx, rx) = oneshot::channel();
        {
            // The connection is held while the call is registered and sent, so a
            // reconnect's restore sends it exactly once (lock order: out, then pending).
            let out = lock(&self.inner.out);
            lock(&self.inner.pending).insert(
                id,
                Pending {
                    frame: frame.clone(),
                    sends: u32::from(out.is_some()),
                    repeatable,
                    waiter: tx,
                },
            );
            match out.as_ref() {
                Some(out) => {
                    let _ = out.send(frame);
                }
                // Disconnected: a call that cannot be repeated fails now; the rest
                // are sent by the reconnect.
                None if !repeatable => {
                    lock(&self.inner.pending).remove(&id);
                    return Err(closed());
                }
                None => {}
            }
        }
        let value = rx.await.map_err(|_| closed())??;
        serde_json::from_value(value).map_err(|e| {
            Error::new(
                ErrorKind::Internal,
                format!("an unreadable result from the server: {e}"),
            )
        })
    }

    /// Sends `op` without waiting for its answer (it is read and dropped).
    pub(crate) fn send(&self, op: Op) {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        self.inner.send(ClientFrame { id, op });
    }

    /// A number for a new subscription or responder.
    pub(crate) fn next_number(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register_subscription(
        &self,
        sub: u64,
        pattern: Pattern,
        from: Option<ReadFrom>,
        started: Timestamp,
        seen: HashMap<StreamName, u64>,
    ) -> (mpsc::Receiver<Result<Message>>, Arc<AtomicUsize>) {
        let (tx, rx) = mpsc::channel(SUBSCRIPTION_BUFFER_MESSAGES);
        let queued = Arc::new(AtomicUsize::new(0));
        let state = SubState {
            tx,
            queued: queued.clone(),
            pattern,
            from,
            started,
            last: seen,
            behind: false,
        };
        lock(&self.inner.subscriptions).insert(sub, state);
        (rx, queued)
    }

    /// A subscription whose reader fell behind and has read everything it
    /// held: forgotten here, with where to take it up again.
    pub(crate) fn take_behind(&self, sub: u64) -> Option<Behind> {
        let mut subscriptions = lock(&self.inner.subscriptions);
        if !subscriptions.get(&sub).is_some_and(|s| s.behind) {
            return None;
        }
        let state = subscriptions.remove(&sub)?;
        Some(Behind {
            pattern: state.pattern,
            from: state.from,
            started: state.started,
            last: state.last,
        })
    }

    /// Payload bytes this client holds for subscription readers.
    pub fn buffered_bytes(&self) -> usize {
        lock(&self.inner.subscriptions)
            .values()
            .map(|s| s.queued.load(Ordering::Relaxed))
            .sum()
    }

    pub(crate) fn forget_subscription(&self, sub: u64) {
        lock(&self.inner.subscriptions).remove(&sub);
    }

    pub(crate) fn register_responder(&self, responder: u64, pattern: Pattern) -> mpsc::Receiver<Incoming> {
        let (tx, rx) = mpsc::channel(RESPONDER_BUFFER);
        lock(&self.inner.responders).insert(responder, RespState { tx, pattern });
        rx
    }

    pub(crate) fn forget_responder(&self, responder: u64) {
        lock(&self.inner.responders).remove(&responder);
    }
}

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "the connection to the Herald server closed")
}

impl Inner {
    fn send(&self, frame: ClientFrame) {
        if let Some(out) = lock(&self.out).as_ref() {
            let _ = out.send(frame);
        }
    }

    fn answer(&self, id: u64, result: Result<serde_json::Value>) {
        let mut pending = lock(&self.pending);
        // A call the server ended unanswered because it is stopping (a
        // waiting fetch) goes again once reconnected, like one lost with the
        // connection; the server closes the session right after.
        if let Err(err) = &result
            && err.kind() == ErrorKind::Closed
            && pending.get(&id).is_some_and(|p| p.repeatable)
        {
            return;
        }
        if let Some(pending) = pending.remove(&id) {
            let _ = pending.waiter.send(result);
        }
    }

    /// Delivers a subscription's message unless it was delivered before a
    /// reconnect (or precedes a subscription that started "from now").
    ///
    /// The reader's queue is bounded ([`SUBSCRIPTION_BUFFER_MESSAGES`],
    /// [`SUBSCRIPTION_BUFFER_BYTES`]). A reader that lets it fill falls
    /// behind: the server is told to stop sending (the returned sub is to be
    /// unsubscribed), what still comes is dropped, and once the reader has
    /// read what it holds it subscribes again after the last seq it got, so
    /// it misses nothing and this client never holds more than the bound.
    fn to_subscription(&self, sub: u64, message: Result<Message>) -> Option<u64> {
        let mut subscriptions = lock(&self.subscriptions);
        let state = subscriptions.get_mut(&sub)?;
        if state.behind {
            return None;
        }
        let size = match &message {
            Ok(m) => {
                let last = state.last.get(&m.stream).copied().unwrap_or(0);
                if m.seq <= last || (state.from.is_none() && m.time < state.started) {
                    return None;
                }
                m.payload.len()
            }
            Err(_) => 0,
        };
        let queued = state.queued.load(Ordering::Relaxed);
        // One message is always taken, however big, so a reader that fell
        // behind always has something to read.
        let room = queued == 0 || queued + size <= SUBSCRIPTION_BUFFER_BYTES;
        let seq = message.as_ref().ok().map(|m| (m.stream.clone(), m.seq));
        let sent = room && state.tx.try_send(message).is_ok();
        if !sent {
            if state.tx.is_closed() {
                return None;
            }
            state.behind = true;
            return Some(sub);
        }
        state.queued.fetch_add(size, Ordering::Relaxed);
        if let Some((stream, seq)) = seq {
            state.last.insert(stream, seq);
        }
        None
    }

    /// The connection dropped: calls that cannot be repeated fail now; the rest
    /// wait for the reconnect.
    fn disconnected(&self) {
        *lock(&self.out) = None;
        let mut pending = lock(&self.pending);
        let lost: Vec<u64> = pending
            .iter()
            .filter(|(_, p)| !p.repeatable)
            .map(|(id, _)| *id)
            .collect();
        for id in lost {
            if let Some(p) = pending.remove(&id) {
                let _ = p.waiter.send(Err(closed()));
            }
        }
    }

    /// The server did not come back in time: every waiting call fails.
    fn give_up(&self) {
        for (_, p) in lock(&self.pending).drain() {
            let _ = p.waiter.send(Err(closed()));
        }
    }

    /// Frames that restore this client's state on a new connection: its
    /// subscriptions and responders, then the calls still waiting.
    fn restore(&self) -> Vec<ClientFrame> {
        let mut frames = Vec::new();
        // One that fell behind is taken up by its reader, not here.
        for (sub, state) in lock(&self.subscriptions).iter().filter(|(_, s)| !s.behind) {
            let from = Some(state.from.unwrap_or(ReadFrom::Time(state.started)));
            frames.push(ClientFrame {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                op: Op::Subscribe {
                    sub: *sub,
                    pattern: state.pattern.clone(),
                    from,
                    // The server skips what was delivered; this client still
                    // drops any repeat, so the promise holds either way.
                    resume: state.last.clone(),
                },
            });
        }
        for (responder, state) in lock(&self.responders).iter() {
            frames.push(ClientFrame {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                op: Op::Serve {
                    responder: *responder,
                    pattern: state.pattern.clone(),
                },
            });
        }
        let mut pending = lock(&self.pending);
        let worn: Vec<u64> = pending
            .iter()
            .filter(|(_, p)| p.sends >= MAX_SENDS)
            .map(|(id, _)| *id)
            .collect();
        for id in worn {
            if let Some(p) = pending.remove(&id) {
                let error = Error::new(
                    ErrorKind::Closed,
                    format!("the server closed the connection each of the {MAX_SENDS} times this call was sent"),
                );
                let _ = p.waiter.send(Err(error));
            }
        }
        let mut waiting: Vec<&mut Pending> = pending.values_mut().collect();
        waiting.sort_by_key(|p| p.frame.id);
        for p in waiting {
            p.sends += 1;
            frames.push(p.frame.clone());
        }
        frames
    }
}
