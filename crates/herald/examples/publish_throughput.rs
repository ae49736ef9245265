//! Run with: cargo run --release -p herald --example publish_throughput
//!
//! What a durable publish costs, and how close group commit gets to redb itself.
//! One run measures, each on a fresh data directory and with 256-byte payloads:
//!
//! - 1, 16 and 64 concurrent publishers (tokio tasks), each awaiting every
//!   publish before sending its next, on a default (fsync) stream;
//! - sequential `publish_batch` calls of 100 and of 1,000 messages;
//! - 64 publishers on a `Durability::Relaxed` stream, for comparison;
//! - plain redb in its own file: one `Durability::Immediate` write transaction
//!   per 1, 100 and 1,000 sequential `(u32, u64) -> &[u8]` inserts.
//!
//! It prints a markdown table (p50 and p99 are per call: one publish, one
//! batch, one redb commit) and the ratios the engine aims for. After every
//! Herald scenario the stream must hold exactly what was published, or the run
//! fails.
//!
//! Flags: `--messages N` sets the messages of each concurrent scenario (default
//! 20,000; one publisher gets N/10, batches 5N and 10N); `--quick` is a smoke
//! test of a few seconds; `--json PATH` also writes the results as JSON;
//! `--dir PATH` puts the data directories under PATH (default: `$TMPDIR`).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herald::{Bus, Bytes, Durability, OutgoingMessage, StreamConfig, Subject};
use redb::{ReadableTableMetadata, TableDefinition};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// 256 bytes: a typical small event, and the value size of the engine notes in
/// docs (DESIGN.md), so the raw redb figures compare with those.
const PAYLOAD: usize = 256;

/// The raw redb table: the same key shape as the engine's message table.
const RAW: TableDefinition<'_, (u32, u64), &[u8]> = TableDefinition::new("raw");

/// How many messages each scenario publishes.
struct Plan {
    /// Each of the 16- and 64-publisher scenarios.
    concurrent: usize,
    /// One publisher, and raw redb with one insert per commit: one fsync each.
    single: usize,
    /// Batches of 100 (Herald and raw redb).
    batched_100: usize,
    /// Batches of 1,000 (Herald and raw redb).
    batched_1000: usize,
    json: Option<PathBuf>,
    dir: Option<PathBuf>,
}

impl Plan {
    fn from_args() -> BenchResult<Plan> {
        let mut messages = None;
        let mut quick = false;
        let mut json = None;
        let mut dir = None;
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--messages" => messages = Some(value()?.parse::<usize>().map_err(|e| format!("--messages: {e}"))?),
                "--quick" => quick = true,
                "--json" => json = Some(PathBuf::from(value()?)),
                "--dir" => dir = Some(PathBuf::from(value()?)),
                other => {
                    return Err(format!(
                        "unknown argument `{other}`; flags: --messages N, --quick, --json PATH, --dir PATH"
                    )
                    .into());
                }
            }
        }
        let concurrent = messages.unwrap_or(if quick { 640 } else { 20_000 }).max(64);
        Ok(Plan {
            concurrent,
            single: (concurrent / 10).max(10),
            batched_100: round_up(concurrent * 5, 100),
            batched_1000: round_up(concurrent * 10, 1000),
            json,
            dir,
        })
    }
}

fn round_up(n: usize, multiple: usize) -> usize {
    n.div_ceil(multiple) * multiple
}

/// Per-call latencies, sorted.
struct Latency {
    mean: Duration,
    p50: Duration,
    p99: Duration,
}

impl Latency {
    fn of(mut samples: Vec<Duration>) -> Latency {
        samples.sort_unstable();
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p).round() as usize];
        Latency {
            mean: samples.iter().sum::<Duration>() / samples.len() as u32,
            p50: at(0.50),
            p99: at(0.99),
        }
    }
}

/// One scenario's result.
struct Row {
    /// A stable name for the JSON output and the ratios.
    key: String,
    scenario: String,
    messages: usize,
    seconds: f64,
    latency: Latency,
    note: String,
}

impl Row {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }
}

