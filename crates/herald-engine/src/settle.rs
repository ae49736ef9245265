//! The writer's side of consumers: storing them, saving their progress, and the
//! deletions that interest and work-queue streams make when messages are settled.

use std::sync::Arc;

use herald_core::{
    DeadLetter, Error, ErrorKind, Result, Retention, StreamConfig, Timestamp, check_dead_letter_owner,
    dead_letter_names,
};

use redb::ReadableTable;

use crate::consumers::ConsumerRuntime;
use crate::encode;
use crate::error::StoreResult;
use crate::store::Tables;
use crate::writer::Writer;

impl Writer {
    /// Stores a new consumer, creating its dead-letter stream. Creating one that
    /// exists with the same config returns the existing one.
    pub(crate) fn create_consumer(
        &mut self,
        tables: &mut Tables<'_>,
        runtime: Arc<ConsumerRuntime>,
        now: Timestamp,
    ) -> StoreResult<Result<Arc<ConsumerRuntime>>> {
        let Some(entry) = self.streams.get(&runtime.stream_id) else {
            return Ok(Err(Error::new(
                ErrorKind::StreamNotFound,
                format!("stream `{}` not found", runtime.stream),
            )));
        };
        let config = runtime.lock().config.clone();
        let pending = self
            .batch
            .new_consumers
            .iter()
            .find(|c| c.stream_id == runtime.stream_id && c.name == runtime.name);
        if let Some(existing) = pending
            .cloned()
            .or_else(|| self.registry.get(runtime.stream_id, &runtime.name))
        {
            let same = existing.lock().config == config;
            return Ok(if same {
                Ok(existing)
            } else {
                Err(Error::new(
                    ErrorKind::ConsumerExists,
                    format!(
                        "consumer `{}` on stream `{}` exists with a different configuration",
                        runtime.name, runtime.stream
                    ),
                ))
            });
        }
        if entry.meta.config.retention == Retention::WorkQueue {
            // A work queue hands each message to one consumer: filters may not overlap.
            for other in self.registry.of_stream(runtime.stream_id) {
                let theirs = other.lock().config.filters.clone();
                let overlap = match (config.filters.is_empty(), theirs.is_empty()) {
                    (true, _) | (_, true) => true,
                    _ => config.filters.iter().any(|a| theirs.iter().any(|b| a.overlaps(b))),
                };
                if overlap {
                    return Ok(Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!(
                            "work-queue stream `{}`: consumer `{}` would share messages with `{}`; filters must not overlap",
                            runtime.stream, runtime.name, other.name
                        ),
                    )));
                }
            }
        }
        if config.dead_letter == DeadLetter::PerConsumer {
            let (name, subject) = match dead_letter_names(&runtime.stream, &runtime.name) {
                Ok(names) => names,
                Err(err) => return Ok(Err(err)),
            };
            match self.names.get(&name).and_then(|id| self.streams.get(id)) {
                // Kept from before (its consumer deleted and made again), or
                // another consumer's whose name runs together to the same one.
                Some(existing) => {
                    if let Err(err) = check_dead_letter_owner(&runtime.stream, &runtime.name, &existing.meta.config) {
                        return Ok(Err(err));
                    }
                }
                None => {
                    let dlq = StreamConfig::with_name(name)
                        .subjects([subject])
                        .expect("dead-letter subjects are valid");
                    if let Err(err) = self.create_stream(tables, dlq, now)? {
                        return Ok(Err(err));
                    }
                }
            }
        }
        self.save_consumer(tables, &runtime)?;
        self.batch.new_consumers.push(runtime.clone());
        self.batch.durable = true;
        Ok(Ok(runtime))
    }

    /// Writes a consumer's snapshot; false if the consumer is gone.
    pub(crate) fn save_consumer(&mut self, tables: &mut Tables<'_>, runtime: &ConsumerRuntime) -> StoreResult<bool> {
        if !self.streams.contains_key(&runtime.stream_id) {
            return Ok(false);
        }
        let record = runtime.lock().record();
        tables
            .consumers
            .insert((runtime.stream_id, runtime.name.as_str()), record.encode().as_slice())?;
        Ok(true)
    }

    /// Deletes settled messages that the stream's retention no longer keeps.
    pub(crate) fn delete_settled(&mut self, tables: &mut Tables<'_>, stream_id: u32, seqs: &[u64]) -> StoreResult<()> {
        let Some(entry) = self.streams.get(&stream_id) else {
            return Ok(());
        };
        let retention = entry.meta.config.retention;
        if retention == Retention::Limits {
            return Ok(());
        }
        let mut entry = entry.clone();
        let mut changed = false;
        for &seq in seqs {
            let subject = match tables.messages.get((stream_id, seq))? {
                Some(guard) => encode::decode_head((stream_id, seq), guard.value())?
                    .subject
                    .to_string(),
                None => continue,
            };
            let delete = match retention {
                Retention::WorkQueue => true,
                _ => self.registry.all_settled(stream_id, seq, &subject),
            };
            if delete && tables.delete(&mut entry, seq)? {
                changed = true;
            }
        }
        if changed {
            self.streams.insert(stream_id, entry);
            self.touch(stream_id);
        }
        Ok(())
    }
}
