//! A recording bus for your own tests: a real in-memory bus that also keeps
//! every message published through it, for assertions.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
//! let (bus, recording) = herald::recording::recording_bus()?;
//! bus.publish("orders.created", "o1").await?;       // the code under test
//! assert_eq!(recording.published_to("orders.*")?.len(), 1);
//! assert_eq!(&recording.published()[0].message.payload[..], b"o1");
//! # Ok::<(), herald::Error>(())
//! # })?;
//! # Ok::<(), herald::Error>(())
//! ```

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use herald_core::{
    Backend, ConsumerBackend, ConsumerConfig, ConsumerInfo, ConsumerName, Delivery, Headers, LiveSubscription, Message,
    OutgoingMessage, Pattern, PublishAck, Purge, ReadFrom, ReadRange, Reply, RequestBackend, Responder, Result, Settle,
    SettleItem, StreamBackend, StreamConfig, StreamInfo, StreamName, Subject, SubscriptionBackend,
};

use crate::bus::Bus;
use crate::events::Event;

/// One recorded publish.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// What was sent.
    pub message: OutgoingMessage,
    /// What the bus answered.
    pub ack: PublishAck,
}

/// What a recording bus has seen. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Recording {
    published: Arc<Mutex<Vec<Recorded>>>,
}

impl Recording {
    fn push(&self, message: OutgoingMessage, ack: PublishAck) {
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Recorded { message, ack });
    }

    /// Every accepted publish, in order (duplicates included, marked in their ack).
    pub fn published(&self) -> Vec<Recorded> {
        self.published.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The accepted publishes whose subject matches `pattern`.
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid pattern.
    pub fn published_to(&self, pattern: &str) -> Result<Vec<Recorded>> {
        let pattern = Pattern::new(pattern)?;
        Ok(self
            .published()
            .into_iter()
            .filter(|r| pattern.matches(&r.message.subject))
            .collect())
    }

    /// The typed events published on `pattern` that are `E`s: decoded as
    /// one, and of the event type their `herald-event-type` header names, if
    /// any (as [`Envelope::from_message`](crate::Envelope::from_message) judges).
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid pattern.
    pub fn events<E: Event>(&self, pattern: &str) -> Result<Vec<E>> {
        Ok(self
            .published_to(pattern)?
            .into_iter()
            .filter_map(|r| decode(&r).ok())
            .collect())
    }

    /// Forgets what was recorded.
    pub fn clear(&self) {
        self.published.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// A fresh in-memory bus that records what is published through it.
///
/// # Errors
///
/// `Storage` if the in-memory engine cannot start.
pub fn recording_bus() -> Result<(Bus, Recording)> {
    let inner: Arc<dyn Backend> = Bus::memory()?.backend().clone();
    let recording = Recording::default();
    let backend = RecordingBackend {
        inner,
        recording: recording.clone(),
    };
    Ok((Bus::from_backend(Arc::new(backend)), recording))
}

/// Wraps any backend and records its accepted publishes.
pub fn record(inner: Arc<dyn Backend>) -> (Bus, Recording) {
    let recording = Recording::default();
    let backend = RecordingBackend {
        inner,
        recording: recording.clone(),
    };
    (Bus::from_backend(Arc::new(backend)), recording)
}

struct RecordingBackend {
    inner: Arc<dyn Backend>,
    recording: Recording,
}

#[async_trait]
impl StreamBackend for RecordingBackend {
    async fn create_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.inner.create_stream(config).await
    }
    async fn update_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.inner.update_stream(config).await
    }
    async fn stream_info(&self, stream: &StreamName) -> Result<StreamInfo> {
        self.inner.stream_info(stream).await
    }
    async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        self.inner.list_streams().await
    }
    async fn delete_stream(&self, stream: &StreamName) -> Result<()> {
        self.inner.delete_stream(stream).await
    }
    async fn purge_stream(&self, stream: &StreamName, purge: Purge) -> Result<u64> {
        self.inner.purge_stream(stream, purge).await
    }
    async fn publish(&self, message: OutgoingMessage) -> Result<PublishAck> {
        let ack = self.inner.publish(message.clone()).await?;
        self.recording.push(message, ack.clone());
        Ok(ack)
    }
    async fn publish_batch(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<PublishAck>> {
        let acks = self.inner.publish_batch(messages.clone()).await?;
        for (message, ack) in messages.into_iter().zip(&acks) {
            self.recording.push(message, ack.clone());
        }
        Ok(acks)
    }
    async fn get_message(&self, stream: &StreamName, seq: u64) -> Result<Message> {
        self.inner.get_message(stream, seq).await
    }
    async fn last_message(&self, stream: &StreamName, subject: &Subject) -> Result<Message> {
        self.inner.last_message(stream, subject).await
    }
    async fn read_range(&self, stream: &StreamName, range: ReadRange) -> Result<Vec<Message>> {
        self.inner.read_range(stream, range).await
    }
    async fn read_subject(
        &self,
        stream: &StreamName,
        subject: &Subject,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.inner.read_subject(stream, subject, from_seq, limit).await
    }
}

