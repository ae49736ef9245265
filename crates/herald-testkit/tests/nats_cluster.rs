//! Herald on a 3-node nats-server cluster: the leader of an R3 stream is
//! killed (SIGKILL) while 16 publishers publish with message ids. Afterwards
//! every acknowledged message is stored exactly once, and a durable consumer
//! that was reading across the failover has every one of them.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::nats::{NatsBackend, NatsOptions};
use herald::{Bus, OutgoingMessage, StreamConfig, Subject};
use herald_testkit::nats_server::{NatsCluster, NatsSync};

const PUBLISHERS: usize = 16;
const PER_PUBLISHER: usize = 150;
/// Publishing and consuming must be done well within this, failover included.
const DEADLINE: Duration = Duration::from_secs(120);

async fn connect(cluster: &NatsCluster) -> (Bus, NatsBackend) {
    let options = NatsOptions::new(cluster.urls())
        .replicas(3)
        .request_timeout(Duration::from_secs(2));
    let started = Instant::now();
    loop {
        match NatsBackend::connect(options.clone()).await {
            Ok(backend) => return (Bus::from_backend(Arc::new(backend.clone())), backend),
            // The cluster elects its JetStream meta leader first.
            Err(err) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("waiting for the cluster: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("the cluster never answered: {err}"),
        }
    }
}

async fn stream_leader(backend: &NatsBackend) -> String {
    let js = async_nats::jetstream::new(backend.client().clone());
    let started = Instant::now();
    loop {
        if let Ok(mut stream) = js.get_stream("ha").await
            && let Ok(info) = stream.info().await
            && let Some(leader) = info.cluster.as_ref().and_then(|c| c.leader.clone())
        {
            return leader;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "the stream has no leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_leader_loses_no_acknowledged_message_and_duplicates_none() {
    let mut cluster = NatsCluster::start(3, NatsSync::Always).unwrap();
    let (bus, backend) = connect(&cluster).await;
    let started = Instant::now();
    loop {
        match bus.create_stream(StreamConfig::new("ha").unwrap()).await {
            Ok(_) => break,
            Err(err) if started.elapsed() < Duration::from_secs(30) => {
                eprintln!("creating the R3 stream: {err}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(err) => panic!("no R3 stream: {err}"),
        }
    }
    let consumer = bus.consumer("ha", "audit").create().await.unwrap();
    let leader = stream_leader(&backend).await;

    // Publishers retry each message with its id until it is acknowledged.
    let acked = Arc::new(AtomicU64::new(0));
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let bus = bus.clone();
        let acked = acked.clone();
        publishers.push(tokio::spawn(async move {
            let mut acks = Vec::new();
            for i in 0..PER_PUBLISHER {
                let id = format!("p{p}-m{i}");
                let subject = Subject::new(format!("ha.p{p}")).unwrap();
                let message = OutgoingMessage::new(subject, id.clone()).id(id.clone());
                let started = Instant::now();
                let ack = loop {
                    match bus.publish_message(message.clone()).await {
                        Ok(ack) => break ack,
                        Err(err) => {
                            assert!(started.elapsed() < DEADLINE, "{id} never acknowledged: {err}");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                };
                acked.fetch_add(1, Ordering::Relaxed);
                acks.push((id, ack.seq));
            }
            acks
        }));
    }

    // The consumer reads across the failover, acking everything.
    let total = (PUBLISHERS * PER_PUBLISHER) as u64;
    let reader = {
        tokio::spawn(async move {
            let mut seen: BTreeMap<u64, String> = BTreeMap::new();
            let started = Instant::now();
            while (seen.len() as u64) < total {
                assert!(started.elapsed() < DEADLINE, "the consumer stalled at {}", seen.len());
                let batch = match consumer.fetch(100, Duration::from_millis(500)).await {
                    Ok(batch) => batch,
                    Err(err) => {
                        eprintln!("fetch during failover: {err}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                for delivery in batch {
                    seen.insert(delivery.message.seq, delivery.message.id.clone());
                    // An ack lost in the failover only means a redelivery.
                    let _ = delivery.ack().await;
                }
            }
            seen
        })
    };

    // Kill the stream's leader once a third of the messages are in.
    while acked.load(Ordering::Relaxed) < total / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(cluster.kill(&leader), "{leader} is a node");
    eprintln!("killed {leader} after {} acks", acked.load(Ordering::Relaxed));

    let mut acks = Vec::new();
    for publisher in publishers {
        acks.extend(publisher.await.unwrap());
    }
    let seen = reader.await.unwrap();
    let new_leader = stream_leader(&backend).await;
    assert_ne!(new_leader, leader);

    // Every acknowledged message is stored once, at the seq its ack named.
    assert_eq!(acks.len() as u64, total);
    let info = bus.stream_info("ha").await.unwrap();
    assert_eq!(info.state.messages, total, "no message stored twice, none lost");
    let mut by_id: HashMap<&str, u64> = HashMap::new();
    for (seq, id) in &seen {
        assert!(by_id.insert(id.as_str(), *seq).is_none(), "{id} is stored twice");
    }
    for (id, seq) in &acks {
        assert_eq!(by_id.get(id.as_str()), Some(seq), "{id} was acknowledged at {seq}");
    }
    eprintln!(
        "{total} messages from {PUBLISHERS} publishers, leader {leader} killed, new leader {new_leader}; \
         all present once and consumed"
    );
}
