//! Durable consumers on the facade: create one with a builder, then fetch,
//! iterate and settle deliveries. A consumer group is several members of one
//! consumer: [`Consumer::member`].

use std::fmt;
use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use herald_core::{
    Backend, ConsumerConfig, ConsumerInfo, ConsumerName, DeadLetter, Delivery, Error, ErrorKind, ReadFrom, Result,
    Settle, SettleItem, StartPolicy, StreamName,
};

/// 30 s: how long one fetch inside [`Consumer::next`] waits before asking again;
/// short enough that a deleted consumer is noticed.
const NEXT_POLL: Duration = Duration::from_secs(30);

/// The member name used when none is given.
pub const DEFAULT_MEMBER: &str = "default";

/// Configures a durable consumer; [`create`](ConsumerBuilder::create) does the I/O.
pub struct ConsumerBuilder {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) stream: Result<StreamName>,
    pub(crate) config: Result<ConsumerConfig>,
}

impl fmt::Debug for ConsumerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConsumerBuilder")
            .field("stream", &self.stream)
            .field("config", &self.config)
            .finish()
    }
}

impl ConsumerBuilder {
    fn map(mut self, f: impl FnOnce(ConsumerConfig) -> Result<ConsumerConfig>) -> Self {
        self.config = self.config.and_then(f);
        self
    }

    /// Only messages matching `pattern` (call again for more). Default: all.
    pub fn filter(self, pattern: impl AsRef<str>) -> Self {
        self.map(|c| c.filter(pattern))
    }

    /// Where a new consumer starts. Default: [`StartPolicy::All`].
    pub fn start(self, start: StartPolicy) -> Self {
        self.map(|c| Ok(c.start(start)))
    }

    /// The lease of a delivery before it is redelivered. Default: 30 s.
    pub fn ack_wait(self, ack_wait: Duration) -> Self {
        self.map(|c| Ok(c.ack_wait(ack_wait)))
    }

    /// Dead-letter after `n` deliveries. Default: never.
    pub fn max_deliver(self, n: u32) -> Self {
        self.map(|c| Ok(c.max_deliver(n)))
    }

    /// The lease of each successive delivery. Default: `ack_wait` for all.
    pub fn backoff(self, schedule: impl IntoIterator<Item = Duration>) -> Self {
        self.map(|c| Ok(c.backoff(schedule)))
    }

    /// The most messages in flight at once. Default: 1,000.
    pub fn max_ack_pending(self, n: u32) -> Self {
        self.map(|c| {
            let n = std::num::NonZeroU32::new(n)
                .ok_or_else(|| Error::new(ErrorKind::InvalidConfig, "max_ack_pending must be above zero"))?;
            Ok(c.max_ack_pending(n))
        })
    }

    /// Where dead letters go. Default: the consumer's own dead-letter stream.
    pub fn dead_letter(self, dead_letter: DeadLetter) -> Self {
        self.map(|c| Ok(c.dead_letter(dead_letter)))
    }

    /// Creates the consumer (a no-op if it exists with the same config) and
    /// returns a handle for its default member.
    ///
    /// # Errors
    ///
    /// `InvalidName`, `InvalidSubject`, `InvalidConfig`, `StreamNotFound`,
    /// `ConsumerExists` (same name, other config).
    pub async fn create(self) -> Result<Consumer> {
        let (stream, config) = (self.stream?, self.config?);
        let name = config.name.clone();
        self.backend.create_consumer(&stream, config).await?;
        Ok(Consumer::new(self.backend, stream, name))
    }
}

/// A handle on one member of a durable consumer. Cheap to clone.
///
/// # Examples
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// let bus = herald::Bus::memory()?;
/// bus.publish("orders.created", "o1").await?;
/// let billing = bus.consumer("orders", "billing").filter("orders.created").create().await?;
/// let msg = billing.next().await?;
/// assert_eq!(&msg.message.payload[..], b"o1");
/// msg.ack().await?;
/// assert_eq!(billing.info().await?.ack_floor, 1);
/// # Ok::<(), herald::Error>(())
/// # })?;
/// # Ok::<(), herald::Error>(())
/// ```
#[derive(Clone)]
pub struct Consumer {
    backend: Arc<dyn Backend>,
    stream: StreamName,
    name: ConsumerName,
    member: ConsumerName,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("stream", &self.stream)
            .field("name", &self.name)
            .field("member", &self.member)
            .finish()
    }
}

