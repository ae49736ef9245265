//! Live subscriptions: one reader per stream that can hold a match.
//!
//! On a stream with limits retention the reader is an ordered consumer
//! (ephemeral, no acks, recreated by async-nats after a gap or a reconnect):
//! JetStream pushes each message once it is stored, so a subscriber hears of
//! it without asking. Streams with interest or work-queue retention are read
//! instead with batched direct gets from the reader's own cursor, woken by a
//! core subscription on the pattern (a consumer there would count as interest
//! or be refused): JetStream may tell core subscribers about a message a
//! moment before the stream has stored it, so a wake-up that finds nothing is
//! followed by a few quick re-reads, and an idle subscription still looks
//! once a second. Either way the reader knows the next seq it expects, which
//! makes replay-then-follow gapless and lets it see that retention deleted
//! messages it had not read (`Lagged`).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull::OrderedConfig};
use async_trait::async_trait;
use futures_util::StreamExt;
use futures_util::stream::{AbortHandle, BoxStream, SelectAll};
use herald_core::{
    Error, ErrorDetail, ErrorKind, LiveSubscription, Message, Pattern, ReadFrom, Result, Retention, StreamBackend,
    StreamConfig, StreamName, SubscriptionBackend, Timestamp,
};

use crate::NatsBackend;
use crate::api;
use crate::codec::Stored;
use crate::consumers::ack_info;
use crate::streams::DirectGet;

/// What an ordered consumer yields, named by its stream.
type Pushed = (StreamName, std::result::Result<async_nats::jetstream::Message, String>);

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

/// Where an ordered consumer's stream is up to.
struct Cursor {
    /// The next seq expected.
    next: u64,
    /// Set until the first message of a subscription that starts at a time.
    timed: bool,
    whole: bool,
    /// Matching is left to this side (the server refused the pattern as a filter).
    filter_here: bool,
    stop: AbortHandle,
}

