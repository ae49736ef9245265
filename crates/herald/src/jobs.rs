//! A job queue on a work-queue stream.
//!
//! A queue is a stream of Herald's own, `$jobs-<queue>`, with work-queue
//! retention (a job is deleted once a worker acks it) and these subjects:
//!
//! - `$jobs-<queue>.ready.<level>`: jobs ready to run, one subject and one
//!   durable consumer (`p<level>`) per priority level, 0 the most urgent;
//! - `$jobs-<queue>.later`: delayed jobs, with their not-before time, taken by
//!   the `scheduler` consumer and moved to their level when due;
//! - `$jobs-<queue>.dead`: jobs given up on, with the reason (no consumer reads
//!   this subject, so the work queue keeps them).
//!
//! A dedup key is the message id, so the stream's duplicate window drops a
//! second enqueue of the same key. A claim is a consumer delivery: the lease is
//! the consumer's ack wait, the attempt number is the delivery count, a
//! heartbeat is `in_progress`. Claims take the levels in a weighted rotation
//! (level `i` leads `2^(levels-1-i)` claims of every cycle, the others fall back
//! to the most urgent level with work), so urgent jobs go first and the least
//! urgent still get a share. Written against the Backend traits alone.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use herald_core::{
    ConsumerName, DeadLetter, Error, ErrorKind, MAX_NAK_DELAY, MAX_WAIT, Message, OutgoingMessage, Pattern, ReadRange,
    Result, Retention, Settle, StreamConfig, StreamName, Subject, Timestamp,
};

use crate::bus::Bus;
use crate::consumer::{Consumer, Received};

/// The header with a job's priority level.
pub const PRIORITY_HEADER: &str = "herald-job-priority";
/// The header with a job's maximum attempts.
pub const MAX_ATTEMPTS_HEADER: &str = "herald-job-max-attempts";
/// The header with a delayed job's not-before time (nanoseconds since the epoch).
pub const NOT_BEFORE_HEADER: &str = "herald-job-not-before";
/// The header with a job's id once it is moved (when due, or to the dead
/// jobs): the id of the message it was enqueued as.
pub const JOB_ID_HEADER: &str = "herald-job-id";
/// The header with the reason a dead job was given up on.
pub const REASON_HEADER: &str = "herald-job-reason";
/// The header with the attempts a dead job had.
pub const ATTEMPTS_HEADER: &str = "herald-job-attempts";

/// The most priority levels a queue may have.
pub const MAX_LEVELS: u8 = 8;

/// How often a waiting claim looks again.
const CLAIM_POLL: Duration = Duration::from_millis(20);

/// Delayed jobs moved per claim, at most.
const PROMOTE_BATCH: usize = 64;

/// Configures a queue; [`open`](JobsBuilder::open) creates it or binds to it.
#[derive(Debug, Clone)]
pub struct JobsBuilder {
    bus: Bus,
    queue: String,
    levels: u8,
    lease: Duration,
    max_attempts: u32,
    dedup_window: Duration,
}

impl JobsBuilder {
    pub(crate) fn new(bus: Bus, queue: String) -> JobsBuilder {
        JobsBuilder {
            bus,
            queue,
            levels: 3,
            lease: Duration::from_secs(30),
            max_attempts: 5,
            dedup_window: Duration::from_secs(600),
        }
    }

    /// Priority levels, 1 to [`MAX_LEVELS`] (default 3); 0 is the most urgent.
    pub fn levels(mut self, levels: u8) -> Self {
        self.levels = levels;
        self
    }

    /// How long a claim holds a job before another worker may take it (default 30 s).
    pub fn lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    /// Attempts a job gets unless it says otherwise (default 5).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// How long a dedup key is remembered (default 10 minutes).
    pub fn dedup_window(mut self, window: Duration) -> Self {
        self.dedup_window = window;
        self
    }

