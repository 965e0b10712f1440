//! Ethereum senders, sends (one per nonce) and their signed attempts.
//!
//! Storage speaks plain values here (lower-case hex addresses, decimal
//! strings for `u128`); `service` turns them into `chain-eth` types.

use domain::{Actor, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::store::{Backend, Store};
use crate::tx::WriteTx;

/// An address Strongroom sends from on one network.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthSenderRow {
    pub network: String,
    pub address: String,
    pub key_id: domain::KeyId,
    pub first_nonce: u64,
    pub created_at: Timestamp,
    pub created_by: Actor,
    /// An HD key's child `m/…/0/i` (BIP-44 external chain); `None` for a
    /// single key.
    pub hd_index: Option<u32>,
}

/// One nonce of one sender and what it pays.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthSendRow {
    pub id: String,
    pub network: String,
    pub address: String,
    pub nonce: u64,
    pub asset: String,
    pub recipient: String,
    pub amount: u128,
    pub state: String,
    pub included_attempt: Option<u32>,
    pub block_number: Option<u64>,
    pub block_hash: Option<String>,
    pub created_at: Timestamp,
    pub created_by: Actor,
    pub updated_at: Timestamp,
}

/// A transaction signed (or about to be) for a send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthAttemptRow {
    pub send_id: String,
    pub attempt: u32,
    pub kind: String,
    pub to_address: String,
    pub value: u128,
    pub data: Vec<u8>,
    pub gas_limit: u64,
    pub legacy: bool,
    pub max_fee_per_gas: u128,
    pub max_priority_fee_per_gas: u128,
    pub signing_hash: String,
    pub raw: Option<Vec<u8>>,
    pub tx_hash: Option<String>,
    pub state: String,
    pub created_at: Timestamp,
}

const SEND_COLUMNS: &str = "id, network, address, nonce, asset, recipient, amount, state, \
     included_attempt, block_number, block_hash, created_at_ms, created_by, updated_at_ms";
const ATTEMPT_COLUMNS: &str = "send_id, attempt, kind, to_address, value, data, gas_limit, legacy, \
     max_fee_per_gas, max_priority_fee_per_gas, signing_hash, raw, tx_hash, state, created_at_ms";

fn to_i64(v: u64, what: &str) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|_| StorageError::Corrupt(format!("{what} {v} out of range")))
}

