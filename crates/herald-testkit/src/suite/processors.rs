//! Event processors: routing, error strategies, retry timing, restart from the
//! ack floor, concurrency with blocking handlers.

use std::collections::HashSet;
use std::future::{Future, Ready};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::processor::{Decision, HandlerError, ProcessorStats};
use herald::{Backoff, Delivery, ErrorKind, ErrorStrategy, Exhausted, Processor};

use crate::TestBus;

/// The seqs a handler saw, in order.
type Log = Arc<Mutex<Vec<u64>>>;

fn log() -> Log {
    Arc::new(Mutex::new(Vec::new()))
}

fn seqs(log: &Log) -> Vec<u64> {
    log.lock().unwrap().clone()
}

/// A handler that records each seq in `log` and succeeds.
fn recorder(log: &Log) -> impl Fn(Delivery) -> Ready<Result<(), HandlerError>> + Send + Sync + 'static {
    let log = log.clone();
    move |d| {
        log.lock().unwrap().push(d.message.seq);
        std::future::ready(Ok(()))
    }
}

/// `future`'s output, or a panic with `why()` after a minute of real time.
/// (Not a tokio timer: on paused time the clock jumps to the next timer
/// whenever the test waits on the engine's writer thread, which would fire a
/// timeout at once.)
async fn within_a_minute<T>(future: impl Future<Output = T>, why: impl FnOnce() -> String) -> T {
    let (expired, deadline) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(60));
        let _ = expired.send(());
    });
    tokio::select! {
        output = future => output,
        _ = deadline => panic!("{}", why()),
    }
}

/// Waits until `done` holds for the processor's stats.
async fn until(processor: &Processor, done: impl Fn(ProcessorStats) -> bool) {
    let stats = within_a_minute(processor.wait_until(&done), || {
        format!(
            "the processor did not get there: {:?} ({:?})",
            processor.stats(),
            processor.failure()
        )
    })
    .await;
    assert!(
        done(stats),
        "the processor stopped: {:?} ({:?})",
        stats,
        processor.failure()
    );
}

async fn publish_n(bus: &TestBus, subject: &str, n: usize) {
    for i in 0..n {
        bus.publish(subject, format!("{i}")).await.unwrap();
    }
}

/// Routes pick handlers by subject; handled messages are acked.
pub async fn a_processor_routes_by_subject_and_acks(bus: &TestBus) {
    bus.publish("orders.created", "o1").await.unwrap();
    bus.publish("orders.paid", "o1").await.unwrap();
    bus.publish("orders.created", "o2").await.unwrap();
    bus.publish("orders.shipped", "o1").await.unwrap();
    let (created, paid) = (log(), log());
    let processor = bus
        .processor("orders", "projections")
        .route("orders.created", recorder(&created))
        .route("orders.paid", recorder(&paid))
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.processed == 3).await;
    assert_eq!(processor.lag().await.unwrap(), 0);
    let stats = processor.shutdown().await.unwrap();
    assert_eq!((stats.processed, stats.failed, stats.unrouted), (3, 0, 0));
    assert_eq!(seqs(&created), vec![1, 3]);
    assert_eq!(seqs(&paid), vec![2]);
    // The consumer took only the routed subjects, and acked them all.
    let info = bus
        .bind_consumer("orders", "projections")
        .await
        .unwrap()
        .info()
        .await
        .unwrap();
    assert_eq!((info.in_flight, info.pending), (0, 0));
}

/// A route whose pattern the stream can never carry stops the processor at
/// start with `InvalidConfig` naming it: on first start, and when the route
/// is added to a processor that ran before.
pub async fn a_route_the_stream_can_never_carry_is_refused_at_start(bus: &TestBus) {
    bus.create_stream(herald::StreamConfig::new("orders").unwrap())
        .await
        .unwrap();
    // With a route for `payments.>` beside one the stream carries.
    let start_with_a_stray_route = || async {
        let started = bus
            .processor("orders", "projections")
            .route("orders.created", recorder(&log()))
            .route("payments.>", recorder(&log()))
            .start()
            .await;
        match started {
            Ok(_) => panic!("a processor with a route outside its stream started"),
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
                assert!(err.message().contains("`payments.>`"), "{err}");
            }
        }
    };
    start_with_a_stray_route().await;
    let processor = bus
        .processor("orders", "projections")
        .route("orders.created", recorder(&log()))
        .start()
        .await
        .unwrap();
    processor.shutdown().await.unwrap();
    start_with_a_stray_route().await;
    // The consumer keeps the routes it had.
    let info = bus.consumer_info("orders", "projections").await.unwrap();
    assert_eq!(info.config.filters, [herald::Pattern::new("orders.created").unwrap()]);
}

