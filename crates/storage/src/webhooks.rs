//! Webhook subscriptions, the event outbox and deliveries.
//!
//! Events enter the outbox inside the transaction of the change they
//! describe ([`WriteTx::enqueue_event`]). Delivery bookkeeping (claims,
//! attempts) is operational state written outside audited transactions;
//! subscriptions, final failures and resends are audited by `service`.

use domain::{Actor, Timestamp};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::store::{Backend, Store};
use crate::tx::WriteTx;

#[derive(Clone, PartialEq, Eq)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    /// Event types, or `*` for all.
    pub events: Vec<String>,
    pub secret_sealed: Vec<u8>,
    pub active: bool,
    pub created_at: Timestamp,
    pub created_by: Actor,
}

impl std::fmt::Debug for WebhookRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRow")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

/// A delivery claimed for sending, with what it needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueDelivery {
    pub id: String,
    pub webhook_id: String,
    pub url: String,
    pub secret_sealed: Vec<u8>,
    pub event_id: String,
    pub event_type: String,
    pub payload: String,
    pub event_time: Timestamp,
    pub attempts: u32,
    /// The lease this claim holds: updates count only while it is still held.
    pub lease: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub id: String,
    pub webhook_id: String,
    pub event_id: String,
    pub event_type: String,
    pub state: String,
    pub attempts: u32,
    pub next_attempt: Timestamp,
    pub last_error: Option<String>,
    pub delivered_at: Option<Timestamp>,
}

fn webhook_from_row(row: &AnyRow) -> Result<WebhookRow, StorageError> {
    let events: String = row.try_get("events")?;
    let active: i64 = row.try_get("active")?;
    let by: String = row.try_get("created_by")?;
    Ok(WebhookRow {
        id: row.try_get("id")?,
        url: row.try_get("url")?,
        events: events.split(',').map(str::to_owned).collect(),
        secret_sealed: row.try_get("secret_sealed")?,
        active: active == 1,
        created_at: Timestamp::from_millis(row.try_get("created_at_ms")?),
        created_by: by
            .parse()
            .map_err(|e| StorageError::Corrupt(format!("webhook created_by: {e}")))?,
    })
}

fn u32_of(row: &AnyRow, col: &str) -> Result<u32, StorageError> {
    let v: i64 = row.try_get(col)?;
    u32::try_from(v).map_err(|e| StorageError::Corrupt(format!("{col}: {e}")))
}

impl WriteTx {
    pub async fn insert_webhook(&mut self, w: &WebhookRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO webhooks (id, url, events, secret_sealed, active, created_at_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&w.id)
        .bind(&w.url)
        .bind(w.events.join(","))
        .bind(w.secret_sealed.clone())
        .bind(i64::from(w.active))
        .bind(w.created_at.as_millis())
        .bind(w.created_by.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "webhook"))?;
        Ok(())
    }

    pub async fn deactivate_webhook(&mut self, id: &str) -> Result<(), StorageError> {
        let done = sqlx::query("UPDATE webhooks SET active = 0 WHERE id = $1 AND active = 1")
            .bind(id)
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::NotFound {
                what: "active webhook",
            });
        }
        Ok(())
    }

    /// Puts an event in the outbox, with one pending delivery for every
    /// active subscription to its type, in this transaction.
    pub async fn enqueue_event(
        &mut self,
        id: &str,
        event_type: &str,
        payload: &str,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO webhook_events (id, event_type, payload, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(id)
        .bind(event_type)
        .bind(payload)
        .bind(now.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "webhook event"))?;
        // One statement for every subscription: `events` is a comma-joined
        // list, so a subscription to the type (or to `*`) holds `,type,`
        // (or `,*,`) within `,events,`. A type with a comma in it is no
        // element of any list, as splitting the list would find.
        let find = match self.backend() {
            Backend::Sqlite => "instr",
            Backend::Postgres => "strpos",
        };
        let typed = if event_type.contains(',') {
            String::new()
        } else {
            format!(" OR {find}(',' || events || ',', ',' || $3 || ',') > 0")
        };
        let query = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO webhook_deliveries \
             (id, webhook_id, event_id, state, attempts, next_attempt_ms, leased_until_ms) \
             SELECT id || ':' || $1, id, $1, 'pending', 0, $2, 0 FROM webhooks \
             WHERE active = 1 AND ({find}(',' || events || ',', ',*,') > 0{typed})"
        )))
        .bind(id)
        .bind(now.as_millis());
        let query = if typed.is_empty() {
            query
        } else {
            query.bind(event_type)
        };
        query.execute(&mut *self.tx).await?;
        Ok(())
    }

    /// Sends a delivery again from the start of its schedule.
    pub async fn reset_delivery(&mut self, id: &str, now: Timestamp) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_ms = $1, \
             leased_until_ms = 0, claimed_by = NULL, delivered_at_ms = NULL WHERE id = $2",
        )
        .bind(now.as_millis())
        .bind(id)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::NotFound {
                what: "webhook delivery",
            });
        }
        Ok(())
    }
}

