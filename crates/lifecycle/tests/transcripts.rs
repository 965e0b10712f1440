//! Transcripts of every path a transfer can take, and the whole transition
//! table: a change to the machine shows up here, line by line, for review.

use expect_test::{Expect, expect};
mod common;

use common::events;
use lifecycle::{Event, Failure, State, Verdict, step};

fn name(e: Event) -> String {
    match e {
        Event::Judged(v) => format!("Judged({v:?})"),
        Event::AttemptFailed(f) => format!("AttemptFailed({f:?})"),
        Event::ApprovalsMet { time_lock } => format!("ApprovalsMet(lock={time_lock})"),
        other => format!("{other:?}"),
    }
}

/// The transcript of `events` from `submitted`.
fn transcript(events: &[Event]) -> String {
    let mut at = State::Submitted;
    let mut out = String::new();
    for &e in events {
        match step(at, e) {
            Ok(s) => {
                out += &format!(
                    "{at} --{}--> {}  changes {:?} effects {:?}\n",
                    name(e),
                    s.to,
                    s.changes,
                    s.effects
                );
                at = s.to;
            }
            Err(err) => {
                out += &format!("refused: {err}\n");
                break;
            }
        }
    }
    out
}

fn check(events: &[Event], want: Expect) {
    want.assert_eq(&transcript(events));
}

use Event::*;

#[test]
fn allowed_to_completed() {
    check(
        &[
            Received,
            Judged(Verdict::Allow),
            Planned,
            Signed,
            Broadcast,
            Included,
            Confirmed,
        ],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Signed--> signed  changes [] effects [Broadcast]
            signed --Broadcast--> broadcasting  changes [] effects [Watch]
            broadcasting --Included--> confirming  changes [] effects [Watch]
            confirming --Confirmed--> completed  changes [Finish] effects [SettleDependents, Wake]
        "#]],
    );
}

#[test]
fn approvals_then_a_time_lock() {
    check(
        &[
            Received,
            Judged(Verdict::RequireApproval),
            ApprovalsMet { time_lock: true },
            LockEnded,
            Planned,
        ],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(RequireApproval)--> pending_approval  changes [] effects [AskApprovers]
            pending_approval --ApprovalsMet(lock=true)--> time_locked  changes [] effects []
            time_locked --LockEnded--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
        "#]],
    );
}

#[test]
fn approvals_lost_while_queued_then_rejected() {
    check(
        &[
            Received,
            Judged(Verdict::RequireApproval),
            ApprovalsMet { time_lock: false },
            ApprovalsLost,
            Rejected,
            Cancel,
        ],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(RequireApproval)--> pending_approval  changes [] effects [AskApprovers]
            pending_approval --ApprovalsMet(lock=false)--> queued  changes [] effects [Wake]
            queued --ApprovalsLost--> pending_approval  changes [] effects [AskApprovers]
            pending_approval --Rejected--> rejected  changes [Finish] effects [SettleDependents, Wake]
            refused: a rejected transfer cannot take Cancel
        "#]],
    );
}

#[test]
fn approvals_lost_at_signing_give_the_reservation_back() {
    check(
        &[
            Received,
            Judged(Verdict::RequireApproval),
            ApprovalsMet { time_lock: false },
            Planned,
            ApprovalsLost,
            ApprovalsMet { time_lock: false },
            Planned,
            Unplanned,
            Planned,
            Signed,
            ApprovalsLost,
        ],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(RequireApproval)--> pending_approval  changes [] effects [AskApprovers]
            pending_approval --ApprovalsMet(lock=false)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --ApprovalsLost--> pending_approval  changes [Release] effects [AskApprovers]
            pending_approval --ApprovalsMet(lock=false)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Unplanned--> queued  changes [Release] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Signed--> signed  changes [] effects [Broadcast]
            refused: a signed transfer cannot take ApprovalsLost
        "#]],
    );
}

#[test]
fn blocked_and_breaker() {
    check(
        &[Received, Judged(Verdict::Block), Cancel],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Block)--> blocked  changes [Finish] effects [SettleDependents, Wake]
            refused: a blocked transfer cannot take Cancel
        "#]],
    );
    check(
        &[Received, Judged(Verdict::BreakerTripped)],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(BreakerTripped)--> blocked  changes [Finish] effects [FreezeWallet, SettleDependents, Wake]
        "#]],
    );
}