/// Retry with backoff retries at the scheduled moments, then dead-letters.
pub async fn retry_with_backoff_retries_at_the_right_moments_then_dead_letters(bus: &TestBus) {
    bus.publish("payments.charge", "card-declined").await.unwrap();
    let attempts = Arc::new(Mutex::new(Vec::new()));
    let processor = bus
        .processor("payments", "charger")
        .route("payments.>", {
            let attempts = attempts.clone();
            move |d| {
                let attempts = attempts.clone();
                async move {
                    attempts
                        .lock()
                        .unwrap()
                        .push((d.deliveries, tokio::time::Instant::now()));
                    Err::<(), HandlerError>("gateway said no".into())
                }
            }
        })
        .on_error(ErrorStrategy::Retry {
            backoff: Backoff::new(4, Duration::from_secs(1)).jitter(0.0),
            then: Exhausted::DeadLetter,
        })
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.dead_lettered == 1).await;
    let stats = processor.shutdown().await.unwrap();
    assert_eq!((stats.failed, stats.retried, stats.dead_lettered), (4, 3, 1));
    let attempts = attempts.lock().unwrap().clone();
    assert_eq!(attempts.iter().map(|(n, _)| *n).collect::<Vec<_>>(), vec![1, 2, 3, 4]);
    for (i, expected) in [1u64, 2, 4].into_iter().enumerate() {
        let gap = attempts[i + 1].1 - attempts[i].1;
        let expected = Duration::from_secs(expected);
        assert!(
            gap >= expected && gap < expected + Duration::from_millis(100) + bus.timer_slack(),
            "retry {} came after {gap:?}, not {expected:?}",
            i + 1
        );
    }
    let dead = bus.dead_letters("payments", "charger", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].payload[..], b"card-declined");
    assert!(
        dead[0].headers.values().any(|v| v.contains("gateway said no")),
        "{:?}",
        dead[0].headers
    );
}

/// Fail fast stops at the failing message; a restarted processor resumes
/// after the ack floor and handles nothing twice.
pub async fn a_restarted_processor_resumes_after_its_ack_floor(bus: &TestBus) {
    publish_n(bus, "ledger.entry", 10).await;
    let first = log();
    let processor = bus
        .processor("ledger", "balances")
        .route("ledger.*", {
            let first = first.clone();
            move |d| {
                let first = first.clone();
                async move {
                    if d.message.seq == 6 {
                        return Err::<(), HandlerError>("disk full".into());
                    }
                    first.lock().unwrap().push(d.message.seq);
                    Ok(())
                }
            }
        })
        .start()
        .await
        .unwrap();
    let err = processor.wait().await.unwrap_err();
    assert!(err.to_string().contains("disk full"), "{err}");
    let info = bus
        .bind_consumer("ledger", "balances")
        .await
        .unwrap()
        .info()
        .await
        .unwrap();
    assert_eq!(info.ack_floor, 5, "stopped before the failing message");

    let second = log();
    let processor = bus
        .processor("ledger", "balances")
        .route("ledger.*", recorder(&second))
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.processed == 5).await;
    processor.shutdown().await.unwrap();
    assert_eq!(seqs(&first), vec![1, 2, 3, 4, 5]);
    assert_eq!(
        seqs(&second),
        vec![6, 7, 8, 9, 10],
        "resumed after the floor, nothing twice"
    );
}

/// Skip acks and goes on; a custom decision picks per failure.
pub async fn skip_and_custom_error_strategies(bus: &TestBus) {
    publish_n(bus, "feed.item", 4).await;
    let processor = bus
        .processor("feed", "skipper")
        .route("feed.>", |d| async move {
            if d.message.seq % 2 == 0 {
                Err::<(), HandlerError>("bad item".into())
            } else {
                Ok(())
            }
        })
        .on_error(ErrorStrategy::Skip)
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.processed + s.skipped == 4).await;
    let stats = processor.shutdown().await.unwrap();
    assert_eq!((stats.processed, stats.skipped), (2, 2));

    bus.publish("audit.poison", "x").await.unwrap();
    bus.publish("audit.flaky", "y").await.unwrap();
    let decide = Arc::new(|failure: &herald::processor::Failure<'_>| {
        if failure.delivery.message.subject.as_str() == "audit.poison" {
            Decision::DeadLetter
        } else if failure.attempt < 2 {
            Decision::Retry(Duration::from_millis(10))
        } else {
            Decision::Skip
        }
    });
    let processor = bus
        .processor("audit", "custom")
        .route("audit.*", |_| async { Err::<(), HandlerError>("always".into()) })
        .on_error(ErrorStrategy::Custom(decide))
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.dead_lettered == 1 && s.skipped == 1).await;
    let stats = processor.shutdown().await.unwrap();
    assert_eq!((stats.failed, stats.retried), (3, 1));
    let dead = bus.dead_letters("audit", "custom", 10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(&dead[0].payload[..], b"x");
}

