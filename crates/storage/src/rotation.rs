//! Key rotation with a sweep: a key's successor, the Ethereum senders it
//! retires, and where each retired sender's funds go.

use domain::{KeyId, Timestamp, WalletId};
use sqlx::Row;

use crate::error::{StorageError, one_row};
use crate::eth::{EthSenderRow, sender_from_row};
use crate::store::Store;
use crate::tx::WriteTx;

/// An Ethereum sender of a key, with its wallet and, once retired, the
/// address its funds are swept to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeySenderRow {
    pub sender: EthSenderRow,
    pub wallet: Option<WalletId>,
    pub successor_address: Option<String>,
}

fn parse_wallet(w: Option<String>) -> Result<Option<WalletId>, StorageError> {
    w.map(|w| {
        w.parse()
            .map_err(|_| StorageError::Corrupt(format!("wallet id {w}")))
    })
    .transpose()
}

/// A Bitcoin account of a key: its network and wallet, and once retired
/// by a rotation, the successor's address its outputs are swept to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBtcAccountRow {
    pub network: String,
    pub wallet: WalletId,
    pub successor_address: Option<String>,
}

/// The key of `wallet` on `network` whose account was retired in favour of
/// `to`: the only outputs a sweep to `to` may spend.
async fn btc_sweep_source_on<'e, E>(
    db: E,
    wallet: WalletId,
    network: &str,
    to: &str,
) -> Result<Option<KeyId>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let k: Option<String> = sqlx::query_scalar(
        "SELECT key_id FROM btc_accounts WHERE wallet_id = $1 AND network = $2 \
         AND successor_address = $3 AND retired_at_ms IS NOT NULL",
    )
    .bind(wallet.to_string())
    .bind(network)
    .bind(to)
    .fetch_optional(db)
    .await?;
    k.map(|k| {
        k.parse()
            .map_err(|_| StorageError::Corrupt(format!("key id {k}")))
    })
    .transpose()
}

impl WriteTx {
    /// Retires a key's Bitcoin account: change and deposit addresses go to
    /// the wallet's other (current) keys, and the key's outputs may be
    /// swept to `successor_address` only.
    pub async fn retire_btc_account(
        &mut self,
        network: &str,
        key: KeyId,
        successor_address: &str,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE btc_accounts SET retired_at_ms = $3, successor_address = $4 \
             WHERE network = $1 AND key_id = $2 AND retired_at_ms IS NULL",
        )
        .bind(network)
        .bind(key.to_string())
        .bind(at.as_millis())
        .bind(successor_address)
        .execute(&mut *self.tx)
        .await?;
        one_row(done, "the key's Bitcoin account is retired already")
    }

    /// [`Store::btc_sweep_source`], read under this transaction.
    pub async fn btc_sweep_source_in_tx(
        &mut self,
        wallet: WalletId,
        network: &str,
        to: &str,
    ) -> Result<Option<KeyId>, StorageError> {
        btc_sweep_source_on(&mut *self.tx, wallet, network, to).await
    }

    /// Records a share refresh of a threshold key: its new reference (the
    /// public package) in place of `from_ref`, and the session the signer
    /// nodes are to commit. Refused while another refresh is unfinished.
    pub async fn begin_key_refresh(
        &mut self,
        key: KeyId,
        from_ref: &str,
        backend_ref: &str,
        session: &str,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE keys SET backend_ref = $2, refresh_session = $3 \
             WHERE id = $1 AND backend_ref = $4 AND refresh_session IS NULL",
        )
        .bind(key.to_string())
        .bind(backend_ref)
        .bind(session)
        .bind(from_ref)
        .execute(&mut *self.tx)
        .await?;
        one_row(
            done,
            "the key changed, or another refresh of it is unfinished",
        )
    }

    /// Every node committed refresh `session` of `key`.
    pub async fn end_key_refresh(&mut self, key: KeyId, session: &str) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE keys SET refresh_session = NULL WHERE id = $1 AND refresh_session = $2",
        )
        .bind(key.to_string())
        .bind(session)
        .execute(&mut *self.tx)
        .await?;
        one_row(done, "no such refresh of the key is unfinished")
    }

    /// Names `successor` as the key that takes over from `key`.
    pub async fn set_key_successor(
        &mut self,
        key: KeyId,
        successor: KeyId,
    ) -> Result<(), StorageError> {
        let done =
            sqlx::query("UPDATE keys SET successor_id = $2 WHERE id = $1 AND successor_id IS NULL")
                .bind(key.to_string())
                .bind(successor.to_string())
                .execute(&mut *self.tx)
                .await?;
        one_row(done, "the key already has a successor")
    }

    /// Retires a sender: transfers leave from the wallet's other (current)
    /// sender, and this one's funds are swept to `successor_address`.
    pub async fn retire_eth_sender(
        &mut self,
        network: &str,
        address: &str,
        successor_address: &str,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE eth_senders SET retired_at_ms = $3, successor_address = $4 \
             WHERE network = $1 AND address = $2 AND retired_at_ms IS NULL",
        )
        .bind(network)
        .bind(address)
        .bind(at.as_millis())
        .bind(successor_address)
        .execute(&mut *self.tx)
        .await?;
        one_row(done, "the sender is already retired")
    }

    /// The retired sender of `wallet` on `network` whose funds are swept to
    /// `destination`, if any: where a sweep leaves from.
    pub async fn sweep_source_in_tx(
        &mut self,
        wallet: WalletId,
        network: &str,
        destination: &str,
    ) -> Result<Option<String>, StorageError> {
        Ok(sqlx::query_scalar(SWEEP_SOURCE)
            .bind(wallet.to_string())
            .bind(network)
            .bind(destination)
            .fetch_optional(&mut *self.tx)
            .await?)
    }
}

