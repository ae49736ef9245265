//! Durable consumers as JetStream durable pull consumers with explicit acks.
//!
//! JetStream settles a delivery through the reply subject it came with, so the
//! backend keeps, per consumer, the lease it handed out for each seq: that is
//! how a stale settle is told `LeaseLost` and how members are listed. Dead
//! letters are Herald's: JetStream's `max_deliver` is set one above Herald's,
//! and the delivery past Herald's limit is moved to the dead-letter stream
//! (then termed) by whichever fetch receives it, so no advisory has to be
//! caught for a message to reach its dead-letter stream.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer as jc;
use async_trait::async_trait;
use futures_util::StreamExt;
use herald_core::{
    ConsumerBackend, ConsumerConfig, ConsumerInfo, ConsumerName, DeadLetter, Delivery, Error, ErrorKind, MAX_WAIT,
    MemberInfo, Message, OutgoingMessage, Pattern, ReadFrom, Result, Settle, StartPolicy, StreamBackend, StreamConfig,
    StreamName, Subject, Timestamp, dead_letter_names, dlq,
};
use serde::{Deserialize, Serialize};

use crate::NatsBackend;
use crate::api;
use crate::codec::Stored;
use crate::streams::DirectGet;

/// The consumer metadata key holding Herald's own config.
const CONFIG_KEY: &str = "herald.config";
/// How long a no-wait pull may take to be answered.
const NO_WAIT_ANSWER: Duration = Duration::from_millis(500);
/// How long after its lease ran out a lease record is kept for a late settle.
const LEASE_GRACE: Duration = Duration::from_secs(300);

/// What this process knows of one consumer.
pub(crate) struct ConsumerState {
    config: Mutex<ConsumerConfig>,
    leases: Mutex<HashMap<u64, Lease>>,
    members: Mutex<HashMap<ConsumerName, Timestamp>>,
    redelivered: AtomicU64,
    discarded: AtomicU64,
}

/// A delivery handed to a member and not yet settled.
struct Lease {
    /// Settled: kept a while so that the holder's repeated ack is done again.
    settled: bool,
    /// Settled by an ack (not a nak or a term): only then is an ack repeated.
    acked: bool,
    deliveries: u32,
    reply: String,
    member: ConsumerName,
    until: Instant,
}

impl Lease {
    /// Unsettled and not yet run out.
    fn held(&self, now: Instant) -> bool {
        !self.settled && self.until > now
    }
}

