//! `GET /v1/tail`: a live subscription as server-sent events (docs/http.md).
//!
//! Each message is an event `message` with the message as JSON and an id
//! that holds the tail's position: `<stream>:<seq>` for every stream it has
//! sent from (after the start time, for a tail of new messages only), so a
//! reconnect with that id as `Last-Event-ID` resumes exactly. A subscription
//! error is an event `error` with the error as JSON (after `lagged` the tail
//! carries on; after any other it ends).
//!
//! The event stream pulls one message from the subscription each time the
//! response body asks for the next event, and the body is asked only when
//! the connection has taken the previous one: a client that reads slowly
//! holds the tail back instead of growing a queue on the server.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use herald_core::wire::{WireError, WireMessage};
use herald_core::{Error, ErrorKind, LiveSubscription, Message, Pattern, ReadFrom, Result, StreamName, Timestamp};
use serde::Deserialize;
use tokio::sync::watch;
use utoipa::IntoParams;

use crate::AppState;
use crate::auth::{Action, Caller};
use crate::metrics::Metrics;
use crate::rest::{ApiResult, QueryParams, invalid, parse_time};

/// What to follow, and where to start.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct TailQuery {
    /// The subjects to follow, such as `orders.>`, across every stream.
    pattern: Pattern,
    /// Replay from this seq (in each stream the pattern reaches), then follow.
    from_seq: Option<u64>,
    /// Replay from this time (RFC 3339, or nanoseconds since the epoch),
    /// then follow. Without `from_seq` or `from_time`: new messages only.
    from_time: Option<String>,
}

/// Follows every message matching a pattern as server-sent events.
///
/// Reconnecting with `Last-Event-ID` set to the last event's id (as
/// `EventSource` does) resumes right after what was sent, in every stream.
#[utoipa::path(
    get,
    path = "/v1/tail",
    tag = "tail",
    operation_id = "tail",
    params(
        TailQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received: resume right after what it says was sent"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
         description = "Events `message` (id: the tail's position, `<stream>:<seq>` per stream; data: a WireMessage as JSON) and `error` (data: a WireError as JSON), and keep-alive comments"),
        (status = 400, description = "Invalid pattern, both `from_seq` and `from_time`, or a malformed Last-Event-ID", body = WireError),
        (status = 429, description = "The token holds as many WebSocket sessions and tails as the server allows one token (1004)", body = WireError),
    )
)]
pub(crate) async fn tail(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<TailQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.check(&state.backend, Action::Subscribe(&query.pattern)).await?;
    let asked = start_of(&query)?;
    let place = match state.token_places.take(&caller) {
        Ok(place) => place,
        Err(error) => return Ok(crate::with_status(axum::http::StatusCode::TOO_MANY_REQUESTS, &error)),
    };
    let position = match last_event_id(&headers)? {
        Some(position) => position,
        // A tail of new messages only remembers when it started, so that a
        // reconnect also finds what streams it had sent nothing from yet stored since.
        None => Position {
            start: asked.is_none().then(Timestamp::now),
            sent: BTreeMap::new(),
        },
    };
    let from = match (&asked, &position) {
        (Some(from), _) => Some(*from),
        (
            None,
            Position {
                start: Some(time),
                sent,
            },
        ) if !sent.is_empty() => Some(ReadFrom::Time(*time)),
        (None, _) => None,
    };
    let sent = position.sent.iter().map(|(s, seq)| (s.clone(), *seq)).collect();
    let subscription = state.backend.subscribe_resuming(query.pattern, from, sent).await?;
    let tail = Tail {
        subscription,
        caller,
        metrics: state.metrics.clone(),
        position,
        ended: false,
        _place: place,
    };
    let events = events(tail).take_until(stopped(state.stopping.clone()));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// Where a tail is: when it started (a tail of new messages only) and the
/// last seq it sent of each stream. Its text is the events' id:
/// `<start nanos>,<stream>:<seq>,…` (the start only when there is one).
#[derive(Debug, PartialEq)]
struct Position {
    start: Option<Timestamp>,
    sent: BTreeMap<StreamName, u64>,
}

impl Position {
    fn id(&self) -> String {
        let start = self.start.map(|t| t.0.to_string());
        let sent = self.sent.iter().map(|(stream, seq)| format!("{stream}:{seq}"));
        start.into_iter().chain(sent).collect::<Vec<_>>().join(",")
    }
}

fn start_of(query: &TailQuery) -> Result<Option<ReadFrom>> {
    match (query.from_seq, &query.from_time) {
        (Some(_), Some(_)) => Err(invalid("give `from_seq` or `from_time`, not both")),
        (Some(seq), None) => Ok(Some(ReadFrom::Seq(seq))),
        (None, Some(time)) => Ok(Some(ReadFrom::Time(parse_time(time)?))),
        (None, None) => Ok(None),
    }
}

/// The `Last-Event-ID` header as a position.
fn last_event_id(headers: &HeaderMap) -> Result<Option<Position>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let malformed =
        || invalid("Last-Event-ID must be the id of an event of the tail: `<stream>:<seq>`, comma-separated");
    let text = value.to_str().map_err(|_| malformed())?;
    let mut position = Position {
        start: None,
        sent: BTreeMap::new(),
    };
    for (i, token) in text.split(',').enumerate() {
        match token.rsplit_once(':') {
            Some((stream, seq)) => {
                let stream = StreamName::new(stream).map_err(|_| malformed())?;
                position.sent.insert(stream, seq.parse().map_err(|_| malformed())?);
            }
            None if i == 0 => position.start = Some(Timestamp(token.parse().map_err(|_| malformed())?)),
            None => return Err(malformed()),
        }
    }
    if position.sent.is_empty() {
        return Err(malformed());
    }
    Ok(Some(position))
}