const SWEEP_SOURCE: &str = "SELECT address FROM eth_senders WHERE wallet_id = $1 AND network = $2 \
     AND successor_address = $3 AND retired_at_ms IS NOT NULL ORDER BY address LIMIT 1";

impl Store {
    /// The key that took over from `key`, if it was rotated.
    pub async fn key_successor(&self, key: KeyId) -> Result<Option<KeyId>, StorageError> {
        let s: Option<Option<String>> =
            sqlx::query_scalar("SELECT successor_id FROM keys WHERE id = $1")
                .bind(key.to_string())
                .fetch_optional(&self.pool)
                .await?;
        let s = s.ok_or(StorageError::NotFound { what: "key" })?;
        s.map(|s| {
            s.parse()
                .map_err(|_| StorageError::Corrupt(format!("key id {s}")))
        })
        .transpose()
    }

    /// The sweep transfers made under an external id, by anyone, newest
    /// first: (id, state).
    pub async fn sweeps_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Vec<(domain::TransferId, String)>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, state FROM transfers WHERE external_id = $1 ORDER BY created_at_ms DESC, id DESC",
        )
        .bind(external_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(id_and_state).collect()
    }

    /// See [`WriteTx::btc_sweep_source_in_tx`].
    pub async fn btc_sweep_source(
        &self,
        wallet: WalletId,
        network: &str,
        to: &str,
    ) -> Result<Option<KeyId>, StorageError> {
        btc_sweep_source_on(&self.pool, wallet, network, to).await
    }

    /// A key's Bitcoin accounts, current and retired.
    pub async fn btc_accounts_of_key(
        &self,
        key: KeyId,
    ) -> Result<Vec<KeyBtcAccountRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT network, wallet_id, successor_address FROM btc_accounts WHERE key_id = $1 \
             ORDER BY network",
        )
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let wallet: String = r.try_get("wallet_id")?;
                Ok(KeyBtcAccountRow {
                    network: r.try_get("network")?,
                    wallet: wallet
                        .parse()
                        .map_err(|_| StorageError::Corrupt(format!("wallet id {wallet}")))?,
                    successor_address: r.try_get("successor_address")?,
                })
            })
            .collect()
    }

    /// The share refresh of a threshold key whose commit is unfinished.
    pub async fn key_refresh(&self, key: KeyId) -> Result<Option<String>, StorageError> {
        let s: Option<Option<String>> =
            sqlx::query_scalar("SELECT refresh_session FROM keys WHERE id = $1")
                .bind(key.to_string())
                .fetch_optional(&self.pool)
                .await?;
        s.ok_or(StorageError::NotFound { what: "key" })
    }

    /// A key's Ethereum senders, current and retired.
    pub async fn eth_senders_of_key(&self, key: KeyId) -> Result<Vec<KeySenderRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT network, address, key_id, first_nonce, created_at_ms, created_by, hd_index, wallet_id, \
             successor_address FROM eth_senders WHERE key_id = $1 ORDER BY network, address",
        )
        .bind(key.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeySenderRow {
                    sender: sender_from_row(r)?,
                    wallet: parse_wallet(r.try_get("wallet_id")?)?,
                    successor_address: r.try_get("successor_address")?,
                })
            })
            .collect()
    }

    /// [`WriteTx::sweep_source_in_tx`] outside a transaction.
    pub async fn sweep_source(
        &self,
        wallet: WalletId,
        network: &str,
        destination: &str,
    ) -> Result<Option<String>, StorageError> {
        Ok(sqlx::query_scalar(SWEEP_SOURCE)
            .bind(wallet.to_string())
            .bind(network)
            .bind(destination)
            .fetch_optional(&self.pool)
            .await?)
    }
}

fn id_and_state(r: &sqlx::any::AnyRow) -> Result<(domain::TransferId, String), StorageError> {
    let id: String = r.try_get("id")?;
    Ok((
        id.parse()
            .map_err(|_| StorageError::Corrupt(format!("transfer id {id}")))?,
        r.try_get("state")?,
    ))
}
