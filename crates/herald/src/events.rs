//! Typed events: serde types published as JSON, with an envelope (id, time,
//! type, correlation and causation ids) carried in headers, and the
//! CloudEvents 1.0 JSON mapping (structured mode).

use std::marker::PhantomData;

use herald_core::{
    Error, ErrorKind, Message, OutgoingMessage, PublishAck, ReadFrom, Result, StreamName, Subject, Timestamp,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bus::Bus;
use crate::subscription::Subscription;

/// The header with the event's type.
pub const TYPE_HEADER: &str = "herald-event-type";
/// The header with the id of the request or flow the event belongs to.
pub const CORRELATION_HEADER: &str = "herald-correlation-id";
/// The header with the id of the message that caused the event.
pub const CAUSATION_HEADER: &str = "herald-causation-id";
/// The content type typed events are published with.
pub const JSON: &str = "application/json";

/// An event type: serialisable, with a subject and a type name.
pub trait Event: Serialize + DeserializeOwned + Send + Sync + 'static {
    /// The event's type, such as `order.created` (CloudEvents `type`).
    fn event_type(&self) -> String;

    /// The subject it is published to.
    fn subject(&self) -> String;

    /// The aggregate it belongs to, if any.
    fn aggregate_id(&self) -> Option<String> {
        None
    }
}

/// Ids that tie an event to the flow and the message that caused it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Meta {
    /// The event's id (also its dedup id); generated when absent.
    pub id: Option<String>,
    /// The flow it belongs to.
    pub correlation_id: Option<String>,
    /// The message that caused it.
    pub causation_id: Option<String>,
}

impl Meta {
    /// Meta for an event caused by `cause`: same correlation (or the cause's
    /// id when it had none), caused by the cause's id.
    pub fn caused_by<E>(cause: &Envelope<E>) -> Meta {
        Meta {
            id: None,
            correlation_id: Some(cause.correlation_id.clone().unwrap_or_else(|| cause.id.clone())),
            causation_id: Some(cause.id.clone()),
        }
    }
}

/// A typed event as it was stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope<E> {
    /// The event.
    pub event: E,
    /// Its id.
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// When it was stored.
    pub time: Timestamp,
    /// Its subject.
    pub subject: Subject,
    /// Its stream.
    pub stream: StreamName,
    /// Its sequence in the stream.
    pub seq: u64,
    /// The flow it belongs to.
    pub correlation_id: Option<String>,
    /// The message that caused it.
    pub causation_id: Option<String>,
}

/// The message to publish for `event`.
///
/// # Errors
///
/// `InvalidSubject` for an invalid subject; `InvalidRequest` if it does not serialise.
pub fn to_message<E: Event>(event: &E, meta: &Meta) -> Result<OutgoingMessage> {
    let payload = serde_json::to_vec(event)
        .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("the event does not serialise: {e}")))?;
    let mut message = OutgoingMessage::new(Subject::new(event.subject())?, payload)
        .content_type(JSON)
        .header(TYPE_HEADER, event.event_type());
    if let Some(id) = &meta.id {
        message = message.id(id.clone());
    }
    if let Some(correlation) = &meta.correlation_id {
        message = message.header(CORRELATION_HEADER, correlation.clone());
    }
    if let Some(causation) = &meta.causation_id {
        message = message.header(CAUSATION_HEADER, causation.clone());
    }
    Ok(message)
}

/// The `E` in `payload` and its event type, or why it is not one: it does not
/// decode as an `E`, or `stored_type` (the type header, when present) is not
/// the decoded event's type.
pub(crate) fn decode<E: Event>(payload: &[u8], stored_type: Option<&str>) -> std::result::Result<(E, String), String> {
    let event: E = serde_json::from_slice(payload).map_err(|e| e.to_string())?;
    let decoded_type = event.event_type();
    match stored_type {
        Some(stored) if stored != decoded_type => Err(format!("its event type is `{stored}`, not `{decoded_type}`")),
        Some(stored) => Ok((event, stored.to_string())),
        None => Ok((event, decoded_type)),
    }
}

impl<E: Event> Envelope<E> {
    /// Decodes a stored message.
    ///
    /// A message that carries an event type (the `herald-event-type` header)
    /// is an `E` only if the decoded event has that type: two event types of
    /// the same JSON shape are told apart by it. A message without the header
    /// is judged by its payload alone.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` if it is not an `E`: its payload does not decode as
    /// one, or its event type is not the decoded event's.
    pub fn from_message(message: Message) -> Result<Envelope<E>> {
        let stored_type = message.headers.get(TYPE_HEADER).map(String::as_str);
        let (event, event_type) = decode::<E>(&message.payload, stored_type).map_err(|why| {
            Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "message {} of `{}` is not this event type: {why}",
                    message.seq, message.stream
                ),
            )
        })?;
        Ok(Envelope {
            event,
            event_type,
            id: message.id,
            time: message.time,
            correlation_id: message.headers.get(CORRELATION_HEADER).cloned(),
            causation_id: message.headers.get(CAUSATION_HEADER).cloned(),
            subject: message.subject,
            stream: message.stream,
            seq: message.seq,
        })
    }

    /// The CloudEvents 1.0 JSON form (structured mode), with the correlation
    /// and causation ids as the extensions `correlationid` and `causationid`.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` if the event does not serialise.
    pub fn to_cloudevent(&self) -> Result<serde_json::Value> {
        let data = serde_json::to_value(&self.event)
            .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("the event does not serialise: {e}")))?;
        let mut ce = serde_json::json!({
            "specversion": "1.0",
            "id": self.id,
            "source": format!("/herald/streams/{}", self.stream),
            "type": self.event_type,
            "subject": self.subject.as_str(),
            "time": rfc3339(self.time),
            "datacontenttype": JSON,
            "data": data,
        });
        if let Some(map) = ce.as_object_mut() {
            if let Some(c) = &self.correlation_id {
                map.insert("correlationid".into(), c.clone().into());
            }
            if let Some(c) = &self.causation_id {
                map.insert("causationid".into(), c.clone().into());
            }
        }
        Ok(ce)
    }
}

