//! Job queues: dedup keys, delays, priorities without starvation, attempts,
//! leases and heartbeats, dead letters.

use std::time::Duration;

use herald::{ErrorKind, NewJob};

use super::kind;
use crate::TestBus;

const NOW: Duration = Duration::ZERO;

/// Two jobs with one dedup key run once.
pub async fn two_jobs_with_one_dedup_key_run_once(bus: &TestBus) {
    let jobs = bus.jobs("mail").open().await.unwrap();
    let first = jobs
        .enqueue(NewJob::new("welcome ann").key("welcome-ann"))
        .await
        .unwrap();
    let second = jobs
        .enqueue(NewJob::new("welcome ann").key("welcome-ann"))
        .await
        .unwrap();
    assert!(!first.duplicate);
    assert!(second.duplicate && second.seq == first.seq);
    let job = jobs.claim("w1", NOW).await.unwrap().unwrap();
    assert_eq!(
        (job.id.as_str(), job.attempt, &job.payload[..]),
        ("welcome-ann", 1, &b"welcome ann"[..])
    );
    job.ack().await.unwrap();
    assert!(jobs.claim("w1", NOW).await.unwrap().is_none(), "the key ran once");
    // The work queue deleted the done job.
    assert_eq!(bus.stream_info("$jobs-mail").await.unwrap().state.messages, 0);
}

/// A delayed job is not claimed before its time, then is.
pub async fn a_delayed_job_is_not_claimed_early(bus: &TestBus) {
    let jobs = bus.jobs("reminders").open().await.unwrap();
    jobs.enqueue(NewJob::new("later").key("r1").delay(Duration::from_secs(10)))
        .await
        .unwrap();
    jobs.enqueue(NewJob::new("now")).await.unwrap();
    let now = jobs.claim("w", NOW).await.unwrap().unwrap();
    assert_eq!(&now.payload[..], b"now");
    now.ack().await.unwrap();
    assert!(jobs.claim("w", NOW).await.unwrap().is_none());
    bus.advance(Duration::from_secs(5)).await;
    assert!(jobs.claim("w", NOW).await.unwrap().is_none(), "not at 5 s");
    bus.advance(Duration::from_secs(5)).await;
    let due = jobs.claim("w", Duration::from_secs(1)).await.unwrap().unwrap();
    assert_eq!(
        (&due.payload[..], due.id.as_str(), due.attempt),
        (&b"later"[..], "r1", 1)
    );
    due.ack().await.unwrap();
    assert!(jobs.claim("w", NOW).await.unwrap().is_none());
}

/// Urgent jobs go first, in order, but the least urgent level still gets a share.
pub async fn priorities_are_served_in_order_without_starving_the_low_levels(bus: &TestBus) {
    let jobs = bus.jobs("work").levels(3).open().await.unwrap();
    for i in 0..20 {
        jobs.enqueue(NewJob::new(format!("low-{i}")).priority(2)).await.unwrap();
    }
    for i in 0..20 {
        jobs.enqueue(NewJob::new(format!("high-{i}")).priority(0))
            .await
            .unwrap();
    }
    let mut served = Vec::new();
    for _ in 0..14 {
        let job = jobs.claim("w", NOW).await.unwrap().unwrap();
        served.push((job.priority, String::from_utf8(job.payload.to_vec()).unwrap()));
        job.ack().await.unwrap();
    }
    assert_eq!(served[0], (0, "high-0".to_string()), "the most urgent level goes first");
    let lows: Vec<&String> = served.iter().filter(|(p, _)| *p == 2).map(|(_, s)| s).collect();
    let highs: Vec<&String> = served.iter().filter(|(p, _)| *p == 0).map(|(_, s)| s).collect();
    assert_eq!(
        lows.len(),
        2,
        "one claim in seven leads with the lowest level: {served:?}"
    );
    assert!(highs.len() > lows.len() * 5, "{served:?}");
    let in_order =
        |items: &[&String], prefix: &str| items.iter().enumerate().all(|(i, s)| **s == format!("{prefix}-{i}"));
    assert!(
        in_order(&highs, "high") && in_order(&lows, "low"),
        "each level is FIFO: {served:?}"
    );
}

