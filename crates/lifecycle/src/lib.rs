//! The life of a transfer as a pure state machine: `(state, event) →
//! (state, changes, effects)`. No I/O and no clock: the service asks
//! [`step`] before every change of a transfer's state, stores the new state
//! with its changes and audit record in one transaction, and carries out the
//! effects. An event a state does not take is an error, never a guess.
//!
//! ```text
//! submitted ─received→ pending_policy ─judged→ blocked | pending_approval | time_locked | queued
//! pending_approval ─approvals met→ time_locked | queued     ─rejected→ rejected   ─lapsed→ expired
//! time_locked ─lock ended→ queued        (time_locked | queued | signing) ─approvals lost→ pending_approval
//! signing ─unplanned→ queued   (a batch-mate lost its approvals; the reservation is given back)
//! signing ─exported→ awaiting_signature ─signed→ signed     (a cold wallet's offline signature)
//! awaiting_signature ─cancel→ cancelled  ─lapsed→ expired  (reservation given back; lost approvals refuse the import)
//! queued ─planned→ signing ─signed→ signed ─broadcast→ broadcasting ─included→ confirming ─confirmed→ completed
//! confirming ─reorged→ broadcasting   ─reverted→ failed   ─cancelled on chain→ cancelled
//! (signed | broadcasting) ─nonce taken→ failed        queued ─attempt failed→ queued (backoff | held) | failed
//! (pending_approval | time_locked | queued) ─cancel→ cancelled       queued ─dependency failed→ failed
//! ```
//!
//! Cancelling stops at `queued`: from `signing` on, a nonce or outpoints are
//! spent on the transfer's behalf, and only an on-chain replacement (a
//! cancel transaction, under policy) can still stop it. One exception, made
//! by the signing gate: a transfer in `signing` whose approvals no longer
//! stand, nothing signed yet, gives its reservation back and waits for
//! approvals again.
//!
//! ## What is where
//!
//! the transfer's life as a state machine: `step(state, event) → Step { to, changes, effects }` or
//! `Illegal`. States `submitted → pending_policy →` one of `blocked | pending_approval |
//! time_locked | queued`, then `signing → signed → broadcasting → confirming → completed`, with
//! `failed`, `rejected`, `expired`, `cancelled`; events from the policy, approvals, time, the
//! queue (attempt failed: retryable / needs a person / terminal, operator retry, dependency
//! failed) and the chain (planned, signed, broadcast, included, reorged, confirmed, reverted,
//! cancelled on chain, nonce taken). `backoff_ms`. Transcript tests of every path and the whole
//! transition table (`tests/transcripts.rs`).

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a transfer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// The request arrived (within its judgment's transaction only).
    Submitted,
    /// The policy is being evaluated (within the same transaction).
    PendingPolicy,
    /// The policy blocked it. Final.
    Blocked,
    /// Waiting for approvals.
    PendingApproval,
    /// Allowed, waiting for its time lock to end.
    TimeLocked,
    /// Allowed: waiting for a worker (its priority, dependencies, backoff).
    Queued,
    /// A nonce or inputs are reserved and the plan pinned; not yet signed.
    Signing,
    /// A cold wallet's transaction: what the server may sign is signed, and
    /// the rest waits for an offline signer (a PSBT handed out, signed
    /// away from the server, brought back).
    AwaitingSignature,
    /// The signed bytes are stored; not yet handed to a node.
    Signed,
    /// Handed to the network; not yet in a block.
    Broadcasting,
    /// In a block; waiting for the network's confirmation depth.
    Confirming,
    /// Confirmed at depth. Final.
    Completed,
    /// Cannot be carried out, or reverted on chain. Final.
    Failed,
    /// An approver rejected it. Final.
    Rejected,
    /// Approvals did not arrive in time. Final.
    Expired,
    /// Cancelled before signing, or replaced on chain by a cancel. Final.
    Cancelled,
}

