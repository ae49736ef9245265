//! Run with: cargo run --release -p herald --example consumer_group
//!
//! Three workers share one durable consumer: each order is leased to one worker
//! at a time, a worker that crashes mid-job loses its lease and the job goes to
//! another, and every order is processed.

use std::collections::HashSet;
use std::time::Duration;

use herald::{Bus, StreamConfig};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), herald::Error> {
    let bus = Bus::memory()?;
    bus.create_stream(StreamConfig::new("orders")?).await?;
    let orders = 30;
    for i in 0..orders {
        bus.publish("orders.created", format!("order-{i}")).await?;
    }

    let group = bus
        .consumer("orders", "fulfilment")
        .ack_wait(Duration::from_millis(500))
        .create()
        .await?;
    let mut workers = Vec::new();
    for w in 0..3 {
        let member = group.member(format!("worker-{w}"))?;
        workers.push(tokio::spawn(async move {
            let mut done = Vec::new();
            loop {
                let batch = member.fetch(5, Duration::from_secs(2)).await?;
                if batch.is_empty() {
                    return Ok::<_, herald::Error>(done);
                }
                for job in batch {
                    // Whoever first gets order 7 "crashes" on it: no ack, so the lease
                    // runs out and the order comes back to the group.
                    if job.message.payload == "order-7" && job.deliveries == 1 {
                        println!("worker-{w} dropped order-7 without acking");
                        continue;
                    }
                    job.ack().await?;
                    done.push((job.message.seq, job.deliveries));
                }
            }
        }));
    }
    let mut seen = HashSet::new();
    for (w, worker) in workers.into_iter().enumerate() {
        let done = worker.await.expect("worker task")?;
        let redelivered = done.iter().filter(|(_, d)| *d > 1).count();
        println!("worker-{w}: {} orders ({redelivered} redelivered)", done.len());
        seen.extend(done.into_iter().map(|(seq, _)| seq));
    }
    let info = group.info().await?;
    println!(
        "{} distinct orders processed; ack floor {}, pending {}, redelivered {}",
        seen.len(),
        info.ack_floor,
        info.pending,
        info.redelivered
    );
    assert_eq!(seen.len(), orders);
    Ok(())
}
