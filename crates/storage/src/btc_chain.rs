//! The Bitcoin watcher's state: the blocks it scanned (to find a
//! reorganisation and its fork), where each send was included, and the
//! outputs and deposits a reorganisation takes back.

use domain::Timestamp;
use sqlx::Row;

use crate::deposits::DepositRow;
use crate::error::StorageError;
use crate::store::Store;
use crate::tx::WriteTx;

fn height_db(n: u64) -> Result<i64, StorageError> {
    i64::try_from(n).map_err(|_| StorageError::Corrupt(format!("height {n} out of range")))
}

fn height_of(v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|_| StorageError::Corrupt(format!("height {v}")))
}

/// A block the watcher scanned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcBlockRow {
    pub height: u64,
    pub hash: String,
    pub prev_hash: String,
}

impl Store {
    /// The highest block scanned on `network`.
    pub async fn btc_top_block(&self, network: &str) -> Result<Option<BtcBlockRow>, StorageError> {
        let r = sqlx::query(
            "SELECT height, hash, prev_hash FROM btc_blocks WHERE network = $1 \
             ORDER BY height DESC LIMIT 1",
        )
        .bind(network)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            Ok(BtcBlockRow {
                height: height_of(r.try_get("height")?)?,
                hash: r.try_get("hash")?,
                prev_hash: r.try_get("prev_hash")?,
            })
        })
        .transpose()
    }

    /// The scanned blocks of `network` from `height` up, highest first.
    pub async fn btc_blocks_from(
        &self,
        network: &str,
        height: u64,
    ) -> Result<Vec<BtcBlockRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT height, hash, prev_hash FROM btc_blocks WHERE network = $1 AND height >= $2 \
             ORDER BY height DESC",
        )
        .bind(network)
        .bind(height_db(height)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BtcBlockRow {
                    height: height_of(r.try_get("height")?)?,
                    hash: r.try_get("hash")?,
                    prev_hash: r.try_get("prev_hash")?,
                })
            })
            .collect()
    }

    /// Every key with an account on `network`, and its wallet.
    pub async fn btc_accounts_on(
        &self,
        network: &str,
    ) -> Result<Vec<(domain::KeyId, domain::WalletId)>, StorageError> {
        let rows = sqlx::query(
            "SELECT key_id, wallet_id FROM btc_accounts WHERE network = $1 ORDER BY key_id",
        )
        .bind(network)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    crate::row::parsed(r, "key_id")?,
                    crate::row::parsed(r, "wallet_id")?,
                ))
            })
            .collect()
    }

    /// Every address issued on `network`.
    pub async fn btc_addresses_on(
        &self,
        network: &str,
    ) -> Result<Vec<crate::btc::BtcAddressRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM btc_addresses WHERE network = $1",
            crate::btc::ADDRESS_COLUMNS
        )))
        .bind(network)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::btc::address_from_row).collect()
    }

    /// Deposits (seen or credited) in blocks above `height`: what a
    /// reorganisation forking there takes back.
    pub async fn deposits_above(
        &self,
        network: &str,
        height: u64,
    ) -> Result<Vec<DepositRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM eth_deposits WHERE network = $1 AND block_number > $2 \
             AND state IN ('seen', 'credited') ORDER BY block_number, tx_hash, log_index",
            crate::deposits::COLUMNS
        )))
        .bind(network)
        .bind(height_db(height)?)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(crate::deposits::deposit_from_row).collect()
    }

    /// The ids of sends of `network` included in a block above `height`.
    pub async fn btc_sends_above(
        &self,
        network: &str,
        height: u64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM btc_sends WHERE network = $1 AND block_height > $2 \
             AND state IN ('confirming', 'completed') ORDER BY block_height, id",
        )
        .bind(network)
        .bind(height_db(height)?)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Sends of `network` in a block at or below `height` still confirming.
    pub async fn btc_sends_deep(
        &self,
        network: &str,
        height: u64,
    ) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM btc_sends WHERE network = $1 AND block_height <= $2 \
             AND state = 'confirming' ORDER BY block_height, id",
        )
        .bind(network)
        .bind(height_db(height)?)
        .fetch_all(&self.pool)
        .await?)
    }
}