#[test]
fn lapsed() {
    check(
        &[Received, Judged(Verdict::RequireApproval), Lapsed],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(RequireApproval)--> pending_approval  changes [] effects [AskApprovers]
            pending_approval --Lapsed--> expired  changes [Finish] effects [SettleDependents, Wake]
        "#]],
    );
}

#[test]
fn retries_hold_and_operator() {
    check(
        &[
            Received,
            Judged(Verdict::Allow),
            AttemptFailed(Failure::Retryable),
            AttemptFailed(Failure::NeedsPerson),
            OperatorRetry,
            AttemptFailed(Failure::Terminal),
        ],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --AttemptFailed(Retryable)--> queued  changes [Backoff] effects []
            queued --AttemptFailed(NeedsPerson)--> queued  changes [Hold] effects []
            queued --OperatorRetry--> queued  changes [ResetAttempts] effects [Wake]
            queued --AttemptFailed(Terminal)--> failed  changes [Finish] effects [SettleDependents, Wake]
        "#]],
    );
}

#[test]
fn cancelled_before_signing_not_after() {
    check(
        &[Received, Judged(Verdict::AllowAfterLock), Cancel],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(AllowAfterLock)--> time_locked  changes [] effects []
            time_locked --Cancel--> cancelled  changes [Finish] effects [SettleDependents, Wake]
        "#]],
    );
    check(
        &[Received, Judged(Verdict::Allow), Planned, Cancel],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            refused: a signing transfer cannot take Cancel
        "#]],
    );
}

#[test]
fn a_cold_wallet_waits_for_its_offline_signature() {
    check(
        &[
            Received,
            Judged(Verdict::Allow),
            Planned,
            Exported,
            Signed,
            Broadcast,
        ],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Exported--> awaiting_signature  changes [] effects []
            awaiting_signature --Signed--> signed  changes [] effects [Broadcast]
            signed --Broadcast--> broadcasting  changes [] effects [Watch]
        "#]],
    );
    // Not whole yet: it may be stopped, and its reservation goes back.
    check(
        &[Received, Judged(Verdict::Allow), Planned, Exported, Cancel],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Exported--> awaiting_signature  changes [] effects []
            awaiting_signature --Cancel--> cancelled  changes [Release, Finish] effects [SettleDependents, Wake]
        "#]],
    );
    check(
        &[Received, Judged(Verdict::Allow), Planned, Exported, Lapsed],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Exported--> awaiting_signature  changes [] effects []
            awaiting_signature --Lapsed--> expired  changes [Release, Finish] effects [SettleDependents, Wake]
        "#]],
    );
    // Once signed, it is not.
    check(
        &[
            Received,
            Judged(Verdict::Allow),
            Planned,
            Exported,
            Signed,
            Cancel,
        ],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Exported--> awaiting_signature  changes [] effects []
            awaiting_signature --Signed--> signed  changes [] effects [Broadcast]
            refused: a signed transfer cannot take Cancel
        "#]],
    );
}

#[test]
fn dependency_failed() {
    check(
        &[Received, Judged(Verdict::Allow), DependencyFailed],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --DependencyFailed--> failed  changes [Finish] effects [SettleDependents, Wake]
        "#]],
    );
}