/// Opens a bus on a fresh directory under `base` with one stream, `bench`.
async fn fresh_bus(base: &Path, durability: Durability) -> BenchResult<(tempfile::TempDir, Bus)> {
    let dir = tempfile::tempdir_in(base)?;
    let bus = Bus::open(dir.path()).await?;
    bus.create_stream(StreamConfig::new("bench")?.durability(durability))
        .await?;
    Ok((dir, bus))
}

/// Fails unless stream `bench` holds exactly `expected` messages, then closes
/// the bus (on the blocking pool: closing joins the writer thread).
async fn check_and_close(bus: Bus, expected: usize) -> BenchResult<()> {
    let state = bus.stream_info("bench").await?.state;
    if state.messages != expected as u64 || state.last_seq != expected as u64 {
        return Err(format!(
            "stream `bench` holds {} messages (last seq {}) but {expected} were published",
            state.messages, state.last_seq
        )
        .into());
    }
    tokio::task::spawn_blocking(move || drop(bus)).await?;
    Ok(())
}

/// `publishers` tasks share `total` single publishes; each awaits its publish
/// before sending the next. Every publisher has its own subject.
async fn concurrent(base: &Path, publishers: usize, total: usize, durability: Durability) -> BenchResult<Row> {
    let (_dir, bus) = fresh_bus(base, durability).await?;
    let payload = Bytes::from(vec![0xA5; PAYLOAD]);
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(publishers);
    for p in 0..publishers {
        let share = total / publishers + usize::from(p < total % publishers);
        let subject = Subject::new(format!("bench.p{p}"))?;
        let (bus, payload) = (bus.clone(), payload.clone());
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::with_capacity(share);
            for _ in 0..share {
                let sent = Instant::now();
                bus.publish_message(OutgoingMessage::new(subject.clone(), payload.clone()))
                    .await?;
                latencies.push(sent.elapsed());
            }
            Ok::<_, herald::Error>(latencies)
        }));
    }
    let mut latencies = Vec::with_capacity(total);
    for task in tasks {
        latencies.extend(task.await??);
    }
    let seconds = started.elapsed().as_secs_f64();
    check_and_close(bus, total).await?;
    let (mode, plural) = match durability {
        Durability::Relaxed => ("relaxed", "s"),
        _ => ("durable", if publishers == 1 { "" } else { "s" }),
    };
    Ok(Row {
        key: format!("{mode}_{publishers}"),
        scenario: format!("{publishers} publisher{plural}, {mode}"),
        messages: total,
        seconds,
        latency: Latency::of(latencies),
        note: String::new(),
    })
}

/// Sequential durable `publish_batch` calls of `size` messages each.
async fn batched(base: &Path, size: usize, total: usize) -> BenchResult<Row> {
    let (_dir, bus) = fresh_bus(base, Durability::Fsync).await?;
    let subject = Subject::new("bench.a")?;
    let payload = Bytes::from(vec![0xA5; PAYLOAD]);
    let calls = total / size;
    let mut latencies = Vec::with_capacity(calls);
    let started = Instant::now();
    for _ in 0..calls {
        let sent = Instant::now();
        let batch = (0..size)
            .map(|_| OutgoingMessage::new(subject.clone(), payload.clone()))
            .collect();
        bus.publish_batch(batch).await?;
        latencies.push(sent.elapsed());
    }
    let seconds = started.elapsed().as_secs_f64();
    check_and_close(bus, calls * size).await?;
    Ok(Row {
        key: format!("batch_{size}"),
        scenario: format!("publish_batch of {size}, durable"),
        messages: calls * size,
        seconds,
        latency: Latency::of(latencies),
        note: String::new(),
    })
}

