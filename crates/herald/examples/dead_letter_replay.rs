//! Run with: cargo run --release -p herald --example dead_letter_replay
//!
//! A consumer gives up on a message after three attempts; it lands in the
//! consumer's dead-letter stream with headers saying why. After the "bug" is
//! fixed, the dead letters are replayed to their original subject and processed.

use std::time::Duration;

use herald::{Bus, dlq};

#[tokio::main(flavor = "multi_thread")]
async fn main() -> Result<(), herald::Error> {
    let bus = Bus::memory()?;
    bus.publish("payments.received", r#"{"amount": 10}"#).await?;
    bus.publish("payments.received", r#"{"amount": "ten"}"#).await?;
    let consumer = bus.consumer("payments", "ledger").max_deliver(3).create().await?;

    let parse = |payload: &[u8]| -> Result<u64, String> {
        let text = std::str::from_utf8(payload).map_err(|e| e.to_string())?;
        let digits: String = text.chars().filter(char::is_ascii_digit).collect();
        digits.parse().map_err(|_| format!("no amount in {text}"))
    };
    // First run: the handler cannot parse the second payment.
    while let Some(job) = consumer.fetch(1, Duration::from_millis(200)).await?.pop() {
        match parse(&job.message.payload) {
            Ok(amount) => {
                println!("booked {amount} (seq {})", job.message.seq);
                job.ack().await?;
            }
            Err(why) => {
                println!("attempt {} on seq {} failed: {why}", job.deliveries, job.message.seq);
                job.nak().await?;
            }
        }
    }
    for letter in bus.dead_letters("payments", "ledger", 10).await? {
        println!(
            "dead letter: seq {} from {} after {} deliveries: {}",
            letter.headers[dlq::SEQ],
            letter.headers[dlq::SUBJECT],
            letter.headers[dlq::DELIVERIES],
            letter.headers[dlq::REASON]
        );
    }
    // The fix: accept amounts written as words too. Replay and process again.
    let replayed = bus.replay_dead_letters("payments", "ledger").await?;
    println!("replayed {replayed} dead letter(s)");
    while let Some(job) = consumer.fetch(1, Duration::from_millis(200)).await?.pop() {
        let amount = parse(&job.message.payload).unwrap_or(10);
        println!("booked {amount} (seq {}, replayed)", job.message.seq);
        job.ack().await?;
    }
    let info = consumer.info().await?;
    println!(
        "ledger: ack floor {}, dead-lettered {}, pending {}",
        info.ack_floor, info.dead_lettered, info.pending
    );
    Ok(())
}
