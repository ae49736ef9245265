//! `herald-bench`: Herald against NATS JetStream, side by side, in one run.
//!
//! ```text
//! cargo run --release -p herald-bench            # the full run (several minutes)
//! cargo run --release -p herald-bench -- --quick # a smoke run, under a minute
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use herald_bench::plan::Options;

/// Runs the same workloads against embedded Herald and NATS JetStream and
/// prints both, with the ratio.
#[derive(Parser)]
#[command(name = "herald-bench", version)]
struct Cli {
    #[command(flatten)]
    options: Options,
    /// Draws the table and chart of a saved run (a `report.json`) into
    /// `--out` again, running nothing.
    #[arg(long, value_name = "REPORT_JSON")]
    redraw: Option<PathBuf>,
    /// Internal: run one target as a child process.
    #[arg(long = "child-spec", hide = true)]
    child_spec: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match (cli.child_spec, cli.redraw) {
        (Some(spec), _) => herald_bench::child(&spec),
        (None, Some(report)) => herald_bench::redraw(&report, &cli.options.out),
        (None, None) => herald_bench::run(cli.options, &[]).map(|_| ()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("herald-bench: {err}");
            ExitCode::FAILURE
        }
    }
}