/// Plain redb in its own file: one `Durability::Immediate` (redb's default)
/// write transaction per `size` sequential inserts.
fn raw_redb(base: &Path, size: usize, total: usize) -> BenchResult<Row> {
    let dir = tempfile::tempdir_in(base)?;
    let db = redb::Database::create(dir.path().join("raw.redb"))?;
    let value = [0xA5u8; PAYLOAD];
    let commits = total / size;
    let mut latencies = Vec::with_capacity(commits);
    let mut seq = 0u64;
    let started = Instant::now();
    for _ in 0..commits {
        let begun = Instant::now();
        let txn = db.begin_write()?;
        {
            let mut table = txn.open_table(RAW)?;
            for _ in 0..size {
                seq += 1;
                table.insert((1, seq), value.as_slice())?;
            }
        }
        txn.commit()?;
        latencies.push(begun.elapsed());
    }
    let seconds = started.elapsed().as_secs_f64();
    let held = db.begin_read()?.open_table(RAW)?.len()?;
    if held != (commits * size) as u64 {
        return Err(format!("raw redb holds {held} rows but {} were inserted", commits * size).into());
    }
    Ok(Row {
        key: format!("raw_redb_{size}"),
        scenario: format!("raw redb, {size} per commit"),
        messages: commits * size,
        seconds,
        latency: Latency::of(latencies),
        note: String::new(),
    })
}

/// Runs one scenario between two progress lines on stderr.
async fn step<F>(rows: &mut Vec<Row>, index: usize, label: &str, messages: usize, run: F) -> BenchResult<()>
where
    F: Future<Output = BenchResult<Row>>,
{
    eprintln!(
        "[{index:>2}/{SCENARIOS}] {label}: {} messages ...",
        thousands(messages as f64)
    );
    let row = run.await?;
    eprintln!(
        "        done in {:.2} s: {} msgs/s, p50 {}, p99 {}",
        row.seconds,
        thousands(row.rate()),
        millis(row.latency.p50),
        millis(row.latency.p99)
    );
    rows.push(row);
    Ok(())
}

const SCENARIOS: usize = 9;

