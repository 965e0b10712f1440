//! API errors: an HTTP status, a stable code, and a message safe to show.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({"code": "insufficient_funds", "message": "insufficient funds: 2.5 ETH needed (this transfer, those still to leave and the fees they may pay), 1.2 ETH held"}))]
pub struct ErrorBody {
    /// Stable, machine-readable: `not_found`, `payload_too_large`, `sealed`, …
    pub code: &'static str,
    /// For people; may change between versions.
    pub message: String,
}

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds, for 429 and 503 answers.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The error for a bare status produced below the handlers (routing,
    /// body limits, timeouts).
    pub(crate) fn from_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::BAD_REQUEST => ("bad_request", "the request is malformed"),
            StatusCode::NOT_FOUND => ("not_found", "no such resource"),
            StatusCode::METHOD_NOT_ALLOWED => {
                ("method_not_allowed", "method not allowed on this resource")
            }
            StatusCode::REQUEST_TIMEOUT => ("timeout", "the request took too long"),
            StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "expected a JSON body (application/json)",
            ),
            StatusCode::UNPROCESSABLE_ENTITY => ("invalid_body", "the request body is not valid"),
            StatusCode::TOO_MANY_REQUESTS => ("rate_limited", "too many requests"),
            StatusCode::SERVICE_UNAVAILABLE => ("unavailable", "service unavailable"),
            s if s.is_client_error() => ("bad_request", "the request was refused"),
            _ => ("internal", "internal error"),
        };
        ApiError::new(status, code, message)
    }
}

/// Seconds a client waits before trying a 503 again.
const RETRY_UNAVAILABLE_S: u64 = 5;

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            code: self.code,
            message: self.message,
        };
        // What is away for now (the keystore sealed, the database or every
        // node unreachable) says when to try again; a missing configuration
        // does not come back by waiting.
        let transient = self.status == StatusCode::SERVICE_UNAVAILABLE
            && body.code != "governance_not_configured";
        let retry_after = self
            .retry_after
            .or(transient.then_some(RETRY_UNAVAILABLE_S));
        let mut resp = (self.status, Json(body)).into_response();
        if let Some(s) = retry_after
            && let Ok(v) = HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// The router's fallback: no such route.
pub(crate) async fn no_route() -> ApiError {
    ApiError::from_status(StatusCode::NOT_FOUND)
}

/// Turns every non-JSON error response (from routing, limits, timeouts,
/// extractors) into the standard JSON error, and marks every response as
/// not cacheable and not to be sniffed.
pub(crate) async fn json_errors(mut resp: Response) -> Response {
    let status = resp.status();
    let is_json = resp.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
        // The console's pages answer in HTML, errors too.
        v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
    });
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let allow = resp.headers().get(header::ALLOW).cloned();
        // A body that does not fit the request type (unknown or missing
        // fields, wrong types) is a 400 like any other bad request, saying
        // which field and what was expected (never the value given).
        let mut err = ApiError::from_status(status);
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            err.status = StatusCode::BAD_REQUEST;
        }
        if status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST {
            let text = axum::body::to_bytes(std::mem::take(resp.body_mut()), 4096)
                .await
                .unwrap_or_default();
            if let Some((what, why)) = explain(&String::from_utf8_lossy(&text)) {
                err.code = what;
                err.message = why;
            }
        }
        resp = err.into_response();
        if let Some(a) = allow {
            resp.headers_mut().insert(header::ALLOW, a);
        }
    }
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// What an extractor's refusal says, made safe to send back: the failing
/// field's path and what was expected — never the value the caller gave
/// (it may be a secret sent in the wrong place).
fn explain(text: &str) -> Option<(&'static str, String)> {
    let (code, rest) = if let Some(r) =
        text.strip_prefix("Failed to deserialize the JSON body into the target type: ")
    {
        ("invalid_body", r)
    } else if let Some(r) = text.strip_prefix("Failed to deserialize query string: ") {
        ("invalid_query", r)
    } else if let Some(r) = text.strip_prefix("Failed to parse the JSON body: ") {
        ("invalid_body", r)
    } else {
        return None;
    };
    let rest = rest.split(" at line ").next().unwrap_or(rest);
    let (path, msg) = match rest.split_once(": ") {
        Some((p, m)) if !p.contains(' ') => (Some(p), m),
        _ => (None, rest),
    };
    let msg = if msg.starts_with("invalid type")
        || msg.starts_with("invalid value")
        || msg.starts_with("invalid length")
    {
        msg.find("expected ")
            .map_or("a value of another type", |i| &msg[i..])
    } else {
        msg
    };
    let mut out = match path {
        Some(p) => format!("`{p}`: {msg}"),
        None => msg.to_owned(),
    };
    out.truncate(300);
    Some((code, out))
}

