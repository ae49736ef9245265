//! Herald messages as NATS messages: what goes in headers on the way in, and
//! how a stored JetStream message becomes a [`Message`] on the way out.

use std::str::FromStr;
use std::time::Duration;

use async_nats::HeaderMap;
use async_nats::header::{HeaderName, HeaderValue};
use bytes::Bytes;
use herald_core::{
    Error, ErrorDetail, ErrorKind, Headers, Message, OutgoingMessage, Result, StreamName, Subject, Timestamp, dlq,
    is_dead_letter_subject,
};

use crate::api::parse_time;

/// JetStream's dedup id; set only for ids the publisher chose.
pub(crate) const MSG_ID: &str = "Nats-Msg-Id";
/// Where a generated id (or any id, on a stream without dedup) is kept.
pub(crate) const HERALD_ID: &str = "Herald-Msg-Id";
/// The content type of the payload.
pub(crate) const CONTENT_TYPE: &str = "Herald-Content-Type";
/// JetStream's per-message TTL (whole seconds).
pub(crate) const TTL: &str = "Nats-TTL";
const EXPECTED_LAST_SEQ: &str = "Nats-Expected-Last-Sequence";
const EXPECTED_LAST_SUBJECT_SEQ: &str = "Nats-Expected-Last-Subject-Sequence";
/// Headers a direct get adds about the stored message.
pub(crate) const SUBJECT: &str = "Nats-Subject";
pub(crate) const SEQUENCE: &str = "Nats-Sequence";
pub(crate) const TIME_STAMP: &str = "Nats-Time-Stamp";
pub(crate) const NUM_PENDING: &str = "Nats-Num-Pending";

/// Whether a header is in JetStream's own `Nats-` namespace, in any case
/// (compared as bytes: a name may hold characters of several bytes).
fn is_jetstream_header(name: &str) -> bool {
    name.as_bytes()
        .get(..5)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case(b"nats-"))
}

/// 65,535 bytes: the longest header block JetStream stores (it keeps the
/// length in 16 bits), as NATS writes it: `NATS/1.0\r\n`, a
/// `name: value\r\n` line per header, and a blank line.
const JETSTREAM_MAX_HEADER_BLOCK: usize = u16::MAX as usize;

/// 2.5 KiB: what a message's header block leaves free for its dead letter
/// to add (docs/semantics.md, "Dead letters"): the `herald-dlq-*` headers
/// ([`dlq::ADDED_HEADER_BYTES`]) and 512 bytes for their line ends and the
/// letter's id, which may be longer than the message's.
const DEAD_LETTER_ROOM: usize = dlq::ADDED_HEADER_BYTES + 512;

/// The headers of `message` as JetStream takes them, all but its id (which
/// depends on the stream: see [`with_id`]). Encoding is also the check that
/// the headers can travel, so it is done once, before anything is created.
///
/// # Errors
///
/// `InvalidRequest` for a header NATS cannot carry or one in JetStream's own
/// `Nats-` namespace; `HeadersTooLarge` for a header block over what
/// JetStream stores, less the room its dead letter needs (docs/nats.md).
pub(crate) fn encode(message: &OutgoingMessage) -> Result<HeaderMap> {
    let mut headers = HeaderMap::new();
    for (name, value) in &message.headers {
        if is_jetstream_header(name) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!("header `{name}` is in JetStream's reserved `Nats-` namespace"),
            ));
        }
        headers.append(header_name(name)?, header_value(name, value)?);
    }
    if let Some(id) = &message.id {
        // Checked here; placed by `with_id` once the stream is known.
        header_value("id", id)?;
    }
    if let Some(content_type) = &message.content_type {
        headers.insert(
            HeaderName::from_static(CONTENT_TYPE),
            header_value("content type", content_type)?,
        );
    }
    if let Some(seq) = message.expected_last_seq {
        headers.insert(HeaderName::from_static(EXPECTED_LAST_SEQ), HeaderValue::from(seq));
    }
    if let Some(seq) = message.expected_last_subject_seq {
        headers.insert(
            HeaderName::from_static(EXPECTED_LAST_SUBJECT_SEQ),
            HeaderValue::from(seq),
        );
    }
    if let Some(ttl) = message.ttl {
        headers.insert(HeaderName::from_static(TTL), HeaderValue::from(ttl_text(ttl)));
    }
    check_block(message, &headers)?;
    Ok(headers)
}

