//! The `herald` client commands as a user runs them: the binary on a temp
//! data directory (`--data-dir`), and against a running `herald serve`
//! (`--url`), checking both the tables for people and the JSON for scripts.
#![allow(clippy::unwrap_used)]

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStderr, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use common::herald;
use serde_json::Value;

/// A safety net only: how long a command may run before the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(60);

/// The client commands on one bus: a data directory or a server's URL.
struct Cli {
    place: [String; 2],
}

impl Cli {
    fn dir(dir: &Path) -> Self {
        Cli {
            place: ["--data-dir".into(), dir.display().to_string()],
        }
    }

    fn url(url: &str) -> Self {
        Cli {
            place: ["--url".into(), url.into()],
        }
    }

    fn spawn(&self, args: &[&str]) -> Child {
        herald()
            .args(args)
            .args(&self.place)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs a command with `stdin` as its input.
    fn output_with(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = self.spawn(args);
        child.stdin.take().unwrap().write_all(stdin).unwrap();
        finish(child)
    }

    /// Runs a command that must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        self.ok_with(args, b"")
    }

    fn ok_with(&self, args: &[&str], stdin: &[u8]) -> String {
        let output = self.output_with(args, stdin);
        assert!(
            output.status.success(),
            "herald {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a command that must fail; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let output = self.output_with(args, b"");
        assert!(!output.status.success(), "herald {args:?} succeeded");
        String::from_utf8(output.stderr).unwrap()
    }

    /// Runs a command with `--json`; its one document.
    fn json(&self, args: &[&str]) -> Value {
        let out = self.ok(&[args, &["--json"]].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Runs a command with `--json`; its JSON lines.
    fn json_lines(&self, args: &[&str]) -> Vec<Value> {
        let out = self.ok(&[args, &["--json"]].concat());
        out.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
    }

    fn publish(&self, subject: &str, payload: &str) -> Value {
        self.json(&["pub", subject, payload])
    }
}

/// Waits for a child to exit and collects its output, or kills it past
/// [`PATIENCE`] and fails.
fn finish(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || tx.send(child.wait_with_output()));
    match rx.recv_timeout(PATIENCE) {
        Ok(output) => output.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").arg("-KILL").arg(pid.to_string()).status();
            panic!("herald (pid {pid}) did not finish within {PATIENCE:?}");
        }
    }
}

/// Reads `stderr` until a line containing `needle`: the command is ready.
fn wait_for_line(stderr: &mut BufReader<ChildStderr>, needle: &str) {
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "stderr ended before {needle:?}: {seen}"
        );
        if line.contains(needle) {
            return;
        }
        seen.push_str(&line);
    }
}

fn seqs(messages: &[Value]) -> Vec<u64> {
    messages.iter().map(|m| m["seq"].as_u64().unwrap()).collect()
}

fn payloads(messages: &[Value]) -> Vec<&str> {
    messages.iter().map(|m| m["payload"].as_str().unwrap()).collect()
}

/// A data directory with a stream `orders` capturing `orders.>`.
fn orders() -> (tempfile::TempDir, Cli) {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::dir(dir.path());
    cli.ok(&["streams", "create", "orders", "--subjects", "orders.>"]);
    (dir, cli)
}

#[test]
fn pub_takes_the_payload_from_an_argument_a_file_or_stdin_and_reports_duplicates() {
    let (dir, cli) = orders();
    assert_eq!(
        cli.ok(&["pub", "orders.created", "one"]),
        "published to orders at seq 1\n"
    );

    let file = dir.path().join("payload.txt");
    std::fs::write(&file, "two").unwrap();
    cli.ok(&["pub", "orders.created", "--file", file.to_str().unwrap()]);
    cli.ok_with(&["pub", "orders.created"], b"three");
    cli.ok_with(
        &[
            "pub",
            "orders.paid",
            "-",
            "--header",
            "tenant=eu",
            "-H",
            "trace=t-1",
            "--id",
            "pay-1",
        ],
        b"four",
    );

    let again = cli.json(&["pub", "orders.paid", "four again", "--id", "pay-1"]);
    assert_eq!(again["duplicate"], true);
    assert_eq!(
        (again["stream"].as_str(), again["seq"].as_u64()),
        (Some("orders"), Some(4))
    );
    assert!(
        cli.ok(&["pub", "orders.paid", "four", "--id", "pay-1"])
            .starts_with("duplicate: orders seq 4")
    );

    let messages = cli.json_lines(&["tail", "orders", "--from-seq", "1"]);
    assert_eq!(payloads(&messages), ["one", "two", "three", "four"]);
    assert_eq!(messages[3]["id"], "pay-1");
    assert_eq!(messages[3]["headers"]["tenant"], "eu");
    assert_eq!(messages[3]["headers"]["trace"], "t-1");

    // An expectation that does not hold writes nothing and says why.
    let stderr = cli.fails(&["pub", "orders.paid", "five", "--expect-last-seq", "1"]);
    assert!(stderr.contains("expected 1, actual 4"), "{stderr}");
    assert_eq!(
        cli.json(&["pub", "orders.paid", "five", "--expect-last-seq", "4"])["seq"],
        5
    );
}

