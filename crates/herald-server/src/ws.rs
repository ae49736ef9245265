//! `/v1/ws`: one WebSocket connection carries requests answered in any order,
//! many live subscriptions and many responders (docs/protocol.md).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, close_code};
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};
use herald_core::wire::{ClientFrame, Op, PROTOCOL_VERSION, ServerFrame, WireDelivery, WireMessage, WireReply};
use herald_core::{Backend, Error, ErrorKind, Request, Result, Settle};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinHandle;

use crate::auth::{Action, Caller};
use crate::{AppState, lock};

pub(crate) async fn upgrade(
    State(state): State<AppState>,
    caller: Caller,
    ws: std::result::Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let Ok(ws) = ws else {
        let error = Error::new(
            ErrorKind::InvalidRequest,
            "/v1/ws speaks WebSocket: connect with a WebSocket client (an HTTP upgrade, version 13)",
        );
        return crate::with_status(StatusCode::UPGRADE_REQUIRED, &error);
    };
    let Ok(permit) = state.connections.clone().try_acquire_owned() else {
        let reason = format!(
            "too many connections: this server takes {} at most",
            state.limits.max_connections
        );
        return crate::with_status(StatusCode::SERVICE_UNAVAILABLE, &Error::new(ErrorKind::Closed, reason));
    };
    let place = match state.token_places.take(&caller) {
        Ok(place) => place,
        Err(error) => return crate::with_status(StatusCode::TOO_MANY_REQUESTS, &error),
    };
    // Room for the largest payload as base64 (or escaped text) inside a JSON
    // frame; anything bigger is refused by closing the connection.
    ws.max_message_size(state.limits.max_body())
        .max_frame_size(state.limits.max_body())
        .on_upgrade(move |socket| async move {
            // The token's place is held for the session's life.
            let _place = place;
            connection(state, caller, socket, permit).await;
        })
}

/// How long a session closed for being slow waits for the client's close.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

const SLOW_CONSUMER: &str =
    "slow consumer: the connection's outbound queue is full; reconnect and resume from your last seq";

/// The connection's outbound queue, bounded in frames and in bytes: a frame
/// waits for room before it is queued, so a slow reader never holds more
/// than `outbound_buffer` frames and `outbound_bytes` bytes of the server's
/// memory. Room is given back once the writer has sent the frame.
#[derive(Clone)]
struct Outbound {
    frames: mpsc::Sender<Queued>,
    bytes: Arc<Semaphore>,
    budget: u32,
}

/// A frame, encoded, holding its room in the queue.
struct Queued {
    text: String,
    _room: OwnedSemaphorePermit,
}

/// The writer is gone: the connection is closing.
struct Gone;

impl Outbound {
    fn new(limits: &crate::Limits) -> (Outbound, mpsc::Receiver<Queued>) {
        let (frames, queue) = mpsc::channel(limits.outbound_buffer);
        let budget = u32::try_from(limits.outbound_bytes).unwrap_or(u32::MAX);
        let bytes = Arc::new(Semaphore::new(budget as usize));
        (Outbound { frames, bytes, budget }, queue)
    }

    /// Queues `frame`, waiting for room.
    async fn send(&self, frame: &ServerFrame) -> std::result::Result<(), Gone> {
        let text = match serde_json::to_string(frame) {
            Ok(text) => text,
            Err(err) => {
                tracing::error!(%err, "a frame could not be encoded; dropped");
                return Ok(());
            }
        };
        // A frame bigger than the whole budget waits for an empty queue.
        let weight = u32::try_from(text.len()).unwrap_or(u32::MAX).clamp(1, self.budget);
        let room = self.bytes.clone().acquire_many_owned(weight).await.map_err(|_| Gone)?;
        self.frames.send(Queued { text, _room: room }).await.map_err(|_| Gone)
    }
}

