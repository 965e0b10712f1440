//! Governance: policy versions, proposals and their votes, approver keys,
//! the address book, freezes, wallet tiers, and the governance lock.

use domain::{Actor, Timestamp, WalletId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::row::{corrupt, opt_ts, parsed, ts};
use crate::store::Store;
use crate::tx::WriteTx;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRow {
    pub version: u64,
    /// Canonical JSON of the document.
    pub document: String,
    pub digest: String,
    pub proposal_id: Option<String>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalRow {
    pub id: String,
    pub kind: String,
    /// JSON of the change.
    pub payload: String,
    pub summary: String,
    pub proposed_by: Actor,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
    /// `open`, `applied`, `vetoed` or `expired`.
    pub state: String,
    pub decided_at: Option<Timestamp>,
    /// The governance log's head when it was made (what votes sign over);
    /// `None` only for proposals from before signed votes.
    pub base_seq: Option<u64>,
    pub base_hash: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRow {
    pub voter: Actor,
    /// `approve` or `veto`.
    pub vote: String,
    pub at: Timestamp,
    /// The admin's key and their signature over the vote (hex).
    pub public_key: Option<String>,
    pub signature: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApproverKeyRow {
    /// `user:<id>` or `api-key:<id>`.
    pub principal: Actor,
    /// Hex of the Ed25519 public key.
    pub public_key: String,
    pub registered_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WhitelistRow {
    pub id: String,
    pub network: String,
    pub address: String,
    pub label: String,
    pub group: Option<String>,
    pub usable_from: Timestamp,
    pub created_at: Timestamp,
    pub removed_at: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FreezeRow {
    pub id: String,
    /// `global`, `wallet:<id>` or `key:<id>`.
    pub scope: String,
    pub reason: String,
    pub frozen_by: Actor,
    pub frozen_at: Timestamp,
    pub released_at: Option<Timestamp>,
    pub release_proposal: Option<String>,
}

pub(crate) fn version_of(v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|e| corrupt("policy version", &e))
}

pub(crate) fn version_db(v: u64) -> Result<i64, StorageError> {
    i64::try_from(v).map_err(|e| corrupt("policy version", &e))
}

fn policy_from_row(row: &AnyRow) -> Result<PolicyRow, StorageError> {
    Ok(PolicyRow {
        version: version_of(row.try_get("version")?)?,
        document: row.try_get("document")?,
        digest: row.try_get("digest")?,
        proposal_id: row.try_get("proposal_id")?,
        created_at: ts(row, "created_at_ms")?,
    })
}

const PROPOSAL_COLUMNS: &str = "id, kind, payload, summary, proposed_by, created_at_ms, \
     expires_at_ms, state, decided_at_ms, base_seq, base_hash";

const VOTE_COLUMNS: &str = "voter, vote, at_ms, public_key, signature";

fn proposal_from_row(row: &AnyRow) -> Result<ProposalRow, StorageError> {
    Ok(ProposalRow {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        payload: row.try_get("payload")?,
        summary: row.try_get("summary")?,
        proposed_by: parsed(row, "proposed_by")?,
        created_at: ts(row, "created_at_ms")?,
        expires_at: ts(row, "expires_at_ms")?,
        state: row.try_get("state")?,
        decided_at: opt_ts(row, "decided_at_ms")?,
        base_seq: row
            .try_get::<Option<i64>, _>("base_seq")?
            .map(version_of)
            .transpose()?,
        base_hash: row.try_get("base_hash")?,
    })
}

fn vote_from_row(row: &AnyRow) -> Result<VoteRow, StorageError> {
    Ok(VoteRow {
        voter: parsed(row, "voter")?,
        vote: row.try_get("vote")?,
        at: ts(row, "at_ms")?,
        public_key: row.try_get("public_key")?,
        signature: row.try_get("signature")?,
    })
}

pub(crate) fn approver_key_from_row(row: &AnyRow) -> Result<ApproverKeyRow, StorageError> {
    Ok(ApproverKeyRow {
        principal: parsed(row, "principal")?,
        public_key: row.try_get("public_key")?,
        registered_at: ts(row, "registered_at_ms")?,
        revoked_at: opt_ts(row, "revoked_at_ms")?,
    })
}

const WHITELIST_COLUMNS: &str =
    "id, network, address, label, address_group, usable_from_ms, created_at_ms, removed_at_ms";

fn whitelist_from_row(row: &AnyRow) -> Result<WhitelistRow, StorageError> {
    Ok(WhitelistRow {
        id: row.try_get("id")?,
        network: row.try_get("network")?,
        address: row.try_get("address")?,
        label: row.try_get("label")?,
        group: row.try_get("address_group")?,
        usable_from: ts(row, "usable_from_ms")?,
        created_at: ts(row, "created_at_ms")?,
        removed_at: opt_ts(row, "removed_at_ms")?,
    })
}

const FREEZE_COLUMNS: &str =
    "id, scope, reason, frozen_by, frozen_at_ms, released_at_ms, release_proposal";

fn freeze_from_row(row: &AnyRow) -> Result<FreezeRow, StorageError> {
    Ok(FreezeRow {
        id: row.try_get("id")?,
        scope: row.try_get("scope")?,
        reason: row.try_get("reason")?,
        frozen_by: parsed(row, "frozen_by")?,
        frozen_at: ts(row, "frozen_at_ms")?,
        released_at: opt_ts(row, "released_at_ms")?,
        release_proposal: row.try_get("release_proposal")?,
    })
}

impl WriteTx {
    /// Serialises judgments with governance changes. Judgments take it
    /// shared, applied changes (a new policy, an address-book entry, …)
    /// exclusively: a transfer is judged wholly before or wholly after a
    /// change, on PostgreSQL as on SQLite (whose writers are serial anyway).
    pub async fn governance_lock(&mut self, shared: bool) -> Result<(), StorageError> {
        self.advisory_lock("strongroom.governance", shared).await
    }

    pub async fn policy_in_tx(&mut self, version: u64) -> Result<PolicyRow, StorageError> {
        let row = sqlx::query(
            "SELECT version, document, digest, proposal_id, created_at_ms FROM policies WHERE version = $1",
        )
        .bind(version_db(version)?)
        .fetch_optional(&mut *self.tx)
        .await?
        .ok_or(StorageError::NotFound {
            what: "policy version",
        })?;
        policy_from_row(&row)
    }

    /// The address-book entry for an address, read under this transaction.
    pub async fn whitelist_entry_in_tx(
        &mut self,
        network: &str,
        address: &str,
    ) -> Result<Option<WhitelistRow>, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WHITELIST_COLUMNS} FROM whitelist WHERE network = $1 AND address = $2 \
             AND removed_at_ms IS NULL"
        )))
        .bind(network)
        .bind(address)
        .fetch_optional(&mut *self.tx)
        .await?;
        row.as_ref().map(whitelist_from_row).transpose()
    }

    /// The policy version in force and its digest, read under this
    /// transaction in one statement (the document is not read).
    pub async fn current_policy_digest(&mut self) -> Result<Option<(u64, String)>, StorageError> {
        let row: Option<(i64, String)> =
            sqlx::query_as("SELECT version, digest FROM policies ORDER BY version DESC LIMIT 1")
                .fetch_optional(&mut *self.tx)
                .await?;
        row.map(|(v, d)| Ok((version_of(v)?, d))).transpose()
    }

    pub async fn insert_policy(&mut self, p: &PolicyRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO policies (version, document, digest, proposal_id, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(version_db(p.version)?)
        .bind(&p.document)
        .bind(&p.digest)
        .bind(&p.proposal_id)
        .bind(p.created_at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "policy version"))?;
        Ok(())
    }

    pub async fn insert_proposal(&mut self, p: &ProposalRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO proposals ({PROPOSAL_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        )))
        .bind(&p.id)
        .bind(&p.kind)
        .bind(&p.payload)
        .bind(&p.summary)
        .bind(p.proposed_by.to_string())
        .bind(p.created_at.as_millis())
        .bind(p.expires_at.as_millis())
        .bind(&p.state)
        .bind(p.decided_at.map(Timestamp::as_millis))
        .bind(p.base_seq.map(version_db).transpose()?)
        .bind(&p.base_hash)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "proposal"))?;
        Ok(())
    }

    /// A proposal, locked until this transaction ends.
    pub async fn lock_proposal(&mut self, id: &str) -> Result<ProposalRow, StorageError> {
        let q = format!(
            "SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE id = $1{}",
            self.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id)
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or(StorageError::NotFound { what: "proposal" })?;
        proposal_from_row(&row)
    }

    pub async fn insert_vote(&mut self, proposal: &str, v: &VoteRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO proposal_votes (proposal_id, voter, vote, at_ms, public_key, signature) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(proposal)
        .bind(v.voter.to_string())
        .bind(&v.vote)
        .bind(v.at.as_millis())
        .bind(&v.public_key)
        .bind(&v.signature)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "vote on this proposal"))?;
        Ok(())
    }

    /// Changes an admin's earlier vote (an approval turned into a veto).
    pub async fn change_vote(&mut self, proposal: &str, v: &VoteRow) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE proposal_votes SET vote = $3, at_ms = $4, public_key = $5, signature = $6 \
             WHERE proposal_id = $1 AND voter = $2",
        )
        .bind(proposal)
        .bind(v.voter.to_string())
        .bind(&v.vote)
        .bind(v.at.as_millis())
        .bind(&v.public_key)
        .bind(&v.signature)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn votes_in_tx(&mut self, proposal: &str) -> Result<Vec<VoteRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VOTE_COLUMNS} FROM proposal_votes WHERE proposal_id = $1 ORDER BY at_ms, voter"
        )))
        .bind(proposal)
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(vote_from_row).collect()
    }

    pub async fn set_proposal_state(
        &mut self,
        id: &str,
        state: &str,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE proposals SET state = $2, decided_at_ms = $3 WHERE id = $1 AND state = 'open'",
        )
        .bind(id)
        .bind(state)
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "decision on this proposal",
            });
        }
        Ok(())
    }

    /// The principals holding a global admin grant now (the quorum's
    /// electorate): not expired, not a revoked or expired API key, not a
    /// user who is no longer active.
    /// Whether governance has ever applied a change.
    pub async fn any_applied_proposal_in_tx(&mut self) -> Result<bool, StorageError> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM proposals WHERE state = 'applied'")
            .fetch_one(&mut *self.tx)
            .await?;
        Ok(n > 0)
    }

    pub async fn admins_in_tx(&mut self, now: Timestamp) -> Result<Vec<Actor>, StorageError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT g.principal FROM grants g WHERE g.role = 'admin' AND g.scope = 'global' \
             AND (g.expires_at_ms IS NULL OR g.expires_at_ms > $1) \
             AND NOT EXISTS (SELECT 1 FROM api_keys k WHERE 'api-key:' || k.id = g.principal \
                 AND (k.revoked_at_ms IS NOT NULL OR k.expires_at_ms <= $1)) \
             AND NOT EXISTS (SELECT 1 FROM users u WHERE 'user:' || u.id = g.principal \
                 AND u.state <> 'active') \
             ORDER BY g.principal",
        )
        .bind(now.as_millis())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter()
            .map(|p| p.parse().map_err(|e| corrupt("grant principal", &e)))
            .collect()
    }

    pub async fn insert_approver_key(&mut self, k: &ApproverKeyRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO approver_keys (principal, public_key, registered_at_ms, revoked_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(k.principal.to_string())
        .bind(&k.public_key)
        .bind(k.registered_at.as_millis())
        .bind(k.revoked_at.map(Timestamp::as_millis))
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "approver key"))?;
        Ok(())
    }

    /// The approver key in force for `principal` (hex), if any.
    pub async fn approver_key_in_force(
        &mut self,
        principal: &Actor,
    ) -> Result<Option<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT public_key FROM approver_keys WHERE principal = $1 AND revoked_at_ms IS NULL \
             ORDER BY registered_at_ms DESC LIMIT 1",
        )
        .bind(principal.to_string())
        .fetch_optional(&mut *self.tx)
        .await?)
    }

    /// Revokes a principal's active approver key; returns how many were revoked.
    pub async fn revoke_approver_keys(
        &mut self,
        principal: &Actor,
        at: Timestamp,
    ) -> Result<u64, StorageError> {
        let done = sqlx::query(
            "UPDATE approver_keys SET revoked_at_ms = $2 WHERE principal = $1 AND revoked_at_ms IS NULL",
        )
        .bind(principal.to_string())
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn insert_whitelist(&mut self, w: &WhitelistRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO whitelist ({WHITELIST_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(&w.id)
        .bind(&w.network)
        .bind(&w.address)
        .bind(&w.label)
        .bind(&w.group)
        .bind(w.usable_from.as_millis())
        .bind(w.created_at.as_millis())
        .bind(w.removed_at.map(Timestamp::as_millis))
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "address-book entry for this address"))?;
        Ok(())
    }

    pub async fn remove_whitelist(&mut self, id: &str, at: Timestamp) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE whitelist SET removed_at_ms = $2 WHERE id = $1 AND removed_at_ms IS NULL",
        )
        .bind(id)
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::NotFound {
                what: "address-book entry",
            });
        }
        Ok(())
    }

    /// Inserts a freeze under the exclusive freeze lock: every broadcast
    /// registered before it is visible to this transaction, and none
    /// registers until it commits.
    pub async fn insert_freeze(&mut self, f: &FreezeRow) -> Result<(), StorageError> {
        self.freeze_lock(false).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO freezes ({FREEZE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        )))
        .bind(&f.id)
        .bind(&f.scope)
        .bind(&f.reason)
        .bind(f.frozen_by.to_string())
        .bind(f.frozen_at.as_millis())
        .bind(f.released_at.map(Timestamp::as_millis))
        .bind(&f.release_proposal)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "freeze"))?;
        Ok(())
    }

    /// Freezes in force at `now`, read in this transaction.
    pub async fn active_freezes_in_tx(
        &mut self,
        now: Timestamp,
    ) -> Result<Vec<FreezeRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FREEZE_COLUMNS} FROM freezes WHERE released_at_ms IS NULL OR released_at_ms > $1 \
             ORDER BY frozen_at_ms, id"
        )))
        .bind(now.as_millis())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(freeze_from_row).collect()
    }

    /// Sets when a freeze ends (now, or after a cool-down).
    pub async fn release_freeze(
        &mut self,
        id: &str,
        at: Timestamp,
        proposal: &str,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE freezes SET released_at_ms = $2, release_proposal = $3 \
             WHERE id = $1 AND released_at_ms IS NULL",
        )
        .bind(id)
        .bind(at.as_millis())
        .bind(proposal)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::NotFound {
                what: "freeze in force",
            });
        }
        // Transfers whose last attempt met a freeze wait out their backoff
        // no longer: they are tried again when it ends (one still frozen
        // by another freeze meets it again, and backs off again).
        sqlx::query(
            "UPDATE transfers SET next_attempt_at_ms = $1, claimed_by = NULL WHERE state = 'queued' \
             AND held_at_ms IS NULL AND claimed_by IS NULL AND last_error LIKE 'frozen (%' \
             AND next_attempt_at_ms > $1",
        )
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn set_wallet_tier(&mut self, id: WalletId, tier: &str) -> Result<(), StorageError> {
        let done = sqlx::query("UPDATE wallets SET tier = $2 WHERE id = $1")
            .bind(id.to_string())
            .bind(tier)
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::NotFound { what: "wallet" });
        }
        Ok(())
    }
}

