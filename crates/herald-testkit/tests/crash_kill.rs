//! The SIGKILL crash test: a child process publishes with 8 concurrent
//! publishers (singles and atomic batches) and is killed with SIGKILL at random
//! moments, again and again on the same data directory. After each kill the
//! directory is reopened and checked: every acknowledged message is there at
//! its seq, batches are all or nothing, seqs are dense, no id is stored twice,
//! and the child's durable consumer resumes without skipping a message.
//! `HERALD_CRASH_CYCLES` sets the number of kills (default 30). The positive
//! control acknowledges before committing and must be caught.

// Test code: an unwrap that fails is a failed test, with its message.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use herald::{Bus, ReadRange};

/// Kills the child when dropped, so a failed assertion never leaves it running.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One kill: starts the child, lets it acknowledge a random number of
/// publishes, kills it, and returns every complete acknowledgement line.
fn run_and_kill(dir: &Path, rng: &mut fastrand::Rng, ack_before_commit: bool) -> Vec<String> {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald-crash-child"));
    command.arg(dir).stdout(Stdio::piped()).stderr(Stdio::inherit());
    if ack_before_commit {
        command.env("HERALD_CRASH_ACK_BEFORE_COMMIT", "1");
    }
    let mut guard = Guard(command.spawn().unwrap());
    let stdout = guard.0.stdout.take().unwrap();
    let (lines_tx, lines_rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut complete = Vec::new();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => return complete,
                // A line cut by the kill has no newline: it was not fully reported.
                Ok(_) if line.ends_with('\n') => {
                    complete.push(line.trim_end().to_string());
                    let _ = lines_tx.send(());
                }
                Ok(_) => return complete,
            }
        }
    });
    // Kill at a random moment: after a random number of acknowledgements.
    let wait_for = rng.usize(1..=300);
    for _ in 0..wait_for {
        if lines_rx.recv_timeout(Duration::from_secs(30)).is_err() {
            break;
        }
    }
    guard.0.kill().unwrap();
    guard.0.wait().unwrap();
    reader.join().unwrap()
}

/// Every acknowledged (seq, id), and every seq the child's consumer acked,
/// parsed from the child's lines.
fn parse(lines: &[String], acked: &mut BTreeMap<u64, String>, consumed: &mut HashSet<u64>) {
    for line in lines {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["C", seq] => {
                consumed.insert(seq.parse().unwrap());
            }
            ["A", seq, id] => {
                acked.insert(seq.parse().unwrap(), (*id).to_string());
            }
            ["B", first, count, ids] => {
                let first: u64 = first.parse().unwrap();
                let ids: Vec<&str> = ids.split(',').collect();
                assert_eq!(ids.len(), count.parse::<usize>().unwrap());
                for (i, id) in ids.iter().enumerate() {
                    acked.insert(first + i as u64, (*id).to_string());
                }
            }
            _ => panic!("malformed line from the child: {line:?}"),
        }
    }
}

