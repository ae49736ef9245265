//! Key-value buckets on streams, and leases on keys.
//!
//! A bucket is a stream of Herald's own, `$kv-<bucket>`, with a subject per key
//! (`$kv-<bucket>.<key>`). A key's revision is the sequence of its latest
//! message, so compare-and-set is the stream's expected-last-subject-sequence
//! check, history is the subject's messages (as many as the bucket's `history`
//! keeps), a delete is a tombstone message, and a per-key TTL is the message's
//! TTL. It is written against the [`Backend`](herald_core::Backend) traits
//! alone, so a bucket behaves the same embedded, through a server and on NATS.

use std::num::NonZeroU32;
use std::time::Duration;

use bytes::Bytes;
use herald_core::{
    Durability, Error, ErrorDetail, ErrorKind, Message, OutgoingMessage, Pattern, Purge, ReadFrom, ReadRange, Result,
    StreamConfig, StreamName, Subject, Timestamp,
};

use crate::bus::Bus;
use crate::subscription::Subscription;

/// The header that marks a tombstone: `del` for a delete, `purge` for a purge.
pub const KV_OPERATION_HEADER: &str = "herald-kv-op";

/// The most revisions of one key a bucket can keep.
pub const MAX_HISTORY: u64 = 64;

/// What a bucket entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// A value was written.
    Put,
    /// The key was deleted (its history is kept).
    Delete,
    /// The key was deleted with its history.
    Purge,
}

/// One revision of a key.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// The value (empty for a delete or purge).
    pub value: Bytes,
    /// The revision: the bucket stream's sequence of this write.
    pub revision: u64,
    /// When it was written.
    pub time: Timestamp,
    /// Put, delete or purge.
    pub operation: Operation,
}

/// Configures a bucket; [`open`](KvBuilder::open) creates it or binds to it.
#[derive(Debug, Clone)]
pub struct KvBuilder {
    bus: Bus,
    bucket: String,
    history: u64,
    max_age: Option<Duration>,
    max_value_size: Option<NonZeroU32>,
    durability: Durability,
}

impl KvBuilder {
    pub(crate) fn new(bus: Bus, bucket: String) -> KvBuilder {
        KvBuilder {
            bus,
            bucket,
            history: 1,
            max_age: None,
            max_value_size: None,
            durability: Durability::Fsync,
        }
    }

    /// Revisions kept per key, 1 to [`MAX_HISTORY`] (default 1).
    pub fn history(mut self, revisions: u64) -> Self {
        self.history = revisions;
        self
    }

    /// Every entry expires this long after it was written.
    pub fn max_age(mut self, age: Duration) -> Self {
        self.max_age = Some(age);
        self
    }

    /// The largest value accepted.
    pub fn max_value_size(mut self, bytes: NonZeroU32) -> Self {
        self.max_value_size = Some(bytes);
        self
    }

    /// Durability of the bucket's writes (default: fsynced before they return).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// Creates the bucket, or binds to it if it exists (its stored settings win).
    ///
    /// # Errors
    ///
    /// `InvalidName` for a bucket name that is not a valid stream name;
    /// `InvalidConfig` for a history of 0 or over [`MAX_HISTORY`].
    pub async fn open(self) -> Result<Kv> {
        let stream = StreamName::new(format!("$kv-{}", self.bucket)).map_err(|e| {
            Error::new(
                ErrorKind::InvalidName,
                format!("`{}` cannot name a bucket: {e}", self.bucket),
            )
        })?;
        if !(1..=MAX_HISTORY).contains(&self.history) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "a bucket keeps 1 to {MAX_HISTORY} revisions per key, not {}",
                    self.history
                ),
            ));
        }
        self.bus
            .open_or_create_stream(&stream, || {
                let mut config = StreamConfig::with_name(stream.clone())
                    .subjects([format!("{stream}.>")])?
                    .max_msgs_per_subject(self.history)
                    .durability(self.durability)
                    // Revisions are the idempotency here; ids are not needed.
                    .duplicate_window(None);
                if let Some(age) = self.max_age {
                    config = config.max_age(age);
                }
                if let Some(size) = self.max_value_size {
                    config = config.max_payload(size);
                }
                Ok(config)
            })
            .await?;
        Ok(Kv {
            bus: self.bus,
            bucket: self.bucket,
            stream,
        })
    }
}

/// A key-value bucket. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Kv {
    bus: Bus,
    bucket: String,
    stream: StreamName,
}

