//! The [`Bus`]: one handle for publishing, stream admin and reads, whatever
//! backend it runs on.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use herald_core::{
    Backend, ConsumerConfig, ConsumerInfo, ConsumerName, Error, ErrorKind, Message, OutgoingMessage, Pattern,
    PublishAck, Purge, ReadFrom, ReadRange, Result, StreamConfig, StreamInfo, StreamName, Subject, dead_letter_names,
    dlq,
};
use herald_engine::{Clock, Engine, EngineBuilder};

use crate::consumer::{Consumer, ConsumerBuilder};
use crate::jobs::JobsBuilder;
use crate::kv::KvBuilder;
use crate::subscription::Subscription;
use tokio::sync::watch;

/// A handle to an event bus. Cheap to clone.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let dir = tempfile::tempdir()?;
/// let bus = herald::Bus::open(dir.path()).await?;
/// let ack = bus.publish("orders.created", "order 1").await?;
/// let msg = bus.get(&ack.stream, ack.seq).await?;
/// assert_eq!(msg.subject.as_str(), "orders.created");
/// # Ok::<(), herald::Error>(())
/// # })?;
/// # Ok::<(), herald::Error>(())
/// ```
#[derive(Clone)]
pub struct Bus {
    backend: Arc<dyn Backend>,
    engine: Option<Engine>,
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus").field("embedded", &self.engine.is_some()).finish()
    }
}

/// Configures an embedded [`Bus`]; [`open`](BusBuilder::open) does the I/O.
#[derive(Debug, Default)]
pub struct BusBuilder {
    path: Option<PathBuf>,
    engine: EngineBuilder,
}

impl BusBuilder {
    /// Stores data in the directory `dir`. Default: in memory.
    pub fn path(mut self, dir: impl AsRef<Path>) -> Self {
        self.path = Some(dir.as_ref().to_path_buf());
        self
    }

    /// Takes time from `clock` (a `herald_engine::ManualClock` in tests).
    /// Default: the system clock.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.engine = self.engine.clock(clock);
        self
    }

    /// Whether publishing to a subject no stream captures creates a stream named
    /// after the subject's first token. Default: true.
    pub fn auto_create_streams(mut self, enabled: bool) -> Self {
        self.engine = self.engine.auto_create_streams(enabled);
        self
    }

    /// Passes any other engine setting through.
    pub fn engine(mut self, configure: impl FnOnce(EngineBuilder) -> EngineBuilder) -> Self {
        self.engine = configure(self.engine);
        self
    }

    /// Opens the bus (on the blocking pool: opening may repair the file after a crash).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] when the data directory cannot be opened.
    pub async fn open(self) -> Result<Bus> {
        let builder = match self.path {
            Some(path) => self.engine.path(path),
            None => self.engine.memory(),
        };
        let engine = tokio::task::spawn_blocking(move || builder.open())
            .await
            .map_err(|e| Error::new(ErrorKind::Internal, "opening the engine panicked").with_source(e))??;
        Ok(Bus::from_engine(engine))
    }
}

impl Bus {
    /// Opens an embedded bus on the data directory `dir`, creating it if needed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] when the directory cannot be opened.
    pub async fn open(dir: impl AsRef<Path>) -> Result<Bus> {
        Self::builder().path(dir).open().await
    }

    /// An embedded bus in memory: the same engine, nothing on disk.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Storage`] if redb cannot initialise.
    pub fn memory() -> Result<Bus> {
        Ok(Self::from_engine(Engine::memory()?))
    }

    /// A builder for an embedded bus.
    pub fn builder() -> BusBuilder {
        BusBuilder::default()
    }

    /// A bus on an embedded engine.
    pub fn from_engine(engine: Engine) -> Bus {
        Bus {
            backend: Arc::new(engine.clone()),
            engine: Some(engine),
        }
    }

