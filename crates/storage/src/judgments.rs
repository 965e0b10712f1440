//! The authenticators of transfers' judgments (`service::judgment`): the
//! open transfers judged before they existed, and setting one once.

use domain::TransferId;

use crate::error::StorageError;
use crate::store::Store;
use crate::transfers::{TRANSFER_COLUMNS, TransferRow, transfer_from_row};
use crate::tx::WriteTx;

impl Store {
    /// Transfers not yet final whose judgment carries no authenticator.
    pub async fn open_transfers_unauthenticated(&self) -> Result<Vec<TransferRow>, StorageError> {
        let q = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers \
             WHERE judgment_mac IS NULL AND finished_at_ms IS NULL ORDER BY id"
        );
        sqlx::query(sqlx::AssertSqlSafe(q))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(transfer_from_row)
            .collect()
    }
}

impl WriteTx {
    /// Sets the authenticator of a judgment that has none; one that has one
    /// keeps it (`Conflict`).
    pub async fn set_judgment_mac(
        &mut self,
        id: TransferId,
        mac: &str,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE transfers SET judgment_mac = $2 WHERE id = $1 AND judgment_mac IS NULL",
        )
        .bind(id.to_string())
        .bind(mac)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "judgment authenticator (already set)",
            });
        }
        Ok(())
    }
}
