//! (d), (d1), (e): a durable consumer catching up on N stored messages.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::{STALL, subject};
use crate::BenchResult;
use crate::plan::{Plan, Workload};
use crate::progress::Counter;
use crate::report::Outcome;
use crate::seen::Seen;
use crate::side::Side;

/// Messages per fill call before a catch-up, and the bite of a lone member.
const FILL_BATCH: usize = 1000;

/// The consumer every catch-up reads with.
const CONSUMER: &str = "bench";

/// (d), (e): one consumer or a 4-member group takes batches and acks them;
/// timed until the N-th distinct message.
pub(super) async fn batches(
    side: Arc<dyn Side>,
    plan: &Plan,
    workload: Workload,
    counter: &Counter,
) -> BenchResult<Outcome> {
    let n = plan.consume;
    fill(side.as_ref(), plan, workload, counter).await?;
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
        handles.push(side.member(workload.key(), CONSUMER, m).await?);
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
                        return Err(stalled(&seen));
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
    let mut outcome = checked(workload, &seen, started)?;
    if members > 1 {
        outcome.note.push_str(&format!(", shares {shares:?}"));
    }
    with_profile(&mut outcome);
    Ok(outcome)
}

/// (d1): the same catch-up as (d) the simple way: the next message, its ack
/// awaited, then the next; nothing batched by the program.
pub(super) async fn plain(side: Arc<dyn Side>, plan: &Plan, counter: &Counter) -> BenchResult<Outcome> {
    let workload = Workload::D1;
    fill(side.as_ref(), plan, workload, counter).await?;
    let mut reader = side.plain(workload.key(), CONSUMER).await?;
    let seen = Seen::new(plan.consume);
    let started = Instant::now();
    while !seen.complete() {
        let message = tokio::time::timeout(STALL, reader.next())
            .await
            .map_err(|_| stalled(&seen))??;
        if seen.mark(message.seq) {
            counter.add(1);
        }
        seen.observe();
    }
    let mut outcome = checked(workload, &seen, started)?;
    with_profile(&mut outcome);
    Ok(outcome)
}

/// Stores N messages (not timed) and creates the consumer.
async fn fill(side: &dyn Side, plan: &Plan, workload: Workload, counter: &Counter) -> BenchResult<()> {
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
    side.create_consumer(workload.key(), CONSUMER).await
}

fn stalled(seen: &Seen) -> crate::BenchError {
    format!("stalled: {} of {} distinct messages", seen.distinct(), seen.target()).into()
}

/// The outcome once every member is done: timed to the N-th distinct
/// message, with its profile; strays fail the run.
fn checked(workload: Workload, seen: &Seen, started: Instant) -> BenchResult<Outcome> {
    let n = seen.target();
    let complete_at = seen.complete_at().ok_or("no member saw the last message")?;
    let strays = seen.out_of_range();
    if strays > 0 {
        return Err(format!("{}: {strays} deliveries outside 1..={n}", workload.title()).into());
    }
    let seconds = complete_at.duration_since(started).as_secs_f64();
    let mut outcome = Outcome::new(workload, n, seconds, Vec::new());
    outcome.catch_up = seen.catch_up(started);
    outcome.note = format!("{n} distinct checked, {} redelivered", seen.duplicates());
    Ok(outcome)
}

/// Ends the note with the catch-up profile.
fn with_profile(outcome: &mut Outcome) {
    if let Some(profile) = &outcome.catch_up {
        outcome.note.push_str(&format!("; {}", profile.summary()));
    }
}
