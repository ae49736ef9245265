//! A batched settle on NATS across a cut connection. A TCP proxy sits between
//! Herald and nats-server; it counts the `+ACK` bodies the client sends and,
//! at the K-th ack of the batch, forwards what came before it and drops the
//! connection (both sockets). The client reconnects through the same proxy.
//! Whatever the call answers, every ack it reports applied must be applied on
//! the server, as seen through a direct connection.
//!
//! Where the cut falls is exact; what the client had written into the dead
//! socket is not. Either way the reconnect is seen (also while the batch's
//! confirming request waits for an answer that will never come) and the
//! batch is sent again, so the call normally succeeds; should it fail as a
//! whole (`Timeout`, `Closed`), nothing is reported settled and settling
//! again applies everything. Each test prints which way it went, and checks
//! the server either way.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::nats::{NatsBackend, NatsOptions};
use herald::{Bus, ErrorKind, OutgoingMessage, Received, Settle, StreamConfig, Subject};
use herald_testkit::nats_server::{NatsServer, NatsSync};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// Longer than the test: nothing is redelivered because its lease ran out.
const ACK_WAIT: Duration = Duration::from_secs(600);
/// A JetStream request unanswered this long fails (a request lost in the cut).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
/// A safety net for waits on events; never reached when things work.
const SAFETY: Duration = Duration::from_secs(60);

/// The body of a JetStream ack, as it appears in the client's `PUB`.
const ACK: &[u8] = b"+ACK";

/// What the proxy's connections share: how many acks went by, and whether
/// the one cut has happened.
struct AckCount {
    seen: usize,
    cut_at: usize,
    cut_done: bool,
}

/// A loopback TCP proxy that drops the connection once, when the client
/// sends its `cut_at`-th ack. Connections after that are forwarded whole.
struct CuttingProxy {
    addr: SocketAddr,
    count: Arc<Mutex<AckCount>>,
    cuts: watch::Receiver<usize>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttingProxy {
    async fn start(upstream: SocketAddr, cut_at: usize) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (cut_tx, cuts) = watch::channel(0usize);
        let cut_tx = Arc::new(cut_tx);
        let count = Arc::new(Mutex::new(AckCount {
            seen: 0,
            cut_at,
            cut_done: false,
        }));
        let shared = count.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let (count, cut_tx) = (count.clone(), cut_tx.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    if relay(client, server, &count).await {
                        cut_tx.send_modify(|n| *n += 1);
                    }
                    // Both sockets are dropped here, closing them.
                });
            }
        });
        CuttingProxy {
            addr,
            count: shared,
            cuts,
            task,
        }
    }

    /// Acks sent towards the server so far, the cut one included.
    fn acks_seen(&self) -> usize {
        self.count.lock().unwrap().seen
    }

    fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }
}

impl Drop for CuttingProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Forwards both ways until either side closes or the cut; true for the cut.
async fn relay(mut client: TcpStream, mut server: TcpStream, count: &Mutex<AckCount>) -> bool {
    let (mut client_read, mut client_write) = client.split();
    let (mut server_read, mut server_write) = server.split();
    tokio::select! {
        cut = to_server(&mut client_read, &mut server_write, count) => cut,
        _ = tokio::io::copy(&mut server_read, &mut client_write) => false,
    }
}

