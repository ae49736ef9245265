//! Reads: by seq, last of a subject, ranges by seq or time, per-subject history.

use herald::{ErrorKind, Pattern, Purge, ReadRange, StreamConfig, Subject};

use super::{kind, msg};
use crate::TestBus;

/// The seqs of one subject, through the per-subject index.
async fn history(bus: &TestBus, stream: &str, subject: &str) -> Vec<u64> {
    bus.read_subject(stream, subject, 1, 100)
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect()
}

/// A message is read back by seq; a missing seq is `MessageNotFound`.
pub async fn a_message_is_read_by_seq(bus: &TestBus) {
    let ack = bus.publish("r.x", "hello").await.unwrap();
    let got = bus.get("r", ack.seq).await.unwrap();
    assert_eq!((got.seq, &got.payload[..]), (1, &b"hello"[..]));
    assert_eq!(kind(bus.get("r", 2).await), ErrorKind::MessageNotFound);
    assert_eq!(kind(bus.get("r", 0).await), ErrorKind::MessageNotFound);
}

/// The last message of a subject is read directly.
pub async fn the_last_message_of_a_subject_is_read(bus: &TestBus) {
    for (subject, payload) in [
        ("r.a", "a1"),
        ("r.b", "b1"),
        ("r.a", "a2"),
        ("r.b", "b2"),
        ("r.b", "b3"),
    ] {
        bus.publish(subject, payload).await.unwrap();
    }
    assert_eq!(&bus.last("r", "r.a").await.unwrap().payload[..], b"a2");
    let b = bus.last("r", "r.b").await.unwrap();
    assert_eq!((b.seq, &b.payload[..]), (5, &b"b3"[..]));
    assert_eq!(kind(bus.last("r", "r.c").await), ErrorKind::MessageNotFound);
}

/// A range starts at a seq, keeps only matching subjects and stops at the limit.
pub async fn a_range_is_read_from_a_seq_with_a_filter_and_a_limit(bus: &TestBus) {
    for i in 1..=30 {
        let subject = match i % 3 {
            0 => "r.eu.created",
            1 => "r.us.created",
            _ => "r.eu.paid",
        };
        bus.publish(subject, format!("{i}")).await.unwrap();
    }
    let all = bus.read("r", ReadRange::from_seq(1, 100)).await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.seq).collect::<Vec<_>>(),
        (1..=30).collect::<Vec<_>>()
    );
    let eu = bus
        .read("r", ReadRange::from_seq(10, 4).filter(Pattern::new("r.eu.*").unwrap()))
        .await
        .unwrap();
    assert_eq!(eu.iter().map(|m| m.seq).collect::<Vec<_>>(), [11, 12, 14, 15]);
    let two = ReadRange::from_seq(1, 100)
        .filter(Pattern::new("r.us.created").unwrap())
        .filter(Pattern::new("r.*.paid").unwrap());
    let picked = bus.read("r", two).await.unwrap();
    assert_eq!(picked.len(), 20);
    assert!(picked.iter().all(|m| m.subject.as_str() != "r.eu.created"));
    assert!(bus.read("r", ReadRange::from_seq(31, 10)).await.unwrap().is_empty());
    assert!(bus.read("r", ReadRange::from_seq(1, 0)).await.unwrap().is_empty());
}

/// A range can start at a time: the first message appended at or after it.
pub async fn a_range_is_read_from_a_time(bus: &TestBus) {
    bus.publish("r.x", "1").await.unwrap();
    bus.advance(std::time::Duration::from_millis(10)).await;
    let second = bus.publish("r.x", "2").await.unwrap();
    bus.publish("r.x", "3").await.unwrap();
    let t2 = bus.get("r", second.seq).await.unwrap().time;
    let from_t2 = bus.read("r", ReadRange::from_time(t2, 10)).await.unwrap();
    assert_eq!(from_t2.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);
    let after_all = herald::Timestamp(bus.get("r", 3).await.unwrap().time.as_nanos() + 1);
    assert!(
        bus.read("r", ReadRange::from_time(after_all, 10))
            .await
            .unwrap()
            .is_empty()
    );
    let from_start = bus
        .read("r", ReadRange::from_time(herald::Timestamp(0), 10))
        .await
        .unwrap();
    assert_eq!(from_start.len(), 3);
}

