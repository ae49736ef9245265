//! Key-value buckets and leases: revisions, compare-and-set, tombstones,
//! history, watches, per-key TTL, exclusive expiring leases with fencing.

use std::time::Duration;

use herald::kv::Operation;
use herald::{ErrorDetail, ErrorKind};

use super::kind;
use crate::TestBus;

fn actual_revision(err: &herald::Error) -> u64 {
    match err.detail() {
        Some(ErrorDetail::WrongExpectedSeq { actual, .. }) => *actual,
        other => panic!("expected a WrongExpectedSeq detail, got {other:?} ({err})"),
    }
}

/// Put, get, compare-and-set update and the kept history.
pub async fn kv_values_have_revisions_and_a_bounded_history(bus: &TestBus) {
    let kv = bus.kv("settings").history(3).open().await.unwrap();
    assert_eq!(kv.get("theme").await.unwrap(), None);
    let r1 = kv.put("theme", "light").await.unwrap();
    let r2 = kv.update("theme", "dark", r1).await.unwrap();
    assert!(r2 > r1);
    let entry = kv.get("theme").await.unwrap().unwrap();
    assert_eq!(
        (&entry.value[..], entry.revision, entry.operation),
        (&b"dark"[..], r2, Operation::Put)
    );
    assert_eq!(entry.key, "theme");

    // A stale revision loses and says what the key is at.
    let err = kv.update("theme", "blue", r1).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongExpectedSeq);
    assert_eq!(actual_revision(&err), r2);
    assert_eq!(
        &kv.get("theme").await.unwrap().unwrap().value[..],
        b"dark",
        "the loser wrote nothing"
    );

    let r3 = kv.put("theme", "solar").await.unwrap();
    let r4 = kv.put("theme", "mono").await.unwrap();
    let history: Vec<u64> = kv.history("theme").await.unwrap().iter().map(|e| e.revision).collect();
    assert_eq!(history, vec![r2, r3, r4], "three revisions kept, the oldest dropped");

    // Reopening binds to the same bucket.
    let again = bus.kv("settings").open().await.unwrap();
    assert_eq!(again.get("theme").await.unwrap().unwrap().revision, r4);
}

/// Create writes only where the key is absent, and a deleted key is absent.
pub async fn kv_create_only_if_absent_even_after_a_delete(bus: &TestBus) {
    let kv = bus.kv("owners").open().await.unwrap();
    let first = kv.create("job-7", "alice").await.unwrap();
    let err = kv.create("job-7", "bob").await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongExpectedSeq);
    assert_eq!(actual_revision(&err), first);

    let tombstone = kv.delete("job-7").await.unwrap();
    assert_eq!(kv.get("job-7").await.unwrap(), None);
    let entry = kv.entry_of("job-7").await.unwrap().unwrap();
    assert_eq!((entry.revision, entry.operation), (tombstone, Operation::Delete));

    let again = kv.create("job-7", "bob").await.unwrap();
    assert!(again > tombstone);
    assert_eq!(&kv.get("job-7").await.unwrap().unwrap().value[..], b"bob");
    // A conditional delete from a stale revision loses.
    assert_eq!(kind(kv.delete_if("job-7", first).await), ErrorKind::WrongExpectedSeq);
    kv.delete_if("job-7", again).await.unwrap();
    assert_eq!(kv.get("job-7").await.unwrap(), None);
}

