//! Streams on JetStream: admin, publishing (single and atomic batches) and
//! reads through direct gets.

use std::collections::HashMap;
use std::num::{NonZeroU32, NonZeroU64};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use async_nats::jetstream::stream as js;
use async_trait::async_trait;
use futures_util::StreamExt;
use herald_core::{
    Discard, Durability, Error, ErrorKind, MAX_HEADER_BYTES, Message, OutgoingMessage, Pattern, PublishAck, Purge,
    ReadFrom, ReadRange, Result, Retention, StreamBackend, StreamConfig, StreamInfo, StreamName, StreamState, Subject,
};
use serde::{Deserialize, Serialize};

use crate::NatsBackend;
use crate::api::{self, JsError, code};
use crate::codec;

/// The stream metadata key holding Herald's own view of a stream's config.
const CONFIG_KEY: &str = "herald.config";
/// JetStream's smallest duplicate window.
const MIN_DUPLICATE_WINDOW: Duration = Duration::from_millis(100);
/// JetStream's largest atomic batch.
pub(crate) const MAX_ATOMIC_BATCH: usize = 1000;
/// Messages a direct get returns per page.
const PAGE: usize = 1000;
/// How long the route cache trusts what it read.
const CACHE_FRESH: Duration = Duration::from_secs(2);

/// Which stream captures which subjects, as last read from the server.
#[derive(Default)]
pub(crate) struct StreamCache {
    state: RwLock<CacheState>,
    /// A background refresh is under way.
    refreshing: std::sync::atomic::AtomicBool,
}

#[derive(Default)]
struct CacheState {
    configs: HashMap<StreamName, Arc<StreamConfig>>,
    loaded: Option<Instant>,
}

impl StreamCache {
    fn find(&self, subject: &Subject, fresh_only: bool) -> Option<Arc<StreamConfig>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        if fresh_only && state.loaded.is_none_or(|at| at.elapsed() > CACHE_FRESH) {
            return None;
        }
        state.configs.values().find(|c| c.captures(subject)).cloned()
    }

    fn get(&self, stream: &StreamName) -> Option<Arc<StreamConfig>> {
        let state = self.state.read().unwrap_or_else(|e| e.into_inner());
        state.configs.get(stream).cloned()
    }

    fn replace(&self, configs: impl IntoIterator<Item = StreamConfig>) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.configs = configs.into_iter().map(|c| (c.name.clone(), Arc::new(c))).collect();
        state.loaded = Some(Instant::now());
    }

    fn put(&self, config: StreamConfig) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.configs.insert(config.name.clone(), Arc::new(config));
    }

    fn remove(&self, stream: &StreamName) {
        let mut state = self.state.write().unwrap_or_else(|e| e.into_inner());
        state.configs.remove(stream);
    }

    fn invalidate(&self) {
        self.state.write().unwrap_or_else(|e| e.into_inner()).loaded = None;
    }
}

fn limit(n: Option<NonZeroU64>) -> i64 {
    n.map_or(-1, |n| i64::try_from(n.get()).unwrap_or(i64::MAX))
}

fn unlimit(n: i64) -> Option<NonZeroU64> {
    u64::try_from(n).ok().and_then(NonZeroU64::new)
}

/// Herald's stream config as a JetStream one.
pub(crate) fn to_nats(config: &StreamConfig, replicas: usize) -> Result<js::Config> {
    let herald = serde_json::to_string(config).map_err(|e| api::bad_answer("encoding a stream config", e))?;
    let mut window = config
        .duplicate_window
        .unwrap_or(MIN_DUPLICATE_WINDOW)
        .max(MIN_DUPLICATE_WINDOW);
    if let Some(age) = config.max_age {
        // JetStream wants the window within max_age; ids older than the age are gone anyway.
        window = window.min(age.max(MIN_DUPLICATE_WINDOW));
    }
    let max_message_size = config.max_payload.get() as usize + MAX_HEADER_BYTES + 4096;
    Ok(js::Config {
        name: config.name.to_string(),
        subjects: config.subjects.iter().map(|p| p.as_str().to_owned()).collect(),
        max_messages: limit(config.max_msgs),
        max_bytes: limit(config.max_bytes),
        max_messages_per_subject: limit(config.max_msgs_per_subject),
        max_age: config.max_age.unwrap_or_default(),
        max_message_size: i32::try_from(max_message_size).unwrap_or(i32::MAX),
        retention: match config.retention {
            Retention::Limits => js::RetentionPolicy::Limits,
            Retention::Interest => js::RetentionPolicy::Interest,
            Retention::WorkQueue => js::RetentionPolicy::WorkQueue,
        },
        discard: match config.discard {
            Discard::Old => js::DiscardPolicy::Old,
            Discard::New => js::DiscardPolicy::New,
        },
        discard_new_per_subject: config.discard == Discard::New && config.max_msgs_per_subject.is_some(),
        duplicate_window: window,
        storage: js::StorageType::File,
        num_replicas: replicas,
        allow_direct: true,
        allow_message_ttl: true,
        allow_atomic_publish: true,
        persist_mode: match config.durability {
            Durability::Fsync => None,
            Durability::Relaxed => Some(js::PersistenceMode::Async),
        },
        metadata: HashMap::from([(CONFIG_KEY.to_owned(), herald)]),
        ..Default::default()
    })
}

