//! Event sourcing: aggregates rebuilt from their events, commands appended
//! with optimistic concurrency.
//!
//! An aggregate's events live on one subject, `<stream>.<id>`, of a stream with
//! the subject index on, so loading reads that subject alone. Its version is the
//! stream sequence of its latest event; a command's events are appended as one
//! atomic batch expecting that version, so two writers racing on one aggregate
//! cannot both win: the loser gets `WrongExpectedSeq` carrying the actual
//! version. Snapshots (optional) are kept in a KV bucket and loading replays
//! only the events after them. Written against the Backend traits alone.

use std::fmt;
use std::marker::PhantomData;

use herald_core::{Error, ErrorDetail, ErrorKind, Result, StreamConfig, StreamName, Subject};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::bus::Bus;
use crate::events::{Envelope, Event, Meta, to_message};
use crate::kv::Kv;

/// Events read per page while loading.
const PAGE: usize = 1000;

/// A consistency boundary: state built from events; commands turned into events.
pub trait Aggregate: Default + Send + Sync + 'static {
    /// Its events.
    type Event: Event + Clone;
    /// What it is asked to do.
    type Command: Send;
    /// Why it refuses a command.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Folds one event into the state. Must not fail: events are facts.
    fn apply(&mut self, event: &Self::Event);

    /// Decides which events a command produces, from the current state.
    ///
    /// # Errors
    ///
    /// The aggregate refuses the command.
    fn handle(&self, command: Self::Command) -> std::result::Result<Vec<Self::Event>, Self::Error>;
}

/// Why a command did not go through.
#[derive(Debug)]
pub enum CommandError<E> {
    /// The aggregate refused it.
    Rejected(E),
    /// The bus failed, or (`WrongExpectedSeq`) another command changed the
    /// aggregate since it was loaded.
    Bus(Error),
}

impl<E> CommandError<E> {
    /// The aggregate's actual version when a concurrent write won.
    pub fn conflict_version(&self) -> Option<u64> {
        match self {
            CommandError::Bus(err) if err.kind() == ErrorKind::WrongExpectedSeq => match err.detail() {
                Some(ErrorDetail::WrongExpectedSeq { actual, .. }) => Some(*actual),
                _ => None,
            },
            _ => None,
        }
    }
}

impl<E: fmt::Display> fmt::Display for CommandError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommandError::Rejected(e) => write!(f, "command rejected: {e}"),
            CommandError::Bus(e) => write!(f, "{e}"),
        }
    }
}

impl<E: std::error::Error + 'static> std::error::Error for CommandError<E> {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CommandError::Rejected(e) => Some(e),
            CommandError::Bus(e) => Some(e),
        }
    }
}

impl<E> From<Error> for CommandError<E> {
    fn from(err: Error) -> Self {
        CommandError::Bus(err)
    }
}

/// An aggregate as loaded: its state and the version it was built to.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// Its id.
    pub id: String,
    /// The state.
    pub state: A,
    /// The stream sequence of its latest event (0 if it has none).
    pub version: u64,
}

struct Snapshots<A> {
    kv: Kv,
    every: u64,
    encode: fn(&A, u64) -> Result<Vec<u8>>,
    decode: fn(&[u8]) -> Result<(A, u64)>,
}

/// Loads aggregates and appends their events.
pub struct Repository<A: Aggregate> {
    bus: Bus,
    stream: StreamName,
    snapshots: Option<Snapshots<A>>,
    _aggregate: PhantomData<fn() -> A>,
}