    /// A bus on a NATS JetStream server or cluster at `urls` (comma-separated).
    ///
    /// # Errors
    ///
    /// `Closed` when no server answers; `Unsupported` when JetStream is off.
    #[cfg(feature = "nats")]
    pub async fn nats(urls: impl AsRef<str>) -> Result<Bus> {
        Self::nats_with(herald_nats::NatsOptions::new(urls)).await
    }

    /// A bus on NATS JetStream with connection options (credentials, TLS,
    /// replicas, timeouts).
    ///
    /// # Errors
    ///
    /// As [`nats`](Bus::nats), and `InvalidConfig` for a bad URL.
    #[cfg(feature = "nats")]
    pub async fn nats_with(options: herald_nats::NatsOptions) -> Result<Bus> {
        Ok(Self::from_backend(Arc::new(
            herald_nats::NatsBackend::connect(options).await?,
        )))
    }

    /// A bus on a Herald server (`herald serve`), through its WebSocket
    /// protocol at `url` (`ws://host:port/v1/ws`).
    ///
    /// # Errors
    ///
    /// `Closed` when the server cannot be reached.
    #[cfg(feature = "remote")]
    pub async fn connect(url: impl Into<String>) -> Result<Bus> {
        Ok(Self::from_backend(Arc::new(
            herald_client::RemoteBackend::connect(url).await?,
        )))
    }

    /// A bus on a Herald server, connecting as `options` say (with an access
    /// token, say).
    ///
    /// # Errors
    ///
    /// `PermissionDenied` when the server refuses the token, `Closed` when it
    /// cannot be reached.
    #[cfg(feature = "remote")]
    pub async fn connect_with(options: herald_client::ConnectOptions) -> Result<Bus> {
        Ok(Self::from_backend(Arc::new(
            herald_client::RemoteBackend::connect_with(options).await?,
        )))
    }

    /// A bus on any backend (the remote client, NATS, a test double).
    pub fn from_backend(backend: Arc<dyn Backend>) -> Bus {
        Bus { backend, engine: None }
    }

    /// The backend, for code written against the traits.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Follows every new message matching `pattern`, across streams.
    ///
    /// # Errors
    ///
    /// `InvalidSubject`.
    pub async fn subscribe(&self, pattern: impl AsRef<str>) -> Result<Subscription> {
        Ok(Subscription::new(
            self.backend.subscribe(Pattern::new(pattern)?, None).await?,
        ))
    }

    /// Replays matching messages from a seq or a time (in each stream), then follows.
    ///
    /// # Errors
    ///
    /// `InvalidSubject`.
    pub async fn subscribe_from(&self, pattern: impl AsRef<str>, from: ReadFrom) -> Result<Subscription> {
        Ok(Subscription::new(
            self.backend.subscribe(Pattern::new(pattern)?, Some(from)).await?,
        ))
    }

    /// Starts configuring the durable consumer `name` on `stream`.
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let bus = herald::Bus::memory()?;
    /// bus.create_stream(herald::StreamConfig::new("orders")?).await?;
    /// let consumer = bus.consumer("orders", "shipping").filter("orders.paid").max_deliver(5).create().await?;
    /// assert_eq!(consumer.info().await?.pending, 0);
    /// # Ok::<(), herald::Error>(())
    /// # })?;
    /// # Ok::<(), herald::Error>(())
    /// ```
    pub fn consumer(&self, stream: impl AsRef<str>, name: impl AsRef<str>) -> ConsumerBuilder {
        ConsumerBuilder {
            backend: self.backend.clone(),
            stream: StreamName::new(stream),
            config: ConsumerConfig::new(name),
        }
    }

    /// A handle on an existing consumer, after checking that it exists.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`, `ConsumerNotFound`.
    pub async fn bind_consumer(&self, stream: impl AsRef<str>, name: impl AsRef<str>) -> Result<Consumer> {
        let (stream, name) = (StreamName::new(stream)?, ConsumerName::new(name)?);
        self.backend.consumer_info(&stream, &name).await?;
        Ok(Consumer::new(self.backend.clone(), stream, name))
    }