/// What one connection holds open.
struct Session {
    /// Who is on the other end, and what they may do.
    caller: Caller,
    metrics: Arc<crate::metrics::Metrics>,
    /// Set when a subscriber lets the outbound queue fill.
    kick: watch::Sender<bool>,
    limits: Arc<crate::Limits>,
    subscriptions: Mutex<HashMap<u64, JoinHandle<()>>>,
    responders: Mutex<HashMap<u64, JoinHandle<()>>>,
    requests: Mutex<HashMap<u64, Request>>,
    next_request: AtomicU64,
    /// Deliveries fetched and not settled: given back when the session ends.
    held: crate::release::Held,
    /// Turns true when the session ends, for whatever reason: waiting
    /// fetches stop waiting.
    closing: watch::Receiver<bool>,
}

impl Session {
    /// A session with nothing open yet.
    fn new(
        caller: Caller,
        metrics: Arc<crate::metrics::Metrics>,
        kick: watch::Sender<bool>,
        limits: Arc<crate::Limits>,
        closing: watch::Receiver<bool>,
    ) -> Session {
        Session {
            caller,
            metrics,
            kick,
            limits,
            subscriptions: Mutex::default(),
            responders: Mutex::default(),
            requests: Mutex::default(),
            next_request: AtomicU64::new(0),
            held: crate::release::Held::default(),
            closing,
        }
    }

    /// Refuses a subscription or responder over the connection's limit.
    fn check_room(&self) -> Result<()> {
        let open = lock(&self.subscriptions).len() + lock(&self.responders).len();
        if open >= self.limits.max_subscriptions {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "a connection may hold at most {} subscriptions and responders",
                    self.limits.max_subscriptions
                ),
            ));
        }
        Ok(())
    }

    /// Ends every subscription and responder, and waits until they are gone.
    async fn stop_all(&self) {
        let mut tasks: Vec<JoinHandle<()>> = Vec::new();
        tasks.extend(lock(&self.subscriptions).drain().map(|(_, t)| t));
        tasks.extend(lock(&self.responders).drain().map(|(_, t)| t));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        lock(&self.requests).clear();
    }
}