impl Store {
    pub async fn current_policy(&self) -> Result<Option<PolicyRow>, StorageError> {
        let row = sqlx::query(
            "SELECT version, document, digest, proposal_id, created_at_ms FROM policies \
             ORDER BY version DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(policy_from_row).transpose()
    }

    pub async fn policy(&self, version: u64) -> Result<PolicyRow, StorageError> {
        let row = sqlx::query(
            "SELECT version, document, digest, proposal_id, created_at_ms FROM policies WHERE version = $1",
        )
        .bind(version_db(version)?)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound {
            what: "policy version",
        })?;
        policy_from_row(&row)
    }

    pub async fn proposal(&self, id: &str) -> Result<ProposalRow, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROPOSAL_COLUMNS} FROM proposals WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound { what: "proposal" })?;
        proposal_from_row(&row)
    }

    pub async fn proposals(&self, limit: u32) -> Result<Vec<ProposalRow>, StorageError> {
        self.proposals_page(None, limit).await
    }

    /// Proposals newest first, after the proposal `after` (an unknown one
    /// gives nothing).
    pub async fn proposals_page(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ProposalRow>, StorageError> {
        let Some(after) = after else {
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {PROPOSAL_COLUMNS} FROM proposals ORDER BY created_at_ms DESC, id DESC \
                 LIMIT $1"
            )))
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await?;
            return rows.iter().map(proposal_from_row).collect();
        };
        let at = sqlx::query("SELECT created_at_ms FROM proposals WHERE id = $1")
            .bind(after)
            .fetch_optional(&self.pool)
            .await?;
        let Some(at) = at else {
            return Ok(Vec::new());
        };
        let at: i64 = at.try_get("created_at_ms")?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROPOSAL_COLUMNS} FROM proposals \
             WHERE created_at_ms < $1 OR (created_at_ms = $1 AND id < $2) \
             ORDER BY created_at_ms DESC, id DESC LIMIT $3"
        )))
        .bind(at)
        .bind(after)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(proposal_from_row).collect()
    }

    pub async fn votes(&self, proposal: &str) -> Result<Vec<VoteRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VOTE_COLUMNS} FROM proposal_votes WHERE proposal_id = $1 ORDER BY at_ms, voter"
        )))
        .bind(proposal)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(vote_from_row).collect()
    }

    pub async fn whitelist(&self) -> Result<Vec<WhitelistRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {WHITELIST_COLUMNS} FROM whitelist WHERE removed_at_ms IS NULL ORDER BY network, address"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(whitelist_from_row).collect()
    }

    /// Freezes in force at `now` (not released, or released for a later time).
    pub async fn active_freezes(&self, now: Timestamp) -> Result<Vec<FreezeRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FREEZE_COLUMNS} FROM freezes WHERE released_at_ms IS NULL OR released_at_ms > $1 \
             ORDER BY frozen_at_ms, id"
        )))
        .bind(now.as_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(freeze_from_row).collect()
    }

    pub async fn freeze(&self, id: &str) -> Result<FreezeRow, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FREEZE_COLUMNS} FROM freezes WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound { what: "freeze" })?;
        freeze_from_row(&row)
    }
}
