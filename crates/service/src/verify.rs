//! `audit verify`: the stored chain against the signed checkpoints.

use audit::{AuditPublicKey, Break, Report, Verifier};
use storage::{StorageError, Store};

use crate::checkpoints::CheckpointFile;
use crate::service::ServiceError;

const PAGE: u32 = 2_000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The log or its checkpoints have been tampered with.
    #[error("audit log is broken: {0}")]
    Broken(#[from] Break),
    #[error(
        "the checkpoint file {0} is missing or empty but the log has records: it may have been deleted or emptied"
    )]
    NoCheckpoints(String),
    /// A checkpoint line that does not parse: the file was damaged or edited.
    #[error("{0}")]
    CheckpointFile(String),
    /// Verification could not run.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Verifies every record in sequence order, in pages, against the checkpoints.
///
/// The head is read first and the log verified up to it, so a server that
/// keeps appending meanwhile does not make a sound log look truncated.
pub async fn verify_audit(
    store: &Store,
    checkpoints: &CheckpointFile,
    key: &AuditPublicKey,
) -> Result<Report, VerifyError> {
    let cps = match checkpoints.read_all() {
        Ok(c) => c.unwrap_or_default(),
        Err(e @ ServiceError::CheckpointLine { .. }) => {
            return Err(VerifyError::CheckpointFile(e.to_string()));
        }
        Err(e) => return Err(e.into()),
    };
    let head = store.audit_head().await.map_err(ServiceError::from)?;
    let mut v = Verifier::new(&cps, key)?;
    feed(store, &mut v, head.seq).await.map_err(|e| match e {
        Fed::Storage(e) => VerifyError::Service(e.into()),
        Fed::Broken(b) => VerifyError::Broken(b),
    })?;
    let report = v.finish(Some(head))?;
    if cps.is_empty() && report.records > 0 {
        return Err(VerifyError::NoCheckpoints(
            checkpoints.path().display().to_string(),
        ));
    }
    Ok(report)
}

/// Why [`feed`] stopped early.
#[derive(Debug)]
pub(crate) enum Fed {
    Storage(StorageError),
    Broken(Break),
}

/// Feeds `v` the stored records after its head, in sequence order, page by
/// page, up to and including `until`. Stops at the first break.
pub(crate) async fn feed(store: &Store, v: &mut Verifier, until: u64) -> Result<(), Fed> {
    loop {
        let page = store
            .audit_page(v.head().seq, PAGE)
            .await
            .map_err(Fed::Storage)?;
        if page.is_empty() {
            return Ok(());
        }
        // Each record either advances the head or is a break, so this ends.
        for r in &page {
            if r.seq > until {
                return Ok(());
            }
            v.push(r).map_err(Fed::Broken)?;
        }
    }
}