impl Kv {
    /// The bucket's name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The stream that holds the bucket.
    pub fn stream(&self) -> &StreamName {
        &self.stream
    }

    fn subject(&self, key: &str) -> Result<Subject> {
        check_key(key)?;
        Subject::new(format!("{}.{key}", self.stream))
    }

    fn key_of<'m>(&self, message: &'m Message) -> &'m str {
        let subject = message.subject.as_str();
        subject.get(self.stream.as_str().len() + 1..).unwrap_or(subject)
    }

    fn entry(&self, message: Message) -> Entry {
        let operation = match message.headers.get(KV_OPERATION_HEADER).map(String::as_str) {
            Some("del") => Operation::Delete,
            Some("purge") => Operation::Purge,
            _ => Operation::Put,
        };
        Entry {
            key: self.key_of(&message).to_string(),
            revision: message.seq,
            time: message.time,
            operation,
            value: message.payload,
        }
    }

    /// The latest revision of `key`, tombstones included; `None` if it never
    /// existed, was purged away, or expired.
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid key; `Storage`.
    pub async fn entry_of(&self, key: &str) -> Result<Option<Entry>> {
        let subject = self.subject(key)?;
        match self.bus.backend().last_message(&self.stream, &subject).await {
            Ok(message) => Ok(Some(self.entry(message))),
            Err(err) if err.kind() == ErrorKind::MessageNotFound => Ok(None),
            Err(err) => Err(err),
        }
    }

    /// The current value of `key`, or `None` if it is absent or deleted.
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid key; `Storage`.
    pub async fn get(&self, key: &str) -> Result<Option<Entry>> {
        Ok(self.entry_of(key).await?.filter(|e| e.operation == Operation::Put))
    }

    async fn write(
        &self,
        key: &str,
        value: Bytes,
        expected: Option<u64>,
        ttl: Option<Duration>,
        operation: Option<&str>,
    ) -> Result<u64> {
        let mut message = OutgoingMessage::new(self.subject(key)?, value);
        if let Some(revision) = expected {
            message = message.expect_last_subject_seq(revision);
        }
        if let Some(ttl) = ttl {
            message = message.ttl(ttl);
        }
        if let Some(operation) = operation {
            message = message.header(KV_OPERATION_HEADER, operation);
        }
        Ok(self.bus.backend().publish(message).await?.seq)
    }

    /// Writes `value`; returns the new revision.
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid key; `PayloadTooLarge`; `Storage`.
    pub async fn put(&self, key: &str, value: impl Into<Bytes>) -> Result<u64> {
        self.write(key, value.into(), None, None, None).await
    }

    /// Writes `value`, which expires after `ttl` (the key then reads as absent).
    ///
    /// # Errors
    ///
    /// As [`put`](Kv::put).
    pub async fn put_with_ttl(&self, key: &str, value: impl Into<Bytes>, ttl: Duration) -> Result<u64> {
        self.write(key, value.into(), None, Some(ttl), None).await
    }

    /// Writes `value` only if `key` is absent (never written, deleted, purged
    /// or expired); returns the new revision.
    ///
    /// # Errors
    ///
    /// `WrongExpectedSeq` if the key holds a value (the detail carries its
    /// revision); as [`put`](Kv::put).
    pub async fn create(&self, key: &str, value: impl Into<Bytes>) -> Result<u64> {
        self.create_inner(key, value.into(), None).await
    }

    /// [`create`](Kv::create) with a TTL on the new value.
    ///
    /// # Errors
    ///
    /// As [`create`](Kv::create).
    pub async fn create_with_ttl(&self, key: &str, value: impl Into<Bytes>, ttl: Duration) -> Result<u64> {
        self.create_inner(key, value.into(), Some(ttl)).await
    }

    async fn create_inner(&self, key: &str, value: Bytes, ttl: Option<Duration>) -> Result<u64> {
        let mut expected = 0;
        loop {
            match self.write(key, value.clone(), Some(expected), ttl, None).await {
                Err(err) if err.kind() == ErrorKind::WrongExpectedSeq => {
                    // A tombstone is absent too: create over it, expecting it.
                    let tombstone = match self.entry_of(key).await? {
                        Some(entry) if entry.operation != Operation::Put => entry.revision,
                        _ => return Err(err),
                    };
                    if tombstone == expected {
                        return Err(err);
                    }
                    expected = tombstone;
                }
                outcome => return outcome,
            }
        }
    }

    /// Writes `value` only if the key's latest revision is `revision`
    /// (compare-and-set); returns the new revision.
    ///
    /// # Errors
    ///
    /// `WrongExpectedSeq` if another write came first (the detail carries the
    /// actual revision); as [`put`](Kv::put).
    pub async fn update(&self, key: &str, value: impl Into<Bytes>, revision: u64) -> Result<u64> {
        self.write(key, value.into(), Some(revision), None, None).await
    }

    /// [`update`](Kv::update) with a TTL on the new value.
    ///
    /// # Errors
    ///
    /// As [`update`](Kv::update).
    pub async fn update_with_ttl(
        &self,
        key: &str,
        value: impl Into<Bytes>,
        revision: u64,
        ttl: Duration,
    ) -> Result<u64> {
        self.write(key, value.into(), Some(revision), Some(ttl), None).await
    }

    /// Deletes `key` with a tombstone (its history is kept); returns the
    /// tombstone's revision.
    ///
    /// # Errors
    ///
    /// As [`put`](Kv::put).
    pub async fn delete(&self, key: &str) -> Result<u64> {
        self.write(key, Bytes::new(), None, None, Some("del")).await
    }

    /// Deletes `key` only if its latest revision is `revision`.
    ///
    /// # Errors
    ///
    /// `WrongExpectedSeq` if another write came first; as [`put`](Kv::put).
    pub async fn delete_if(&self, key: &str, revision: u64) -> Result<u64> {
        self.write(key, Bytes::new(), Some(revision), None, Some("del")).await
    }

    /// Deletes `key` and its history; a purge tombstone remains so watchers
    /// see it. Returns the tombstone's revision.
    ///
    /// # Errors
    ///
    /// As [`put`](Kv::put).
    pub async fn purge(&self, key: &str) -> Result<u64> {
        let subject = self.subject(key)?;
        let revision = self.write(key, Bytes::new(), None, None, Some("purge")).await?;
        self.bus
            .backend()
            .purge_stream(&self.stream, Purge::subject(subject).before(revision))
            .await?;
        Ok(revision)
    }

    /// Every revision of `key` still kept, oldest first.
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid key; `Storage`.
    pub async fn history(&self, key: &str) -> Result<Vec<Entry>> {
        let subject = self.subject(key)?;
        let messages = self
            .bus
            .backend()
            .read_subject(&self.stream, &subject, 1, MAX_HISTORY as usize)
            .await?;
        Ok(messages.into_iter().map(|m| self.entry(m)).collect())
    }

    /// Every key that currently holds a value, sorted.
    ///
    /// # Errors
    ///
    /// `Storage`.
    pub async fn keys(&self) -> Result<Vec<String>> {
        let mut latest: std::collections::BTreeMap<String, Operation> = std::collections::BTreeMap::new();
        let mut from = 1;
        loop {
            let page = self
                .bus
                .backend()
                .read_range(&self.stream, ReadRange::from_seq(from, 1000))
                .await?;
            let Some(last) = page.last() else { break };
            from = last.seq + 1;
            for message in page {
                let entry = self.entry(message);
                latest.insert(entry.key, entry.operation);
            }
        }
        Ok(latest
            .into_iter()
            .filter(|(_, op)| *op == Operation::Put)
            .map(|(key, _)| key)
            .collect())
    }

    /// Changes to keys matching `pattern` (`*` and `>` wildcards over the
    /// key's dot-separated tokens) from now on.
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid pattern.
    pub async fn watch(&self, pattern: &str) -> Result<Watch> {
        self.watch_inner(pattern, None).await
    }

    /// Changes to keys matching `pattern` from revision `revision` on (the
    /// kept history first, then live changes).
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid pattern.
    pub async fn watch_from(&self, pattern: &str, revision: u64) -> Result<Watch> {
        self.watch_inner(pattern, Some(ReadFrom::Seq(revision))).await
    }

    async fn watch_inner(&self, pattern: &str, from: Option<ReadFrom>) -> Result<Watch> {
        let pattern = Pattern::new(format!("{}.{pattern}", self.stream))?;
        let live = self.bus.backend().subscribe(pattern, from).await?;
        Ok(Watch {
            kv: self.clone(),
            subscription: Subscription::new(live),
        })
    }

    /// Takes the lease on `key` for `holder` for `ttl`, if nobody holds it.
    ///
    /// # Errors
    ///
    /// `WrongExpectedSeq` if another holder has it (the detail carries the
    /// revision of their lease); as [`put`](Kv::put).
    pub async fn lease(&self, key: &str, holder: &str, ttl: Duration) -> Result<Lease> {
        let revision = self.create_with_ttl(key, holder.to_string(), ttl).await?;
        Ok(Lease {
            kv: self.clone(),
            key: key.to_string(),
            holder: holder.to_string(),
            ttl,
            revision,
            released: false,
        })
    }

    /// Succeeds only if `key`'s latest revision is still `fencing_revision`:
    /// what a guarded resource asks before acting for a lease holder.
    ///
    /// # Errors
    ///
    /// `LeaseLost` if the key moved on (another holder, a release or expiry).
    pub async fn check_fence(&self, key: &str, fencing_revision: u64) -> Result<()> {
        match self.get(key).await? {
            Some(entry) if entry.revision == fencing_revision => Ok(()),
            current => Err(Error::new(
                ErrorKind::LeaseLost,
                format!(
                    "fencing revision {fencing_revision} of key `{key}` is stale (current: {})",
                    current.map_or("none".to_string(), |e| e.revision.to_string())
                ),
            )),
        }
    }
}

