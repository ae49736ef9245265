//! Batched settles: many deliveries settled in one call, each exactly as its
//! own settle would, and applied by the time the call returns.

use std::time::Duration;

use herald::{ConsumerName, ErrorKind, Retention, Settle, SettleItem, StreamConfig, StreamName, dlq};

use super::{msg, seqs_held};
use crate::TestBus;

const NO_WAIT: Duration = Duration::ZERO;
const LONG: Duration = Duration::from_secs(10);

async fn publish_n(bus: &TestBus, subject: &str, n: usize) {
    let batch = (0..n).map(|i| msg(subject, format!("{i}"))).collect();
    bus.publish_batch(batch).await.unwrap();
}

/// The ack floor and work-queue deletion show a batched ack as soon as it returns.
pub async fn a_batched_ack_is_visible_when_it_returns(bus: &TestBus) {
    bus.create_stream(StreamConfig::new("wq").unwrap().retention(Retention::WorkQueue))
        .await
        .unwrap();
    publish_n(bus, "wq.job", 6).await;
    let workers = bus.consumer("wq", "workers").create().await.unwrap();
    let got = workers.fetch(6, LONG).await.unwrap();
    assert_eq!(got.len(), 6);
    workers.ack_all(&got[..4]).await.unwrap();
    let info = workers.info().await.unwrap();
    assert_eq!((info.ack_floor, info.in_flight), (4, 2));
    assert_eq!(seqs_held(bus, "wq").await, [5, 6]);
}

/// A batch may name one delivery twice: the repeated ack is done again.
pub async fn a_batch_may_repeat_an_ack(bus: &TestBus) {
    publish_n(bus, "c.x", 3).await;
    let consumer = bus.consumer("c", "twice").create().await.unwrap();
    let got = consumer.fetch(3, LONG).await.unwrap();
    let outcomes = consumer
        .settle_all([(&got[0], Settle::Ack), (&got[0], Settle::Ack), (&got[1], Settle::Ack)])
        .await
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    assert_eq!(consumer.info().await.unwrap().ack_floor, 2);
    // And again in a later batch.
    consumer.ack_all(&got[..2]).await.unwrap();
    assert_eq!(consumer.info().await.unwrap().in_flight, 1);
}

/// One batch acks one delivery, naks another for later and terms a third:
/// each happens as its own settle would have it.
pub async fn a_batch_mixes_ack_nak_with_a_delay_and_term(bus: &TestBus) {
    publish_n(bus, "c.x", 3).await;
    let consumer = bus.consumer("c", "mixed").create().await.unwrap();
    let got = consumer.fetch(3, LONG).await.unwrap();
    let delay = Duration::from_secs(2);
    let outcomes = consumer
        .settle_all([
            (&got[0], Settle::Ack),
            (&got[1], Settle::Nak { delay }),
            (
                &got[2],
                Settle::Term {
                    reason: "unreadable".into(),
                },
            ),
        ])
        .await
        .unwrap();
    assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
    let letters = bus.dead_letters("c", "mixed", 10).await.unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].headers.get(dlq::SEQ).map(String::as_str), Some("3"));
    assert_eq!(
        letters[0].headers.get(dlq::REASON).map(String::as_str),
        Some("unreadable")
    );
    let info = consumer.info().await.unwrap();
    assert_eq!((info.ack_floor, info.dead_lettered), (1, 1));
    // The nak's delay holds it back, then it comes again.
    assert!(consumer.fetch(1, NO_WAIT).await.unwrap().is_empty());
    let again = consumer.fetch(1, LONG).await.unwrap().pop().unwrap();
    assert_eq!((again.message.seq, again.deliveries), (2, 2));
}

/// A delivery of the batch the member does not hold is `LeaseLost`, and the
/// rest of the batch applies all the same.
pub async fn a_lost_lease_in_a_batch_leaves_the_rest_applied(bus: &TestBus) {
    publish_n(bus, "c.x", 3).await;
    let a = bus.consumer("c", "group").create().await.unwrap().member("a").unwrap();
    let b = a.member("b").unwrap();
    let mine = a.fetch(2, LONG).await.unwrap();
    let theirs = b.fetch(1, LONG).await.unwrap();
    assert_eq!(theirs[0].message.seq, 3);
    let items = vec![
        SettleItem::ack(1, mine[0].deliveries),
        SettleItem::ack(3, theirs[0].deliveries),
        SettleItem::ack(2, mine[1].deliveries),
    ];
    let (stream, consumer) = (StreamName::new("c").unwrap(), ConsumerName::new("group").unwrap());
    let outcomes = bus
        .backend()
        .settle_batch(&stream, &consumer, a.member_name(), items)
        .await
        .unwrap();
    assert!(outcomes[0].is_ok() && outcomes[2].is_ok(), "{outcomes:?}");
    assert_eq!(
        outcomes[1].as_ref().unwrap_err().kind(),
        ErrorKind::LeaseLost,
        "{outcomes:?}"
    );
    let info = a.info().await.unwrap();
    assert_eq!((info.ack_floor, info.in_flight), (2, 1));
    // The lease the batch could not settle is still its holder's.
    b.ack_all(&theirs).await.unwrap();
    assert_eq!(a.info().await.unwrap().ack_floor, 3);
}

/// Fetches smaller than the backlog take the oldest first, in order, each
/// message once, whatever a backend fetches ahead.
pub async fn small_fetches_take_the_backlog_oldest_first(bus: &TestBus) {
    publish_n(bus, "c.x", 10).await;
    let consumer = bus.consumer("c", "small").create().await.unwrap();
    let mut seqs = Vec::new();
    for _ in 0..3 {
        let got = consumer.fetch(3, LONG).await.unwrap();
        seqs.extend(got.iter().map(|d| d.message.seq));
        consumer.ack_all(&got).await.unwrap();
    }
    assert_eq!(seqs, (1..=9).collect::<Vec<u64>>());
    assert_eq!(consumer.info().await.unwrap().ack_floor, 9);
}