impl State {
    pub const ALL: [State; 16] = [
        State::Submitted,
        State::PendingPolicy,
        State::Blocked,
        State::PendingApproval,
        State::TimeLocked,
        State::Queued,
        State::Signing,
        State::AwaitingSignature,
        State::Signed,
        State::Broadcasting,
        State::Confirming,
        State::Completed,
        State::Failed,
        State::Rejected,
        State::Expired,
        State::Cancelled,
    ];

    /// The name stored and shown (`pending_approval`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            State::Submitted => "submitted",
            State::PendingPolicy => "pending_policy",
            State::Blocked => "blocked",
            State::PendingApproval => "pending_approval",
            State::TimeLocked => "time_locked",
            State::Queued => "queued",
            State::Signing => "signing",
            State::AwaitingSignature => "awaiting_signature",
            State::Signed => "signed",
            State::Broadcasting => "broadcasting",
            State::Confirming => "confirming",
            State::Completed => "completed",
            State::Failed => "failed",
            State::Rejected => "rejected",
            State::Expired => "expired",
            State::Cancelled => "cancelled",
        }
    }

    /// Nothing happens to it any more.
    pub const fn is_final(self) -> bool {
        matches!(
            self,
            State::Blocked
                | State::Completed
                | State::Failed
                | State::Rejected
                | State::Expired
                | State::Cancelled
        )
    }

    /// A transaction exists (or may) on the transfer's behalf: a nonce or
    /// inputs were reserved for it.
    pub const fn is_on_chain(self) -> bool {
        matches!(
            self,
            State::Signing
                | State::AwaitingSignature
                | State::Signed
                | State::Broadcasting
                | State::Confirming
        )
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A state name that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a transfer state")]
pub struct UnknownState(pub String);

impl std::str::FromStr for State {
    type Err = UnknownState;
    fn from_str(s: &str) -> Result<State, UnknownState> {
        State::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

/// What the policy decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Allow,
    /// Allowed once a time lock ends.
    AllowAfterLock,
    RequireApproval,
    Block,
    /// A circuit breaker tripped: blocked, and the wallet frozen.
    BreakerTripped,
}

/// Why an attempt to hand a queued transfer to the chain failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Failure {
    /// May go away by itself (a node, fees, a sealed keystore): try again
    /// after a backoff.
    Retryable,
    /// Needs a person (configuration, funds): held until an operator
    /// retries or cancels it.
    NeedsPerson,
    /// The transfer as approved can never be carried out.
    Terminal,
}

/// What happens to a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "event", content = "detail")]
pub enum Event {
    /// The request was received and its intent stored.
    Received,
    /// The policy in force decided.
    Judged(Verdict),
    /// Enough approvals: `true` when a time lock follows.
    ApprovalsMet { time_lock: bool },
    /// The approvals no longer stand (one expired, its approver's key was
    /// revoked, or its approver left the group) and the quorum is gone.
    ApprovalsLost,
    /// An approver rejected it.
    Rejected,
    /// Approvals did not arrive within their window.
    Lapsed,
    /// The time lock ended.
    LockEnded,
    /// Cancelled by its initiator, an approver or an operator.
    Cancel,
    /// An attempt to plan it failed.
    AttemptFailed(Failure),
    /// An operator asked for another attempt now.
    OperatorRetry,
    /// A transfer it depends on ended without completing.
    DependencyFailed,
    /// Nonce or inputs reserved, the plan pinned.
    Planned,
    /// Its reservation was given back before anything was signed: another
    /// payout of its Bitcoin batch lost its approvals.
    Unplanned,
    /// What the server may sign is signed; the transaction was handed out
    /// for an offline signer (a cold wallet).
    Exported,
    /// The signed bytes stored.
    Signed,
    /// The bytes handed to a node.
    Broadcast,
    /// Seen in a block.
    Included,
    /// Its block left the best chain.
    Reorged,
    /// At the confirmation depth.
    Confirmed,
    /// Included, but the execution reverted (fees were paid).
    Reverted,
    /// A cancel replacement took its nonce (nothing was paid out).
    CancelledOnChain,
    /// Someone else's transaction took its nonce.
    NonceTaken,
}

/// A change to the transfer's own record, stored with its new state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Count the attempt and schedule the next after a backoff.
    Backoff,
    /// Count the attempt and hold it for a person: no automatic retry.
    Hold,
    /// Attempts forgotten; the next may start now.
    ResetAttempts,
    /// The time it ended (final states).
    Finish,
    /// The nonce or outputs reserved for it were given back (nothing was
    /// signed): it no longer names a send.
    Release,
}

