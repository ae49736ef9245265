//! Reads: short MVCC read transactions that never block the writer.

use bytes::Bytes;
use herald_core::{Message, Pattern, ReadFrom, ReadRange, StreamName, Subject, Timestamp};
use redb::{ReadOnlyTable, ReadTransaction};

use crate::encode;
use crate::error::StoreResult;
use crate::tables::{CHAIN, MESSAGES, SUBJECTS};

/// The tables readers use, opened on one read transaction.
pub(crate) struct Reader {
    messages: ReadOnlyTable<(u32, u64), &'static [u8]>,
    chain: ReadOnlyTable<(u32, u64), (u64, u64)>,
    subjects: ReadOnlyTable<(u32, &'static str), (u64, u64, u64)>,
    stream: StreamName,
    id: u32,
    now: Timestamp,
    indexed: bool,
}

impl Reader {
    pub(crate) fn new(
        txn: &ReadTransaction,
        stream: StreamName,
        id: u32,
        now: Timestamp,
        indexed: bool,
    ) -> StoreResult<Self> {
        Ok(Self {
            messages: txn.open_table(MESSAGES)?,
            chain: txn.open_table(CHAIN)?,
            subjects: txn.open_table(SUBJECTS)?,
            stream,
            id,
            now,
            indexed,
        })
    }

    fn live(&self, expires: Option<Timestamp>) -> bool {
        expires.is_none_or(|e| e > self.now)
    }

    /// The message at `seq`, unless it is missing or expired.
    pub(crate) fn get(&self, seq: u64) -> StoreResult<Option<Message>> {
        let Some(guard) = self.messages.get((self.id, seq))? else {
            return Ok(None);
        };
        let msg = encode::decode_message(&self.stream, (self.id, seq), Bytes::copy_from_slice(guard.value()))?;
        Ok(self.live(msg.expires).then_some(msg))
    }

    /// The last live message of `subject`.
    pub(crate) fn last_of(&self, subject: &Subject) -> StoreResult<Option<Message>> {
        let Some((_, mut seq, _)) = self.subjects.get((self.id, subject.as_str()))?.map(|g| g.value()) else {
            return Ok(None);
        };
        if let Some(msg) = self.get(seq)? {
            return Ok(Some(msg));
        }
        // The newest has expired but is not swept yet: take the one before it.
        if !self.indexed {
            for item in self.messages.range((self.id, 0)..(self.id, seq))?.rev() {
                let (k, v) = item?;
                let head = encode::decode_head(k.value(), v.value())?;
                if head.subject == subject.as_str() && self.live(head.expires) {
                    return self.get(k.value().1);
                }
            }
            return Ok(None);
        }
        while seq != 0 {
            seq = self.chain.get((self.id, seq))?.map_or(0, |g| g.value().0);
            if let Some(msg) = self.get(seq)? {
                return Ok(Some(msg));
            }
        }
        Ok(None)
    }

    /// The first seq appended at or after `time` (`None`: none was).
    ///
    /// Times never decrease along a stream, so this is a binary search over seqs,
    /// each probe the first message at or after a seq (seqs may have holes).
    pub(crate) fn seq_at_time(&self, time: Timestamp, first: u64, last: u64) -> StoreResult<Option<u64>> {
        let (mut lo, mut hi) = (first, last.saturating_add(1));
        let mut best = None;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let probe = match self.messages.range((self.id, mid)..(self.id, hi))?.next() {
                Some(item) => {
                    let (k, v) = item?;
                    Some((k.value().1, encode::decode_head(k.value(), v.value())?.time))
                }
                None => None,
            };
            match probe {
                None => hi = mid,
                Some((seq, t)) if t >= time => {
                    best = Some(seq);
                    hi = mid;
                }
                Some((seq, _)) => lo = seq + 1,
            }
        }
        Ok(best)
    }

    /// Messages from a seq or a time, filtered, up to a limit.
    pub(crate) fn range(&self, range: &ReadRange, first: u64, last: u64) -> StoreResult<Vec<Message>> {
        let start = match range.from {
            ReadFrom::Seq(seq) => seq,
            ReadFrom::Time(time) => match self.seq_at_time(time, first, last)? {
                Some(seq) => seq,
                None => return Ok(Vec::new()),
            },
        };
        let mut out = Vec::new();
        if range.limit == 0 {
            return Ok(out);
        }
        for item in self.messages.range((self.id, start)..=(self.id, u64::MAX))? {
            let (k, v) = item?;
            let head = encode::decode_head(k.value(), v.value())?;
            if !self.live(head.expires) || !matches_any(&range.filter, head.subject) {
                continue;
            }
            out.push(encode::decode_message(
                &self.stream,
                k.value(),
                Bytes::copy_from_slice(v.value()),
            )?);
            if out.len() >= range.limit {
                break;
            }
        }
        Ok(out)
    }

