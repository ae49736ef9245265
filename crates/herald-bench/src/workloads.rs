//! The workloads (a)-(f), written once against [`Side`].

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::BenchResult;
use crate::plan::{Plan, Target, Workload};
use crate::progress::Counter;
use crate::report::Outcome;
use crate::seen::Seen;
use crate::side::Side;

/// A consuming workload that makes no progress for this long has failed.
const STALL: Duration = Duration::from_secs(30);

/// Messages per fill call before (d) and (e).
const FILL_BATCH: usize = 1000;

/// Runs one workload on a fresh stream of `side`.
pub(crate) async fn run(
    side: Arc<dyn Side>,
    target: Target,
    plan: &Plan,
    workload: Workload,
    counter: &Counter,
) -> BenchResult<Outcome> {
    side.create_stream(workload.key()).await?;
    let mut outcome = match workload {
        Workload::A | Workload::B16 | Workload::B64 | Workload::C100 | Workload::C1000 => {
            publishing(side, plan, workload, counter).await?
        }
        Workload::D | Workload::E => consuming(side, plan, workload, counter).await?,
        Workload::F => latency(side, plan, counter).await?,
    };
    outcome.target = target;
    Ok(outcome)
}

fn subject(workload: Workload) -> String {
    format!("{}.events", workload.key())
}

/// (a), (b), (c): publishers, each awaiting its call before the next, until
/// the message cap or the time cap; then the stream must hold exactly what was
/// acknowledged.
async fn publishing(side: Arc<dyn Side>, plan: &Plan, workload: Workload, counter: &Counter) -> BenchResult<Outcome> {
    let subject = subject(workload);
    let payload = Bytes::from(vec![0xA5u8; plan.options.payload]);
    let per_call = workload.batch() as u64;
    let cap = plan.cap(workload).max(per_call);
    counter.expect(cap);
    let claimed = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = started + plan.deadline();
    let mut tasks = Vec::new();
    for _ in 0..workload.publishers() {
        let (side, subject, payload, claimed, counter) = (
            side.clone(),
            subject.clone(),
            payload.clone(),
            claimed.clone(),
            counter.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while claimed.fetch_add(per_call, Ordering::Relaxed) + per_call <= cap && Instant::now() < deadline {
                let call = Instant::now();
                if per_call == 1 {
                    side.publish(&subject, payload.clone()).await?;
                } else {
                    side.publish_many(&subject, vec![payload.clone(); per_call as usize])
                        .await?;
                }
                samples.push(micros(call.elapsed()));
                counter.add(per_call);
            }
            Ok::<_, crate::BenchError>(samples)
        }));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    let acked = samples.len() as u64 * per_call;
    let stored = side.stored(workload.key()).await?;
    if stored != acked {
        return Err(format!(
            "{}: {acked} publishes acknowledged but {stored} stored",
            workload.title()
        )
        .into());
    }
    let mut outcome = Outcome::new(workload, acked, seconds, samples);
    outcome.note = format!("{acked} acknowledged, {stored} stored");
    Ok(outcome)
}

/// (d), (e): N messages stored first (not timed), then one consumer or a
/// 4-member group takes and acks them; timed until the N-th distinct one.
async fn consuming(side: Arc<dyn Side>, plan: &Plan, workload: Workload, counter: &Counter) -> BenchResult<Outcome> {
    let n = plan.consume;
    let subject = subject(workload);
    let payload = Bytes::from(vec![0x5Au8; plan.options.payload]);
    counter.expect(n);
    counter.phase("filling");
    let mut filled = 0;
    while filled < n {
        let size = (n - filled).min(FILL_BATCH as u64);
        side.publish_many(&subject, vec![payload.clone(); size as usize])
            .await?;
        filled += size;
        counter.add(size);
    }
    counter.reset();
    counter.phase("consuming");
    side.create_consumer(workload.key(), "bench").await?;
    // Members take what one worker would handle at a time; a lone consumer
    // takes bigger bites.
    let (members, bite) = if workload == Workload::E {
        (4, 250)
    } else {
        (1, FILL_BATCH)
    };
    let seen = Arc::new(Seen::new(n));
    let mut handles = Vec::new();
    for m in 0..members {
        handles.push(side.member(workload.key(), "bench", m).await?);
    }
    let started = Instant::now();
    let mut tasks = Vec::new();
    for mut member in handles {
        let (seen, counter) = (seen.clone(), counter.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = 0u64;
            let mut last_progress = Instant::now();
            while !seen.complete() {
                let taken = member.take(bite).await?;
                if taken.is_empty() {
                    if last_progress.elapsed() > STALL && !seen.complete() {
                        return Err(
                            format!("stalled: {} of {} distinct messages", seen.distinct(), seen.target()).into(),
                        );
                    }
                    continue;
                }
                last_progress = Instant::now();
                for message in &taken {
                    if seen.mark(message.seq) {
                        mine += 1;
                        counter.add(1);
                    }
                }
                seen.observe();
            }
            Ok::<_, crate::BenchError>(mine)
        }));
    }
    let mut shares = Vec::new();
    for task in tasks {
        shares.push(task.await??);
    }
    let complete_at = seen.complete_at().ok_or("no member saw the last message")?;
    let seconds = complete_at.duration_since(started).as_secs_f64();
    let mut outcome = Outcome::new(workload, n, seconds, Vec::new());
    outcome.catch_up = seen.catch_up(started);
    let duplicates = seen.duplicates();
    let strays = seen.out_of_range();
    if strays > 0 {
        return Err(format!("{}: {strays} deliveries outside 1..={n}", workload.title()).into());
    }
    outcome.note = format!("{n} distinct checked, {duplicates} redelivered");
    if members > 1 {
        outcome.note.push_str(&format!(", shares {shares:?}"));
    }
    if let Some(profile) = &outcome.catch_up {
        outcome.note.push_str(&format!("; {}", profile.summary()));
    }
    Ok(outcome)
}

/// (f): publishes at a fixed rate (each publish on its own task, so a slow ack
/// does not slow the rate) while one consumer takes and acks; the latency of a
/// message is from just before its publish to its arrival at the consumer.
async fn latency(side: Arc<dyn Side>, plan: &Plan, counter: &Counter) -> BenchResult<Outcome> {
    let n = plan.latency_messages;
    let size = plan.options.payload.max(8);
    let subject = subject(Workload::F);
    counter.expect(n);
    side.create_consumer(Workload::F.key(), "probe").await?;
    let mut member = side.member(Workload::F.key(), "probe", 0).await?;
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
                    let mut sent = [0u8; 8];
                    sent.copy_from_slice(&message.payload[..8]);
                    let sent = origin + Duration::from_nanos(u64::from_le_bytes(sent));
                    if seen.mark(message.seq) {
                        samples.push(micros(message.arrived.saturating_duration_since(sent)));
                        counter.add(1);
                    }
                }
            }
            Ok(samples)
        })
    };
    let period = Duration::from_secs_f64(1.0 / plan.options.rate.max(1) as f64);
    let mut tick = tokio::time::interval(period);
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
        return Err(format!("a latency publish failed: {first}").into());
    }
    let samples = collector.await??;
    let mut outcome = Outcome::new(Workload::F, n, seconds, samples);
    outcome.note = format!("{} msgs/s offered, {n} distinct received", plan.options.rate);
    Ok(outcome)
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}
