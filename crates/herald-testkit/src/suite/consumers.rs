//! Durable consumers and consumer groups.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::{ConsumerConfig, ErrorKind, ReadFrom, Retention, StartPolicy, StreamConfig, dlq};
use tokio::time::Instant;

use super::{kind, msg, seqs_held};
use crate::TestBus;

const NO_WAIT: Duration = Duration::ZERO;
const LONG: Duration = Duration::from_secs(5);

async fn publish_n(bus: &TestBus, subject: &str, n: usize) {
    for chunk in (0..n).collect::<Vec<_>>().chunks(500) {
        let batch = chunk.iter().map(|i| msg(subject, format!("{i}"))).collect();
        bus.publish_batch(batch).await.unwrap();
    }
}

/// Two consumers on one stream each get every message.
pub async fn two_consumers_each_see_every_message(bus: &TestBus) {
    publish_n(bus, "c.x", 50).await;
    let a = bus.consumer("c", "a").create().await.unwrap();
    let b = bus.consumer("c", "b").create().await.unwrap();
    for consumer in [&a, &b] {
        let got = consumer.fetch(100, LONG).await.unwrap();
        assert_eq!(
            got.iter().map(|d| d.message.seq).collect::<Vec<_>>(),
            (1..=50).collect::<Vec<_>>()
        );
        for d in &got {
            d.ack().await.unwrap();
        }
        let info = consumer.info().await.unwrap();
        assert_eq!((info.ack_floor, info.pending, info.in_flight), (50, 0, 0));
    }
}

/// A lone member gets the stream in order, one delivery per message.
pub async fn a_lone_member_gets_an_ordered_stream(bus: &TestBus) {
    publish_n(bus, "c.x", 30).await;
    let consumer = bus.consumer("c", "solo").create().await.unwrap();
    let mut seen = Vec::new();
    while seen.len() < 30 {
        let d = consumer.next().await.unwrap();
        assert_eq!((d.deliveries, d.consumer_seq), (1, seen.len() as u64 + 1));
        seen.push(d.message.seq);
        d.ack().await.unwrap();
    }
    assert_eq!(seen, (1..=30).collect::<Vec<_>>());
}

/// Deliveries also arrive as a `futures::Stream`.
pub async fn deliveries_arrive_as_a_stream(bus: &TestBus) {
    use futures_util::StreamExt;
    publish_n(bus, "c.x", 5).await;
    let consumer = bus.consumer("c", "s").create().await.unwrap();
    let got: Vec<u64> = consumer
        .messages()
        .take(5)
        .then(|d| async move {
            let d = d.unwrap();
            d.ack().await.unwrap();
            d.message.seq
        })
        .collect()
        .await;
    assert_eq!(got, [1, 2, 3, 4, 5]);
    assert_eq!(consumer.info().await.unwrap().ack_floor, 5);
}

/// Filters pick subjects; start policies pick where a consumer begins.
pub async fn filters_and_start_policies_choose_what_is_delivered(bus: &TestBus) {
    for (i, subject) in ["c.a", "c.b", "c.a", "c.c", "c.b"].iter().enumerate() {
        bus.publish(subject, format!("{i}")).await.unwrap();
        bus.advance(Duration::from_millis(10)).await;
    }
    let seqs = |v: Vec<herald::Received>| v.iter().map(|d| d.message.seq).collect::<Vec<_>>();
    let ab = bus
        .consumer("c", "ab")
        .filter("c.a")
        .filter("c.b")
        .create()
        .await
        .unwrap();
    assert_eq!(seqs(ab.fetch(10, NO_WAIT).await.unwrap()), [1, 2, 3, 5]);
    let from3 = bus
        .consumer("c", "from3")
        .start(StartPolicy::FromSeq(3))
        .create()
        .await
        .unwrap();
    assert_eq!(seqs(from3.fetch(10, NO_WAIT).await.unwrap()), [3, 4, 5]);
    let last = bus
        .consumer("c", "last")
        .start(StartPolicy::LastPerSubject)
        .create()
        .await
        .unwrap();
    assert_eq!(seqs(last.fetch(10, NO_WAIT).await.unwrap()), [3, 4, 5]);
    let t4 = bus.get("c", 4).await.unwrap().time;
    let from_t = bus
        .consumer("c", "from-t")
        .start(StartPolicy::FromTime(t4))
        .create()
        .await
        .unwrap();
    assert_eq!(seqs(from_t.fetch(10, NO_WAIT).await.unwrap())[0], 4);
    let new = bus.consumer("c", "new").start(StartPolicy::New).create().await.unwrap();
    assert!(new.fetch(10, NO_WAIT).await.unwrap().is_empty());
    bus.publish("c.z", "6").await.unwrap();
    assert_eq!(seqs(new.fetch(10, LONG).await.unwrap()), [6]);
}

