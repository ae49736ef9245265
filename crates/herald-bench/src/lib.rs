//! Herald's benchmark: the same workloads against embedded Herald and against
//! NATS JetStream (a fresh nats-server, twice: default sync and
//! `sync_interval: always`), in one run, with the ratio beside each pair.
//!
//! Each target runs in a child process of its own (this program, re-entered
//! with a hidden flag), so the peak memory of each side is its own and one
//! side's leftovers never slow the other. Targets take turns within a round,
//! and rounds repeat the turns, so a slow spell of a shared disk is spread over
//! every column. The disk's own limits (fsync latency, sequential bandwidth) are
//! measured first, on the same directory.
//!
//! Output: a markdown table on stdout and in `<out>/report.md`, the merged
//! results in `<out>/report.json`, and `<out>/chart.png`.
//!
//! The crate's second program, `herald-soak` ([`soak`]), runs a real `herald
//! serve` under mixed load for an hour, killing it with SIGKILL every minute,
//! and checks after each restart that every acknowledged write is still there.

pub mod machine;
pub mod plan;
pub mod report;
pub mod soak;

mod chart;
mod progress;
mod seen;
mod side;
mod workloads;

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::plan::{Options, Plan, Target};
use crate::report::{Report, RoundResult};

/// Any failure of a run.
pub type BenchError = Box<dyn std::error::Error + Send + Sync>;
/// A result of the benchmark.
pub type BenchResult<T> = Result<T, BenchError>;

/// The hidden flag that makes the program a child running one target.
pub const CHILD_FLAG: &str = "--child-spec";

/// What a child process is asked to do.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChildSpec {
    plan: Plan,
    target: Target,
    round: u32,
    first_step: usize,
    steps: usize,
    data_dir: PathBuf,
    result: PathBuf,
}

/// Runs the benchmark. `reenter` is what to pass to this same executable
/// before [`CHILD_FLAG`] to reach [`child`] (empty for `herald-bench` itself).
///
/// # Errors
///
/// A target failed (a check or an I/O error), or an output could not be written.
pub fn run(options: Options, reenter: &[OsString]) -> BenchResult<Report> {
    let plan = Plan::new(options);
    let out = plan.options.out.clone();
    std::fs::create_dir_all(&out)?;
    let parent = plan.options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new().prefix("herald-bench-").tempdir_in(&parent)?;
    let started_unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    eprintln!(
        "herald-bench: {} targets x {} workloads x {} round(s), {}-byte payloads, data under {}",
        plan.targets.len(),
        plan.workloads.len(),
        plan.rounds,
        plan.options.payload,
        work.path().display()
    );

    let (fsyncs, mib) = if plan.options.quick { (50, 16) } else { (1000, 256) };
    let machine = machine::measure(work.path(), fsyncs, mib)?;
    eprintln!(
        "machine: fsync p50 {:.3} ms, p99 {:.3} ms; sequential write {:.0} MiB/s",
        machine.fsync.p50_ms, machine.fsync.p99_ms, machine.sequential_mib_per_s
    );

    let exe = std::env::current_exe()?;
    let steps = plan.rounds as usize * plan.targets.len() * plan.workloads.len();
    let mut results = Vec::new();
    for round in 0..plan.rounds {
        let n = plan.targets.len();
        for i in 0..n {
            let target = plan.targets[(i + round as usize) % n];
            let spec = ChildSpec {
                plan: plan.clone(),
                target,
                round,
                first_step: results.len() * plan.workloads.len() + 1,
                steps,
                data_dir: work.path().to_path_buf(),
                result: work.path().join(format!("result-{round}-{}.json", target.key())),
            };
            let spec_path = work.path().join(format!("spec-{round}-{}.json", target.key()));
            std::fs::write(&spec_path, serde_json::to_vec(&spec)?)?;
            let status = Command::new(&exe)
                .args(reenter)
                .arg(CHILD_FLAG)
                .arg(&spec_path)
                .status()?;
            if !status.success() {
                return Err(format!("{} failed in round {} ({status})", target.label(), round + 1).into());
            }
            let result: RoundResult = serde_json::from_slice(&std::fs::read(&spec.result)?)?;
            results.push((target, result));
        }
    }

    let report = Report::merge(started_unix, plan, machine, results);
    let markdown = report.markdown();
    std::fs::write(out.join("report.md"), &markdown)?;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(&report)?)?;
    let chart = out.join("chart.png");
    chart::draw(&report, &chart)?;
    println!("{markdown}");
    eprintln!(
        "wrote {}, {} and {}",
        out.join("report.md").display(),
        out.join("report.json").display(),
        chart.display()
    );
    Ok(report)
}

/// Writes the table and the chart of a saved run (its `report.json`) again
/// into `out`, without running anything: for a chart drawn by a newer
/// version, or a run copied from another machine.
///
/// # Errors
///
/// The file cannot be read or is not a report; the chart cannot be drawn.
pub fn redraw(report_json: &Path, out: &Path) -> BenchResult<()> {
    let report: Report = serde_json::from_slice(&std::fs::read(report_json)?)?;
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("report.md"), report.markdown())?;
    chart::draw(&report, &out.join("chart.png"))?;
    println!(
        "wrote {} and {}",
        out.join("report.md").display(),
        out.join("chart.png").display()
    );
    Ok(())
}

/// The child side: runs every workload of the plan on one target and writes
/// the outcomes where the spec says.
///
/// # Errors
///
/// A workload failed or its check did not hold.
pub fn child(spec_path: &Path) -> BenchResult<()> {
    let spec: ChildSpec = serde_json::from_slice(&std::fs::read(spec_path)?)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let result = runtime.block_on(async {
        let side = side::open(spec.target, &spec.data_dir).await?;
        let mut outcomes = Vec::new();
        for (i, &workload) in spec.plan.workloads.iter().enumerate() {
            let step = progress::Step::start(
                spec.first_step + i,
                spec.steps,
                format!("round {} {} {}", spec.round + 1, spec.target.label(), workload.title()),
            );
            let outcome = workloads::run(side.clone(), spec.target, &spec.plan, workload, step.counter()).await?;
            step.finish(&summary(&outcome));
            outcomes.push(outcome);
        }
        let peak_rss_bytes = side.peak_rss();
        Ok::<_, BenchError>(RoundResult {
            outcomes,
            peak_rss_bytes,
        })
    })?;
    std::fs::write(&spec.result, serde_json::to_vec(&result)?)?;
    Ok(())
}

fn summary(outcome: &report::Outcome) -> String {
    let mut line = format!(
        "{} msgs in {:.2} s = {} msgs/s",
        outcome.messages,
        outcome.seconds,
        report::group_thousands(outcome.rate().round() as u64)
    );
    if let Some(latency) = outcome.latency {
        line.push_str(&format!(
            ", p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms",
            latency.p50_ms, latency.p99_ms, latency.p999_ms
        ));
    }
    if let Some(profile) = &outcome.catch_up {
        line.push_str(&format!(", {}", profile.summary()));
    }
    line
}
