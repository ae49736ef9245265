//! One long-lived pull per consumer in this process, shared by its members.
//!
//! A fetch that pays a pull request per call waits a round trip for every
//! batch, and one that asks for one message at a time (`next()`) pays it per
//! message. The feed keeps pull requests outstanding on one inbox instead,
//! sized to what the members have been asking for (at most twice the last
//! fetch's `max`, [`MAX_PREFETCH`] and `max_ack_pending`), so the next
//! messages are on their way while the current ones are handled.
//!
//! Prefetched messages wait in the feed, unseen by any member; JetStream
//! runs their ack timer from when it sent them. The feed hands them back
//! (a nak) once no member has asked for a while, so another process can
//! have them, and this process does not count that delivery as a Herald
//! delivery ([`Leases::handed_back_unseen`]).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use herald_core::{ConsumerName, Error, ErrorKind, Result, StreamName};
use serde::Serialize;

use crate::api;
use crate::leases::Leases;

/// The most messages a feed keeps requested ahead.
pub(crate) const MAX_PREFETCH: usize = 2000;
/// How long one pull request stays open on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(10);
/// A fetch holding this many keeps taking what streams in (see `Feed::fill`).
const BULK: usize = 32;
/// How long such a fetch waits for the next message before it returns.
const FILL_PAUSE: Duration = Duration::from_millis(1);
/// How often a waiting fetch checks that its pull requests survived a reconnect.
const RECHECK: Duration = Duration::from_secs(1);

/// What a fetch asks of the feed.
#[derive(Clone, Copy)]
pub(crate) struct Want {
    /// The most messages to take.
    pub(crate) max: usize,
    /// How many to keep requested ahead.
    pub(crate) prefetch: usize,
    /// How long after members stop asking the buffer goes back.
    pub(crate) idle: Duration,
}

/// A message that reached this process and no member yet.
pub(crate) struct Arrived {
    pub(crate) message: async_nats::Message,
    pub(crate) at: Instant,
}

/// The receiving side: the inbox and what is requested on it.
struct Receiver {
    inbox: Option<(String, async_nats::Subscriber)>,
    /// Messages requested and not yet received.
    credit: usize,
    /// When the newest pull request runs out.
    credit_until: Instant,
    /// The connection the requests were sent on (a reconnect drops them).
    connection: u64,
}

pub(crate) struct Feed {
    client: async_nats::Client,
    subject: String,
    /// "consumer `c` of `s`", for errors.
    names: String,
    leases: Arc<Mutex<Leases>>,
    receiver: tokio::sync::Mutex<Receiver>,
    buffer: Mutex<VecDeque<Arrived>>,
    last_asked: Mutex<Instant>,
    handback: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

#[derive(Serialize)]
struct PullRequest {
    batch: usize,
    expires: u64,
}

impl Drop for Feed {
    fn drop(&mut self) {
        if let Some(task) = self.handback.lock().unwrap_or_else(|e| e.into_inner()).take() {
            task.abort();
        }
    }
}

impl Feed {
    pub(crate) fn new(
        client: async_nats::Client,
        stream: &StreamName,
        consumer: &ConsumerName,
        leases: Arc<Mutex<Leases>>,
    ) -> Feed {
        let now = Instant::now();
        Feed {
            client,
            subject: format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
            names: format!("consumer `{consumer}` of `{stream}`"),
            leases,
            receiver: tokio::sync::Mutex::new(Receiver {
                inbox: None,
                credit: 0,
                credit_until: now,
                connection: 0,
            }),
            buffer: Mutex::new(VecDeque::new()),
            last_asked: Mutex::new(now),
            handback: Mutex::new(None),
        }
    }

    fn connection(&self) -> u64 {
        self.client.statistics().connects.load(Ordering::Relaxed)
    }