/// An unacked delivery comes back after `ack_wait`, to any member.
pub async fn an_expired_lease_goes_to_another_member(bus: &TestBus) {
    bus.publish("c.x", "job").await.unwrap();
    let group = bus
        .consumer("c", "workers")
        .ack_wait(Duration::from_secs(10))
        .create()
        .await
        .unwrap();
    let (one, two) = (group.member("one").unwrap(), group.member("two").unwrap());
    let first = one.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    assert_eq!(first.member.as_str(), "one");
    assert!(two.fetch(1, NO_WAIT).await.unwrap().is_empty(), "leased to one only");
    bus.advance(Duration::from_secs(11)).await;
    let again = two
        .fetch(1, NO_WAIT)
        .await
        .unwrap()
        .pop()
        .expect("redelivered after the lease");
    assert_eq!(
        (again.message.seq, again.deliveries, again.member.as_str()),
        (1, 2, "two")
    );
    // The first member's late ack changes nothing and causes no duplicate.
    assert_eq!(kind(first.ack().await), ErrorKind::LeaseLost);
    again.ack().await.unwrap();
    assert!(one.fetch(1, NO_WAIT).await.unwrap().is_empty());
    let info = group.info().await.unwrap();
    assert_eq!((info.ack_floor, info.redelivered), (1, 1));
    let members: Vec<&str> = info.members.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(members, ["one", "two"]);
    // Member two was last seen after the lease moved, member one at its last fetch.
    let seen = |name: &str| info.members.iter().find(|m| m.name.as_str() == name).unwrap().last_seen;
    assert!(seen("two") > herald::Timestamp(0) && seen("one") >= seen("two"));
}

/// A nak with a delay is not redelivered before the delay.
pub async fn a_nak_with_a_delay_is_not_redelivered_before_the_delay(bus: &TestBus) {
    bus.publish("c.x", "retry me").await.unwrap();
    let consumer = bus.consumer("c", "n").create().await.unwrap();
    let d = consumer.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    let naked_at = Instant::now();
    d.nak_after(Duration::from_secs(5)).await.unwrap();
    assert!(consumer.fetch(1, Duration::from_secs(4)).await.unwrap().is_empty());
    let again = consumer.fetch(1, Duration::from_secs(10)).await.unwrap().pop().unwrap();
    assert!(
        naked_at.elapsed() >= Duration::from_secs(5),
        "redelivered after {:?}",
        naked_at.elapsed()
    );
    assert_eq!(again.deliveries, 2);
    // A plain nak comes back at once.
    again.nak().await.unwrap();
    assert_eq!(consumer.fetch(1, NO_WAIT).await.unwrap().pop().unwrap().deliveries, 3);
}

/// Each redelivery's lease follows the backoff schedule.
pub async fn the_backoff_schedule_is_honoured(bus: &TestBus) {
    bus.publish("c.x", "slow").await.unwrap();
    let schedule = [Duration::from_secs(1), Duration::from_secs(4), Duration::from_secs(9)];
    let consumer = bus.consumer("c", "b").backoff(schedule).create().await.unwrap();
    let mut last = Instant::now();
    let mut gaps = Vec::new();
    for delivery in 1..=4u32 {
        let d = consumer.fetch(1, Duration::from_secs(60)).await.unwrap().pop().unwrap();
        assert_eq!(d.deliveries, delivery);
        if delivery > 1 {
            // Whole seconds, rounded: a real server's timer and the network shift it by milliseconds.
            gaps.push((last.elapsed().as_secs_f64()).round() as u64);
        }
        last = Instant::now();
    }
    assert_eq!(gaps, [1, 4, 9], "redelivered after each lease of the schedule");
}

