//! What the lifecycle's tests share: every event the machine knows.

use lifecycle::{Event, Failure, Verdict};

/// Every event, each variant with each of its details.
pub fn events() -> Vec<Event> {
    let mut out = vec![Event::Received];
    for v in [
        Verdict::Allow,
        Verdict::AllowAfterLock,
        Verdict::RequireApproval,
        Verdict::Block,
        Verdict::BreakerTripped,
    ] {
        out.push(Event::Judged(v));
    }
    out.extend([
        Event::ApprovalsMet { time_lock: false },
        Event::ApprovalsMet { time_lock: true },
        Event::ApprovalsLost,
        Event::Rejected,
        Event::Lapsed,
        Event::LockEnded,
        Event::Cancel,
    ]);
    for f in [Failure::Retryable, Failure::NeedsPerson, Failure::Terminal] {
        out.push(Event::AttemptFailed(f));
    }
    out.extend([
        Event::OperatorRetry,
        Event::DependencyFailed,
        Event::Planned,
        Event::Unplanned,
        Event::Exported,
        Event::Signed,
        Event::Broadcast,
        Event::Included,
        Event::Reorged,
        Event::Confirmed,
        Event::Reverted,
        Event::CancelledOnChain,
        Event::NonceTaken,
    ]);
    out
}
