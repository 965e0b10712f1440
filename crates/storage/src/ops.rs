//! What operators watch: counts and ages read in a few aggregate queries
//! (for metrics and readiness), never rows of money or addresses.

use domain::Timestamp;
use sqlx::Row;

use crate::error::StorageError;
use crate::row::corrupt;
use crate::store::Store;

/// Transfers not yet at an end, by state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateCount {
    pub state: String,
    pub count: u64,
    /// When the longest-waiting one last changed.
    pub oldest_change: Timestamp,
}

/// The state of the work, read at one moment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OpsSnapshot {
    /// Transfers in states that are not final.
    pub open_transfers: Vec<StateCount>,
    /// Transfers the stuck view shows (held, retried, or quiet too long).
    pub stuck: u64,
    /// Freezes in force, by the kind of their scope (`global`, `wallet`,
    /// `key`, …).
    pub freezes: Vec<(String, u64)>,
    /// Webhook deliveries not yet delivered, by state (`pending`,
    /// `failed`).
    pub webhook_deliveries: Vec<(String, u64)>,
    /// Pending deliveries that have failed at least once.
    pub webhook_retrying: u64,
    /// The audit log's length.
    pub audit_records: u64,
}

/// The states in which a transfer is still on its way.
const OPEN_STATES: &str = "'submitted', 'pending_policy', 'pending_approval', 'time_locked', \
     'queued', 'signing', 'awaiting_signature', 'signed', 'broadcasting', 'confirming'";

fn count(n: i64, what: &str) -> Result<u64, StorageError> {
    u64::try_from(n).map_err(|e| corrupt(what, &e))
}

impl Store {
    /// Counts and ages for operators; `quiet_since` as for
    /// [`Store::transfers_stuck`].
    pub async fn ops_snapshot(&self, quiet_since: Timestamp) -> Result<OpsSnapshot, StorageError> {
        let mut s = OpsSnapshot::default();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT state, COUNT(*) AS n, MIN(updated_at_ms) AS oldest FROM transfers \
             WHERE state IN ({OPEN_STATES}) GROUP BY state ORDER BY state"
        )))
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            s.open_transfers.push(StateCount {
                state: r.try_get("state")?,
                count: count(r.try_get("n")?, "transfer count")?,
                oldest_change: Timestamp::from_millis(r.try_get("oldest")?),
            });
        }
        let stuck: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM transfers WHERE {}",
            crate::queue::STUCK
        )))
        .bind(quiet_since.as_millis())
        .fetch_one(&self.pool)
        .await?;
        s.stuck = count(stuck, "stuck count")?;
        let scopes: Vec<String> =
            sqlx::query_scalar("SELECT scope FROM freezes WHERE released_at_ms IS NULL")
                .fetch_all(&self.pool)
                .await?;
        let mut kinds = std::collections::BTreeMap::<String, u64>::new();
        for scope in scopes {
            let kind = scope.split(':').next().unwrap_or_default().to_owned();
            *kinds.entry(kind).or_default() += 1;
        }
        s.freezes = kinds.into_iter().collect();
        let rows = sqlx::query(
            "SELECT state, COUNT(*) AS n, \
             COALESCE(SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END), 0) AS retrying \
             FROM webhook_deliveries WHERE state <> 'delivered' GROUP BY state ORDER BY state",
        )
        .fetch_all(&self.pool)
        .await?;
        for r in &rows {
            let state: String = r.try_get("state")?;
            if state == "pending" {
                s.webhook_retrying = count(r.try_get("retrying")?, "retrying deliveries")?;
            }
            s.webhook_deliveries
                .push((state, count(r.try_get("n")?, "delivery count")?));
        }
        s.audit_records = self.audit_head().await?.seq;
        Ok(s)
    }

    /// When the last record with `action` was written (a scan of the log:
    /// read once a process, then kept up to date by the caller).
    pub async fn last_audit_time(&self, action: &str) -> Result<Option<Timestamp>, StorageError> {
        let t: Option<i64> =
            sqlx::query_scalar("SELECT MAX(time_ms) FROM audit_log WHERE action = $1")
                .bind(action)
                .fetch_one(&self.pool)
                .await?;
        Ok(t.map(Timestamp::from_millis))
    }

    /// Connections in the pool: (open, idle).
    pub fn pool_connections(&self) -> (u32, usize) {
        (self.pool.size(), self.pool.num_idle())
    }
}
