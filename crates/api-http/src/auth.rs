//! Who is calling: API-key signatures and session cookies checked once per
//! request, rate limits (bounded memory) per client address — behind
//! trusted proxies, the forwarded client; IPv6 by /64 — and per principal,
//! with budgets of their own for emergencies (freeze, seal) and unseal
//! attempts, and a JSON depth limit. Handlers get the verified principal
//! through [`Authed`].

use std::net::SocketAddr;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use service::identity::{AuthError, Principal, SignedRequest};
use service::limiter::{LimitKey, Limiter, address_key, hashed_key};
use service::{Service, ServiceError};

use crate::error::{ApiError, auth_error, service_error};

/// Header names of a signed request.
pub const KEY_HEADER: &str = "x-strongroom-key";
pub const TIMESTAMP_HEADER: &str = "x-strongroom-timestamp";
pub const NONCE_HEADER: &str = "x-strongroom-nonce";
pub const SIGNATURE_HEADER: &str = "x-strongroom-signature";
/// Signed with the request (`strongroom-request-v2`); one value at most.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";
/// The session cookie and the header that must echo its CSRF token.
pub const SESSION_COOKIE: &str = "sr_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
/// Deepest JSON nesting a request body may have.
pub const MAX_JSON_DEPTH: usize = 32;

/// A token bucket rate: `per_second` on average, bursts up to `burst`.
#[derive(Debug, Clone, Copy)]
pub struct Rate {
    pub per_second: u32,
    pub burst: u32,
}

/// Memory bound of each limiter: this many keys remembered, whatever
/// number of distinct addresses or principals arrive.
const LIMITER_CAPACITY: usize = 131_072;

/// Rate limits in bounded memory, O(1) per request (`service::limiter`).
#[derive(Debug)]
pub(crate) struct Limiters {
    started: Instant,
    per_address: Limiter,
    per_principal: Limiter,
    /// Freeze and seal: their own budget, so an emergency is never rate
    /// limited out by a flood of other requests.
    emergency: Limiter,
    /// Unseal attempts, per address (not all together: a flood from a few
    /// addresses must not shut the share holders out; forged shares are
    /// refused by their tags anyway).
    unseal: Limiter,
    trusted_proxies: std::sync::Arc<[crate::client_addr::Cidr]>,
}

impl Limiters {
    pub(crate) fn new(l: &crate::Limits) -> Self {
        let rate = |r: Rate| Limiter::new(r.per_second, r.burst, LIMITER_CAPACITY);
        Limiters {
            started: Instant::now(),
            per_address: rate(l.per_address),
            per_principal: rate(l.per_principal),
            emergency: rate(l.emergency),
            unseal: Limiter::per_minute(l.unseal_per_minute, l.unseal_per_minute, LIMITER_CAPACITY),
            trusted_proxies: l.trusted_proxies.clone(),
        }
    }

    /// New rates per principal and per address (a configuration reload).
    pub(crate) fn set_rates(&self, per_principal: Rate, per_address: Rate) {
        self.per_principal
            .set_rate(per_principal.per_second, per_principal.burst);
        self.per_address
            .set_rate(per_address.per_second, per_address.burst);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }
}

/// Which budget a request draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Normal,
    /// `POST /v1/sys/seal`, `POST /v1/freezes`.
    Emergency,
    /// `POST /v1/sys/unseal`, `POST /v1/sys/unseal/reset`.
    Unseal,
}

fn class(method: &Method, path: &str) -> Class {
    match (method, path) {
        (&Method::POST, "/v1/sys/seal" | "/v1/freezes") => Class::Emergency,
        (&Method::POST, "/v1/sys/unseal" | "/v1/sys/unseal/reset") => Class::Unseal,
        _ => Class::Normal,
    }
}

/// The state the authentication layer needs.
#[derive(Debug, Clone)]
pub(crate) struct AuthState {
    pub svc: Service,
    pub limits: std::sync::Arc<Limiters>,
    pub max_body: usize,
}

/// The verified caller, if any, as the handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Option<Principal>);

/// The source address of the request ("unknown" in-process).
#[derive(Debug, Clone)]
pub(crate) struct Source(pub String);

/// A handler argument that requires a verified principal (401 otherwise).
#[derive(Debug)]
pub struct Authed(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        match parts.extensions.get::<Caller>() {
            Some(Caller(Some(p))) => Ok(Authed(p.clone())),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "sign the request with an API key or sign in",
            )),
        }
    }
}

/// The caller if the request was authenticated; `None` for an anonymous
/// one (an open route that says more to principals).
pub(crate) struct MaybeAuthed(pub Option<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthed {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(MaybeAuthed(match parts.extensions.get::<Caller>() {
            Some(Caller(Some(p))) => Some(p.clone()),
            _ => None,
        }))
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Source {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        Ok(parts
            .extensions
            .get::<Source>()
            .cloned()
            .unwrap_or(Source("unknown".into())))
    }
}

fn too_many(retry_after: u64, code: &'static str) -> Response {
    let mut r = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        code,
        "too many requests; retry later",
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&retry_after.to_string()) {
        r.headers_mut().insert(header::RETRY_AFTER, v);
    }
    r
}

/// Whether a path is the web console's (`/ui`, `/ui/…`).
pub(crate) fn is_console(path: &str) -> bool {
    path == "/ui" || path.starts_with("/ui/")
}

pub(crate) fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Result<&'a str, ApiError> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| auth_error(&AuthError::Malformed(format!("missing header {name}"))))
}