/// Something the service does because of the change, after or with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Evaluate the policy in force.
    EvaluatePolicy,
    /// Tell the transfer's approvers it waits for them.
    AskApprovers,
    /// Freeze the wallet (a circuit breaker).
    FreezeWallet,
    /// A worker should take it (or look again at transfers after it).
    Wake,
    /// Sign the pinned plan.
    Sign,
    /// Hand the stored bytes to the network (again, after a reorg).
    Broadcast,
    /// Follow the transaction to its confirmation depth.
    Watch,
    /// Transfers that depend on this one may go, or must fail.
    SettleDependents,
}

/// One step of the machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub to: State,
    pub changes: Vec<Change>,
    pub effects: Vec<Effect>,
}

/// An event the state does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a {from} transfer cannot take {event:?}")]
pub struct Illegal {
    pub from: State,
    pub event: Event,
}

fn to(state: State, changes: &[Change], effects: &[Effect]) -> Step {
    let mut changes = changes.to_vec();
    if state.is_final() {
        changes.push(Change::Finish);
    }
    Step {
        to: state,
        changes,
        effects: effects.to_vec(),
    }
}

/// The state a transfer in `from` goes to on `event`, what changes with it
/// and what the service must do; or [`Illegal`].
pub fn step(from: State, event: Event) -> Result<Step, Illegal> {
    use Effect as E;
    use Event as Ev;
    use State as S;
    let illegal = Illegal { from, event };
    let ended = [E::SettleDependents, E::Wake];
    Ok(match (from, event) {
        (S::Submitted, Ev::Received) => to(S::PendingPolicy, &[], &[E::EvaluatePolicy]),
        (S::PendingPolicy, Ev::Judged(v)) => match v {
            Verdict::Allow => to(S::Queued, &[], &[E::Wake]),
            Verdict::AllowAfterLock => to(S::TimeLocked, &[], &[]),
            Verdict::RequireApproval => to(S::PendingApproval, &[], &[E::AskApprovers]),
            Verdict::Block => to(S::Blocked, &[], &ended),
            Verdict::BreakerTripped => to(
                S::Blocked,
                &[],
                &[E::FreezeWallet, E::SettleDependents, E::Wake],
            ),
        },
        (S::PendingApproval, Ev::ApprovalsMet { time_lock: true }) => to(S::TimeLocked, &[], &[]),
        (S::PendingApproval, Ev::ApprovalsMet { time_lock: false }) => {
            to(S::Queued, &[], &[E::Wake])
        }
        (S::TimeLocked | S::Queued, Ev::ApprovalsLost) => {
            to(S::PendingApproval, &[], &[E::AskApprovers])
        }
        // Checked again right before signing: nothing was signed, so the
        // reservation goes back with it.
        (S::Signing, Ev::ApprovalsLost) => {
            to(S::PendingApproval, &[Change::Release], &[E::AskApprovers])
        }
        (S::Signing, Ev::Unplanned) => to(S::Queued, &[Change::Release], &[E::Wake]),
        (S::PendingApproval, Ev::Rejected) => to(S::Rejected, &[], &ended),
        (S::PendingApproval, Ev::Lapsed) => to(S::Expired, &[], &ended),
        (S::TimeLocked, Ev::LockEnded) => to(S::Queued, &[], &[E::Wake]),
        (S::PendingApproval | S::TimeLocked | S::Queued, Ev::Cancel) => {
            to(S::Cancelled, &[], &ended)
        }
        (S::Queued, Ev::AttemptFailed(f)) => match f {
            Failure::Retryable => to(S::Queued, &[Change::Backoff], &[]),
            Failure::NeedsPerson => to(S::Queued, &[Change::Hold], &[]),
            Failure::Terminal => to(S::Failed, &[], &ended),
        },
        (S::Queued, Ev::OperatorRetry) => to(S::Queued, &[Change::ResetAttempts], &[E::Wake]),
        (S::Queued, Ev::DependencyFailed) => to(S::Failed, &[], &ended),
        (S::Queued, Ev::Planned) => to(S::Signing, &[], &[E::Sign]),
        (S::Signing, Ev::Signed) => to(S::Signed, &[], &[E::Broadcast]),
        (S::Signing, Ev::Exported) => to(S::AwaitingSignature, &[], &[]),
        // The offline signature came back and is exactly the plan.
        (S::AwaitingSignature, Ev::Signed) => to(S::Signed, &[], &[E::Broadcast]),
        // Not whole yet (the server cannot complete the transaction alone),
        // so it may still be stopped: its reservation goes back. An offline
        // signer who already signed could still broadcast it; the chain
        // watcher reports that as an unexpected spend.
        (S::AwaitingSignature, Ev::Cancel) => to(S::Cancelled, &[Change::Release], &ended),
        (S::AwaitingSignature, Ev::Lapsed) => to(S::Expired, &[Change::Release], &ended),
        (S::AwaitingSignature, Ev::Unplanned) => to(S::Queued, &[Change::Release], &[E::Wake]),
        (S::Signed, Ev::Broadcast) => to(S::Broadcasting, &[], &[E::Watch]),
        // A crash after the node took the bytes, before that was recorded:
        // the next look finds it in a block.
        (S::Signed | S::Broadcasting, Ev::Included) => to(S::Confirming, &[], &[E::Watch]),
        (S::Confirming, Ev::Reorged) => to(S::Broadcasting, &[], &[E::Broadcast, E::Watch]),
        (S::Confirming, Ev::Confirmed) => to(S::Completed, &[], &ended),
        (S::Confirming, Ev::Reverted) => to(S::Failed, &[], &ended),
        (S::Confirming, Ev::CancelledOnChain) => to(S::Cancelled, &[], &ended),
        (S::Signed | S::Broadcasting, Ev::NonceTaken) => to(S::Failed, &[], &ended),
        _ => return Err(illegal),
    })
}

