//! The two systems behind one small interface, so every workload is written once.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::pull, stream as js_stream};
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use herald::{Bus, Durability, OutgoingMessage, StreamConfig, Subject};
use herald_testkit::nats_server::{NatsServer, NatsSync, peak_rss_of};

use crate::BenchResult;
use crate::plan::Target;

/// How long a member waits for a first message before it reports none.
const TAKE_WAIT: Duration = Duration::from_millis(100);

/// A message a member took, acked before it is handed over (Herald: the
/// batch with one `ack_all`; NATS: each with its own `ack`).
pub(crate) struct Taken {
    /// Its sequence in the stream.
    pub(crate) seq: u64,
    /// Its payload.
    pub(crate) payload: Bytes,
    /// When it arrived, before the ack.
    pub(crate) arrived: Instant,
}

/// A system under test, with a fresh store.
#[async_trait::async_trait]
pub(crate) trait Side: Send + Sync {
    /// Creates a stream named `name` capturing `name.>`.
    async fn create_stream(&self, name: &str) -> BenchResult<()>;
    /// Publishes one message and waits for its acknowledgement.
    async fn publish(&self, subject: &str, payload: Bytes) -> BenchResult<()>;
    /// Publishes `payloads` as one batch (Herald) or pipelined (NATS: all
    /// sent, then every ack awaited).
    async fn publish_many(&self, subject: &str, payloads: Vec<Bytes>) -> BenchResult<()>;
    /// Messages stored in a stream.
    async fn stored(&self, stream: &str) -> BenchResult<u64>;
    /// Creates a durable consumer with explicit acks, from the first message.
    async fn create_consumer(&self, stream: &str, name: &str) -> BenchResult<()>;
    /// A member of that consumer; members share its messages.
    async fn member(&self, stream: &str, name: &str, member: usize) -> BenchResult<Box<dyn Member>>;
    /// That consumer read the simple way, as a first program would: the
    /// next message, its ack awaited, then the next (Herald: `next` and
    /// `ack`; NATS: `messages()` with its defaults and `ack`).
    async fn plain(&self, stream: &str, name: &str) -> BenchResult<Box<dyn Reader>>;
    /// A live subscription to `stream.>`, from the next message on (Herald:
    /// `Bus::subscribe`; NATS: an ordered consumer delivering new messages).
    /// It is following once this returns.
    async fn subscribe(&self, stream: &str) -> BenchResult<Box<dyn Reader>>;
    /// Peak resident memory of the system's process, in bytes.
    fn peak_rss(&self) -> Option<u64>;
}

/// One worker on a durable consumer.
#[async_trait::async_trait]
pub(crate) trait Member: Send {
    /// Up to `max` messages, each acked; empty if none came within a short wait.
    async fn take(&mut self, max: usize) -> BenchResult<Vec<Taken>>;
}

/// Messages one at a time: from a plain consumer loop (acked before it is
/// handed over) or from a live subscription (nothing to ack).
#[async_trait::async_trait]
pub(crate) trait Reader: Send {
    /// The next message, waiting as long as it takes.
    async fn next(&mut self) -> BenchResult<Taken>;
}

/// Opens the system of a target on a fresh store under `dir`.
pub(crate) async fn open(target: Target, dir: &Path) -> BenchResult<Arc<dyn Side>> {
    Ok(match target {
        Target::HeraldDurable => Arc::new(HeraldSide::open(dir, Durability::Fsync).await?),
        Target::HeraldRelaxed => Arc::new(HeraldSide::open(dir, Durability::Relaxed).await?),
        Target::NatsAlways => Arc::new(NatsSide::start(NatsSync::Always, dir).await?),
        Target::NatsDefault => Arc::new(NatsSide::start(NatsSync::Default, dir).await?),
        Target::HeraldNats => Arc::new(HeraldSide::on_nats(dir).await?),
    })
}

/// Embedded Herald on a data directory.
struct HeraldSide {
    bus: Bus,
    durability: Durability,
    /// The nats-server under Herald on NATS.
    server: Option<NatsServer>,
    _dir: tempfile::TempDir,
}

impl HeraldSide {
    async fn open(parent: &Path, durability: Durability) -> BenchResult<HeraldSide> {
        let dir = tempfile::Builder::new().prefix("herald-").tempdir_in(parent)?;
        let bus = Bus::open(dir.path()).await?;
        Ok(HeraldSide {
            bus,
            durability,
            server: None,
            _dir: dir,
        })
    }

    /// Herald's facade on herald-nats, on a fresh nats-server that fsyncs
    /// every write (the setting that keeps Herald's durability promise).
    async fn on_nats(parent: &Path) -> BenchResult<HeraldSide> {
        let dir = tempfile::Builder::new().prefix("herald-nats-").tempdir_in(parent)?;
        let server = NatsServer::start(NatsSync::Always, Some(dir.path()))?;
        let bus = Bus::nats(server.url()).await?;
        Ok(HeraldSide {
            bus,
            durability: Durability::Fsync,
            server: Some(server),
            _dir: dir,
        })
    }
}

