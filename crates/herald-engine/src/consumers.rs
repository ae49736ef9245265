//! Durable consumers: cursors, leases, redelivery and dead letters.
//!
//! A consumer's whole state is its `next_seq` (every matching message below it
//! has been delivered) plus the *outstanding* messages below it: leased to a
//! member, waiting for redelivery, or on their way to the dead-letter stream.
//! Everything else below `next_seq` is acked, so the ack floor is simply the
//! lowest outstanding seq minus one.
//!
//! State lives in memory behind a short mutex (no await inside) and is persisted
//! lazily by the writer (docs/semantics.md, "Consumers"): losing the latest
//! snapshot only causes redelivery, never loss.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use herald_core::{ConsumerConfig, ConsumerInfo, ConsumerName, Delivery, MemberInfo, Message, StreamName, Timestamp};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::error::{EngineError, StoreResult};
use crate::read::Reader;

/// 10,000 records: the most one fetch scans past non-matching messages while it
/// holds the consumer's lock; a sparse filter continues on the next fetch.
pub(crate) const SCAN_CAP: usize = 10_000;

/// 10,000: how many acks a consumer remembers, so that an ack repeated by the
/// member that held the lease (its answer lost on the way, say) is answered as
/// done again. Retries come within moments; ten batches of the default
/// `max_ack_pending` cover them, at some 50 bytes each.
pub(crate) const REMEMBERED_ACKS: usize = 10_000;

/// A lease on one message held by one member.
#[derive(Clone, Debug)]
pub(crate) struct Lease {
    pub(crate) member: ConsumerName,
    pub(crate) deliveries: u32,
    pub(crate) deadline: Instant,
}

/// A message waiting to be delivered again.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Retry {
    /// Deliveries so far (0 for a first delivery queued by `LastPerSubject`).
    pub(crate) deliveries: u32,
    pub(crate) not_before: Instant,
}

/// Who acked which delivery, for the last [`REMEMBERED_ACKS`] acks: the one
/// settle of a delivery no longer leased that is still answered as done
/// (docs/semantics.md, "Settling"). In memory only: a restart forgets it.
#[derive(Debug, Default)]
pub(crate) struct RecentAcks {
    by_seq: HashMap<u64, (ConsumerName, u32)>,
    /// Seqs in the order they were acked, oldest first. Each seq is acked at
    /// most once between resets (an acked message is never delivered again),
    /// and a reset clears the memory, so no seq is listed twice.
    order: VecDeque<u64>,
}

impl RecentAcks {
    fn record(&mut self, seq: u64, member: ConsumerName, deliveries: u32) {
        if self.by_seq.insert(seq, (member, deliveries)).is_none() {
            self.order.push_back(seq);
        }
        while self.order.len() > REMEMBERED_ACKS {
            if let Some(oldest) = self.order.pop_front() {
                self.by_seq.remove(&oldest);
            }
        }
    }

    /// Whether `member` acked delivery `deliveries` of `seq`.
    pub(crate) fn by(&self, seq: u64, member: &ConsumerName, deliveries: u32) -> bool {
        self.by_seq
            .get(&seq)
            .is_some_and(|(m, d)| m == member && *d == deliveries)
    }

    pub(crate) fn clear(&mut self) {
        self.by_seq.clear();
        self.order.clear();
    }
}

/// Everything a consumer knows, guarded by its mutex.
#[derive(Debug)]
pub(crate) struct ConsumerState {
    pub(crate) config: ConsumerConfig,
    pub(crate) created: Timestamp,
    pub(crate) next_seq: u64,
    pub(crate) in_flight: BTreeMap<u64, Lease>,
    pub(crate) retry: BTreeMap<u64, Retry>,
    /// Seqs being appended to the dead-letter stream: outstanding until that commits.
    pub(crate) dead_lettering: BTreeSet<u64>,
    pub(crate) consumer_seq: u64,
    pub(crate) delivered: u64,
    pub(crate) redelivered: u64,
    pub(crate) dead_lettered: u64,
    pub(crate) members: HashMap<ConsumerName, Timestamp>,
    pub(crate) acked: RecentAcks,
    /// Changed since the last snapshot was written.
    pub(crate) dirty: bool,
}

