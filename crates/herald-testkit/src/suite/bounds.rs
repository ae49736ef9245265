//! Out-of-range input: subjects with invisible or reordering characters and
//! durations past their bounds are refused with a typed error and change
//! nothing (docs/semantics.md, "Subjects, patterns and names" and "Bounds on
//! durations").

use std::time::Duration;

use herald::{ErrorKind, MAX_LEASE, MAX_NAK_DELAY, MAX_RETENTION_AGE, StreamConfig};

use super::{kind, msg};
use crate::TestBus;

/// What the bus holds, for "nothing changed": every stream's name and state,
/// and every consumer of `stream` with its progress.
async fn everything(bus: &TestBus, stream: &str) -> (Vec<(String, herald::StreamState)>, Vec<(String, u64, u64, u64)>) {
    let streams = bus
        .streams()
        .await
        .unwrap()
        .into_iter()
        .map(|info| (info.config.name.to_string(), info.state))
        .collect();
    let consumers = bus
        .consumers(stream)
        .await
        .unwrap()
        .into_iter()
        .map(|info| {
            (
                info.config.name.to_string(),
                info.ack_floor,
                info.in_flight,
                info.delivered,
            )
        })
        .collect();
    (streams, consumers)
}

/// A subject with a right-to-left override (or another format character)
/// is `InvalidSubject` before anything is written, as a publish subject, as
/// the first publish that would create a stream, and as a consumer's filter.
pub async fn a_subject_with_a_bidirectional_override_is_refused_and_writes_nothing(bus: &TestBus) {
    bus.publish("b.ok", "kept").await.unwrap();
    let before = everything(bus, "b").await;
    for subject in [
        "b.invoice\u{202E}fdp.exe",
        "b.\u{2066}x\u{2069}",
        "b.zero\u{200B}width",
        "b.bell\u{7}",
        "\u{202E}new.stream",
    ] {
        assert_eq!(
            kind(bus.publish(subject, "x").await),
            ErrorKind::InvalidSubject,
            "{subject:?}"
        );
        assert_eq!(
            everything(bus, "b").await,
            before,
            "publishing to {subject:?} changed something"
        );
    }
    let filtered = bus.consumer("b", "rtl").filter("b.\u{202E}>").create().await;
    assert_eq!(kind(filtered), ErrorKind::InvalidSubject);
    assert_eq!(everything(bus, "b").await, before);
    assert_eq!(kind(bus.consumer_info("b", "rtl").await), ErrorKind::ConsumerNotFound);
}

/// Durations past their bounds are refused, naming the field, and change
/// nothing: a consumer's `ack_wait` and backoff, a stream's `max_age` and
/// duplicate window, a message's TTL, a nak's delay.
pub async fn durations_over_their_bounds_are_refused_and_change_nothing(bus: &TestBus) {
    bus.publish("d.x", "one").await.unwrap();
    let before = everything(bus, "d").await;
    let over_lease = MAX_LEASE + Duration::from_secs(1);

    let consumer = bus.consumer("d", "slow").ack_wait(over_lease).create().await;
    let err = consumer.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert!(err.to_string().contains("ack_wait"), "{err}");
    let consumer = bus
        .consumer("d", "slow")
        .backoff([Duration::from_secs(1), over_lease])
        .create()
        .await;
    assert_eq!(kind(consumer), ErrorKind::InvalidConfig);
    assert_eq!(kind(bus.consumer_info("d", "slow").await), ErrorKind::ConsumerNotFound);
    assert_eq!(everything(bus, "d").await, before, "no consumer, no dead-letter stream");

    let over_age = MAX_RETENTION_AGE + Duration::from_secs(1);
    let forever = StreamConfig::new("forever").unwrap().max_age(over_age);
    assert_eq!(kind(bus.create_stream(forever).await), ErrorKind::InvalidConfig);
    let window = StreamConfig::new("forever").unwrap().duplicate_window(Some(over_age));
    assert_eq!(kind(bus.create_stream(window).await), ErrorKind::InvalidConfig);
    assert_eq!(kind(bus.stream_info("forever").await), ErrorKind::StreamNotFound);

    let ttl = bus.publish_message(msg("d.x", "two").ttl(over_age)).await;
    assert_eq!(kind(ttl), ErrorKind::InvalidRequest);
    assert_eq!(everything(bus, "d").await, before);

    let worker = bus.consumer("d", "worker").create().await.unwrap();
    let held = worker.fetch(1, Duration::ZERO).await.unwrap().pop().unwrap();
    let before = everything(bus, "d").await;
    let nak = held.nak_after(MAX_NAK_DELAY + Duration::from_secs(1)).await;
    assert_eq!(kind(nak), ErrorKind::InvalidRequest);
    assert_eq!(everything(bus, "d").await, before);
    held.ack().await.unwrap();
    assert_eq!(worker.info().await.unwrap().ack_floor, 1);
}