#[async_trait::async_trait]
impl Side for HeraldSide {
    async fn create_stream(&self, name: &str) -> BenchResult<()> {
        self.bus
            .create_stream(StreamConfig::new(name)?.durability(self.durability))
            .await?;
        Ok(())
    }

    async fn publish(&self, subject: &str, payload: Bytes) -> BenchResult<()> {
        self.bus.publish(subject, payload).await?;
        Ok(())
    }

    async fn publish_many(&self, subject: &str, payloads: Vec<Bytes>) -> BenchResult<()> {
        let subject = Subject::new(subject)?;
        let batch = payloads
            .into_iter()
            .map(|payload| OutgoingMessage::new(subject.clone(), payload))
            .collect();
        self.bus.publish_batch(batch).await?;
        Ok(())
    }

    async fn stored(&self, stream: &str) -> BenchResult<u64> {
        Ok(self.bus.stream_info(stream).await?.state.messages)
    }

    async fn create_consumer(&self, stream: &str, name: &str) -> BenchResult<()> {
        self.bus.consumer(stream, name).max_ack_pending(10_000).create().await?;
        Ok(())
    }

    async fn member(&self, stream: &str, name: &str, member: usize) -> BenchResult<Box<dyn Member>> {
        let consumer = self
            .bus
            .bind_consumer(stream, name)
            .await?
            .member(format!("m{member}"))?;
        Ok(Box::new(HeraldMember { consumer }))
    }

    async fn plain(&self, stream: &str, name: &str) -> BenchResult<Box<dyn Reader>> {
        let consumer = self.bus.bind_consumer(stream, name).await?;
        Ok(Box::new(HeraldPlain { consumer }))
    }

    async fn subscribe(&self, stream: &str) -> BenchResult<Box<dyn Reader>> {
        let subscription = self.bus.subscribe(format!("{stream}.>")).await?;
        Ok(Box::new(HeraldLive { subscription }))
    }

    fn peak_rss(&self) -> Option<u64> {
        match &self.server {
            // On NATS the messages live in the server.
            Some(server) => server.peak_rss_bytes(),
            // The benchmark process hosts the engine, so its own peak is Herald's
            // (the load generator's share included, which favours NATS).
            None => peak_rss_of("/proc/self/status"),
        }
    }
}

struct HeraldMember {
    consumer: herald::Consumer,
}

#[async_trait::async_trait]
impl Member for HeraldMember {
    async fn take(&mut self, max: usize) -> BenchResult<Vec<Taken>> {
        let batch = self.consumer.fetch(max, TAKE_WAIT).await?;
        let arrived = Instant::now();
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        // One confirmation for the whole batch, as a Herald user taking a
        // batch would settle it.
        self.consumer.ack_all(&batch).await?;
        Ok(batch
            .into_iter()
            .map(|received| {
                let message = received.into_delivery().message;
                Taken {
                    seq: message.seq,
                    payload: message.payload,
                    arrived,
                }
            })
            .collect())
    }
}

struct HeraldPlain {
    consumer: herald::Consumer,
}

#[async_trait::async_trait]
impl Reader for HeraldPlain {
    async fn next(&mut self) -> BenchResult<Taken> {
        let received = self.consumer.next().await?;
        let arrived = Instant::now();
        received.ack().await?;
        let message = received.into_delivery().message;
        Ok(Taken {
            seq: message.seq,
            payload: message.payload,
            arrived,
        })
    }
}

struct HeraldLive {
    subscription: herald::Subscription,
}

#[async_trait::async_trait]
impl Reader for HeraldLive {
    async fn next(&mut self) -> BenchResult<Taken> {
        let message = self.subscription.next().await?;
        Ok(Taken {
            seq: message.seq,
            payload: message.payload,
            arrived: Instant::now(),
        })
    }
}

/// A fresh nats-server driven by async-nats.
struct NatsSide {
    server: NatsServer,
    js: jetstream::Context,
}

impl NatsSide {
    async fn start(sync: NatsSync, parent: &Path) -> BenchResult<NatsSide> {
        let server = NatsServer::start(sync, Some(parent))?;
        let client = async_nats::connect(server.url()).await?;
        Ok(NatsSide {
            server,
            js: context(client),
        })
    }
}

/// A JetStream context that waits (rather than fails) when many acks are
/// outstanding, and allows slow fsyncs.
fn context(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(Duration::from_secs(30))
        .max_ack_inflight(100_000)
        .backpressure_on_inflight(true)
        .build(client)
}

