//! The engine on a fault-injecting disk: group commit shares fsyncs, a failed
//! commit fails every request in it, relaxed commits reach the disk in time.

// Test code: an unwrap that fails is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::time::Duration;

use herald::{Bus, Durability, Engine, ErrorKind, ReadRange, StreamConfig};
use herald_testkit::faulty_storage::FaultyStorage;

fn bus_on(disk: &FaultyStorage) -> Bus {
    Bus::from_engine(Engine::builder().storage_backend(disk.clone()).open().unwrap())
}

/// The ids held by the stream `s` in a reopened copy of `image`.
async fn ids_in(image: Vec<u8>) -> HashSet<String> {
    let bus = bus_on(&FaultyStorage::from_image(image));
    match bus.read("s", ReadRange::from_seq(1, 100_000)).await {
        Ok(messages) => messages.into_iter().map(|m| m.id).collect(),
        Err(err) if err.kind() == ErrorKind::StreamNotFound => HashSet::new(),
        Err(err) => panic!("{err}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_publishers_share_fsyncs() {
    let disk = FaultyStorage::new();
    let bus = bus_on(&disk);
    bus.create_stream(StreamConfig::new("s").unwrap()).await.unwrap();
    let before = disk.sync_count();
    let mut tasks = Vec::new();
    for p in 0..64 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                bus.publish(format!("s.p{p}"), format!("{i}")).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let syncs = disk.sync_count() - before;
    println!("640 durable publishes took {syncs} fsyncs");
    assert!(
        syncs <= 320,
        "group commit should share fsyncs: {syncs} for 640 publishes"
    );
    assert_eq!(bus.stream_info("s").await.unwrap().state.messages, 640);
}

/// An error and its sources, `outer: inner: …`.
fn cause_chain(err: &herald::Error) -> String {
    let mut chain = err.to_string();
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        chain.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    chain
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_commit_fails_every_request_in_it_and_acknowledges_none() {
    let disk = FaultyStorage::new();
    let bus = bus_on(&disk);
    bus.create_stream(StreamConfig::new("s").unwrap()).await.unwrap();
    bus.publish_message(herald_testkit::suite::msg("s.x", "before").id("before"))
        .await
        .unwrap();
    disk.fail_next_sync();
    let mut tasks = Vec::new();
    for p in 0..16 {
        let bus = bus.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("p{p}");
            let result = bus
                .publish_message(herald_testkit::suite::msg("s.x", id.clone()).id(id.clone()))
                .await;
            (id, result)
        }));
    }
    let mut failed = Vec::new();
    let mut chains = Vec::new();
    let mut acked = Vec::new();
    for t in tasks {
        let (id, result) = t.await.unwrap();
        match result {
            Ok(_) => acked.push(id),
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::Storage, "{err}");
                // The storage's own words reach the caller, each layer once
                // (a publish in a later batch meets the database refusing
                // writes after the failed fsync: a cause of its own).
                let chain = cause_chain(&err);
                assert!(std::error::Error::source(&err).is_some(), "no cause: {chain}");
                assert!(chain.matches("commit failed").count() <= 1, "{chain}");
                chains.push(chain);
                failed.push(id);
            }
        }
    }
    assert!(!failed.is_empty(), "the injected fsync failure failed a commit");
    // The commit that met the failed fsync names it, unless a commit with no
    // publish in it (consumer state, maintenance) met it first; then every
    // publish meets redb's refusal after it.
    assert!(
        chains
            .iter()
            .all(|c| c.contains("injected sync failure") || c.contains("Previous I/O error")),
        "a failed publish was not told the storage's cause: {chains:?}"
    );
    let durable = ids_in(disk.durable_image()).await;
    assert!(durable.contains("before"));
    for id in &failed {
        assert!(!durable.contains(id), "{id} failed but is on disk");
    }
    for id in &acked {
        assert!(durable.contains(id), "{id} was acknowledged but is not on disk");
    }
    println!(
        "{} publishes failed with the commit, {} acknowledged",
        failed.len(),
        acked.len()
    );
    // After a failed fsync the page cache cannot be trusted: the engine refuses
    // writes until it is reopened, which recovers the last durable commit.
    let after = bus
        .publish_message(herald_testkit::suite::msg("s.x", "after").id("after"))
        .await;
    assert_eq!(after.unwrap_err().kind(), ErrorKind::Storage);
    drop(bus);
    let reopened = ids_in(disk.durable_image()).await;
    assert_eq!(reopened, HashSet::from(["before".to_string()]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relaxed_commits_are_fsynced_within_the_interval() {
    let disk = FaultyStorage::new();
    let bus = bus_on(&disk);
    bus.create_stream(StreamConfig::new("s").unwrap().durability(Durability::Relaxed))
        .await
        .unwrap();
    let before = disk.durable_sync_count();
    bus.publish_message(herald_testkit::suite::msg("s.x", "fast").id("fast"))
        .await
        .unwrap();
    let published_at = std::time::Instant::now();
    // Acknowledged before its fsync: not yet in what a power cut would leave...
    assert!(!ids_in(disk.durable_image()).await.contains("fast"));
    // ...until the writer's own flush, with no other write to trigger it.
    let waiter = disk.clone();
    let flushed =
        tokio::task::spawn_blocking(move || waiter.wait_for_durable_syncs(before + 1, Duration::from_secs(10)));
    assert!(flushed.await.unwrap(), "no flush within 10 s");
    let durable = ids_in(disk.durable_image()).await;
    assert!(durable.contains("fast"), "the relaxed publish reached the disk");
    println!(
        "flushed {:?} after the publish (bound: {:?})",
        published_at.elapsed(),
        herald_engine::RELAXED_FLUSH_INTERVAL
    );
}
