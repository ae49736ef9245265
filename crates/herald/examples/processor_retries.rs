//! Run with: cargo run -p herald --example processor_retries
//!
//! An event processor routes `shipments.*` to a handler that fails now and
//! then: a flaky failure is retried with exponential backoff and succeeds; a
//! permanent one uses up its attempts and lands in the dead-letter stream.
//! The processor's position is its consumer's ack floor.

use std::time::Duration;

use herald::processor::HandlerError;
use herald::{Backoff, Bus, ErrorStrategy, Exhausted};

#[tokio::main]
async fn main() -> Result<(), herald::Error> {
    let dir = tempfile::tempdir()?;
    let bus = Bus::open(dir.path()).await?;
    for parcel in ["p-1", "p-2-flaky", "p-3", "p-4-lost"] {
        bus.publish("shipments.label", parcel).await?;
    }
    let processor = bus
        .processor("shipments", "labels")
        .route("shipments.*", |delivery| async move {
            let parcel = String::from_utf8_lossy(&delivery.message.payload).into_owned();
            let attempt = delivery.deliveries;
            if parcel.ends_with("-lost") || (parcel.ends_with("-flaky") && attempt < 3) {
                println!("{parcel}: attempt {attempt} failed");
                return Err::<(), HandlerError>(format!("carrier rejected {parcel}").into());
            }
            println!("{parcel}: label printed (attempt {attempt})");
            Ok(())
        })
        .on_error(ErrorStrategy::Retry {
            backoff: Backoff::new(4, Duration::from_millis(50)),
            then: Exhausted::DeadLetter,
        })
        .start()
        .await?;
    while processor.stats().processed + processor.stats().dead_lettered < 4 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!("lag: {}", processor.lag().await?);
    let stats = processor.shutdown().await?;
    println!("{stats:?}");
    for letter in bus.dead_letters("shipments", "labels", 10).await? {
        println!("dead letter: {}", String::from_utf8_lossy(&letter.payload));
    }
    Ok(())
}
