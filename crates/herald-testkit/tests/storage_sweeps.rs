//! Storage fault sweeps: one workload (publishes, batches, consumer saves,
//! dead letters, retention, purges, stream deletion) run again and again on the
//! fault-injecting disk, with the fault at a different place each time: an I/O
//! error at every write, at every fsync, and a full disk (`ENOSPC`) from every
//! write on. Each run checks what the bus promises when storage fails:
//!
//! - every error is `Storage` and names its cause (the injected fault, or
//!   redb's refusal to write after it), never `Internal`, and no call hangs;
//! - once the fault clears and the bus is reopened — from what a process crash
//!   leaves and from what a power cut leaves — every publish that was
//!   acknowledged is there with its payload, every message served is one that
//!   was published, an acknowledged purge or deletion stayed done, and the bus
//!   takes new publishes.
//!
//! The sweep points and the violations found are printed (`--nocapture`).

// Test code: an unwrap that fails is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use herald::{Bus, DeadLetter, Engine, ErrorKind, OutgoingMessage, Purge, ReadFrom, ReadRange, StreamConfig};
use herald_core::cause_chain;
use herald_testkit::faulty_storage::FaultyStorage;

/// Where the fault is injected in one run.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// No fault: the control run that counts the writes and syncs.
    None,
    /// The write after this many successful ones fails with an I/O error.
    Write(u64),
    /// The fsync after this many successful ones fails.
    Sync(u64),
    /// The disk is full after this many successful writes.
    Full(u64),
}

impl Fault {
    fn arm(self, disk: &FaultyStorage) {
        match self {
            Fault::None => {}
            Fault::Write(k) => disk.fail_write_after(k),
            Fault::Sync(k) => disk.fail_sync_after(k),
            Fault::Full(k) => disk.fill_after(k),
        }
    }
}

/// What a run was told.
#[derive(Default)]
struct Outcome {
    /// Every payload ever offered, by message id: a served message must be one.
    offered: HashMap<String, Vec<u8>>,
    /// Acknowledged publishes: stream → seq → (id, payload).
    acked: BTreeMap<String, BTreeMap<u64, (String, Vec<u8>)>>,
    /// The last seq of `gone` when the purge was asked for, and whether it was acknowledged.
    /// A purge that failed may still have happened: see `may_be_retired`.
    purge: Option<(u64, bool)>,
    /// Whether deleting the stream `dropped` was asked for, and whether it was acknowledged.
    drop: Option<bool>,
    /// Whether the database was created: if opening a new one failed, nothing was promised.
    created: bool,
    /// Whether creating the consumer was acknowledged.
    consumer: bool,
    /// Each error's kind and cause chain, in order.
    errors: Vec<(ErrorKind, String)>,
    /// Calls that did not answer in time.
    hung: Vec<&'static str>,
}

/// The most `ret` keeps.
const RETAINED: u64 = 5;
/// How long any one call may take before the run counts it as hung.
const CALL_LIMIT: Duration = Duration::from_secs(20);

impl Outcome {
    /// Runs one call of the workload, recording an error or a hang; its value if it succeeded.
    async fn call<T>(
        &mut self,
        what: &'static str,
        call: impl std::future::Future<Output = herald::Result<T>>,
    ) -> Option<T> {
        match tokio::time::timeout(CALL_LIMIT, call).await {
            Ok(Ok(value)) => Some(value),
            Ok(Err(err)) => {
                self.errors.push((err.kind(), format!("{what}: {}", cause_chain(&err))));
                None
            }
            Err(_) => {
                self.hung.push(what);
                None
            }
        }
    }

    fn offer(&mut self, subject: &str, id: &str, payload: &[u8]) -> OutgoingMessage {
        self.offered.insert(id.to_string(), payload.to_vec());
        herald_testkit::suite::msg(subject, payload.to_vec()).id(id)
    }

    async fn publish(&mut self, bus: &Bus, stream: &str, id: String, payload: Vec<u8>) {
        let message = self.offer(&format!("{stream}.m"), &id, &payload);
        if let Some(ack) = self.call("publish", bus.publish_message(message)).await {
            self.acked
                .entry(stream.to_string())
                .or_default()
                .insert(ack.seq, (id, payload));
        }
    }
}

