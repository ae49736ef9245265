//! Publishing: seqs, batches, dedup, expectations and bad input.

use std::collections::HashSet;
use std::num::NonZeroU32;
use std::time::Duration;

use herald::{ErrorDetail, ErrorKind, StreamConfig, Subject};

use super::{kind, msg};
use crate::TestBus;

async fn count(bus: &TestBus, stream: &str) -> (u64, u64) {
    let s = bus.stream_info(stream).await.unwrap().state;
    (s.messages, s.last_seq)
}

/// Seqs start at 1 and go up by one per publish.
pub async fn publishes_get_consecutive_seqs(bus: &TestBus) {
    for expected in 1..=20 {
        assert_eq!(bus.publish("seq.x", "x").await.unwrap().seq, expected);
    }
}

/// What was published is what is read: headers, id, content type, payload.
pub async fn headers_id_and_content_type_round_trip(bus: &TestBus) {
    let sent = msg("h.created", &b"\x00\x01binary\xff"[..])
        .id("order-7")
        .header("correlation-id", "c-1")
        .header("causation-id", "c-0")
        .content_type("application/octet-stream");
    let ack = bus.publish_message(sent.clone()).await.unwrap();
    let got = bus.get("h", ack.seq).await.unwrap();
    assert_eq!(got.id, "order-7");
    assert_eq!(got.headers, sent.headers);
    assert_eq!(got.content_type.as_deref(), Some("application/octet-stream"));
    assert_eq!(got.payload, sent.payload);
    assert_eq!(got.subject.as_str(), "h.created");
    assert_eq!(got.stream.as_str(), "h");
}

/// Messages published without an id get distinct generated ids.
pub async fn generated_ids_are_unique(bus: &TestBus) {
    let mut ids = HashSet::new();
    for _ in 0..50 {
        let ack = bus.publish("g.x", "same payload").await.unwrap();
        assert!(!ack.duplicate);
        assert!(ids.insert(bus.get("g", ack.seq).await.unwrap().id));
    }
}

/// A batch gets consecutive seqs, in order.
pub async fn a_batch_gets_consecutive_seqs(bus: &TestBus) {
    bus.publish("b.x", "before").await.unwrap();
    let batch = (0..10)
        .map(|i| msg(if i % 2 == 0 { "b.x" } else { "b.y" }, format!("{i}")))
        .collect();
    let acks = bus.publish_batch(batch).await.unwrap();
    let seqs: Vec<u64> = acks.iter().map(|a| a.seq).collect();
    assert_eq!(seqs, (2..=11).collect::<Vec<_>>());
    for (i, seq) in seqs.iter().enumerate() {
        assert_eq!(bus.get("b", *seq).await.unwrap().payload, i.to_string().as_bytes());
    }
}

/// One bad message fails the whole batch, and nothing of it is written.
pub async fn a_batch_with_one_invalid_message_writes_nothing(bus: &TestBus) {
    let max = NonZeroU32::new(1024).unwrap();
    bus.create_stream(StreamConfig::new("b").unwrap().max_payload(max))
        .await
        .unwrap();
    bus.publish("b.x", "first").await.unwrap();
    let mut batch: Vec<_> = (0..5).map(|i| msg("b.x", format!("{i}"))).collect();
    batch.push(msg("b.x", vec![0u8; 1025]));
    batch.push(msg("b.x", "after"));
    assert_eq!(kind(bus.publish_batch(batch).await), ErrorKind::PayloadTooLarge);
    assert_eq!(count(bus, "b").await, (1, 1));

    let mut batch: Vec<_> = (0..3).map(|i| msg("b.x", format!("{i}"))).collect();
    batch[2] = batch[2].clone().expect_last_subject_seq(99);
    let err = bus.publish_batch(batch).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongExpectedSeq, "{err}");
    assert_eq!(count(bus, "b").await, (1, 1));

    // The next good batch continues right after the last stored message.
    let acks = bus.publish_batch(vec![msg("b.x", "a"), msg("b.x", "b")]).await.unwrap();
    assert_eq!(acks.iter().map(|a| a.seq).collect::<Vec<_>>(), [2, 3]);
}

