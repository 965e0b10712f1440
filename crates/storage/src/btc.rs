//! Bitcoin outputs held, and their reservations.

use domain::{KeyId, Timestamp, WalletId};
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
    /// The wallet holding it (none for outputs of keys outside wallets).
    pub wallet: Option<WalletId>,
    pub created_at: Timestamp,
}

fn i64_of(v: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Corrupt(format!("{what} {v} out of range")))
}

impl WriteTx {
    pub async fn insert_btc_utxo(&mut self, u: &BtcUtxoRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO btc_utxos (network, txid, vout, value_sat, script_pubkey, spend, state, \
             reserved_by, wallet_id, created_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&u.network)
        .bind(&u.txid)
        .bind(i64::from(u.vout))
        .bind(i64_of(u.value_sat, "value")?)
        .bind(&u.script_pubkey)
        .bind(&u.spend)
        .bind(&u.state)
        .bind(u.reserved_by.as_deref())
        .bind(u.wallet.map(|w| w.to_string()))
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

pub(crate) const UTXO_COLUMNS: &str = "network, txid, vout, value_sat, script_pubkey, spend, state, reserved_by, wallet_id, created_at_ms";

pub(crate) fn utxo_from_row(r: &sqlx::any::AnyRow) -> Result<BtcUtxoRow, StorageError> {
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
        wallet: crate::row::opt_parsed(r, "wallet_id")?,
        created_at: Timestamp::from_millis(r.try_get("created_at_ms")?),
    })
}

impl Store {
    /// Outputs of `network` in `state` held outside any wallet, largest
    /// first.
    pub async fn btc_utxos(
        &self,
        network: &str,
        state: &str,
    ) -> Result<Vec<BtcUtxoRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UTXO_COLUMNS} FROM btc_utxos WHERE network = $1 AND state = $2 \
             AND wallet_id IS NULL ORDER BY value_sat DESC, txid, vout"
        )))
        .bind(network)
        .bind(state)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(utxo_from_row).collect()
    }

    /// A wallet's outputs on `network` in `state`, largest first.
    pub async fn wallet_btc_utxos(
        &self,
        wallet: WalletId,
        network: &str,
        state: &str,
    ) -> Result<Vec<BtcUtxoRow>, StorageError> {
        wallet_btc_utxos_on(&self.pool, wallet, network, state).await
    }

    /// The outputs a send reserved.
    pub async fn btc_utxos_of_send(&self, send: &str) -> Result<Vec<BtcUtxoRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {UTXO_COLUMNS} FROM btc_utxos WHERE reserved_by = $1 ORDER BY txid, vout"
        )))
        .bind(send)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(utxo_from_row).collect()
    }

    /// The keys a wallet receives and spends with on `network`, oldest first
    /// (retired ones too: their outputs are still the wallet's).
    pub async fn btc_account_keys(
        &self,
        wallet: WalletId,
        network: &str,
    ) -> Result<Vec<KeyId>, StorageError> {
        self.account_keys(wallet, network, "").await
    }

    /// The keys a wallet receives and takes change with on `network`: its
    /// accounts not retired by a rotation, oldest first.
    pub async fn btc_current_account_keys(
        &self,
        wallet: WalletId,
        network: &str,
    ) -> Result<Vec<KeyId>, StorageError> {
        self.account_keys(wallet, network, " AND retired_at_ms IS NULL")
            .await
    }

    async fn account_keys(
        &self,
        wallet: WalletId,
        network: &str,
        filter: &'static str,
    ) -> Result<Vec<KeyId>, StorageError> {
        let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT key_id FROM btc_accounts WHERE wallet_id = $1 AND network = $2{filter} \
             ORDER BY created_at_ms, key_id"
        )))
        .bind(wallet.to_string())
        .bind(network)
        .fetch_all(&self.pool)
        .await?;
        ids.iter()
            .map(|k| {
                k.parse()
                    .map_err(|e| StorageError::Corrupt(format!("key id: {e}")))
            })
            .collect()
    }

    /// Every Bitcoin key of a wallet, with its network, oldest first.
    pub async fn wallet_btc_accounts(
        &self,
        wallet: WalletId,
    ) -> Result<Vec<(String, KeyId)>, StorageError> {
        let rows = sqlx::query(
            "SELECT network, key_id FROM btc_accounts WHERE wallet_id = $1 \
             ORDER BY network, created_at_ms, key_id",
        )
        .bind(wallet.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let key: String = r.try_get("key_id")?;
                Ok((
                    r.try_get("network")?,
                    key.parse()
                        .map_err(|e| StorageError::Corrupt(format!("key id: {e}")))?,
                ))
            })
            .collect()
    }

    /// The wallet a key belongs to on `network`, if any.
    pub async fn btc_account_wallet(
        &self,
        network: &str,
        key: KeyId,
    ) -> Result<Option<WalletId>, StorageError> {
        let w: Option<String> = sqlx::query_scalar(
            "SELECT wallet_id FROM btc_accounts WHERE network = $1 AND key_id = $2",
        )
        .bind(network)
        .bind(key.to_string())
        .fetch_optional(&self.pool)
        .await?;
        w.map(|w| {
            w.parse()
                .map_err(|e| StorageError::Corrupt(format!("wallet id: {e}")))
        })
        .transpose()
    }

    /// Sends of `network` in one of `states`, oldest first.
    pub async fn btc_sends_in(
        &self,
        network: &str,
        states: &[&str],
    ) -> Result<Vec<BtcSendRow>, StorageError> {
        let list = states
            .iter()
            .map(|s| format!("'{}'", s.replace('\'', "")))
            .collect::<Vec<_>>()
            .join(", ");
        let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM btc_sends WHERE network = $1 AND state IN ({list}) ORDER BY created_at_ms, id"
        )))
        .bind(network)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            out.push(self.btc_send(&id).await?);
        }
        Ok(out)
    }
}

