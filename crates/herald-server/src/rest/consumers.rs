//! `/v1/streams/{stream}/consumers`: durable consumers; fetch deliveries
//! under a lease, then settle each one, or many at once.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use herald_core::wire::{WireDelivery, WireError};
use herald_core::{ConsumerConfig, ConsumerInfo, ConsumerName, ReadFrom, Settle, SettleItem, StreamName};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::streams::StreamPath;
use super::{ApiResult, JsonBody, NoQuery, PathParams, invalid};
use crate::AppState;
use crate::auth::{Action, Caller};

/// A consumer named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct ConsumerPath {
    /// The stream's name.
    pub(crate) stream: StreamName,
    /// The consumer's name.
    pub(crate) consumer: ConsumerName,
}

/// Every consumer of a stream.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/consumers",
    tag = "consumers",
    operation_id = "list_consumers",
    params(StreamPath),
    responses(
        (status = 200, description = "Every consumer of the stream, by name", body = [ConsumerInfo]),
        (status = 400, description = "Invalid stream name", body = WireError),
        (status = 404, description = "No such stream (2001)", body = WireError),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<StreamPath>,
) -> ApiResult<Json<Vec<ConsumerInfo>>> {
    caller.check(&state.backend, Action::Inspect).await?;
    Ok(Json(state.backend.list_consumers(&path.stream).await?))
}

/// Creates a consumer; creating one that exists with the same configuration
/// changes nothing and answers the same.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/consumers",
    tag = "consumers",
    operation_id = "create_consumer",
    params(StreamPath),
    request_body = ConsumerConfig,
    responses(
        (status = 201, description = "The consumer, created or already there as configured", body = ConsumerInfo,
         headers(("location" = String, description = "The consumer's URL"))),
        (status = 400, description = "Malformed body, invalid name or settings", body = WireError),
        (status = 404, description = "No such stream (2001)", body = WireError),
        (status = 409, description = "A consumer of that name exists with another configuration (2006)", body = WireError),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<StreamPath>,
    JsonBody(config): JsonBody<ConsumerConfig>,
) -> ApiResult<impl IntoResponse> {
    caller.check(&state.backend, Action::Admin).await?;
    let info = state.backend.create_consumer(&path.stream, config).await?;
    let location = format!("/v1/streams/{}/consumers/{}", info.stream, info.config.name);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(info)))
}

/// A consumer's configuration and progress: ack floor, lag, leases, members.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/consumers/{consumer}",
    tag = "consumers",
    operation_id = "consumer_info",
    params(ConsumerPath),
    responses(
        (status = 200, description = "The consumer", body = ConsumerInfo),
        (status = 400, description = "Invalid stream or consumer name", body = WireError),
        (status = 404, description = "No such stream (2001) or consumer (2005)", body = WireError),
    )
)]
pub(crate) async fn info(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<ConsumerPath>,
) -> ApiResult<Json<ConsumerInfo>> {
    caller.check(&state.backend, Action::Inspect).await?;
    Ok(Json(state.backend.consumer_info(&path.stream, &path.consumer).await?))
}

/// Replaces a consumer's settings (not its start); its progress is kept. The
/// body's `name` must be the path's.
#[utoipa::path(
    put,
    path = "/v1/streams/{stream}/consumers/{consumer}",
    tag = "consumers",
    operation_id = "update_consumer",
    params(ConsumerPath),
    request_body = ConsumerConfig,
    responses(
        (status = 200, description = "The consumer with its new settings", body = ConsumerInfo),
        (status = 400, description = "Malformed body, another name than the path's, or invalid settings", body = WireError),
        (status = 404, description = "No such stream (2001) or consumer (2005)", body = WireError),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<ConsumerPath>,
    JsonBody(config): JsonBody<ConsumerConfig>,
) -> ApiResult<Json<ConsumerInfo>> {
    caller.check(&state.backend, Action::Admin).await?;
    if config.name != path.consumer {
        return Err(invalid(format!(
            "the body configures consumer `{}` but the path names `{}`",
            config.name, path.consumer
        ))
        .into());
    }
    Ok(Json(state.backend.update_consumer(&path.stream, config).await?))
}

