//! Stream administration.

use herald::{Discard, ErrorKind, Purge, StreamConfig, Subject};

use super::{kind, subject_seqs};
use crate::TestBus;

/// A publish to a new subject creates the stream named by its first token.
pub async fn a_stream_is_created_on_first_publish(bus: &TestBus) {
    let ack = bus.publish("orders.created", "o1").await.unwrap();
    assert_eq!((ack.stream.as_str(), ack.seq, ack.duplicate), ("orders", 1, false));
    let info = bus.stream_info("orders").await.unwrap();
    let subjects: Vec<&str> = info.config.subjects.iter().map(|p| p.as_str()).collect();
    assert_eq!(subjects, ["orders", "orders.>"]);
    assert_eq!(info.state.messages, 1);
    // The bare name is captured too.
    assert_eq!(bus.publish("orders", "o2").await.unwrap().stream.as_str(), "orders");
}

/// A stream's own patterns take precedence over creating a stream by first token.
pub async fn a_publish_goes_to_the_stream_that_captures_its_subject(bus: &TestBus) {
    bus.create_stream(
        StreamConfig::new("audit")
            .unwrap()
            .subjects(["logs.>", "metrics.*"])
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(
        bus.publish("logs.app.error", "x").await.unwrap().stream.as_str(),
        "audit"
    );
    assert_eq!(bus.publish("metrics.cpu", "x").await.unwrap().stream.as_str(), "audit");
    assert_eq!(kind(bus.stream_info("logs").await), ErrorKind::StreamNotFound);
    // `metrics.cpu.core0` is not captured by `metrics.*`, and a `metrics` stream
    // would overlap `audit`'s subjects, so nothing can take it.
    assert_eq!(
        kind(bus.publish("metrics.cpu.core0", "x").await),
        ErrorKind::SubjectConflict
    );
    assert_eq!(bus.stream_info("audit").await.unwrap().state.messages, 2);
}

/// Creating an existing stream with the same config returns it unchanged.
pub async fn creating_a_stream_again_with_the_same_config_is_a_no_op(bus: &TestBus) {
    let config = StreamConfig::new("payments").unwrap().max_msgs(100);
    bus.create_stream(config.clone()).await.unwrap();
    bus.publish("payments.in", "p").await.unwrap();
    let again = bus.create_stream(config).await.unwrap();
    assert_eq!(again.state.messages, 1);
}

/// Creating an existing stream with another config is `StreamExists`.
pub async fn creating_a_stream_again_with_another_config_is_rejected(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("payments").unwrap().max_msgs(100))
        .await
        .unwrap();
    let err = bus
        .create_stream(StreamConfig::new("payments").unwrap().max_msgs(5))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StreamExists);
    assert_eq!(
        bus.stream_info("payments")
            .await
            .unwrap()
            .config
            .max_msgs
            .map(|n| n.get()),
        Some(100)
    );
}

/// Two streams may not capture the same subject.
pub async fn overlapping_subjects_are_rejected(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("a").unwrap().subjects(["x.>"]).unwrap())
        .await
        .unwrap();
    let err = bus
        .create_stream(StreamConfig::new("b").unwrap().subjects(["x.y"]).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SubjectConflict);
    assert!(err.to_string().contains("overlap"), "{err}");
    assert_eq!(kind(bus.stream_info("b").await), ErrorKind::StreamNotFound);
    let err = bus
        .create_stream(StreamConfig::new("c").unwrap().subjects(["q.*", "q.>"]).unwrap())
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig);
}

/// Stream info reports messages, bytes, first and last seq and time, and subjects.
pub async fn stream_info_reports_counts_seqs_times_and_subjects(bus: &TestBus) {
    let empty = bus.create_stream(StreamConfig::new("s").unwrap()).await.unwrap();
    assert_eq!(
        (empty.state.messages, empty.state.first_seq, empty.state.last_seq),
        (0, 1, 0)
    );
    assert_eq!(empty.state.first_time, None);
    for subject in ["s.a", "s.b", "s.a"] {
        bus.publish(subject, vec![0u8; 100]).await.unwrap();
    }
    let info = bus.stream_info("s").await.unwrap();
    let s = &info.state;
    assert_eq!((s.messages, s.first_seq, s.last_seq, s.subjects), (3, 1, 3, 2));
    assert!(s.bytes >= 300, "bytes {}", s.bytes);
    let (first, last) = (s.first_time.unwrap(), s.last_time.unwrap());
    assert!(first <= last);
    assert_eq!(bus.get("s", 1).await.unwrap().time, first);
    assert_eq!(bus.get("s", 3).await.unwrap().time, last);
}

