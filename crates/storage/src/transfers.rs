//! Judged transfers: their rows (intent, digest, policy version, decision,
//! state), every move with its `transfer_history` line, their approvals,
//! the wallet locks and rolling windows the judgment reads under, and the
//! reads of a wallet's open outflows and sender.

use domain::{Actor, Timestamp, TransferId, WalletId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::governance::{ApproverKeyRow, approver_key_from_row, version_db, version_of};
use crate::row::{corrupt, opt_parsed, opt_ts, parsed, ts};
use crate::store::{Backend, Store};
use crate::tx::WriteTx;

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
    /// The authenticator of its judgment (`service::judgment`): `None` for
    /// one judged before schema 32 and not yet authenticated.
    pub judgment_mac: Option<String>,
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
    /// Its reservation was given back: it no longer names a send.
    pub release: bool,
    pub actor: &'a str,
    pub why: &'a str,
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

pub(crate) const TRANSFER_COLUMNS: &str = "id, wallet_id, initiator, asset, amount, destination, intent, \
     digest, policy_version, decision_id, decision, state, usd_micro, expires_at_ms, \
     unlock_at_ms, eth_send_id, external_id, attempts, next_attempt_at_ms, last_error, \
     priority, depends_on, held_at_ms, finished_at_ms, btc_send_id, created_at_ms, updated_at_ms, \
     judgment_mac";

pub(crate) fn transfer_from_row(row: &AnyRow) -> Result<TransferRow, StorageError> {
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
        judgment_mac: row.try_get("judgment_mac")?,
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

/// The states of a transfer that will still take money out.
pub(crate) const OPEN_STATES: &str = "'pending_approval', 'time_locked', 'queued', 'signing', \
     'awaiting_signature', 'signed', 'broadcasting', 'confirming'";

/// A transfer that will still take money out of its wallet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outflow {
    pub asset: String,
    /// Base units.
    pub amount: u128,
    /// Approved, or handed to the chain and not yet confirmed; otherwise
    /// waiting for approvals or in a time lock.
    pub committed: bool,
    /// Once its Ethereum transaction is planned: the gas limit of its
    /// attempts (the highest), which bounds every fee it may pay within
    /// the network's caps, speed-ups included.
    pub planned_gas: Option<u64>,
}

async fn wallet_outflows_on<'e, E>(db: E, wallet: WalletId) -> Result<Vec<Outflow>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    outflows_on(db, OutflowsOf::Wallet(wallet)).await
}

/// Whose outflows: a wallet's account's (its deposit sweeps aside), or a
/// deposit address's (its sweeps).
pub(crate) enum OutflowsOf {
    Wallet(WalletId),
    Source(domain::AccountId),
}

pub(crate) async fn outflows_on<'e, E>(db: E, of: OutflowsOf) -> Result<Vec<Outflow>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let (filter, key) = match of {
        OutflowsOf::Wallet(w) => (
            "t.wallet_id = $1 AND t.source_account IS NULL",
            w.to_string(),
        ),
        OutflowsOf::Source(a) => ("t.source_account = $1", a.to_string()),
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT t.id, t.asset, t.amount, t.state, a.gas_limit \
         FROM transfers t LEFT JOIN eth_attempts a ON a.send_id = t.eth_send_id \
         WHERE {filter} AND t.state IN ({OPEN_STATES}) ORDER BY t.id"
    )))
    .bind(key)
    .fetch_all(db)
    .await?;
    let mut out: Vec<Outflow> = Vec::new();
    let mut last: Option<String> = None;
    for r in &rows {
        let id: String = r.try_get("id")?;
        let gas = r
            .try_get::<Option<i64>, _>("gas_limit")?
            .map(|g| u64::try_from(g).map_err(|_| corrupt("gas_limit", &"negative")))
            .transpose()?;
        if last.as_deref() == Some(id.as_str())
            && let Some(o) = out.last_mut()
        {
            o.planned_gas = o.planned_gas.max(gas);
            continue;
        }
        let state: String = r.try_get("state")?;
        out.push(Outflow {
            asset: r.try_get("asset")?,
            amount: parsed(r, "amount")?,
            committed: !matches!(state.as_str(), "pending_approval" | "time_locked"),
            planned_gas: gas,
        });
        last = Some(id);
    }
    Ok(out)
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
         AND retired_at_ms IS NULL AND deposit_id IS NULL ORDER BY created_at_ms, address LIMIT 1",
    )
    .bind(wallet.to_string())
    .bind(network)
    .fetch_optional(db)
    .await?)
}

