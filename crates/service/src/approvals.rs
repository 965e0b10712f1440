//! Whether a judged transfer's approvals still stand, checked by the
//! signing gate right before anything is signed, whatever the transfer's
//! state: an approval counts only if it is unexpired (now, or when the
//! transfer's time lock began), made with its approver's key still in force, not voided, and its approver is still in
//! the group under the policy in force. A transfer that lost its quorum
//! gives back the nonce or outputs reserved for it (nothing was signed) and
//! waits for approvals again, with a history line.

use std::collections::{BTreeMap, BTreeSet};

use domain::{Actor, Permission, Timestamp, TransferId};
use policy::{ApprovalSignature, ApprovalStatement, ApproverKey, Decision, Outcome, Vote};
use serde_json::json;
use storage::{ApprovalRow, TransferRow, WriteTx};

use crate::gov_state::GovState;
use crate::moves::{Move, corrupt, state, transition};

use crate::record::entry;
use crate::service::{Service, ServiceError};

/// Why a transfer's approvals do not stand.
#[derive(Debug)]
pub(crate) enum Lapse {
    /// They lapsed: expired, voided, a key revoked, an approver gone from
    /// the group or no longer allowed to approve.
    Lost(String),
    /// A recorded approval does not verify for the transfer as stored: the
    /// database was written around the service. Not counted, and refused
    /// like a plan that differs wherever a signature waits on it.
    Forged(String),
}

impl Lapse {
    pub(crate) fn why(&self) -> &str {
        match self {
            Lapse::Lost(w) | Lapse::Forged(w) => w,
        }
    }
}

/// Whether `t`'s approvals stand: expiries judged at `at` (now, or when
/// the transaction was handed out for its offline signature), everything
/// else at `now`. Transfers that needed none always stand.
pub(crate) async fn stands(
    tx: &mut WriteTx,
    t: &TransferRow,
    (at, now): (Timestamp, Timestamp),
    gov: &GovState,
) -> Result<Result<(), Lapse>, ServiceError> {
    let decision: Decision =
        serde_json::from_str(&t.decision).map_err(|e| corrupt("decision", e))?;
    let Outcome::RequireApproval { requirement, .. } = &decision.outcome else {
        return Ok(Ok(()));
    };
    // Members pinned at judgment who are still in their group now: one
    // who left no longer counts; one who joined never did.
    // The groups of the policy in force, from the verified governance log.
    let groups = match gov.current_policy() {
        Some((_, p)) => p.policy.groups().clone(),
        None => Default::default(),
    };
    let requirement = requirement.within(&groups);
    // An approval must be unexpired now; through a time lock, when the lock
    // began (the delay the approvers agreed to does not expire them; a time
    // lock may be longer than any approval may live).
    let at = match (&decision.outcome, t.unlock_at) {
        (Outcome::RequireApproval { time_lock_s, .. }, Some(unlock)) if *time_lock_s > 0 => {
            let lock_ms = i64::try_from(*time_lock_s)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000);
            Timestamp::from_millis(
                unlock
                    .as_millis()
                    .saturating_sub(lock_ms)
                    .min(at.as_millis()),
            )
        }
        _ => at,
    };
    let mut valid = BTreeSet::new();
    let mut people: BTreeMap<Actor, Actor> = BTreeMap::new();
    let own_ok = matches!(
        &decision.outcome,
        Outcome::RequireApproval {
            initiator_may_approve: true,
            ..
        }
    );
    let mut why = Vec::new();
    let mut forged = Vec::new();
    for a in tx.approvals_in_tx(t.id).await? {
        if a.vote != "approve" {
            continue;
        }
        if a.voided_at.is_some() {
            why.push(format!("{}'s approval was voided", a.approver));
        } else if a.expires_at <= at {
            why.push(format!("{}'s approval expired", a.approver));
        } else if gov.approver_key(&a.approver) != Some(a.public_key.as_str())
            || tx.approver_key_in_force(&a.approver).await?.as_deref()
                != Some(a.public_key.as_str())
        {
            // In force in the verified log and in the table both (a
            // revocation lands in the table first, in its transaction).
            why.push(format!(
                "{}'s approver key is no longer in force",
                a.approver
            ));
        } else if !requirement.eligible(&a.approver) {
            why.push(format!("{} is no longer in the group", a.approver));
        } else if !gov.permits(&a.approver, Permission::ApproveTransfer, t.wallet, now) {
            // A delegation that ended, a role taken away, an API key
            // expired: what it approved no longer counts.
            why.push(format!(
                "{} may no longer approve this wallet's transfers",
                a.approver
            ));
        } else {
            // The recorded signature must be over this transfer as it is
            // stored now: an intent rewritten after its approvals (and its
            // digest with it) is not what they approved.
            match recorded_signature_holds(t, &a)? {
                Ok(()) => {
                    // One person, one approval: the first of their
                    // principals counts, another key of theirs does not.
                    let person = gov.person_of(&a.approver);
                    if let Some(first) = people.get(&person) {
                        why.push(format!(
                            "{} and {first} are one person ({person}): one approval",
                            a.approver
                        ));
                    } else if !own_ok && person == gov.person_of(&t.initiator) {
                        why.push(format!(
                            "{} is held by the initiator ({person})",
                            a.approver
                        ));
                    } else {
                        people.insert(person, a.approver.clone());
                        valid.insert(a.approver);
                    }
                }
                Err(w) => forged.push(w),
            }
        }
    }
    Ok(if !forged.is_empty() {
        Err(Lapse::Forged(forged.join("; ")))
    } else if requirement.satisfied(&valid) {
        Ok(())
    } else if why.is_empty() {
        Err(Lapse::Lost(
            "the approvals no longer meet the requirement".into(),
        ))
    } else {
        Err(Lapse::Lost(why.join("; ")))
    })
}