    /// Creates the queue's stream and consumers, or binds to them.
    ///
    /// # Errors
    ///
    /// `InvalidName` for a queue name that is not a valid stream name;
    /// `InvalidConfig` for 0 or too many levels, or 0 attempts.
    pub async fn open(self) -> Result<Jobs> {
        let stream = StreamName::new(format!("$jobs-{}", self.queue)).map_err(|e| {
            Error::new(
                ErrorKind::InvalidName,
                format!("`{}` cannot name a job queue: {e}", self.queue),
            )
        })?;
        if !(1..=MAX_LEVELS).contains(&self.levels) || self.max_attempts == 0 {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "a job queue has 1 to {MAX_LEVELS} levels and at least 1 attempt (asked: {} levels, {} attempts)",
                    self.levels, self.max_attempts
                ),
            ));
        }
        self.bus
            .open_or_create_stream(&stream, || {
                Ok(StreamConfig::with_name(stream.clone())
                    .subjects([format!("{stream}.>")])?
                    .retention(Retention::WorkQueue)
                    .duplicate_window(Some(self.dedup_window)))
            })
            .await?;
        let consumer = |name: String, filter: String| {
            self.bus
                .consumer(stream.as_str(), name)
                .filter(filter)
                .ack_wait(self.lease)
                .max_ack_pending(10_000)
                .dead_letter(DeadLetter::Discard)
                .create()
        };
        let mut levels = Vec::with_capacity(usize::from(self.levels));
        for level in 0..self.levels {
            levels.push(consumer(format!("p{level}"), format!("{stream}.ready.{level}")).await?);
        }
        let scheduler = consumer("scheduler".to_string(), format!("{stream}.later")).await?;
        let weights: u64 = (0..self.levels).map(|i| 1u64 << (self.levels - 1 - i)).sum();
        Ok(Jobs {
            inner: Arc::new(Inner {
                bus: self.bus,
                queue: self.queue,
                stream,
                levels,
                scheduler,
                max_attempts: self.max_attempts,
                weights,
                turn: AtomicU64::new(0),
            }),
        })
    }
}

/// A job queue. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    bus: Bus,
    queue: String,
    stream: StreamName,
    levels: Vec<Consumer>,
    scheduler: Consumer,
    max_attempts: u32,
    weights: u64,
    turn: AtomicU64,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    payload: Bytes,
    key: Option<String>,
    priority: u8,
    delay: Option<Duration>,
    max_attempts: Option<u32>,
}

impl NewJob {
    /// A job carrying `payload`, at priority 0, ready now.
    pub fn new(payload: impl Into<Bytes>) -> NewJob {
        NewJob {
            payload: payload.into(),
            key: None,
            priority: 0,
            delay: None,
            max_attempts: None,
        }
    }

    /// A dedup key: a second job with the same key inside the queue's dedup
    /// window is not enqueued.
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// The priority level, 0 the most urgent.
    pub fn priority(mut self, level: u8) -> Self {
        self.priority = level;
        self
    }

    /// Not to be claimed before `delay` from now.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    /// Attempts before the job is given up on (default: the queue's).
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The job's sequence in the queue's stream.
    pub seq: u64,
    /// Whether a job with the same key was already enqueued (nothing was written).
    pub duplicate: bool,
}

/// A job given up on.
#[derive(Debug, Clone)]
pub struct DeadJob {
    /// The job's id (its dedup key, if it had one).
    pub id: String,
    /// Its payload.
    pub payload: Bytes,
    /// Why it was given up on.
    pub reason: String,
    /// The attempts it had.
    pub attempts: u32,
    /// When it was given up on.
    pub time: Timestamp,
}