/// Keys may be any valid subject tokens, without wildcards.
fn check_key(key: &str) -> Result<()> {
    let ok = !key.is_empty()
        && key.split('.').all(|token| {
            !token.is_empty()
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'/' | b'=' | b'@' | b':'))
        });
    if ok {
        Ok(())
    } else {
        Err(Error::new(
            ErrorKind::InvalidSubject,
            format!("`{key}` is not a valid key: dot-separated tokens of letters, digits and - _ / = @ :"),
        ))
    }
}

/// Changes to a bucket's keys, as they happen.
#[derive(Debug)]
pub struct Watch {
    kv: Kv,
    subscription: Subscription,
}

impl Watch {
    /// The next change.
    ///
    /// # Errors
    ///
    /// `Lagged` if the watcher fell behind the bucket's retention (resume with
    /// [`Kv::watch_from`]); `Closed`.
    pub async fn next(&mut self) -> Result<Entry> {
        let message = self.subscription.next().await?;
        Ok(self.kv.entry(message))
    }
}

/// An exclusive, expiring hold on a key, with a fencing revision.
///
/// Dropping it without [`release`](Lease::release) releases it in the
/// background when a tokio runtime is running; otherwise it expires.
#[derive(Debug)]
pub struct Lease {
    kv: Kv,
    key: String,
    holder: String,
    ttl: Duration,
    revision: u64,
    released: bool,
}

