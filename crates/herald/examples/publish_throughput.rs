//! Run with: cargo run --release -p herald --example publish_throughput
//!
//! What a durable publish costs, and how close group commit gets to redb itself.
//! One run measures, each on a fresh data directory and with 256-byte payloads:
//!
//! - 1, 16 and 64 concurrent publishers (tokio tasks), each awaiting every
//!   publish before sending its next, on a default (fsync) stream;
//! - 64 publishers on a `Durability::Relaxed` stream, for comparison;
//! - sequential `publish_batch` calls of 100 and of 1,000 messages;
//! - plain redb in its own file: one `Durability::Immediate` write transaction
//!   per 1, 100 and 1,000 sequential `(u32, u64) -> &[u8]` inserts.
//!
//! Every scenario runs in a few rounds, taken in turn (all scenarios, then all
//! again), so that a slow spell of a shared disk lands on every scenario
//! instead of on one side of a ratio. The table sums the rounds and shows their
//! spread. After each Herald round the stream must hold exactly what was
//! published, or the run fails.
//!
//! p50 and p99 are per call: one publish, one batch, one redb commit. The note
//! column also gives the bytes the process wrote per message (Linux: `wchar` of
//! `/proc/self/io`, nearly all of it redb's page writes), which, unlike the
//! rates, does not move with other load on the machine.
//!
//! Flags: `--messages N` sets the messages of each concurrent scenario (default
//! 150,000; one publisher gets N/20, batches 5N and 10N); `--rounds R` (default
//! 3); `--quick` is a smoke test of a few seconds; `--json PATH` also writes the
//! results as JSON; `--dir PATH` puts the data directories under PATH (default:
//! `$TMPDIR`).

use std::error::Error;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use herald::{Bus, Bytes, Durability, OutgoingMessage, StreamConfig, Subject};
use redb::{ReadableDatabase, ReadableTableMetadata, TableDefinition};

type BenchResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

/// 256 bytes: a typical small event, and the value size of the engine notes in
/// DESIGN.md, so the raw redb figures compare with those.
const PAYLOAD: usize = 256;

/// The raw redb table: the same key shape as the engine's message table.
const RAW: TableDefinition<'_, (u32, u64), &[u8]> = TableDefinition::new("raw");

/// The scenarios, in table order: each Herald figure next to the raw redb
/// figure it is compared with.
const SCENARIOS: [Scenario; 9] = [
    Scenario::Publishers(1, Durability::Fsync),
    Scenario::Raw(1),
    Scenario::Publishers(16, Durability::Fsync),
    Scenario::Publishers(64, Durability::Fsync),
    Scenario::Publishers(64, Durability::Relaxed),
    Scenario::Batch(100),
    Scenario::Raw(100),
    Scenario::Batch(1000),
    Scenario::Raw(1000),
];

/// What the command line asked for.
struct Plan {
    /// Messages of each 16- and 64-publisher scenario, over all rounds.
    concurrent: usize,
    rounds: usize,
    json: Option<PathBuf>,
    dir: Option<PathBuf>,
}

impl Plan {
    fn from_args() -> BenchResult<Plan> {
        let (mut messages, mut rounds, mut quick, mut json, mut dir) = (None, None, false, None, None);
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--messages" => messages = Some(value()?.parse::<usize>().map_err(|e| format!("--messages: {e}"))?),
                "--rounds" => rounds = Some(value()?.parse::<usize>().map_err(|e| format!("--rounds: {e}"))?),
                "--quick" => quick = true,
                "--json" => json = Some(PathBuf::from(value()?)),
                "--dir" => dir = Some(PathBuf::from(value()?)),
                other => {
                    return Err(format!(
                        "unknown argument `{other}`; flags: --messages N, --rounds R, --quick, --json PATH, --dir PATH"
                    )
                    .into());
                }
            }
        }
        Ok(Plan {
            concurrent: messages.unwrap_or(if quick { 640 } else { 150_000 }),
            rounds: rounds.unwrap_or(if quick { 1 } else { 3 }).max(1),
            json,
            dir,
        })
    }

    /// The messages of one round of `scenario`: a whole number of calls, at
    /// least one per publisher.
    fn per_round(&self, scenario: Scenario) -> usize {
        let total = match scenario {
            // One fsync per publish: a lone publisher gets far fewer done per second.
            Scenario::Publishers(1, _) | Scenario::Raw(1) => self.concurrent / 20,
            Scenario::Publishers(..) => self.concurrent,
            Scenario::Batch(100) | Scenario::Raw(100) => self.concurrent * 5,
            Scenario::Batch(_) | Scenario::Raw(_) => self.concurrent * 10,
        };
        let unit = scenario.per_call().max(scenario.publishers());
        total.div_ceil(self.rounds).div_ceil(unit).max(1) * unit
    }
}

