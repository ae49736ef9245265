//! The mixed load: publishers (singles and batches, with ids), a consumer
//! group acking and nak'ing, KV puts and compare-and-sets, reads by seq and a
//! live subscription, each a task on a remote client over WebSocket.
//!
//! Every task keeps going through a kill: the client reconnects by itself and
//! sends again the calls it was waiting on; what still fails is counted by
//! kind and tried again (a publish under the same id, so it is stored once).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use herald::{Bus, Consumer, ErrorKind, Kv, OutgoingMessage, StreamConfig, Subject};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::ledger::{Acked, Ledger};
use super::stats::Stats;
use crate::BenchResult;

/// The stream single publishes go to; the consumer group and the live
/// subscription follow it.
pub(crate) const SINGLES: &str = "orders";
/// The stream batches go to; the reader reads it by seq.
pub(crate) const BATCHES: &str = "events";
/// The consumer group on [`SINGLES`].
pub(crate) const GROUP: &str = "billing";
/// The KV bucket.
pub(crate) const KV_BUCKET: &str = "soak";

/// Members of the consumer group.
const MEMBERS: usize = 3;
/// Deliveries a member fetches at once.
const FETCH: usize = 64;
/// How long a fetch waits for a first message.
const FETCH_WAIT: Duration = Duration::from_millis(500);
/// Share of deliveries nak'd, in percent.
const NAK_PERCENT: u8 = 3;
/// Share of publish calls that are batches, in percent.
const BATCH_PERCENT: u8 = 10;
/// Largest batch.
const MAX_BATCH: usize = 50;
/// Payload sizes, bytes.
const PAYLOAD: std::ops::RangeInclusive<u32> = 16..=1024;
/// Subjects per stream (`orders.0` … `orders.15`).
const SUBJECTS: u8 = 16;
/// How long a publisher tries one message before it gives up on it (not
/// acknowledged, so not checked): far longer than a restart takes.
const GIVE_UP: Duration = Duration::from_secs(120);
/// The pause before an operation that failed is tried again.
const RETRY_PAUSE: Duration = Duration::from_millis(50);
/// The pause between two operations of the KV tasks and of the reader: a
/// steady trickle beside the publishers, not a second flood.
const SIDE_PAUSE: Duration = Duration::from_millis(10);
/// Keys each KV task puts to (its own) and compare-and-sets (shared).
const KV_OWN_KEYS: u64 = 16;
const KV_SHARED_KEYS: u64 = 4;
/// Tasks doing compare-and-sets on the shared keys (so that they conflict).
const CAS_TASKS: u64 = 2;
/// The ack wait of the group: long enough that deliveries do not expire
/// while a member works, short enough that ones held at a kill come back soon.
const ACK_WAIT: Duration = Duration::from_secs(10);

/// What every task shares.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) stats: Arc<Stats>,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) stop: Arc<AtomicBool>,
}

impl Shared {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}

/// Creates the streams, the group and the bucket the load uses.
pub(crate) async fn prepare(bus: &Bus) -> BenchResult<()> {
    bus.create_stream(StreamConfig::new(SINGLES)?).await?;
    bus.create_stream(StreamConfig::new(BATCHES)?).await?;
    bus.consumer(SINGLES, GROUP)
        .ack_wait(ACK_WAIT)
        .max_ack_pending(10_000)
        .create()
        .await?;
    bus.kv(KV_BUCKET).open().await?;
    Ok(())
}

