//! The on-disk layout: every redb table the engine keeps, in one place.
//!
//! docs/storage.md describes the format. Keys are fixed-width and
//! order-preserving, so a stream's messages sit together in sequence order and
//! appends touch only the right edge of each tree.

use redb::TableDefinition;

/// Stream name → JSON [`crate::encode::StreamMeta`] (id, creation time, config).
/// Written on create, update and delete only.
pub(crate) const STREAMS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("streams");

/// Stream id → fixed-width [`herald_core::StreamState`] (see `encode::encode_state`).
/// Written once per commit for each stream the commit touched.
pub(crate) const STREAM_STATE: TableDefinition<'_, u32, &[u8]> = TableDefinition::new("stream_state");

/// (stream id, seq) → encoded message record (see `encode::encode_record`).
pub(crate) const MESSAGES: TableDefinition<'_, (u32, u64), &[u8]> = TableDefinition::new("messages");

/// (stream id, seq) → (previous seq, next seq) of the same subject, 0 for none.
///
/// The per-subject index as a doubly linked list keyed by seq: an append writes
/// its own entry and patches its predecessor's `next`, both near the right edge
/// of the tree, so streams with many interleaved subjects keep sequential writes
/// instead of scattering inserts across a (subject, seq) tree.
pub(crate) const CHAIN: TableDefinition<'_, (u32, u64), (u64, u64)> = TableDefinition::new("subject_chain");

/// (stream id, subject) → (first seq, last seq, count) of that subject.
/// One entry per distinct subject held, so it stays small next to the log.
pub(crate) const SUBJECTS: TableDefinition<'_, (u32, &str), (u64, u64, u64)> = TableDefinition::new("subjects");

/// (expiry time ns, stream id, seq) → (), for messages published with a TTL.
pub(crate) const EXPIRY: TableDefinition<'_, (u64, u32, u64), ()> = TableDefinition::new("expiry");

/// Singleton counters: "next_stream_id" → u64.
pub(crate) const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("counters");

/// The key of the next stream id in [`COUNTERS`]. Ids are never reused, so a
/// deleted stream's leftovers can never be read as a new stream's.
pub(crate) const NEXT_STREAM_ID: &str = "next_stream_id";

/// (stream id, consumer name) → JSON [`crate::consumers::ConsumerRecord`]:
/// config, `next_seq` and outstanding seqs. Written on create/update and then
/// lazily, at most every `CONSUMER_SAVE_INTERVAL`.
pub(crate) const CONSUMERS: TableDefinition<'_, (u32, &str), &[u8]> = TableDefinition::new("consumers");