impl WriteTx {
    pub async fn insert_eth_sender(&mut self, s: &EthSenderRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO eth_senders (network, address, key_id, first_nonce, created_at_ms, \
             created_by, hd_index) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.network)
        .bind(&s.address)
        .bind(s.key_id.to_string())
        .bind(to_i64(s.first_nonce, "nonce")?)
        .bind(s.created_at.as_millis())
        .bind(s.created_by.to_string())
        .bind(s.hd_index.map(i64::from))
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "Ethereum sender"))?;
        Ok(())
    }

    /// The next nonce of a sender: one above the highest handed out, or the
    /// sender's first nonce. Takes the sender's row lock (PostgreSQL; SQLite
    /// already holds the database's write lock), so concurrent allocations
    /// queue; the unique key on (network, address, nonce) is the backstop.
    pub async fn next_eth_nonce(
        &mut self,
        network: &str,
        address: &str,
    ) -> Result<u64, StorageError> {
        let lock = match self.backend() {
            Backend::Sqlite => {
                "SELECT first_nonce FROM eth_senders WHERE network = $1 AND address = $2"
            }
            Backend::Postgres => {
                "SELECT first_nonce FROM eth_senders WHERE network = $1 AND address = $2 FOR UPDATE"
            }
        };
        let first: i64 = sqlx::query_scalar(lock)
            .bind(network)
            .bind(address)
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or(StorageError::NotFound {
                what: "Ethereum sender",
            })?;
        // A nonce given back (its send never signed) is used first: later
        // nonces wait behind it on the network.
        let released: Option<(String, i64)> = sqlx::query_as(
            "SELECT id, nonce FROM eth_sends WHERE network = $1 AND address = $2 \
             AND state = 'released' AND nonce >= $3 ORDER BY nonce LIMIT 1",
        )
        .bind(network)
        .bind(address)
        .bind(first)
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some((id, nonce)) = released {
            for q in [
                "DELETE FROM eth_attempts WHERE send_id = $1",
                "DELETE FROM eth_sends WHERE id = $1 AND state = 'released'",
            ] {
                sqlx::query(q).bind(&id).execute(&mut *self.tx).await?;
            }
            return u64::try_from(nonce)
                .map_err(|_| StorageError::Corrupt(format!("nonce {nonce}")));
        }
        let max: Option<i64> = sqlx::query_scalar(
            "SELECT MAX(nonce) FROM eth_sends WHERE network = $1 AND address = $2",
        )
        .bind(network)
        .bind(address)
        .fetch_one(&mut *self.tx)
        .await?;
        // Never below the first nonce: a reconciliation after a restore
        // raises it past nonces the chain has seen used.
        let next = match max {
            Some(m) => m
                .checked_add(1)
                .ok_or_else(|| StorageError::Corrupt("nonce overflow".into()))?
                .max(first),
            None => first,
        };
        u64::try_from(next).map_err(|_| StorageError::Corrupt(format!("nonce {next}")))
    }

    /// Gives back the nonce of a send nothing was signed for: the send
    /// becomes `released` and its nonce goes to the sender's next plan.
    /// A conflict if it is no longer `signing` or any attempt holds bytes.
    pub async fn release_eth_send(
        &mut self,
        id: &str,
        now: Timestamp,
    ) -> Result<u64, StorageError> {
        let nonce: Option<i64> = sqlx::query_scalar(
            "UPDATE eth_sends SET state = 'released', updated_at_ms = $2 \
             WHERE id = $1 AND state = 'signing' \
             AND NOT EXISTS (SELECT 1 FROM eth_attempts WHERE send_id = $1 AND raw IS NOT NULL) \
             RETURNING nonce",
        )
        .bind(id)
        .bind(now.as_millis())
        .fetch_optional(&mut *self.tx)
        .await?;
        let nonce = nonce.ok_or(StorageError::Conflict {
            what: "release of a send already signed",
        })?;
        sqlx::query("UPDATE eth_attempts SET state = 'released' WHERE send_id = $1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        u64::try_from(nonce).map_err(|_| StorageError::Corrupt(format!("nonce {nonce}")))
    }

    pub async fn insert_eth_send(&mut self, s: &EthSendRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO eth_sends ({SEND_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
        )))
        .bind(&s.id)
        .bind(&s.network)
        .bind(&s.address)
        .bind(to_i64(s.nonce, "nonce")?)
        .bind(&s.asset)
        .bind(&s.recipient)
        .bind(s.amount.to_string())
        .bind(&s.state)
        .bind(s.included_attempt.map(i64::from))
        .bind(s.block_number.map(|b| to_i64(b, "block")).transpose()?)
        .bind(s.block_hash.as_deref())
        .bind(s.created_at.as_millis())
        .bind(s.created_by.to_string())
        .bind(s.updated_at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "Ethereum nonce"))?;
        Ok(())
    }

    pub async fn insert_eth_attempt(&mut self, a: &EthAttemptRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO eth_attempts ({ATTEMPT_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        )))
        .bind(&a.send_id)
        .bind(i64::from(a.attempt))
        .bind(&a.kind)
        .bind(&a.to_address)
        .bind(a.value.to_string())
        .bind(a.data.clone())
        .bind(to_i64(a.gas_limit, "gas limit")?)
        .bind(i64::from(a.legacy))
        .bind(a.max_fee_per_gas.to_string())
        .bind(a.max_priority_fee_per_gas.to_string())
        .bind(&a.signing_hash)
        .bind(a.raw.clone())
        .bind(a.tx_hash.as_deref())
        .bind(&a.state)
        .bind(a.created_at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "Ethereum attempt"))?;
        Ok(())
    }

    /// Stores the signed bytes of an attempt that is waiting for them, and
    /// only if they are for the signing hash recorded before signing.
    pub async fn set_eth_attempt_signed(
        &mut self,
        send_id: &str,
        attempt: u32,
        signing_hash: &str,
        raw: &[u8],
        tx_hash: &str,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE eth_attempts SET raw = $1, tx_hash = $2, state = 'signed' \
             WHERE send_id = $3 AND attempt = $4 AND signing_hash = $5 AND state = 'signing'",
        )
        .bind(raw.to_vec())
        .bind(tx_hash)
        .bind(send_id)
        .bind(i64::from(attempt))
        .bind(signing_hash)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "Ethereum transaction hash"))?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "signed bytes for this attempt (signed elsewhere, or for other content)",
            });
        }
        Ok(())
    }

    pub async fn set_eth_attempt_state(
        &mut self,
        send_id: &str,
        attempt: u32,
        state: &str,
    ) -> Result<(), StorageError> {
        sqlx::query("UPDATE eth_attempts SET state = $1 WHERE send_id = $2 AND attempt = $3")
            .bind(state)
            .bind(send_id)
            .bind(i64::from(attempt))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Moves a send to `state`, from `expected` only (a compare-and-set, so
    /// two workers never both move it), recording where it was included.
    pub async fn set_eth_send_state(
        &mut self,
        id: &str,
        expected: &str,
        state: &str,
        included: Option<(u32, u64, &str)>,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let (attempt, number, hash) = match included {
            Some((a, n, h)) => (Some(i64::from(a)), Some(to_i64(n, "block")?), Some(h)),
            None => (None, None, None),
        };
        let done = sqlx::query(
            "UPDATE eth_sends SET state = $1, included_attempt = $2, block_number = $3, \
             block_hash = $4, updated_at_ms = $5 WHERE id = $6 AND state = $7",
        )
        .bind(state)
        .bind(attempt)
        .bind(number)
        .bind(hash)
        .bind(now.as_millis())
        .bind(id)
        .bind(expected)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "Ethereum send state (changed elsewhere)",
            });
        }
        Ok(())
    }
}

