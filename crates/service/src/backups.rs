//! Backups from the service's side: each one taken or restored is in the
//! audit log, a failed scheduled one is announced, and the keys a verified
//! backup holds may receive funds (no key without a backup).

use domain::{Actor, KeyId};
use serde_json::json;

use crate::record::entry;
use crate::service::{Service, ServiceError};

impl Service {
    /// Records a backup taken from the console: what it holds (its
    /// manifest's digest, the audit head it was taken at) and where it went.
    pub async fn record_backup(
        &self,
        by: &Actor,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        self.audit_subject(by, "backup.created", "backup", details)
            .await?;
        self.metrics().backed_up(self.now());
        Ok(())
    }

    /// Marks the keys a verified backup holds (`backup verify`): they may
    /// receive funds now. Returns those newly marked.
    pub async fn record_keys_backed_up(
        &self,
        ids: &[String],
        manifest_sha256: &str,
    ) -> Result<Vec<String>, ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let marked = tx.mark_keys_backed_up(ids, now).await?;
        if marked.is_empty() {
            return Ok(marked);
        }
        let e = entry(
            &Actor::System,
            "key.backed_up",
            "backup",
            json!({ "keys": marked, "manifest_sha256": manifest_sha256 }),
        )?;
        self.commit(tx, &[e], now).await?;
        Ok(marked)
    }

    /// An operator accepts that a key receives funds before any backup
    /// holds it (audited).
    pub async fn waive_key_backup(&self, by: &Actor, id: KeyId) -> Result<(), ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.waive_key_backup(&id.to_string(), &by.to_string())
            .await?;
        let e = entry(
            by,
            "key.backup_waived",
            &format!("key:{id}"),
            json!({ "accepted": "receives funds before any backup holds it" }),
        )?;
        self.commit(tx, &[e], now).await
    }

    /// Records a scheduled backup that failed, and announces it (a
    /// `backup.failed` webhook event): an alert, since the last good backup
    /// is getting older.
    pub async fn record_backup_failed(
        &self,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        crate::outbox::enqueue(&mut tx, "backup.failed", details.clone(), now).await?;
        let e = entry(&Actor::System, "backup.failed", "backup", details)?;
        self.commit(tx, &[e], now).await
    }
}