/// Past `max_deliver` a message goes to the dead-letter stream with its story
/// in headers; replay republishes it to its subject.
pub async fn max_deliver_dead_letters_and_replay_republishes(bus: &TestBus) {
    bus.publish_message(msg("c.orders", "poison").header("trace", "t-1"))
        .await
        .unwrap();
    let consumer = bus.consumer("c", "billing").max_deliver(2).create().await.unwrap();
    for _ in 0..2 {
        let d = consumer.fetch(1, LONG).await.unwrap().pop().unwrap();
        assert_eq!(d.message.seq, 1);
        d.nak().await.unwrap();
    }
    bus.publish("c.orders", "fine").await.unwrap();
    // The next pass delivers the fresh message and dead-letters seq 1 instead of
    // a third delivery.
    let next = consumer.fetch(10, LONG).await.unwrap();
    assert_eq!(next.iter().map(|d| d.message.seq).collect::<Vec<_>>(), [2]);
    next[0].ack().await.unwrap();
    let letters = bus.dead_letters("c", "billing", 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let h = &letters[0].headers;
    assert_eq!(h.get(dlq::STREAM).map(String::as_str), Some("c"));
    assert_eq!(h.get(dlq::SEQ).map(String::as_str), Some("1"));
    assert_eq!(h.get(dlq::SUBJECT).map(String::as_str), Some("c.orders"));
    assert_eq!(h.get(dlq::CONSUMER).map(String::as_str), Some("billing"));
    assert_eq!(h.get(dlq::DELIVERIES).map(String::as_str), Some("2"));
    assert!(h.get(dlq::REASON).is_some_and(|r| r.contains("max_deliver")));
    assert_eq!(h.get("trace").map(String::as_str), Some("t-1"));
    assert_eq!(&letters[0].payload[..], b"poison");
    let info = consumer.info().await.unwrap();
    assert_eq!((info.ack_floor, info.dead_lettered), (2, 1));

    assert_eq!(bus.replay_dead_letters("c", "billing").await.unwrap(), 1);
    assert!(bus.dead_letters("c", "billing", 10).await.unwrap().is_empty());
    let replayed = consumer.fetch(1, LONG).await.unwrap().pop().unwrap();
    assert_eq!(
        (replayed.message.seq, &replayed.message.payload[..]),
        (3, &b"poison"[..])
    );
    assert_eq!(replayed.message.subject.as_str(), "c.orders");
    assert_eq!(replayed.message.headers.get("trace").map(String::as_str), Some("t-1"));
    assert!(!replayed.message.headers.contains_key(dlq::REASON));
}

/// `term` dead-letters at once with the given reason; purge empties the dead letters.
pub async fn term_dead_letters_at_once_with_the_reason(bus: &TestBus) {
    bus.publish("c.x", "bad input").await.unwrap();
    let consumer = bus.consumer("c", "t").create().await.unwrap();
    let d = consumer.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    d.term("cannot parse").await.unwrap();
    let letters = bus.dead_letters("c", "t", 10).await.unwrap();
    assert_eq!(
        letters[0].headers.get(dlq::REASON).map(String::as_str),
        Some("cannot parse")
    );
    assert!(consumer.fetch(1, NO_WAIT).await.unwrap().is_empty());
    assert_eq!(bus.purge_dead_letters("c", "t").await.unwrap(), 1);
    assert!(bus.dead_letters("c", "t", 10).await.unwrap().is_empty());
}

/// Deleting a stream deletes its consumers' dead-letter streams, and those
/// of consumers on them, and nothing of any other stream.
pub async fn deleting_a_stream_deletes_its_dead_letter_streams(bus: &TestBus) {
    bus.publish("c.x", "bad").await.unwrap();
    bus.publish("other.x", "bad too").await.unwrap();
    for (stream, consumer) in [("c", "t"), ("other", "t")] {
        let consumer = bus.consumer(stream, consumer).create().await.unwrap();
        let delivery = consumer.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
        delivery.term("unreadable").await.unwrap();
    }
    // Someone inspects the dead letters through a consumer of their own,
    // and gives up on one too: a dead-letter stream of a dead-letter stream.
    let inspect = bus.consumer("$dlq-c-t", "inspect").create().await.unwrap();
    let letter = inspect.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    letter.term("still unreadable").await.unwrap();
    assert_eq!(
        bus.stream_info("$dlqr-dlq-c-t-inspect").await.unwrap().state.messages,
        1
    );

    bus.delete_stream("c").await.unwrap();
    for gone in ["c", "$dlq-c-t", "$dlqr-dlq-c-t-inspect"] {
        assert_eq!(kind(bus.stream_info(gone).await), ErrorKind::StreamNotFound, "{gone}");
    }
    assert_eq!(kind(bus.dead_letters("c", "t", 10).await), ErrorKind::StreamNotFound);
    assert_eq!(bus.dead_letters("other", "t", 10).await.unwrap().len(), 1);
    // The names are free: the same stream and consumer start with no dead letters.
    bus.publish("c.x", "fresh").await.unwrap();
    bus.consumer("c", "t").create().await.unwrap();
    assert!(bus.dead_letters("c", "t", 10).await.unwrap().is_empty());
}

/// A consumer whose dead-letter stream's name would be over the limit (a
/// long-named consumer on the dead letters of a long-named stream and
/// consumer) is refused with `InvalidName` when it is created, and the bus
/// goes on serving; with its dead letters discarded it needs no such stream.
pub async fn a_consumer_whose_dead_letter_name_is_too_long_is_refused(bus: &TestBus) {
    let stream = "s".repeat(64);
    let consumer = "c".repeat(64);
    bus.create_stream(StreamConfig::new(&stream).unwrap()).await.unwrap();
    bus.consumer(&stream, &consumer).create().await.unwrap();
    let dead_letters = format!("$dlq-{stream}-{consumer}");
    assert!(bus.stream_info(&dead_letters).await.is_ok());
    let refused = bus.consumer(&dead_letters, &consumer).create().await;
    assert_eq!(kind(refused), ErrorKind::InvalidName);
    assert_eq!(
        kind(bus.consumer_info(&dead_letters, &consumer).await),
        ErrorKind::ConsumerNotFound
    );
    bus.consumer(&dead_letters, &consumer)
        .dead_letter(herald::DeadLetter::Discard)
        .create()
        .await
        .unwrap();
    // Still serving.
    bus.publish(format!("{stream}.x").as_str(), "after").await.unwrap();
    let first = bus.bind_consumer(&stream, &consumer).await.unwrap();
    assert_eq!(first.fetch(1, LONG).await.unwrap().len(), 1);
}

/// Two consumers whose dead-letter streams would have one name (`a-b` +
/// `c` and `a` + `b-c` both give `$dlq-a-b-c`) never share it: the second
/// is refused with `InvalidName` naming the consumer that holds the name,
/// the first keeps its dead letters, and deleting the second's stream
/// leaves them alone.
pub async fn consumers_whose_dead_letter_names_collide_never_share_a_stream(bus: &TestBus) {
    for name in ["a-b", "a"] {
        bus.create_stream(StreamConfig::new(name).unwrap()).await.unwrap();
    }
    bus.publish("a-b.x", "first").await.unwrap();
    bus.publish("a.x", "second").await.unwrap();
    let holder = bus.consumer("a-b", "c").create().await.unwrap();

    let refused = bus.consumer("a", "b-c").create().await.unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::InvalidName);
    let message = refused.to_string();
    for named in ["$dlq-a-b-c", "`c`", "`a-b`"] {
        assert!(message.contains(named), "{message:?} names {named}");
    }
    assert_eq!(kind(bus.consumer_info("a", "b-c").await), ErrorKind::ConsumerNotFound);
    // Creating the holder again is still a no-op: the stream is its own.
    bus.consumer("a-b", "c").create().await.unwrap();

    // Discarding its dead letters, the other consumer needs no stream.
    bus.consumer("a", "b-c")
        .dead_letter(herald::DeadLetter::Discard)
        .create()
        .await
        .unwrap();
    let d = holder.fetch(1, LONG).await.unwrap().pop().unwrap();
    d.term("unreadable").await.unwrap();
    let letters = bus.dead_letters("a-b", "c", 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].headers.get(dlq::STREAM).map(String::as_str), Some("a-b"));

    bus.delete_stream("a").await.unwrap();
    assert_eq!(bus.dead_letters("a-b", "c", 10).await.unwrap().len(), 1);
}