impl Store {
    pub async fn eth_sender(
        &self,
        network: &str,
        address: &str,
    ) -> Result<EthSenderRow, StorageError> {
        let row = sqlx::query(
            "SELECT network, address, key_id, first_nonce, created_at_ms, created_by, hd_index \
             FROM eth_senders WHERE network = $1 AND address = $2",
        )
        .bind(network)
        .bind(address)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound {
            what: "Ethereum sender",
        })?;
        sender_from_row(&row)
    }

    /// The highest block a finished send of this sender (confirmed,
    /// reverted or cancelled: no longer counted as an outflow) is in.
    pub async fn eth_highest_block(
        &self,
        network: &str,
        address: &str,
    ) -> Result<Option<u64>, StorageError> {
        eth_highest_block_on(&self.pool, network, address).await
    }

    pub async fn eth_send(&self, id: &str) -> Result<EthSendRow, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SEND_COLUMNS} FROM eth_sends WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound {
            what: "Ethereum send",
        })?;
        send_from_row(&row)
    }

    /// Sends of a network in any of `states`, by sender and nonce.
    pub async fn eth_sends_in(
        &self,
        network: &str,
        states: &[&str],
    ) -> Result<Vec<EthSendRow>, StorageError> {
        if states.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<String> = (0..states.len()).map(|i| format!("${}", i + 2)).collect();
        let sql = format!(
            "SELECT {SEND_COLUMNS} FROM eth_sends WHERE network = $1 AND state IN ({}) \
             ORDER BY address, nonce",
            marks.join(", ")
        );
        let mut q = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(network);
        for s in states {
            q = q.bind(*s);
        }
        let rows = q.fetch_all(&self.pool).await?;
        rows.iter().map(send_from_row).collect()
    }

    /// Every send of one sender, by nonce.
    pub async fn eth_sends_of(
        &self,
        network: &str,
        address: &str,
    ) -> Result<Vec<EthSendRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {SEND_COLUMNS} FROM eth_sends WHERE network = $1 AND address = $2 ORDER BY nonce"
        )))
        .bind(network)
        .bind(address)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(send_from_row).collect()
    }

    /// A send's attempts, first to last.
    pub async fn eth_attempts(&self, send_id: &str) -> Result<Vec<EthAttemptRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ATTEMPT_COLUMNS} FROM eth_attempts WHERE send_id = $1 ORDER BY attempt"
        )))
        .bind(send_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(attempt_from_row).collect()
    }
}

fn corrupt(what: &str, e: &dyn std::fmt::Display) -> StorageError {
    StorageError::Corrupt(format!("Ethereum {what}: {e}"))
}

fn u64_of(row: &AnyRow, col: &str) -> Result<u64, StorageError> {
    let v: i64 = row.try_get(col)?;
    u64::try_from(v).map_err(|e| corrupt(col, &e))
}