/// The general mapping of service errors: typed 4xx for what the caller can
/// fix, 503 while sealed, 500 (logged, never detailed) for the rest.
pub(crate) fn service_error(e: service::ServiceError) -> ApiError {
    use service::ServiceError as E;
    use service::storage::StorageError as St;
    match e {
        E::Auth(a) => auth_error(&a),
        E::Invalid(m) => ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m),
        E::Storage(St::NotFound { what }) => ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        ),
        E::Storage(St::Conflict { what }) => ApiError::new(
            StatusCode::CONFLICT,
            "conflict",
            format!("{what} already exists"),
        ),
        E::Frozen(scope) => ApiError::new(
            StatusCode::CONFLICT,
            "frozen",
            format!("frozen ({scope}): nothing is signed or sent until a quorum releases it"),
        ),
        E::Approval(a) => {
            use service::transfers::ApprovalError as A;
            let (status, code) = match &a {
                A::Expired => (StatusCode::BAD_REQUEST, "approval_expired"),
                A::BadSignature => (StatusCode::BAD_REQUEST, "bad_approval_signature"),
                A::NoApproverKey => (StatusCode::FORBIDDEN, "no_approver_key"),
                A::NotAnApprover => (StatusCode::FORBIDDEN, "not_an_approver"),
                A::OwnTransfer => (StatusCode::FORBIDDEN, "own_transfer"),
                A::NotAwaiting(_) => (StatusCode::CONFLICT, "not_awaiting_vote"),
                A::AlreadyVoted | A::SamePerson(_) => (StatusCode::CONFLICT, "already_voted"),
                A::SignatureRequired => (StatusCode::BAD_REQUEST, "signature_required"),
                A::BadProposalSignature => (StatusCode::BAD_REQUEST, "bad_approval_signature"),
                _ => (StatusCode::BAD_REQUEST, "approval_refused"),
            };
            ApiError::new(status, code, a.to_string())
        }
        E::Conflict(m) => ApiError::new(StatusCode::CONFLICT, "conflict", m),
        E::Screened { code, message } => {
            ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
        }
        E::InsufficientFunds(m) => ApiError::new(
            StatusCode::CONFLICT,
            "insufficient_funds",
            format!("insufficient funds: {m}"),
        ),
        E::Eth(service::eth::EthError::Node(service::eth::ClientError::Unavailable(_))) => {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "node_unavailable",
                "no node of the network answered",
            )
        }
        // A node that answers, but not as the protocol says.
        E::Eth(service::eth::EthError::Node(service::eth::ClientError::Malformed { .. })) => {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                "node_answer_malformed",
                "a node's answer could not be read",
            )
        }
        E::Eth(
            ref e @ (service::eth::EthError::NetworkNotConfigured(_)
            | service::eth::EthError::AssetNotConfigured(_)),
        ) => ApiError::new(StatusCode::BAD_REQUEST, "not_configured", e.to_string()),
        E::Btc(ref e @ service::btc::BtcServiceError::NetworkNotConfigured(_)) => {
            ApiError::new(StatusCode::BAD_REQUEST, "not_configured", e.to_string())
        }
        E::KeyNotUsable(m) => ApiError::new(StatusCode::CONFLICT, "key_not_usable", m),
        E::NotApproved(m) => ApiError::new(
            StatusCode::CONFLICT,
            "not_approved",
            format!("signing refused, wallet frozen: {m}"),
        ),
        E::SignersRefused(m) => ApiError::new(StatusCode::CONFLICT, "signers_refused", m),
        e @ E::SignatureRefused(_) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "signature_refused",
            e.to_string(),
        ),
        E::Eth(ref e @ service::eth::EthError::NotReplaceable(_)) => {
            ApiError::new(StatusCode::CONFLICT, "not_replaceable", e.to_string())
        }
        E::Eth(ref e @ service::eth::EthError::Fee(_)) => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "fee_refused",
            e.to_string(),
        ),
        E::IdempotencyMismatch => ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used with another request",
        ),
        E::GovernanceInForce(_) => {
            ApiError::new(StatusCode::CONFLICT, "governance_in_force", e.to_string())
        }
        E::NotBackedUp(_) => {
            ApiError::new(StatusCode::CONFLICT, "key_not_backed_up", e.to_string())
        }
        E::GovernanceNotConfigured => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "governance_not_configured",
            "governance is not configured on this server",
        ),
        E::Sealed => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "sealed",
            "the keystore is sealed",
        ),
        E::SignersUnavailable(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "signers_unavailable",
            e.to_string(),
        ),
        E::SigningStopped(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "signing_stopped",
            e.to_string(),
        ),
        E::DiskLow(_) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "disk_low", e.to_string()),
        E::Storage(St::Unavailable(_)) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "database_unavailable",
            "the database is not reachable",
        ),
        E::Storage(ref e @ St::Contention(_)) => {
            tracing::warn!(error = %e, "a transaction raced another and was rolled back");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "contention",
                "the request raced another and changed nothing: try it again",
            )
        }
        other => {
            tracing::error!(error = %other, "request failed");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "internal error",
            )
        }
    }
}