/// Several workers with a blocking handler handle every message exactly once.
pub async fn concurrent_workers_with_a_blocking_handler_handle_each_message_once(bus: &TestBus) {
    publish_n(bus, "thumbs.make", 200).await;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let processor = bus
        .processor("thumbs", "renderers")
        .route_blocking("thumbs.*", {
            let seen = seen.clone();
            move |d| {
                std::thread::sleep(Duration::from_micros(200));
                seen.lock().unwrap().push(d.message.seq);
                Ok(())
            }
        })
        .concurrency(4)
        .batch_size(8)
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.processed == 200).await;
    processor.shutdown().await.unwrap();
    let seen = seen.lock().unwrap().clone();
    let distinct: HashSet<u64> = seen.iter().copied().collect();
    assert_eq!((seen.len(), distinct.len()), (200, 200));
    let members = bus
        .bind_consumer("thumbs", "renderers")
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .members;
    assert!(members.len() >= 2, "the work was shared: {members:?}");
}

/// Shutdown stops taking messages but lets the ones in hand finish.
pub async fn shutdown_lets_the_messages_in_hand_finish(bus: &TestBus) {
    publish_n(bus, "uploads.file", 10).await;
    let processor = bus
        .processor("uploads", "scanner")
        .route("uploads.*", |_| async {
            tokio::time::sleep(Duration::from_secs(1)).await;
            Ok::<(), HandlerError>(())
        })
        .batch_size(3)
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.processed >= 1).await;
    let stats = processor.shutdown().await.unwrap();
    assert_eq!(
        stats.processed, 3,
        "the rest of the fetched batch was handled, nothing more"
    );
    let info = bus
        .bind_consumer("uploads", "scanner")
        .await
        .unwrap()
        .info()
        .await
        .unwrap();
    assert_eq!((info.ack_floor, info.in_flight, info.pending), (3, 0, 7));
}

/// A bus error (here: its consumer deleted) stops the processor, and says why.
pub async fn a_processor_stops_visibly_when_its_consumer_goes_away(bus: &TestBus) {
    publish_n(bus, "alerts.cpu", 1).await;
    let processor = bus
        .processor("alerts", "pager")
        .route("alerts.*", |_| async { Ok::<(), HandlerError>(()) })
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.processed == 1).await;
    bus.delete_consumer("alerts", "pager").await.unwrap();
    within_a_minute(processor.wait_until(|_| false), || {
        "the processor kept running".to_string()
    })
    .await;
    assert!(processor.has_stopped());
    let failure = processor.failure().unwrap();
    assert!(failure.contains("pager"), "{failure}");
    let err = processor.wait().await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::ConsumerNotFound, "{err}");
}

/// An hour: a lease no test waits out. A message left leased then shows as a
/// test that never gets there (real time) or as an hour gone by (paused time).
const LONG_LEASE: Duration = Duration::from_secs(3600);

/// Creates `consumer` on `stream` (which exists) with [`LONG_LEASE`], filtered
/// to `route`, for a processor routing `route` to run on.
async fn long_leased(bus: &TestBus, stream: &str, consumer: &str, route: &str) {
    bus.consumer(stream, consumer)
        .filter(route)
        .ack_wait(LONG_LEASE)
        .create()
        .await
        .unwrap();
}

/// A handler that fails on `seq` and records every other seq in `log`.
fn failing_on(seq: u64, log: &Log) -> impl Fn(Delivery) -> Ready<Result<(), HandlerError>> + Send + Sync + 'static {
    let log = log.clone();
    move |d| {
        if d.message.seq == seq {
            return std::future::ready(Err("disk full".into()));
        }
        log.lock().unwrap().push(d.message.seq);
        std::future::ready(Ok(()))
    }
}

/// Runs the processor again at once and checks that it handles exactly
/// `expected` (in any order) without waiting out a lease.
async fn run_again_handles_at_once(
    bus: &TestBus,
    (stream, consumer, route): (&str, &str, &str),
    (concurrency, batch_size): (usize, usize),
    expected: Vec<u64>,
) {
    let started = tokio::time::Instant::now();
    let handled = log();
    let processor = bus
        .processor(stream, consumer)
        .route(route, recorder(&handled))
        .concurrency(concurrency)
        .batch_size(batch_size)
        .start()
        .await
        .unwrap();
    let count = expected.len() as u64;
    until(&processor, |s| s.processed == count).await;
    let waited = started.elapsed();
    processor.shutdown().await.unwrap();
    let mut handled = seqs(&handled);
    handled.sort_unstable();
    assert_eq!(handled, expected, "the rest, each once");
    assert!(
        waited < LONG_LEASE,
        "the run waited {waited:?}: a message waited out its lease"
    );
}

