//! Behaviour of the embedded bus that only an embedded bus has: reopening a
//! data directory, the file's size under retention, head notifications.

use std::collections::HashSet;
use std::time::Duration;

use herald::{Bus, Durability, ErrorKind, OutgoingMessage, ReadRange, StreamConfig, Subject};

fn msg(subject: &str, payload: impl Into<herald::Bytes>) -> OutgoingMessage {
    OutgoingMessage::new(Subject::new(subject).expect("test subjects are valid"), payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reopened_database_holds_every_acked_message_with_the_same_seq() {
    let dir = tempfile::tempdir().unwrap();
    let mut acked = Vec::new();
    {
        let bus = Bus::open(dir.path()).await.unwrap();
        bus.create_stream(StreamConfig::new("relaxed").unwrap().durability(Durability::Relaxed))
            .await
            .unwrap();
        for i in 0..300u32 {
            let stream = ["orders", "payments", "relaxed"][i as usize % 3];
            let m = msg(&format!("{stream}.{}", i % 7), format!("payload-{i}"))
                .id(format!("id-{i}"))
                .header("n", i.to_string());
            let ack = bus.publish_message(m.clone()).await.unwrap();
            acked.push((ack, m));
        }
        let batch: Vec<_> = (0..50)
            .map(|i| msg("orders.batch", format!("b{i}")).id(format!("b-{i}")))
            .collect();
        for (ack, m) in bus.publish_batch(batch.clone()).await.unwrap().into_iter().zip(batch) {
            acked.push((ack, m));
        }
    }
    let bus = Bus::open(dir.path()).await.unwrap();
    for (ack, sent) in &acked {
        let got = bus.get(&ack.stream, ack.seq).await.unwrap();
        assert_eq!(got.subject, sent.subject);
        assert_eq!(got.payload, sent.payload);
        assert_eq!(Some(&got.id), sent.id.as_ref());
        assert_eq!(got.headers, sent.headers);
    }
    let orders = bus.stream_info("orders").await.unwrap().state;
    assert_eq!((orders.messages, orders.first_seq, orders.last_seq), (150, 1, 150));
    // The sequence carries on, and ids are still deduplicated.
    assert_eq!(bus.publish("orders.x", "next").await.unwrap().seq, 151);
    let again = bus.publish_message(msg("orders.batch", "b7").id("b-7")).await.unwrap();
    assert!(again.duplicate);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_configs_and_limits_survive_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let config = StreamConfig::new("capped")
        .unwrap()
        .max_msgs(10)
        .subjects(["capped.>", "extra.*"])
        .unwrap();
    {
        let bus = Bus::open(dir.path()).await.unwrap();
        bus.create_stream(config.clone()).await.unwrap();
        for i in 0..25 {
            bus.publish("extra.x", format!("{i}")).await.unwrap();
        }
    }
    let bus = Bus::open(dir.path()).await.unwrap();
    let info = bus.stream_info("capped").await.unwrap();
    assert_eq!(info.config, config);
    assert_eq!(
        (info.state.messages, info.state.first_seq, info.state.last_seq),
        (10, 16, 25)
    );
    bus.publish("capped.y", "more").await.unwrap();
    let seqs: Vec<u64> = bus
        .read("capped", ReadRange::from_seq(1, 100))
        .await
        .unwrap()
        .iter()
        .map(|m| m.seq)
        .collect();
    assert_eq!(seqs, (17..=26).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_get_distinct_dense_seqs() {
    let bus = Bus::memory().unwrap();
    let mut tasks = Vec::new();
    for p in 0..64 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let mut seqs = Vec::new();
            for i in 0..50 {
                seqs.push(bus.publish(format!("many.p{p}"), format!("{p}-{i}")).await.unwrap().seq);
            }
            seqs
        }));
    }
    let mut all = HashSet::new();
    for task in tasks {
        let seqs = task.await.unwrap();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]), "one publisher's seqs go up");
        all.extend(seqs);
    }
    assert_eq!(all, (1..=3200).collect::<HashSet<u64>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_stops_growing_under_steady_state_retention() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(herald::DATA_FILE);
    let bus = Bus::open(dir.path()).await.unwrap();
    bus.create_stream(StreamConfig::new("ring").unwrap().max_msgs(2_000))
        .await
        .unwrap();
    let round = |r: u32| {
        let bus = bus.clone();
        async move {
            for b in 0..20 {
                let batch = (0..100)
                    .map(|i| msg(&format!("ring.{}", i % 10), vec![(r + b + i) as u8; 512]))
                    .collect();
                bus.publish_batch(batch).await.unwrap();
            }
        }
    };
    let mut sizes = Vec::new();
    for r in 0..30 {
        round(r).await;
        sizes.push(std::fs::metadata(&file).unwrap().len());
    }
    let info = bus.stream_info("ring").await.unwrap().state;
    assert_eq!((info.messages, info.last_seq, info.deleted), (2_000, 60_000, 58_000));
    // 60,000 messages of 512 bytes went through (~31 MiB); 2,000 are kept.
    let (settled, last) = (sizes[9], sizes[29]);
    assert!(last <= settled + settled / 4, "the file kept growing: {sizes:?}");
    assert!(
        last < 16 * 1024 * 1024,
        "the file holds far more than the retained data: {last} bytes"
    );
}