impl ConsumerState {
    fn new(config: ConsumerConfig) -> ConsumerState {
        ConsumerState {
            config: Mutex::new(config),
            leases: Mutex::new(HashMap::new()),
            members: Mutex::new(HashMap::new()),
            redelivered: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    fn config(&self) -> ConsumerConfig {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Deliveries this process holds unsettled leases on.
    fn in_flight(&self) -> u64 {
        let now = Instant::now();
        let leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.values().filter(|l| l.held(now)).count() as u64
    }

    fn seen(&self, member: &ConsumerName) {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(member.clone(), Timestamp::now());
    }
}

/// The consumer a dead letter comes from.
#[derive(Clone, Copy)]
struct Of<'a> {
    stream: &'a StreamName,
    consumer: &'a ConsumerName,
    state: &'a ConsumerState,
}

/// What a JetStream ack subject says about a delivery.
#[derive(Debug, PartialEq, Eq)]
struct AckInfo {
    deliveries: u32,
    stream_seq: u64,
    consumer_seq: u64,
    time: Timestamp,
    pending: u64,
}

/// Reads `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`,
/// or the longer form with a domain and account hash in front.
fn ack_info(reply: &str) -> Option<AckInfo> {
    let tokens: Vec<&str> = reply.split('.').collect();
    let at = match tokens.len() {
        9 => 4,
        n if n >= 11 => 6,
        _ => return None,
    };
    Some(AckInfo {
        deliveries: tokens[at].parse().ok()?,
        stream_seq: tokens[at + 1].parse().ok()?,
        consumer_seq: tokens[at + 2].parse().ok()?,
        time: Timestamp(tokens[at + 3].parse().ok()?),
        pending: tokens[at + 4].parse().ok()?,
    })
}

#[derive(Serialize)]
struct CreateRequest<'a> {
    stream_name: &'a str,
    config: jc::Config,
    action: &'a str,
}

#[derive(Serialize)]
struct PullRequest {
    batch: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires: Option<u64>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    no_wait: bool,
}

#[derive(Serialize)]
struct ResetRequest {
    seq: u64,
}

#[derive(Deserialize)]
struct ConsumerList {
    #[serde(default)]
    total: usize,
    #[serde(default)]
    consumers: Option<Vec<jc::Info>>,
}

#[derive(Serialize)]
struct Offset {
    offset: usize,
}

fn consumer_limit(n: Option<NonZeroU32>) -> i64 {
    n.map_or(-1, |n| i64::from(n.get()) + 1)
}

/// Herald's consumer config as JetStream's.
fn to_nats(config: &ConsumerConfig, stream: &StreamConfig) -> Result<jc::Config> {
    let herald = serde_json::to_string(config).map_err(|e| api::bad_answer("encoding a consumer config", e))?;
    let mut filters: Vec<String> = config.filters.iter().map(|p| p.as_str().to_owned()).collect();
    let deliver_policy = match config.start {
        StartPolicy::All => jc::DeliverPolicy::All,
        StartPolicy::New => jc::DeliverPolicy::New,
        StartPolicy::FromSeq(seq) => jc::DeliverPolicy::ByStartSequence {
            start_sequence: seq.max(1),
        },
        StartPolicy::FromTime(time) => jc::DeliverPolicy::ByStartTime {
            start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(time.as_nanos())).map_err(|e| {
                Error::new(ErrorKind::InvalidConfig, format!("start time out of range: {e}")).with_source(e)
            })?,
        },
        StartPolicy::LastPerSubject => {
            if filters.is_empty() {
                // JetStream wants a filter for "last per subject": the stream's own subjects.
                filters = stream.subjects.iter().map(|p| p.as_str().to_owned()).collect();
            }
            jc::DeliverPolicy::LastPerSubject
        }
    };
    // Herald's limit plus one: the extra delivery is the one that dead-letters.
    let max_deliver = consumer_limit(config.max_deliver);
    let mut backoff = config.backoff.clone();
    if let Some(max) = config.max_deliver {
        backoff.truncate(max.get() as usize);
    }
    let (filter_subject, filter_subjects) = match filters.len() {
        1 => (filters.remove(0), Vec::new()),
        _ => (String::new(), filters),
    };
    Ok(jc::Config {
        durable_name: Some(config.name.to_string()),
        name: Some(config.name.to_string()),
        deliver_policy,
        ack_policy: jc::AckPolicy::Explicit,
        ack_wait: config.lease_for(1),
        max_deliver,
        filter_subject,
        filter_subjects,
        max_ack_pending: i64::from(config.max_ack_pending.get()),
        backoff,
        metadata: HashMap::from([(CONFIG_KEY.to_owned(), herald)]),
        ..Default::default()
    })
}

/// JetStream's consumer config as Herald's: the stored one, or one read off
/// JetStream's settings for a consumer Herald did not create.
fn from_nats(config: &jc::Config) -> Option<ConsumerConfig> {
    if let Some(stored) = config.metadata.get(CONFIG_KEY)
        && let Ok(herald) = serde_json::from_str::<ConsumerConfig>(stored)
    {
        return Some(herald);
    }
    let name = config.durable_name.as_ref().or(config.name.as_ref())?;
    let mut herald = ConsumerConfig::new(name).ok()?;
    herald.filters = std::iter::once(&config.filter_subject)
        .chain(&config.filter_subjects)
        .filter(|s| !s.is_empty())
        .filter_map(|s| Pattern::new(s).ok())
        .collect();
    herald.ack_wait = config.ack_wait;
    herald.max_deliver = u32::try_from(config.max_deliver - 1).ok().and_then(NonZeroU32::new);
    herald.backoff = config.backoff.clone();
    herald.dead_letter = DeadLetter::Discard;
    Some(herald)
}

