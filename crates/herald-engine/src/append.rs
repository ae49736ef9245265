//! Publishing: routing to a stream, the checks (size, dedup, expected
//! sequences, discard-new limits), then the append and the limits it triggers.
//!
//! Every check for every message of a request runs before the first write, so a
//! rejected request (or batch) changes nothing.

use std::collections::HashMap;

use herald_core::{
    Discard, Error, ErrorKind, OutgoingMessage, PublishAck, Result, StreamConfig, StreamName, StreamState, Subject,
    Timestamp,
};

use crate::encode::{self, NewRecord, StreamMeta};
use crate::error::StoreResult;
use crate::store::{StreamEntry, Tables};
use crate::writer::Writer;

/// A request that passed every check: what to append, duplicates, and the
/// encoded records.
type Checked = (Vec<Planned>, Vec<Slot>, Vec<u8>);

/// One message that passed every check, ready to append.
struct Planned {
    seq: u64,
    subject: Subject,
    time: Timestamp,
    expires: Option<Timestamp>,
    /// The encoded record's place in the request's arena.
    record: std::ops::Range<usize>,
    dedup_id: Option<String>,
}

impl Writer {
    /// Publishes `messages` atomically. The outer error aborts the transaction;
    /// the inner one rejects this request alone.
    pub(crate) fn publish(
        &mut self,
        tables: &mut Tables<'_>,
        messages: Vec<OutgoingMessage>,
        now: Timestamp,
    ) -> StoreResult<Result<Vec<PublishAck>>> {
        if messages.is_empty() {
            return Ok(Err(Error::new(
                ErrorKind::InvalidRequest,
                "a batch needs at least one message",
            )));
        }
        for m in &messages {
            if let Err(err) = m.validate() {
                return Ok(Err(err));
            }
        }
        let (id, created) = match self.route(&messages[0].subject, now) {
            Ok(route) => route,
            Err(err) => return Ok(Err(err)),
        };
        let target = match &created {
            Some(entry) => entry.meta.config.name.clone(),
            None => self.streams[&id].meta.config.name.clone(),
        };
        // Streams never capture overlapping subjects, so a subject the target
        // captures belongs to no other stream.
        let target_config = match &created {
            Some(entry) => &entry.meta.config,
            None => &self.streams[&id].meta.config,
        };
        if let Some(m) = messages[1..].iter().find(|m| !target_config.captures(&m.subject)) {
            return Ok(Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "a batch must go to one stream; `{}` is not captured by stream `{target}`",
                    m.subject
                ),
            )));
        }
        // An expectation is checked against live messages: one whose TTL has
        // passed is gone, even if the timer has not swept it yet.
        if created.is_none() && messages.iter().any(|m| m.expected_last_subject_seq.is_some()) {
            self.expire_due(tables, now, Some(id))?;
        }
        let mut entry = match created {
            Some(entry) => entry,
            None => self.streams.get(&id).expect("routed to a known stream").clone(),
        };
        let (planned, slots, arena) = match self.check(tables, &entry, &messages, now)? {
            Ok(checked) => checked,
            Err(err) => return Ok(Err(err)),
        };
        // Every check passed: from here on the request succeeds or the batch aborts.
        let is_new = !self.streams.contains_key(&id);
        if is_new {
            tables.save_meta(&entry.meta)?;
            tables
                .counters
                .insert(crate::tables::NEXT_STREAM_ID, u64::from(id) + 1)?;
            self.next_id = id + 1;
            self.names.insert(entry.meta.config.name.clone(), id);
            self.batch.catalog_changed = true;
        }
        let mut acks = Vec::with_capacity(messages.len());
        let mut planned = planned.into_iter();
        let mut next = planned.next();
        let window = entry.meta.config.duplicate_window;
        let dedup = self.dedup.entry(id).or_default();
        if let Some(window) = window {
            dedup.prune(now, window);
        }
        for slot in slots {
            match slot {
                Slot::Duplicate(seq) => acks.push(PublishAck {
                    stream: entry.meta.config.name.clone(),
                    seq,
                    duplicate: true,
                }),
                Slot::Append => {
                    let p = next.take().expect("one plan per appended message");
                    next = planned.next();
                    tables.append(
                        &mut entry,
                        p.seq,
                        p.subject.as_str(),
                        p.time,
                        p.expires,
                        &arena[p.record],
                    )?;
                    if let (Some(dedup_id), Some(_)) = (&p.dedup_id, window) {
                        dedup.insert(dedup_id, p.seq, p.time);
                    }
                    acks.push(PublishAck {
                        stream: entry.meta.config.name.clone(),
                        seq: p.seq,
                        duplicate: false,
                    });
                }
            }
        }
        if entry.meta.config.retention == herald_core::Retention::Interest {
            // No consumer is interested: nothing is owed, so nothing is kept.
            for (m, ack) in messages.iter().zip(&acks) {
                if !ack.duplicate && self.registry.nobody_wants(id, m.subject.as_str()) {
                    tables.delete(&mut entry, ack.seq)?;
                }
            }
        }
        let config = entry.meta.config.clone();
        self.enforce_limits(tables, &mut entry, &config, Some(&messages))?;
        self.streams.insert(id, entry);
        self.touch(id);
        Ok(Ok(acks))
    }

    /// The name of the stream capturing `subject`, if any.
    pub(crate) fn stream_of(&self, subject: &Subject) -> Option<StreamName> {
        self.streams
            .values()
            .find(|e| e.meta.config.captures(subject))
            .map(|e| e.meta.config.name.clone())
    }

    /// The stream id for `subject`, and a provisional entry when the publish would
    /// create the stream.
    fn route(&self, subject: &Subject, now: Timestamp) -> Result<(u32, Option<StreamEntry>)> {
        if let Some(name) = self.stream_of(subject) {
            return Ok((self.names[&name], None));
        }
        let no_stream = || format!("no stream captures subject `{subject}`");
        if !self.options.auto_create_streams || subject.is_reserved() {
            return Err(Error::new(ErrorKind::SubjectConflict, no_stream()));
        }
        let name = StreamName::new(subject.first_token()).map_err(|e| {
            Error::new(
                ErrorKind::SubjectConflict,
                format!(
                    "{}, and `{}` cannot name a new one: {e}",
                    no_stream(),
                    subject.first_token()
                ),
            )
        })?;
        if self.names.contains_key(&name) {
            return Err(Error::new(
                ErrorKind::SubjectConflict,
                format!("{}; stream `{name}` exists but does not capture it", no_stream()),
            ));
        }
        let config = StreamConfig::with_name(name);
        self.check_overlap(&config, None)?;
        let id = self.next_stream_id();
        let state = StreamState {
            first_seq: 1,
            ..StreamState::default()
        };
        Ok((
            id,
            Some(StreamEntry {
                meta: StreamMeta {
                    id,
                    created: now,
                    config,
                },
                state,
            }),
        ))
    }

    /// Runs every check and encodes the records; writes nothing.
    fn check(
        &mut self,
        tables: &Tables<'_>,
        entry: &StreamEntry,
        messages: &[OutgoingMessage],
        now: Timestamp,
    ) -> StoreResult<Result<Checked>> {
        let config = &entry.meta.config;
        let id = entry.id();
        let stream = &config.name;
        let mut last_seq = entry.state.last_seq;
        let mut count = entry.state.messages;
        let mut bytes = entry.state.bytes;
        let mut time = entry.state.last_time.map_or(now, |t| t.max(now));
        let mut subject_last: HashMap<&str, (u64, u64)> = HashMap::new();
        let mut dedup = self.dedup.remove(&id).unwrap_or_default();
        if let Some(window) = config.duplicate_window {
            dedup.prune(now, window);
        }
        let slots = plan_slots(messages, entry, &dedup);
        self.dedup.insert(id, dedup);
        let mut planned = Vec::with_capacity(messages.len());
        // One buffer holds every record of the request: one allocation, not one per message.
        let mut arena = Vec::with_capacity(messages.iter().map(|m| m.payload.len() + 96).sum());
        let mut id_buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
        for (m, slot) in messages.iter().zip(&slots) {
            if matches!(slot, Slot::Duplicate(_)) {
                continue;
            }
            let size = m.payload.len();
            if size > config.max_payload.get() as usize {
                let limit = u64::from(config.max_payload.get());
                return Ok(Err(Error::payload_too_large(
                    size as u64,
                    limit,
                    &format!("stream `{stream}`'s"),
                )));
            }
            if let Some(expected) = m.expected_last_seq
                && expected != last_seq
            {
                return Ok(Err(Error::wrong_expected_seq(
                    &format!("stream `{stream}`"),
                    expected,
                    last_seq,
                )));
            }
            let subject = m.subject.as_str();
            let (subject_seq, subject_count) = match subject_last.get(subject) {
                Some(known) => *known,
                None => tables
                    .subject_info(id, subject)?
                    .map_or((0, 0), |(_, last, count)| (last, count)),
            };
            if let Some(expected) = m.expected_last_subject_seq
                && expected != subject_seq
            {
                return Ok(Err(Error::wrong_expected_seq(
                    &format!("subject `{subject}`"),
                    expected,
                    subject_seq,
                )));
            }
            let seq = last_seq + 1;
            time = time.max(now);
            let expires = m.ttl.map(|ttl| time.saturating_add(ttl));
            let msg_id = match &m.id {
                Some(id) => id.as_str(),
                None => self.generate_id(time, &mut id_buf),
            };
            let start = arena.len();
            encode::encode_record(
                (id, seq),
                &NewRecord {
                    subject,
                    id: msg_id,
                    explicit_id: m.id.is_some(),
                    time,
                    expires,
                    content_type: m.content_type.as_deref(),
                    headers: &m.headers,
                    payload: &m.payload,
                },
                &mut arena,
            );
            let record = start..arena.len();
            // Interest and work-queue streams owe their messages to consumers: at a
            // limit they refuse new messages rather than drop owed ones.
            if config.discard == Discard::New || config.retention != herald_core::Retention::Limits {
                let full = |what: &str, limit: u64| {
                    Err(Error::new(
                        ErrorKind::StreamFull,
                        format!("stream `{stream}` is at its {what} limit of {limit} and discards new messages"),
                    ))
                };
                if let Some(max) = config.max_msgs
                    && count + 1 > max.get()
                {
                    return Ok(full("max_msgs", max.get()));
                }
                if let Some(max) = config.max_bytes
                    && bytes + record.len() as u64 > max.get()
                {
                    return Ok(full("max_bytes", max.get()));
                }
                if let Some(max) = config.max_msgs_per_subject
                    && subject_count + 1 > max.get()
                {
                    return Ok(full("max_msgs_per_subject", max.get()));
                }
            }
            last_seq = seq;
            count += 1;
            bytes += record.len() as u64;
            subject_last.insert(subject, (seq, subject_count + 1));
            planned.push(Planned {
                seq,
                subject: m.subject.clone(),
                time,
                expires,
                record,
                dedup_id: m.id.clone(),
            });
        }
        Ok(Ok((planned, slots, arena)))
    }

    /// A fresh message id: a UUIDv7 from the message time and the writer's own
    /// generator (seeded from the OS once), so ids cost no syscall each.
    fn generate_id<'b>(&mut self, time: Timestamp, buf: &'b mut [u8; uuid::fmt::Hyphenated::LENGTH]) -> &'b str {
        let mut random = [0u8; 10];
        self.rng.fill(&mut random);
        let id = uuid::Builder::from_unix_timestamp_millis(time.as_nanos() / 1_000_000, &random).into_uuid();
        id.hyphenated().encode_lower(buf)
    }

    /// The id the next created stream gets.
    pub(crate) fn next_stream_id(&self) -> u32 {
        self.next_id
    }
}

/// Whether each message of a request is appended or is a duplicate of a seq.
pub(crate) enum Slot {
    Append,
    Duplicate(u64),
}

/// Decides duplicates: an id seen in the window, or earlier in the same request,
/// is a duplicate of that message's seq.
fn plan_slots(messages: &[OutgoingMessage], entry: &StreamEntry, dedup: &crate::dedup::DedupWindow) -> Vec<Slot> {
    let dedup_on = entry.meta.config.duplicate_window.is_some();
    let mut in_batch: HashMap<&str, u64> = HashMap::new();
    let mut next_seq = entry.state.last_seq + 1;
    messages
        .iter()
        .map(|m| {
            if let (true, Some(id)) = (dedup_on, m.id.as_deref()) {
                if let Some(seq) = dedup.get(id).or_else(|| in_batch.get(id).copied()) {
                    return Slot::Duplicate(seq);
                }
                in_batch.insert(id, next_seq);
            }
            next_seq += 1;
            Slot::Append
        })
        .collect()
}
