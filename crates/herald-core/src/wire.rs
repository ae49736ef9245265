//! The frames of Herald's WebSocket protocol (version [`PROTOCOL_VERSION`]),
//! shared by the server and the remote client.
//!
//! Every frame is one JSON text message. A client sends requests
//! `{"id": 7, "op": "publish", …}`; the server answers each with
//! `{"type": "ok", "id": 7, "result": …}` or `{"type": "error", "id": 7,
//! "error": {"code": 2001, …}}`, in any order, and pushes `message` frames for
//! subscriptions and `request` frames for responders. Payloads travel as text
//! (`"payload"`) when they are UTF-8 and as base64 (`"payload_b64"`) otherwise.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::consumer::{ConsumerConfig, ConsumerName, Delivery, Settle, SettleItem};
use crate::error::{Error, ErrorDetail, ErrorKind};
use crate::message::{Headers, Message, OutgoingMessage, Timestamp};
use crate::request::Reply;
use crate::stream::{Purge, ReadFrom, ReadRange, StreamConfig};
use crate::subject::{Pattern, StreamName, Subject};

/// The protocol version this crate speaks; the server says it in its `hello`.
pub const PROTOCOL_VERSION: u32 = 1;

/// How much a page of messages (`read_range`, `read_subject`, `fetch`) holds:
/// the server stops adding messages to a page once their [`page_size`]s
/// reach this many bytes, so no answer outgrows a frame whatever the `limit`.
///
/// A page of fewer messages than asked whose sizes add up to at least this
/// much may have been cut short: read on from the seq after its last message.
/// A page below it ended because the stream (or the consumer's backlog) did.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024;

/// The longest a `fetch` waits for a first delivery (`wait_ms` at most
/// 60,000): a minute keeps a waiting fetch well inside proxies' idle
/// timeouts, and a client that wants to wait longer fetches again.
pub const MAX_FETCH_WAIT: Duration = Duration::from_secs(60);

/// What one message counts for in a page: its payload, subject, id and
/// headers, in bytes.
pub fn page_size(message: &Message) -> usize {
    let headers: usize = message.headers.iter().map(|(k, v)| k.len() + v.len()).sum();
    message.payload.len() + message.subject.as_str().len() + message.id.len() + headers
}

/// A payload: text when it is UTF-8, base64 otherwise.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Body {
    /// UTF-8 text.
    #[serde(rename = "payload")]
    Text(String),
    /// Any bytes, base64 (standard alphabet, padded).
    #[serde(rename = "payload_b64")]
    Base64(String),
}

impl Body {
    /// The wire form of `bytes`: text when it is UTF-8 without control
    /// characters (other than tab and newlines), which JSON would inflate
    /// sixfold; base64 otherwise.
    pub fn of(bytes: &Bytes) -> Body {
        match std::str::from_utf8(bytes) {
            Ok(text) if !text.chars().any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r')) => {
                Body::Text(text.to_owned())
            }
            _ => Body::Base64(STANDARD.encode(bytes)),
        }
    }

    /// The bytes.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for invalid base64.
    pub fn bytes(self) -> Result<Bytes, Error> {
        match self {
            Body::Text(text) => Ok(Bytes::from(text)),
            Body::Base64(b64) => STANDARD
                .decode(b64)
                .map(Bytes::from)
                .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("payload_b64 is not base64: {e}"))),
        }
    }
}

impl Body {
    /// The two JSON fields a payload travels in: `payload` (text) and
    /// `payload_b64` (base64), exactly one of them set.
    pub fn into_fields(self) -> (Option<String>, Option<String>) {
        match self {
            Body::Text(text) => (Some(text), None),
            Body::Base64(b64) => (None, Some(b64)),
        }
    }

