//! Webhook subscriptions, their deliveries and resends (admin).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use service::Service;
use service::identity::perm;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authed, can};
use crate::error::{ApiError, ErrorBody, plain_id, service_error};
use crate::paging::{PageQuery, page};

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(list_webhooks, create_webhook))
        .routes(routes!(deactivate_webhook))
        .routes(routes!(list_deliveries))
        .routes(routes!(resend_delivery))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWebhook {
    /// `http://host[:port]/path`.
    url: String,
    /// Event types (`transfer.state_changed`, `transfer.pending_approval`,
    /// `transfer.stuck`, `deposit`, `freeze`, `circuit_breaker`, `governance.forged_row`,
    /// `backup.failed`, `restore.reconciled`) or `*`.
    events: Vec<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookDto {
    id: String,
    url: String,
    events: Vec<String>,
    active: bool,
    /// Only in the answer that creates it: `whsec_…`, for verifying signatures.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
}

fn dto(w: service::storage::WebhookRow, secret: Option<String>) -> WebhookDto {
    WebhookDto {
        id: w.id,
        url: w.url,
        events: w.events,
        active: w.active,
        secret,
    }
}

/// Subscribes a URL to event types; the signing secret is shown once.
#[utoipa::path(post, path = "/v1/webhooks", tag = "webhooks", request_body = NewWebhook,
    responses((status = 201, body = WebhookDto), (status = 400, body = ErrorBody)))]
async fn create_webhook(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(req): Json<NewWebhook>,
) -> Result<(StatusCode, Json<WebhookDto>), ApiError> {
    let can = can::<perm::ManageWebhooks>(&svc, &who)?;
    let (w, secret) = can
        .create_webhook(&req.url, &req.events)
        .await
        .map_err(service_error)?;
    Ok((StatusCode::CREATED, Json(dto(w, Some(secret)))))
}

/// Webhook subscriptions, in creation order (paged by id).
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", params(PageQuery),
    responses((status = 200, body = [WebhookDto])))]
async fn list_webhooks(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<PageQuery>,
) -> Result<Json<Vec<WebhookDto>>, ApiError> {
    let can = can::<perm::ManageWebhooks>(&svc, &who)?;
    let list = can.webhooks().await.map_err(service_error)?;
    let list = list.into_iter().map(|w| dto(w, None)).collect();
    Ok(Json(page(list, |w: &WebhookDto| &w.id, &q)?))
}

/// Stops a subscription (its pending deliveries still finish).
#[utoipa::path(post, path = "/v1/webhooks/{id}/deactivate", tag = "webhooks",
    params(("id" = String, Path)), responses((status = 204, description = "Deactivated")))]
async fn deactivate_webhook(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let can = can::<perm::ManageWebhooks>(&svc, &who)?;
    plain_id(&id, "webhook")?;
    can.deactivate(&id).await.map_err(service_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryDto {
    id: String,
    /// The `webhook-id` receivers deduplicate by.
    event_id: String,
    event_type: String,
    /// `pending`, `delivered` or `failed`.
    state: String,
    attempts: u32,
    next_attempt_ms: i64,
    last_error: Option<String>,
}

/// A subscription's deliveries, in creation order (paged by id).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path), PageQuery), responses((status = 200, body = [DeliveryDto])))]
async fn list_deliveries(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Vec<DeliveryDto>>, ApiError> {
    let can = can::<perm::ManageWebhooks>(&svc, &who)?;
    plain_id(&id, "webhook")?;
    let list = can.deliveries(&id).await.map_err(service_error)?;
    let list = page(list, |d| &d.id, &q)?;
    Ok(Json(
        list.into_iter()
            .map(|d| DeliveryDto {
                id: d.id,
                event_id: d.event_id,
                event_type: d.event_type,
                state: d.state,
                attempts: d.attempts,
                next_attempt_ms: d.next_attempt.as_millis(),
                last_error: d.last_error,
            })
            .collect(),
    ))
}

/// Sends a delivery again, from the start of its retry schedule.
#[utoipa::path(post, path = "/v1/webhook-deliveries/{id}/resend", tag = "webhooks",
    params(("id" = String, Path)), responses((status = 204, description = "Queued")))]
async fn resend_delivery(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let can = can::<perm::ManageWebhooks>(&svc, &who)?;
    plain_id(&id, "delivery")?;
    can.resend(&id).await.map_err(service_error)?;
    Ok(StatusCode::NO_CONTENT)
}
