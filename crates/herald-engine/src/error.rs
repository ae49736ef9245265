//! The engine's own errors, and how they become Herald's [`Error`].

use herald_core::{Error, ErrorKind};

/// What can fail inside the engine's storage layer.
///
/// Validation failures are reported directly as [`herald_core::Error`]s with their
/// kind; this enum covers the storage itself.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineError {
    /// redb could not open or create the database.
    #[error("cannot open the database")]
    Open(#[source] redb::DatabaseError),
    /// Opening found a page whose checksum does not match.
    #[error(
        "the data file is damaged: a page failed its checksum when it was opened; restore the data directory \
         from a backup, or open it without the check to read what is intact"
    )]
    FailedCheck(#[source] redb::DatabaseError),
    /// A transaction could not begin.
    #[error("cannot begin a transaction")]
    Transaction(#[from] redb::TransactionError),
    /// A table could not be opened.
    #[error("cannot open a table")]
    Table(#[from] redb::TableError),
    /// A read or write inside a transaction failed.
    #[error("storage read or write failed")]
    Storage(#[from] redb::StorageError),
    /// The commit failed; nothing in it was acknowledged.
    #[error("commit failed")]
    Commit(#[from] redb::CommitError),
    /// A stored record could not be decoded.
    #[error("corrupt record in {table}: {reason}")]
    Corrupt {
        /// The table holding it.
        table: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// The data directory could not be created.
    #[error("cannot create the data directory")]
    Io(#[from] std::io::Error),
    /// The writer thread has stopped (the engine is closed or failed).
    #[error("the engine's writer has stopped")]
    WriterGone,
    /// The storage layer gave up (panicked) while doing `what`: redb does so on
    /// some damaged pages instead of reporting them. What it said is logged.
    #[error("the data file may be damaged: the storage layer failed while {what}")]
    Damaged {
        /// What the engine was doing.
        what: &'static str,
    },
}

impl From<EngineError> for Error {
    fn from(err: EngineError) -> Self {
        let kind = match err {
            EngineError::WriterGone => ErrorKind::Closed,
            _ => ErrorKind::Storage,
        };
        // This layer's words are the message and its cause the source, so a
        // cause chain names each layer once (and callers can downcast the
        // cause: the CLI looks for redb's "already open").
        let error = Error::new(kind, err.to_string());
        match err {
            EngineError::Open(cause) | EngineError::FailedCheck(cause) => error.with_source(cause),
            EngineError::Transaction(cause) => error.with_source(cause),
            EngineError::Table(cause) => error.with_source(cause),
            EngineError::Storage(cause) => error.with_source(cause),
            EngineError::Commit(cause) => error.with_source(cause),
            EngineError::Io(cause) => error.with_source(cause),
            EngineError::Corrupt { .. } | EngineError::WriterGone | EngineError::Damaged { .. } => error,
        }
    }
}

impl From<redb::DatabaseError> for EngineError {
    fn from(err: redb::DatabaseError) -> Self {
        match err {
            redb::DatabaseError::Storage(redb::StorageError::Corrupted(_)) => EngineError::FailedCheck(err),
            err => EngineError::Open(err),
        }
    }
}

/// Runs `f`, turning a panic inside it into [`EngineError::Damaged`]. redb
/// panics on some damaged pages (a malformed allocator state, an offset out of
/// its page) instead of returning an error; bytes on disk must never stop the
/// engine or its caller. What the panic said goes to the log, not the caller.
pub(crate) fn unpanicked<T, E: From<EngineError>>(
    what: &'static str,
    f: impl FnOnce() -> Result<T, E>,
) -> Result<T, E> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            log_damage(what, &*panic);
            Err(E::from(EngineError::Damaged { what }))
        }
    }
}

/// Logs what a panic in the storage layer said.
pub(crate) fn log_damage(what: &str, panic: &(dyn std::any::Any + Send)) {
    let said = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)");
    tracing::error!(
        panic = said,
        "the storage layer failed while {what}; the data file may be damaged"
    );
}

/// Shorthand for storage results inside the engine.
pub(crate) type StoreResult<T> = Result<T, EngineError>;

/// Converts any redb error into a Herald error via [`EngineError`].
pub(crate) fn storage<E: Into<EngineError>>(err: E) -> Error {
    Error::from(err.into())
}
