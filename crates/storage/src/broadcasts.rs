//! Broadcasts in flight, and the lock that orders them with freezes.
//!
//! A broadcast registers under the shared freeze lock after reading the
//! freezes in the same transaction; every freeze is inserted under the
//! exclusive lock and reads the broadcasts registered before it. On
//! PostgreSQL the lock is an advisory transaction lock; on SQLite writers
//! are serial anyway.

use domain::Timestamp;

use crate::error::StorageError;
use crate::row::{opt_ts, ts};
use crate::store::Store;
use crate::tx::WriteTx;

/// One broadcast: what was sent, for which wallet and key, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BroadcastRow {
    pub id: String,
    /// `eth-send:<id>#<attempt>` or `btc-send:<id>`.
    pub send: String,
    pub wallet: Option<String>,
    pub key: Option<String>,
    pub started_at: Timestamp,
    pub ended_at: Option<Timestamp>,
    /// `sent`, `unknown` (it may have reached a node) or `refused`.
    pub outcome: Option<String>,
}

const COLUMNS: &str = "id, send, wallet_id, key_id, started_at_ms, ended_at_ms, outcome";

fn from_row(r: &sqlx::any::AnyRow) -> Result<BroadcastRow, StorageError> {
    use sqlx::Row;
    Ok(BroadcastRow {
        id: r.try_get("id")?,
        send: r.try_get("send")?,
        wallet: r.try_get("wallet_id")?,
        key: r.try_get("key_id")?,
        started_at: ts(r, "started_at_ms")?,
        ended_at: opt_ts(r, "ended_at_ms")?,
        outcome: r.try_get("outcome")?,
    })
}

impl WriteTx {
    /// Orders broadcasts (shared) with freezes (exclusive) until this
    /// transaction ends.
    pub async fn freeze_lock(&mut self, shared: bool) -> Result<(), StorageError> {
        self.advisory_lock("strongroom.freeze", shared).await
    }

    /// Registers a broadcast about to start (take the shared freeze lock
    /// and read the freezes first, in this transaction).
    pub async fn start_broadcast(&mut self, b: &BroadcastRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO broadcasts ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, NULL, NULL)"
        )))
        .bind(&b.id)
        .bind(&b.send)
        .bind(&b.wallet)
        .bind(&b.key)
        .bind(b.started_at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Records how a broadcast ended (once).
    pub async fn end_broadcast(
        &mut self,
        id: &str,
        outcome: &str,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE broadcasts SET ended_at_ms = $2, outcome = $3 \
             WHERE id = $1 AND ended_at_ms IS NULL",
        )
        .bind(id)
        .bind(at.as_millis())
        .bind(outcome)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Forgets broadcasts that ended before `before`.
    pub async fn prune_broadcasts(&mut self, before: Timestamp) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM broadcasts WHERE ended_at_ms < $1")
            .bind(before.as_millis())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Broadcasts registered and not ended (read under the exclusive
    /// freeze lock: every one that started before the freeze).
    pub async fn broadcasts_in_flight(&mut self) -> Result<Vec<BroadcastRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM broadcasts WHERE ended_at_ms IS NULL ORDER BY started_at_ms, id"
        )))
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(from_row).collect()
    }
}

impl Store {
    /// One broadcast as it stands now.
    pub async fn broadcast(&self, id: &str) -> Result<BroadcastRow, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM broadcasts WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound { what: "broadcast" })?;
        from_row(&row)
    }
}
