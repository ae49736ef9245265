//! The write side of the storage layout: the tables of one write transaction and
//! the primitive operations on them (append one message, delete one message,
//! drop a stream's data). Everything above works through these, so the layout
//! stays behind this module and `tables.rs`.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use herald_core::{StreamState, Timestamp};
use redb::{ReadableTable, Table, WriteTransaction};

use crate::encode::{self, StreamMeta};
use crate::error::StoreResult;
use crate::tables::{CHAIN, CONSUMERS, COUNTERS, EXPIRY, MESSAGES, STREAM_STATE, STREAMS, SUBJECTS};

/// A stream as the writer holds it: metadata and live state.
#[derive(Clone, Debug)]
pub(crate) struct StreamEntry {
    pub(crate) meta: StreamMeta,
    pub(crate) state: StreamState,
}

impl StreamEntry {
    pub(crate) fn id(&self) -> u32 {
        self.meta.id
    }
}

/// Every table, opened once per write transaction.
pub(crate) struct Tables<'t> {
    pub(crate) streams: Table<'t, &'static str, &'static [u8]>,
    pub(crate) state: Table<'t, u32, &'static [u8]>,
    pub(crate) messages: Table<'t, (u32, u64), &'static [u8]>,
    chain: Table<'t, (u32, u64), (u64, u64)>,
    subjects: Table<'t, (u32, &'static str), (u64, u64, u64)>,
    pub(crate) expiry: Table<'t, (u64, u32, u64), ()>,
    pub(crate) counters: Table<'t, &'static str, u64>,
    pub(crate) consumers: Table<'t, (u32, &'static str), &'static [u8]>,
    /// Write-back cache of the subject index for this transaction: a batch of
    /// appends to a few subjects updates each subject's entry and chain links
    /// many times, but each reaches its B-tree once, in key order, at [`flush`](Tables::flush).
    pending: Pending,
}

/// A hasher for (stream id, seq) keys. Seqs are assigned by the engine, not by
/// users, so a multiply-rotate mix is enough and much cheaper than SipHash.
#[derive(Default)]
struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(26) ^ n).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }
}

/// A message's (previous, next) seqs of the same subject.
type Links = (u64, u64);

/// A subject's (first seq, last seq, count).
type SubjectSpan = (u64, u64, u64);

/// Subject-index entries changed in this transaction; `None` marks a removal.
#[derive(Default)]
struct Pending {
    chain: HashMap<(u32, u64), Option<Links>, BuildHasherDefault<SeqHasher>>,
    subjects: HashMap<u32, HashMap<String, Option<SubjectSpan>>>,
}

impl<'t> Tables<'t> {
    pub(crate) fn open(txn: &'t WriteTransaction) -> StoreResult<Self> {
        Ok(Self {
            streams: txn.open_table(STREAMS)?,
            state: txn.open_table(STREAM_STATE)?,
            messages: txn.open_table(MESSAGES)?,
            chain: txn.open_table(CHAIN)?,
            subjects: txn.open_table(SUBJECTS)?,
            expiry: txn.open_table(EXPIRY)?,
            counters: txn.open_table(COUNTERS)?,
            consumers: txn.open_table(CONSUMERS)?,
            pending: Pending::default(),
        })
    }

    /// The subject's (first, last, count), if it has messages.
    pub(crate) fn subject_info(&self, stream: u32, subject: &str) -> StoreResult<Option<(u64, u64, u64)>> {
        if let Some(cached) = self.pending.subjects.get(&stream).and_then(|m| m.get(subject)) {
            return Ok(*cached);
        }
        Ok(self.subjects.get((stream, subject))?.map(|g| g.value()))
    }

    fn set_subject(&mut self, stream: u32, subject: &str, value: Option<(u64, u64, u64)>) {
        let slots = self.pending.subjects.entry(stream).or_default();
        match slots.get_mut(subject) {
            Some(slot) => *slot = value,
            None => {
                slots.insert(subject.to_string(), value);
            }
        }
    }

    /// The (previous, next) seqs of the same subject around `seq`.
    pub(crate) fn chain_links(&self, stream: u32, seq: u64) -> StoreResult<Option<(u64, u64)>> {
        if let Some(cached) = self.pending.chain.get(&(stream, seq)) {
            return Ok(*cached);
        }
        Ok(self.chain.get((stream, seq))?.map(|g| g.value()))
    }

    fn set_links(&mut self, stream: u32, seq: u64, links: Option<(u64, u64)>) {
        self.pending.chain.insert((stream, seq), links);
    }