/// Connects the clients and starts every task; `rate` is the messages per
/// second of all publishers together.
pub(crate) async fn start(
    url: &str,
    shared: &Shared,
    publishers: u16,
    rate: u32,
    seed: u64,
) -> BenchResult<Vec<JoinHandle<()>>> {
    let mut tasks = Vec::new();
    // Publishers share two connections; the group, the KV tasks, and the
    // reader with the live subscription have one each.
    let publishing = [Bus::connect(url).await?, Bus::connect(url).await?];
    let per_task = f64::from(rate) / f64::from(publishers);
    for p in 0..publishers {
        let bus = publishing[usize::from(p) % 2].clone();
        let rng = fastrand::Rng::with_seed(seed ^ (u64::from(p) << 8));
        tasks.push(tokio::spawn(publish(bus, shared.clone(), p, per_task, rng)));
    }
    let group = Bus::connect(url).await?;
    let consumer = group.bind_consumer(SINGLES, GROUP).await?;
    for m in 0..MEMBERS {
        let member = consumer.member(format!("m{m}"))?;
        let rng = fastrand::Rng::with_seed(seed ^ 0x1000 ^ m as u64);
        tasks.push(tokio::spawn(consume(member, shared.clone(), rng)));
    }
    let kv = Bus::connect(url).await?.kv(KV_BUCKET).open().await?;
    tasks.push(tokio::spawn(put(kv.clone(), shared.clone())));
    for t in 0..CAS_TASKS {
        let rng = fastrand::Rng::with_seed(seed ^ 0x2000 ^ t);
        tasks.push(tokio::spawn(compare_and_set(kv.clone(), shared.clone(), rng)));
    }
    let reading = Bus::connect(url).await?;
    let rng = fastrand::Rng::with_seed(seed ^ 0x3000);
    tasks.push(tokio::spawn(read(reading.clone(), shared.clone(), rng)));
    let subscription = reading.subscribe(format!("{SINGLES}.>")).await?;
    tasks.push(tokio::spawn(follow(subscription, shared.clone())));
    Ok(tasks)
}