/// Deletes a consumer and its progress.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}/consumers/{consumer}",
    tag = "consumers",
    operation_id = "delete_consumer",
    params(ConsumerPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid stream or consumer name", body = WireError),
        (status = 404, description = "No such stream (2001) or consumer (2005)", body = WireError),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<ConsumerPath>,
) -> ApiResult<StatusCode> {
    caller.check(&state.backend, Action::Admin).await?;
    state.backend.delete_consumer(&path.stream, &path.consumer).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Where a reset moves a consumer.
// Serialize and PartialEq: the fuzzers check that a body reads back as it was written.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResetRequest {
    /// Deliver again from this seq or time on.
    to: ReadFrom,
}

/// Moves a consumer back (or forward) to a seq or a time: its leases are
/// dropped and everything from there on is delivered again.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/consumers/{consumer}/reset",
    tag = "consumers",
    operation_id = "reset_consumer",
    params(ConsumerPath),
    request_body = ResetRequest,
    responses(
        (status = 200, description = "The consumer after the reset", body = ConsumerInfo),
        (status = 400, description = "Malformed body or invalid names", body = WireError),
        (status = 404, description = "No such stream (2001) or consumer (2005)", body = WireError),
    )
)]
pub(crate) async fn reset(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<ConsumerPath>,
    JsonBody(request): JsonBody<ResetRequest>,
) -> ApiResult<Json<ConsumerInfo>> {
    caller.check(&state.backend, Action::Admin).await?;
    let info = state
        .backend
        .reset_consumer(&path.stream, &path.consumer, request.to)
        .await?;
    Ok(Json(info))
}

/// A fetch: who asks, how many, how long to wait for the first.
// Serialize and PartialEq: the fuzzers check that a body reads back as it was written.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct FetchRequest {
    /// The member fetching (a consumer group has several); each delivery is
    /// leased to it.
    member: ConsumerName,
    /// At most this many deliveries (fewer once they hold 4 MiB). Default: 1.
    #[serde(default = "one")]
    #[schema(minimum = 1)]
    max: usize,
    /// How long to wait for a first delivery, in milliseconds, at most
    /// 60,000. Default: 0, answer at once. A server that stops ends the wait
    /// with 503 (5002): fetch again once it is back.
    #[serde(default)]
    wait_ms: u64,
}

fn one() -> usize {
    1
}

/// Takes deliveries for a member: fresh messages first, then redeliveries.
/// Each is leased to the member until settled or its `ack_wait` runs out.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/consumers/{consumer}/fetch",
    tag = "consumers",
    operation_id = "fetch",
    params(ConsumerPath),
    request_body = FetchRequest,
    responses(
        (status = 200, description = "Deliveries, none if the wait ran out", body = [WireDelivery]),
        (status = 400, description = "Malformed body, invalid names, `max` of 0 or `wait_ms` over 60,000", body = WireError),
        (status = 404, description = "No such stream (2001) or consumer (2005)", body = WireError),
        (status = 503, description = "The server is stopping: fetch again once it is back (5002)", body = WireError),
    )
)]
pub(crate) async fn fetch(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<ConsumerPath>,
    JsonBody(request): JsonBody<FetchRequest>,
) -> ApiResult<Response> {
    let consume = Action::Consume {
        stream: &path.stream,
        consumer: &path.consumer,
    };
    caller.check(&state.backend, consume).await?;
    let wait = crate::page::fetch_wait(request.wait_ms)?;
    let names = (&path.stream, &path.consumer, &request.member);
    let max_payload = state.limits.max_payload;
    let stopping = state.stopping.clone();
    let (deliveries, owed) =
        crate::page::fetch(&state.backend, names, request.max, wait, max_payload, stopping).await?;
    for delivery in &deliveries {
        state.metrics.delivered(&delivery.message);
    }
    let wire: Vec<WireDelivery> = deliveries.iter().map(WireDelivery::from).collect();
    let body = serde_json::to_vec(&wire)
        .map_err(|e| herald_core::Error::new(herald_core::ErrorKind::Internal, format!("encoding deliveries: {e}")))?;
    // The deliveries stay owed until the answer is out: a client gone before
    // then does not keep them leased.
    let handover = crate::release::Handover::new(body.into(), owed);
    Ok((
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(handover),
    )
        .into_response())
}

