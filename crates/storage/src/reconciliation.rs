//! Reconciliation runs: when each pass ran, whether it compared every
//! account, and what it found (JSON, newest first when listed).

use domain::Timestamp;
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::btc::BtcUtxoRow;
use crate::error::StorageError;
use crate::store::Store;
use crate::tx::WriteTx;

/// One reconciliation pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconciliationRunRow {
    pub id: String,
    pub started_at: Timestamp,
    pub finished_at: Timestamp,
    /// Every account was compared (a run that could not ask a node is not).
    pub complete: bool,
    pub error: Option<String>,
    pub accounts: u64,
    /// JSON array of findings.
    pub findings: String,
}

const COLUMNS: &str = "id, started_at_ms, finished_at_ms, complete, error, accounts, findings";

fn run_from_row(r: &AnyRow) -> Result<ReconciliationRunRow, StorageError> {
    let complete: i64 = r.try_get("complete")?;
    let accounts: i64 = r.try_get("accounts")?;
    Ok(ReconciliationRunRow {
        id: r.try_get("id")?,
        started_at: Timestamp::from_millis(r.try_get("started_at_ms")?),
        finished_at: Timestamp::from_millis(r.try_get("finished_at_ms")?),
        complete: complete == 1,
        error: r.try_get("error")?,
        accounts: u64::try_from(accounts)
            .map_err(|_| StorageError::Corrupt(format!("accounts {accounts}")))?,
        findings: r.try_get("findings")?,
    })
}

impl WriteTx {
    /// An output Strongroom held, found spent by a transaction it did not
    /// sign: no longer counted or selected.
    pub async fn mark_btc_output_taken(
        &mut self,
        network: &str,
        txid: &str,
        vout: u32,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE btc_utxos SET state = 'spent', reserved_by = NULL \
             WHERE network = $1 AND txid = $2 AND vout = $3 AND state IN ('available', 'reserved')",
        )
        .bind(network)
        .bind(txid)
        .bind(i64::from(vout))
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn insert_reconciliation_run(
        &mut self,
        run: &ReconciliationRunRow,
    ) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO reconciliation_runs ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(&run.id)
        .bind(run.started_at.as_millis())
        .bind(run.finished_at.as_millis())
        .bind(i64::from(run.complete))
        .bind(run.error.clone())
        .bind(
            i64::try_from(run.accounts)
                .map_err(|_| StorageError::Corrupt(format!("accounts {}", run.accounts)))?,
        )
        .bind(&run.findings)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Every output Strongroom holds on `network`, free or reserved by a
    /// send, of any wallet.
    pub async fn btc_held_outputs(&self, network: &str) -> Result<Vec<BtcUtxoRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM btc_utxos WHERE network = $1 AND state IN ('available', 'reserved') \
             ORDER BY txid, vout",
            crate::btc::UTXO_COLUMNS
        )))
        .bind(network)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::btc::utxo_from_row).collect()
    }

    /// Every transfer's intent digest (hex): what signer nodes journal as
    /// paid.
    pub async fn transfer_digests(&self) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar("SELECT digest FROM transfers")
            .fetch_all(&self.pool)
            .await?)
    }

    /// One output as Strongroom holds it now.
    pub async fn btc_output(
        &self,
        network: &str,
        txid: &str,
        vout: u32,
    ) -> Result<Option<BtcUtxoRow>, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM btc_utxos WHERE network = $1 AND txid = $2 AND vout = $3",
            crate::btc::UTXO_COLUMNS
        )))
        .bind(network)
        .bind(txid)
        .bind(i64::from(vout))
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(crate::btc::utxo_from_row).transpose()
    }

    /// The newest runs first, at most `limit`, started before `before` if
    /// given (the next page).
    pub async fn reconciliation_runs(
        &self,
        limit: u32,
        before: Option<Timestamp>,
    ) -> Result<Vec<ReconciliationRunRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM reconciliation_runs WHERE started_at_ms < $1 \
             ORDER BY started_at_ms DESC, id DESC LIMIT $2"
        )))
        .bind(before.map_or(i64::MAX, |t| t.as_millis()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }
}
