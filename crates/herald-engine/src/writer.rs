//! The writer thread: one owner of every write transaction.
//!
//! It blocks for the first request, drains whatever else is queued (up to a
//! bound) into the same redb transaction, commits once, and only then answers
//! each request and wakes readers: group commit. A failed commit fails every
//! request in it and acknowledges none. docs/semantics.md states the promises.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use herald_core::{
    ConsumerName, Error, ErrorKind, OutgoingMessage, PublishAck, Purge, Result, StreamConfig, StreamInfo, StreamName,
};
use redb::Durability;
use tokio::sync::oneshot;

use crate::clock::Clock;
use crate::consumers::{ConsumerRuntime, Registry};
use crate::dedup::DedupWindow;
use crate::encode::StreamMeta;
use crate::error::{EngineError, StoreResult};
use crate::notify::Notifier;
use crate::store::{StreamEntry, Tables};

/// 1,024 requests: enough to amortise one fsync over many publishers, small
/// enough that the first request in a batch does not wait long for the last.
const MAX_BATCH_REQUESTS: usize = 1024;

/// 16 MiB: bounds the memory one batch pins and the size of one transaction.
const MAX_BATCH_BYTES: usize = 16 * 1024 * 1024;

/// 50 µs: how long the writer waits for one more request before committing,
/// when the last commit showed concurrent publishers. Far below an fsync
/// (about a millisecond), so it costs little latency and fills commits.
const LINGER: Duration = Duration::from_micros(50);

/// 500 µs: the most the writer lingers before committing a batch.
const MAX_LINGER: Duration = Duration::from_micros(500);

/// 60 µs: how long the writer polls for the next request after a commit
/// before it parks. A publisher answered by that commit sends its next request
/// within tens of microseconds; catching it here saves a futex sleep and
/// wake-up (more than that on a VM) on every sequential publish.
const HOT_POLL: Duration = Duration::from_micros(60);

/// 100 ms: the longest a commit of a `Durability::Relaxed` stream stays without
/// an fsync. docs/semantics.md states this bound.
pub const RELAXED_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// 250 ms: how often changed consumer state is written (lazily: losing the
/// latest snapshot only causes redelivery). docs/semantics.md states it.
pub const CONSUMER_SAVE_INTERVAL: Duration = Duration::from_millis(250);

/// 1 s: how often age and TTL retention run when nothing else wakes the writer.
pub const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);

/// A write the writer thread performs.
pub(crate) enum Request {
    Publish {
        messages: Vec<OutgoingMessage>,
        reply: oneshot::Sender<Result<Vec<PublishAck>>>,
    },
    CreateStream {
        config: StreamConfig,
        reply: oneshot::Sender<Result<StreamInfo>>,
    },
    UpdateStream {
        config: StreamConfig,
        reply: oneshot::Sender<Result<StreamInfo>>,
    },
    DeleteStream {
        name: StreamName,
        reply: oneshot::Sender<Result<()>>,
    },
    Purge {
        name: StreamName,
        purge: Purge,
        reply: oneshot::Sender<Result<u64>>,
    },
    Maintain {
        reply: oneshot::Sender<Result<()>>,
    },
    /// Stores a new consumer (and creates its dead-letter stream).
    CreateConsumer {
        runtime: Arc<ConsumerRuntime>,
        reply: oneshot::Sender<Result<Arc<ConsumerRuntime>>>,
    },
    /// Publishes `messages` and acks one delivery in the same transaction.
    PublishAndAck {
        messages: Vec<OutgoingMessage>,
        runtime: Arc<ConsumerRuntime>,
        member: ConsumerName,
        seq: u64,
        deliveries: u32,
        reply: oneshot::Sender<Result<Vec<PublishAck>>>,
    },
    /// Writes a consumer's snapshot now (config updates, resets).
    SaveConsumer {
        runtime: Arc<ConsumerRuntime>,
        reply: oneshot::Sender<Result<()>>,
    },
    DeleteConsumer {
        stream_id: u32,
        name: ConsumerName,
        reply: oneshot::Sender<Result<()>>,
    },
    /// Consumers settled these seqs: interest and work-queue streams may delete them.
    Settled {
        stream_id: u32,
        seqs: Vec<u64>,
        reply: oneshot::Sender<Result<()>>,
    },
}