/// Publishes at `rate` messages per second: singles to [`SINGLES`], now and
/// then a batch to [`BATCHES`]; each call is tried until acknowledged.
async fn publish(bus: Bus, shared: Shared, publisher: u16, rate: f64, mut rng: fastrand::Rng) {
    let mut n = 0u64;
    let mut next = Instant::now();
    while !shared.stopped() {
        let size = if rng.u8(..100) < BATCH_PERCENT {
            rng.usize(2..=MAX_BATCH)
        } else {
            1
        };
        tokio::time::sleep_until(next).await;
        next += Duration::from_secs_f64(size as f64 / rate);
        // After a stall (a restart), carry on at the rate instead of catching up in a burst.
        next = next.max(Instant::now() - Duration::from_secs(1));
        let stream = if size == 1 { SINGLES } else { BATCHES };
        let batch: Vec<(Acked, OutgoingMessage)> = (0..size)
            .map(|_| {
                n += 1;
                let acked = Acked {
                    publisher,
                    n,
                    len: rng.u32(PAYLOAD),
                };
                let subject = Subject::new(format!("{stream}.{}", rng.u8(..SUBJECTS))).expect("a valid subject");
                (acked, OutgoingMessage::new(subject, acked.payload()).id(acked.id()))
            })
            .collect();
        let started = Instant::now();
        let acks = loop {
            let outcome = if size == 1 {
                bus.publish_message(batch[0].1.clone()).await.map(|ack| vec![ack])
            } else {
                bus.publish_batch(batch.iter().map(|(_, m)| m.clone()).collect()).await
            };
            match outcome {
                Ok(acks) => break Some(acks),
                Err(err) => shared.stats.error("publish", &err),
            }
            if shared.stopped() || started.elapsed() > GIVE_UP {
                shared.stats.note("publish:gave-up");
                break None;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        };
        let Some(acks) = acks else { continue };
        shared.stats.latency(started.elapsed());
        if acks.len() != batch.len() {
            shared.stats.note("publish:ack-count-wrong");
            continue;
        }
        for ((acked, _), ack) in batch.iter().zip(&acks) {
            if ack.stream.as_str() != stream {
                shared.stats.note("publish:ack-wrong-stream");
            } else if !shared.ledger.record(stream, ack.seq, *acked) {
                shared.stats.note("publish:seq-acked-twice");
            }
        }
        shared.stats.published.fetch_add(acks.len() as u64, Ordering::Relaxed);
    }
}

/// A group member: fetches, naks a few deliveries, acks the rest at once.
async fn consume(member: Consumer, shared: Shared, mut rng: fastrand::Rng) {
    while !shared.stopped() {
        let batch = match member.fetch(FETCH, FETCH_WAIT).await {
            Ok(batch) => batch,
            Err(err) => {
                shared.stats.error("fetch", &err);
                tokio::time::sleep(RETRY_PAUSE).await;
                continue;
            }
        };
        let (naks, acks): (Vec<_>, Vec<_>) = batch.into_iter().partition(|_| rng.u8(..100) < NAK_PERCENT);
        for received in &naks {
            match received.nak_after(Duration::from_millis(200)).await {
                Ok(()) => {
                    shared.stats.naked.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => shared.stats.error("nak", &err),
            }
        }
        if acks.is_empty() {
            continue;
        }
        match member.ack_all(&acks).await {
            Ok(()) => {
                shared.stats.consumed.fetch_add(acks.len() as u64, Ordering::Relaxed);
            }
            // Not acked: the deliveries come back after their lease.
            Err(err) => shared.stats.error("ack", &err),
        }
    }
}

/// Puts growing counters to keys of its own (`own-<k>`), one at a time.
async fn put(kv: Kv, shared: Shared) {
    let mut value = 0u64;
    while !shared.stopped() {
        value += 1;
        let key = format!("own-{}", value % KV_OWN_KEYS);
        match kv.put(&key, value.to_string()).await {
            Ok(_) => {
                shared.ledger.record_kv(&key, value);
                shared.stats.kv_writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => shared.stats.error("kv-put", &err),
        }
        tokio::time::sleep(SIDE_PAUSE).await;
    }
}

/// Increments shared counters (`cas-<k>`) by compare-and-set, conflicting
/// with the other CAS task.
async fn compare_and_set(kv: Kv, shared: Shared, mut rng: fastrand::Rng) {
    while !shared.stopped() {
        let key = format!("cas-{}", rng.u64(..KV_SHARED_KEYS));
        let outcome = match kv.get(&key).await {
            Ok(Some(entry)) => {
                let value = std::str::from_utf8(&entry.value)
                    .ok()
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
                    + 1;
                kv.update(&key, value.to_string(), entry.revision).await.map(|_| value)
            }
            Ok(None) => kv.create(&key, "1").await.map(|_| 1),
            Err(err) => Err(err),
        };
        match outcome {
            Ok(value) => {
                shared.ledger.record_kv(&key, value);
                shared.stats.kv_writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) if err.kind() == ErrorKind::WrongExpectedSeq => {
                shared.stats.cas_conflicts.fetch_add(1, Ordering::Relaxed);
            }
            Err(err) => shared.stats.error("kv-cas", &err),
        }
        tokio::time::sleep(SIDE_PAUSE).await;
    }
}

/// Reads acknowledged messages by seq and compares each with the ledger.
async fn read(bus: Bus, shared: Shared, mut rng: fastrand::Rng) {
    while !shared.stopped() {
        tokio::time::sleep(SIDE_PAUSE).await;
        let stream = if rng.bool() { SINGLES } else { BATCHES };
        let Some(head) = shared.ledger.head(stream) else {
            continue;
        };
        let seq = rng.u64(1..=head);
        let Some(acked) = shared.ledger.get(stream, seq) else {
            continue;
        };
        match bus.get(stream, seq).await {
            Ok(m) if m.id == acked.id() && m.payload == acked.payload() => {
                shared.stats.reads.fetch_add(1, Ordering::Relaxed);
            }
            Ok(_) => shared.stats.note("read:mismatch"),
            Err(err) => shared.stats.error("read", &err),
        }
    }
}

/// Follows [`SINGLES`] live and checks that seqs come one after another: the
/// client promises no gap and no repeat across reconnects.
async fn follow(mut subscription: herald::Subscription, shared: Shared) {
    let mut last: Option<u64> = None;
    while !shared.stopped() {
        let next = tokio::time::timeout(Duration::from_millis(500), subscription.next()).await;
        match next {
            Err(_) => continue,
            Ok(Ok(message)) => {
                match last {
                    Some(last) if message.seq <= last => shared.stats.note("live:repeat"),
                    Some(last) if message.seq > last + 1 => shared.stats.note("live:gap"),
                    _ => {}
                }
                last = Some(last.map_or(message.seq, |l| l.max(message.seq)));
                shared.stats.live.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Err(err)) => {
                shared.stats.error("live", &err);
                if err.kind() == ErrorKind::Lagged {
                    // A gap it announced; follow on from what comes next.
                    last = None;
                } else {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
            }
        }
    }
}