#[tokio::test]
async fn without_auto_create_an_uncaptured_subject_is_a_subject_conflict() {
    let bus = Bus::builder().auto_create_streams(false).open().await.unwrap();
    let err = bus.publish("nowhere.x", "x").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::SubjectConflict);
    assert!(err.to_string().contains("no stream captures"), "{err}");
    assert!(bus.streams().await.unwrap().is_empty());
    bus.create_stream(StreamConfig::new("nowhere").unwrap()).await.unwrap();
    assert_eq!(bus.publish("nowhere.x", "x").await.unwrap().seq, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_wakes_every_head_watcher() {
    let bus = Bus::memory().unwrap();
    bus.create_stream(StreamConfig::new("w").unwrap()).await.unwrap();
    let mut watchers: Vec<_> = (0..4).map(|_| bus.watch_head("w").unwrap()).collect();
    let waiting: Vec<_> = watchers
        .drain(..)
        .map(|mut rx| tokio::spawn(async move { rx.wait_for(|head| *head >= 3).await.map(|h| *h).unwrap() }))
        .collect();
    for _ in 0..3 {
        bus.publish("w.x", "x").await.unwrap();
    }
    for w in waiting {
        let head = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("woken")
            .unwrap();
        assert_eq!(head, 3);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_publishes_are_on_disk_after_a_clean_close() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = Bus::open(dir.path()).await.unwrap();
        bus.create_stream(StreamConfig::new("fast").unwrap().durability(Durability::Relaxed))
            .await
            .unwrap();
        for i in 0..100 {
            bus.publish("fast.x", format!("{i}")).await.unwrap();
        }
    }
    let bus = Bus::open(dir.path()).await.unwrap();
    assert_eq!(bus.stream_info("fast").await.unwrap().state.messages, 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resumes_from_its_ack_floor_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = Bus::open(dir.path()).await.unwrap();
        bus.publish_batch((0..20).map(|i| msg("jobs.x", format!("{i}"))).collect())
            .await
            .unwrap();
        let consumer = bus.consumer("jobs", "worker").create().await.unwrap();
        let got = consumer.fetch(10, Duration::ZERO).await.unwrap();
        // Acks 1..=7; 8, 9 and 10 stay in flight when the process goes away.
        for d in &got[..7] {
            d.ack().await.unwrap();
        }
        assert_eq!(consumer.info().await.unwrap().ack_floor, 7);
    }
    let bus = Bus::open(dir.path()).await.unwrap();
    let consumer = bus.bind_consumer("jobs", "worker").await.unwrap();
    let info = consumer.info().await.unwrap();
    assert_eq!((info.ack_floor, info.pending), (7, 13));
    let mut seqs: Vec<u64> = consumer
        .fetch(100, Duration::ZERO)
        .await
        .unwrap()
        .iter()
        .map(|d| d.message.seq)
        .collect();
    seqs.sort_unstable();
    // Nothing acked comes back; everything unacked does.
    assert_eq!(seqs, (8..=20).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_close_saves_consumer_progress_and_deleted_consumers_stay_deleted() {
    let dir = tempfile::tempdir().unwrap();
    {
        let bus = Bus::open(dir.path()).await.unwrap();
        bus.publish_batch((0..5).map(|i| msg("lazy.x", format!("{i}"))).collect())
            .await
            .unwrap();
        let consumer = bus.consumer("lazy", "c").create().await.unwrap();
        bus.consumer("lazy", "gone").create().await.unwrap();
        bus.delete_consumer("lazy", "gone").await.unwrap();
        for d in consumer.fetch(5, Duration::ZERO).await.unwrap() {
            d.ack().await.unwrap();
        }
    }
    let bus = Bus::open(dir.path()).await.unwrap();
    assert_eq!(
        bus.bind_consumer("lazy", "c")
            .await
            .unwrap()
            .info()
            .await
            .unwrap()
            .ack_floor,
        5
    );
    let names: Vec<String> = bus
        .consumers("lazy")
        .await
        .unwrap()
        .iter()
        .map(|c| c.config.name.to_string())
        .collect();
    assert_eq!(names, ["c"]);
}

#[tokio::test]
async fn a_data_file_left_half_created_by_a_crash_is_replaced() {
    let dir = tempfile::tempdir().unwrap();
    // What a crash during the very first open leaves: a partial database under
    // the temporary name, and no data file.
    std::fs::write(dir.path().join("herald.redb.creating"), b"half a header").unwrap();
    let bus = Bus::open(dir.path()).await.unwrap();
    assert_eq!(bus.publish("fresh.x", "ok").await.unwrap().seq, 1);
    assert!(!dir.path().join("herald.redb.creating").exists());
    drop(bus);
    // A damaged data file itself is never silently replaced.
    std::fs::write(dir.path().join(herald::DATA_FILE), b"not a database").unwrap();
    assert_eq!(Bus::open(dir.path()).await.unwrap_err().kind(), ErrorKind::Storage);
}

#[tokio::test]
async fn an_expectation_treats_an_expired_message_as_gone_before_the_timer_sweeps_it() {
    let clock = herald::ManualClock::starting_now();
    let engine = herald::Engine::builder().memory().clock(clock.clone()).open().unwrap();
    let bus = Bus::from_engine(engine);
    let kv = bus.kv("locks").open().await.unwrap();
    let held = kv.lease("job", "a", Duration::from_secs(5)).await.unwrap();
    // Past the TTL, with no retention run: the stale message is still stored.
    clock.advance(Duration::from_secs(6));
    assert_eq!(bus.stream_info("$kv-locks").await.unwrap().state.messages, 1);
    // Reads skip it, and so must the create behind a new lease.
    assert_eq!(kv.get("job").await.unwrap(), None);
    let taken = kv.lease("job", "b", Duration::from_secs(5)).await.unwrap();
    assert!(taken.revision() > held.revision());
    assert_eq!(
        bus.stream_info("$kv-locks").await.unwrap().state.messages,
        1,
        "the expired one was swept"
    );
    // Dropping `held` now tries a release at its stale revision, which changes nothing.
}