    /// Writes the cached subject-index changes to their tables, in key order.
    pub(crate) fn flush(&mut self) -> StoreResult<()> {
        let mut chain: Vec<_> = self.pending.chain.drain().collect();
        chain.sort_unstable_by_key(|(key, _)| *key);
        for (key, links) in chain {
            match links {
                Some(links) => {
                    self.chain.insert(key, links)?;
                }
                None => {
                    self.chain.remove(key)?;
                }
            }
        }
        let mut streams: Vec<_> = self.pending.subjects.drain().collect();
        streams.sort_unstable_by_key(|(id, _)| *id);
        for (id, slots) in streams {
            let mut slots: Vec<_> = slots.into_iter().collect();
            slots.sort_unstable_by(|a, b| a.0.cmp(&b.0));
            for (subject, value) in slots {
                match value {
                    Some(value) => {
                        self.subjects.insert((id, subject.as_str()), value)?;
                    }
                    None => {
                        self.subjects.remove((id, subject.as_str()))?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Every subject the stream holds (flushes the cache first).
    pub(crate) fn subjects_of(&mut self, stream: u32) -> StoreResult<Vec<String>> {
        self.flush()?;
        self.subjects
            .range((stream, "")..(stream + 1, ""))?
            .map(|item| item.map(|(k, _)| k.value().1.to_string()).map_err(Into::into))
            .collect()
    }

    /// Appends `record` at `seq` (already chosen by the caller as `last_seq + 1`)
    /// and maintains the subject index, the expiry index and the stream state.
    pub(crate) fn append(
        &mut self,
        entry: &mut StreamEntry,
        seq: u64,
        subject: &str,
        time: Timestamp,
        expires: Option<Timestamp>,
        record: &[u8],
    ) -> StoreResult<()> {
        let id = entry.id();
        self.messages.insert((id, seq), record)?;
        let indexed = entry.meta.config.indexes_subjects();
        let prev = match self.subject_info(id, subject)? {
            Some((first, last, count)) => {
                self.set_subject(id, subject, Some((first, seq, count + 1)));
                last
            }
            None => {
                self.set_subject(id, subject, Some((seq, seq, 1)));
                entry.state.subjects += 1;
                0
            }
        };
        if indexed {
            self.set_links(id, seq, Some((prev, 0)));
            if prev != 0 {
                let before = self.chain_links(id, prev)?.map_or(0, |(p, _)| p);
                self.set_links(id, prev, Some((before, seq)));
            }
        }
        if let Some(expires) = expires {
            self.expiry.insert((expires.as_nanos(), id, seq), ())?;
        }
        let s = &mut entry.state;
        if s.messages == 0 {
            s.first_seq = seq;
            s.first_time = Some(time);
        }
        s.messages += 1;
        s.bytes += record.len() as u64;
        s.last_seq = seq;
        s.last_time = Some(time);
        Ok(())
    }

    /// Deletes the message at `seq`, keeping every index and the stream state
    /// exact; false if there was none.
    pub(crate) fn delete(&mut self, entry: &mut StreamEntry, seq: u64) -> StoreResult<bool> {
        let id = entry.id();
        let (size, subject, expires) = {
            let Some(guard) = self.messages.remove((id, seq))? else {
                return Ok(false);
            };
            let record = guard.value();
            let head = encode::decode_head((id, seq), record)?;
            (record.len() as u64, head.subject.to_string(), head.expires)
        };
        if entry.meta.config.indexes_subjects() {
            self.unlink(entry, seq, &subject)?;
        } else {
            self.forget(entry, seq, &subject)?;
        }
        if let Some(expires) = expires {
            self.expiry.remove((expires.as_nanos(), id, seq))?;
        }
        let s = &mut entry.state;
        s.messages = s.messages.saturating_sub(1);
        s.bytes = s.bytes.saturating_sub(size);
        s.deleted += 1;
        if seq == s.first_seq {
            self.advance_first(entry)?;
        }
        Ok(true)
    }

    /// Splices a deleted message out of its subject's chain (indexed streams).
    fn unlink(&mut self, entry: &mut StreamEntry, seq: u64, subject: &str) -> StoreResult<()> {
        let id = entry.id();
        let (prev, next) = self.chain_links(id, seq)?.unwrap_or((0, 0));
        self.set_links(id, seq, None);
        if prev != 0
            && let Some((pp, _)) = self.chain_links(id, prev)?
        {
            self.set_links(id, prev, Some((pp, next)));
        }
        if next != 0
            && let Some((_, nn)) = self.chain_links(id, next)?
        {
            self.set_links(id, next, Some((prev, nn)));
        }
        if let Some((first, last, count)) = self.subject_info(id, subject)? {
            if count <= 1 {
                self.set_subject(id, subject, None);
                entry.state.subjects = entry.state.subjects.saturating_sub(1);
            } else {
                let first = if first == seq { next } else { first };
                let last = if last == seq { prev } else { last };
                self.set_subject(id, subject, Some((first, last, count - 1)));
            }
        }
        Ok(())
    }

    /// Updates a subject's count and last seq for a deleted message (streams
    /// without the history index). Their `first` is not kept: nothing reads it.
    fn forget(&mut self, entry: &mut StreamEntry, seq: u64, subject: &str) -> StoreResult<()> {
        let id = entry.id();
        if let Some((_, last, count)) = self.subject_info(id, subject)? {
            if count <= 1 {
                self.set_subject(id, subject, None);
                entry.state.subjects = entry.state.subjects.saturating_sub(1);
            } else {
                // Deleting a subject's newest message while older ones remain
                // (TTLs, work-queue acks out of order): find the one before it.
                let last = if last == seq {
                    self.previous_of(id, subject, seq)?
                } else {
                    last
                };
                self.set_subject(id, subject, Some((0, last, count - 1)));
            }
        }
        Ok(())
    }

    /// The seq of the newest message of `subject` below `before`, by scanning back.
    fn previous_of(&self, stream: u32, subject: &str, before: u64) -> StoreResult<u64> {
        for item in self.messages.range((stream, 0)..(stream, before))?.rev() {
            let (k, v) = item?;
            if encode::decode_head(k.value(), v.value())?.subject == subject {
                return Ok(k.value().1);
            }
        }
        Ok(0)
    }

    /// The seqs of `subject` below `before`, oldest first, by scanning the
    /// stream (purges on streams without the history index).
    pub(crate) fn scan_subject(&self, stream: u32, subject: &str, before: u64) -> StoreResult<Vec<u64>> {
        let mut seqs = Vec::new();
        for item in self.messages.range((stream, 0)..(stream, before))? {
            let (k, v) = item?;
            if encode::decode_head(k.value(), v.value())?.subject == subject {
                seqs.push(k.value().1);
            }
        }
        Ok(seqs)
    }

    /// Moves the stream's first seq (and time) to the first message held.
    fn advance_first(&mut self, entry: &mut StreamEntry) -> StoreResult<()> {
        let id = entry.id();
        let from = entry.state.first_seq;
        let next = match self.messages.range((id, from)..=(id, u64::MAX))?.next() {
            Some(item) => {
                let (k, v) = item?;
                Some((k.value().1, encode::decode_head(k.value(), v.value())?.time))
            }
            None => None,
        };
        let s = &mut entry.state;
        match next {
            Some((seq, time)) => {
                s.first_seq = seq;
                s.first_time = Some(time);
            }
            None => {
                s.first_seq = s.last_seq + 1;
                s.first_time = None;
            }
        }
        Ok(())
    }

    /// Deletes every message of the stream at once (purge all, delete stream);
    /// returns how many there were.
    pub(crate) fn drop_all(&mut self, entry: &mut StreamEntry) -> StoreResult<u64> {
        let id = entry.id();
        self.flush()?;
        self.messages.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
        self.chain.retain_in((id, 0)..=(id, u64::MAX), |_, _| false)?;
        self.subjects.retain_in((id, "")..(id + 1, ""), |_, _| false)?;
        self.expiry.retain(|(_, stream, _), _| stream != id)?;
        let s = &mut entry.state;
        let count = s.messages;
        s.deleted += count;
        s.messages = 0;
        s.bytes = 0;
        s.subjects = 0;
        s.first_seq = s.last_seq + 1;
        s.first_time = None;
        Ok(count)
    }

    /// Writes the stream's state record.
    pub(crate) fn save_state(&mut self, entry: &StreamEntry) -> StoreResult<()> {
        self.state
            .insert(entry.id(), encode::encode_state(&entry.state).as_slice())?;
        Ok(())
    }

    /// Writes the stream's metadata record.
    pub(crate) fn save_meta(&mut self, meta: &StreamMeta) -> StoreResult<()> {
        self.streams
            .insert(meta.config.name.as_str(), meta.encode().as_slice())?;
        Ok(())
    }
}