impl Jobs {
    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.inner.queue
    }

    fn subject(&self, tail: &str) -> Result<Subject> {
        Subject::new(format!("{}.{tail}", self.inner.stream))
    }

    /// Enqueues a job.
    ///
    /// # Errors
    ///
    /// `InvalidRequest` for a priority beyond the queue's levels or 0 attempts;
    /// `InvalidSubject` for an invalid key (ids allow printable ASCII); `PayloadTooLarge`.
    pub async fn enqueue(&self, job: NewJob) -> Result<Enqueued> {
        let levels = self.inner.levels.len();
        if usize::from(job.priority) >= levels || job.max_attempts == Some(0) {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                format!(
                    "queue `{}` has priority levels 0 to {} and a job needs at least 1 attempt",
                    self.inner.queue,
                    levels - 1
                ),
            ));
        }
        let attempts = job.max_attempts.unwrap_or(self.inner.max_attempts);
        let subject = match job.delay {
            Some(delay) if !delay.is_zero() => self.subject("later")?,
            _ => self.subject(&format!("ready.{}", job.priority))?,
        };
        let mut message = OutgoingMessage::new(subject, job.payload)
            .header(PRIORITY_HEADER, job.priority.to_string())
            .header(MAX_ATTEMPTS_HEADER, attempts.to_string());
        if let Some(delay) = job.delay.filter(|d| !d.is_zero()) {
            let not_before = self.inner.bus.now().saturating_add(delay);
            message = message.header(NOT_BEFORE_HEADER, not_before.as_nanos().to_string());
        }
        if let Some(key) = job.key {
            message = message.id(key);
        }
        let ack = self.inner.bus.backend().publish(message).await?;
        Ok(Enqueued {
            seq: ack.seq,
            duplicate: ack.duplicate,
        })
    }

    /// Claims the next job for `worker`, waiting up to `wait` for one; `None`
    /// if none came. The job is the worker's until its lease runs out.
    ///
    /// # Errors
    ///
    /// `InvalidName` for an invalid worker name; `Storage`.
    pub async fn claim(&self, worker: &str, wait: Duration) -> Result<Option<Job>> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_WAIT);
        loop {
            self.promote_due(worker).await?;
            for level in self.order() {
                let member = self.inner.levels[level].member(worker)?;
                let Some(received) = member.fetch(1, Duration::ZERO).await?.pop() else {
                    continue;
                };
                let job = Job::new(self.clone(), received, level as u8, self.inner.max_attempts);
                if job.attempt > job.max_attempts {
                    let reason = format!("{} attempts used", job.max_attempts);
                    job.bury(&reason).await?;
                    continue;
                }
                return Ok(Some(job));
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(CLAIM_POLL.min(deadline - now)).await;
        }
    }

    /// The levels in the order this claim tries them: the level whose turn it
    /// is, then the others from the most urgent.
    fn order(&self) -> Vec<usize> {
        let levels = self.inner.levels.len();
        let mut slot = self.inner.turn.fetch_add(1, Ordering::Relaxed) % self.inner.weights;
        let mut first = 0;
        for level in 0..levels {
            let weight = 1u64 << (levels - 1 - level);
            if slot < weight {
                first = level;
                break;
            }
            slot -= weight;
        }
        std::iter::once(first)
            .chain((0..levels).filter(|&l| l != first))
            .collect()
    }

    /// Moves delayed jobs that are due to their level; defers the others to
    /// their time.
    async fn promote_due(&self, worker: &str) -> Result<()> {
        let scheduler = self.inner.scheduler.member(worker)?;
        let now = self.inner.bus.now();
        let fetched = scheduler.fetch(PROMOTE_BATCH, Duration::ZERO).await?;
        let mut settles = Vec::with_capacity(fetched.len());
        for received in &fetched {
            let message = &received.message;
            let not_before = message
                .headers
                .get(NOT_BEFORE_HEADER)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
            if now.as_nanos() < not_before {
                // A job further out than a nak may wait comes back and is
                // deferred again.
                let delay = Duration::from_nanos(not_before - now.as_nanos()).min(MAX_NAK_DELAY);
                settles.push((received, Settle::Nak { delay }));
                continue;
            }
            let priority = message.headers.get(PRIORITY_HEADER).map_or("0", String::as_str);
            let mut ready = OutgoingMessage::new(self.subject(&format!("ready.{priority}"))?, message.payload.clone())
                // Idempotent: a crash before the acks below moves it again, once.
                .id(format!("due:{}", message.seq));
            ready.headers = message.headers.clone();
            ready.headers.remove(NOT_BEFORE_HEADER);
            ready.headers.insert(JOB_ID_HEADER.to_string(), message.id.clone());
            self.inner.bus.backend().publish(ready).await?;
            settles.push((received, Settle::Ack));
        }
        // One confirmation for the whole batch of moves and deferrals.
        scheduler.settle_all(settles).await?.into_iter().collect()
    }

    /// Jobs given up on, oldest first, up to `limit`.
    ///
    /// # Errors
    ///
    /// `Storage`.
    pub async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadJob>> {
        let range = ReadRange::from_seq(1, limit).filter(Pattern::new(format!("{}.dead", self.inner.stream))?);
        let letters = self.inner.bus.backend().read_range(&self.inner.stream, range).await?;
        Ok(letters.into_iter().map(dead_job).collect())
    }
}

