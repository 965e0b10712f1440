//! Reading typed values out of result rows; anything that does not read
//! back is `StorageError::Corrupt`, naming the column.

use domain::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;

pub(crate) fn corrupt(what: &str, e: &dyn std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("{what}: {e}"))
}

/// A text column parsed into `T`.
pub(crate) fn parsed<T: std::str::FromStr>(row: &AnyRow, col: &str) -> Result<T, StorageError>
where
    T::Err: std::fmt::Display,
{
    let v: String = row.try_get(col)?;
    v.parse().map_err(|e: T::Err| corrupt(col, &e))
}

/// A nullable text column parsed into `T`.
pub(crate) fn opt_parsed<T: std::str::FromStr>(
    row: &AnyRow,
    col: &str,
) -> Result<Option<T>, StorageError>
where
    T::Err: std::fmt::Display,
{
    let v: Option<String> = row.try_get(col)?;
    v.map(|v| v.parse().map_err(|e: T::Err| corrupt(col, &e)))
        .transpose()
}

/// A millisecond column.
pub(crate) fn ts(row: &AnyRow, col: &str) -> Result<Timestamp, StorageError> {
    Ok(Timestamp::from_millis(row.try_get(col)?))
}

/// A nullable millisecond column.
pub(crate) fn opt_ts(row: &AnyRow, col: &str) -> Result<Option<Timestamp>, StorageError> {
    let v: Option<i64> = row.try_get(col)?;
    Ok(v.map(Timestamp::from_millis))
}
