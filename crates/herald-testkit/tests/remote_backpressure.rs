//! A remote subscriber that stops reading: the client holds no more than its
//! bound for it (the server is told to stop sending), and once the reader
//! reads again it gets every message, in order, none twice.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use herald::{Bus, Engine, OutgoingMessage, RemoteBackend, Subject};

/// Bigger than the client's buffer several times over.
const MESSAGES: u64 = 400;
const PAYLOAD: usize = 64 * 1024;
/// A safety net on waits that end by themselves far sooner.
const PATIENCE: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_is_held_to_a_bound_and_misses_nothing() {
    let engine = Engine::memory().unwrap();
    let hosted = Bus::from_engine(engine);
    hosted
        .create_stream(herald::StreamConfig::new("feed").unwrap())
        .await
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = herald_server::Server::new(hosted.clone());
    let task = tokio::spawn(async move {
        let _ = server.serve(listener, std::future::pending()).await;
    });

    let client = RemoteBackend::connect(format!("ws://{addr}/v1/ws")).await.unwrap();
    let remote = Bus::from_backend(Arc::new(client.clone()));
    // One subscriber that does not read, one that does, on one connection.
    let mut slow = remote.subscribe("feed.>").await.unwrap();
    let mut probe = remote.subscribe("feed.>").await.unwrap();

    let subject = Subject::new("feed.item").unwrap();
    for chunk in 0..MESSAGES / 50 {
        let batch = (0..50)
            .map(|i| {
                let n = chunk * 50 + i;
                let mut payload = vec![0u8; PAYLOAD];
                payload[..8].copy_from_slice(&n.to_le_bytes());
                OutgoingMessage::new(subject.clone(), payload)
            })
            .collect();
        hosted.publish_batch(batch).await.unwrap();
    }
    // The probe has everything: the server has sent the slow one's share too
    // (or been told to stop).
    for seq in 1..=MESSAGES {
        let message = tokio::time::timeout(PATIENCE, probe.next()).await.unwrap().unwrap();
        assert_eq!(message.seq, seq);
    }
    let held = client.buffered_bytes();
    assert!(held > 0, "the slow subscriber has messages waiting");
    assert!(
        held <= herald_client_bound(),
        "the client holds {held} bytes for readers, over its bound of {}",
        herald_client_bound()
    );

    // Reading again: every message once, in order, though the client dropped
    // most of them while the reader was behind.
    for seq in 1..=MESSAGES {
        let message = tokio::time::timeout(PATIENCE, slow.next()).await.unwrap().unwrap();
        assert_eq!(message.seq, seq, "no gap, no repeat");
        let mut n = [0u8; 8];
        n.copy_from_slice(&message.payload[..8]);
        assert_eq!(u64::from_le_bytes(n), seq - 1);
    }
    assert!(client.buffered_bytes() <= herald_client_bound());
    task.abort();
}

/// The client's bound on what it holds for one reader: its byte budget, plus
/// the one message it always takes.
fn herald_client_bound() -> usize {
    herald::SUBSCRIPTION_BUFFER_BYTES + PAYLOAD
}

/// Requests beyond what a responder that does not read holds are turned away
/// at once (`Closed`, as for a request its responder dropped); the ones held
/// are answered once it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_what_a_stalled_responder_holds_are_turned_away() {
    const REQUESTERS: usize = 5;
    const EACH: usize = 215;
    let total = REQUESTERS * EACH;
    let over = total - herald::RESPONDER_BUFFER;
    let engine = Engine::memory().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = herald_server::Server::new(Bus::from_engine(engine));
    let task = tokio::spawn(async move {
        let _ = server.serve(listener, std::future::pending()).await;
    });
    let url = format!("ws://{addr}/v1/ws");

    let responder_bus = Bus::connect(&url).await.unwrap();
    let mut service = responder_bus.responder("svc.echo").await.unwrap();
    // Each requester has its own connection (a client keeps a bounded
    // number of calls in flight).
    let (done_tx, mut done) = tokio::sync::mpsc::channel(total);
    for _ in 0..REQUESTERS {
        let bus = Bus::connect(&url).await.unwrap();
        for i in 0..EACH {
            let (bus, done_tx) = (bus.clone(), done_tx.clone());
            tokio::spawn(async move {
                let outcome = bus.request("svc.echo", format!("{i}"), PATIENCE).await;
                let _ = done_tx.send(outcome.map(|_| ()).map_err(|e| e.kind())).await;
            });
        }
    }
    // The turned-away ones come back while the responder still reads nothing.
    for _ in 0..over {
        let outcome = tokio::time::timeout(PATIENCE, done.recv()).await.unwrap().unwrap();
        assert_eq!(outcome, Err(herald::ErrorKind::Closed));
    }
    // Then the responder answers all it held.
    for _ in 0..herald::RESPONDER_BUFFER {
        let request = tokio::time::timeout(PATIENCE, service.next()).await.unwrap().unwrap();
        request.respond(herald::Reply::new("ok")).unwrap();
    }
    for _ in 0..herald::RESPONDER_BUFFER {
        let outcome = tokio::time::timeout(PATIENCE, done.recv()).await.unwrap().unwrap();
        assert_eq!(outcome, Ok(()));
    }
    task.abort();
}