#[async_trait::async_trait]
impl Side for NatsSide {
    async fn create_stream(&self, name: &str) -> BenchResult<()> {
        self.js
            .create_stream(js_stream::Config {
                name: name.to_string(),
                subjects: vec![format!("{name}.>")],
                storage: js_stream::StorageType::File,
                ..Default::default()
            })
            .await?;
        Ok(())
    }

    async fn publish(&self, subject: &str, payload: Bytes) -> BenchResult<()> {
        self.js.publish(subject.to_string(), payload).await?.await?;
        Ok(())
    }

    async fn publish_many(&self, subject: &str, payloads: Vec<Bytes>) -> BenchResult<()> {
        let mut acks = Vec::with_capacity(payloads.len());
        for payload in payloads {
            acks.push(self.js.publish(subject.to_string(), payload).await?);
        }
        for ack in acks {
            ack.await?;
        }
        Ok(())
    }

    async fn stored(&self, stream: &str) -> BenchResult<u64> {
        let mut stream = self.js.get_stream(stream).await?;
        Ok(stream.info().await?.state.messages)
    }

    async fn create_consumer(&self, stream: &str, name: &str) -> BenchResult<()> {
        self.js
            .create_consumer_on_stream(
                pull::Config {
                    durable_name: Some(name.to_string()),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    max_ack_pending: 10_000,
                    ..Default::default()
                },
                stream,
            )
            .await?;
        Ok(())
    }

    async fn member(&self, stream: &str, name: &str, member: usize) -> BenchResult<Box<dyn Member>> {
        // The first member shares the benchmark's connection; the others have
        // their own, as separate worker processes would.
        let js = if member == 0 {
            self.js.clone()
        } else {
            context(async_nats::connect(self.server.url()).await?)
        };
        let consumer: jetstream::consumer::PullConsumer = js.get_consumer_from_stream(name, stream).await?;
        let messages = consumer.stream().max_messages_per_batch(1000).messages().await?;
        Ok(Box::new(NatsMember { messages }))
    }

    async fn plain(&self, stream: &str, name: &str) -> BenchResult<Box<dyn Reader>> {
        let consumer: jetstream::consumer::PullConsumer = self.js.get_consumer_from_stream(name, stream).await?;
        let messages = consumer.messages().await?;
        Ok(Box::new(NatsPlain { messages }))
    }

    async fn subscribe(&self, stream: &str) -> BenchResult<Box<dyn Reader>> {
        // What a JetStream user tails a stream with: an ephemeral ordered
        // consumer (no acks, recreated on a gap), from new messages on.
        let consumer = self
            .js
            .create_consumer_on_stream(
                pull::OrderedConfig {
                    deliver_policy: jetstream::consumer::DeliverPolicy::New,
                    ..Default::default()
                },
                stream,
            )
            .await?;
        let messages = consumer.messages().await?;
        Ok(Box::new(NatsLive { messages }))
    }

    fn peak_rss(&self) -> Option<u64> {
        self.server.peak_rss_bytes()
    }
}

struct NatsMember {
    messages: pull::Stream,
}

impl NatsMember {
    async fn settle(message: jetstream::Message, arrived: Instant) -> BenchResult<Taken> {
        let seq = message.info()?.stream_sequence;
        message.ack().await?;
        Ok(Taken {
            seq,
            payload: message.message.payload,
            arrived,
        })
    }
}

#[async_trait::async_trait]
impl Member for NatsMember {
    async fn take(&mut self, max: usize) -> BenchResult<Vec<Taken>> {
        let first = match tokio::time::timeout(TAKE_WAIT, self.messages.next()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(None) => return Err("the NATS message stream ended".into()),
            Ok(Some(message)) => message?,
        };
        let arrived = Instant::now();
        let mut messages = vec![first];
        while messages.len() < max {
            match self.messages.next().now_or_never() {
                Some(Some(message)) => messages.push(message?),
                _ => break,
            }
        }
        let mut taken = Vec::with_capacity(messages.len());
        for message in messages {
            taken.push(Self::settle(message, arrived).await?);
        }
        Ok(taken)
    }
}

struct NatsPlain {
    messages: pull::Stream,
}

#[async_trait::async_trait]
impl Reader for NatsPlain {
    async fn next(&mut self) -> BenchResult<Taken> {
        let message = self.messages.next().await.ok_or("the NATS message stream ended")??;
        NatsMember::settle(message, Instant::now()).await
    }
}

struct NatsLive {
    messages: pull::Ordered,
}

#[async_trait::async_trait]
impl Reader for NatsLive {
    async fn next(&mut self) -> BenchResult<Taken> {
        let message = self.messages.next().await.ok_or("the NATS ordered consumer ended")??;
        let arrived = Instant::now();
        let seq = message.info()?.stream_sequence;
        Ok(Taken {
            seq,
            payload: message.message.payload,
            arrived,
        })
    }
}
