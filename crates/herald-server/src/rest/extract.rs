//! Extractors that answer bad input the way every other error is answered: a
//! status and a `WireError` JSON body (code 1004, or 1005 for a body over the
//! limit), never axum's plain-text rejections.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::CONTENT_LENGTH;
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use herald_core::{Error, ErrorDetail, ErrorKind};
use serde::de::DeserializeOwned;

use super::ApiError;
use crate::AppState;

/// A JSON request body, parsed whatever its `Content-Type` says (curl's
/// `-d` labels JSON as a form).
#[derive(Debug)]
pub(crate) struct JsonBody<T>(pub(crate) T);

/// A request body taken as it is: a raw payload.
#[derive(Debug)]
pub(crate) struct RawBody(pub(crate) Bytes);

/// Path parameters.
#[derive(Debug)]
pub(crate) struct PathParams<T>(pub(crate) T);

/// Query parameters.
#[derive(Debug)]
pub(crate) struct QueryParams<T>(pub(crate) T);

/// An `InvalidRequest` error.
pub(crate) fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidRequest, message)
}

/// Parses a JSON body.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| invalid(format!("malformed JSON body: {e}")))
}

impl FromRequest<AppState> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<RawBody, ApiError> {
        let limit = state.limits.max_body();
        let declared = declared_length(req.headers());
        // A declared length over the limit is refused before anything is read.
        if declared.is_some_and(|size| size > limit as u64) {
            return Err(body_too_large(declared, limit).into());
        }
        // `DefaultBodyLimit` (set on the routes) stops a longer body as it streams in.
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(RawBody(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(body_too_large(declared, limit).into())
            }
            Err(rejection) => Err(invalid(format!("reading the request body: {}", rejection.body_text())).into()),
        }
    }
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<JsonBody<T>, ApiError> {
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        Ok(JsonBody(parse_json(&bytes)?))
    }
}

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<PathParams<T>, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| PathParams(value))
            .map_err(|rejection| invalid(rejection.body_text()).into())
    }
}

impl<T: DeserializeOwned> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<QueryParams<T>, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| QueryParams(value))
            .map_err(|rejection| invalid(rejection.body_text()).into())
    }
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(CONTENT_LENGTH)?.to_str().ok()?.parse().ok()
}

/// A body over the server's limit: `PayloadTooLarge`, with the size when the
/// client declared it.
fn body_too_large(size: Option<u64>, limit: usize) -> Error {
    let error = Error::new(
        ErrorKind::PayloadTooLarge,
        format!("the request body is over the server's limit of {limit} bytes"),
    );
    match size {
        Some(size) => error.with_detail(ErrorDetail::TooLarge {
            size,
            limit: limit as u64,
        }),
        None => error,
    }
}