impl Consumer {
    pub(crate) fn new(backend: Arc<dyn Backend>, stream: StreamName, name: ConsumerName) -> Self {
        let member = ConsumerName::new(DEFAULT_MEMBER).expect("the default member name is valid");
        Self {
            backend,
            stream,
            name,
            member,
        }
    }

    /// The same consumer as another member of its group.
    ///
    /// # Errors
    ///
    /// `InvalidName`.
    pub fn member(&self, member: impl AsRef<str>) -> Result<Consumer> {
        Ok(Consumer {
            member: ConsumerName::new(member)?,
            ..self.clone()
        })
    }

    /// The stream it reads.
    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    /// Its name.
    pub fn name(&self) -> &ConsumerName {
        &self.name
    }

    /// This handle's member name.
    pub fn member_name(&self) -> &ConsumerName {
        &self.member
    }

    /// Up to `max` deliveries, waiting up to `wait` for the first.
    ///
    /// # Errors
    ///
    /// `ConsumerNotFound`, `StreamNotFound`, `InvalidRequest` (`max` of 0).
    pub async fn fetch(&self, max: usize, wait: Duration) -> Result<Vec<Received>> {
        let deliveries = self
            .backend
            .fetch(&self.stream, &self.name, &self.member, max, wait)
            .await?;
        Ok(deliveries
            .into_iter()
            .map(|delivery| Received {
                delivery,
                consumer: self.clone(),
            })
            .collect())
    }

    /// The next delivery, waiting as long as it takes.
    ///
    /// # Errors
    ///
    /// `ConsumerNotFound`, `StreamNotFound`.
    pub async fn next(&self) -> Result<Received> {
        loop {
            if let Some(received) = self.fetch(1, NEXT_POLL).await?.pop() {
                return Ok(received);
            }
        }
    }

    /// Deliveries as a stream; it ends after the first error.
    pub fn messages(&self) -> impl Stream<Item = Result<Received>> + Send + 'static {
        futures_util::stream::unfold(Some(self.clone()), |consumer| async move {
            let consumer = consumer?;
            match consumer.next().await {
                Ok(received) => Some((Ok(received), Some(consumer))),
                Err(err) => Some((Err(err), None)),
            }
        })
    }

    /// Its configuration and progress: ack floor, lag, in flight, members.
    ///
    /// # Errors
    ///
    /// `ConsumerNotFound`, `StreamNotFound`.
    pub async fn info(&self) -> Result<ConsumerInfo> {
        self.backend.consumer_info(&self.stream, &self.name).await
    }

    /// Starts again from a seq or a time; leases are dropped.
    ///
    /// # Errors
    ///
    /// `ConsumerNotFound`, `StreamNotFound`.
    pub async fn reset(&self, to: ReadFrom) -> Result<ConsumerInfo> {
        self.backend.reset_consumer(&self.stream, &self.name, to).await
    }

    /// Replaces the settings; progress is kept.
    ///
    /// # Errors
    ///
    /// `ConsumerNotFound`, `InvalidConfig` (a changed start policy).
    pub async fn update(&self, config: ConsumerConfig) -> Result<ConsumerInfo> {
        self.backend.update_consumer(&self.stream, config).await
    }

    /// Settles many deliveries in one call: each as its own `ack`, `nak_after`,
    /// `in_progress` or `term` would, with one confirmation for all of them
    /// (one writer request on the embedded engine, one round trip on a server
    /// or on NATS). Each delivery is settled by the member it was delivered
    /// to, whichever handle it came from.
    ///
    /// The answer has one result per delivery, in order: `Ok` means applied
    /// (the ack floor and work-queue deletion show it as soon as the call
    /// returns); `LeaseLost` for one leaves the others applied.
    ///
    /// # Errors
    ///
    /// The whole call fails when no delivery can be reported settled: the
    /// connection was lost before the confirmation (acks are idempotent, so
    /// settling again is safe), `ConsumerNotFound`, `InvalidRequest` (more
    /// than [`herald_core::MAX_SETTLE_BATCH`] or an invalid settle; nothing
    /// applied).
    pub async fn settle_all<'a>(
        &self,
        settles: impl IntoIterator<Item = (&'a Received, Settle)>,
    ) -> Result<Vec<Result<()>>> {
        let settles: Vec<(&Received, Settle)> = settles.into_iter().collect();
        let mut outcomes: Vec<Option<Result<()>>> = (0..settles.len()).map(|_| None).collect();
        // One backend call per member the deliveries were leased to.
        let mut done = vec![false; settles.len()];
        for first in 0..settles.len() {
            if done[first] {
                continue;
            }
            let holder = &settles[first].0.consumer;
            let mut at = Vec::new();
            let mut items = Vec::new();
            for (i, (received, settle)) in settles.iter().enumerate().skip(first) {
                if !done[i] && received.consumer.same_member(holder) {
                    done[i] = true;
                    at.push(i);
                    items.push(SettleItem::new(
                        received.message.seq,
                        received.deliveries,
                        settle.clone(),
                    ));
                }
            }
            let answers = holder
                .backend
                .settle_batch(&holder.stream, &holder.name, &holder.member, items)
                .await?;
            SettleItem::check_answered(at.len(), answers.len(), "the backend")?;
            for (i, answer) in at.into_iter().zip(answers) {
                outcomes[i] = Some(answer);
            }
        }
        Ok(outcomes.into_iter().map(|o| o.unwrap_or(Ok(()))).collect())
    }

    /// Acks every one of `received` in one call (see [`settle_all`](Consumer::settle_all)).
    ///
    /// # Errors
    ///
    /// The first delivery's error when one could not be acked (the others
    /// are acked still), or the whole call's error.
    pub async fn ack_all(&self, received: &[Received]) -> Result<()> {
        self.ack_all_outcomes(received).await?.into_iter().collect()
    }

    /// Acks every one of `received` in one call, with one result per delivery.
    pub(crate) async fn ack_all_outcomes(&self, received: &[Received]) -> Result<Vec<Result<()>>> {
        self.settle_all(received.iter().map(|r| (r, Settle::Ack))).await
    }

    /// Naks every one of `received` for redelivery after `delay`, in one call.
    ///
    /// # Errors
    ///
    /// As [`ack_all`](Consumer::ack_all).
    pub async fn nak_all(&self, received: &[Received], delay: Duration) -> Result<()> {
        let outcomes = self
            .settle_all(received.iter().map(|r| (r, Settle::Nak { delay })))
            .await?;
        outcomes.into_iter().collect()
    }

    fn same_member(&self, other: &Consumer) -> bool {
        Arc::ptr_eq(&self.backend, &other.backend)
            && self.stream == other.stream
            && self.name == other.name
            && self.member == other.member
    }

    async fn settle(&self, delivery: &Delivery, settle: Settle) -> Result<()> {
        self.backend
            .settle(
                &self.stream,
                &self.name,
                &self.member,
                delivery.message.seq,
                delivery.deliveries,
                settle,
            )
            .await
    }
}