impl Store {
    pub async fn webhook(&self, id: &str) -> Result<WebhookRow, StorageError> {
        let row = sqlx::query(
            "SELECT id, url, events, secret_sealed, active, created_at_ms, created_by FROM webhooks WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound { what: "webhook" })?;
        webhook_from_row(&row)
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, url, events, secret_sealed, active, created_at_ms, created_by FROM webhooks ORDER BY created_at_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(webhook_from_row).collect()
    }

    /// Claims up to `limit` due deliveries for `lease_ms` under `claimer`
    /// (a server's instance id; no other worker takes them meanwhile;
    /// PostgreSQL skips rows other workers hold).
    pub async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_ms: i64,
        limit: i64,
        claimer: &str,
    ) -> Result<Vec<DueDelivery>, StorageError> {
        let _turn = self.write_turn().await?;
        let mut tx = match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        };
        let lock = match self.backend {
            Backend::Sqlite => "",
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        };
        let ids: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT id FROM webhook_deliveries WHERE state = 'pending' AND next_attempt_ms <= $1 \
             AND leased_until_ms <= $1 ORDER BY next_attempt_ms, id LIMIT $2{lock}"
        )))
        .bind(now.as_millis())
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            sqlx::query(
                "UPDATE webhook_deliveries SET leased_until_ms = $1, claimed_by = $3 WHERE id = $2",
            )
            .bind(now.as_millis() + lease_ms)
            .bind(&id)
            .bind(claimer)
            .execute(&mut *tx)
            .await?;
            let row = sqlx::query(
                "SELECT d.id, d.webhook_id, d.attempts, w.url, w.secret_sealed, e.id AS event_id, \
                 e.event_type, e.payload, e.created_at_ms \
                 FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id \
                 JOIN webhook_events e ON e.id = d.event_id WHERE d.id = $1",
            )
            .bind(&id)
            .fetch_one(&mut *tx)
            .await?;
            out.push(DueDelivery {
                id: row.try_get("id")?,
                webhook_id: row.try_get("webhook_id")?,
                url: row.try_get("url")?,
                secret_sealed: row.try_get("secret_sealed")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                payload: row.try_get("payload")?,
                event_time: Timestamp::from_millis(row.try_get("created_at_ms")?),
                attempts: u32_of(&row, "attempts")?,
                lease: now.as_millis() + lease_ms,
            });
        }
        tx.commit().await?;
        Ok(out)
    }

    /// Takes back the leases `claimer` (this server's instance id) held in
    /// its previous run: those deliveries are due again at once. How many.
    pub async fn reclaim_deliveries(&self, claimer: &str) -> Result<u64, StorageError> {
        let _turn = self.write_turn().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET leased_until_ms = 0, claimed_by = NULL \
             WHERE state = 'pending' AND claimed_by = $1",
        )
        .bind(claimer)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Records a delivery, if this claim still holds its lease. Returns
    /// whether it did (a lapsed lease means another worker took it over).
    pub async fn delivery_succeeded(
        &self,
        id: &str,
        lease: i64,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let _turn = self.write_turn().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, \
             delivered_at_ms = $1, leased_until_ms = 0, claimed_by = NULL, last_error = NULL \
             WHERE id = $2 AND leased_until_ms = $3",
        )
        .bind(now.as_millis())
        .bind(id)
        .bind(lease)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records a failed attempt: retried at `next`, or failed for good.
    pub async fn delivery_failed(
        &self,
        id: &str,
        lease: i64,
        error: &str,
        next: Option<Timestamp>,
    ) -> Result<bool, StorageError> {
        let (state, next_ms) = match next {
            Some(t) => ("pending", t.as_millis()),
            None => ("failed", 0),
        };
        let _turn = self.write_turn().await?;
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET state = $1, attempts = attempts + 1, next_attempt_ms = $2, \
             leased_until_ms = 0, claimed_by = NULL, last_error = $3 WHERE id = $4 AND leased_until_ms = $5",
        )
        .bind(state)
        .bind(next_ms)
        .bind(error)
        .bind(id)
        .bind(lease)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn deliveries(&self, webhook_id: &str) -> Result<Vec<DeliveryRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT d.id, d.webhook_id, d.event_id, e.event_type, d.state, d.attempts, d.next_attempt_ms, \
             d.last_error, d.delivered_at_ms FROM webhook_deliveries d \
             JOIN webhook_events e ON e.id = d.event_id WHERE d.webhook_id = $1 ORDER BY e.created_at_ms, d.id",
        )
        .bind(webhook_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let delivered: Option<i64> = r.try_get("delivered_at_ms")?;
                Ok(DeliveryRow {
                    id: r.try_get("id")?,
                    webhook_id: r.try_get("webhook_id")?,
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    state: r.try_get("state")?,
                    attempts: u32_of(r, "attempts")?,
                    next_attempt: Timestamp::from_millis(r.try_get("next_attempt_ms")?),
                    last_error: r.try_get("last_error")?,
                    delivered_at: delivered.map(Timestamp::from_millis),
                })
            })
            .collect()
    }
}
