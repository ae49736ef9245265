//! Schema-only types for the OpenAPI document (feature `openapi`): the JSON
//! forms of standard types that utoipa cannot describe by itself.

/// A duration as serde writes `std::time::Duration`: whole seconds plus the
/// nanoseconds past them, `{"secs": 30, "nanos": 0}`.
#[derive(utoipa::ToSchema)]
// Never built: it only describes the JSON of `std::time::Duration` fields.
#[allow(dead_code)]
pub(crate) struct Duration {
    /// Whole seconds.
    secs: u64,
    /// Nanoseconds past `secs`.
    #[schema(maximum = 999_999_999)]
    nanos: u32,
}
