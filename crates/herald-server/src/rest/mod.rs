//! The HTTP API under `/v1` (docs/http.md): streams, messages, consumers and
//! dead letters as JSON resources, a live tail as server-sent events, and the
//! OpenAPI document that describes them, generated from these handlers.
//!
//! Every handler identifies its caller and asks [`Caller::check`](crate::auth::Caller::check)
//! before it acts. Failures answer with a status for their kind and the
//! error as JSON, the same object a WebSocket error frame carries
//! ([`crate::http_error`]), bad paths, queries and bodies included.

mod consumers;
mod dead_letters;
mod extract;
mod messages;
mod streams;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Router};
use herald_core::{Error, Timestamp};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub(crate) use consumers::{FetchRequest, ResetRequest, SettleBatchRequest, SettleRequest};
pub(crate) use dead_letters::LimitQuery;
pub(crate) use extract::{JsonBody, NoQuery, PathParams, QueryParams, RawBody, invalid, parse_json, parse_query};
pub(crate) use messages::RangeQuery;

use crate::{AppState, Limits};

/// The HTTP API's routes, `/v1/tail` and `/v1/openapi.json` included, with
/// bodies limited to what the largest payload needs.
pub(crate) fn routes(limits: &Limits) -> Router<AppState> {
    let (router, mut document) = api().split_for_parts();
    crate::openapi::complete(&mut document);
    router
        .layer(Extension(Arc::new(document)))
        .layer(DefaultBodyLimit::max(limits.max_body()))
}

/// Every route and its documentation, registered together so that neither
/// can exist without the other.
pub(crate) fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::base())
        .routes(routes!(streams::list, streams::create))
        .routes(routes!(streams::info, streams::update, streams::delete))
        .routes(routes!(streams::purge))
        .routes(routes!(messages::publish))
        .routes(routes!(messages::publish_batch))
        .routes(routes!(messages::publish_raw))
        .routes(routes!(messages::read))
        .routes(routes!(messages::get))
        .routes(routes!(messages::last))
        .routes(routes!(consumers::list, consumers::create))
        .routes(routes!(consumers::info, consumers::update, consumers::delete))
        .routes(routes!(consumers::reset))
        .routes(routes!(consumers::fetch))
        .routes(routes!(consumers::settle))
        .routes(routes!(consumers::settle_batch))
        .routes(routes!(dead_letters::list, dead_letters::purge))
        .routes(routes!(dead_letters::replay))
        .routes(routes!(crate::sse::tail))
        .routes(routes!(crate::openapi::document))
}

/// An error as a handler returns it; answered by [`crate::http_error`].
#[derive(Debug)]
pub(crate) struct ApiError(Error);

impl From<Error> for ApiError {
    fn from(error: Error) -> ApiError {
        ApiError(error)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::http_error(&self.0)
    }
}

/// What handlers return.
pub(crate) type ApiResult<T> = Result<T, ApiError>;

/// How many messages a read returns when the query does not say.
const DEFAULT_PAGE: usize = 100;

/// 1,000: the most messages one read returns. A page is held in memory whole
/// before it is sent, so it is kept to what a client pages through anyway.
const MAX_PAGE: usize = 1000;

/// A page size from a `limit` query parameter.
pub(crate) fn page(limit: Option<usize>) -> Result<usize, Error> {
    match limit.unwrap_or(DEFAULT_PAGE) {
        limit @ 1..=MAX_PAGE => Ok(limit),
        limit => Err(invalid(format!("limit must be 1 to {MAX_PAGE}, got {limit}"))),
    }
}

/// A time from a query parameter: RFC 3339 (`2026-03-01T12:00:00Z`) or
/// nanoseconds since the Unix epoch, the form JSON bodies use.
pub(crate) fn parse_time(text: &str) -> Result<Timestamp, Error> {
    if let Ok(nanos) = text.parse::<u64>() {
        return Ok(Timestamp(nanos));
    }
    let time = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| {
        invalid(format!(
            "`{text}` is neither RFC 3339 nor nanoseconds since the epoch: {e}"
        ))
    })?;
    u64::try_from(time.unix_timestamp_nanos())
        .map(Timestamp)
        .map_err(|_| invalid(format!("`{text}` is before the Unix epoch")))
}

/// How many messages a purge deleted.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Purged {
    /// Messages deleted.
    pub(crate) purged: u64,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn times_are_rfc_3339_or_nanoseconds() {
        assert_eq!(parse_time("1000").unwrap(), Timestamp(1000));
        assert_eq!(parse_time("1970-01-01T00:00:01.5Z").unwrap(), Timestamp(1_500_000_000));
        assert_eq!(
            parse_time("yesterday").unwrap_err().kind(),
            herald_core::ErrorKind::InvalidRequest
        );
        assert!(parse_time("1969-12-31T23:59:59Z").is_err());
    }

    #[test]
    fn pages_are_bounded() {
        assert_eq!(page(None).unwrap(), DEFAULT_PAGE);
        assert_eq!(page(Some(MAX_PAGE)).unwrap(), MAX_PAGE);
        assert!(page(Some(0)).is_err());
        assert!(page(Some(MAX_PAGE + 1)).is_err());
    }
}
