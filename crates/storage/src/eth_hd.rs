//! Ethereum HD accounts' deposit addresses: sender rows of a wallet with
//! their own account id (the source a deposit sweep names in its intent),
//! their child index under the HD key and the label they were issued for.

use domain::{AccountId, KeyId, Timestamp, WalletId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::eth::{EthSenderRow, sender_from_row};
use crate::row::{corrupt, parsed, ts};
use crate::store::Store;
use crate::transfers::{OPEN_STATES, Outflow, OutflowsOf, outflows_on};
use crate::tx::WriteTx;

/// One deposit address of an Ethereum HD account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthDepositAddressRow {
    /// Its account id: what a sweep of its funds names as its source.
    pub id: AccountId,
    pub network: String,
    /// Lower-case hex.
    pub address: String,
    pub wallet: WalletId,
    pub key: KeyId,
    /// The child `m/44'/60'/0'/0/index` of the key's account.
    pub index: u32,
    /// Whom (in the integrator's terms) it was issued for.
    pub label: Option<String>,
    pub created_at: Timestamp,
}

const COLUMNS: &str =
    "deposit_id, network, address, wallet_id, key_id, hd_index, label, created_at_ms";

fn from_row(r: &AnyRow) -> Result<EthDepositAddressRow, StorageError> {
    let index: i64 = r.try_get("hd_index")?;
    Ok(EthDepositAddressRow {
        id: parsed(r, "deposit_id")?,
        network: r.try_get("network")?,
        address: r.try_get("address")?,
        wallet: parsed(r, "wallet_id")?,
        key: parsed(r, "key_id")?,
        index: u32::try_from(index).map_err(|_| corrupt("hd_index", &index))?,
        label: r.try_get("label")?,
        created_at: ts(r, "created_at_ms")?,
    })
}

/// The next child index of `key` on `network`: one above the highest
/// given to a sender (the account's own is 0). The unique index on
/// (network, key, index) is the backstop against a race.
async fn next_hd_index_on<'e, E>(db: E, network: &str, key: KeyId) -> Result<u32, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let top: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(hd_index) FROM eth_senders WHERE network = $1 AND key_id = $2",
    )
    .bind(network)
    .bind(key.to_string())
    .fetch_one(db)
    .await?;
    let next = top
        .map_or(Ok(0), |t| t.checked_add(1).ok_or(t))
        .map_err(|t| corrupt("hd_index", &t))?;
    u32::try_from(next)
        .ok()
        .filter(|n| *n < 0x8000_0000)
        .ok_or_else(|| corrupt("hd_index", &"past the unhardened range"))
}

impl WriteTx {
    /// [`Store::next_eth_hd_index`], read under this transaction.
    pub async fn next_eth_hd_index(
        &mut self,
        network: &str,
        key: KeyId,
    ) -> Result<u32, StorageError> {
        next_hd_index_on(&mut *self.tx, network, key).await
    }

    /// Records a deposit address: its sender row (for its nonces and the
    /// scanners), in its wallet, with its account id and label.
    pub async fn insert_eth_deposit_address(
        &mut self,
        sender: &EthSenderRow,
        d: &EthDepositAddressRow,
    ) -> Result<(), StorageError> {
        self.insert_eth_sender(sender).await?;
        sqlx::query(
            "UPDATE eth_senders SET wallet_id = $1, deposit_id = $2, label = $3 \
             WHERE network = $4 AND address = $5",
        )
        .bind(d.wallet.to_string())
        .bind(d.id.to_string())
        .bind(&d.label)
        .bind(&d.network)
        .bind(&d.address)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "deposit address"))?;
        Ok(())
    }

    /// The open sweeps of deposit address `id` (its outflows), read under
    /// this transaction.
    pub async fn deposit_outflows_in_tx(
        &mut self,
        id: AccountId,
    ) -> Result<Vec<Outflow>, StorageError> {
        outflows_on(&mut *self.tx, OutflowsOf::Source(id)).await
    }

    /// Retires a deposit address (its key was rotated): no longer handed
    /// out, its label free for the successor's; still swept. False if it
    /// was already retired.
    pub async fn retire_eth_deposit_address(
        &mut self,
        network: &str,
        address: &str,
        at: Timestamp,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE eth_senders SET retired_at_ms = $3 WHERE network = $1 AND address = $2 \
             AND deposit_id IS NOT NULL AND retired_at_ms IS NULL",
        )
        .bind(network)
        .bind(address)
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// [`Store::eth_deposit_address`], read under this transaction.
    pub async fn eth_deposit_address_in_tx(
        &mut self,
        id: AccountId,
    ) -> Result<Option<EthDepositAddressRow>, StorageError> {
        let q = format!("SELECT {COLUMNS} FROM eth_senders WHERE deposit_id = $1");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id.to_string())
            .fetch_optional(&mut *self.tx)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }
}

