//! Opening a database: create the tables, load every stream's metadata and
//! state, and rebuild the duplicate windows from the tail of each stream.

use std::collections::HashMap;
use std::sync::Arc;

use herald_core::{StreamName, Timestamp};
use redb::{Database, ReadableDatabase, ReadableTable};

use crate::consumers::{ConsumerRecord, ConsumerRuntime, ConsumerState, Registry};
use crate::dedup::DedupWindow;
use crate::encode::{self, StreamMeta};
use crate::error::{EngineError, StoreResult};
use crate::store::{StreamEntry, Tables};
use crate::tables::{CONSUMERS, COUNTERS, MESSAGES, NEXT_STREAM_ID, STREAM_STATE, STREAMS};
use crate::writer::Catalog;

/// What the writer starts from.
pub(crate) struct Loaded {
    pub(crate) streams: HashMap<u32, StreamEntry>,
    pub(crate) dedup: HashMap<u32, DedupWindow>,
    pub(crate) next_id: u32,
}

/// Creates every table that does not exist yet, in one durable commit.
pub(crate) fn create_tables(db: &Database) -> StoreResult<()> {
    let txn = db.begin_write()?;
    Tables::open(&txn)?;
    txn.commit()?;
    Ok(())
}

/// Loads every stored consumer of the streams in `catalog` (loaded just before
/// by [`load`]); rows of streams that no longer exist are skipped.
pub(crate) fn load_consumers(db: &Database, catalog: &Catalog, registry: &Registry) -> StoreResult<()> {
    let names: HashMap<u32, StreamName> = catalog
        .snapshot()
        .values()
        .map(|meta| (meta.id, meta.config.name.clone()))
        .collect();
    let txn = db.begin_read()?;
    let consumers = txn.open_table(CONSUMERS)?;
    for item in consumers.iter()? {
        let (key, value) = item?;
        let (stream_id, _) = key.value();
        let Some(stream) = names.get(&stream_id) else { continue };
        let record = ConsumerRecord::decode(value.value())?;
        let state = ConsumerState::restore(record);
        registry.insert(Arc::new(ConsumerRuntime::new(stream_id, stream.clone(), state)));
    }
    Ok(())
}

/// Loads the committed state.
pub(crate) fn load(db: &Database, now: Timestamp) -> StoreResult<Loaded> {
    let txn = db.begin_read()?;
    let metas = txn.open_table(STREAMS)?;
    let states = txn.open_table(STREAM_STATE)?;
    let messages = txn.open_table(MESSAGES)?;
    let counters = txn.open_table(COUNTERS)?;
    let mut streams = HashMap::new();
    let mut dedup = HashMap::new();
    for item in metas.iter()? {
        let (_, value) = item?;
        let meta = StreamMeta::decode(value.value())?;
        let state = match states.get(meta.id)? {
            Some(bytes) => encode::decode_state(bytes.value())?,
            None => {
                return Err(EngineError::Corrupt {
                    table: "stream_state",
                    reason: format!("no state for stream {}", meta.id),
                });
            }
        };
        let mut window = DedupWindow::default();
        if let Some(span) = meta.config.duplicate_window {
            let cutoff = now.saturating_sub(span);
            let mut recent = Vec::new();
            for item in messages.range((meta.id, 0)..=(meta.id, u64::MAX))?.rev() {
                let (key, value) = item?;
                // A damaged message must not keep the whole bus from opening:
                // it stays where it is, and a read of it says it is damaged.
                // Its id is missing from the window, so a publish repeating
                // it is not recognised as a duplicate.
                let head = match encode::decode_head(key.value(), value.value()) {
                    Ok(head) => head,
                    Err(damage) => {
                        tracing::error!(
                            stream = %meta.config.name,
                            error = %damage,
                            "a damaged message was left out of the duplicate window"
                        );
                        continue;
                    }
                };
                if head.time < cutoff {
                    break;
                }
                if head.explicit_id {
                    recent.push((head.id.to_string(), key.value().1, head.time));
                }
            }
            for (id, seq, time) in recent.into_iter().rev() {
                window.insert(&id, seq, time);
            }
        }
        dedup.insert(meta.id, window);
        streams.insert(meta.id, StreamEntry { meta, state });
    }
    let next_id = counters.get(NEXT_STREAM_ID)?.map_or(1, |g| g.value());
    let next_id = u32::try_from(next_id).map_err(|_| EngineError::Corrupt {
        table: "counters",
        reason: format!("next stream id {next_id}"),
    })?;
    Ok(Loaded {
        streams,
        dedup,
        next_id,
    })
}
