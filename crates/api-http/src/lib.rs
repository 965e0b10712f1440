//! The HTTP API: an axum router over [`service::Service`].
//!
//! The only crate that knows HTTP. Handlers convert wire types (DTOs) to
//! domain calls by hand; every error leaves as JSON
//! `{"code": "...", "message": "..."}` with a stable machine-readable code,
//! and never with internal detail.
//!
//! ## What is where
//!
//! `error` (`ApiError` with stable codes, the mapping of service errors, `scoped` for
//! outside-your-scope `404`s, the middleware that turns every non-JSON error into one);
//! `auth` (one layer that rate-limits by address, buffers the body with size and JSON depth
//! limits, verifies the API-key signature or the session cookie and CSRF, rate-limits by
//! principal, and hands handlers an `Authed` principal); then one file per thing served, each
//! handler opening with the capability it needs: `access` (sign-in, TOTP, users, grants, API
//! keys, the audit log, reconciliation runs), `wallets` (wallets and their list, accounts,
//! deposit addresses, balances, deposits, reading sends), `ledger` (movements, balance history,
//! statements in JSON or CSV), `transfers` (requests with `Idempotency-Key`, dry-run, reading, votes,
//! cancel, and the operators' retry, replace and stuck view), `governance` (the policy,
//! proposals and votes, freezes, the address book), `webhooks`, `system` (health, status, the
//! seal endpoints `/v1/sys/*` and the gate that answers `503 sealed` while the keystore is not
//! open). utoipa generates the OpenAPI document from the handlers, and `contract` completes
//! it with the authentication schemes and the error answers every route shares (validated,
//! and exercised by Schemathesis, in `scripts/test`); `tests/rbac.snapshot` is every endpoint
//! against every role.

mod access;
mod amounts;
mod auth;
mod client_addr;
mod cold;
mod contract;
mod error;
mod governance;
mod ledger;
mod metrics;
mod paging;
mod system;
mod transfers;
mod ui;
mod wallets;
mod webhooks;

use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use service::Service;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

pub use auth::{
    CSRF_HEADER, IDEMPOTENCY_HEADER, KEY_HEADER, MAX_JSON_DEPTH, NONCE_HEADER, Rate,
    SESSION_COOKIE, SIGNATURE_HEADER, TIMESTAMP_HEADER,
};
pub use client_addr::{Cidr, CidrError, client_ip};
pub use error::{ApiError, ErrorBody};
pub use metrics::{HttpMetrics, REQUEST_ID, metrics_router};

/// Limits applied to every request.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub request_timeout: Duration,
    /// Token bucket per client address (IPv6 by /64), before authentication.
    pub per_address: Rate,
    /// Token bucket per verified principal.
    pub per_principal: Rate,
    /// Freeze and seal requests, per address and credential: a budget of
    /// their own, so an emergency is never rate limited out.
    pub emergency: Rate,
    /// Unseal attempts per address per minute.
    pub unseal_per_minute: u32,
    /// Proxies whose `X-Forwarded-For` names the client (none by default:
    /// the connection's peer is the client).
    pub trusted_proxies: std::sync::Arc<[Cidr]>,
    /// Requests answered at once; more are refused at once with 503 and
    /// `Retry-After` (never queued without bound).
    pub max_in_flight: usize,
}

impl Limits {
    /// Body and time limits with the default rates: 50 requests/s (bursts
    /// of 100) per address, 20/s (bursts of 40) per principal.
    pub fn new(max_body_bytes: usize, request_timeout: Duration) -> Self {
        Limits {
            max_body_bytes,
            request_timeout,
            per_address: Rate {
                per_second: 50,
                burst: 100,
            },
            per_principal: Rate {
                per_second: 20,
                burst: 40,
            },
            emergency: Rate {
                per_second: 10,
                burst: 30,
            },
            unseal_per_minute: 30,
            trusted_proxies: std::sync::Arc::from(Vec::new()),
            max_in_flight: 1024,
        }
    }
}

#[derive(OpenApi)]
#[openapi(info(
    title = "Strongroom",
    description = "Self-hosted custody server for digital assets.",
    license(name = "Apache-2.0")
))]
struct ApiDoc;

