//! `audit verify`: the stored chain against the signed checkpoints.

use audit::{AuditPublicKey, Break, Report, Verifier};
use storage::Store;

use crate::checkpoints::CheckpointFile;
use crate::service::ServiceError;

const PAGE: u32 = 2_000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The log or its checkpoints have been tampered with.
    #[error("audit log is broken: {0}")]
    Broken(#[from] Break),
    #[error("the checkpoint file {0} is missing but the log has records: it may have been deleted")]
    NoCheckpoints(String),
    /// Verification could not run.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Verifies every record in sequence order, in pages, against the checkpoints.
pub async fn verify_audit(
    store: &Store,
    checkpoints: &CheckpointFile,
    key: &AuditPublicKey,
) -> Result<Report, VerifyError> {
    let cps = checkpoints.read_all()?;
    let mut v = Verifier::new(cps.as_deref().unwrap_or(&[]), key)?;
    let mut after = 0;
    loop {
        let page = store
            .audit_page(after, PAGE)
            .await
            .map_err(ServiceError::from)?;
        let Some(last) = page.last() else { break };
        after = last.seq;
        for r in &page {
            v.push(r)?;
        }
    }
    let head = store.audit_head().await.map_err(ServiceError::from)?;
    let report = v.finish(Some(head))?;
    if cps.is_none() && report.records > 0 {
        return Err(VerifyError::NoCheckpoints(
            checkpoints.path().display().to_string(),
        ));
    }
    Ok(report)
}
