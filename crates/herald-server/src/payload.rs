//! The server's payload limit: one check for the WebSocket protocol and the
//! HTTP API alike.

use herald_core::{Error, ErrorDetail, ErrorKind, OutgoingMessage, Result};

use crate::Limits;

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
            return Err(Error::new(
                ErrorKind::PayloadTooLarge,
                format!("payload of {size} bytes is over the server's limit of {limit}"),
            )
            .with_detail(ErrorDetail::TooLarge {
                size: size as u64,
                limit: limit as u64,
            }));
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
