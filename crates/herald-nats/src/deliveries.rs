//! Fetching and settling on NATS.
//!
//! Fetches take from the consumer's [`Feed`](crate::feed::Feed); a message
//! becomes a delivery (and its lease starts) when it reaches a member. Settles
//! are JetStream ack-family messages on the delivery's ack subject: a batch
//! sends them all without waiting, then one more as a request. JetStream
//! applies one consumer's acks in the order a connection sent them, so the
//! answer to that last one means every one before it was applied; a reconnect
//! in between (which may have lost some) is seen from the connection count,
//! and the batch is sent again (acks, naks and terms of a delivery are
//! idempotent on the server).

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use async_nats::Subject as AckSubject;
use bytes::Bytes;
use herald_core::{
    ConsumerConfig, ConsumerName, DeadLetter, Delivery, Error, ErrorKind, MAX_WAIT, Message, Result, Settle,
    SettleItem, StreamBackend, StreamName,
};

use crate::NatsBackend;
use crate::api;
use crate::codec::Stored;
use crate::consumers::{ConsumerState, Of, ack_info};
use crate::feed::{Arrived, MAX_PREFETCH, Want};
use crate::leases::{Lease, Leases, Settled};

/// The bodies of JetStream's ack family.
const ACK: Bytes = Bytes::from_static(b"+ACK");
const NAK: Bytes = Bytes::from_static(b"-NAK");
const WPI: Bytes = Bytes::from_static(b"+WPI");

/// How many times a batch is sent again after reconnects before giving up.
const RESENDS: usize = 3;
/// How often a batch waiting for its confirmation looks for a reconnect.
const RECONNECT_CHECK: Duration = Duration::from_millis(50);
/// The shortest pause before prefetched messages go back to JetStream.
const MIN_IDLE: Duration = Duration::from_millis(100);
/// The longest.
const MAX_IDLE: Duration = Duration::from_secs(5);

/// What is sent for one settle.
struct Send {
    /// Its place in the batch.
    at: usize,
    seq: u64,
    reply: AckSubject,
    body: Bytes,
    settled: Option<Settled>,
    /// An in-progress: the lease runs this long from now.
    extend: Option<Duration>,
}

/// What to do with a message that reached this process.
enum Arrival {
    Deliver(Delivery),
    /// Past Herald's delivery limit: dead-letter it, then term it.
    DeadLetter {
        message: Message,
        reply: AckSubject,
        deliveries: u32,
    },
    /// Not deliverable (no ack subject, or waited so long that JetStream
    /// sends it again).
    Drop,
}

