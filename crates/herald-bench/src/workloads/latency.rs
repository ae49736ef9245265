//! (f), (g): messages published at a fixed rate, each carrying its send time,
//! and the time each took to reach the reader.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::{STALL, micros, subject};
use crate::BenchResult;
use crate::plan::{Plan, Workload};
use crate::progress::Counter;
use crate::report::Outcome;
use crate::seen::Seen;
use crate::side::{Side, Taken};

/// (f): publishes at the plan's rate while one durable consumer takes and
/// acks; the latency of a message is from just before its publish to its
/// arrival at the consumer.
pub(super) async fn consumer(side: Arc<dyn Side>, plan: &Plan, counter: &Counter) -> BenchResult<Outcome> {
    let workload = Workload::F;
    let n = plan.latency_messages;
    counter.expect(n);
    side.create_consumer(workload.key(), "probe").await?;
    let mut member = side.member(workload.key(), "probe", 0).await?;
    let origin = Instant::now();
    let seen = Arc::new(Seen::new(n));
    let collector = {
        let (seen, counter) = (seen.clone(), counter.clone());
        tokio::spawn(async move {
            let mut samples = Vec::with_capacity(n as usize);
            let mut last_progress = Instant::now();
            while !seen.complete() {
                let taken = member.take(100).await?;
                if taken.is_empty() && last_progress.elapsed() > STALL {
                    return Err::<_, crate::BenchError>("latency probe stalled".into());
                }
                for message in taken {
                    last_progress = Instant::now();
                    sample(&seen, &counter, origin, &message, &mut samples);
                }
            }
            Ok(samples)
        })
    };
    let rate = plan.options.rate.max(1);
    let seconds = offer(side, workload, n, rate, plan.options.payload, origin).await?;
    let samples = collector.await??;
    let mut outcome = Outcome::new(workload, n, seconds, samples);
    outcome.note = format!("{rate} msgs/s offered, {n} distinct received");
    Ok(outcome)
}

/// (g): publishes at the workload's rate while a live subscription, opened
/// before the first publish, follows the stream; the latency of a message is
/// from just before its publish to its arrival at the subscriber.
pub(super) async fn live(
    side: Arc<dyn Side>,
    plan: &Plan,
    workload: Workload,
    counter: &Counter,
) -> BenchResult<Outcome> {
    let n = plan.live_messages(workload);
    let rate = workload.live_rate().ok_or("not a live workload")?;
    counter.expect(n);
    let mut reader = side.subscribe(workload.key()).await?;
    let origin = Instant::now();
    let seen = Arc::new(Seen::new(n));
    let collector = {
        let (seen, counter) = (seen.clone(), counter.clone());
        tokio::spawn(async move {
            let mut samples = Vec::with_capacity(n as usize);
            while !seen.complete() {
                let message = tokio::time::timeout(STALL, reader.next())
                    .await
                    .map_err(|_| format!("live subscription stalled at {} of {n}", seen.distinct()))??;
                sample(&seen, &counter, origin, &message, &mut samples);
            }
            Ok::<_, crate::BenchError>(samples)
        })
    };
    let seconds = offer(side, workload, n, rate, plan.options.payload, origin).await?;
    let samples = collector.await??;
    let strays = seen.out_of_range();
    if strays > 0 {
        return Err(format!("{}: {strays} deliveries outside 1..={n}", workload.title()).into());
    }
    let mut outcome = Outcome::new(workload, n, seconds, samples);
    outcome.note = format!(
        "{rate} msgs/s offered, {n} distinct received live, {} twice",
        seen.duplicates()
    );
    Ok(outcome)
}

/// Publishes `n` messages of `size` bytes (at least 8) at `rate`, each on its
/// own task so a slow ack does not slow the rate, each carrying its send time
/// as nanoseconds since `origin`; the seconds it took, once every publish
/// was acknowledged.
async fn offer(
    side: Arc<dyn Side>,
    workload: Workload,
    n: u64,
    rate: u64,
    size: usize,
    origin: Instant,
) -> BenchResult<f64> {
    let subject = subject(workload);
    let size = size.max(8);
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate.max(1) as f64));
    let failures = Arc::new(Mutex::new(Vec::new()));
    let mut publishes = Vec::with_capacity(n as usize);
    let started = Instant::now();
    for _ in 0..n {
        tick.tick().await;
        let mut payload = vec![0u8; size];
        payload[..8].copy_from_slice(&(origin.elapsed().as_nanos() as u64).to_le_bytes());
        let (side, subject, failures) = (side.clone(), subject.clone(), failures.clone());
        publishes.push(tokio::spawn(async move {
            if let Err(err) = side.publish(&subject, Bytes::from(payload)).await {
                failures.lock().unwrap_or_else(|p| p.into_inner()).push(err.to_string());
            }
        }));
    }
    for publish in publishes {
        publish.await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    if let Some(first) = failures.lock().unwrap_or_else(|p| p.into_inner()).first() {
        return Err(format!("{}: a publish failed: {first}", workload.title()).into());
    }
    Ok(seconds)
}

/// Marks a message seen and, the first time, keeps its latency.
fn sample(seen: &Seen, counter: &Counter, origin: Instant, message: &Taken, samples: &mut Vec<u32>) {
    let mut sent = [0u8; 8];
    sent.copy_from_slice(&message.payload[..8]);
    let sent = origin + Duration::from_nanos(u64::from_le_bytes(sent));
    if seen.mark(message.seq) {
        samples.push(micros(message.arrived.saturating_duration_since(sent)));
        counter.add(1);
    }
}
