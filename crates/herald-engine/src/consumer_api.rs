//! The engine's [`ConsumerBackend`]: fetch with waiting, settling, dead letters,
//! resets and info.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald_core::{
    ConsumerBackend, ConsumerConfig, ConsumerInfo, ConsumerName, DeadLetter, Delivery, Error, ErrorKind, MAX_WAIT,
    Message, OutgoingMessage, ReadFrom, Result, Retention, Settle, SettleItem, StartPolicy, StreamBackend,
    StreamConfig, StreamName, check_dead_letter_owner, dead_letter, dead_letter_names, widen_dead_letter_stream,
};
use tokio::time::Instant;

use crate::consumers::{ConsumerRuntime, ConsumerState, Retry};
use crate::engine::Engine;
use crate::error::storage;
use crate::writer::Request;

impl Engine {
    fn consumer(&self, stream: &StreamName, name: &ConsumerName) -> Result<Arc<ConsumerRuntime>> {
        let meta = self.meta(stream)?;
        self.inner.registry.get(meta.id, name).ok_or_else(|| {
            Error::new(
                ErrorKind::ConsumerNotFound,
                format!("consumer `{name}` not found on stream `{stream}`"),
            )
        })
    }

    /// What `consumer_info` answers: the consumer's state and its backlog, read now.
    fn consumer_info_of(&self, stream: &StreamName, runtime: &ConsumerRuntime) -> Result<ConsumerInfo> {
        let (reader, _txn) = self.reader(stream)?;
        let state = runtime.lock();
        let outstanding: Vec<u64> = state
            .in_flight
            .keys()
            .chain(state.retry.keys())
            .chain(state.dead_lettering.iter())
            .copied()
            .collect();
        let config = &state.config;
        let ahead = reader
            .count_from(state.next_seq, |s| config.wants(s))
            .map_err(storage)?;
        let oldest_seq = match outstanding.iter().min() {
            Some(seq) => Some(*seq),
            None => reader
                .scan(state.next_seq, |s| config.wants(s), 1, usize::MAX)
                .map_err(storage)?
                .0
                .first()
                .map(|m| m.seq),
        };
        let oldest = match oldest_seq {
            Some(seq) => reader
                .time_of(seq)
                .map_err(storage)?
                .map(|t| self.inner.clock.now().since(t)),
            None => None,
        };
        Ok(state.info(stream, ahead + outstanding.len() as u64, oldest))
    }

    /// The seq a consumer starts at, and first deliveries queued up front.
    fn resolve_start(
        &self,
        stream: &StreamName,
        config: &ConsumerConfig,
        start: StartPolicy,
    ) -> Result<(u64, Vec<u64>)> {
        crate::error::unpanicked("reading where a consumer starts", || {
            self.resolve_start_unguarded(stream, config, start)
        })
    }

    fn resolve_start_unguarded(
        &self,
        stream: &StreamName,
        config: &ConsumerConfig,
        start: StartPolicy,
    ) -> Result<(u64, Vec<u64>)> {
        let (reader, txn) = self.reader(stream)?;
        let meta = self.meta(stream)?;
        let state = self.info(&meta, &txn)?.state;
        let resolved = match start {
            StartPolicy::All => (state.first_seq.max(1), Vec::new()),
            StartPolicy::New => (state.last_seq + 1, Vec::new()),
            StartPolicy::FromSeq(seq) => (seq.max(1), Vec::new()),
            StartPolicy::FromTime(time) => {
                let seq = reader
                    .seq_at_time(time, state.first_seq, state.last_seq)
                    .map_err(Error::from)?;
                (seq.unwrap_or(state.last_seq + 1), Vec::new())
            }
            StartPolicy::LastPerSubject => {
                let lasts = reader.last_per_subject(|s| config.wants(s)).map_err(Error::from)?;
                (state.last_seq + 1, lasts)
            }
        };
        Ok(resolved)
    }

    async fn settled(&self, runtime: &ConsumerRuntime, seqs: Vec<u64>) -> Result<()> {
        let meta = self.meta(&runtime.stream)?;
        if meta.config.retention == Retention::Limits || seqs.is_empty() {
            return Ok(());
        }
        let stream_id = runtime.stream_id;
        self.call(|reply| Request::Settled { stream_id, seqs, reply }).await
    }