/// Checks an approval as recorded against the transfer as stored: its
/// signature must be its approver's over this transfer's statement.
/// `Err(why)`: it is not — written around the service (the intent, its
/// digest or the approval changed in the database).
fn recorded_signature_holds(
    t: &TransferRow,
    a: &ApprovalRow,
) -> Result<Result<(), String>, ServiceError> {
    let forged = |why: String| Err(format!("{}'s recorded approval {why}", a.approver));
    let Ok(key) = a.public_key.parse::<ApproverKey>() else {
        return Ok(forged("names no approver key".into()));
    };
    let Ok(signature) = a.signature.parse::<ApprovalSignature>() else {
        return Ok(forged("carries no signature".into()));
    };
    Ok(statement_of(t, Vote::Approve, a.expires_at)?
        .verify_recorded(&key, &signature)
        .or_else(|e| forged(format!("does not verify for this transfer as stored: {e}"))))
}

/// The states of a transfer approved but not yet signed: its approvals
/// must still stand, and it can still be pulled back. (One handed out for
/// its offline signature must stand too, but is never pulled back by
/// itself: its holder may have signed and sent it.)
const UNSIGNED: [&str; 3] = [state::TIME_LOCKED, state::QUEUED, state::SIGNING];

/// Pulls back a transfer whose approvals no longer stand, in `tx` (it was
/// read locked there): its remaining votes are voided and it waits for a
/// whole new round of approvals; from `time_locked` or `queued` that is
/// all; from `signing` its send is released first — the
/// Ethereum nonce goes to the sender's next plan, a Bitcoin batch's
/// outputs become available and its other payouts go back to the queue
/// (or to approvals, if theirs fell too). Returns the audit records.
pub(crate) async fn pull_back(
    tx: &mut WriteTx,
    t: &TransferRow,
    why: &str,
    now: Timestamp,
    gov: &GovState,
) -> Result<Vec<audit::Entry>, ServiceError> {
    let lost = format!("approvals no longer stand: {why}; they must all be given again");
    tx.void_approvals_on(t.id, now).await?;
    if t.state != state::SIGNING {
        let m = Move::new(lifecycle::Event::ApprovalsLost, &Actor::System, &lost);
        return Ok(vec![transition(tx, t, m, now).await?.0]);
    }
    let mut entries = Vec::new();
    if let Some(send) = &t.eth_send_id {
        // A conflict if anything was signed for it: then nothing moves.
        let nonce = tx.release_eth_send(send, now).await?;
        let why = format!("{lost}; nonce {nonce} given back");
        let m = Move::new(lifecycle::Event::ApprovalsLost, &Actor::System, &why);
        entries.push(transition(tx, t, m, now).await?.0);
        entries.push(entry(
            &Actor::System,
            "eth.send.released",
            &format!("eth-send:{send}"),
            json!({ "nonce": nonce, "transfer": t.id.to_string(), "why": lost }),
        )?);
    } else if let Some(send) = &t.btc_send_id {
        tx.set_btc_send_state(send, "planned", "released").await?;
        let outputs = tx.release_btc_utxos(send).await?;
        let mut moved = Vec::new();
        for other in tx.transfers_of_btc_send(send).await? {
            let (event, why) = if other.id == t.id {
                (lifecycle::Event::ApprovalsLost, lost.clone())
            } else {
                match stands(tx, &other, (now, now), gov).await? {
                    Ok(()) => (
                        lifecycle::Event::Unplanned,
                        format!("another payout of its batch lost its approvals: {why}"),
                    ),
                    Err(w) => {
                        tx.void_approvals_on(other.id, now).await?;
                        (
                            lifecycle::Event::ApprovalsLost,
                            format!(
                                "approvals no longer stand: {}; they must all be given again",
                                w.why()
                            ),
                        )
                    }
                }
            };
            let why = format!("{why}; reserved outputs given back");
            let m = Move::new(event, &Actor::System, &why);
            entries.push(transition(tx, &other, m, now).await?.0);
            moved.push(other.id.to_string());
        }
        entries.push(entry(
            &Actor::System,
            "btc.send.released",
            &format!("btc-send:{send}"),
            json!({ "outputs": outputs, "transfers": moved, "why": lost }),
        )?);
    } else {
        return Err(corrupt("transfer in signing", "it names no send"));
    }
    Ok(entries)
}

