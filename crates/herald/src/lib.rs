//! Herald: a durable event bus for Rust.
//!
//! Publish to subjects, keep messages in streams with limits that really
//! delete, and read them back by seq, by time or by subject. Embedded (this
//! crate's default) a publish returns once its commit is fsynced; concurrent
//! publishers share one commit.
//!
//! ```
//! use herald::{Bus, OutgoingMessage, StreamConfig, Subject};
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let dir = tempfile::tempdir()?;
//! let bus = Bus::open(dir.path()).await?;
//! bus.create_stream(StreamConfig::new("orders")?.max_msgs_per_subject(10)).await?;
//!
//! let ack = bus
//!     .publish_message(OutgoingMessage::new(Subject::new("orders.42")?, "created").id("order-42-created"))
//!     .await?;
//! let again = bus
//!     .publish_message(OutgoingMessage::new(Subject::new("orders.42")?, "created").id("order-42-created"))
//!     .await?;
//! assert!(again.duplicate && again.seq == ack.seq);
//!
//! let history = bus.read_subject("orders", "orders.42", 1, 100).await?;
//! assert_eq!(history.len(), 1);
//! # Ok::<(), herald::Error>(())
//! # })?;
//! # Ok::<(), herald::Error>(())
//! ```

mod bus;
mod consumer;
pub mod events;
pub mod jobs;
pub mod kv;
pub mod processor;
pub mod recording;
mod service;
pub mod sourcing;
mod subscription;

pub use bus::{Bus, BusBuilder};
pub use consumer::{Consumer, ConsumerBuilder, DEFAULT_MEMBER, Received};
pub use events::{Envelope, Event, Meta};
/// How to reach a Herald server (feature `remote`), for [`Bus::connect_with`].
#[cfg(feature = "remote")]
pub use herald_client::ConnectOptions;
/// The Backend traits on a Herald server (feature `remote`), for a bus made
/// with [`Bus::from_backend`] when the client itself is wanted too (its
/// `buffered_bytes`, say).
#[cfg(feature = "remote")]
pub use herald_client::{RESPONDER_BUFFER, RemoteBackend, SUBSCRIPTION_BUFFER_BYTES};
pub use herald_core::{
    Backend, Bytes, ConsumerBackend, ConsumerConfig, ConsumerInfo, ConsumerName, DEFAULT_DUPLICATE_WINDOW,
    DEFAULT_MAX_PAYLOAD, DeadLetter, Delivery, Discard, Durability, Error, ErrorDetail, ErrorKind, Headers,
    MAX_HEADER_BYTES, MAX_ID_LEN, MAX_LEASE, MAX_NAK_DELAY, MAX_NAME_LEN, MAX_RETENTION_AGE, MAX_SETTLE_BATCH,
    MAX_SUBJECT_LEN, MemberInfo, Message, OutgoingMessage, Pattern, PublishAck, Purge, ReadFrom, ReadRange, Reply,
    Request, RequestBackend, Result, Retention, Settle, SettleItem, StartPolicy, StreamBackend, StreamConfig,
    StreamInfo, StreamName, StreamState, Subject, Timestamp, dlq,
};
pub use herald_engine::{DATA_FILE, Engine, ManualClock};
/// Herald on NATS JetStream (feature `nats`).
#[cfg(feature = "nats")]
pub use herald_nats as nats;
pub use jobs::{Job, Jobs, JobsBuilder, NewJob};
pub use kv::{Kv, KvBuilder, Lease};
pub use processor::{Backoff, ErrorStrategy, Exhausted, MAX_CONCURRENCY, Processor, ProcessorBuilder};
pub use service::{Incoming, Service, ServiceHandle};
pub use sourcing::{Aggregate, CommandError, Loaded, Repository};
pub use subscription::Subscription;
