//! Live subscriptions: one reader per stream that can hold a match, reading
//! with batched direct gets from its own cursor.
//!
//! A core NATS subscription on the pattern is only a wake-up: JetStream may
//! tell core subscribers about a message a moment before the stream has
//! stored it, so a wake-up that finds nothing is followed by a few quick
//! re-reads, and an idle subscription still looks once a second. Reading from
//! a cursor is what makes replay-then-follow gapless and lets a reader see that
//! retention deleted messages it had not read (`Lagged`).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::StreamExt;
use herald_core::{
    Error, ErrorDetail, ErrorKind, LiveSubscription, Message, Pattern, ReadFrom, Result, StreamBackend, StreamConfig,
    StreamName, SubscriptionBackend, Timestamp,
};

use crate::NatsBackend;
use crate::api;
use crate::streams::DirectGet;

/// Messages one read takes from one stream.
const READ_BATCH: usize = 256;
/// Where JetStream announces new streams.
const STREAM_CREATED: &str = "$JS.EVENT.ADVISORY.STREAM.CREATED.*";
/// The pauses before re-reading after a wake-up found nothing, then the idle look.
const NAPS: [Duration; 5] = [
    Duration::from_millis(2),
    Duration::from_millis(10),
    Duration::from_millis(50),
    Duration::from_millis(200),
    Duration::from_secs(1),
];

struct Reader {
    stream: StreamName,
    /// The next seq to read.
    cursor: u64,
    /// Set until the first read of a subscription that starts at a time.
    start_time: Option<Timestamp>,
    /// The pattern takes every subject of the stream, so any jump in seqs is a deletion.
    whole: bool,
}

struct Live {
    backend: NatsBackend,
    pattern: Pattern,
    from: Option<ReadFrom>,
    /// Per stream, the last seq delivered before this subscription was taken
    /// up again: not delivered again.
    seen: HashMap<StreamName, u64>,
    wake: async_nats::Subscriber,
    created: async_nats::Subscriber,
    readers: Vec<Reader>,
    ready: VecDeque<Message>,
    naps: usize,
}