fn api() -> OpenApiRouter<Service> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(system::routes())
        .merge(transfers::routes())
        .merge(cold::routes())
        .merge(wallets::routes())
        .merge(ledger::routes())
        .merge(access::routes())
        .merge(governance::routes())
        .merge(webhooks::routes())
}

/// The OpenAPI document: generated from the handlers, completed with the
/// authentication schemes and the error answers every route shares
/// (`contract`).
pub fn openapi() -> serde_json::Value {
    let (_, doc) = api().split_for_parts();
    completed(&doc)
}

fn completed(doc: &utoipa::openapi::OpenApi) -> serde_json::Value {
    let mut v = serde_json::to_value(doc).unwrap_or_else(|_| serde_json::json!({}));
    contract::complete(&mut v);
    v
}

/// The whole HTTP application.
pub fn router(service: Service, limits: Limits) -> Router {
    let metrics = HttpMetrics::new(limits.max_in_flight);
    router_with_metrics(service, limits, &metrics)
}

/// The per-principal and per-address rate limits of a running router,
/// changed in place (a configuration reload): every request after the
/// change is counted at the new rate.
#[derive(Debug, Clone)]
pub struct RateLimits(std::sync::Arc<auth::Limiters>);

impl RateLimits {
    pub fn set(&self, per_principal: Rate, per_address: Rate) {
        self.0.set_rates(per_principal, per_address);
    }
}

/// [`router`], counting into `metrics` (served by [`metrics_router`]).
pub fn router_with_metrics(service: Service, limits: Limits, metrics: &HttpMetrics) -> Router {
    router_with_rates(service, limits, metrics).0
}

/// [`router_with_metrics`], and the handle that changes its rate limits.
pub fn router_with_rates(
    service: Service,
    limits: Limits,
    metrics: &HttpMetrics,
) -> (Router, RateLimits) {
    let limiters = std::sync::Arc::new(auth::Limiters::new(&limits));
    let rates = RateLimits(limiters.clone());
    let (routes, doc) = api().split_for_parts();
    let doc = std::sync::Arc::new(completed(&doc));
    let app = routes
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(ui::routes())
        .fallback(error::no_route)
        .layer(axum::middleware::from_fn_with_state(
            service.clone(),
            system::sealed_gate,
        ))
        // Outside the gate: a sealed server still knows who is asking (to
        // let an officer seal it), but reads nothing else.
        .layer(axum::middleware::from_fn_with_state(
            auth::AuthState {
                svc: service.clone(),
                limits: limiters,
                max_body: limits.max_body_bytes,
            },
            auth::authenticate,
        ))
        .with_state(service)
        .layer(DefaultBodyLimit::max(limits.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        // Outside the limits, so that their refusals are JSON too.
        .layer(axum::middleware::map_response(error::json_errors))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &axum::http::Request<_>| {
                    let id = req
                        .extensions()
                        .get::<metrics::RequestId>()
                        .map_or("", |r| &*r.0);
                    tracing::info_span!(
                        "request",
                        method = %req.method(),
                        uri = %req.uri().path(),
                        request_id = %id,
                    )
                })
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO))
                .on_failure(on_failure),
        )
        .layer(axum::middleware::from_fn(metrics::request_id))
        .layer(axum::middleware::from_fn_with_state(
            metrics.clone(),
            metrics::track,
        ));
    (app, rates)
}

/// A 503 is the server saying what it cannot do yet (sealed, its database
/// or a node unreachable): expected, and logged at info; any other server
/// error is a fault, logged at error.
fn on_failure(
    class: tower_http::classify::ServerErrorsFailureClass,
    latency: std::time::Duration,
    _span: &tracing::Span,
) {
    use tower_http::classify::ServerErrorsFailureClass as Class;
    match class {
        Class::StatusCode(StatusCode::SERVICE_UNAVAILABLE) => {
            tracing::info!(?latency, "answered 503: unavailable for now");
        }
        other => tracing::error!(classification = %other, ?latency, "response failed"),
    }
}