/// Ten writers race to update one revision: exactly one wins.
pub async fn kv_ten_concurrent_updates_from_one_revision_exactly_one_wins(bus: &TestBus) {
    let kv = bus.kv("counter").open().await.unwrap();
    let base = kv.put("n", "0").await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..10 {
        let kv = kv.clone();
        tasks.push(tokio::spawn(async move { kv.update("n", format!("{i}"), base).await }));
    }
    let mut won = Vec::new();
    let mut lost = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(revision) => won.push(revision),
            Err(err) => {
                assert_eq!(err.kind(), ErrorKind::WrongExpectedSeq, "{err}");
                lost.push(actual_revision(&err));
            }
        }
    }
    assert_eq!(won.len(), 1, "exactly one update wins");
    assert_eq!(lost.len(), 9);
    assert!(
        lost.iter().all(|&actual| actual == won[0]),
        "every loser sees the winner's revision"
    );
    assert_eq!(
        kv.history("n").await.unwrap().len(),
        1,
        "history 1 keeps only the winner"
    );
    assert_eq!(kv.get("n").await.unwrap().unwrap().revision, won[0]);
}

/// Deletes and purges are tombstones a watcher sees; a purge drops the history.
pub async fn kv_watchers_see_puts_deletes_and_purges(bus: &TestBus) {
    let kv = bus.kv("users").history(10).open().await.unwrap();
    let before = kv.put("user.1", "ann").await.unwrap();
    let mut watch = kv.watch("user.*").await.unwrap();
    let put = kv.put("user.1", "ann v2").await.unwrap();
    kv.put("other", "not watched").await.unwrap();
    let del = kv.delete("user.1").await.unwrap();
    let put2 = kv.put("user.2", "bo").await.unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let e = watch.next().await.unwrap();
        seen.push((e.key, e.revision, e.operation));
    }
    // Read before the purge: a purge removes history a slow watcher has not read yet.
    let purge = kv.purge("user.2").await.unwrap();
    let e = watch.next().await.unwrap();
    seen.push((e.key, e.revision, e.operation));
    assert_eq!(
        seen[0],
        ("user.1".to_string(), put, Operation::Put),
        "live only: {before} is not replayed"
    );
    assert_eq!(seen[1], ("user.1".to_string(), del, Operation::Delete));
    assert_eq!(seen[2], ("user.2".to_string(), put2, Operation::Put));
    assert_eq!(seen[3], ("user.2".to_string(), purge, Operation::Purge));

    assert_eq!(
        kv.history("user.1").await.unwrap().len(),
        3,
        "a delete keeps the history"
    );
    let purged = kv.history("user.2").await.unwrap();
    assert_eq!(purged.len(), 1, "a purge leaves only its tombstone");
    assert_eq!(purged[0].operation, Operation::Purge);

    // Replay from a revision: the kept history, then live.
    let mut replay = kv.watch_from("user.1", 1).await.unwrap();
    let first = replay.next().await.unwrap();
    assert_eq!((first.revision, &first.value[..]), (before, &b"ann"[..]));
}

/// Keys lists the keys that hold a value.
pub async fn kv_keys_lists_the_keys_that_hold_a_value(bus: &TestBus) {
    let kv = bus.kv("flags").history(4).open().await.unwrap();
    assert!(kv.keys().await.unwrap().is_empty());
    for key in ["b", "a", "c.d", "a"] {
        kv.put(key, "on").await.unwrap();
    }
    kv.delete("b").await.unwrap();
    assert_eq!(kv.keys().await.unwrap(), vec!["a".to_string(), "c.d".to_string()]);
}

/// A value with a TTL reads as absent once it expires, and can be created again.
pub async fn kv_a_key_with_a_ttl_expires(bus: &TestBus) {
    let kv = bus.kv("sessions").open().await.unwrap();
    kv.put_with_ttl("s1", "token", Duration::from_secs(10)).await.unwrap();
    kv.put("s2", "forever").await.unwrap();
    bus.advance(Duration::from_secs(5)).await;
    assert!(kv.get("s1").await.unwrap().is_some());
    bus.advance(Duration::from_secs(6)).await;
    assert_eq!(kv.get("s1").await.unwrap(), None);
    assert!(kv.get("s2").await.unwrap().is_some());
    kv.create("s1", "new token").await.unwrap();
}