impl Store {
    /// Transactions a send of `network` still on its way replaced: (send,
    /// txid). Either may yet be mined.
    pub async fn btc_replaced_on(
        &self,
        network: &str,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let rows = sqlx::query(
            "SELECT r.send_id, r.txid FROM btc_replaced r JOIN btc_sends s ON s.id = r.send_id \
             WHERE s.network = $1 AND s.state IN ('signed', 'broadcast') ORDER BY r.send_id",
        )
        .bind(network)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("send_id")?, r.try_get("txid")?)))
            .collect()
    }
}

impl WriteTx {
    /// A broadcast send's transaction replaced by a faster one (BIP-125):
    /// the current one is kept in `btc_replaced`, the send carries the new.
    /// Refused if the send moved on or was replaced meanwhile.
    pub async fn replace_btc_send(
        &mut self,
        id: &str,
        old_txid: &str,
        new: (&[u8], &[u8], &str, u64),
        tip: u64,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        let (psbt, raw, txid, fee) = new;
        let kept = sqlx::query(
            "INSERT INTO btc_replaced (send_id, txid, psbt, raw, fee_sat, replaced_at_ms) \
             SELECT id, txid, psbt, raw, fee_sat, $3 FROM btc_sends \
             WHERE id = $1 AND txid = $2 AND state = 'broadcast' AND raw IS NOT NULL",
        )
        .bind(id)
        .bind(old_txid)
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        let done = sqlx::query(
            "UPDATE btc_sends SET psbt = $3, raw = $4, txid = $5, fee_sat = $6, \
             waiting_since_height = $7 WHERE id = $1 AND txid = $2 AND state = 'broadcast'",
        )
        .bind(id)
        .bind(old_txid)
        .bind(psbt.to_vec())
        .bind(raw.to_vec())
        .bind(txid)
        .bind(i64::try_from(fee).map_err(|_| StorageError::Corrupt("fee".into()))?)
        .bind(height_db(tip)?)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "Bitcoin transaction id"))?;
        if kept.rows_affected() != 1 || done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "Bitcoin send (moved on or replaced meanwhile)",
            });
        }
        Ok(())
    }

    /// The replaced transaction `txid` of a send was mined after all: the
    /// send carries it again (and keeps the one that lost).
    pub async fn adopt_btc_replaced(
        &mut self,
        id: &str,
        txid: &str,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        let r = sqlx::query(
            "SELECT psbt, raw, fee_sat FROM btc_replaced WHERE send_id = $1 AND txid = $2",
        )
        .bind(id)
        .bind(txid)
        .fetch_optional(&mut *self.tx)
        .await?
        .ok_or(StorageError::NotFound {
            what: "replaced Bitcoin transaction",
        })?;
        let (psbt, raw, fee): (Vec<u8>, Vec<u8>, i64) =
            (r.try_get("psbt")?, r.try_get("raw")?, r.try_get("fee_sat")?);
        sqlx::query("DELETE FROM btc_replaced WHERE send_id = $1 AND txid = $2")
            .bind(id)
            .bind(txid)
            .execute(&mut *self.tx)
            .await?;
        let current: Option<String> =
            sqlx::query_scalar("SELECT txid FROM btc_sends WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await?
                .flatten();
        let current = current.ok_or(StorageError::NotFound {
            what: "Bitcoin send",
        })?;
        // The current one moves aside first (txids are unique per table).
        sqlx::query(
            "INSERT INTO btc_replaced (send_id, txid, psbt, raw, fee_sat, replaced_at_ms) \
             SELECT id, txid, psbt, raw, fee_sat, $2 FROM btc_sends WHERE id = $1",
        )
        .bind(id)
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        let done = sqlx::query(
            "UPDATE btc_sends SET psbt = $2, raw = $3, txid = $4, fee_sat = $5 \
             WHERE id = $1 AND txid = $6",
        )
        .bind(id)
        .bind(psbt)
        .bind(raw)
        .bind(txid)
        .bind(fee)
        .bind(&current)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "Bitcoin send (changed meanwhile)",
            });
        }
        Ok(())
    }

    /// Notes the tip when a broadcast send was first seen still waiting.
    pub async fn set_btc_waiting_since(
        &mut self,
        id: &str,
        height: u64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE btc_sends SET waiting_since_height = $2 \
             WHERE id = $1 AND waiting_since_height IS NULL",
        )
        .bind(id)
        .bind(height_db(height)?)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn insert_btc_block(
        &mut self,
        network: &str,
        b: &BtcBlockRow,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO btc_blocks (network, height, hash, prev_hash, scanned_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(network)
        .bind(height_db(b.height)?)
        .bind(&b.hash)
        .bind(&b.prev_hash)
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "scanned block"))?;
        Ok(())
    }

    /// Forgets the blocks above `height` (a reorganisation forked there).
    pub async fn drop_btc_blocks_above(
        &mut self,
        network: &str,
        height: u64,
    ) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM btc_blocks WHERE network = $1 AND height > $2")
            .bind(network)
            .bind(height_db(height)?)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected())
    }

    /// Forgets blocks below `height`: no reorganisation reaches them.
    pub async fn prune_btc_blocks_below(
        &mut self,
        network: &str,
        height: u64,
    ) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM btc_blocks WHERE network = $1 AND height < $2")
            .bind(network)
            .bind(height_db(height)?)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// A send found in a block: `confirming` there. From `signed` (handed
    /// to the network by someone else) or `broadcast`.
    pub async fn set_btc_send_included(
        &mut self,
        id: &str,
        height: u64,
        hash: &str,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE btc_sends SET state = 'confirming', block_height = $2, block_hash = $3 \
             WHERE id = $1 AND state IN ('signed', 'broadcast')",
        )
        .bind(id)
        .bind(height_db(height)?)
        .bind(hash)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "Bitcoin send state (changed elsewhere)",
            });
        }
        Ok(())
    }

    /// A send whose block left the best chain: `broadcast` again.
    pub async fn set_btc_send_reorged(&mut self, id: &str) -> Result<String, StorageError> {
        let before: Option<String> =
            sqlx::query_scalar("SELECT state FROM btc_sends WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut *self.tx)
                .await?;
        let done = sqlx::query(
            "UPDATE btc_sends SET state = 'broadcast', block_height = NULL, block_hash = NULL \
             WHERE id = $1 AND state IN ('confirming', 'completed')",
        )
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        match before {
            Some(s) if done.rows_affected() == 1 => Ok(s),
            _ => Err(StorageError::Conflict {
                what: "Bitcoin send state (changed elsewhere)",
            }),
        }
    }

    /// Gives back to `by` the outputs it spent (its transaction left the
    /// best chain): reserved for it again.
    pub async fn unspend_btc_utxos(&mut self, by: &str) -> Result<u64, StorageError> {
        let done = sqlx::query(
            "UPDATE btc_utxos SET state = 'reserved' WHERE reserved_by = $1 AND state = 'spent'",
        )
        .bind(by)
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected())
    }

    /// A deposit (seen or credited) whose block left the best chain.
    pub async fn reorg_deposit(
        &mut self,
        network: &str,
        tx_hash: &str,
        log_index: i64,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE eth_deposits SET state = 'reorged' WHERE network = $1 AND tx_hash = $2 \
             AND log_index = $3 AND state IN ('seen', 'credited')",
        )
        .bind(network)
        .bind(tx_hash)
        .bind(log_index)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "deposit state (changed elsewhere)",
            });
        }
        Ok(())
    }

    /// Forgets an output a reorganisation took back, unless a send holds
    /// it (returns whether it was forgotten).
    pub async fn drop_btc_utxo(
        &mut self,
        network: &str,
        txid: &str,
        vout: u32,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "DELETE FROM btc_utxos WHERE network = $1 AND txid = $2 AND vout = $3 \
             AND state = 'available'",
        )
        .bind(network)
        .bind(txid)
        .bind(i64::from(vout))
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }
}