/// A batch must go to one stream and hold at least one message.
pub async fn a_batch_across_streams_or_empty_is_rejected(bus: &TestBus) {
    bus.publish("one.x", "x").await.unwrap();
    bus.publish("two.x", "x").await.unwrap();
    let batch = vec![msg("one.x", "a"), msg("two.x", "b")];
    assert_eq!(kind(bus.publish_batch(batch).await), ErrorKind::InvalidRequest);
    assert_eq!(kind(bus.publish_batch(Vec::new()).await), ErrorKind::InvalidRequest);
    assert_eq!(count(bus, "one").await, (1, 1));
    assert_eq!(count(bus, "two").await, (1, 1));
}

/// A repeated id inside the window returns the first seq, flagged, and writes nothing.
pub async fn a_duplicate_id_inside_the_window_returns_the_first_seq_and_writes_nothing(bus: &TestBus) {
    let first = bus.publish_message(msg("d.x", "one").id("k1")).await.unwrap();
    bus.publish("d.x", "other").await.unwrap();
    let again = bus.publish_message(msg("d.x", "one, retried").id("k1")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(again.seq, first.seq);
    assert_eq!(count(bus, "d").await, (2, 2));
    assert_eq!(&bus.get("d", first.seq).await.unwrap().payload[..], b"one");
}

/// Within one batch, a repeated id is stored once.
pub async fn a_duplicate_id_inside_one_batch_is_written_once(bus: &TestBus) {
    let batch = vec![msg("d.x", "a").id("k"), msg("d.x", "b"), msg("d.x", "a again").id("k")];
    let acks = bus.publish_batch(batch).await.unwrap();
    assert_eq!(
        acks.iter().map(|a| (a.seq, a.duplicate)).collect::<Vec<_>>(),
        [(1, false), (2, false), (1, true)]
    );
    assert_eq!(count(bus, "d").await, (2, 2));
}

/// Once the window has passed, the same id is a new message.
pub async fn an_id_outside_the_window_is_written_again(bus: &TestBus) {
    let config = StreamConfig::new("d")
        .unwrap()
        .duplicate_window(Some(Duration::from_secs(2)));
    bus.create_stream(config).await.unwrap();
    let first = bus.publish_message(msg("d.x", "a").id("k")).await.unwrap();
    bus.advance(Duration::from_secs(1)).await;
    assert!(bus.publish_message(msg("d.x", "a").id("k")).await.unwrap().duplicate);
    bus.advance(Duration::from_secs(2)).await;
    let later = bus.publish_message(msg("d.x", "a").id("k")).await.unwrap();
    assert!(!later.duplicate);
    assert_eq!(later.seq, first.seq + 1);
}

/// With no duplicate window, ids are not checked.
pub async fn dedup_can_be_turned_off(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("d").unwrap().duplicate_window(None))
        .await
        .unwrap();
    bus.publish_message(msg("d.x", "a").id("k")).await.unwrap();
    let second = bus.publish_message(msg("d.x", "a").id("k")).await.unwrap();
    assert!(!second.duplicate);
    assert_eq!(count(bus, "d").await, (2, 2));
}

/// A wrong expected last seq of the stream fails, carrying the actual seq.
pub async fn a_wrong_expected_last_seq_is_rejected_with_the_actual_seq(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("e").unwrap()).await.unwrap();
    bus.publish_message(msg("e.x", "first").expect_last_seq(0))
        .await
        .unwrap();
    bus.publish("e.y", "second").await.unwrap();
    let err = bus
        .publish_message(msg("e.x", "stale").expect_last_seq(1))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongExpectedSeq);
    assert_eq!(err.actual_seq(), Some(2));
    assert_eq!(
        err.detail(),
        Some(&ErrorDetail::WrongExpectedSeq { expected: 1, actual: 2 })
    );
    assert_eq!(count(bus, "e").await, (2, 2));
    assert_eq!(
        bus.publish_message(msg("e.x", "ok").expect_last_seq(2))
            .await
            .unwrap()
            .seq,
        3
    );
}

