//! The queue's claims: due queued transfers taken in claim order (priority,
//! then age; dependencies ended) with a lease — `FOR UPDATE SKIP LOCKED` on
//! PostgreSQL — and Bitcoin batches; delays and the stuck view.

use domain::{Timestamp, TransferId, WalletId};

use crate::error::StorageError;
use crate::store::{Backend, Store};
use crate::transfers::{TRANSFER_COLUMNS, TransferRow, transfer_from_row};

/// What [`Store::claim_batch`] claims: more queued transfers of one
/// wallet and asset, due now or waiting for this batch's window, requested
/// after `created_after` (older ones fail on their own).
#[derive(Debug, Clone, Copy)]
pub struct BatchClaim<'a> {
    pub wallet: WalletId,
    pub asset: &'a str,
    pub now: Timestamp,
    pub lease_ms: i64,
    pub limit: u32,
    pub batch_due: Timestamp,
    pub created_after: Timestamp,
    /// The claiming server's instance id.
    pub claimer: &'a str,
}

/// The queue's claim: up to `$3` queued transfers, not held, `due` (given
/// the table prefix to write: `t.` inside, none outside) and passing
/// `filter`, highest priority first, then oldest, leased until `$2`. On
/// PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`; the outer
/// condition checks again what a concurrent claim may have changed.
fn claim_query(
    backend: Backend,
    due: impl Fn(&str) -> String,
    filter: &str,
    claimer: u8,
) -> String {
    let skip = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE OF t SKIP LOCKED",
    };
    format!(
        "UPDATE transfers SET next_attempt_at_ms = $2, claimed_by = ${claimer} WHERE id IN (\
         SELECT t.id FROM transfers t LEFT JOIN transfers d ON d.id = t.depends_on \
         WHERE t.state = 'queued' AND t.held_at_ms IS NULL AND {} {filter} \
         ORDER BY t.priority DESC, t.created_at_ms, t.id LIMIT $3{skip}) \
         AND state = 'queued' AND {} RETURNING {TRANSFER_COLUMNS}",
        due("t."),
        due(""),
    )
}

/// What the stuck view shows: queued transfers held for a person or whose
/// attempts failed, and those on their way to the chain that have not
/// moved since `$1` (its list and its count share it).
pub(crate) const STUCK: &str = "((state = 'queued' AND (held_at_ms IS NOT NULL OR attempts > 0)) \
     OR (state IN ('signing', 'signed', 'broadcasting', 'confirming') AND updated_at_ms < $1))";

/// The order claimed transfers are taken in (the claim's `ORDER BY`).
fn claim_order(t: &TransferRow) -> (std::cmp::Reverse<u8>, Timestamp, TransferId) {
    (std::cmp::Reverse(t.priority), t.created_at, t.id)
}