/// Re-counts a transfer's approvals (after a revocation), in `tx`: one
/// not yet signed that no longer has them is pulled back. Returns the
/// audit records to commit (none if nothing moved).
pub(crate) async fn retally(
    tx: &mut WriteTx,
    id: TransferId,
    now: Timestamp,
    gov: &GovState,
) -> Result<Vec<audit::Entry>, ServiceError> {
    let t = tx.lock_transfer(id).await?;
    if !UNSIGNED.contains(&t.state.as_str()) {
        return Ok(Vec::new());
    }
    match stands(tx, &t, (now, now), gov).await? {
        Ok(()) => Ok(Vec::new()),
        Err(lapse) => {
            if let Lapse::Forged(why) = &lapse {
                // Not counted; the transfer waits for approvals given anew
                // (over what is stored), and the gate refuses it meanwhile.
                tracing::error!(transfer = %t.id, why = %why, "a recorded approval does not verify");
            }
            pull_back(tx, &t, lapse.why(), now, gov).await
        }
    }
}

impl Service {
    /// The gate's check, before any bytes are signed for `paying` (rows as
    /// the caller read them: a judgment never changes): each transfer not
    /// yet signed (time-locked, queued or signing) must still have its
    /// approvals. Those that lost them are pulled back, committed, and the
    /// answer is an error; nothing is signed. Read under the shared
    /// governance lock, which every revocation and policy change takes
    /// exclusively; a revocation that lands after this check pulls the
    /// transfer back itself, and the signed bytes then find their send
    /// released and are never stored. Also run before a transfer is
    /// planned.
    pub(crate) async fn approvals_stand(&self, paying: &[TransferRow]) -> Result<(), ServiceError> {
        self.approvals_stand_as_of(paying, None).await
    }