/// A wrong expected last seq of a subject fails, carrying the subject's actual seq.
pub async fn a_wrong_expected_subject_seq_is_rejected_with_the_actual_seq(bus: &TestBus) {
    let a1 = bus
        .publish_message(msg("e.a", "a1").expect_last_subject_seq(0))
        .await
        .unwrap();
    bus.publish("e.b", "b1").await.unwrap();
    // Another subject's publishes do not move `e.a`'s version.
    let a2 = bus
        .publish_message(msg("e.a", "a2").expect_last_subject_seq(a1.seq))
        .await
        .unwrap();
    let err = bus
        .publish_message(msg("e.a", "stale").expect_last_subject_seq(a1.seq))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongExpectedSeq);
    assert_eq!(err.actual_seq(), Some(a2.seq));
    let err = bus
        .publish_message(msg("e.new", "x").expect_last_subject_seq(5))
        .await
        .unwrap_err();
    assert_eq!(err.actual_seq(), Some(0));
    assert_eq!(count(bus, "e").await, (3, 3));
}

/// A payload over the stream's limit is `PayloadTooLarge` and writes nothing.
pub async fn an_oversize_payload_is_rejected_and_writes_nothing(bus: &TestBus) {
    let max = NonZeroU32::new(4096).unwrap();
    bus.create_stream(StreamConfig::new("big").unwrap().max_payload(max))
        .await
        .unwrap();
    bus.publish("big.x", vec![1u8; 4096]).await.unwrap();
    let err = bus.publish("big.x", vec![1u8; 4097]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    assert_eq!(
        err.detail(),
        Some(&ErrorDetail::TooLarge {
            size: 4097,
            limit: 4096
        })
    );
    assert!(err.to_string().contains("4097"), "{err}");
    assert_eq!(count(bus, "big").await, (1, 1));
    // The default limit is 1 MiB.
    let err = bus.publish("other.x", vec![0u8; 1024 * 1024 + 1]).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PayloadTooLarge);
    assert_eq!(kind(bus.stream_info("other").await), ErrorKind::StreamNotFound);
}

/// Headers over 64 KiB, empty header names and empty ids are rejected.
pub async fn oversize_or_invalid_headers_are_rejected(bus: &TestBus) {
    let huge = msg("h.x", "x").header("big", "v".repeat(herald_core_max_header() + 1));
    assert_eq!(kind(bus.publish_message(huge).await), ErrorKind::HeadersTooLarge);
    assert_eq!(
        kind(bus.publish_message(msg("h.x", "x").header("", "v")).await),
        ErrorKind::InvalidRequest
    );
    assert_eq!(
        kind(bus.publish_message(msg("h.x", "x").id("")).await),
        ErrorKind::InvalidRequest
    );
    assert_eq!(
        kind(bus.publish_message(msg("h.x", "x").ttl(Duration::ZERO)).await),
        ErrorKind::InvalidRequest
    );
    assert_eq!(kind(bus.stream_info("h").await), ErrorKind::StreamNotFound);
}

fn herald_core_max_header() -> usize {
    herald::MAX_HEADER_BYTES
}

/// Invalid subjects, wildcards and reserved subjects are `InvalidSubject`; nothing is created.
pub async fn invalid_and_reserved_subjects_are_rejected_and_create_nothing(bus: &TestBus) {
    for bad in ["", "a..b", ".a", "a.", "a b", "a.*", "a.>", "tab\there"] {
        assert_eq!(kind(bus.publish(bad, "x").await), ErrorKind::InvalidSubject, "{bad:?}");
    }
    assert_eq!(
        kind(bus.publish("$kv.bucket.key", "x").await),
        ErrorKind::InvalidSubject
    );
    let reserved = herald::OutgoingMessage::new(Subject::new("$dlq.a.b").unwrap(), "x");
    assert_eq!(kind(bus.publish_batch(vec![reserved]).await), ErrorKind::InvalidSubject);
    assert!(bus.streams().await.unwrap().is_empty());
}