/// Completes when the server stops (never, for a router whose app owns its life).
async fn stopped(mut stopping: watch::Receiver<bool>) {
    if stopping.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// One tail's subscription and what it needs to turn messages into events.
struct Tail {
    subscription: Box<dyn LiveSubscription>,
    caller: Caller,
    metrics: Arc<Metrics>,
    position: Position,
    ended: bool,
    /// The token's place, held as long as the tail runs.
    _place: Option<crate::token_places::TokenPlace>,
}

impl Tail {
    /// The next event, waiting for it.
    async fn next_event(&mut self) -> Event {
        loop {
            match self.subscription.next().await {
                // Subjects the caller's token denies are skipped.
                Ok(message) if !self.caller.sees(&message.subject) => continue,
                Ok(message) => {
                    self.metrics.delivered(&message);
                    self.position.sent.insert(message.stream.clone(), message.seq);
                    return message_event(&message, self.position.id());
                }
                Err(err) => {
                    // `Lagged` carries on after the deleted messages; anything else ends the tail.
                    self.ended = err.kind() != ErrorKind::Lagged;
                    return error_event(&err);
                }
            }
        }
    }
}

/// The tail's events, one subscription read per event asked for.
fn events(tail: Tail) -> impl Stream<Item = std::result::Result<Event, Infallible>> {
    futures_util::stream::unfold(tail, |mut tail| async move {
        if tail.ended {
            return None;
        }
        let event = tail.next_event().await;
        Some((Ok(event), tail))
    })
}

fn message_event(message: &Message, id: String) -> Event {
    match Event::default()
        .event("message")
        .id(id)
        .json_data(WireMessage::from(message))
    {
        Ok(event) => event,
        Err(err) => error_event(&Error::new(ErrorKind::Internal, format!("encoding a message: {err}"))),
    }
}

fn error_event(error: &Error) -> Event {
    let json = serde_json::to_string(&crate::wire_error(error))
        .unwrap_or_else(|_| format!("{{\"code\":{},\"message\":\"\"}}", error.kind().code()));
    Event::default().event("error").data(json)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_trait::async_trait;
    use herald_core::{Subject, Timestamp};

    use super::*;

    /// A subscription that never runs dry and counts how often it is read.
    struct Counting(Arc<AtomicUsize>);

    #[async_trait]
    impl LiveSubscription for Counting {
        async fn next(&mut self) -> Result<Message> {
            let seq = self.0.fetch_add(1, Ordering::SeqCst) as u64 + 1;
            Ok(Message {
                stream: StreamName::new("orders").unwrap(),
                seq,
                subject: Subject::new("orders.created").unwrap(),
                id: format!("m{seq}"),
                time: Timestamp(seq),
                headers: Default::default(),
                payload: bytes::Bytes::from_static(b"x"),
                content_type: None,
                expires: None,
            })
        }
    }

    fn caller() -> Caller {
        let parts = axum::http::Request::new(()).into_parts().0;
        Caller::identify(&crate::Access::Open.into(), &parts).unwrap()
    }

    #[tokio::test]
    async fn the_subscription_is_read_only_as_fast_as_events_are_taken() {
        let reads = Arc::new(AtomicUsize::new(0));
        let tail = Tail {
            subscription: Box::new(Counting(reads.clone())),
            caller: caller(),
            metrics: Arc::default(),
            position: Position {
                start: None,
                sent: BTreeMap::new(),
            },
            ended: false,
            _place: None,
        };
        let mut events = Box::pin(events(tail));
        for taken in 1..=3 {
            let _event = events.next().await.unwrap().unwrap();
            assert_eq!(reads.load(Ordering::SeqCst), taken, "one read per event, none ahead");
        }
    }

    #[test]
    fn last_event_ids_are_a_start_and_a_seq_per_stream() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers).unwrap(), None);
        let stream = |name: &str| StreamName::new(name).unwrap();
        let position = Position {
            start: Some(Timestamp(1_795_431_715_850_237_967)),
            sent: BTreeMap::from([(stream("orders"), 42), (stream("payments"), 7)]),
        };
        assert_eq!(position.id(), "1795431715850237967,orders:42,payments:7");
        headers.insert("last-event-id", position.id().parse().unwrap());
        assert_eq!(last_event_id(&headers).unwrap(), Some(position));
        headers.insert("last-event-id", "orders:42".parse().unwrap());
        let without_start = last_event_id(&headers).unwrap().unwrap();
        assert_eq!((without_start.start, without_start.sent.len()), (None, 1));
        for bad in ["orders", "orders:x", "a.b:1", "12", "orders:1,12", ""] {
            headers.insert("last-event-id", bad.parse().unwrap());
            assert_eq!(
                last_event_id(&headers).unwrap_err().kind(),
                ErrorKind::InvalidRequest,
                "{bad}"
            );
        }
    }
}
