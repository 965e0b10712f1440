//! The keystore's seal: status, unseal one share at a time, reset, seal.
//! Unsealing is open, like the unseal API of any vault: a share is itself
//! the credential. Sealing takes one authorised person (a security officer
//! or an admin): it stops every signature at once, and is audited.

use axum::Json;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use domain::Actor;
use serde::{Deserialize, Serialize};
use service::keys::shamir::{ShareError, UnsealShare};
use service::{SealStatus, Service, ServiceError};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(seal_status))
        .routes(routes!(unseal))
        .routes(routes!(unseal_reset))
        .routes(routes!(seal))
}

/// Share holders are not users: unseal calls are recorded as anonymous.
fn caller() -> Actor {
    Actor::Anonymous
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SealStatusResponse {
    /// `uninitialized`, `sealed` or `unsealed`.
    state: &'static str,
    /// Shares given so far (while sealed).
    progress: u8,
    /// Shares needed (while sealed).
    threshold: u8,
}

pub(crate) fn seal_state_name(s: SealStatus) -> &'static str {
    match s {
        SealStatus::Uninitialized => "uninitialized",
        SealStatus::Sealed { .. } => "sealed",
        SealStatus::Unsealed => "unsealed",
    }
}

impl From<SealStatus> for SealStatusResponse {
    fn from(s: SealStatus) -> Self {
        let (progress, threshold) = match s {
            SealStatus::Sealed { have, need } => (have, need),
            _ => (0, 0),
        };
        SealStatusResponse {
            state: seal_state_name(s),
            progress,
            threshold,
        }
    }
}

fn service_error(e: ServiceError) -> ApiError {
    use StatusCode as S;
    match e {
        ServiceError::Share(ShareError::Format | ShareError::Checksum) => {
            ApiError::new(S::BAD_REQUEST, "invalid_share", e.to_string())
        }
        ServiceError::Share(ShareError::Foreign) => {
            ApiError::new(S::BAD_REQUEST, "foreign_share", e.to_string())
        }
        ServiceError::Share(ShareError::Duplicate(_)) => {
            ApiError::new(S::CONFLICT, "duplicate_share", e.to_string())
        }
        ServiceError::Share(_) | ServiceError::WrongShares => {
            ApiError::new(S::BAD_REQUEST, "unseal_failed", e.to_string())
        }
        ServiceError::NotInitialized => {
            ApiError::new(S::CONFLICT, "not_initialized", e.to_string())
        }
        ServiceError::Sealed => ApiError::new(S::CONFLICT, "sealed", e.to_string()),
        other => {
            tracing::error!(error = %other, "seal operation failed");
            ApiError::new(S::INTERNAL_SERVER_ERROR, "internal", "internal error")
        }
    }
}

/// Where the keystore stands.
#[utoipa::path(get, path = "/v1/sys/seal-status", tag = "sys",
    responses((status = 200, body = SealStatusResponse)))]
async fn seal_status(State(svc): State<Service>) -> Result<Json<SealStatusResponse>, ApiError> {
    Ok(Json(svc.seal_status().await.map_err(service_error)?.into()))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UnsealRequest {
    /// One unseal share, `srshare1-…`.
    share: String,
}

impl std::fmt::Debug for UnsealRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsealRequest(<redacted>)")
    }
}

impl Drop for UnsealRequest {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.share);
    }
}

/// Gives one unseal share. Progress is kept until the threshold is reached
/// or `reset` is called; a refused share changes nothing.
#[utoipa::path(post, path = "/v1/sys/unseal", tag = "sys", request_body = UnsealRequest,
    responses(
        (status = 200, body = SealStatusResponse),
        (status = 400, description = "`invalid_share`, `foreign_share` or `unseal_failed`", body = ErrorBody),
        (status = 409, description = "`duplicate_share` or `not_initialized`", body = ErrorBody),
    ))]
async fn unseal(
    State(svc): State<Service>,
    Json(req): Json<UnsealRequest>,
) -> Result<Json<SealStatusResponse>, ApiError> {
    let share = UnsealShare::from_text(&req.share);
    drop(req);
    Ok(Json(
        svc.unseal(&caller(), &share)
            .await
            .map_err(service_error)?
            .into(),
    ))
}

/// Discards the shares given so far.
#[utoipa::path(post, path = "/v1/sys/unseal/reset", tag = "sys",
    responses((status = 200, body = SealStatusResponse)))]
async fn unseal_reset(State(svc): State<Service>) -> Result<Json<SealStatusResponse>, ApiError> {
    Ok(Json(
        svc.unseal_reset(&caller())
            .await
            .map_err(service_error)?
            .into(),
    ))
}

/// Seals the keystore: key material leaves memory (security officer, admin).
#[utoipa::path(post, path = "/v1/sys/seal", tag = "sys",
    responses(
        (status = 204, description = "Sealed"),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
        (status = 409, description = "`sealed`: already sealed", body = ErrorBody),
    ))]
async fn seal(
    State(svc): State<Service>,
    crate::auth::Authed(who): crate::auth::Authed,
) -> Result<StatusCode, ApiError> {
    let can = svc
        .authorize::<service::identity::perm::SealKeystore>(&who, None)
        .map_err(|e| crate::error::auth_error(&e))?;
    can.seal().await.map_err(service_error)?;
    Ok(StatusCode::NO_CONTENT)
}

/// While the keystore is not unsealed, everything but health, status, the
/// OpenAPI document and the seal endpoints answers 503 `sealed`.
pub(crate) async fn sealed_gate(State(svc): State<Service>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = matches!(path, "/v1/health" | "/v1/status" | "/v1/openapi.json")
        || path.starts_with("/v1/sys/");
    if open {
        return next.run(req).await;
    }
    match svc.seal_status().await {
        Ok(SealStatus::Unsealed) => next.run(req).await,
        Ok(SealStatus::Uninitialized) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sealed",
            "no keystore has been initialised: run strongroom init",
        )
        .into_response(),
        Ok(SealStatus::Sealed { .. }) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sealed",
            "the keystore is sealed",
        )
        .into_response(),
        Err(e) => service_error(e).into_response(),
    }
}