/// The first wait between attempts, doubled after each failure.
pub const FIRST_BACKOFF_MS: i64 = 5_000;
/// The longest wait between attempts.
pub const MAX_BACKOFF_MS: i64 = 3_600_000;

/// How long to wait before the next attempt after `attempts` failed ones:
/// exponential, capped at [`MAX_BACKOFF_MS`].
pub fn backoff_ms(attempts: u32) -> i64 {
    FIRST_BACKOFF_MS
        .saturating_mul(1i64 << attempts.saturating_sub(1).min(20))
        .min(MAX_BACKOFF_MS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        let waits: Vec<i64> = (1..=12).map(backoff_ms).collect();
        assert_eq!(
            waits,
            [
                5_000, 10_000, 20_000, 40_000, 80_000, 160_000, 320_000, 640_000, 1_280_000,
                2_560_000, 3_600_000, 3_600_000
            ]
        );
        assert_eq!(backoff_ms(0), 5_000);
        assert_eq!(backoff_ms(u32::MAX), MAX_BACKOFF_MS);
    }

    #[test]
    fn names_round_trip() {
        for s in State::ALL {
            assert_eq!(s.as_str().parse::<State>(), Ok(s));
            assert_eq!(
                serde_json_free_name(s),
                s.as_str(),
                "the stored name is the serde name"
            );
        }
        assert!("approved".parse::<State>().is_err());
    }

    fn serde_json_free_name(s: State) -> String {
        // serde's snake_case of the variant, without a JSON dependency.
        let debug = format!("{s:?}");
        let mut out = String::new();
        for (i, c) in debug.chars().enumerate() {
            if c.is_ascii_uppercase() {
                if i > 0 {
                    out.push('_');
                }
                out.push(c.to_ascii_lowercase());
            } else {
                out.push(c);
            }
        }
        out
    }
}