    /// Messages waiting in the feed for a member: seq and JetStream's delivery count.
    pub(crate) fn buffered(&self) -> Vec<(u64, u32)> {
        // What reached the inbox counts too (a fetch waiting on it drains it itself).
        if let Ok(mut receiver) = self.receiver.try_lock() {
            let _ = self.drain(&mut receiver);
        }
        let buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        buffer
            .iter()
            .filter_map(|a| a.message.reply.as_deref().and_then(crate::consumers::ack_info))
            .map(|ack| (ack.stream_seq, ack.deliveries))
            .collect()
    }

    /// Up to `max` arrived messages, waiting until `deadline` for the first;
    /// `prefetch` is how many to keep requested ahead.
    pub(crate) async fn take(
        self: &Arc<Self>,
        backend: &crate::NatsBackend,
        names: (&StreamName, &ConsumerName),
        want: Want,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Arrived>> {
        let Want { max, prefetch, idle } = want;
        *self.last_asked.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.watch_idle(idle);
        let Ok(mut receiver) = tokio::time::timeout_at(deadline, self.receiver.lock()).await else {
            return Ok(Vec::new());
        };
        let mut waited = false;
        loop {
            self.drain(&mut receiver)?;
            let mut taken = self.pop(max);
            if waited && !taken.is_empty() && taken.len() < max {
                // The first came while this fetch waited; the rest of what
                // the server has now is on its way: one no-wait pull, answered
                // after it, says when all of it is here.
                taken.extend(self.pull_rest(&mut receiver, backend, names, max - taken.len()).await?);
            }
            self.fill(&mut receiver, &mut taken, max).await?;
            self.top_up(&mut receiver, prefetch, max.saturating_sub(taken.len()))
                .await?;
            if !taken.is_empty() || tokio::time::Instant::now() >= deadline {
                *self.last_asked.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
                return Ok(taken);
            }
            let slice = deadline.min(tokio::time::Instant::now() + RECHECK);
            let Some((_, inbox)) = receiver.inbox.as_mut() else {
                return Ok(Vec::new());
            };
            match tokio::time::timeout_at(slice, inbox.next()).await {
                Ok(Some(message)) => {
                    waited = true;
                    self.receive(&mut receiver, message)?;
                }
                Ok(None) => return Err(Error::new(ErrorKind::Closed, "the NATS connection closed")),
                Err(_) => {}
            }
        }
    }

    /// While messages stream in (a catch-up), takes them until `max`: the
    /// connection hands them over a socket read at a time, a fraction of a
    /// big fetch. Only a fetch that already has [`BULK`] does so, and only
    /// while the next comes within [`FILL_PAUSE`], so a trickle is not held.
    async fn fill(&self, receiver: &mut Receiver, taken: &mut Vec<Arrived>, max: usize) -> Result<()> {
        while taken.len() >= BULK && taken.len() < max && receiver.credit > 0 {
            let Some((_, inbox)) = receiver.inbox.as_mut() else {
                return Ok(());
            };
            match tokio::time::timeout(FILL_PAUSE, inbox.next()).await {
                Ok(Some(message)) => self.receive(receiver, message)?,
                Ok(None) => return Err(Error::new(ErrorKind::Closed, "the NATS connection closed")),
                Err(_) => return Ok(()),
            }
            self.drain(receiver)?;
            taken.extend(self.pop(max - taken.len()));
        }
        Ok(())
    }

    /// Up to `max` more that the server has now: a no-wait pull of its own,
    /// and what reached the feed ahead of its answer. The feed's requests
    /// are served first on the server, so what they were sent is older and
    /// on the connection ahead of that answer: it is taken first, and what
    /// the no-wait pull got waits behind it, so members get messages in
    /// order.
    async fn pull_rest(
        &self,
        receiver: &mut Receiver,
        backend: &crate::NatsBackend,
        names: (&StreamName, &ConsumerName),
        max: usize,
    ) -> Result<Vec<Arrived>> {
        let at = Instant::now();
        let (stream, consumer) = names;
        let pulled = backend.pull_now(stream, consumer, max).await?;
        self.drain(receiver)?;
        self.buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(pulled.into_iter().map(|message| Arrived { message, at }));
        Ok(self.pop(max))
    }

    /// Up to `max` messages available now, without waiting for more: what
    /// has arrived, else one no-wait pull (answered at once by the server).
    /// Empty while another member waits on the feed: what comes goes to it.
    pub(crate) async fn take_now(
        self: &Arc<Self>,
        backend: &crate::NatsBackend,
        names: (&StreamName, &ConsumerName),
        max: usize,
        idle: Duration,
    ) -> Result<Vec<Arrived>> {
        *self.last_asked.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.watch_idle(idle);
        let Ok(mut receiver) = self.receiver.try_lock() else {
            return Ok(Vec::new());
        };
        self.drain(&mut receiver)?;
        let mut taken = self.pop(max);
        if taken.is_empty() {
            taken = self.pull_rest(&mut receiver, backend, names, max).await?;
        }
        *self.last_asked.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(taken)
    }

    fn pop(&self, max: usize) -> Vec<Arrived> {
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let n = max.min(buffer.len());
        buffer.drain(..n).collect()
    }

    /// Moves what has arrived into the buffer.
    fn drain(&self, receiver: &mut Receiver) -> Result<()> {
        loop {
            let Some((_, inbox)) = receiver.inbox.as_mut() else {
                return Ok(());
            };
            match inbox.next().now_or_never() {
                Some(Some(message)) => self.receive(receiver, message)?,
                Some(None) => return Err(Error::new(ErrorKind::Closed, "the NATS connection closed")),
                None => return Ok(()),
            }
        }
    }

    /// One message on the inbox: a stored message, or the server's word on a
    /// pull request.
    fn receive(&self, receiver: &mut Receiver, message: async_nats::Message) -> Result<()> {
        match message.status.map(|s| s.as_u16()) {
            None => {
                receiver.credit = receiver.credit.saturating_sub(1);
                self.buffer
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push_back(Arrived {
                        message,
                        at: Instant::now(),
                    });
            }
            // A heartbeat.
            Some(100) => {}
            // A request ran out or was ended: what it still had left is gone.
            Some(404 | 408 | 409) => {
                let why = message.description.clone().unwrap_or_default();
                if why.to_ascii_lowercase().contains("deleted") {
                    return Err(Error::new(
                        ErrorKind::ConsumerNotFound,
                        format!("{} was deleted", self.names),
                    ));
                }
                let left = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get("Nats-Pending-Messages"))
                    .and_then(|v| v.as_str().parse::<usize>().ok());
                receiver.credit = match left {
                    Some(left) => receiver.credit.saturating_sub(left),
                    None => 0,
                };
            }
            // Nobody took the request: the consumer (or its leader) is not there.
            Some(503) => {
                receiver.credit = 0;
                return Err(Error::new(
                    ErrorKind::Timeout,
                    format!("no answer to a fetch from {}", self.names),
                ));
            }
            Some(other) => {
                receiver.credit = 0;
                return Err(Error::new(
                    ErrorKind::Storage,
                    format!(
                        "fetching from {}: JetStream answered status {other} {}",
                        self.names,
                        message.description.as_deref().unwrap_or("")
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Requests more when what is requested and buffered falls below half of
    /// `prefetch` (or below what the current fetch still wants).
    async fn top_up(&self, receiver: &mut Receiver, prefetch: usize, wanted: usize) -> Result<()> {
        let now = Instant::now();
        let connection = self.connection();
        if receiver.connection != connection || now >= receiver.credit_until {
            // The server dropped the requests with the old connection, or they ran out.
            receiver.credit = 0;
        }
        if receiver.inbox.is_none() {
            let inbox = self.client.new_inbox();
            let subscriber = self
                .client
                .subscribe(inbox.clone())
                .await
                .map_err(|e| api::closed("subscribing for fetches", e))?;
            receiver.inbox = Some((inbox, subscriber));
        }
        let buffered = self.buffer.lock().unwrap_or_else(|e| e.into_inner()).len();
        let have = receiver.credit + buffered;
        let low = have * 2 <= prefetch || have < wanted;
        if !low || have >= prefetch.max(wanted) {
            return Ok(());
        }
        let batch = prefetch.max(wanted) - have;
        let request = PullRequest {
            batch,
            expires: api::nanos(PULL_EXPIRES),
        };
        let body = serde_json::to_vec(&request).map_err(|e| api::bad_answer("a pull request", e))?;
        let Some((inbox, _)) = receiver.inbox.as_ref() else {
            return Ok(());
        };
        self.client
            .publish_with_reply(self.subject.clone(), inbox.clone(), body.into())
            .await
            .map_err(|e| api::closed("sending a pull request", e))?;
        receiver.credit += batch;
        receiver.credit_until = now + PULL_EXPIRES;
        receiver.connection = connection;
        Ok(())
    }

    /// Starts the watch that hands the buffer back once members stop asking.
    fn watch_idle(self: &Arc<Self>, idle: Duration) {
        let mut handback = self.handback.lock().unwrap_or_else(|e| e.into_inner());
        if handback.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        *handback = Some(runtime.spawn(hand_back_when_idle(Arc::downgrade(self), idle)));
    }

    /// When no member asked for `idle`: naks everything buffered (the
    /// deliveries no member saw are noted as such) and tells until when
    /// requests still outstanding may bring more. `None` when a member asked
    /// meanwhile.
    async fn hand_back_if_idle(&self, idle: Duration) -> Option<Instant> {
        let mut receiver = self.receiver.lock().await;
        let asked = *self.last_asked.lock().unwrap_or_else(|e| e.into_inner());
        if asked + idle > Instant::now() {
            return None;
        }
        self.hand_back_buffered(&mut receiver).await;
        let live = receiver.connection == self.connection() && receiver.credit > 0;
        Some(if live { receiver.credit_until } else { Instant::now() })
    }

    /// Naks everything that arrived and no member took (the consumer's
    /// settings changed: it is looked at again under them).
    /// Returns how many went back.
    pub(crate) async fn hand_back(&self) -> usize {
        let mut receiver = self.receiver.lock().await;
        self.hand_back_buffered(&mut receiver).await
    }

    async fn hand_back_buffered(&self, receiver: &mut Receiver) -> usize {
        let _ = self.drain(receiver);
        let arrived: Vec<Arrived> = self
            .buffer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
            .collect();
        let handed = arrived.len();
        for a in arrived {
            let Some(reply) = a.message.reply else {
                continue;
            };
            if let Some(seq) = crate::consumers::stream_seq(&reply) {
                self.leases
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .handed_back_unseen(seq);
            }
            if let Err(err) = self.client.publish(reply, "-NAK".into()).await {
                tracing::debug!(%err, "could not hand a prefetched message back; it comes back after its ack wait");
            }
        }
        handed
    }

    /// Forgets what is buffered without handing it back, and the requests
    /// still open, before the consumer is reset (those deliveries will no
    /// longer count).
    /// Dropping the inbox ends its pull requests on the server (it keeps no
    /// request whose reply subject lost interest), so nothing sent after the
    /// reset that follows can land here and be thrown away.
    pub(crate) async fn forget(&self) {
        let mut receiver = self.receiver.lock().await;
        receiver.inbox = None;
        receiver.credit = 0;
        self.buffer.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// Waits for members to stop asking, hands the buffer back, and again for
/// what requests still open bring after that; ends when nothing more can come.
async fn hand_back_when_idle(feed: Weak<Feed>, idle: Duration) {
    loop {
        let asked = match feed.upgrade() {
            Some(feed) => *feed.last_asked.lock().unwrap_or_else(|e| e.into_inner()),
            None => return,
        };
        let due = asked + idle;
        let now = Instant::now();
        if due > now {
            tokio::time::sleep(due - now).await;
            continue;
        }
        let Some(strong) = feed.upgrade() else {
            return;
        };
        match strong.hand_back_if_idle(idle).await {
            // A member asked meanwhile: wait again.
            None => continue,
            Some(more_until) if more_until > Instant::now() => {
                drop(strong);
                tokio::time::sleep_until(tokio::time::Instant::from_std(more_until)).await;
            }
            Some(_) => return,
        }
    }
}