/// A JetStream stream config as Herald's: the one Herald stored, or one read
/// off JetStream's settings for a stream Herald did not create.
fn from_nats(config: &js::Config) -> Option<StreamConfig> {
    if let Some(stored) = config.metadata.get(CONFIG_KEY)
        && let Ok(herald) = serde_json::from_str::<StreamConfig>(stored)
    {
        return Some(herald);
    }
    let mut herald = StreamConfig::new(&config.name).ok()?;
    herald.subjects = config.subjects.iter().filter_map(|s| Pattern::new(s).ok()).collect();
    herald.max_msgs = unlimit(config.max_messages);
    herald.max_bytes = unlimit(config.max_bytes);
    herald.max_msgs_per_subject = unlimit(config.max_messages_per_subject);
    herald.max_age = Some(config.max_age).filter(|a| !a.is_zero());
    if let Some(size) = u32::try_from(config.max_message_size).ok().and_then(NonZeroU32::new) {
        herald.max_payload = size;
    }
    herald.retention = match config.retention {
        js::RetentionPolicy::Limits => Retention::Limits,
        js::RetentionPolicy::Interest => Retention::Interest,
        js::RetentionPolicy::WorkQueue => Retention::WorkQueue,
    };
    herald.discard = match config.discard {
        js::DiscardPolicy::Old => Discard::Old,
        js::DiscardPolicy::New => Discard::New,
    };
    herald.duplicate_window = Some(config.duplicate_window).filter(|w| !w.is_zero());
    herald.subject_index = true;
    Some(herald)
}

fn to_info(info: &js::Info) -> Option<StreamInfo> {
    let config = from_nats(&info.config)?;
    let state = &info.state;
    let empty = state.messages == 0;
    Some(StreamInfo {
        config,
        state: StreamState {
            messages: state.messages,
            bytes: state.bytes,
            first_seq: if empty {
                state.last_sequence + 1
            } else {
                state.first_sequence
            },
            first_time: api::timestamp(state.first_timestamp).filter(|_| !empty),
            last_seq: state.last_sequence,
            last_time: api::timestamp(state.last_timestamp).filter(|_| state.last_sequence > 0),
            subjects: state.subjects_count,
            // Every seq up to the last was a message; those not held were deleted.
            deleted: state.last_sequence.saturating_sub(state.messages),
        },
        created: api::timestamp(info.created).unwrap_or_default(),
    })
}

fn unreadable(name: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("stream `{name}` has a name or config Herald cannot read"),
    )
}

#[derive(Deserialize)]
struct StreamList {
    #[serde(default)]
    total: usize,
    #[serde(default)]
    streams: Option<Vec<js::Info>>,
}

#[derive(Serialize)]
struct Offset {
    offset: usize,
}

#[derive(Deserialize)]
struct Success {
    #[serde(default)]
    purged: u64,
}

#[derive(Serialize, Default)]
struct PurgeRequest<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    filter: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<u64>,
}

/// A direct get: one message, or a batch.
#[derive(Serialize, Default, Clone)]
pub(crate) struct DirectGet {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_by_subj: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) next_by_subj: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) batch: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) start_time: Option<String>,
}

/// What a publish returns on the wire.
#[derive(Deserialize)]
pub(crate) struct WireAck {
    #[serde(default)]
    pub(crate) error: Option<JsError>,
    #[serde(default)]
    pub(crate) stream: String,
    #[serde(default)]
    pub(crate) seq: u64,
    #[serde(default)]
    pub(crate) duplicate: bool,
}