/// Checks that `headers`, with the id [`with_id`] adds, fit in a JetStream
/// header block, with room left for a dead letter's own headers unless the
/// message is a dead letter.
fn check_block(message: &OutgoingMessage, headers: &HeaderMap) -> Result<()> {
    let line = |name: &str, value: &str| name.len() + ": ".len() + value.len() + "\r\n".len();
    // The longer of the two names it may go under.
    let id_name = if MSG_ID.len() > HERALD_ID.len() {
        MSG_ID
    } else {
        HERALD_ID
    };
    let id = match &message.id {
        Some(id) => line(id_name, id),
        None => line(HERALD_ID, &uuid::Uuid::nil().to_string()),
    };
    let lines: usize = headers
        .iter()
        .map(|(name, values)| values.iter().map(|v| line(name.as_ref(), v.as_str())).sum::<usize>())
        .sum();
    let block = "NATS/1.0\r\n".len() + lines + id + "\r\n".len();
    let limit = match is_dead_letter_subject(message.subject.as_str()) {
        true => JETSTREAM_MAX_HEADER_BLOCK,
        false => JETSTREAM_MAX_HEADER_BLOCK - DEAD_LETTER_ROOM,
    };
    if block <= limit {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::HeadersTooLarge,
        format!(
            "headers take {block} bytes as JetStream stores them, over the {limit} the NATS backend takes \
             (JetStream's {JETSTREAM_MAX_HEADER_BLOCK}, less room for a dead letter's headers)"
        ),
    )
    .with_detail(ErrorDetail::TooLarge {
        size: block as u64,
        limit: limit as u64,
    }))
}

/// Adds `message`'s id to its encoded headers: `Nats-Msg-Id` when the stream
/// has a duplicate window (`dedup`) and the publisher chose the id, otherwise
/// carried in `Herald-Msg-Id` (generated when there is none).
pub(crate) fn with_id(mut headers: HeaderMap, message: &OutgoingMessage, dedup: bool) -> Result<HeaderMap> {
    match (&message.id, dedup) {
        (Some(id), true) => headers.insert(HeaderName::from_static(MSG_ID), header_value("id", id)?),
        (Some(id), false) => headers.insert(HeaderName::from_static(HERALD_ID), header_value("id", id)?),
        (None, _) => headers.insert(
            HeaderName::from_static(HERALD_ID),
            HeaderValue::from(uuid::Uuid::now_v7().to_string()),
        ),
    }
    Ok(headers)
}

/// JetStream counts TTLs in whole seconds: a TTL is rounded up, never down.
pub(crate) fn ttl_text(ttl: Duration) -> String {
    let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    format!("{}s", secs.max(1))
}

fn parse_ttl(text: &str) -> Option<Duration> {
    let text = text.trim();
    let secs = text.strip_suffix('s').unwrap_or(text);
    secs.parse::<u64>().ok().map(Duration::from_secs)
}

fn header_name(name: &str) -> Result<HeaderName> {
    HeaderName::from_str(name).map_err(|e| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!("header name `{}` cannot travel over NATS: {e}", name.escape_debug()),
        )
    })
}

fn header_value(name: &str, value: &str) -> Result<HeaderValue> {
    HeaderValue::from_str(value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidRequest,
            format!("the value of `{}` cannot travel over NATS: {e}", name.escape_debug()),
        )
    })
}

/// A stored message as Herald shows it: JetStream's and Herald's own headers
/// become fields and the rest stay headers.
pub(crate) struct Stored<'a> {
    pub(crate) stream: &'a StreamName,
    pub(crate) subject: &'a str,
    pub(crate) seq: u64,
    pub(crate) time: Timestamp,
    pub(crate) headers: Option<&'a HeaderMap>,
    pub(crate) payload: Bytes,
}

impl Stored<'_> {
    pub(crate) fn into_message(self) -> Result<Message> {
        let mut headers = Headers::new();
        let mut id = None;
        let mut content_type = None;
        let mut expires = None;
        for (name, values) in self.headers.into_iter().flat_map(HeaderMap::iter) {
            let name: &str = name.as_ref();
            let Some(value) = values.last().map(HeaderValue::as_str) else {
                continue;
            };
            match name {
                MSG_ID | HERALD_ID => id = Some(value.to_owned()),
                CONTENT_TYPE => content_type = Some(value.to_owned()),
                TTL => expires = parse_ttl(value).map(|ttl| self.time.saturating_add(ttl)),
                _ if is_jetstream_header(name) => {}
                _ => {
                    headers.insert(name.to_owned(), value.to_owned());
                }
            }
        }
        Ok(Message {
            stream: self.stream.clone(),
            seq: self.seq,
            subject: Subject::new(self.subject).map_err(|e| {
                Error::new(
                    ErrorKind::Internal,
                    format!("stream `{}` holds a subject Herald cannot name: {e}", self.stream),
                )
            })?,
            id: id.unwrap_or_else(|| format!("{}-{}", self.stream, self.seq)),
            time: self.time,
            headers,
            payload: self.payload,
            content_type,
            expires,
        })
    }
}