impl Request {
    /// Answers the request with `err` without applying it.
    fn fail(self, err: Error) {
        let _ = match self {
            Request::Publish { reply, .. } => reply.send(Err(err)).map_err(drop),
            Request::CreateStream { reply, .. } | Request::UpdateStream { reply, .. } => {
                reply.send(Err(err)).map_err(drop)
            }
            Request::DeleteStream { reply, .. }
            | Request::Maintain { reply }
            | Request::SaveConsumer { reply, .. }
            | Request::DeleteConsumer { reply, .. }
            | Request::Settled { reply, .. } => reply.send(Err(err)).map_err(drop),
            Request::Purge { reply, .. } => reply.send(Err(err)).map_err(drop),
            Request::PublishAndAck { reply, .. } => reply.send(Err(err)).map_err(drop),
            Request::CreateConsumer { reply, .. } => reply.send(Err(err)).map_err(drop),
        };
    }

    fn size(&self) -> usize {
        match self {
            Request::Publish { messages, .. } | Request::PublishAndAck { messages, .. } => {
                messages.iter().map(|m| m.payload.len() + 64).sum()
            }
            _ => 64,
        }
    }
}

/// A request that succeeded inside the transaction, answered after the commit.
pub(crate) enum Done {
    Publish(oneshot::Sender<Result<Vec<PublishAck>>>, Vec<PublishAck>),
    Consumer(oneshot::Sender<Result<Arc<ConsumerRuntime>>>, Arc<ConsumerRuntime>),
    Info(oneshot::Sender<Result<StreamInfo>>, StreamInfo),
    Unit(oneshot::Sender<Result<()>>),
    Count(oneshot::Sender<Result<u64>>, u64),
}

impl Done {
    fn succeed(self) {
        // A caller that stopped waiting is not an error.
        let _ = match self {
            Done::Publish(tx, acks) => tx.send(Ok(acks)).map_err(drop),
            Done::Consumer(tx, c) => tx.send(Ok(c)).map_err(drop),
            Done::Info(tx, info) => tx.send(Ok(info)).map_err(drop),
            Done::Unit(tx) => tx.send(Ok(())).map_err(drop),
            Done::Count(tx, n) => tx.send(Ok(n)).map_err(drop),
        };
    }

    fn fail(self, err: Error) {
        let _ = match self {
            Done::Publish(tx, _) => tx.send(Err(err)).map_err(drop),
            Done::Consumer(tx, _) => tx.send(Err(err)).map_err(drop),
            Done::Info(tx, _) => tx.send(Err(err)).map_err(drop),
            Done::Unit(tx) => tx.send(Err(err)).map_err(drop),
            Done::Count(tx, _) => tx.send(Err(err)).map_err(drop),
        };
    }
}

/// Stream metadata shared with readers: name → metadata, replaced after commits
/// that change streams.
#[derive(Debug, Default)]
pub(crate) struct Catalog {
    streams: RwLock<Arc<HashMap<StreamName, Arc<StreamMeta>>>>,
}

impl Catalog {
    pub(crate) fn get(&self, name: &StreamName) -> Option<Arc<StreamMeta>> {
        self.streams
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned()
    }

    pub(crate) fn snapshot(&self) -> Arc<HashMap<StreamName, Arc<StreamMeta>>> {
        self.streams.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn replace(&self, map: HashMap<StreamName, Arc<StreamMeta>>) {
        *self.streams.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(map);
    }
}

/// Options the writer runs with.
#[derive(Clone, Debug)]
pub(crate) struct WriterOptions {
    pub(crate) auto_create_streams: bool,
    /// The crash tests' positive control: answer before committing. Never set
    /// outside those tests.
    pub(crate) ack_before_commit: bool,
}

/// The writer's state: the committed view of every stream plus the dedup windows.
pub(crate) struct Writer {
    pub(crate) db: Arc<crate::engine::Db>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) options: WriterOptions,
    pub(crate) streams: HashMap<u32, StreamEntry>,
    pub(crate) names: HashMap<StreamName, u32>,
    pub(crate) dedup: HashMap<u32, DedupWindow>,
    /// The id the next stream gets (ids are never reused).
    pub(crate) next_id: u32,
    /// Randomness for generated message ids.
    pub(crate) rng: fastrand::Rng,
    /// Set by the operations of the current batch.
    pub(crate) batch: BatchMarks,
    unsynced_since: Option<Instant>,
    next_maintenance: Instant,
    next_consumer_save: Instant,
}

