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

/// Parses a JSON body, strictly: an unknown field is refused, named with the
/// nearest known one.
pub(crate) fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(invalid(
            "the request needs a JSON body (docs/http.md shows each route's)",
        ));
    }
    herald_core::input::from_json("body", bytes)
}

/// The query parameter that carries an access token where no header can
/// (a browser's `EventSource`); read when the caller is identified, so it
/// is no handler's unknown parameter.
const ACCESS_TOKEN_PARAM: &str = "access_token";

/// Reads `name=value` pairs (a query string, or path parameters encoded as
/// one) into `T`, strictly: an unknown name is refused, named with the
/// nearest known one.
fn parse_pairs<T: DeserializeOwned>(what: &str, pairs: &[(String, String)]) -> Result<T, Error> {
    let encoded = serde_urlencoded::to_string(pairs).map_err(|_| invalid(format!("the {what} is not valid")))?;
    let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(encoded.as_bytes()));
    herald_core::input::from_deserializer(what, deserializer)
}

/// Parses a query string, strictly.
pub(crate) fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, Error> {
    let pairs = query_pairs(query)?;
    let kept: Vec<(String, String)> = pairs
        .into_iter()
        .filter(|(name, _)| name != ACCESS_TOKEN_PARAM)
        .collect();
    parse_pairs("query", &kept)
}

/// The `name=value` pairs of a query string, decoded strictly: a `%` that
/// starts no escape, or bytes that are not UTF-8 once decoded, are refused
/// rather than read as something else (`%FF` would otherwise become U+FFFD,
/// a valid subject).
fn query_pairs(query: &str) -> Result<Vec<(String, String)>, Error> {
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = decode(name).ok_or_else(|| {
                invalid(format!(
                    "query: the parameter name `{name}` is not valid URL encoding of UTF-8"
                ))
            })?;
            let value = decode(value).ok_or_else(|| {
                invalid(format!(
                    "query: the value of `{name}` is not valid URL encoding of UTF-8"
                ))
            })?;
            Ok((name, value))
        })
        .collect()
}

/// One part of a query string, percent-decoded with `+` for a space;
/// `None` for a bad escape or bytes that are not UTF-8.
fn decode(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        rest = tail;
        match first {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = rest.get(..2).filter(|h| h.iter().all(u8::is_ascii_hexdigit))?;
                bytes.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                rest = &rest[2..];
            }
            byte => bytes.push(byte),
        }
    }
    String::from_utf8(bytes).ok()
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
            Err(_) => Err(invalid("the request body could not be read whole (the connection broke?)").into()),
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
        let params = axum::extract::RawPathParams::from_request_parts(parts, state)
            .await
            .map_err(|_| invalid("the path is not valid UTF-8 once percent-decoded"))?;
        let pairs: Vec<(String, String)> = params.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Ok(PathParams(parse_pairs("path", &pairs)?))
    }
}

impl<T: DeserializeOwned> FromRequestParts<AppState> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<QueryParams<T>, ApiError> {
        Ok(QueryParams(parse_query(parts.uri.query().unwrap_or_default())?))
    }
}

/// A handler that takes no query parameters: any but the access token is
/// refused, so a misspelt one never goes unnoticed.
#[derive(Debug)]
pub(crate) struct NoQuery;

/// No parameters at all.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParameters {}

impl FromRequestParts<AppState> for NoQuery {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<NoQuery, ApiError> {
        let NoParameters {} = parse_query(parts.uri.query().unwrap_or_default())?;
        Ok(NoQuery)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_query_is_decoded_strictly() {
        let pairs = query_pairs("pattern=orders.%3E&limit=10&&note=a+b%20c&flag").unwrap();
        let expected = [
            ("pattern", "orders.>"),
            ("limit", "10"),
            ("note", "a b c"),
            ("flag", ""),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        assert_eq!(pairs, expected);
        assert_eq!(query_pairs("subject=caf%C3%A9").unwrap()[0].1, "café");
        for bad in [
            "subject=%FF",
            "filter=%FF%FE",
            "%zz=1",
            "limit=%2",
            "limit=%+1",
            "a=%C3",
        ] {
            let err = query_pairs(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidRequest, "{bad}");
            assert!(
                err.message().contains("not valid URL encoding of UTF-8"),
                "{bad}: {err}"
            );
        }
    }
}
