//! A batch of settles as both the WebSocket `settle_batch` and the HTTP
//! `…/settle_batch` answer it: one outcome per item, in order, `None` for
//! settled and the error that refused that item alone otherwise
//! (docs/protocol.md, docs/http.md).

use herald_core::wire::SettleOutcome;
use herald_core::{Backend, ConsumerName, Result, SettleItem, StreamName};

/// Settles `items` for `member`, checking the whole batch first so that an
/// invalid one changes nothing, whatever the backend.
///
/// # Errors
///
/// The whole call's: `InvalidRequest` (over [`herald_core::MAX_SETTLE_BATCH`]
/// items or an invalid settle; nothing applied), `StreamNotFound`,
/// `ConsumerNotFound`, `Closed`, `Timeout`; `Internal` when the backend
/// answered for another number of items than it was given (none is then
/// reported settled).
pub(crate) async fn batch(
    backend: &dyn Backend,
    stream: &StreamName,
    consumer: &ConsumerName,
    member: &ConsumerName,
    items: Vec<SettleItem>,
) -> Result<Vec<SettleOutcome>> {
    SettleItem::validate_batch(&items)?;
    let asked = items.len();
    let results = backend.settle_batch(stream, consumer, member, items).await?;
    SettleItem::check_answered(asked, results.len(), "the backend")?;
    Ok(results
        .iter()
        .map(|result| result.as_ref().err().map(crate::wire_error))
        .collect())
}
