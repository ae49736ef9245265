//! `GET /v1/openapi.json`: the HTTP API as an OpenAPI 3.1 document.
//!
//! Nothing here lists routes: each handler carries its own `#[utoipa::path]`
//! and [`crate::rest::api`] registers handler and documentation together.
//! This module adds what every operation shares: the ways to present a token
//! and the answers any call may get when one is refused.

use std::sync::Arc;

use axum::Extension;
use axum::response::{IntoResponse, Response};
use herald_core::wire::WireError;
use utoipa::OpenApi;
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{Components, ContentBuilder, Ref, RefOr, ResponseBuilder};

/// The document's fixed part: title, description, tags and shared schemas.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald HTTP API",
        description = "Streams, messages, durable consumers and dead letters of a Herald bus \
                       as JSON resources, and a live tail as server-sent events. The WebSocket \
                       protocol at /v1/ws offers the same operations on one connection."
    ),
    components(schemas(WireError)),
    tags(
        (name = "streams", description = "Append-only logs and their limits"),
        (name = "messages", description = "Publishing and reading stored messages"),
        (name = "consumers", description = "Durable consumers: fetch with a lease, then settle"),
        (name = "dead letters", description = "Messages a consumer gave up on"),
        (name = "tail", description = "A live subscription as server-sent events"),
        (name = "meta", description = "This document")
    )
)]
struct ApiDoc;

/// The document before the routes add their paths.
pub(crate) fn base() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// Names of the security schemes: a bearer token, or the same token as the
/// `access_token` query parameter for clients that cannot set headers.
const BEARER: &str = "bearer";
const QUERY_TOKEN: &str = "access_token";

/// Adds the security schemes and, to every operation that needs a token, the
/// answers for a missing, unknown or insufficient one and for server failures.
pub(crate) fn complete(document: &mut utoipa::openapi::OpenApi) {
    let components = document.components.get_or_insert_with(Components::new);
    components.add_security_scheme(
        BEARER,
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "An access token from `herald token`, when the server requires one",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        QUERY_TOKEN,
        SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
            QUERY_TOKEN,
            "The same token as a query parameter, for browsers' EventSource",
        ))),
    );
    for (name, description) in SHARED_ERRORS {
        components
            .responses
            .insert((*name).to_owned(), RefOr::T(error_response(description)));
    }
    document.security = Some(vec![
        SecurityRequirement::new(BEARER, Vec::<String>::new()),
        SecurityRequirement::new(QUERY_TOKEN, Vec::<String>::new()),
    ]);
    let public = SecurityRequirement::default();
    for item in document.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.patch,
        ];
        for operation in operations.into_iter().flatten() {
            let open = operation.security.as_ref().is_some_and(|s| s.contains(&public));
            let shared: &[(&str, &str)] = if open {
                &[("500", "Internal")]
            } else {
                &[("401", "Unauthorized"), ("403", "Forbidden"), ("500", "Internal")]
            };
            for (status, name) in shared {
                operation
                    .responses
                    .responses
                    .entry((*status).to_owned())
                    .or_insert_with(|| RefOr::Ref(Ref::from_response_name(*name)));
            }
        }
    }
}

/// Answers any operation may give, by their names under `components/responses`.
const SHARED_ERRORS: &[(&str, &str)] = &[
    (
        "Unauthorized",
        "The server requires an access token and none, or an unknown one, was presented (code 4005)",
    ),
    ("Forbidden", "The token does not allow this operation (code 4005)"),
    ("Internal", "Storage failure or a bug (codes 5001, 5002, 5999)"),
];

fn error_response(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("WireError")))
                .build(),
        )
        .build()
}

/// The OpenAPI document of this API (served without a token).
#[utoipa::path(
    get,
    path = "/v1/openapi.json",
    tag = "meta",
    operation_id = "openapi",
    security(()),
    responses((status = 200, description = "This document, OpenAPI 3.1", content_type = "application/json", body = Object))
)]
pub(crate) async fn document(
    _: crate::rest::NoQuery,
    Extension(document): Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Response {
    axum::Json(document.as_ref()).into_response()
}