/// What the `consumers` table holds: the state minus leases' deadlines and members.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ConsumerRecord {
    pub(crate) config: ConsumerConfig,
    pub(crate) created: Timestamp,
    pub(crate) next_seq: u64,
    /// Outstanding seqs with their delivery counts.
    pub(crate) outstanding: Vec<(u64, u32)>,
    pub(crate) consumer_seq: u64,
    pub(crate) delivered: u64,
    pub(crate) redelivered: u64,
    pub(crate) dead_lettered: u64,
}

impl ConsumerRecord {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("consumer records always serialize")
    }

    pub(crate) fn decode(buf: &[u8]) -> StoreResult<Self> {
        serde_json::from_slice(buf).map_err(|e| EngineError::Corrupt {
            table: "consumers",
            reason: e.to_string(),
        })
    }
}

impl ConsumerState {
    pub(crate) fn new(config: ConsumerConfig, created: Timestamp, next_seq: u64) -> Self {
        Self {
            config,
            created,
            next_seq,
            in_flight: BTreeMap::new(),
            retry: BTreeMap::new(),
            dead_lettering: BTreeSet::new(),
            consumer_seq: 0,
            delivered: 0,
            redelivered: 0,
            dead_lettered: 0,
            members: HashMap::new(),
            acked: RecentAcks::default(),
            dirty: true,
        }
    }

    /// Restores a snapshot: every outstanding message is due for redelivery now
    /// (the leases did not survive).
    pub(crate) fn restore(record: ConsumerRecord) -> Self {
        let now = Instant::now();
        let mut state = Self::new(record.config, record.created, record.next_seq);
        state.retry = record
            .outstanding
            .into_iter()
            .map(|(seq, deliveries)| {
                (
                    seq,
                    Retry {
                        deliveries,
                        not_before: now,
                    },
                )
            })
            .collect();
        state.consumer_seq = record.consumer_seq;
        state.delivered = record.delivered;
        state.redelivered = record.redelivered;
        state.dead_lettered = record.dead_lettered;
        state.dirty = false;
        state
    }

    pub(crate) fn record(&self) -> ConsumerRecord {
        let mut outstanding: Vec<(u64, u32)> = self
            .in_flight
            .iter()
            .map(|(seq, l)| (*seq, l.deliveries))
            .chain(self.retry.iter().map(|(seq, r)| (*seq, r.deliveries)))
            .collect();
        // A dead letter not yet committed is delivered again after a restart.
        outstanding.extend(self.dead_lettering.iter().map(|seq| (*seq, 0)));
        outstanding.sort_unstable();
        ConsumerRecord {
            config: self.config.clone(),
            created: self.created,
            next_seq: self.next_seq,
            outstanding,
            consumer_seq: self.consumer_seq,
            delivered: self.delivered,
            redelivered: self.redelivered,
            dead_lettered: self.dead_lettered,
        }
    }

    /// Whether `member` holds the lease of delivery `deliveries` of `seq`.
    pub(crate) fn holds(&self, seq: u64, member: &ConsumerName, deliveries: u32) -> bool {
        self.in_flight
            .get(&seq)
            .is_some_and(|l| &l.member == member && l.deliveries == deliveries)
    }

    /// Acks a delivery held by `member` (the caller checked with [`holds`](Self::holds)).
    pub(crate) fn ack(&mut self, seq: u64, member: &ConsumerName, deliveries: u32) {
        self.in_flight.remove(&seq);
        self.acked.record(seq, member.clone(), deliveries);
        self.dirty = true;
    }

    /// Whether `seq` is still owed (delivered or to be delivered, not acked).
    pub(crate) fn owes(&self, seq: u64) -> bool {
        seq >= self.next_seq
            || self.in_flight.contains_key(&seq)
            || self.retry.contains_key(&seq)
            || self.dead_lettering.contains(&seq)
    }