#[test]
fn streams_ls_and_info_print_tables_for_people_and_json_for_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::dir(dir.path());
    let created = cli.json(&[
        "streams",
        "create",
        "orders",
        "--subjects",
        "orders.>,refunds.*",
        "--max-msgs",
        "1000",
        "--max-age",
        "1h",
        "--max-bytes",
        "64MiB",
    ]);
    assert_eq!(created["config"]["max_msgs"], 1000);
    cli.publish("orders.created", "o1");
    cli.publish("refunds.eu", "r1");

    let table = cli.ok(&["streams", "ls"]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SUBJECTS", "MESSAGES", "BYTES", "FIRST", "LAST", "CONSUMERS"]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(row[..3], ["orders", "orders.>,refunds.*", "2"]);
    assert_eq!(row[row.len() - 3..], ["1", "2", "0"]);

    let listed = cli.json(&["streams", "ls"]);
    let orders = &listed.as_array().unwrap()[0];
    assert_eq!(orders["config"]["name"], "orders");
    assert_eq!(
        orders["config"]["subjects"],
        serde_json::json!(["orders.>", "refunds.*"])
    );
    assert_eq!(orders["config"]["max_age"]["secs"], 3600);
    assert_eq!(orders["config"]["max_bytes"], 64 << 20);
    assert_eq!(orders["state"]["messages"], 2);

    let info = cli.json(&["streams", "info", "orders"]);
    assert_eq!(
        (info["state"]["first_seq"].as_u64(), info["state"]["last_seq"].as_u64()),
        (Some(1), Some(2))
    );
    let details = cli.ok(&["streams", "info", "orders"]);
    for expected in [
        "name:",
        "orders",
        "max age:",
        "1h",
        "max bytes:",
        "64.0 MiB",
        "messages:",
    ] {
        assert!(details.contains(expected), "{expected:?} missing from {details}");
    }
}

#[test]
fn tail_starts_at_a_seq_a_time_or_the_last_n_and_filters_by_subject() {
    let (_dir, cli) = orders();
    for i in 1..=12 {
        let subject = if i % 2 == 1 { "orders.odd" } else { "orders.even" };
        cli.publish(subject, &format!("m{i}"));
    }
    let tail = |args: &[&str]| seqs(&cli.json_lines(&[&["tail", "orders"], args].concat()));

    assert_eq!(tail(&["--from-seq", "10"]), [10, 11, 12]);
    assert_eq!(tail(&["--last", "3"]), [10, 11, 12]);
    assert_eq!(tail(&[]), (3..=12).collect::<Vec<_>>(), "the default is the last 10");
    assert_eq!(tail(&["--last", "2", "--subject", "orders.odd"]), [9, 11]);
    assert_eq!(
        tail(&["--from-seq", "4", "--subject", "orders.even", "--count", "2"]),
        [4, 6]
    );
    assert_eq!(tail(&["--since", "1h"]).len(), 12);

    let fifth = &cli.json_lines(&["tail", "orders", "--from-seq", "5", "--count", "1"])[0];
    let nanos = i128::from(fifth["time"].as_u64().unwrap());
    let since = time::OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    assert_eq!(tail(&["--since", &since]), (5..=12).collect::<Vec<_>>());
    assert_eq!(tail(&["--since", "2999-01-01T00:00:00Z"]), Vec::<u64>::new());

    // For people: one line per message.
    assert_eq!(
        cli.ok(&["tail", "orders", "--last", "2"]),
        "[orders 11] orders.odd  m11\n[orders 12] orders.even  m12\n"
    );
}

