//! The ledger: one row per movement of a wallet's funds, each carrying the
//! balances after it, and the current balances per wallet and asset.
//!
//! A movement is written inside the write transaction of the change that
//! causes it, once (its `reference` is unique). Balances are signed: a
//! ledger that disagrees with the chain (a movement it never saw) shows it
//! instead of refusing the change that revealed it.

use domain::{Timestamp, WalletId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::row::{corrupt, opt_parsed, parsed, ts};
use crate::store::Store;
use crate::tx::WriteTx;

/// A wallet's balances of one asset, in base units.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Balances {
    /// Credited and not spoken for.
    pub available: i128,
    /// Seen on chain, not yet at the confirmation depth.
    pub pending: i128,
    /// Held for transfers on their way.
    pub reserved: i128,
}

/// One movement to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Movement {
    pub wallet: WalletId,
    pub asset: String,
    /// `deposit_seen`, `deposit_credited`, `deposit_reorged`, `reserved`,
    /// `released`, `payout`, `fee`, `recorded`.
    pub kind: String,
    /// The deltas.
    pub delta: Balances,
    pub transfer: Option<domain::TransferId>,
    pub txid: Option<String>,
    pub block: Option<u64>,
    /// What caused it, unique.
    pub reference: String,
}

/// A movement written, with the balances after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerRow {
    pub seq: i64,
    pub wallet: WalletId,
    pub asset: String,
    pub kind: String,
    pub delta: Balances,
    pub after: Balances,
    pub transfer: Option<domain::TransferId>,
    pub txid: Option<String>,
    pub block: Option<u64>,
    pub reference: String,
    pub at: Timestamp,
}

const COLUMNS: &str = "seq, wallet_id, asset, kind, d_available, d_pending, d_reserved, \
     available, pending, reserved, transfer_id, txid, block, reference, at_ms";

fn ledger_from_row(r: &AnyRow) -> Result<LedgerRow, StorageError> {
    let block: Option<i64> = r.try_get("block")?;
    Ok(LedgerRow {
        seq: r.try_get("seq")?,
        wallet: parsed(r, "wallet_id")?,
        asset: r.try_get("asset")?,
        kind: r.try_get("kind")?,
        delta: Balances {
            available: parsed(r, "d_available")?,
            pending: parsed(r, "d_pending")?,
            reserved: parsed(r, "d_reserved")?,
        },
        after: Balances {
            available: parsed(r, "available")?,
            pending: parsed(r, "pending")?,
            reserved: parsed(r, "reserved")?,
        },
        transfer: opt_parsed(r, "transfer_id")?,
        txid: r.try_get("txid")?,
        block: block
            .map(u64::try_from)
            .transpose()
            .map_err(|e| corrupt("block", &e))?,
        reference: r.try_get("reference")?,
        at: ts(r, "at_ms")?,
    })
}

fn add(a: Balances, d: Balances) -> Result<Balances, StorageError> {
    let sum = |x: i128, y: i128| {
        x.checked_add(y)
            .ok_or_else(|| StorageError::Corrupt("ledger balance out of range".into()))
    };
    Ok(Balances {
        available: sum(a.available, d.available)?,
        pending: sum(a.pending, d.pending)?,
        reserved: sum(a.reserved, d.reserved)?,
    })
}

