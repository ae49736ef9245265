//! Fuzzing every decoder of bytes that come from outside (docs/testing.md):
//! WebSocket frames, HTTP bodies, subjects and patterns, the config file,
//! and what the engine reads back from disk.
//!
//! Each target in [`targets`] is a `fn(&[u8])` that must not panic. Two
//! drivers call them: [`run`], a small deterministic mutation fuzzer that
//! the tests run on stable Rust for a fixed number of inputs, and
//! libFuzzer through `cargo fuzz` (the `fuzz/` crate) for long runs. Both
//! start from the seed corpus under `crates/herald-testkit/fuzz-corpus/`.
//!
//! ```
//! let target = &herald_testkit::fuzz::TARGETS[0];
//! let report = herald_testkit::fuzz::run(target, 50);
//! assert!(report.crashes.is_empty(), "{report}");
//! ```

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Once;

pub mod targets;

/// A fuzz target, its seed corpus and the tokens its inputs are made of.
#[derive(Debug)]
pub struct Target {
    /// Its name: the corpus directory and the `cargo fuzz` target.
    pub name: &'static str,
    /// The function fed the inputs.
    pub run: fn(&[u8]),
    /// Pieces of valid input that random bytes would rarely hit.
    pub dictionary: &'static [&'static str],
}

/// Tokens of JSON and of the protocol's numbers, for the JSON targets.
const JSON_WORDS: &[&str] = &[
    "{",
    "}",
    "[",
    "]",
    ",",
    ":",
    "\"",
    "null",
    "true",
    "false",
    "0",
    "-1",
    "1e400",
    "0.5",
    "18446744073709551615",
    "18446744073709551616",
    "4294967296",
    "\\u0000",
    "\\ud800",
    "\"op\"",
    "\"id\"",
    "\"subject\"",
    "\"payload\"",
    "\"payload_b64\"",
    "\"headers\"",
    "\"config\"",
    "\"stream\"",
    "\"name\"",
    "\"subjects\"",
    "\"secs\"",
    "\"nanos\"",
    "\"max\"",
    "\"wait_ms\"",
    "\"settle\"",
    "\"items\"",
    "\"seq\"",
    "\"deliveries\"",
    "\"nak\"",
    "\"delay\"",
    "\"term\"",
    "\"all\"",
    "\"before_seq\"",
    "\"to\"",
    "\"ttl_ms\"",
    "\"pattern\"",
    "\"from\"",
    "\"resume\"",
    "\"reply\"",
    "\"*\"",
    "\">\"",
    "\"$kv\"",
    "\"a.*.>\"",
];

/// Tokens of subjects and patterns.
const SUBJECT_WORDS: &[&str] = &[
    ".",
    "*",
    ">",
    "$",
    "-",
    "_",
    "\n",
    " ",
    "\t",
    "..",
    ".*",
    ".>",
    "$kv.",
    "$dlq.",
    "\u{200b}",
    "\u{feff}",
    "\u{e0041}",
    "é",
    "\u{0}",
];

/// Tokens of the config file.
const CONFIG_WORDS: &[&str] = &[
    "\n",
    "=",
    "\"",
    "'",
    "[",
    "]",
    "{",
    "}",
    ",",
    "+",
    "-",
    "0",
    "0x10",
    "1e3",
    "inf",
    "nan",
    "true",
    "18446744073709551615",
    "[limits]",
    "[tls]",
    "[[tokens]]",
    "max_payload",
    "outbound_buffer",
    "header_read_timeout_ms",
    "listen",
    "\"127.0.0.1:0\"",
    "\"[::1]:7878\"",
    "sha256",
    "allow",
    "deny",
    "publish",
    "subscribe",
    "\"orders.>\"",
    "log_format",
    "\"json\"",
];

/// Tokens of the engine's records: lengths, flags and timestamps.
const RECORD_WORDS: &[&str] = &[
    "\u{1}",
    "\u{0}\u{0}",
    "\u{ff}",
    "\u{7}",
    "{\"id\":",
    "\"config\"",
    "\"outstanding\"",
    "\"next_seq\"",
    "[[1,2]]",
    "18446744073709551615",
    "\"created\"",
];

/// Every target, in the order the tests and `cargo fuzz list` name them.
pub static TARGETS: [Target; 6] = [
    Target {
        name: "ws_frame",
        run: targets::ws_frame,
        dictionary: JSON_WORDS,
    },
    Target {
        name: "ws_session",
        run: targets::ws_session,
        dictionary: JSON_WORDS,
    },
    Target {
        name: "http_body",
        run: targets::http_body,
        dictionary: JSON_WORDS,
    },
    Target {
        name: "subject",
        run: targets::subject,
        dictionary: SUBJECT_WORDS,
    },
    Target {
        name: "config",
        run: targets::config,
        dictionary: CONFIG_WORDS,
    },
    Target {
        name: "record",
        run: targets::record,
        dictionary: RECORD_WORDS,
    },
];

