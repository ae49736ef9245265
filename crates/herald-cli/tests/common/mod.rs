//! Starting and stopping `herald serve` for the CLI's tests.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

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
pub fn serve_with(mut command: Command) -> (Child, String) {
    let mut child = command.stdout(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    // Keep reading what it says later, so it never blocks on a full pipe.
    std::thread::spawn(move || for _ in out.lines() {});
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("ws://") || w.starts_with("wss://"))
        .unwrap_or_else(|| panic!("no URL in {line:?}"))
        .to_owned();
    (child, url)
}

/// SIGTERM, then its exit status.
pub fn terminate(child: &mut Child) -> ExitStatus {
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    child.wait().unwrap()
}