struct Live {
    backend: NatsBackend,
    pattern: Pattern,
    from: Option<ReadFrom>,
    /// Per stream, the last seq delivered before this subscription was taken
    /// up again: not delivered again.
    seen: HashMap<StreamName, u64>,
    created: async_nats::Subscriber,
    /// Streams followed through ordered consumers.
    pushed: SelectAll<BoxStream<'static, Pushed>>,
    cursors: HashMap<StreamName, Cursor>,
    /// Streams read with direct gets, and their wake-up (made with the first).
    readers: Vec<Reader>,
    wake: Option<async_nats::Subscriber>,
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
    /// Starts following `config`'s stream if it can hold a match.
    async fn follow(&mut self, config: &StreamConfig, last_seq: u64, created_after: bool) -> Result<()> {
        let Some(whole) = relevant(&self.pattern, config) else {
            return Ok(());
        };
        let (cursor, start_time) = match self.from {
            _ if created_after && !matches!(self.from, Some(ReadFrom::Time(_))) => (1, None),
            None => (last_seq + 1, None),
            Some(ReadFrom::Seq(seq)) => (seq.max(1), None),
            Some(ReadFrom::Time(time)) => (1, Some(time)),
        };
        // A start by time is found by the server; what it finds already seen
        // is dropped as it is read.
        let cursor = match self.seen.get(&config.name) {
            // Saturating: `seen` is the client's word, and may be `u64::MAX`.
            Some(&seen) if start_time.is_none() => cursor.max(seen.saturating_add(1)),
            _ => cursor,
        };
        if config.retention != Retention::Limits {
            if self.wake.is_none() {
                let client = self.backend.client();
                let wake = client
                    .subscribe(self.pattern.as_str().to_owned())
                    .await
                    .map_err(|e| api::closed("subscribing", e))?;
                client.flush().await.map_err(|e| api::closed("subscribing", e))?;
                self.wake = Some(wake);
            }
            self.readers.push(Reader {
                stream: config.name.clone(),
                cursor,
                start_time,
                whole,
            });
            return Ok(());
        }
        let deliver_policy = match start_time {
            Some(time) => DeliverPolicy::ByStartTime {
                start_time: time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(time.as_nanos()))
                    .unwrap_or(time::OffsetDateTime::UNIX_EPOCH),
            },
            None => DeliverPolicy::ByStartSequence { start_sequence: cursor },
        };
        let js = async_nats::jetstream::new(self.backend.client().clone());
        let ordered = |filter_subject: String| OrderedConfig {
            filter_subject,
            deliver_policy,
            ..OrderedConfig::default()
        };
        let filter = if whole {
            String::new()
        } else {
            self.pattern.as_str().to_owned()
        };
        let (consumer, filter_here) = match js
            .create_consumer_on_stream(ordered(filter), config.name.as_str())
            .await
        {
            Ok(consumer) => (consumer, false),
            // A pattern that is no subset of the stream's subjects is not a
            // filter JetStream takes: everything comes, and is matched here.
            Err(_) if !whole => match js
                .create_consumer_on_stream(ordered(String::new()), config.name.as_str())
                .await
            {
                Ok(consumer) => (consumer, true),
                Err(err) => return unless_gone(&self.backend, &config.name, err).await,
            },
            Err(err) => return unless_gone(&self.backend, &config.name, err).await,
        };
        let messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(err) => return unless_gone(&self.backend, &config.name, err).await,
        };
        let name = config.name.clone();
        let (messages, stop) = futures_util::stream::abortable(messages);
        self.pushed.push(
            messages
                .map(move |m| (name.clone(), m.map_err(|e| e.to_string())))
                .boxed(),
        );
        self.cursors.insert(
            config.name.clone(),
            Cursor {
                next: cursor,
                timed: start_time.is_some(),
                whole,
                filter_here,
                stop,
            },
        );
        Ok(())
    }

    /// Takes in what an ordered consumer pushed: queues it, or reports the
    /// messages retention deleted before they came (`Lagged`; the message is
    /// queued after the report).
    async fn pushed(
        &mut self,
        stream: StreamName,
        pushed: std::result::Result<async_nats::jetstream::Message, String>,
    ) -> Result<()> {
        let message = match pushed {
            Ok(message) => message,
            Err(err) => {
                let gone = unless_gone(&self.backend, &stream, &err).await;
                if gone.is_ok()
                    && let Some(cursor) = self.cursors.remove(&stream)
                {
                    cursor.stop.abort();
                }
                return gone;
            }
        };
        let Some(cursor) = self.cursors.get_mut(&stream) else {
            return Ok(());
        };
        let Some(ack) = message.message.reply.as_deref().and_then(ack_info) else {
            return Ok(());
        };
        let message = Stored {
            stream: &stream,
            subject: message.message.subject.as_str(),
            seq: ack.stream_seq,
            time: ack.time,
            headers: message.message.headers.as_ref(),
            payload: message.message.payload.clone(),
        }
        .into_message()?;
        let seq = message.seq;
        if seq < cursor.next && !cursor.timed {
            // Sent again after async-nats recreated the consumer: seen already.
            return Ok(());
        }
        let (from, timed, whole) = (cursor.next, cursor.timed, cursor.whole);
        cursor.next = seq + 1;
        cursor.timed = false;
        let wanted = !cursor.filter_here || self.pattern.matches(&message.subject);
        let seen = self.seen.get(&stream).copied().unwrap_or(0);
        if wanted && seq > seen {
            self.ready.push_back(message);
        }
        if !timed && seq > from {
            let gone_to = if whole {
                seq
            } else {
                self.backend.stream_info(&stream).await?.state.first_seq.min(seq)
            };
            if gone_to > from {
                return Err(lagged(&stream, gone_to - from, seq));
            }
        }
        Ok(())
    }

    /// Starts following a stream JetStream just announced.
    async fn add_created(&mut self, advisory: &async_nats::Message) -> Result<()> {
        let Some(name) = advisory.subject.as_str().rsplit('.').next() else {
            return Ok(());
        };
        let Ok(name) = StreamName::new(name) else {
            return Ok(());
        };
        if self.readers.iter().any(|r| r.stream == name) || self.cursors.contains_key(&name) {
            return Ok(());
        }
        let info = match self.backend.stream_info(&name).await {
            Ok(info) => info,
            Err(err) if err.kind() == ErrorKind::StreamNotFound => return Ok(()),
            Err(err) => return Err(err),
        };
        self.follow(&info.config, info.state.last_seq, true).await
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
                    return Err(lagged(&stream, gone_to - from, first));
                }
            }
            i += 1;
        }
        Ok(())
    }
}

