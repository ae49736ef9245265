//! Event processors: handlers routed by subject over a durable consumer.
//!
//! A processor is a set of workers, each a member of one durable consumer, so
//! its position is the consumer's ack floor: stopped and started again (or
//! crashed), it carries on after the last message it acked. A handler that
//! returns `Ok` acks its message; an error goes to the processor's
//! [`ErrorStrategy`]. However it stops, a processor hands back every message
//! it fetched and did not handle (a nak with no delay), so the next run gets
//! them at once rather than after their leases. Written against the Backend
//! traits alone.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald_core::{ConsumerConfig, ConsumerName, Delivery, Error, ErrorKind, Pattern, Result, Settle, StreamName};
use tokio::sync::watch;

use crate::bus::Bus;
use crate::consumer::{Consumer, Received};

/// What a handler returns when it fails.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

type BoxFuture = Pin<Box<dyn Future<Output = std::result::Result<(), HandlerError>> + Send>>;
type Handler = Arc<dyn Fn(Delivery) -> BoxFuture + Send + Sync>;

/// How long a worker waits for messages before it looks at the shutdown flag again.
const FETCH_WAIT: Duration = Duration::from_secs(1);

/// Exponential backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// The wait before the second attempt.
    pub initial: Duration,
    /// Each wait is the previous one times this.
    pub multiplier: f64,
    /// No wait is longer.
    pub max: Duration,
    /// Each wait is shortened by a random fraction up to this (0 to 1), so
    /// failing workers do not retry in lockstep.
    pub jitter: f64,
}

impl Backoff {
    /// `max_attempts` attempts, waiting `initial`, then twice as long each
    /// time, at most a minute, with up to 20% jitter.
    pub fn new(max_attempts: u32, initial: Duration) -> Backoff {
        Backoff {
            max_attempts,
            initial,
            multiplier: 2.0,
            max: Duration::from_secs(60),
            jitter: 0.2,
        }
    }

    /// Sets the jitter fraction (0 for exact waits).
    pub fn jitter(mut self, jitter: f64) -> Self {
        self.jitter = jitter.clamp(0.0, 1.0);
        self
    }

    /// Sets the longest wait.
    pub fn max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// The wait after failed attempt `attempt` (1-based).
    pub fn delay(&self, attempt: u32) -> Duration {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        let base = self.initial.as_secs_f64() * self.multiplier.powi(exponent);
        let capped = base.min(self.max.as_secs_f64());
        // The fields are public: a jitter outside 0..=1 (or not a number) is read as none.
        let jitter = if (0.0..=1.0).contains(&self.jitter) {
            self.jitter
        } else {
            0.0
        };
        let shortened = capped * (1.0 - jitter * fastrand::f64());
        // No float a Duration cannot hold (an infinite multiplier, a max of
        // Duration::MAX rounding up past it) may panic: such a wait is the max.
        Duration::try_from_secs_f64(shortened.max(0.0)).map_or(self.max, |wait| wait.min(self.max))
    }
}

/// The most workers a processor runs: 4,096, each a task with its own member.
pub const MAX_CONCURRENCY: usize = 4096;

/// What to do once retries are used up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exhausted {
    /// Move the message to the consumer's dead-letter stream.
    DeadLetter,
    /// Ack it and go on (counted as skipped, logged).
    Skip,
    /// Stop the processor, leaving the message unacked.
    Stop,
}

/// What to do with one failed message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Deliver it again after this wait.
    Retry(Duration),
    /// Ack it and go on.
    Skip,
    /// Move it to the dead-letter stream.
    DeadLetter,
    /// Stop the processor, leaving it unacked.
    Stop,
}

/// A failure, as a custom strategy sees it.
#[derive(Debug)]
pub struct Failure<'a> {
    /// The message.
    pub delivery: &'a Delivery,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// What the handler returned.
    pub error: &'a HandlerError,
}

