//! Audit records: the entry every state change commits with.

use audit::{Details, Entry};
use domain::Actor;

use crate::error::ServiceError;

/// The audit entry of `action` on `subject` by `actor`, with `details`.
pub(crate) fn entry(
    actor: &Actor,
    action: &str,
    subject: &str,
    details: serde_json::Value,
) -> Result<Entry, ServiceError> {
    Ok(Entry::new(
        actor.clone(),
        action,
        subject,
        Details::new(&details)?,
    )?)
}