    /// [`Service::approvals_stand`], expiries judged as of `as_of` when
    /// given (a transaction handed out for its offline signature: its
    /// approvals stood when it was; voids, revoked keys and approvers gone
    /// from their groups count as they are now).
    pub(crate) async fn approvals_stand_as_of(
        &self,
        paying: &[TransferRow],
        as_of: Option<Timestamp>,
    ) -> Result<(), ServiceError> {
        // Those that needed no approvals stand without a look under the lock.
        let mut needing = Vec::new();
        for t in paying {
            let decision: Decision =
                serde_json::from_str(&t.decision).map_err(|e| corrupt("decision", e))?;
            if matches!(decision.outcome, Outcome::RequireApproval { .. }) {
                needing.push(t.id);
            }
        }
        if needing.is_empty() {
            return Ok(());
        }
        needing.sort();
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.governance_lock(true).await?;
        let gov = self.gov_in(&mut tx).await?;
        let mut entries = Vec::new();
        let mut lost = Vec::new();
        for id in needing {
            // Locked in id order; a batch-mate pulled back with an earlier
            // one is read as it is now.
            let t = tx.lock_transfer(id).await?;
            let handed_out = t.state == state::AWAITING_SIGNATURE;
            if !UNSIGNED.contains(&t.state.as_str()) && !handed_out {
                // Already signed (a replacement pays the same), or moved on.
                continue;
            }
            let standing = stands(&mut tx, &t, (as_of.unwrap_or(now), now), &gov).await?;
            if let Err(Lapse::Forged(why)) = standing {
                // Tampering, not a lapse: refused like a plan that differs
                // (history, audit record, event, the wallet frozen), once
                // this transaction is gone (the refusal writes its own).
                drop(tx);
                let send = match (&t.eth_send_id, &t.btc_send_id) {
                    (Some(s), _) => format!("eth-send:{s}"),
                    (None, Some(s)) => format!("btc-send:{s}"),
                    (None, None) => format!("transfer:{}", t.id),
                };
                return Err(self
                    .refuse_to_sign(crate::refusal::Refused {
                        send,
                        wallet: t.wallet,
                        transfers: &[t.id],
                        why,
                    })
                    .await);
            }
            if let Err(lapse) = standing {
                let why = lapse.why().to_owned();
                // Handed out: its holder may have signed and sent it, so it
                // is refused here and left for a person (a cancel asks the
                // node first), never released behind the chain's back.
                if !handed_out {
                    entries.extend(pull_back(&mut tx, &t, &why, now, &gov).await?);
                }
                lost.push(format!("{id}: {why}"));
            }
        }
        if lost.is_empty() {
            return Ok(());
        }
        if !entries.is_empty() {
            self.commit(tx, &entries, now).await?;
        }
        tracing::warn!(lost = ?lost, "approvals no longer stand: sent back for approval, nothing signed");
        Err(ServiceError::Conflict(format!(
            "the approvals no longer stand, nothing was signed: {}",
            lost.join("; ")
        )))
    }
}

/// The statement for a stored transfer.
pub fn statement_of(
    t: &TransferRow,
    vote: Vote,
    expires_at: Timestamp,
) -> Result<ApprovalStatement, ServiceError> {
    let digest: [u8; 32] = hex::decode(&t.digest)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("digest", "not 32 bytes"))?;
    let decision_id =
        uuid::Uuid::try_parse(&t.decision_id).map_err(|e| corrupt("decision id", e))?;
    Ok(ApprovalStatement {
        intent: domain::IntentDigest(digest),
        policy_version: t.policy_version,
        decision_id: *decision_id.as_bytes(),
        expires_at,
        vote,
    })
}
