//! The machine's own limits, measured on the data directory's disk in the same
//! run: what one fsync costs, and how fast the disk takes sequential writes.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::report::nearest_rank;

/// The disk's figures.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// CPUs available to the benchmark.
    pub cores: usize,
    /// Where the data directories were.
    pub data_dir: String,
    /// A 4 KiB append followed by `fdatasync`, repeated.
    pub fsync: FsyncLatency,
    /// Writing a file in 1 MiB chunks and fsyncing it at the end.
    pub sequential_mib_per_s: f64,
}

/// Percentiles of one append-and-fdatasync, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsyncLatency {
    /// Median.
    pub p50_ms: f64,
    /// 99th percentile.
    pub p99_ms: f64,
    /// Appends timed.
    pub samples: u64,
}

/// Measures the disk under `dir`: `fsyncs` appends of 4 KiB, each made durable,
/// then `mib` MiB written sequentially.
pub(crate) fn measure(dir: &Path, fsyncs: usize, mib: usize) -> std::io::Result<Machine> {
    let scratch = tempfile::Builder::new().prefix("disk-").tempdir_in(dir)?;
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(scratch.path().join("fsync"))?;
    let block = vec![0x42u8; 4096];
    let mut samples = Vec::with_capacity(fsyncs);
    for _ in 0..fsyncs.max(1) {
        let started = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    samples.sort_by(f64::total_cmp);
    let fsync = FsyncLatency {
        p50_ms: nearest_rank(&samples, 0.50),
        p99_ms: nearest_rank(&samples, 0.99),
        samples: samples.len() as u64,
    };

    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .open(scratch.path().join("sequential"))?;
    let chunk = vec![0x24u8; 1 << 20];
    let started = Instant::now();
    for _ in 0..mib.max(1) {
        file.write_all(&chunk)?;
    }
    file.sync_all()?;
    let sequential_mib_per_s = mib.max(1) as f64 / started.elapsed().as_secs_f64();

    Ok(Machine {
        cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
        data_dir: dir.display().to_string(),
        fsync,
        sequential_mib_per_s,
    })
}
