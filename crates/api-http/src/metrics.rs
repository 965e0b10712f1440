//! Prometheus: `/metrics` on its own listener (by default), and what HTTP
//! adds to it — requests by route, method and status, their latency, those
//! in flight, and those shed when too many are.
//!
//! The route label is the matched route's template (`/v1/transfers/{id}`),
//! never the path asked for: ids stay out of labels, and a scan of unknown
//! paths is one series (`unmatched`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use service::Service;

use crate::error::ApiError;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: String,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    method: String,
    route: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms to about 65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

/// The HTTP side's metrics and its bound on requests in flight.
#[derive(Clone, Debug)]
pub struct HttpMetrics {
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram, fn() -> Histogram>,
    in_flight: Gauge,
    shed: Counter,
    /// Requests allowed in flight at once; past it, 503 with Retry-After.
    permits: Arc<tokio::sync::Semaphore>,
    max_in_flight: usize,
}

impl HttpMetrics {
    pub fn new(max_in_flight: usize) -> HttpMetrics {
        let max_in_flight = max_in_flight.max(1);
        HttpMetrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            shed: Counter::default(),
            permits: Arc::new(tokio::sync::Semaphore::new(max_in_flight)),
            max_in_flight,
        }
    }

    fn register(&self, r: &mut prometheus_client::registry::Registry) {
        r.register(
            "http_requests",
            "HTTP requests answered, by method, route and status",
            self.requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Time to answer an HTTP request, by method and route",
            self.latency.clone(),
        );
        r.register(
            "http_requests_in_flight",
            "HTTP requests being answered",
            self.in_flight.clone(),
        );
        let max = Gauge::<i64>::default();
        max.set(i64::try_from(self.max_in_flight).unwrap_or(i64::MAX));
        r.register(
            "http_requests_in_flight_max",
            "HTTP requests allowed in flight at once",
            max,
        );
        r.register(
            "http_requests_shed",
            "HTTP requests refused with 503 because too many were in flight",
            self.shed.clone(),
        );
    }
}

/// Counts and times every request; sheds one that would exceed the bound
/// on requests in flight (liveness is never shed: a busy server is alive).
pub(crate) async fn track(State(m): State<HttpMetrics>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    // The standard methods by name; anything else is one series.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m,
        _ => "other",
    }
    .to_owned();
    let permit = if route == "/v1/health" {
        None
    } else {
        match m.permits.clone().try_acquire_owned() {
            Ok(p) => Some(p),
            Err(_) => {
                m.shed.inc();
                return overloaded(m.max_in_flight);
            }
        }
    };
    // Counted down when the request ends, answered or abandoned.
    let flight = InFlight::new(&m.in_flight);
    let started = Instant::now();
    let response = next.run(req).await;
    drop(flight);
    drop(permit);
    m.latency
        .get_or_create(&RouteLabels {
            method: method.clone(),
            route: route.clone(),
        })
        .observe(started.elapsed().as_secs_f64());
    m.requests
        .get_or_create(&RequestLabels {
            method,
            route,
            status: response.status().as_u16(),
        })
        .inc();
    response
}

/// One request in flight, for as long as it lives.
struct InFlight(Gauge);

impl InFlight {
    fn new(g: &Gauge) -> InFlight {
        g.inc();
        InFlight(g.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}

fn overloaded(max: usize) -> Response {
    let mut r = ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "overloaded",
        format!("{max} requests are in flight; try again shortly"),
    )
    .into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

/// The request's id: the client's `X-Request-Id` when it is a plain token
/// (1 to 64 of `A-Za-z0-9._-`), else a new one. It is answered in the same
/// header, named in the request's log span, and written into every audit
/// record and webhook event the request causes.
pub(crate) async fn request_id(mut req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        })
        .map(str::to_owned);
    let id: Arc<str> = given
        .unwrap_or_else(|| format!("req_{}", uuid::Uuid::now_v7().simple()))
        .into();
    req.extensions_mut().insert(RequestId(id.clone()));
    let mut response = service::with_request_id(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, v);
    }
    response
}

/// `X-Request-Id`.
pub const REQUEST_ID: header::HeaderName = header::HeaderName::from_static("x-request-id");

/// The request's id, for its log span.
#[derive(Clone, Debug)]
pub(crate) struct RequestId(pub(crate) Arc<str>);

/// The metrics listener's application: `GET /metrics` only.
pub fn metrics_router(svc: Service, http: HttpMetrics) -> axum::Router {
    axum::Router::new()
        .route("/metrics", axum::routing::get(scrape))
        .with_state((svc, http))
}

async fn scrape(State((svc, http)): State<(Service, HttpMetrics)>) -> Response {
    let mut registry = svc.metrics_registry(Duration::from_secs(2)).await;
    http.register(&mut registry);
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}