/// A consumer updated from discarding its dead letters to keeping them gets
/// its dead-letter stream, and a termed message lands there; an update that
/// would take another consumer's dead-letter stream is refused with
/// `InvalidName` and changes nothing.
pub async fn a_consumer_updated_to_keep_its_dead_letters_gets_its_stream(bus: &TestBus) {
    bus.publish("c.x", "bad").await.unwrap();
    let consumer = bus
        .consumer("c", "u")
        .dead_letter(herald::DeadLetter::Discard)
        .create()
        .await
        .unwrap();
    assert_eq!(kind(bus.dead_letters("c", "u", 10).await), ErrorKind::StreamNotFound);
    let config = consumer.info().await.unwrap().config;
    consumer
        .update(config.dead_letter(herald::DeadLetter::PerConsumer))
        .await
        .unwrap();
    let d = consumer.fetch(1, LONG).await.unwrap().pop().unwrap();
    d.term("unreadable").await.unwrap();
    assert_eq!(bus.dead_letters("c", "u", 10).await.unwrap().len(), 1);
    assert!(consumer.fetch(1, NO_WAIT).await.unwrap().is_empty());

    for name in ["a-b", "a"] {
        bus.create_stream(StreamConfig::new(name).unwrap()).await.unwrap();
    }
    bus.consumer("a-b", "c").create().await.unwrap();
    let other = bus
        .consumer("a", "b-c")
        .dead_letter(herald::DeadLetter::Discard)
        .create()
        .await
        .unwrap();
    let before = other.info().await.unwrap().config;
    let refused = other
        .update(before.clone().dead_letter(herald::DeadLetter::PerConsumer))
        .await;
    assert_eq!(kind(refused), ErrorKind::InvalidName);
    assert_eq!(other.info().await.unwrap().config, before);
}

