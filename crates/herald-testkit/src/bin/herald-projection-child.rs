//! The child process of the projection kill test (`tests/projection_kill.rs`).
//!
//! `herald-projection-child DATA_DIR SQLITE_FILE` opens the bus and projects
//! stream `ledger` into SQLite: each message inserts a row into `applied` and
//! bumps `totals.n`, in small batches, until the projection has caught up;
//! then it exits 0. The parent kills it with SIGKILL at random moments.
//!
//! With `HERALD_PROJECTION_UNSAFE=1` it commits its writes and its position in
//! two transactions, with a pause between: the positive control, which the
//! test must catch applying messages twice.

use herald::{Bus, ReadRange};
use herald_sqlite::Projection;
use herald_sqlite::rusqlite::{Connection, params};

fn main() {
    let mut args = std::env::args().skip(1);
    let (dir, db) = match (args.next(), args.next()) {
        (Some(dir), Some(db)) => (dir, db),
        _ => panic!("usage: herald-projection-child DATA_DIR SQLITE_FILE"),
    };
    let unsafe_mode = std::env::var_os("HERALD_PROJECTION_UNSAFE").is_some();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime starts");
    runtime.block_on(async move {
        let bus = Bus::open(&dir).await.expect("the bus opens");
        let conn = Connection::open(&db).expect("sqlite opens");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS applied (seq INTEGER NOT NULL, payload BLOB NOT NULL);
             CREATE TABLE IF NOT EXISTS totals (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);
             INSERT OR IGNORE INTO totals VALUES (1, 0);",
        )
        .expect("tables");
        if unsafe_mode {
            run_unsafe(&bus, conn).await;
            return;
        }
        let mut projection = Projection::open(conn, "ledger-totals", "ledger")
            .expect("projection opens")
            .batch_size(7);
        projection
            .catch_up(&bus, |tx, message| {
                tx.execute(
                    "INSERT INTO applied (seq, payload) VALUES (?1, ?2)",
                    params![message.seq as i64, &message.payload[..]],
                )?;
                tx.execute("UPDATE totals SET n = n + 1 WHERE id = 1", [])?;
                Ok(())
            })
            .await
            .expect("the projection catches up");
    });
}

/// Writes, then (separately, after a pause) the position: not exactly once.
async fn run_unsafe(bus: &Bus, conn: Connection) {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS herald_projections (name TEXT PRIMARY KEY, stream TEXT, position INTEGER)",
    )
    .expect("positions");
    loop {
        let position: i64 = conn
            .query_row(
                "SELECT COALESCE((SELECT position FROM herald_projections WHERE name = 'ledger-totals'), 0)",
                [],
                |r| r.get(0),
            )
            .expect("position");
        let messages = bus
            .read("ledger", ReadRange::from_seq(position as u64 + 1, 7))
            .await
            .expect("read");
        let Some(last) = messages.last().map(|m| m.seq) else {
            return;
        };
        for message in &messages {
            conn.execute(
                "INSERT INTO applied (seq, payload) VALUES (?1, ?2)",
                params![message.seq as i64, &message.payload[..]],
            )
            .expect("insert");
            conn.execute("UPDATE totals SET n = n + 1 WHERE id = 1", [])
                .expect("total");
        }
        std::thread::sleep(std::time::Duration::from_millis(3));
        conn.execute(
            "INSERT INTO herald_projections VALUES ('ledger-totals', 'ledger', ?1)
             ON CONFLICT(name) DO UPDATE SET position = excluded.position",
            [last as i64],
        )
        .expect("position");
    }
}