/// A processor stopped by a failure hands back the rest of its batch: run
/// again at once, it handles every remaining message without waiting out a
/// lease.
pub async fn a_fail_fast_processor_run_again_at_once_handles_the_rest_of_its_batch(bus: &TestBus) {
    publish_n(bus, "tally.vote", 3).await;
    long_leased(bus, "tally", "counter", "tally.*").await;
    let first = log();
    let processor = bus
        .processor("tally", "counter")
        .route("tally.*", failing_on(2, &first))
        .start()
        .await
        .unwrap();
    let err = processor.wait().await.unwrap_err();
    assert!(err.to_string().contains("seq 2"), "{err}");
    assert_eq!(seqs(&first), vec![1], "stopped at the failing message");
    run_again_handles_at_once(bus, ("tally", "counter", "tally.*"), (1, 64), vec![2, 3]).await;
}

/// With several workers, a failure in one stops them all, and every message
/// any of them fetched and did not handle goes back at once.
pub async fn a_fail_fast_processor_with_several_workers_hands_back_every_batch(bus: &TestBus) {
    publish_n(bus, "render.frame", 8).await;
    long_leased(bus, "render", "farm", "render.*").await;
    let first = log();
    let processor = bus
        .processor("render", "farm")
        .route("render.*", failing_on(3, &first))
        .concurrency(2)
        .batch_size(4)
        .start()
        .await
        .unwrap();
    processor.wait().await.unwrap_err();
    let done: HashSet<u64> = seqs(&first).into_iter().collect();
    let rest: Vec<u64> = (1..=8).filter(|seq| !done.contains(seq)).collect();
    assert!(rest.contains(&3), "the failing message was not handled: {done:?}");
    run_again_handles_at_once(bus, ("render", "farm", "render.*"), (2, 4), rest).await;
}

/// A processor shut down while it waits for messages leaves none of them
/// leased: its fetch under way ends first and hands back what it brought.
pub async fn a_processor_shut_down_while_waiting_leaves_nothing_leased(bus: &TestBus) {
    publish_n(bus, "mailbox.letter", 1).await;
    long_leased(bus, "mailbox", "sorter", "mailbox.*").await;
    let first = log();
    let processor = bus
        .processor("mailbox", "sorter")
        .route("mailbox.*", recorder(&first))
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.processed == 1).await;
    // Its worker is waiting in its next fetch now.
    processor.shutdown().await.unwrap();
    publish_n(bus, "mailbox.letter", 3).await;
    run_again_handles_at_once(bus, ("mailbox", "sorter", "mailbox.*"), (1, 64), vec![2, 3, 4]).await;
}

/// A processor started again with an added route gets the new route's
/// subjects: its consumer's filters follow the routes, and its other
/// settings and its position stay.
pub async fn a_processor_run_again_with_an_added_route_gets_its_subjects(bus: &TestBus) {
    publish_n(bus, "post.letter", 1).await;
    long_leased(bus, "post", "sorter", "post.letter").await;
    let letters = log();
    let processor = bus
        .processor("post", "sorter")
        .route("post.letter", recorder(&letters))
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.processed == 1).await;
    processor.shutdown().await.unwrap();

    bus.publish("post.parcel", "p1").await.unwrap();
    bus.publish("post.letter", "l2").await.unwrap();
    let parcels = log();
    let processor = bus
        .processor("post", "sorter")
        .route("post.letter", recorder(&letters))
        .route("post.parcel", recorder(&parcels))
        .start()
        .await
        .unwrap();
    until(&processor, |s| s.processed == 2).await;
    processor.shutdown().await.unwrap();
    assert_eq!(seqs(&letters), vec![1, 3], "from its position on, nothing twice");
    assert_eq!(seqs(&parcels), vec![2], "the added route's message");
    let config = bus.consumer_info("post", "sorter").await.unwrap().config;
    let mut filters: Vec<&str> = config.filters.iter().map(|p| p.as_str()).collect();
    filters.sort_unstable();
    assert_eq!(filters, vec!["post.letter", "post.parcel"]);
    assert_eq!(config.ack_wait, LONG_LEASE, "its other settings stay");
}