/// A payload that differs per message and spans a few hundred bytes.
fn payload(id: &str) -> Vec<u8> {
    let mut bytes = id.as_bytes().to_vec();
    bytes.resize(64 + id.len() * 40, b'a' + (id.len() % 26) as u8);
    bytes
}

/// The workload. Every step runs even after a failure: a call after the fault
/// must fail cleanly too.
async fn workload(bus: &Bus, out: &mut Outcome) {
    for name in ["keep", "ret", "gone", "dropped"] {
        let mut config = StreamConfig::new(name).unwrap();
        if name == "ret" {
            config = config.max_msgs(RETAINED);
        }
        out.call("create_stream", bus.create_stream(config)).await;
    }
    for i in 0..6 {
        let id = format!("k{i}");
        out.publish(bus, "keep", id.clone(), payload(&id)).await;
    }
    for b in 0..3 {
        let batch: Vec<OutgoingMessage> = (0..4)
            .map(|i| {
                let id = format!("b{b}-{i}");
                out.offer("keep.batch", &id, &payload(&id))
            })
            .collect();
        let ids: Vec<String> = batch.iter().map(|m| m.id.clone().unwrap()).collect();
        if let Some(acks) = out.call("publish_batch", bus.publish_batch(batch)).await {
            for (ack, id) in acks.into_iter().zip(ids) {
                let payload = out.offered[&id].clone();
                out.acked
                    .entry("keep".into())
                    .or_default()
                    .insert(ack.seq, (id, payload));
            }
        }
    }
    for i in 0..12 {
        let id = format!("r{i}");
        out.publish(bus, "ret", id.clone(), payload(&id)).await;
    }
    let consumer = bus
        .consumer("keep", "c")
        .max_deliver(3)
        .dead_letter(DeadLetter::PerConsumer)
        .create();
    if let Some(consumer) = out.call("create_consumer", consumer).await {
        out.consumer = true;
        if let Some(got) = out.call("fetch", consumer.fetch(6, Duration::ZERO)).await {
            let (acks, rest) = got.split_at(got.len().min(3));
            out.call("ack_all", consumer.ack_all(acks)).await;
            if let Some(first) = rest.first() {
                out.call("nak", first.nak()).await;
            }
            if let Some(second) = rest.get(1) {
                out.call("term", second.term("sweep")).await;
            }
        }
        out.call("reset", consumer.reset(ReadFrom::Seq(4))).await;
    }
    for i in 0..3 {
        let id = format!("g{i}");
        out.publish(bus, "gone", id.clone(), payload(&id)).await;
    }
    let through = out
        .acked
        .get("gone")
        .and_then(|m| m.keys().last().copied())
        .unwrap_or(0);
    let purged = out
        .call("purge", bus.purge_stream("gone", Purge::all()))
        .await
        .is_some();
    out.purge = Some((through, purged));
    out.publish(bus, "gone", "g-after".into(), payload("g-after")).await;
    out.publish(bus, "dropped", "d0".into(), payload("d0")).await;
    out.drop = Some(out.call("delete_stream", bus.delete_stream("dropped")).await.is_some());
    out.call("enforce_retention", bus.enforce_retention()).await;
}

/// Opens a bus on `disk`; the error, if opening failed.
fn open(disk: &FaultyStorage) -> Result<Bus, herald::Error> {
    Ok(Bus::from_engine(
        Engine::builder().storage_backend(disk.clone()).open()?,
    ))
}

/// How the engine under test answers publishes.
#[derive(Clone, Copy, PartialEq)]
enum Engines {
    /// As shipped: after the commit.
    Honest,
    /// Before the commit: the positive control, which the sweep must catch.
    AckBeforeCommit,
}