/// Client to server: forwards everything, counting acks; at the `cut_at`-th
/// forwards only the bytes before it and returns true.
async fn to_server(
    from: &mut tokio::net::tcp::ReadHalf<'_>,
    to: &mut tokio::net::tcp::WriteHalf<'_>,
    count: &Mutex<AckCount>,
) -> bool {
    let mut buf = vec![0u8; 16 * 1024];
    // The last bytes of the previous read: an ack may straddle two reads.
    let mut tail: Vec<u8> = Vec::new();
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => n,
        };
        let chunk = &buf[..n];
        let mut joined = tail.clone();
        joined.extend_from_slice(chunk);
        let cut_before = {
            let mut count = count.lock().unwrap();
            let mut cut_before = None;
            // The tail is shorter than an ack, so every match ends in this chunk.
            for start in (0..joined.len().saturating_sub(ACK.len() - 1)).filter(|&i| joined[i..].starts_with(ACK)) {
                count.seen += 1;
                if !count.cut_done && count.seen == count.cut_at {
                    count.cut_done = true;
                    cut_before = Some(start.saturating_sub(tail.len()));
                    break;
                }
            }
            cut_before
        };
        if let Some(at) = cut_before {
            let _ = to.write_all(&chunk[..at]).await;
            return true;
        }
        if to.write_all(chunk).await.is_err() {
            return false;
        }
        tail = joined[joined.len().saturating_sub(ACK.len() - 1)..].to_vec();
    }
}

/// The consumer's state as JetStream itself reports it, asked over `direct`.
struct ServerView {
    ack_floor: u64,
    ack_pending: u64,
    pending: u64,
    delivered: u64,
    redelivered: u64,
}

async fn server_view(direct: &async_nats::Client, stream: &str, consumer: &str) -> ServerView {
    let reply = direct
        .request(format!("$JS.API.CONSUMER.INFO.{stream}.{consumer}"), "".into())
        .await
        .unwrap();
    let info: Value = serde_json::from_slice(&reply.payload).unwrap();
    let number = |pointer: &str| {
        info.pointer(pointer)
            .and_then(Value::as_u64)
            .unwrap_or_else(|| panic!("consumer info has no {pointer}: {info}"))
    };
    ServerView {
        ack_floor: number("/ack_floor/stream_seq"),
        ack_pending: number("/num_ack_pending"),
        pending: number("/num_pending"),
        delivered: number("/delivered/stream_seq"),
        redelivered: number("/num_redelivered"),
    }
}

/// How a batched settle across the cut answered.
#[derive(Debug, PartialEq, Eq)]
enum Answer {
    /// Every item Ok.
    Settled,
    /// The call failed as a whole; a repeated settle applied every ack.
    FailedThenRepeated,
}