/// How a processor handles a handler's error.
#[derive(Clone)]
pub enum ErrorStrategy {
    /// Stop at the first error. The message stays unacked for the next run;
    /// it and what the workers fetched and had not handled yet are handed
    /// back at once.
    FailFast,
    /// Ack the message and go on (logged and counted).
    Skip,
    /// Move the message to the dead-letter stream at once.
    DeadLetter,
    /// Retry with backoff; then do what `then` says.
    Retry {
        /// The backoff schedule and the attempts.
        backoff: Backoff,
        /// What happens after the last attempt.
        then: Exhausted,
    },
    /// Ask a function.
    Custom(Arc<dyn Fn(&Failure<'_>) -> Decision + Send + Sync>),
}

impl std::fmt::Debug for ErrorStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ErrorStrategy::FailFast => f.write_str("FailFast"),
            ErrorStrategy::Skip => f.write_str("Skip"),
            ErrorStrategy::DeadLetter => f.write_str("DeadLetter"),
            ErrorStrategy::Retry { backoff, then } => f
                .debug_struct("Retry")
                .field("backoff", backoff)
                .field("then", then)
                .finish(),
            ErrorStrategy::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl ErrorStrategy {
    fn decide(&self, failure: &Failure<'_>) -> Decision {
        match self {
            ErrorStrategy::FailFast => Decision::Stop,
            ErrorStrategy::Skip => Decision::Skip,
            ErrorStrategy::DeadLetter => Decision::DeadLetter,
            ErrorStrategy::Retry { backoff, then } if failure.attempt >= backoff.max_attempts => match then {
                Exhausted::DeadLetter => Decision::DeadLetter,
                Exhausted::Skip => Decision::Skip,
                Exhausted::Stop => Decision::Stop,
            },
            ErrorStrategy::Retry { backoff, .. } => Decision::Retry(backoff.delay(failure.attempt)),
            ErrorStrategy::Custom(decide) => decide(failure),
        }
    }
}

/// Configures a processor; [`start`](ProcessorBuilder::start) runs it.
pub struct ProcessorBuilder {
    bus: Bus,
    stream: String,
    consumer: String,
    routes: Vec<(Pattern, Handler)>,
    invalid_route: Option<Error>,
    batch_size: usize,
    concurrency: usize,
    strategy: ErrorStrategy,
}

impl std::fmt::Debug for ProcessorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessorBuilder")
            .field("stream", &self.stream)
            .field("consumer", &self.consumer)
            .field(
                "routes",
                &self.routes.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
            )
            .field("strategy", &self.strategy)
            .finish_non_exhaustive()
    }
}

impl ProcessorBuilder {
    pub(crate) fn new(bus: Bus, stream: String, consumer: String) -> ProcessorBuilder {
        ProcessorBuilder {
            bus,
            stream,
            consumer,
            routes: Vec::new(),
            invalid_route: None,
            batch_size: 64,
            concurrency: 1,
            strategy: ErrorStrategy::FailFast,
        }
    }

    fn add(mut self, pattern: &str, handler: Handler) -> Self {
        match Pattern::new(pattern) {
            Ok(pattern) => self.routes.push((pattern, handler)),
            Err(err) => {
                self.invalid_route.get_or_insert(err);
            }
        }
        self
    }

