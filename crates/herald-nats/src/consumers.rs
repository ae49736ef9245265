//! Durable consumers as JetStream durable pull consumers with explicit acks.
//!
//! JetStream settles a delivery through the reply subject it came with, so the
//! backend keeps, per consumer, the lease it handed out for each seq: that is
//! how a stale settle is told `LeaseLost` and how members are listed. Dead
//! letters are Herald's: JetStream itself redelivers without limit, and the
//! delivery past Herald's limit is moved to the dead-letter stream (then
//! termed) by whichever fetch receives it, so no advisory has to be caught
//! for a message to reach its dead-letter stream. Herald counts deliveries
//! that reached a member: one prefetched and handed back unseen does not
//! count (see `feed.rs`), which is why JetStream's own limit stays off.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer as jc;
use async_trait::async_trait;
use futures_util::StreamExt;
use herald_core::{
    ConsumerBackend, ConsumerConfig, ConsumerInfo, ConsumerName, DeadLetter, Delivery, Error, ErrorKind, MemberInfo,
    Pattern, ReadFrom, Result, Settle, SettleItem, StartPolicy, StreamBackend, StreamConfig, StreamName, Timestamp,
    dead_letter_names,
};
use serde::{Deserialize, Serialize};

use crate::NatsBackend;
use crate::api;
use crate::feed::Feed;
use crate::leases::Leases;
use crate::streams::DirectGet;

/// The consumer metadata key holding Herald's own config.
const CONFIG_KEY: &str = "herald.config";
/// How long a no-wait pull may take to be answered.
const NO_WAIT_ANSWER: Duration = Duration::from_millis(500);

/// What this process knows of one consumer.
pub(crate) struct ConsumerState {
    config: Mutex<ConsumerConfig>,
    pub(crate) leases: Arc<Mutex<Leases>>,
    pub(crate) feed: Arc<Feed>,
    members: Mutex<HashMap<ConsumerName, Timestamp>>,
    pub(crate) redelivered: AtomicU64,
    pub(crate) discarded: AtomicU64,
}

impl ConsumerState {
    fn new(client: &async_nats::Client, stream: &StreamName, config: ConsumerConfig) -> ConsumerState {
        let leases = Arc::new(Mutex::new(Leases::default()));
        ConsumerState {
            feed: Arc::new(Feed::new(client.clone(), stream, &config.name, leases.clone())),
            config: Mutex::new(config),
            leases,
            members: Mutex::new(HashMap::new()),
            redelivered: AtomicU64::new(0),
            discarded: AtomicU64::new(0),
        }
    }

    pub(crate) fn config(&self) -> ConsumerConfig {
        self.config.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn leases(&self) -> std::sync::MutexGuard<'_, Leases> {
        self.leases.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn seen(&self, member: &ConsumerName) {
        self.members
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(member.clone(), Timestamp::now());
    }
}

/// The consumer a dead letter comes from.
#[derive(Clone, Copy)]
pub(crate) struct Of<'a> {
    pub(crate) stream: &'a StreamName,
    pub(crate) consumer: &'a ConsumerName,
    pub(crate) state: &'a ConsumerState,
}

/// What a JetStream ack subject says about a delivery.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct AckInfo {
    pub(crate) deliveries: u32,
    pub(crate) stream_seq: u64,
    pub(crate) consumer_seq: u64,
    pub(crate) time: Timestamp,
    pub(crate) pending: u64,
}