    /// Messages of one subject from `from_seq`, following the subject chain.
    pub(crate) fn subject(&self, subject: &Subject, from_seq: u64, limit: usize) -> StoreResult<Vec<Message>> {
        debug_assert!(self.indexed, "callers check the stream keeps the subject index");
        let Some((first, last, _)) = self.subjects.get((self.id, subject.as_str()))?.map(|g| g.value()) else {
            return Ok(Vec::new());
        };
        if limit == 0 || from_seq > last {
            return Ok(Vec::new());
        }
        let mut seqs = Vec::new();
        if from_seq <= first || from_seq - first <= last - from_seq {
            // Walk forward from the subject's first message.
            let mut seq = first;
            while seq != 0 && seqs.len() < limit {
                if seq >= from_seq {
                    seqs.push(seq);
                }
                seq = self.chain.get((self.id, seq))?.map_or(0, |g| g.value().1);
            }
        } else {
            // Closer to the end: walk back to `from_seq`, then keep the first `limit`.
            let mut seq = last;
            while seq != 0 && seq >= from_seq {
                seqs.push(seq);
                seq = self.chain.get((self.id, seq))?.map_or(0, |g| g.value().0);
            }
            seqs.reverse();
            seqs.truncate(limit);
        }
        let mut out = Vec::with_capacity(seqs.len());
        for seq in seqs {
            if let Some(msg) = self.get(seq)? {
                out.push(msg);
            }
        }
        Ok(out)
    }
}

impl Reader {
    /// Messages from `from` on that `wants` accepts, at most `max` of them,
    /// scanning at most `scan_cap` records; returns them and the seq to continue at.
    pub(crate) fn scan(
        &self,
        from: u64,
        wants: impl Fn(&str) -> bool,
        max: usize,
        scan_cap: usize,
    ) -> StoreResult<(Vec<Message>, u64)> {
        let mut out = Vec::new();
        let mut next = from;
        for (scanned, item) in self.messages.range((self.id, from)..=(self.id, u64::MAX))?.enumerate() {
            if out.len() >= max || scanned >= scan_cap {
                break;
            }
            let (k, v) = item?;
            let seq = k.value().1;
            next = seq + 1;
            let head = encode::decode_head((self.id, seq), v.value())?;
            if self.live(head.expires) && wants(head.subject) {
                out.push(encode::decode_message(
                    &self.stream,
                    (self.id, seq),
                    Bytes::copy_from_slice(v.value()),
                )?);
            }
        }
        Ok((out, next))
    }

    /// How many live messages from `from` on `wants` accepts.
    pub(crate) fn count_from(&self, from: u64, wants: impl Fn(&str) -> bool) -> StoreResult<u64> {
        let mut n = 0;
        for item in self.messages.range((self.id, from)..=(self.id, u64::MAX))? {
            let (k, v) = item?;
            let head = encode::decode_head(k.value(), v.value())?;
            if self.live(head.expires) && wants(head.subject) {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The time of the message at `seq`, if held.
    pub(crate) fn time_of(&self, seq: u64) -> StoreResult<Option<Timestamp>> {
        match self.messages.get((self.id, seq))? {
            Some(g) => Ok(Some(encode::decode_head((self.id, seq), g.value())?.time)),
            None => Ok(None),
        }
    }

    /// The last seq of every subject `wants` accepts, in seq order.
    pub(crate) fn last_per_subject(&self, wants: impl Fn(&str) -> bool) -> StoreResult<Vec<u64>> {
        let mut seqs = Vec::new();
        for item in self.subjects.range((self.id, "")..(self.id + 1, ""))? {
            let (k, v) = item?;
            if wants(k.value().1) {
                seqs.push(v.value().1);
            }
        }
        seqs.sort_unstable();
        Ok(seqs)
    }
}

fn matches_any(filter: &[Pattern], subject: &str) -> bool {
    filter.is_empty() || filter.iter().any(|p| p.matches_str(subject))
}