impl Store {
    /// The next child index of `key` on `network`: one above the highest
    /// given to a sender (the account's own is 0).
    pub async fn next_eth_hd_index(&self, network: &str, key: KeyId) -> Result<u32, StorageError> {
        next_hd_index_on(&self.pool, network, key).await
    }

    /// The current HD accounts' senders (child 0, not retired) of every
    /// wallet, on every network, with their wallets.
    pub async fn eth_hd_accounts(&self) -> Result<Vec<(EthSenderRow, WalletId)>, StorageError> {
        let rows = sqlx::query(
            "SELECT network, address, key_id, first_nonce, created_at_ms, created_by, hd_index, \
             wallet_id FROM eth_senders WHERE hd_index = 0 AND deposit_id IS NULL \
             AND retired_at_ms IS NULL AND wallet_id IS NOT NULL ORDER BY network, address",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((sender_from_row(r)?, parsed(r, "wallet_id")?)))
            .collect()
    }

    /// The open transfers from or to deposit address `d` (its sweeps, and
    /// gas top-ups paying it), oldest first.
    pub async fn open_transfers_of_deposit(
        &self,
        d: &EthDepositAddressRow,
    ) -> Result<Vec<domain::TransferId>, StorageError> {
        let from = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM transfers WHERE source_account = $1 AND state IN ({OPEN_STATES})"
        )))
        .bind(d.id.to_string())
        .fetch_all(&self.pool)
        .await?;
        let to = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM transfers WHERE wallet_id = $1 AND destination = $2 \
             AND state IN ({OPEN_STATES})"
        )))
        .bind(d.wallet.to_string())
        .bind(&d.address)
        .fetch_all(&self.pool)
        .await?;
        let mut ids = from
            .iter()
            .chain(&to)
            .map(|r| parsed(r, "id"))
            .collect::<Result<Vec<domain::TransferId>, StorageError>>()?;
        ids.sort();
        ids.dedup();
        Ok(ids)
    }

    /// The deposit address with account id `id`.
    pub async fn eth_deposit_address(
        &self,
        id: AccountId,
    ) -> Result<Option<EthDepositAddressRow>, StorageError> {
        let q = format!("SELECT {COLUMNS} FROM eth_senders WHERE deposit_id = $1");
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// The deposit address at `address` (lower-case hex), if it is one.
    pub async fn eth_deposit_address_at(
        &self,
        network: &str,
        address: &str,
    ) -> Result<Option<EthDepositAddressRow>, StorageError> {
        let q = format!(
            "SELECT {COLUMNS} FROM eth_senders WHERE network = $1 AND address = $2 \
             AND deposit_id IS NOT NULL"
        );
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(network)
            .bind(address)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// The wallet's deposit address issued for `label` on `network`.
    pub async fn eth_deposit_address_labelled(
        &self,
        wallet: WalletId,
        network: &str,
        label: &str,
    ) -> Result<Option<EthDepositAddressRow>, StorageError> {
        let q = format!(
            "SELECT {COLUMNS} FROM eth_senders WHERE wallet_id = $1 AND network = $2 \
             AND label = $3 AND deposit_id IS NOT NULL AND retired_at_ms IS NULL"
        );
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(wallet.to_string())
            .bind(network)
            .bind(label)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// The wallet's newest unlabelled deposit address on `network` that
    /// nothing has paid yet (handed out again rather than a new one).
    pub async fn eth_deposit_address_unpaid(
        &self,
        wallet: WalletId,
        network: &str,
    ) -> Result<Option<EthDepositAddressRow>, StorageError> {
        let q = format!(
            "SELECT {COLUMNS} FROM eth_senders s WHERE wallet_id = $1 AND network = $2 \
             AND deposit_id IS NOT NULL AND label IS NULL AND retired_at_ms IS NULL \
             AND NOT EXISTS (SELECT 1 FROM eth_deposits d \
                 WHERE d.network = s.network AND d.address = s.address) \
             ORDER BY hd_index DESC LIMIT 1"
        );
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(wallet.to_string())
            .bind(network)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(from_row)
            .transpose()
    }

    /// The wallet's deposit addresses on `network` (those of rotated keys
    /// too: their funds are still swept), by key and index.
    pub async fn eth_deposit_addresses(
        &self,
        wallet: WalletId,
        network: &str,
    ) -> Result<Vec<EthDepositAddressRow>, StorageError> {
        let q = format!(
            "SELECT {COLUMNS} FROM eth_senders WHERE wallet_id = $1 AND network = $2 \
             AND deposit_id IS NOT NULL ORDER BY created_at_ms, hd_index"
        );
        sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(wallet.to_string())
            .bind(network)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(from_row)
            .collect()
    }
}
