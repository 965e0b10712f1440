//! A signer node's own audit log: the same hash-chained records as the
//! server's, one JSON line each, synced at every append, verified whole
//! when opened.

use std::path::Path;

use audit::{Details, Entry, Head, Record};
use serde::Deserialize;

use super::{NodeError, now};

/// The node's own audit log: the same hash-chained records as the
/// server's, one JSON line each, synced at every append, verified whole
/// when opened.
#[derive(Debug)]
pub(super) struct AuditFile {
    lines: crate::journal::Lines,
    head: Head,
}

#[derive(serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditLine {
    seq: u64,
    version: u16,
    time_ms: i64,
    actor: String,
    action: String,
    subject: String,
    details: String,
    prev_hash: String,
    hash: String,
}

impl AuditFile {
    pub(super) fn open(path: &Path) -> Result<AuditFile, NodeError> {
        // A torn last line (a crash before its sync) is cut off: the step
        // it recorded never answered.
        let (lines, records) = crate::journal::Lines::open::<AuditLine>(path)
            .map_err(|e| NodeError::Audit(e.to_string()))?;
        let mut head = Head::GENESIS;
        for (i, l) in records.into_iter().enumerate() {
            let broken = |why: &str| NodeError::Audit(format!("record {}: {why}", i + 1));
            let r = Record {
                seq: l.seq,
                version: l.version,
                time: domain::Timestamp::from_millis(l.time_ms),
                actor: l.actor,
                action: l.action,
                subject: l.subject,
                details: l.details,
                prev_hash: l.prev_hash.parse().map_err(|_| broken("prev_hash"))?,
                hash: l.hash.parse().map_err(|_| broken("hash"))?,
            };
            if r.seq != head.seq.saturating_add(1)
                || r.prev_hash != head.hash
                || r.computed_hash() != r.hash
            {
                return Err(broken("the chain is broken here"));
            }
            head = r.head();
        }
        Ok(AuditFile { lines, head })
    }

    pub(super) fn append(
        &mut self,
        action: &str,
        subject: &str,
        details: &serde_json::Value,
    ) -> Result<(), NodeError> {
        let audit_err = |e: audit::AuditError| NodeError::Audit(e.to_string());
        let entry = Entry::new(
            domain::Actor::System,
            action,
            subject,
            Details::new(details).map_err(audit_err)?,
        )
        .map_err(audit_err)?;
        let now = now().map_err(|e| NodeError::Audit(e.to_string()))?;
        let r = Record::next(&self.head, &entry, now).map_err(audit_err)?;
        let line = AuditLine {
            seq: r.seq,
            version: r.version,
            time_ms: r.time.as_millis(),
            actor: r.actor.clone(),
            action: r.action.clone(),
            subject: r.subject.clone(),
            details: r.details.clone(),
            prev_hash: r.prev_hash.to_string(),
            hash: r.hash.to_string(),
        };
        self.lines.append(&line)?;
        self.head = r.head();
        Ok(())
    }
}
