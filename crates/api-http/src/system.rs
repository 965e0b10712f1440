//! System endpoints: health and status (open without authentication, so
//! they say nothing that would help an attacker beyond version and
//! readiness), and the keystore's seal: status, unseal one share at a
//! time, reset, seal. Unsealing is open, like the unseal API of any vault:
//! a share is itself the credential. Sealing takes one authorised person (a
//! security officer or an admin): it stops every signature at once, and is
//! audited.

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

use crate::auth::MaybeAuthed;
use crate::error::{ApiError, ErrorBody};

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(status))
        .routes(routes!(seal_status))
        .routes(routes!(unseal))
        .routes(routes!(unseal_reset))
        .routes(routes!(seal))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers 200.
    status: &'static str,
}

/// Liveness: 200 while the process answers. It touches nothing else (a
/// database outage or a sealed keystore is readiness's matter, not a
/// reason to restart the process).
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "system",
    responses((status = 200, description = "The process answers", body = Health))
)]
async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    /// Every check holds: send traffic.
    ready: bool,
    /// Each check by name (`unsealed`, `database`, `schema`, `disk`,
    /// `checkpoints`, `ethereum:<chain id>`, `bitcoin:<network>`): whether
    /// it holds.
    #[schema(value_type = Object)]
    checks: std::collections::BTreeMap<String, bool>,
}

/// Readiness: 200 when the keystore is unsealed, the database answers
/// (within a second) with the schema this build expects, each configured
/// EVM network has an endpoint that answers, the disk is above its floor
/// and audit checkpoints are being written; 503 naming the checks that
/// fail.
#[utoipa::path(
    get,
    path = "/v1/ready",
    tag = "system",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "Not ready: the checks say which", body = Readiness),
    )
)]
async fn ready(State(svc): State<Service>) -> Response {
    let mut checks = std::collections::BTreeMap::new();
    let status = tokio::time::timeout(std::time::Duration::from_secs(1), svc.status()).await;
    match status {
        Ok(st) => {
            checks.insert("unsealed".to_owned(), st.seal == SealStatus::Unsealed);
            checks.insert("database".to_owned(), st.database.reachable);
            // Some only when it is exactly the schema this build expects.
            checks.insert("schema".to_owned(), st.database.schema_version.is_some());
            for e in &st.ethereum {
                checks.insert(format!("ethereum:{}", e.chain_id), e.healthy > 0);
            }
            for b in &st.bitcoin {
                checks.insert(b.network.clone(), b.healthy > 0);
            }
            // Written, and not left behind by the log.
            checks.insert(
                "checkpoints".to_owned(),
                svc.checkpointer().health().failing.is_none()
                    && !svc
                        .checkpointer()
                        .stale(st.audit_records.unwrap_or(0), svc.now()),
            );
        }
        Err(_) => {
            checks.insert("database".to_owned(), false);
            checks.insert(
                "checkpoints".to_owned(),
                svc.checkpointer().health().failing.is_none(),
            );
        }
    }
    checks.insert(
        "disk".to_owned(),
        svc.disk_space().iter().all(service::disk::DiskSpace::ok),
    );
    let ready = checks.values().all(|ok| *ok);
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(Readiness { ready, checks })).into_response()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseStatus {
    reachable: bool,
    /// `sqlite` or `postgres` (principals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<&'static str>,
    /// Applied schema version, if the schema is the one this build expects
    /// (principals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    schema_version: Option<i64>,
}

/// Anonymous callers see liveness only (whether the database answers and
/// the seal state); signed-in principals with a global role also see the
/// version, the database and the networks; those who may read the audit
/// log, its length.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    /// `uninitialized` until a keystore exists; then `sealed` or `unsealed`.
    seal: &'static str,
    database: DatabaseStatus,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    /// Number of records in the audit log.
    #[serde(skip_serializing_if = "Option::is_none")]
    audit_records: Option<u64>,
    /// Configured EVM networks and how many of their node endpoints answer
    /// (the endpoints themselves are not named).
    #[serde(skip_serializing_if = "Option::is_none")]
    ethereum: Option<Vec<EthStatus>>,
    /// Configured Bitcoin networks with nodes, and how many answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    bitcoin: Option<Vec<BtcStatus>>,
    /// The commit the binary was built from (principals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    git_commit: Option<&'static str>,
    /// Everything else the server depends on, each with its state
    /// (principals only).
    #[serde(skip_serializing_if = "Option::is_none")]
    dependencies: Option<Dependencies>,
}

