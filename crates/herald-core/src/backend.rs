//! The Backend traits: the one seam between the facade and the places a bus lives.
//!
//! They are shaped at the level of JetStream's concepts (streams with limits,
//! publish with dedup and expectations, direct gets, consumers) so that the
//! embedded engine, the remote client and NATS each implement them natively.

use async_trait::async_trait;

use std::collections::HashMap;
use std::time::Duration;

use crate::consumer::{ConsumerConfig, ConsumerInfo, ConsumerName, Delivery, Settle, SettleItem};
use crate::error::Result;
use crate::message::{Headers, Message, OutgoingMessage, PublishAck};
use crate::request::{Reply, Request};
use crate::stream::{Purge, ReadFrom, ReadRange, StreamConfig, StreamInfo};
use crate::subject::{Pattern, StreamName, Subject};
use bytes::Bytes;

/// Streams: admin, publishing and reads.
///
/// Every method validates its input before it changes anything; a failed call
/// changes nothing.
#[async_trait]
pub trait StreamBackend: Send + Sync + 'static {
    /// Creates a stream. Creating one that exists with the same configuration is a
    /// no-op that returns its info.
    ///
    /// Errors: `InvalidConfig`, `InvalidSubject`, `StreamExists` (different config),
    /// `SubjectConflict` (its subjects overlap another stream's).
    async fn create_stream(&self, config: StreamConfig) -> Result<StreamInfo>;

    /// Replaces a stream's limits and policies; the new limits apply at once.
    ///
    /// Errors: `StreamNotFound`, `InvalidConfig`, `SubjectConflict`.
    async fn update_stream(&self, config: StreamConfig) -> Result<StreamInfo>;

    /// A stream's configuration and state. Errors: `StreamNotFound`.
    async fn stream_info(&self, stream: &StreamName) -> Result<StreamInfo>;

    /// Every stream, by name.
    async fn list_streams(&self) -> Result<Vec<StreamInfo>>;

    /// Deletes a stream, all its messages and its consumers, with their
    /// dead-letter streams (and those of consumers on them). Errors:
    /// `StreamNotFound`.
    async fn delete_stream(&self, stream: &StreamName) -> Result<()>;

    /// Deletes the messages `purge` selects; returns how many.
    /// Errors: `StreamNotFound`.
    async fn purge_stream(&self, stream: &StreamName, purge: Purge) -> Result<u64>;

    /// Publishes one message to the stream that captures its subject, creating
    /// that stream on first publish when none does (named by the first token).
    /// Returns once the message is durable under the stream's durability.
    ///
    /// Errors: `InvalidRequest`, `PayloadTooLarge`, `HeadersTooLarge`,
    /// `SubjectConflict` (no stream captures it and none can be created),
    /// `WrongExpectedSeq`, `StreamFull`, `Storage`.
    async fn publish(&self, message: OutgoingMessage) -> Result<PublishAck>;

    /// Publishes messages atomically: all or none, with consecutive sequences, all
    /// to one stream. Duplicates inside the batch's stream window are reported per
    /// message and take no sequence.
    ///
    /// Errors: as [`publish`](Self::publish), for any one message, plus
    /// `InvalidRequest` for an empty batch or one that spans streams.
    async fn publish_batch(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<PublishAck>>;

    /// The message at `seq`. Errors: `StreamNotFound`, `MessageNotFound`.
    async fn get_message(&self, stream: &StreamName, seq: u64) -> Result<Message>;

    /// The last message of `subject` in the stream.
    /// Errors: `StreamNotFound`, `MessageNotFound`.
    async fn last_message(&self, stream: &StreamName, subject: &Subject) -> Result<Message>;

    /// Messages in sequence order as `range` selects. Errors: `StreamNotFound`.
    async fn read_range(&self, stream: &StreamName, range: ReadRange) -> Result<Vec<Message>>;

    /// Messages of one subject in sequence order, from `from_seq`, up to `limit`,
    /// through a per-subject index (never a stream scan). Errors: `StreamNotFound`.
    async fn read_subject(
        &self,
        stream: &StreamName,
        subject: &Subject,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>>;
}

/// Durable consumers: named cursors with leases, acks and dead letters.
///
/// A consumer group is a consumer with several members: `fetch` names the
/// member, and each message in flight is leased to one member at a time.
#[async_trait]
pub trait ConsumerBackend: Send + Sync + 'static {
    /// Creates a consumer on `stream` (a no-op if it exists with the same config).
    ///
    /// Errors: `StreamNotFound`, `InvalidConfig`, `ConsumerExists` (other config).
    async fn create_consumer(&self, stream: &StreamName, config: ConsumerConfig) -> Result<ConsumerInfo>;

    /// Replaces a consumer's settings (not its name or start); progress is kept.
    ///
    /// Errors: `StreamNotFound`, `ConsumerNotFound`, `InvalidConfig`.
    async fn update_consumer(&self, stream: &StreamName, config: ConsumerConfig) -> Result<ConsumerInfo>;

    /// Deletes a consumer and its progress. Errors: `StreamNotFound`, `ConsumerNotFound`.
    async fn delete_consumer(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<()>;

    /// A consumer's config and progress. Errors: `StreamNotFound`, `ConsumerNotFound`.
    async fn consumer_info(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<ConsumerInfo>;

    /// A consumer's config alone, without the counts [`consumer_info`] works
    /// out (a backend that keeps configs at hand answers without reading the
    /// stream). Errors: `StreamNotFound`, `ConsumerNotFound`.
    ///
    /// [`consumer_info`]: ConsumerBackend::consumer_info
    async fn consumer_config(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<ConsumerConfig> {
        Ok(self.consumer_info(stream, consumer).await?.config)
    }

    /// Every consumer of `stream`, by name. Errors: `StreamNotFound`.
    async fn list_consumers(&self, stream: &StreamName) -> Result<Vec<ConsumerInfo>>;

    /// Up to `max` deliveries for `member`, waiting up to `wait` for the first one.
    /// Fresh messages come before redeliveries. Returns an empty batch on timeout.
    ///
    /// Errors: `StreamNotFound`, `ConsumerNotFound`, `InvalidRequest` (max 0).
    async fn fetch(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>>;

    /// Settles the delivery of `seq` with `deliveries` held by `member`. Acks are
    /// idempotent.
    ///
    /// Errors: `LeaseLost` when the lease expired and moved on, `ConsumerNotFound`.
    async fn settle(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        seq: u64,
        deliveries: u32,
        settle: Settle,
    ) -> Result<()>;

    /// Settles many deliveries held by `member`, each as [`settle`] would, in
    /// order. The answer has one result per item: an `Ok` item is applied
    /// when the call returns (its effect is visible to the next call, on any
    /// connection); an item refused on its own (`LeaseLost`, `InvalidRequest`)
    /// changes nothing while the others still apply. An error for the whole
    /// call means no item can be reported done (some may have applied; acks
    /// are idempotent, so the caller may send them again).
    ///
    /// The default settles them one by one; backends that can confirm many at
    /// once (one writer request, one barrier) do.
    ///
    /// Errors: `InvalidRequest` (more than [`crate::MAX_SETTLE_BATCH`] items
    /// or an invalid settle, nothing applied), `StreamNotFound`,
    /// `ConsumerNotFound`, `Closed`, `Timeout`.
    ///
    /// [`settle`]: ConsumerBackend::settle
    async fn settle_batch(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        items: Vec<SettleItem>,
    ) -> Result<Vec<Result<()>>> {
        SettleItem::validate_batch(&items)?;
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(
                self.settle(stream, consumer, member, item.seq, item.deliveries, item.settle)
                    .await,
            );
        }
        Ok(outcomes)
    }

    /// Moves the consumer to start again from a seq or a time: leases are dropped
    /// and everything from there on is delivered again.
    ///
    /// Errors: `StreamNotFound`, `ConsumerNotFound`.
    async fn reset_consumer(&self, stream: &StreamName, consumer: &ConsumerName, to: ReadFrom) -> Result<ConsumerInfo>;
}

/// Live subscriptions: any pattern across streams, optionally replaying first.
#[async_trait]
pub trait SubscriptionBackend: Send + Sync + 'static {
    /// Follows every message whose subject matches `pattern`, in every stream that
    /// can hold one. With `from`, replays from that seq or time (in each stream)
    /// first, then follows; without, starts with the next message published.
    ///
    /// Errors: `InvalidSubject`.
    async fn subscribe(&self, pattern: Pattern, from: Option<ReadFrom>) -> Result<Box<dyn LiveSubscription>>;

    /// [`subscribe`](SubscriptionBackend::subscribe) for a subscription taken
    /// up again: the messages of each stream in `seen` up to the seq given
    /// were delivered before, so they are not sent again, nor reported as
    /// `Lagged` when retention has deleted them since. This default drops
    /// them as they come; a backend that can starts those streams after them.
    ///
    /// Errors: `InvalidSubject`.
    async fn subscribe_resuming(
        &self,
        pattern: Pattern,
        from: Option<ReadFrom>,
        seen: HashMap<StreamName, u64>,
    ) -> Result<Box<dyn LiveSubscription>> {
        let inner = self.subscribe(pattern, from).await?;
        Ok(Box::new(Resumed { inner, seen }))
    }
}

/// A subscription that drops what was delivered before it was taken up again.
struct Resumed {
    inner: Box<dyn LiveSubscription>,
    seen: HashMap<StreamName, u64>,
}

#[async_trait]
impl LiveSubscription for Resumed {
    async fn next(&mut self) -> Result<Message> {
        loop {
            let message = self.inner.next().await?;
            if self.seen.get(&message.stream).is_none_or(|&seen| message.seq > seen) {
                return Ok(message);
            }
        }
    }
}

/// A live subscription: messages in order per stream, no gap and no duplicate.
#[async_trait]
pub trait LiveSubscription: Send + 'static {
    /// The next message, waiting for one.
    ///
    /// Errors: `Lagged` (with [`crate::ErrorDetail::Lagged`]) when messages were
    /// deleted before this subscriber read them; the subscription carries on after
    /// them, so the next call continues. `Closed` when the bus is gone.
    async fn next(&mut self) -> Result<Message>;
}

/// Request/reply between live parties; nothing is stored.
#[async_trait]
pub trait RequestBackend: Send + Sync + 'static {
    /// Starts answering requests whose subject matches `pattern`. Each request
    /// goes to one responder among those serving its subject.
    ///
    /// Errors: `InvalidSubject`.
    async fn serve(&self, pattern: Pattern) -> Result<Box<dyn Responder>>;

    /// Sends a request to one responder of `subject` and waits up to `timeout`
    /// for the reply.
    ///
    /// Errors: `NoResponders` at once when nobody serves `subject`; `Timeout`
    /// when the reply does not come in time; `Closed` when the responder
    /// dropped the request unanswered.
    async fn request(&self, subject: Subject, headers: Headers, payload: Bytes, timeout: Duration) -> Result<Reply>;
}

/// A responder's incoming requests.
#[async_trait]
pub trait Responder: Send + 'static {
    /// The next request, waiting for one.
    ///
    /// Errors: `Closed` when the bus is gone.
    async fn next(&mut self) -> Result<Request>;
}

/// Everything a bus needs from a backend.
pub trait Backend: StreamBackend + ConsumerBackend + SubscriptionBackend + RequestBackend {}

impl<T: StreamBackend + ConsumerBackend + SubscriptionBackend + RequestBackend> Backend for T {}
