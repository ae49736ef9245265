//! Run with: cargo run --release -p herald --example quickstart
//!
//! Herald's main job until the server lands: open a durable bus on ./herald-data,
//! publish to a few subjects (single, batched, deduplicated, with an expected
//! version), and read the stream back by seq and by subject.

use herald::{Bus, OutgoingMessage, ReadRange, StreamConfig, Subject};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), herald::Error> {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "herald-data".to_string());
    let bus = Bus::open(&dir).await?;
    println!("opened a durable bus in {dir}/");

    bus.create_stream(StreamConfig::new("orders")?.max_msgs(100_000).subject_index(true))
        .await?;
    let before = bus.stream_info("orders").await?.state;

    // Every publish returns once its commit is fsynced.
    let created = bus.publish("orders.created", r#"{"order":1}"#).await?;
    println!("published orders.created at seq {}", created.seq);

    // A retried publish with the same id is recognised and written once.
    let paid = OutgoingMessage::new(Subject::new("orders.paid")?, r#"{"order":1}"#).id(format!("paid-{}", created.seq));
    let first = bus.publish_message(paid.clone()).await?;
    let retry = bus.publish_message(paid).await?;
    println!(
        "paid at seq {}, retry duplicate={} (seq {})",
        first.seq, retry.duplicate, retry.seq
    );

    // A batch is atomic and gets consecutive seqs.
    let batch = (0..3)
        .map(|i| {
            Ok(OutgoingMessage::new(
                Subject::new("orders.shipped")?,
                format!("parcel {i}"),
            ))
        })
        .collect::<Result<Vec<_>, herald::Error>>()?;
    let acks = bus.publish_batch(batch).await?;
    println!("batch got seqs {:?}", acks.iter().map(|a| a.seq).collect::<Vec<_>>());

    // Optimistic concurrency: append only if the subject is still at the version we saw.
    let version = bus.last("orders", "orders.paid").await?.seq;
    let update = OutgoingMessage::new(Subject::new("orders.paid")?, "refund").expect_last_subject_seq(version);
    bus.publish_message(update).await?;

    for m in bus
        .read("orders", ReadRange::from_seq(before.last_seq + 1, 100))
        .await?
    {
        println!(
            "  #{:<4} {:<16} {}",
            m.seq,
            m.subject,
            String::from_utf8_lossy(&m.payload)
        );
    }
    let paid_history = bus.read_subject("orders", "orders.paid", 1, 100).await?;
    let info = bus.stream_info("orders").await?.state;
    println!(
        "orders: {} messages, seqs {}..={}, {} subjects; orders.paid has {} messages",
        info.messages,
        info.first_seq,
        info.last_seq,
        info.subjects,
        paid_history.len()
    );
    Ok(())
}