/// A message whose headers fill the 64 KiB limit (or the backend's lower
/// one, at least 60 KiB), termed with a 100 KiB reason, still lands in the dead-letter stream with every header it had
/// and the reason cut to `dlq::MAX_REASON_BYTES` on a character boundary;
/// it is settled, not handed out again.
pub async fn a_message_with_full_headers_termed_at_length_is_dead_lettered(bus: &TestBus) {
    // The largest headers the backend takes, from the limit down by 1 KiB
    // (NATS keeps room in JetStream's header block for the letter's own:
    // docs/nats.md).
    let mut size = herald::MAX_HEADER_BYTES;
    let big = loop {
        let big = "h".repeat(size - "big".len() - 2);
        match bus
            .publish_message(msg("c.x", "heavy").header("big", big.as_str()))
            .await
        {
            Ok(_) => break big,
            Err(err) if err.kind() == ErrorKind::HeadersTooLarge && size > 60 * 1024 => size -= 1024,
            Err(err) => panic!("headers of {size} bytes: {err}"),
        }
    };
    let consumer = bus.consumer("c", "t").create().await.unwrap();
    let d = consumer.fetch(1, LONG).await.unwrap().pop().unwrap();
    assert_eq!(d.message.headers.get("big"), Some(&big));
    // Two-byte characters after one one-byte: the cut cannot fall on the limit.
    let reason = format!("x{}", "é".repeat(50 * 1024));
    d.term(reason.as_str()).await.unwrap();

    let letters = bus.dead_letters("c", "t", 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    let h = &letters[0].headers;
    assert_eq!(h.get("big"), Some(&big));
    let kept = h.get(dlq::REASON).unwrap();
    assert!(reason.starts_with(kept.as_str()));
    assert!(kept.len() <= dlq::MAX_REASON_BYTES && kept.len() > dlq::MAX_REASON_BYTES - 2);
    assert_eq!(h.get(dlq::SEQ).map(String::as_str), Some("1"));
    assert_eq!(&letters[0].payload[..], b"heavy");
    assert!(consumer.fetch(1, NO_WAIT).await.unwrap().is_empty());
    let info = consumer.info().await.unwrap();
    assert_eq!((info.ack_floor, info.dead_lettered, info.in_flight), (1, 1, 0));
}

/// A payload over the default 1 MiB, taken by a stream whose limit was
/// raised, is dead-lettered: the dead-letter stream's limit is raised to its
/// origin's, and the message is not handed out again.
pub async fn a_payload_over_the_default_limit_is_dead_lettered(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("c").unwrap()).await.unwrap();
    let consumer = bus.consumer("c", "t").create().await.unwrap();
    let raised = std::num::NonZeroU32::new(2 * 1024 * 1024).unwrap();
    let config = bus.stream_info("c").await.unwrap().config.max_payload(raised);
    bus.update_stream(config).await.unwrap();
    let payload = vec![7u8; 1024 * 1024 + 1];
    bus.publish("c.x", payload.clone()).await.unwrap();
    let d = consumer.fetch(1, LONG).await.unwrap().pop().unwrap();
    d.term("too big to handle").await.unwrap();
    let letters = bus.dead_letters("c", "t", 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(&letters[0].payload[..], &payload[..]);
    assert!(consumer.fetch(1, NO_WAIT).await.unwrap().is_empty());
    let dead_letters = bus.stream_info("$dlq-c-t").await.unwrap().config;
    assert_eq!(dead_letters.max_payload, raised);
}

/// A reason with line breaks and other control characters is dead-lettered
/// on one line, each such character a space (NATS headers cannot carry them).
pub async fn a_reason_with_line_breaks_is_dead_lettered_on_one_line(bus: &TestBus) {
    bus.publish("c.x", "bad").await.unwrap();
    let consumer = bus.consumer("c", "t").create().await.unwrap();
    let d = consumer.fetch(1, LONG).await.unwrap().pop().unwrap();
    d.term("parse error\r\n  at line 3\tcol 7").await.unwrap();
    let letters = bus.dead_letters("c", "t", 10).await.unwrap();
    assert_eq!(
        letters[0].headers.get(dlq::REASON).map(String::as_str),
        Some("parse error    at line 3 col 7")
    );
    assert!(consumer.fetch(1, NO_WAIT).await.unwrap().is_empty());
}

/// With `DeadLetter::Discard`, a given-up message is settled and dropped: no
/// dead-letter stream, and the consumer moves on.
pub async fn discarded_dead_letters_are_dropped(bus: &TestBus) {
    publish_n(bus, "c.x", 2).await;
    let consumer = bus
        .consumer("c", "d")
        .dead_letter(herald::DeadLetter::Discard)
        .create()
        .await
        .unwrap();
    consumer.fetch(1, NO_WAIT).await.unwrap()[0]
        .term("unwanted")
        .await
        .unwrap();
    assert_eq!(kind(bus.dead_letters("c", "d", 10).await), ErrorKind::StreamNotFound);
    let info = consumer.info().await.unwrap();
    assert_eq!((info.ack_floor, info.dead_lettered, info.pending), (1, 1, 1));
    assert_eq!(consumer.fetch(5, NO_WAIT).await.unwrap()[0].message.seq, 2);
}

/// Acks are idempotent; settling what was never delivered is `LeaseLost`.
pub async fn acks_are_idempotent(bus: &TestBus) {
    publish_n(bus, "c.x", 3).await;
    let consumer = bus.consumer("c", "i").create().await.unwrap();
    let d = consumer.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    d.ack().await.unwrap();
    d.ack().await.unwrap();
    assert_eq!(consumer.info().await.unwrap().ack_floor, 1);
    let next = consumer.fetch(5, NO_WAIT).await.unwrap();
    assert_eq!(next.len(), 2, "an acked message is never delivered again");
    let (stream, name) = (
        herald::StreamName::new("c").unwrap(),
        herald::ConsumerName::new("i").unwrap(),
    );
    let member = herald::ConsumerName::new("default").unwrap();
    let unknown = bus
        .backend()
        .settle(&stream, &name, &member, 99, 1, herald::Settle::Ack)
        .await;
    assert_eq!(kind(unknown), ErrorKind::LeaseLost);
}

/// `in_progress` extends the lease.
pub async fn in_progress_extends_the_lease(bus: &TestBus) {
    bus.publish("c.x", "long job").await.unwrap();
    let consumer = bus
        .consumer("c", "p")
        .ack_wait(Duration::from_secs(10))
        .create()
        .await
        .unwrap();
    let other = consumer.member("other").unwrap();
    let d = consumer.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    bus.advance(Duration::from_secs(8)).await;
    d.in_progress().await.unwrap();
    bus.advance(Duration::from_secs(8)).await;
    assert!(
        other.fetch(1, NO_WAIT).await.unwrap().is_empty(),
        "the lease was extended"
    );
    d.ack().await.unwrap();
}

/// Fresh messages are served before redeliveries come back around.
pub async fn fresh_messages_come_before_redeliveries(bus: &TestBus) {
    publish_n(bus, "c.x", 3).await;
    let consumer = bus.consumer("c", "f").create().await.unwrap();
    let first = consumer.fetch(1, NO_WAIT).await.unwrap().pop().unwrap();
    first.nak().await.unwrap();
    let order: Vec<u64> = consumer
        .fetch(10, NO_WAIT)
        .await
        .unwrap()
        .iter()
        .map(|d| d.message.seq)
        .collect();
    assert_eq!(order, [2, 3, 1]);
}

/// `max_ack_pending` bounds what is in flight.
pub async fn max_ack_pending_bounds_what_is_in_flight(bus: &TestBus) {
    publish_n(bus, "c.x", 10).await;
    let consumer = bus.consumer("c", "m").max_ack_pending(3).create().await.unwrap();
    let got = consumer.fetch(10, NO_WAIT).await.unwrap();
    assert_eq!(got.len(), 3);
    assert!(consumer.fetch(10, NO_WAIT).await.unwrap().is_empty());
    got[0].ack().await.unwrap();
    assert_eq!(consumer.fetch(10, NO_WAIT).await.unwrap().len(), 1);
}

/// Info reports the ack floor, lag in messages and in time, and what is in flight.
pub async fn info_reports_floor_lag_and_in_flight(bus: &TestBus) {
    publish_n(bus, "c.x", 10).await;
    let consumer = bus.consumer("c", "lag").create().await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!((info.ack_floor, info.pending, info.in_flight), (0, 10, 0));
    bus.advance(Duration::from_secs(3)).await;
    let got = consumer.fetch(4, NO_WAIT).await.unwrap();
    got[0].ack().await.unwrap();
    got[2].ack().await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(
        (info.ack_floor, info.pending, info.in_flight, info.delivered),
        (1, 8, 2, 4)
    );
    assert!(info.oldest_unacked_age.is_some_and(|age| age >= Duration::from_secs(3)));
}

/// A reset moves the consumer to a seq; everything from there comes again.
pub async fn a_reset_moves_the_consumer_and_shows_in_info(bus: &TestBus) {
    publish_n(bus, "c.x", 5).await;
    let consumer = bus.consumer("c", "r").create().await.unwrap();
    for d in consumer.fetch(5, NO_WAIT).await.unwrap() {
        d.ack().await.unwrap();
    }
    let info = consumer.reset(ReadFrom::Seq(3)).await.unwrap();
    assert_eq!((info.ack_floor, info.next_seq, info.pending), (2, 3, 3));
    let again: Vec<u64> = consumer
        .fetch(5, NO_WAIT)
        .await
        .unwrap()
        .iter()
        .map(|d| d.message.seq)
        .collect();
    assert_eq!(again, [3, 4, 5]);
}

/// Consumers are listed, updated and deleted; unknown ones are `ConsumerNotFound`.
pub async fn consumers_are_listed_updated_and_deleted(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("c").unwrap()).await.unwrap();
    bus.consumer("c", "b").create().await.unwrap();
    let a = bus.consumer("c", "a").create().await.unwrap();
    let names: Vec<String> = bus
        .consumers("c")
        .await
        .unwrap()
        .iter()
        .map(|i| i.config.name.to_string())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let again = bus.consumer("c", "a").max_deliver(3).create().await;
    assert_eq!(kind(again), ErrorKind::ConsumerExists);
    let updated = a
        .update(ConsumerConfig::new("a").unwrap().max_deliver(3))
        .await
        .unwrap();
    assert_eq!(updated.config.max_deliver.map(|n| n.get()), Some(3));
    // The config alone, as the backend keeps it, is the one info reports.
    let (stream, name) = (
        herald::StreamName::new("c").unwrap(),
        herald::ConsumerName::new("a").unwrap(),
    );
    let config = bus.backend().consumer_config(&stream, &name).await.unwrap();
    assert_eq!(config, updated.config);
    assert_eq!(bus.consumer_info("c", "a").await.unwrap().config, updated.config);
    assert_eq!(kind(bus.consumer_info("c", "b2").await), ErrorKind::ConsumerNotFound);
    let missing = herald::ConsumerName::new("b2").unwrap();
    assert_eq!(
        kind(bus.backend().consumer_config(&stream, &missing).await),
        ErrorKind::ConsumerNotFound
    );
    let no_stream = herald::StreamName::new("nope").unwrap();
    assert_eq!(
        kind(bus.backend().consumer_config(&no_stream, &name).await),
        ErrorKind::StreamNotFound
    );
    bus.delete_consumer("c", "b").await.unwrap();
    assert_eq!(kind(bus.bind_consumer("c", "b").await), ErrorKind::ConsumerNotFound);
    assert_eq!(kind(bus.delete_consumer("c", "b").await), ErrorKind::ConsumerNotFound);
    assert_eq!(
        kind(bus.consumer("nope", "x").create().await),
        ErrorKind::StreamNotFound
    );
    assert_eq!(
        kind(bus.consumer("c", "bad.name").create().await),
        ErrorKind::InvalidName
    );
}