/// The seq an expectation of `message` named, for a wrong-seq error.
fn expected_of(message: &OutgoingMessage) -> u64 {
    message
        .expected_last_subject_seq
        .or(message.expected_last_seq)
        .unwrap_or(0)
}

fn check_payload(config: &StreamConfig, message: &OutgoingMessage) -> Result<()> {
    let (size, limit) = (message.payload.len() as u64, u64::from(config.max_payload.get()));
    if size > limit {
        return Err(Error::payload_too_large(
            size,
            limit,
            &format!("stream `{}`'s", config.name),
        ));
    }
    Ok(())
}

impl NatsBackend {
    /// Every stream, reloading the route cache.
    async fn load_streams(&self) -> Result<Vec<StreamInfo>> {
        let mut infos = Vec::new();
        let mut seen = 0;
        loop {
            let page: StreamList = api::call(
                &self.inner.client,
                "STREAM.LIST".into(),
                &Offset { offset: seen },
                "listing streams",
            )
            .await?;
            let streams = page.streams.unwrap_or_default();
            seen += streams.len();
            infos.extend(streams.iter().filter_map(to_info));
            if streams.is_empty() || seen >= page.total {
                break;
            }
        }
        self.inner.streams.replace(infos.iter().map(|i| i.config.clone()));
        Ok(infos)
    }

    /// The config of `stream`, from the cache or the server.
    pub(crate) async fn stream_config(&self, stream: &StreamName) -> Result<Arc<StreamConfig>> {
        if let Some(config) = self.inner.streams.get(stream) {
            return Ok(config);
        }
        let info = self.stream_info(stream).await?;
        Ok(Arc::new(info.config))
    }

    /// The stream that captures `subject`, if any.
    pub(crate) async fn route(&self, subject: &Subject) -> Result<Option<Arc<StreamConfig>>> {
        if let Some(config) = self.inner.streams.find(subject, true) {
            return Ok(Some(config));
        }
        if let Some(config) = self.inner.streams.find(subject, false) {
            // Known but not fresh: used as it is while the list is read again
            // in the background, so no publish waits on a listing. JetStream
            // routes the message by its subject itself; the config only
            // answers the payload limit and the dedup window meanwhile.
            self.refresh_in_background();
            return Ok(Some(config));
        }
        self.load_streams().await?;
        Ok(self.inner.streams.find(subject, false))
    }

