//! Policy versions, proposals and their votes, approver keys, the address
//! book, freezes, judged transfers and their approvals.

use domain::{Actor, Timestamp, TransferId, WalletId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::row::{corrupt, opt_parsed, opt_ts, parsed, ts};
use crate::store::{Backend, Store};
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
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRow {
    pub voter: Actor,
    /// `approve` or `veto`.
    pub vote: String,
    pub at: Timestamp,
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

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRow {
    pub id: TransferId,
    pub wallet: WalletId,
    pub initiator: Actor,
    pub asset: String,
    /// Base units.
    pub amount: u128,
    pub destination: String,
    /// The intent's canonical bytes.
    pub intent: Vec<u8>,
    pub digest: String,
    pub policy_version: u64,
    pub decision_id: String,
    /// JSON of the decision, with its trace.
    pub decision: String,
    pub state: String,
    pub usd_micro: Option<u128>,
    /// When a transfer still waiting for approvals lapses.
    pub expires_at: Option<Timestamp>,
    /// When a time lock ends.
    pub unlock_at: Option<Timestamp>,
    pub eth_send_id: Option<String>,
    /// The Bitcoin send carrying it out (with others, in a batch).
    pub btc_send_id: Option<String>,
    /// The client's own id for it, unique per initiator.
    pub external_id: Option<String>,
    /// Attempts to hand it to the chain that failed.
    pub attempts: u32,
    /// When the next attempt may start (also a claim's lease).
    pub next_attempt_at: Timestamp,
    pub last_error: Option<String>,
    /// Higher goes first (0 low, 1 normal, 2 high, 3 urgent).
    pub priority: u8,
    /// A transfer that must complete before this one starts.
    pub depends_on: Option<TransferId>,
    /// Held for a person since then: no automatic retry.
    pub held_at: Option<Timestamp>,
    /// When it reached a final state.
    pub finished_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// One step of a transfer's lifecycle, as stored: the new state (only from
/// the state it was read in), the record's changes and a history line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferMove<'a> {
    pub id: TransferId,
    pub from: &'a str,
    pub to: &'a str,
    /// When a time lock ends.
    pub unlock_at: Option<Timestamp>,
    /// The send that now carries it out.
    pub eth_send_id: Option<&'a str>,
    /// The Bitcoin send that now carries it out.
    pub btc_send_id: Option<&'a str>,
    /// A failed attempt: its count, when the next may start, the error.
    pub failure: Option<(u32, Timestamp, &'a str)>,
    /// Held for a person.
    pub hold: bool,
    /// Attempts, error and hold forgotten; the next may start now.
    pub reset: bool,
    /// It ends here.
    pub finish: bool,
    pub actor: &'a str,
    pub why: &'a str,
    pub at: Timestamp,
}

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
}

/// A line of a transfer's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRow {
    pub seq: u32,
    pub state: String,
    pub actor: String,
    pub why: String,
    pub at: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalRow {
    pub transfer: TransferId,
    pub approver: Actor,
    pub public_key: String,
    /// `approve` or `reject`.
    pub vote: String,
    /// Hex of the Ed25519 signature over the approval statement.
    pub signature: String,
    pub expires_at: Timestamp,
    pub at: Timestamp,
    pub voided_at: Option<Timestamp>,
}

/// Whose earlier transfers a rolling window adds up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowOf<'a> {
    Wallet(WalletId),
    Initiator(&'a Actor),
    Destination(&'a str),
}

/// One earlier transfer inside a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowItem {
    pub asset: String,
    pub amount: u128,
    pub usd_micro: Option<u128>,
}

/// States whose transfers count toward rolling windows: everything not
/// refused or abandoned.
const NOT_COUNTED: &str = "('blocked', 'rejected', 'expired', 'cancelled')";

fn version_of(v: i64) -> Result<u64, StorageError> {
    u64::try_from(v).map_err(|e| corrupt("policy version", &e))
}

fn version_db(v: u64) -> Result<i64, StorageError> {
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
     expires_at_ms, state, decided_at_ms";

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
    })
}