/// A filter that can never match a subject of the stream is refused, on
/// create and on update, naming the filter and the stream's subjects; one
/// that overlaps them in part is taken and delivers what the two share.
pub async fn a_filter_that_can_never_match_the_streams_subjects_is_refused(bus: &TestBus) {
    let orders = StreamConfig::new("orders").unwrap().subjects(["orders.>"]).unwrap();
    bus.create_stream(orders.clone()).await.unwrap();
    let never = bus
        .consumer("orders", "billing")
        .filter("payments.>")
        .create()
        .await
        .unwrap_err();
    assert_eq!(never.kind(), ErrorKind::InvalidConfig, "{never}");
    assert!(
        never.message().contains("`payments.>`") && never.message().contains("`orders.>`"),
        "{never}"
    );
    // Nothing was made: not the consumer, not its dead-letter stream.
    assert_eq!(
        kind(bus.consumer_info("orders", "billing").await),
        ErrorKind::ConsumerNotFound
    );
    assert_eq!(
        kind(bus.stream_info("$dlq-orders-billing").await),
        ErrorKind::StreamNotFound
    );
    // One such filter among others is refused as well.
    let one_of_two = bus
        .consumer("orders", "billing")
        .filter("orders.created")
        .filter("payments.>")
        .create()
        .await;
    assert_eq!(kind(one_of_two), ErrorKind::InvalidConfig);

    // On update too, and the consumer keeps the filters it had.
    let billing = bus
        .consumer("orders", "billing")
        .filter("orders.created")
        .create()
        .await
        .unwrap();
    let to_payments = ConsumerConfig::new("billing").unwrap().filter("payments.>").unwrap();
    let moved = billing.update(to_payments).await.unwrap_err();
    assert_eq!(moved.kind(), ErrorKind::InvalidConfig, "{moved}");
    assert!(moved.message().contains("`payments.>`"), "{moved}");
    let created = herald::Pattern::new("orders.created").unwrap();
    let info = bus.consumer_info("orders", "billing").await.unwrap();
    assert_eq!(info.config.filters, std::slice::from_ref(&created));

    // In part: `>` and `*.created` take what they share with `orders.>`.
    bus.publish("orders.created", "1").await.unwrap();
    bus.publish("orders.paid", "2").await.unwrap();
    let seqs = |v: Vec<herald::Received>| v.iter().map(|d| d.message.seq).collect::<Vec<_>>();
    let all = bus.consumer("orders", "all").filter(">").create().await.unwrap();
    assert_eq!(seqs(all.fetch(10, NO_WAIT).await.unwrap()), [1, 2]);
    let any_created = bus
        .consumer("orders", "any-created")
        .filter("*.created")
        .create()
        .await
        .unwrap();
    assert_eq!(seqs(any_created.fetch(10, NO_WAIT).await.unwrap()), [1]);

    // The stream's subjects change: its consumers stay as they are. Made
    // again as it is, one is a no-op; an update keeping its filters is
    // taken, one adding a filter the new subjects cannot match is not.
    let shipments = orders.subjects(["shipments.>"]).unwrap();
    bus.update_stream(shipments).await.unwrap();
    let again = bus
        .consumer("orders", "billing")
        .filter("orders.created")
        .create()
        .await;
    assert_eq!(
        again.unwrap().info().await.unwrap().config.filters,
        std::slice::from_ref(&created)
    );
    let kept = ConsumerConfig::new("billing")
        .unwrap()
        .filter("orders.created")
        .unwrap()
        .max_deliver(3);
    let updated = billing.update(kept.clone()).await.unwrap();
    assert_eq!(updated.config.max_deliver.map(|n| n.get()), Some(3));
    let added = kept.filter("orders.paid").unwrap();
    assert_eq!(kind(billing.update(added).await), ErrorKind::InvalidConfig);
    // What the stream holds from before is still delivered.
    assert_eq!(seqs(billing.fetch(10, NO_WAIT).await.unwrap()), [1]);
}

