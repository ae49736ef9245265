//! `GET /v1/tail`: a live subscription as server-sent events (docs/http.md).
//!
//! Each message is an event `message` with the id `<stream>:<seq>` and the
//! message as JSON; a subscription error is an event `error` with the error
//! as JSON (after `lagged` the tail carries on; after any other it ends).
//!
//! The event stream pulls one message from the subscription each time the
//! response body asks for the next event, and the body is asked only when
//! the connection has taken the previous one: a client that reads slowly
//! holds the tail back instead of growing a queue on the server.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::{Stream, StreamExt};
use herald_core::wire::{WireError, WireMessage};
use herald_core::{
    Backend, Error, ErrorKind, LiveSubscription, Message, Pattern, ReadFrom, ReadRange, Result, StreamName,
};
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
/// Reconnecting with `Last-Event-ID: <stream>:<seq>` (as `EventSource` does)
/// resumes after that message: exactly when the pattern reaches one stream;
/// across several streams, from that message's time in the others.
#[utoipa::path(
    get,
    path = "/v1/tail",
    tag = "tail",
    operation_id = "tail",
    params(
        TailQuery,
        ("Last-Event-ID" = Option<String>, Header, description = "The id of the last event received, `<stream>:<seq>`: resume after it (wins over `from_seq` and `from_time`)"),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
         description = "Events `message` (id `<stream>:<seq>`, data: a WireMessage as JSON) and `error` (data: a WireError as JSON), and keep-alive comments"),
        (status = 400, description = "Invalid pattern, both `from_seq` and `from_time`, or a malformed Last-Event-ID", body = WireError),
    )
)]
pub(crate) async fn tail(
    State(state): State<AppState>,
    caller: Caller,
    QueryParams(query): QueryParams<TailQuery>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    caller.check(&state.backend, Action::Subscribe(&query.pattern)).await?;
    let start = match last_event_id(&headers)? {
        Some((stream, seq)) => resume(&state.backend, &query.pattern, stream, seq).await?,
        None => Start {
            from: start_of(&query)?,
            seen: None,
        },
    };
    let subscription = state.backend.subscribe(query.pattern, start.from).await?;
    let tail = Tail {
        subscription,
        caller,
        metrics: state.metrics.clone(),
        seen: start.seen,
        ended: false,
    };
    let events = events(tail).take_until(stopped(state.stopping.clone()));
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

/// Where a tail starts, and what it already delivered before a reconnect.
#[derive(Debug, PartialEq)]
struct Start {
    from: Option<ReadFrom>,
    /// Messages of this stream up to this seq were delivered already.
    seen: Option<(StreamName, u64)>,
}

fn start_of(query: &TailQuery) -> Result<Option<ReadFrom>> {
    match (query.from_seq, &query.from_time) {
        (Some(_), Some(_)) => Err(invalid("give `from_seq` or `from_time`, not both")),
        (Some(seq), None) => Ok(Some(ReadFrom::Seq(seq))),
        (None, Some(time)) => Ok(Some(ReadFrom::Time(parse_time(time)?))),
        (None, None) => Ok(None),
    }
}

/// The `Last-Event-ID` header as `(stream, seq)`.
fn last_event_id(headers: &HeaderMap) -> Result<Option<(StreamName, u64)>> {
    let Some(value) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let malformed = || invalid("Last-Event-ID must be `<stream>:<seq>`, as the tail's events carry");
    let text = value.to_str().map_err(|_| malformed())?;
    let (stream, seq) = text.rsplit_once(':').ok_or_else(malformed)?;
    let seq = seq.parse().map_err(|_| malformed())?;
    Ok(Some((StreamName::new(stream).map_err(|_| malformed())?, seq)))
}

/// Where to resume after `stream:seq`. When the pattern reaches that stream
/// only, right after it. Otherwise the other streams' positions are unknown:
/// every stream resumes at the time the last message seen was stored (or the
/// first held after it), and that stream's messages up to `seq` are skipped.
/// An id of a stream the pattern does not reach tells nothing: the tail
/// follows what comes next.
async fn resume(backend: &Arc<dyn Backend>, pattern: &Pattern, stream: StreamName, seq: u64) -> Result<Start> {
    let streams = backend.list_streams().await?;
    let reached: Vec<&StreamName> = streams
        .iter()
        .filter(|s| s.config.subjects.iter().any(|p| p.overlaps(pattern)))
        .map(|s| &s.config.name)
        .collect();
    if !reached.contains(&&stream) {
        return Ok(Start { from: None, seen: None });
    }
    if reached.len() == 1 {
        return Ok(Start {
            from: Some(ReadFrom::Seq(seq.saturating_add(1))),
            seen: None,
        });
    }
    let next = match backend.read_range(&stream, ReadRange::from_seq(seq, 1)).await {
        Ok(next) => next,
        // The stream is gone: there is nothing of it to skip.
        Err(err) if err.kind() == ErrorKind::StreamNotFound => Vec::new(),
        Err(err) => return Err(err),
    };
    Ok(match next.first() {
        Some(message) => Start {
            from: Some(ReadFrom::Time(message.time)),
            seen: Some((stream, seq)),
        },
        // Nothing held from there on: follow what comes next.
        None => Start { from: None, seen: None },
    })
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
    seen: Option<(StreamName, u64)>,
    ended: bool,
}

impl Tail {
    /// Whether `message` goes to this client: its token may read the subject
    /// and it was not delivered before a reconnect.
    fn wants(&self, message: &Message) -> bool {
        let repeated = self
            .seen
            .as_ref()
            .is_some_and(|(stream, seq)| message.stream == *stream && message.seq <= *seq);
        !repeated && self.caller.sees(&message.subject)
    }

    /// The next event, waiting for it.
    async fn next_event(&mut self) -> Event {
        loop {
            match self.subscription.next().await {
                Ok(message) if !self.wants(&message) => continue,
                Ok(message) => {
                    self.metrics.delivered(&message);
                    return message_event(&message);
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

fn message_event(message: &Message) -> Event {
    let id = format!("{}:{}", message.stream, message.seq);
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
        Caller::identify(&crate::Access::Open, &parts).unwrap()
    }

    #[tokio::test]
    async fn the_subscription_is_read_only_as_fast_as_events_are_taken() {
        let reads = Arc::new(AtomicUsize::new(0));
        let tail = Tail {
            subscription: Box::new(Counting(reads.clone())),
            caller: caller(),
            metrics: Arc::default(),
            seen: None,
            ended: false,
        };
        let mut events = Box::pin(events(tail));
        for taken in 1..=3 {
            let _event = events.next().await.unwrap().unwrap();
            assert_eq!(reads.load(Ordering::SeqCst), taken, "one read per event, none ahead");
        }
    }

    #[tokio::test]
    async fn messages_seen_before_a_reconnect_are_skipped() {
        let reads = Arc::new(AtomicUsize::new(0));
        let metrics: Arc<Metrics> = Arc::default();
        let mut tail = Tail {
            subscription: Box::new(Counting(reads.clone())),
            caller: caller(),
            metrics,
            seen: Some((StreamName::new("orders").unwrap(), 2)),
            ended: false,
        };
        let _ = tail.next_event().await;
        assert_eq!(reads.load(Ordering::SeqCst), 3, "seqs 1 and 2 were skipped");
    }

    #[test]
    fn last_event_ids_are_stream_and_seq() {
        let mut headers = HeaderMap::new();
        assert_eq!(last_event_id(&headers).unwrap(), None);
        headers.insert("last-event-id", "orders:42".parse().unwrap());
        assert_eq!(
            last_event_id(&headers).unwrap(),
            Some((StreamName::new("orders").unwrap(), 42))
        );
        for bad in ["orders", "orders:x", "a.b:1"] {
            headers.insert("last-event-id", bad.parse().unwrap());
            assert_eq!(last_event_id(&headers).unwrap_err().kind(), ErrorKind::InvalidRequest);
        }
    }
}
