//! The engine handle: opening, the writer thread's lifecycle, and the
//! [`StreamBackend`] implementation that the facade calls.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use async_trait::async_trait;
use herald_core::{
    Error, ErrorKind, Message, OutgoingMessage, PublishAck, Purge, ReadRange, Result, StreamBackend, StreamConfig,
    StreamInfo, StreamName, Subject,
};
use redb::{Database, DatabaseError, ReadableDatabase, StorageBackend};
use tokio::sync::{oneshot, watch};

use crate::clock::{Clock, SystemClock};
use crate::consumers::Registry;
use crate::encode::{self, StreamMeta};
use crate::error::{EngineError, storage};
use crate::notify::Notifier;
use crate::read::Reader;
use crate::tables::STREAM_STATE;
use crate::writer::{Catalog, Request, Writer, WriterOptions};

/// The database file inside a data directory.
pub const DATA_FILE: &str = "herald.redb";

/// 8,192 requests: the writer queue's bound. Publishers wait (asynchronously)
/// when it is full, which is the engine's backpressure.
const DEFAULT_QUEUE_CAPACITY: usize = 8192;

/// 256 MiB: redb's page cache. Reads of recent messages hit it; the default of
/// 1 GiB is more than an embedded bus should take from its host.
const DEFAULT_CACHE_BYTES: usize = 256 * 1024 * 1024;

type OpenFn = Box<dyn FnOnce(&redb::Builder) -> std::result::Result<Database, DatabaseError> + Send>;

enum Storage {
    Dir(PathBuf),
    Memory,
    Custom(OpenFn),
}

/// Where a new database is built before it is renamed into place.
const CREATING_FILE: &str = "herald.redb.creating";

/// Creates the data file if it does not exist, so that a crash at any moment
/// leaves either no data file or a complete one: the database is built and
/// fsynced under a temporary name, renamed into place, and the directory fsynced.
/// A leftover temporary file (a crash during an earlier creation) held nothing
/// acknowledged and is removed.
fn create_atomically(builder: &redb::Builder, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(storage)?;
    let path = dir.join(DATA_FILE);
    if path.exists() {
        return Ok(());
    }
    let creating = dir.join(CREATING_FILE);
    if creating.exists() {
        std::fs::remove_file(&creating).map_err(storage)?;
    }
    {
        let db = builder.create(&creating).map_err(storage)?;
        crate::recovery::create_tables(&db).map_err(Error::from)?;
    }
    std::fs::rename(&creating, &path).map_err(storage)?;
    std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(storage)?;
    Ok(())
}

/// Configures and opens an [`Engine`].
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let engine = herald_engine::Engine::builder().path(dir.path()).open()?;
/// # drop(engine);
/// # Ok::<(), herald_core::Error>(())
/// ```
pub struct EngineBuilder {
    storage: Storage,
    clock: Arc<dyn Clock>,
    auto_create_streams: bool,
    queue_capacity: usize,
    cache_bytes: usize,
    verify_on_open: bool,
    ack_before_commit: bool,
}

impl fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("auto_create_streams", &self.auto_create_streams)
            .field("queue_capacity", &self.queue_capacity)
            .finish_non_exhaustive()
    }
}

impl Default for EngineBuilder {
    fn default() -> Self {
        Self {
            storage: Storage::Memory,
            clock: Arc::new(SystemClock),
            auto_create_streams: true,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            cache_bytes: DEFAULT_CACHE_BYTES,
            verify_on_open: true,
            ack_before_commit: false,
        }
    }
}

impl EngineBuilder {
    /// Stores data in the directory `dir` (created if missing), in the file
    /// [`DATA_FILE`]. Default: in memory.
    pub fn path(mut self, dir: impl AsRef<Path>) -> Self {
        self.storage = Storage::Dir(dir.as_ref().to_path_buf());
        self
    }

    /// Keeps data in memory (redb's in-memory backend): the same engine, nothing on
    /// disk. The default.
    pub fn memory(mut self) -> Self {
        self.storage = Storage::Memory;
        self
    }

    /// Stores data on a custom redb storage backend (fault injection in tests).
    pub fn storage_backend(mut self, backend: impl StorageBackend) -> Self {
        self.storage = Storage::Custom(Box::new(move |builder| builder.create_with_backend(backend)));
        self
    }