async fn wallet_btc_utxos_on<'e, E>(
    db: E,
    wallet: WalletId,
    network: &str,
    state: &str,
) -> Result<Vec<BtcUtxoRow>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {UTXO_COLUMNS} FROM btc_utxos WHERE wallet_id = $1 AND network = $2 AND state = $3 \
         ORDER BY value_sat DESC, txid, vout"
    )))
    .bind(wallet.to_string())
    .bind(network)
    .bind(state)
    .fetch_all(db)
    .await?;
    rows.iter().map(utxo_from_row).collect()
}

impl WriteTx {
    /// [`Store::wallet_btc_utxos`], read under this transaction.
    pub async fn wallet_btc_utxos_in_tx(
        &mut self,
        wallet: WalletId,
        network: &str,
        state: &str,
    ) -> Result<Vec<BtcUtxoRow>, StorageError> {
        wallet_btc_utxos_on(&mut *self.tx, wallet, network, state).await
    }

    /// Gives `key` to `wallet` on `network`.
    pub async fn insert_btc_account(
        &mut self,
        network: &str,
        key: KeyId,
        wallet: WalletId,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO btc_accounts (network, key_id, wallet_id, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(network)
        .bind(key.to_string())
        .bind(wallet.to_string())
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "Bitcoin account for this key"))?;
        Ok(())
    }
}

/// A Bitcoin send: its approved PSBT, then its signed transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcSendRow {
    pub id: String,
    pub network: String,
    pub psbt: Vec<u8>,
    pub raw: Option<Vec<u8>>,
    pub txid: Option<String>,
    pub fee_sat: u64,
    pub state: String,
    /// The wallet paying (none for sends outside wallets).
    pub wallet: Option<WalletId>,
    pub created_at: Timestamp,
    pub created_by: domain::Actor,
    /// The block the watcher found it in (height, hash).
    pub block: Option<(u64, String)>,
    /// The tip when the loop first saw it broadcast and unconfirmed.
    pub waiting_since: Option<u64>,
}

