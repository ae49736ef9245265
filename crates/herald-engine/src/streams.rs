//! Stream administration inside the writer: create, update, delete.

use herald_core::{Error, ErrorKind, Result, StreamConfig, StreamInfo, StreamName, StreamState, Timestamp};

use crate::encode::StreamMeta;
use crate::error::StoreResult;
use crate::store::{StreamEntry, Tables};
use crate::tables::NEXT_STREAM_ID;
use crate::writer::Writer;

/// A stream's info from the writer's view.
pub(crate) fn info_of(entry: &StreamEntry) -> StreamInfo {
    StreamInfo {
        config: entry.meta.config.clone(),
        state: entry.state.clone(),
        created: entry.meta.created,
    }
}

impl Writer {
    /// Rejects a config whose subjects overlap another stream's (`except` is the
    /// stream being updated).
    pub(crate) fn check_overlap(&self, config: &StreamConfig, except: Option<u32>) -> Result<()> {
        for other in self.streams.values().filter(|e| Some(e.id()) != except) {
            for mine in &config.subjects {
                if let Some(theirs) = other.meta.config.subjects.iter().find(|p| p.overlaps(mine)) {
                    return Err(Error::new(
                        ErrorKind::SubjectConflict,
                        format!(
                            "stream `{}`: subjects `{mine}` overlap `{theirs}` of stream `{}`",
                            config.name, other.meta.config.name
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    fn check_config(&self, config: &StreamConfig) -> Result<()> {
        config.validate()
    }

    pub(crate) fn create_stream(
        &mut self,
        tables: &mut Tables<'_>,
        config: StreamConfig,
        now: Timestamp,
    ) -> StoreResult<Result<StreamInfo>> {
        if let Err(err) = self.check_config(&config) {
            return Ok(Err(err));
        }
        if let Some(id) = self.names.get(&config.name) {
            let existing = &self.streams[id];
            return Ok(if existing.meta.config == config {
                Ok(info_of(existing))
            } else {
                Err(Error::new(
                    ErrorKind::StreamExists,
                    format!("stream `{}` exists with a different configuration", config.name),
                ))
            });
        }
        if let Err(err) = self.check_overlap(&config, None) {
            return Ok(Err(err));
        }
        let id = self.next_id;
        let entry = StreamEntry {
            meta: StreamMeta {
                id,
                created: now,
                config,
            },
            state: StreamState {
                first_seq: 1,
                ..StreamState::default()
            },
        };
        tables.save_meta(&entry.meta)?;
        tables.counters.insert(NEXT_STREAM_ID, u64::from(id) + 1)?;
        self.next_id = id + 1;
        self.names.insert(entry.meta.config.name.clone(), id);
        let info = info_of(&entry);
        self.streams.insert(id, entry);
        self.batch.catalog_changed = true;
        self.touch(id);
        self.batch.durable = true;
        Ok(Ok(info))
    }

    pub(crate) fn update_stream(
        &mut self,
        tables: &mut Tables<'_>,
        config: StreamConfig,
        now: Timestamp,
    ) -> StoreResult<Result<StreamInfo>> {
        let id = match self.entry_id(&config.name) {
            Ok(id) => id,
            Err(err) => return Ok(Err(err)),
        };
        if let Err(err) = self
            .check_config(&config)
            .and_then(|()| self.check_overlap(&config, Some(id)))
        {
            return Ok(Err(err));
        }
        let mut entry = self.streams[&id].clone();
        if entry.meta.config.indexes_subjects() != config.indexes_subjects() {
            return Ok(Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "stream `{}`: the subject index (subject_index, or max_msgs_per_subject) is fixed at creation",
                    config.name
                ),
            )));
        }
        if entry.meta.config.retention != config.retention {
            return Ok(Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "stream `{}`: the retention kind cannot change after creation",
                    config.name
                ),
            )));
        }
        entry.meta.config = config.clone();
        tables.save_meta(&entry.meta)?;
        // New limits apply at once.
        self.enforce_limits(tables, &mut entry, &config, None)?;
        self.enforce_age(tables, &mut entry, now)?;
        let info = info_of(&entry);
        self.streams.insert(id, entry);
        self.batch.catalog_changed = true;
        self.touch(id);
        self.batch.durable = true;
        Ok(Ok(info))
    }

    /// Deletes a stream with its consumers, and their dead-letter streams
    /// with theirs: nothing of a deleted stream is left behind.
    pub(crate) fn delete_stream(&mut self, tables: &mut Tables<'_>, name: &StreamName) -> StoreResult<Result<()>> {
        let id = match self.entry_id(name) {
            Ok(id) => id,
            Err(err) => return Ok(Err(err)),
        };
        let mut doomed = vec![(id, name.clone())];
        let mut next = 0;
        while let Some((id, stream)) = doomed.get(next).cloned() {
            next += 1;
            for consumer in self.registry.of_stream(id) {
                // Only its own: another consumer's may have the same name.
                let dead_letters = herald_core::dead_letter_stream(&stream, &consumer.name)
                    .and_then(|dlq| self.entry_id(&dlq).ok().map(|dlq_id| (dlq_id, dlq)))
                    .filter(|(dlq_id, _)| {
                        self.streams.get(dlq_id).is_some_and(|entry| {
                            herald_core::owns_dead_letter_stream(&stream, &consumer.name, &entry.meta.config)
                        })
                    });
                if let Some(dead_letters) = dead_letters.filter(|(dlq_id, _)| doomed.iter().all(|(d, _)| d != dlq_id)) {
                    doomed.push(dead_letters);
                }
            }
        }
        for (id, name) in doomed {
            self.drop_stream(tables, id, &name)?;
        }
        Ok(Ok(()))
    }

    fn drop_stream(&mut self, tables: &mut Tables<'_>, id: u32, name: &StreamName) -> StoreResult<()> {
        let mut entry = self.streams.remove(&id).expect("named streams have entries");
        tables.drop_all(&mut entry)?;
        tables.streams.remove(name.as_str())?;
        tables.state.remove(id)?;
        tables.consumers.retain_in((id, "")..(id + 1, ""), |_, _| false)?;
        self.registry.remove_stream(id);
        self.names.remove(name);
        self.dedup.remove(&id);
        self.batch.touched.remove(&id);
        self.batch.deleted.push(id);
        self.batch.catalog_changed = true;
        self.batch.durable = true;
        Ok(())
    }
}
