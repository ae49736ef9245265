//! Retention that deletes for real.

use std::time::Duration;

use herald::{Discard, ErrorKind, StreamConfig};

use super::{kind, msg, seqs_held};
use crate::TestBus;

/// `max_msgs` keeps exactly the newest messages.
pub async fn max_msgs_deletes_the_oldest(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("m").unwrap().max_msgs(5))
        .await
        .unwrap();
    for i in 0..12 {
        bus.publish("m.x", format!("{i}")).await.unwrap();
    }
    assert_eq!(seqs_held(bus, "m").await, [8, 9, 10, 11, 12]);
    let s = bus.stream_info("m").await.unwrap().state;
    assert_eq!((s.messages, s.first_seq, s.last_seq, s.deleted), (5, 8, 12, 7));
    // A batch larger than the limit keeps its newest messages.
    let batch = (0..7).map(|i| msg("m.x", format!("b{i}"))).collect();
    bus.publish_batch(batch).await.unwrap();
    assert_eq!(seqs_held(bus, "m").await, [15, 16, 17, 18, 19]);
}

/// `max_bytes` deletes the oldest until the stream fits.
pub async fn max_bytes_deletes_the_oldest(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("m").unwrap().max_bytes(10_000))
        .await
        .unwrap();
    for _ in 0..30 {
        bus.publish("m.x", vec![7u8; 1000]).await.unwrap();
    }
    let s = bus.stream_info("m").await.unwrap().state;
    assert!(s.bytes <= 10_000, "bytes {}", s.bytes);
    assert!(
        s.bytes + 1100 > 10_000,
        "deleted more than needed: {} bytes left",
        s.bytes
    );
    assert!((8..=9).contains(&s.messages), "messages {}", s.messages);
    assert_eq!(s.last_seq, 30);
    assert_eq!(s.first_seq, 31 - s.messages);
}

/// `max_msgs_per_subject` keeps the newest N of every subject (compaction).
pub async fn max_msgs_per_subject_keeps_the_newest_of_each_subject(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("kv").unwrap().max_msgs_per_subject(1))
        .await
        .unwrap();
    for round in 0..5 {
        for key in ["a", "b", "c"] {
            bus.publish(format!("kv.{key}"), format!("{key}{round}")).await.unwrap();
        }
    }
    let s = bus.stream_info("kv").await.unwrap().state;
    assert_eq!((s.messages, s.subjects, s.deleted), (3, 3, 12));
    assert_eq!(seqs_held(bus, "kv").await, [13, 14, 15]);
    assert_eq!(&bus.last("kv", "kv.b").await.unwrap().payload[..], b"b4");
}

/// With `Discard::New`, a publish over a limit is `StreamFull` and writes nothing.
pub async fn discard_new_rejects_publishes_over_the_limit(bus: &TestBus) {
    let config = StreamConfig::new("full")
        .unwrap()
        .max_msgs(3)
        .max_msgs_per_subject(2)
        .discard(Discard::New);
    bus.create_stream(config).await.unwrap();
    bus.publish("full.a", "1").await.unwrap();
    bus.publish("full.a", "2").await.unwrap();
    assert_eq!(kind(bus.publish("full.a", "3").await), ErrorKind::StreamFull);
    bus.publish("full.b", "3").await.unwrap();
    let err = bus.publish("full.c", "4").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StreamFull);
    assert!(err.to_string().contains("max_msgs"), "{err}");
    assert_eq!(
        kind(bus.publish_batch(vec![msg("full.c", "x")]).await),
        ErrorKind::StreamFull
    );
    assert_eq!(seqs_held(bus, "full").await, [1, 2, 3]);
}

/// `max_age` deletes messages older than the age.
pub async fn max_age_deletes_old_messages(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("age").unwrap().max_age(Duration::from_secs(2)))
        .await
        .unwrap();
    bus.publish("age.x", "old").await.unwrap();
    bus.advance(Duration::from_millis(1500)).await;
    bus.publish("age.x", "new").await.unwrap();
    bus.advance(Duration::from_millis(1000)).await;
    assert_eq!(seqs_held(bus, "age").await, [2]);
    let s = bus.stream_info("age").await.unwrap().state;
    assert_eq!((s.messages, s.first_seq, s.deleted), (1, 2, 1));
    bus.advance(Duration::from_secs(3)).await;
    let s = bus.stream_info("age").await.unwrap().state;
    assert_eq!((s.messages, s.first_seq, s.last_seq), (0, 3, 2));
}

/// A message published with a TTL disappears once it expires; others stay.
pub async fn a_message_ttl_expires_it(bus: &TestBus) {
    let short = bus
        .publish_message(msg("ttl.x", "short").ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    let keep = bus.publish("ttl.x", "kept").await.unwrap();
    let long = bus
        .publish_message(msg("ttl.y", "long").ttl(Duration::from_secs(10)))
        .await
        .unwrap();
    assert!(bus.get("ttl", short.seq).await.unwrap().expires.is_some());
    bus.advance(Duration::from_secs(2)).await;
    assert_eq!(kind(bus.get("ttl", short.seq).await), ErrorKind::MessageNotFound);
    assert_eq!(seqs_held(bus, "ttl").await, [keep.seq, long.seq]);
    let s = bus.stream_info("ttl").await.unwrap().state;
    assert_eq!((s.messages, s.first_seq, s.deleted), (2, keep.seq, 1));
    bus.advance(Duration::from_secs(10)).await;
    assert_eq!(seqs_held(bus, "ttl").await, [keep.seq]);
    assert_eq!(kind(bus.last("ttl", "ttl.y").await), ErrorKind::MessageNotFound);
}
