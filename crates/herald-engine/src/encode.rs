//! Byte encodings of what the engine stores: message records, stream state and
//! stream metadata. docs/storage.md describes them.

use bytes::Bytes;
use herald_core::{Headers, Message, StreamConfig, StreamName, StreamState, Subject, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, StoreResult};

/// The record format version; bumped on any incompatible change.
const RECORD_VERSION: u8 = 1;
const FLAG_EXPLICIT_ID: u8 = 1;
const FLAG_EXPIRES: u8 = 2;
const FLAG_CONTENT_TYPE: u8 = 4;

/// A message as the writer appends it.
pub(crate) struct NewRecord<'a> {
    pub(crate) subject: &'a str,
    pub(crate) id: &'a str,
    pub(crate) explicit_id: bool,
    pub(crate) time: Timestamp,
    pub(crate) expires: Option<Timestamp>,
    pub(crate) content_type: Option<&'a str>,
    pub(crate) headers: &'a Headers,
    pub(crate) payload: &'a [u8],
}

/// Appends an encoded record to `out`: version, flags, time, [expires],
/// subject, id, [content type], headers, then the payload to the end.
pub(crate) fn encode_record(r: &NewRecord<'_>, out: &mut Vec<u8>) {
    let mut flags = 0;
    if r.explicit_id {
        flags |= FLAG_EXPLICIT_ID;
    }
    if r.expires.is_some() {
        flags |= FLAG_EXPIRES;
    }
    if r.content_type.is_some() {
        flags |= FLAG_CONTENT_TYPE;
    }
    out.push(RECORD_VERSION);
    out.push(flags);
    out.extend_from_slice(&r.time.as_nanos().to_be_bytes());
    if let Some(expires) = r.expires {
        out.extend_from_slice(&expires.as_nanos().to_be_bytes());
    }
    put_str16(out, r.subject);
    put_str16(out, r.id);
    if let Some(ct) = r.content_type {
        put_str16(out, ct);
    }
    let count = u16::try_from(r.headers.len()).expect("header count is bounded by MAX_HEADER_BYTES");
    out.extend_from_slice(&count.to_be_bytes());
    for (k, v) in r.headers {
        put_str16(out, k);
        let len = u32::try_from(v.len()).expect("header value is bounded by MAX_HEADER_BYTES");
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(v.as_bytes());
    }
    out.extend_from_slice(r.payload);
}

fn put_str16(out: &mut Vec<u8>, s: &str) {
    let len = u16::try_from(s.len()).expect("strings in records are validated below 64 KiB");
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The fixed part of a record every reader needs, decoded without copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RecordHead<'a> {
    pub(crate) time: Timestamp,
    pub(crate) expires: Option<Timestamp>,
    pub(crate) subject: &'a str,
    pub(crate) id: &'a str,
    pub(crate) explicit_id: bool,
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> StoreResult<&'a [u8]> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| corrupt("record is truncated"))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    fn u16(&mut self) -> StoreResult<u16> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().expect("took 2 bytes")))
    }

    fn u32(&mut self) -> StoreResult<u32> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().expect("took 4 bytes")))
    }

    fn u64(&mut self) -> StoreResult<u64> {
        Ok(u64::from_be_bytes(self.take(8)?.try_into().expect("took 8 bytes")))
    }

    fn str16(&mut self) -> StoreResult<&'a str> {
        let len = self.u16()? as usize;
        std::str::from_utf8(self.take(len)?).map_err(|_| corrupt("string is not UTF-8"))
    }
}

fn corrupt(reason: &str) -> EngineError {
    EngineError::Corrupt {
        table: "messages",
        reason: reason.to_string(),
    }
}

fn head_of<'a>(r: &mut Reader<'a>) -> StoreResult<(RecordHead<'a>, u8)> {
    let version = r.take(1)?[0];
    if version != RECORD_VERSION {
        return Err(corrupt(&format!("unknown record version {version}")));
    }
    let flags = r.take(1)?[0];
    let time = Timestamp(r.u64()?);
    let expires = if flags & FLAG_EXPIRES != 0 {
        Some(Timestamp(r.u64()?))
    } else {
        None
    };
    let subject = r.str16()?;
    let id = r.str16()?;
    Ok((
        RecordHead {
            time,
            expires,
            subject,
            id,
            explicit_id: flags & FLAG_EXPLICIT_ID != 0,
        },
        flags,
    ))
}

/// Decodes the fixed part of a record.
pub(crate) fn decode_head(buf: &[u8]) -> StoreResult<RecordHead<'_>> {
    head_of(&mut Reader { buf, pos: 0 }).map(|(head, _)| head)
}

/// Decodes a whole record into a [`Message`]; the payload shares `buf`.
pub(crate) fn decode_message(stream: &StreamName, seq: u64, buf: Bytes) -> StoreResult<Message> {
    let mut r = Reader { buf: &buf, pos: 0 };
    let (head, flags) = head_of(&mut r)?;
    let content_type = if flags & FLAG_CONTENT_TYPE != 0 {
        Some(r.str16()?.to_string())
    } else {
        None
    };
    let count = r.u16()?;
    let mut headers = Headers::new();
    for _ in 0..count {
        let k = r.str16()?.to_string();
        let len = r.u32()? as usize;
        let v = std::str::from_utf8(r.take(len)?).map_err(|_| corrupt("header is not UTF-8"))?;
        headers.insert(k, v.to_string());
    }
    let subject = Subject::new(head.subject).map_err(|e| corrupt(&format!("stored subject: {e}")))?;
    let message = Message {
        stream: stream.clone(),
        seq,
        subject,
        id: head.id.to_string(),
        time: head.time,
        headers,
        payload: Bytes::new(),
        content_type,
        expires: head.expires,
    };
    let payload_start = r.pos;
    Ok(Message {
        payload: buf.slice(payload_start..),
        ..message
    })
}