/// Reads `$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`,
/// or the longer form with a domain and account hash in front.
pub(crate) fn ack_info(reply: &str) -> Option<AckInfo> {
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

/// The stream seq an ack subject names.
pub(crate) fn stream_seq(reply: &str) -> Option<u64> {
    ack_info(reply).map(|a| a.stream_seq)
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
    // No limit on JetStream's side: the delivery past Herald's dead-letters.
    let max_deliver = -1;
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
    herald.max_deliver = u32::try_from(config.max_deliver).ok().and_then(NonZeroU32::new);
    herald.backoff = config.backoff.clone();
    herald.dead_letter = DeadLetter::Discard;
    Some(herald)
}

impl NatsBackend {
    /// What this process knows of a consumer, loading its config from the server
    /// the first time.
    pub(crate) async fn consumer_state(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
    ) -> Result<Arc<ConsumerState>> {
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
            .or_insert_with(|| Arc::new(ConsumerState::new(&self.inner.client, stream, config.clone())))
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

    pub(crate) async fn nats_consumer_info(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<jc::Info> {
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
                // A consumer whose dead-letter stream could not be named never had one.
                match dead_letter_names(stream, &name) {
                    Ok((dlq, _)) => match self.stream_info(&dlq).await {
                        Ok(info) => info.state.last_seq,
                        Err(err) if err.kind() == ErrorKind::StreamNotFound => 0,
                        Err(err) => return Err(err),
                    },
                    Err(_) => 0,
                }
            }
            DeadLetter::Discard => state.discarded.load(Ordering::Relaxed),
        };
        let in_flight = state.leases().per_member(Instant::now());
        // Prefetched here and not yet handed to a member: JetStream counts
        // them delivered, Herald not yet.
        let buffered = state.feed.buffered();
        let fresh = buffered
            .iter()
            .filter(|(_, deliveries)| *deliveries == 1)
            .map(|(seq, _)| *seq);
        let next_seq = fresh.min().unwrap_or(info.delivered.stream_sequence + 1);
        let buffered = buffered.len() as u64;
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
            next_seq,
            pending,
            oldest_unacked_age,
            in_flight: (info.num_ack_pending as u64).saturating_sub(buffered),
            redelivered: state
                .redelivered
                .load(Ordering::Relaxed)
                .max(info.num_redelivered as u64),
            dead_lettered,
            delivered: info.delivered.consumer_sequence.saturating_sub(buffered),
            members,
        })
    }

    /// [`ConsumerConfig::check_filters`] against the stream's subjects: as
    /// cached, and a refusal again as the server has them now (another
    /// client may have given the stream more subjects since).
    async fn check_filters(&self, stream: &StreamName, config: &ConsumerConfig, kept: &[Pattern]) -> Result<()> {
        let cached = self.stream_config(stream).await?;
        if config.check_filters(&cached, kept).is_ok() {
            return Ok(());
        }
        config.check_filters(&self.stream_info(stream).await?.config, kept)
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

    /// JetStream moved the consumer past what it prefetched here, skipping
    /// messages the old filters did not match; no member saw that move. When
    /// nothing but what was just handed back is pending, the consumer is
    /// moved back to just after what members were handed, so the messages the
    /// new filters match are delivered as on the embedded engine.
    async fn rewind_past_prefetch(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        state: &ConsumerState,
        handed_back: usize,
    ) -> Result<()> {
        let info = self.nats_consumer_info(stream, consumer).await?;
        let seen_up_to = state.leases().highest().max(info.ack_floor.stream_sequence);
        if info.num_ack_pending != handed_back || seen_up_to >= info.delivered.stream_sequence {
            return Ok(());
        }
        let what = format!("moving consumer `{consumer}` of `{stream}` back to what its members saw");
        self.move_to(stream, consumer, state, seen_up_to + 1, &what).await?;
        state.leases().forget_unseen();
        Ok(())
    }

    /// Moves the consumer to deliver from `seq` on (JetStream's reset). The
    /// feed's open requests are cut first: what was prefetched belongs to the
    /// consumer's past, and nothing sent after the move may land there.
    async fn move_to(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        state: &ConsumerState,
        seq: u64,
        what: &str,
    ) -> Result<()> {
        state.feed.forget().await;
        // JetStream's answer carries the consumer's info; only its success matters.
        #[derive(Deserialize)]
        struct Reset {}
        let _: Reset = api::call(
            &self.inner.client,
            format!("CONSUMER.RESET.{stream}.{consumer}"),
            &ResetRequest { seq },
            what,
        )
        .await?;
        Ok(())
    }

    /// One no-wait pull for up to `batch` messages on its own inbox: what
    /// the consumer has to give now.
    pub(crate) async fn pull_now(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        batch: usize,
    ) -> Result<Vec<async_nats::Message>> {
        let client = &self.inner.client;
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| api::closed("subscribing for a fetch", e))?;
        let request = PullRequest { batch, no_wait: true };
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
        let deadline = tokio::time::Instant::now() + NO_WAIT_ANSWER;
        let mut messages = Vec::new();
        while messages.len() < batch {
            let reply = match tokio::time::timeout_at(deadline, replies.next()).await {
                Ok(Some(reply)) => reply,
                Ok(None) => return Err(Error::new(ErrorKind::Closed, "the NATS connection closed")),
                Err(_) => break,
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
}

impl NatsBackend {
    /// Gives a consumer that keeps its dead letters its dead-letter stream:
    /// made if missing, refused with `InvalidName` if another consumer's
    /// holds the name (docs/semantics.md, "Dead letters").
    async fn keep_dead_letters(&self, stream: &StreamName, config: &ConsumerConfig) -> Result<()> {
        if config.dead_letter != DeadLetter::PerConsumer {
            return Ok(());
        }
        let (name, subject) = dead_letter_names(stream, &config.name)?;
        let dlq = StreamConfig::with_name(name.clone()).subjects([subject])?;
        match self.create_stream(dlq).await {
            Ok(_) => Ok(()),
            // Kept from before (its consumer deleted and made again), or
            // another consumer's whose name runs together to the same one.
            Err(err) if err.kind() == ErrorKind::StreamExists => {
                let existing = self.stream_info(&name).await?;
                herald_core::check_dead_letter_owner(stream, &config.name, &existing.config)
            }
            Err(err) => Err(err),
        }
    }
}

#[async_trait]
impl ConsumerBackend for NatsBackend {
    async fn create_consumer(&self, stream: &StreamName, config: ConsumerConfig) -> Result<ConsumerInfo> {
        config.validate_on(stream)?;
        // Checked here, not left to JetStream: it takes a filter that can
        // never match (docs/nats.md). And before the dead-letter stream, so
        // a refused consumer leaves nothing behind.
        if let Err(refused) = self.check_filters(stream, &config, &[]).await {
            // Made before the stream's subjects changed: creating it again
            // as it is stays a no-op, as on the embedded engine.
            return match self.consumer_config(stream, &config.name).await {
                Ok(existing) if existing == config => self.consumer_info(stream, &config.name).await,
                _ => Err(refused),
            };
        }
        self.keep_dead_letters(stream, &config).await?;
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
        let before = current.config();
        self.check_filters(stream, &config, &before.filters).await?;
        config.start = before.start;
        // Updated from discarding its dead letters to keeping them.
        self.keep_dead_letters(stream, &config).await?;
        let info = self.upsert(stream, &config, "update").await?;
        // Prefetched under the old settings: looked at again under the new.
        let handed_back = current.feed.hand_back().await;
        if handed_back > 0 && config.filters != before.filters {
            self.rewind_past_prefetch(stream, &config.name, &current, handed_back)
                .await?;
        }
        let info = match handed_back {
            0 => info,
            _ => self.nats_consumer_info(stream, &config.name).await?,
        };
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
        self.fetch_deliveries(stream, consumer, member, max, wait).await
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
        let item = SettleItem::new(seq, deliveries, settle);
        let mut outcomes = self.settle_deliveries(stream, consumer, member, vec![item]).await?;
        outcomes.pop().unwrap_or(Ok(()))
    }

    async fn settle_batch(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        items: Vec<SettleItem>,
    ) -> Result<Vec<Result<()>>> {
        self.settle_deliveries(stream, consumer, member, items).await
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
        let what = format!("resetting consumer `{consumer}` of `{stream}`");
        self.move_to(stream, consumer, &state, seq, &what).await?;
        state.leases().clear();
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
    fn jetstream_redelivers_without_limit_so_herald_dead_letters() {
        let stream = StreamConfig::new("orders").unwrap();
        let config = ConsumerConfig::new("billing")
            .unwrap()
            .max_deliver(3)
            .backoff([Duration::from_secs(1); 5]);
        let nats = to_nats(&config, &stream).unwrap();
        assert_eq!(nats.max_deliver, -1);
        assert_eq!(nats.backoff.len(), 3);
        assert_eq!(from_nats(&nats).unwrap(), config);
    }
}
