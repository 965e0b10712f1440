//! Transfers as the policy judges them: the facts are gathered, the policy
//! in force evaluated, and the intent stored with the version and decision
//! it was judged under (pinned: later changes never reach it) in one
//! transaction with its audit record. Then approvals (signed statements),
//! time locks, cancellation, lapse, and the hand-over to a send — always
//! behind the freeze check.

use std::collections::BTreeSet;

use domain::intent::IntentParts;
use domain::{
    AccountId, Actor, Permission, Role, Timestamp, TransferId, TransferIntent, WalletId, permits,
};
use lifecycle::{Event, State, Verdict};
use policy::{ApprovalStatement, Decision, Outcome, Vote};
use serde_json::json;
use storage::{ApprovalRow, StorageError, TransferRow};

use crate::access::{Can, perm};
pub use crate::balances::AssetBalance;
pub use crate::error::ApprovalError;
use crate::error::AuthError;
use crate::gov_log::Forgery;
pub use crate::judge::Judgment;
pub use crate::moves::state;
use crate::moves::{Move, corrupt, invalid, transfer_event, transition};
use crate::queue::cancel;
pub use crate::queue::{ExecutePass, STUCK_AFTER_MS, Stuck};
use crate::record::entry;
pub use crate::requests::{Priority, TransferRequest};
use crate::service::{Service, ServiceError};

/// A stored transfer, and whether this request only replayed an earlier
/// one with the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub transfer: TransferRow,
    pub replayed: bool,
}

fn check_token(s: &str, what: &str, max: usize) -> Result<(), ServiceError> {
    let ok = (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what}: 1 to {max} printable ASCII characters, no spaces"
        )))
    }
}

/// An approver's signed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRequest {
    pub vote: Vote,
    pub expires_at: Timestamp,
    /// Ed25519, or a passkey's WebAuthn assertion.
    pub signature: policy::ApprovalSignature,
    /// Why, for a rejection (at most 500 characters, no control
    /// characters): in the transfer's history and the audit record. Not
    /// part of what is signed.
    pub reason: Option<String>,
}

impl Service {
    pub(crate) fn governance(&self) -> Result<crate::settings::GovernanceConfig, ServiceError> {
        self.governance_cell()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ok_or(ServiceError::GovernanceNotConfigured)
    }

    /// Configures governance. Until then proposals and transfers are refused.
    pub fn set_governance(&self, cfg: crate::settings::GovernanceConfig) {
        *self
            .governance_cell()
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cfg);
    }

    /// The wallet a transfer belongs to, to authorise acting on it.
    pub async fn transfer_wallet(&self, id: TransferId) -> Result<WalletId, ServiceError> {
        Ok(self.store().transfer(id).await?.wallet)
    }

    /// Moves time-locked transfers whose lock has ended to `queued`, and
    /// lapses those that waited too long for approvals. Returns how many moved.
    pub async fn advance_transfers(&self) -> Result<usize, ServiceError> {
        use lifecycle::Event;
        let mut moved = 0;
        for (from, event, why) in [
            (state::TIME_LOCKED, Event::LockEnded, "time lock ended"),
            (
                state::PENDING_APPROVAL,
                Event::Lapsed,
                "approvals did not arrive in time",
            ),
        ] {
            // Page by page until nothing is due: each row moved leaves the set.
            loop {
                let now = self.now();
                let due = self.store().transfers_due(from, now, 200).await?;
                if due.is_empty() {
                    break;
                }
                for t in due {
                    let mut tx = self.store().begin().await?;
                    let t = tx.lock_transfer(t.id).await?;
                    if t.state != from {
                        continue;
                    }
                    let (e, _) =
                        transition(&mut tx, &t, Move::new(event, &Actor::System, why), now).await?;
                    self.commit(tx, &[e], now).await?;
                    moved += 1;
                }
            }
        }
        // Handed out for an offline signature that did not come back.
        moved += self.lapse_exported().await?;
        Ok(moved)
    }
}

fn roles_of(grants: &[domain::Grant], wallet: WalletId) -> BTreeSet<Role> {
    grants
        .iter()
        .filter(|g| match g.scope() {
            domain::Scope::Global => true,
            domain::Scope::Wallet(w) => w == wallet,
        })
        .map(domain::Grant::role)
        .collect()
}

