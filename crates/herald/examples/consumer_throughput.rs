//! Run with: cargo run --release -p herald --example consumer_throughput
//!
//! Prints the consuming side's figures on a durable data directory:
//! one consumer catching up on N messages with an ack each, a 4-member group
//! sharing N messages, and publish-to-delivery latency (p50/p99/p999) at a fixed
//! rate in durable and in relaxed mode. `--quick` runs a small version,
//! `--messages N` sets N (default 1,000,000).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use herald::{Bus, Durability, OutgoingMessage, StreamConfig, Subject};

const PAYLOAD: usize = 256;

struct Args {
    messages: usize,
    latency_msgs: usize,
    rate: u64,
}

fn args() -> Args {
    let argv: Vec<String> = std::env::args().collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let messages = argv
        .windows(2)
        .find(|w| w[0] == "--messages")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(if quick { 20_000 } else { 1_000_000 });
    Args {
        messages,
        latency_msgs: if quick { 500 } else { 10_000 },
        rate: 2_000,
    }
}

async fn fill(bus: &Bus, stream: &str, n: usize) -> Result<(), herald::Error> {
    let subject = Subject::new(format!("{stream}.x"))?;
    let payload = herald::Bytes::from(vec![7u8; PAYLOAD]);
    let started = Instant::now();
    for chunk_start in (0..n).step_by(1000) {
        let size = 1000.min(n - chunk_start);
        let batch = (0..size)
            .map(|_| OutgoingMessage::new(subject.clone(), payload.clone()))
            .collect();
        bus.publish_batch(batch).await?;
        if chunk_start % 200_000 == 0 {
            eprintln!("  filling {stream}: {chunk_start}/{n}");
        }
    }
    eprintln!("  filled {n} messages in {:.1}s", started.elapsed().as_secs_f64());
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), herald::Error> {
    let a = args();
    let dir = tempfile::tempdir()?;
    eprintln!("data directory: {}", dir.path().display());
    let bus = Bus::open(dir.path()).await?;
    let mut rows = Vec::new();

    // 1. One consumer catching up, acking every message.
    fill(&bus, "catchup", a.messages).await?;
    let consumer = bus
        .consumer("catchup", "reader")
        .max_ack_pending(10_000)
        .create()
        .await?;
    let started = Instant::now();
    let mut seen = 0usize;
    while seen < a.messages {
        let batch = consumer.fetch(1000, Duration::from_secs(5)).await?;
        assert!(!batch.is_empty(), "catch-up stalled at {seen}");
        for d in &batch {
            d.ack().await?;
        }
        seen += batch.len();
    }
    let secs = started.elapsed().as_secs_f64();
    let info = consumer.info().await?;
    assert_eq!(
        (info.ack_floor, info.pending),
        (a.messages as u64, 0),
        "every message acked once"
    );
    rows.push((
        "1 consumer catch-up, ack each".to_string(),
        a.messages,
        secs,
        String::new(),
    ));

    // 2. A 4-member group sharing N messages.
    fill(&bus, "group", a.messages).await?;
    let group = bus
        .consumer("group", "workers")
        .max_ack_pending(10_000)
        .create()
        .await?;
    let counted = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for m in 0..4 {
        let member = group.member(format!("m{m}"))?;
        let counted = counted.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let batch = member.fetch(250, Duration::from_millis(300)).await?;
                if batch.is_empty() {
                    return Ok::<_, herald::Error>(mine);
                }
                for d in &batch {
                    d.ack().await?;
                    mine.push(d.message.seq);
                }
                counted.fetch_add(batch.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    let mut distinct = HashSet::new();
    let mut shares = Vec::new();
    for t in tasks {
        let mine = t.await.expect("member task")?;
        shares.push(mine.len());
        distinct.extend(mine);
    }
    // The members stop after 300 ms without work; that idle tail is not throughput.
    let secs = started.elapsed().as_secs_f64() - 0.3;
    assert_eq!(
        distinct.len(),
        a.messages,
        "every message delivered to exactly one member"
    );
    rows.push((
        "4-member group".to_string(),
        a.messages,
        secs,
        format!("shares {shares:?}"),
    ));

    // 3. Publish-to-delivery latency at a fixed rate, durable and relaxed.
    for (name, durability) in [("durable", Durability::Fsync), ("relaxed", Durability::Relaxed)] {
        let stream = format!("lat-{name}");
        bus.create_stream(StreamConfig::new(&stream)?.durability(durability))
            .await?;
        let consumer = bus.consumer(&stream, "probe").create().await?;
        let origin = Instant::now();
        let publisher = {
            let bus = bus.clone();
            let subject = Subject::new(format!("{stream}.x"))?;
            let (n, rate) = (a.latency_msgs, a.rate);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_nanos(1_000_000_000 / rate));
                let mut inflight = Vec::new();
                for _ in 0..n {
                    tick.tick().await;
                    let sent = origin.elapsed().as_nanos() as u64;
                    let msg =
                        OutgoingMessage::new(subject.clone(), vec![1u8; PAYLOAD]).header("sent", sent.to_string());
                    let bus = bus.clone();
                    inflight.push(tokio::spawn(async move { bus.publish_message(msg).await }));
                }
                for p in inflight {
                    p.await.expect("publish task")?;
                }
                Ok::<_, herald::Error>(())
            })
        };
        let mut latencies = Vec::with_capacity(a.latency_msgs);
        while latencies.len() < a.latency_msgs {
            for d in consumer.fetch(100, Duration::from_secs(5)).await? {
                let now = origin.elapsed().as_nanos() as u64;
                let sent: u64 = d.message.headers["sent"].parse().expect("sent header");
                latencies.push(Duration::from_nanos(now.saturating_sub(sent)));
                d.ack().await?;
            }
        }
        publisher.await.expect("publisher task")?;
        latencies.sort_unstable();
        let note = format!(
            "p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms at {} msg/s",
            percentile(&latencies, 0.50).as_secs_f64() * 1e3,
            percentile(&latencies, 0.99).as_secs_f64() * 1e3,
            percentile(&latencies, 0.999).as_secs_f64() * 1e3,
            a.rate
        );
        rows.push((format!("publish-to-delivery, {name}"), a.latency_msgs, 0.0, note));
    }

    println!("| scenario | messages | seconds | msgs/s | note |");
    println!("| --- | ---: | ---: | ---: | --- |");
    for (scenario, n, secs, note) in rows {
        let rate = if secs > 0.0 {
            format!("{:.0}", n as f64 / secs)
        } else {
            "-".into()
        };
        let secs = if secs > 0.0 { format!("{secs:.2}") } else { "-".into() };
        println!("| {scenario} | {n} | {secs} | {rate} | {note} |");
    }
    Ok(())
}