fn job_id(message: &Message) -> String {
    message
        .headers
        .get(JOB_ID_HEADER)
        .cloned()
        .unwrap_or_else(|| message.id.clone())
}

fn dead_job(message: Message) -> DeadJob {
    DeadJob {
        id: job_id(&message),
        reason: message.headers.get(REASON_HEADER).cloned().unwrap_or_default(),
        attempts: message
            .headers
            .get(ATTEMPTS_HEADER)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
        time: message.time,
        payload: message.payload,
    }
}

/// A claimed job: settle it with [`ack`](Job::ack), [`retry_after`](Job::retry_after)
/// or [`dead_letter`](Job::dead_letter); unsettled, it returns to the queue
/// when its lease runs out.
#[derive(Debug)]
pub struct Job {
    queue: Jobs,
    received: Received,
    /// The job's id: its dedup key, or the one Herald generated.
    pub id: String,
    /// Its payload.
    pub payload: Bytes,
    /// Its priority level.
    pub priority: u8,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The attempts it may have.
    pub max_attempts: u32,
}

impl Job {
    fn new(queue: Jobs, received: Received, priority: u8, default_attempts: u32) -> Job {
        let message = &received.message;
        Job {
            id: job_id(message),
            payload: message.payload.clone(),
            priority,
            attempt: received.deliveries,
            max_attempts: message
                .headers
                .get(MAX_ATTEMPTS_HEADER)
                .and_then(|v| v.parse().ok())
                .and_then(NonZeroU32::new)
                .map_or(default_attempts, NonZeroU32::get),
            queue,
            received,
        }
    }

    /// Done: the job leaves the queue.
    ///
    /// # Errors
    ///
    /// `LeaseLost` if the lease ran out and another worker has it.
    pub async fn ack(self) -> Result<()> {
        self.received.ack().await
    }

    /// Still working: the lease starts again.
    ///
    /// # Errors
    ///
    /// `LeaseLost`.
    pub async fn heartbeat(&self) -> Result<()> {
        self.received.in_progress().await
    }

    /// Failed this time: claimable again after `delay`, as the next attempt
    /// (or given up on, at the next claim, if this was the last).
    ///
    /// # Errors
    ///
    /// `LeaseLost`.
    pub async fn retry_after(self, delay: Duration) -> Result<()> {
        self.received.nak_after(delay).await
    }

    /// Gives up on the job now, with a reason.
    ///
    /// # Errors
    ///
    /// `LeaseLost`; `Storage`.
    pub async fn dead_letter(self, reason: &str) -> Result<()> {
        self.bury(reason).await
    }

    async fn bury(&self, reason: &str) -> Result<()> {
        let message = &self.received.message;
        let mut dead = OutgoingMessage::new(self.queue.subject("dead")?, message.payload.clone())
            // Idempotent: a crash before the term below buries it again, once.
            .id(format!("dead:{}", message.seq));
        dead.headers = message.headers.clone();
        dead.headers.insert(JOB_ID_HEADER.to_string(), self.id.clone());
        dead.headers.insert(REASON_HEADER.to_string(), reason.to_string());
        dead.headers.insert(
            ATTEMPTS_HEADER.to_string(),
            self.attempt.min(self.max_attempts).to_string(),
        );
        self.queue.inner.bus.backend().publish(dead).await?;
        self.received.term(reason).await
    }

    /// The worker holding it.
    pub fn worker(&self) -> &ConsumerName {
        &self.received.member
    }
}
