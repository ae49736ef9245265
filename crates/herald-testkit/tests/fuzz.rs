//! A short, deterministic fuzz run of every target (docs/testing.md): the
//! seed corpus, then a fixed number of mutants of it. Longer runs use
//! libFuzzer: `cargo +nightly fuzz run <target>`.

use herald_testkit::fuzz;

/// Runs `name` on `executions` mutants and fails with every crashing input.
/// The counts keep each target between 1 and 3 s in a debug build on a 2-core
/// machine: a fixed count, not a time budget, so that every run of the
/// tests tries the same inputs.
fn fuzz(name: &str, executions: u64) {
    let started = std::time::Instant::now();
    let report = fuzz::run(fuzz::target(name), executions);
    if !report.crashes.is_empty() {
        panic!("{report}");
    }
    println!("{report} ({:.1?})", started.elapsed());
}

#[test]
fn websocket_frames_are_answered_never_panic() {
    fuzz("ws_frame", 120_000);
}

#[test]
fn websocket_sessions_run_any_frames_without_panicking() {
    fuzz("ws_session", 1_000);
}

#[test]
fn http_bodies_are_refused_or_read_back_never_panic() {
    fuzz("http_body", 10_000);
}

#[test]
fn subjects_and_patterns_keep_their_rules_on_any_text() {
    fuzz("subject", 15_000);
}

#[test]
fn config_files_are_read_or_refused_never_panic() {
    fuzz("config", 300_000);
}

#[test]
fn stored_records_decode_or_are_refused_never_panic() {
    fuzz("record", 200_000);
}

/// The libFuzzer crate runs the same targets: one `[[bin]]` and one source
/// file per target here, and nothing else.
#[test]
fn every_target_has_a_libfuzzer_target_and_a_seed_corpus() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).expect("fuzz/Cargo.toml");
    let bins: Vec<&str> = manifest
        .lines()
        .filter_map(|line| line.strip_prefix("name = \""))
        .filter_map(|rest| rest.strip_suffix('"'))
        .filter(|name| *name != "herald-fuzz")
        .collect();
    let mut names: Vec<&str> = fuzz::TARGETS.iter().map(|t| t.name).collect();
    let mut listed = bins.clone();
    names.sort_unstable();
    listed.sort_unstable();
    assert_eq!(listed, names, "fuzz/Cargo.toml's targets");
    for name in names {
        let source = root.join("fuzz_targets").join(format!("{name}.rs"));
        let text = std::fs::read_to_string(&source).unwrap_or_else(|e| panic!("{}: {e}", source.display()));
        assert!(
            text.contains(&format!("herald_testkit::fuzz::targets::{name}(data)")),
            "{} calls its target",
            source.display()
        );
        let seeds = std::fs::read_dir(fuzz::corpus_dir(name)).map_or(0, |dir| dir.count());
        assert!(seeds >= 10, "{name} has {seeds} seeds");
    }
}