async fn connection(state: AppState, caller: Caller, socket: WebSocket, _permit: tokio::sync::OwnedSemaphorePermit) {
    let _alive = state.alive.clone();
    let _counted = state.metrics.connected();
    tracing::debug!(token = caller.name(), peer = %caller.peer(), "WebSocket session opened");
    let mut operations = tokio::task::JoinSet::new();
    let (mut sink, mut stream) = socket.split();
    let (out, mut outbound) = Outbound::new(&state.limits);
    let in_flight = Arc::new(Semaphore::new(state.limits.max_in_flight));
    let (kick, kicked) = watch::channel(false);
    let mut writer_kicked = kicked.clone();
    // The close frame the writer ends with, when the session says why it closes.
    let last_word: Arc<Mutex<Option<CloseFrame>>> = Arc::default();
    let writer_last_word = last_word.clone();
    let writer = tokio::spawn(async move {
        loop {
            let frame = tokio::select! {
                // The kick first: once a subscriber is too slow, nothing more is queued to it.
                biased;
                kicked = async { writer_kicked.wait_for(|k| *k).await.is_ok() } => {
                    if !kicked {
                        continue;
                    }
                    // What is queued goes out first (it is in order and bounded).
                    while let Ok(queued) = outbound.try_recv() {
                        if sink.send(WsMessage::Text(queued.text.into())).await.is_err() {
                            return;
                        }
                    }
                    // The reason, as a frame and in the close.
                    let error = Error::new(ErrorKind::Closed, SLOW_CONSUMER);
                    if let Ok(text) = serde_json::to_string(&error_frame(None, &error)) {
                        let _ = sink.send(WsMessage::Text(text.into())).await;
                    }
                    let close = CloseFrame { code: close_code::POLICY, reason: SLOW_CONSUMER.into() };
                    let _ = sink.send(WsMessage::Close(Some(close))).await;
                    return;
                }
                frame = outbound.recv() => frame,
            };
            let Some(queued) = frame else {
                break;
            };
            // Its room in the queue is given back once it is sent.
            if sink.send(WsMessage::Text(queued.text.into())).await.is_err() {
                break;
            }
        }
        let last_word = lock(&writer_last_word).take();
        match last_word {
            Some(close) => {
                let _ = sink.send(WsMessage::Close(Some(close))).await;
            }
            None => {
                let _ = sink.close().await;
            }
        }
    });
    let hello = ServerFrame::Hello {
        version: PROTOCOL_VERSION,
        server: format!("herald-server {}", env!("CARGO_PKG_VERSION")),
    };
    let (ending, closing) = watch::channel(false);
    let session = Arc::new(Session::new(
        caller,
        state.metrics.clone(),
        kick,
        state.limits.clone(),
        closing,
    ));
    let mut stopping = state.stopping.clone();
    let mut kicked = kicked;
    let mut closing = false;
    let mut too_large = None;
    if out.send(&hello).await.is_ok() {
        loop {
            if closing {
                // The writer sent the reason and a close: wait (briefly) for the
                // client's close, so the reason is read before the socket goes.
                match tokio::time::timeout(CLOSE_GRACE, stream.next()).await {
                    Ok(Some(Ok(WsMessage::Close(_)) | Err(_)) | None) | Err(_) => break,
                    Ok(Some(Ok(_))) => continue,
                }
            }
            let next = tokio::select! {
                next = stream.next() => next,
                // The server is stopping: end the session (its started operations finish).
                // (A router without a stop signal never matches this branch.)
                Ok(_) = stopping.wait_for(|stop| *stop) => break,
                // A subscriber too slow for its queue: the writer says why and closes.
                Ok(_) = kicked.wait_for(|k| *k) => {
                    session.metrics.slow_consumer();
                    tracing::warn!(
                        token = session.caller.name(),
                        peer = %session.caller.peer(),
                        outbound_buffer = session.limits.outbound_buffer,
                        outbound_bytes = session.limits.outbound_bytes,
                        timeout_ms = u64::try_from(session.limits.slow_consumer_timeout.as_millis()).unwrap_or(u64::MAX),
                        "slow consumer disconnected: its outbound queue stayed full",
                    );
                    closing = true;
                    continue;
                }
            };
            let message = match next {
                Some(Ok(message)) => message,
                // A frame over the limit cannot be read past: the session
                // answers what it started, says why, and closes with 1009.
                Some(Err(err)) => {
                    too_large = oversize(err, state.limits.max_body());
                    break;
                }
                None => break,
            };
            let text = match message {
                WsMessage::Text(text) => text,
                WsMessage::Close(_) => break,
                // Pings are answered by axum; binary frames are not part of the protocol.
                WsMessage::Binary(_) => {
                    let error = Error::new(ErrorKind::InvalidRequest, "frames are JSON text, not binary");
                    let _ = out.send(&error_frame(None, &error)).await;
                    continue;
                }
                _ => continue,
            };
            match ClientFrame::parse(text.as_str()) {
                // Replies and ends of subscriptions never wait on the bus: done in
                // line, taking no place in flight, so a reply is never stuck
                // behind the requests that wait for it.
                Ok(frame)
                    if matches!(
                        frame.op,
                        Op::Respond { .. } | Op::Unsubscribe { .. } | Op::Unserve { .. }
                    ) =>
                {
                    answer(&state.backend, &session, &out, frame).await;
                }
                Ok(frame) => {
                    // At most `max_in_flight` operations at once: past that, the
                    // next frame is read once one is answered.
                    let permit = tokio::select! {
                        permit = in_flight.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                        Ok(_) = stopping.wait_for(|stop| *stop) => break,
                    };
                    let (backend, out, session) = (state.backend.clone(), out.clone(), session.clone());
                    while operations.try_join_next().is_some() {}
                    operations.spawn(async move {
                        answer(&backend, &session, &out, frame).await;
                        drop(permit);
                    });
                }
                // A malformed frame changes nothing; it is answered (by its id
                // when it has one), and the connection stays usable.
                Err((id, error)) => {
                    let _ = out.send(&error_frame(id, &error)).await;
                }
            }
        }
    }
    // Whoever ended it (the client, the server stopping, a slow reader),
    // nothing waits on a session that is over: waiting fetches end now.
    let _ = ending.send(true);
    session.stop_all().await;
    // Operations already started finish and are answered if the socket still takes it.
    while operations.join_next().await.is_some() {}
    if let Some(error) = too_large {
        let _ = out.send(&error_frame(None, &error)).await;
        *lock(&last_word) = Some(CloseFrame {
            code: close_code::SIZE,
            reason: "frame too large".into(),
        });
    }
    // What the client held and did not settle goes back to its consumers.
    session.held.release(&*state.backend).await;
    tracing::debug!(token = session.caller.name(), peer = %session.caller.peer(), "WebSocket session closed");
    drop(out);
    let _ = writer.await;
}