/// The transfers a Bitcoin send pays, in their order (`lock`: ` FOR
/// UPDATE` inside a transaction that locks them, or nothing).
async fn transfers_of_btc_send_on<'e, E>(
    db: E,
    send_id: &str,
    lock: &str,
) -> Result<Vec<TransferRow>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let q = format!(
        "SELECT {TRANSFER_COLUMNS} FROM transfers WHERE btc_send_id = $1 \
         ORDER BY created_at_ms, id{lock}"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(send_id)
        .fetch_all(db)
        .await?;
    rows.iter().map(transfer_from_row).collect()
}

/// The transfer an Ethereum send carries out, if any (`lock` as above).
async fn transfer_of_send_on<'e, E>(
    db: E,
    send_id: &str,
    lock: &str,
) -> Result<Option<TransferRow>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let q = format!("SELECT {TRANSFER_COLUMNS} FROM transfers WHERE eth_send_id = $1{lock}");
    let row = sqlx::query(sqlx::AssertSqlSafe(q))
        .bind(send_id)
        .fetch_optional(db)
        .await?;
    row.as_ref().map(transfer_from_row).transpose()
}

/// A transfer's approvals, in the order they came.
async fn approvals_on<'e, E>(db: E, transfer: TransferId) -> Result<Vec<ApprovalRow>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {APPROVAL_COLUMNS} FROM transfer_approvals WHERE transfer_id = $1 ORDER BY at_ms"
    )))
    .bind(transfer.to_string())
    .fetch_all(db)
    .await?;
    rows.iter().map(approval_from_row).collect()
}

impl WriteTx {
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

    /// Earlier transfers that count toward a window starting at `since`
    /// (a deposit address's sweeps into its own wallet's sender do not).
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
             AND created_at_ms >= $2 AND state NOT IN {NOT_COUNTED} AND source_account IS NULL"
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

