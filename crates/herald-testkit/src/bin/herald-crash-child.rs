//! The child process of the SIGKILL crash test (`tests/crash_kill.rs`).
//!
//! Opens the bus in the data directory given as the only argument and runs 8
//! publishers on stream `crash` until it is killed: singles and atomic batches,
//! every message with a unique id. After each acknowledgement it prints one line
//! (flushed at once) so the parent knows exactly what was acknowledged:
//!
//! - `A <seq> <id>` for a single publish,
//! - `B <first seq> <count> <id>,<id>,...` for a batch.
//!
//! A durable consumer `checker` reads the stream at the same time and prints
//! `C <seq>` after each ack it gets back, so the parent can check that lazily
//! saved consumer progress never skips a message.
//!
//! Payloads are `<id>|<batch>|<index>/<size>` (`-` for singles), so the checker
//! can find every batch on disk. With `HERALD_CRASH_ACK_BEFORE_COMMIT=1` the
//! engine acknowledges before committing: the positive control.

use std::io::Write;
use std::sync::Arc;

use herald::{Bus, Engine, OutgoingMessage, StreamConfig, Subject};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: herald-crash-child DATA_DIR");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(run(dir));
}

async fn run(dir: String) {
    let mut builder = Engine::builder().path(&dir);
    if std::env::var("HERALD_CRASH_ACK_BEFORE_COMMIT").as_deref() == Ok("1") {
        builder = builder.unsafe_ack_before_commit();
    }
    let bus = Bus::from_engine(builder.open().expect("the data directory opens"));
    bus.create_stream(StreamConfig::new("crash").expect("valid name"))
        .await
        .expect("stream exists");
    let out = Arc::new(std::sync::Mutex::new(std::io::stdout()));
    // Ids must stay unique across restarts: prefix them with this process's id.
    let run_id = std::process::id();
    let mut tasks = Vec::new();
    for p in 0..8 {
        let (bus, out) = (bus.clone(), out.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::new();
            let subject = Subject::new(format!("crash.p{p}")).expect("valid subject");
            for n in 0u64.. {
                let line = if rng.bool() {
                    let id = format!("r{run_id}-p{p}-{n}");
                    let msg = OutgoingMessage::new(subject.clone(), format!("{id}|-|-")).id(id.clone());
                    let ack = bus.publish_message(msg).await.expect("publish");
                    format!("A {} {id}\n", ack.seq)
                } else {
                    let size = rng.usize(2..=20);
                    let batch_id = format!("r{run_id}-p{p}-b{n}");
                    let ids: Vec<String> = (0..size).map(|i| format!("{batch_id}-{i}")).collect();
                    let batch = ids
                        .iter()
                        .enumerate()
                        .map(|(i, id)| {
                            OutgoingMessage::new(subject.clone(), format!("{id}|{batch_id}|{i}/{size}")).id(id.clone())
                        })
                        .collect();
                    let acks = bus.publish_batch(batch).await.expect("publish batch");
                    format!("B {} {size} {}\n", acks[0].seq, ids.join(","))
                };
                let out = out.lock().unwrap_or_else(|e| e.into_inner());
                let mut out = out.lock();
                out.write_all(line.as_bytes()).expect("stdout");
                out.flush().expect("stdout");
            }
        }));
    }
    let consumer = bus.consumer("crash", "checker").create().await.expect("consumer");
    let out_c = out.clone();
    tasks.push(tokio::spawn(async move {
        loop {
            for delivery in consumer
                .fetch(100, std::time::Duration::from_secs(1))
                .await
                .expect("fetch")
            {
                delivery.ack().await.expect("ack");
                let line = format!("C {}\n", delivery.message.seq);
                let out = out_c.lock().unwrap_or_else(|e| e.into_inner());
                let mut out = out.lock();
                out.write_all(line.as_bytes()).expect("stdout");
                out.flush().expect("stdout");
            }
        }
    }));
    for task in tasks {
        task.await.expect("publisher task");
    }
}
