//! The `herald` command's config file, as a library so that tests and the
//! fuzzers read it exactly as `herald serve` does. The command itself is
//! the `herald` binary (src/main.rs); nothing here is an API to build on.

#[doc(hidden)]
pub mod config;
