//! A SQLite projection applies every message exactly once across SIGKILLs:
//! the child projecting the stream is killed at random moments and restarted
//! until it has caught up; afterwards every message is in the database once.
//! The positive control (position committed apart from the writes) must be
//! caught applying messages twice.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use herald::{Bus, OutgoingMessage, Subject};
use herald_sqlite::rusqlite::Connection;

const MESSAGES: usize = 1500;

async fn fill(dir: &Path) {
    let bus = Bus::open(dir).await.unwrap();
    let subject = Subject::new("ledger.entry").unwrap();
    for chunk in 0..MESSAGES / 100 {
        let batch = (0..100)
            .map(|i| OutgoingMessage::new(subject.clone(), format!("entry-{}", chunk * 100 + i)))
            .collect();
        bus.publish_batch(batch).await.unwrap();
    }
}

/// Runs the child, killing it `kills` times at random moments, then lets it
/// finish; returns (rows, distinct seqs, total) from the database.
fn run_with_kills(dir: &Path, db: &Path, kills: usize, unsafe_mode: bool) -> (i64, i64, i64) {
    let mut killed = 0;
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..kills * 10 {
        if killed >= kills {
            break;
        }
        let mut command = Command::new(env!("CARGO_BIN_EXE_herald-projection-child"));
        command.arg(dir).arg(db);
        if unsafe_mode {
            command.env("HERALD_PROJECTION_UNSAFE", "1");
        }
        let mut child = command.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.u64(20..120)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        child.wait().unwrap();
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald-projection-child"));
    command.arg(dir).arg(db);
    if unsafe_mode {
        command.env("HERALD_PROJECTION_UNSAFE", "1");
    }
    assert!(command.status().unwrap().success(), "the last run catches up");
    let conn = Connection::open(db).unwrap();
    let count = |sql: &str| conn.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
    (
        count("SELECT COUNT(*) FROM applied"),
        count("SELECT COUNT(DISTINCT seq) FROM applied"),
        count("SELECT n FROM totals WHERE id = 1"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_is_applied_exactly_once_across_kills() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill(&data).await;
    let db = dir.path().join("projection.db");
    let kills: usize = std::env::var("HERALD_PROJECTION_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let (rows, distinct, total) = tokio::task::spawn_blocking({
        let (data, db) = (data.clone(), db.clone());
        move || run_with_kills(&data, &db, kills, false)
    })
    .await
    .unwrap();
    assert_eq!(
        (rows, distinct, total),
        (MESSAGES as i64, MESSAGES as i64, MESSAGES as i64)
    );
    let position: i64 = Connection::open(&db)
        .unwrap()
        .query_row("SELECT position FROM herald_projections", [], |r| r.get(0))
        .unwrap();
    assert_eq!(position, MESSAGES as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_test_catches_a_projection_that_stores_its_position_apart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    fill(&data).await;
    let db = dir.path().join("projection.db");
    let (rows, distinct, _) = tokio::task::spawn_blocking({
        let (data, db) = (data.clone(), db.clone());
        move || run_with_kills(&data, &db, 12, true)
    })
    .await
    .unwrap();
    assert_eq!(distinct, MESSAGES as i64, "every message got applied");
    assert!(
        rows > distinct,
        "kills between the writes and the position apply messages twice ({rows} rows)"
    );
}