/// A message from a direct get: everything about it is in its headers.
pub(crate) fn from_direct(stream: &StreamName, message: &async_nats::Message) -> Result<Message> {
    let headers = message
        .headers
        .as_ref()
        .ok_or_else(|| Error::new(ErrorKind::Internal, "a direct get answered without headers"))?;
    let get = |name: &str| headers.get(name).map(HeaderValue::as_str);
    let seq = get(SEQUENCE)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::new(ErrorKind::Internal, "a direct get answered without a sequence"))?;
    let subject = get(SUBJECT).unwrap_or_default();
    let time = get(TIME_STAMP).and_then(parse_time).unwrap_or_default();
    Stored {
        stream,
        subject,
        seq,
        time,
        headers: Some(headers),
        payload: message.payload.clone(),
    }
    .into_message()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls_round_up_to_whole_seconds() {
        assert_eq!(ttl_text(Duration::from_millis(1)), "1s");
        assert_eq!(ttl_text(Duration::from_millis(1500)), "2s");
        assert_eq!(ttl_text(Duration::from_secs(10)), "10s");
        assert_eq!(parse_ttl("10s"), Some(Duration::from_secs(10)));
    }

    #[test]
    fn the_largest_header_block_taken_leaves_room_for_its_dead_letter() {
        let with_headers = |bytes: usize| {
            let subject = Subject::new(format!("s.{}", "x".repeat(510))).unwrap();
            OutgoingMessage::new(subject, "x")
                .id("i".repeat(herald_core::MAX_ID_LEN))
                .content_type("c".repeat(255))
                .header("big", "h".repeat(bytes))
        };
        let refused = encode(&with_headers(herald_core::MAX_HEADER_BYTES - 5)).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::HeadersTooLarge);
        // The largest taken, found by halving.
        let (mut taken, mut refused) = (0, herald_core::MAX_HEADER_BYTES);
        while refused - taken > 1 {
            let mid = (taken + refused) / 2;
            match encode(&with_headers(mid)) {
                Ok(_) => taken = mid,
                Err(_) => refused = mid,
            }
        }
        assert!(taken > 60 * 1024, "{taken}");
        let sent = with_headers(taken);
        let stored = Message {
            stream: StreamName::new(format!("${}", "s".repeat(64))).unwrap(),
            seq: u64::MAX,
            subject: sent.subject.clone(),
            id: sent.id.clone().unwrap(),
            time: Timestamp(0),
            headers: sent.headers.clone(),
            payload: sent.payload.clone(),
            content_type: sent.content_type.clone(),
            expires: None,
        };
        let consumer = herald_core::ConsumerName::new("c".repeat(64)).unwrap();
        let reason = "é".repeat(dlq::MAX_REASON_BYTES);
        let letter = herald_core::dead_letter(&stored.stream, &consumer, &stored, u32::MAX, &reason).unwrap();
        let headers = with_id(encode(&letter).unwrap(), &letter, true).unwrap();
        let line = |name: &str, value: &str| name.len() + value.len() + 4;
        let block: usize = headers
            .iter()
            .map(|(name, values)| values.iter().map(|v| line(name.as_ref(), v.as_str())).sum::<usize>())
            .sum();
        assert!(block + 12 <= JETSTREAM_MAX_HEADER_BLOCK, "{block}");
    }

    #[test]
    fn headers_in_the_nats_namespace_are_refused() {
        let subject = Subject::new("a.b").unwrap();
        let message = OutgoingMessage::new(subject, "x").header("Nats-Expected-Stream", "other");
        assert_eq!(encode(&message).unwrap_err().kind(), ErrorKind::InvalidRequest);
        let subject = Subject::new("a.b").unwrap();
        let message = OutgoingMessage::new(subject, "x").header("nats-é", "v");
        assert_eq!(encode(&message).unwrap_err().kind(), ErrorKind::InvalidRequest);
    }

    #[test]
    fn a_header_name_of_several_byte_characters_is_not_cut_inside_one() {
        // `é` is bytes 4 and 5: a slice at byte 5 would panic.
        let subject = Subject::new("a.b").unwrap();
        let message = OutgoingMessage::new(subject, "x").header("abcdé", "v");
        let _ = encode(&message);
    }

    #[test]
    fn a_message_round_trips_through_headers() {
        let subject = Subject::new("a.b").unwrap();
        let out = OutgoingMessage::new(subject, "x")
            .id("k1")
            .header("trace", "t-1")
            .content_type("text/plain")
            .ttl(Duration::from_secs(5));
        let headers = with_id(encode(&out).unwrap(), &out, true).unwrap();
        let stream = StreamName::new("a").unwrap();
        let message = Stored {
            stream: &stream,
            subject: "a.b",
            seq: 3,
            time: Timestamp(1_000_000_000),
            headers: Some(&headers),
            payload: Bytes::from_static(b"x"),
        }
        .into_message()
        .unwrap();
        assert_eq!(message.id, "k1");
        assert_eq!(message.content_type.as_deref(), Some("text/plain"));
        assert_eq!(message.expires, Some(Timestamp(6_000_000_000)));
        assert_eq!(message.headers.len(), 1);
    }
}
