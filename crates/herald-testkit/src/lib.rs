//! Herald's test kit: the conformance suite every backend runs, the fixtures it
//! runs on, and the fault-injecting storage the crash tests use.
//!
//! A backend proves it keeps Herald's promises by running the whole suite:
//!
//! ```no_run
//! async fn embedded() -> herald_testkit::TestBus {
//!     herald_testkit::TestBus::memory()
//! }
//! herald_testkit::conformance_tests!(embedded);
//! ```

pub mod faulty_storage;
mod fixture;
pub mod fuzz;
pub mod nats_server;
pub mod suite;

pub use fixture::TestBus;