/// What the current batch did, for the commit that follows.
#[derive(Default)]
pub(crate) struct BatchMarks {
    /// Streams whose state changed.
    pub(crate) touched: BTreeSet<u32>,
    /// Streams created, updated or deleted.
    pub(crate) catalog_changed: bool,
    /// Streams deleted (their notifier channels close after the commit).
    pub(crate) deleted: Vec<u32>,
    /// Whether this commit must be fsynced before answering.
    pub(crate) durable: bool,
    /// Consumers created in this batch, registered once it commits.
    pub(crate) new_consumers: Vec<Arc<ConsumerRuntime>>,
    /// Consumers deleted in this batch, unregistered once it commits.
    pub(crate) dropped_consumers: Vec<(u32, ConsumerName)>,
    /// Messages retention deleted in this batch, per stream and rule: logged
    /// once it commits.
    pub(crate) retired: BTreeMap<(u32, Retired), u64>,
}

/// Which rule deleted messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Retired {
    /// `max_age`, on the maintenance timer.
    Age,
    /// Message TTLs, on the maintenance timer or before an expectation.
    Ttl,
    /// `max_msgs`, `max_bytes` or `max_msgs_per_subject`, on a publish.
    Limits,
    /// A purge someone asked for.
    Purge,
}

impl Writer {
    /// Counts `n` messages of stream `id` deleted by `rule` in this batch.
    pub(crate) fn retired(&mut self, id: u32, rule: Retired, n: u64) {
        if n > 0 {
            *self.batch.retired.entry((id, rule)).or_default() += n;
        }
    }

    /// Logs what retention deleted in a batch that committed: the timer's runs
    /// at info, the limits (a message dropped for nearly every publish to a
    /// full stream) at debug.
    fn log_retired(&mut self) {
        for ((id, rule), removed) in std::mem::take(&mut self.batch.retired) {
            let Some(entry) = self.streams.get(&id) else { continue };
            let stream = entry.meta.config.name.as_str();
            let left = entry.state.messages;
            match rule {
                Retired::Age => tracing::info!(
                    stream,
                    removed,
                    left,
                    max_age = ?entry.meta.config.max_age,
                    "retention removed messages older than the stream's max_age"
                ),
                Retired::Ttl => tracing::info!(stream, removed, left, "retention removed messages whose TTL passed"),
                Retired::Limits => {
                    tracing::debug!(
                        stream,
                        removed,
                        left,
                        "retention removed messages over the stream's limits"
                    )
                }
                Retired::Purge => tracing::info!(stream, removed, left, "stream purged"),
            }
        }
    }
}