/// Publishes `n` messages, fetches them all through the proxy, acks them in
/// one batched settle that the proxy cuts at its `cut_at`-th ack, and checks
/// on the server that every ack reported applied is applied.
async fn settle_across_a_cut(n: usize, cut_at: usize) -> Answer {
    assert!(0 < cut_at && cut_at < n, "the cut falls inside the batch");
    let server = NatsServer::start(NatsSync::Always, None).unwrap();
    let upstream: SocketAddr = server.url().trim_start_matches("nats://").parse().unwrap();
    let proxy = CuttingProxy::start(upstream, cut_at).await;

    // Setup goes through a direct connection: only the settle crosses the proxy.
    let direct_bus = Bus::nats(server.url()).await.unwrap();
    direct_bus
        .create_stream(StreamConfig::new("settle").unwrap())
        .await
        .unwrap();
    let subject = Subject::new("settle.job").unwrap();
    let messages: Vec<OutgoingMessage> = (0..n)
        .map(|i| OutgoingMessage::new(subject.clone(), format!("job {i}")))
        .collect();
    // JetStream commits at most 1,000 messages in one atomic batch.
    for chunk in messages.chunks(1000) {
        direct_bus.publish_batch(chunk.to_vec()).await.unwrap();
    }
    direct_bus
        .consumer("settle", "audit")
        .ack_wait(ACK_WAIT)
        .max_ack_pending(u32::try_from(n).unwrap())
        .create()
        .await
        .unwrap();
    let direct = async_nats::connect(server.url()).await.unwrap();

    let options = NatsOptions::new(proxy.url())
        .connection_timeout(Duration::from_secs(2))
        .request_timeout(REQUEST_TIMEOUT);
    let backend = NatsBackend::connect(options).await.unwrap();
    let connects = || backend.client().statistics().connects.load(Ordering::Relaxed);
    let bus = Bus::from_backend(Arc::new(backend.clone()));
    let consumer = bus.bind_consumer("settle", "audit").await.unwrap();

    let mut received: Vec<Received> = Vec::with_capacity(n);
    tokio::time::timeout(SAFETY, async {
        while received.len() < n {
            received.extend(
                consumer
                    .fetch(n - received.len(), Duration::from_secs(5))
                    .await
                    .unwrap(),
            );
        }
    })
    .await
    .expect("every message is fetched");
    let mut seqs: Vec<u64> = received.iter().map(|r| r.message.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs, (1..=n as u64).collect::<Vec<_>>(), "each message once");
    assert_eq!(*proxy.cuts.borrow(), 0, "no ack crossed the proxy before the batch");
    assert_eq!(connects(), 1);

    let answer = consumer.settle_all(received.iter().map(|r| (r, Settle::Ack))).await;

    let mut cuts = proxy.cuts.clone();
    tokio::time::timeout(SAFETY, cuts.wait_for(|&c| c > 0))
        .await
        .expect("the proxy saw the ack to cut at")
        .unwrap();
    assert_eq!(*proxy.cuts.borrow(), 1, "the connection was cut once");
    let view = server_view(&direct, "settle", "audit").await;
    eprintln!(
        "{n} acks cut at {cut_at}: answer {}, {} connects, {} acks through the proxy; server: ack floor {}, {} ack pending, {} redelivered",
        match &answer {
            Ok(outcomes) => format!("Ok ({} ok)", outcomes.iter().filter(|o| o.is_ok()).count()),
            Err(err) => format!("Err({:?}: {err})", err.kind()),
        },
        connects(),
        proxy.acks_seen(),
        view.ack_floor,
        view.ack_pending,
        view.redelivered,
    );
    assert_eq!(view.delivered, n as u64);
    assert_eq!(view.pending, 0, "every message was delivered");
    assert_eq!(view.redelivered, 0, "nothing was redelivered during the test");

    let answered = match answer {
        Ok(outcomes) => {
            assert_eq!(outcomes.len(), n);
            let failed: Vec<(u64, String)> = received
                .iter()
                .zip(&outcomes)
                .filter_map(|(r, o)| o.as_ref().err().map(|e| (r.message.seq, e.to_string())))
                .collect();
            // Every delivery is leased to this member: none can fail alone.
            assert!(failed.is_empty(), "settles failed alone: {failed:?}");
            // The confirming request crossed the proxy after the cut, and
            // the whole batch went again on the new connection.
            assert!(connects() >= 2, "the client reconnected through the proxy");
            assert!(
                proxy.acks_seen() >= cut_at + n,
                "the batch was sent again after the reconnect"
            );
            assert_eq!(
                (view.ack_floor, view.ack_pending),
                (n as u64, 0),
                "every ack reported applied is applied on the server"
            );
            Answer::Settled
        }
        Err(err) => {
            // Nothing is claimed applied; acks are idempotent, so the call
            // can be repeated, and the repeat must apply them all.
            assert!(
                matches!(err.kind(), ErrorKind::Timeout | ErrorKind::Closed),
                "the call failed for the cut, not for something else: {err}"
            );
            consumer.ack_all(&received).await.unwrap();
            assert!(connects() >= 2, "the client reconnected through the proxy");
            let view = server_view(&direct, "settle", "audit").await;
            assert_eq!(
                (view.ack_floor, view.ack_pending),
                (n as u64, 0),
                "the repeated settle applies every ack"
            );
            Answer::FailedThenRepeated
        }
    };
    assert_eq!(*proxy.cuts.borrow(), 1, "later connections were not cut");
    answered
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_reported_settled_across_a_connection_cut_mid_batch_are_applied() {
    let answer = settle_across_a_cut(500, 200).await;
    eprintln!("500 acks cut at the 200th: {answer:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_reported_settled_across_a_connection_cut_early_in_a_large_batch_are_applied() {
    let answer = settle_across_a_cut(5000, 50).await;
    eprintln!("5,000 acks cut at the 50th: {answer:?}");
}
