//! `/v1/streams/{stream}/consumers/{consumer}/dead-letters`: what a consumer
//! gave up on; list, replay to the original subjects, or purge.
//!
//! The facade's functions do the work, so the HTTP API and library callers
//! replay the same way.

use axum::Json;
use axum::extract::State;
use herald::Bus;
use herald_core::wire::{WireError, WireMessage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::consumers::ConsumerPath;
use super::{ApiResult, NoQuery, PathParams, Purged, QueryParams, page};
use crate::AppState;
use crate::auth::{Action, Caller};

/// Checks the caller may administer, and that the consumer exists (so an
/// unknown consumer is a 2005, not a missing dead-letter stream).
async fn admit(state: &AppState, caller: &Caller, path: &ConsumerPath) -> ApiResult<Bus> {
    caller.check(&state.backend, Action::Admin).await?;
    state.backend.consumer_info(&path.stream, &path.consumer).await?;
    Ok(Bus::from_backend(state.backend.clone()))
}

/// How many dead letters to list.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct LimitQuery {
    /// At most this many, 1 to 1,000. Default: 100.
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<usize>,
}

/// The oldest dead letters of a consumer, with headers naming where each came
/// from (`herald-dlq-stream`, `-seq`, `-subject`, `-consumer`, `-deliveries`,
/// `-reason`).
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}/consumers/{consumer}/dead-letters",
    tag = "dead letters",
    operation_id = "dead_letters",
    params(ConsumerPath, LimitQuery),
    responses(
        (status = 200, description = "Dead letters, oldest first", body = [WireMessage]),
        (status = 400, description = "Invalid names or limit", body = WireError),
        (status = 404, description = "No such stream (2001) or consumer (2005), or a consumer that discards its dead letters", body = WireError),
    )
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    caller: Caller,
    PathParams(path): PathParams<ConsumerPath>,
    QueryParams(query): QueryParams<LimitQuery>,
) -> ApiResult<Json<Vec<WireMessage>>> {
    let limit = page(query.limit)?;
    let bus = admit(&state, &caller, &path).await?;
    let letters = bus.dead_letters(&path.stream, &path.consumer, limit).await?;
    Ok(Json(letters.iter().map(WireMessage::from).collect()))
}

/// How many dead letters a replay republished.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Replayed {
    /// Dead letters republished and removed.
    replayed: u64,
}

/// Republishes every dead letter to its original subject (original headers,
/// a fresh id) and removes it from the dead letters.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/consumers/{consumer}/dead-letters/replay",
    tag = "dead letters",
    operation_id = "replay_dead_letters",
    params(ConsumerPath),
    responses(
        (status = 200, description = "How many were replayed", body = Replayed),
        (status = 400, description = "Invalid names", body = WireError),
        (status = 404, description = "No such stream (2001) or consumer (2005), or a consumer that discards its dead letters", body = WireError),
    )
)]
pub(crate) async fn replay(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<ConsumerPath>,
) -> ApiResult<Json<Replayed>> {
    let bus = admit(&state, &caller, &path).await?;
    let replayed = bus.replay_dead_letters(&path.stream, &path.consumer).await?;
    Ok(Json(Replayed { replayed }))
}

/// Deletes every dead letter of a consumer.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}/consumers/{consumer}/dead-letters",
    tag = "dead letters",
    operation_id = "purge_dead_letters",
    params(ConsumerPath),
    responses(
        (status = 200, description = "How many were deleted", body = Purged),
        (status = 400, description = "Invalid names", body = WireError),
        (status = 404, description = "No such stream (2001) or consumer (2005), or a consumer that discards its dead letters", body = WireError),
    )
)]
pub(crate) async fn purge(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<ConsumerPath>,
) -> ApiResult<Json<Purged>> {
    let bus = admit(&state, &caller, &path).await?;
    let purged = bus.purge_dead_letters(&path.stream, &path.consumer).await?;
    Ok(Json(Purged { purged }))
}