/// Every stream is listed, by name.
pub async fn streams_are_listed_by_name(bus: &TestBus) {
    for name in ["zeta", "alpha", "mid"] {
        bus.create_stream(StreamConfig::new(name).unwrap()).await.unwrap();
    }
    let names: Vec<String> = bus
        .streams()
        .await
        .unwrap()
        .into_iter()
        .map(|i| i.config.name.to_string())
        .collect();
    assert_eq!(names, ["alpha", "mid", "zeta"]);
}

/// Lowering a limit deletes what is now over it, at once.
pub async fn updating_limits_applies_them_at_once(bus: &TestBus) {
    let config = StreamConfig::new("u").unwrap();
    bus.create_stream(config.clone()).await.unwrap();
    for i in 0..10 {
        bus.publish("u.x", format!("{i}")).await.unwrap();
    }
    let info = bus.update_stream(config.max_msgs(3)).await.unwrap();
    assert_eq!(
        (info.state.messages, info.state.first_seq, info.state.last_seq),
        (3, 8, 10)
    );
    assert_eq!(kind(bus.get("u", 7).await), ErrorKind::MessageNotFound);
    assert_eq!(&bus.get("u", 8).await.unwrap().payload[..], b"7");
    let missing = StreamConfig::new("nope").unwrap();
    assert_eq!(kind(bus.update_stream(missing).await), ErrorKind::StreamNotFound);
}

/// Deleting a stream removes it and its messages; a new stream of that name starts over.
pub async fn deleting_a_stream_removes_it_and_its_messages(bus: &TestBus) {
    for _ in 0..5 {
        bus.publish("gone.x", "x").await.unwrap();
    }
    bus.delete_stream("gone").await.unwrap();
    assert_eq!(kind(bus.stream_info("gone").await), ErrorKind::StreamNotFound);
    assert_eq!(kind(bus.get("gone", 1).await), ErrorKind::StreamNotFound);
    assert_eq!(kind(bus.delete_stream("gone").await), ErrorKind::StreamNotFound);
    let ack = bus.publish("gone.x", "again").await.unwrap();
    assert_eq!(ack.seq, 1);
    assert_eq!(bus.stream_info("gone").await.unwrap().state.messages, 1);
}

/// Purging everything empties the stream; the next seq continues after the last.
pub async fn purge_all_keeps_the_sequence_going(bus: &TestBus) {
    for subject in ["p.a", "p.b", "p.a", "p.c"] {
        bus.publish(subject, "x").await.unwrap();
    }
    assert_eq!(bus.purge_stream("p", Purge::all()).await.unwrap(), 4);
    let s = bus.stream_info("p").await.unwrap().state;
    assert_eq!(
        (s.messages, s.bytes, s.subjects, s.first_seq, s.last_seq),
        (0, 0, 0, 5, 4)
    );
    assert_eq!(kind(bus.last("p", "p.a").await), ErrorKind::MessageNotFound);
    assert_eq!(bus.publish("p.a", "y").await.unwrap().seq, 5);
    assert_eq!(subject_seqs(bus, "p", "p.a").await, [5]);
}

/// The two kinds of stream a subject purge must work on.
async fn purge_streams(bus: &TestBus) -> [&'static str; 2] {
    let indexed = StreamConfig::new("pi").unwrap().subject_index(true);
    bus.create_stream(indexed).await.unwrap();
    bus.create_stream(StreamConfig::new("pp").unwrap()).await.unwrap();
    ["pi", "pp"]
}

