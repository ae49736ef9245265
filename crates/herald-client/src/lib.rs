//! The Backend traits over a Herald server's WebSocket protocol
//! (docs/protocol.md), so a remote bus has the same facade as an embedded one.
//!
//! One connection carries every call: requests are numbered and answered in
//! any order, live subscriptions and responders are numbered by the client
//! and fed by the server's pushed frames.
//!
//! ```no_run
//! # async fn run() -> herald_core::Result<()> {
//! let backend = herald_client::RemoteBackend::connect("ws://127.0.0.1:7878/v1/ws").await?;
//! # Ok(()) }
//! ```

mod backend;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{SinkExt, StreamExt};
use herald_core::wire::{Body, ClientFrame, Op, ServerFrame, WireMessage};
use herald_core::{Error, ErrorKind, Headers, Message, Result, Subject};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// A bus on a Herald server, through its WebSocket protocol.
#[derive(Clone)]
pub struct RemoteBackend {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RemoteBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteBackend")
            .field("url", &self.inner.url)
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

struct Inner {
    url: String,
    /// False once the connection is gone: calls fail at once.
    open: std::sync::atomic::AtomicBool,
    out: mpsc::UnboundedSender<ClientFrame>,
    next_id: AtomicU64,
    pending: Mutex<HashMap<u64, oneshot::Sender<Result<serde_json::Value>>>>,
    subscriptions: Mutex<HashMap<u64, mpsc::UnboundedSender<Result<Message>>>>,
    responders: Mutex<HashMap<u64, mpsc::UnboundedSender<Incoming>>>,
}

impl RemoteBackend {
    /// Connects to the server's WebSocket endpoint (`ws://host:port/v1/ws`).
    ///
    /// # Errors
    ///
    /// `Closed` when the server cannot be reached or refuses the upgrade.
    pub async fn connect(url: impl Into<String>) -> Result<RemoteBackend> {
        let url = url.into();
        let (socket, _) = tokio_tungstenite::connect_async(url.as_str())
            .await
            .map_err(|e| Error::new(ErrorKind::Closed, format!("connecting to {url}: {e}")).with_source(e))?;
        let (mut sink, mut stream) = socket.split();
        let (out, mut outbound) = mpsc::unbounded_channel::<ClientFrame>();
        let inner = Arc::new(Inner {
            url,
            open: std::sync::atomic::AtomicBool::new(true),
            out,
            next_id: AtomicU64::new(1),
            pending: Mutex::new(HashMap::new()),
            subscriptions: Mutex::new(HashMap::new()),
            responders: Mutex::new(HashMap::new()),
        });
        tokio::spawn(async move {
            while let Some(frame) = outbound.recv().await {
                let Ok(text) = serde_json::to_string(&frame) else {
                    continue;
                };
                if sink.send(WsMessage::Text(text.into())).await.is_err() {
                    break;
                }
            }
            let _ = sink.close().await;
        });
        let reader = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while let Some(Ok(message)) = stream.next().await {
                let WsMessage::Text(text) = message else {
                    continue;
                };
                let Some(inner) = reader.upgrade() else {
                    return;
                };
                match serde_json::from_str::<ServerFrame>(text.as_str()) {
                    Ok(frame) => inner.dispatch(frame),
                    Err(err) => tracing::warn!(%err, "an unreadable frame from the server"),
                }
            }
            if let Some(inner) = reader.upgrade() {
                inner.closed();
            }
        });
        Ok(RemoteBackend { inner })
    }

    /// Sends `op` and waits for its result.
    pub(crate) async fn call<T: DeserializeOwned>(&self, op: Op) -> Result<T> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        // Checked after registering: `closed` clears the flag before it fails the waiters.
        if !self.inner.open.load(Ordering::SeqCst) || self.inner.out.send(ClientFrame { id, op }).is_err() {
            self.inner.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            return Err(closed());
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
        let _ = self.inner.out.send(ClientFrame { id, op });
    }

    /// A number for a new subscription or responder.
    pub(crate) fn next_number(&self) -> u64 {
        self.inner.next_id.fetch_add(1, Ordering::Relaxed)
    }

    pub(crate) fn register_subscription(&self, sub: u64) -> mpsc::UnboundedReceiver<Result<Message>> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(sub, tx);
        rx
    }

    pub(crate) fn forget_subscription(&self, sub: u64) {
        self.inner
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&sub);
    }

    pub(crate) fn register_responder(&self, responder: u64) -> mpsc::UnboundedReceiver<Incoming> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.inner
            .responders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(responder, tx);
        rx
    }

    pub(crate) fn forget_responder(&self, responder: u64) {
        self.inner
            .responders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&responder);
    }
}

fn closed() -> Error {
    Error::new(ErrorKind::Closed, "the connection to the Herald server closed")
}

impl Inner {
    fn dispatch(&self, frame: ServerFrame) {
        match frame {
            ServerFrame::Hello { .. } => {}
            ServerFrame::Ok { id, result } => self.answer(id, Ok(result)),
            ServerFrame::Error { id: Some(id), error } => self.answer(id, Err(Error::from(error))),
            ServerFrame::Error { id: None, error } => {
                tracing::warn!(message = %error.message, "the server could not read a frame");
            }
            ServerFrame::Message { sub, message } => self.to_subscription(sub, decode(message)),
            ServerFrame::SubError { sub, error } => {
                let lagged = error.kind == ErrorKind::Lagged;
                self.to_subscription(sub, Err(Error::from(error)));
                if !lagged {
                    self.subscriptions
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&sub);
                }
            }
            ServerFrame::Request {
                responder,
                request,
                subject,
                headers,
                body,
            } => {
                let sender = self
                    .responders
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&responder)
                    .cloned();
                let incoming = Incoming {
                    request,
                    subject,
                    headers,
                    body,
                };
                if sender.is_none_or(|s| s.send(incoming).is_err()) {
                    // Nobody here serves it any more: let the requester know now.
                    let id = self.next_id.fetch_add(1, Ordering::Relaxed);
                    let _ = self.out.send(ClientFrame {
                        id,
                        op: Op::Respond { request, reply: None },
                    });
                }
            }
        }
    }

    fn answer(&self, id: u64, result: Result<serde_json::Value>) {
        if let Some(waiter) = self.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&id) {
            let _ = waiter.send(result);
        }
    }

    fn to_subscription(&self, sub: u64, item: Result<Message>) {
        let sender = self
            .subscriptions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&sub)
            .cloned();
        if let Some(sender) = sender {
            let _ = sender.send(item);
        }
    }

    /// The connection ended: every waiter and stream learns it.
    fn closed(&self) {
        self.open.store(false, Ordering::SeqCst);
        for (_, waiter) in self.pending.lock().unwrap_or_else(|e| e.into_inner()).drain() {
            let _ = waiter.send(Err(closed()));
        }
        self.subscriptions.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.responders.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

fn decode(message: WireMessage) -> Result<Message> {
    message.into_message()
}
