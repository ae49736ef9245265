//! Consume-transform-produce in one transaction (embedded): the follow-up
//! messages and the input's ack commit together, so after a crash at any
//! point both happened or neither did.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald::{Bus, Engine, ErrorKind, OutgoingMessage, ReadRange, Subject};
use herald_testkit::faulty_storage::FaultyStorage;

fn bus_on(disk: &FaultyStorage) -> Bus {
    Bus::from_engine(Engine::builder().storage_backend(disk.clone()).open().unwrap())
}

fn out(n: u64) -> OutgoingMessage {
    OutgoingMessage::new(
        Subject::new("invoices.created").unwrap(),
        format!("invoice for order {n}"),
    )
}

/// (invoices stored, the consumer's ack floor) in a reopened copy of `image`.
async fn state_of(image: Vec<u8>) -> (u64, u64) {
    let bus = bus_on(&FaultyStorage::from_image(image));
    let invoices = match bus.stream_info("invoices").await {
        Ok(info) => info.state.messages,
        Err(err) if err.kind() == ErrorKind::StreamNotFound => 0,
        Err(err) => panic!("{err}"),
    };
    let floor = bus
        .bind_consumer("orders", "invoicer")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .ack_floor;
    (invoices, floor)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follow_ups_and_the_ack_are_durable_together() {
    let disk = FaultyStorage::new();
    let bus = bus_on(&disk);
    for i in 1..=3 {
        bus.publish("orders.placed", format!("order {i}")).await.unwrap();
    }
    bus.publish("invoices.created", "seed").await.unwrap();
    let consumer = bus.consumer("orders", "invoicer").create().await.unwrap();
    for expected in 1..=3u64 {
        let received = consumer.fetch(1, Duration::from_secs(1)).await.unwrap().pop().unwrap();
        assert_eq!(received.message.seq, expected);
        let acks = bus.publish_and_ack(&received, vec![out(expected)]).await.unwrap();
        assert_eq!(acks[0].seq, expected + 1);
        // Right after it returns, a crash keeps both: the durable image has them.
        assert_eq!(state_of(disk.durable_image()).await, (expected + 1, expected));
        // And the ack is real: the message is not delivered again.
        received.ack().await.unwrap(); // acking again is an idempotent no-op
    }
    assert!(consumer.fetch(1, Duration::from_millis(50)).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_leaves_neither_the_follow_ups_nor_the_ack() {
    let disk = FaultyStorage::new();
    let bus = bus_on(&disk);
    bus.publish("orders.placed", "order 1").await.unwrap();
    bus.publish("invoices.created", "seed").await.unwrap();
    let consumer = bus.consumer("orders", "invoicer").create().await.unwrap();
    // Make the consumer's creation durable before the fault.
    bus.publish("invoices.created", "seed 2").await.unwrap();
    let received = consumer.fetch(1, Duration::from_secs(1)).await.unwrap().pop().unwrap();
    disk.fail_next_sync();
    let err = bus.publish_and_ack(&received, vec![out(1)]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
    assert_eq!(
        state_of(disk.durable_image()).await,
        (2, 0),
        "neither the invoice nor the ack"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_publishes_nothing_and_a_bad_publish_acks_nothing() {
    let bus = Bus::memory().unwrap();
    bus.publish("orders.placed", "order 1").await.unwrap();
    bus.publish("invoices.created", "seed").await.unwrap();
    let consumer = bus
        .consumer("orders", "invoicer")
        .ack_wait(Duration::from_millis(50))
        .create()
        .await
        .unwrap();
    let first = consumer.fetch(1, Duration::from_secs(1)).await.unwrap().pop().unwrap();
    // A publish that fails (wrong expectation) acks nothing.
    let conflicting = out(1).expect_last_subject_seq(99);
    assert_eq!(
        bus.publish_and_ack(&first, vec![conflicting]).await.unwrap_err().kind(),
        ErrorKind::WrongExpectedSeq
    );
    assert_eq!(consumer.info().await.unwrap().ack_floor, 0);
    // The lease runs out and another member takes it: the old holder publishes nothing.
    tokio::time::sleep(Duration::from_millis(80)).await;
    let other = consumer.member("m2").unwrap();
    let second = other.fetch(1, Duration::from_secs(1)).await.unwrap().pop().unwrap();
    assert_eq!(second.deliveries, 2);
    assert_eq!(
        bus.publish_and_ack(&first, vec![out(1)]).await.unwrap_err().kind(),
        ErrorKind::LeaseLost
    );
    let invoices = bus.read("invoices", ReadRange::from_seq(1, 10)).await.unwrap();
    assert_eq!(invoices.len(), 1, "only the seed");
    bus.publish_and_ack(&second, vec![out(1)]).await.unwrap();
    assert_eq!(consumer.info().await.unwrap().ack_floor, 1);
    // Reserved subjects are refused before anything happens.
    let reserved = OutgoingMessage::new(Subject::new("$kv-x.y").unwrap(), "no");
    assert_eq!(
        bus.publish_and_ack(&second, vec![reserved]).await.unwrap_err().kind(),
        ErrorKind::InvalidSubject
    );
}