/// Purging one subject leaves the others, and the subject's index, intact.
pub async fn purge_by_subject_deletes_only_that_subject(bus: &TestBus) {
    for stream in purge_streams(bus).await {
        for i in 0..6 {
            let subject = if i % 2 == 0 { "even" } else { "odd" };
            bus.publish(format!("{stream}.{subject}"), format!("{i}"))
                .await
                .unwrap();
        }
        let even = Subject::new(format!("{stream}.even")).unwrap();
        assert_eq!(bus.purge_stream(stream, Purge::subject(even)).await.unwrap(), 3);
        let s = bus.stream_info(stream).await.unwrap().state;
        assert_eq!((s.messages, s.subjects, s.first_seq), (3, 1, 2), "{stream}");
        assert_eq!(subject_seqs(bus, stream, &format!("{stream}.odd")).await, [2, 4, 6]);
        assert!(subject_seqs(bus, stream, &format!("{stream}.even")).await.is_empty());
        assert_eq!(
            kind(bus.last(stream, format!("{stream}.even")).await),
            ErrorKind::MessageNotFound
        );
        assert_eq!(bus.last(stream, format!("{stream}.odd")).await.unwrap().seq, 6);
    }
}

/// Purging before a seq deletes exactly the older messages, optionally of one subject.
pub async fn purge_before_a_seq_deletes_only_older_messages(bus: &TestBus) {
    for stream in purge_streams(bus).await {
        for i in 0..10 {
            let subject = if i % 2 == 0 { "a" } else { "b" };
            bus.publish(format!("{stream}.{subject}"), format!("{i}"))
                .await
                .unwrap();
        }
        // Seqs 1..=10: `a` has the odd seqs, `b` the even ones.
        let a = Subject::new(format!("{stream}.a")).unwrap();
        assert_eq!(bus.purge_stream(stream, Purge::subject(a).before(6)).await.unwrap(), 3); // 1, 3, 5
        assert_eq!(subject_seqs(bus, stream, &format!("{stream}.a")).await, [7, 9]);
        assert_eq!(bus.purge_stream(stream, Purge::all().before(8)).await.unwrap(), 4); // 2, 4, 6, 7
        let s = bus.stream_info(stream).await.unwrap().state;
        assert_eq!((s.messages, s.first_seq, s.last_seq), (3, 8, 10), "{stream}");
        assert_eq!(bus.last(stream, format!("{stream}.a")).await.unwrap().seq, 9);
    }
}

/// Every operation on an unknown stream is `StreamNotFound` and creates nothing.
pub async fn unknown_streams_are_stream_not_found(bus: &TestBus) {
    assert_eq!(kind(bus.stream_info("ghost").await), ErrorKind::StreamNotFound);
    assert_eq!(kind(bus.delete_stream("ghost").await), ErrorKind::StreamNotFound);
    assert_eq!(
        kind(bus.purge_stream("ghost", Purge::all()).await),
        ErrorKind::StreamNotFound
    );
    assert_eq!(kind(bus.get("ghost", 1).await), ErrorKind::StreamNotFound);
    assert_eq!(kind(bus.last("ghost", "ghost.a").await), ErrorKind::StreamNotFound);
    assert_eq!(
        kind(bus.read("ghost", herald::ReadRange::from_seq(1, 10)).await),
        ErrorKind::StreamNotFound
    );
    assert_eq!(
        kind(bus.read_subject("ghost", "ghost.a", 1, 10).await),
        ErrorKind::StreamNotFound
    );
    assert!(bus.streams().await.unwrap().is_empty());
}

/// Invalid names and reserved (`$`) names are rejected with `InvalidName`.
pub async fn invalid_and_reserved_names_are_rejected(bus: &TestBus) {
    assert_eq!(kind(bus.stream_info("a.b").await), ErrorKind::InvalidName);
    assert_eq!(kind(bus.stream_info("").await), ErrorKind::InvalidName);
    assert_eq!(kind(StreamConfig::new("has space")), ErrorKind::InvalidName);
    let reserved = StreamConfig::new("$sys").unwrap().subjects(["$sys.>"]).unwrap();
    assert_eq!(kind(bus.create_stream(reserved).await), ErrorKind::InvalidName);
    let discard_new = StreamConfig::new("ok").unwrap().discard(Discard::New);
    bus.create_stream(discard_new).await.unwrap();
    assert_eq!(bus.streams().await.unwrap().len(), 1);
}