/// Nesting depth of a JSON text (brackets outside strings).
fn json_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut escaped) = (0usize, 0usize, false, false);
    for &b in bytes {
        if in_str {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_str = true,
            b'[' | b'{' => {
                depth += 1;
                max = max.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

/// The authentication layer.
pub(crate) async fn authenticate(
    State(st): State<AuthState>,
    req: Request,
    next: Next,
) -> Response {
    let lim = &st.limits;
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let ip = crate::client_addr::client_ip(peer, req.headers(), &lim.trusted_proxies);
    let source = ip.map_or("unknown".to_owned(), |ip| ip.to_string());
    let at = ip.map_or(LimitKey::Global, address_key);
    let class = class(req.method(), req.uri().path());
    let now = lim.now_ms();
    let taken = match class {
        Class::Normal => lim.per_address.take(at, now),
        Class::Unseal => lim.unseal.take(at, now),
        // Keyed by the address and the credential it presents: a flood from
        // elsewhere, or with other credentials, does not drain it.
        Class::Emergency => {
            let h = req.headers();
            let credential = h
                .get(KEY_HEADER)
                .or_else(|| h.get(axum::http::header::COOKIE))
                .map_or(&b""[..], |v| v.as_bytes());
            let addr = format!("{at:?}");
            lim.emergency
                .take(hashed_key(&[addr.as_bytes(), credential]), now)
        }
    };
    if let Err(retry) = taken {
        if class == Class::Unseal {
            tracing::warn!(source = %source, "unseal attempts rate-limited");
        }
        return too_many(retry, "rate_limited");
    }
    let (mut parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, st.max_body).await {
        Ok(b) => b,
        Err(_) => return ApiError::from_status(StatusCode::PAYLOAD_TOO_LARGE).into_response(),
    };
    if json_depth(&bytes) > MAX_JSON_DEPTH {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "json_too_deep",
            format!("JSON nested deeper than {MAX_JSON_DEPTH} levels"),
        )
        .into_response();
    }
    let principal = match identify(&st.svc, &parts, &bytes).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    if let Some(p) = &principal
        && class == Class::Normal
        && let Err(retry) = lim
            .per_principal
            .take(hashed_key(&[p.actor().to_string().as_bytes()]), now)
    {
        return too_many(retry, "rate_limited");
    }
    parts.extensions.insert(Caller(principal));
    parts.extensions.insert(Source(source));
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

async fn identify(
    svc: &Service,
    parts: &Parts,
    body: &[u8],
) -> Result<Option<Principal>, ApiError> {
    let h = &parts.headers;
    let result = if h.contains_key(KEY_HEADER) {
        let query = parts.uri.query().unwrap_or("");
        // Signed as it is used: one value, read whole.
        let mut keys = h.get_all(IDEMPOTENCY_HEADER).iter();
        let idempotency_key = match (keys.next(), keys.next()) {
            (None, _) => None,
            (Some(v), None) => Some(v.to_str().map_err(|_| {
                auth_error(&AuthError::Malformed(
                    "Idempotency-Key: visible ASCII".into(),
                ))
            })?),
            (Some(_), Some(_)) => {
                return Err(auth_error(&AuthError::Malformed(
                    "one Idempotency-Key header at most".into(),
                )));
            }
        };
        svc.authenticate_request(&SignedRequest {
            key_id: header_str(h, KEY_HEADER)?,
            timestamp_ms: header_str(h, TIMESTAMP_HEADER)?,
            nonce: header_str(h, NONCE_HEADER)?,
            signature: header_str(h, SIGNATURE_HEADER)?,
            method: parts.method.as_str(),
            path: parts.uri.path(),
            query,
            body,
            idempotency_key,
        })
        .await
    } else if let Some(token) = cookie(h, SESSION_COOKIE)
        && is_console(parts.uri.path())
    {
        // The console checks its forms' CSRF token itself (a field, not a
        // header); the session is read here, for the per-person limits and
        // the pages.
        return Ok(svc.authenticate_session(&token, None, false).await.ok());
    } else if let Some(token) = cookie(h, SESSION_COOKIE) {
        let changes_state = !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let csrf = h.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        svc.authenticate_session(&token, csrf, changes_state).await
    } else {
        return Ok(None);
    };
    match result {
        Ok(p) => Ok(Some(p)),
        Err(ServiceError::Auth(e)) => Err(auth_error(&e)),
        Err(e) => Err(service_error(e)),
    }
}

/// The capability `P` over the whole installation, or the 401/403 answer.
pub(crate) fn can<'a, P: service::identity::perm::Perm>(
    svc: &'a Service,
    who: &'a Principal,
) -> Result<service::identity::Can<'a, P>, ApiError> {
    svc.authorize::<P>(who, None).map_err(|e| auth_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_depth_counts_brackets_outside_strings() {
        assert_eq!(json_depth(br#"{"a":[1,{"b":2}]}"#), 3);
        assert_eq!(json_depth(br#"{"a":"[[[[{{{{"}"#), 1);
        assert_eq!(json_depth(br#"{"a":"\"[[["}"#), 1);
        assert_eq!(json_depth(b""), 0);
    }

    #[test]
    fn emergencies_and_unseal_draw_on_their_own_budgets() {
        assert_eq!(class(&Method::POST, "/v1/freezes"), Class::Emergency);
        assert_eq!(class(&Method::POST, "/v1/sys/seal"), Class::Emergency);
        assert_eq!(class(&Method::GET, "/v1/freezes"), Class::Normal);
        assert_eq!(class(&Method::POST, "/v1/sys/unseal"), Class::Unseal);
        assert_eq!(class(&Method::POST, "/v1/sys/unseal/reset"), Class::Unseal);
        assert_eq!(class(&Method::POST, "/v1/transfers"), Class::Normal);
    }
}
