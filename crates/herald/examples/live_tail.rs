//! Run with: cargo run --release -p herald --example live_tail
//!
//! Tails `orders.>` across streams: replays what is already there, then follows
//! new messages as they are published, like `tail -f` for a bus.

use std::time::Duration;

use herald::{Bus, ReadFrom, StreamConfig};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), herald::Error> {
    let bus = Bus::memory()?;
    bus.create_stream(StreamConfig::new("eu")?.subjects(["orders.eu.>"])?)
        .await?;
    bus.create_stream(StreamConfig::new("us")?.subjects(["orders.us.>"])?)
        .await?;
    bus.publish("orders.eu.created", "eu order placed before the tail started")
        .await?;

    let mut tail = bus.subscribe_from("orders.>", ReadFrom::Seq(1)).await?;
    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            for i in 0..5 {
                let region = if i % 2 == 0 { "us" } else { "eu" };
                bus.publish(format!("orders.{region}.created"), format!("live order {i}"))
                    .await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok::<_, herald::Error>(())
        })
    };
    for _ in 0..6 {
        let m = tail.next().await?;
        println!(
            "{:<4} #{:<3} {:<20} {}",
            m.stream,
            m.seq,
            m.subject,
            String::from_utf8_lossy(&m.payload)
        );
    }
    publisher.await.expect("publisher task")?;
    Ok(())
}