fn u128_of(row: &AnyRow, col: &str) -> Result<u128, StorageError> {
    let v: String = row.try_get(col)?;
    v.parse().map_err(|e| corrupt(col, &e))
}

pub(crate) fn sender_from_row(row: &AnyRow) -> Result<EthSenderRow, StorageError> {
    let key: String = row.try_get("key_id")?;
    let by: String = row.try_get("created_by")?;
    Ok(EthSenderRow {
        network: row.try_get("network")?,
        address: row.try_get("address")?,
        key_id: key.parse().map_err(|e| corrupt("key id", &e))?,
        first_nonce: u64_of(row, "first_nonce")?,
        created_at: Timestamp::from_millis(row.try_get("created_at_ms")?),
        created_by: by.parse().map_err(|e| corrupt("created_by", &e))?,
        hd_index: row
            .try_get::<Option<i64>, _>("hd_index")?
            .map(|i| u32::try_from(i).map_err(|_| corrupt("hd index", &i)))
            .transpose()?,
    })
}

fn send_from_row(row: &AnyRow) -> Result<EthSendRow, StorageError> {
    let by: String = row.try_get("created_by")?;
    let attempt: Option<i64> = row.try_get("included_attempt")?;
    let block: Option<i64> = row.try_get("block_number")?;
    Ok(EthSendRow {
        id: row.try_get("id")?,
        network: row.try_get("network")?,
        address: row.try_get("address")?,
        nonce: u64_of(row, "nonce")?,
        asset: row.try_get("asset")?,
        recipient: row.try_get("recipient")?,
        amount: u128_of(row, "amount")?,
        state: row.try_get("state")?,
        included_attempt: attempt
            .map(u32::try_from)
            .transpose()
            .map_err(|e| corrupt("attempt", &e))?,
        block_number: block
            .map(u64::try_from)
            .transpose()
            .map_err(|e| corrupt("block", &e))?,
        block_hash: row.try_get("block_hash")?,
        created_at: Timestamp::from_millis(row.try_get("created_at_ms")?),
        created_by: by.parse().map_err(|e| corrupt("created_by", &e))?,
        updated_at: Timestamp::from_millis(row.try_get("updated_at_ms")?),
    })
}

fn attempt_from_row(row: &AnyRow) -> Result<EthAttemptRow, StorageError> {
    let attempt: i64 = row.try_get("attempt")?;
    let legacy: i64 = row.try_get("legacy")?;
    Ok(EthAttemptRow {
        send_id: row.try_get("send_id")?,
        attempt: u32::try_from(attempt).map_err(|e| corrupt("attempt", &e))?,
        kind: row.try_get("kind")?,
        to_address: row.try_get("to_address")?,
        value: u128_of(row, "value")?,
        data: row.try_get("data")?,
        gas_limit: u64_of(row, "gas_limit")?,
        legacy: legacy == 1,
        max_fee_per_gas: u128_of(row, "max_fee_per_gas")?,
        max_priority_fee_per_gas: u128_of(row, "max_priority_fee_per_gas")?,
        signing_hash: row.try_get("signing_hash")?,
        raw: row.try_get("raw")?,
        tx_hash: row.try_get("tx_hash")?,
        state: row.try_get("state")?,
        created_at: Timestamp::from_millis(row.try_get("created_at_ms")?),
    })
}

async fn eth_highest_block_on<'e, E>(
    db: E,
    network: &str,
    address: &str,
) -> Result<Option<u64>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let n: Option<i64> = sqlx::query_scalar(
        "SELECT MAX(block_number) FROM eth_sends WHERE network = $1 AND address = $2 \
         AND state IN ('confirmed', 'reverted', 'cancelled')",
    )
    .bind(network)
    .bind(address)
    .fetch_one(db)
    .await?;
    n.map(|n| u64::try_from(n).map_err(|_| StorageError::Corrupt("block number".into())))
        .transpose()
}

impl WriteTx {
    /// [`Store::eth_highest_block`], read under this transaction.
    pub async fn eth_highest_block_in_tx(
        &mut self,
        network: &str,
        address: &str,
    ) -> Result<Option<u64>, StorageError> {
        eth_highest_block_on(&mut *self.tx, network, address).await
    }
}