/// Runs `frames` in order as a session of a server without tokens would,
/// without a socket: the fuzzers' way through [`answer`]. Answers and
/// subscription messages are encoded and dropped; subscriptions and
/// responders get a few turns to run, then the session ends as one whose
/// client left.
pub(crate) async fn run_detached(backend: Arc<dyn Backend>, frames: Vec<ClientFrame>) {
    let limits = Arc::new(crate::Limits::default());
    let (out, mut queue) = Outbound::new(&limits);
    let drain = tokio::spawn(async move { while queue.recv().await.is_some() {} });
    let (kick, _) = watch::channel(false);
    let (ending, closing) = watch::channel(false);
    let session = Arc::new(Session::new(Caller::anonymous(), Arc::default(), kick, limits, closing));
    for frame in frames {
        answer(&backend, &session, &out, frame).await;
    }
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
    let _ = ending.send(true);
    session.stop_all().await;
    session.held.release(&*backend).await;
    drop(out);
    let _ = drain.await;
}

/// The error to answer a frame over the size limit with, if that is what
/// ended the read (any other read error is a connection gone).
fn oversize(err: axum::Error, limit: usize) -> Option<Error> {
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::error::CapacityError;
    let inner = err.into_inner();
    let size = match inner.downcast_ref::<WsError>()? {
        WsError::Capacity(CapacityError::MessageTooLong { size, .. }) => *size as u64,
        _ => return None,
    };
    let error = Error::new(
        ErrorKind::PayloadTooLarge,
        format!(
            "a frame of {size} bytes is over this server's limit of {limit} bytes (its largest payload and \
             room for the JSON around it); the connection closes"
        ),
    );
    Some(error.with_detail(herald_core::ErrorDetail::TooLarge {
        size,
        limit: limit as u64,
    }))
}

/// Asks the caller's token whether `op` is allowed (the checks themselves are in [`Caller::check`]).
async fn authorize(backend: &Arc<dyn Backend>, session: &Session, op: &Op) -> Result<()> {
    let caller = &session.caller;
    let action = match op {
        Op::CreateStream { .. }
        | Op::UpdateStream { .. }
        | Op::DeleteStream { .. }
        | Op::PurgeStream { .. }
        | Op::CreateConsumer { .. }
        | Op::UpdateConsumer { .. }
        | Op::DeleteConsumer { .. }
        | Op::ResetConsumer { .. } => Action::Admin,
        Op::StreamInfo { .. } | Op::ListStreams {} | Op::ConsumerInfo { .. } | Op::ListConsumers { .. } => {
            Action::Inspect
        }
        Op::Publish { message } => Action::Publish(&message.subject),
        Op::PublishBatch { messages } => {
            for message in messages {
                caller.check(backend, Action::Publish(&message.subject)).await?;
            }
            return Ok(());
        }
        Op::Request { subject, .. } => Action::Publish(subject),
        Op::GetMessage { stream, .. } | Op::ReadRange { stream, .. } => Action::Replay { stream, subject: None },
        Op::LastMessage { stream, subject } | Op::ReadSubject { stream, subject, .. } => Action::Replay {
            stream,
            subject: Some(subject),
        },
        Op::Fetch { stream, consumer, .. } => Action::Consume { stream, consumer },
        Op::Settle { stream, consumer, .. } | Op::SettleBatch { stream, consumer, .. } => {
            Action::Settle { stream, consumer }
        }
        Op::Subscribe { pattern, .. } => Action::Subscribe(pattern),
        Op::Serve { pattern, .. } => Action::Serve(pattern),
        // About this session's own subscriptions and requests.
        Op::Unsubscribe { .. } | Op::Unserve { .. } | Op::Respond { .. } => return Ok(()),
    };
    caller.check(backend, action).await
}

pub(crate) fn error_frame(id: Option<u64>, error: &Error) -> ServerFrame {
    ServerFrame::Error {
        id,
        error: crate::wire_error(error),
    }
}