    fn refresh_in_background(&self) {
        if self
            .inner
            .streams
            .refreshing
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            self.inner
                .streams
                .refreshing
                .store(false, std::sync::atomic::Ordering::Release);
            return;
        };
        let backend = self.clone();
        runtime.spawn(async move {
            if let Err(err) = backend.load_streams().await {
                tracing::debug!(err = %herald_core::cause_chain(&err), "could not refresh the stream list");
            }
            backend
                .inner
                .streams
                .refreshing
                .store(false, std::sync::atomic::Ordering::Release);
        });
    }

    /// The stream for `subject`, created (named by its first token) when none
    /// captures it; `largest` is the biggest payload about to be published, so
    /// an oversize publish creates nothing.
    async fn route_or_create(&self, subject: &Subject, largest: u64) -> Result<Arc<StreamConfig>> {
        if let Some(config) = self.route(subject).await? {
            return Ok(config);
        }
        let no_stream = || format!("no stream captures subject `{subject}`");
        if subject.is_reserved() {
            return Err(Error::new(ErrorKind::SubjectConflict, no_stream()));
        }
        let name = StreamName::new(subject.first_token()).map_err(|e| {
            Error::new(
                ErrorKind::SubjectConflict,
                format!(
                    "{}, and `{}` cannot name a new one: {e}",
                    no_stream(),
                    subject.first_token()
                ),
            )
        })?;
        let config = StreamConfig::with_name(name);
        let limit = u64::from(config.max_payload.get());
        if largest > limit {
            return Err(Error::payload_too_large(largest, limit, "the default"));
        }
        match self.create_stream(config).await {
            Ok(info) if info.config.captures(subject) => Ok(Arc::new(info.config)),
            Ok(_) | Err(_) => match self.route(subject).await? {
                Some(config) => Ok(config),
                None => Err(Error::new(
                    ErrorKind::SubjectConflict,
                    format!(
                        "{}; stream `{}` exists but does not capture it",
                        no_stream(),
                        subject.first_token()
                    ),
                )),
            },
        }
    }

    /// Sends one message as a JetStream publish and reads its ack.
    async fn send(&self, message: &OutgoingMessage, headers: HeaderMap) -> Result<WireAck> {
        let reply = self
            .inner
            .client
            .request_with_headers(message.subject.to_string(), headers, message.payload.clone())
            .await
            .map_err(|e| api::request_error(e, &format!("publishing to `{}`", message.subject)))?;
        serde_json::from_slice(&reply.payload).map_err(|e| api::bad_answer("a publish ack", e))
    }

    fn ack_of(&self, ack: WireAck, message: &OutgoingMessage) -> Result<PublishAck> {
        if let Some(err) = ack.error {
            return Err(match err.err_code {
                code::STREAM_WRONG_LAST_SEQUENCE => api::wrong_seq(&err, expected_of(message)),
                _ => api::js_error(err, &format!("publishing to `{}`", message.subject)),
            });
        }
        Ok(PublishAck {
            stream: StreamName::new(&ack.stream)?,
            seq: ack.seq,
            duplicate: ack.duplicate,
        })
    }

    /// One direct get of one message (`None` when there is none).
    pub(crate) async fn direct_one(&self, stream: &StreamName, request: &DirectGet) -> Result<Option<Message>> {
        let body = serde_json::to_vec(request).map_err(|e| api::bad_answer("a direct get", e))?;
        let answer = self
            .inner
            .client
            .request(format!("$JS.API.DIRECT.GET.{stream}"), body.into())
            .await;
        match answer {
            Ok(m) if m.status.is_some_and(|s| s.as_u16() == 404) => Ok(None),
            Ok(m) if m.status.is_some_and(|s| s.as_u16() >= 400) => Err(Error::new(
                ErrorKind::Storage,
                format!(
                    "reading `{stream}`: {}",
                    m.description.as_deref().unwrap_or("a direct get failed")
                ),
            )),
            Ok(m) => codec::from_direct(stream, &m).map(Some),
            Err(e) if e.kind() == async_nats::RequestErrorKind::NoResponders => Err(self.missing(stream).await),
            Err(e) => Err(api::request_error(e, &format!("reading `{stream}`"))),
        }
    }

    /// The error for a stream that did not answer a direct get.
    async fn missing(&self, stream: &StreamName) -> Error {
        match self.stream_info(stream).await {
            Err(err) => err,
            Ok(_) => Error::new(
                ErrorKind::Unsupported,
                format!("stream `{stream}` does not allow direct gets, which Herald reads with"),
            ),
        }
    }

    /// A batch of direct gets: up to `batch` messages from `request`'s start.
    /// Returns them and whether the stream holds more matches after them.
    pub(crate) async fn direct_batch(&self, stream: &StreamName, request: &DirectGet) -> Result<(Vec<Message>, bool)> {
        let client = &self.inner.client;
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| api::closed("subscribing for a direct get", e))?;
        let body = serde_json::to_vec(request).map_err(|e| api::bad_answer("a direct get", e))?;
        client
            .publish_with_reply(format!("$JS.API.DIRECT.GET.{stream}"), inbox, body.into())
            .await
            .map_err(|e| api::closed("sending a direct get", e))?;
        let mut messages = Vec::new();
        let mut more = false;
        loop {
            let next = tokio::time::timeout(Duration::from_secs(10), replies.next()).await;
            let Ok(Some(reply)) = next else {
                return Err(Error::new(ErrorKind::Timeout, format!("reading `{stream}`: no answer")));
            };
            // Each message, and the end-of-batch status, says how many matches remain.
            let pending = reply
                .headers
                .as_ref()
                .and_then(|h| h.get(codec::NUM_PENDING))
                .and_then(|v| v.as_str().parse::<u64>().ok());
            match reply.status.map(|s| s.as_u16()) {
                None => {
                    more = pending.is_some_and(|n| n > 0);
                    messages.push(codec::from_direct(stream, &reply)?);
                }
                Some(204) => return Ok((messages, pending.map_or(more, |n| n > 0))),
                Some(404 | 408) => return Ok((messages, false)),
                Some(503) => return Err(self.missing(stream).await),
                Some(other) => {
                    return Err(Error::new(
                        ErrorKind::Storage,
                        format!(
                            "reading `{stream}`: status {other} {}",
                            reply.description.as_deref().unwrap_or_default()
                        ),
                    ));
                }
            }
        }
    }

    /// Messages from `from`, matching one `filter` (JetStream filters by one
    /// pattern; several are applied here), up to `limit`.
    pub(crate) async fn read(
        &self,
        stream: &StreamName,
        from: ReadFrom,
        filter: &[Pattern],
        limit: usize,
    ) -> Result<Vec<Message>> {
        let mut out = Vec::new();
        let next_by_subj = match filter {
            [one] => Some(one.as_str().to_owned()),
            _ => None,
        };
        let mut request = DirectGet {
            next_by_subj,
            ..DirectGet::default()
        };
        match from {
            ReadFrom::Seq(seq) => request.seq = Some(seq.max(1)),
            ReadFrom::Time(time) => request.start_time = Some(api::format_time(time)),
        }
        if limit == 0 {
            // Still report an unknown stream.
            self.stream_info(stream).await?;
            return Ok(out);
        }
        while out.len() < limit {
            request.batch = Some((limit - out.len()).min(PAGE));
            let (page, more) = self.direct_batch(stream, &request).await?;
            let Some(last) = page.last().map(|m| m.seq) else {
                break;
            };
            out.extend(
                page.into_iter()
                    .filter(|m| filter.len() < 2 || filter.iter().any(|p| p.matches(&m.subject))),
            );
            if !more {
                break;
            }
            request.seq = Some(last + 1);
            request.start_time = None;
        }
        out.truncate(limit);
        Ok(out)
    }

    /// Publishes `messages` (deduplicated, one stream) as one atomic batch.
    /// Each message comes with its headers, already encoded.
    async fn atomic_batch(&self, stream: &StreamConfig, batch: Vec<(&OutgoingMessage, HeaderMap)>) -> Result<u64> {
        let client = &self.inner.client;
        let batch_id = uuid::Uuid::now_v7().simple().to_string();
        let dedup = stream.duplicate_window.is_some();
        let last = batch.len() - 1;
        let messages: Vec<&OutgoingMessage> = batch.iter().map(|(m, _)| *m).collect();
        let mut final_ack = None;
        for (i, (message, headers)) in batch.into_iter().enumerate() {
            let mut headers = codec::with_id(headers, message, dedup)?;
            headers.insert(
                HeaderName::from_static("Nats-Batch-Id"),
                HeaderValue::from(batch_id.as_str()),
            );
            headers.insert(HeaderName::from_static("Nats-Batch-Sequence"), HeaderValue::from(i + 1));
            if i == last {
                headers.insert(HeaderName::from_static("Nats-Batch-Commit"), HeaderValue::from("1"));
            }
            // The first message, every 100th (flow control) and the commit wait for the server.
            if i == 0 || i == last || i % 100 == 0 {
                let reply = client
                    .request_with_headers(message.subject.to_string(), headers, message.payload.clone())
                    .await
                    .map_err(|e| api::request_error(e, &format!("publishing a batch to `{}`", stream.name)))?;
                if reply.payload.is_empty() {
                    continue;
                }
                let ack: WireAck =
                    serde_json::from_slice(&reply.payload).map_err(|e| api::bad_answer("a batch ack", e))?;
                if let Some(err) = ack.error {
                    let first_expecting = messages
                        .iter()
                        .find(|m| m.expected_last_seq.is_some() || m.expected_last_subject_seq.is_some())
                        .copied()
                        .unwrap_or(messages[0]);
                    return Err(match err.err_code {
                        code::STREAM_WRONG_LAST_SEQUENCE => api::wrong_seq(&err, expected_of(first_expecting)),
                        // The batch form names no seq: read the actual one.
                        code::ATOMIC_BATCH_WRONG_LAST_SEQUENCE => self.wrong_batch_seq(stream, &messages).await?,
                        code::ATOMIC_BATCH_DUPLICATE_ID => Error::new(
                            ErrorKind::Unsupported,
                            format!(
                                "JetStream refuses an atomic batch holding a message id already stored in \
                                 `{}`'s duplicate window; publish those messages one at a time",
                                stream.name
                            ),
                        ),
                        code::ATOMIC_PUBLISH_DISABLED => Error::new(
                            ErrorKind::Unsupported,
                            format!("stream `{}` does not allow atomic batches", stream.name),
                        ),
                        _ => api::js_error(err, &format!("publishing a batch to `{}`", stream.name)),
                    });
                }
                if i == last {
                    final_ack = Some(ack.seq);
                }
            } else {
                client
                    .publish_with_headers(message.subject.to_string(), headers, message.payload.clone())
                    .await
                    .map_err(|e| api::closed("publishing a batch", e))?;
            }
        }
        final_ack.ok_or_else(|| Error::new(ErrorKind::Internal, "a batch commit was not acknowledged"))
    }
}