#[test]
fn consume_prints_and_acks_deliveries_and_the_ack_floor_moves() {
    let (_dir, cli) = orders();
    for i in 1..=5 {
        cli.publish("orders.created", &format!("o{i}"));
    }
    let created = cli.json(&[
        "consumers",
        "create",
        "orders",
        "billing",
        "--filter",
        "orders.>",
        "--ack-wait",
        "1m",
    ]);
    assert_eq!(created["config"]["ack_wait"]["secs"], 60);

    let table = cli.ok(&["consumers", "ls", "orders"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap()
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(
        header,
        [
            "STREAM",
            "NAME",
            "FILTER",
            "PENDING",
            "IN FLIGHT",
            "ACK FLOOR",
            "LAG",
            "DEAD"
        ]
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(row[..6], ["orders", "billing", "orders.>", "5", "0", "0"]);

    assert_eq!(
        cli.ok(&["consume", "orders", "billing", "--count", "3"]),
        "[orders 1] orders.created  o1\n[orders 2] orders.created  o2\n[orders 3] orders.created  o3\n"
    );
    let info = cli.json(&["consumers", "info", "orders", "billing"]);
    assert_eq!(
        (info["ack_floor"].as_u64(), info["pending"].as_u64()),
        (Some(3), Some(2))
    );
    assert!(
        cli.ok(&["consumers", "info", "orders", "billing"])
            .contains("ack floor:        3")
    );

    let deliveries = cli.json_lines(&["consume", "orders", "billing", "--count", "2"]);
    let messages: Vec<Value> = deliveries.iter().map(|d| d["message"].clone()).collect();
    assert_eq!(seqs(&messages), [4, 5]);
    assert_eq!(deliveries[0]["deliveries"], 1);
    assert_eq!(cli.json(&["consumers", "info", "orders", "billing"])["ack_floor"], 5);

    // Nothing left: `--wait` ends the command instead of waiting for more.
    assert_eq!(cli.ok(&["consume", "orders", "billing", "--wait", "0s"]), "");

    let stderr = cli.fails(&["consume", "orders", "shipping", "--count", "1"]);
    assert!(stderr.contains("consumer `shipping` not found"), "{stderr}");
    let first = cli.ok(&["consume", "orders", "shipping", "--count", "1", "--create"]);
    assert_eq!(first, "[orders 1] orders.created  o1\n");
}

#[test]
fn dead_letters_are_listed_replayed_and_purged() {
    let (_dir, cli) = orders();
    cli.publish("orders.created", "poison");
    cli.publish("orders.created", "fine");
    cli.ok(&["consumers", "create", "orders", "fragile", "--max-deliver", "1"]);

    // A nak past max_deliver: the next fetch dead-letters it and delivers the rest.
    assert_eq!(
        cli.ok(&["consume", "orders", "fragile", "--count", "1", "--nak"]),
        "[orders 1] orders.created  poison\n"
    );
    assert_eq!(
        cli.ok(&["consume", "orders", "fragile", "--wait", "0s"]),
        "[orders 2] orders.created  fine\n"
    );
    let letters = cli.json(&["dlq", "ls", "orders", "fragile"]);
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0]["payload"], "poison");
    assert_eq!(letters[0]["headers"]["herald-dlq-seq"], "1");
    assert_eq!(letters[0]["headers"]["herald-dlq-subject"], "orders.created");
    let table = cli.ok(&["dlq", "ls", "orders", "fragile"]);
    assert!(table.starts_with("SEQ"), "{table}");
    assert!(
        table.contains("max_deliver reached") && table.contains("poison"),
        "{table}"
    );

    // Replayed to its subject: a new message in the stream, the letter gone.
    assert_eq!(cli.json(&["dlq", "replay", "orders", "fragile"])["replayed"], 1);
    assert_eq!(cli.json(&["dlq", "ls", "orders", "fragile"]), serde_json::json!([]));
    let replayed = cli.json_lines(&["tail", "orders", "--last", "1"]);
    assert_eq!((seqs(&replayed), payloads(&replayed)), (vec![3], vec!["poison"]));

    // `--term` dead-letters at once, with the reason given.
    cli.ok(&["consume", "orders", "fragile", "--count", "1", "--term", "cannot parse"]);
    let letters = cli.json(&["dlq", "ls", "orders", "fragile", "--limit", "10"]);
    assert_eq!(letters[0]["headers"]["herald-dlq-reason"], "cannot parse");
    assert_eq!(
        cli.ok(&["dlq", "purge", "orders", "fragile"]),
        "purged 1 dead letters of fragile on orders\n"
    );
    assert_eq!(cli.json(&["dlq", "ls", "orders", "fragile"]), serde_json::json!([]));

    let stderr = cli.fails(&["dlq", "ls", "orders", "nobody"]);
    assert!(stderr.contains("consumer `nobody` not found"), "{stderr}");
}

#[test]
fn streams_purge_and_rm_and_consumers_reset_and_rm() {
    let (_dir, cli) = orders();
    for i in 1..=6 {
        let subject = if i % 2 == 1 { "orders.odd" } else { "orders.even" };
        cli.publish(subject, &format!("m{i}"));
    }
    // The odd ones are 1, 3 and 5: keeping the last leaves 5.
    assert_eq!(
        cli.ok(&["streams", "purge", "orders", "--subject", "orders.odd", "--keep", "1"]),
        "purged 2 messages from orders\n"
    );
    assert_eq!(
        seqs(&cli.json_lines(&["tail", "orders", "--from-seq", "1"])),
        [2, 4, 5, 6]
    );
    assert_eq!(cli.json(&["streams", "purge", "orders", "--keep", "2"])["purged"], 2);
    assert_eq!(seqs(&cli.json_lines(&["tail", "orders", "--from-seq", "1"])), [5, 6]);

    cli.ok(&["consumers", "create", "orders", "audit"]);
    assert_eq!(seqs(&consumed(&cli, "audit", 2)), [5, 6]);
    let reset = cli.json(&["consumers", "reset", "orders", "audit", "--to-seq", "1"]);
    assert_eq!(reset["pending"], 2);
    assert_eq!(
        seqs(&consumed(&cli, "audit", 2)),
        [5, 6],
        "delivered again after the reset"
    );
    cli.json(&["consumers", "reset", "orders", "audit", "--to-time", "1h"]);
    assert_eq!(seqs(&consumed(&cli, "audit", 1)), [5]);

    assert_eq!(
        cli.ok(&["consumers", "rm", "orders", "audit"]),
        "deleted consumer audit of orders\n"
    );
    assert_eq!(cli.json(&["consumers", "ls", "orders"]), serde_json::json!([]));
    cli.fails(&["consumers", "info", "orders", "audit"]);

    assert!(
        cli.ok(&["streams", "rm", "orders"])
            .starts_with("deleted stream orders: 2 messages; no consumers"),
        "the consumer was deleted before"
    );
    let stderr = cli.fails(&["streams", "info", "orders"]);
    assert!(stderr.contains("stream `orders` not found"), "{stderr}");
}

#[test]
fn streams_rm_says_what_it_deleted_and_which_dead_letters_it_kept() {
    let setup = || {
        let (dir, cli) = orders();
        for i in 1..=3 {
            cli.publish("orders.created", &format!("o{i}"));
        }
        cli.ok(&["consumers", "create", "orders", "billing"]);
        cli.ok(&["consumers", "create", "orders", "audit"]);
        cli.ok(&["consume", "orders", "billing", "--count", "1", "--term", "cannot parse"]);
        (dir, cli)
    };
    let dead_letter_streams = ["$dlq-orders-audit", "$dlq-orders-billing"];

    let (_dir, cli) = setup();
    let removed = cli.json(&["streams", "rm", "orders"]);
    assert_eq!(removed["deleted"], "orders");
    assert_eq!(removed["messages"], 3);
    assert_eq!(removed["consumers"], serde_json::json!(["audit", "billing"]));
    // Whatever the backend does with them, the report says it as it is.
    let names = |key: &str| -> Vec<String> {
        let list = removed[key].as_array().unwrap();
        list.iter().map(|d| d["stream"].as_str().unwrap().to_owned()).collect()
    };
    let (deleted, kept) = (names("dead_letters_deleted"), names("dead_letters_kept"));
    let mut all = [deleted.clone(), kept.clone()].concat();
    all.sort();
    assert_eq!(all, dead_letter_streams);
    for name in &deleted {
        let stderr = cli.fails(&["streams", "info", name]);
        assert!(stderr.contains("not found"), "{name}: {stderr}");
    }
    for name in &kept {
        cli.ok(&["streams", "info", name]);
    }
    let billing = [
        removed["dead_letters_deleted"].clone(),
        removed["dead_letters_kept"].clone(),
    ]
    .iter()
    .flat_map(|list| list.as_array().unwrap().clone())
    .find(|d| d["consumer"] == "billing")
    .unwrap();
    assert_eq!(billing["messages"], 1);

    let (_dir, cli) = setup();
    let text = cli.ok(&["streams", "rm", "orders"]);
    let first = text.lines().next().unwrap();
    assert!(
        first.starts_with("deleted stream orders: 3 messages; consumers audit, billing"),
        "{text}"
    );
    for name in dead_letter_streams {
        let kept = cli.output_with(&["streams", "info", name], b"").status.success();
        let line = if kept {
            text.lines().nth(1).unwrap_or_default()
        } else {
            first
        };
        assert!(
            line.contains(name),
            "{name} (kept: {kept}) not where it belongs in {text}"
        );
    }
}

#[test]
fn streams_info_and_ls_say_in_a_table_what_their_json_says() {
    let dir = tempfile::tempdir().unwrap();
    let cli = Cli::dir(dir.path());
    // max_msgs_per_subject keeps a subject index without `subject_index` being set.
    cli.ok(&["streams", "create", "kv", "--max-msgs-per-subject", "1"]);
    cli.ok(&["consumers", "create", "kv", "watcher"]);
    cli.publish("kv.a", "1");

    let json = cli.json(&["streams", "info", "kv"]);
    let details = cli.ok(&["streams", "info", "kv"]);
    let cell = |name: &str| -> String {
        let line = details.lines().find(|l| l.starts_with(&format!("{name}:"))).unwrap();
        line.split_once(':').unwrap().1.trim().to_owned()
    };
    assert_eq!(json["config"]["subject_index"], false);
    assert!(cell("subject index").starts_with("false"), "{details}");
    assert_eq!(json["consumers"], serde_json::json!(["watcher"]));
    assert_eq!(cell("consumers"), "watcher");
    assert_eq!(
        cell("max msgs per subject"),
        json["config"]["max_msgs_per_subject"].to_string()
    );
    assert_eq!(cell("messages"), json["state"]["messages"].to_string());

    let listed = cli.json(&["streams", "ls"]);
    let table = cli.ok(&["streams", "ls"]);
    for stream in listed.as_array().unwrap() {
        let name = stream["config"]["name"].as_str().unwrap();
        let row: Vec<&str> = table
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|cells| cells[0] == name)
            .unwrap();
        let consumers = stream["consumers"].as_array().unwrap().len();
        assert_eq!(row[row.len() - 1], consumers.to_string(), "{name} in {table}");
    }
}