/// A delivery with the handle to settle it. Derefs to [`Delivery`].
#[derive(Debug, Clone)]
pub struct Received {
    delivery: Delivery,
    consumer: Consumer,
}

impl Deref for Received {
    type Target = Delivery;
    fn deref(&self) -> &Delivery {
        &self.delivery
    }
}

impl Received {
    /// The consumer member it was delivered to.
    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// The delivery without its handle.
    pub fn into_delivery(self) -> Delivery {
        self.delivery
    }

    /// Done: never delivered to this consumer again. Idempotent.
    ///
    /// # Errors
    ///
    /// `LeaseLost` if the lease expired and the message went to another member.
    pub async fn ack(&self) -> Result<()> {
        self.consumer.settle(&self.delivery, Settle::Ack).await
    }

    /// Failed: deliver again at once.
    ///
    /// # Errors
    ///
    /// `LeaseLost`.
    pub async fn nak(&self) -> Result<()> {
        self.nak_after(Duration::ZERO).await
    }

    /// Failed: deliver again after `delay`.
    ///
    /// # Errors
    ///
    /// `LeaseLost`.
    pub async fn nak_after(&self, delay: Duration) -> Result<()> {
        self.consumer.settle(&self.delivery, Settle::Nak { delay }).await
    }

    /// Still working: extend the lease.
    ///
    /// # Errors
    ///
    /// `LeaseLost`.
    pub async fn in_progress(&self) -> Result<()> {
        self.consumer.settle(&self.delivery, Settle::InProgress).await
    }

    /// Give up: move to the dead-letter stream now, with a reason.
    ///
    /// # Errors
    ///
    /// `LeaseLost`; `Storage` if the dead letter could not be written (the
    /// message then stays owed and comes back).
    pub async fn term(&self, reason: impl Into<String>) -> Result<()> {
        self.consumer
            .settle(&self.delivery, Settle::Term { reason: reason.into() })
            .await
    }
}
