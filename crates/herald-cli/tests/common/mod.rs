//! Starting and stopping `herald serve` for the CLI's tests.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The `herald` binary under test, with none of the user's `HERALD_*`
/// settings leaking in.
pub fn herald() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HERALD_") {
            command.env_remove(name);
        }
    }
    command
}

/// `herald serve` on `data`, listening on `listen`, with `args` added;
/// returns it once it is ready, and its WebSocket URL.
pub fn serve_on(data: &Path, listen: &str, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> (Child, String) {
    let mut command = herald();
    command
        .args(["serve", "--listen", listen, "--data-dir"])
        .arg(data)
        .args(args);
    serve_with(command)
}

/// `herald serve` on `data` on a free loopback port, with `args` added.
pub fn serve(data: &Path, args: impl IntoIterator<Item = impl AsRef<OsStr>>) -> (Child, String) {
    serve_on(data, "127.0.0.1:0", args)
}

/// Starts a prepared `herald serve` command and waits for its ready line
/// (`herald listening on ws://…`); returns it and the URL in that line.
pub fn serve_with(command: Command) -> (Child, String) {
    let (child, url, _) = serve_watched(command);
    (child, url)
}

/// As [`serve_with`], and the lines it prints after the ready line, as they come.
pub fn serve_watched(command: Command) -> (Child, String, mpsc::Receiver<String>) {
    let (child, url, stdout, _) = start(command, false);
    (child, url, stdout)
}

/// As [`serve_with`], and its log (the lines on its stderr), as they come,
/// from its first.
pub fn serve_logged(command: Command) -> (Child, String, mpsc::Receiver<String>) {
    let (child, url, _, log) = start(command, true);
    (child, url, log.expect("stderr is piped"))
}

/// Starts `command`, waits for its ready line on stdout, and forwards its
/// later stdout lines (and, with `log`, every stderr line) to receivers.
fn start(mut command: Command, log: bool) -> (Child, String, mpsc::Receiver<String>, Option<mpsc::Receiver<String>>) {
    if log {
        command.stderr(Stdio::piped());
    }
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    // Read from the start, so the log never fills its pipe while the ready line is awaited.
    let log = child.stderr.take().map(|stderr| forward(BufReader::new(stderr)));
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let rx = forward(out);
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://") || w.starts_with("wss://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (child, url, rx, log)
}

/// Keeps reading `lines` on a thread, so the child never blocks on a full
/// pipe, whether or not anyone listens; the lines, as they come.
fn forward(lines: impl BufRead + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in lines.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    rx
}

/// Waits up to `patience` for a line containing `needle`; the line.
pub fn expect_line(lines: &mpsc::Receiver<String>, needle: &str, patience: Duration) -> String {
    let deadline = Instant::now() + patience;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(err) => panic!("no line with {needle:?} within {patience:?} ({err}); saw {seen:?}"),
        }
    }
}

/// A signal, by name (`INT`, `TERM`, `KILL`), to a child.
pub fn signal(child: &Child, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits up to `patience` for a child to exit; its status.
pub fn exits_within(child: Child, patience: Duration) -> ExitStatus {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let mut child = child;
    std::thread::spawn(move || {
        let _ = tx.send(child.wait().unwrap());
    });
    rx.recv_timeout(patience).unwrap_or_else(|_| {
        let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
        panic!("herald (pid {pid}) still ran {patience:?} later");
    })
}

/// SIGTERM, then its exit status.
pub fn terminate(child: &mut Child) -> ExitStatus {
    signal(child, "TERM");
    child.wait().unwrap()
}
