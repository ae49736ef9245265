//! Messages: publish as JSON, as a batch or as a raw body; read one by seq,
//! a range, or a subject's last.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use herald_core::wire::{WireError, WireMessage, WireOutgoing};
use herald_core::{Error, OutgoingMessage, Pattern, PublishAck, ReadFrom, ReadRange, StreamName, Subject};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::streams::StreamPath;
use super::{ApiResult, JsonBody, NoQuery, PathParams, QueryParams, RawBody, invalid, page, parse_time};
use crate::AppState;
use crate::auth::{Action, Caller};

/// Checks the payload limit, publishes and counts what was stored.
async fn publish_one(state: &AppState, message: OutgoingMessage) -> Result<PublishAck, Error> {
    crate::payload::publish(&state.backend, &state.limits, &state.metrics, message).await
}

/// Publishes one message to the stream that captures its subject (created on
/// first publish when none does). Returns once the message is durable.
#[utoipa::path(
    post,
    path = "/v1/messages",
    tag = "messages",
    operation_id = "publish",
    request_body = WireOutgoing,
    responses(
        (status = 200, description = "Stored, or a duplicate of the message with the same id (`duplicate: true`, nothing written)", body = PublishAck),
        (status = 400, description = "Malformed body, invalid subject, headers or id", body = WireError),
        (status = 409, description = "No stream captures the subject and none can be created (2003)", body = WireError),
        (status = 412, description = "The expected last seq did not match; `detail` has the actual one (3001)", body = WireError),
        (status = 413, description = "Payload over the server's or the stream's limit; `detail` has size and limit (1005)", body = WireError),
        (status = 507, description = "The stream is full and refuses new messages (3002)", body = WireError),
    )
)]
pub(crate) async fn publish(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    JsonBody(message): JsonBody<WireOutgoing>,
) -> ApiResult<Json<PublishAck>> {
    caller.check(&state.backend, Action::Publish(&message.subject)).await?;
    Ok(Json(publish_one(&state, message.into_message()?).await?))
}

/// Publishes messages atomically to one stream: all or none, consecutive seqs.
#[utoipa::path(
    post,
    path = "/v1/messages/batch",
    tag = "messages",
    operation_id = "publish_batch",
    request_body = [WireOutgoing],
    responses(
        (status = 200, description = "One ack per message, in order", body = [PublishAck]),
        (status = 400, description = "Malformed body, an empty batch, one spanning streams, or an invalid message", body = WireError),
        (status = 409, description = "No stream captures the subjects and none can be created (2003)", body = WireError),
        (status = 412, description = "An expected last seq did not match (3001)", body = WireError),
        (status = 413, description = "A payload over the limit (1005)", body = WireError),
        (status = 507, description = "The stream is full and refuses new messages (3002)", body = WireError),
    )
)]
pub(crate) async fn publish_batch(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    JsonBody(messages): JsonBody<Vec<WireOutgoing>>,
) -> ApiResult<Json<Vec<PublishAck>>> {
    for message in &messages {
        caller.check(&state.backend, Action::Publish(&message.subject)).await?;
    }
    let messages = messages
        .into_iter()
        .map(WireOutgoing::into_message)
        .collect::<Result<Vec<_>, Error>>()?;
    let acks = crate::payload::publish_batch(&state.backend, &state.limits, &state.metrics, messages).await?;
    Ok(Json(acks))
}

/// A subject named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct SubjectPath {
    /// The subject to publish to, such as `orders.created`.
    subject: Subject,
}

/// The headers a raw publish reads, besides `Content-Type` and
/// `Herald-Header-<name>`.
#[derive(Debug, IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)] // Documentation only: `raw_message` reads these from the header map.
struct RawPublishHeaders {
    /// The message id, for dedup of retries.
    #[param(rename = "Herald-Msg-Id")]
    msg_id: Option<String>,
    /// Publish only if the stream's last seq is this (0: empty).
    #[param(rename = "Herald-Expected-Last-Seq")]
    expected_last_seq: Option<u64>,
    /// Publish only if the subject's last seq is this (0: no message yet).
    #[param(rename = "Herald-Expected-Last-Subject-Seq")]
    expected_last_subject_seq: Option<u64>,
    /// Delete the message this many milliseconds after it is stored.
    #[param(rename = "Herald-Ttl-Ms")]
    ttl_ms: Option<u64>,
}

/// A payload as a raw request body: any bytes.
#[derive(ToSchema)]
#[schema(value_type = String, format = Binary)]
#[allow(dead_code)] // Documentation only: the handler takes the body as bytes.
struct RawPayload(Vec<u8>);

