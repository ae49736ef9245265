//! Each Backend method as one protocol operation.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use herald_core::wire::{
    Body, MAX_FETCH_WAIT, Op, PAGE_BYTES, SettleOutcome, WireDelivery, WireMessage, WireOutgoing, WireReply, page_size,
};
use herald_core::{
    ConsumerBackend, ConsumerConfig, ConsumerInfo, ConsumerName, Delivery, Error, ErrorKind, Headers, LiveSubscription,
    MAX_WAIT, Message, OutgoingMessage, Pattern, PublishAck, Purge, ReadFrom, ReadRange, Reply, ReplySink, Request,
    RequestBackend, Responder, Result, Settle, SettleItem, StreamBackend, StreamConfig, StreamInfo, StreamName,
    Subject, SubscriptionBackend, Timestamp,
};
use tokio::sync::mpsc;

use crate::{Behind, Incoming, RemoteBackend};

fn messages(wire: Vec<WireMessage>) -> Result<Vec<Message>> {
    wire.into_iter().map(WireMessage::into_message).collect()
}

/// A message on the wire with an id, so a publish sent again after a
/// reconnect is a duplicate inside the stream's window, not a second message.
fn with_id(message: &OutgoingMessage) -> WireOutgoing {
    let mut wire = WireOutgoing::from(message);
    if wire.id.is_none() {
        wire.id = Some(uuid::Uuid::now_v7().to_string());
    }
    wire
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[async_trait]
impl StreamBackend for RemoteBackend {
    async fn create_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.call(Op::CreateStream { config }).await
    }

    async fn update_stream(&self, config: StreamConfig) -> Result<StreamInfo> {
        self.call(Op::UpdateStream { config }).await
    }

    async fn stream_info(&self, stream: &StreamName) -> Result<StreamInfo> {
        self.call(Op::StreamInfo { stream: stream.clone() }).await
    }

    async fn list_streams(&self) -> Result<Vec<StreamInfo>> {
        self.call(Op::ListStreams {}).await
    }

    async fn delete_stream(&self, stream: &StreamName) -> Result<()> {
        self.call(Op::DeleteStream { stream: stream.clone() }).await
    }

    async fn purge_stream(&self, stream: &StreamName, purge: Purge) -> Result<u64> {
        self.call(Op::PurgeStream {
            stream: stream.clone(),
            purge,
        })
        .await
    }

    async fn publish(&self, message: OutgoingMessage) -> Result<PublishAck> {
        self.call(Op::Publish {
            message: with_id(&message),
        })
        .await
    }

    async fn publish_batch(&self, messages: Vec<OutgoingMessage>) -> Result<Vec<PublishAck>> {
        self.call(Op::PublishBatch {
            messages: messages.iter().map(with_id).collect(),
        })
        .await
    }

    async fn get_message(&self, stream: &StreamName, seq: u64) -> Result<Message> {
        let wire: WireMessage = self
            .call(Op::GetMessage {
                stream: stream.clone(),
                seq,
            })
            .await?;
        wire.into_message()
    }

    async fn last_message(&self, stream: &StreamName, subject: &Subject) -> Result<Message> {
        let wire: WireMessage = self
            .call(Op::LastMessage {
                stream: stream.clone(),
                subject: subject.clone(),
            })
            .await?;
        wire.into_message()
    }

    async fn read_range(&self, stream: &StreamName, range: ReadRange) -> Result<Vec<Message>> {
        self.read_pages(range.limit, |after, limit| Op::ReadRange {
            stream: stream.clone(),
            range: ReadRange {
                from: after.map_or(range.from, |seq| ReadFrom::Seq(seq + 1)),
                filter: range.filter.clone(),
                limit,
            },
        })
        .await
    }

    async fn read_subject(
        &self,
        stream: &StreamName,
        subject: &Subject,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<Message>> {
        self.read_pages(limit, |after, limit| Op::ReadSubject {
            stream: stream.clone(),
            subject: subject.clone(),
            from_seq: after.map_or(from_seq, |seq| seq + 1),
            limit,
        })
        .await
    }
}

impl RemoteBackend {
    /// A read of up to `limit` messages, page by page: `page` makes the
    /// operation for the page after seq `after` (none for the first), of at
    /// most the messages still wanted. The server cuts a page short once it
    /// holds [`PAGE_BYTES`]; the read then goes on after its last seq.
    async fn read_pages(&self, limit: usize, page: impl Fn(Option<u64>, usize) -> Op) -> Result<Vec<Message>> {
        let mut all: Vec<Message> = Vec::new();
        loop {
            let wanted = limit - all.len();
            let got = messages(self.call(page(all.last().map(|m| m.seq), wanted)).await?)?;
            let cut = got.len() < wanted && got.iter().map(page_size).sum::<usize>() >= PAGE_BYTES;
            let empty = got.is_empty();
            all.extend(got);
            if !cut || empty {
                return Ok(all);
            }
        }
    }
}

#[async_trait]
impl ConsumerBackend for RemoteBackend {
    async fn create_consumer(&self, stream: &StreamName, config: ConsumerConfig) -> Result<ConsumerInfo> {
        self.call(Op::CreateConsumer {
            stream: stream.clone(),
            config,
        })
        .await
    }

    async fn update_consumer(&self, stream: &StreamName, config: ConsumerConfig) -> Result<ConsumerInfo> {
        self.call(Op::UpdateConsumer {
            stream: stream.clone(),
            config,
        })
        .await
    }

    async fn delete_consumer(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<()> {
        self.call(Op::DeleteConsumer {
            stream: stream.clone(),
            consumer: consumer.clone(),
        })
        .await
    }

    async fn consumer_info(&self, stream: &StreamName, consumer: &ConsumerName) -> Result<ConsumerInfo> {
        self.call(Op::ConsumerInfo {
            stream: stream.clone(),
            consumer: consumer.clone(),
        })
        .await
    }

    async fn list_consumers(&self, stream: &StreamName) -> Result<Vec<ConsumerInfo>> {
        self.call(Op::ListConsumers { stream: stream.clone() }).await
    }

    async fn fetch(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        max: usize,
        wait: Duration,
    ) -> Result<Vec<Delivery>> {
        // The server waits at most MAX_FETCH_WAIT per fetch: a longer wait
        // is several fetches, each taking nothing until the last finds work.
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            let slice = deadline.saturating_duration_since(tokio::time::Instant::now());
            let wire: Vec<WireDelivery> = self
                .call(Op::Fetch {
                    stream: stream.clone(),
                    consumer: consumer.clone(),
                    member: member.clone(),
                    max,
                    wait_ms: millis(slice.min(MAX_FETCH_WAIT)),
                })
                .await?;
            if !wire.is_empty() || slice <= MAX_FETCH_WAIT {
                return wire.into_iter().map(WireDelivery::into_delivery).collect();
            }
        }
    }

    async fn settle(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        seq: u64,
        deliveries: u32,
        settle: Settle,
    ) -> Result<()> {
        self.call(Op::Settle {
            stream: stream.clone(),
            consumer: consumer.clone(),
            member: member.clone(),
            seq,
            deliveries,
            settle,
        })
        .await
    }

    async fn settle_batch(
        &self,
        stream: &StreamName,
        consumer: &ConsumerName,
        member: &ConsumerName,
        items: Vec<SettleItem>,
    ) -> Result<Vec<Result<()>>> {
        // Refused here as the server would, without a round trip.
        SettleItem::validate_batch(&items)?;
        let asked = items.len();
        let outcomes: Vec<SettleOutcome> = self
            .call(Op::SettleBatch {
                stream: stream.clone(),
                consumer: consumer.clone(),
                member: member.clone(),
                items,
            })
            .await?;
        // An answer that does not match the batch item for item confirms none of it.
        SettleItem::check_answered(asked, outcomes.len(), "the server")?;
        Ok(outcomes
            .into_iter()
            .map(|outcome| match outcome {
                None => Ok(()),
                Some(error) => Err(Error::from(error)),
            })
            .collect())
    }

    async fn reset_consumer(&self, stream: &StreamName, consumer: &ConsumerName, to: ReadFrom) -> Result<ConsumerInfo> {
        self.call(Op::ResetConsumer {
            stream: stream.clone(),
            consumer: consumer.clone(),
            to,
        })
        .await
    }
}

/// A live subscription fed by the server's `message` frames.
struct RemoteSubscription {
    backend: RemoteBackend,
    sub: u64,
    messages: mpsc::Receiver<Result<Message>>,
    /// Payload bytes waiting in `messages`.
    queued: Arc<AtomicUsize>,
}

impl RemoteSubscription {
    fn taken(&self, item: &Result<Message>) {
        if let Ok(message) = item {
            self.queued.fetch_sub(message.payload.len(), Ordering::Relaxed);
        }
    }

    /// Subscribes again after what this reader got, under a new number (so
    /// nothing still on its way for the old one can be mistaken for new).
    async fn take_up(&mut self, behind: Behind) -> Result<()> {
        let sub = self.backend.next_number();
        let from = Some(behind.from.unwrap_or(ReadFrom::Time(behind.started)));
        let (messages, queued) = self.backend.register_subscription(
            sub,
            behind.pattern.clone(),
            behind.from,
            behind.started,
            behind.last.clone(),
        );
        self.sub = sub;
        self.messages = messages;
        self.queued = queued;
        self.backend
            .call::<()>(Op::Subscribe {
                sub,
                pattern: behind.pattern,
                from,
                resume: behind.last,
            })
            .await
    }
}

#[async_trait]
impl LiveSubscription for RemoteSubscription {
    async fn next(&mut self) -> Result<Message> {
        loop {
            match self.messages.try_recv() {
                Ok(item) => {
                    self.taken(&item);
                    return item;
                }
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    return Err(Error::new(ErrorKind::Closed, "the subscription ended"));
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
            // Fell behind and read all it held: take it up again.
            if let Some(behind) = self.backend.take_behind(self.sub) {
                self.take_up(behind).await?;
                continue;
            }
            // A subscription falls behind only with messages queued, so
            // this wait ends.
            return match self.messages.recv().await {
                Some(item) => {
                    self.taken(&item);
                    item
                }
                None => Err(Error::new(ErrorKind::Closed, "the subscription ended")),
            };
        }
    }
}

impl Drop for RemoteSubscription {
    fn drop(&mut self) {
        self.backend.forget_subscription(self.sub);
        self.backend.send(Op::Unsubscribe { sub: self.sub });
    }
}

#[async_trait]
impl SubscriptionBackend for RemoteBackend {
    async fn subscribe(&self, pattern: Pattern, from: Option<ReadFrom>) -> Result<Box<dyn LiveSubscription>> {
        self.subscribe_resuming(pattern, from, HashMap::new()).await
    }

    async fn subscribe_resuming(
        &self,
        pattern: Pattern,
        from: Option<ReadFrom>,
        resume: HashMap<StreamName, u64>,
    ) -> Result<Box<dyn LiveSubscription>> {
        let sub = self.next_number();
        // Registered first: the server may push messages before it answers.
        let (messages, queued) =
            self.register_subscription(sub, pattern.clone(), from, Timestamp::now(), resume.clone());
        let subscription = RemoteSubscription {
            backend: self.clone(),
            sub,
            messages,
            queued,
        };
        self.call::<()>(Op::Subscribe {
            sub,
            pattern,
            from,
            resume,
        })
        .await?;
        Ok(Box::new(subscription))
    }
}

/// A responder fed by the server's `request` frames.
struct RemoteResponder {
    backend: RemoteBackend,
    responder: u64,
    requests: mpsc::Receiver<Incoming>,
}

impl Drop for RemoteResponder {
    fn drop(&mut self) {
        self.backend.forget_responder(self.responder);
        self.backend.send(Op::Unserve {
            responder: self.responder,
        });
    }
}

/// Sends a responder's answer back through the server.
struct RemoteReply {
    backend: RemoteBackend,
    request: u64,
    answered: bool,
}

impl ReplySink for RemoteReply {
    fn send(mut self: Box<Self>, reply: Reply) -> Result<()> {
        self.answered = true;
        self.backend.send(Op::Respond {
            request: self.request,
            reply: Some(WireReply::from(&reply)),
        });
        Ok(())
    }
}

impl Drop for RemoteReply {
    fn drop(&mut self) {
        if !self.answered {
            self.backend.send(Op::Respond {
                request: self.request,
                reply: None,
            });
        }
    }
}

#[async_trait]
impl Responder for RemoteResponder {
    async fn next(&mut self) -> Result<Request> {
        let Some(incoming) = self.requests.recv().await else {
            return Err(Error::new(ErrorKind::Closed, "the responder ended"));
        };
        let reply = RemoteReply {
            backend: self.backend.clone(),
            request: incoming.request,
            answered: false,
        };
        Ok(Request::new(
            incoming.subject,
            incoming.headers,
            incoming.body.bytes()?,
            Box::new(reply),
        ))
    }
}

#[async_trait]
impl RequestBackend for RemoteBackend {
    async fn serve(&self, pattern: Pattern) -> Result<Box<dyn Responder>> {
        let responder = self.next_number();
        let requests = self.register_responder(responder, pattern.clone());
        let remote = RemoteResponder {
            backend: self.clone(),
            responder,
            requests,
        };
        self.call::<()>(Op::Serve { responder, pattern }).await?;
        Ok(Box::new(remote))
    }

    async fn request(&self, subject: Subject, headers: Headers, payload: Bytes, timeout: Duration) -> Result<Reply> {
        let (payload, payload_b64) = Body::of(&payload).into_fields();
        let reply: WireReply = self
            .call(Op::Request {
                subject,
                headers,
                payload,
                payload_b64,
                timeout_ms: millis(timeout),
            })
            .await?;
        reply.into_reply()
    }
}
