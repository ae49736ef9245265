//! Projections into SQLite that apply every message exactly once.
//!
//! A projection reads a stream in sequence order and, for each batch, runs
//! your writes and records the last sequence applied in one SQLite
//! transaction. A crash at any point leaves either the writes and the new
//! position, or neither; on restart the projection reads on from the stored
//! position, so no message is applied twice and none is skipped. It only reads
//! the bus, so it works on any backend.
//!
//! ```no_run
//! # async fn run(bus: herald::Bus) -> Result<(), Box<dyn std::error::Error>> {
//! let conn = rusqlite::Connection::open("orders.db")?;
//! conn.execute_batch("CREATE TABLE IF NOT EXISTS totals (customer TEXT PRIMARY KEY, n INTEGER)")?;
//! let mut projection = herald_sqlite::Projection::open(conn, "order-totals", "orders")?;
//! projection
//!     .catch_up(&bus, |tx, message| {
//!         let customer = message.subject.as_str().rsplit('.').next().unwrap_or_default();
//!         tx.execute(
//!             "INSERT INTO totals VALUES (?1, 1) ON CONFLICT(customer) DO UPDATE SET n = n + 1",
//!             [customer],
//!         )?;
//!         Ok(())
//!     })
//!     .await?;
//! # Ok(()) }
//! ```

pub use rusqlite;

use std::time::Duration;

use herald::{Bus, Error, ErrorKind, Message, Pattern, ReadRange};
use rusqlite::{Connection, OptionalExtension, Transaction};

/// What an apply function returns when it fails; the batch is rolled back.
pub type ApplyError = Box<dyn std::error::Error + Send + Sync>;

/// Messages read and applied per SQLite transaction, by default.
pub const DEFAULT_BATCH: usize = 256;

/// Why a projection stopped.
#[derive(Debug)]
pub enum ProjectionError {
    /// Reading the bus failed.
    Bus(Error),
    /// SQLite failed.
    Sqlite(rusqlite::Error),
    /// The apply function failed on this message (nothing of its batch was kept).
    Apply {
        /// The message's sequence.
        seq: u64,
        /// What the function returned.
        error: ApplyError,
    },
}

impl std::fmt::Display for ProjectionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProjectionError::Bus(e) => write!(f, "reading the bus: {e}"),
            ProjectionError::Sqlite(e) => write!(f, "sqlite: {e}"),
            ProjectionError::Apply { seq, error } => write!(f, "applying message {seq}: {error}"),
        }
    }
}

impl std::error::Error for ProjectionError {}

impl From<Error> for ProjectionError {
    fn from(e: Error) -> Self {
        ProjectionError::Bus(e)
    }
}

impl From<rusqlite::Error> for ProjectionError {
    fn from(e: rusqlite::Error) -> Self {
        ProjectionError::Sqlite(e)
    }
}

/// A projection of one stream into a SQLite database.
#[derive(Debug)]
pub struct Projection {
    conn: Connection,
    name: String,
    stream: String,
    filter: Option<Pattern>,
    batch: usize,
    /// The stored position, read once; it changes only with our own commits.
    position: u64,
}

impl Projection {
    /// Opens projection `name` of `stream` on `conn`, creating its position
    /// table (`herald_projections`) if needed.
    ///
    /// # Errors
    ///
    /// SQLite errors.
    pub fn open(conn: Connection, name: &str, stream: &str) -> Result<Projection, ProjectionError> {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS herald_projections (
                name TEXT PRIMARY KEY,
                stream TEXT NOT NULL,
                position INTEGER NOT NULL
            )",
        )?;
        let position: Option<i64> = conn
            .query_row(
                "SELECT position FROM herald_projections WHERE name = ?1",
                [name],
                |row| row.get(0),
            )
            .optional()?;
        Ok(Projection {
            conn,
            name: name.to_string(),
            stream: stream.to_string(),
            filter: None,
            batch: DEFAULT_BATCH,
            position: position.map_or(0, |p| u64::try_from(p).unwrap_or(0)),
        })
    }

    /// Only messages whose subject matches `pattern` are applied (the others
    /// still move the position).
    ///
    /// # Errors
    ///
    /// `InvalidSubject` for an invalid pattern.
    pub fn filter(mut self, pattern: &str) -> Result<Projection, ProjectionError> {
        self.filter = Some(Pattern::new(pattern)?);
        Ok(self)
    }

    /// Messages per transaction.
    pub fn batch_size(mut self, n: usize) -> Projection {
        self.batch = n.max(1);
        self
    }

    /// The connection, for reading what the projection wrote.
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// The last sequence applied (0 before the first). One projection name
    /// has one writer: the position is read when it opens and kept up to date
    /// by its own commits.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Applies the next batch after the position; returns how many messages
    /// it read (0 when caught up).
    ///
    /// # Errors
    ///
    /// See [`ProjectionError`]; on any error nothing of the batch is kept.
    pub async fn step<F>(&mut self, bus: &Bus, apply: &mut F) -> Result<usize, ProjectionError>
    where
        F: FnMut(&Transaction<'_>, &Message) -> Result<(), ApplyError>,
    {
        let from = self.position + 1;
        let messages = bus.read(&self.stream, ReadRange::from_seq(from, self.batch)).await?;
        let Some(last) = messages.last().map(|m| m.seq) else {
            return Ok(0);
        };
        let tx = self.conn.transaction()?;
        for message in &messages {
            if self.filter.as_ref().is_none_or(|p| p.matches(&message.subject)) {
                apply(&tx, message).map_err(|error| ProjectionError::Apply {
                    seq: message.seq,
                    error,
                })?;
            }
        }
        tx.execute(
            "INSERT INTO herald_projections (name, stream, position) VALUES (?1, ?2, ?3)
             ON CONFLICT(name) DO UPDATE SET position = excluded.position",
            rusqlite::params![self.name, self.stream, i64::try_from(last).unwrap_or(i64::MAX)],
        )?;
        tx.commit()?;
        self.position = last;
        Ok(messages.len())
    }

    /// Applies everything stored so far; returns how many messages it read.
    ///
    /// # Errors
    ///
    /// As [`step`](Projection::step).
    pub async fn catch_up<F>(&mut self, bus: &Bus, mut apply: F) -> Result<usize, ProjectionError>
    where
        F: FnMut(&Transaction<'_>, &Message) -> Result<(), ApplyError>,
    {
        let mut total = 0;
        loop {
            match self.step(bus, &mut apply).await? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    }

    /// Keeps applying, checking for new messages every `poll` once caught up,
    /// until `stop` resolves.
    ///
    /// # Errors
    ///
    /// As [`step`](Projection::step).
    pub async fn follow<F>(
        &mut self,
        bus: &Bus,
        mut apply: F,
        poll: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<(), ProjectionError>
    where
        F: FnMut(&Transaction<'_>, &Message) -> Result<(), ApplyError>,
    {
        tokio::pin!(stop);
        loop {
            if self.step(bus, &mut apply).await? == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = &mut stop => return Ok(()),
                }
            }
        }
    }
}

impl From<ProjectionError> for Error {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::Bus(e) => e,
            other => Error::new(ErrorKind::Storage, other.to_string()),
        }
    }
}
