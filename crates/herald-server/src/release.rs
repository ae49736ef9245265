//! What a departed client held goes back at once (docs/semantics.md): the
//! deliveries a WebSocket session fetched and did not settle are nak'd when
//! the session ends, and an HTTP fetch whose answer never reached its client
//! gives its deliveries back, so other members get them without waiting out
//! `ack_wait`. A nak keeps the delivery count, as if the client had nak'd.

use std::collections::HashMap;
use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use herald_core::{Backend, ConsumerName, Delivery, ErrorKind, Settle, StreamName};

use crate::lock;

/// One lease: the consumer, the member holding it and the message's seq.
type Lease = (StreamName, ConsumerName, ConsumerName, u64);

/// The deliveries one session holds and has not settled, with the delivery
/// count that names each lease.
#[derive(Default)]
pub(crate) struct Held {
    leases: Mutex<HashMap<Lease, u32>>,
}

impl Held {
    /// Records deliveries the session fetched.
    pub(crate) fn fetched(&self, stream: &StreamName, consumer: &ConsumerName, deliveries: &[Delivery]) {
        let mut leases = lock(&self.leases);
        for d in deliveries {
            let lease = (stream.clone(), consumer.clone(), d.member.clone(), d.message.seq);
            leases.insert(lease, d.deliveries);
        }
    }

    /// Forgets a lease once a settle the backend took ended it (anything
    /// but `in_progress`). A refused settle forgets nothing: the lease may
    /// still be this session's (a settle naming the wrong delivery), and
    /// giving back one that moved on is refused harmlessly.
    pub(crate) fn settled(&self, lease: Lease, settle: &Settle, taken: bool) {
        if taken && !matches!(settle, Settle::InProgress) {
            lock(&self.leases).remove(&lease);
        }
    }

    /// Gives every lease still held back to its consumer.
    pub(crate) async fn release(&self, backend: &dyn Backend) {
        let leases: Vec<(Lease, u32)> = lock(&self.leases).drain().collect();
        if !leases.is_empty() {
            tracing::debug!(
                leases = leases.len(),
                "a session ended holding deliveries; giving them back"
            );
        }
        for ((stream, consumer, member, seq), deliveries) in leases {
            give_back(backend, &stream, &consumer, &member, seq, deliveries).await;
        }
    }
}

/// Naks one delivery for immediate redelivery. A lease that already moved
/// on (settled elsewhere, expired, its consumer deleted) needs nothing.
async fn give_back(
    backend: &dyn Backend,
    stream: &StreamName,
    consumer: &ConsumerName,
    member: &ConsumerName,
    seq: u64,
    deliveries: u32,
) {
    let nak = Settle::Nak { delay: Duration::ZERO };
    match backend.settle(stream, consumer, member, seq, deliveries, nak).await {
        Ok(()) => {}
        Err(err)
            if matches!(
                err.kind(),
                ErrorKind::LeaseLost | ErrorKind::ConsumerNotFound | ErrorKind::StreamNotFound
            ) => {}
        Err(err) => {
            tracing::warn!(%stream, %consumer, seq, error = %err, "giving back a departed client's delivery failed")
        }
    }
}

/// Deliveries leased for a client that has not received them yet: given back
/// when dropped, unless [`paid`](Owed::paid) once they are in the client's
/// hands (or its session's [`Held`]). A fetch dropped half-way, or an answer
/// that never left, so loses nothing to a lease nobody will settle.
pub(crate) struct Owed {
    backend: Arc<dyn Backend>,
    stream: StreamName,
    consumer: ConsumerName,
    deliveries: Vec<(ConsumerName, u64, u32)>,
}

impl Owed {
    pub(crate) fn new(backend: &Arc<dyn Backend>, stream: &StreamName, consumer: &ConsumerName) -> Owed {
        Owed {
            backend: backend.clone(),
            stream: stream.clone(),
            consumer: consumer.clone(),
            deliveries: Vec::new(),
        }
    }

    /// Owes `deliveries` too.
    pub(crate) fn add(&mut self, deliveries: &[Delivery]) {
        let leases = deliveries
            .iter()
            .map(|d| (d.member.clone(), d.message.seq, d.deliveries));
        self.deliveries.extend(leases);
    }

    /// The deliveries reached their holder: nothing to give back.
    pub(crate) fn paid(mut self) {
        self.deliveries.clear();
    }
}

impl Drop for Owed {
    fn drop(&mut self) {
        if self.deliveries.is_empty() {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        tracing::debug!(
            deliveries = self.deliveries.len(),
            "fetched deliveries did not reach their client; giving them back"
        );
        let (backend, stream, consumer) = (self.backend.clone(), self.stream.clone(), self.consumer.clone());
        let deliveries = std::mem::take(&mut self.deliveries);
        runtime.spawn(async move {
            for (member, seq, count) in deliveries {
                give_back(&*backend, &stream, &consumer, &member, seq, count).await;
            }
        });
    }
}

/// An HTTP fetch's answer as a response body: the deliveries in it are owed
/// until the body has been handed over whole; dropped before that (the
/// client went away), they go back to the consumer.
pub(crate) struct Handover {
    body: Option<Bytes>,
    owed: Option<Owed>,
}

impl Handover {
    pub(crate) fn new(body: Bytes, owed: Owed) -> Handover {
        Handover {
            body: Some(body),
            owed: Some(owed),
        }
    }
}

impl futures_util::Stream for Handover {
    type Item = Result<Bytes, Infallible>;

    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match self.body.take() {
            Some(body) => Poll::Ready(Some(Ok(body))),
            None => {
                // Asked for more after the whole answer: it was written out.
                if let Some(owed) = self.owed.take() {
                    owed.paid();
                }
                Poll::Ready(None)
            }
        }
    }
}
