//! A transfer's history: a numbered line for every state it passed
//! through, who moved it and why, written in the transaction of the move.

use domain::{Timestamp, TransferId};
use sqlx::Row;

use crate::error::StorageError;
use crate::row::{corrupt, ts};
use crate::store::Store;
use crate::tx::WriteTx;

/// A line of a transfer's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub seq: u32,
    pub state: String,
    pub actor: String,
    pub why: String,
    pub at: Timestamp,
}

impl WriteTx {
    /// Appends a line to a transfer's history.
    pub async fn add_history(
        &mut self,
        id: TransferId,
        state: &str,
        actor: &str,
        why: &str,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        self.add_history_lines(id, &[(state, why)], actor, at).await
    }

    /// Appends lines (state, why) to a transfer's history, in order, by
    /// one actor at one time: one statement, however many lines.
    pub async fn add_history_lines(
        &mut self,
        id: TransferId,
        lines: &[(&str, &str)],
        actor: &str,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        if lines.is_empty() {
            return Ok(());
        }
        // `VALUES` names its columns column1, column2… on both databases.
        let rows: Vec<String> = (0..lines.len())
            .map(|i| format!("({}, ${}, ${})", i + 1, 2 * i + 4, 2 * i + 5))
            .collect();
        let sql = format!(
            "INSERT INTO transfer_history (transfer_id, seq, state, actor, why, at_ms) \
             SELECT $1, b.base + v.column1, v.column2, $2, v.column3, $3 \
             FROM (SELECT COALESCE(MAX(seq), 0) AS base FROM transfer_history \
             WHERE transfer_id = $1) b, (VALUES {}) v ORDER BY v.column1",
            rows.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_string())
            .bind(actor)
            .bind(at.as_millis());
        for (state, why) in lines {
            query = query.bind(*state).bind(*why);
        }
        query.execute(&mut *self.tx).await?;
        Ok(())
    }
}

impl Store {
    /// Every state a transfer passed through, in order.
    pub async fn transfer_history(&self, id: TransferId) -> Result<Vec<HistoryRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, state, actor, why, at_ms FROM transfer_history WHERE transfer_id = $1 \
             ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryRow {
                    seq: u32::try_from(r.try_get::<i64, _>("seq")?)
                        .map_err(|e| corrupt("seq", &e))?,
                    state: r.try_get("state")?,
                    actor: r.try_get("actor")?,
                    why: r.try_get("why")?,
                    at: ts(r, "at_ms")?,
                })
            })
            .collect()
    }
}
