//! Herald's embedded engine: streams on redb, durable by default.
//!
//! One writer thread owns every write transaction and commits the queued
//! requests of many publishers together (group commit), fsyncing once per batch
//! before it answers them; reads are redb MVCC read transactions and never block
//! it. `Engine::memory()` is the same engine on redb's in-memory backend.
//!
//! Durable consumers keep their cursor and leases in memory behind short locks
//! and are saved lazily by the writer; live subscriptions follow the log with a
//! cursor. Commits wake waiting fetches and subscriptions through watch channels
//! that carry only a stream's new head, never payloads.
//!
//! Most users reach the engine through the `herald` facade (`Bus::open`); use it
//! directly to pick a custom clock or storage backend.
//!
//! ```
//! use herald_core::{OutgoingMessage, StreamBackend, Subject};
//! use herald_engine::Engine;
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let engine = Engine::open(dir.path())?;
//! let ack = engine.publish(OutgoingMessage::new(Subject::new("orders.created")?, "hello")).await?;
//! assert_eq!((ack.stream.as_str(), ack.seq), ("orders", 1));
//! let msg = engine.get_message(&ack.stream, ack.seq).await?;
//! assert_eq!(&msg.payload[..], b"hello");
//! # Ok::<(), herald_core::Error>(())
//! # })?;
//! # Ok::<(), herald_core::Error>(())
//! ```

mod append;
mod clock;
mod consumer_api;
mod consumers;
mod dedup;
mod encode;
mod engine;
mod error;
pub mod fuzzing;
mod notify;
mod read;
mod recovery;
mod requests;
mod retention;
mod settle;
mod store;
mod streams;
mod subscribe;
mod tables;
mod writer;

pub use clock::{Clock, ManualClock, SystemClock};
pub use engine::{DATA_FILE, Engine, EngineBuilder};
pub use error::EngineError;
pub use writer::{CONSUMER_SAVE_INTERVAL, MAINTENANCE_INTERVAL, RELAXED_FLUSH_INTERVAL};