impl WriteTx {
    pub async fn insert_btc_send(&mut self, s: &BtcSendRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO btc_sends (id, network, psbt, raw, txid, fee_sat, state, created_at_ms, \
             created_by, wallet_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&s.id)
        .bind(&s.network)
        .bind(s.psbt.clone())
        .bind(s.raw.clone())
        .bind(s.txid.as_deref())
        .bind(i64_of(s.fee_sat, "fee")?)
        .bind(&s.state)
        .bind(s.created_at.as_millis())
        .bind(s.created_by.to_string())
        .bind(s.wallet.map(|w| w.to_string()))
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "Bitcoin send"))?;
        Ok(())
    }

    /// Stores the signed transaction of a send still waiting for it.
    pub async fn set_btc_send_signed(
        &mut self,
        id: &str,
        raw: &[u8],
        txid: &str,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE btc_sends SET raw = $1, txid = $2, state = 'signed' \
             WHERE id = $3 AND state IN ('planned', 'exported')",
        )
        .bind(raw.to_vec())
        .bind(txid)
        .bind(id)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "Bitcoin transaction id"))?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "signed Bitcoin transaction (signed elsewhere)",
            });
        }
        Ok(())
    }

    /// Hands a planned send out for its offline signature: `psbt` is the
    /// plan with what the server signed (when: its transfers' move to
    /// `awaiting_signature`).
    pub async fn set_btc_send_exported(
        &mut self,
        id: &str,
        psbt: &[u8],
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE btc_sends SET psbt = $1, state = 'exported' WHERE id = $2 AND state = 'planned'",
        )
        .bind(psbt.to_vec())
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "Bitcoin send state (changed elsewhere)",
            });
        }
        Ok(())
    }

    pub async fn set_btc_send_state(
        &mut self,
        id: &str,
        from: &str,
        to: &str,
    ) -> Result<(), StorageError> {
        let done = sqlx::query("UPDATE btc_sends SET state = $1 WHERE id = $2 AND state = $3")
            .bind(to)
            .bind(id)
            .bind(from)
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "Bitcoin send state (changed elsewhere)",
            });
        }
        Ok(())
    }
}

impl Store {
    pub async fn btc_send(&self, id: &str) -> Result<BtcSendRow, StorageError> {
        let r = sqlx::query(
            "SELECT id, network, psbt, raw, txid, fee_sat, state, created_at_ms, created_by, \
             wallet_id, block_height, block_hash, waiting_since_height FROM btc_sends \
             WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound {
            what: "Bitcoin send",
        })?;
        let fee: i64 = r.try_get("fee_sat")?;
        let by: String = r.try_get("created_by")?;
        let height: Option<i64> = r.try_get("block_height")?;
        let block_hash: Option<String> = r.try_get("block_hash")?;
        let block = match (height, block_hash) {
            (Some(h), Some(hash)) => Some((
                u64::try_from(h).map_err(|_| StorageError::Corrupt("block height".into()))?,
                hash,
            )),
            _ => None,
        };
        let waiting: Option<i64> = r.try_get("waiting_since_height")?;
        Ok(BtcSendRow {
            block,
            waiting_since: waiting
                .map(u64::try_from)
                .transpose()
                .map_err(|_| StorageError::Corrupt("waiting height".into()))?,
            id: r.try_get("id")?,
            network: r.try_get("network")?,
            psbt: r.try_get("psbt")?,
            raw: r.try_get("raw")?,
            txid: r.try_get("txid")?,
            fee_sat: u64::try_from(fee).map_err(|_| StorageError::Corrupt("fee".into()))?,
            state: r.try_get("state")?,
            wallet: crate::row::opt_parsed(&r, "wallet_id")?,
            created_at: Timestamp::from_millis(r.try_get("created_at_ms")?),
            created_by: by
                .parse()
                .map_err(|e| StorageError::Corrupt(format!("created_by: {e}")))?,
        })
    }
}

