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

impl Store {
    /// Every key id, for a backup's manifest (listed before the copy, so
    /// each one listed is in it).
    pub async fn key_ids(&self) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar("SELECT id FROM keys ORDER BY id")
            .fetch_all(&self.pool)
            .await?)
    }

    /// Whether a key may receive funds: a verified backup holds it, or an
    /// operator accepted the risk.
    pub async fn key_backed_up(&self, id: &str) -> Result<bool, StorageError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM keys WHERE id = $1 \
             AND (backed_up_at_ms IS NOT NULL OR backup_waived_by IS NOT NULL)",
        )
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }
}

impl crate::tx::WriteTx {
    /// Marks the keys `ids` (those not yet marked) as held by a verified
    /// backup; returns the ids marked.
    pub async fn mark_keys_backed_up(
        &mut self,
        ids: &[String],
        at: domain::Timestamp,
    ) -> Result<Vec<String>, StorageError> {
        let mut marked = Vec::new();
        for id in ids {
            let n = sqlx::query(
                "UPDATE keys SET backed_up_at_ms = $2 WHERE id = $1 AND backed_up_at_ms IS NULL",
            )
            .bind(id)
            .bind(at.as_millis())
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
            if n > 0 {
                marked.push(id.clone());
            }
        }
        Ok(marked)
    }

    /// Records that `by` accepted receiving funds on key `id` before any
    /// backup holds it.
    pub async fn waive_key_backup(&mut self, id: &str, by: &str) -> Result<(), StorageError> {
        let n = sqlx::query("UPDATE keys SET backup_waived_by = $2 WHERE id = $1")
            .bind(id)
            .bind(by)
            .execute(&mut *self.tx)
            .await?
            .rows_affected();
        if n == 0 {
            return Err(StorageError::NotFound { what: "key" });
        }
        Ok(())
    }
}
