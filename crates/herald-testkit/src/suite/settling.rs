//! Settling: only the member holding a delivery's lease settles it. Any other
//! settle is `LeaseLost` and changes nothing, whatever the seq and the verb.

use std::time::Duration;

use herald::{ConsumerName, ErrorKind, Settle, StartPolicy, StreamName};

use super::{kind, seqs_held};
use crate::TestBus;

const NO_WAIT: Duration = Duration::ZERO;

/// Every way to settle a delivery.
fn every_settle() -> [Settle; 4] {
    [
        Settle::Ack,
        Settle::Nak { delay: Duration::ZERO },
        Settle::InProgress,
        Settle::Term {
            reason: "not yours".into(),
        },
    ]
}

/// What a refused settle must leave as it was: the consumer's progress and
/// members (with when each was last seen), the stream and the dead letters.
#[derive(Debug, PartialEq)]
struct Snapshot {
    progress: (u64, u64, u64, u64, u64, u64, u64),
    members: Vec<(String, u64, herald::Timestamp)>,
    held: Vec<u64>,
    dead_letters: usize,
}

async fn snapshot(bus: &TestBus, stream: &str, consumer: &str) -> Snapshot {
    let info = bus.consumer_info(stream, consumer).await.unwrap();
    Snapshot {
        progress: (
            info.ack_floor,
            info.next_seq,
            info.pending,
            info.in_flight,
            info.delivered,
            info.redelivered,
            info.dead_lettered,
        ),
        members: info
            .members
            .iter()
            .map(|m| (m.name.to_string(), m.in_flight, m.last_seen))
            .collect(),
        held: seqs_held(bus, stream).await,
        dead_letters: bus.dead_letters(stream, consumer, 100).await.unwrap().len(),
    }
}

/// Settles delivery `deliveries` of `seq` as `member`, in every way, and
/// checks that each is `LeaseLost` and changes nothing.
async fn refused(bus: &TestBus, stream: &str, consumer: &str, member: &str, seq: u64, deliveries: u32) {
    let (stream_name, consumer_name) = (StreamName::new(stream).unwrap(), ConsumerName::new(consumer).unwrap());
    let member_name = ConsumerName::new(member).unwrap();
    for settle in every_settle() {
        let before = snapshot(bus, stream, consumer).await;
        let outcome = bus
            .backend()
            .settle(
                &stream_name,
                &consumer_name,
                &member_name,
                seq,
                deliveries,
                settle.clone(),
            )
            .await;
        assert_eq!(
            kind(outcome),
            ErrorKind::LeaseLost,
            "{settle:?} of seq {seq} (delivery {deliveries}) by `{member}` on `{consumer}`"
        );
        assert_eq!(
            snapshot(bus, stream, consumer).await,
            before,
            "the refused {settle:?} of seq {seq} by `{member}` changed something"
        );
    }
}

/// A seq the consumer's filter skipped was never delivered to it, though it
/// lies below the ack floor: no member may settle it.
pub async fn settling_a_seq_the_filter_skipped_is_lease_lost(bus: &TestBus) {
    for subject in ["s.a", "s.b", "s.a"] {
        bus.publish(subject, "x").await.unwrap();
    }
    let only_a = bus.consumer("s", "only-a").filter("s.a").create().await.unwrap();
    let only_b = bus.consumer("s", "only-b").filter("s.b").create().await.unwrap();
    let got = only_a.fetch(10, NO_WAIT).await.unwrap();
    assert_eq!(got.iter().map(|d| d.message.seq).collect::<Vec<_>>(), [1, 3]);
    got[0].ack().await.unwrap();
    let b = only_b.fetch(10, NO_WAIT).await.unwrap().pop().unwrap();
    b.ack().await.unwrap();
    assert_eq!(only_a.info().await.unwrap().ack_floor, 2, "seq 2 is below the floor");
    refused(bus, "s", "only-a", "default", 2, 1).await;
    refused(bus, "s", "only-b", "default", 1, 1).await;
    refused(bus, "s", "only-b", "default", 3, 1).await;
    // What is held is still the holder's to settle.
    got[1].ack().await.unwrap();
    assert_eq!(only_a.info().await.unwrap().ack_floor, 3);
}

