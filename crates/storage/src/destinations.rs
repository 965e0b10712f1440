//! Where transfers have paid: what look-alike screening compares a new
//! destination with, and whether a destination is new.

use domain::Timestamp;
use sqlx::Row;

use crate::error::StorageError;
use crate::store::Store;
use crate::tx::WriteTx;

impl Store {
    /// The destinations (canonical form) of transfers of `network` (a
    /// `LIKE` pattern: `eip155:%` for every EVM chain) that
    /// completed at or after `since` and, case aside, start with `start`
    /// and end with `end` — candidates for a look-alike of a new one
    /// (addresses hold no `%` or `_`).
    pub async fn paid_destinations_like(
        &self,
        network: &str,
        since: Timestamp,
        start: &str,
        end: &str,
    ) -> Result<Vec<String>, StorageError> {
        let rows = sqlx::query(
            "SELECT DISTINCT destination FROM transfers WHERE asset LIKE $1 \
             AND state = 'completed' AND finished_at_ms >= $2 \
             AND LOWER(destination) LIKE $3 ORDER BY destination LIMIT 100",
        )
        .bind(format!("{network}/%"))
        .bind(since.as_millis())
        .bind(format!("{}%{}", start.to_lowercase(), end.to_lowercase()))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("destination")?)).collect()
    }
}

impl WriteTx {
    /// Whether a transfer of `network` to `destination` ever completed,
    /// read under this transaction.
    pub async fn ever_paid_in_tx(
        &mut self,
        network: &str,
        destination: &str,
    ) -> Result<bool, StorageError> {
        let row = sqlx::query(
            "SELECT 1 AS one FROM transfers WHERE asset LIKE $1 AND destination = $2 \
             AND state = 'completed' LIMIT 1",
        )
        .bind(format!("{network}/%"))
        .bind(destination)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.is_some())
    }
}