fn json(value: impl Serialize) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| Error::new(ErrorKind::Internal, format!("encoding a result: {e}")))
}

/// Runs one operation and queues its answer.
async fn answer(backend: &Arc<dyn Backend>, session: &Arc<Session>, out: &Outbound, frame: ClientFrame) {
    let id = frame.id;
    let answer = match execute(backend, session, out, frame.op).await {
        Ok(result) => ServerFrame::Ok { id, result },
        Err(err) => error_frame(Some(id), &err),
    };
    let _ = out.send(&answer).await;
}

/// Runs one operation against the backend.
async fn execute(
    backend: &Arc<dyn Backend>,
    session: &Arc<Session>,
    out: &Outbound,
    op: Op,
) -> Result<serde_json::Value> {
    authorize(backend, session, &op).await?;
    match op {
        Op::CreateStream { config } => json(backend.create_stream(config).await?),
        Op::UpdateStream { config } => json(backend.update_stream(config).await?),
        Op::StreamInfo { stream } => json(backend.stream_info(&stream).await?),
        Op::ListStreams {} => json(backend.list_streams().await?),
        Op::DeleteStream { stream } => json(backend.delete_stream(&stream).await?),
        Op::PurgeStream { stream, purge } => json(backend.purge_stream(&stream, purge).await?),
        Op::Publish { message } => {
            let message = message.into_message()?;
            json(crate::payload::publish(backend, &session.limits, &session.metrics, message).await?)
        }
        Op::PublishBatch { messages } => {
            let messages = messages
                .into_iter()
                .map(|m| m.into_message())
                .collect::<Result<Vec<_>>>()?;
            json(crate::payload::publish_batch(backend, &session.limits, &session.metrics, messages).await?)
        }
        Op::GetMessage { stream, seq } => json(WireMessage::from(&backend.get_message(&stream, seq).await?)),
        Op::LastMessage { stream, subject } => json(WireMessage::from(&backend.last_message(&stream, &subject).await?)),
        Op::ReadRange { stream, range } => {
            let messages = crate::page::read_range(&**backend, &stream, range, session.limits.max_payload).await?;
            json(messages.iter().map(WireMessage::from).collect::<Vec<_>>())
        }
        Op::ReadSubject {
            stream,
            subject,
            from_seq,
            limit,
        } => {
            let max_payload = session.limits.max_payload;
            let messages =
                crate::page::read_subject(&**backend, &stream, &subject, from_seq, limit, max_payload).await?;
            json(messages.iter().map(WireMessage::from).collect::<Vec<_>>())
        }
        Op::CreateConsumer { stream, config } => json(backend.create_consumer(&stream, config).await?),
        Op::UpdateConsumer { stream, config } => json(backend.update_consumer(&stream, config).await?),
        Op::DeleteConsumer { stream, consumer } => json(backend.delete_consumer(&stream, &consumer).await?),
        Op::ConsumerInfo { stream, consumer } => json(backend.consumer_info(&stream, &consumer).await?),
        Op::ListConsumers { stream } => json(backend.list_consumers(&stream).await?),
        Op::Fetch {
            stream,
            consumer,
            member,
            max,
            wait_ms,
        } => {
            let wait = crate::page::fetch_wait(wait_ms)?;
            let names = (&stream, &consumer, &member);
            let closing = session.closing.clone();
            let (deliveries, owed) =
                crate::page::fetch(backend, names, max, wait, session.limits.max_payload, closing).await?;
            session.held.fetched(&stream, &consumer, &deliveries);
            owed.paid();
            for delivery in &deliveries {
                session.metrics.delivered(&delivery.message);
            }
            json(deliveries.iter().map(WireDelivery::from).collect::<Vec<_>>())
        }
        Op::Settle {
            stream,
            consumer,
            member,
            seq,
            deliveries,
            settle,
        } => {
            let outcome = backend
                .settle(&stream, &consumer, &member, seq, deliveries, settle.clone())
                .await;
            session
                .held
                .settled((stream, consumer, member, seq), &settle, outcome.is_ok());
            json(outcome?)
        }
        Op::SettleBatch {
            stream,
            consumer,
            member,
            items,
        } => {
            let settles: Vec<(u64, Settle)> = items.iter().map(|i| (i.seq, i.settle.clone())).collect();
            let outcomes = crate::settle::batch(&**backend, &stream, &consumer, &member, items).await?;
            // Each item as its own settle would be: what was let go is no
            // longer this session's to give back.
            for ((seq, settle), outcome) in settles.into_iter().zip(&outcomes) {
                let lease = (stream.clone(), consumer.clone(), member.clone(), seq);
                session.held.settled(lease, &settle, outcome.is_none());
            }
            json(outcomes)
        }
        Op::ResetConsumer { stream, consumer, to } => json(backend.reset_consumer(&stream, &consumer, to).await?),
        Op::Subscribe {
            sub,
            pattern,
            from,
            resume,
        } => {
            session.check_room()?;
            // What the client saw before it reconnected is not sent again.
            let mut subscription = backend.subscribe_resuming(pattern, from, resume).await?;
            let out = out.clone();
            let kick = session.kick.clone();
            let patience = session.limits.slow_consumer_timeout;
            let watcher = session.clone();
            let task = tokio::spawn(async move {
                loop {
                    let frame = match subscription.next().await {
                        // Subjects the caller's token denies are skipped.
                        Ok(message) if !watcher.caller.sees(&message.subject) => continue,
                        Ok(message) => {
                            watcher.metrics.delivered(&message);
                            ServerFrame::Message {
                                sub,
                                message: WireMessage::from(&message),
                            }
                        }
                        Err(err) => {
                            let lagged = err.kind() == ErrorKind::Lagged;
                            let frame = ServerFrame::SubError {
                                sub,
                                error: crate::wire_error(&err),
                            };
                            if !lagged {
                                let _ = out.send(&frame).await;
                                return;
                            }
                            frame
                        }
                    };
                    match tokio::time::timeout(patience, out.send(&frame)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_)) => return,
                        // The queue stayed full: the reader is too slow for this stream.
                        Err(_) => {
                            let _ = kick.send(true);
                            return;
                        }
                    }
                }
            });
            if let Some(old) = lock(&session.subscriptions).insert(sub, task) {
                old.abort();
            }
            json(())
        }
        Op::Unsubscribe { sub } => {
            if let Some(task) = lock(&session.subscriptions).remove(&sub) {
                task.abort();
            }
            json(())
        }
        Op::Serve { responder, pattern } => {
            session.check_room()?;
            let mut incoming = backend.serve(pattern).await?;
            let (out, requests) = (out.clone(), session.clone());
            let task = tokio::spawn(async move {
                while let Ok(request) = incoming.next().await {
                    let number = requests.next_request.fetch_add(1, Ordering::Relaxed) + 1;
                    let frame = ServerFrame::Request {
                        responder,
                        request: number,
                        subject: request.subject.clone(),
                        headers: request.headers.clone(),
                        body: herald_core::wire::Body::of(&request.payload),
                    };
                    lock(&requests.requests).insert(number, request);
                    if out.send(&frame).await.is_err() {
                        return;
                    }
                }
            });
            if let Some(old) = lock(&session.responders).insert(responder, task) {
                old.abort();
            }
            json(())
        }
        Op::Unserve { responder } => {
            if let Some(task) = lock(&session.responders).remove(&responder) {
                task.abort();
            }
            json(())
        }
        Op::Respond { request, reply } => {
            let pending = lock(&session.requests).remove(&request);
            let Some(pending) = pending else {
                return Err(Error::new(
                    ErrorKind::Closed,
                    format!("request {request} is no longer waiting for a reply"),
                ));
            };
            match reply {
                Some(reply) => json(pending.respond(reply.into_reply()?)?),
                // Dropped unanswered: the requester is told at once.
                None => json(()),
            }
        }
        Op::Request {
            subject,
            headers,
            payload,
            payload_b64,
            timeout_ms,
        } => {
            let payload = herald_core::wire::Body::from_fields(payload, payload_b64)?.bytes()?;
            let reply = backend
                .request(subject, headers, payload, Duration::from_millis(timeout_ms))
                .await?;
            json(WireReply::from(&reply))
        }
    }
}