impl Lease {
    /// The fencing revision: it grows with every heartbeat and every new
    /// holder, so a guarded resource can refuse a stale holder
    /// ([`Kv::check_fence`]).
    pub fn revision(&self) -> u64 {
        self.revision
    }

    /// The key held.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Extends the lease by its TTL from now; returns the new fencing revision.
    ///
    /// # Errors
    ///
    /// `LeaseLost` if it expired or another holder took it.
    pub async fn heartbeat(&mut self) -> Result<u64> {
        match self
            .kv
            .update_with_ttl(&self.key, self.holder.clone(), self.revision, self.ttl)
            .await
        {
            Ok(revision) => {
                self.revision = revision;
                Ok(revision)
            }
            Err(err) if err.kind() == ErrorKind::WrongExpectedSeq => Err(self.lost(&err)),
            Err(err) => Err(err),
        }
    }

    fn lost(&self, err: &Error) -> Error {
        let now = match err.detail() {
            Some(ErrorDetail::WrongExpectedSeq { actual, .. }) => actual.to_string(),
            _ => "unknown".to_string(),
        };
        Error::new(
            ErrorKind::LeaseLost,
            format!(
                "the lease on `{}` held at revision {} was lost (the key is now at {now})",
                self.key, self.revision
            ),
        )
    }

    /// Gives the lease up now.
    ///
    /// # Errors
    ///
    /// `LeaseLost` if it had already expired or moved to another holder.
    pub async fn release(mut self) -> Result<()> {
        self.released = true;
        match self.kv.delete_if(&self.key, self.revision).await {
            Ok(_) => Ok(()),
            Err(err) if err.kind() == ErrorKind::WrongExpectedSeq => Err(self.lost(&err)),
            Err(err) => Err(err),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if self.released {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (kv, key, revision) = (self.kv.clone(), self.key.clone(), self.revision);
            runtime.spawn(async move {
                // Lost already is fine: it is not ours to delete then.
                let _ = kv.delete_if(&key, revision).await;
            });
        }
    }
}