/// The server's dependencies beyond its database and EVM endpoints.
#[derive(Debug, Serialize, ToSchema)]
pub struct Dependencies {
    /// Audit checkpoints: the record the last one signed, when it was
    /// written, and since when writes fail (with why), if they do.
    checkpoints: CheckpointStatus,
    /// Free space where the server writes, against the floor.
    disk: Vec<DiskStatus>,
    /// The signer protocol this server speaks.
    signer_protocol: u16,
    /// Threshold signer nodes: whether each answered its last call
    /// (`null`: not called yet), and the protocol it spoke.
    signer_nodes: Vec<NodeStatus>,
    /// The HSM's session pool, if an HSM is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    hsm: Option<HsmStatus>,
    /// The transfer queue and the webhook outbox (absent when the database
    /// did not answer within a second).
    #[serde(skip_serializing_if = "Option::is_none")]
    work: Option<WorkStatus>,
}

/// The queue and the webhook outbox.
#[derive(Debug, Serialize, ToSchema)]
pub struct WorkStatus {
    /// Transfers queued for the chain.
    queued: u64,
    /// Transfers the stuck view shows (held, retried, or quiet too long).
    stuck: u64,
    /// Webhook deliveries not yet made; of them, those that failed at
    /// least once; and those given up.
    webhooks_pending: u64,
    webhooks_retrying: u64,
    webhooks_failed: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CheckpointStatus {
    seq: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    written_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    failing_since: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    /// Signing is stopped because checkpoint writes have failed too long.
    signing_stopped: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiskStatus {
    path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    free_bytes: Option<u64>,
    floor_bytes: u64,
    ok: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct NodeStatus {
    node: u16,
    reachable: Option<bool>,
    /// The signer protocol it spoke at its last hello (`null`: none yet);
    /// this server speaks `signer_protocol`.
    protocol: Option<u16>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HsmStatus {
    sessions: usize,
    idle: usize,
}

async fn dependencies(svc: &Service) -> Dependencies {
    let work = svc
        .work_status(std::time::Duration::from_secs(1))
        .await
        .map(|w| WorkStatus {
            queued: w.queued,
            stuck: w.stuck,
            webhooks_pending: w.webhooks_pending,
            webhooks_retrying: w.webhooks_retrying,
            webhooks_failed: w.webhooks_failed,
        });
    let h = svc.checkpointer().health();
    let now = svc.now();
    Dependencies {
        checkpoints: CheckpointStatus {
            seq: h.seq,
            written_at: h.written_at.map(|t| t.to_rfc3339()),
            failing_since: h.failing.as_ref().map(|(t, _)| t.to_rfc3339()),
            error: h.failing.map(|(_, e)| e),
            signing_stopped: svc.checkpointer().signing_stopped(now).is_some(),
        },
        disk: svc
            .disk_space()
            .into_iter()
            .map(|d| DiskStatus {
                ok: d.ok(),
                path: d.path.display().to_string(),
                free_bytes: d.free_bytes,
                floor_bytes: d.floor_bytes,
            })
            .collect(),
        signer_protocol: service::keys_mpc::wire::PROTOCOL,
        signer_nodes: svc
            .threshold()
            .map(|t| {
                let c = t.cluster();
                let protocols: std::collections::BTreeMap<u16, Option<u16>> =
                    c.protocols().into_iter().collect();
                c.reachability()
                    .into_iter()
                    .map(|(node, reachable)| NodeStatus {
                        node,
                        reachable,
                        protocol: protocols.get(&node).copied().flatten(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        hsm: svc
            .hsm_sessions()
            .map(|(sessions, idle)| HsmStatus { sessions, idle }),
        work,
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BtcStatus {
    /// `bitcoin:mainnet`, …
    network: String,
    endpoints: usize,
    healthy: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EthStatus {
    chain_id: u64,
    endpoints: usize,
    healthy: usize,
}

/// Liveness for anyone; version, database and networks for principals.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "system",
    responses((status = 200, description = "Server status", body = StatusResponse))
)]
async fn status(State(svc): State<Service>, MaybeAuthed(who): MaybeAuthed) -> Json<StatusResponse> {
    let sees = |p: domain::Permission| {
        who.as_ref()
            .is_some_and(|w| domain::permits(w.grants(), p, None))
    };
    if !sees(domain::Permission::ReadStatus) {
        let l = svc.liveness().await;
        return Json(StatusResponse {
            seal: seal_state_name(l.seal),
            database: DatabaseStatus {
                reachable: l.reachable,
                backend: None,
                schema_version: None,
            },
            version: None,
            audit_records: None,
            ethereum: None,
            bitcoin: None,
            git_commit: None,
            dependencies: None,
        });
    }
    let s = svc.status().await;
    Json(StatusResponse {
        seal: seal_state_name(s.seal),
        database: DatabaseStatus {
            reachable: s.database.reachable,
            backend: Some(s.database.backend),
            schema_version: s.database.schema_version,
        },
        version: Some(s.version),
        audit_records: s
            .audit_records
            .filter(|_| sees(domain::Permission::ReadAudit)),
        ethereum: Some(
            s.ethereum
                .into_iter()
                .map(|e| EthStatus {
                    chain_id: e.chain_id,
                    endpoints: e.endpoints,
                    healthy: e.healthy,
                })
                .collect(),
        ),
        bitcoin: Some(
            s.bitcoin
                .into_iter()
                .map(|b| BtcStatus {
                    network: b.network,
                    endpoints: b.endpoints,
                    healthy: b.healthy,
                })
                .collect(),
        ),
        git_commit: Some(s.git_commit),
        dependencies: Some(dependencies(&svc).await),
    })
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
    /// Only in the answer to a round's first share: with it in
    /// `X-Strongroom-Unseal-Token`, its holder may start the round over.
    #[serde(skip_serializing_if = "Option::is_none")]
    reset_token: Option<String>,
}

/// The header the first share's holder resets the unseal with.
pub const UNSEAL_TOKEN_HEADER: &str = "x-strongroom-unseal-token";

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
            reset_token: None,
        }
    }
}

fn service_error(e: ServiceError) -> ApiError {
    use StatusCode as S;
    match e {
        ServiceError::Share(ShareError::Format | ShareError::Checksum) => {
            ApiError::new(S::BAD_REQUEST, "invalid_share", e.to_string())
        }
        ServiceError::Share(ShareError::Foreign | ShareError::NotIssued) => {
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
        ServiceError::Auth(a) => crate::error::auth_error(&a),
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
    let (status, token) = svc
        .unseal_giving(&caller(), &share)
        .await
        .map_err(service_error)?;
    let mut resp = SealStatusResponse::from(status);
    resp.reset_token = token;
    Ok(Json(resp))
}

/// Discards the shares given so far: a security officer or admin, or the
/// holder who gave this round's first share (its `reset_token` in
/// `X-Strongroom-Unseal-Token`). Nobody else: a stranger cannot keep a
/// restarted server sealed.
#[utoipa::path(post, path = "/v1/sys/unseal/reset", tag = "sys",
    params(("X-Strongroom-Unseal-Token" = Option<String>, Header, description = "the `reset_token` of the round's first share")),
    responses(
        (status = 200, body = SealStatusResponse),
        (status = 401, description = "`unauthenticated`", body = ErrorBody),
        (status = 403, description = "`forbidden`", body = ErrorBody),
    ))]
async fn unseal_reset(
    State(svc): State<Service>,
    MaybeAuthed(who): MaybeAuthed,
    headers: axum::http::HeaderMap,
) -> Result<Json<SealStatusResponse>, ApiError> {
    let status = if let Some(who) = who {
        let can = svc
            .authorize::<service::identity::perm::SealKeystore>(&who, None)
            .map_err(|e| crate::error::auth_error(&e))?;
        can.unseal_reset().await.map_err(service_error)?
    } else if let Some(token) = headers
        .get(UNSEAL_TOKEN_HEADER)
        .and_then(|v| v.to_str().ok())
    {
        svc.unseal_reset_as_starter(token)
            .await
            .map_err(service_error)?
    } else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "resetting the unseal takes a security officer or admin, or the first share's reset token",
        ));
    };
    Ok(Json(status.into()))
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
    let open = matches!(
        path,
        "/v1/health" | "/v1/ready" | "/v1/status" | "/v1/openapi.json"
    ) || path.starts_with("/v1/sys/");
    if open {
        return next.run(req).await;
    }
    let console = path == "/ui" || path.starts_with("/ui/");
    match svc.seal_status().await {
        Ok(SealStatus::Unsealed) => next.run(req).await,
        // The console's stylesheet still loads; its pages say what to do.
        Ok(_) if path.starts_with("/ui/static/") => next.run(req).await,
        Ok(status) if console => crate::ui::sealed(&status),
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