/// Runs the workload with `fault` armed; the outcome and the disk.
async fn run(fault: Fault, engines: Engines) -> (Outcome, FaultyStorage) {
    let disk = FaultyStorage::new();
    fault.arm(&disk);
    let mut out = Outcome::default();
    let mut builder = Engine::builder().storage_backend(disk.clone());
    if engines == Engines::AckBeforeCommit {
        builder = builder.unsafe_ack_before_commit();
    }
    match builder.open().map(Bus::from_engine) {
        Ok(bus) => {
            out.created = true;
            workload(&bus, &mut out).await;
            // Dropping the last handle joins the writer: nothing writes after this.
            drop(bus);
        }
        Err(err) => out.errors.push((err.kind(), format!("open: {}", cause_chain(&err)))),
    }
    disk.clear_faults();
    (out, disk)
}

/// What the first error must name: the injected fault, or redb's refusal after it.
fn names_the_fault(fault: Fault, chain: &str) -> bool {
    let own = match fault {
        Fault::None => return false,
        Fault::Write(_) => "injected write failure",
        Fault::Sync(_) => "injected sync failure",
        Fault::Full(_) => "No space left on device",
    };
    chain.contains(own) || chain.contains("Previous I/O error")
}

/// The promises of one run, checked on one image; each broken one as a line.
async fn check_image(image_name: &str, image: Vec<u8>, out: &Outcome) -> Vec<String> {
    let mut broken = Vec::new();
    let bus = match open(&FaultyStorage::from_image(image)) {
        Ok(bus) => bus,
        // A database whose creation failed is no database; refusing it is right.
        Err(err) if !out.created && err.kind() == ErrorKind::Storage => return Vec::new(),
        Err(err) => return vec![format!("{image_name}: reopening failed: {}", cause_chain(&err))],
    };
    let mut held: BTreeMap<String, BTreeMap<u64, (String, Vec<u8>)>> = BTreeMap::new();
    for stream in ["keep", "ret", "gone", "dropped"] {
        match bus.read(stream, ReadRange::from_seq(1, 10_000)).await {
            Ok(messages) => {
                let held = held.entry(stream.to_string()).or_default();
                for m in messages {
                    match out.offered.get(&m.id) {
                        Some(p) if p[..] == m.payload[..] => {}
                        _ => broken.push(format!(
                            "{image_name}: {stream} seq {} is not a message that was published",
                            m.seq
                        )),
                    }
                    held.insert(m.seq, (m.id.clone(), m.payload.to_vec()));
                }
            }
            Err(err) if err.kind() == ErrorKind::StreamNotFound => {}
            Err(err) => broken.push(format!("{image_name}: reading {stream}: {}", cause_chain(&err))),
        }
    }
    let empty = BTreeMap::new();
    for (stream, acked) in &out.acked {
        let held = held.get(stream).unwrap_or(&empty);
        let last = held.keys().last().copied().unwrap_or(0);
        for (seq, (id, payload)) in acked {
            // A failed commit is not known not to have happened: its writes may
            // have reached the file before the fsync failed, and a process crash
            // keeps them. So a purge or a deletion that failed may be found done.
            let retired = match stream.as_str() {
                "ret" => last >= seq + RETAINED,
                "gone" => out.purge.is_some_and(|(through, _)| *seq <= through),
                "dropped" => out.drop.is_some(),
                _ => false,
            };
            match held.get(seq) {
                Some((held_id, held_payload)) if held_id == id && held_payload == payload => {}
                Some(_) => broken.push(format!(
                    "{image_name}: {stream} seq {seq} holds another message than {id}"
                )),
                None if retired => {}
                None => broken.push(format!("{image_name}: acknowledged {id} ({stream} seq {seq}) is lost")),
            }
        }
    }
    if let Some((through, true)) = out.purge
        && held.get("gone").is_some_and(|m| m.keys().any(|s| *s <= through))
    {
        broken.push(format!("{image_name}: the acknowledged purge of gone came undone"));
    }
    if out.drop == Some(true) && held.contains_key("dropped") {
        broken.push(format!("{image_name}: the deleted stream `dropped` came back"));
    }
    if out.consumer
        && let Err(err) = bus.consumer_info("keep", "c").await
    {
        broken.push(format!(
            "{image_name}: the acknowledged consumer is gone: {}",
            cause_chain(&err)
        ));
    }
    if let Err(err) = bus.publish("keep.after", "after").await {
        broken.push(format!(
            "{image_name}: the reopened bus refuses a publish: {}",
            cause_chain(&err)
        ));
    }
    broken
}