    /// Takes time from `clock`. Default: the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Whether a publish to a subject no stream captures creates a stream named by
    /// its first token. Default: true.
    pub fn auto_create_streams(mut self, enabled: bool) -> Self {
        self.auto_create_streams = enabled;
        self
    }

    /// The writer queue's bound, in requests. Default: 8,192.
    pub fn queue_capacity(mut self, requests: usize) -> Self {
        self.queue_capacity = requests.max(1);
        self
    }

    /// redb's cache size in bytes. Default: 256 MiB.
    pub fn cache_bytes(mut self, bytes: usize) -> Self {
        self.cache_bytes = bytes;
        self
    }

    /// Whether opening verifies the checksum of every page the data file's
    /// trees use (default: yes). A damaged page then fails the open with
    /// [`ErrorKind::Storage`] instead of being found, or missed, later: the
    /// per-message checksum catches a damaged message when it is read, but a
    /// damaged index page can hide messages without reading any of them. The
    /// check reads every page in use: 1.4 s more to open a 2.2 GB data file
    /// (1 GB of messages, file cached in memory, measured 2026-12-08). Turn it
    /// off for very large data files whose disk is trusted.
    pub fn verify_on_open(mut self, verify: bool) -> Self {
        self.verify_on_open = verify;
        self
    }

    /// Answers publishes *before* their commit. Breaks durability on purpose: it
    /// exists only as the positive control of the crash tests, which must catch it
    /// losing acknowledged messages.
    #[doc(hidden)]
    pub fn unsafe_ack_before_commit(mut self) -> Self {
        self.ack_before_commit = true;
        self
    }

    /// Opens the engine: opens or creates the database (repairing it after a
    /// crash), loads every stream and starts the writer thread.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] when the directory or database cannot be opened.
    pub fn open(self) -> Result<Engine> {
        crate::error::unpanicked("opening the data file", || self.open_unguarded())
    }

    fn open_unguarded(self) -> Result<Engine> {
        let mut builder = redb::Builder::new();
        // redb's default, named: the writer's relaxed commits
        // (`Durability::None`, writer.rs) are refused in the modes that
        // share the file between processes, and one process owns the store.
        builder.set_concurrency_mode(redb::ConcurrencyMode::ExclusiveWriter);
        builder.set_cache_size(self.cache_bytes);
        builder.set_check_integrity_on_open(self.verify_on_open);
        let db = match self.storage {
            Storage::Dir(dir) => {
                create_atomically(&builder, &dir)?;
                builder.open(dir.join(DATA_FILE)).map_err(storage)?
            }
            Storage::Memory => builder
                .create_with_backend(redb::backends::InMemoryBackend::new())
                .map_err(storage)?,
            Storage::Custom(open) => open(&builder).map_err(storage)?,
        };
        let db = Arc::new(Db(Some(db)));
        crate::recovery::create_tables(&db).map_err(Error::from)?;
        let notifier = Arc::new(Notifier::default());
        let catalog = Arc::new(Catalog::default());
        let registry = Arc::new(Registry::default());
        let options = WriterOptions {
            auto_create_streams: self.auto_create_streams,
            ack_before_commit: self.ack_before_commit,
        };
        let writer = Writer::new(
            db.clone(),
            self.clock.clone(),
            notifier.clone(),
            catalog.clone(),
            registry.clone(),
            options,
        )
        .map_err(Error::from)?;
        // The writer has loaded the streams into the catalog; their consumers next.
        crate::recovery::load_consumers(&db, &catalog, &registry).map_err(Error::from)?;
        let (tx, rx) = flume::bounded(self.queue_capacity);
        let handle = std::thread::Builder::new()
            .name("herald-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|e| Error::new(ErrorKind::Internal, "cannot start the writer thread").with_source(e))?;
        Ok(Engine {
            inner: Arc::new(Inner {
                db,
                tx: Some(tx),
                catalog,
                notifier,
                registry,
                clock: self.clock,
                responders: crate::requests::Responders::default(),
                writer: Mutex::new(Some(handle)),
            }),
        })
    }
}

/// The database, closed without letting a panic out: redb's close can panic
/// on a damaged page, and no bytes on disk may take the process down.
pub(crate) struct Db(Option<Database>);

impl std::ops::Deref for Db {
    type Target = Database;

    fn deref(&self) -> &Database {
        self.0.as_ref().expect("the database is taken only when it is dropped")
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        if let Some(db) = self.0.take()
            && let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(db)))
        {
            crate::error::log_damage("closing the data file", &*panic);
        }
    }
}