fn vote_from_row(row: &AnyRow) -> Result<VoteRow, StorageError> {
    Ok(VoteRow {
        voter: parsed(row, "voter")?,
        vote: row.try_get("vote")?,
        at: ts(row, "at_ms")?,
    })
}

fn approver_key_from_row(row: &AnyRow) -> Result<ApproverKeyRow, StorageError> {
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

const TRANSFER_COLUMNS: &str = "id, wallet_id, initiator, asset, amount, destination, intent, \
     digest, policy_version, decision_id, decision, state, usd_micro, expires_at_ms, \
     unlock_at_ms, eth_send_id, external_id, attempts, next_attempt_at_ms, last_error, \
     priority, depends_on, held_at_ms, finished_at_ms, btc_send_id, created_at_ms, updated_at_ms";

fn transfer_from_row(row: &AnyRow) -> Result<TransferRow, StorageError> {
    Ok(TransferRow {
        id: parsed(row, "id")?,
        wallet: parsed(row, "wallet_id")?,
        initiator: parsed(row, "initiator")?,
        asset: row.try_get("asset")?,
        amount: parsed(row, "amount")?,
        destination: row.try_get("destination")?,
        intent: row.try_get("intent")?,
        digest: row.try_get("digest")?,
        policy_version: version_of(row.try_get("policy_version")?)?,
        decision_id: row.try_get("decision_id")?,
        decision: row.try_get("decision")?,
        state: row.try_get("state")?,
        usd_micro: opt_parsed(row, "usd_micro")?,
        expires_at: opt_ts(row, "expires_at_ms")?,
        unlock_at: opt_ts(row, "unlock_at_ms")?,
        eth_send_id: row.try_get("eth_send_id")?,
        external_id: row.try_get("external_id")?,
        attempts: u32::try_from(row.try_get::<i64, _>("attempts")?)
            .map_err(|e| corrupt("attempts", &e))?,
        next_attempt_at: ts(row, "next_attempt_at_ms")?,
        last_error: row.try_get("last_error")?,
        priority: u8::try_from(row.try_get::<i64, _>("priority")?)
            .map_err(|e| corrupt("priority", &e))?,
        depends_on: opt_parsed(row, "depends_on")?,
        held_at: opt_ts(row, "held_at_ms")?,
        finished_at: opt_ts(row, "finished_at_ms")?,
        btc_send_id: row.try_get("btc_send_id")?,
        created_at: ts(row, "created_at_ms")?,
        updated_at: ts(row, "updated_at_ms")?,
    })
}

const APPROVAL_COLUMNS: &str =
    "transfer_id, approver, public_key, vote, signature, expires_at_ms, at_ms, voided_at_ms";

fn approval_from_row(row: &AnyRow) -> Result<ApprovalRow, StorageError> {
    Ok(ApprovalRow {
        transfer: parsed(row, "transfer_id")?,
        approver: parsed(row, "approver")?,
        public_key: row.try_get("public_key")?,
        vote: row.try_get("vote")?,
        signature: row.try_get("signature")?,
        expires_at: ts(row, "expires_at_ms")?,
        at: ts(row, "at_ms")?,
        voided_at: opt_ts(row, "voided_at_ms")?,
    })
}

/// The amounts of a wallet's transfers of `asset` that still wait for a
/// transaction (waiting for approvals, in a time lock or queued).
pub(crate) async fn unplanned_outflows_on<'e, E>(
    db: E,
    wallet: WalletId,
    asset: &str,
) -> Result<Vec<u128>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT amount FROM transfers WHERE wallet_id = $1 AND asset = $2 \
         AND state IN ('pending_approval', 'time_locked', 'queued')",
    )
    .bind(wallet.to_string())
    .bind(asset)
    .fetch_all(db)
    .await?;
    rows.iter().map(|r| parsed(r, "amount")).collect()
}

