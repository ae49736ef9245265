//! Retention that deletes for real: count, bytes and per-subject limits on
//! write, age and TTL on a timer, and purges.

use std::collections::HashSet;

use herald_core::{OutgoingMessage, Purge, Result, StreamConfig, Timestamp};
use redb::ReadableTable;

use crate::error::StoreResult;
use crate::store::{StreamEntry, Tables};
use crate::writer::Writer;

impl Writer {
    /// Applies the discard-old limits: per subject for the subjects of the
    /// messages just `written` (every subject when `None`, after a config
    /// change), then count and bytes from the front.
    pub(crate) fn enforce_limits(
        &mut self,
        tables: &mut Tables<'_>,
        entry: &mut StreamEntry,
        config: &StreamConfig,
        written: Option<&[OutgoingMessage]>,
    ) -> StoreResult<()> {
        if config.retention != herald_core::Retention::Limits {
            // Publishes over a limit were refused; owed messages are never dropped.
            return Ok(());
        }
        let before = entry.state.messages;
        if let Some(max) = config.max_msgs_per_subject {
            let all: Vec<String>;
            let names: Vec<&str> = match written {
                Some(messages) => messages.iter().map(|m| m.subject.as_str()).collect(),
                // A config change: every subject may be over the new limit.
                None => {
                    all = tables.subjects_of(entry.id())?;
                    all.iter().map(String::as_str).collect()
                }
            };
            let mut checked = HashSet::new();
            for subject in names {
                if !checked.insert(subject) {
                    continue;
                }
                while let Some((first, _, count)) = tables.subject_info(entry.id(), subject)? {
                    if count <= max.get() {
                        break;
                    }
                    tables.delete(entry, first)?;
                }
            }
        }
        if let Some(max) = config.max_msgs {
            while entry.state.messages > max.get() {
                let first = entry.state.first_seq;
                tables.delete(entry, first)?;
            }
        }
        if let Some(max) = config.max_bytes {
            while entry.state.bytes > max.get() && entry.state.messages > 0 {
                let first = entry.state.first_seq;
                tables.delete(entry, first)?;
            }
        }
        self.retired(
            entry.id(),
            crate::writer::Retired::Limits,
            before - entry.state.messages,
        );
        Ok(())
    }

    /// Deletes messages older than the stream's `max_age`.
    pub(crate) fn enforce_age(
        &mut self,
        tables: &mut Tables<'_>,
        entry: &mut StreamEntry,
        now: Timestamp,
    ) -> StoreResult<u64> {
        let Some(max_age) = entry.meta.config.max_age else {
            return Ok(0);
        };
        let cutoff = now.saturating_sub(max_age);
        let mut deleted = 0;
        while let Some(first_time) = entry.state.first_time {
            if first_time >= cutoff || entry.state.messages == 0 {
                break;
            }
            let first = entry.state.first_seq;
            if entry.meta.config.retention != herald_core::Retention::Limits {
                let subject = match tables.messages.get((entry.id(), first))? {
                    Some(guard) => crate::encode::decode_head((entry.id(), first), guard.value())?
                        .subject
                        .to_string(),
                    None => break,
                };
                if !self.registry.all_settled(entry.id(), first, &subject) {
                    break;
                }
            }
            tables.delete(entry, first)?;
            deleted += 1;
        }
        self.retired(entry.id(), crate::writer::Retired::Age, deleted);
        Ok(deleted)
    }

    /// Age retention on every stream and TTL expiry on every message due.
    pub(crate) fn enforce_time_limits(&mut self, tables: &mut Tables<'_>, now: Timestamp) -> StoreResult<()> {
        let ids: Vec<u32> = self.streams.keys().copied().collect();
        for id in ids {
            let mut entry = self.streams[&id].clone();
            if self.enforce_age(tables, &mut entry, now)? > 0 {
                self.streams.insert(id, entry);
                self.touch(id);
            }
        }
        self.expire_due(tables, now, None)
    }

    /// Deletes every message whose TTL has passed, of one stream or of all.
    pub(crate) fn expire_due(&mut self, tables: &mut Tables<'_>, now: Timestamp, only: Option<u32>) -> StoreResult<()> {
        let due: Vec<(u64, u32, u64)> = tables
            .expiry
            .range(..=(now.as_nanos(), u32::MAX, u64::MAX))?
            .map(|item| item.map(|(k, _)| k.value()))
            .filter(|item| match (item, only) {
                (Ok((_, id, _)), Some(only)) => *id == only,
                _ => true,
            })
            .collect::<Result<_, _>>()?;
        for (_, id, seq) in due {
            match self.streams.get(&id) {
                Some(entry) => {
                    let mut entry = entry.clone();
                    if tables.delete(&mut entry, seq)? {
                        self.retired(id, crate::writer::Retired::Ttl, 1);
                    }
                    self.streams.insert(id, entry);
                    self.touch(id);
                }
                // Leftover of a deleted stream: drop the index entry.
                None => {
                    tables
                        .expiry
                        .retain(|(_, stream, _), _| self.streams.contains_key(&stream))?;
                }
            }
        }
        Ok(())
    }

    /// Deletes what `purge` selects from stream `name`.
    pub(crate) fn purge(
        &mut self,
        tables: &mut Tables<'_>,
        name: &herald_core::StreamName,
        purge: Purge,
    ) -> StoreResult<Result<u64>> {
        let id = match self.entry_id(name) {
            Ok(id) => id,
            Err(err) => return Ok(Err(err)),
        };
        let mut entry = self.streams[&id].clone();
        let before = purge.before_seq.unwrap_or(u64::MAX);
        let mut count = 0;
        match &purge.subject {
            None if purge.before_seq.is_none() => count = tables.drop_all(&mut entry)?,
            None => {
                while entry.state.messages > 0 && entry.state.first_seq < before {
                    let first = entry.state.first_seq;
                    tables.delete(&mut entry, first)?;
                    count += 1;
                }
            }
            Some(subject) if !entry.meta.config.indexes_subjects() => {
                for seq in tables.scan_subject(id, subject.as_str(), before)? {
                    if tables.delete(&mut entry, seq)? {
                        count += 1;
                    }
                }
            }
            Some(subject) => {
                let mut seq = tables
                    .subject_info(id, subject.as_str())?
                    .map_or(0, |(first, _, _)| first);
                while seq != 0 && seq < before {
                    let next = tables.chain_links(id, seq)?.map_or(0, |(_, next)| next);
                    if tables.delete(&mut entry, seq)? {
                        count += 1;
                    }
                    seq = next;
                }
            }
        }
        self.retired(id, crate::writer::Retired::Purge, count);
        self.streams.insert(id, entry);
        self.touch(id);
        self.batch.durable = true;
        Ok(Ok(count))
    }
}
