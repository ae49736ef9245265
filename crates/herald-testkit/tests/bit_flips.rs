//! Bit flips in the data file: a data file is written, closed, and then one bit
//! of it is flipped, trial after trial, before the bus opens it again.
//!
//! As shipped (the engine verifies the data file's pages when it opens it),
//! whatever the flip hits, the bus never serves a message that is not the one
//! published, never leaves out a message it holds, and never panics: a damaged
//! page is refused with a typed error (`Storage`).
//!
//! With that check turned off, the per-message checksum still refuses every
//! damaged message when it is read, and a panic of the storage layer on a
//! damaged page is still a typed error; what the check alone catches (a damaged
//! index page hiding messages) is counted, not forbidden.
//!
//! The trials, what they hit and how each was answered are printed
//! (`--nocapture`).

// Test code: an unwrap that fails is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use herald::{Bus, Engine, ErrorKind, ReadRange, StreamConfig};
use herald_testkit::faulty_storage::FaultyStorage;

/// Messages per stream: enough for the log to span many pages.
const MESSAGES: u64 = 300;
const STREAMS: [&str; 2] = ["orders", "audit"];

/// The payload of `stream`'s message `i`: distinct, a few hundred bytes.
fn payload(stream: &str, i: u64) -> Vec<u8> {
    format!("{stream}-{i}-{}", "x".repeat((i % 13) as usize * 40)).into_bytes()
}

fn open(image: Vec<u8>, verify: bool) -> herald::Result<Bus> {
    Ok(Bus::from_engine(
        Engine::builder()
            .storage_backend(FaultyStorage::from_image(image))
            .verify_on_open(verify)
            .open()?,
    ))
}

/// A closed data file holding the messages, and what each stream holds.
async fn data_file() -> Vec<u8> {
    let disk = FaultyStorage::new();
    let bus = Bus::from_engine(Engine::builder().storage_backend(disk.clone()).open().unwrap());
    for stream in STREAMS {
        bus.create_stream(StreamConfig::new(stream).unwrap()).await.unwrap();
        for i in 1..=MESSAGES {
            let id = format!("{stream}-{i}");
            bus.publish_message(herald_testkit::suite::msg(&format!("{stream}.m{}", i % 7), payload(stream, i)).id(id))
                .await
                .unwrap();
        }
    }
    bus.consumer("orders", "billing").create().await.unwrap();
    drop(bus);
    disk.current_image()
}

/// How one trial was answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Answer {
    /// Everything read back exactly as published: the flip hit unused space.
    Intact,
    /// Opening the data file was refused with a typed error.
    RefusedAtOpen,
    /// A read was refused with a typed error.
    RefusedAtRead,
    /// A message other than the one published was served.
    CorruptServed,
    /// A message the stream holds was left out of a read without an error, or
    /// said not to be there (`StreamNotFound`, `MessageNotFound`).
    SilentlyMissing,
    /// Another error than `Storage` or not found.
    Untyped,
    /// A panic reached the caller.
    Panicked,
}

/// Reads everything back from `image` and says how it went.
async fn trial(image: Vec<u8>, verify: bool) -> Answer {
    let bus = match open(image, verify) {
        Ok(bus) => bus,
        Err(err) if err.kind() == ErrorKind::Storage => return Answer::RefusedAtOpen,
        Err(_) => return Answer::Untyped,
    };
    let mut worst = Answer::Intact;
    for stream in STREAMS {
        let messages = match bus.read(stream, ReadRange::from_seq(1, 10_000)).await {
            Ok(messages) => messages,
            Err(err) if err.kind() == ErrorKind::Storage => {
                worst = worst.max(Answer::RefusedAtRead);
                continue;
            }
            Err(err) if err.kind() == ErrorKind::StreamNotFound => return Answer::SilentlyMissing,
            Err(_) => return Answer::Untyped,
        };
        let held: BTreeMap<u64, _> = messages.into_iter().map(|m| (m.seq, m)).collect();
        for i in 1..=MESSAGES {
            match held.get(&i) {
                Some(m) if m.payload[..] == payload(stream, i)[..] && m.id == format!("{stream}-{i}") => {}
                Some(_) => return Answer::CorruptServed,
                None => worst = worst.max(Answer::SilentlyMissing),
            }
        }
        if held.keys().any(|seq| *seq > MESSAGES) {
            return Answer::CorruptServed;
        }
        // One at a time too: a read by seq goes another way through the index.
        for i in [1, MESSAGES / 2, MESSAGES] {
            match bus.get(stream, i).await {
                Ok(m) if m.payload[..] == payload(stream, i)[..] => {}
                Ok(_) => return Answer::CorruptServed,
                Err(err) if err.kind() == ErrorKind::Storage => worst = worst.max(Answer::RefusedAtRead),
                Err(err) if err.kind() == ErrorKind::MessageNotFound => worst = worst.max(Answer::SilentlyMissing),
                Err(_) => return Answer::Untyped,
            }
        }
    }
    worst
}

