//! Backups from the storage side: a consistent SQLite copy taken while the
//! server writes, whether a database holds anything yet, and the schema
//! version a backup carries.

use std::path::Path;

use crate::error::StorageError;
use crate::store::{Backend, POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS, Store};

impl Store {
    /// A consistent copy of this SQLite database written to `path` (SQLite's
    /// `VACUUM INTO`: one read transaction, writers carry on). `path` must
    /// not exist.
    pub async fn sqlite_snapshot(&self, path: &Path) -> Result<(), StorageError> {
        if self.backend != Backend::Sqlite {
            return Err(StorageError::Schema(
                "a SQLite snapshot of a PostgreSQL database".into(),
            ));
        }
        let p = path
            .to_str()
            .ok_or_else(|| StorageError::Corrupt("a snapshot path that is not UTF-8".into()))?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "VACUUM INTO '{}'",
            p.replace('\'', "''")
        )))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Whether nothing was ever stored here: no audit record and no
    /// keystore (an empty schema, or none at all, counts as empty).
    pub async fn holds_nothing(&self) -> Result<bool, StorageError> {
        let tables: i64 = match self.backend {
            Backend::Sqlite => sqlx::query_scalar(
                "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'audit_log'",
            )
            .fetch_one(&self.pool)
            .await?,
            Backend::Postgres => {
                sqlx::query_scalar(
                    "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = 'audit_log'",
                )
                .fetch_one(&self.pool)
                .await?
            }
        };
        if tables == 0 {
            return Ok(true);
        }
        let records: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log")
            .fetch_one(&self.pool)
            .await?;
        let keystores: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keystore")
            .fetch_one(&self.pool)
            .await?;
        Ok(records == 0 && keystores == 0)
    }

    /// The newest schema version this program knows for its database.
    pub fn known_schema_version(&self) -> i64 {
        let m = match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        m.iter().map(|m| m.version).max().unwrap_or(0)
    }
}
