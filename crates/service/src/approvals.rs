//! Whether a judged transfer's approvals still stand: approvals were
//! unexpired when they made the quorum, so only a voided one (its
//! approver's key revoked) takes one back. Checked again right before a
//! transfer goes to the chain; a transfer that lost its quorum goes back to
//! waiting for approvals.

use std::collections::BTreeSet;

use domain::{Actor, Timestamp, TransferId};
use policy::{Decision, Outcome};
use storage::{ApprovalRow, TransferRow, WriteTx};

use crate::moves::{Move, corrupt, invalid, state, transition};
use crate::service::{Service, ServiceError};

/// An approval that still stands once the quorum was reached (it was
/// unexpired then): only a voided one (a revoked key) is taken back.
pub(crate) fn standing(a: &ApprovalRow) -> Option<Actor> {
    (a.vote == "approve" && a.voided_at.is_none()).then(|| a.approver.clone())
}

/// Re-counts a transfer's approvals (after a revocation): one that no
/// longer has them goes back to waiting for approvals. Returns the audit
/// records to commit (none if nothing moved).
pub(crate) async fn retally(
    tx: &mut WriteTx,
    id: TransferId,
    now: Timestamp,
) -> Result<Vec<audit::Entry>, ServiceError> {
    let t = tx.lock_transfer(id).await?;
    if ![state::TIME_LOCKED, state::QUEUED].contains(&t.state.as_str()) {
        return Ok(Vec::new());
    }
    let decision: Decision =
        serde_json::from_str(&t.decision).map_err(|e| corrupt("decision", e))?;
    let Outcome::RequireApproval { requirement, .. } = &decision.outcome else {
        return Ok(Vec::new());
    };
    let approvals = tx.approvals_in_tx(id).await?;
    if requirement.satisfied(&approvals.iter().filter_map(standing).collect()) {
        return Ok(Vec::new());
    }
    let (e, _) = transition(
        tx,
        &t,
        Move::new(
            lifecycle::Event::ApprovalsLost,
            &Actor::System,
            "approvals were voided",
        ),
        now,
    )
    .await?;
    Ok(vec![e])
}

impl Service {
    /// Checks again, right before a transfer goes to the chain, that the
    /// approvals it needed still stand (approvals were unexpired when they
    /// made the quorum; only a voided one, a revoked key, takes it back).
    /// One that lost them goes back to waiting for approvals.
    pub(crate) async fn ensure_approvals_stand(&self, t: &TransferRow) -> Result<(), ServiceError> {
        let id = t.id;
        let now = self.now();
        let decision: Decision =
            serde_json::from_str(&t.decision).map_err(|e| corrupt("decision", e))?;
        if let Outcome::RequireApproval { requirement, .. } = &decision.outcome {
            let approvals = self.store().approvals(id).await?;
            let standing: BTreeSet<Actor> = approvals.iter().filter_map(standing).collect();
            if !requirement.satisfied(&standing) {
                let mut tx = self.store().begin().await?;
                let entries = retally(&mut tx, id, now).await?;
                if !entries.is_empty() {
                    self.commit(tx, &entries, now).await?;
                }
                return Err(invalid(
                    "the transfer's approvals have expired or been voided",
                ));
            }
        }
        Ok(())
    }
}