impl NatsBackend {
    /// What this process knows of a consumer, loading its config from the server
    /// the first time.
    async fn consumer_state(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<Arc<ConsumerState>> {
        let key = (stream.clone(), consumer.clone());
        if let Some(state) = self.inner.consumers.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(state.clone());
        }
        let info = self.nats_consumer_info(stream, consumer).await?;
        Ok(self.remember(stream, consumer, &info))
    }

    fn remember(&self, stream: &StreamName, consumer: &ConsumerName, info: &jc::Info) -> Arc<ConsumerState> {
        let config = from_nats(&info.config).unwrap_or_else(|| {
            let mut config = ConsumerConfig::new(consumer.as_str()).expect("a ConsumerName is a valid consumer name");
            config.dead_letter = DeadLetter::Discard;
            config
        });
        let mut consumers = self.inner.consumers.lock().unwrap_or_else(|e| e.into_inner());
        let state = consumers
            .entry((stream.clone(), consumer.clone()))
            .or_insert_with(|| Arc::new(ConsumerState::new(config.clone())))
            .clone();
        *state.config.lock().unwrap_or_else(|e| e.into_inner()) = config;
        state
    }

    pub(crate) fn forget_consumers_of(&self, stream: &StreamName) {
        self.inner
            .consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(s, _), _| s != stream);
    }

    async fn nats_consumer_info(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<jc::Info> {
        api::call(
            &self.inner.client,
            format!("CONSUMER.INFO.{stream}.{consumer}"),
            &(),
            &format!("consumer `{consumer}` of `{stream}`"),
        )
        .await
    }

    async fn to_info(&self, stream: &StreamName, info: jc::Info) -> Result<ConsumerInfo> {
        let name = ConsumerName::new(&info.name)?;
        let state = self.remember(stream, &name, &info);
        let config = state.config();
        let pending = info.num_pending + info.num_ack_pending as u64;
        let ack_floor = info.ack_floor.stream_sequence;
        let oldest_unacked_age = if pending > 0 {
            self.read(stream, ReadFrom::Seq(ack_floor + 1), &config.filters, 1)
                .await?
                .first()
                .map(|m| Timestamp::now().since(m.time))
        } else {
            None
        };
        let dead_lettered = match config.dead_letter {
            DeadLetter::PerConsumer => {
                let (dlq, _) = dead_letter_names(stream, &name);
                match self.stream_info(&dlq).await {
                    Ok(info) => info.state.last_seq,
                    Err(err) if err.kind() == ErrorKind::StreamNotFound => 0,
                    Err(err) => return Err(err),
                }
            }
            DeadLetter::Discard => state.discarded.load(Ordering::Relaxed),
        };
        let now = Instant::now();
        let mut in_flight: HashMap<ConsumerName, u64> = HashMap::new();
        for lease in state.leases.lock().unwrap_or_else(|e| e.into_inner()).values() {
            if lease.held(now) {
                *in_flight.entry(lease.member.clone()).or_default() += 1;
            }
        }
        let mut members: Vec<MemberInfo> = state
            .members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(name, last_seen)| MemberInfo {
                name: name.clone(),
                last_seen: *last_seen,
                in_flight: in_flight.get(name).copied().unwrap_or(0),
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(ConsumerInfo {
            stream: stream.clone(),
            config,
            ack_floor,
            next_seq: info.delivered.stream_sequence + 1,
            pending,
            oldest_unacked_age,
            in_flight: info.num_ack_pending as u64,
            redelivered: state
                .redelivered
                .load(Ordering::Relaxed)
                .max(info.num_redelivered as u64),
            dead_lettered,
            delivered: info.delivered.consumer_sequence,
            members,
        })
    }

    async fn upsert(&self, stream: &StreamName, config: &ConsumerConfig, action: &str) -> Result<jc::Info> {
        let stream_config = self.stream_config(stream).await?;
        let request = CreateRequest {
            stream_name: stream.as_str(),
            config: to_nats(config, &stream_config)?,
            action,
        };
        api::call(
            &self.inner.client,
            format!("CONSUMER.CREATE.{stream}.{}", config.name),
            &request,
            &format!("consumer `{}` of `{stream}`", config.name),
        )
        .await
    }

    /// One pull request: up to `batch` messages, waiting up to `expires` (or
    /// not at all).
    async fn pull(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        batch: usize,
        expires: Option<Duration>,
    ) -> Result<Vec<async_nats::Message>> {
        let client = &self.inner.client;
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| api::closed("subscribing for a fetch", e))?;
        let request = PullRequest {
            batch,
            expires: expires.map(api::nanos),
            no_wait: expires.is_none(),
        };
        let body = serde_json::to_vec(&request).map_err(|e| api::bad_answer("a pull request", e))?;
        client
            .publish_with_reply(
                format!("$JS.API.CONSUMER.MSG.NEXT.{stream}.{consumer}"),
                inbox,
                body.into(),
            )
            .await
            .map_err(|e| api::closed("sending a pull request", e))?;
        // The server ends a pull itself, but a no-wait pull on a consumer at
        // max_ack_pending (full through another process's leases) gets no
        // answer at all: it is given up as empty after a moment.
        let deadline = tokio::time::Instant::now()
            + match expires {
                Some(expires) => expires + Duration::from_secs(10),
                None => NO_WAIT_ANSWER,
            };
        let mut messages = Vec::new();
        while messages.len() < batch {
            let reply = match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(reply)) => reply,
                Ok(None) => return Err(Error::new(ErrorKind::Closed, "the NATS connection closed")),
                Err(_) if expires.is_none() => break,
                Err(_) => {
                    return Err(Error::new(
                        ErrorKind::Timeout,
                        format!("fetching from `{consumer}`: no answer"),
                    ));
                }
            };
            match reply.status.map(|s| s.as_u16()) {
                None => messages.push(reply),
                Some(100) => {}
                Some(404 | 408) => break,
                Some(503) => {
                    self.nats_consumer_info(stream, consumer).await?;
                    return Err(Error::new(ErrorKind::Timeout, "the consumer's leader did not answer"));
                }
                Some(409) => {
                    let why = reply.description.unwrap_or_default();
                    if why.to_ascii_lowercase().contains("deleted") {
                        return Err(Error::new(
                            ErrorKind::ConsumerNotFound,
                            format!("consumer `{consumer}` of `{stream}` was deleted"),
                        ));
                    }
                    break;
                }
                Some(other) => {
                    return Err(Error::new(
                        ErrorKind::Storage,
                        format!(
                            "fetching from `{consumer}`: status {other} {}",
                            reply.description.unwrap_or_default()
                        ),
                    ));
                }
            }
        }
        Ok(messages)
    }

    /// Appends a dead letter for `message` to the consumer's dead-letter stream
    /// (or counts it dropped). The id makes a repeated dead-lettering a no-op.
    async fn dead_letter(&self, of: Of<'_>, message: &Message, deliveries: u32, reason: &str) -> Result<()> {
        let Of {
            stream,
            consumer,
            state,
        } = of;
        if state.config().dead_letter == DeadLetter::Discard {
            state.discarded.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let (_, subject) = dead_letter_names(stream, consumer);
        let mut letter = OutgoingMessage::new(Subject::new(subject)?, message.payload.clone())
            .id(format!("dlq:{stream}:{consumer}:{}", message.seq));
        letter.headers = message.headers.clone();
        letter.content_type = message.content_type.clone();
        letter = letter
            .header(dlq::STREAM, stream.as_str())
            .header(dlq::SEQ, message.seq.to_string())
            .header(dlq::SUBJECT, message.subject.as_str())
            .header(dlq::CONSUMER, consumer.as_str())
            .header(dlq::DELIVERIES, deliveries.to_string())
            .header(dlq::REASON, reason);
        self.publish(letter).await.map(|_| ())
    }

    /// Sends an ack-family reply and waits for the server to confirm it.
    async fn ack_reply(&self, reply: &str, body: String) -> Result<()> {
        self.inner
            .client
            .request(reply.to_owned(), body.into())
            .await
            .map(|_| ())
            .map_err(|e| api::request_error(e, "settling a delivery"))
    }

    /// Terms a delivery after its dead letter is safely stored.
    async fn dead_letter_and_term(
        &self,
        of: Of<'_>,
        message: &Message,
        reply: &str,
        deliveries: u32,
        reason: &str,
    ) -> Result<()> {
        self.dead_letter(of, message, deliveries, reason).await?;
        self.ack_reply(reply, format!("+TERM {reason}")).await
    }
}