/// The embedded engine: streams on redb with group commit.
///
/// Cheap to clone; the writer thread stops and the database closes when the
/// last clone is dropped (after the queued requests are done).
#[derive(Clone)]
pub struct Engine {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) db: Arc<Db>,
    tx: Option<flume::Sender<Request>>,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) notifier: Arc<Notifier>,
    pub(crate) registry: Arc<Registry>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) responders: crate::requests::Responders,
    writer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and exit.
        self.tx.take();
        let handle = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            // A panicked writer has nothing left to flush; dropping is all we can do.
            let _ = handle.join();
        }
    }
}

impl Engine {
    /// The time on the engine's clock: what it stamps messages with.
    pub fn now(&self) -> herald_core::Timestamp {
        self.inner.clock.now()
    }
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("streams", &self.inner.catalog.snapshot().len())
            .finish()
    }
}

impl Engine {
    /// A builder; the default stores in memory.
    pub fn builder() -> EngineBuilder {
        EngineBuilder::default()
    }

    /// Opens (or creates) an engine in the data directory `dir`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] when the directory or database cannot be opened.
    pub fn open(dir: impl AsRef<Path>) -> Result<Engine> {
        Self::builder().path(dir).open()
    }

    /// An engine on redb's in-memory backend.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if redb cannot initialise (it does not fail in practice).
    pub fn memory() -> Result<Engine> {
        Self::builder().memory().open()
    }

    pub(crate) async fn call<T>(&self, make: impl FnOnce(oneshot::Sender<Result<T>>) -> Request) -> Result<T> {
        let (reply, rx) = oneshot::channel();
        let tx = self
            .inner
            .tx
            .as_ref()
            .ok_or_else(|| Error::from(EngineError::WriterGone))?;
        tx.send_async(make(reply))
            .await
            .map_err(|_| Error::from(EngineError::WriterGone))?;
        rx.await.map_err(|_| Error::from(EngineError::WriterGone))?
    }

    pub(crate) fn meta(&self, stream: &StreamName) -> Result<Arc<StreamMeta>> {
        self.inner
            .catalog
            .get(stream)
            .ok_or_else(|| Error::new(ErrorKind::StreamNotFound, format!("stream `{stream}` not found")))
    }

    pub(crate) fn reader(&self, stream: &StreamName) -> Result<(Reader, redb::ReadTransaction)> {
        let meta = self.meta(stream)?;
        let txn = self.inner.db.begin_read().map_err(storage)?;
        let indexed = meta.config.indexes_subjects();
        let reader =
            Reader::new(&txn, meta.config.name.clone(), meta.id, self.inner.clock.now(), indexed).map_err(storage)?;
        Ok((reader, txn))
    }

    pub(crate) fn info(&self, meta: &StreamMeta, txn: &redb::ReadTransaction) -> Result<StreamInfo> {
        let states = txn.open_table(STREAM_STATE).map_err(storage)?;
        let guard = states.get(meta.id).map_err(storage)?.ok_or_else(|| {
            Error::new(
                ErrorKind::StreamNotFound,
                format!("stream `{}` not found", meta.config.name),
            )
        })?;
        let state = encode::decode_state(guard.value()).map_err(Error::from)?;
        Ok(StreamInfo {
            config: meta.config.clone(),
            state,
            created: meta.created,
        })
    }

    /// Runs a blocking read off the async threads.
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(Engine) -> Result<T> + Send + 'static) -> Result<T> {
        let engine = self.clone();
        tokio::task::spawn_blocking(move || crate::error::unpanicked("reading", || f(engine)))
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, "a read task failed").with_source(e))?
    }

    /// A receiver of the stream's last sequence, updated after every commit that
    /// appends to it: wait on it instead of polling.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::StreamNotFound`].
    pub fn watch_head(&self, stream: &StreamName) -> Result<watch::Receiver<u64>> {
        let meta = self.meta(stream)?;
        let last = crate::error::unpanicked("reading a stream's state", || {
            let txn = self.inner.db.begin_read().map_err(storage)?;
            self.info(&meta, &txn)
        })?
        .state
        .last_seq;
        Ok(self.inner.notifier.subscribe(meta.id, last))
    }

    /// Runs age and TTL retention now (it also runs every second on its own).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if the commit fails.
    pub async fn enforce_retention(&self) -> Result<()> {
        self.call(|reply| Request::Maintain { reply }).await
    }
}