/// The next request if one arrives within `wait`, yielding the CPU in
/// between: for gaps this short a futex sleep and wake-up costs more than the
/// gap itself.
fn poll_for(rx: &flume::Receiver<Request>, wait: Duration) -> Option<Request> {
    let until = Instant::now() + wait;
    loop {
        if let Ok(request) = rx.try_recv() {
            return Some(request);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::yield_now();
    }
}

impl Writer {
    pub(crate) fn new(
        db: Arc<crate::engine::Db>,
        clock: Arc<dyn Clock>,
        notifier: Arc<Notifier>,
        catalog: Arc<Catalog>,
        registry: Arc<Registry>,
        options: WriterOptions,
    ) -> StoreResult<Self> {
        let mut writer = Self {
            db,
            clock,
            notifier,
            catalog,
            registry,
            options,
            streams: HashMap::new(),
            names: HashMap::new(),
            dedup: HashMap::new(),
            next_id: 1,
            rng: fastrand::Rng::new(),
            batch: BatchMarks::default(),
            unsynced_since: None,
            next_maintenance: Instant::now(),
            next_consumer_save: Instant::now() + CONSUMER_SAVE_INTERVAL,
        };
        writer.reload()?;
        Ok(writer)
    }

    /// Replaces the in-memory view with what is committed on disk.
    fn reload(&mut self) -> StoreResult<()> {
        let loaded = crate::recovery::load(&self.db, self.clock.now())?;
        self.streams = loaded.streams;
        self.dedup = loaded.dedup;
        self.next_id = loaded.next_id;
        self.names = self
            .streams
            .values()
            .map(|e| (e.meta.config.name.clone(), e.id()))
            .collect();
        self.publish_catalog();
        for entry in self.streams.values() {
            self.notifier.publish(entry.id(), entry.state.last_seq);
        }
        Ok(())
    }

    fn publish_catalog(&self) {
        let map = self
            .streams
            .values()
            .map(|e| (e.meta.config.name.clone(), Arc::new(e.meta.clone())))
            .collect();
        self.catalog.replace(map);
    }

    /// Runs until every sender is gone, then makes relaxed commits durable.
    pub(crate) fn run(mut self, rx: flume::Receiver<Request>) {
        let mut last_batch = 0;
        loop {
            let timeout = self.next_timer().saturating_duration_since(Instant::now());
            let hot = if last_batch > 0 { poll_for(&rx, HOT_POLL) } else { None };
            let first = match hot.map_or_else(|| rx.recv_timeout(timeout), Ok) {
                Ok(request) => request,
                Err(flume::RecvTimeoutError::Timeout) => {
                    self.process(Vec::new());
                    // Nobody was answered: no next request is on its way.
                    last_batch = 0;
                    continue;
                }
                Err(flume::RecvTimeoutError::Disconnected) => break,
            };
            let mut bytes = first.size();
            let mut batch = vec![first];
            // With concurrent publishers (the last commit carried several
            // requests), keep collecting while they keep arriving: publishers
            // answered by the last commit are still sending their next request.
            // A lone publisher never waits.
            let linger = if last_batch > 1 { LINGER } else { Duration::ZERO };
            let deadline = Instant::now() + MAX_LINGER;
            while batch.len() < MAX_BATCH_REQUESTS && bytes < MAX_BATCH_BYTES {
                let next = match rx.try_recv() {
                    Ok(request) => Some(request),
                    Err(_) if linger.is_zero() || Instant::now() >= deadline => None,
                    Err(_) => poll_for(&rx, linger),
                };
                match next {
                    Some(request) => {
                        bytes += request.size();
                        batch.push(request);
                    }
                    None => break,
                }
            }
            last_batch = batch.len();
            self.process(batch);
        }
        // Last words: every consumer's progress, then one fsync.
        self.next_consumer_save = Instant::now();
        self.process(Vec::new());
        if self.unsynced_since.is_some() {
            self.flush();
        }
    }

    fn next_timer(&self) -> Instant {
        let timer = self.next_maintenance.min(self.next_consumer_save);
        match self.unsynced_since {
            Some(since) => (since + RELAXED_FLUSH_INTERVAL).min(timer),
            None => timer,
        }
    }

    /// Commits an empty transaction with fsync, making earlier relaxed commits durable.
    fn flush(&mut self) {
        let result = self.db.begin_write().map_err(EngineError::from).and_then(|mut txn| {
            txn.set_durability(Durability::Immediate)
                .expect("redb refuses no transaction immediate durability");
            txn.commit().map_err(EngineError::from)
        });
        if result.is_ok() {
            self.unsynced_since = None;
        }
    }

    /// Applies a batch of requests in one transaction and answers them.
    fn process(&mut self, batch: Vec<Request>) {
        let now = Instant::now();
        let maintain = now >= self.next_maintenance;
        let save_consumers = now >= self.next_consumer_save;
        let flush_due = self
            .unsynced_since
            .is_some_and(|since| now >= since + RELAXED_FLUSH_INTERVAL);
        if save_consumers {
            self.next_consumer_save = now + CONSUMER_SAVE_INTERVAL;
        }
        let dirty_consumers: Vec<_> = if save_consumers {
            self.registry.all().into_iter().filter(|c| c.lock().dirty).collect()
        } else {
            Vec::new()
        };
        if batch.is_empty() && !maintain && dirty_consumers.is_empty() {
            if flush_due {
                self.flush();
            }
            return;
        }
        self.batch = BatchMarks {
            durable: flush_due,
            ..BatchMarks::default()
        };
        let mut done = Vec::with_capacity(batch.len());
        let mut queue = batch.into_iter();
        // A panic in the storage layer (redb meeting a damaged page) fails this
        // batch like a failed commit, instead of stopping the writer for good.
        let outcome = crate::error::unpanicked("writing", || {
            self.run_transaction(&mut queue, maintain, &dirty_consumers, &mut done)
        });
        if maintain {
            self.next_maintenance = now + MAINTENANCE_INTERVAL;
        }
        match outcome {
            Ok(()) => {
                if self.batch.catalog_changed {
                    self.publish_catalog();
                }
                for runtime in std::mem::take(&mut self.batch.new_consumers) {
                    self.registry.insert(runtime);
                }
                for (stream_id, name) in std::mem::take(&mut self.batch.dropped_consumers) {
                    if let Some(runtime) = self.registry.remove(stream_id, &name) {
                        runtime.wake.notify_waiters();
                    }
                }
                self.log_retired();
                for id in std::mem::take(&mut self.batch.deleted) {
                    self.notifier.forget(id);
                }
                for id in &self.batch.touched {
                    if let Some(entry) = self.streams.get(id) {
                        self.notifier.publish(*id, entry.state.last_seq);
                    }
                }
                if !self.batch.touched.is_empty() || self.batch.catalog_changed {
                    self.notifier.committed();
                }
                done.into_iter().for_each(Done::succeed);
            }
            Err(err) => {
                // Every request of the batch fails with the storage's own cause.
                let cause = Arc::new(err);
                let failed =
                    || Error::new(ErrorKind::Storage, "nothing in this commit was stored").with_source(cause.clone());
                tracing::error!(error = %herald_core::cause_chain(&*cause), "a commit failed; its requests fail");
                for d in done {
                    d.fail(failed());
                }
                // Requests the failed transaction never reached fail the same way.
                for request in queue {
                    request.fail(failed());
                }
                // The in-memory view ran ahead of the failed commit: go back to disk.
                if let Err(reload) = crate::error::unpanicked("reloading", || self.reload()) {
                    // Keep going: the next batch retries, and fails while the disk does.
                    tracing::error!(error = %herald_core::cause_chain(&reload), "reloading after a failed commit failed");
                }
            }
        }
    }

    fn run_transaction(
        &mut self,
        batch: &mut std::vec::IntoIter<Request>,
        maintain: bool,
        dirty_consumers: &[Arc<ConsumerRuntime>],
        done: &mut Vec<Done>,
    ) -> StoreResult<()> {
        let mut txn = self.db.begin_write()?;
        let mut saved = Vec::new();
        {
            let mut tables = Tables::open(&txn)?;
            let now = self.clock.now();
            if maintain {
                self.enforce_time_limits(&mut tables, now)?;
            }
            for runtime in dirty_consumers {
                if self.save_consumer(&mut tables, runtime)? {
                    saved.push(runtime.clone());
                }
            }
            for request in batch.by_ref() {
                self.apply(&mut tables, request, now, done)?;
            }
            tables.flush()?;
            for id in &self.batch.touched {
                if let Some(entry) = self.streams.get(id) {
                    tables.save_state(entry)?;
                }
            }
        }
        let durability = if self.batch.durable {
            Durability::Immediate
        } else {
            Durability::None
        };
        // redb refuses `None` only after a persistent savepoint was made or
        // deleted in the transaction (Herald makes none) or when the file is
        // shared between processes; the engine opens it `ExclusiveWriter`
        // (engine.rs), so neither can happen.
        txn.set_durability(durability)
            .expect("an exclusive writer without persistent savepoints may set either durability");
        if self.options.ack_before_commit {
            // The crash tests' control: publishes answered before their commit.
            let (early, late): (Vec<Done>, Vec<Done>) = std::mem::take(done)
                .into_iter()
                .partition(|d| matches!(d, Done::Publish(..)));
            early.into_iter().for_each(Done::succeed);
            *done = late;
            // Holds the commit back, so that a kill soon after an early answer
            // finds it uncommitted however fast the disk syncs: the control
            // must be caught on every machine.
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        txn.commit()?;
        // Marked clean only now; a failed commit leaves them dirty for the next save.
        for runtime in saved {
            runtime.lock().dirty = false;
        }
        if self.batch.durable {
            self.unsynced_since = None;
        } else if !self.batch.touched.is_empty() || self.batch.catalog_changed {
            self.unsynced_since.get_or_insert_with(Instant::now);
        }
        Ok(())
    }

    /// Applies one request. A rejected request is answered at once and changes
    /// nothing; a storage error aborts the whole transaction.
    fn apply(
        &mut self,
        tables: &mut Tables<'_>,
        request: Request,
        now: herald_core::Timestamp,
        done: &mut Vec<Done>,
    ) -> StoreResult<()> {
        match request {
            Request::Publish { messages, reply } => {
                answer_after_commit(done, reply, self.publish(tables, messages, now)?, Done::Publish)
            }
            Request::PublishAndAck {
                messages,
                runtime,
                member,
                seq,
                deliveries,
                reply,
            } => {
                let held = runtime.lock().holds(seq, &member, deliveries);
                if !held {
                    let _ = reply.send(Err(Error::new(
                        ErrorKind::LeaseLost,
                        format!(
                            "seq {seq} (delivery {deliveries}) is no longer leased to `{member}`; nothing was published"
                        ),
                    )));
                } else {
                    let published = self.publish(tables, messages, now)?;
                    if published.is_ok() {
                        // The ack joins this transaction. Were the commit to fail,
                        // the engine refuses writes until reopened, and reopening
                        // reloads this consumer from disk, where the ack is not.
                        runtime.lock().ack(seq, &member, deliveries);
                        self.save_consumer(tables, &runtime)?;
                        self.batch.durable = true;
                    }
                    answer_after_commit(done, reply, published, Done::Publish);
                }
            }
            Request::CreateStream { config, reply } => {
                answer_after_commit(done, reply, self.create_stream(tables, config, now)?, Done::Info)
            }
            Request::UpdateStream { config, reply } => {
                answer_after_commit(done, reply, self.update_stream(tables, config, now)?, Done::Info)
            }
            Request::DeleteStream { name, reply } => {
                answer_after_commit(done, reply, self.delete_stream(tables, &name)?, |reply, ()| {
                    Done::Unit(reply)
                })
            }
            Request::Purge { name, purge, reply } => {
                answer_after_commit(done, reply, self.purge(tables, &name, purge)?, Done::Count)
            }
            Request::CreateConsumer { runtime, reply } => {
                answer_after_commit(done, reply, self.create_consumer(tables, runtime, now)?, Done::Consumer)
            }
            Request::SaveConsumer { runtime, reply } => {
                self.save_consumer(tables, &runtime)?;
                self.batch.durable = true;
                done.push(Done::Unit(reply));
            }
            Request::DeleteConsumer { stream_id, name, reply } => {
                tables.consumers.remove((stream_id, name.as_str()))?;
                self.batch.dropped_consumers.push((stream_id, name));
                self.batch.durable = true;
                done.push(Done::Unit(reply));
            }
            Request::Settled { stream_id, seqs, reply } => {
                self.delete_settled(tables, stream_id, &seqs)?;
                done.push(Done::Unit(reply));
            }
            Request::Maintain { reply } => {
                self.enforce_time_limits(tables, now)?;
                self.batch.durable = true;
                done.push(Done::Unit(reply));
            }
        }
        Ok(())
    }

    /// The entry of a stream by name.
    pub(crate) fn entry_id(&self, name: &StreamName) -> Result<u32> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| Error::new(ErrorKind::StreamNotFound, format!("stream `{name}` not found")))
    }

    /// Marks a stream's state as changed in this batch, and whether it needs fsync.
    pub(crate) fn touch(&mut self, id: u32) {
        self.batch.touched.insert(id);
        if let Some(entry) = self.streams.get(&id)
            && entry.meta.config.durability == herald_core::Durability::Fsync
        {
            self.batch.durable = true;
        }
    }
}

/// Queues the answer to a request that succeeded in this transaction, to be
/// sent after the commit; a rejected request is answered at once (it changed
/// nothing).
fn answer_after_commit<T>(
    done: &mut Vec<Done>,
    reply: oneshot::Sender<Result<T>>,
    result: Result<T>,
    pending: impl FnOnce(oneshot::Sender<Result<T>>, T) -> Done,
) {
    match result {
        Ok(value) => done.push(pending(reply, value)),
        Err(err) => {
            let _ = reply.send(Err(err));
        }
    }
}
