//! Live subscriptions.

use std::time::Duration;

use herald::{ErrorDetail, ErrorKind, ReadFrom, StreamConfig};

use super::msg;
use crate::TestBus;

const LONG: Duration = Duration::from_secs(10);

/// A subscription gets new messages matching its pattern from every stream.
pub async fn a_subscription_follows_a_pattern_across_streams(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("eu").unwrap().subjects(["shop.eu.>"]).unwrap())
        .await
        .unwrap();
    bus.create_stream(StreamConfig::new("us").unwrap().subjects(["shop.us.>"]).unwrap())
        .await
        .unwrap();
    bus.publish("shop.eu.created", "old").await.unwrap();
    let mut sub = bus.subscribe("shop.*.created").await.unwrap();
    bus.publish("shop.eu.paid", "not matched").await.unwrap();
    bus.publish("shop.us.created", "us-1").await.unwrap();
    bus.publish("shop.eu.created", "eu-1").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(LONG, sub.next()).await.unwrap().unwrap();
        got.push(String::from_utf8(m.payload.to_vec()).unwrap());
    }
    got.sort();
    assert_eq!(got, ["eu-1", "us-1"]);
    // A stream created after subscribing is followed too.
    bus.publish("shop.asia.created", "asia-1").await.unwrap_err();
    bus.create_stream(StreamConfig::new("asia").unwrap().subjects(["shop.asia.>"]).unwrap())
        .await
        .unwrap();
    bus.publish("shop.asia.created", "asia-1").await.unwrap();
    let m = tokio::time::timeout(LONG, sub.next()).await.unwrap().unwrap();
    assert_eq!(&m.payload[..], b"asia-1");
}

/// Replaying from a seq then following has no gap and no duplicate at the switch.
pub async fn replay_then_follow_has_no_gap_or_duplicate(bus: &TestBus) {
    bus.publish_batch((0..100).map(|i| msg("tail.x", format!("{i}"))).collect())
        .await
        .unwrap();
    let mut sub = bus.subscribe_from("tail.>", ReadFrom::Seq(1)).await.unwrap();
    let publisher = {
        let bus = herald::Bus::clone(bus);
        tokio::spawn(async move {
            for i in 100..300 {
                bus.publish("tail.x", format!("{i}")).await.unwrap();
            }
        })
    };
    for expected in 1..=300u64 {
        let m = tokio::time::timeout(LONG, sub.next()).await.unwrap().unwrap();
        assert_eq!(m.seq, expected);
        assert_eq!(m.payload, (expected - 1).to_string().as_bytes());
    }
    publisher.await.unwrap();
}

/// A subscriber that falls behind retention gets `Lagged` with what it missed,
/// then carries on from the oldest message left.
pub async fn a_slow_subscriber_is_told_it_lagged_and_resumes(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("ring").unwrap().max_msgs(10))
        .await
        .unwrap();
    let mut sub = bus.subscribe_from("ring.>", ReadFrom::Seq(1)).await.unwrap();
    bus.publish_batch((0..50).map(|i| msg("ring.x", format!("{i}"))).collect())
        .await
        .unwrap();
    let err = sub.next().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Lagged);
    assert_eq!(
        err.detail(),
        Some(&ErrorDetail::Lagged {
            missed: 40,
            resume_from: 41
        })
    );
    for expected in 41..=50 {
        assert_eq!(sub.next().await.unwrap().seq, expected);
    }
}

/// A publish racing a subscriber about to wait always wakes it.
pub async fn a_publish_racing_a_waiting_subscriber_is_never_missed(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("race").unwrap()).await.unwrap();
    let mut sub = bus.subscribe("race.>").await.unwrap();
    for round in 1..=1000u64 {
        let publisher = {
            let bus = herald::Bus::clone(bus);
            tokio::spawn(async move { bus.publish("race.x", "x").await.unwrap() })
        };
        let m = tokio::time::timeout(LONG, sub.next())
            .await
            .expect("woken by the commit")
            .unwrap();
        assert_eq!(m.seq, round);
        publisher.await.unwrap();
    }
}

/// A subscription taken up again (after a reconnect) with what it saw per
/// stream is not sent those messages again, nor told it lagged when
/// retention has deleted them since; it goes on with what follows.
pub async fn a_resumed_subscription_skips_what_it_saw_even_once_deleted(bus: &TestBus) {
    for name in ["r", "q"] {
        bus.create_stream(StreamConfig::new(name).unwrap()).await.unwrap();
    }
    for i in 1..=5 {
        bus.publish("r.x", format!("r{i}")).await.unwrap();
    }
    for i in 1..=3 {
        bus.publish("q.x", format!("q{i}")).await.unwrap();
    }
    // The subscriber had seen r up to 5 and q up to 2; r's five are purged since.
    bus.purge_stream("r", herald::Purge::all()).await.unwrap();
    bus.publish("r.x", "r6").await.unwrap();
    let seen = [("r", 5), ("q", 2)]
        .into_iter()
        .map(|(s, seq)| (herald::StreamName::new(s).unwrap(), seq))
        .collect();
    let pattern = herald::Pattern::new(">").unwrap();
    let mut sub = bus
        .backend()
        .subscribe_resuming(pattern, Some(ReadFrom::Seq(1)), seen)
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = tokio::time::timeout(LONG, sub.next()).await.unwrap().unwrap();
        got.push((
            m.stream.to_string(),
            m.seq,
            String::from_utf8(m.payload.to_vec()).unwrap(),
        ));
    }
    got.sort();
    assert_eq!(
        got,
        [
            ("q".to_owned(), 3, "q3".to_owned()),
            ("r".to_owned(), 6, "r6".to_owned())
        ]
    );
    bus.publish("r.x", "r7").await.unwrap();
    let m = tokio::time::timeout(LONG, sub.next()).await.unwrap().unwrap();
    assert_eq!((m.stream.as_str(), m.seq), ("r", 7));
}

/// A subscription resumed as having seen a stream up to the highest seq
/// there is takes nothing more of it, and goes on with the other streams
/// (the resume seq is the client's word: it used to overflow).
pub async fn a_subscription_resumed_at_the_highest_seq_skips_that_stream(bus: &TestBus) {
    for name in ["m", "n"] {
        bus.create_stream(StreamConfig::new(name).unwrap()).await.unwrap();
    }
    bus.publish("m.x", "m1").await.unwrap();
    let seen = [(herald::StreamName::new("m").unwrap(), u64::MAX)]
        .into_iter()
        .collect();
    let pattern = herald::Pattern::new(">").unwrap();
    let mut sub = bus
        .backend()
        .subscribe_resuming(pattern, Some(ReadFrom::Seq(1)), seen)
        .await
        .unwrap();
    bus.publish("m.x", "m2").await.unwrap();
    bus.publish("n.x", "n1").await.unwrap();
    let m = tokio::time::timeout(LONG, sub.next()).await.unwrap().unwrap();
    assert_eq!((m.stream.as_str(), m.seq), ("n", 1));
    bus.publish("m.x", "m3").await.unwrap();
    bus.publish("n.x", "n2").await.unwrap();
    let m = tokio::time::timeout(LONG, sub.next()).await.unwrap().unwrap();
    assert_eq!((m.stream.as_str(), m.seq), ("n", 2));
}
