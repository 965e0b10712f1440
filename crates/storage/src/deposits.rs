//! Deposits seen paying our Ethereum addresses, and how far each network's
//! blocks have been scanned for them.

use domain::{Timestamp, WalletId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::row::{corrupt, opt_parsed, opt_ts, parsed, ts};
use crate::store::Store;
use crate::tx::WriteTx;

/// A deposit to one of our addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepositRow {
    pub network: String,
    /// `0x`-hex.
    pub tx_hash: String,
    /// The event's index in its block; -1 for ether carried by the
    /// transaction itself.
    pub log_index: i64,
    /// Ours, lower-case hex.
    pub address: String,
    pub wallet: Option<WalletId>,
    pub from: String,
    pub asset: String,
    /// Base units.
    pub amount: u128,
    pub block_number: u64,
    /// `0x`-hex.
    pub block_hash: String,
    /// `seen`, `credited` or `reorged`.
    pub state: String,
    pub seen_at: Timestamp,
    pub credited_at: Option<Timestamp>,
}

pub(crate) const COLUMNS: &str = "network, tx_hash, log_index, address, wallet_id, from_address, asset, \
     amount, block_number, block_hash, state, seen_at_ms, credited_at_ms";

pub(crate) fn deposit_from_row(r: &AnyRow) -> Result<DepositRow, StorageError> {
    Ok(DepositRow {
        network: r.try_get("network")?,
        tx_hash: r.try_get("tx_hash")?,
        log_index: r.try_get("log_index")?,
        address: r.try_get("address")?,
        wallet: opt_parsed(r, "wallet_id")?,
        from: r.try_get("from_address")?,
        asset: r.try_get("asset")?,
        amount: parsed(r, "amount")?,
        block_number: u64::try_from(r.try_get::<i64, _>("block_number")?)
            .map_err(|e| corrupt("block_number", &e))?,
        block_hash: r.try_get("block_hash")?,
        state: r.try_get("state")?,
        seen_at: ts(r, "seen_at_ms")?,
        credited_at: opt_ts(r, "credited_at_ms")?,
    })
}

fn block_db(n: u64) -> Result<i64, StorageError> {
    i64::try_from(n).map_err(|_| StorageError::Corrupt(format!("block {n} out of range")))
}

impl WriteTx {
    /// Records a deposit seen; one already recorded is left as it is,
    /// unless it had been reorganised away or is now in another block (then
    /// it is seen again, in its new block). Returns, when it was new or seen
    /// again, the state it had before (`None`: new).
    pub async fn upsert_deposit(
        &mut self,
        d: &DepositRow,
    ) -> Result<Option<Option<String>>, StorageError> {
        let was: Option<String> = sqlx::query_scalar(
            "SELECT state FROM eth_deposits WHERE network = $1 AND tx_hash = $2 AND log_index = $3",
        )
        .bind(&d.network)
        .bind(&d.tx_hash)
        .bind(d.log_index)
        .fetch_optional(&mut *self.tx)
        .await?;
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO eth_deposits ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, \
             $11, $12, $13) ON CONFLICT (network, tx_hash, log_index) DO UPDATE SET \
             block_number = excluded.block_number, block_hash = excluded.block_hash, \
             state = 'seen', seen_at_ms = excluded.seen_at_ms WHERE eth_deposits.state = 'reorged' \
             OR (eth_deposits.state = 'seen' AND eth_deposits.block_hash <> excluded.block_hash)"
        )))
        .bind(&d.network)
        .bind(&d.tx_hash)
        .bind(d.log_index)
        .bind(&d.address)
        .bind(d.wallet.map(|w| w.to_string()))
        .bind(&d.from)
        .bind(&d.asset)
        .bind(d.amount.to_string())
        .bind(block_db(d.block_number)?)
        .bind(&d.block_hash)
        .bind(&d.state)
        .bind(d.seen_at.as_millis())
        .bind(d.credited_at.map(Timestamp::as_millis))
        .execute(&mut *self.tx)
        .await?;
        Ok((done.rows_affected() == 1).then_some(was))
    }

    /// Moves a seen deposit to `credited` or `reorged`.
    pub async fn settle_deposit(
        &mut self,
        network: &str,
        tx_hash: &str,
        log_index: i64,
        to: &str,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE eth_deposits SET state = $4, \
             credited_at_ms = CASE WHEN $4 = 'credited' THEN $5 ELSE credited_at_ms END \
             WHERE network = $1 AND tx_hash = $2 AND log_index = $3 AND state = 'seen'",
        )
        .bind(network)
        .bind(tx_hash)
        .bind(log_index)
        .bind(to)
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "settlement of this deposit",
            });
        }
        Ok(())
    }

    /// Where the next scan of `network` starts.
    pub async fn set_scan_cursor(&mut self, network: &str, next: u64) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO eth_scan (network, next_block) VALUES ($1, $2) \
             ON CONFLICT (network) DO UPDATE SET next_block = excluded.next_block",
        )
        .bind(network)
        .bind(block_db(next)?)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}