/// The messages `consume --count n` delivers.
fn consumed(cli: &Cli, consumer: &str, n: u32) -> Vec<Value> {
    let count = n.to_string();
    cli.json_lines(&["consume", "orders", consumer, "--count", &count])
        .into_iter()
        .map(|d| d["message"].clone())
        .collect()
}

#[test]
fn unknown_streams_and_missing_data_directories_are_clear_errors() {
    let (dir, cli) = orders();
    for args in [
        &["tail", "nope"][..],
        &["streams", "info", "nope"],
        &["streams", "purge", "nope"],
        &["consumers", "ls", "nope"],
        &["consume", "nope", "c", "--count", "1"],
    ] {
        let stderr = cli.fails(args);
        assert!(stderr.contains("stream `nope` not found"), "{args:?}: {stderr}");
    }
    let stderr = cli.fails(&["pub", "orders..bad", "x"]);
    assert!(stderr.starts_with("herald: "), "{stderr}");

    let missing = Cli::dir(&dir.path().join("typo"));
    let stderr = missing.fails(&["streams", "ls"]);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!dir.path().join("typo").exists(), "a mistyped directory is not created");
}

#[test]
fn a_flag_that_does_not_parse_is_named_with_the_forms_it_takes() {
    let (_dir, cli) = orders();
    for (args, expected) in [
        (
            &["tail", "orders", "--since", "yesterday"][..],
            "'--since <TIME>': `yesterday` is not a time: give an RFC 3339 time (2026-03-01T12:00:00Z",
        ),
        (
            &[
                "consumers",
                "create",
                "orders",
                "c",
                "--start-time",
                "2026-02-30T00:00:00Z",
            ],
            "'--start-time <TIME>': `2026-02-30T00:00:00Z` is not a time",
        ),
        (
            &["streams", "create", "big", "--max-payload", "1TiB"],
            "'--max-payload <SIZE>': `1TiB` is more than a stream accepts: at most 64.0 MiB",
        ),
    ] {
        let stderr = cli.fails(args);
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        for leak in ["component", "integral", "invalid digit"] {
            assert!(!stderr.contains(leak), "{args:?}: {stderr}");
        }
    }
    let stderr = String::from_utf8(
        herald()
            .args(["serve", "--max-payload", "lots"])
            .output()
            .unwrap()
            .stderr,
    )
    .unwrap();
    assert!(
        stderr.contains("'--max-payload <SIZE>': `lots` is not a size; write it like 1048576, 512KiB or 64MiB"),
        "{stderr}"
    );
}

