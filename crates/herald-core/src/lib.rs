//! Herald's core: the model every part of Herald shares.
//!
//! - [`Message`], [`OutgoingMessage`] and [`PublishAck`]: what is stored, what is
//!   published and what a publish returns.
//! - [`Subject`], [`Pattern`] and [`StreamName`]: validated names with NATS's rules.
//! - [`StreamConfig`] and friends: limits, retention, discard, durability.
//! - [`Error`] with a matchable [`ErrorKind`] and stable codes.
//! - [`StreamBackend`]: the seam the embedded engine, the remote client and the
//!   NATS backend implement.
//!
//! ```
//! use herald_core::{OutgoingMessage, Pattern, StreamConfig, Subject};
//!
//! let config = StreamConfig::new("orders")?.max_msgs_per_subject(1);
//! let subject = Subject::new("orders.created")?;
//! assert!(config.captures(&subject));
//! assert!(Pattern::new("orders.*")?.matches(&subject));
//! let _msg = OutgoingMessage::new(subject, "hello").id("order-1");
//! # Ok::<(), herald_core::Error>(())
//! ```

mod backend;
mod consumer;
mod dead_letter;
mod duration;
mod error;
pub mod input;
mod message;
#[cfg(feature = "openapi")]
mod openapi;
mod request;
mod stream;
mod subject;
pub mod wire;

pub use backend::{
    Backend, ConsumerBackend, LiveSubscription, RequestBackend, Responder, StreamBackend, SubscriptionBackend,
};
pub use consumer::{
    ConsumerConfig, ConsumerInfo, ConsumerName, DEFAULT_ACK_WAIT, DEFAULT_MAX_ACK_PENDING, DeadLetter, Delivery,
    MAX_SETTLE_BATCH, MemberInfo, Settle, SettleItem, StartPolicy,
};
pub use dead_letter::{
    check_dead_letter_owner, dead_letter, dead_letter_names, dead_letter_stream, dlq, is_dead_letter_subject,
    owns_dead_letter_stream, widen_dead_letter_stream,
};
pub use duration::{MAX_LEASE, MAX_NAK_DELAY, MAX_RETENTION_AGE, MAX_WAIT};
pub use error::{Error, ErrorDetail, ErrorKind, Result, cause_chain};
pub use message::{Headers, MAX_HEADER_BYTES, MAX_ID_LEN, Message, OutgoingMessage, PublishAck, Timestamp};
pub use request::{Reply, ReplySink, Request};
pub use stream::{
    DEFAULT_DUPLICATE_WINDOW, DEFAULT_MAX_PAYLOAD, Discard, Durability, MAX_PAYLOAD_LIMIT, Purge, PurgeSelector,
    ReadFrom, ReadRange, Retention, StreamConfig, StreamInfo, StreamState,
};
pub use subject::{MAX_NAME_LEN, MAX_RESERVED_NAME_LEN, MAX_SUBJECT_LEN, Pattern, StreamName, Subject};

/// Re-exported so that backends and users name one `Bytes`.
pub use bytes::Bytes;
