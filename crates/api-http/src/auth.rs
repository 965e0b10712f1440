//! Who is calling: API-key signatures and session cookies checked once per
//! request, rate limits per source address and per principal, and a JSON
//! depth limit. Handlers get the verified principal through [`Authed`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use service::identity::{AuthError, Principal, SignedRequest};
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

/// Token buckets by key, in milli-tokens (no floating point).
#[derive(Debug)]
pub(crate) struct Buckets {
    rate: Rate,
    map: Mutex<HashMap<String, (u64, Instant)>>,
}

impl Buckets {
    pub(crate) fn new(rate: Rate) -> Self {
        Buckets {
            rate,
            map: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`; on refusal, the seconds until one is due.
    fn take(&self, key: &str) -> Result<(), u64> {
        let now = Instant::now();
        let cap = u64::from(self.rate.burst.max(1)) * 1000;
        let per_ms = u64::from(self.rate.per_second.max(1));
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if map.len() > 100_000 {
            // Forget idle keys rather than grow without bound.
            map.retain(|_, (_, t)| now.duration_since(*t).as_secs() < 60);
        }
        let (tokens, last) = map.entry(key.to_owned()).or_insert((cap, now));
        let elapsed = u64::try_from(now.duration_since(*last).as_millis()).unwrap_or(u64::MAX);
        *tokens = tokens
            .saturating_add(elapsed.saturating_mul(per_ms))
            .min(cap);
        *last = now;
        if *tokens >= 1000 {
            *tokens -= 1000;
            Ok(())
        } else {
            Err((1000 - *tokens).div_ceil(per_ms * 1000).max(1))
        }
    }
}

/// The state the authentication layer needs.
#[derive(Debug, Clone)]
pub(crate) struct AuthState {
    pub svc: Service,
    pub per_address: std::sync::Arc<Buckets>,
    pub per_principal: std::sync::Arc<Buckets>,
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

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
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
    let source = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or("unknown".to_owned(), |c| c.0.ip().to_string());
    if let Err(retry) = st.per_address.take(&source) {
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
        && let Err(retry) = st.per_principal.take(&p.actor().to_string())
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
    fn buckets_refuse_beyond_the_burst() {
        let b = Buckets::new(Rate {
            per_second: 1,
            burst: 3,
        });
        for _ in 0..3 {
            assert!(b.take("k").is_ok());
        }
        assert_eq!(b.take("k"), Err(1));
        assert!(b.take("other").is_ok(), "keys are separate");
    }
}