/// The promises of one run; each broken one as a line.
async fn check(fault: Fault, out: &Outcome, disk: &FaultyStorage) -> Vec<String> {
    let mut broken = Vec::new();
    for what in &out.hung {
        broken.push(format!("{what} did not answer within {CALL_LIMIT:?}"));
    }
    for (kind, chain) in &out.errors {
        if *kind == ErrorKind::Internal {
            broken.push(format!("an internal error: {chain}"));
        }
    }
    match (fault, out.errors.first()) {
        (Fault::None, Some((_, chain))) => broken.push(format!("the control run failed: {chain}")),
        (Fault::None, None) | (_, None) => {}
        (_, Some((kind, chain))) => {
            if *kind != ErrorKind::Storage || !names_the_fault(fault, chain) {
                broken.push(format!(
                    "the first error is not the storage's, with its cause: {kind:?} {chain}"
                ));
            }
        }
    }
    broken.extend(check_image("after a process crash", disk.current_image(), out).await);
    broken.extend(check_image("after a power cut", disk.durable_image(), out).await);
    broken
}

/// Runs `faults`; the number of runs that failed at least one call (the fault
/// fired and was felt), and every broken promise.
async fn sweep(name: &str, engines: Engines, faults: impl Iterator<Item = Fault>) -> (usize, Vec<String>) {
    let mut points = 0;
    let mut felt = 0;
    let mut violations = Vec::new();
    for fault in faults {
        points += 1;
        let (out, disk) = run(fault, engines).await;
        if !out.errors.is_empty() {
            felt += 1;
        }
        for line in check(fault, &out, &disk).await {
            violations.push(format!("{fault:?}: {line}"));
        }
    }
    println!(
        "{name}: {points} sweep points, {felt} failed a call, {} violations",
        violations.len()
    );
    (felt, violations)
}

/// [`sweep`] on the engine as shipped, which must break no promise; the runs that felt the fault.
async fn sweep_honest(name: &str, faults: impl Iterator<Item = Fault>) -> usize {
    let (felt, violations) = sweep(name, Engines::Honest, faults).await;
    assert!(violations.is_empty(), "{name}:\n{}", violations.join("\n"));
    felt
}

/// The writes and syncs of the workload when nothing fails.
async fn control() -> (u64, u64) {
    let (out, disk) = run(Fault::None, Engines::Honest).await;
    let broken = check(Fault::None, &out, &disk).await;
    assert!(broken.is_empty(), "the control run: {broken:?}");
    assert!(out.consumer && out.drop == Some(true) && out.purge.is_some_and(|(through, done)| done && through == 3));
    (disk.write_count(), disk.sync_count())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_at_every_write_loses_nothing_acknowledged() {
    let (writes, _) = control().await;
    let felt = sweep_honest("I/O error at every write", (0..=writes).map(Fault::Write)).await;
    assert!(
        felt as u64 * 4 >= writes * 3,
        "the faults were felt in {felt} of {writes} runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_io_error_at_every_fsync_loses_nothing_acknowledged() {
    let (_, syncs) = control().await;
    let felt = sweep_honest("I/O error at every fsync", (0..=syncs).map(Fault::Sync)).await;
    // Some syncs answer no call: the one of a clean close, say.
    assert!(
        felt as u64 * 4 >= syncs * 3,
        "the faults were felt in {felt} of {syncs} runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_at_every_write_loses_nothing_acknowledged() {
    let (writes, _) = control().await;
    let felt = sweep_honest("full disk from every write", (0..=writes).map(Fault::Full)).await;
    assert!(
        felt as u64 * 4 >= writes * 3,
        "the faults were felt in {felt} of {writes} runs"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_catches_an_engine_that_acknowledges_before_its_commit() {
    let (_, syncs) = control().await;
    let (_, violations) = sweep(
        "I/O error at every fsync, acknowledging before the commit",
        Engines::AckBeforeCommit,
        (0..=syncs).map(Fault::Sync),
    )
    .await;
    assert!(
        violations.iter().any(|v| v.contains("is lost")),
        "the control lost no acknowledged publish: {violations:?}"
    );
}