/// Failed attempts are counted; past the last one the job is dead-lettered.
pub async fn a_job_is_retried_with_its_attempt_count_then_dead_lettered(bus: &TestBus) {
    let jobs = bus.jobs("billing").open().await.unwrap();
    jobs.enqueue(NewJob::new("charge 42").key("charge-42").max_attempts(3))
        .await
        .unwrap();
    for attempt in 1..=3 {
        let job = jobs.claim("w", NOW).await.unwrap().unwrap();
        assert_eq!((job.attempt, job.max_attempts), (attempt, 3));
        job.retry_after(Duration::from_secs(2)).await.unwrap();
        assert!(
            jobs.claim("w", NOW).await.unwrap().is_none(),
            "not before the retry delay"
        );
        bus.advance(Duration::from_secs(2)).await;
    }
    assert!(
        jobs.claim("w", NOW).await.unwrap().is_none(),
        "three attempts were all it had"
    );
    let dead = jobs.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id.as_str(), dead[0].attempts), ("charge-42", 3));
    assert_eq!(&dead[0].payload[..], b"charge 42");
    assert!(dead[0].reason.contains("3 attempts"), "{}", dead[0].reason);
}

/// A worker can give up on a job at once, with its reason.
pub async fn a_job_is_dead_lettered_with_a_reason(bus: &TestBus) {
    let jobs = bus.jobs("imports").open().await.unwrap();
    jobs.enqueue(NewJob::new("bad.csv")).await.unwrap();
    let job = jobs.claim("w", NOW).await.unwrap().unwrap();
    job.dead_letter("unparseable header row").await.unwrap();
    assert!(jobs.claim("w", NOW).await.unwrap().is_none());
    let dead = jobs.dead_letters(10).await.unwrap();
    assert_eq!(
        (dead.len(), dead[0].reason.as_str(), dead[0].attempts),
        (1, "unparseable header row", 1)
    );
}

/// A claim is a lease: heartbeats keep it, silence hands the job to another worker.
pub async fn a_claimed_job_is_leased_and_heartbeats_keep_it(bus: &TestBus) {
    let jobs = bus.jobs("render").lease(Duration::from_secs(10)).open().await.unwrap();
    jobs.enqueue(NewJob::new("frame-1")).await.unwrap();
    let job = jobs.claim("w1", NOW).await.unwrap().unwrap();
    assert_eq!(job.worker().as_str(), "w1");
    bus.advance(Duration::from_secs(8)).await;
    job.heartbeat().await.unwrap();
    bus.advance(Duration::from_secs(8)).await;
    assert!(
        jobs.claim("w2", NOW).await.unwrap().is_none(),
        "the heartbeat kept the lease"
    );
    bus.advance(Duration::from_secs(3)).await;
    let retried = jobs.claim("w2", NOW).await.unwrap().unwrap();
    assert_eq!((retried.attempt, retried.worker().as_str()), (2, "w2"));
    assert_eq!(kind(job.ack().await), ErrorKind::LeaseLost, "the first worker lost it");
    retried.ack().await.unwrap();
}

/// Bad queues and jobs are typed errors and enqueue nothing.
pub async fn invalid_queues_and_jobs_are_rejected(bus: &TestBus) {
    assert_eq!(kind(bus.jobs("a.b").open().await), ErrorKind::InvalidName);
    assert_eq!(kind(bus.jobs("q").levels(0).open().await), ErrorKind::InvalidConfig);
    assert_eq!(kind(bus.jobs("q").levels(9).open().await), ErrorKind::InvalidConfig);
    let jobs = bus.jobs("q").levels(2).open().await.unwrap();
    assert_eq!(
        kind(jobs.enqueue(NewJob::new("x").priority(2)).await),
        ErrorKind::InvalidRequest
    );
    assert_eq!(
        kind(jobs.enqueue(NewJob::new("x").max_attempts(0)).await),
        ErrorKind::InvalidRequest
    );
    assert_eq!(kind(jobs.claim("bad worker", NOW).await), ErrorKind::InvalidName);
    assert!(jobs.claim("w", NOW).await.unwrap().is_none(), "nothing was enqueued");
}