/// Four members share 10,000 messages: each acked exactly once, never leased twice at once.
pub async fn four_members_share_ten_thousand_messages(bus: &TestBus) {
    publish_n(bus, "c.x", 10_000).await;
    let group = bus
        .consumer("c", "g")
        .ack_wait(Duration::from_secs(300))
        .create()
        .await
        .unwrap();
    let holders: Arc<Mutex<HashMap<u64, String>>> = Arc::default();
    let acked: Arc<Mutex<HashSet<u64>>> = Arc::default();
    let mut tasks = Vec::new();
    for m in 0..4 {
        let member = group.member(format!("m{m}")).unwrap();
        let (holders, acked) = (holders.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut count = 0;
            loop {
                let batch = member.fetch(50, Duration::from_millis(200)).await.unwrap();
                if batch.is_empty() {
                    return count;
                }
                for d in &batch {
                    let previous = holders.lock().unwrap().insert(d.message.seq, d.member.to_string());
                    assert!(previous.is_none(), "seq {} leased twice", d.message.seq);
                }
                for d in batch {
                    holders.lock().unwrap().remove(&d.message.seq);
                    d.ack().await.unwrap();
                    assert!(
                        acked.lock().unwrap().insert(d.message.seq),
                        "seq {} acked twice",
                        d.message.seq
                    );
                    count += 1;
                }
            }
        }));
    }
    let mut per_member = Vec::new();
    for t in tasks {
        per_member.push(t.await.unwrap());
    }
    assert_eq!(per_member.iter().sum::<usize>(), 10_000);
    assert_eq!(acked.lock().unwrap().len(), 10_000);
    let info = group.info().await.unwrap();
    assert_eq!((info.ack_floor, info.pending, info.redelivered), (10_000, 0, 0));
}