#[test]
fn client_commands_work_against_a_running_server() {
    let data = tempfile::tempdir().unwrap();
    let (mut server, url) = common::serve(data.path(), [] as [&str; 0]);
    let cli = Cli::url(&url);
    cli.ok(&["streams", "create", "orders", "--subjects", "orders.>"]);

    // A live subscription sees what is published once it is subscribed.
    let mut sub = cli.spawn(&["sub", "orders.*", "--count", "3"]);
    let mut stderr = BufReader::new(sub.stderr.take().unwrap());
    wait_for_line(&mut stderr, "subscribed to orders.*");
    for i in 1..=3 {
        assert_eq!(cli.publish("orders.created", &format!("o{i}"))["seq"], i);
    }
    let output = finish(sub);
    assert!(output.status.success());
    assert_eq!(
        String::from_utf8(output.stdout).unwrap(),
        "[orders 1] orders.created  o1\n[orders 2] orders.created  o2\n[orders 3] orders.created  o3\n"
    );

    // `tail --follow` replays the last N, then follows.
    let mut tail = cli.spawn(&["tail", "orders", "--last", "2", "--follow", "--count", "3", "--json"]);
    let mut stderr = BufReader::new(tail.stderr.take().unwrap());
    wait_for_line(&mut stderr, "following orders");
    cli.publish("orders.paid", "p4");
    let output = finish(tail);
    let followed: Vec<Value> = String::from_utf8(output.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(seqs(&followed), [2, 3, 4]);
    assert_eq!(payloads(&followed), ["o2", "o3", "p4"]);

    let deliveries = cli.json_lines(&["consume", "orders", "worker", "--create", "--count", "4"]);
    assert_eq!(deliveries.len(), 4);
    assert_eq!(cli.json(&["consumers", "info", "orders", "worker"])["ack_floor"], 4);
    assert_eq!(cli.json(&["streams", "info", "orders"])["state"]["messages"], 4);

    // The server holds the data directory: opening it directly says what to do.
    let stderr = Cli::dir(data.path()).fails(&["streams", "ls"]);
    assert!(stderr.contains("is a server running on it? use --url"), "{stderr}");

    assert!(common::terminate(&mut server).success());
    let stderr = cli.fails(&["streams", "ls"]);
    assert!(stderr.contains("no Herald server answered"), "{stderr}");
}

#[test]
fn a_server_with_access_tokens_takes_the_token_from_a_flag_or_the_environment() {
    let data = tempfile::tempdir().unwrap();
    let token = herald().args(["token", "cli", "--admin"]).output().unwrap();
    assert!(token.status.success());
    let config = String::from_utf8(token.stdout).unwrap();
    // The second line is `# <secret>`; the whole output is valid TOML.
    let secret = config.lines().nth(1).unwrap().trim_start_matches("# ").to_owned();
    let config_file = data.path().join("herald.toml");
    std::fs::write(&config_file, &config).unwrap();
    let (mut server, url) = common::serve(
        &data.path().join("data"),
        [OsStr::new("--config"), config_file.as_os_str()],
    );
    let cli = Cli::url(&url);

    let stderr = cli.fails(&["streams", "ls"]);
    assert!(stderr.contains("refused"), "{stderr}");
    cli.ok(&["streams", "create", "orders", "--token", &secret]);
    let output = herald()
        .args(["streams", "ls", "--json", "--url", &url])
        .env("HERALD_TOKEN", &secret)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listed[0]["config"]["name"], "orders");
    assert!(common::terminate(&mut server).success());
}

