//! The soak run: mixed load on a real `herald serve` for an hour (or as long
//! as asked), with the server killed by SIGKILL and started again on its data
//! directory every so often. After each restart everything acknowledged so
//! far is read back and compared; a row of figures is printed every so often
//! (server memory, publish rate and latency, kills, acked-lost, errors by
//! kind), and a summary at the end. It is a program, not a test: it prints
//! figures, and fails only when an acknowledged write is lost or a promise
//! of the client (no gap, no repeat on a live subscription) breaks.
//!
//! docs/performance.md ("Soak") says how to run it and what it checks.

mod chart;
pub mod ledger;
mod load;
pub mod options;
mod server;
mod stats;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use herald::Bus;
use tokio::time::Instant;

use self::ledger::{Ledger, Progress, Scope};
use self::load::Shared;
pub use self::options::SoakOptions;
use self::server::Server;
use self::stats::{Now, Rows, Stats};
use crate::BenchResult;

/// Losses printed one by one; past it, only counted.
const PRINTED_LOSSES: usize = 50;
/// How long the load tasks get to finish their current operation at the end.
const WIND_DOWN: Duration = Duration::from_secs(30);

/// How a soak ended.
#[derive(Debug)]
pub struct Verdict {
    /// Acknowledged writes found lost (each printed when found).
    pub lost: u64,
    /// Broken promises other than loss, by kind (a live gap, a read that
    /// differed, two acks for one seq, a server that did not stop cleanly).
    pub faults: BTreeMap<String, u64>,
}

impl Verdict {
    /// Whether nothing acknowledged was lost and no promise broke.
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.faults.is_empty()
    }
}

/// Error kinds that are findings, not the expected noise of a kill.
const FAULT_KINDS: [&str; 6] = [
    "read:mismatch",
    "live:gap",
    "live:repeat",
    "publish:seq-acked-twice",
    "publish:ack-count-wrong",
    "publish:ack-wrong-stream",
];

/// Runs the soak; blocks until the duration is over or Ctrl-C.
///
/// # Errors
///
/// The server could not be started or restarted, or a check could not read
/// back what it had to (which is not a loss: the run cannot go on).
pub fn run(options: SoakOptions) -> BenchResult<Verdict> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(soak(options))
}

/// The clock's nanoseconds, as the seed nobody gave.
fn clock_seed() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