    /// The body of a message that arrived as the two JSON fields.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` unless exactly one of them is given.
    pub fn from_fields(payload: Option<String>, payload_b64: Option<String>) -> Result<Body, Error> {
        match (payload, payload_b64) {
            (Some(text), None) => Ok(Body::Text(text)),
            (None, Some(b64)) => Ok(Body::Base64(b64)),
            (Some(_), Some(_)) => Err(Error::new(
                ErrorKind::InvalidRequest,
                "give `payload` (text) or `payload_b64` (base64), not both",
            )),
            (None, None) => Err(Error::new(
                ErrorKind::InvalidRequest,
                "a message needs `payload` (text) or `payload_b64` (base64); `\"payload\": \"\"` for an empty one",
            )),
        }
    }
}

impl Default for Body {
    fn default() -> Body {
        Body::Text(String::new())
    }
}

/// A message to publish. Its payload is `payload` (text) or `payload_b64`
/// (base64): exactly one of them.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireOutgoing {
    /// Where it goes.
    pub subject: Subject,
    /// Its payload as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Its payload as base64 (standard alphabet, padded), for any bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_b64: Option<String>,
    /// Headers.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// The dedup id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The payload's content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The stream's expected last seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_last_seq: Option<u64>,
    /// The subject's expected last seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_last_subject_seq: Option<u64>,
    /// A time to live, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl_ms: Option<u64>,
}

impl From<&OutgoingMessage> for WireOutgoing {
    fn from(m: &OutgoingMessage) -> WireOutgoing {
        let (payload, payload_b64) = Body::of(&m.payload).into_fields();
        WireOutgoing {
            subject: m.subject.clone(),
            payload,
            payload_b64,
            headers: m.headers.clone(),
            id: m.id.clone(),
            content_type: m.content_type.clone(),
            expected_last_seq: m.expected_last_seq,
            expected_last_subject_seq: m.expected_last_subject_seq,
            // Whole milliseconds, rounded up; zero stays zero (and is refused).
            ttl_ms: m.ttl.map(|t| {
                let ms = u64::try_from(t.as_millis()).unwrap_or(u64::MAX);
                if t > Duration::from_millis(ms) {
                    ms.saturating_add(1)
                } else {
                    ms
                }
            }),
        }
    }
}

impl WireOutgoing {
    /// The message it describes.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for an invalid payload, or none, or two.
    pub fn into_message(self) -> Result<OutgoingMessage, Error> {
        Ok(OutgoingMessage {
            subject: self.subject,
            payload: Body::from_fields(self.payload, self.payload_b64)?.bytes()?,
            headers: self.headers,
            id: self.id,
            content_type: self.content_type,
            expected_last_seq: self.expected_last_seq,
            expected_last_subject_seq: self.expected_last_subject_seq,
            ttl: self.ttl_ms.map(Duration::from_millis),
        })
    }
}

/// A stored message.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireMessage {
    /// Its stream.
    pub stream: StreamName,
    /// Its seq there.
    pub seq: u64,
    /// Its subject.
    pub subject: Subject,
    /// Its id.
    pub id: String,
    /// When it was appended, nanoseconds since the Unix epoch.
    pub time: Timestamp,
    /// Headers.
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// Its payload.
    #[serde(flatten)]
    pub body: Body,
    /// The payload's content type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// When it expires, if it has a TTL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
}

impl From<&Message> for WireMessage {
    fn from(m: &Message) -> WireMessage {
        WireMessage {
            stream: m.stream.clone(),
            seq: m.seq,
            subject: m.subject.clone(),
            id: m.id.clone(),
            time: m.time,
            headers: m.headers.clone(),
            body: Body::of(&m.payload),
            content_type: m.content_type.clone(),
            expires: m.expires,
        }
    }
}

impl WireMessage {
    /// The message it describes.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for an invalid payload.
    pub fn into_message(self) -> Result<Message, Error> {
        Ok(Message {
            stream: self.stream,
            seq: self.seq,
            subject: self.subject,
            id: self.id,
            time: self.time,
            headers: self.headers,
            payload: self.body.bytes()?,
            content_type: self.content_type,
            expires: self.expires,
        })
    }
}