/// Whether `outer` matches every subject `inner` matches.
fn covers(outer: &str, inner: &str) -> bool {
    let mut o = outer.split('.');
    let mut i = inner.split('.');
    loop {
        match (o.next(), i.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(t)) if t != ">" => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

fn relevant(pattern: &Pattern, config: &StreamConfig) -> Option<bool> {
    if !config.subjects.iter().any(|s| s.overlaps(pattern)) {
        return None;
    }
    Some(config.subjects.iter().all(|s| covers(pattern.as_str(), s.as_str())))
}

impl Live {
    fn reader(&self, config: &StreamConfig, last_seq: u64, created_after: bool) -> Option<Reader> {
        let whole = relevant(&self.pattern, config)?;
        let (cursor, start_time) = match self.from {
            _ if created_after && !matches!(self.from, Some(ReadFrom::Time(_))) => (1, None),
            None => (last_seq + 1, None),
            Some(ReadFrom::Seq(seq)) => (seq.max(1), None),
            Some(ReadFrom::Time(time)) => (1, Some(time)),
        };
        // A start by time is found by the server; what it finds already seen
        // is dropped as it is read.
        let cursor = match self.seen.get(&config.name) {
            Some(&seen) if start_time.is_none() => cursor.max(seen + 1),
            _ => cursor,
        };
        Some(Reader {
            stream: config.name.clone(),
            cursor,
            start_time,
            whole,
        })
    }

    /// Starts following a stream JetStream just announced.
    async fn add_created(&mut self, advisory: &async_nats::Message) -> Result<()> {
        let Some(name) = advisory.subject.as_str().rsplit('.').next() else {
            return Ok(());
        };
        let Ok(name) = StreamName::new(name) else {
            return Ok(());
        };
        if self.readers.iter().any(|r| r.stream == name) {
            return Ok(());
        }
        let info = match self.backend.stream_info(&name).await {
            Ok(info) => info,
            Err(err) if err.kind() == ErrorKind::StreamNotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        if let Some(reader) = self.reader(&info.config, info.state.last_seq, true) {
            self.readers.push(reader);
        }
        Ok(())
    }

    /// Reads what every stream has past its cursor. Returns `Lagged` for the
    /// first stream found to have deleted unread messages (its messages after
    /// the gap are queued, so the next call continues).
    async fn poll(&mut self) -> Result<()> {
        let mut i = 0;
        while i < self.readers.len() {
            let reader = &self.readers[i];
            let request = DirectGet {
                seq: reader.start_time.is_none().then_some(reader.cursor),
                start_time: reader.start_time.map(api::format_time),
                next_by_subj: Some(self.pattern.as_str().to_owned()),
                batch: Some(READ_BATCH),
                ..DirectGet::default()
            };
            let stream = reader.stream.clone();
            let page = match self.backend.direct_batch(&stream, &request).await {
                Ok((page, _)) => page,
                Err(err) if err.kind() == ErrorKind::StreamNotFound => {
                    self.readers.remove(i);
                    continue;
                }
                Err(err) => return Err(err),
            };
            let Some(first) = page.first().map(|m| m.seq) else {
                i += 1;
                continue;
            };
            let reader = &mut self.readers[i];
            let timed = reader.start_time.take().is_some();
            let from = reader.cursor;
            let whole = reader.whole;
            reader.cursor = page.last().map_or(from, |m| m.seq + 1);
            let seen = self.seen.get(&stream).copied().unwrap_or(0);
            self.ready.extend(page.into_iter().filter(|m| m.seq > seen));
            if !timed && first > from {
                let gone_to = if whole {
                    first
                } else {
                    self.backend.stream_info(&stream).await?.state.first_seq.min(first)
                };
                if gone_to > from {
                    let missed = gone_to - from;
                    return Err(Error::new(
                        ErrorKind::Lagged,
                        format!("retention deleted {missed} messages of `{stream}` before they were read"),
                    )
                    .with_detail(ErrorDetail::Lagged {
                        missed,
                        resume_from: first,
                    }));
                }
            }
            i += 1;
        }
        Ok(())
    }
}

#[async_trait]
impl LiveSubscription for Live {
    async fn next(&mut self) -> Result<Message> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Ok(message);
            }
            self.poll().await?;
            if !self.ready.is_empty() {
                self.naps = 0;
                continue;
            }
            let nap = NAPS[self.naps.min(NAPS.len() - 1)];
            tokio::select! {
                woken = self.wake.next() => {
                    if woken.is_none() {
                        return Err(Error::new(ErrorKind::Closed, "the NATS connection closed"));
                    }
                    self.naps = 0;
                }
                advisory = self.created.next() => {
                    match advisory {
                        Some(advisory) => self.add_created(&advisory).await?,
                        None => return Err(Error::new(ErrorKind::Closed, "the NATS connection closed")),
                    }
                }
                () = tokio::time::sleep(nap) => self.naps += 1,
            }
        }
    }
}

#[async_trait]
impl SubscriptionBackend for NatsBackend {
    async fn subscribe(&self, pattern: Pattern, from: Option<ReadFrom>) -> Result<Box<dyn LiveSubscription>> {
        self.subscribe_resuming(pattern, from, HashMap::new()).await
    }

    async fn subscribe_resuming(
        &self,
        pattern: Pattern,
        from: Option<ReadFrom>,
        seen: HashMap<StreamName, u64>,
    ) -> Result<Box<dyn LiveSubscription>> {
        let client = &self.inner.client;
        let wake = client
            .subscribe(pattern.as_str().to_owned())
            .await
            .map_err(|e| api::closed("subscribing", e))?;
        let created = client
            .subscribe(STREAM_CREATED)
            .await
            .map_err(|e| api::closed("subscribing to stream advisories", e))?;
        client.flush().await.map_err(|e| api::closed("subscribing", e))?;
        let mut live = Live {
            backend: self.clone(),
            pattern,
            from,
            seen,
            wake,
            created,
            readers: Vec::new(),
            ready: VecDeque::new(),
            naps: 0,
        };
        for info in self.list_streams().await? {
            if let Some(reader) = live.reader(&info.config, info.state.last_seq, false) {
                live.readers.push(reader);
            }
        }
        Ok(Box::new(live))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pattern_covers_the_subjects_it_always_matches() {
        assert!(covers(">", "a.b"));
        assert!(covers("a.>", "a.b.>"));
        assert!(covers("a.*", "a.b"));
        assert!(covers("a.*", "a.*"));
        assert!(!covers("a.*", "a.>"));
        assert!(!covers("a.b", "a.*"));
        assert!(!covers("a.*.c", "a.>"));
        assert!(covers("a", "a"));
        assert!(!covers("a", "a.b"));
    }
}