    /// Records a deposit sweep's source account (its intent's): it is not
    /// an outflow of the wallet's account.
    pub async fn set_transfer_source(
        &mut self,
        id: domain::TransferId,
        source: domain::AccountId,
    ) -> Result<(), StorageError> {
        sqlx::query("UPDATE transfers SET source_account = $1 WHERE id = $2")
            .bind(source.to_string())
            .bind(id.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn insert_transfer(&mut self, t: &TransferRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, \
              $20, $21, $22, $23, $24, $25, $26, $27, $28)"
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
        .bind(&t.judgment_mac)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "transfer with this external id"))?;
        Ok(())
    }

    /// [`Store::wallet_outflows`], read under this transaction.
    pub async fn wallet_outflows_in_tx(
        &mut self,
        wallet: WalletId,
    ) -> Result<Vec<Outflow>, StorageError> {
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
            // Every move ends a claim.
            "claimed_by = NULL",
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
        if m.release {
            set[2] = "eth_send_id = NULL";
            set[3] = "btc_send_id = NULL";
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

    /// The transfers a Bitcoin send carries out, locked until this
    /// transaction ends, oldest first.
    pub async fn transfers_of_btc_send(
        &mut self,
        send_id: &str,
    ) -> Result<Vec<TransferRow>, StorageError> {
        let lock = self.for_update();
        transfers_of_btc_send_on(&mut *self.tx, send_id, lock).await
    }

    /// The transfer an Ethereum send carries out, locked until this
    /// transaction ends; `None` if it carries none.
    pub async fn transfer_of_send(
        &mut self,
        send_id: &str,
    ) -> Result<Option<TransferRow>, StorageError> {
        let lock = self.for_update();
        transfer_of_send_on(&mut *self.tx, send_id, lock).await
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
        approvals_on(&mut *self.tx, transfer).await
    }

    /// Voids every vote still standing on a transfer (it lost its quorum:
    /// approvals start again); returns how many.
    pub async fn void_approvals_on(
        &mut self,
        transfer: TransferId,
        at: Timestamp,
    ) -> Result<u64, StorageError> {
        let done = sqlx::query(
            "UPDATE transfer_approvals SET voided_at_ms = $2 \
             WHERE transfer_id = $1 AND voided_at_ms IS NULL",
        )
        .bind(transfer.to_string())
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(done.rows_affected())
    }

    /// Voids an approver's votes on transfers not yet signed; returns the
    /// transfers touched.
    pub async fn void_approvals_of(
        &mut self,
        approver: &Actor,
        at: Timestamp,
    ) -> Result<Vec<TransferId>, StorageError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT a.transfer_id FROM transfer_approvals a JOIN transfers t ON t.id = a.transfer_id \
             WHERE a.approver = $1 AND a.voided_at_ms IS NULL \
             AND t.state IN ('pending_approval', 'time_locked', 'queued', 'signing', \
             'awaiting_signature') \
             ORDER BY a.transfer_id",
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

    /// The transfers a Bitcoin send carries out, oldest first.
    pub async fn transfers_of_btc_send(
        &self,
        send_id: &str,
    ) -> Result<Vec<TransferRow>, StorageError> {
        transfers_of_btc_send_on(&self.pool, send_id, "").await
    }

    /// The transfer an Ethereum send carries out, if any.
    pub async fn transfer_of_send(
        &self,
        send_id: &str,
    ) -> Result<Option<TransferRow>, StorageError> {
        transfer_of_send_on(&self.pool, send_id, "").await
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
        // Ids are time-ordered (UUIDv7): the id is the cursor. Only the
        // filters given are written into the query, so that each shape is
        // planned for its own index (`transfers_page_*`: wallet, state,
        // both); a catch-all `($1 IS NULL OR ...)` form is planned once for
        // every shape and scans the table in id order for a rare filter.
        let mut conditions = Vec::new();
        let mut binds = Vec::new();
        if let Some(w) = wallet {
            binds.push(w.to_string());
            conditions.push(format!("wallet_id = ${}", binds.len()));
        }
        if let Some(s) = state {
            binds.push(s.to_owned());
            conditions.push(format!("state = ${}", binds.len()));
        }
        if let Some(b) = before {
            binds.push(b.to_string());
            conditions.push(format!("id < ${}", binds.len()));
        }
        let filter = if conditions.is_empty() {
            String::new()
        } else {
            format!(" WHERE {}", conditions.join(" AND "))
        };
        let sql = format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers{filter} ORDER BY id DESC LIMIT ${}",
            binds.len() + 1
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for b in binds {
            query = query.bind(b);
        }
        let rows = query.bind(i64::from(limit)).fetch_all(&self.pool).await?;
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
        approvals_on(&self.pool, transfer).await
    }

    /// Every current (not retired) Ethereum account sender of a wallet (its
    /// deposit addresses aside): (network, address).
    pub async fn wallet_eth_senders(
        &self,
        wallet: WalletId,
    ) -> Result<Vec<(String, String)>, StorageError> {
        let rows = sqlx::query(
            "SELECT network, address FROM eth_senders WHERE wallet_id = $1 AND retired_at_ms IS NULL \
             AND deposit_id IS NULL ORDER BY network, address",
        )
        .bind(wallet.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("network")?, r.try_get("address")?)))
            .collect()
    }

    /// A wallet's transfers that will still take money out. Committed:
    /// approved, or handed to the chain and not yet confirmed (an included
    /// one is counted although the chain's balance may already show it:
    /// over-counting for a few blocks is safe, missing it is not). Not
    /// committed: waiting for approvals or in a time lock.
    pub async fn wallet_outflows(&self, wallet: WalletId) -> Result<Vec<Outflow>, StorageError> {
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
