//! Publishing through the server: the payload limit and the count of what
//! was stored, one path for the WebSocket protocol and the HTTP API alike.

use std::sync::Arc;

use herald_core::{Backend, Error, OutgoingMessage, PublishAck, Result};

use crate::Limits;
use crate::metrics::Metrics;

/// Checks the limit, publishes, and counts the message if it was stored.
pub(crate) async fn publish(
    backend: &Arc<dyn Backend>,
    limits: &Limits,
    metrics: &Metrics,
    message: OutgoingMessage,
) -> Result<PublishAck> {
    limits.check_payload(&message)?;
    let bytes = message.payload.len() as u64;
    let ack = backend.publish(message).await?;
    if !ack.duplicate {
        metrics.published(1, bytes);
    }
    Ok(ack)
}

/// Checks every message's limit, publishes them as one batch, and counts
/// those stored (duplicates are acknowledged, not stored).
pub(crate) async fn publish_batch(
    backend: &Arc<dyn Backend>,
    limits: &Limits,
    metrics: &Metrics,
    messages: Vec<OutgoingMessage>,
) -> Result<Vec<PublishAck>> {
    for message in &messages {
        limits.check_payload(message)?;
    }
    let sizes: Vec<u64> = messages.iter().map(|m| m.payload.len() as u64).collect();
    let acks = backend.publish_batch(messages).await?;
    let stored = acks.iter().zip(&sizes).filter(|(ack, _)| !ack.duplicate);
    let (count, bytes) = stored.fold((0, 0), |(n, b), (_, size)| (n + 1, b + size));
    metrics.published(count, bytes);
    Ok(acks)
}

impl Limits {
    /// Refuses a payload over [`max_payload`](Limits::max_payload), before
    /// anything is stored.
    ///
    /// # Errors
    ///
    /// `PayloadTooLarge` with the payload's size and the limit as detail.
    pub(crate) fn check_payload(&self, message: &OutgoingMessage) -> Result<()> {
        let (size, limit) = (message.payload.len(), self.max_payload);
        if size > limit {
            return Err(Error::payload_too_large(size as u64, limit as u64, "the server's"));
        }
        Ok(())
    }

    /// The largest HTTP request body read: room for a maximal payload as
    /// base64 or escaped JSON text (up to six bytes per byte) with its fields,
    /// the same room a WebSocket frame has. Anything bigger is refused before
    /// it is read whole.
    pub(crate) fn max_body(&self) -> usize {
        self.max_payload.saturating_mul(8).saturating_add(1 << 20)
    }
}