    /// Every matching seq at or below this is settled.
    pub(crate) fn ack_floor(&self) -> u64 {
        let lowest = [
            self.in_flight.keys().next(),
            self.retry.keys().next(),
            self.dead_lettering.iter().next(),
        ]
        .into_iter()
        .flatten()
        .min()
        .copied();
        lowest.unwrap_or(self.next_seq).saturating_sub(1)
    }

    /// Moves expired leases to the retry queue, due at once.
    pub(crate) fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .in_flight
            .iter()
            .filter(|(_, l)| l.deadline <= now)
            .map(|(s, _)| *s)
            .collect();
        for seq in expired {
            let lease = self.in_flight.remove(&seq).expect("just listed");
            self.retry.insert(
                seq,
                Retry {
                    deliveries: lease.deliveries,
                    not_before: now,
                },
            );
            self.dirty = true;
        }
    }

    /// When something next becomes deliverable without a new message: the
    /// earliest lease deadline or retry time.
    pub(crate) fn next_wake(&self) -> Option<Instant> {
        let lease = self.in_flight.values().map(|l| l.deadline).min();
        let retry = self.retry.values().map(|r| r.not_before).min();
        lease.into_iter().chain(retry).min()
    }

    /// Leases `message` to `member` and returns the delivery.
    fn lease(
        &mut self,
        message: Message,
        member: &ConsumerName,
        deliveries: u32,
        now: Instant,
        pending: u64,
    ) -> Delivery {
        let deadline = now + self.config.lease_for(deliveries);
        self.in_flight.insert(
            message.seq,
            Lease {
                member: member.clone(),
                deliveries,
                deadline,
            },
        );
        self.consumer_seq += 1;
        self.delivered += 1;
        if deliveries > 1 {
            self.redelivered += 1;
        }
        self.dirty = true;
        Delivery {
            message,
            consumer_seq: self.consumer_seq,
            deliveries,
            pending,
            member: member.clone(),
        }
    }

    pub(crate) fn info(&self, stream: &StreamName, pending: u64, oldest: Option<Duration>) -> ConsumerInfo {
        let mut members: Vec<MemberInfo> = self
            .members
            .iter()
            .map(|(name, seen)| MemberInfo {
                name: name.clone(),
                last_seen: *seen,
                in_flight: self.in_flight.values().filter(|l| &l.member == name).count() as u64,
            })
            .collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        ConsumerInfo {
            stream: stream.clone(),
            config: self.config.clone(),
            ack_floor: self.ack_floor(),
            next_seq: self.next_seq,
            pending,
            oldest_unacked_age: oldest,
            in_flight: self.in_flight.len() as u64,
            redelivered: self.redelivered,
            dead_lettered: self.dead_lettered,
            delivered: self.delivered,
            members,
        }
    }
}

/// What one pass of a fetch produced.
#[derive(Default)]
pub(crate) struct Pass {
    pub(crate) deliveries: Vec<Delivery>,
    /// Messages past `max_deliver`, to move to the dead-letter stream.
    pub(crate) exhausted: Vec<(Message, u32)>,
}

/// One consumer: its identity, its state and its wake-up signal.
#[derive(Debug)]
pub(crate) struct ConsumerRuntime {
    pub(crate) stream_id: u32,
    pub(crate) stream: StreamName,
    pub(crate) name: ConsumerName,
    state: Mutex<ConsumerState>,
    /// Notified when messages become deliverable without a new publish
    /// (nak, reset) so waiting fetches look again.
    pub(crate) wake: Notify,
}