/// Publishes the request body as it is, for curl: the payload is the body,
/// `Content-Type` becomes the message's content type, `Herald-Header-<name>`
/// headers become message headers (names in lower case, as HTTP carries them).
#[utoipa::path(
    post,
    path = "/v1/subjects/{subject}",
    tag = "messages",
    operation_id = "publish_raw",
    params(SubjectPath, RawPublishHeaders),
    request_body(content = RawPayload, content_type = "application/octet-stream", description = "The payload, any bytes"),
    responses(
        (status = 200, description = "Stored, or a duplicate (`duplicate: true`)", body = PublishAck),
        (status = 400, description = "Invalid subject, or a Herald- header that is not a valid value", body = WireError),
        (status = 409, description = "No stream captures the subject and none can be created (2003)", body = WireError),
        (status = 412, description = "The expected last seq did not match; `detail` has the actual one (3001)", body = WireError),
        (status = 413, description = "Payload over the limit; `detail` has size and limit (1005)", body = WireError),
        (status = 507, description = "The stream is full and refuses new messages (3002)", body = WireError),
    )
)]
pub(crate) async fn publish_raw(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<SubjectPath>,
    headers: HeaderMap,
    RawBody(payload): RawBody,
) -> ApiResult<Json<PublishAck>> {
    caller.check(&state.backend, Action::Publish(&path.subject)).await?;
    let message = raw_message(path.subject, &headers, payload)?;
    Ok(Json(publish_one(&state, message).await?))
}

/// The message a raw publish describes with its headers.
fn raw_message(subject: Subject, headers: &HeaderMap, payload: bytes::Bytes) -> Result<OutgoingMessage, Error> {
    let mut message = OutgoingMessage::new(subject, payload);
    for (name, value) in headers {
        let name = name.as_str();
        let text = || {
            value
                .to_str()
                .map(str::to_owned)
                .map_err(|_| invalid(format!("header `{name}` is not visible ASCII")))
        };
        let number = || {
            text()?
                .trim()
                .parse::<u64>()
                .map_err(|_| invalid(format!("header `{name}` must be a whole number")))
        };
        match name {
            "herald-msg-id" => message.id = Some(text()?),
            "herald-expected-last-seq" => message.expected_last_seq = Some(number()?),
            "herald-expected-last-subject-seq" => message.expected_last_subject_seq = Some(number()?),
            "herald-ttl-ms" => message.ttl = Some(Duration::from_millis(number()?)),
            "content-type" => message.content_type = Some(text()?),
            _ => {
                if let Some(header) = name.strip_prefix("herald-header-") {
                    message.headers.insert(header.to_owned(), text()?);
                }
            }
        }
    }
    Ok(message)
}

/// A message named by its stream and seq.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct MessagePath {
    /// The stream's name.
    stream: StreamName,
    /// The message's seq in it.
    seq: u64,
}

/// One stored message.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/messages/{seq}",
    tag = "messages",
    operation_id = "get_message",
    params(MessagePath),
    responses(
        (status = 200, description = "The message", body = WireMessage),
        (status = 400, description = "Invalid stream name or seq", body = WireError),
        (status = 404, description = "No such stream (2001) or message (2004)", body = WireError),
    )
)]
pub(crate) async fn get(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<MessagePath>,
) -> ApiResult<Json<WireMessage>> {
    let replay = Action::Replay {
        stream: &path.stream,
        subject: None,
    };
    caller.check(&state.backend, replay).await?;
    let message = state.backend.get_message(&path.stream, path.seq).await?;
    Ok(Json(WireMessage::from(&message)))
}

/// Which messages a range read returns.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct RangeQuery {
    /// Start at this seq (or the first held after it). Default: 1.
    from_seq: Option<u64>,
    /// Start at the first message stored at or after this time: RFC 3339 or
    /// nanoseconds since the epoch. Not with `from_seq` or `subject`.
    from_time: Option<String>,
    /// At most this many messages, 1 to 1,000 (fewer once they hold 4 MiB). Default: 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
    /// Only this subject's messages, through the stream's per-subject index
    /// (streams created with `subject_index` or `max_msgs_per_subject`).
    subject: Option<Subject>,
    /// Only messages whose subject matches this pattern (a scan). Not with `subject`.
    filter: Option<Pattern>,
}