#[test]
fn a_token_made_without_patterns_may_neither_publish_nor_read() {
    let data = tempfile::tempdir().unwrap();
    let make = |args: &[&str]| {
        let made = herald().arg("token").args(args).output().unwrap();
        assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
        let text = String::from_utf8(made.stdout).unwrap();
        let secret = text.lines().nth(1).unwrap().trim_start_matches("# ").to_owned();
        (text, secret)
    };
    let (admin, admin_secret) = make(&["ops", "--admin"]);
    let (narrow, narrow_secret) = make(&["bare"]);
    let (writer, writer_secret) = make(&["writer", "--publish", "orders.>"]);
    assert!(narrow.contains("may only list and inspect"), "{narrow}");
    assert!(writer.contains("publish to orders.>"), "{writer}");
    let config_file = data.path().join("herald.toml");
    std::fs::write(&config_file, format!("{admin}\n{narrow}\n{writer}\n")).unwrap();
    let (mut server, url) = common::serve(
        &data.path().join("data"),
        [OsStr::new("--config"), config_file.as_os_str()],
    );
    let cli = Cli::url(&url);
    cli.ok(&["streams", "create", "orders", "--token", &admin_secret]);
    cli.ok(&["pub", "orders.1", "by ops", "--token", &admin_secret]);

    // The bare token: no publish, no read, though it may look.
    let refused = cli.fails(&["pub", "orders.2", "x", "--token", &narrow_secret]);
    assert!(refused.contains("may not"), "{refused}");
    let refused = cli.fails(&["tail", "orders", "--token", &narrow_secret]);
    assert!(refused.contains("may not"), "{refused}");
    let refused = cli.fails(&["sub", "orders.>", "--count", "1", "--token", &narrow_secret]);
    assert!(refused.contains("may not"), "{refused}");
    cli.ok(&["streams", "ls", "--token", &narrow_secret]);
    // The writer: its pattern only, and no reading.
    cli.ok(&["pub", "orders.2", "by writer", "--token", &writer_secret]);
    cli.fails(&["pub", "payments.1", "x", "--token", &writer_secret]);
    cli.fails(&["tail", "orders", "--token", &writer_secret]);
    let held = cli.json(&["streams", "info", "orders", "--token", &admin_secret]);
    assert_eq!(held["state"]["messages"], 2);
    assert!(common::terminate(&mut server).success());
}