/// An error following `stream`, unless the stream is gone meanwhile.
async fn unless_gone(backend: &NatsBackend, stream: &StreamName, err: impl std::fmt::Display) -> Result<()> {
    match backend.stream_info(stream).await {
        Err(gone) if gone.kind() == ErrorKind::StreamNotFound => Ok(()),
        _ => Err(Error::new(
            ErrorKind::Closed,
            format!("following `{stream}` for a subscription: {err}"),
        )),
    }
}

/// What a waiting subscription was woken by.
enum Event {
    Pushed(Box<Pushed>),
    Woken(bool),
    Created(Option<async_nats::Message>),
    Napped,
}

/// Retention deleted `missed` messages of `stream` before they were read.
fn lagged(stream: &StreamName, missed: u64, resume_from: u64) -> Error {
    Error::new(
        ErrorKind::Lagged,
        format!("retention deleted {missed} messages of `{stream}` before they were read"),
    )
    .with_detail(ErrorDetail::Lagged { missed, resume_from })
}

impl Drop for Live {
    fn drop(&mut self) {
        // The ordered consumers go with their subscription (the server
        // removes them once they are inactive).
        for cursor in self.cursors.values() {
            cursor.stop.abort();
        }
    }
}

#[async_trait]
impl LiveSubscription for Live {
    async fn next(&mut self) -> Result<Message> {
        loop {
            if let Some(message) = self.ready.pop_front() {
                return Ok(message);
            }
            if !self.readers.is_empty() {
                self.poll().await?;
                if !self.ready.is_empty() {
                    self.naps = 0;
                    continue;
                }
            }
            let nap = NAPS[self.naps.min(NAPS.len() - 1)];
            let polling = !self.readers.is_empty();
            let pushing = !self.pushed.is_empty();
            let event = {
                let wake = async {
                    match self.wake.as_mut() {
                        Some(wake) if polling => wake.next().await.map(|_| ()),
                        _ => std::future::pending().await,
                    }
                };
                tokio::select! {
                    Some(pushed) = self.pushed.next(), if pushing => Event::Pushed(Box::new(pushed)),
                    woken = wake => Event::Woken(woken.is_some()),
                    advisory = self.created.next() => Event::Created(advisory),
                    () = tokio::time::sleep(nap), if polling => Event::Napped,
                }
            };
            match event {
                Event::Pushed(pushed) => {
                    let (stream, pushed) = *pushed;
                    self.pushed(stream, pushed).await?;
                }
                Event::Woken(true) => self.naps = 0,
                Event::Created(Some(advisory)) => self.add_created(&advisory).await?,
                Event::Woken(false) | Event::Created(None) => {
                    return Err(Error::new(ErrorKind::Closed, "the NATS connection closed"));
                }
                Event::Napped => self.naps += 1,
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
            created,
            pushed: SelectAll::new(),
            cursors: HashMap::new(),
            readers: Vec::new(),
            wake: None,
            ready: VecDeque::new(),
            naps: 0,
        };
        for info in self.list_streams().await? {
            live.follow(&info.config, info.state.last_seq, false).await?;
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
