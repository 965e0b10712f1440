//! The governance log: append-only, hash-chained records of every governed
//! change, and the head row that serialises appends. Stored as given: the
//! service computes the hashes and MACs, and verifies them when it reads.

use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::store::Store;
use crate::tx::{WriteTx, seq_from_db, seq_to_db};

/// One governance log record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GovRecordRow {
    pub seq: u64,
    pub time_ms: i64,
    /// `bootstrap`, `console`, `key-holder` or `quorum`.
    pub authority: String,
    pub actor: String,
    /// Canonical JSON.
    pub content: String,
    /// Canonical JSON array of the signed votes (`[]` when none).
    pub approvals: String,
    /// Hex.
    pub prev_hash: String,
    pub hash: String,
    /// Hex HMAC-SHA256 of the hash, when the server held the key.
    pub mac: Option<String>,
}

const COLUMNS: &str = "seq, time_ms, authority, actor, content, approvals, prev_hash, hash, mac";

fn record_from_row(row: &AnyRow) -> Result<GovRecordRow, StorageError> {
    Ok(GovRecordRow {
        seq: seq_from_db(row.try_get("seq")?)?,
        time_ms: row.try_get("time_ms")?,
        authority: row.try_get("authority")?,
        actor: row.try_get("actor")?,
        content: row.try_get("content")?,
        approvals: row.try_get("approvals")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
        mac: row.try_get("mac")?,
    })
}

async fn head_of<'e, E>(ex: E, lock: &str) -> Result<(u64, String), StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (seq, hash): (i64, String) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT seq, hash FROM governance_head WHERE id = 1{lock}"
    )))
    .fetch_optional(ex)
    .await?
    .ok_or_else(|| StorageError::Corrupt("governance head row is missing".into()))?;
    Ok((seq_from_db(seq)?, hash))
}

async fn after_of<'e, E>(ex: E, seq: u64, limit: u32) -> Result<Vec<GovRecordRow>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {COLUMNS} FROM governance_log WHERE seq > $1 ORDER BY seq LIMIT $2"
    )))
    .bind(seq_to_db(seq)?)
    .bind(i64::from(limit))
    .fetch_all(ex)
    .await?;
    rows.iter().map(record_from_row).collect()
}

impl Store {
    /// The head kept beside the log: `(seq, hash)`, `(0, zeros)` when empty.
    pub async fn governance_head(&self) -> Result<(u64, String), StorageError> {
        head_of(&self.pool, "").await
    }

    /// Up to `limit` records after `seq`, in order.
    pub async fn governance_after(
        &self,
        seq: u64,
        limit: u32,
    ) -> Result<Vec<GovRecordRow>, StorageError> {
        after_of(&self.pool, seq, limit).await
    }

    /// The details of the latest audit record with this action, if any
    /// (the governance anchors: `governance.logged`, `governance.bootstrap_closed`).
    pub async fn latest_audit_details(&self, action: &str) -> Result<Option<String>, StorageError> {
        let row: Option<(String,)> = sqlx::query_as(
            "SELECT details FROM audit_log WHERE action = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(action)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(d,)| d))
    }
}

impl WriteTx {
    /// The head, locked until the transaction ends (appends are serialised
    /// here, across processes).
    pub async fn lock_governance_head(&mut self) -> Result<(u64, String), StorageError> {
        let lock = self.for_update();
        head_of(&mut *self.tx, lock).await
    }

    /// The head as this transaction sees it.
    pub async fn governance_head_in_tx(&mut self) -> Result<(u64, String), StorageError> {
        head_of(&mut *self.tx, "").await
    }

    pub async fn governance_after_in_tx(
        &mut self,
        seq: u64,
        limit: u32,
    ) -> Result<Vec<GovRecordRow>, StorageError> {
        after_of(&mut *self.tx, seq, limit).await
    }

    /// Appends `r` after the head it names (`r.seq` = head + 1, `r.prev_hash`
    /// = head's hash, checked), and moves the head. Take the head with
    /// [`lock_governance_head`](Self::lock_governance_head) first.
    pub async fn append_governance(&mut self, r: &GovRecordRow) -> Result<(), StorageError> {
        let (seq, hash) = head_of(&mut *self.tx, "").await?;
        if r.seq != seq.saturating_add(1) || r.prev_hash != hash {
            return Err(StorageError::Corrupt(format!(
                "governance record {} does not follow the head ({seq}): take the head first",
                r.seq
            )));
        }
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO governance_log ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        )))
        .bind(seq_to_db(r.seq)?)
        .bind(r.time_ms)
        .bind(&r.authority)
        .bind(&r.actor)
        .bind(&r.content)
        .bind(&r.approvals)
        .bind(&r.prev_hash)
        .bind(&r.hash)
        .bind(&r.mac)
        .execute(&mut *self.tx)
        .await?;
        sqlx::query("UPDATE governance_head SET seq = $1, hash = $2 WHERE id = 1")
            .bind(seq_to_db(r.seq)?)
            .bind(&r.hash)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

/// The governed tables as they are (what the service compares with the
/// verified log).
#[derive(Debug, Clone, Default)]
pub struct GovernedRows {
    /// Grants in force at the time asked.
    pub grants: Vec<(domain::Actor, domain::Grant)>,
    /// Approver keys in force.
    pub approver_keys: Vec<(domain::Actor, String)>,
    /// Policy versions and their digests.
    pub policies: Vec<(u64, String)>,
    /// Prices in millionths of a dollar.
    pub prices: Vec<(String, u128)>,
    /// Wallet tiers.
    pub tiers: Vec<(domain::WalletId, String)>,
}

impl Store {
    /// Every governed row in force at `now` (API keys and the address book
    /// have their own listings).
    pub async fn governed_rows(
        &self,
        now: domain::Timestamp,
    ) -> Result<GovernedRows, StorageError> {
        use crate::row::{corrupt, parsed};
        let grants = sqlx::query(
            "SELECT principal, role, scope FROM grants \
             WHERE expires_at_ms IS NULL OR expires_at_ms > $1",
        )
        .bind(now.as_millis())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| {
            let g = domain::Grant::new(parsed(r, "role")?, parsed(r, "scope")?)
                .map_err(|e| corrupt("grant", &e))?;
            Ok((parsed(r, "principal")?, g))
        })
        .collect::<Result<_, StorageError>>()?;
        let approver_keys = sqlx::query(
            "SELECT principal, public_key FROM approver_keys WHERE revoked_at_ms IS NULL",
        )
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok((parsed(r, "principal")?, r.try_get("public_key")?)))
        .collect::<Result<_, StorageError>>()?;
        let policies = sqlx::query("SELECT version, digest FROM policies")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| {
                Ok((
                    crate::governance::version_of(r.try_get("version")?)?,
                    r.try_get("digest")?,
                ))
            })
            .collect::<Result<_, StorageError>>()?;
        let prices = sqlx::query("SELECT asset, micro_usd FROM prices")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((r.try_get("asset")?, parsed(r, "micro_usd")?)))
            .collect::<Result<_, StorageError>>()?;
        let tiers = sqlx::query("SELECT id, tier FROM wallets")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| Ok((parsed(r, "id")?, r.try_get("tier")?)))
            .collect::<Result<_, StorageError>>()?;
        Ok(GovernedRows {
            grants,
            approver_keys,
            policies,
            prices,
            tiers,
        })
    }
}