/// The queue's claim: up to `$3` queued transfers, not held, `due` (given
/// the table prefix to write: `t.` inside, none outside) and passing
/// `filter`, highest priority first, then oldest, leased until `$2`. On
/// PostgreSQL the rows are picked `FOR UPDATE SKIP LOCKED`; the outer
/// condition checks again what a concurrent claim may have changed.
fn claim_query(backend: Backend, due: impl Fn(&str) -> String, filter: &str) -> String {
    let skip = match backend {
        Backend::Sqlite => "",
        Backend::Postgres => " FOR UPDATE OF t SKIP LOCKED",
    };
    format!(
        "UPDATE transfers SET next_attempt_at_ms = $2 WHERE id IN (\
         SELECT t.id FROM transfers t LEFT JOIN transfers d ON d.id = t.depends_on \
         WHERE t.state = 'queued' AND t.held_at_ms IS NULL AND {} {filter} \
         ORDER BY t.priority DESC, t.created_at_ms, t.id LIMIT $3{skip}) \
         AND state = 'queued' AND {} RETURNING {TRANSFER_COLUMNS}",
        due("t."),
        due(""),
    )
}

/// The order claimed transfers are taken in (the claim's `ORDER BY`).
fn claim_order(t: &TransferRow) -> (std::cmp::Reverse<u8>, Timestamp, TransferId) {
    (std::cmp::Reverse(t.priority), t.created_at, t.id)
}

async fn wallet_outflows_on<'e, E>(
    db: E,
    wallet: WalletId,
) -> Result<Vec<(String, u128, bool)>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(
        "SELECT t.asset, t.amount, t.state FROM transfers t WHERE t.wallet_id = $1 \
         AND t.state IN ('pending_approval', 'time_locked', 'queued', 'signing', 'signed', \
         'broadcasting', 'confirming')",
    )
    .bind(wallet.to_string())
    .fetch_all(db)
    .await?;
    rows.iter()
        .map(|r| {
            let state: String = r.try_get("state")?;
            Ok((
                r.try_get("asset")?,
                parsed(r, "amount")?,
                !matches!(state.as_str(), "pending_approval" | "time_locked"),
            ))
        })
        .collect()
}

async fn wallet_eth_sender_on<'e, E>(
    db: E,
    wallet: WalletId,
    network: &str,
) -> Result<Option<String>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    Ok(sqlx::query_scalar(
        "SELECT address FROM eth_senders WHERE wallet_id = $1 AND network = $2 \
         ORDER BY created_at_ms, address LIMIT 1",
    )
    .bind(wallet.to_string())
    .bind(network)
    .fetch_optional(db)
    .await?)
}

async fn idempotency_key_on<'e, E>(
    db: E,
    principal: &Actor,
    key: &str,
) -> Result<Option<(String, TransferId)>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT request_hash, transfer_id FROM idempotency_keys WHERE principal = $1 AND key = $2",
    )
    .bind(principal.to_string())
    .bind(key)
    .fetch_optional(db)
    .await?;
    row.map(|r| Ok((r.try_get("request_hash")?, parsed(&r, "transfer_id")?)))
        .transpose()
}