impl Can<'_, perm::InitiateTransfer> {
    fn check_wallet(&self, wallet: WalletId) -> Result<(), ServiceError> {
        if permits(
            self.who.grants(),
            Permission::InitiateTransfer,
            Some(wallet),
        ) {
            Ok(())
        } else {
            Err(AuthError::Forbidden.into())
        }
    }

    /// Would this transfer be allowed, and why? Nothing is stored.
    pub async fn dry_run(&self, req: &TransferRequest) -> Result<Judgment, ServiceError> {
        self.check_wallet(req.wallet)?;
        let svc = self.svc;
        svc.governance()?;
        let p = svc.prepare_checked(req).await?;
        let roles = roles_of(self.who.grants(), req.wallet);
        let (tx, j, _) = svc.judge(self.who.actor(), &roles, req, &p).await?;
        // Dropped without commit: rolled back, nothing written.
        drop(tx);
        Ok(j)
    }

    /// Stores the transfer with its judgment: blocked, waiting for
    /// approvals, time-locked or approved. A tripped circuit breaker also
    /// freezes the wallet and raises an alert, in the same transaction.
    pub async fn submit(&self, req: &TransferRequest) -> Result<TransferRow, ServiceError> {
        Ok(self.submit_once(req, None).await?.transfer)
    }

    /// [`submit`](Self::submit) with an idempotency key: the same key with
    /// the same request gives back the transfer it first made (nothing new
    /// is judged or stored); with another request it is refused. The key is
    /// stored in the transfer's own transaction, under the wallet's lock, so
    /// concurrent retries wait for the first and then replay it.
    pub async fn submit_once(
        &self,
        req: &TransferRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Submission, ServiceError> {
        self.check_wallet(req.wallet)?;
        let svc = self.svc;
        let cfg = svc.governance()?;
        if let Some(k) = idempotency_key {
            check_token(k, "Idempotency-Key", 255)?;
        }
        if let Some(e) = &req.external_id {
            check_token(e, "external_id", 128)?;
        }
        // A retry is answered before anything that may have changed since
        // the first request (a freeze it tripped, the configuration); the
        // same check runs again under the locks for concurrent retries.
        let request_hash = req.hash();
        if let Some(key) = idempotency_key
            && let Some((hash, earlier)) =
                svc.store().idempotency_key(self.who.actor(), key).await?
        {
            if hash != request_hash {
                return Err(ServiceError::IdempotencyMismatch);
            }
            return Ok(Submission {
                transfer: svc.store().transfer(earlier).await?,
                replayed: true,
            });
        }
        svc.above_disk_floor()?;
        let p = svc.prepare(req).await?;
        svc.check_source(req, &p).await?;
        if let Some(f) = svc.frozen(Some(req.wallet), None).await? {
            return Err(ServiceError::Frozen(f.scope));
        }
        let who = self.who.actor();
        let roles = roles_of(self.who.grants(), req.wallet);
        let held = svc.held_before(req, &p).await;
        let (mut tx, j, now) = svc.judge(who, &roles, req, &p).await?;
        if let Some(key) = idempotency_key
            && let Some((hash, earlier)) = tx.idempotency_key(who, key).await?
        {
            drop(tx);
            if hash != request_hash {
                return Err(ServiceError::IdempotencyMismatch);
            }
            return Ok(Submission {
                transfer: svc.store().transfer(earlier).await?,
                replayed: true,
            });
        }
        if let Some(ext) = &req.external_id
            && let Some(earlier) = tx.transfer_by_external_id(who, ext).await?
        {
            return Err(ServiceError::Conflict(format!(
                "transfer {earlier} already has the external id {ext:?}"
            )));
        }
        if let Some(dep) = req.depends_on {
            let d = tx.lock_transfer(dep).await.map_err(|e| match e {
                StorageError::NotFound { .. } => invalid("depends_on: no such transfer"),
                e => e.into(),
            })?;
            if !permits(self.who.grants(), Permission::ReadWallet, Some(d.wallet)) {
                return Err(invalid("depends_on: no such transfer"));
            }
            let ended: State = d.state.parse().map_err(|e| corrupt("state", e))?;
            if ended.is_final() && d.state != state::COMPLETED {
                return Err(invalid(format!(
                    "depends_on: transfer {dep} ended {}",
                    d.state
                )));
            }
        }
        if !matches!(j.decision.outcome, Outcome::Block) {
            svc.ensure_funds(&mut tx, req, &p, held).await?;
        }
        let id = TransferId::from_uuid(uuid::Uuid::now_v7());
        let intent = TransferIntent::new(IntentParts {
            id,
            kind: req.kind,
            // The wallet's id stands for its own account; a deposit sweep
            // names its deposit address's (its source, checked above).
            account: req
                .source
                .unwrap_or_else(|| AccountId::from_uuid(*req.wallet.as_uuid())),
            wallet: req.wallet,
            amount: p.amount.clone(),
            destination: p.destination.clone(),
            reference: req.reference.clone(),
            initiator: who.clone(),
            created_at: now,
        })
        .map_err(|e| invalid(e.to_string()))?;
        let d = &j.decision;
        let (verdict, unlock, expires) = match &d.outcome {
            Outcome::Block if d.breaker.is_some() => (Verdict::BreakerTripped, None, None),
            Outcome::Block => (Verdict::Block, None, None),
            Outcome::Allow { time_lock_s: 0 } => (Verdict::Allow, None, None),
            Outcome::Allow { time_lock_s } => (
                Verdict::AllowAfterLock,
                Some(after(now, *time_lock_s)),
                None,
            ),
            Outcome::RequireApproval { .. } => (
                Verdict::RequireApproval,
                None,
                Some(Timestamp::from_millis(
                    now.as_millis().saturating_add(cfg.approval_window_ms),
                )),
            ),
        };
        // Received and judged within this transaction: the history shows
        // both steps, the row is stored in the state they lead to.
        let received = lifecycle::step(State::Submitted, Event::Received)
            .map_err(|e| ServiceError::Conflict(e.to_string()))?;
        let judged = lifecycle::step(received.to, Event::Judged(verdict))
            .map_err(|e| ServiceError::Conflict(e.to_string()))?;
        let st = judged.to.as_str();
        // The decision as the policy made it, and the first-time flag
        // approvers are shown beside it.
        let mut decision_value = serde_json::to_value(d).map_err(|e| invalid(e.to_string()))?;
        if let Some(o) = decision_value.as_object_mut() {
            o.insert(
                "first_time_destination".into(),
                j.first_time_destination.into(),
            );
        }
        let decision_json = decision_value.to_string();
        let row = TransferRow {
            id,
            wallet: req.wallet,
            initiator: who.clone(),
            asset: req.asset.to_string(),
            amount: p.amount.units(),
            destination: p.destination_key.clone(),
            intent: intent.canonical_bytes(),
            digest: intent.digest().to_string(),
            policy_version: j.policy_version.unwrap_or(0),
            decision_id: uuid::Uuid::now_v7().to_string(),
            decision: decision_json,
            state: st.into(),
            usd_micro: j.usd_micro,
            expires_at: expires,
            unlock_at: unlock,
            eth_send_id: None,
            external_id: req.external_id.clone(),
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            priority: req.priority.rank(),
            depends_on: req.depends_on,
            held_at: None,
            finished_at: judged.to.is_final().then_some(now),
            btc_send_id: None,
            created_at: now,
            updated_at: now,
            judgment_mac: None,
        };
        // What was judged, authenticated: checked again before any key
        // signs for it (`judgment`).
        let row = TransferRow {
            judgment_mac: Some(self.svc.judgment_mac(&row)?),
            ..row
        };
        tx.insert_transfer(&row).await?;
        if let Some(source) = req.source {
            tx.set_transfer_source(row.id, source).await?;
        }
        crate::ledger::transfer_moved(&mut tx, &row, "submitted", st, now).await?;
        let actor = who.to_string();
        let rule = d.rule.as_deref().unwrap_or("no rule matched");
        tx.add_history_lines(
            id,
            &[
                (State::Submitted.as_str(), "requested"),
                (received.to.as_str(), "policy evaluated"),
                (judged.to.as_str(), rule),
            ],
            &actor,
            now,
        )
        .await?;
        if let Some(key) = idempotency_key {
            tx.insert_idempotency_key(who, key, &request_hash, id, now)
                .await?;
        }
        transfer_event(&mut tx, &row, st, now).await?;
        if st == state::PENDING_APPROVAL {
            crate::outbox::enqueue(
                &mut tx,
                "transfer.pending_approval",
                json!({
                    "transfer": id.to_string(),
                    "wallet": req.wallet.to_string(),
                    "asset": row.asset,
                    "amount": row.amount.to_string(),
                    "destination": p.destination.as_str(),
                    "rule": d.rule,
                    "expires_at_ms": expires.map(Timestamp::as_millis),
                }),
                now,
            )
            .await?;
        }
        let mut entries = vec![entry(
            who,
            "transfer.judged",
            &format!("transfer:{id}"),
            json!({
                "wallet": req.wallet.to_string(),
                "asset": row.asset,
                "amount": row.amount.to_string(),
                "destination": p.destination.as_str(),
                "digest": row.digest,
                "policy_version": j.policy_version,
                "decision_id": row.decision_id,
                "rule": d.rule,
                "outcome": d.outcome.to_string(),
                "error": d.error,
                "state": st,
            }),
        )?];
        if let Some(b) = &d.breaker {
            let f = storage::FreezeRow {
                id: uuid::Uuid::now_v7().to_string(),
                scope: crate::freezes::FreezeScope::Wallet(req.wallet).to_string(),
                reason: format!("circuit breaker {b}"),
                frozen_by: Actor::System,
                frozen_at: now,
                released_at: None,
                release_proposal: None,
            };
            tx.insert_freeze(&f).await?;
            crate::outbox::enqueue(
                &mut tx,
                "circuit_breaker",
                json!({ "wallet": req.wallet.to_string(), "breaker": b, "freeze": f.id, "transfer": id.to_string() }),
                now,
            )
            .await?;
            entries.push(entry(
                &Actor::System,
                "freeze.placed",
                &format!("freeze:{}", f.id),
                json!({ "scope": f.scope, "reason": f.reason }),
            )?);
            tracing::warn!(wallet = %req.wallet, breaker = %b, "circuit breaker tripped: wallet frozen");
        }
        svc.commit(tx, &entries, now).await?;
        crate::crash::point("after_intent_insert");
        Ok(Submission {
            transfer: row,
            replayed: false,
        })
    }
}