/// Number of u64 fields in an encoded [`StreamState`].
const STATE_FIELDS: usize = 8;

/// Encodes a stream's state as eight big-endian u64s.
pub(crate) fn encode_state(s: &StreamState) -> [u8; STATE_FIELDS * 8] {
    let fields = [
        s.messages,
        s.bytes,
        s.first_seq,
        s.first_time.map_or(0, Timestamp::as_nanos),
        s.last_seq,
        s.last_time.map_or(0, Timestamp::as_nanos),
        s.subjects,
        s.deleted,
    ];
    let mut out = [0u8; STATE_FIELDS * 8];
    for (chunk, field) in out.chunks_exact_mut(8).zip(fields) {
        chunk.copy_from_slice(&field.to_be_bytes());
    }
    out
}

/// Decodes [`encode_state`]'s output.
pub(crate) fn decode_state(buf: &[u8]) -> StoreResult<StreamState> {
    if buf.len() != STATE_FIELDS * 8 {
        return Err(EngineError::Corrupt {
            table: "stream_state",
            reason: format!("{} bytes", buf.len()),
        });
    }
    let f: Vec<u64> = buf
        .chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().expect("chunks of 8")))
        .collect();
    let time = |n: u64| (n != 0).then_some(Timestamp(n));
    Ok(StreamState {
        messages: f[0],
        bytes: f[1],
        first_seq: f[2],
        first_time: time(f[3]),
        last_seq: f[4],
        last_time: time(f[5]),
        subjects: f[6],
        deleted: f[7],
    })
}

/// What the `streams` table holds for a stream.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct StreamMeta {
    pub(crate) id: u32,
    pub(crate) created: Timestamp,
    pub(crate) config: StreamConfig,
}

impl StreamMeta {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("stream metadata always serializes")
    }

    pub(crate) fn decode(buf: &[u8]) -> StoreResult<Self> {
        serde_json::from_slice(buf).map_err(|e| EngineError::Corrupt {
            table: "streams",
            reason: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip(
            subject in "[a-z]{1,8}(\\.[a-z0-9]{1,8}){0,3}",
            id in "[a-zA-Z0-9-]{1,40}",
            explicit in any::<bool>(),
            time in 1u64..u64::MAX,
            expires in proptest::option::of(1u64..u64::MAX),
            content_type in proptest::option::of("[a-z/+]{1,30}"),
            headers in proptest::collection::btree_map("[a-z-]{1,10}", ".{0,40}", 0..5),
            payload in proptest::collection::vec(any::<u8>(), 0..600),
        ) {
            let rec = NewRecord {
                subject: &subject, id: &id, explicit_id: explicit, time: Timestamp(time),
                expires: expires.map(Timestamp), content_type: content_type.as_deref(),
                headers: &headers, payload: &payload,
            };
            let mut buf = Vec::new();
            encode_record(&rec, &mut buf);
            let head = decode_head(&buf).unwrap();
            prop_assert_eq!(head.subject, subject.as_str());
            prop_assert_eq!(head.explicit_id, explicit);
            let stream = StreamName::new("s").unwrap();
            let msg = decode_message(&stream, 9, Bytes::from(buf)).unwrap();
            prop_assert_eq!(msg.seq, 9);
            prop_assert_eq!(msg.id, id);
            prop_assert_eq!(msg.time, Timestamp(time));
            prop_assert_eq!(msg.expires, expires.map(Timestamp));
            prop_assert_eq!(msg.content_type, content_type);
            prop_assert_eq!(msg.headers, headers);
            prop_assert_eq!(&msg.payload[..], &payload[..]);
        }

        #[test]
        fn truncated_records_are_errors_not_panics(cut in 0usize..40, payload in proptest::collection::vec(any::<u8>(), 0..20)) {
            let headers = Headers::from([("k".to_string(), "v".to_string())]);
            let rec = NewRecord {
                subject: "a.b", id: "id", explicit_id: true, time: Timestamp(5), expires: Some(Timestamp(6)),
                content_type: Some("text/plain"), headers: &headers, payload: &payload,
            };
            let mut buf = Vec::new();
            encode_record(&rec, &mut buf);
            let fixed = buf.len() - payload.len();
            let cut = cut.min(fixed - 1);
            let stream = StreamName::new("s").unwrap();
            prop_assert!(decode_message(&stream, 1, Bytes::copy_from_slice(&buf[..cut])).is_err());
        }
    }

    #[test]
    fn state_round_trips() {
        let s = StreamState {
            messages: 3,
            bytes: 300,
            first_seq: 7,
            first_time: Some(Timestamp(11)),
            last_seq: 9,
            last_time: None,
            subjects: 2,
            deleted: 6,
        };
        assert_eq!(decode_state(&encode_state(&s)).unwrap(), s);
        assert!(decode_state(&[0; 5]).is_err());
    }
}
