//! Run with: cargo run -p herald --example job_worker
//!
//! A job queue with two workers: jobs with dedup keys (the duplicate is not
//! enqueued), a delayed job, two priority levels, a flaky job that succeeds on
//! its third attempt, and a poisoned one that is dead-lettered after its
//! attempts run out.

use std::time::Duration;

use herald::{Bus, Jobs, NewJob};

async fn worker(jobs: Jobs, name: &'static str) -> Result<(), herald::Error> {
    while let Some(job) = jobs.claim(name, Duration::from_millis(1500)).await? {
        let text = String::from_utf8_lossy(&job.payload).into_owned();
        if text == "poison" || (text == "flaky" && job.attempt < 3) {
            println!("{name}: {text} failed (attempt {}/{})", job.attempt, job.max_attempts);
            job.retry_after(Duration::from_millis(100)).await?;
            continue;
        }
        // Long work keeps its lease with heartbeats.
        job.heartbeat().await?;
        println!(
            "{name}: did {text} (priority {}, attempt {})",
            job.priority, job.attempt
        );
        job.ack().await?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), herald::Error> {
    let dir = tempfile::tempdir()?;
    let bus = Bus::open(dir.path()).await?;
    let jobs = bus.jobs("demo").levels(2).max_attempts(4).open().await?;
    for i in 0..3 {
        jobs.enqueue(NewJob::new(format!("report-{i}")).priority(1)).await?;
    }
    jobs.enqueue(NewJob::new("invoice-7").key("invoice-7")).await?;
    let again = jobs.enqueue(NewJob::new("invoice-7").key("invoice-7")).await?;
    println!("second invoice-7 enqueued? {}", !again.duplicate);
    jobs.enqueue(NewJob::new("delayed").delay(Duration::from_millis(500)))
        .await?;
    jobs.enqueue(NewJob::new("flaky")).await?;
    jobs.enqueue(NewJob::new("poison")).await?;

    let workers = [
        tokio::spawn(worker(jobs.clone(), "w1")),
        tokio::spawn(worker(jobs.clone(), "w2")),
    ];
    for w in workers {
        w.await.expect("worker task")?;
    }
    for dead in jobs.dead_letters(10).await? {
        println!(
            "dead: {} after {} attempts: {}",
            String::from_utf8_lossy(&dead.payload),
            dead.attempts,
            dead.reason
        );
    }
    Ok(())
}