fn after(now: Timestamp, seconds: u64) -> Timestamp {
    Timestamp::from_millis(
        now.as_millis().saturating_add(
            i64::try_from(seconds)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
        ),
    )
}

impl Can<'_, perm::ApproveTransfer> {
    fn in_scope(&self, t: &TransferRow) -> Result<(), ServiceError> {
        if permits(
            self.who.grants(),
            Permission::ApproveTransfer,
            Some(t.wallet),
        ) {
            Ok(())
        } else {
            Err(StorageError::NotFound { what: "transfer" }.into())
        }
    }

    /// The statement an approver signs for this transfer.
    pub async fn statement(
        &self,
        id: TransferId,
        vote: Vote,
        expires_at: Timestamp,
    ) -> Result<ApprovalStatement, ServiceError> {
        let t = self.svc.store().transfer(id).await?;
        self.in_scope(&t)?;
        statement_of(&t, vote, expires_at)
    }

    /// Records an approver's signed vote. A rejection ends the transfer;
    /// enough approvals move it on (to its time lock, or approved).
    pub async fn vote(&self, id: TransferId, v: &VoteRequest) -> Result<TransferRow, ServiceError> {
        // A vote whose transaction raced another's (a deadlock on
        // PostgreSQL) changed nothing: it is tried again, a few times.
        let mut tries = 0;
        loop {
            match self.vote_once(id, v).await {
                Err(ServiceError::Storage(StorageError::Contention(_))) if tries < 3 => tries += 1,
                other => return other,
            }
        }
    }

    async fn vote_once(
        &self,
        id: TransferId,
        v: &VoteRequest,
    ) -> Result<TransferRow, ServiceError> {
        let svc = self.svc;
        let who = self.who.actor();
        let now = svc.now();
        let cfg = svc.governance()?;
        if v.expires_at <= now {
            return Err(ApprovalError::Expired.into());
        }
        let reason = v.reason.as_deref().map(str::trim).filter(|r| !r.is_empty());
        if reason.is_some_and(|r| r.chars().count() > 500 || r.chars().any(char::is_control)) {
            return Err(invalid(
                "reason: at most 500 characters, no control characters",
            ));
        }
        let rejected_why = reason
            .filter(|_| v.vote == Vote::Reject)
            .map(|r| format!("rejected by an approver: {r}"));
        if v.expires_at.as_millis() > now.as_millis().saturating_add(cfg.max_approval_ttl_ms) {
            return Err(invalid(format!(
                "expires_at: at most {} s from now",
                cfg.max_approval_ttl_ms / 1000
            )));
        }
        let mut tx = svc.store().begin().await?;
        // The key first, then the transfer (the order a revocation takes):
        // a revocation either waits for this vote or is seen by it.
        let key = tx
            .approver_key_for_update(who)
            .await?
            .ok_or(ApprovalError::NoApproverKey)?;
        // The key must be the one the verified governance log gave them.
        let gov = svc.gov_in(&mut tx).await?;
        let logged = gov.approver_key(who).map(str::to_owned);
        if logged.as_deref() != Some(key.public_key.as_str()) {
            svc.raise(
                Forgery {
                    table: "approver_keys",
                    key: who.to_string(),
                    wallet: None,
                    found: key.public_key.clone(),
                    expected: logged.unwrap_or_default(),
                },
                true,
            )
            .await?;
            return Err(ApprovalError::NoApproverKey.into());
        }
        let public: policy::ApproverKey = key
            .public_key
            .parse()
            .map_err(|e| corrupt("approver key", e))?;
        let t = tx.lock_transfer(id).await?;
        self.in_scope(&t)?;
        // No approval for a destination denied since it was requested.
        if v.vote == Vote::Approve {
            crate::screening::refuse_denied(&gov, &t)?;
        }
        // Once per approver, whatever became of the transfer since; a vote
        // that was voided (a revoked key) or has expired may be cast again.
        let votes = tx.approvals_in_tx(id).await?;
        let earlier = votes.iter().find(|a| a.approver == *who).cloned();
        if earlier
            .as_ref()
            .is_some_and(|a| a.voided_at.is_none() && a.expires_at > now)
        {
            return Err(ApprovalError::AlreadyVoted.into());
        }
        // Past its approval window it has lapsed, whether or not the
        // worker has marked it yet.
        if t.state == state::PENDING_APPROVAL && t.expires_at.is_some_and(|x| x <= now) {
            return Err(ApprovalError::NotAwaiting("lapsed".into()).into());
        }
        let decision: Decision =
            serde_json::from_str(&t.decision).map_err(|e| corrupt("decision", e))?;
        let Outcome::RequireApproval {
            requirement,
            initiator_may_approve,
            time_lock_s,
        } = &decision.outcome
        else {
            return Err(ApprovalError::NotAwaiting(t.state.clone()).into());
        };
        let open = [state::PENDING_APPROVAL, state::TIME_LOCKED, state::QUEUED];
        if !open.contains(&t.state.as_str())
            || (v.vote == Vote::Approve && t.state != state::PENDING_APPROVAL)
        {
            return Err(ApprovalError::NotAwaiting(t.state.clone()).into());
        }
        if !requirement.eligible(who) {
            return Err(ApprovalError::NotAnApprover.into());
        }
        // Once per person: another key of this approver's owner, or the
        // owner's own session, has a vote that still counts (Ronin, 2022:
        // one holder of several keys made a quorum alone). A vote that
        // no longer would (its key replaced, its holder out of the group
        // or no longer permitted) blocks no one.
        let person = gov.person_of(who);
        if let Some(other) = votes.iter().find(|a| {
            a.approver != *who
                && a.voided_at.is_none()
                && a.expires_at > now
                && gov.person_of(&a.approver) == person
                && gov.approver_key(&a.approver) == Some(a.public_key.as_str())
                && requirement.eligible(&a.approver)
                && gov.permits(&a.approver, Permission::ApproveTransfer, t.wallet, now)
        }) {
            return Err(ApprovalError::SamePerson(other.approver.to_string()).into());
        }
        if person == gov.person_of(&t.initiator) && !initiator_may_approve {
            return Err(ApprovalError::OwnTransfer.into());
        }
        statement_of(&t, v.vote, v.expires_at)?
            .verify_by(&public, &v.signature, svc.relying_party().as_deref())
            .map_err(|e| {
                tracing::info!(approver = %who, transfer = %id, error = %e, "approval refused");
                ApprovalError::BadSignature
            })?;
        let row = ApprovalRow {
            transfer: id,
            approver: who.clone(),
            public_key: key.public_key.clone(),
            vote: match v.vote {
                Vote::Approve => "approve",
                Vote::Reject => "reject",
            }
            .into(),
            signature: v.signature.to_string(),
            expires_at: v.expires_at,
            at: now,
            voided_at: None,
        };
        match earlier {
            None => tx.insert_approval(&row).await?,
            Some(_) => tx.replace_approval(&row, now).await?,
        }
        let subject = format!("transfer:{id}");
        let mut entries = vec![entry(
            who,
            match v.vote {
                Vote::Approve => "transfer.approved",
                Vote::Reject => "transfer.rejected",
            },
            &subject,
            json!({ "public_key": key.public_key, "expires_at_ms": v.expires_at.as_millis(), "decision_id": t.decision_id, "reason": reason }),
        )?];
        let next = match v.vote {
            // A rejection ends a transfer that still waits; one already
            // approved is only rejected if it is still waiting for votes.
            Vote::Reject if t.state == state::PENDING_APPROVAL => {
                Some((Event::Rejected, None, "rejected by an approver"))
            }
            Vote::Reject => Some((
                Event::Cancel,
                None,
                "rejected by an approver after approval",
            )),
            Vote::Approve => {
                // Counted as the signing gate will count them: unexpired,
                // keys in force, approvers still in their groups.
                let gov = svc.gov_in(&mut tx).await?;
                if crate::approvals::stands(&mut tx, &t, (now, now), &gov)
                    .await?
                    .is_ok()
                {
                    let time_lock = *time_lock_s > 0;
                    Some((
                        Event::ApprovalsMet { time_lock },
                        time_lock.then(|| after(now, *time_lock_s)),
                        if time_lock {
                            "approved; time lock started"
                        } else {
                            "approved"
                        },
                    ))
                } else {
                    None
                }
            }
        };
        if let Some((event, unlock, why)) = next {
            let why = rejected_why.as_deref().unwrap_or(why);
            let mut m = Move::new(event, who, why);
            m.unlock_at = unlock;
            entries.push(transition(&mut tx, &t, m, now).await?.0);
        }
        svc.commit(tx, &entries, now).await?;
        // Recorded (and the transfer moved on), not yet answered.
        crate::crash::point("after_approval");
        Ok(svc.store().transfer(id).await?)
    }

    /// Cancels a transfer that waits for approvals or sits in its time
    /// lock: any approver of its wallet may.
    pub async fn cancel(&self, id: TransferId) -> Result<TransferRow, ServiceError> {
        cancel(
            self.svc,
            self.who.actor(),
            id,
            |t| self.in_scope(t),
            "cancelled by an approver",
        )
        .await
    }
}

impl Can<'_, perm::InitiateTransfer> {
    /// The wallet's next deposit address on a Bitcoin network (a fresh one
    /// from an HD account once the last was paid).
    pub async fn deposit_address(
        &self,
        wallet: WalletId,
        network: domain::BitcoinNetwork,
    ) -> Result<String, ServiceError> {
        if !permits(
            self.who.grants(),
            Permission::InitiateTransfer,
            Some(wallet),
        ) {
            return Err(StorageError::NotFound { what: "wallet" }.into());
        }
        self.svc
            .next_deposit_address(self.who.actor(), wallet, network)
            .await
    }

    /// Cancels one's own transfer while it is not yet handed to the chain.
    pub async fn cancel_own(&self, id: TransferId) -> Result<TransferRow, ServiceError> {
        let who = self.who.actor();
        cancel(
            self.svc,
            who,
            id,
            |t| {
                let mine = t.initiator == *who
                    && permits(
                        self.who.grants(),
                        Permission::InitiateTransfer,
                        Some(t.wallet),
                    );
                if mine {
                    Ok(())
                } else {
                    Err(StorageError::NotFound { what: "transfer" }.into())
                }
            },
            "cancelled by its initiator",
        )
        .await
    }
}

pub use crate::approvals::statement_of;
