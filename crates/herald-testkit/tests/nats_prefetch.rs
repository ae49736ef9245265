//! What one process prefetched on NATS and stopped asking for goes back to
//! JetStream for another process, long before its lease would run out.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use herald::{Bus, StreamConfig};
use herald_testkit::nats_server::{NatsServer, NatsSync};

/// A lease no test waits out: only a hand-back brings the messages back.
const ACK_WAIT: Duration = Duration::from_secs(120);
/// Far past the hand-back (at most 5 s after the last fetch), far short of the lease.
const WAIT: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_a_process_prefetched_and_left_go_to_another() {
    let server = NatsServer::start(NatsSync::Always, None).unwrap();
    // Two connections: two processes, as far as JetStream can tell.
    let first = Bus::nats(server.url()).await.unwrap();
    let second = Bus::nats(server.url()).await.unwrap();
    first.create_stream(StreamConfig::new("jobs").unwrap()).await.unwrap();
    for i in 0..3 {
        first.publish("jobs.run", format!("{i}")).await.unwrap();
    }
    let consumer = first
        .consumer("jobs", "workers")
        .ack_wait(ACK_WAIT)
        .create()
        .await
        .unwrap();
    // One at a time: the feed asks for the next ones ahead.
    let one = consumer.next().await.unwrap();
    assert_eq!(one.message.seq, 1);
    one.ack().await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!(
        (info.ack_floor, info.in_flight, info.pending),
        (1, 0, 2),
        "what the first process prefetched is neither in flight nor delivered"
    );

    // The first process asks for nothing more; the second gets the rest.
    let other = second
        .bind_consumer("jobs", "workers")
        .await
        .unwrap()
        .member("b")
        .unwrap();
    let mut got = Vec::new();
    while got.len() < 2 {
        let batch = other.fetch(10, WAIT).await.unwrap();
        assert!(!batch.is_empty(), "the prefetched messages never came back: {got:?}");
        other.ack_all(&batch).await.unwrap();
        got.extend(batch.iter().map(|d| (d.message.seq, d.deliveries)));
    }
    // JetStream counted the delivery to the first process, which no member
    // there saw (docs/nats.md, "Fetching").
    assert_eq!(got, [(2, 2), (3, 2)]);
    assert_eq!(second.consumer_info("jobs", "workers").await.unwrap().ack_floor, 3);
}