/// Flips one random bit per trial and tallies the answers; the trials that
/// were answered `worse than` allows, each as a line.
fn flip_trials(verify: bool, trials: u64, allowed: Answer) -> (BTreeMap<Answer, u64>, Vec<String>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let image = runtime.block_on(data_file());
    assert_eq!(runtime.block_on(trial(image.clone(), verify)), Answer::Intact);
    let mut rng = fastrand::Rng::with_seed(0x5eed_b175);
    let mut answers: BTreeMap<Answer, u64> = BTreeMap::new();
    let mut bad = Vec::new();
    for _ in 0..trials {
        let byte = rng.usize(0..image.len());
        let bit = rng.u8(0..8);
        let mut flipped = image.clone();
        flipped[byte] ^= 1 << bit;
        // A panic is caught on the task and counted, so the other trials still run.
        let answer = runtime
            .block_on(async { tokio::spawn(trial(flipped, verify)).await })
            .unwrap_or(Answer::Panicked);
        *answers.entry(answer).or_default() += 1;
        if answer > allowed {
            bad.push(format!("byte {byte} bit {bit}: {answer:?}"));
        }
    }
    println!(
        "{trials} bit flips in a {} KiB data file, verified on open: {verify}: {answers:?}",
        image.len() / 1024
    );
    (answers, bad)
}

#[test]
fn a_flipped_bit_is_refused_or_harmless_never_served_missed_or_a_panic() {
    let (_, bad) = flip_trials(true, 600, Answer::RefusedAtRead);
    assert!(bad.is_empty(), "{} flips went wrong:\n{}", bad.len(), bad.join("\n"));
}

#[test]
fn without_the_open_check_a_damaged_message_is_still_never_served_and_nothing_panics() {
    let (answers, bad) = flip_trials(false, 600, Answer::Untyped);
    assert!(bad.is_empty(), "{} flips went wrong:\n{}", bad.len(), bad.join("\n"));
    assert!(
        answers.get(&Answer::RefusedAtRead).copied().unwrap_or(0)
            + answers.get(&Answer::RefusedAtOpen).copied().unwrap_or(0)
            > 0,
        "no flip was caught: {answers:?}"
    );
}

#[test]
fn one_damaged_message_is_named_when_read_and_the_rest_stays_readable() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut image = runtime.block_on(data_file());
    // Every copy: pages of earlier commits may still hold one.
    let needle = payload("orders", 137);
    let copies: Vec<usize> = (0..image.len() - needle.len())
        .filter(|&at| image[at..at + needle.len()] == needle[..])
        .collect();
    assert!(!copies.is_empty(), "the payload is in the file");
    for at in copies {
        image[at + 3] ^= 0x20;
    }

    // As shipped: the open check finds the damaged page.
    let Err(err) = open(image.clone(), true) else {
        panic!("the damaged file was opened");
    };
    assert_eq!(err.kind(), ErrorKind::Storage);
    assert!(err.to_string().contains("the data file is damaged"), "{err}");

    // Without the check the bus opens, and only that message is refused.
    runtime.block_on(async {
        let bus = open(image, false).unwrap();
        let err = bus.get("orders", 137).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Storage);
        let chain = herald_core::cause_chain(&err);
        assert!(
            chain.contains("seq 137") && chain.contains("checksum does not match"),
            "{chain}"
        );
        let err = bus.read("orders", ReadRange::from_seq(100, 100)).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Storage);
        assert_eq!(
            bus.get("orders", 136).await.unwrap().payload[..],
            payload("orders", 136)[..]
        );
        let after = bus.read("orders", ReadRange::from_seq(138, 1_000)).await.unwrap();
        assert_eq!(after.len() as u64, MESSAGES - 137);
        assert_eq!(
            bus.read("audit", ReadRange::from_seq(1, 1_000)).await.unwrap().len() as u64,
            MESSAGES
        );
    });
}