#[async_trait]
impl ConsumerBackend for NatsBackend {
    async fn create_consumer(&self, stream: &StreamName, config: ConsumerConfig) -> Result<ConsumerInfo> {
        config.validate_on(stream)?;
        if config.dead_letter == DeadLetter::PerConsumer {
            let (name, subject) = dead_letter_names(stream, &config.name);
            // The stream must exist before its dead-letter stream is made.
            self.stream_config(stream).await?;
            let dlq = StreamConfig::with_name(name).subjects([subject])?;
            match self.create_stream(dlq).await {
                Err(err) if err.kind() != ErrorKind::StreamExists => return Err(err),
                _ => {}
            }
        }
        let info = self.upsert(stream, &config, "create").await?;
        let info = self.to_info(stream, info).await?;
        if info.config != config {
            return Err(Error::new(
                ErrorKind::ConsumerExists,
                format!(
                    "consumer `{}` of `{stream}` exists with another configuration",
                    config.name
                ),
            ));
        }
        Ok(info)
    }

    async fn update_consumer(&self, stream: &StreamName, mut config: ConsumerConfig) -> Result<ConsumerInfo> {
        config.validate_on(stream)?;
        let current = self.consumer_state(stream, &config.name).await?;
        // The start is not a setting: it stays what it was.
        config.start = current.config().start;
        let info = self.upsert(stream, &config, "update").await?;
        self.to_info(stream, info).await
    }

