//! Byte encodings of what the engine stores: message records, stream state and
//! stream metadata. docs/storage.md describes them.

use bytes::Bytes;
use herald_core::{Headers, Message, StreamConfig, StreamName, StreamState, Subject, Timestamp};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, StoreResult};

/// The record format version; bumped on any incompatible change. Version 2
/// ends each record with its checksum.
const RECORD_VERSION: u8 = 2;
/// Records written before checksums: still read, with nothing to verify.
const UNCHECKED_VERSION: u8 = 1;
/// A CRC-32 of the record's key and body, big-endian, after the payload.
const CHECKSUM_LEN: usize = 4;
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

/// The key a record is stored under: (stream id, seq). The checksum covers
/// it, so a record found under another key than its own is caught too.
pub(crate) type RecordKey = (u32, u64);

/// Appends an encoded record to `out`: version, flags, time, [expires],
/// subject, id, [content type], headers, the payload, then the checksum of
/// `key` and all that.
pub(crate) fn encode_record(key: RecordKey, r: &NewRecord<'_>, out: &mut Vec<u8>) {
    let start = out.len();
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
    seal(key, out, start);
}

/// Appends the checksum of `key` and `out[start..]` to `out`.
pub(crate) fn seal(key: RecordKey, out: &mut Vec<u8>, start: usize) {
    let sum = checksum(key, &out[start..]);
    out.extend_from_slice(&sum.to_be_bytes());
}

fn checksum((stream, seq): RecordKey, body: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&stream.to_be_bytes());
    hasher.update(&seq.to_be_bytes());
    hasher.update(body);
    hasher.finalize()
}

/// The record's body (all but its checksum), once the checksum holds for the
/// key it was found under.
fn verified(key: RecordKey, buf: &[u8]) -> StoreResult<&[u8]> {
    match buf.first() {
        Some(&RECORD_VERSION) => {
            let Some(split) = buf.len().checked_sub(CHECKSUM_LEN) else {
                return Err(corrupt_at(key, "the record is truncated"));
            };
            let (body, sum) = buf.split_at(split);
            if checksum(key, body).to_be_bytes()[..] != sum[..] {
                return Err(corrupt_at(key, "its checksum does not match: the data file is damaged"));
            }
            Ok(body)
        }
        Some(&UNCHECKED_VERSION) => Ok(buf),
        Some(version) => Err(corrupt_at(key, &format!("unknown record version {version}"))),
        None => Err(corrupt_at(key, "the record is empty")),
    }
}

fn corrupt_at((stream, seq): RecordKey, reason: &str) -> EngineError {
    corrupt(&format!("seq {seq} of stream #{stream}: {reason}"))
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

/// Decodes the head of a verified body; the version was checked by [`verified`].
fn head_of<'a>(r: &mut Reader<'a>) -> StoreResult<(RecordHead<'a>, u8)> {
    r.take(1)?;
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

/// Decodes the fixed part of the record stored under `key`, once verified.
pub(crate) fn decode_head(key: RecordKey, buf: &[u8]) -> StoreResult<RecordHead<'_>> {
    let body = verified(key, buf)?;
    head_of(&mut Reader { buf: body, pos: 0 }).map(|(head, _)| head)
}

/// Decodes the whole record stored under `key` into a [`Message`] of `stream`,
/// once verified; the payload shares `buf`.
pub(crate) fn decode_message(stream: &StreamName, key: RecordKey, buf: Bytes) -> StoreResult<Message> {
    let body_len = verified(key, &buf)?.len();
    let seq = key.1;
    let mut r = Reader {
        buf: &buf[..body_len],
        pos: 0,
    };
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
        payload: buf.slice(payload_start..body_len),
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
            encode_record((3, 9), &rec, &mut buf);
            let head = decode_head((3, 9), &buf).unwrap();
            prop_assert_eq!(head.subject, subject.as_str());
            prop_assert_eq!(head.explicit_id, explicit);
            let stream = StreamName::new("s").unwrap();
            let msg = decode_message(&stream, (3, 9), Bytes::from(buf)).unwrap();
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
            encode_record((1, 1), &rec, &mut buf);
            let fixed = buf.len() - payload.len();
            let cut = cut.min(fixed - 1);
            let stream = StreamName::new("s").unwrap();
            prop_assert!(decode_message(&stream, (1, 1), Bytes::copy_from_slice(&buf[..cut])).is_err());
        }

        #[test]
        fn any_flipped_bit_or_other_key_is_caught(
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            bit in any::<prop::sample::Index>(),
        ) {
            let headers = Headers::from([("k".to_string(), "v".to_string())]);
            let rec = NewRecord {
                subject: "a.b", id: "id", explicit_id: true, time: Timestamp(5), expires: None,
                content_type: None, headers: &headers, payload: &payload,
            };
            let mut buf = Vec::new();
            encode_record((2, 40), &rec, &mut buf);
            let stream = StreamName::new("s").unwrap();
            prop_assert!(decode_message(&stream, (2, 40), Bytes::copy_from_slice(&buf)).is_ok());
            // The same record under another key is someone else's.
            prop_assert!(decode_head((2, 41), &buf).is_err());
            prop_assert!(decode_head((3, 40), &buf).is_err());
            let bit = bit.index(buf.len() * 8);
            buf[bit / 8] ^= 1 << (bit % 8);
            let err = decode_message(&stream, (2, 40), Bytes::from(buf)).unwrap_err();
            prop_assert!(err.to_string().contains("seq 40 of stream #2"), "{}", err);
        }
    }

    #[test]
    fn records_written_before_checksums_are_still_read() {
        // Version 1: no checksum; subject `a`, id `i`, no headers, payload `p`.
        let mut old = vec![1, 0];
        old.extend_from_slice(&7u64.to_be_bytes());
        old.extend_from_slice(&[0, 1, b'a', 0, 1, b'i', 0, 0, b'p']);
        let stream = StreamName::new("s").unwrap();
        let msg = decode_message(&stream, (1, 4), Bytes::from(old)).unwrap();
        assert_eq!((msg.seq, msg.subject.as_str(), msg.id.as_str()), (4, "a", "i"));
        assert_eq!(&msg.payload[..], b"p");
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