/// An address issued from an HD account key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BtcAddressRow {
    pub network: String,
    pub key: KeyId,
    /// 0 receive, 1 change.
    pub chain: u32,
    pub index: u32,
    pub address: String,
    pub script_pubkey: String,
    pub wallet: WalletId,
    pub created_at: Timestamp,
}

pub(crate) const ADDRESS_COLUMNS: &str =
    "network, key_id, chain, idx, address, script_pubkey, wallet_id, created_at_ms";

pub(crate) fn address_from_row(r: &sqlx::any::AnyRow) -> Result<BtcAddressRow, StorageError> {
    let n = |c: &str| -> Result<u32, StorageError> {
        u32::try_from(r.try_get::<i64, _>(c)?)
            .map_err(|_| StorageError::Corrupt(format!("Bitcoin address {c}")))
    };
    Ok(BtcAddressRow {
        network: r.try_get("network")?,
        key: crate::row::parsed(r, "key_id")?,
        chain: n("chain")?,
        index: n("idx")?,
        address: r.try_get("address")?,
        script_pubkey: r.try_get("script_pubkey")?,
        wallet: crate::row::parsed(r, "wallet_id")?,
        created_at: Timestamp::from_millis(r.try_get("created_at_ms")?),
    })
}

impl WriteTx {
    /// Records an issued address; a conflict if that child was issued
    /// already (two issuers raced: the loser tries again).
    pub async fn insert_btc_address(&mut self, a: &BtcAddressRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO btc_addresses ({ADDRESS_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&a.network)
        .bind(a.key.to_string())
        .bind(i64::from(a.chain))
        .bind(i64::from(a.index))
        .bind(&a.address)
        .bind(&a.script_pubkey)
        .bind(a.wallet.to_string())
        .bind(a.created_at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "Bitcoin address at this index"))?;
        Ok(())
    }
}

impl Store {
    /// The addresses issued from `key` on one chain, newest first.
    pub async fn btc_addresses_of_key(
        &self,
        network: &str,
        key: KeyId,
        chain: u32,
    ) -> Result<Vec<BtcAddressRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ADDRESS_COLUMNS} FROM btc_addresses WHERE network = $1 AND key_id = $2 \
             AND chain = $3 ORDER BY idx DESC"
        )))
        .bind(network)
        .bind(key.to_string())
        .bind(i64::from(chain))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(address_from_row).collect()
    }

    /// Every address issued to a wallet on `network`.
    pub async fn wallet_btc_addresses(
        &self,
        wallet: WalletId,
        network: &str,
    ) -> Result<Vec<BtcAddressRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ADDRESS_COLUMNS} FROM btc_addresses WHERE wallet_id = $1 AND network = $2 \
             ORDER BY key_id, chain, idx"
        )))
        .bind(wallet.to_string())
        .bind(network)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(address_from_row).collect()
    }

    /// The issued address `address` on `network`, if it is one.
    pub async fn btc_address_row(
        &self,
        network: &str,
        address: &str,
    ) -> Result<Option<BtcAddressRow>, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ADDRESS_COLUMNS} FROM btc_addresses WHERE network = $1 AND address = $2"
        )))
        .bind(network)
        .bind(address)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(address_from_row).transpose()
    }

    /// Whether any output paying `script_pubkey` on `network` was recorded.
    pub async fn btc_script_used(
        &self,
        network: &str,
        script_pubkey: &str,
    ) -> Result<bool, StorageError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM btc_utxos WHERE network = $1 AND script_pubkey = $2",
        )
        .bind(network)
        .bind(script_pubkey)
        .fetch_one(&self.pool)
        .await?;
        Ok(n > 0)
    }
}