impl Store {
    /// Where the next scan of `network` starts, if it was ever scanned.
    pub async fn scan_cursor(&self, network: &str) -> Result<Option<u64>, StorageError> {
        let n: Option<i64> =
            sqlx::query_scalar("SELECT next_block FROM eth_scan WHERE network = $1")
                .bind(network)
                .fetch_optional(&self.pool)
                .await?;
        n.map(|n| u64::try_from(n).map_err(|e| corrupt("next_block", &e)))
            .transpose()
    }

    /// Seen deposits of `network` in blocks up to `deepest`, oldest first.
    pub async fn deposits_due(
        &self,
        network: &str,
        deepest: u64,
        limit: u32,
    ) -> Result<Vec<DepositRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM eth_deposits WHERE network = $1 AND state = 'seen' \
             AND block_number <= $2 ORDER BY block_number, tx_hash, log_index LIMIT $3"
        )))
        .bind(network)
        .bind(block_db(deepest)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deposit_from_row).collect()
    }

    /// Every sender address of `network` (lower-case hex) with its wallet:
    /// the addresses deposits are looked for.
    pub async fn deposit_addresses(
        &self,
        network: &str,
    ) -> Result<Vec<(String, Option<WalletId>)>, StorageError> {
        let rows = sqlx::query(
            "SELECT address, wallet_id FROM eth_senders WHERE network = $1 ORDER BY address",
        )
        .bind(network)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("address")?, opt_parsed(r, "wallet_id")?)))
            .collect()
    }

    /// A page of a wallet's deposits, newest first (by block, then by
    /// transaction hash and log index), after the deposit `after` names as
    /// (transaction hash, log index); an unknown `after` gives nothing.
    pub async fn wallet_deposits_page(
        &self,
        wallet: WalletId,
        after: Option<(&str, i64)>,
        limit: u32,
    ) -> Result<Vec<DepositRow>, StorageError> {
        let Some((tx_hash, log_index)) = after else {
            return self.wallet_deposits(wallet, limit).await;
        };
        let at = sqlx::query(
            "SELECT block_number FROM eth_deposits WHERE wallet_id = $1 AND tx_hash = $2 \
             AND log_index = $3",
        )
        .bind(wallet.to_string())
        .bind(tx_hash)
        .bind(log_index)
        .fetch_optional(&self.pool)
        .await?;
        let Some(at) = at else {
            return Ok(Vec::new());
        };
        let block: i64 = at.try_get("block_number")?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM eth_deposits WHERE wallet_id = $1 AND (block_number < $2 \
             OR (block_number = $2 AND (tx_hash > $3 OR (tx_hash = $3 AND log_index > $4)))) \
             ORDER BY block_number DESC, tx_hash, log_index LIMIT $5"
        )))
        .bind(wallet.to_string())
        .bind(block)
        .bind(tx_hash)
        .bind(log_index)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deposit_from_row).collect()
    }

    /// A wallet's deposits, newest first.
    pub async fn wallet_deposits(
        &self,
        wallet: WalletId,
        limit: u32,
    ) -> Result<Vec<DepositRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM eth_deposits WHERE wallet_id = $1 \
             ORDER BY block_number DESC, tx_hash, log_index LIMIT $2"
        )))
        .bind(wallet.to_string())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(deposit_from_row).collect()
    }
}