/// One subject's messages come back in order, from any seq, with a limit.
pub async fn a_subject_is_read_in_order_among_interleaved_subjects(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("agg").unwrap().subject_index(true))
        .await
        .unwrap();
    let mut batch = Vec::new();
    for i in 0..150u64 {
        batch.push(msg(&format!("agg.{}", i % 3), format!("{i}")));
    }
    bus.publish_batch(batch).await.unwrap();
    let one = bus.read_subject("agg", "agg.1", 1, 1000).await.unwrap();
    assert_eq!(one.len(), 50);
    assert!(one.iter().all(|m| m.subject.as_str() == "agg.1"));
    let seqs: Vec<u64> = one.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, (0..50).map(|k| 2 + 3 * k).collect::<Vec<_>>());
    // From the middle, near the start and near the end, with limits.
    let mid = bus.read_subject("agg", "agg.1", 50, 3).await.unwrap();
    assert_eq!(mid.iter().map(|m| m.seq).collect::<Vec<_>>(), [50, 53, 56]);
    let tail = bus.read_subject("agg", "agg.1", 140, 10).await.unwrap();
    assert_eq!(tail.iter().map(|m| m.seq).collect::<Vec<_>>(), [140, 143, 146, 149]);
    assert!(bus.read_subject("agg", "agg.1", 150, 10).await.unwrap().is_empty());
    assert!(bus.read_subject("agg", "agg.9", 1, 10).await.unwrap().is_empty());
}

/// Deleting messages from the middle of a subject's history keeps the rest readable.
pub async fn the_subject_index_survives_deletions_in_the_middle(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("ix").unwrap().max_msgs_per_subject(3))
        .await
        .unwrap();
    for i in 0..10 {
        bus.publish(if i % 2 == 0 { "ix.a" } else { "ix.b" }, format!("{i}"))
            .await
            .unwrap();
    }
    // ix.a held 1,3,5,7,9 → keeps 5,7,9; ix.b keeps 6,8,10.
    let a = history(bus, "ix", "ix.a").await;
    assert_eq!(a, [5, 7, 9]);
    bus.purge_stream("ix", Purge::subject(Subject::new("ix.b").unwrap()).before(8))
        .await
        .unwrap();
    let b = history(bus, "ix", "ix.b").await;
    assert_eq!(b, [8, 10]);
    let next = bus.publish("ix.b", "new").await.unwrap();
    let b = history(bus, "ix", "ix.b").await;
    assert_eq!(b, [8, 10, next.seq]);
    assert_eq!(bus.last("ix", "ix.b").await.unwrap().seq, next.seq);
}

/// Reading one subject's history needs the per-subject index; without it the
/// read is refused with a clear error instead of scanning the stream.
pub async fn reading_one_subject_needs_the_subject_index(bus: &TestBus) {
    bus.publish("plain.a", "x").await.unwrap();
    let err = bus.read_subject("plain", "plain.a", 1, 10).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidRequest);
    assert!(err.to_string().contains("subject_index"), "{err}");
    // The index is fixed at creation.
    let config = bus.stream_info("plain").await.unwrap().config.subject_index(true);
    assert_eq!(kind(bus.update_stream(config).await), ErrorKind::InvalidConfig);
}

/// The last message of a subject stays exact when newer ones are deleted out
/// of order (TTLs), with and without the subject index.
pub async fn the_last_of_a_subject_is_kept_exact_through_deletions(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("li").unwrap().subject_index(true))
        .await
        .unwrap();
    bus.create_stream(StreamConfig::new("lp").unwrap()).await.unwrap();
    for stream in ["li", "lp"] {
        let subject = format!("{stream}.k");
        bus.publish(&subject, "v1").await.unwrap();
        bus.publish(format!("{stream}.other"), "x").await.unwrap();
        let short = msg(&subject, "v2").ttl(std::time::Duration::from_secs(1));
        bus.publish_message(short).await.unwrap();
        assert_eq!(&bus.last(stream, &subject).await.unwrap().payload[..], b"v2");
        bus.advance(std::time::Duration::from_secs(2)).await;
        assert_eq!(
            &bus.last(stream, &subject).await.unwrap().payload[..],
            b"v1",
            "{stream}"
        );
        let again = bus
            .publish_message(msg(&subject, "v3").expect_last_subject_seq(1))
            .await
            .unwrap();
        assert_eq!(&bus.last(stream, &subject).await.unwrap().payload[..], b"v3");
        assert_eq!(again.seq, 4);
    }
}