/// Bad keys and bucket names are typed errors and write nothing.
pub async fn kv_invalid_keys_and_buckets_are_rejected(bus: &TestBus) {
    assert_eq!(kind(bus.kv("a.b").open().await), ErrorKind::InvalidName);
    assert_eq!(kind(bus.kv("ok").history(0).open().await), ErrorKind::InvalidConfig);
    assert_eq!(kind(bus.kv("ok").history(65).open().await), ErrorKind::InvalidConfig);
    let kv = bus.kv("ok").open().await.unwrap();
    for bad in ["", "a*", "a.>", "a..b", ".a", "a b", "ä"] {
        assert_eq!(kind(kv.put(bad, "x").await), ErrorKind::InvalidSubject, "key {bad:?}");
    }
    assert!(kv.keys().await.unwrap().is_empty(), "nothing was written");
    // The bucket's stream is Herald's own: it does not show up as a user subject.
    assert_eq!(kind(bus.publish("$kv-ok.x", "sneaky").await), ErrorKind::InvalidSubject);
}

/// A lease is exclusive, lapses without heartbeats, and a stale holder is fenced off.
pub async fn a_lease_is_exclusive_expires_and_fences_a_stale_holder(bus: &TestBus) {
    let kv = bus.kv("leaders").open().await.unwrap();
    let ttl = Duration::from_secs(10);
    let mut a = kv.lease("scheduler", "node-a", ttl).await.unwrap();
    let err = kv.lease("scheduler", "node-b", ttl).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WrongExpectedSeq, "exclusive: {err}");
    assert_eq!(actual_revision(&err), a.revision());

    // Heartbeats keep it: 6 s, beat, 6 s more is past the first TTL but not the second.
    bus.advance(Duration::from_secs(6)).await;
    let before = a.revision();
    let after = a.heartbeat().await.unwrap();
    assert!(after > before, "each heartbeat is a new fencing revision");
    bus.advance(Duration::from_secs(6)).await;
    assert_eq!(
        kind(kv.lease("scheduler", "node-b", ttl).await),
        ErrorKind::WrongExpectedSeq
    );
    kv.check_fence("scheduler", a.revision()).await.unwrap();

    // No heartbeat for a whole TTL: it lapses and B takes it.
    bus.advance(Duration::from_secs(11)).await;
    let b = kv.lease("scheduler", "node-b", ttl).await.unwrap();
    assert!(b.revision() > a.revision());
    assert_eq!(
        kind(a.heartbeat().await),
        ErrorKind::LeaseLost,
        "A learns it lost the lease"
    );
    assert_eq!(
        kind(kv.check_fence("scheduler", a.revision()).await),
        ErrorKind::LeaseLost
    );
    kv.check_fence("scheduler", b.revision()).await.unwrap();
    assert_eq!(
        kind(a.release().await),
        ErrorKind::LeaseLost,
        "A cannot release B's lease"
    );
    kv.check_fence("scheduler", b.revision()).await.unwrap();

    // B lets go: the key is free at once.
    b.release().await.unwrap();
    assert_eq!(kv.get("scheduler").await.unwrap(), None);
    kv.lease("scheduler", "node-c", ttl).await.unwrap();
}

/// Dropping a lease releases it.
pub async fn a_dropped_lease_is_released(bus: &TestBus) {
    let kv = bus.kv("locks").open().await.unwrap();
    let lease = kv.lease("report", "worker-1", Duration::from_secs(60)).await.unwrap();
    // The release commits in the background: wait for its delete itself.
    // (Leases expire on the bus's manual clock, so nothing else frees the key.)
    let mut watch = kv.watch("report").await.unwrap();
    drop(lease);
    let released = watch.next().await.unwrap();
    assert_eq!(
        (released.key.as_str(), released.operation),
        ("report", herald::kv::Operation::Delete),
        "the dropped lease was released in the background"
    );
    assert!(kv.get("report").await.unwrap().is_none());
    kv.lease("report", "worker-2", Duration::from_secs(60)).await.unwrap();
}