#[test]
fn a_server_without_auto_create_refuses_a_publish_no_stream_captures() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (mut server, url) = common::serve(&data, ["--no-auto-create"]);
    let cli = Cli::url(&url);
    let stderr = cli.fails(&["pub", "ordrs.created", "a typo"]);
    assert!(
        stderr.contains("no stream captures subject `ordrs.created`") && stderr.contains("herald streams create"),
        "{stderr}"
    );
    assert_eq!(
        cli.json(&["streams", "ls"]),
        serde_json::json!([]),
        "no stream was made"
    );
    cli.ok(&["streams", "create", "orders", "--subjects", "orders.>"]);
    assert_eq!(cli.publish("orders.created", "o1")["seq"], 1);
    assert!(common::terminate(&mut server).success());

    // The config file says the same; the environment beats it.
    let file = dir.path().join("herald.toml");
    std::fs::write(&file, "auto_create_streams = false\n").unwrap();
    let served = |env: Option<&str>| {
        let mut command = herald();
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(&file)
            .arg("--data-dir")
            .arg(&data);
        if let Some(env) = env {
            command.env("HERALD_NO_AUTO_CREATE", env);
        }
        common::serve_with(command)
    };
    let (mut server, url) = served(None);
    Cli::url(&url).fails(&["pub", "ordrs.created", "a typo"]);
    assert!(common::terminate(&mut server).success());
    let (mut server, url) = served(Some("false"));
    let cli = Cli::url(&url);
    assert_eq!(cli.publish("ordrs.created", "a typo")["stream"], "ordrs");
    assert!(common::terminate(&mut server).success());

    // Without any of them, a publish makes a stream named after the subject's first token.
    let (mut server, url) = common::serve(&data, [] as [&str; 0]);
    let cli = Cli::url(&url);
    assert_eq!(cli.publish("payments.sent", "p1")["stream"], "payments");
    assert!(common::terminate(&mut server).success());
}