    async fn delete_consumer(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<()> {
        let _: serde_json::Value = api::call(
            &self.inner.client,
            format!("CONSUMER.DELETE.{stream}.{consumer}"),
            &(),
            &format!("deleting consumer `{consumer}` of `{stream}`"),
        )
        .await?;
        self.inner
            .consumers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(stream.clone(), consumer.clone()));
        Ok(())
    }

    async fn consumer_info(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<ConsumerInfo> {
        let info = self.nats_consumer_info(stream, consumer).await?;
        self.to_info(stream, info).await
    }

    async fn list_consumers(&self, stream: &StreamName) -> Result<Vec<ConsumerInfo>> {
        let mut infos = Vec::new();
        let mut seen = 0;
        loop {
            let page: ConsumerList = api::call(
                &self.inner.client,
                format!("CONSUMER.LIST.{stream}"),
                &Offset { offset: seen },
                &format!("listing consumers of `{stream}`"),
            )
            .await?;
            let consumers = page.consumers.unwrap_or_default();
            seen += consumers.len();
            let done = consumers.is_empty() || seen >= page.total;
            for info in consumers {
                if ConsumerName::new(&info.name).is_ok() {
                    infos.push(self.to_info(stream, info).await?);
                }
            }
            if done {
                break;
            }
        }
        infos.sort_by(|a, b| a.config.name.cmp(&b.config.name));
        Ok(infos)
    }

    async fn fetch(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "a fetch must ask for at least one message",
            ));
        }
        let wait = wait.min(MAX_WAIT);
        let state = self.consumer_state(stream, consumer).await?;
        state.seen(member);
        let started = tokio::time::Instant::now();
        loop {
            let config = state.config();
            let held = state.in_flight();
            let mut raw = if held >= u64::from(config.max_ack_pending.get()) {
                // Full: JetStream would hold the pull until a slot frees.
                Vec::new()
            } else {
                self.pull(stream, consumer, max, None).await?
            };
            let left = wait.saturating_sub(started.elapsed());
            if raw.is_empty() && left >= Duration::from_millis(1) {
                // Nothing now: wait for the first, then take what else is there.
                raw = self.pull(stream, consumer, 1, Some(left)).await?;
                if !raw.is_empty() && max > 1 {
                    raw.extend(self.pull(stream, consumer, max - 1, None).await?);
                }
            }
            let mut deliveries = Vec::with_capacity(raw.len());
            for message in raw {
                let Some(reply) = message.reply.as_ref().map(ToString::to_string) else {
                    continue;
                };
                let Some(ack) = ack_info(&reply) else {
                    continue;
                };
                let stored = Stored {
                    stream,
                    subject: message.subject.as_str(),
                    seq: ack.stream_seq,
                    time: ack.time,
                    headers: message.headers.as_ref(),
                    payload: message.payload.clone(),
                }
                .into_message()?;
                if config.max_deliver.is_some_and(|max| ack.deliveries > max.get()) {
                    let reason = "max_deliver reached";
                    let delivered = ack.deliveries - 1;
                    let of = Of {
                        stream,
                        consumer,
                        state: &state,
                    };
                    self.dead_letter_and_term(of, &stored, &reply, delivered, reason)
                        .await?;
                    state
                        .leases
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&ack.stream_seq);
                    continue;
                }
                if ack.deliveries > 1 {
                    state.redelivered.fetch_add(1, Ordering::Relaxed);
                }
                let now = Instant::now();
                let mut leases = state.leases.lock().unwrap_or_else(|e| e.into_inner());
                leases.retain(|_, l| l.until + LEASE_GRACE > now);
                leases.insert(
                    ack.stream_seq,
                    Lease {
                        settled: false,
                        acked: false,
                        deliveries: ack.deliveries,
                        reply,
                        member: member.clone(),
                        until: now + config.lease_for(ack.deliveries),
                    },
                );
                deliveries.push(Delivery {
                    message: stored,
                    consumer_seq: ack.consumer_seq,
                    deliveries: ack.deliveries,
                    pending: ack.pending,
                    member: member.clone(),
                });
            }
            // Everything pulled was dead-lettered: look again while time is left.
            if deliveries.is_empty() && started.elapsed() < wait && config.max_deliver.is_some() {
                continue;
            }
            return Ok(deliveries);
        }
    }

    async fn settle(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        seq: u64,
        deliveries: u32,
        settle: Settle,
    ) -> Result<()> {
        settle.validate()?;
        let state = self.consumer_state(stream, consumer).await?;
        let reply = {
            let leases = state.leases.lock().unwrap_or_else(|e| e.into_inner());
            match leases.get(&seq) {
                Some(lease) if lease.deliveries == deliveries && &lease.member == member => {
                    if !lease.settled {
                        lease.reply.clone()
                    } else if lease.acked && settle == Settle::Ack {
                        // The holder's repeated ack is done again; nothing
                        // else settles a delivery twice.
                        return Ok(());
                    } else {
                        return Err(Error::new(
                            ErrorKind::LeaseLost,
                            format!("delivery {deliveries} of message {seq} is already settled"),
                        ));
                    }
                }
                Some(_) => {
                    return Err(Error::new(
                        ErrorKind::LeaseLost,
                        format!("delivery {deliveries} of message {seq} is no longer leased to {member}"),
                    ));
                }
                None => {
                    return Err(Error::new(
                        ErrorKind::LeaseLost,
                        format!("{member} holds no lease on message {seq}"),
                    ));
                }
            }
        };
        // A refused settle is no sign of life: only a held lease's settle counts.
        state.seen(member);
        let config = state.config();
        let of = Of {
            stream,
            consumer,
            state: &state,
        };
        let acked = settle == Settle::Ack;
        match settle {
            Settle::Ack => self.ack_reply(&reply, "+ACK".into()).await?,
            Settle::InProgress => {
                self.ack_reply(&reply, "+WPI".into()).await?;
                let mut leases = state.leases.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(lease) = leases.get_mut(&seq) {
                    lease.until = Instant::now() + config.lease_for(deliveries);
                }
                return Ok(());
            }
            Settle::Nak { .. } if config.max_deliver.is_some_and(|max| deliveries >= max.get()) => {
                let message = self.get_message(stream, seq).await?;
                self.dead_letter_and_term(of, &message, &reply, deliveries, "max_deliver reached")
                    .await?;
            }
            Settle::Nak { delay } if delay.is_zero() => self.ack_reply(&reply, "-NAK".into()).await?,
            Settle::Nak { delay } => {
                self.ack_reply(&reply, format!("-NAK {{\"delay\":{}}}", api::nanos(delay)))
                    .await?;
            }
            Settle::Term { reason } => {
                let message = self.get_message(stream, seq).await?;
                self.dead_letter_and_term(of, &message, &reply, deliveries, &reason)
                    .await?;
            }
        }
        if let Some(lease) = state.leases.lock().unwrap_or_else(|e| e.into_inner()).get_mut(&seq) {
            lease.settled = true;
            lease.acked = acked;
            lease.until = Instant::now();
        }
        Ok(())
    }

    async fn reset_consumer(&self, stream: &StreamName, consumer: &ConsumerName, to: ReadFrom) -> Result<ConsumerInfo> {
        let state = self.consumer_state(stream, consumer).await?;
        let seq = match to {
            ReadFrom::Seq(seq) => seq.max(1),
            ReadFrom::Time(time) => {
                let request = DirectGet {
                    start_time: Some(api::format_time(time)),
                    ..DirectGet::default()
                };
                match self.direct_one(stream, &request).await? {
                    Some(message) => message.seq,
                    None => self.stream_info(stream).await?.state.last_seq + 1,
                }
            }
        };
        #[derive(Deserialize)]
        struct Reset {}
        let _: Reset = api::call(
            &self.inner.client,
            format!("CONSUMER.RESET.{stream}.{consumer}"),
            &ResetRequest { seq },
            &format!("resetting consumer `{consumer}` of `{stream}`"),
        )
        .await?;
        state.leases.lock().unwrap_or_else(|e| e.into_inner()).clear();
        self.consumer_info(stream, consumer).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_subjects_are_read_in_both_forms() {
        let v1 = ack_info("$JS.ACK.orders.billing.2.17.40.1795000000000000000.5").unwrap();
        assert_eq!(
            v1,
            AckInfo {
                deliveries: 2,
                stream_seq: 17,
                consumer_seq: 40,
                time: Timestamp(1_795_000_000_000_000_000),
                pending: 5
            }
        );
        let v2 = ack_info("$JS.ACK.hub.ACCHASH.orders.billing.2.17.40.1795000000000000000.5.token").unwrap();
        assert_eq!(v2, v1);
        assert_eq!(ack_info("$JS.ACK.too.short"), None);
    }

    #[test]
    fn jetstream_delivers_once_more_than_herald_so_the_extra_one_dead_letters() {
        let stream = StreamConfig::new("orders").unwrap();
        let config = ConsumerConfig::new("billing")
            .unwrap()
            .max_deliver(3)
            .backoff([Duration::from_secs(1); 5]);
        let nats = to_nats(&config, &stream).unwrap();
        assert_eq!(nats.max_deliver, 4);
        assert_eq!(nats.backoff.len(), 3);
        assert_eq!(from_nats(&nats).unwrap(), config);
    }
}