impl WriteTx {
    fn for_update(&self) -> &'static str {
        match self.backend() {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE",
        }
    }

    /// Serialises judgments with governance changes. Judgments take it
    /// shared, applied changes (a new policy, an address-book entry, …)
    /// exclusively: a transfer is judged wholly before or wholly after a
    /// change, on PostgreSQL as on SQLite (whose writers are serial anyway).
    pub async fn governance_lock(&mut self, shared: bool) -> Result<(), StorageError> {
        if self.backend() == Backend::Postgres {
            let q = if shared {
                "SELECT pg_advisory_xact_lock_shared(hashtextextended('strongroom.governance', 0))"
            } else {
                "SELECT pg_advisory_xact_lock(hashtextextended('strongroom.governance', 0))"
            };
            sqlx::query(q).execute(&mut *self.tx).await?;
        }
        Ok(())
    }

    /// Exclusive locks on names (an initiator, a destination) until this
    /// transaction ends, taken in sorted order so that two holders never
    /// wait on each other. SQLite's writers are serial: nothing to do.
    pub async fn lock_names(&mut self, names: &[String]) -> Result<(), StorageError> {
        if self.backend() == Backend::Postgres {
            let mut sorted: Vec<&String> = names.iter().collect();
            sorted.sort();
            sorted.dedup();
            for n in sorted {
                sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 1))")
                    .bind(n)
                    .execute(&mut *self.tx)
                    .await?;
            }
        }
        Ok(())
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

    pub async fn is_own_eth_address_in_tx(
        &mut self,
        network: &str,
        address: &str,
    ) -> Result<bool, StorageError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM eth_senders WHERE network = $1 AND address = $2",
        )
        .bind(network)
        .bind(address)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(n > 0)
    }

    pub async fn price_in_tx(
        &mut self,
        asset: &str,
    ) -> Result<Option<(u128, Timestamp)>, StorageError> {
        let row = sqlx::query("SELECT micro_usd, as_of_ms FROM prices WHERE asset = $1")
            .bind(asset)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| Ok((parsed(&r, "micro_usd")?, ts(&r, "as_of_ms")?)))
            .transpose()
    }

    /// A principal's approver key in force, locked until this transaction
    /// ends: a revocation waits for the vote, or the vote sees it.
    pub async fn approver_key_for_update(
        &mut self,
        principal: &Actor,
    ) -> Result<Option<ApproverKeyRow>, StorageError> {
        let q = format!(
            "SELECT principal, public_key, registered_at_ms, revoked_at_ms FROM approver_keys \
             WHERE principal = $1 AND revoked_at_ms IS NULL{}",
            self.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(principal.to_string())
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(approver_key_from_row).transpose()
    }

    /// Replaces an approver's vote that was voided or has expired.
    pub async fn replace_approval(
        &mut self,
        a: &ApprovalRow,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE transfer_approvals SET public_key = $3, vote = $4, signature = $5, \
             expires_at_ms = $6, at_ms = $7, voided_at_ms = NULL \
             WHERE transfer_id = $1 AND approver = $2 \
             AND (voided_at_ms IS NOT NULL OR expires_at_ms <= $8)",
        )
        .bind(a.transfer.to_string())
        .bind(a.approver.to_string())
        .bind(&a.public_key)
        .bind(&a.vote)
        .bind(&a.signature)
        .bind(a.expires_at.as_millis())
        .bind(a.at.as_millis())
        .bind(now.as_millis())
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "vote of this approver on this transfer",
            });
        }
        Ok(())
    }

    /// The policy version in force, read under this transaction.
    pub async fn current_policy_version(&mut self) -> Result<Option<u64>, StorageError> {
        let v: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM policies")
            .fetch_one(&mut *self.tx)
            .await?;
        v.map(version_of).transpose()
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
            "INSERT INTO proposals ({PROPOSAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
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
            "INSERT INTO proposal_votes (proposal_id, voter, vote, at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(proposal)
        .bind(v.voter.to_string())
        .bind(&v.vote)
        .bind(v.at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "vote on this proposal"))?;
        Ok(())
    }

    /// Changes an admin's earlier vote (an approval turned into a veto).
    pub async fn change_vote(&mut self, proposal: &str, v: &VoteRow) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE proposal_votes SET vote = $3, at_ms = $4 WHERE proposal_id = $1 AND voter = $2",
        )
        .bind(proposal)
        .bind(v.voter.to_string())
        .bind(&v.vote)
        .bind(v.at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn votes_in_tx(&mut self, proposal: &str) -> Result<Vec<VoteRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT voter, vote, at_ms FROM proposal_votes WHERE proposal_id = $1 ORDER BY at_ms, voter",
        )
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

    pub async fn insert_freeze(&mut self, f: &FreezeRow) -> Result<(), StorageError> {
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

    /// Takes the wallet's row lock: judgments of one wallet's transfers
    /// (and their rolling windows) are serialised.
    pub async fn lock_wallet(&mut self, id: WalletId) -> Result<(String, String), StorageError> {
        let q = format!(
            "SELECT name, tier FROM wallets WHERE id = $1{}",
            self.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id.to_string())
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or(StorageError::NotFound { what: "wallet" })?;
        Ok((row.try_get("name")?, row.try_get("tier")?))
    }

    /// Earlier transfers that count toward a window starting at `since`.
    pub async fn window_items(
        &mut self,
        of: WindowOf<'_>,
        since: Timestamp,
    ) -> Result<Vec<WindowItem>, StorageError> {
        let (col, val) = match of {
            WindowOf::Wallet(w) => ("wallet_id", w.to_string()),
            WindowOf::Initiator(a) => ("initiator", a.to_string()),
            WindowOf::Destination(d) => ("destination", d.to_owned()),
        };
        let q = format!(
            "SELECT asset, amount, usd_micro FROM transfers WHERE {col} = $1 \
             AND created_at_ms >= $2 AND state NOT IN {NOT_COUNTED}"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(val)
            .bind(since.as_millis())
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(WindowItem {
                    asset: r.try_get("asset")?,
                    amount: parsed(r, "amount")?,
                    usd_micro: opt_parsed(r, "usd_micro")?,
                })
            })
            .collect()
    }

    pub async fn insert_transfer(&mut self, t: &TransferRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
              $20, $21, $22, $23, $24, $25, $26, $27)"
        )))
        .bind(t.id.to_string())
        .bind(t.wallet.to_string())
        .bind(t.initiator.to_string())
        .bind(&t.asset)
        .bind(t.amount.to_string())
        .bind(&t.destination)
        .bind(&t.intent)
        .bind(&t.digest)
        .bind(version_db(t.policy_version)?)
        .bind(&t.decision_id)
        .bind(&t.decision)
        .bind(&t.state)
        .bind(t.usd_micro.map(|u| u.to_string()))
        .bind(t.expires_at.map(Timestamp::as_millis))
        .bind(t.unlock_at.map(Timestamp::as_millis))
        .bind(&t.eth_send_id)
        .bind(&t.external_id)
        .bind(i64::from(t.attempts))
        .bind(t.next_attempt_at.as_millis())
        .bind(&t.last_error)
        .bind(i64::from(t.priority))
        .bind(t.depends_on.map(|d| d.to_string()))
        .bind(t.held_at.map(Timestamp::as_millis))
        .bind(t.finished_at.map(Timestamp::as_millis))
        .bind(&t.btc_send_id)
        .bind(t.created_at.as_millis())
        .bind(t.updated_at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "transfer with this external id"))?;
        Ok(())
    }

    /// [`Store::wallet_outflows`], read under this transaction.
    pub async fn wallet_outflows_in_tx(
        &mut self,
        wallet: WalletId,
    ) -> Result<Vec<(String, u128, bool)>, StorageError> {
        wallet_outflows_on(&mut *self.tx, wallet).await
    }

    /// The amounts of the wallet's transfers of `asset` not yet given a
    /// transaction, read under this transaction.
    pub async fn unplanned_outflows_in_tx(
        &mut self,
        wallet: WalletId,
        asset: &str,
    ) -> Result<Vec<u128>, StorageError> {
        unplanned_outflows_on(&mut *self.tx, wallet, asset).await
    }

    /// [`Store::wallet_eth_sender`], read under this transaction.
    pub async fn wallet_eth_sender_in_tx(
        &mut self,
        wallet: WalletId,
        network: &str,
    ) -> Result<Option<String>, StorageError> {
        wallet_eth_sender_on(&mut *self.tx, wallet, network).await
    }

    /// The request hash and transfer an idempotency key was first used for,
    /// read under this transaction.
    pub async fn idempotency_key(
        &mut self,
        principal: &Actor,
        key: &str,
    ) -> Result<Option<(String, TransferId)>, StorageError> {
        idempotency_key_on(&mut *self.tx, principal, key).await
    }

    /// A transfer made by this principal under its external id, if any.
    pub async fn transfer_by_external_id(
        &mut self,
        initiator: &Actor,
        external_id: &str,
    ) -> Result<Option<TransferId>, StorageError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM transfers WHERE initiator = $1 AND external_id = $2",
        )
        .bind(initiator.to_string())
        .bind(external_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        id.map(|s| s.parse().map_err(|e| corrupt("transfer id", &e)))
            .transpose()
    }

    pub async fn insert_idempotency_key(
        &mut self,
        principal: &Actor,
        key: &str,
        request_hash: &str,
        transfer: TransferId,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO idempotency_keys (principal, key, request_hash, transfer_id, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(principal.to_string())
        .bind(key)
        .bind(request_hash)
        .bind(transfer.to_string())
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "request with this idempotency key"))?;
        Ok(())
    }

    /// A transfer, locked until this transaction ends.
    pub async fn lock_transfer(&mut self, id: TransferId) -> Result<TransferRow, StorageError> {
        let q = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1{}",
            self.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(id.to_string())
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or(StorageError::NotFound { what: "transfer" })?;
        transfer_from_row(&row)
    }

    /// Stores one step of a transfer's lifecycle and its history line; a
    /// conflict if the transfer had moved on meanwhile.
    pub async fn move_transfer(&mut self, m: &TransferMove<'_>) -> Result<(), StorageError> {
        let mut set = vec![
            "state = $2",
            "unlock_at_ms = COALESCE($3, unlock_at_ms)",
            "eth_send_id = COALESCE($4, eth_send_id)",
            "btc_send_id = COALESCE($10, btc_send_id)",
            "updated_at_ms = $5",
        ];
        if m.failure.is_some() {
            set.extend([
                "attempts = $6",
                "next_attempt_at_ms = $7",
                "last_error = $8",
            ]);
        }
        if m.hold {
            set.push("held_at_ms = $5");
        }
        if m.reset {
            set.extend([
                "attempts = 0",
                "next_attempt_at_ms = $5",
                "last_error = NULL",
                "held_at_ms = NULL",
            ]);
        }
        if m.finish {
            set.push("finished_at_ms = $5");
        }
        let q = format!(
            "UPDATE transfers SET {} WHERE id = $1 AND state = $9",
            set.join(", ")
        );
        let (attempts, next, error) = m.failure.unwrap_or((0, m.at, ""));
        let done = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(m.id.to_string())
            .bind(m.to)
            .bind(m.unlock_at.map(Timestamp::as_millis))
            .bind(m.eth_send_id)
            .bind(m.at.as_millis())
            .bind(i64::from(attempts))
            .bind(next.as_millis())
            .bind(error)
            .bind(m.from)
            .bind(m.btc_send_id)
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "change of this transfer's state",
            });
        }
        self.add_history(m.id, m.to, m.actor, m.why, m.at).await
    }

    /// Appends a line to a transfer's history.
    pub async fn add_history(
        &mut self,
        id: TransferId,
        state: &str,
        actor: &str,
        why: &str,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO transfer_history (transfer_id, seq, state, actor, why, at_ms) \
             SELECT $1, COALESCE(MAX(seq), 0) + 1, $2, $3, $4, $5 FROM transfer_history \
             WHERE transfer_id = $1",
        )
        .bind(id.to_string())
        .bind(state)
        .bind(actor)
        .bind(why)
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// The transfers a Bitcoin send carries out, locked until this
    /// transaction ends, oldest first.
    pub async fn transfers_of_btc_send(
        &mut self,
        send_id: &str,
    ) -> Result<Vec<TransferRow>, StorageError> {
        let q = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE btc_send_id = $1 \
             ORDER BY created_at_ms, id{}",
            self.for_update()
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(send_id)
            .fetch_all(&mut *self.tx)
            .await?;
        rows.iter().map(transfer_from_row).collect()
    }

    /// The transfer an Ethereum send carries out, locked until this
    /// transaction ends; `None` if it carries none.
    pub async fn transfer_of_send(
        &mut self,
        send_id: &str,
    ) -> Result<Option<TransferRow>, StorageError> {
        let q = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE eth_send_id = $1{}",
            self.for_update()
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(send_id)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.as_ref().map(transfer_from_row).transpose()
    }

    pub async fn insert_approval(&mut self, a: &ApprovalRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO transfer_approvals ({APPROVAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        )))
        .bind(a.transfer.to_string())
        .bind(a.approver.to_string())
        .bind(&a.public_key)
        .bind(&a.vote)
        .bind(&a.signature)
        .bind(a.expires_at.as_millis())
        .bind(a.at.as_millis())
        .bind(a.voided_at.map(Timestamp::as_millis))
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "vote of this approver on this transfer"))?;
        Ok(())
    }

    pub async fn approvals_in_tx(
        &mut self,
        transfer: TransferId,
    ) -> Result<Vec<ApprovalRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM transfer_approvals WHERE transfer_id = $1 ORDER BY at_ms"
        )))
        .bind(transfer.to_string())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(approval_from_row).collect()
    }

    /// Voids an approver's votes on transfers not yet submitted; returns
    /// the transfers touched.
    pub async fn void_approvals_of(
        &mut self,
        approver: &Actor,
        at: Timestamp,
    ) -> Result<Vec<TransferId>, StorageError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT a.transfer_id FROM transfer_approvals a JOIN transfers t ON t.id = a.transfer_id \
             WHERE a.approver = $1 AND a.voided_at_ms IS NULL \
             AND t.state IN ('pending_approval', 'time_locked', 'queued') ORDER BY a.transfer_id",
        )
        .bind(approver.to_string())
        .fetch_all(&mut *self.tx)
        .await?;
        for id in &ids {
            sqlx::query(
                "UPDATE transfer_approvals SET voided_at_ms = $3 WHERE transfer_id = $1 AND approver = $2",
            )
            .bind(id)
            .bind(approver.to_string())
            .bind(at.as_millis())
            .execute(&mut *self.tx)
            .await?;
        }
        ids.iter()
            .map(|s| s.parse().map_err(|e| corrupt("transfer id", &e)))
            .collect()
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
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {PROPOSAL_COLUMNS} FROM proposals ORDER BY created_at_ms DESC, id DESC LIMIT $1"
        )))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(proposal_from_row).collect()
    }

    pub async fn votes(&self, proposal: &str) -> Result<Vec<VoteRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT voter, vote, at_ms FROM proposal_votes WHERE proposal_id = $1 ORDER BY at_ms, voter",
        )
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

    pub async fn transfer(&self, id: TransferId) -> Result<TransferRow, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound { what: "transfer" })?;
        transfer_from_row(&row)
    }

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

    /// The request hash and transfer an idempotency key was first used for.
    pub async fn idempotency_key(
        &self,
        principal: &Actor,
        key: &str,
    ) -> Result<Option<(String, TransferId)>, StorageError> {
        idempotency_key_on(&self.pool, principal, key).await
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
    ) -> Result<Vec<(TransferRow, Option<String>)>, StorageError> {
        let q = claim_query(
            self.backend(),
            |t| format!("{t}next_attempt_at_ms <= $1"),
            "AND (t.depends_on IS NULL OR d.finished_at_ms IS NOT NULL)",
        );
        let turn = self.write_turn().await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(q))
            .bind(now.as_millis())
            .bind(now.as_millis().saturating_add(lease_ms))
            .bind(i64::from(limit))
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
                "UPDATE transfers SET next_attempt_at_ms = $2 WHERE id = $1 AND state = 'queued'",
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
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE \
             (state = 'queued' AND (held_at_ms IS NOT NULL OR attempts > 0)) \
             OR (state IN ('signing', 'signed', 'broadcasting', 'confirming') AND updated_at_ms < $1) \
             ORDER BY updated_at_ms, id LIMIT $2"
        )))
        .bind(quiet_since.as_millis())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transfer_from_row).collect()
    }

    /// The transfers a Bitcoin send carries out, oldest first.
    pub async fn transfers_of_btc_send(
        &self,
        send_id: &str,
    ) -> Result<Vec<TransferRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE btc_send_id = $1 ORDER BY created_at_ms, id"
        )))
        .bind(send_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transfer_from_row).collect()
    }

    /// The transfer an Ethereum send carries out, if any.
    pub async fn transfer_of_send(
        &self,
        send_id: &str,
    ) -> Result<Option<TransferRow>, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE eth_send_id = $1"
        )))
        .bind(send_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(transfer_from_row).transpose()
    }

    /// Every state a transfer passed through, in order.
    pub async fn transfer_history(&self, id: TransferId) -> Result<Vec<HistoryRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, state, actor, why, at_ms FROM transfer_history WHERE transfer_id = $1 \
             ORDER BY seq",
        )
        .bind(id.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryRow {
                    seq: u32::try_from(r.try_get::<i64, _>("seq")?)
                        .map_err(|e| corrupt("seq", &e))?,
                    state: r.try_get("state")?,
                    actor: r.try_get("actor")?,
                    why: r.try_get("why")?,
                    at: ts(r, "at_ms")?,
                })
            })
            .collect()
    }

    /// Transfers, newest first, optionally of one wallet and in one state,
    /// created before `before` (a page cursor: the last page's oldest).
    pub async fn transfers_page(
        &self,
        wallet: Option<WalletId>,
        state: Option<&str>,
        before: Option<TransferId>,
        limit: u32,
    ) -> Result<Vec<TransferRow>, StorageError> {
        // Ids are time-ordered (UUIDv7): the id is the cursor.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers \
             WHERE ($1 IS NULL OR wallet_id = $1) AND ($2 IS NULL OR state = $2) \
             AND ($3 IS NULL OR id < $3) ORDER BY id DESC LIMIT $4"
        )))
        .bind(wallet.map(|w| w.to_string()))
        .bind(state)
        .bind(before.map(|t| t.to_string()))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transfer_from_row).collect()
    }

    /// Transfers in a state, oldest first.
    pub async fn transfers_in(
        &self,
        state: &str,
        limit: u32,
    ) -> Result<Vec<TransferRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE state = $1 ORDER BY created_at_ms, id LIMIT $2"
        )))
        .bind(state)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transfer_from_row).collect()
    }

    pub async fn approvals(&self, transfer: TransferId) -> Result<Vec<ApprovalRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM transfer_approvals WHERE transfer_id = $1 ORDER BY at_ms"
        )))
        .bind(transfer.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(approval_from_row).collect()
    }

    /// Every Ethereum sender of a wallet: (network, address).
    pub async fn wallet_eth_senders(
        &self,
        wallet: WalletId,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let rows = sqlx::query(
            "SELECT network, address FROM eth_senders WHERE wallet_id = $1 ORDER BY network, address",
        )
        .bind(wallet.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("network")?, r.try_get("address")?)))
            .collect()
    }

    /// A wallet's transfers that will still take money out: (asset, base
    /// units, committed). Committed: approved, or handed to the chain and
    /// not yet confirmed (an included one is counted although the chain's
    /// balance may already show it: over-counting for a few blocks is safe,
    /// missing it is not). Not committed: waiting for approvals or in a time lock.
    pub async fn wallet_outflows(
        &self,
        wallet: WalletId,
    ) -> Result<Vec<(String, u128, bool)>, StorageError> {
        wallet_outflows_on(&self.pool, wallet).await
    }

    /// The wallet's Ethereum sender on a network (the first registered).
    pub async fn wallet_eth_sender(
        &self,
        wallet: WalletId,
        network: &str,
    ) -> Result<Option<String>, StorageError> {
        wallet_eth_sender_on(&self.pool, wallet, network).await
    }
}

impl WriteTx {
    pub async fn set_price(
        &mut self,
        asset: &str,
        micro_usd: u128,
        as_of: Timestamp,
        by: &Actor,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO prices (asset, micro_usd, as_of_ms, set_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (asset) DO UPDATE SET micro_usd = excluded.micro_usd, \
             as_of_ms = excluded.as_of_ms, set_by = excluded.set_by",
        )
        .bind(asset)
        .bind(micro_usd.to_string())
        .bind(as_of.as_millis())
        .bind(by.to_string())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
