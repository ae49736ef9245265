//! Live subscriptions: follow a pattern across streams by reading the log.
//!
//! A subscription keeps a cursor per stream and reads forward from it, waking on
//! the commit counter; it never drops a message it has not read. If retention
//! deletes messages before the subscriber reads them, it says so with `Lagged`
//! and carries on after them.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use herald_core::{
    Error, ErrorDetail, ErrorKind, LiveSubscription, Message, Pattern, ReadFrom, ReadRange, Result, StreamBackend,
    StreamName, SubscriptionBackend,
};
use tokio::sync::watch;

use crate::engine::Engine;

/// 256 messages: how many one read takes from one stream; a subscriber's memory
/// is bounded by this per stream.
const READ_CHUNK: usize = 256;

struct Cursor {
    stream: StreamName,
    next: u64,
}

/// The engine's live subscription.
struct EngineSubscription {
    engine: Engine,
    pattern: Pattern,
    from: Option<ReadFrom>,
    /// Per stream, the last seq delivered before this subscription was taken
    /// up again: its cursor starts after it.
    seen: HashMap<StreamName, u64>,
    cursors: HashMap<u32, Cursor>,
    buffer: VecDeque<Message>,
    commits: watch::Receiver<u64>,
    /// Whether the streams that existed at subscribe time have been picked up.
    started: bool,
}

impl EngineSubscription {
    /// Adds cursors for streams that can hold matching messages.
    async fn discover(&mut self) -> Result<()> {
        let catalog = self.engine.inner.catalog.snapshot();
        for meta in catalog.values() {
            if self.cursors.contains_key(&meta.id) || !meta.config.subjects.iter().any(|p| p.overlaps(&self.pattern)) {
                continue;
            }
            let info = self.engine.stream_info(&meta.config.name).await?;
            let next = if !self.started {
                match self.from {
                    None => info.state.last_seq + 1,
                    Some(ReadFrom::Seq(seq)) => seq,
                    Some(ReadFrom::Time(time)) => crate::error::unpanicked("reading a subscription's start", || {
                        let (reader, _txn) = self.engine.reader(&meta.config.name)?;
                        reader
                            .seq_at_time(time, info.state.first_seq, info.state.last_seq)
                            .map_err(Error::from)
                    })?
                    .unwrap_or(info.state.last_seq + 1),
                }
            } else {
                // Created after the subscription: everything in it is new.
                1
            };
            let next = match self.seen.get(&meta.config.name) {
                // Saturating: `seen` is the client's word, and may be `u64::MAX`.
                Some(&seen) => next.max(seen.saturating_add(1)),
                None => next,
            };
            self.cursors.insert(
                meta.id,
                Cursor {
                    stream: meta.config.name.clone(),
                    next,
                },
            );
        }
        self.cursors.retain(|id, _| catalog.values().any(|m| m.id == *id));
        self.started = true;
        Ok(())
    }

    /// Reads what is new in every stream into the buffer; reports a lag first.
    async fn poll(&mut self) -> Result<()> {
        let ids: Vec<u32> = self.cursors.keys().copied().collect();
        for id in ids {
            let cursor = &self.cursors[&id];
            let (stream, next) = (cursor.stream.clone(), cursor.next);
            let info = match self.engine.stream_info(&stream).await {
                Ok(info) => info,
                Err(err) if err.kind() == ErrorKind::StreamNotFound => {
                    self.cursors.remove(&id);
                    continue;
                }
                Err(err) => return Err(err),
            };
            let first = info.state.first_seq;
            if next < first && next <= info.state.last_seq {
                let cursor = self.cursors.get_mut(&id).expect("present");
                cursor.next = first;
                let missed = first - next;
                return Err(Error::new(
                    ErrorKind::Lagged,
                    format!("subscriber fell behind on stream `{stream}`: {missed} messages were deleted before it read them; resuming at seq {first}"),
                )
                .with_detail(ErrorDetail::Lagged { missed, resume_from: first }));
            }
            if next > info.state.last_seq {
                continue;
            }
            let range = ReadRange::from_seq(next, READ_CHUNK).filter(self.pattern.clone());
            let messages = self.engine.read_range(&stream, range).await?;
            // Advance past what was scanned, matching or not.
            // A full chunk may have stopped short; a partial one read to the end
            // (which may be past the head read above, if a commit landed meanwhile).
            let last_read = messages.last().map(|m| m.seq);
            let scanned_to = match last_read {
                Some(seq) if messages.len() == READ_CHUNK => seq,
                Some(seq) => seq.max(info.state.last_seq),
                None => info.state.last_seq,
            };
            self.cursors.get_mut(&id).expect("present").next = scanned_to + 1;
            self.buffer.extend(messages);
        }
        Ok(())
    }
}

#[async_trait]
impl LiveSubscription for EngineSubscription {
    async fn next(&mut self) -> Result<Message> {
        loop {
            if let Some(message) = self.buffer.pop_front() {
                return Ok(message);
            }
            // Mark the current commit as seen before reading, so a commit landing
            // during the read wakes the wait below.
            self.commits.borrow_and_update();
            self.discover().await?;
            self.poll().await?;
            if !self.buffer.is_empty() {
                continue;
            }
            self.commits
                .changed()
                .await
                .map_err(|_| Error::new(ErrorKind::Closed, "the bus was closed"))?;
        }
    }
}

#[async_trait]
impl SubscriptionBackend for Engine {
    async fn subscribe(&self, pattern: Pattern, from: Option<ReadFrom>) -> Result<Box<dyn LiveSubscription>> {
        self.subscribe_resuming(pattern, from, HashMap::new()).await
    }

    async fn subscribe_resuming(
        &self,
        pattern: Pattern,
        from: Option<ReadFrom>,
        seen: HashMap<StreamName, u64>,
    ) -> Result<Box<dyn LiveSubscription>> {
        let mut subscription = EngineSubscription {
            engine: self.clone(),
            pattern,
            from,
            seen,
            cursors: HashMap::new(),
            buffer: VecDeque::new(),
            commits: self.inner.notifier.subscribe_commits(),
            started: false,
        };
        subscription.commits.borrow_and_update();
        subscription.discover().await?;
        Ok(Box::new(subscription))
    }
}
