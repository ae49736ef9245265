//! Entry points for the fuzzers (herald-testkit's `fuzz` module and the
//! cargo-fuzz crate in `fuzz/`): each feeds arbitrary bytes to one decoder
//! of what the engine stores, as a damaged or foreign file would. Not part
//! of the engine's API; docs/testing.md says how they are run.
//!
//! A decoder may refuse any input, with an error; it must never panic. What
//! it accepts must survive being written back: encoding the decoded value
//! and decoding that again gives the same value.
#![doc(hidden)]

use bytes::Bytes;
use herald_core::StreamName;

use crate::consumers::{ConsumerRecord, ConsumerState};
use crate::encode::{self, NewRecord, StreamMeta};

/// The key the fuzzed records are read under.
const KEY: encode::RecordKey = (3, 7);

/// Decodes `data` as a message record (its head, then the whole message):
/// once as it is, as a damaged file would hold it (nearly every change then
/// fails the checksum), and once sealed with the checksum it lacks, so that
/// every change reaches the decoders of the fields. What decodes is encoded
/// again and must decode to the same message.
///
/// # Panics
///
/// When a decoder panics, or the head and the message disagree, or the
/// message does not survive a round trip.
pub fn message_record(data: &[u8]) {
    one_record(data);
    let mut sealed = data.to_vec();
    encode::seal(KEY, &mut sealed, 0);
    one_record(&sealed);
}

fn one_record(data: &[u8]) {
    let head = encode::decode_head(KEY, data);
    let stream = StreamName::new("fuzz").expect("a valid stream name");
    let Ok(message) = encode::decode_message(&stream, KEY, Bytes::copy_from_slice(data)) else {
        return;
    };
    let head = head.expect("a record whose message decodes has a head that decodes");
    assert_eq!(
        head.subject,
        message.subject.as_str(),
        "head and message disagree on the subject"
    );
    assert_eq!(head.id, message.id, "head and message disagree on the id");
    assert_eq!((head.time, head.expires), (message.time, message.expires));
    let mut again = Vec::new();
    encode::encode_record(
        KEY,
        &NewRecord {
            subject: message.subject.as_str(),
            id: &message.id,
            explicit_id: head.explicit_id,
            time: message.time,
            expires: message.expires,
            content_type: message.content_type.as_deref(),
            headers: &message.headers,
            payload: &message.payload,
        },
        &mut again,
    );
    let back = encode::decode_message(&stream, KEY, Bytes::from(again.clone()))
        .expect("a record encoded from a decoded message decodes");
    assert_eq!(
        back, message,
        "a decoded message changed on its way through the encoder"
    );
    let back_head = encode::decode_head(KEY, &again).expect("a re-encoded record has a head");
    assert_eq!(back_head, head, "a decoded head changed on its way through the encoder");
}

/// Decodes `data` as a stream's state; what decodes encodes to `data` again
/// (the encoding has exactly one form per state).
///
/// # Panics
///
/// When the decoder panics or the state does not encode back to `data`.
pub fn stream_state(data: &[u8]) {
    if let Ok(state) = encode::decode_state(data) {
        assert_eq!(
            encode::encode_state(&state).as_slice(),
            data,
            "a stream state did not encode back to its bytes"
        );
    }
}

/// Decodes `data` as a stream's metadata (JSON); what decodes is encoded
/// again and must decode to the same metadata.
///
/// # Panics
///
/// When the decoder panics or the metadata does not survive a round trip.
pub fn stream_meta(data: &[u8]) {
    if let Ok(meta) = StreamMeta::decode(data) {
        let back = StreamMeta::decode(&meta.encode()).expect("encoded stream metadata decodes");
        assert_eq!(back, meta, "stream metadata changed on its way through the encoder");
    }
}

/// Decodes `data` as a consumer's saved record (JSON) and restores the
/// consumer's state from it, as a restart does; the state's own record,
/// once written, must restore to the same record.
///
/// # Panics
///
/// When the decoder or the restore panics, or a saved record does not come
/// back the same after a second restart.
pub fn consumer_record(data: &[u8]) {
    let Ok(record) = ConsumerRecord::decode(data) else {
        return;
    };
    let saved = ConsumerState::restore(record).record().encode();
    let record = ConsumerRecord::decode(&saved).expect("a saved consumer record decodes");
    let again = ConsumerState::restore(record).record().encode();
    assert_eq!(
        String::from_utf8_lossy(&again),
        String::from_utf8_lossy(&saved),
        "a consumer record changed over a second restart"
    );
}