    /// Sends messages whose subject matches `pattern` to an async `handler`.
    /// Routes are tried in the order they were added; a message no route takes
    /// is acked and counted as unrouted.
    pub fn route<F, Fut>(self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Delivery) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), HandlerError>> + Send + 'static,
    {
        self.add(pattern, Arc::new(move |delivery| Box::pin(handler(delivery))))
    }

    /// Like [`route`](ProcessorBuilder::route) for a blocking handler, which
    /// runs on tokio's blocking threads.
    pub fn route_blocking<F>(self, pattern: &str, handler: F) -> Self
    where
        F: Fn(Delivery) -> std::result::Result<(), HandlerError> + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        self.add(
            pattern,
            Arc::new(move |delivery| {
                let handler = handler.clone();
                Box::pin(async move {
                    tokio::task::spawn_blocking(move || handler(delivery))
                        .await
                        .map_err(|e| -> HandlerError { format!("the blocking handler panicked: {e}").into() })?
                })
            }),
        )
    }

    /// Messages each worker fetches at a time (default 64).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n.max(1);
        self
    }

    /// Workers handling messages at once (default 1, which keeps the order;
    /// at most [`MAX_CONCURRENCY`]).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.concurrency = n.clamp(1, MAX_CONCURRENCY);
        self
    }

    /// What to do when a handler fails (default: [`ErrorStrategy::FailFast`]).
    pub fn on_error(mut self, strategy: ErrorStrategy) -> Self {
        self.strategy = strategy;
        self
    }

    /// Creates the durable consumer if needed, filtered to the routes'
    /// patterns, and starts the workers.
    ///
    /// A consumer that exists keeps its position and settings, but its
    /// filters become the routes' patterns if they differ: a route added
    /// since the last run gets its subjects from the consumer's position on
    /// (messages it went past before are not delivered; reset the consumer
    /// to replay them), and a route removed no longer gets any.
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid route pattern; `InvalidRequest` with no
    /// route; `InvalidName`; `StreamNotFound`; `InvalidConfig` for a route
    /// whose pattern overlaps none of the stream's subjects (it could never
    /// be called); whatever else creating or updating the consumer returns.
    pub async fn start(self) -> Result<Processor> {
        if let Some(err) = self.invalid_route {
            return Err(err);
        }
        if self.routes.is_empty() {
            return Err(Error::new(
                ErrorKind::InvalidRequest,
                "a processor needs at least one route",
            ));
        }
        let consumer = self.consumer_for_routes().await?;
        let shared = Arc::new(Shared {
            routes: self.routes,
            strategy: self.strategy,
            stats: Stats::default(),
            stopping: AtomicBool::new(false),
            failure: Mutex::new(None),
            progress: tokio::sync::Notify::new(),
        });
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut workers = Vec::with_capacity(self.concurrency);
        for i in 0..self.concurrency {
            let member = consumer.member(format!("worker-{i}"))?;
            workers.push(tokio::spawn(work(
                member,
                shared.clone(),
                self.batch_size,
                stop_rx.clone(),
                stop_tx.clone(),
            )));
        }
        Ok(Processor {
            consumer,
            shared,
            stop: stop_tx,
            workers,
        })
    }

    /// Its consumer, created or brought in line with the routes.
    ///
    /// The routes are the processor's code, so on a restart they say what
    /// its consumer should take; refusing to start on a difference would
    /// make every deploy that adds a handler stop for a manual update.
    /// Instances with different routes should therefore not run side by
    /// side: the last one started sets the filters (docs/patterns.md).
    async fn consumer_for_routes(&self) -> Result<Consumer> {
        let stream = StreamName::new(&self.stream)?;
        let name = ConsumerName::new(&self.consumer)?;
        let backend = self.bus.backend();
        let filters: Vec<Pattern> = self.routes.iter().map(|(pattern, _)| pattern.clone()).collect();
        match backend.consumer_config(&stream, &name).await {
            Ok(config) => {
                if !same_patterns(&config.filters, &filters) {
                    tracing::info!(
                        %stream,
                        consumer = %name,
                        from = ?config.filters,
                        to = ?filters,
                        "processor routes changed; updating its consumer's filters"
                    );
                    backend
                        .update_consumer(&stream, ConsumerConfig { filters, ..config })
                        .await?;
                }
                Ok(Consumer::new(backend.clone(), stream, name))
            }
            Err(err) if err.kind() == ErrorKind::ConsumerNotFound => {
                let mut builder = self.bus.consumer(&self.stream, &self.consumer);
                for pattern in &filters {
                    builder = builder.filter(pattern.as_str());
                }
                builder.create().await
            }
            Err(err) => Err(err),
        }
    }
}