/// An authentication or authorisation failure: 401 or 403 with its code.
pub(crate) fn auth_error(e: &service::identity::AuthError) -> ApiError {
    use StatusCode as S;
    use service::identity::AuthError;
    let (status, code) = match e {
        AuthError::InvalidCredentials => (S::UNAUTHORIZED, "invalid_credentials"),
        AuthError::TotpRequired => (S::UNAUTHORIZED, "totp_required"),
        AuthError::BadSignature => (S::UNAUTHORIZED, "bad_signature"),
        AuthError::SignatureVersion => (S::UNAUTHORIZED, "signature_upgrade_required"),
        AuthError::Throttled { .. } => (S::TOO_MANY_REQUESTS, "rate_limited"),
        AuthError::Stale => (S::UNAUTHORIZED, "stale_request"),
        AuthError::Replay => (S::UNAUTHORIZED, "replayed_request"),
        AuthError::Malformed(_) => (S::UNAUTHORIZED, "malformed_auth"),
        AuthError::KeyInactive => (S::UNAUTHORIZED, "key_inactive"),
        AuthError::NoSession => (S::UNAUTHORIZED, "no_session"),
        AuthError::Csrf => (S::FORBIDDEN, "csrf"),
        AuthError::MfaRequired => (S::FORBIDDEN, "mfa_required"),
        AuthError::Forbidden => (S::FORBIDDEN, "forbidden"),
        _ => (S::UNAUTHORIZED, "unauthenticated"),
    };
    let mut err = ApiError::new(status, code, e.to_string());
    if let AuthError::Throttled { retry_after_s } = e {
        err.retry_after = Some(*retry_after_s);
    }
    err
}

/// `400 invalid_request` with `message`.
pub(crate) fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
}

/// A page size within `1..=max` (`default` when not given); anything
/// else is `400 invalid_query`.
pub(crate) fn page_limit(given: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match given {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("`limit`: from 1 to {max}"),
        )),
    }
}

/// An id in a path as Strongroom makes them (ASCII letters, digits, `_`,
/// `-`, `:`; at most 100): anything else is `404` before anything reads it
/// (or writes it into an audit record).
pub(crate) fn plain_id(id: &str, what: &str) -> Result<(), ApiError> {
    let plain = !id.is_empty()
        && id.len() <= 100
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b':'));
    if plain { Ok(()) } else { Err(not_found(what)) }
}

/// `404 not_found` for `what`.
pub(crate) fn not_found(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} not found"),
    )
}

/// Authorisation failures where being outside one's scope must not reveal
/// that the thing exists: `Forbidden` becomes `404` for `what`; the others
/// (MFA, …) keep their own code.
pub(crate) fn scoped(what: &'static str) -> impl Fn(service::identity::AuthError) -> ApiError {
    move |e| match e {
        service::identity::AuthError::Forbidden => not_found(what),
        other => auth_error(&other),
    }
}

#[cfg(test)]
mod explain_tests {
    use super::explain;

    #[test]
    fn refusals_name_the_field_never_the_value() {
        let (code, m) = explain(
            "Failed to deserialize the JSON body into the target type: share: invalid type: \
             integer `12345`, expected a string at line 1 column 14",
        )
        .unwrap();
        assert_eq!(code, "invalid_body");
        assert_eq!(m, "`share`: expected a string");
        let (code, m) = explain(
            "Failed to deserialize query string: unknown field `colour`, expected one of `a`, `b`",
        )
        .unwrap();
        assert_eq!(code, "invalid_query");
        assert!(m.starts_with("unknown field `colour`"), "{m}");
        let (_, m) = explain(
            "Failed to deserialize the JSON body into the target type: missing field `amount` \
             at line 1 column 2",
        )
        .unwrap();
        assert_eq!(m, "missing field `amount`");
        assert!(explain("something else").is_none());
    }
}

/// An address as people write it: an Ethereum address (stored lower case)
/// in EIP-55, whatever else as stored (bech32 is lower case already).
pub(crate) fn shown_address(stored: String) -> String {
    // The wallet's own money moving between its addresses keeps its mark.
    if let Some(rest) = stored.strip_prefix("internal:")
        && let Ok(a) = rest.parse::<chain_eth::EthAddress>()
    {
        return format!("internal:{a}");
    }
    match stored.parse::<chain_eth::EthAddress>() {
        Ok(a) => a.to_string(),
        Err(_) => stored,
    }
}

#[cfg(test)]
mod address_tests {
    #[test]
    fn ethereum_addresses_leave_in_eip55() {
        assert_eq!(
            super::shown_address("0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed".into()),
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed"
        );
        let btc = "bcrt1qs758ursh4q9z627kt3pp5yysm78ddny6txaqgw".to_owned();
        assert_eq!(super::shown_address(btc.clone()), btc);
        assert_eq!(super::shown_address("".into()), "");
    }
}
