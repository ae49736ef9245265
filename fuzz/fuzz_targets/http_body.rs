//! Run with: cargo +nightly fuzz run http_body (see docs/testing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_testkit::fuzz::targets::http_body(data));
