//! System endpoints: health, status. Open without authentication, so they
//! say nothing that would help an attacker beyond version and readiness.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::Serialize;
use service::Service;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(status))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the server answers 200.
    status: &'static str,
}

/// Liveness and readiness: 200 when the server runs and its database answers.
#[utoipa::path(
    get,
    path = "/v1/health",
    tag = "system",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Database unavailable (code `database_unavailable`)", body = ErrorBody),
    )
)]
async fn health(State(svc): State<Service>) -> Result<Json<Health>, ApiError> {
    svc.store().ping().await.map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is not reachable",
        )
    })?;
    Ok(Json(Health { status: "ok" }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DatabaseStatus {
    /// `sqlite` or `postgres`.
    backend: &'static str,
    reachable: bool,
    /// Applied schema version, if the schema is the one this build expects.
    schema_version: Option<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatusResponse {
    version: &'static str,
    database: DatabaseStatus,
    /// `uninitialized` until a keystore exists; then `sealed` or `unsealed`.
    seal: &'static str,
    /// Number of records in the audit log.
    audit_records: Option<u64>,
    /// Configured EVM networks and how many of their node endpoints answer
    /// (the endpoints themselves are not named here: this route is open).
    ethereum: Vec<EthStatus>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EthStatus {
    chain_id: u64,
    endpoints: usize,
    healthy: usize,
}

/// Version, database and seal state.
#[utoipa::path(
    get,
    path = "/v1/status",
    tag = "system",
    responses((status = 200, description = "Server status", body = StatusResponse))
)]
async fn status(State(svc): State<Service>) -> Json<StatusResponse> {
    let s = svc.status().await;
    Json(StatusResponse {
        version: s.version,
        database: DatabaseStatus {
            backend: s.database.backend,
            reachable: s.database.reachable,
            schema_version: s.database.schema_version,
        },
        seal: crate::sys::seal_state_name(s.seal),
        audit_records: s.audit_records,
        ethereum: s
            .ethereum
            .into_iter()
            .map(|e| EthStatus {
                chain_id: e.chain_id,
                endpoints: e.endpoints,
                healthy: e.healthy,
            })
            .collect(),
    })
}
