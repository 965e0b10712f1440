//! Webhooks: subscriptions per event type, events written to the outbox in
//! the transaction of their change, and a worker that delivers them signed
//! in the Standard Webhooks format (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256>`), retrying with backoff for
//! about a day. Receivers deduplicate by `webhook-id`: a delivery whose
//! success was not recorded (a crash, a lost answer) is sent again.

use domain::{Actor, Timestamp};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::Sha256;
use storage::{DeliveryRow, WebhookRow};

use crate::access::{Can, perm};
pub use crate::outbox::EVENT_TYPES;
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// The Standard Webhooks signature of one delivery.
pub fn signature(
    secret: &[u8],
    id: &str,
    timestamp_s: i64,
    body: &str,
) -> Result<String, ServiceError> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
        .map_err(|_| ServiceError::Invalid("webhook secret".into()))?;
    mac.update(format!("{id}.{timestamp_s}.{body}").as_bytes());
    Ok(format!(
        "v1,{}",
        data_encoding::BASE64.encode(&mac.finalize().into_bytes())
    ))
}

/// What one pass of the delivery worker did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryPass {
    pub delivered: usize,
    pub retrying: usize,
    pub failed: usize,
}

impl Can<'_, perm::ManageWebhooks> {
    /// Subscribes `url` to `events`. Returns the subscription and its
    /// signing secret (`whsec_…`), shown once.
    pub async fn create_webhook(
        &self,
        url: &str,
        events: &[String],
    ) -> Result<(WebhookRow, String), ServiceError> {
        crate::webhook_target::check_url(url, &self.svc.webhook_egress().0)
            .map_err(ServiceError::Invalid)?;
        if events.is_empty() {
            return Err(ServiceError::Invalid(
                "name at least one event type (or *)".into(),
            ));
        }
        for e in events {
            if e != "*" && !EVENT_TYPES.contains(&e.as_str()) {
                return Err(ServiceError::Invalid(format!(
                    "unknown event type {e:?}; known: {}",
                    EVENT_TYPES.join(", ")
                )));
            }
        }
        let mut secret = zeroize::Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut secret[..])
            .map_err(|_| ServiceError::Invalid("random number generator failed".into()))?;
        let id = format!("wh_{}", uuid::Uuid::now_v7().simple());
        let sealed = self
            .svc
            .seal_service_secret("webhook", &id, &secret[..])
            .await?;
        let now = self.svc.now();
        let row = WebhookRow {
            id: id.clone(),
            url: url.to_owned(),
            events: events.to_vec(),
            secret_sealed: sealed,
            active: true,
            created_at: now,
            created_by: self.actor().clone(),
        };
        let e = entry(
            self.actor(),
            "webhook.created",
            &format!("webhook:{id}"),
            json!({ "url": url, "events": events }),
        )?;
        let mut tx = self.svc.store().begin().await?;
        tx.insert_webhook(&row).await?;
        self.svc.commit(tx, &[e], now).await?;
        Ok((
            row,
            format!("whsec_{}", data_encoding::BASE64.encode(&secret[..])),
        ))
    }

    pub async fn webhooks(&self) -> Result<Vec<WebhookRow>, ServiceError> {
        Ok(self.svc.store().webhooks().await?)
    }

    pub async fn deactivate(&self, id: &str) -> Result<(), ServiceError> {
        let now = self.svc.now();
        let e = entry(
            self.actor(),
            "webhook.deactivated",
            &format!("webhook:{id}"),
            json!({}),
        )?;
        let mut tx = self.svc.store().begin().await?;
        tx.deactivate_webhook(id).await?;
        self.svc.commit(tx, &[e], now).await?;
        Ok(())
    }

    pub async fn deliveries(&self, webhook_id: &str) -> Result<Vec<DeliveryRow>, ServiceError> {
        self.svc.store().webhook(webhook_id).await?;
        Ok(self.svc.store().deliveries(webhook_id).await?)
    }

    /// Sends a delivery again, from the start of the retry schedule.
    pub async fn resend(&self, delivery_id: &str) -> Result<(), ServiceError> {
        let now = self.svc.now();
        let e = entry(
            self.actor(),
            "webhook.delivery.resent",
            &format!("webhook-delivery:{delivery_id}"),
            json!({}),
        )?;
        let mut tx = self.svc.store().begin().await?;
        tx.reset_delivery(delivery_id, now).await?;
        self.svc.commit(tx, &[e], now).await?;
        Ok(())
    }
}