    /// A consumer's config and progress.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`, `ConsumerNotFound`.
    pub async fn consumer_info(&self, stream: impl AsRef<str>, name: impl AsRef<str>) -> Result<ConsumerInfo> {
        let (stream, name) = (StreamName::new(stream)?, ConsumerName::new(name)?);
        self.backend.consumer_info(&stream, &name).await
    }

    /// Every consumer of a stream.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`.
    pub async fn consumers(&self, stream: impl AsRef<str>) -> Result<Vec<ConsumerInfo>> {
        self.backend.list_consumers(&StreamName::new(stream)?).await
    }

    /// Deletes a consumer and its progress (its dead-letter stream stays).
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`, `ConsumerNotFound`.
    pub async fn delete_consumer(&self, stream: impl AsRef<str>, name: impl AsRef<str>) -> Result<()> {
        self.backend
            .delete_consumer(&StreamName::new(stream)?, &ConsumerName::new(name)?)
            .await
    }

    /// The dead letters of a consumer, oldest first, up to `limit`.
    ///
    /// # Errors
    ///
    /// `InvalidName`; `StreamNotFound` if the consumer never had dead letters enabled.
    pub async fn dead_letters(
        &self,
        stream: impl AsRef<str>,
        consumer: impl AsRef<str>,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let (dlq, _) = dead_letter_names(&StreamName::new(stream)?, &ConsumerName::new(consumer)?)?;
        self.backend.read_range(&dlq, ReadRange::from_seq(1, limit)).await
    }

    /// Republishes every dead letter of a consumer to its original subject (with
    /// its original headers and a fresh id) and removes it from the dead-letter
    /// stream; returns how many were replayed.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`, and any publish error (what was replayed
    /// before it stays replayed and removed).
    pub async fn replay_dead_letters(&self, stream: impl AsRef<str>, consumer: impl AsRef<str>) -> Result<u64> {
        let (dlq, _) = dead_letter_names(&StreamName::new(stream)?, &ConsumerName::new(consumer)?)?;
        let mut replayed = 0;
        loop {
            let letters = self.backend.read_range(&dlq, ReadRange::from_seq(1, 256)).await?;
            let Some(last) = letters.last().map(|m| m.seq) else {
                return Ok(replayed);
            };
            for letter in letters {
                let subject = letter.headers.get(dlq::SUBJECT).ok_or_else(|| {
                    Error::new(
                        ErrorKind::InvalidRequest,
                        format!("dead letter {} has no original subject", letter.seq),
                    )
                })?;
                let mut message = OutgoingMessage::new(Subject::new(subject)?, letter.payload.clone())
                    .id(format!("replay:{dlq}:{}", letter.seq));
                message.headers = letter.headers.clone();
                message.headers.retain(|k, _| !k.starts_with("herald-dlq-"));
                message.content_type = letter.content_type.clone();
                self.backend.publish(message).await?;
                replayed += 1;
            }
            self.backend.purge_stream(&dlq, Purge::all().before(last + 1)).await?;
        }
    }

    /// Deletes every dead letter of a consumer; returns how many.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`.
    pub async fn purge_dead_letters(&self, stream: impl AsRef<str>, consumer: impl AsRef<str>) -> Result<u64> {
        let (dlq, _) = dead_letter_names(&StreamName::new(stream)?, &ConsumerName::new(consumer)?)?;
        self.backend.purge_stream(&dlq, Purge::all()).await
    }

    /// Publishes `payload` to `subject`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidSubject`] for an invalid or reserved (`$`) subject, and
    /// everything [`publish_message`](Bus::publish_message) returns.
    pub async fn publish(&self, subject: impl AsRef<str>, payload: impl Into<Bytes>) -> Result<PublishAck> {
        self.publish_message(OutgoingMessage::new(Subject::new(subject)?, payload))
            .await
    }

    /// Publishes a message with headers, id, expectations or TTL.
    ///
    /// Returns once the message is durable under its stream's durability.
    ///
    /// # Errors
    ///
    /// `InvalidSubject` (reserved subject), `InvalidRequest`, `PayloadTooLarge`,
    /// `HeadersTooLarge`, `SubjectConflict`, `WrongExpectedSeq` (with the actual
    /// seq in [`Error::actual_seq`]), `StreamFull`, `Storage`.
    pub async fn publish_message(&self, message: OutgoingMessage) -> Result<PublishAck> {
        check_not_reserved(message.subject.as_str())?;
        self.backend.publish(message).await
    }

    /// Publishes messages atomically to one stream: all or none, consecutive seqs.
    ///
    /// # Errors
    ///
    /// As [`publish_message`](Bus::publish_message) for any message; then nothing
    /// of the batch is written. `InvalidRequest` for an empty batch or one that
    /// spans streams.
    pub async fn publish_batch(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<PublishAck>> {
        for m in &messages {
            check_not_reserved(m.subject.as_str())?;
        }
        self.backend.publish_batch(messages).await
    }

    /// Creates a stream (a no-op if it exists with the same config).
    ///
    /// # Errors
    ///
    /// `InvalidName` for a reserved (`$`) name; `InvalidConfig`, `StreamExists`,
    /// `SubjectConflict`.
    pub async fn create_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        if config.name.is_reserved() {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!(
                    "stream names starting with `$` are reserved for Herald (`{}`)",
                    config.name
                ),
            ));
        }
        self.backend.create_stream(config).await
    }

    /// Replaces a stream's limits and policies; new limits apply at once.
    ///
    /// # Errors
    ///
    /// `StreamNotFound`, `InvalidConfig`, `SubjectConflict`.
    pub async fn update_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.backend.update_stream(config).await
    }

    /// A stream's config and state.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`.
    pub async fn stream_info(&self, stream: impl AsRef<str>) -> Result<StreamInfo> {
        self.backend.stream_info(&StreamName::new(stream)?).await
    }

    /// Every stream.
    ///
    /// # Errors
    ///
    /// `Storage`.
    pub async fn streams(&self) -> Result<Vec<StreamInfo>> {
        self.backend.list_streams().await
    }

    /// Deletes a stream, its messages and its consumers, with their
    /// dead-letter streams (`$dlq-<stream>-<consumer>`, and those of any
    /// consumer on them): nothing of the stream is left behind.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`.
    pub async fn delete_stream(&self, stream: impl AsRef<str>) -> Result<()> {
        self.backend.delete_stream(&StreamName::new(stream)?).await
    }

    /// Deletes the messages `purge` selects; returns how many.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`.
    pub async fn purge_stream(&self, stream: impl AsRef<str>, purge: Purge) -> Result<u64> {
        self.backend.purge_stream(&StreamName::new(stream)?, purge).await
    }

    /// The message at `seq`.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`, `MessageNotFound`.
    pub async fn get(&self, stream: impl AsRef<str>, seq: u64) -> Result<Message> {
        self.backend.get_message(&StreamName::new(stream)?, seq).await
    }

    /// The last message of `subject`.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `InvalidSubject`, `StreamNotFound`, `MessageNotFound`.
    pub async fn last(&self, stream: impl AsRef<str>, subject: impl AsRef<str>) -> Result<Message> {
        self.backend
            .last_message(&StreamName::new(stream)?, &Subject::new(subject)?)
            .await
    }

    /// Messages in seq order from a seq or a time, filtered, up to a limit.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `StreamNotFound`.
    pub async fn read(&self, stream: impl AsRef<str>, range: ReadRange) -> Result<Vec<Message>> {
        self.backend.read_range(&StreamName::new(stream)?, range).await
    }

    /// Messages of one subject from `from_seq`, through the per-subject index.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `InvalidSubject`, `StreamNotFound`.
    pub async fn read_subject(
        &self,
        stream: impl AsRef<str>,
        subject: impl AsRef<str>,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.backend
            .read_subject(&StreamName::new(stream)?, &Subject::new(subject)?, from_seq, limit)
            .await
    }

    /// A key-value bucket named `bucket`: configure it, then
    /// [`open`](KvBuilder::open) creates it or binds to it.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// let bus = herald::Bus::memory()?;
    /// let config = bus.kv("config").history(5).open().await?;
    /// let first = config.put("db.url", "postgres://a").await?;
    /// config.update("db.url", "postgres://b", first).await?;
    /// // A write from a stale revision loses.
    /// assert!(config.update("db.url", "postgres://c", first).await.is_err());
    /// assert_eq!(&config.get("db.url").await?.unwrap().value[..], b"postgres://b");
    /// # Ok::<(), herald::Error>(())
    /// # })?;
    /// # Ok::<(), herald::Error>(())
    /// ```
    pub fn kv(&self, bucket: impl Into<String>) -> KvBuilder {
        KvBuilder::new(self.clone(), bucket.into())
    }

    /// Sends a request to one responder of `subject` and waits up to
    /// `timeout` for its reply.
    ///
    /// # Examples
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
    /// use std::time::Duration;
    /// use herald::{ErrorKind, Reply};
    ///
    /// let bus = herald::Bus::memory()?;
    /// let wait = Duration::from_secs(1);
    /// let missing = bus.request("prices.get", "EUR", wait).await.unwrap_err();
    /// assert_eq!(missing.kind(), ErrorKind::NoResponders); // at once, not after the timeout
    ///
    /// let _service = bus
    ///     .serve("prices.*", |req| async move { Reply::new(format!("1.08 for {}", String::from_utf8_lossy(&req.payload))) })
    ///     .await?;
    /// let reply = bus.request("prices.get", "EUR", wait).await?;
    /// assert_eq!(&reply.payload[..], b"1.08 for EUR");
    /// # Ok::<(), herald::Error>(())
    /// # })?;
    /// # Ok::<(), herald::Error>(())
    /// ```
    ///
    /// # Errors
    ///
    /// `InvalidSubject` (also for reserved `$` subjects); `NoResponders` at
    /// once when nobody serves the subject; `Timeout`; `Closed` when the
    /// responder dropped the request.
    pub async fn request(
        &self,
        subject: impl AsRef<str>,
        payload: impl Into<Bytes>,
        timeout: std::time::Duration,
    ) -> Result<herald_core::Reply> {
        self.request_with_headers(subject, herald_core::Headers::new(), payload, timeout)
            .await
    }

    /// [`request`](Bus::request) with headers.
    ///
    /// # Errors
    ///
    /// As [`request`](Bus::request).
    pub async fn request_with_headers(
        &self,
        subject: impl AsRef<str>,
        headers: herald_core::Headers,
        payload: impl Into<Bytes>,
        timeout: std::time::Duration,
    ) -> Result<herald_core::Reply> {
        let subject = Subject::new(subject)?;
        check_not_reserved(subject.as_str())?;
        self.backend.request(subject, headers, payload.into(), timeout).await
    }

    /// Starts receiving requests on subjects matching `pattern`; answer each
    /// with [`Request::respond`](herald_core::Request::respond).
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid or reserved pattern.
    pub async fn responder(&self, pattern: impl AsRef<str>) -> Result<crate::service::Service> {
        let pattern = Pattern::new(pattern)?;
        check_not_reserved(pattern.as_str())?;
        Ok(crate::service::Service::new(self.backend.serve(pattern).await?))
    }

    /// Answers every request on subjects matching `pattern` with `handler`,
    /// each on its own task, until the returned handle is dropped.
    ///
    /// # Errors
    ///
    /// As [`responder`](Bus::responder).
    pub async fn serve<F, Fut>(&self, pattern: impl AsRef<str>, handler: F) -> Result<crate::service::ServiceHandle>
    where
        F: Fn(crate::service::Incoming) -> Fut + Send + Sync + 'static,
        Fut: std::future::Future<Output = herald_core::Reply> + Send + 'static,
    {
        Ok(crate::service::spawn(self.responder(pattern).await?, handler))
    }

    /// An event processor on durable consumer `consumer` of `stream`: add
    /// routes, then [`start`](ProcessorBuilder::start) it.
    pub fn processor(&self, stream: impl Into<String>, consumer: impl Into<String>) -> crate::ProcessorBuilder {
        crate::ProcessorBuilder::new(self.clone(), stream.into(), consumer.into())
    }

    /// Publishes `messages` and acks `received` in one transaction
    /// (consume-transform-produce, embedded): after a crash both happened or
    /// neither did, so the step runs exactly once.
    ///
    /// # Errors
    ///
    /// `Unsupported` on a non-embedded bus; `LeaseLost` (nothing published);
    /// `InvalidSubject` for a reserved subject; every error of
    /// [`publish_batch`](Bus::publish_batch) (nothing acked).
    pub async fn publish_and_ack(
        &self,
        received: &crate::Received,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<PublishAck>> {
        for message in &messages {
            check_not_reserved(message.subject.as_str())?;
        }
        let consumer = received.consumer();
        self.embedded()?
            .publish_and_ack(
                consumer.stream(),
                consumer.name(),
                consumer.member_name(),
                received.message.seq,
                received.deliveries,
                messages,
            )
            .await
    }

    /// The bus's time: the embedded engine's clock (the one messages are
    /// stamped with), or the system clock for other backends.
    pub fn now(&self) -> herald_core::Timestamp {
        self.engine
            .as_ref()
            .map_or_else(herald_core::Timestamp::now, Engine::now)
    }

    /// A job queue named `queue`: configure it, then
    /// [`open`](JobsBuilder::open) creates it or binds to it.
    pub fn jobs(&self, queue: impl Into<String>) -> JobsBuilder {
        JobsBuilder::new(self.clone(), queue.into())
    }

    /// Runs age and TTL retention now (embedded; it also runs every second).
    ///
    /// # Errors
    ///
    /// `Unsupported` on a non-embedded bus; `Storage`.
    pub async fn enforce_retention(&self) -> Result<()> {
        self.embedded()?.enforce_retention().await
    }

    /// A receiver of a stream's last seq, updated after each commit (embedded).
    ///
    /// # Errors
    ///
    /// `Unsupported` on a non-embedded bus; `InvalidName`, `StreamNotFound`.
    pub fn watch_head(&self, stream: impl AsRef<str>) -> Result<watch::Receiver<u64>> {
        self.embedded()?.watch_head(&StreamName::new(stream)?)
    }

    /// The info of `stream`, creating it from `config` first if it is missing
    /// (Herald's own `$` streams included). A stream created meanwhile by
    /// someone else is bound to as it is.
    pub(crate) async fn open_or_create_stream(
        &self,
        stream: &StreamName,
        config: impl FnOnce() -> Result<StreamConfig>,
    ) -> Result<StreamInfo> {
        match self.backend.stream_info(stream).await {
            Err(err) if err.kind() == ErrorKind::StreamNotFound => match self.backend.create_stream(config()?).await {
                Err(err) if err.kind() == ErrorKind::StreamExists => self.backend.stream_info(stream).await,
                created => created,
            },
            found => found,
        }
    }

    fn embedded(&self) -> Result<&Engine> {
        self.engine
            .as_ref()
            .ok_or_else(|| Error::new(ErrorKind::Unsupported, "only an embedded bus supports this"))
    }
}

/// Subjects and patterns starting with `$` belong to Herald's own streams.
fn check_not_reserved(subject: &str) -> Result<()> {
    if subject.starts_with('$') {
        return Err(Error::new(
            ErrorKind::InvalidSubject,
            format!("subjects starting with `$` are reserved for Herald (`{subject}`)"),
        ));
    }
    Ok(())
}