/// Consumers work past seq 100 and 10,000 with other streams' traffic interleaved.
pub async fn consumers_work_far_into_a_stream_among_other_streams(bus: &TestBus) {
    for round in 0..20 {
        let batch = (0..520).map(|i| msg("far.x", format!("{round}-{i}"))).collect();
        bus.publish_batch(batch).await.unwrap();
        bus.publish_batch((0..50).map(|i| msg("other.y", format!("{i}"))).collect())
            .await
            .unwrap();
    }
    let late = bus
        .consumer("far", "late")
        .start(StartPolicy::FromSeq(10_001))
        .create()
        .await
        .unwrap();
    let group = bus
        .consumer("far", "group")
        .start(StartPolicy::FromSeq(101))
        .create()
        .await
        .unwrap();
    let got = late.fetch(500, NO_WAIT).await.unwrap();
    assert_eq!(got.first().map(|d| d.message.seq), Some(10_001));
    assert_eq!(got.len(), 400);
    let (a, b) = (group.member("a").unwrap(), group.member("b").unwrap());
    let mut seen = HashSet::new();
    loop {
        let mut progressed = false;
        for member in [&a, &b] {
            for d in member.fetch(200, NO_WAIT).await.unwrap() {
                assert!(seen.insert(d.message.seq));
                d.ack().await.unwrap();
                progressed = true;
            }
        }
        if !progressed {
            break;
        }
    }
    assert_eq!(seen, (101..=10_400).collect::<HashSet<u64>>());
    assert_eq!(group.info().await.unwrap().ack_floor, 10_400);
}

/// Work-queue streams delete a message once it is acked, and nothing else.
pub async fn work_queue_retention_deletes_exactly_the_acked(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("jobs").unwrap().retention(Retention::WorkQueue))
        .await
        .unwrap();
    publish_n(bus, "jobs.x", 10).await;
    let workers = bus.consumer("jobs", "workers").create().await.unwrap();
    let got = workers.fetch(10, NO_WAIT).await.unwrap();
    for d in got.iter().filter(|d| d.message.seq % 2 == 0) {
        d.ack().await.unwrap();
    }
    got[0].nak().await.unwrap();
    assert_eq!(seqs_held(bus, "jobs").await, [1, 3, 5, 7, 9]);
    let overlapping = bus.consumer("jobs", "second").create().await.unwrap_err();
    assert_eq!(overlapping.kind(), ErrorKind::InvalidConfig, "{overlapping}");
}

/// Interest streams delete a message once every interested consumer acked it.
pub async fn interest_retention_deletes_once_every_consumer_acked(bus: &TestBus) {
    let config = StreamConfig::new("ev").unwrap().retention(Retention::Interest);
    bus.create_stream(config).await.unwrap();
    // With no consumer yet, messages are kept for the first one to come.
    bus.publish("ev.early", "kept").await.unwrap();
    let a = bus
        .consumer("ev", "a")
        .filter("ev.a")
        .filter("ev.b")
        .filter("ev.early")
        .create()
        .await
        .unwrap();
    let b = bus.consumer("ev", "b").filter("ev.b").create().await.unwrap();
    bus.publish("ev.a", "only a wants it").await.unwrap();
    bus.publish("ev.b", "both want it").await.unwrap();
    bus.publish("ev.c", "nobody wants it").await.unwrap();
    assert_eq!(
        seqs_held(bus, "ev").await,
        [1, 2, 3],
        "a message no consumer wants is not kept"
    );
    for d in a.fetch(10, NO_WAIT).await.unwrap() {
        d.ack().await.unwrap();
    }
    assert_eq!(seqs_held(bus, "ev").await, [3], "only b still owes seq 3");
    b.fetch(10, NO_WAIT).await.unwrap()[0].ack().await.unwrap();
    assert!(seqs_held(bus, "ev").await.is_empty());
}

/// A fetch may be asked to wait for ever (`Duration::MAX`): it waits, and
/// the next message ends the wait.
pub async fn a_fetch_asked_to_wait_for_ever_gets_the_next_message(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("ever").unwrap()).await.unwrap();
    let consumer = bus.consumer("ever", "c").create().await.unwrap();
    // The fetch starts first (its deadline is where a wait of Duration::MAX
    // overflowed the clock); whether the publish lands before or during its
    // wait, the fetch ends with it.
    let fetch = tokio::spawn(async move { consumer.fetch(1, Duration::MAX).await });
    tokio::task::yield_now().await;
    bus.publish("ever.x", "at last").await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), fetch)
        .await
        .expect("woken by the publish")
        .unwrap()
        .unwrap();
    assert_eq!(got.iter().map(|d| d.message.seq).collect::<Vec<_>>(), [1]);
}

/// A publish racing a consumer that is about to wait is always seen promptly.
pub async fn a_publish_racing_a_waiting_consumer_is_never_missed(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("race").unwrap()).await.unwrap();
    let consumer = bus.consumer("race", "r").create().await.unwrap();
    for round in 1..=1000u64 {
        let publisher = {
            let bus = herald::Bus::clone(bus);
            tokio::spawn(async move { bus.publish("race.x", "x").await.unwrap() })
        };
        let got = tokio::time::timeout(Duration::from_secs(10), consumer.fetch(1, Duration::from_secs(60)))
            .await
            .expect("woken by the commit, not by a timeout")
            .unwrap();
        assert_eq!(got[0].message.seq, round);
        got[0].ack().await.unwrap();
        publisher.await.unwrap();
    }
}
