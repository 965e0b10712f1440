//! Storage errors: what callers can act on, without SQL or connection details.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StorageError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database schema is not initialised or is newer than this program: {0}")]
    Schema(String),
    #[error("{what} already exists")]
    Conflict { what: &'static str },
    #[error("{what} not found")]
    NotFound { what: &'static str },
    #[error("a change must be committed with at least one audit record")]
    Unaudited,
    #[error("audit record refused: {0}")]
    Audit(#[from] audit::AuditError),
    #[error("stored data is not valid: {0}")]
    Corrupt(String),
    /// The database rolled the transaction back because it raced another
    /// (a deadlock, a serialization failure, a busy SQLite file): nothing
    /// of it was committed, and it may simply be tried again.
    #[error("the database rolled back a transaction that raced another; nothing was committed")]
    Contention(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
}

impl StorageError {
    /// Maps a driver error, naming the conflicting thing on a unique violation.
    pub(crate) fn from_sqlx(e: sqlx::Error, what: &'static str) -> Self {
        match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StorageError::Conflict { what }
            }
            // PostgreSQL's deadlock_detected and serialization_failure;
            // SQLite's BUSY (past its timeout).
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40P01" | "40001" | "5" | "517")) =>
            {
                StorageError::Contention(e.to_string())
            }
            sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::Tls(_) => {
                StorageError::Unavailable(e.to_string())
            }
            _ => StorageError::Database(e),
        }
    }
}

impl From<sqlx::Error> for StorageError {
    fn from(e: sqlx::Error) -> Self {
        StorageError::from_sqlx(e, "row")
    }
}

/// `Ok` when a statement changed exactly one row, else the conflict `what`
/// (the row was not in the state the statement required).
pub(crate) fn one_row(
    done: sqlx::any::AnyQueryResult,
    what: &'static str,
) -> Result<(), StorageError> {
    if done.rows_affected() == 1 {
        Ok(())
    } else {
        Err(StorageError::Conflict { what })
    }
}