    /// Appends a message to the consumer's dead-letter stream, then counts it as settled.
    async fn dead_letter(
        &self,
        runtime: &ConsumerRuntime,
        message: Message,
        deliveries: u32,
        reason: &str,
    ) -> Result<()> {
        let seq = message.seq;
        let target = runtime.lock().config.dead_letter.clone();
        if target == DeadLetter::PerConsumer {
            let letter = dead_letter(&runtime.stream, &runtime.name, &message, deliveries, reason)?;
            let mut written = self.publish(letter.clone()).await;
            if let Err(err) = &written
                && err.kind() == ErrorKind::PayloadTooLarge
                && widen_dead_letter_stream(self, &runtime.stream, &runtime.name).await?
            {
                written = self.publish(letter).await;
            }
            if let Err(err) = written {
                // Not dead-lettered: it stays owed and comes back for another try.
                let mut state = runtime.lock();
                state.dead_lettering.remove(&seq);
                state.retry.insert(
                    seq,
                    Retry {
                        deliveries,
                        not_before: Instant::now(),
                    },
                );
                return Err(err);
            }
        }
        {
            let mut state = runtime.lock();
            state.dead_lettering.remove(&seq);
            state.dead_lettered += 1;
            state.dirty = true;
        }
        self.settled(runtime, vec![seq]).await
    }

    /// Dead-letters a delivery a member terminated.
    async fn terminate(&self, runtime: &ConsumerRuntime, seq: u64, deliveries: u32, reason: &str) -> Result<()> {
        let message = match self.get_message(&runtime.stream, seq).await {
            Ok(message) => message,
            Err(err) if err.kind() == ErrorKind::MessageNotFound => {
                // Retention deleted it meanwhile: nothing is left to dead-letter.
                runtime.lock().dead_lettering.remove(&seq);
                return Ok(());
            }
            Err(err) => return Err(err),
        };
        self.dead_letter(runtime, message, deliveries, reason).await
    }

    /// Publishes `messages` and acks one delivery of a consumer in a single
    /// transaction: after a crash either both happened or neither did, so a
    /// consume-transform-produce step is applied exactly once.
    ///
    /// # Errors
    ///
    /// `LeaseLost` (nothing published) if the delivery is no longer leased to
    /// `member`; every error of a publish (nothing acked); `ConsumerNotFound`.
    pub async fn publish_and_ack(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        seq: u64,
        deliveries: u32,
        messages: Vec<OutgoingMessage>,
    ) -> Result<Vec<herald_core::PublishAck>> {
        let runtime = self.consumer(stream, consumer)?;
        let acks = self
            .call(|reply| Request::PublishAndAck {
                messages,
                runtime: runtime.clone(),
                member: member.clone(),
                seq,
                deliveries,
                reply,
            })
            .await?;
        runtime.wake.notify_waiters();
        if is_settled(&runtime, seq) {
            self.settled(&runtime, vec![seq]).await?;
        }
        Ok(acks)
    }

    /// Gives a consumer that keeps its dead letters (updated from discarding
    /// them) its dead-letter stream: made if missing, refused with
    /// `InvalidName` if another consumer's holds the name (docs/semantics.md,
    /// "Dead letters"). Creating a consumer does the same in the writer.
    async fn keep_dead_letters(&self, stream: &StreamName, config: &ConsumerConfig) -> Result<()> {
        if config.dead_letter != DeadLetter::PerConsumer {
            return Ok(());
        }
        let (name, subject) = dead_letter_names(stream, &config.name)?;
        match self.meta(&name) {
            Ok(existing) => check_dead_letter_owner(stream, &config.name, &existing.config),
            Err(err) if err.kind() == ErrorKind::StreamNotFound => {
                let dead_letters = StreamConfig::with_name(name).subjects([subject])?;
                self.create_stream(dead_letters).await.map(|_| ())
            }
            Err(err) => Err(err),
        }
    }

    async fn save_now(&self, runtime: Arc<ConsumerRuntime>) -> Result<()> {
        self.call(|reply| Request::SaveConsumer { runtime, reply }).await
    }
}

#[async_trait]
impl ConsumerBackend for Engine {
    async fn create_consumer(&self, stream: &StreamName, config: ConsumerConfig) -> Result<ConsumerInfo> {
        config.validate_on(stream)?;
        let meta = self.meta(stream)?;
        if let Some(existing) = self.inner.registry.get(meta.id, &config.name) {
            if existing.lock().config == config {
                return self.consumer_info(stream, &config.name).await;
            }
            return Err(Error::new(
                ErrorKind::ConsumerExists,
                format!(
                    "consumer `{}` on stream `{stream}` exists with a different configuration",
                    config.name
                ),
            ));
        }
        config.check_filters(&meta.config, &[])?;
        let (next_seq, first) = self.resolve_start(stream, &config, config.start)?;
        let mut state = ConsumerState::new(config.clone(), self.inner.clock.now(), next_seq);
        let now = Instant::now();
        state.retry = first
            .into_iter()
            .map(|seq| {
                (
                    seq,
                    Retry {
                        deliveries: 0,
                        not_before: now,
                    },
                )
            })
            .collect();
        let runtime = Arc::new(ConsumerRuntime::new(meta.id, stream.clone(), state));
        self.call(|reply| Request::CreateConsumer { runtime, reply }).await?;
        self.consumer_info(stream, &config.name).await
    }