#[async_trait]
impl ConsumerBackend for RecordingBackend {
    async fn create_consumer(&self, stream: &StreamName, config: ConsumerConfig) -> Result<ConsumerInfo> {
        self.inner.create_consumer(stream, config).await
    }
    async fn update_consumer(&self, stream: &StreamName, config: ConsumerConfig) -> Result<ConsumerInfo> {
        self.inner.update_consumer(stream, config).await
    }
    async fn delete_consumer(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<()> {
        self.inner.delete_consumer(stream, consumer).await
    }
    async fn consumer_info(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<ConsumerInfo> {
        self.inner.consumer_info(stream, consumer).await
    }
    async fn consumer_config(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<ConsumerConfig> {
        self.inner.consumer_config(stream, consumer).await
    }
    async fn list_consumers(&self, stream: &StreamName) -> Result<Vec<ConsumerInfo>> {
        self.inner.list_consumers(stream).await
    }
    async fn fetch(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        self.inner.fetch(stream, consumer, member, max, wait).await
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
        self.inner
            .settle(stream, consumer, member, seq, deliveries, settle)
            .await
    }
    async fn settle_batch(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        items: Vec<SettleItem>,
    ) -> Result<Vec<Result<()>>> {
        self.inner.settle_batch(stream, consumer, member, items).await
    }
    async fn reset_consumer(&self, stream: &StreamName, consumer: &ConsumerName, to: ReadFrom) -> Result<ConsumerInfo> {
        self.inner.reset_consumer(stream, consumer, to).await
    }
}

#[async_trait]
impl SubscriptionBackend for RecordingBackend {
    async fn subscribe(&self, pattern: Pattern, from: Option<ReadFrom>) -> Result<Box<dyn LiveSubscription>> {
        self.inner.subscribe(pattern, from).await
    }
    async fn subscribe_resuming(
        &self,
        pattern: Pattern,
        from: Option<ReadFrom>,
        seen: std::collections::HashMap<StreamName, u64>,
    ) -> Result<Box<dyn LiveSubscription>> {
        self.inner.subscribe_resuming(pattern, from, seen).await
    }
}

#[async_trait]
impl RequestBackend for RecordingBackend {
    async fn serve(&self, pattern: Pattern) -> Result<Box<dyn Responder>> {
        self.inner.serve(pattern).await
    }
    async fn request(&self, subject: Subject, headers: Headers, payload: Bytes, timeout: Duration) -> Result<Reply> {
        self.inner.request(subject, headers, payload, timeout).await
    }
}

/// Decodes a recorded publish as a typed event.
///
/// # Errors
///
/// `InvalidRequest` if it is not an `E`: its payload does not decode as one,
/// or its `herald-event-type` header names another type (as
/// [`Envelope::from_message`](crate::Envelope::from_message) judges).
pub fn decode<E: Event>(recorded: &Recorded) -> Result<E> {
    let stored_type = recorded.message.headers.get(crate::events::TYPE_HEADER);
    crate::events::decode(&recorded.message.payload, stored_type.map(String::as_str))
        .map(|(event, _)| event)
        .map_err(|why| {
            herald_core::Error::new(
                herald_core::ErrorKind::InvalidRequest,
                format!("not this event type: {why}"),
            )
        })
}