/// The target called `name`.
///
/// # Panics
///
/// When there is none: a test names a target that does not exist.
pub fn target(name: &str) -> &'static Target {
    TARGETS
        .iter()
        .find(|t| t.name == name)
        .unwrap_or_else(|| panic!("no fuzz target `{name}`"))
}

/// 4 KiB: the longest input the driver makes. Longer ones add time, not
/// paths, to these decoders (libFuzzer's long runs try longer ones).
const MAX_INPUT: usize = 4096;

/// An input that made a target panic.
#[derive(Debug)]
pub struct Crash {
    /// The input.
    pub input: Vec<u8>,
    /// What the panic said, and where.
    pub message: String,
    /// Where the input was saved, to reproduce it (`cargo fuzz run <target> <file>`).
    pub saved: Option<PathBuf>,
}

/// What a run did.
#[derive(Debug)]
pub struct Report {
    /// The target's name.
    pub target: &'static str,
    /// Inputs run: the corpus, then the mutants.
    pub executions: u64,
    /// Inputs in the seed corpus.
    pub corpus: usize,
    /// Inputs that panicked.
    pub crashes: Vec<Crash>,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fuzz target {}: {} executions from {} seeds, {} crashes",
            self.target,
            self.executions,
            self.corpus,
            self.crashes.len()
        )?;
        for crash in &self.crashes {
            write!(
                f,
                "\n  panicked: {}\n  input (hex): {}\n  input (text): {:?}",
                crash.message,
                hex(&crash.input),
                String::from_utf8_lossy(&crash.input)
            )?;
            if let Some(path) = &crash.saved {
                write!(f, "\n  saved to {}", path.display())?;
            }
        }
        Ok(())
    }
}

/// 5: a run stops after this many crashes; one is enough to fail a test,
/// a few show whether they share a cause.
const MAX_CRASHES: usize = 5;

/// Runs `target` on its seed corpus, then on `executions` mutants of it,
/// the same ones every time (the random generator has a fixed seed). A
/// panicking input is reported, and saved under
/// `target/fuzz-crashes/<target>/`.
///
/// # Panics
///
/// When the seed corpus cannot be read.
pub fn run(target: &Target, executions: u64) -> Report {
    let corpus = corpus(target.name);
    let mut rng = fastrand::Rng::with_seed(seed_of(target.name));
    let mut report = Report {
        target: target.name,
        executions: 0,
        corpus: corpus.len(),
        crashes: Vec::new(),
    };
    // Mutants of mutants reach further from the seeds: the latest few are kept.
    let mut recent: Vec<Vec<u8>> = Vec::new();
    let seeds = corpus.iter().cloned();
    let mutants = (0..executions).map(|_| {
        let parent = match rng.usize(0..4) {
            0 if !recent.is_empty() => recent[rng.usize(0..recent.len())].clone(),
            _ => corpus[rng.usize(0..corpus.len())].clone(),
        };
        let mut input = parent;
        for _ in 0..rng.usize(1..=4) {
            mutate(&mut input, &corpus, target.dictionary, &mut rng);
        }
        input.truncate(MAX_INPUT);
        if recent.len() < 64 {
            recent.push(input.clone());
        } else {
            recent[rng.usize(0..64)] = input.clone();
        }
        input
    });
    for input in seeds.chain(mutants) {
        report.executions += 1;
        if let Err(message) = call(target.run, &input) {
            let saved = save(target.name, &input);
            report.crashes.push(Crash { input, message, saved });
            if report.crashes.len() >= MAX_CRASHES {
                break;
            }
        }
    }
    report
}

/// The directory of `target`'s seed corpus.
pub fn corpus_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz-corpus").join(target)
}

/// The seed corpus, in file-name order (so a run is the same everywhere).
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = corpus_dir(target);
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
    let mut paths: Vec<PathBuf> = entries
        .map(|e| e.unwrap_or_else(|e| panic!("reading {}: {e}", dir.display())).path())
        .filter(|p| p.is_file())
        .collect();
    paths.sort();
    let inputs: Vec<Vec<u8>> = paths
        .iter()
        .map(|p| std::fs::read(p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display())))
        .collect();
    assert!(!inputs.is_empty(), "the seed corpus {} is empty", dir.display());
    inputs
}

/// A fixed seed per target, so that adding a target changes no other's run.
fn seed_of(name: &str) -> u64 {
    fnv(name.as_bytes())
}