impl NatsBackend {
    pub(crate) async fn fetch_deliveries(
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
        let state = self.consumer_state(stream, consumer).await?;
        state.seen(member);
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            let config = state.config();
            let prefetch = max
                .saturating_mul(2)
                .clamp(2, MAX_PREFETCH)
                .min(config.max_ack_pending.get() as usize);
            let idle = (config.lease_for(1) / 2).clamp(MIN_IDLE, MAX_IDLE);
            let want = Want { max, prefetch, idle };
            let arrived = match self.take(&state, (stream, consumer), want, wait, deadline).await {
                // No one answered the pull: a deleted consumer is told as such.
                Err(err) if err.kind() == ErrorKind::Timeout => {
                    self.nats_consumer_info(stream, consumer).await?;
                    return Err(err);
                }
                arrived => arrived?,
            };
            let mut deliveries = Vec::with_capacity(arrived.len());
            let mut dead = Vec::new();
            let mut restart = Vec::new();
            {
                let now = Instant::now();
                let mut leases = state.leases();
                for a in arrived {
                    match Self::arrival(stream, &config, &mut leases, member, a, now, &mut restart)? {
                        Arrival::Deliver(delivery) => deliveries.push(delivery),
                        Arrival::DeadLetter {
                            message,
                            reply,
                            deliveries,
                        } => dead.push((message, reply, deliveries)),
                        Arrival::Drop => {}
                    }
                }
            }
            let redelivered = deliveries.iter().filter(|d| d.deliveries > 1).count() as u64;
            state.redelivered.fetch_add(redelivered, Ordering::Relaxed);
            for reply in restart {
                if let Err(err) = self.inner.client.publish(reply, WPI).await {
                    tracing::debug!(%err, "could not restart the ack timer of a prefetched message");
                }
            }
            let of = Of {
                stream,
                consumer,
                state: &state,
            };
            for (message, reply, delivered) in dead {
                self.dead_letter(of, &message, delivered, "max_deliver reached").await?;
                self.ack_reply(reply, Bytes::from_static(b"+TERM max_deliver reached"))
                    .await?;
            }
            // Everything that came was dead-lettered: look again while time is left.
            if deliveries.is_empty() && !wait.is_zero() && tokio::time::Instant::now() < deadline {
                continue;
            }
            return Ok(deliveries);
        }
    }

    /// What the feed has for a fetch: what is there now for a fetch that
    /// does not wait, else what comes by `deadline`.
    async fn take(
        &self,
        state: &ConsumerState,
        names: (&StreamName, &ConsumerName),
        want: Want,
        wait: Duration,
        deadline: tokio::time::Instant,
    ) -> Result<Vec<Arrived>> {
        if !wait.is_zero() {
            return state.feed.take(self, names, want, deadline).await;
        }
        let limit = state.config().max_ack_pending.get() as usize;
        if state.leases().in_flight(Instant::now()) >= limit {
            // Full: JetStream would not answer a pull until a lease ends.
            return Ok(Vec::new());
        }
        state.feed.take_now(self, names, want.max, want.idle).await
    }

    /// Turns a message that reached this process into a delivery to `member`
    /// (under the consumer's lease lock, taken once per fetch).
    fn arrival(
        stream: &StreamName,
        config: &ConsumerConfig,
        leases: &mut Leases,
        member: &ConsumerName,
        arrived: Arrived,
        now: Instant,
        restart: &mut Vec<AckSubject>,
    ) -> Result<Arrival> {
        let Arrived { message, at } = arrived;
        let Some(reply) = message.reply.clone() else {
            return Ok(Arrival::Drop);
        };
        let Some(ack) = ack_info(reply.as_str()) else {
            return Ok(Arrival::Drop);
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
        let deliveries = leases.herald_deliveries(ack.stream_seq, ack.deliveries);
        if config.max_deliver.is_some_and(|max| deliveries > max.get()) {
            return Ok(Arrival::DeadLetter {
                message: stored,
                reply,
                deliveries: deliveries - 1,
            });
        }
        let lease = config.lease_for(deliveries);
        let waited = now.saturating_duration_since(at);
        if waited + Duration::from_millis(50) >= lease {
            // JetStream's timer ran out while it waited here: it is sent again.
            leases.handed_back_unseen(ack.stream_seq);
            return Ok(Arrival::Drop);
        }
        let until = if waited > lease / 10 {
            // It waited in the feed a while: JetStream's timer starts again
            // now, with the member's lease.
            restart.push(reply.clone());
            now + lease
        } else {
            at + lease
        };
        leases.lease(
            ack.stream_seq,
            Lease {
                deliveries,
                reply,
                member: member.clone(),
                until,
                settled: None,
            },
            now,
        );
        Ok(Arrival::Deliver(Delivery {
            message: stored,
            consumer_seq: ack.consumer_seq,
            deliveries,
            pending: ack.pending,
            member: member.clone(),
        }))
    }

    pub(crate) async fn settle_deliveries(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        items: Vec<SettleItem>,
    ) -> Result<Vec<Result<()>>> {
        SettleItem::validate_batch(&items)?;
        let state = self.consumer_state(stream, consumer).await?;
        let config = state.config();
        let mut outcomes: Vec<Result<()>> = Vec::with_capacity(items.len());
        let mut sends = Vec::new();
        let mut terms = Vec::new();
        {
            let mut leases = state.leases();
            leases.tick(Instant::now());
            // Seqs this batch settles already: a second settle of one is
            // answered as if the first had applied.
            let mut claimed: std::collections::HashMap<u64, bool> = std::collections::HashMap::new();
            for (at, item) in items.into_iter().enumerate() {
                let SettleItem {
                    seq,
                    deliveries,
                    settle,
                } = item;
                if let Some(&acked) = claimed.get(&seq) {
                    outcomes.push(if acked && settle == Settle::Ack {
                        Ok(())
                    } else {
                        Err(already_settled(seq, deliveries))
                    });
                    continue;
                }
                let reply = match leases.get(seq) {
                    Some(lease) if lease.deliveries == deliveries && &lease.member == member => match lease.settled {
                        None => lease.reply.clone(),
                        // The holder's repeated ack is done again; nothing
                        // else settles a delivery twice.
                        Some(Settled::Acked) if settle == Settle::Ack => {
                            outcomes.push(Ok(()));
                            continue;
                        }
                        Some(_) => {
                            outcomes.push(Err(already_settled(seq, deliveries)));
                            continue;
                        }
                    },
                    Some(_) => {
                        outcomes.push(Err(Error::new(
                            ErrorKind::LeaseLost,
                            format!("delivery {deliveries} of message {seq} is no longer leased to {member}"),
                        )));
                        continue;
                    }
                    None => {
                        outcomes.push(Err(Error::new(
                            ErrorKind::LeaseLost,
                            format!("{member} holds no lease on message {seq}"),
                        )));
                        continue;
                    }
                };
                outcomes.push(Ok(()));
                let acked = settle == Settle::Ack;
                if settle != Settle::InProgress {
                    claimed.insert(seq, acked);
                }
                let at_limit = config.max_deliver.is_some_and(|max| deliveries >= max.get());
                match settle {
                    Settle::Ack => sends.push(Send {
                        at,
                        seq,
                        reply,
                        body: ACK,
                        settled: Some(Settled::Acked),
                        extend: None,
                    }),
                    Settle::InProgress => sends.push(Send {
                        at,
                        seq,
                        reply,
                        body: WPI,
                        settled: None,
                        extend: Some(config.lease_for(deliveries)),
                    }),
                    Settle::Nak { .. } if at_limit => {
                        terms.push((at, seq, reply, deliveries, "max_deliver reached".to_owned()))
                    }
                    Settle::Nak { delay } => sends.push(Send {
                        at,
                        seq,
                        reply,
                        body: if delay.is_zero() {
                            NAK
                        } else {
                            Bytes::from(format!("-NAK {{\"delay\":{}}}", api::nanos(delay)))
                        },
                        settled: Some(Settled::Other),
                        extend: None,
                    }),
                    Settle::Term { reason } => terms.push((at, seq, reply, deliveries, reason)),
                }
            }
        }
        // A term is sent only once its dead letter is stored.
        let of = Of {
            stream,
            consumer,
            state: &state,
        };
        for (at, seq, reply, deliveries, reason) in terms {
            let letter = match self.get_message(stream, seq).await {
                Ok(message) => self.dead_letter(of, &message, deliveries, &reason).await,
                // Retention deleted it meanwhile: nothing is left to dead-letter.
                Err(err) if err.kind() == ErrorKind::MessageNotFound => Ok(()),
                Err(err) => Err(err),
            };
            match letter {
                Ok(()) => sends.push(Send {
                    at,
                    seq,
                    reply,
                    body: Bytes::from(format!("+TERM {reason}")),
                    settled: Some(Settled::Other),
                    extend: None,
                }),
                Err(err) => outcomes[at] = Err(err),
            }
        }
        sends.sort_by_key(|s| s.at);
        if !sends.is_empty() {
            self.send_confirmed(&sends).await?;
            state.seen(member);
        }
        let now = Instant::now();
        let mut leases = state.leases();
        for send in &sends {
            if let Some(how) = send.settled {
                leases.settle(send.seq, how, now);
                if send.body.starts_with(b"+TERM") {
                    leases.done(send.seq);
                }
            }
            if let Some(lease) = send.extend {
                leases.extend(send.seq, now + lease, now);
            }
        }
        Ok(outcomes)
    }

    /// Sends every settle, the last as a request: its answer confirms them all.
    async fn send_confirmed(&self, sends: &[Send]) -> Result<()> {
        let client = &self.inner.client;
        let connection = || client.statistics().connects.load(Ordering::Relaxed);
        for _ in 0..=RESENDS {
            let before = connection();
            let Some((last, rest)) = sends.split_last() else {
                return Ok(());
            };
            for send in rest {
                client
                    .publish(send.reply.clone(), send.body.clone())
                    .await
                    .map_err(|e| api::closed("settling deliveries", e))?;
            }
            // A request written to a connection that then broke is never
            // answered: the reconnect is looked for while it waits.
            let confirm = self.ack_reply(last.reply.clone(), last.body.clone());
            tokio::pin!(confirm);
            let answer = loop {
                tokio::select! {
                    answer = &mut confirm => break Some(answer),
                    () = tokio::time::sleep(RECONNECT_CHECK) => {
                        if connection() != before {
                            break None;
                        }
                    }
                }
            };
            match answer {
                Some(answer) if connection() == before => return answer,
                _ => tracing::debug!(
                    settles = sends.len(),
                    "reconnected while settling: sending the batch again"
                ),
            }
        }
        Err(Error::new(
            ErrorKind::Closed,
            "the NATS connection kept dropping while settling: nothing is reported settled",
        ))
    }

    /// Sends an ack-family reply and waits for the server to confirm it.
    pub(crate) async fn ack_reply(&self, reply: AckSubject, body: Bytes) -> Result<()> {
        self.inner
            .client
            .request(reply, body)
            .await
            .map(|_| ())
            .map_err(|e| api::request_error(e, "settling a delivery"))
    }

    /// Appends a dead letter for `message` to the consumer's dead-letter stream
    /// (or counts it dropped). The id makes a repeated dead-lettering a no-op.
    pub(crate) async fn dead_letter(&self, of: Of<'_>, message: &Message, deliveries: u32, reason: &str) -> Result<()> {
        let Of {
            stream,
            consumer,
            state,
        } = of;
        if state.config().dead_letter == DeadLetter::Discard {
            state.discarded.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        let letter = herald_core::dead_letter(stream, consumer, message, deliveries, reason)?;
        match self.publish(letter.clone()).await {
            // The origin takes bigger payloads than its dead-letter stream did.
            Err(err)
                if err.kind() == ErrorKind::PayloadTooLarge
                    && herald_core::widen_dead_letter_stream(self, stream, consumer).await? =>
            {
                self.publish(letter).await.map(|_| ())
            }
            written => written.map(|_| ()),
        }
    }
}

fn already_settled(seq: u64, deliveries: u32) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!("delivery {deliveries} of message {seq} is already settled"),
    )
}
