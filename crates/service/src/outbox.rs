//! The outbox: webhook events written in the transaction of the change they
//! report (delivered later by the worker in `webhooks`).

use domain::Timestamp;
use serde_json::json;
use storage::WriteTx;

use crate::error::ServiceError;

/// The event types a subscription may name (or `*`).
pub const EVENT_TYPES: &[&str] = &[
    "transfer.state_changed",
    "transfer.pending_approval",
    "transfer.stuck",
    "transfer.sign_refused",
    "transfer.signature_refused",
    "deposit",
    "freeze",
    "circuit_breaker",
    "governance.forged_row",
    "backup.failed",
    "restore.reconciled",
];

/// Writes an event to the outbox inside `tx`.
pub(crate) async fn enqueue(
    tx: &mut WriteTx,
    event_type: &str,
    data: serde_json::Value,
    now: Timestamp,
) -> Result<(), ServiceError> {
    let id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    let mut payload = json!({ "type": event_type, "timestamp_ms": now.as_millis(), "data": data });
    // The request that caused it, when one did.
    if let Some(id) = storage::context::request_id() {
        payload["request_id"] = json!(&*id);
    }
    tx.enqueue_event(&id, event_type, &payload.to_string(), now)
        .await?;
    Ok(())
}