/// Whether two filter lists take the same patterns, order and repeats aside.
fn same_patterns(a: &[Pattern], b: &[Pattern]) -> bool {
    fn set(patterns: &[Pattern]) -> BTreeSet<&str> {
        patterns.iter().map(Pattern::as_str).collect()
    }
    set(a) == set(b)
}

#[derive(Default)]
struct Stats {
    processed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    skipped: AtomicU64,
    dead_lettered: AtomicU64,
    unrouted: AtomicU64,
}

struct Shared {
    routes: Vec<(Pattern, Handler)>,
    strategy: ErrorStrategy,
    stats: Stats,
    stopping: AtomicBool,
    failure: Mutex<Option<String>>,
    /// Woken after every message handled, and when the processor stops.
    progress: tokio::sync::Notify,
}

/// Counts of what a processor did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProcessorStats {
    /// Messages handled successfully (and acked).
    pub processed: u64,
    /// Handler errors, every attempt counted.
    pub failed: u64,
    /// Messages put back for a retry.
    pub retried: u64,
    /// Failed messages acked and passed over.
    pub skipped: u64,
    /// Messages moved to the dead-letter stream.
    pub dead_lettered: u64,
    /// Messages no route took (acked).
    pub unrouted: u64,
}

/// A running processor.
pub struct Processor {
    consumer: Consumer,
    shared: Arc<Shared>,
    stop: watch::Sender<bool>,
    workers: Vec<tokio::task::JoinHandle<Result<()>>>,
}