/// A seq the consumer never delivered (before its start, published but not
/// fetched yet, past the stream's end) cannot be settled.
pub async fn settling_a_seq_never_delivered_is_lease_lost(bus: &TestBus) {
    for i in 0..4 {
        bus.publish("n.x", format!("{i}")).await.unwrap();
    }
    let late = bus
        .consumer("n", "late")
        .start(StartPolicy::FromSeq(3))
        .create()
        .await
        .unwrap();
    let first = late.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    assert_eq!(first.message.seq, 3);
    for seq in [1, 2, 4, 99] {
        refused(bus, "n", "late", "default", seq, 1).await;
    }
    refused(bus, "n", "late", "default", 3, 2).await;
    first.ack().await.unwrap();
    let next = late.fetch(5, NO_WAIT).await.unwrap();
    assert_eq!(next.iter().map(|d| d.message.seq).collect::<Vec<_>>(), [4]);
}

/// Another member's lease is not the caller's, nor is one of a member that
/// never fetched; a refused member is not listed.
pub async fn settling_another_members_lease_is_lease_lost(bus: &TestBus) {
    bus.publish("g.x", "job").await.unwrap();
    let group = bus
        .consumer("g", "workers")
        .ack_wait(Duration::from_secs(60))
        .create()
        .await
        .unwrap();
    let (one, two) = (group.member("one").unwrap(), group.member("two").unwrap());
    let held = one.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    assert!(two.fetch(1, NO_WAIT).await.unwrap().is_empty());
    refused(bus, "g", "workers", "two", 1, 1).await;
    refused(bus, "g", "workers", "intruder", 1, 1).await;
    refused(bus, "g", "workers", "one", 1, 2).await;
    let names: Vec<String> = group
        .info()
        .await
        .unwrap()
        .members
        .iter()
        .map(|m| m.name.to_string())
        .collect();
    assert_eq!(names, ["one", "two"]);
    held.ack().await.unwrap();
}

/// Once settled, a delivery takes only one more settle: its holder's repeated
/// ack of what it acked. Another member's ack, another delivery count, and
/// every settle after a nak or a term are refused.
pub async fn only_the_holders_repeated_ack_of_an_acked_delivery_succeeds(bus: &TestBus) {
    for i in 0..3 {
        bus.publish("r.x", format!("{i}")).await.unwrap();
    }
    let group = bus
        .consumer("r", "workers")
        .ack_wait(Duration::from_secs(60))
        .create()
        .await
        .unwrap();
    let (one, two) = (group.member("one").unwrap(), group.member("two").unwrap());
    let got = one.fetch(3, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 3);
    two.fetch(1, NO_WAIT).await.unwrap();

    got[0].ack().await.unwrap();
    got[0].ack().await.unwrap();
    refused(bus, "r", "workers", "two", 1, 1).await;
    refused(bus, "r", "workers", "one", 1, 2).await;
    let (stream, consumer, member) = (
        StreamName::new("r").unwrap(),
        ConsumerName::new("workers").unwrap(),
        ConsumerName::new("one").unwrap(),
    );
    for settle in every_settle().into_iter().skip(1) {
        let outcome = bus
            .backend()
            .settle(&stream, &consumer, &member, 1, 1, settle.clone())
            .await;
        assert_eq!(kind(outcome), ErrorKind::LeaseLost, "{settle:?} after an ack");
    }

    got[1].nak_after(Duration::from_secs(60)).await.unwrap();
    refused(bus, "r", "workers", "one", 2, 1).await;

    got[2].term("unreadable").await.unwrap();
    refused(bus, "r", "workers", "one", 3, 1).await;
    assert_eq!(bus.dead_letters("r", "workers", 10).await.unwrap().len(), 1);
}