#[async_trait]
impl StreamBackend for Engine {
    async fn create_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.call(|reply| Request::CreateStream { config, reply }).await
    }

    async fn update_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.call(|reply| Request::UpdateStream { config, reply }).await
    }

    async fn stream_info(&self, stream: &StreamName) -> Result<StreamInfo> {
        let meta = self.meta(stream)?;
        crate::error::unpanicked("reading a stream's state", || {
            let txn = self.inner.db.begin_read().map_err(storage)?;
            self.info(&meta, &txn)
        })
    }

    async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        let catalog = self.inner.catalog.snapshot();
        crate::error::unpanicked("reading the streams' state", || {
            let txn = self.inner.db.begin_read().map_err(storage)?;
            let mut infos = Vec::with_capacity(catalog.len());
            for meta in catalog.values() {
                match self.info(meta, &txn) {
                    Ok(info) => infos.push(info),
                    // Deleted between the catalog snapshot and the read: not listed.
                    Err(err) if err.kind() == ErrorKind::StreamNotFound => {}
                    Err(err) => return Err(err),
                }
            }
            infos.sort_by(|a, b| a.config.name.cmp(&b.config.name));
            Ok(infos)
        })
    }

    async fn delete_stream(&self, stream: &StreamName) -> Result<()> {
        let name = stream.clone();
        self.call(|reply| Request::DeleteStream { name, reply }).await
    }

    async fn purge_stream(&self, stream: &StreamName, purge: Purge) -> Result<u64> {
        let name = stream.clone();
        self.call(|reply| Request::Purge { name, purge, reply }).await
    }

    async fn publish(&self, message: OutgoingMessage) -> Result<PublishAck> {
        let mut acks = self
            .call(|reply| Request::Publish {
                messages: vec![message],
                reply,
            })
            .await?;
        acks.pop()
            .ok_or_else(|| Error::new(ErrorKind::Internal, "a publish returned no ack"))
    }

    async fn publish_batch(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<PublishAck>> {
        self.call(|reply| Request::Publish { messages, reply }).await
    }

    async fn get_message(&self, stream: &StreamName, seq: u64) -> Result<Message> {
        // A point read is a few B-tree lookups in a read transaction: cheaper than
        // a hop to the blocking pool.
        let found = crate::error::unpanicked("reading a message", || {
            let (reader, _txn) = self.reader(stream)?;
            reader.get(seq).map_err(Error::from)
        })?;
        found.ok_or_else(|| {
            Error::new(
                ErrorKind::MessageNotFound,
                format!("no message at seq {seq} in stream `{stream}`"),
            )
        })
    }

    async fn last_message(&self, stream: &StreamName, subject: &Subject) -> Result<Message> {
        let found = crate::error::unpanicked("reading a message", || {
            let (reader, _txn) = self.reader(stream)?;
            reader.last_of(subject).map_err(Error::from)
        })?;
        found.ok_or_else(|| {
            Error::new(
                ErrorKind::MessageNotFound,
                format!("no message for subject `{subject}` in stream `{stream}`"),
            )
        })
    }

    async fn read_range(&self, stream: &StreamName, range: ReadRange) -> Result<Vec<Message>> {
        let stream = stream.clone();
        self.blocking(move |engine| {
            let (reader, txn) = engine.reader(&stream)?;
            let meta = engine.meta(&stream)?;
            let state = engine.info(&meta, &txn)?.state;
            reader
                .range(&range, state.first_seq, state.last_seq)
                .map_err(Error::from)
        })
        .await
    }

    async fn read_subject(
        &self,
        stream: &StreamName,
        subject: &Subject,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let (stream, subject) = (stream.clone(), subject.clone());
        if !self.meta(&stream)?.config.indexes_subjects() {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "stream `{stream}` keeps no per-subject history index, so one subject's messages cannot be \
                     read on their own; the index is chosen when a stream is created: its `subject_index` setting \
                     (or a `max_msgs_per_subject` limit), `--subject-index` in `herald streams create`"
                ),
            ));
        }
        self.blocking(move |engine| {
            let (reader, _txn) = engine.reader(&stream)?;
            reader.subject(&subject, from_seq, limit).map_err(Error::from)
        })
        .await
    }
}
