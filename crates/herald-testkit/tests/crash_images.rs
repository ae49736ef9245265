//! Crash images of the engine: at every fsync of a publishing workload, build
//! what a power cut could leave on disk (unsynced writes dropped at random, one
//! torn), reopen each image, and check that every publish acknowledged before
//! that fsync began is there, and that the stream is a dense prefix of what was
//! committed. The positive control acknowledges before committing and must be
//! caught losing data.

// Test code: an unwrap that fails is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use herald::{Bus, Engine, OutgoingMessage, ReadRange, Subject};
use herald_testkit::faulty_storage::FaultyStorage;

/// One crash image and the acknowledged messages it must hold.
struct Image {
    sync: u64,
    bytes: Vec<u8>,
    acked: BTreeMap<u64, String>,
}

/// Runs 4 publishers (singles and batches) on a faulty disk, taking three crash
/// images at each fsync; returns them and every acknowledged (seq, id).
async fn run_workload(ack_before_commit: bool) -> (Vec<Image>, BTreeMap<u64, String>) {
    let disk = FaultyStorage::new();
    let acked: Arc<Mutex<BTreeMap<u64, String>>> = Arc::default();
    let images: Arc<Mutex<Vec<Image>>> = Arc::default();
    {
        let (acked, images) = (acked.clone(), images.clone());
        disk.set_sync_hook(move |disk, syncs| {
            // Let acks already sent reach their publishers. The engine sends none
            // before its fsync returns, so this only matters to the control.
            std::thread::sleep(Duration::from_millis(2));
            let acked = acked.lock().unwrap().clone();
            let mut rng = fastrand::Rng::with_seed(syncs);
            let mut images = images.lock().unwrap();
            for torn in [false, true, true] {
                images.push(Image {
                    sync: syncs,
                    bytes: disk.crash_image(&mut rng, torn),
                    acked: acked.clone(),
                });
            }
        });
    }
    let mut builder = Engine::builder().storage_backend(disk.clone());
    if ack_before_commit {
        builder = builder.unsafe_ack_before_commit();
    }
    let bus = Bus::from_engine(builder.open().unwrap());
    // Images taken while the engine was still creating its database hold nothing
    // acknowledged; on a real disk the directory backend creates the file
    // atomically (build, fsync, rename), so they cannot occur there.
    let created_at = disk.sync_count();
    let mut tasks = Vec::new();
    for p in 0..4 {
        let (bus, acked) = (bus.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let subject = Subject::new(format!("crash.p{p}")).unwrap();
            let message = |i: usize| {
                let id = format!("p{p}-{i}");
                OutgoingMessage::new(subject.clone(), id.clone()).id(id)
            };
            let mut i = 0;
            while i < 40 {
                let acks = if i % 3 == 0 {
                    let batch: Vec<_> = (i..i + 4).map(message).collect();
                    i += 4;
                    let ids: Vec<String> = batch.iter().map(|m| m.id.clone().unwrap()).collect();
                    bus.publish_batch(batch)
                        .await
                        .unwrap()
                        .into_iter()
                        .zip(ids)
                        .collect::<Vec<_>>()
                } else {
                    let m = message(i);
                    i += 1;
                    let id = m.id.clone().unwrap();
                    vec![(bus.publish_message(m).await.unwrap(), id)]
                };
                let mut acked = acked.lock().unwrap();
                for (ack, id) in acks {
                    acked.insert(ack.seq, id);
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    drop(bus);
    let mut images = std::mem::take(&mut *images.lock().unwrap());
    images.retain(|image| {
        // The hook numbers syncs from 1, so syncs up to `created_at` made the database.
        let during_creation = image.sync <= created_at;
        assert!(!during_creation || image.acked.is_empty());
        !during_creation
    });
    let acked = acked.lock().unwrap().clone();
    (images, acked)
}

/// Checks one image: every message acked before its fsync is there with its seq,
/// and the stream is exactly seqs 1..=n of the committed history.
fn check(image: &Image, history: &BTreeMap<u64, String>) -> Result<(), String> {
    let engine = Engine::builder()
        .storage_backend(FaultyStorage::from_image(image.bytes.clone()))
        .open();
    let engine = engine.map_err(|e| {
        let mut chain = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            chain.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        format!("image (sync {}) does not open: {chain}", image.sync)
    })?;
    let bus = Bus::from_engine(engine);
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let held: BTreeMap<u64, String> = runtime.block_on(async {
        match bus.read("crash", ReadRange::from_seq(1, 100_000)).await {
            Ok(messages) => messages.into_iter().map(|m| (m.seq, m.id)).collect(),
            Err(err) if err.kind() == herald::ErrorKind::StreamNotFound => BTreeMap::new(),
            Err(err) => panic!("read failed: {err}"),
        }
    });
    for (seq, id) in &image.acked {
        if held.get(seq) != Some(id) {
            return Err(format!(
                "acknowledged seq {seq} ({id}) is missing (image holds {} messages)",
                held.len()
            ));
        }
    }
    let n = held.len() as u64;
    if held.keys().copied().ne(1..=n) {
        return Err(format!("seqs are not dense: {:?}", held.keys().collect::<Vec<_>>()));
    }
    for (seq, id) in &held {
        if history.get(seq) != Some(id) {
            return Err(format!("seq {seq} holds {id}, which the history does not have there"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_crash_image_loses_an_acknowledged_publish() {
    let (images, history) = run_workload(false).await;
    assert_eq!(history.len(), 160);
    assert!(images.len() >= 30, "only {} images", images.len());
    let checked = images.len();
    tokio::task::spawn_blocking(move || {
        for (i, image) in images.iter().enumerate() {
            if let Err(violation) = check(image, &history) {
                panic!("image {i}: {violation}");
            }
        }
    })
    .await
    .unwrap();
    println!("{checked} crash images checked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checker_catches_acks_sent_before_the_commit() {
    let (images, history) = run_workload(true).await;
    let violations = tokio::task::spawn_blocking(move || {
        images
            .iter()
            .filter_map(|image| check(image, &history).err())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    assert!(
        !violations.is_empty(),
        "acking before the commit must be caught losing data"
    );
    println!(
        "positive control: {} violations, first: {}",
        violations.len(),
        violations[0]
    );
}
