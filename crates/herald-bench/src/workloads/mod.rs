//! The workloads (a)-(g), written once against [`Side`]: the publishing
//! ones here, the consuming ones in `consuming`, the latency probes in
//! `latency`.

mod consuming;
mod latency;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::BenchResult;
use crate::plan::{Plan, Target, Workload};
use crate::progress::Counter;
use crate::report::Outcome;
use crate::side::Side;

/// A consuming workload that makes no progress for this long has failed.
const STALL: Duration = Duration::from_secs(30);

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
        Workload::D | Workload::E => consuming::batches(side, plan, workload, counter).await?,
        Workload::D1 => consuming::plain(side, plan, counter).await?,
        Workload::F => latency::consumer(side, plan, counter).await?,
        Workload::G50 | Workload::G2000 => latency::live(side, plan, workload, counter).await?,
    };
    outcome.target = target;
    Ok(outcome)
}

/// The subject a workload publishes to.
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

/// A duration in whole microseconds, saturating.
fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX)
}