#[test]
fn on_chain_endings() {
    let to_block = [
        Received,
        Judged(Verdict::Allow),
        Planned,
        Signed,
        Broadcast,
        Included,
    ];
    check(
        &[&to_block[..], &[Reorged, Included, Reverted]].concat(),
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Signed--> signed  changes [] effects [Broadcast]
            signed --Broadcast--> broadcasting  changes [] effects [Watch]
            broadcasting --Included--> confirming  changes [] effects [Watch]
            confirming --Reorged--> broadcasting  changes [] effects [Broadcast, Watch]
            broadcasting --Included--> confirming  changes [] effects [Watch]
            confirming --Reverted--> failed  changes [Finish] effects [SettleDependents, Wake]
        "#]],
    );
    check(
        &[&to_block[..], &[CancelledOnChain]].concat(),
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Signed--> signed  changes [] effects [Broadcast]
            signed --Broadcast--> broadcasting  changes [] effects [Watch]
            broadcasting --Included--> confirming  changes [] effects [Watch]
            confirming --CancelledOnChain--> cancelled  changes [Finish] effects [SettleDependents, Wake]
        "#]],
    );
    // A crash between the node taking the bytes and recording it: the
    // next look finds the transaction in a block.
    check(
        &[Received, Judged(Verdict::Allow), Planned, Signed, Included],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Signed--> signed  changes [] effects [Broadcast]
            signed --Included--> confirming  changes [] effects [Watch]
        "#]],
    );
    check(
        &[
            Received,
            Judged(Verdict::Allow),
            Planned,
            Signed,
            NonceTaken,
        ],
        expect![[r#"
            submitted --Received--> pending_policy  changes [] effects [EvaluatePolicy]
            pending_policy --Judged(Allow)--> queued  changes [] effects [Wake]
            queued --Planned--> signing  changes [] effects [Sign]
            signing --Signed--> signed  changes [] effects [Broadcast]
            signed --NonceTaken--> failed  changes [Finish] effects [SettleDependents, Wake]
        "#]],
    );
}

/// The whole table: every state against every event.
#[test]
fn transition_table() {
    let mut out = String::new();
    for s in State::ALL {
        let taken: Vec<String> = events()
            .into_iter()
            .filter_map(|e| step(s, e).ok().map(|st| format!("{}→{}", name(e), st.to)))
            .collect();
        let taken = if taken.is_empty() {
            "(final)".to_owned()
        } else {
            taken.join(", ")
        };
        out += &format!("{s}: {taken}\n");
    }
    expect![[r#"
        submitted: Received→pending_policy
        pending_policy: Judged(Allow)→queued, Judged(AllowAfterLock)→time_locked, Judged(RequireApproval)→pending_approval, Judged(Block)→blocked, Judged(BreakerTripped)→blocked
        blocked: (final)
        pending_approval: ApprovalsMet(lock=false)→queued, ApprovalsMet(lock=true)→time_locked, Rejected→rejected, Lapsed→expired, Cancel→cancelled
        time_locked: ApprovalsLost→pending_approval, LockEnded→queued, Cancel→cancelled
        queued: ApprovalsLost→pending_approval, Cancel→cancelled, AttemptFailed(Retryable)→queued, AttemptFailed(NeedsPerson)→queued, AttemptFailed(Terminal)→failed, OperatorRetry→queued, DependencyFailed→failed, Planned→signing
        signing: ApprovalsLost→pending_approval, Unplanned→queued, Exported→awaiting_signature, Signed→signed
        awaiting_signature: Lapsed→expired, Cancel→cancelled, Unplanned→queued, Signed→signed
        signed: Broadcast→broadcasting, Included→confirming, NonceTaken→failed
        broadcasting: Included→confirming, NonceTaken→failed
        confirming: Reorged→broadcasting, Confirmed→completed, Reverted→failed, CancelledOnChain→cancelled
        completed: (final)
        failed: (final)
        rejected: (final)
        expired: (final)
        cancelled: (final)
    "#]]
    .assert_eq(&out);
}

/// Final states take nothing; every other state is reachable from
/// `submitted` and can reach a final state; `Finish` marks exactly the
/// steps into a final state.
#[test]
fn shape_of_the_machine() {
    use std::collections::BTreeSet;
    let reach = |from: State| {
        let mut seen = BTreeSet::from([from]);
        let mut todo = vec![from];
        while let Some(s) = todo.pop() {
            for e in events() {
                if let Ok(st) = step(s, e)
                    && seen.insert(st.to)
                {
                    todo.push(st.to);
                }
            }
        }
        seen
    };
    let from_start = reach(State::Submitted);
    for s in State::ALL {
        assert!(from_start.contains(&s), "{s} is unreachable");
        if s.is_final() {
            assert!(events().into_iter().all(|e| step(s, e).is_err()), "{s}");
        } else {
            assert!(reach(s).iter().any(|t| t.is_final()), "{s} never ends");
        }
        for e in events() {
            if let Ok(st) = step(s, e) {
                assert_eq!(
                    st.changes.contains(&lifecycle::Change::Finish),
                    st.to.is_final(),
                    "{s} {e:?}"
                );
                // Nothing signed is ever cancelled off the chain's back
                // (a transaction awaiting its offline signature is not
                // whole: the server alone cannot complete it).
                if s.is_on_chain() && s != State::AwaitingSignature {
                    assert_ne!(e, Event::Cancel);
                }
            }
        }
    }
}