impl std::fmt::Debug for Processor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Processor")
            .field("consumer", &self.consumer)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Processor {
    /// What it has done so far.
    pub fn stats(&self) -> ProcessorStats {
        snapshot(&self.shared.stats)
    }

    /// Messages of its stream it has not taken yet.
    ///
    /// # Errors
    ///
    /// As [`Consumer::info`].
    pub async fn lag(&self) -> Result<u64> {
        Ok(self.consumer.info().await?.pending)
    }

    /// Waits until `done` holds for its stats (checked after every message
    /// handled), or until it stops by itself; returns the stats then.
    pub async fn wait_until(&self, done: impl Fn(ProcessorStats) -> bool) -> ProcessorStats {
        loop {
            let progressed = self.shared.progress.notified();
            tokio::pin!(progressed);
            progressed.as_mut().enable();
            let stats = self.stats();
            if done(stats) || self.has_stopped() {
                return stats;
            }
            progressed.await;
        }
    }

    /// Why it stopped by itself, if it did.
    pub fn failure(&self) -> Option<String> {
        self.shared.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Whether it stopped by itself (fail fast, or a `Stop` decision).
    pub fn has_stopped(&self) -> bool {
        self.shared.stopping.load(Ordering::Relaxed)
    }

    /// The consumer it runs on.
    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// Stops taking messages, lets the messages in hand (each worker's
    /// fetched batch) finish, and waits for the workers. A fetch under way is
    /// let end, and what it brings is handed back unhandled.
    ///
    /// # Errors
    ///
    /// The error that stopped it, if a handler failure did.
    pub async fn shutdown(self) -> Result<ProcessorStats> {
        let _ = self.stop.send(true);
        self.wait().await
    }

    /// Waits until it stops by itself. By then each worker has finished the
    /// message it was handling and handed back the rest of its batch.
    ///
    /// # Errors
    ///
    /// The handler failure that stopped it, as an `Internal` error with its message.
    pub async fn wait(self) -> Result<ProcessorStats> {
        for worker in self.workers {
            worker
                .await
                .map_err(|e| Error::new(ErrorKind::Internal, format!("a processor worker panicked: {e}")))??;
        }
        let failure = self.shared.failure.lock().unwrap_or_else(|e| e.into_inner()).take();
        match failure {
            Some(message) => Err(Error::new(ErrorKind::Internal, message)),
            None => Ok(snapshot(&self.shared.stats)),
        }
    }
}

fn snapshot(s: &Stats) -> ProcessorStats {
    ProcessorStats {
        processed: s.processed.load(Ordering::Relaxed),
        failed: s.failed.load(Ordering::Relaxed),
        retried: s.retried.load(Ordering::Relaxed),
        skipped: s.skipped.load(Ordering::Relaxed),
        dead_lettered: s.dead_lettered.load(Ordering::Relaxed),
        unrouted: s.unrouted.load(Ordering::Relaxed),
    }
}

/// Runs a worker; a bus error stops the whole processor, visibly.
async fn work(
    member: Consumer,
    shared: Arc<Shared>,
    batch_size: usize,
    stop: watch::Receiver<bool>,
    stop_all: watch::Sender<bool>,
) -> Result<()> {
    let outcome = work_loop(member, shared.clone(), batch_size, stop, stop_all.clone()).await;
    if let Err(err) = &outcome {
        tracing::error!(%err, "processor worker failed; processor stopping");
        shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_or_insert_with(|| err.to_string());
        shared.stopping.store(true, Ordering::Relaxed);
        let _ = stop_all.send(true);
        shared.progress.notify_waiters();
    }
    outcome
}

async fn work_loop(
    member: Consumer,
    shared: Arc<Shared>,
    batch_size: usize,
    mut stop: watch::Receiver<bool>,
    stop_all: watch::Sender<bool>,
) -> Result<()> {
    loop {
        if *stop.borrow() || shared.stopping.load(Ordering::Relaxed) {
            return Ok(());
        }
        let fetch = member.fetch(batch_size, FETCH_WAIT);
        tokio::pin!(fetch);
        let batch = tokio::select! {
            batch = &mut fetch => batch?,
            _ = stop.changed() => {
                // A fetch dropped midway is not called off everywhere: a server
                // or JetStream may still lease messages to it, which nobody
                // would then settle. Let it end (within FETCH_WAIT) instead,
                // and hand back what it brought.
                release(fetch.await?).await;
                return Ok(());
            }
        };
        let mut batch = batch.into_iter();
        let mut acks = Acks::default();
        while let Some(received) = batch.next() {
            if shared.stopping.load(Ordering::Relaxed) {
                // Another worker stopped the processor: stop here too.
                acks.flush(&shared).await?;
                release(std::iter::once(received).chain(batch)).await;
                return Ok(());
            }
            let handled = match handle(&shared, received).await {
                Ok(handled) => handled,
                Err(err) => {
                    let _ = acks.flush(&shared).await;
                    release(batch).await;
                    return Err(err);
                }
            };
            match handled {
                Handled::Ack(received, tally) => acks.push(*received, tally),
                Handled::Settled => {}
                Handled::Stop => {
                    acks.flush(&shared).await?;
                    let _ = stop_all.send(true);
                    release(batch).await;
                    shared.progress.notify_waiters();
                    return Ok(());
                }
            }
            if acks.due() {
                acks.flush(&shared).await?;
            }
            shared.progress.notify_waiters();
        }
        acks.flush(&shared).await?;
        shared.progress.notify_waiters();
    }
}

/// How long a handled message's ack may wait for others to go with it.
const ACK_GATHER: Duration = Duration::from_millis(100);

/// Acks of handled messages, sent together (one call, one confirmation) at
/// the end of a batch, or once the first has waited [`ACK_GATHER`]. A
/// message counts as processed once its ack is confirmed.
#[derive(Default)]
struct Acks {
    received: Vec<Received>,
    tallies: Vec<Tally>,
    since: Option<tokio::time::Instant>,
}

/// Which count a handled message adds to once acked.
#[derive(Clone, Copy)]
enum Tally {
    Processed,
    Skipped,
    Unrouted,
}

impl Acks {
    fn push(&mut self, received: Received, tally: Tally) {
        self.since.get_or_insert_with(tokio::time::Instant::now);
        self.received.push(received);
        self.tallies.push(tally);
    }

    fn due(&self) -> bool {
        self.since.is_some_and(|since| since.elapsed() >= ACK_GATHER)
    }

    async fn flush(&mut self, shared: &Shared) -> Result<()> {
        let Some(first) = self.received.first() else {
            return Ok(());
        };
        let consumer = first.consumer().clone();
        self.since = None;
        let received = std::mem::take(&mut self.received);
        let tallies = std::mem::take(&mut self.tallies);
        let outcomes = consumer.ack_all_outcomes(&received).await?;
        let mut failed = None;
        for (outcome, tally) in outcomes.into_iter().zip(tallies) {
            match outcome {
                Ok(()) => {
                    let count = match tally {
                        Tally::Processed => &shared.stats.processed,
                        Tally::Skipped => &shared.stats.skipped,
                        Tally::Unrouted => &shared.stats.unrouted,
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                }
                Err(err) => {
                    failed.get_or_insert(err);
                }
            }
        }
        failed.map_or(Ok(()), Err)
    }
}

/// Hands back deliveries fetched and not handled: a nak with no delay makes
/// each due again at once instead of after its lease (one call for all).
/// Their delivery counts stand, as they would had the leases run out.
async fn release(unhandled: impl IntoIterator<Item = Received>) {
    let unhandled: Vec<Received> = unhandled.into_iter().collect();
    let Some(first) = unhandled.first() else {
        return;
    };
    let consumer = first.consumer().clone();
    let naks = unhandled.iter().map(|r| (r, Settle::Nak { delay: Duration::ZERO }));
    let outcomes = match consumer.settle_all(naks).await {
        Ok(outcomes) => outcomes,
        Err(err) => {
            let n = unhandled.len();
            tracing::warn!(n, %err, "could not hand back unhandled messages; they come back after their leases");
            return;
        }
    };
    for (received, outcome) in unhandled.iter().zip(outcomes) {
        if let Err(err) = outcome {
            let seq = received.message.seq;
            tracing::warn!(seq, %err, "could not hand back an unhandled message; it comes back after its lease");
        }
    }
}

/// What handling one message left to do.
enum Handled {
    /// Handled (or skipped, or unrouted): to be acked.
    Ack(Box<Received>, Tally),
    /// Settled already (retried or dead-lettered).
    Settled,
    /// The processor must stop; the message went back.
    Stop,
}

/// Handles one message.
async fn handle(shared: &Shared, received: Received) -> Result<Handled> {
    let subject = received.message.subject.clone();
    let Some((_, handler)) = shared.routes.iter().find(|(p, _)| p.matches(&subject)) else {
        return Ok(Handled::Ack(Box::new(received), Tally::Unrouted));
    };
    let outcome = handler((*received).clone()).await;
    let error = match outcome {
        Ok(()) => return Ok(Handled::Ack(Box::new(received), Tally::Processed)),
        Err(error) => error,
    };
    shared.stats.failed.fetch_add(1, Ordering::Relaxed);
    let failure = Failure {
        delivery: &received,
        attempt: received.deliveries,
        error: &error,
    };
    let decision = shared.strategy.decide(&failure);
    let seq = received.message.seq;
    match decision {
        Decision::Retry(delay) => {
            tracing::debug!(%subject, seq, attempt = received.deliveries, ?delay, %error, "handler failed; retrying");
            received.nak_after(delay).await?;
            shared.stats.retried.fetch_add(1, Ordering::Relaxed);
        }
        Decision::Skip => {
            tracing::warn!(%subject, seq, %error, "handler failed; message skipped");
            return Ok(Handled::Ack(Box::new(received), Tally::Skipped));
        }
        Decision::DeadLetter => {
            tracing::warn!(%subject, seq, %error, "handler failed; message dead-lettered");
            received.term(error.to_string()).await?;
            shared.stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
        }
        Decision::Stop => {
            tracing::error!(%subject, seq, %error, "handler failed; processor stopping");
            *shared.failure.lock().unwrap_or_else(|e| e.into_inner()) =
                Some(format!("handler failed on `{subject}` seq {seq}: {error}"));
            // Stopping before the message goes back, so that no other worker
            // takes it up again in this run.
            shared.stopping.store(true, Ordering::Relaxed);
            // Put back at once for the next run rather than waiting out the lease.
            received.nak().await?;
            return Ok(Handled::Stop);
        }
    }
    Ok(Handled::Settled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_backoff_setting_panics_a_wait_beyond_a_duration() {
        let huge = Backoff::new(3, Duration::MAX).jitter(0.0).max(Duration::MAX);
        assert_eq!(huge.delay(5), Duration::MAX);
        let mut odd = Backoff::new(3, Duration::from_secs(1)).jitter(0.0);
        odd.multiplier = f64::INFINITY;
        assert_eq!(odd.delay(2), odd.max);
        for jitter in [f64::NEG_INFINITY, f64::NAN, 7.0] {
            let mut wild = Backoff::new(3, Duration::from_secs(1)).jitter(0.0);
            wild.jitter = jitter;
            assert_eq!(wild.delay(1), Duration::from_secs(1), "jitter {jitter}");
        }
        assert_eq!(
            ProcessorBuilder::new(crate::Bus::memory().unwrap(), "s".into(), "c".into())
                .concurrency(usize::MAX)
                .concurrency,
            MAX_CONCURRENCY
        );
    }

    #[test]
    fn backoff_doubles_up_to_its_cap_and_jitter_only_shortens() {
        let exact = Backoff::new(10, Duration::from_millis(100))
            .jitter(0.0)
            .max(Duration::from_secs(1));
        let delays: Vec<u128> = (1..=6).map(|a| exact.delay(a).as_millis()).collect();
        assert_eq!(delays, vec![100, 200, 400, 800, 1000, 1000]);

        let jittered = Backoff::new(10, Duration::from_millis(100)).jitter(0.5);
        let samples: Vec<Duration> = (0..200).map(|_| jittered.delay(3)).collect();
        assert!(
            samples
                .iter()
                .all(|d| *d >= Duration::from_millis(200) && *d <= Duration::from_millis(400))
        );
        let distinct: std::collections::HashSet<_> = samples.iter().collect();
        assert!(distinct.len() > 100, "jitter spreads the waits");
    }

    #[test]
    fn retry_gives_way_to_its_exhausted_decision_at_the_last_attempt() {
        let strategy = ErrorStrategy::Retry {
            backoff: Backoff::new(3, Duration::from_secs(1)).jitter(0.0),
            then: Exhausted::Skip,
        };
        let delivery = Delivery {
            message: herald_core::Message {
                stream: herald_core::StreamName::new("s").unwrap(),
                seq: 1,
                subject: herald_core::Subject::new("s.x").unwrap(),
                id: "1".into(),
                time: herald_core::Timestamp(0),
                headers: Default::default(),
                payload: bytes::Bytes::new(),
                content_type: None,
                expires: None,
            },
            consumer_seq: 1,
            deliveries: 1,
            pending: 0,
            member: herald_core::ConsumerName::new("m").unwrap(),
        };
        let error: HandlerError = "boom".into();
        let decide = |attempt| {
            strategy.decide(&Failure {
                delivery: &delivery,
                attempt,
                error: &error,
            })
        };
        assert_eq!(decide(1), Decision::Retry(Duration::from_secs(1)));
        assert_eq!(decide(2), Decision::Retry(Duration::from_secs(2)));
        assert_eq!(decide(3), Decision::Skip);
    }
}