#[derive(Clone, Copy)]
enum Scenario {
    /// This many tasks, each awaiting its publish before sending the next.
    Publishers(usize, Durability),
    /// Sequential durable `publish_batch` calls of this many messages.
    Batch(usize),
    /// Plain redb: this many inserts per durable write transaction.
    Raw(usize),
}

impl Scenario {
    /// A stable name for the JSON output and the ratios.
    fn key(self) -> String {
        match self {
            Scenario::Publishers(n, Durability::Relaxed) => format!("relaxed_{n}"),
            Scenario::Publishers(n, _) => format!("durable_{n}"),
            Scenario::Batch(size) => format!("batch_{size}"),
            Scenario::Raw(size) => format!("raw_redb_{size}"),
        }
    }

    fn label(self) -> String {
        match self {
            Scenario::Publishers(1, _) => "1 publisher, durable".into(),
            Scenario::Publishers(n, Durability::Relaxed) => format!("{n} publishers, relaxed"),
            Scenario::Publishers(n, _) => format!("{n} publishers, durable"),
            Scenario::Batch(size) => format!("publish_batch of {size}, durable"),
            Scenario::Raw(size) => format!("raw redb, {size} per commit"),
        }
    }

    fn per_call(self) -> usize {
        match self {
            Scenario::Publishers(..) => 1,
            Scenario::Batch(size) | Scenario::Raw(size) => size,
        }
    }

    fn publishers(self) -> usize {
        match self {
            Scenario::Publishers(n, _) => n,
            _ => 1,
        }
    }

    /// One round of `messages` on a fresh directory under `base`.
    async fn run(self, base: &Path, messages: usize) -> BenchResult<Sample> {
        match self {
            Scenario::Publishers(n, durability) => publishers(base, n, durability, messages).await,
            Scenario::Batch(size) => batches(base, size, messages).await,
            Scenario::Raw(size) => {
                let base = base.to_path_buf();
                tokio::task::spawn_blocking(move || raw_redb(&base, size, messages)).await?
            }
        }
    }
}

/// What one or more rounds of a scenario measured.
#[derive(Default)]
struct Sample {
    messages: usize,
    seconds: f64,
    /// One per call.
    latencies: Vec<Duration>,
    /// Bytes the process wrote while it ran, where the OS tells.
    written: Option<u64>,
    /// The rate of each round.
    round_rates: Vec<f64>,
}

impl Sample {
    fn rate(&self) -> f64 {
        self.messages as f64 / self.seconds
    }