impl Service {
    /// One pass of the delivery worker: claims due deliveries (leased, so
    /// that several servers share the work), signs and posts each.
    pub async fn deliver_webhooks(&self) -> Result<DeliveryPass, ServiceError> {
        // Secrets open only while unsealed: claim nothing before that.
        if self.seal_status().await? != crate::SealStatus::Unsealed {
            return Err(ServiceError::Sealed);
        }
        let now = self.now();
        // A lease longer than the worst case of the batch (20 × 10 s timeouts).
        let due = self
            .store()
            .claim_deliveries(now, 300_000, 20, self.instance())
            .await?;
        let egress = self.webhook_egress();
        let mut pass = DeliveryPass::default();
        for d in due {
            // One subscription whose secret does not open fails alone.
            let sent = match self
                .open_service_secret("webhook", &d.webhook_id, &d.secret_sealed)
                .await
            {
                Ok(secret) => {
                    let ts = now.as_millis() / 1000;
                    match signature(&secret, &d.event_id, ts, &d.payload) {
                        // Checked again at every delivery (the policy may
                        // have changed; a name is checked as it resolves).
                        Ok(sig) => match crate::webhook_target::check_url(&d.url, &egress.0) {
                            Err(_) => Some("target not allowed".to_owned()),
                            Ok(_) => {
                                let outcome = egress
                                    .1
                                    .post(&d.url)
                                    .header("content-type", "application/json")
                                    .header("webhook-id", &d.event_id)
                                    .header("webhook-timestamp", ts.to_string())
                                    .header("webhook-signature", sig)
                                    .body(d.payload.clone())
                                    .send()
                                    .await;
                                match outcome {
                                    Ok(r) if r.status().is_success() => None,
                                    Ok(r) => Some(format!("HTTP {}", r.status().as_u16())),
                                    Err(e) => {
                                        let class = crate::webhook_target::failure_class(&e);
                                        // The URL may carry a receiver's token: not logged.
                                        let e = e.without_url();
                                        tracing::debug!(webhook = %d.webhook_id, error = %e, "delivery failed");
                                        Some(class.to_owned())
                                    }
                                }
                            }
                        },
                        Err(e) => {
                            tracing::error!(webhook = %d.webhook_id, error = %e, "signing a delivery failed");
                            Some("internal error".to_owned())
                        }
                    }
                }
                Err(ServiceError::Sealed) => return Err(ServiceError::Sealed),
                Err(e) => {
                    tracing::error!(webhook = %d.webhook_id, error = %e, "the subscription's secret does not open");
                    Some("internal error".to_owned())
                }
            };
            let now = self.now();
            self.metrics().delivered(sent.is_none());
            match sent {
                None => {
                    // Delivered, not yet recorded: sent again after a crash.
                    crate::crash::point("after_webhook_post");
                    if self.store().delivery_succeeded(&d.id, d.lease, now).await? {
                        pass.delivered += 1;
                    }
                }
                Some(err) => {
                    let attempt = usize::try_from(d.attempts).unwrap_or(usize::MAX);
                    match egress.0.retry_delay_s(attempt) {
                        Some(delay) => {
                            let delay_ms =
                                i64::try_from(delay.saturating_mul(1000)).unwrap_or(i64::MAX / 4);
                            let next =
                                Timestamp::from_millis(now.as_millis().saturating_add(delay_ms));
                            if self
                                .store()
                                .delivery_failed(&d.id, d.lease, &err, Some(next))
                                .await?
                            {
                                pass.retrying += 1;
                            }
                        }
                        None => {
                            if self
                                .store()
                                .delivery_failed(&d.id, d.lease, &err, None)
                                .await?
                            {
                                let e = entry(
                                    &Actor::System,
                                    "webhook.delivery.failed",
                                    &format!("webhook-delivery:{}", d.id),
                                    json!({ "event": d.event_id, "type": d.event_type, "error": err }),
                                )?;
                                self.store().append_audit(&[e], now).await?;
                                pass.failed += 1;
                            }
                        }
                    }
                }
            }
        }
        Ok(pass)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn standard_webhooks_signature() {
        let secret = data_encoding::BASE64
            .decode(b"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap_or_default();
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body)
                .unwrap_or_default(),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }
}