async fn soak(options: SoakOptions) -> BenchResult<Verdict> {
    let binary = server::herald_binary(options.herald.as_deref())?;
    let seed = options.seed.unwrap_or_else(clock_seed);
    let parent = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new().prefix("herald-soak-").tempdir_in(&parent)?;
    let data = work.path().join("data");
    let log = work.path().join("server.log");
    std::fs::create_dir_all(&options.out)?;

    // Blocking calls on the server (start, kill, wait) run on this thread,
    // the runtime's `block_on` thread, which drives no other task.
    let mut server = Server::start(&binary, &data, &log)?;
    let url = server.url();
    eprintln!(
        "herald-soak: {} at {url}, data {}, for {} with a kill -9 every {}; {} msgs/s from {} publishers; seed {seed}",
        binary.display(),
        data.display(),
        stats::clock(options.duration.as_secs_f64()),
        stats::clock(options.kill_every.as_secs_f64()),
        options.rate,
        options.publishers,
    );
    eprintln!(
        "herald-soak: the server's log is {}; Ctrl-C stops early (with the final check)",
        log.display()
    );
    let admin = Bus::connect(url.as_str()).await?;
    load::prepare(&admin).await?;

    let shared = Shared {
        stats: Arc::new(Stats::default()),
        ledger: Arc::new(Ledger::default()),
        stop: Arc::new(AtomicBool::new(false)),
    };
    let tasks = load::start(&url, &shared, options.publishers, options.rate, seed).await?;

    let started = Instant::now();
    let deadline = started + options.duration;
    let mut next_row = started + options.report_every;
    let mut next_kill = started + options.kill_every;
    let mut rows = Rows::default();
    let mut kills = 0u32;
    let mut lost = 0u64;
    let mut restarts = Vec::new();
    let mut checks = Vec::new();
    let mut kill_times = Vec::new();
    let mut progress = Progress::default();
    // Ctrl-C or SIGTERM ends the run early, with the final check and the
    // summary, and never leaves the server (in its own process group) behind.
    let mut interrupt = std::pin::pin!(tokio::signal::ctrl_c());
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut interrupted = false;
    println!("{}", stats::HEADER);
    loop {
        let wake = next_row.min(next_kill).min(deadline);
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = &mut interrupt => {
                interrupted = true;
                eprintln!("herald-soak: interrupted; stopping the load, then the final check");
                break;
            }
            _ = terminate.recv() => {
                interrupted = true;
                eprintln!("herald-soak: terminated; stopping the load, then the final check");
                break;
            }
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        if now >= next_kill {
            server.kill()?;
            kills += 1;
            kill_times.push(started.elapsed().as_secs_f64());
            let ready = server.restart()?;
            restarts.push(ready);
            let scope = if options.full_checks {
                Scope::Everything
            } else {
                Scope::Rolling(&mut progress)
            };
            let (compared, found, took) = check(&url, &shared.ledger, scope).await?;
            eprintln!(
                "herald-soak: kill -9 #{kills} at {}: ready again in {} ms ({:.0} MiB of data); compared {compared} acknowledged writes in {:.1} s, {found} lost",
                stats::clock(started.elapsed().as_secs_f64()),
                ready.as_millis(),
                server.data_bytes().unwrap_or(0) as f64 / (1024.0 * 1024.0),
                took.as_secs_f64(),
            );
            lost += found;
            checks.push((compared, took));
            next_kill += options.kill_every;
        }
        if now >= next_row {
            let row = rows.take(
                &shared.stats,
                row_figures(&server, &admin, started, kills, &shared, lost).await,
            );
            println!("{}", row.markdown());
            next_row += options.report_every;
        }
    }

    // Wind down: the tasks finish what they are doing; the last row; then a
    // last kill -9 and check, and a graceful stop that must succeed.
    shared.stop.store(true, Ordering::Relaxed);
    let wound_down = Instant::now() + WIND_DOWN;
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout_at(wound_down, task).await.is_err() {
            abort.abort();
            shared.stats.note("soak:task-did-not-stop");
        }
    }
    let row = rows.take(
        &shared.stats,
        row_figures(&server, &admin, started, kills, &shared, lost).await,
    );
    println!("{}", row.markdown());
    server.kill()?;
    kills += 1;
    kill_times.push(started.elapsed().as_secs_f64());
    restarts.push(server.restart()?);
    let (compared, found, took) = check(&url, &shared.ledger, Scope::Everything).await?;
    lost += found;
    checks.push((compared, took));
    let mut faults: BTreeMap<String, u64> = shared
        .stats
        .errors()
        .into_iter()
        .filter(|(kind, _)| FAULT_KINDS.contains(&kind.as_str()))
        .collect();
    drop(admin);
    match server.stop() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            faults.insert(format!("server stopped with {status} on SIGTERM"), 1);
        }
        Err(err) => {
            faults.insert(err.to_string(), 1);
        }
    }

    let summary = Summary {
        seed,
        elapsed: started.elapsed(),
        interrupted,
        kills,
        restarts,
        checks,
        full_checks: options.full_checks,
        acked: shared.ledger.len(),
        lost,
        stats: &shared.stats,
        log_lines: server_log_findings(&log),
    };
    let text = summary.markdown(&mut rows);
    println!("\n{text}");
    std::fs::write(
        options.out.join("soak.md"),
        format!("{}\n{}\n\n{text}", stats::HEADER, rows_markdown(&rows)),
    )?;
    let chart = options.out.join("soak.png");
    match chart::draw(&rows.rows, &kill_times, &chart) {
        Ok(()) => eprintln!(
            "wrote {} and {}",
            options.out.join("soak.md").display(),
            chart.display()
        ),
        Err(err) => eprintln!("wrote {}; no chart: {err}", options.out.join("soak.md").display()),
    }
    Ok(Verdict { lost, faults })
}

/// The figures of a progress row, read now.
async fn row_figures(server: &Server, admin: &Bus, started: Instant, kills: u32, shared: &Shared, lost: u64) -> Now {
    Now {
        elapsed: started.elapsed().as_secs_f64(),
        server_rss: server.rss_bytes(),
        data: server.data_bytes(),
        client_rss: server::own_rss_bytes(),
        lag: admin
            .consumer_info(load::SINGLES, load::GROUP)
            .await
            .ok()
            .map(|i| i.pending),
        kills,
        acked: shared.ledger.len(),
        lost,
    }
}

/// Checks everything acknowledged so far through a fresh connection; what
/// it compared, the losses it found (each printed), and how long it took.
async fn check(url: &str, ledger: &Ledger, scope: Scope<'_>) -> BenchResult<(u64, u64, Duration)> {
    let started = Instant::now();
    let bus = Bus::connect(url).await?;
    let checked = ledger.check(&bus, scope).await?;
    for loss in checked.losses.iter().take(PRINTED_LOSSES) {
        eprintln!("herald-soak: ACKED-LOST: {loss}");
    }
    if checked.losses.len() > PRINTED_LOSSES {
        eprintln!("herald-soak: … and {} more", checked.losses.len() - PRINTED_LOSSES);
    }
    Ok((checked.compared, checked.losses.len() as u64, started.elapsed()))
}

fn rows_markdown(rows: &Rows) -> String {
    rows.rows.iter().map(|r| r.markdown()).collect::<Vec<_>>().join("\n")
}