/// FNV-1a: stable across Rust versions and machines, unlike the std hasher.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// One mutation of `input`.
fn mutate(input: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&str], rng: &mut fastrand::Rng) {
    let len = input.len();
    match rng.u8(0..9) {
        // Flip a bit.
        0 if len > 0 => input[rng.usize(0..len)] ^= 1 << rng.u8(0..8),
        // Set a byte, to an edge value or any.
        1 if len > 0 => {
            let edges = [0, 0x7f, 0x80, 0xff, b'"', b'\\', b'.', b'0'];
            let byte = if rng.bool() {
                edges[rng.usize(0..edges.len())]
            } else {
                rng.u8(..)
            };
            input[rng.usize(0..len)] = byte;
        }
        // Insert random bytes.
        2 => {
            let at = rng.usize(0..=len);
            let bytes: Vec<u8> = (0..rng.usize(1..=4)).map(|_| rng.u8(..)).collect();
            input.splice(at..at, bytes);
        }
        // Delete a range.
        3 if len > 0 => {
            let start = rng.usize(0..len);
            let end = rng.usize(start + 1..=len.min(start + 16));
            input.drain(start..end);
        }
        // Duplicate a range somewhere else.
        4 if len > 0 => {
            let start = rng.usize(0..len);
            let end = rng.usize(start + 1..=len.min(start + 32));
            let piece = input[start..end].to_vec();
            let at = rng.usize(0..=len);
            input.splice(at..at, piece);
        }
        // Splice: this input's start, another's end.
        5 => {
            let other = &corpus[rng.usize(0..corpus.len())];
            let cut = rng.usize(0..=len);
            let from = rng.usize(0..=other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
        // Replace a range with a dictionary token.
        6 if len > 0 && !dictionary.is_empty() => {
            let start = rng.usize(0..len);
            let end = rng.usize(start..=len.min(start + 8));
            let word = dictionary[rng.usize(0..dictionary.len())].as_bytes();
            input.splice(start..end, word.iter().copied());
        }
        // Cut the end off.
        7 if len > 0 => input.truncate(rng.usize(0..len)),
        // Insert a dictionary token.
        _ if !dictionary.is_empty() => {
            let at = rng.usize(0..=len);
            let word = dictionary[rng.usize(0..dictionary.len())].as_bytes();
            input.splice(at..at, word.iter().copied());
        }
        _ => input.push(rng.u8(..)),
    }
}

std::thread_local! {
    /// Set while a target runs on this thread: its panics are reported by
    /// [`run`], not printed by the panic hook.
    static IN_TARGET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    /// What the first panic of a target on this thread said, and where.
    /// Kept by the hook, so that a panic caught on the way (by a task
    /// runtime around a spawned task) is not missed.
    static FIRST_PANIC: std::cell::RefCell<Option<String>> = const { std::cell::RefCell::new(None) };
}

/// Calls `run` on `input`; a panic is the error, with its message and place.
///
/// The driver catches panics to report the input that caused them (and go
/// on to find others), not to hide them: every one fails the run's test.
fn call(run: fn(&[u8]), input: &[u8]) -> Result<(), String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_TARGET.with(std::cell::Cell::get) {
                let place = info.location().map(|l| format!(" at {l}")).unwrap_or_default();
                let said = format!("{}{place}", payload_text(info.payload()));
                FIRST_PANIC.with(|first| {
                    first.borrow_mut().get_or_insert(said);
                });
            } else {
                previous(info);
            }
        }));
    });
    FIRST_PANIC.with(|first| first.borrow_mut().take());
    IN_TARGET.with(|flag| flag.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| run(input)));
    IN_TARGET.with(|flag| flag.set(false));
    match FIRST_PANIC.with(|first| first.borrow_mut().take()) {
        Some(said) => Err(said),
        None if outcome.is_err() => Err("a panic the hook did not see".to_owned()),
        None => Ok(()),
    }
}

fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
    match (payload.downcast_ref::<&str>(), payload.downcast_ref::<String>()) {
        (Some(text), _) => (*text).to_owned(),
        (_, Some(text)) => text.clone(),
        _ => "a panic without a message".to_owned(),
    }
}

/// Saves a crashing input under the target directory; `None` if it cannot.
fn save(target: &str, input: &[u8]) -> Option<PathBuf> {
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target"));
    let dir = target_dir.join("fuzz-crashes").join(target);
    std::fs::create_dir_all(&dir).ok()?;
    let path = dir.join(format!("crash-{:016x}", fnv(input)));
    std::fs::write(&path, input).ok()?;
    Some(path)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
