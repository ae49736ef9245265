//! The remote client across a server restart: a Herald server on
//! 127.0.0.1:0 is stopped and started again on its data directory while a
//! publisher, a live subscription and a durable consumer are at work.
//! Nothing acknowledged is lost, nothing is stored twice, the subscription
//! skips and repeats nothing, and the consumer gets every message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use herald::{Bus, ReadFrom};
use tokio::sync::oneshot;

const N: u64 = 600;
const LONG: Duration = Duration::from_secs(60);

/// Serves the data directory on `addr` until `stop` fires; returns once the
/// engine is closed.
async fn serve(dir: &Path, addr: SocketAddr, stop: oneshot::Receiver<()>) -> tokio::task::JoinHandle<()> {
    let bus = Bus::open(dir).await.unwrap();
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    tokio::spawn(async move {
        herald_server::Server::new(bus)
            .serve(listener, async {
                let _ = stop.await;
            })
            .await
            .unwrap();
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_loses_nothing_acked_and_the_client_resumes_without_gaps() {
    let dir = tempfile::tempdir().unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let (stop, stopped) = oneshot::channel();
    let server = serve(dir.path(), addr, stopped).await;

    let bus = Bus::connect(format!("ws://{addr}/v1/ws")).await.unwrap();
    bus.create_stream(herald::StreamConfig::new("ev").unwrap())
        .await
        .unwrap();
    let consumer = bus.consumer("ev", "audit").create().await.unwrap();
    let mut subscription = bus.subscribe_from("ev.>", ReadFrom::Seq(1)).await.unwrap();

    let publisher = {
        let bus = bus.clone();
        tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 1..=N {
                let ack = bus.publish("ev.x", format!("{i}")).await.unwrap();
                seqs.push(ack.seq);
                if i % 100 == 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            seqs
        })
    };
    let follower = tokio::spawn(async move {
        let mut seen = Vec::new();
        while (seen.len() as u64) < N {
            let message = tokio::time::timeout(LONG, subscription.next()).await.unwrap().unwrap();
            seen.push(message.seq);
        }
        seen
    });
    let worker = tokio::spawn(async move {
        let mut acked = BTreeSet::new();
        while (acked.len() as u64) < N {
            for delivery in consumer.fetch(50, Duration::from_millis(200)).await.unwrap() {
                // An ack lost with the connection only means a redelivery.
                if delivery.ack().await.is_ok() {
                    acked.insert(delivery.message.seq);
                }
            }
        }
        (acked, consumer)
    });

    // Restart the server a third of the way in.
    while bus.stream_info("ev").await.unwrap().state.messages < N / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    stop.send(()).unwrap();
    server.await.unwrap();
    let (stop, stopped) = oneshot::channel();
    let server = serve(dir.path(), addr, stopped).await;

    let seqs = tokio::time::timeout(LONG, publisher).await.unwrap().unwrap();
    assert_eq!(
        seqs,
        (1..=N).collect::<Vec<_>>(),
        "every publish acknowledged once, in order"
    );
    let info = bus.stream_info("ev").await.unwrap();
    assert_eq!(
        (info.state.messages, info.state.last_seq),
        (N, N),
        "nothing lost, nothing stored twice"
    );
    let seen = tokio::time::timeout(LONG, follower).await.unwrap().unwrap();
    assert_eq!(
        seen,
        (1..=N).collect::<Vec<_>>(),
        "the subscription skipped and repeated nothing"
    );
    let (acked, consumer) = tokio::time::timeout(LONG, worker).await.unwrap().unwrap();
    assert_eq!(acked.len() as u64, N);
    assert_eq!(consumer.info().await.unwrap().ack_floor, N);

    stop.send(()).unwrap();
    server.await.unwrap();
}