/// A delivery to a consumer member.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireDelivery {
    /// The message.
    pub message: WireMessage,
    /// The consumer's seq of this delivery.
    pub consumer_seq: u64,
    /// Deliveries of this message so far, this one included.
    pub deliveries: u32,
    /// Matching messages after this one not yet delivered.
    pub pending: u64,
    /// The member holding the lease.
    pub member: ConsumerName,
}

impl From<&Delivery> for WireDelivery {
    fn from(d: &Delivery) -> WireDelivery {
        WireDelivery {
            message: WireMessage::from(&d.message),
            consumer_seq: d.consumer_seq,
            deliveries: d.deliveries,
            pending: d.pending,
            member: d.member.clone(),
        }
    }
}

impl WireDelivery {
    /// The delivery it describes.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for an invalid payload.
    pub fn into_delivery(self) -> Result<Delivery, Error> {
        Ok(Delivery {
            message: self.message.into_message()?,
            consumer_seq: self.consumer_seq,
            deliveries: self.deliveries,
            pending: self.pending,
            member: self.member,
        })
    }
}

/// A reply to a request: `payload` or `payload_b64`, as a message.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WireReply {
    /// Headers.
    #[serde(default, skip_serializing_if = "Headers::is_empty")]
    pub headers: Headers,
    /// Its payload as UTF-8 text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    /// Its payload as base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_b64: Option<String>,
}

impl From<&Reply> for WireReply {
    fn from(r: &Reply) -> WireReply {
        let (payload, payload_b64) = Body::of(&r.payload).into_fields();
        WireReply {
            headers: r.headers.clone(),
            payload,
            payload_b64,
        }
    }
}

impl WireReply {
    /// The reply it describes.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for an invalid payload, or none, or two.
    pub fn into_reply(self) -> Result<Reply, Error> {
        Ok(Reply {
            headers: self.headers,
            payload: Body::from_fields(self.payload, self.payload_b64)?.bytes()?,
        })
    }
}

/// An error as the server reports it: a stable code, its kind's name, a
/// message, and structured detail for the kinds that carry it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireError {
    /// The stable code ([`ErrorKind::code`]).
    pub code: u16,
    /// The kind's name, for people.
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
    /// Facts to act on (the actual seq, the limit…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<ErrorDetail>,
}

impl From<&Error> for WireError {
    fn from(e: &Error) -> WireError {
        WireError {
            code: e.kind().code(),
            kind: e.kind(),
            message: e.message().to_owned(),
            detail: e.detail().cloned(),
        }
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Error {
        let kind = ErrorKind::from_code(e.code).unwrap_or(e.kind);
        let error = Error::new(kind, e.message);
        match e.detail {
            Some(detail) => error.with_detail(detail),
            None => error,
        }
    }
}

/// What became of one item of a `settle_batch`: `null` when it was settled,
/// or the error that refused it alone (the others still apply).
pub type SettleOutcome = Option<WireError>;

/// A client's request: an id of its choosing and the operation.
///
/// Read strictly: a field the operation does not take is refused, never
/// ignored ([`ClientFrame::parse`] says which, and where).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClientFrame {
    /// Echoed in the answer.
    pub id: u64,
    /// What to do.
    #[serde(flatten)]
    pub op: Op,
}

impl ClientFrame {
    /// Reads a frame's text.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` in the protocol's words, with the frame's `id` when
    /// it could be read, so the error can answer it.
    pub fn parse(text: &str) -> Result<ClientFrame, (Option<u64>, Error)> {
        let value: serde_json::Value = crate::input::from_json("frame", text.as_bytes()).map_err(|e| (None, e))?;
        ClientFrame::from_value(value)
    }

    fn from_value(value: serde_json::Value) -> Result<ClientFrame, (Option<u64>, Error)> {
        let serde_json::Value::Object(mut fields) = value else {
            let error = Error::new(ErrorKind::InvalidRequest, "frame: a frame is a JSON object");
            return Err((None, error));
        };
        let id = fields.remove("id");
        let Some(id) = id.as_ref().and_then(serde_json::Value::as_u64) else {
            let error = Error::new(
                ErrorKind::InvalidRequest,
                "frame: `id` (a whole number of the client's choosing, echoed in the answer) is missing or not one",
            );
            return Err((None, error));
        };
        let op = crate::input::from_value("frame", serde_json::Value::Object(fields)).map_err(|e| (Some(id), e))?;
        Ok(ClientFrame { id, op })
    }
}