/// Lines of the server's log that say something went wrong (`ERROR`,
/// `WARN`, a panic), counted by level, with the first few.
fn server_log_findings(log: &std::path::Path) -> (BTreeMap<&'static str, u64>, Vec<String>) {
    let mut counts = BTreeMap::new();
    let mut first = Vec::new();
    let text = std::fs::read_to_string(log).unwrap_or_default();
    for line in text.lines() {
        let level = if line.contains("panicked") {
            "panic"
        } else if line.contains(" ERROR ") {
            "ERROR"
        } else if line.contains(" WARN ") {
            "WARN"
        } else {
            continue;
        };
        *counts.entry(level).or_insert(0) += 1;
        if first.len() < 5 {
            first.push(line.to_string());
        }
    }
    (counts, first)
}

/// The end of a run, as text.
struct Summary<'a> {
    seed: u64,
    elapsed: Duration,
    interrupted: bool,
    kills: u32,
    restarts: Vec<Duration>,
    /// Per check: what it compared and how long it took.
    checks: Vec<(u64, Duration)>,
    full_checks: bool,
    acked: u64,
    lost: u64,
    stats: &'a Stats,
    log_lines: (BTreeMap<&'static str, u64>, Vec<String>),
}

impl Summary<'_> {
    fn markdown(&self, rows: &mut Rows) -> String {
        let mut out = String::from("## Soak summary\n\n| | |\n|---|---|\n");
        let mut line = |name: &str, value: String| out.push_str(&format!("| {name} | {value} |\n"));
        line(
            "ran",
            format!(
                "{}{} (seed {})",
                stats::clock(self.elapsed.as_secs_f64()),
                if self.interrupted {
                    ", stopped early by a signal"
                } else {
                    ""
                },
                self.seed
            ),
        );
        let mut restarts = self.restarts.clone();
        restarts.sort();
        line(
            "kill -9s",
            format!(
                "{} (the last before the final check); restart to ready: median {} ms, max {} ms",
                self.kills,
                restarts.get(restarts.len() / 2).map_or(0, Duration::as_millis),
                restarts.last().map_or(0, Duration::as_millis),
            ),
        );
        line("acknowledged publishes", self.acked.to_string());
        line("acked-lost", self.lost.to_string());
        let last = self.checks.last().copied().unwrap_or_default();
        let slowest = self.checks.iter().map(|c| c.1).max().unwrap_or_default();
        line(
            "checks after restarts",
            format!(
                "{} ({} each time, everything at the end); the final one compared {} writes in {:.1} s (slowest {:.1} s)",
                self.checks.len(),
                if self.full_checks {
                    "everything"
                } else {
                    "the new writes and a rolling slice of older ones"
                },
                last.0,
                last.1.as_secs_f64(),
                slowest.as_secs_f64()
            ),
        );
        if let Some([p50, p99, p999, max]) = rows.overall() {
            line(
                "publish latency",
                format!(
                    "p50 {p50:.2} ms, p99 {p99:.2} ms, p99.9 {p999:.1} ms, max {max:.0} ms (a call, retries and restarts included)"
                ),
            );
        }
        let rss: Vec<f64> = rows.rows.iter().filter_map(|r| r.server_mib).collect();
        if let (Some(first), Some(last)) = (rss.first(), rss.last()) {
            let peak = rss.iter().copied().fold(0.0, f64::max);
            line(
                "server RSS",
                format!("first row {first:.1} MiB, last {last:.1} MiB, highest {peak:.1} MiB"),
            );
        }
        if let Some(data) = rows.rows.iter().rev().find_map(|r| r.data_mib) {
            line(
                "data directory",
                format!(
                    "{data:.0} MiB at the last row, for {} acknowledged publishes and the KV writes",
                    self.acked
                ),
            );
        }
        let n = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        line(
            "other work",
            format!(
                "{} group deliveries acked, {} nak'd; {} KV writes, {} CAS conflicts; {} reads by seq; {} live messages",
                n(&self.stats.consumed),
                n(&self.stats.naked),
                n(&self.stats.kv_writes),
                n(&self.stats.cas_conflicts),
                n(&self.stats.reads),
                n(&self.stats.live),
            ),
        );
        let errors: Vec<String> = self.stats.errors().iter().map(|(k, n)| format!("{k} {n}")).collect();
        line(
            "client errors by kind",
            if errors.is_empty() {
                "none".to_string()
            } else {
                errors.join(", ")
            },
        );
        let (levels, first) = &self.log_lines;
        let levels: Vec<String> = levels.iter().map(|(k, n)| format!("{k} {n}")).collect();
        line(
            "server log",
            if levels.is_empty() {
                "no WARN, ERROR or panic lines".to_string()
            } else {
                levels.join(", ")
            },
        );
        for l in first {
            out.push_str(&format!("\n    {l}"));
        }
        out
    }
}
