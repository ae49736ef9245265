//! Run with: cargo run --release -p herald --example publish_throughput
//!
//! Durable publish throughput with 1, 16 and 64 concurrent publishers and with
//! batches of 100 and 1,000, 256-byte payloads, next to the raw redb insert rate
//! for the same batch sizes, measured in the same run on fresh directories.
//! `--quick` runs a small version; `--messages N` sets the messages per
//! concurrent scenario (default 40,000).

use std::time::{Duration, Instant};

use herald::{Bus, Durability, OutgoingMessage, StreamConfig, Subject};

const PAYLOAD: usize = 256;

struct Row {
    scenario: String,
    messages: usize,
    seconds: f64,
    latency: Option<(Duration, Duration)>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[(((sorted.len() - 1) as f64) * p).round() as usize]
}

/// `publishers` tasks share `total` single publishes, each awaited before the next.
async fn concurrent(publishers: usize, total: usize, durability: Durability) -> Result<Row, herald::Error> {
    let dir = tempfile::tempdir()?;
    let bus = Bus::open(dir.path()).await?;
    bus.create_stream(StreamConfig::new("bench")?.durability(durability))
        .await?;
    let per = total / publishers;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let bus = bus.clone();
        let subject = Subject::new(format!("bench.p{p}"))?;
        tasks.push(tokio::spawn(async move {
            let payload = herald::Bytes::from(vec![1u8; PAYLOAD]);
            let mut latencies = Vec::with_capacity(per);
            for _ in 0..per {
                let t = Instant::now();
                bus.publish_message(OutgoingMessage::new(subject.clone(), payload.clone()))
                    .await?;
                latencies.push(t.elapsed());
            }
            Ok::<_, herald::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for t in tasks {
        latencies.extend(t.await.expect("publisher task")?);
    }
    let seconds = started.elapsed().as_secs_f64();
    let held = bus.stream_info("bench").await?.state.messages;
    assert_eq!(held as usize, per * publishers, "every publish stored once");
    latencies.sort_unstable();
    let label = if durability == Durability::Fsync {
        "durable"
    } else {
        "relaxed"
    };
    Ok(Row {
        scenario: format!("{publishers} publisher(s), {label}"),
        messages: per * publishers,
        seconds,
        latency: Some((percentile(&latencies, 0.5), percentile(&latencies, 0.99))),
    })
}

/// Sequential `publish_batch` calls of `size` messages, durable.
async fn batched(size: usize, total: usize) -> Result<Row, herald::Error> {
    let dir = tempfile::tempdir()?;
    let bus = Bus::open(dir.path()).await?;
    bus.create_stream(StreamConfig::new("bench")?).await?;
    let subjects: Vec<Subject> = (0..10)
        .map(|i| Subject::new(format!("bench.s{i}")))
        .collect::<Result<_, _>>()?;
    let payload = herald::Bytes::from(vec![1u8; PAYLOAD]);
    let started = Instant::now();
    for b in 0..total / size {
        let batch = (0..size)
            .map(|i| OutgoingMessage::new(subjects[(b + i) % 10].clone(), payload.clone()))
            .collect();
        bus.publish_batch(batch).await?;
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        bus.stream_info("bench").await?.state.messages as usize,
        total / size * size
    );
    Ok(Row {
        scenario: format!("batches of {size}, durable"),
        messages: total / size * size,
        seconds,
        latency: None,
    })
}

/// Raw redb: one durable write transaction per `size` sequential inserts.
fn raw_redb(size: usize, total: usize) -> Result<Row, Box<dyn std::error::Error>> {
    const TABLE: redb::TableDefinition<'_, (u32, u64), &[u8]> = redb::TableDefinition::new("raw");
    let dir = tempfile::tempdir()?;
    let db = redb::Database::create(dir.path().join("raw.redb"))?;
    let value = vec![1u8; PAYLOAD];
    let started = Instant::now();
    let mut seq = 0u64;
    for _ in 0..total / size {
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(TABLE)?;
            for _ in 0..size {
                seq += 1;
                table.insert((1, seq), value.as_slice())?;
            }
        }
        txn.commit()?;
    }
    Ok(Row {
        scenario: format!("raw redb, {size} per commit"),
        messages: total / size * size,
        seconds: started.elapsed().as_secs_f64(),
        latency: None,
    })
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let argv: Vec<String> = std::env::args().collect();
    let quick = argv.iter().any(|a| a == "--quick");
    let total: usize = argv
        .windows(2)
        .find(|w| w[0] == "--messages")
        .and_then(|w| w[1].parse().ok())
        .unwrap_or(if quick { 2_000 } else { 40_000 });
    // One fsync per publish: a lone publisher gets far fewer done per second.
    let single = (total / 20).max(100);
    let batch_total = total * 5;
    eprintln!(
        "{} cores; data in {}",
        std::thread::available_parallelism()?,
        std::env::temp_dir().display()
    );

    let mut rows = Vec::new();
    for (publishers, n) in [(1, single), (16, total), (64, total)] {
        eprintln!("running {publishers} publisher(s)...");
        rows.push(concurrent(publishers, n, Durability::Fsync).await?);
    }
    eprintln!("running 64 publishers, relaxed...");
    rows.push(concurrent(64, total, Durability::Relaxed).await?);
    for size in [100, 1000] {
        eprintln!("running batches of {size} and raw redb...");
        rows.push(batched(size, batch_total).await?);
        rows.push(raw_redb(size, batch_total)?);
    }
    eprintln!("running raw redb, 1 per commit...");
    rows.push(raw_redb(1, single)?);

    println!("| scenario | messages | seconds | msgs/s | p50 | p99 |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for r in &rows {
        let (p50, p99) = r.latency.map_or(("-".into(), "-".into()), |(a, b)| {
            (
                format!("{:.2} ms", a.as_secs_f64() * 1e3),
                format!("{:.2} ms", b.as_secs_f64() * 1e3),
            )
        });
        println!(
            "| {} | {} | {:.2} | {:.0} | {p50} | {p99} |",
            r.scenario,
            r.messages,
            r.seconds,
            r.rate(),
            p50 = p50,
            p99 = p99
        );
    }
    let rate = |name: &str| rows.iter().find(|r| r.scenario == name).map_or(0.0, Row::rate);
    println!();
    println!(
        "64 publishers / 1 publisher: {:.1}x (aim: at least 20x)",
        rate("64 publisher(s), durable") / rate("1 publisher(s), durable")
    );
    for size in [100, 1000] {
        let ratio = rate(&format!("batches of {size}, durable")) / rate(&format!("raw redb, {size} per commit"));
        println!(
            "batches of {size} / raw redb: {:.0}% (aim: at least 70%)",
            ratio * 100.0
        );
    }
    Ok(())
}
