//! Run with: cargo +nightly fuzz run ws_session (see docs/testing.md).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| herald_testkit::fuzz::targets::ws_session(data));