impl NatsBackend {
    /// The error for a batch whose expectation failed, with the actual seq of
    /// the first expectation that does not hold now.
    async fn wrong_batch_seq(&self, stream: &StreamConfig, messages: &[&OutgoingMessage]) -> Result<Error> {
        for message in messages {
            let (what, expected, actual) = if let Some(expected) = message.expected_last_subject_seq {
                let request = DirectGet {
                    last_by_subj: Some(message.subject.to_string()),
                    ..DirectGet::default()
                };
                let last = self.direct_one(&stream.name, &request).await?;
                (
                    format!("subject `{}`", message.subject),
                    expected,
                    last.map_or(0, |m| m.seq),
                )
            } else if let Some(expected) = message.expected_last_seq {
                let last = self.stream_info(&stream.name).await?.state.last_seq;
                (format!("stream `{}`", stream.name), expected, last)
            } else {
                continue;
            };
            if expected != actual {
                return Ok(Error::wrong_expected_seq(&what, expected, actual));
            }
        }
        Ok(Error::new(
            ErrorKind::WrongExpectedSeq,
            format!("a batch to `{}` expected a last seq that did not hold", stream.name),
        ))
    }
}

#[async_trait]
impl StreamBackend for NatsBackend {
    async fn create_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        config.validate()?;
        let body = to_nats(&config, self.inner.replicas)?;
        let info: js::Info = api::call(
            &self.inner.client,
            format!("STREAM.CREATE.{}", config.name),
            &body,
            &format!("creating stream `{}`", config.name),
        )
        .await
        .map_err(|e| match e.kind() {
            ErrorKind::Storage if e.message().contains("overlap") => {
                Error::new(ErrorKind::SubjectConflict, e.message().to_owned())
            }
            _ => e,
        })?;
        let info = to_info(&info).ok_or_else(|| unreadable(config.name.as_str()))?;
        if info.config != config {
            return Err(Error::new(
                ErrorKind::StreamExists,
                format!("stream `{}` exists with another configuration", config.name),
            ));
        }
        self.inner.streams.put(info.config.clone());
        Ok(info)
    }

    async fn update_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        config.validate()?;
        let current = self.stream_info(&config.name).await?.config;
        if current.subject_index != config.subject_index {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "stream `{}`: subject_index is fixed when the stream is created",
                    config.name
                ),
            ));
        }
        let body = to_nats(&config, self.inner.replicas)?;
        let info: js::Info = api::call(
            &self.inner.client,
            format!("STREAM.UPDATE.{}", config.name),
            &body,
            &format!("updating stream `{}`", config.name),
        )
        .await?;
        let info = to_info(&info).ok_or_else(|| unreadable(config.name.as_str()))?;
        self.inner.streams.put(info.config.clone());
        Ok(info)
    }

    async fn stream_info(&self, stream: &StreamName) -> Result<StreamInfo> {
        let info: js::Info = api::call(
            &self.inner.client,
            format!("STREAM.INFO.{stream}"),
            &(),
            &format!("stream `{stream}`"),
        )
        .await?;
        let info = to_info(&info).ok_or_else(|| unreadable(stream.as_str()))?;
        self.inner.streams.put(info.config.clone());
        Ok(info)
    }

    async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        let mut infos = self.load_streams().await?;
        infos.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        Ok(infos)
    }

    /// Deletes the stream, then its consumers' dead-letter streams (and
    /// theirs). JetStream deletes one stream per call: a failure part-way
    /// leaves dead-letter streams that a second delete of them removes.
    async fn delete_stream(&self, stream: &StreamName) -> Result<()> {
        let mut doomed = vec![stream.clone()];
        let mut next = 0;
        while let Some(name) = doomed.get(next).cloned() {
            next += 1;
            let consumers = match herald_core::ConsumerBackend::list_consumers(self, &name).await {
                Ok(consumers) => consumers,
                // A dead-letter stream that was never created, or went already.
                Err(err) if next > 1 && err.kind() == ErrorKind::StreamNotFound => continue,
                Err(err) => return Err(err),
            };
            let dead_letters = consumers
                .iter()
                .filter_map(|c| Some((herald_core::dead_letter_stream(&name, &c.config.name)?, &c.config.name)));
            for (dlq, consumer) in dead_letters {
                if doomed.contains(&dlq) {
                    continue;
                }
                // Only its own: another consumer's may have the same name.
                match self.stream_info(&dlq).await {
                    Ok(info) if herald_core::owns_dead_letter_stream(&name, consumer, &info.config) => doomed.push(dlq),
                    Ok(_) => {}
                    Err(err) if err.kind() == ErrorKind::StreamNotFound => {}
                    Err(err) => return Err(err),
                }
            }
            let deleted: Result<serde_json::Value> = api::call(
                &self.inner.client,
                format!("STREAM.DELETE.{name}"),
                &(),
                &format!("deleting stream `{name}`"),
            )
            .await;
            match deleted {
                Ok(_) => {}
                Err(err) if next > 1 && err.kind() == ErrorKind::StreamNotFound => {}
                Err(err) => return Err(err),
            }
            self.inner.streams.remove(&name);
            self.inner.streams.invalidate();
            self.forget_consumers_of(&name);
        }
        Ok(())
    }

    async fn purge_stream(&self, stream: &StreamName, purge: Purge) -> Result<u64> {
        let request = PurgeRequest {
            filter: purge.subject.as_ref().map(Subject::as_str),
            seq: purge.before_seq,
        };
        let done: Success = api::call(
            &self.inner.client,
            format!("STREAM.PURGE.{stream}"),
            &request,
            &format!("purging `{stream}`"),
        )
        .await?;
        Ok(done.purged)
    }

    async fn publish(&self, message: OutgoingMessage) -> Result<PublishAck> {
        message.validate()?;
        let encoded = codec::encode(&message)?;
        for attempt in 0..2 {
            let config = self
                .route_or_create(&message.subject, message.payload.len() as u64)
                .await?;
            check_payload(&config, &message)?;
            let headers = codec::with_id(encoded.clone(), &message, config.duplicate_window.is_some())?;
            match self.send(&message, headers).await {
                // The stream went away since it was cached: look again once.
                Err(err) if err.kind() == ErrorKind::NoResponders && attempt == 0 => {
                    self.inner.streams.remove(&config.name);
                    self.inner.streams.invalidate();
                }
                Err(err) if err.kind() == ErrorKind::NoResponders => {
                    return Err(Error::new(
                        ErrorKind::SubjectConflict,
                        format!("no stream captures subject `{}`", message.subject),
                    ));
                }
                sent => return self.ack_of(sent?, &message),
            }
        }
        Err(Error::new(ErrorKind::Internal, "publish retried without an answer"))
    }

    async fn publish_batch(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<PublishAck>> {
        let Some(first) = messages.first() else {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "a batch needs at least one message",
            ));
        };
        let mut encoded = Vec::with_capacity(messages.len());
        for message in &messages {
            message.validate()?;
            encoded.push(codec::encode(message)?);
        }
        let largest = messages.iter().map(|m| m.payload.len() as u64).max().unwrap_or(0);
        let config = match self.route(&first.subject).await? {
            Some(config) => config,
            None if messages
                .iter()
                .all(|m| m.subject.first_token() == first.subject.first_token()) =>
            {
                self.route_or_create(&first.subject, largest).await?
            }
            None => {
                return Err(Error::new(ErrorKind::InvalidRequest, "a batch must go to one stream"));
            }
        };
        for message in &messages {
            if !config.captures(&message.subject) {
                return Err(Error::new(
                    ErrorKind::InvalidRequest,
                    format!(
                        "a batch must go to one stream: `{}` is not captured by `{}`",
                        message.subject, config.name
                    ),
                ));
            }
            check_payload(&config, message)?;
        }
        // A repeated id inside the batch is written once; its copies get the first's ack.
        let mut first_of: HashMap<&str, usize> = HashMap::new();
        let mut unique = Vec::new();
        let mut slot = Vec::with_capacity(messages.len());
        for (message, headers) in messages.iter().zip(encoded) {
            match message.id.as_deref().filter(|_| config.duplicate_window.is_some()) {
                Some(id) if first_of.contains_key(id) => slot.push((first_of[id], true)),
                id => {
                    if let Some(id) = id {
                        first_of.insert(id, unique.len());
                    }
                    slot.push((unique.len(), false));
                    unique.push((message, headers));
                }
            }
        }
        let acks: Vec<PublishAck> = if unique.len() == 1 {
            // One message is a plain publish (JetStream dedups it as such).
            let (message, headers) = unique.pop().expect("one message");
            let headers = codec::with_id(headers, message, config.duplicate_window.is_some())?;
            vec![self.ack_of(self.send(message, headers).await?, message)?]
        } else if unique.len() > MAX_ATOMIC_BATCH {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!(
                    "JetStream commits at most {MAX_ATOMIC_BATCH} messages atomically; this batch has {}",
                    unique.len()
                ),
            ));
        } else {
            let count = unique.len() as u64;
            let last = self.atomic_batch(&config, unique).await?;
            let first_seq = (last + 1).checked_sub(count).ok_or_else(|| {
                Error::new(
                    ErrorKind::Internal,
                    format!("JetStream answered a batch of {count} with last seq {last}"),
                )
            })?;
            (0..count)
                .map(|i| PublishAck {
                    stream: config.name.clone(),
                    seq: first_seq + i,
                    duplicate: false,
                })
                .collect()
        };
        Ok(slot
            .into_iter()
            .map(|(i, repeated)| PublishAck {
                duplicate: repeated || acks[i].duplicate,
                ..acks[i].clone()
            })
            .collect())
    }

    async fn get_message(&self, stream: &StreamName, seq: u64) -> Result<Message> {
        if seq == 0 {
            self.stream_info(stream).await?;
            return Err(Error::new(ErrorKind::MessageNotFound, "there is no message 0"));
        }
        let request = DirectGet {
            seq: Some(seq),
            ..DirectGet::default()
        };
        self.direct_one(stream, &request).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::MessageNotFound,
                format!("stream `{stream}` holds no message {seq}"),
            )
        })
    }

    async fn last_message(&self, stream: &StreamName, subject: &Subject) -> Result<Message> {
        let request = DirectGet {
            last_by_subj: Some(subject.to_string()),
            ..DirectGet::default()
        };
        self.direct_one(stream, &request).await?.ok_or_else(|| {
            Error::new(
                ErrorKind::MessageNotFound,
                format!("stream `{stream}` holds no message of `{subject}`"),
            )
        })
    }

    async fn read_range(&self, stream: &StreamName, range: ReadRange) -> Result<Vec<Message>> {
        self.read(stream, range.from, &range.filter, range.limit).await
    }

    async fn read_subject(
        &self,
        stream: &StreamName,
        subject: &Subject,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        let config = self.stream_config(stream).await?;
        if !config.indexes_subjects() {
            // JetStream always indexes subjects, but Herald's contract is one:
            // a subject read on a stream without the index is refused.
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "stream `{stream}` keeps no per-subject history index, so one subject's messages cannot be \
                     read on their own; the index is chosen when a stream is created: its `subject_index` setting \
                     (or a `max_msgs_per_subject` limit), `--subject-index` in `herald streams create`"
                ),
            ));
        }
        let pattern = Pattern::new(subject.as_str())?;
        self.read(stream, ReadFrom::Seq(from_seq), &[pattern], limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_herald_stream_config_maps_onto_jetstream_and_back() {
        let config = StreamConfig::new("orders")
            .unwrap()
            .max_msgs(10)
            .max_msgs_per_subject(2)
            .discard(Discard::New)
            .max_age(Duration::from_secs(60))
            .duplicate_window(Some(Duration::from_secs(600)))
            .durability(Durability::Relaxed);
        let nats = to_nats(&config, 3).unwrap();
        assert_eq!(
            (nats.max_messages, nats.max_messages_per_subject, nats.max_bytes),
            (10, 2, -1)
        );
        assert!(nats.discard_new_per_subject);
        // JetStream wants the window within max_age.
        assert_eq!(nats.duplicate_window, Duration::from_secs(60));
        assert_eq!(nats.persist_mode, Some(js::PersistenceMode::Async));
        assert_eq!(nats.num_replicas, 3);
        assert!(nats.allow_direct && nats.allow_message_ttl && nats.allow_atomic_publish);
        assert_eq!(from_nats(&nats).unwrap(), config);
    }
}
