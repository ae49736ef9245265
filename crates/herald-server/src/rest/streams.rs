//! `/v1/streams`: create, list, inspect, update, delete and purge streams.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use herald_core::wire::WireError;
use herald_core::{Purge, PurgeSelector, StreamConfig, StreamInfo, StreamName};
use serde::Deserialize;
use utoipa::IntoParams;

use super::{ApiResult, JsonBody, NoQuery, PathParams, Purged, RawBody, invalid, parse_json};
use crate::AppState;
use crate::auth::{Action, Caller};

/// A stream named in the path.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Path)]
pub(crate) struct StreamPath {
    /// The stream's name.
    pub(crate) stream: StreamName,
}

/// Every stream.
#[utoipa::path(
    get,
    path = "/v1/streams",
    tag = "streams",
    operation_id = "list_streams",
    responses((status = 200, description = "Every stream, by name", body = [StreamInfo]))
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
) -> ApiResult<Json<Vec<StreamInfo>>> {
    caller.check(&state.backend, Action::Inspect).await?;
    Ok(Json(state.backend.list_streams().await?))
}

/// Creates a stream; creating one that exists with the same configuration
/// changes nothing and answers the same.
#[utoipa::path(
    post,
    path = "/v1/streams",
    tag = "streams",
    operation_id = "create_stream",
    request_body = StreamConfig,
    responses(
        (status = 201, description = "The stream, created or already there as configured", body = StreamInfo,
         headers(("location" = String, description = "The stream's URL"))),
        (status = 400, description = "Malformed body, invalid name, subjects or limits", body = WireError),
        (status = 409, description = "A stream of that name exists with another configuration (2002), or the subjects overlap another stream's (2003)", body = WireError),
    )
)]
pub(crate) async fn create(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    JsonBody(config): JsonBody<StreamConfig>,
) -> ApiResult<impl IntoResponse> {
    caller.check(&state.backend, Action::Admin).await?;
    let info = state.backend.create_stream(config).await?;
    let location = format!("/v1/streams/{}", info.config.name);
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(info)))
}

/// A stream's configuration and state.
#[utoipa::path(
    get,
    path = "/v1/streams/{stream}",
    tag = "streams",
    operation_id = "stream_info",
    params(StreamPath),
    responses(
        (status = 200, description = "The stream", body = StreamInfo),
        (status = 400, description = "Invalid stream name", body = WireError),
        (status = 404, description = "No such stream (2001)", body = WireError),
    )
)]
pub(crate) async fn info(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<StreamPath>,
) -> ApiResult<Json<StreamInfo>> {
    caller.check(&state.backend, Action::Inspect).await?;
    Ok(Json(state.backend.stream_info(&path.stream).await?))
}

/// Replaces a stream's limits and policies; they apply at once. The body's
/// `name` must be the path's.
#[utoipa::path(
    put,
    path = "/v1/streams/{stream}",
    tag = "streams",
    operation_id = "update_stream",
    params(StreamPath),
    request_body = StreamConfig,
    responses(
        (status = 200, description = "The stream with its new configuration", body = StreamInfo),
        (status = 400, description = "Malformed body, another name than the path's, or invalid limits", body = WireError),
        (status = 404, description = "No such stream (2001)", body = WireError),
        (status = 409, description = "The subjects overlap another stream's (2003)", body = WireError),
    )
)]
pub(crate) async fn update(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<StreamPath>,
    JsonBody(config): JsonBody<StreamConfig>,
) -> ApiResult<Json<StreamInfo>> {
    caller.check(&state.backend, Action::Admin).await?;
    if config.name != path.stream {
        return Err(invalid(format!(
            "the body configures stream `{}` but the path names `{}`",
            config.name, path.stream
        ))
        .into());
    }
    Ok(Json(state.backend.update_stream(config).await?))
}

/// Deletes a stream and every message in it.
#[utoipa::path(
    delete,
    path = "/v1/streams/{stream}",
    tag = "streams",
    operation_id = "delete_stream",
    params(StreamPath),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Invalid stream name", body = WireError),
        (status = 404, description = "No such stream (2001)", body = WireError),
    )
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<StreamPath>,
) -> ApiResult<StatusCode> {
    caller.check(&state.backend, Action::Admin).await?;
    state.backend.delete_stream(&path.stream).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Deletes the messages the body selects: `{"all": true}` for every one, or
/// those of one `subject` and/or below `before_seq`. A purge must say what it
/// deletes: an empty body, `{}` or a misspelt field is refused and deletes
/// nothing. The stream stays.
#[utoipa::path(
    post,
    path = "/v1/streams/{stream}/purge",
    tag = "streams",
    operation_id = "purge_stream",
    params(StreamPath),
    request_body(content = PurgeSelector, description = "What to delete: `{\"all\": true}`, or `subject` and/or `before_seq`"),
    responses(
        (status = 200, description = "How many messages were deleted", body = Purged),
        (status = 400, description = "Malformed body, no selector, an unknown field, or an invalid stream name", body = WireError),
        (status = 404, description = "No such stream (2001)", body = WireError),
    )
)]
pub(crate) async fn purge(
    State(state): State<AppState>,
    _: NoQuery,
    caller: Caller,
    PathParams(path): PathParams<StreamPath>,
    RawBody(body): RawBody,
) -> ApiResult<Json<Purged>> {
    caller.check(&state.backend, Action::Admin).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(
            invalid(r#"say what to purge: {"all": true} for every message, or `subject` and/or `before_seq`"#).into(),
        );
    }
    let purge: Purge = parse_json(&body)?;
    let purged = state.backend.purge_stream(&path.stream, purge).await?;
    Ok(Json(Purged { purged }))
}