    async fn update_consumer(&self, stream: &StreamName, config: ConsumerConfig) -> Result<ConsumerInfo> {
        config.validate_on(stream)?;
        let meta = self.meta(stream)?;
        let runtime = self.consumer(stream, &config.name)?;
        {
            // Checked before the dead-letter stream, so a refused update leaves nothing behind.
            let state = runtime.lock();
            config.check_filters(&meta.config, &state.config.filters)?;
            if state.config.start != config.start {
                return Err(Error::new(
                    ErrorKind::InvalidConfig,
                    format!(
                        "consumer `{}`: the start policy cannot change; reset the consumer instead",
                        config.name
                    ),
                ));
            }
        }
        self.keep_dead_letters(stream, &config).await?;
        {
            let mut state = runtime.lock();
            state.config = config.clone();
            state.dirty = true;
        }
        self.save_now(runtime.clone()).await?;
        runtime.wake.notify_waiters();
        self.consumer_info(stream, &config.name).await
    }

    async fn delete_consumer(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<()> {
        let runtime = self.consumer(stream, consumer)?;
        let (stream_id, name) = (runtime.stream_id, consumer.clone());
        self.call(|reply| Request::DeleteConsumer { stream_id, name, reply })
            .await?;
        runtime.wake.notify_waiters();
        Ok(())
    }

    async fn consumer_config(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<ConsumerConfig> {
        Ok(self.consumer(stream, consumer)?.lock().config.clone())
    }

    async fn consumer_info(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<ConsumerInfo> {
        let runtime = self.consumer(stream, consumer)?;
        crate::error::unpanicked("reading a consumer's backlog", || {
            self.consumer_info_of(stream, &runtime)
        })
    }

    async fn list_consumers(&self, stream: &StreamName) -> Result<Vec<ConsumerInfo>> {
        let meta = self.meta(stream)?;
        let mut infos = Vec::new();
        for runtime in self.inner.registry.of_stream(meta.id) {
            infos.push(self.consumer_info(stream, &runtime.name).await?);
        }
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
            return Err(Error::new(ErrorKind::InvalidRequest, "fetch needs max of at least 1"));
        }
        // A fetch that finds work never awaits anything else; spend tokio's
        // cooperative budget so members sharing a runtime take turns.
        tokio::task::consume_budget().await;
        let runtime = self.consumer(stream, consumer)?;
        let deadline = Instant::now() + wait.min(MAX_WAIT);
        let mut head = self.watch_head(stream)?;
        loop {
            // Arm both wake-ups before looking, so nothing that lands between the
            // look and the wait is missed.
            // The head the last notified commit left: a commit not announced yet
            // wakes the wait below, so reading only up to here loses nothing.
            let last_seq = *head.borrow_and_update();
            let woken = runtime.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let pass = crate::error::unpanicked("reading messages to deliver", || {
                let (reader, _txn) = self.reader(stream)?;
                runtime
                    .pass(&reader, member, max, Instant::now(), self.inner.clock.now(), last_seq)
                    .map_err(Error::from)
            })?;
            for (message, deliveries) in pass.exhausted {
                let reason = format!("max_deliver reached after {deliveries} deliveries");
                self.dead_letter(&runtime, message, deliveries, &reason).await?;
            }
            if !pass.deliveries.is_empty() {
                return Ok(pass.deliveries);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Vec::new());
            }
            if self.inner.registry.get(runtime.stream_id, consumer).is_none() {
                return Err(Error::new(
                    ErrorKind::ConsumerNotFound,
                    format!("consumer `{consumer}` was deleted"),
                ));
            }
            let wake_at = runtime.lock().next_wake().map_or(deadline, |t| t.min(deadline));
            tokio::select! {
                changed = head.changed() => {
                    if changed.is_err() {
                        return Err(Error::new(ErrorKind::StreamNotFound, format!("stream `{stream}` was deleted")));
                    }
                }
                () = &mut woken => {}
                () = tokio::time::sleep_until(wake_at) => {}
            }
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
        let item = SettleItem::new(seq, deliveries, settle);
        let mut outcomes = self.settle_batch(stream, consumer, member, vec![item]).await?;
        outcomes.pop().unwrap_or(Ok(()))
    }

    async fn settle_batch(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        items: Vec<SettleItem>,
    ) -> Result<Vec<Result<()>>> {
        SettleItem::validate_batch(&items)?;
        let runtime = self.consumer(stream, consumer)?;
        let now = Instant::now();
        let mut outcomes = Vec::with_capacity(items.len());
        let mut terms = Vec::new();
        let mut settled = Vec::new();
        {
            let mut state = runtime.lock();
            for (i, item) in items.into_iter().enumerate() {
                let seq = item.seq;
                match apply(&mut state, consumer, member, item, now) {
                    Ok(Applied::Settled) => {
                        state.members.insert(member.clone(), self.inner.clock.now());
                        settled.push(seq);
                        outcomes.push(Ok(()));
                    }
                    Ok(Applied::Repeated) => outcomes.push(Ok(())),
                    Ok(Applied::Term { deliveries, reason }) => {
                        state.members.insert(member.clone(), self.inner.clock.now());
                        terms.push((i, seq, deliveries, reason));
                        outcomes.push(Ok(()));
                    }
                    Err(err) => outcomes.push(Err(err)),
                }
            }
        }
        runtime.wake.notify_waiters();
        // What no member is owed any more may now be deleted by retention:
        // one writer request for the whole batch.
        settled.retain(|&seq| is_settled(&runtime, seq));
        self.settled(&runtime, settled).await?;
        for (i, seq, deliveries, reason) in terms {
            outcomes[i] = self.terminate(&runtime, seq, deliveries, &reason).await;
        }
        Ok(outcomes)
    }

    async fn reset_consumer(&self, stream: &StreamName, consumer: &ConsumerName, to: ReadFrom) -> Result<ConsumerInfo> {
        let runtime = self.consumer(stream, consumer)?;
        let config = runtime.lock().config.clone();
        let start = match to {
            ReadFrom::Seq(seq) => StartPolicy::FromSeq(seq),
            ReadFrom::Time(time) => StartPolicy::FromTime(time),
        };
        let (next_seq, _) = self.resolve_start(stream, &config, start)?;
        {
            let mut state = runtime.lock();
            state.in_flight.clear();
            state.retry.clear();
            state.acked.clear();
            state.next_seq = next_seq;
            state.dirty = true;
        }
        self.save_now(runtime.clone()).await?;
        runtime.wake.notify_waiters();
        self.consumer_info(stream, consumer).await
    }
}

/// What one settle did to a consumer's state.
enum Applied {
    /// Acked, naked or extended.
    Settled,
    /// The holder's repeated ack of what it acked: done again, nothing changes.
    Repeated,
    /// Taken from the member: its dead letter is written next.
    Term { deliveries: u32, reason: String },
}

/// Applies one settle to a consumer's state, if `member` holds the lease it
/// names; a settle of a delivery not held is refused and changes nothing
/// (docs/semantics.md, "Settling").
fn apply(
    state: &mut ConsumerState,
    consumer: &ConsumerName,
    member: &ConsumerName,
    item: SettleItem,
    now: Instant,
) -> Result<Applied> {
    let SettleItem {
        seq,
        deliveries,
        settle,
    } = item;
    if !state.holds(seq, member, deliveries) {
        if settle == Settle::Ack && state.acked.by(seq, member, deliveries) {
            return Ok(Applied::Repeated);
        }
        let why = if seq >= state.next_seq {
            "was never delivered".to_owned()
        } else if state.owes(seq) {
            format!("is no longer leased to `{member}`")
        } else {
            format!("is not leased to `{member}`: it was settled, or never delivered to it")
        };
        return Err(Error::new(
            ErrorKind::LeaseLost,
            format!("seq {seq} (delivery {deliveries}) of consumer `{consumer}` {why}"),
        ));
    }
    state.dirty = true;
    match settle {
        Settle::Ack => state.ack(seq, member, deliveries),
        Settle::Nak { delay } => {
            state.in_flight.remove(&seq);
            state.retry.insert(
                seq,
                Retry {
                    deliveries,
                    not_before: now + delay,
                },
            );
        }
        Settle::InProgress => {
            let lease = state.config.lease_for(deliveries);
            if let Some(l) = state.in_flight.get_mut(&seq) {
                l.deadline = now + lease;
            }
        }
        Settle::Term { reason } => {
            state.in_flight.remove(&seq);
            state.dead_lettering.insert(seq);
            return Ok(Applied::Term { deliveries, reason });
        }
    }
    Ok(Applied::Settled)
}

/// Whether `seq` is now settled for good (not owed), so retention may act.
fn is_settled(runtime: &ConsumerRuntime, seq: u64) -> bool {
    !runtime.lock().owes(seq)
}
