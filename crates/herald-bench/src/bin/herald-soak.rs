//! `herald-soak`: an hour of mixed load on a real `herald serve`, killed
//! with SIGKILL every minute and restarted; every acknowledged publish is
//! checked after each restart (docs/performance.md, "Soak").
//!
//! ```text
//! cargo build --release -p herald-cli -p herald-bench
//! target/release/herald-soak                                  # an hour, a kill a minute
//! target/release/herald-soak --duration 5m --kill-every 30s   # a short one
//! ```

use std::process::ExitCode;

use clap::Parser;
use herald_bench::soak::{self, SoakOptions};

fn main() -> ExitCode {
    match soak::run(SoakOptions::parse()) {
        Ok(verdict) if verdict.passed() => ExitCode::SUCCESS,
        Ok(verdict) => {
            eprintln!(
                "herald-soak: FAILED: {} acknowledged writes lost; other faults: {:?}",
                verdict.lost, verdict.faults
            );
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("herald-soak: {err}");
            ExitCode::FAILURE
        }
    }
}
