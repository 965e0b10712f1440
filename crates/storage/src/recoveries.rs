//! Restores (each an epoch of the installation) and what their
//! reconciliation with the chains needs: the Ethereum senders of a network
//! with their wallets, and a sender's nonce floor raised past nonces the
//! chain has seen used.

use domain::{Timestamp, WalletId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::{StorageError, one_row};
use crate::eth::{EthSenderRow, sender_from_row};
use crate::store::Store;
use crate::tx::WriteTx;

/// A restore, and whether the chains have been consulted since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryRow {
    pub id: String,
    pub restored_at: Timestamp,
    /// The audit head the backup was taken at.
    pub from_audit_seq: u64,
    pub manifest_sha256: String,
    /// The global freeze the restore placed; the reconciliation ends it.
    pub freeze_id: String,
    pub reconciled_at: Option<Timestamp>,
    /// JSON: what the reconciliation found.
    pub report: Option<String>,
}

const COLUMNS: &str =
    "id, restored_at_ms, from_audit_seq, manifest_sha256, freeze_id, reconciled_at_ms, report";

fn recovery_from_row(row: &AnyRow) -> Result<RecoveryRow, StorageError> {
    let seq: i64 = row.try_get("from_audit_seq")?;
    let reconciled: Option<i64> = row.try_get("reconciled_at_ms")?;
    Ok(RecoveryRow {
        id: row.try_get("id")?,
        restored_at: Timestamp::from_millis(row.try_get("restored_at_ms")?),
        from_audit_seq: u64::try_from(seq)
            .map_err(|_| StorageError::Corrupt(format!("audit seq {seq}")))?,
        manifest_sha256: row.try_get("manifest_sha256")?,
        freeze_id: row.try_get("freeze_id")?,
        reconciled_at: reconciled.map(Timestamp::from_millis),
        report: row.try_get("report")?,
    })
}

impl WriteTx {
    pub async fn insert_recovery(&mut self, r: &RecoveryRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO recoveries (id, restored_at_ms, from_audit_seq, manifest_sha256, freeze_id) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(&r.id)
        .bind(r.restored_at.as_millis())
        .bind(i64::try_from(r.from_audit_seq).map_err(|_| {
            StorageError::Corrupt(format!("audit seq {}", r.from_audit_seq))
        })?)
        .bind(&r.manifest_sha256)
        .bind(&r.freeze_id)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Marks a restore reconciled with `report`; a conflict if it already was
    /// (another process finished first).
    pub async fn finish_recovery(
        &mut self,
        id: &str,
        at: Timestamp,
        report: &str,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE recoveries SET reconciled_at_ms = $2, report = $3 \
             WHERE id = $1 AND reconciled_at_ms IS NULL",
        )
        .bind(id)
        .bind(at.as_millis())
        .bind(report)
        .execute(&mut *self.tx)
        .await?;
        one_row(done, "the restore is already reconciled")
    }

    /// Raises a sender's first nonce to `floor` (never lowers it) and drops
    /// the nonces given back below it: the chain has used them.
    pub async fn raise_eth_nonce_floor(
        &mut self,
        network: &str,
        address: &str,
        floor: u64,
    ) -> Result<(), StorageError> {
        let floor =
            i64::try_from(floor).map_err(|_| StorageError::Corrupt(format!("nonce {floor}")))?;
        sqlx::query(
            "UPDATE eth_senders SET first_nonce = $3 \
             WHERE network = $1 AND address = $2 AND first_nonce < $3",
        )
        .bind(network)
        .bind(address)
        .bind(floor)
        .execute(&mut *self.tx)
        .await?;
        for q in [
            "DELETE FROM eth_attempts WHERE send_id IN (SELECT id FROM eth_sends \
             WHERE network = $1 AND address = $2 AND state = 'released' AND nonce < $3)",
            "DELETE FROM eth_sends \
             WHERE network = $1 AND address = $2 AND state = 'released' AND nonce < $3",
        ] {
            sqlx::query(q)
                .bind(network)
                .bind(address)
                .bind(floor)
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }
}

impl Store {
    /// The oldest restore not yet reconciled with the chains, if any.
    pub async fn open_recovery(&self) -> Result<Option<RecoveryRow>, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM recoveries WHERE reconciled_at_ms IS NULL \
             ORDER BY restored_at_ms, id LIMIT 1"
        )))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(recovery_from_row).transpose()
    }

    /// Every restore, oldest first.
    pub async fn recoveries(&self) -> Result<Vec<RecoveryRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM recoveries ORDER BY restored_at_ms, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(recovery_from_row).collect()
    }

    /// The Ethereum senders on a network, each with its wallet (if any).
    pub async fn eth_senders_on(
        &self,
        network: &str,
    ) -> Result<Vec<(EthSenderRow, Option<WalletId>)>, StorageError> {
        let rows = sqlx::query(
            "SELECT network, address, key_id, first_nonce, created_at_ms, created_by, hd_index, wallet_id \
             FROM eth_senders WHERE network = $1 ORDER BY address",
        )
        .bind(network)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let wallet: Option<String> = r.try_get("wallet_id")?;
                let wallet = wallet
                    .map(|w| {
                        w.parse()
                            .map_err(|_| StorageError::Corrupt(format!("wallet id {w}")))
                    })
                    .transpose()?;
                Ok((sender_from_row(r)?, wallet))
            })
            .collect()
    }
}