/// Stored messages in seq order: a page of a stream, of one subject, or of
/// a pattern. The next page starts after the last seq returned; an empty
/// page is the end.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/messages",
    tag = "messages",
    operation_id = "read_messages",
    params(StreamPath, RangeQuery),
    responses(
        (status = 200, description = "The messages, possibly none", body = [WireMessage]),
        (status = 400, description = "Invalid or conflicting query parameters, or a subject read on a stream without a subject index", body = WireError),
        (status = 404, description = "No such stream (2001)", body = WireError),
    )
)]
pub(crate) async fn read(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(path): PathParams<StreamPath>,
    QueryParams(query): QueryParams<RangeQuery>,
) -> ApiResult<Json<Vec<WireMessage>>> {
    let limit = page(query.limit)?;
    let stream = &path.stream;
    let messages = match query.subject {
        Some(subject) => {
            if query.from_time.is_some() || query.filter.is_some() {
                return Err(invalid("`subject` reads by seq: it takes `from_seq`, not `from_time` or `filter`").into());
            }
            let replay = Action::Replay {
                stream,
                subject: Some(&subject),
            };
            caller.check(&state.backend, replay).await?;
            let from_seq = query.from_seq.unwrap_or(1);
            let max_payload = state.limits.max_payload;
            crate::page::read_subject(&*state.backend, stream, &subject, from_seq, limit, max_payload).await?
        }
        None => {
            caller
                .check(&state.backend, Action::Replay { stream, subject: None })
                .await?;
            let from = match (query.from_seq, query.from_time) {
                (Some(_), Some(_)) => return Err(invalid("give `from_seq` or `from_time`, not both").into()),
                (_, Some(time)) => ReadFrom::Time(parse_time(&time)?),
                (seq, None) => ReadFrom::Seq(seq.unwrap_or(1)),
            };
            let range = ReadRange {
                from,
                filter: query.filter.into_iter().collect(),
                limit,
            };
            crate::page::read_range(&*state.backend, stream, range, state.limits.max_payload).await?
        }
    };
    Ok(Json(messages.iter().map(WireMessage::from).collect()))
}

/// A subject of a stream, named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct StreamSubjectPath {
    /// The stream's name.
    stream: StreamName,
    /// The subject.
    subject: Subject,
}

/// The last message of a subject: the current value of a key, the latest
/// event of an aggregate.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/subjects/{subject}/last",
    tag = "messages",
    operation_id = "last_message",
    params(StreamSubjectPath),
    responses(
        (status = 200, description = "The subject's last message", body = WireMessage),
        (status = 400, description = "Invalid stream name or subject", body = WireError),
        (status = 404, description = "No such stream (2001), or no message of that subject (2004)", body = WireError),
    )
)]
pub(crate) async fn last(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<StreamSubjectPath>,
) -> ApiResult<Json<WireMessage>> {
    let replay = Action::Replay {
        stream: &path.stream,
        subject: Some(&path.subject),
    };
    caller.check(&state.backend, replay).await?;
    let message = state.backend.last_message(&path.stream, &path.subject).await?;
    Ok(Json(WireMessage::from(&message)))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn raw_publish_headers_become_the_message() {
        let mut headers = HeaderMap::new();
        headers.insert("herald-msg-id", HeaderValue::from_static("order-1"));
        headers.insert("herald-expected-last-subject-seq", HeaderValue::from_static("0"));
        headers.insert("herald-ttl-ms", HeaderValue::from_static("1500"));
        headers.insert("content-type", HeaderValue::from_static("application/json"));
        headers.insert("herald-header-correlation-id", HeaderValue::from_static("c-1"));
        headers.insert("accept", HeaderValue::from_static("*/*"));
        let subject = Subject::new("orders.1").unwrap();
        let message = raw_message(subject, &headers, bytes::Bytes::from_static(b"{}")).unwrap();
        assert_eq!(message.id.as_deref(), Some("order-1"));
        assert_eq!(message.expected_last_subject_seq, Some(0));
        assert_eq!(message.expected_last_seq, None);
        assert_eq!(message.ttl, Some(Duration::from_millis(1500)));
        assert_eq!(message.content_type.as_deref(), Some("application/json"));
        assert_eq!(message.headers.len(), 1);
        assert_eq!(message.headers["correlation-id"], "c-1");
    }

    #[test]
    fn a_bad_expected_seq_header_is_an_invalid_request() {
        let mut headers = HeaderMap::new();
        headers.insert("herald-expected-last-seq", HeaderValue::from_static("seven"));
        let subject = Subject::new("orders.1").unwrap();
        let err = raw_message(subject, &headers, bytes::Bytes::new()).unwrap_err();
        assert_eq!(err.kind(), herald_core::ErrorKind::InvalidRequest);
        assert!(err.to_string().contains("herald-expected-last-seq"), "{err}");
    }
}