impl<'de> Deserialize<'de> for ClientFrame {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ClientFrame, D::Error> {
        let value = serde_json::Value::deserialize(deserializer)?;
        ClientFrame::from_value(value).map_err(|(_, e)| serde::de::Error::custom(e.message()))
    }
}

/// Every operation of the protocol: the Backend traits, one to one, plus the
/// control of subscriptions and responders.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[allow(missing_docs)]
pub enum Op {
    CreateStream {
        config: StreamConfig,
    },
    UpdateStream {
        config: StreamConfig,
    },
    StreamInfo {
        stream: StreamName,
    },
    /// Takes no fields (a struct variant, so that stray ones are refused).
    ListStreams {},
    DeleteStream {
        stream: StreamName,
    },
    /// `purge` says what goes: `{"all": true}` or a subject and/or seq bound.
    PurgeStream {
        stream: StreamName,
        purge: Purge,
    },
    Publish {
        message: WireOutgoing,
    },
    PublishBatch {
        messages: Vec<WireOutgoing>,
    },
    GetMessage {
        stream: StreamName,
        seq: u64,
    },
    LastMessage {
        stream: StreamName,
        subject: Subject,
    },
    ReadRange {
        stream: StreamName,
        range: ReadRange,
    },
    ReadSubject {
        stream: StreamName,
        subject: Subject,
        from_seq: u64,
        limit: usize,
    },
    CreateConsumer {
        stream: StreamName,
        config: ConsumerConfig,
    },
    UpdateConsumer {
        stream: StreamName,
        config: ConsumerConfig,
    },
    DeleteConsumer {
        stream: StreamName,
        consumer: ConsumerName,
    },
    ConsumerInfo {
        stream: StreamName,
        consumer: ConsumerName,
    },
    ListConsumers {
        stream: StreamName,
    },
    Fetch {
        stream: StreamName,
        consumer: ConsumerName,
        member: ConsumerName,
        max: usize,
        #[serde(default)]
        wait_ms: u64,
    },
    Settle {
        stream: StreamName,
        consumer: ConsumerName,
        member: ConsumerName,
        seq: u64,
        deliveries: u32,
        settle: Settle,
    },
    /// Settles many deliveries of one member, each as `settle` would; the
    /// result has one entry per item, in order ([`SettleOutcome`]).
    SettleBatch {
        stream: StreamName,
        consumer: ConsumerName,
        member: ConsumerName,
        items: Vec<SettleItem>,
    },
    ResetConsumer {
        stream: StreamName,
        consumer: ConsumerName,
        to: ReadFrom,
    },
    /// Starts a live subscription numbered `sub` (the client's choice).
    Subscribe {
        sub: u64,
        pattern: Pattern,
        #[serde(default)]
        from: Option<ReadFrom>,
        /// Messages of these streams up to these seqs were delivered already
        /// (a subscription re-attached after a reconnect): not sent again.
        #[serde(default, skip_serializing_if = "std::collections::HashMap::is_empty")]
        resume: std::collections::HashMap<StreamName, u64>,
    },
    Unsubscribe {
        sub: u64,
    },
    /// Starts answering requests for `pattern` as responder `responder`.
    Serve {
        responder: u64,
        pattern: Pattern,
    },
    Unserve {
        responder: u64,
    },
    /// Answers request `request` (`reply: null` drops it unanswered).
    Respond {
        request: u64,
        #[serde(default)]
        reply: Option<WireReply>,
    },
    Request {
        subject: Subject,
        #[serde(default, skip_serializing_if = "Headers::is_empty")]
        headers: Headers,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        payload_b64: Option<String>,
        timeout_ms: u64,
    },
}

