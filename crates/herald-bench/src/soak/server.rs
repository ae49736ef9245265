//! The `herald serve` process under soak: started on a free loopback port,
//! killed with SIGKILL, started again on the same data directory and port.

use std::fs::OpenOptions;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::BenchResult;

/// How long a start may take before the soak gives up: opening a data
/// directory after a crash is quick, but a busy shared disk is slow.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a graceful stop (SIGTERM) may take before the server is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// A `herald serve` child, killed when dropped.
pub(crate) struct Server {
    binary: PathBuf,
    data: PathBuf,
    /// Its stderr (the log), appended to across restarts.
    log: PathBuf,
    /// `127.0.0.1:0` until the first start, then the address it bound.
    listen: String,
    child: Option<Child>,
}

impl Server {
    /// Starts `binary serve` on `data`, on a port the system picks; its log
    /// goes to `log`.
    pub(crate) fn start(binary: &Path, data: &Path, log: &Path) -> BenchResult<Server> {
        let mut server = Server {
            binary: binary.to_path_buf(),
            data: data.to_path_buf(),
            log: log.to_path_buf(),
            listen: "127.0.0.1:0".to_string(),
            child: None,
        };
        server.spawn()?;
        Ok(server)
    }

    /// The WebSocket URL clients connect to.
    pub(crate) fn url(&self) -> String {
        format!("ws://{}/v1/ws", self.listen)
    }

    /// Its resident memory now (`VmRSS`), in bytes; `None` while it is down.
    pub(crate) fn rss_bytes(&self) -> Option<u64> {
        let pid = self.child.as_ref()?.id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status_kib(&status, "VmRSS:").map(|kib| kib * 1024)
    }

    /// The size of the files in its data directory, in bytes.
    pub(crate) fn data_bytes(&self) -> Option<u64> {
        let mut total = 0;
        for entry in std::fs::read_dir(&self.data).ok()? {
            total += entry.ok()?.metadata().ok()?.len();
        }
        Some(total)
    }

    /// SIGKILL, then waits for it to be gone.
    pub(crate) fn kill(&mut self) -> BenchResult<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts it again on the same data directory and address; how long it
    /// took to say it is ready.
    pub(crate) fn restart(&mut self) -> BenchResult<Duration> {
        let started = Instant::now();
        self.spawn()?;
        Ok(started.elapsed())
    }

    /// SIGTERM, the way an operator stops it, and its exit status; killed
    /// after [`STOP_TIMEOUT`] (an error).
    pub(crate) fn stop(&mut self) -> BenchResult<ExitStatus> {
        let Some(mut child) = self.child.take() else {
            return Err("the server was not running when asked to stop".into());
        };
        Command::new("kill").arg("-TERM").arg(child.id().to_string()).status()?;
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() > deadline {
                child.kill()?;
                child.wait()?;
                return Err(format!("herald serve did not stop within {STOP_TIMEOUT:?} of SIGTERM").into());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the child and waits for its ready line, which names the address.
    fn spawn(&mut self) -> BenchResult<()> {
        let log = OpenOptions::new().create(true).append(true).open(&self.log)?;
        let mut command = Command::new(&self.binary);
        // The user's HERALD_* settings would change the server under test.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("HERALD_") {
                command.env_remove(name);
            }
        }
        command
            .args(["serve", "--listen", self.listen.as_str(), "--data-dir"])
            .arg(&self.data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            // Its own process group, so a Ctrl-C at the terminal stops the soak
            // (which then checks and stops the server) and not the server first.
            .process_group(0);
        let mut child = command
            .spawn()
            .map_err(|e| format!("starting {}: {e}", self.binary.display()))?;
        let stdout = child.stdout.take().ok_or("the server's stdout")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        // Reads the ready line, then drains stdout for the child's whole life so
        // it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let first = lines.next().and_then(Result::ok);
            let _ = ready_tx.send(first);
            for _ in lines.map_while(Result::ok) {}
        });
        let line = match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Some(line)) => line,
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                let why = if outcome.is_err() {
                    "no ready line in time"
                } else {
                    "it exited"
                };
                return Err(format!("herald serve did not start ({why}); its log is {}", self.log.display()).into());
            }
        };
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("ws://"))
            .ok_or_else(|| format!("no ws:// URL in the ready line {line:?}"))?;
        self.listen = url.trim_start_matches("ws://").trim_end_matches("/v1/ws").to_string();
        self.child = Some(child);
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// This process's resident memory now, in bytes.
pub(crate) fn own_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status_kib(&status, "VmRSS:").map(|kib| kib * 1024)
}

/// A `/proc/<pid>/status` field in KiB (`VmRSS:    1234 kB`).
fn status_kib(status: &str, field: &str) -> Option<u64> {
    status
        .lines()
        .find(|l| l.starts_with(field))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// The `herald` binary: `given`, or the one beside this executable.
pub(crate) fn herald_binary(given: Option<&Path>) -> BenchResult<PathBuf> {
    let path = match given {
        Some(path) => path.to_path_buf(),
        None => std::env::current_exe()?
            .parent()
            .ok_or("this program has no directory")?
            .join("herald"),
    };
    if !path.is_file() {
        return Err(format!(
            "no herald binary at {}: build it with `cargo build --release -p herald-cli`, or pass --herald PATH",
            path.display()
        )
        .into());
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resident_memory_is_read_from_the_status_file() {
        let status = "Name:\therald\nVmHWM:\t   9000 kB\nVmRSS:\t   1234 kB\n";
        assert_eq!(status_kib(status, "VmRSS:"), Some(1234));
        assert_eq!(status_kib(status, "VmSwap:"), None);
    }
}