impl WriteTx {
    /// Writes a movement and the balances after it; one whose reference is
    /// already written is not written again (returns `false`).
    pub async fn record_movement(
        &mut self,
        m: &Movement,
        at: Timestamp,
    ) -> Result<bool, StorageError> {
        // The wallet's row first (PostgreSQL): a transfer's request locks it
        // (FOR UPDATE) before its movement, and the ledger row's foreign key
        // takes it (FOR KEY SHARE) anyway. Taken here, before the ledger
        // lock, the order is the same everywhere: a movement waiting for the
        // row never holds the ledger lock a request waits for (a deadlock
        // the load campaign found, request against confirmation pass).
        if self.backend() == crate::Backend::Postgres {
            sqlx::query("SELECT 1 FROM wallets WHERE id = $1 FOR KEY SHARE")
                .bind(m.wallet.to_string())
                .execute(&mut *self.tx)
                .await?;
        }
        // One writer per wallet and asset at a time (PostgreSQL; SQLite's
        // writers are serial): a row lock would not cover the first
        // movement, whose balances row does not exist yet.
        self.advisory_lock(&format!("ledger:{}:{}", m.wallet, m.asset), false)
            .await?;
        let current = sqlx::query(
            "SELECT available, pending, reserved FROM ledger_balances \
             WHERE wallet_id = $1 AND asset = $2",
        )
        .bind(m.wallet.to_string())
        .bind(&m.asset)
        .fetch_optional(&mut *self.tx)
        .await?;
        let before = match &current {
            None => Balances::default(),
            Some(r) => Balances {
                available: parsed(r, "available")?,
                pending: parsed(r, "pending")?,
                reserved: parsed(r, "reserved")?,
            },
        };
        let after = add(before, m.delta)?;
        let block = m
            .block
            .map(i64::try_from)
            .transpose()
            .map_err(|e| corrupt("block", &e))?;
        let seq: Option<i64> = sqlx::query_scalar(
            "INSERT INTO ledger (wallet_id, asset, kind, d_available, d_pending, d_reserved, \
             available, pending, reserved, transfer_id, txid, block, reference, at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (reference) DO NOTHING RETURNING seq",
        )
        .bind(m.wallet.to_string())
        .bind(&m.asset)
        .bind(&m.kind)
        .bind(m.delta.available.to_string())
        .bind(m.delta.pending.to_string())
        .bind(m.delta.reserved.to_string())
        .bind(after.available.to_string())
        .bind(after.pending.to_string())
        .bind(after.reserved.to_string())
        .bind(m.transfer.map(|t| t.to_string()))
        .bind(m.txid.as_deref())
        .bind(block)
        .bind(&m.reference)
        .bind(at.as_millis())
        .fetch_optional(&mut *self.tx)
        .await?;
        let Some(seq) = seq else {
            return Ok(false);
        };
        sqlx::query(
            "INSERT INTO ledger_balances (wallet_id, asset, available, pending, reserved, seq) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (wallet_id, asset) DO UPDATE SET \
             available = excluded.available, pending = excluded.pending, \
             reserved = excluded.reserved, seq = excluded.seq",
        )
        .bind(m.wallet.to_string())
        .bind(&m.asset)
        .bind(after.available.to_string())
        .bind(after.pending.to_string())
        .bind(after.reserved.to_string())
        .bind(seq)
        .execute(&mut *self.tx)
        .await?;
        Ok(true)
    }
}

impl Store {
    /// A wallet's current balances, per asset.
    pub async fn ledger_balances(
        &self,
        wallet: WalletId,
    ) -> Result<Vec<(String, Balances)>, StorageError> {
        let rows = sqlx::query(
            "SELECT asset, available, pending, reserved FROM ledger_balances \
             WHERE wallet_id = $1 ORDER BY asset",
        )
        .bind(wallet.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("asset")?,
                    Balances {
                        available: parsed(r, "available")?,
                        pending: parsed(r, "pending")?,
                        reserved: parsed(r, "reserved")?,
                    },
                ))
            })
            .collect()
    }

    /// The available-balance delta of the movement with this reference.
    pub async fn ledger_delta(&self, reference: &str) -> Result<Option<i128>, StorageError> {
        let d: Option<String> =
            sqlx::query_scalar("SELECT d_available FROM ledger WHERE reference = $1")
                .bind(reference)
                .fetch_optional(&self.pool)
                .await?;
        d.map(|d| d.parse().map_err(|e| corrupt("d_available", &e)))
            .transpose()
    }

    /// Whether a movement with this reference was written.
    pub async fn ledger_has(&self, reference: &str) -> Result<bool, StorageError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM ledger WHERE reference = $1")
            .bind(reference)
            .fetch_one(&self.pool)
            .await?;
        Ok(n > 0)
    }

    /// A wallet's movements (of one asset, or all) in `[from, to)`, oldest
    /// first, after `after` (a previous page's last `seq`), at most `limit`.
    pub async fn ledger_rows(
        &self,
        wallet: WalletId,
        asset: Option<&str>,
        from: Timestamp,
        to: Timestamp,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<LedgerRow>, StorageError> {
        // The asset filter is a literal condition or none: a parameter that
        // may be NULL has no type PostgreSQL can infer.
        let of_asset = if asset.is_some() {
            "asset = $2"
        } else {
            "$2 = ''"
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM ledger WHERE wallet_id = $1 AND {of_asset} \
             AND at_ms >= $3 AND at_ms < $4 AND seq > $5 ORDER BY seq LIMIT $6"
        )))
        .bind(wallet.to_string())
        .bind(asset.unwrap_or_default())
        .bind(from.as_millis())
        .bind(to.as_millis())
        .bind(after.unwrap_or(0))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(ledger_from_row).collect()
    }

    /// The balances of each asset of a wallet just before `at` (its last
    /// movement before then): a statement's opening.
    pub async fn ledger_balances_before(
        &self,
        wallet: WalletId,
        at: Timestamp,
    ) -> Result<Vec<(String, Balances)>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM ledger l WHERE wallet_id = $1 AND seq = \
             (SELECT MAX(seq) FROM ledger m WHERE m.wallet_id = l.wallet_id \
              AND m.asset = l.asset AND m.at_ms < $2) ORDER BY asset"
        )))
        .bind(wallet.to_string())
        .bind(at.as_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| ledger_from_row(r).map(|l| (l.asset, l.after)))
            .collect()
    }
}