impl<A: Aggregate> fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Repository")
            .field("stream", &self.stream)
            .field("snapshots", &self.snapshots.as_ref().map(|s| s.every))
            .finish()
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository on `stream`, created with the subject index if missing.
    ///
    /// # Errors
    ///
    /// `InvalidName`; `InvalidConfig` if the stream exists without the subject
    /// index (loading would scan the whole stream).
    pub async fn open(bus: &Bus, stream: &str) -> Result<Repository<A>> {
        let name = StreamName::new(stream)?;
        if name.is_reserved() {
            return Err(Error::new(
                ErrorKind::InvalidName,
                format!("stream names starting with `$` are reserved for Herald (`{stream}`)"),
            ));
        }
        let info = bus
            .open_or_create_stream(&name, || Ok(StreamConfig::with_name(name.clone()).subject_index(true)))
            .await?;
        if !info.config.indexes_subjects() {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!("stream `{stream}` holds aggregates only with its subject index on"),
            ));
        }
        Ok(Repository {
            bus: bus.clone(),
            stream: name,
            snapshots: None,
            _aggregate: PhantomData,
        })
    }

    fn subject(&self, id: &str) -> Result<Subject> {
        let subject = Subject::new(format!("{}.{id}", self.stream))?;
        if id.contains('.') {
            return Err(Error::new(
                ErrorKind::InvalidSubject,
                format!("aggregate id `{id}` must be one subject token (no `.`)"),
            ));
        }
        Ok(subject)
    }

    /// Rebuilds aggregate `id` from its snapshot (if any) and its events.
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid id; `InvalidRequest` for an event that
    /// does not decode; `Storage`.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>> {
        let subject = self.subject(id)?;
        let (mut state, mut version) = match &self.snapshots {
            Some(snapshots) => match snapshots.kv.get(id).await? {
                Some(entry) => (snapshots.decode)(&entry.value)?,
                None => (A::default(), 0),
            },
            None => (A::default(), 0),
        };
        loop {
            let page = self
                .bus
                .read_subject(self.stream.as_str(), subject.as_str(), version.saturating_add(1), PAGE)
                .await?;
            let full = page.len() == PAGE;
            for message in page {
                let envelope = Envelope::<A::Event>::from_message(message)?;
                state.apply(&envelope.event);
                version = envelope.seq;
            }
            if !full {
                break;
            }
        }
        Ok(Loaded {
            id: id.to_string(),
            state,
            version,
        })
    }

    /// Loads `id`, runs `command`, and appends its events expecting the
    /// version it loaded; returns the stored events.
    ///
    /// # Errors
    ///
    /// [`CommandError::Rejected`]; [`CommandError::Bus`] with
    /// `WrongExpectedSeq` (see [`CommandError::conflict_version`]) when another
    /// command came first.
    pub async fn execute(
        &self,
        id: &str,
        command: A::Command,
    ) -> std::result::Result<Vec<Envelope<A::Event>>, CommandError<A::Error>> {
        self.execute_with(id, command, &Meta::default()).await
    }

    /// [`execute`](Repository::execute) with correlation and causation ids for
    /// the events (their `id`, if set, is suffixed with the event's index).
    ///
    /// # Errors
    ///
    /// As [`execute`](Repository::execute).
    pub async fn execute_with(
        &self,
        id: &str,
        command: A::Command,
        meta: &Meta,
    ) -> std::result::Result<Vec<Envelope<A::Event>>, CommandError<A::Error>> {
        let loaded = self.load(id).await?;
        let events = loaded.state.handle(command).map_err(CommandError::Rejected)?;
        self.append(loaded, events, meta).await.map_err(CommandError::Bus)
    }

    /// Appends `events` to a loaded aggregate, expecting its version. The
    /// returned envelopes carry the bus clock read when the append returned
    /// as their `time` (the stored time is the commit's, a moment before);
    /// read the events back for the stored one.
    ///
    /// # Errors
    ///
    /// `WrongExpectedSeq` (with the actual version) on a conflict.
    pub async fn append(
        &self,
        loaded: Loaded<A>,
        events: Vec<A::Event>,
        meta: &Meta,
    ) -> Result<Vec<Envelope<A::Event>>> {
        if events.is_empty() {
            return Ok(Vec::new());
        }
        let subject = self.subject(&loaded.id)?;
        let mut messages = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let mut meta = meta.clone();
            meta.id = Some(match meta.id {
                Some(id) => format!("{id}-{i}"),
                None => format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..)),
            });
            let mut message = to_message(event, &meta)?;
            message.subject = subject.clone();
            messages.push(message);
        }
        messages[0].expected_last_subject_seq = Some(loaded.version);
        let ids: Vec<String> = messages.iter().map(|m| m.id.clone().unwrap_or_default()).collect();
        let acks = self.bus.publish_batch(messages).await?;
        let mut state = loaded.state;
        let mut stored = Vec::with_capacity(events.len());
        for ((event, ack), message_id) in events.into_iter().zip(acks).zip(ids) {
            state.apply(&event);
            stored.push(Envelope {
                event_type: event.event_type(),
                event,
                id: message_id,
                time: self.bus.now(),
                subject: subject.clone(),
                stream: ack.stream,
                seq: ack.seq,
                correlation_id: meta.correlation_id.clone(),
                causation_id: meta.causation_id.clone(),
            });
        }
        let version = stored.last().map_or(loaded.version, |e| e.seq);
        if let Some(snapshots) = &self.snapshots
            && version / snapshots.every > loaded.version / snapshots.every
        {
            snapshots
                .kv
                .put(&loaded.id, (snapshots.encode)(&state, version)?)
                .await?;
        }
        Ok(stored)
    }

    /// Runs a command, and on a conflict reloads and runs it again, up to
    /// `attempts` times in all. `command` builds the command afresh each time.
    ///
    /// # Errors
    ///
    /// As [`execute`](Repository::execute); the last conflict after `attempts`.
    pub async fn execute_with_retry(
        &self,
        id: &str,
        attempts: u32,
        command: impl Fn() -> A::Command + Send + Sync,
    ) -> std::result::Result<Vec<Envelope<A::Event>>, CommandError<A::Error>> {
        let mut left = attempts.max(1);
        loop {
            match self.execute(id, command()).await {
                Err(err) if err.conflict_version().is_some() && left > 1 => left -= 1,
                outcome => return outcome,
            }
        }
    }
}

impl<A: Aggregate + Serialize + DeserializeOwned> Repository<A> {
    /// Keeps a snapshot of each aggregate in `kv` whenever its version
    /// crosses a multiple of `every`; loading starts from the snapshot.
    pub fn with_snapshots(mut self, kv: Kv, every: u64) -> Self {
        self.snapshots = Some(Snapshots {
            kv,
            every: every.max(1),
            encode: |state, version| {
                serde_json::to_vec(&(version, state))
                    .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("snapshot does not serialise: {e}")))
            },
            decode: |bytes| {
                serde_json::from_slice(bytes)
                    .map_err(|e| Error::new(ErrorKind::InvalidRequest, format!("snapshot does not decode: {e}")))
                    .map(|(version, state)| (state, version))
            },
        });
        self
    }
}
