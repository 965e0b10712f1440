//! Bitcoin outputs held, and their reservations.

use domain::Timestamp;
use sqlx::Row;

use crate::error::StorageError;
use crate::store::Store;
use crate::tx::WriteTx;

/// An output Strongroom holds. `spend` is how to spend it, as `service`
/// writes it (JSON); storage does not interpret it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcUtxoRow {
    pub network: String,
    pub txid: String,
    pub vout: u32,
    pub value_sat: u64,
    pub script_pubkey: String,
    pub spend: String,
    pub state: String,
    pub reserved_by: Option<String>,
    pub created_at: Timestamp,
}

fn i64_of(v: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Corrupt(format!("{what} {v} out of range")))
}

impl WriteTx {
    pub async fn insert_btc_utxo(&mut self, u: &BtcUtxoRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO btc_utxos (network, txid, vout, value_sat, script_pubkey, spend, state, \
             reserved_by, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&u.network)
        .bind(&u.txid)
        .bind(i64::from(u.vout))
        .bind(i64_of(u.value_sat, "value")?)
        .bind(&u.script_pubkey)
        .bind(&u.spend)
        .bind(&u.state)
        .bind(u.reserved_by.as_deref())
        .bind(u.created_at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "Bitcoin output"))?;
        Ok(())
    }

    /// Reserves every outpoint for `by`, or none: an outpoint that is not
    /// available (reserved or spent, here or by another server) fails the
    /// whole reservation and the transaction rolls back.
    pub async fn reserve_btc_utxos(
        &mut self,
        network: &str,
        outpoints: &[(String, u32)],
        by: &str,
        until: Timestamp,
    ) -> Result<(), StorageError> {
        // One lock order for every caller: no two reservations deadlock.
        let mut sorted: Vec<&(String, u32)> = outpoints.iter().collect();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != outpoints.len() {
            return Err(StorageError::Conflict {
                what: "reservation naming the same Bitcoin output twice",
            });
        }
        for (txid, vout) in sorted {
            let done = sqlx::query(
                "UPDATE btc_utxos SET state = 'reserved', reserved_by = $1, reserved_until_ms = $2 \
                 WHERE network = $3 AND txid = $4 AND vout = $5 AND state = 'available'",
            )
            .bind(by)
            .bind(until.as_millis())
            .bind(network)
            .bind(txid)
            .bind(i64::from(*vout))
            .execute(&mut *self.tx)
            .await?;
            if done.rows_affected() != 1 {
                return Err(StorageError::Conflict {
                    what: "reservation of a Bitcoin output (reserved or spent already)",
                });
            }
        }
        Ok(())
    }

    /// Releases what `by` reserved (an expired or refused transfer).
    pub async fn release_btc_utxos(&mut self, by: &str) -> Result<u64, StorageError> {
        let done = sqlx::query(
            "UPDATE btc_utxos SET state = 'available', reserved_by = NULL, reserved_until_ms = NULL \
             WHERE reserved_by = $1 AND state = 'reserved'",
        )
        .bind(by)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected())
    }

    /// Marks what `by` reserved as spent (its transaction is confirmed).
    pub async fn spend_btc_utxos(&mut self, by: &str) -> Result<u64, StorageError> {
        let done = sqlx::query(
            "UPDATE btc_utxos SET state = 'spent' WHERE reserved_by = $1 AND state = 'reserved'",
        )
        .bind(by)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected())
    }
}

impl Store {
    /// Outputs of `network` in `state`, largest first.
    pub async fn btc_utxos(
        &self,
        network: &str,
        state: &str,
    ) -> Result<Vec<BtcUtxoRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT network, txid, vout, value_sat, script_pubkey, spend, state, reserved_by, created_at_ms \
             FROM btc_utxos WHERE network = $1 AND state = $2 ORDER BY value_sat DESC, txid, vout",
        )
        .bind(network)
        .bind(state)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let vout: i64 = r.try_get("vout")?;
                let value: i64 = r.try_get("value_sat")?;
                let bad = |w: &str| StorageError::Corrupt(format!("Bitcoin output {w}"));
                Ok(BtcUtxoRow {
                    network: r.try_get("network")?,
                    txid: r.try_get("txid")?,
                    vout: u32::try_from(vout).map_err(|_| bad("vout"))?,
                    value_sat: u64::try_from(value).map_err(|_| bad("value"))?,
                    script_pubkey: r.try_get("script_pubkey")?,
                    spend: r.try_get("spend")?,
                    state: r.try_get("state")?,
                    reserved_by: r.try_get("reserved_by")?,
                    created_at: Timestamp::from_millis(r.try_get("created_at_ms")?),
                })
            })
            .collect()
    }
}