impl ConsumerRuntime {
    pub(crate) fn new(stream_id: u32, stream: StreamName, state: ConsumerState) -> Self {
        Self {
            stream_id,
            stream,
            name: state.config.name.clone(),
            state: Mutex::new(state),
            wake: Notify::new(),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, ConsumerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One delivery pass: fresh messages first, then due redeliveries.
    pub(crate) fn pass(
        &self,
        reader: &Reader,
        member: &ConsumerName,
        max: usize,
        now: Instant,
        wall: Timestamp,
        last_seq: u64,
    ) -> StoreResult<Pass> {
        let mut state = self.lock();
        state.members.insert(member.clone(), wall);
        state.expire(now);
        let mut pass = Pass::default();
        let room = |state: &ConsumerState, pass: &Pass| {
            let cap = state.config.max_ack_pending.get() as usize;
            (max - pass.deliveries.len()).min(cap.saturating_sub(state.in_flight.len()))
        };
        // Fresh messages come first, so a poison message cannot stall the stream.
        let want = room(&state, &pass);
        if want > 0 && state.next_seq <= last_seq {
            let config = state.config.clone();
            let (messages, next) = reader.scan(state.next_seq, |s| config.wants(s), want, SCAN_CAP)?;
            state.next_seq = next.max(state.next_seq);
            state.dirty = true;
            for message in messages {
                let pending = last_seq.saturating_sub(message.seq);
                pass.deliveries.push(state.lease(message, member, 1, now, pending));
            }
        }
        // Then what is due again.
        let due: Vec<(u64, Retry)> = state
            .retry
            .iter()
            .filter(|(_, r)| r.not_before <= now)
            .map(|(s, r)| (*s, *r))
            .collect();
        for (seq, retry) in due {
            let exhausted = state
                .config
                .max_deliver
                .is_some_and(|max| retry.deliveries >= max.get());
            // Dead-lettering takes no lease, so it does not wait for room.
            if !exhausted && room(&state, &pass) == 0 {
                continue;
            }
            state.retry.remove(&seq);
            state.dirty = true;
            let Some(message) = reader.get(seq)? else {
                // Deleted by retention meanwhile: nothing left to deliver.
                continue;
            };
            if exhausted {
                state.dead_lettering.insert(seq);
                pass.exhausted.push((message, retry.deliveries));
            } else {
                let pending = last_seq.saturating_sub(seq);
                pass.deliveries
                    .push(state.lease(message, member, retry.deliveries + 1, now, pending));
            }
        }
        Ok(pass)
    }
}

/// Every consumer, by stream id and name; shared by the engine and the writer.
#[derive(Debug, Default)]
pub(crate) struct Registry {
    consumers: RwLock<HashMap<(u32, ConsumerName), Arc<ConsumerRuntime>>>,
}

impl Registry {
    pub(crate) fn get(&self, stream_id: u32, name: &ConsumerName) -> Option<Arc<ConsumerRuntime>> {
        self.consumers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&(stream_id, name.clone()))
            .cloned()
    }

    pub(crate) fn insert(&self, runtime: Arc<ConsumerRuntime>) {
        let key = (runtime.stream_id, runtime.name.clone());
        self.consumers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, runtime);
    }

    pub(crate) fn remove(&self, stream_id: u32, name: &ConsumerName) -> Option<Arc<ConsumerRuntime>> {
        self.consumers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(stream_id, name.clone()))
    }

    /// The consumers of one stream, by name.
    pub(crate) fn of_stream(&self, stream_id: u32) -> Vec<Arc<ConsumerRuntime>> {
        let mut list: Vec<_> = self
            .consumers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|c| c.stream_id == stream_id)
            .cloned()
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Drops every consumer of a deleted stream.
    pub(crate) fn remove_stream(&self, stream_id: u32) {
        self.consumers
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(id, _), _| *id != stream_id);
    }

    pub(crate) fn all(&self) -> Vec<Arc<ConsumerRuntime>> {
        self.consumers
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    /// Whether every consumer of the stream that wants `subject` has settled `seq`.
    /// A stream with no consumer keeps everything: nobody has had a chance to read it.
    pub(crate) fn all_settled(&self, stream_id: u32, seq: u64, subject: &str) -> bool {
        let consumers = self.of_stream(stream_id);
        !consumers.is_empty()
            && consumers.iter().all(|c| {
                let state = c.lock();
                !state.config.wants(subject) || !state.owes(seq)
            })
    }

    /// Whether the stream has consumers and none of them wants `subject`.
    pub(crate) fn nobody_wants(&self, stream_id: u32, subject: &str) -> bool {
        let consumers = self.of_stream(stream_id);
        !consumers.is_empty() && consumers.iter().all(|c| !c.lock().config.wants(subject))
    }
}