/// What the server sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// The first frame of a connection.
    Hello {
        /// [`PROTOCOL_VERSION`].
        version: u32,
        /// The server's name and version.
        server: String,
    },
    /// Request `id` succeeded.
    Ok {
        /// The request's id.
        id: u64,
        /// Its result (`null` for none).
        result: serde_json::Value,
    },
    /// Request `id` failed (no id when the frame could not be read at all).
    Error {
        /// The request's id, if it could be read.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
        /// What went wrong.
        error: WireError,
    },
    /// A message for subscription `sub`.
    Message {
        /// The subscription.
        sub: u64,
        /// The message.
        message: WireMessage,
    },
    /// Subscription `sub` hit an error (`Lagged` carries on; others end it).
    SubError {
        /// The subscription.
        sub: u64,
        /// What happened.
        error: WireError,
    },
    /// A request for responder `responder`; answer with `respond`.
    Request {
        /// The responder.
        responder: u64,
        /// The request's number, for `respond`.
        request: u64,
        /// Its subject.
        subject: Subject,
        /// Its headers.
        #[serde(default, skip_serializing_if = "Headers::is_empty")]
        headers: Headers,
        /// Its payload.
        #[serde(flatten)]
        body: Body,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_ttl_travels_without_overflow() {
        let message = OutgoingMessage::new(Subject::new("a.b").unwrap(), "x").ttl(Duration::MAX);
        assert_eq!(WireOutgoing::from(&message).ttl_ms, Some(u64::MAX));
    }

    #[test]
    fn payloads_travel_as_text_or_base64() {
        let text = Body::of(&Bytes::from_static(b"hello"));
        assert_eq!(text, Body::Text("hello".into()));
        let binary = Body::of(&Bytes::from_static(&[0xff, 0, 1]));
        assert_eq!(binary.clone().bytes().unwrap(), Bytes::from_static(&[0xff, 0, 1]));
        let frame: ClientFrame =
            serde_json::from_str(r#"{"id":1,"op":"publish","message":{"subject":"orders.1","payload":"hi","id":"k"}}"#)
                .unwrap();
        let Op::Publish { message } = frame.op else {
            panic!("a publish")
        };
        assert_eq!(message.into_message().unwrap().payload, Bytes::from_static(b"hi"));
        let (payload, payload_b64) = binary.into_fields();
        let json = serde_json::to_string(&WireReply {
            headers: Headers::new(),
            payload,
            payload_b64,
        })
        .unwrap();
        assert_eq!(json, r#"{"payload_b64":"/wAB"}"#);
    }

    #[test]
    fn frames_refuse_fields_their_operation_does_not_take() {
        let refused = |text: &str| ClientFrame::parse(text).unwrap_err();
        let (id, error) = refused(r#"{"id":3,"op":"purge_stream","stream":"shop","purge":{"subjct":"shop.k1"}}"#);
        assert_eq!(id, Some(3));
        assert_eq!(error.kind(), ErrorKind::InvalidRequest);
        assert!(
            error.message().contains("`subjct` (did you mean `subject`?)"),
            "{}",
            error.message()
        );
        let (_, error) = refused(r#"{"id":3,"op":"purge_stream","stream":"shop"}"#);
        assert!(error.message().contains("missing field `purge`"), "{}", error.message());
        let (_, error) = refused(r#"{"id":3,"op":"purge_stream","stream":"shop","purge":{}}"#);
        assert!(error.message().contains(r#"{"all": true}"#), "{}", error.message());
        let (_, error) = refused(r#"{"id":4,"op":"list_streams","verbose":true}"#);
        assert!(
            error.message().contains("unknown field `verbose`"),
            "{}",
            error.message()
        );
        let (_, error) = refused(r#"{"id":5,"op":"fetch","stream":"s","consumer":"c","member":"m","max":1,"wait":9}"#);
        assert!(
            error.message().contains("`wait` (did you mean `wait_ms`?)"),
            "{}",
            error.message()
        );
        let (_, error) = refused(r#"{"id":6,"op":"publish","message":{"subject":"a","payload":"x","ttl":5}}"#);
        assert!(
            error.message().contains("`ttl` (did you mean `ttl_ms`?)"),
            "{}",
            error.message()
        );
        let (id, _) = refused(r#"{"op":"list_streams"}"#);
        assert_eq!(id, None);
        let (_, error) = refused(r#"{"id":7,"op":"lst_streams"}"#);
        assert!(
            error.message().contains("did you mean `list_streams`?"),
            "{}",
            error.message()
        );
    }

    #[test]
    fn a_settle_batch_refuses_unknown_fields_in_its_items() {
        let (id, error) = ClientFrame::parse(
            r#"{"id":8,"op":"settle_batch","stream":"s","consumer":"c","member":"m",
                "items":[{"seq":1,"deliveries":1},{"seq":2,"deliveris":1}]}"#,
        )
        .unwrap_err();
        assert_eq!((id, error.kind()), (Some(8), ErrorKind::InvalidRequest));
        assert!(
            error.message().contains("`deliveris` (did you mean `deliveries`?)"),
            "{}",
            error.message()
        );
        let (_, error) =
            ClientFrame::parse(r#"{"id":9,"op":"settle_batch","stream":"s","consumer":"c","member":"m","item":[]}"#)
                .unwrap_err();
        assert!(
            error.message().contains("`item` (did you mean `items`?)"),
            "{}",
            error.message()
        );
        let frame =
            ClientFrame::parse(r#"{"id":10,"op":"settle_batch","stream":"s","consumer":"c","member":"m","items":[{"seq":4,"deliveries":2}]}"#)
                .unwrap();
        let Op::SettleBatch { items, .. } = frame.op else {
            panic!("a settle_batch")
        };
        assert_eq!(items, [SettleItem::ack(4, 2)], "an item without `settle` is an ack");
    }

    #[test]
    fn every_frame_reads_back_as_it_was_written() {
        let frames = [
            Op::ListStreams {},
            Op::PurgeStream {
                stream: StreamName::new("s").unwrap(),
                purge: Purge::all(),
            },
            Op::PurgeStream {
                stream: StreamName::new("s").unwrap(),
                purge: Purge::subject(Subject::new("s.a").unwrap()).before(9),
            },
            Op::SettleBatch {
                stream: StreamName::new("s").unwrap(),
                consumer: ConsumerName::new("c").unwrap(),
                member: ConsumerName::new("m").unwrap(),
                items: vec![
                    SettleItem::ack(1, 1),
                    SettleItem::new(2, 3, Settle::Term { reason: "bad".into() }),
                ],
            },
            Op::Request {
                subject: Subject::new("svc").unwrap(),
                headers: Headers::new(),
                payload: Some("ping".into()),
                payload_b64: None,
                timeout_ms: 100,
            },
        ];
        for op in frames {
            let frame = ClientFrame { id: 1, op };
            let text = serde_json::to_string(&frame).unwrap();
            assert_eq!(ClientFrame::parse(&text).unwrap(), frame, "{text}");
        }
    }

    #[test]
    fn a_message_has_exactly_one_payload() {
        let read = |json: &str| serde_json::from_str::<WireOutgoing>(json).unwrap().into_message();
        assert!(read(r#"{"subject":"a","payload":"x"}"#).is_ok());
        let both = read(r#"{"subject":"a","payload":"x","payload_b64":"eA=="}"#).unwrap_err();
        assert!(both.message().contains("not both"));
        let none = read(r#"{"subject":"a"}"#).unwrap_err();
        assert!(none.message().contains("needs `payload`"));
    }

    #[test]
    fn errors_keep_their_kind_and_detail() {
        let err = Error::wrong_expected_seq("subject `a`", 1, 5);
        let back = Error::from(
            serde_json::from_str::<WireError>(&serde_json::to_string(&WireError::from(&err)).unwrap()).unwrap(),
        );
        assert_eq!(back.kind(), ErrorKind::WrongExpectedSeq);
        assert_eq!(back.actual_seq(), Some(5));
    }
}
