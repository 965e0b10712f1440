//! Reading the audit log back, for verification and for auditors.

use audit::{Hash, Head, Record};
use domain::Timestamp;
use sqlx::Row;

use crate::error::StorageError;
use crate::store::Store;
use crate::tx::{parse_hash, seq_from_db, seq_to_db};

impl Store {
    /// The head kept beside the log.
    pub async fn audit_head(&self) -> Result<Head, StorageError> {
        let (seq, hash): (i64, String) =
            sqlx::query_as("SELECT seq, hash FROM audit_head WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StorageError::Corrupt("audit head row is missing".into()))?;
        Ok(Head {
            seq: seq_from_db(seq)?,
            hash: parse_hash(&hash)?,
        })
    }

    /// Up to `limit` records with `seq > after`, in sequence order.
    ///
    /// A row whose hashes are not 64 lower-case hex digits is returned marked
    /// unreadable ([`Record::mark_unreadable`]), so that verification names
    /// it as edited instead of the read failing.
    pub async fn audit_page(&self, after: u64, limit: u32) -> Result<Vec<Record>, StorageError> {
        let rows = sqlx::query(
            "SELECT seq, version, time_ms, actor, action, subject, details, prev_hash, hash \
             FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq_to_db(after)?)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let version: i64 = row.try_get("version")?;
                let prev_hash: String = row.try_get("prev_hash")?;
                let hash: String = row.try_get("hash")?;
                let (prev_hash, hash, readable) = match (prev_hash.parse(), hash.parse()) {
                    (Ok(p), Ok(h)) => (p, h, true),
                    _ => (Hash::GENESIS, Hash::GENESIS, false),
                };
                let mut r = Record {
                    seq: seq_from_db(row.try_get("seq")?)?,
                    version: u16::try_from(version).unwrap_or(u16::MAX),
                    time: Timestamp::from_millis(row.try_get("time_ms")?),
                    actor: row.try_get("actor")?,
                    action: row.try_get("action")?,
                    subject: row.try_get("subject")?,
                    details: row.try_get("details")?,
                    prev_hash,
                    hash,
                };
                if !readable {
                    r.mark_unreadable();
                }
                Ok(r)
            })
            .collect()
    }

    /// The details of every record of `action` about `subject`, in order.
    pub async fn audit_details_of(
        &self,
        action: &str,
        subject: &str,
    ) -> Result<Vec<String>, StorageError> {
        Ok(sqlx::query_scalar(
            "SELECT details FROM audit_log WHERE action = $1 AND subject = $2 ORDER BY seq",
        )
        .bind(action)
        .bind(subject)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether any record of `action` was written.
    pub async fn audit_has(&self, action: &str) -> Result<bool, StorageError> {
        let seq: Option<i64> =
            sqlx::query_scalar("SELECT seq FROM audit_log WHERE action = $1 LIMIT 1")
                .bind(action)
                .fetch_optional(&self.pool)
                .await?;
        Ok(seq.is_some())
    }
}