impl Store {
    /// Time-locked transfers whose lock has ended, or transfers waiting for
    /// approvals past their lapse: the oldest `limit` of them.
    pub async fn transfers_due(
        &self,
        state: &str,
        now: Timestamp,
        limit: u32,
    ) -> Result<Vec<TransferRow>, StorageError> {
        let col = if state == "time_locked" {
            "unlock_at_ms"
        } else {
            "expires_at_ms"
        };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE state = $1 AND {col} <= $2 \
             ORDER BY {col}, id LIMIT $3"
        )))
        .bind(state)
        .bind(now.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transfer_from_row).collect()
    }

    /// Claims up to `limit` queued transfers whose next attempt is due and
    /// whose dependency (if any) has ended, highest priority first, then
    /// oldest: each claim is a lease of `lease_ms` on its next attempt time,
    /// so that of several servers one takes each transfer, and a dead
    /// server's claim lapses by itself. On PostgreSQL the rows are picked
    /// `FOR UPDATE SKIP LOCKED`: servers claiming at once pass each other by.
    /// Returns each transfer with its dependency's state.
    pub async fn claim_transfers(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: u32,
        claimer: &str,
    ) -> Result<Vec<(TransferRow, Option<String>)>, StorageError> {
        let q = claim_query(
            self.backend(),
            |t| format!("{t}next_attempt_at_ms <= $1"),
            "AND (t.depends_on IS NULL OR d.finished_at_ms IS NOT NULL)",
            4,
        );
        let turn = self.write_turn().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(now.as_millis())
            .bind(now.as_millis().saturating_add(lease_ms))
            .bind(i64::from(limit))
            .bind(claimer)
            .fetch_all(&self.pool)
            .await?;
        drop(turn);
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let t = transfer_from_row(r)?;
            let dep = match t.depends_on {
                Some(d) => Some(self.transfer(d).await?.state),
                None => None,
            };
            out.push((t, dep));
        }
        out.sort_by_key(|(t, _)| claim_order(t));
        Ok(out)
    }

    /// Claims up to `limit` more queued transfers of one wallet and asset
    /// that wait for nothing (to join a batch): those due, and those set to
    /// wait for this batch's window (`batch_due`, see
    /// [`Store::delay_transfers`]); highest priority first, then oldest; as
    /// [`Store::claim_transfers`].
    pub async fn claim_batch(&self, c: &BatchClaim<'_>) -> Result<Vec<TransferRow>, StorageError> {
        let BatchClaim {
            wallet,
            asset,
            now,
            lease_ms,
            limit,
            batch_due,
            created_after,
            claimer,
        } = *c;
        let q = claim_query(
            self.backend(),
            |t| {
                format!(
                    "({t}next_attempt_at_ms <= $1 OR ({t}attempts = 0 AND {t}next_attempt_at_ms = $6))"
                )
            },
            "AND t.wallet_id = $4 AND t.asset = $5 AND t.created_at_ms > $7 \
             AND (t.depends_on IS NULL OR d.state = 'completed')",
            8,
        );
        let _turn = self.write_turn().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(now.as_millis())
            .bind(now.as_millis().saturating_add(lease_ms))
            .bind(i64::from(limit))
            .bind(wallet.to_string())
            .bind(asset)
            .bind(batch_due.as_millis())
            .bind(created_after.as_millis())
            .bind(claimer)
            .fetch_all(&self.pool)
            .await?;
        let mut out: Vec<TransferRow> = rows
            .iter()
            .map(transfer_from_row)
            .collect::<Result<_, _>>()?;
        out.sort_by_key(claim_order);
        Ok(out)
    }

    /// When the oldest queued transfer of a wallet in an asset (not held
    /// for a person) was requested.
    pub async fn oldest_queued(
        &self,
        wallet: WalletId,
        asset: &str,
    ) -> Result<Option<Timestamp>, StorageError> {
        let at: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(created_at_ms) FROM transfers WHERE wallet_id = $1 AND asset = $2 \
             AND state = 'queued' AND held_at_ms IS NULL",
        )
        .bind(wallet.to_string())
        .bind(asset)
        .fetch_one(&self.pool)
        .await?;
        Ok(at.map(Timestamp::from_millis))
    }

    /// Lets claimed transfers wait until `until`, the end of their batch's
    /// window (a batch not yet full); a fuller batch may take them sooner.
    pub async fn delay_transfers(
        &self,
        ids: &[TransferId],
        until: Timestamp,
    ) -> Result<(), StorageError> {
        let _turn = self.write_turn().await?;
        for id in ids {
            sqlx::query(
                "UPDATE transfers SET next_attempt_at_ms = $2, claimed_by = NULL \
                 WHERE id = $1 AND state = 'queued'",
            )
            .bind(id.to_string())
            .bind(until.as_millis())
            .execute(&self.pool)
            .await?;
        }
        Ok(())
    }

    /// Transfers that need a look: queued ones held for a person or whose
    /// attempts failed, and ones on their way to the chain that have not
    /// moved since `quiet_since` (oldest change first).
    pub async fn transfers_stuck(
        &self,
        quiet_since: Timestamp,
        limit: u32,
    ) -> Result<Vec<TransferRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE {STUCK} \
             ORDER BY updated_at_ms, id LIMIT $2"
        )))
        .bind(quiet_since.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transfer_from_row).collect()
    }
}

impl Store {
    /// Takes back at once the claims `claimer` (a server's instance id)
    /// holds: after a restart, its previous run's leases are its own, and
    /// nothing of that run still works on them. How many.
    pub async fn reclaim_leases(&self, claimer: &str, now: Timestamp) -> Result<u64, StorageError> {
        let _turn = self.write_turn().await?;
        let done = sqlx::query(
            "UPDATE transfers SET next_attempt_at_ms = $2, claimed_by = NULL \
             WHERE state = 'queued' AND claimed_by = $1 AND next_attempt_at_ms > $2",
        )
        .bind(claimer)
        .bind(now.as_millis())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// How many transfers are queued (the queue's depth).
    pub async fn queued_count(&self) -> Result<u64, StorageError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM transfers WHERE state = 'queued'")
            .fetch_one(&self.pool)
            .await?;
        u64::try_from(n).map_err(|e| crate::row::corrupt("queued count", &e))
    }
}

impl crate::tx::WriteTx {
    /// Records why a transfer's last attempt did not go through, without
    /// moving it (a transfer in `signing` whose signers did not sign).
    pub async fn set_last_error(&mut self, id: TransferId, why: &str) -> Result<(), StorageError> {
        sqlx::query("UPDATE transfers SET last_error = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(why)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}