/// A `msgs/s` figure with thousands separators.
fn thousands(n: f64) -> String {
    let digits = format!("{:.0}", n.max(0.0));
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn millis(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// The `df -T` line of `path`, if `df` is there to ask.
fn filesystem_of(path: &Path) -> String {
    std::process::Command::new("df")
        .arg("-T")
        .arg(path)
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|text| {
            text.lines()
                .last()
                .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        })
        .unwrap_or_else(|| "unknown (df -T failed)".into())
}

/// A ratio the engine aims for: the figure, the aim, and whether it is met.
struct Aim {
    name: &'static str,
    value: f64,
    at_least: f64,
    percent: bool,
}

impl Aim {
    fn met(&self) -> bool {
        self.value >= self.at_least
    }

    fn show(&self, value: f64) -> String {
        if self.percent {
            format!("{:.0}%", value * 100.0)
        } else {
            format!("{value:.1}x")
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} (aim ≥ {}{})",
            self.show(self.value),
            self.show(self.at_least),
            if self.met() { "" } else { ", BELOW AIM" }
        )
    }
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> BenchResult<()> {
    let plan = Plan::from_args()?;
    let base = match &plan.dir {
        Some(dir) => dir.clone(),
        None => std::env::temp_dir(),
    };
    let cores = std::thread::available_parallelism()?.get();
    let filesystem = filesystem_of(&base);
    let build = if cfg!(debug_assertions) {
        "debug (figures are not representative: add --release)"
    } else {
        "release"
    };
    let facts = [
        format!("cores: {cores} (tokio worker threads: {cores})"),
        format!("data directories under: {}", base.display()),
        format!("df -T: {filesystem}"),
        format!("build: {build}"),
    ];
    for fact in &facts {
        eprintln!("{fact}");
    }

    let base = base.as_path();
    let mut rows = Vec::new();
    let (single, many) = (plan.single, plan.concurrent);
    let fsync = Durability::Fsync;
    step(
        &mut rows,
        1,
        "1 publisher, durable",
        single,
        concurrent(base, 1, single, fsync),
    )
    .await?;
    step(
        &mut rows,
        2,
        "16 publishers, durable",
        many,
        concurrent(base, 16, many, fsync),
    )
    .await?;
    step(
        &mut rows,
        3,
        "64 publishers, durable",
        many,
        concurrent(base, 64, many, fsync),
    )
    .await?;
    let relaxed = Durability::Relaxed;
    step(
        &mut rows,
        4,
        "64 publishers, relaxed",
        many,
        concurrent(base, 64, many, relaxed),
    )
    .await?;
    let (b100, b1000) = (plan.batched_100, plan.batched_1000);
    step(&mut rows, 5, "publish_batch of 100", b100, batched(base, 100, b100)).await?;
    step(
        &mut rows,
        6,
        "publish_batch of 1,000",
        b1000,
        batched(base, 1000, b1000),
    )
    .await?;
    for (index, size, total) in [(7, 1, single), (8, 100, b100), (9, 1000, b1000)] {
        let dir = base.to_path_buf();
        let raw = async move { tokio::task::spawn_blocking(move || raw_redb(&dir, size, total)).await? };
        step(&mut rows, index, &format!("raw redb, {size} per commit"), total, raw).await?;
    }

    let rate = |key: &str| rows.iter().find(|r| r.key == key).map_or(f64::NAN, Row::rate);
    let aims = [
        (
            "durable_64",
            Aim {
                name: "64 publishers / 1 publisher",
                value: rate("durable_64") / rate("durable_1"),
                at_least: 20.0,
                percent: false,
            },
        ),
        (
            "batch_100",
            Aim {
                name: "publish_batch of 100 / raw redb 100",
                value: rate("batch_100") / rate("raw_redb_100"),
                at_least: 0.70,
                percent: true,
            },
        ),
        (
            "batch_1000",
            Aim {
                name: "publish_batch of 1,000 / raw redb 1,000",
                value: rate("batch_1000") / rate("raw_redb_1000"),
                at_least: 0.70,
                percent: true,
            },
        ),
    ];
    let single_rate = rate("durable_1");
    for row in &mut rows {
        let mut notes = vec![format!("mean {}", millis(row.latency.mean))];
        match row.key.as_str() {
            "durable_16" => notes.push(format!("{:.1}x 1 publisher", row.rate() / single_rate)),
            "relaxed_64" => notes.push(format!("{:.1}x durable 64", row.rate() / rate("durable_64"))),
            "raw_redb_1" => notes.push(format!(
                "1 publisher is {:.0}% of this",
                single_rate / row.rate() * 100.0
            )),
            _ => {}
        }
        if let Some((_, aim)) = aims.iter().find(|(key, _)| *key == row.key) {
            notes.push(aim.describe());
        }
        if row.key.starts_with("batch") {
            notes.push("latency per batch".into());
        } else if row.key.starts_with("raw") {
            notes.push("latency per commit".into());
        }
        row.note = notes.join("; ");
    }

    for fact in &facts {
        println!("- {fact}");
    }
    println!();
    println!("| scenario | messages | seconds | msgs/s | p50 | p99 | note/ratio |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: | --- |");
    for r in &rows {
        println!(
            "| {} | {} | {:.2} | {} | {} | {} | {} |",
            r.scenario,
            thousands(r.messages as f64),
            r.seconds,
            thousands(r.rate()),
            millis(r.latency.p50),
            millis(r.latency.p99),
            r.note
        );
    }
    println!();
    for (_, aim) in &aims {
        println!("- {}: {}", aim.name, aim.describe());
    }

    if let Some(path) = &plan.json {
        let json = serde_json::json!({
            "facts": {
                "cores": cores,
                "dir": base.display().to_string(),
                "df_t": filesystem,
                "release": !cfg!(debug_assertions),
                "payload_bytes": PAYLOAD,
            },
            "rows": rows.iter().map(|r| serde_json::json!({
                "key": r.key,
                "scenario": r.scenario,
                "messages": r.messages,
                "seconds": r.seconds,
                "msgs_per_sec": r.rate(),
                "mean_ms": r.latency.mean.as_secs_f64() * 1e3,
                "p50_ms": r.latency.p50.as_secs_f64() * 1e3,
                "p99_ms": r.latency.p99.as_secs_f64() * 1e3,
                "note": r.note,
            })).collect::<Vec<_>>(),
            "ratios": aims.iter().map(|(_, a)| serde_json::json!({
                "name": a.name,
                "value": a.value,
                "aim_at_least": a.at_least,
                "met": a.met(),
            })).collect::<Vec<_>>(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}
