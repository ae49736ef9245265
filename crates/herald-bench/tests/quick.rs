//! The README's test command runs the benchmark's quick mode once, against a
//! real nats-server, so the benchmark keeps working: every workload on every
//! target must finish its own checks (N distinct messages consumed, the stream
//! holding exactly what was acknowledged, every live message received) and
//! the table, JSON and chart must be written.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn quick_run_measures_every_workload_on_every_target() {
    let out = tempfile::tempdir().unwrap();
    let data = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["--quick", "--seconds", "0.3", "--out"])
        .arg(out.path())
        .arg("--dir")
        .arg(data.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "herald-bench --quick failed:\n{stderr}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("report.json")).unwrap()).unwrap();
    let outcomes = report["outcomes"].as_array().unwrap();
    let targets = [
        "herald-durable",
        "herald-relaxed",
        "nats-always",
        "nats-default",
        "herald-nats",
    ];
    let workloads = ["a", "b16", "b64", "c100", "c1000", "d", "d1", "e", "f", "g50", "g2000"];
    let catching_up = ["d", "d1", "e"];
    for target in targets {
        for workload in workloads {
            let outcome = outcomes
                .iter()
                .find(|o| o["target"] == target && o["workload"] == workload)
                .unwrap_or_else(|| panic!("no outcome for {workload} on {target}"));
            assert!(
                outcome["messages"].as_u64().unwrap() > 0,
                "{workload} on {target}: {outcome}"
            );
            assert!(
                outcome["seconds"].as_f64().unwrap() > 0.0,
                "{workload} on {target}: {outcome}"
            );
            if catching_up.contains(&workload) {
                let profile = &outcome["catch_up"];
                assert!(profile["first_tenth_per_s"].as_f64().unwrap() > 0.0, "{outcome}");
                assert!(profile["last_tenth_per_s"].as_f64().unwrap() > 0.0, "{outcome}");
                assert!(profile["last_over_first"].as_f64().unwrap() > 0.0, "{outcome}");
                assert_eq!(profile["reached_s"][0].as_array().unwrap().len(), 10, "{outcome}");
            } else {
                assert!(outcome["latency"]["p99_ms"].as_f64().unwrap() > 0.0, "{outcome}");
            }
        }
        assert!(
            report["peak_rss_bytes"][target].as_u64().unwrap() > 1 << 20,
            "peak RSS of {target}"
        );
    }
    assert!(report["machine"]["fsync"]["p50_ms"].as_f64().unwrap() > 0.0);
    assert!(report["machine"]["sequential_mib_per_s"].as_f64().unwrap() > 0.0);

    let table = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    assert!(table.contains("| (a) 1 publisher | msgs/s |"), "{table}");
    assert!(table.contains("Herald durable / NATS sync=always"), "{table}");
    assert!(
        table.contains("| (d) 1 consumer catching up | last 10% / first 10% |"),
        "{table}"
    );
    assert!(table.contains("| (d1) catching up, plain loop | msgs/s |"), "{table}");
    assert!(table.contains("| (g) live, 2,000 msgs/s | p99 ms |"), "{table}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("(f) publish-to-delivery"),
        "the table goes to stdout too"
    );

    let chart = std::fs::read(out.path().join("chart.png")).unwrap();
    assert_eq!(&chart[..8], b"\x89PNG\r\n\x1a\n", "chart.png is a PNG");
    assert!(chart.len() > 10_000, "the chart has content");
    // Progress: a line per step.
    assert!(stderr.contains("[55/55]"), "{stderr}");
}

#[test]
fn a_bad_flag_is_refused_with_usage() {
    let output = Command::new(env!("CARGO_BIN_EXE_herald-bench"))
        .args(["--targets", "kafka"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid value 'kafka'"), "{stderr}");
}