/// How one delivery is settled.
// Serialize and PartialEq: the fuzzers check that a body reads back as it was written.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettleRequest {
    /// The member holding the lease.
    member: ConsumerName,
    /// The message's stream seq.
    seq: u64,
    /// The delivery's `deliveries` count, as fetched: it names the lease
    /// being settled.
    deliveries: u32,
    /// `"ack"` (the default), `"in_progress"`, `{"nak": {"delay": …}}` or
    /// `{"term": {"reason": "…"}}`.
    #[serde(default = "ack")]
    settle: Settle,
}

fn ack() -> Settle {
    Settle::Ack
}

/// Settles one delivery: ack it, nak it for redelivery after a delay, extend
/// its lease while still working, or terminate it into the dead letters.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/consumers/{consumer}/settle",
    tag = "consumers",
    operation_id = "settle",
    params(ConsumerPath),
    request_body = SettleRequest,
    responses(
        (status = 204, description = "Settled (acks are idempotent)"),
        (status = 400, description = "Malformed body or invalid names", body = WireError),
        (status = 404, description = "No such stream (2001) or consumer (2005)", body = WireError),
        (status = 409, description = "The lease expired and the message moved on (3003)", body = WireError),
    )
)]
pub(crate) async fn settle(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<ConsumerPath>,
    JsonBody(request): JsonBody<SettleRequest>,
) -> ApiResult<StatusCode> {
    let consume = Action::Settle {
        stream: &path.stream,
        consumer: &path.consumer,
    };
    caller.check(&state.backend, consume).await?;
    state
        .backend
        .settle(
            &path.stream,
            &path.consumer,
            &request.member,
            request.seq,
            request.deliveries,
            request.settle,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Many settles of one member's deliveries.
// Serialize and PartialEq: the fuzzers check that a body reads back as it was written.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettleBatchRequest {
    /// The member holding the leases.
    member: ConsumerName,
    /// The settles, applied in order: at most 10,000.
    #[schema(max_items = 10_000)]
    items: Vec<SettleItem>,
}

/// What became of each settle of a batch.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SettleBatchAnswer {
    /// One entry per item, in order: `null` when it was settled, the error
    /// that refused it (`lease_lost`, 3003, say) otherwise.
    results: Vec<Option<WireError>>,
}

/// Settles many deliveries in one call, each as `settle` would. An item
/// refused on its own changes nothing and leaves the others applied; the
/// answer says which.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/consumers/{consumer}/settle_batch",
    tag = "consumers",
    operation_id = "settle_batch",
    params(ConsumerPath),
    request_body = SettleBatchRequest,
    responses(
        (status = 200, description = "One result per item, in order", body = SettleBatchAnswer),
        (status = 400, description = "Malformed body, invalid names, an invalid settle or more than 10,000 items: nothing settled", body = WireError),
        (status = 404, description = "No such stream (2001) or consumer (2005)", body = WireError),
    )
)]
pub(crate) async fn settle_batch(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<ConsumerPath>,
    JsonBody(request): JsonBody<SettleBatchRequest>,
) -> ApiResult<Json<SettleBatchAnswer>> {
    let settle = Action::Settle {
        stream: &path.stream,
        consumer: &path.consumer,
    };
    caller.check(&state.backend, settle).await?;
    let results = crate::settle::batch(
        &*state.backend,
        &path.stream,
        &path.consumer,
        &request.member,
        request.items,
    )
    .await?;
    Ok(Json(SettleBatchAnswer { results }))
}