/// The message to publish for a CloudEvents 1.0 JSON event (structured mode):
/// `subject` (or else `type`) is the subject, `id` the message id, `data` the
/// payload, and `type`, `correlationid`, `causationid` go to headers.
///
/// # Errors
///
/// `InvalidRequest` when a required attribute (`specversion` 1.0, `id`,
/// `source`, `type`) is missing; `InvalidSubject`.
pub fn from_cloudevent(ce: &serde_json::Value) -> Result<OutgoingMessage> {
    let text = |key: &str| ce.get(key).and_then(serde_json::Value::as_str);
    let missing = |key: &str| Error::new(ErrorKind::InvalidRequest, format!("the CloudEvent has no `{key}`"));
    if text("specversion") != Some("1.0") {
        return Err(Error::new(
            ErrorKind::InvalidRequest,
            "only CloudEvents 1.0 is supported",
        ));
    }
    let id = text("id").ok_or_else(|| missing("id"))?;
    text("source").ok_or_else(|| missing("source"))?;
    let event_type = text("type").ok_or_else(|| missing("type"))?;
    let subject = text("subject").unwrap_or(event_type);
    let payload = match ce.get("data") {
        Some(serde_json::Value::String(s)) if text("datacontenttype") != Some(JSON) => s.clone().into_bytes(),
        Some(data) => serde_json::to_vec(data).map_err(|e| Error::new(ErrorKind::InvalidRequest, e.to_string()))?,
        None => Vec::new(),
    };
    let mut message = OutgoingMessage::new(Subject::new(subject)?, payload)
        .id(id)
        .header(TYPE_HEADER, event_type)
        .content_type(text("datacontenttype").unwrap_or(JSON));
    if let Some(c) = text("correlationid") {
        message = message.header(CORRELATION_HEADER, c);
    }
    if let Some(c) = text("causationid") {
        message = message.header(CAUSATION_HEADER, c);
    }
    Ok(message)
}

/// `2026-11-23T09:30:00.123456789Z`.
fn rfc3339(time: Timestamp) -> String {
    let nanos = time.as_nanos();
    let secs = nanos / 1_000_000_000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos % 1_000_000_000
    )
}

/// Typed events from a live subscription.
#[derive(Debug)]
pub struct EventSubscription<E> {
    inner: Subscription,
    _event: PhantomData<fn() -> E>,
}

impl<E: Event> EventSubscription<E> {
    /// The next event.
    ///
    /// # Errors
    ///
    /// As [`Subscription::next`], and `InvalidRequest` for a message that is
    /// not an `E`, by its event type header or its payload (see
    /// [`Envelope::from_message`]); the subscription carries on after it.
    pub async fn next(&mut self) -> Result<Envelope<E>> {
        Envelope::from_message(self.inner.next().await?)
    }
}

impl Bus {
    /// Publishes a typed event.
    ///
    /// # Errors
    ///
    /// As [`Bus::publish_message`].
    pub async fn publish_event<E: Event>(&self, event: &E) -> Result<PublishAck> {
        self.publish_message(to_message(event, &Meta::default())?).await
    }

    /// Publishes a typed event with its id, correlation and causation.
    ///
    /// # Errors
    ///
    /// As [`Bus::publish_message`].
    pub async fn publish_event_with<E: Event>(&self, event: &E, meta: &Meta) -> Result<PublishAck> {
        self.publish_message(to_message(event, meta)?).await
    }

    /// Follows typed events on `pattern`, replaying from `from` first if given.
    ///
    /// # Errors
    ///
    /// As [`Bus::subscribe_from`].
    pub async fn subscribe_events<E: Event>(
        &self,
        pattern: impl AsRef<str>,
        from: Option<ReadFrom>,
    ) -> Result<EventSubscription<E>> {
        let inner = match from {
            Some(from) => self.subscribe_from(pattern, from).await?,
            None => self.subscribe(pattern).await?,
        };
        Ok(EventSubscription {
            inner,
            _event: PhantomData,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_rfc3339_utc() {
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56.5Z, a leap day.
        let t = 1_709_210_096 * 1_000_000_000 + 500_000_000;
        assert_eq!(rfc3339(Timestamp(t)), "2024-02-29T12:34:56.500000000Z");
        let t = 4_102_444_799 * 1_000_000_000;
        assert_eq!(rfc3339(Timestamp(t)), "2099-12-31T23:59:59.000000000Z");
    }
}