    fn absorb(&mut self, round: Sample) {
        // Known only if known for every round.
        self.written = if self.round_rates.is_empty() {
            round.written
        } else {
            self.written.zip(round.written).map(|(sum, more)| sum + more)
        };
        self.round_rates.push(round.rate());
        self.messages += round.messages;
        self.seconds += round.seconds;
        self.latencies.extend(round.latencies);
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

/// `count` tasks share `total` single publishes; each awaits its publish
/// before sending the next. Every publisher has its own subject.
async fn publishers(base: &Path, count: usize, durability: Durability, total: usize) -> BenchResult<Sample> {
    let (_dir, bus) = fresh_bus(base, durability).await?;
    let payload = Bytes::from(vec![0xA5; PAYLOAD]);
    let written = bytes_written();
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for p in 0..count {
        let share = total / count + usize::from(p < total % count);
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
    let written = written_since(written);
    check_and_close(bus, total).await?;
    Ok(Sample {
        messages: total,
        seconds,
        latencies,
        written,
        round_rates: Vec::new(),
    })
}

/// Sequential durable `publish_batch` calls of `size` messages each.
async fn batches(base: &Path, size: usize, total: usize) -> BenchResult<Sample> {
    let (_dir, bus) = fresh_bus(base, Durability::Fsync).await?;
    let subject = Subject::new("bench.a")?;
    let payload = Bytes::from(vec![0xA5; PAYLOAD]);
    let calls = total / size;
    let mut latencies = Vec::with_capacity(calls);
    let written = bytes_written();
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
    let written = written_since(written);
    check_and_close(bus, calls * size).await?;
    Ok(Sample {
        messages: calls * size,
        seconds,
        latencies,
        written,
        round_rates: Vec::new(),
    })
}

/// Plain redb in its own file: one `Durability::Immediate` (redb's default)
/// write transaction per `size` sequential inserts.
fn raw_redb(base: &Path, size: usize, total: usize) -> BenchResult<Sample> {
    let dir = tempfile::tempdir_in(base)?;
    let db = redb::Database::create(dir.path().join("raw.redb"))?;
    let value = [0xA5u8; PAYLOAD];
    let commits = total / size;
    let mut latencies = Vec::with_capacity(commits);
    let mut seq = 0u64;
    let written = bytes_written();
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
    let written = written_since(written);
    let held = db.begin_read()?.open_table(RAW)?.len()?;
    if held != seq {
        return Err(format!("raw redb holds {held} rows but {seq} were inserted").into());
    }
    Ok(Sample {
        messages: commits * size,
        seconds,
        latencies,
        written,
        round_rates: Vec::new(),
    })
}

/// A scenario's line in the table.
struct Row {
    key: String,
    scenario: String,
    sample: Sample,
    mean: Duration,
    p50: Duration,
    p99: Duration,
    note: String,
}

impl Row {
    fn new(scenario: Scenario, mut sample: Sample) -> Row {
        sample.latencies.sort_unstable();
        let at = |p: f64| sample.latencies[((sample.latencies.len() - 1) as f64 * p).round() as usize];
        let (p50, p99) = (at(0.50), at(0.99));
        let total: Duration = sample.latencies.iter().sum();
        Row {
            key: scenario.key(),
            scenario: scenario.label(),
            mean: total / sample.latencies.len() as u32,
            p50,
            p99,
            sample,
            note: String::new(),
        }
    }
}

/// A ratio the engine aims for: the figure, the aim, and whether it is met.
struct Aim {
    /// The row whose note shows it.
    row: &'static str,
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
        let verdict = if self.met() { "" } else { ", BELOW AIM" };
        format!(
            "{} (aim ≥ {}{verdict})",
            self.show(self.value),
            self.show(self.at_least)
        )
    }
}

/// A figure with thousands separators.
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

/// Bytes this process has passed to `write` and friends (Linux only).
fn bytes_written() -> Option<u64> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    io.lines().find_map(|l| l.strip_prefix("wchar:"))?.trim().parse().ok()
}

fn written_since(start: Option<u64>) -> Option<u64> {
    bytes_written()?.checked_sub(start?)
}

/// The load average over the last minute: other work on the machine skews the rates.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
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

#[tokio::main(flavor = "multi_thread")]
async fn main() -> BenchResult<()> {
    let plan = Plan::from_args()?;
    let base = plan.dir.clone().unwrap_or_else(std::env::temp_dir);
    let cores = std::thread::available_parallelism()?.get();
    let filesystem = filesystem_of(&base);
    let build = if cfg!(debug_assertions) {
        "debug (figures are not representative: add --release)"
    } else {
        "release"
    };
    let mut facts = vec![
        format!("cores: {cores} (tokio worker threads: {cores})"),
        format!("data directories under: {}", base.display()),
        format!("df -T: {filesystem}"),
        format!("build: {build}; rounds: {}", plan.rounds),
        format!("load average (1 min) at start: {}", load_average()),
    ];
    for fact in &facts {
        eprintln!("{fact}");
    }

    let mut samples: Vec<Sample> = SCENARIOS.iter().map(|_| Sample::default()).collect();
    for round in 1..=plan.rounds {
        for (i, (scenario, sample)) in SCENARIOS.iter().zip(&mut samples).enumerate() {
            let messages = plan.per_round(*scenario);
            eprintln!(
                "[round {round}/{}, {}/{}] {}: {} messages ...",
                plan.rounds,
                i + 1,
                SCENARIOS.len(),
                scenario.label(),
                thousands(messages as f64)
            );
            let measured = scenario.run(&base, messages).await?;
            eprintln!("    {:.2} s, {} msgs/s", measured.seconds, thousands(measured.rate()));
            sample.absorb(measured);
        }
    }
    let mut rows: Vec<Row> = SCENARIOS.iter().zip(samples).map(|(s, m)| Row::new(*s, m)).collect();

    let rate = |key: &str| rows.iter().find(|r| r.key == key).map_or(f64::NAN, |r| r.sample.rate());
    let aims = [
        Aim {
            row: "durable_64",
            name: "64 publishers / 1 publisher",
            value: rate("durable_64") / rate("durable_1"),
            at_least: 20.0,
            percent: false,
        },
        Aim {
            row: "batch_100",
            name: "publish_batch of 100 / raw redb 100",
            value: rate("batch_100") / rate("raw_redb_100"),
            at_least: 0.70,
            percent: true,
        },
        Aim {
            row: "batch_1000",
            name: "publish_batch of 1,000 / raw redb 1,000",
            value: rate("batch_1000") / rate("raw_redb_1000"),
            at_least: 0.70,
            percent: true,
        },
    ];
    let compared = [
        (
            "raw_redb_1",
            format!(
                "1 publisher is {:.0}% of this",
                rate("durable_1") / rate("raw_redb_1") * 100.0
            ),
        ),
        (
            "durable_16",
            format!("{:.1}x 1 publisher", rate("durable_16") / rate("durable_1")),
        ),
        (
            "relaxed_64",
            format!("{:.1}x durable 64", rate("relaxed_64") / rate("durable_64")),
        ),
    ];
    for row in &mut rows {
        let s = &row.sample;
        let mut notes = vec![format!("mean {}", millis(row.mean))];
        if let Some(written) = s.written {
            notes.push(format!(
                "{:.2} KiB written/msg",
                written as f64 / s.messages as f64 / 1024.0
            ));
        }
        if s.round_rates.len() > 1 {
            let low = s.round_rates.iter().copied().fold(f64::INFINITY, f64::min);
            let high = s.round_rates.iter().copied().fold(0.0, f64::max);
            notes.push(format!("rounds {}–{} msgs/s", thousands(low), thousands(high)));
        }
        if let Some((_, text)) = compared.iter().find(|(key, _)| *key == row.key) {
            notes.push(text.clone());
        }
        if let Some(aim) = aims.iter().find(|a| a.row == row.key) {
            notes.push(aim.describe());
        }
        row.note = notes.join("; ");
    }

    facts.push(format!("load average (1 min) at end: {}", load_average()));
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
            thousands(r.sample.messages as f64),
            r.sample.seconds,
            thousands(r.sample.rate()),
            millis(r.p50),
            millis(r.p99),
            r.note
        );
    }
    println!();
    println!("p50/p99/mean are per call: one publish, one publish_batch, one redb commit.");
    for aim in &aims {
        println!("- {}: {}", aim.name, aim.describe());
    }

    if let Some(path) = &plan.json {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        let json = serde_json::json!({
            "facts": {
                "cores": cores,
                "dir": base.display().to_string(),
                "df_t": filesystem,
                "release": !cfg!(debug_assertions),
                "rounds": plan.rounds,
                "payload_bytes": PAYLOAD,
                "lines": facts,
            },
            "rows": rows.iter().map(|r| serde_json::json!({
                "key": r.key,
                "scenario": r.scenario,
                "messages": r.sample.messages,
                "seconds": r.sample.seconds,
                "msgs_per_sec": r.sample.rate(),
                "round_msgs_per_sec": r.sample.round_rates,
                "mean_ms": ms(r.mean),
                "p50_ms": ms(r.p50),
                "p99_ms": ms(r.p99),
                "bytes_written": r.sample.written,
                "note": r.note,
            })).collect::<Vec<_>>(),
            "ratios": aims.iter().map(|a| serde_json::json!({
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