/// What a reopened directory holds, checked against everything acknowledged;
/// with `consumed`, also that the consumer will deliver every message it has
/// not acked (its lazily saved progress may repeat, never skip).
fn check(
    dir: &Path,
    acked: &BTreeMap<u64, String>,
    consumed: Option<&HashSet<u64>>,
) -> Result<(u64, HashSet<u64>), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let bus = Bus::open(dir).await.map_err(|e| format!("reopen failed: {e}"))?;
        let info = bus.stream_info("crash").await.map_err(|e| e.to_string())?;
        let messages = bus
            .read("crash", ReadRange::from_seq(1, usize::MAX))
            .await
            .map_err(|e| e.to_string())?;
        let held: HashMap<u64, (String, String)> = messages
            .iter()
            .map(|m| (m.seq, (m.id.clone(), String::from_utf8_lossy(&m.payload).to_string())))
            .collect();
        for (seq, id) in acked {
            match held.get(seq) {
                Some((held_id, _)) if held_id == id => {}
                Some((held_id, _)) => return Err(format!("seq {seq}: acknowledged {id}, holds {held_id}")),
                None => return Err(format!("acknowledged seq {seq} ({id}) is missing")),
            }
        }
        let n = messages.len() as u64;
        if info.state.messages != n || info.state.last_seq != n || (n > 0 && info.state.first_seq != 1) {
            return Err(format!("seqs are not dense: {:?} for {n} messages", info.state));
        }
        if messages.iter().zip(1..).any(|(m, seq)| m.seq != seq) {
            return Err("seqs have a hole".into());
        }
        let ids: HashSet<&str> = messages.iter().map(|m| m.id.as_str()).collect();
        if ids.len() != messages.len() {
            return Err("an id is stored twice".into());
        }
        // Every batch on disk is whole, with consecutive seqs.
        let mut batches: HashMap<&str, Vec<(u64, usize, usize)>> = HashMap::new();
        for m in &messages {
            let (_, payload) = &held[&m.seq];
            let fields: Vec<&str> = payload.split('|').collect();
            if fields[1] != "-" {
                let (i, size) = fields[2].split_once('/').unwrap();
                batches
                    .entry(fields[1])
                    .or_default()
                    .push((m.seq, i.parse().unwrap(), size.parse().unwrap()));
            }
        }
        for (batch, mut parts) in batches {
            parts.sort_unstable();
            let size = parts[0].2;
            let whole = parts.len() == size
                && parts
                    .iter()
                    .enumerate()
                    .all(|(i, p)| p.1 == i && p.0 == parts[0].0 + i as u64);
            if !whole {
                return Err(format!(
                    "batch {batch} is not whole: {} of {size} messages",
                    parts.len()
                ));
            }
        }
        if let Some(consumed) = consumed {
            // Drain what the consumer still owes (acking it, so that leases do not
            // hit max_ack_pending); the next child carries on from there.
            let consumer = bus.bind_consumer("crash", "checker").await.map_err(|e| e.to_string())?;
            let mut owed = HashSet::new();
            loop {
                let batch = consumer.fetch(1000, Duration::ZERO).await.map_err(|e| e.to_string())?;
                if batch.is_empty() {
                    break;
                }
                for d in batch {
                    d.ack().await.map_err(|e| e.to_string())?;
                    owed.insert(d.message.seq);
                }
            }
            if let Some(skipped) = (1..=n).find(|seq| !consumed.contains(seq) && !owed.contains(seq)) {
                return Err(format!(
                    "the consumer skipped seq {skipped}: never acked, yet not delivered again"
                ));
            }
            return Ok((n, owed));
        }
        Ok((n, HashSet::new()))
    })
}

fn cycles() -> usize {
    std::env::var("HERALD_CRASH_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
}

#[test]
fn every_acknowledged_publish_survives_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let seed = fastrand::u64(..);
    println!("seed {seed}");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut acked = BTreeMap::new();
    let mut consumed = HashSet::new();
    for cycle in 1..=cycles() {
        let lines = run_and_kill(dir.path(), &mut rng, false);
        parse(&lines, &mut acked, &mut consumed);
        match check(dir.path(), &acked, Some(&consumed)) {
            Ok((held, drained)) => {
                consumed.extend(drained);
                println!(
                    "cycle {cycle}: {} acknowledged so far, {held} on disk, {} consumed",
                    acked.len(),
                    consumed.len()
                )
            }
            Err(violation) => panic!("cycle {cycle} (seed {seed}): {violation}"),
        }
    }
}

#[test]
fn the_checker_catches_acks_sent_before_the_commit() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = fastrand::Rng::with_seed(fastrand::u64(..));
    let mut acked = BTreeMap::new();
    let mut consumed = HashSet::new();
    for cycle in 1..=30 {
        let lines = run_and_kill(dir.path(), &mut rng, true);
        parse(&lines, &mut acked, &mut consumed);
        if let Err(violation) = check(dir.path(), &acked, None) {
            println!("positive control caught at cycle {cycle}: {violation}");
            return;
        }
    }
    panic!("30 kills of an engine that acknowledges before committing lost nothing: the checker is blind");
}
