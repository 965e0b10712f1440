//! Passkeys made in the console: the WebAuthn registration ceremony (run by
//! the `webauthn_rp` relying-party library: attestation object, COSE key,
//! flags, origin and RP ID all checked there), which gives the approver a
//! key to enroll through governance (`webauthn:<credential id>:<P-256 key>`),
//! and the approval ceremony's server side: the vote a passkey signed in the
//! browser, verified like any approval (the challenge is the digest of the
//! statement's bytes, `SRAP`).
//!
//! A registration ceremony waits in this process's memory for at most its
//! timeout (five minutes), bound to the person who started it (their
//! newest only), and ends only with their answer.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Json;
use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use domain::{Actor, Timestamp};
use serde::Deserialize;
use serde_json::json;
use service::Service;
use service::identity::{Principal, perm};
use service::transfers::VoteRequest;
use webauthn_rp::request::register::{
    CoseAlgorithmIdentifier, CoseAlgorithmIdentifiers, CredProtect,
    PublicKeyCredentialCreationOptions, PublicKeyCredentialUserEntity, RegistrationServerState,
    RegistrationVerificationOptions, UserHandle16,
};
use webauthn_rp::request::{AsciiDomain, RpId, TimedCeremony as _};
use webauthn_rp::response::register::{Registration, UncompressedPubKey};

use super::{pages, signed_in_to_change, unavailable};

/// Registration ceremonies waiting for the browser's answer, by challenge.
#[derive(Debug, Default)]
pub(crate) struct Ceremonies(Mutex<HashMap<u128, (Actor, RegistrationServerState<16>)>>);

/// At most this many ceremonies wait at once (the oldest expired go first;
/// past it, a new one is refused until some finish or expire).
const MAX_WAITING: usize = 1024;

pub(crate) type Shared = Arc<Ceremonies>;

/// Sign-in challenges issued and not yet answered, each good once and for
/// two minutes.
#[derive(Debug, Default)]
pub(crate) struct Challenges(Mutex<HashMap<[u8; 32], Instant>>);

pub(crate) type SharedChallenges = Arc<Challenges>;

const CHALLENGE_LIFE: std::time::Duration = std::time::Duration::from_secs(120);

/// A challenge for a sign-in with a passkey (before anyone is signed in:
/// bounded, short-lived, good once; the API's rate limits apply).
pub(super) async fn login_challenge(
    State(svc): State<Service>,
    Extension(challenges): Extension<SharedChallenges>,
) -> Response {
    use base64::Engine as _;
    let Some(rp) = svc.relying_party() else {
        return problem(
            StatusCode::CONFLICT,
            "passkeys_not_configured",
            "this server has no [console] rp_id and origins",
        );
    };
    let mut challenge = [0u8; 32];
    if getrandom::fill(&mut challenge).is_err() {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no randomness",
        );
    }
    {
        let mut waiting = challenges
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        waiting.retain(|_, until| *until > now);
        // Full: the oldest goes (its sign-in asks again), so that no one
        // asking for challenges can keep everyone else from signing in.
        if waiting.len() >= MAX_WAITING * 4
            && let Some(oldest) = waiting.iter().min_by_key(|(_, u)| **u).map(|(c, _)| *c)
        {
            waiting.remove(&oldest);
        }
        waiting.insert(challenge, now + CHALLENGE_LIFE);
    }
    Json(json!({
        "challenge": base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(challenge),
        "rp_id": rp.rp_id,
    }))
    .into_response()
}

/// The sign-in form's passkey answer: its assertion, credential id and the
/// challenge it answers, which was issued here and is now spent. `None`
/// for no answer, or one that answers no challenge of ours (the sign-in
/// then fails for want of its second factor).
pub(super) fn sign_in_answer(
    challenges: &Challenges,
    passkey: &str,
    credential: &str,
) -> Option<(policy::Assertion, Vec<u8>, [u8; 32])> {
    use base64::Engine as _;
    if passkey.is_empty() {
        return None;
    }
    let policy::ApprovalSignature::WebAuthn(assertion) = passkey.parse().ok()? else {
        return None;
    };
    let credential = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(credential)
        .ok()?;
    let challenge = assertion.challenge()?;
    let until = challenges
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .remove(&challenge)?;
    (until > Instant::now()).then_some((assertion, credential, challenge))
}

#[derive(Deserialize)]
pub(super) struct Remove {
    csrf: String,
    /// Hex.
    credential: String,
}

/// Removes one of the person's sign-in passkeys (never their last second
/// factor while their role needs one).
pub(super) async fn remove(
    State(svc): State<Service>,
    headers: HeaderMap,
    axum::extract::Form(form): axum::extract::Form<Remove>,
) -> Response {
    let who = match signed_in_to_change(&svc, &headers, &form.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    match svc.remove_passkey(&who, &form.credential).await {
        Ok(()) => axum::response::Redirect::to("/ui/passkeys").into_response(),
        Err(
            e @ (service::ServiceError::Storage(service::storage::StorageError::Unavailable(_))
            | service::ServiceError::Sealed),
        ) => unavailable(&e),
        Err(e) => (
            StatusCode::CONFLICT,
            Html(pages::message("Not removed", &e.to_string())),
        )
            .into_response(),
    }
}

/// The API's error answer (`{code, message}`): the page's script shows it.
fn problem(status: StatusCode, code: &'static str, message: impl Into<String>) -> Response {
    crate::error::ApiError::new(status, code, message).into_response()
}

/// Who registers (a session with its CSRF token), and where: the server's
/// relying party, whose RP ID must be a domain.
async fn ceremony(
    svc: &Service,
    headers: &HeaderMap,
    csrf: &str,
) -> Result<(Principal, Arc<policy::RelyingParty>, RpId), Response> {
    let who = signed_in_to_change(svc, headers, csrf).await?;
    let rp = svc.relying_party().ok_or_else(|| {
        problem(
            StatusCode::CONFLICT,
            "passkeys_not_configured",
            "this server has no [console] rp_id and origins: passkeys cannot be made",
        )
    })?;
    let rp_id = AsciiDomain::try_from(rp.rp_id.clone())
        .map(RpId::Domain)
        .map_err(|_| {
            problem(
                StatusCode::CONFLICT,
                "passkeys_not_configured",
                "the configured RP ID is not a domain",
            )
        })?;
    Ok((who, rp, rp_id))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Csrf {
    csrf: String,
}

/// Starts a registration: the creation options for the browser
/// (`PublicKeyCredentialCreationOptionsJSON`), ES256 only (what approvals
/// are verified with), user verification required.
pub(super) async fn start(
    State(svc): State<Service>,
    Extension(ceremonies): Extension<Shared>,
    headers: HeaderMap,
    Json(body): Json<Csrf>,
) -> Response {
    let (who, _, rp_id) = match ceremony(&svc, &headers, &body.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let handle = UserHandle16::new();
    let name = who.actor().to_string();
    let Ok(user_name) = name.as_str().try_into() else {
        return problem(
            StatusCode::CONFLICT,
            "passkeys_not_configured",
            "this principal's name cannot name a passkey",
        );
    };
    let mut options = PublicKeyCredentialCreationOptions::passkey(
        &rp_id,
        PublicKeyCredentialUserEntity {
            name: user_name,
            id: &handle,
            display_name: None,
        },
        Vec::new(),
    );
    options.pub_key_cred_params = CoseAlgorithmIdentifiers::ALL
        .remove(CoseAlgorithmIdentifier::Eddsa)
        .remove(CoseAlgorithmIdentifier::Es384)
        .remove(CoseAlgorithmIdentifier::Rs256);
    options.extensions.cred_protect = CredProtect::None;
    let Ok((server, client)) = options.start_ceremony() else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the registration could not start",
        );
    };
    let Ok(client) = serde_json::to_value(&client) else {
        return problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the registration could not start",
        );
    };
    {
        let mut waiting = ceremonies
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let now = Instant::now();
        waiting.retain(|_, (_, s)| s.expiration() > now);
        // A new one replaces this person's earlier ones: one person cannot
        // fill the table.
        waiting.retain(|_, (owner, _)| owner != who.actor());
        if waiting.len() >= MAX_WAITING {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "busy",
                "too many passkey registrations are waiting: try again in a few minutes",
            );
        }
        waiting.insert(server.sent_challenge().0, (who.actor().clone(), server));
    }
    Json(client).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct Finish {
    csrf: String,
    /// The browser's `PublicKeyCredential.toJSON()`.
    credential: serde_json::Value,
}

/// Finishes a registration: the ceremony this session started, verified by
/// the relying-party library; answers the approver key to enroll.
pub(super) async fn finish(
    State(svc): State<Service>,
    Extension(ceremonies): Extension<Shared>,
    headers: HeaderMap,
    Json(body): Json<Finish>,
) -> Response {
    let (who, rp, rp_id) = match ceremony(&svc, &headers, &body.csrf).await {
        Ok(c) => c,
        Err(r) => return r,
    };
    let registration: Registration = match serde_json::from_value(body.credential) {
        Ok(r) => r,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("credential: not a WebAuthn registration ({e})"),
            );
        }
    };
    let Ok(challenge) = registration.challenge() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "credential: its client data names no challenge",
        );
    };
    let waiting = {
        let mut all = ceremonies
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // Only its owner's answer ends a ceremony.
        match all.get(&challenge.0) {
            Some((owner, _)) if owner == who.actor() => all.remove(&challenge.0),
            _ => None,
        }
    };
    let Some((_, server)) = waiting else {
        return problem(
            StatusCode::BAD_REQUEST,
            "no_ceremony",
            "no passkey registration of yours waits for this answer (expired, or replaced by a newer one?)",
        );
    };
    let options = RegistrationVerificationOptions::<String, String> {
        allowed_origins: &rp.origins,
        ..Default::default()
    };
    let credential = match server.verify(&rp_id, &registration, &options) {
        Ok(c) => c,
        Err(e) => {
            return problem(
                StatusCode::BAD_REQUEST,
                "passkey_refused",
                format!("the passkey was refused: {e}"),
            );
        }
    };
    let UncompressedPubKey::P256(point) = credential.static_state().credential_public_key else {
        return problem(
            StatusCode::BAD_REQUEST,
            "passkey_refused",
            "the passkey's key is not ES256 (P-256)",
        );
    };
    let mut sec1 = Vec::with_capacity(65);
    sec1.push(0x04);
    sec1.extend_from_slice(point.x());
    sec1.extend_from_slice(point.y());
    let key = match policy::ApproverKey::passkey(credential.id().into_inner(), &sec1) {
        Ok(key) => key,
        Err(e) => return problem(StatusCode::BAD_REQUEST, "passkey_refused", e.to_string()),
    };
    // A person signs in with it too (an API key has no sign-in).
    if matches!(who.actor(), Actor::User(_)) {
        match svc.add_passkey(&who, &key).await {
            Ok(()) => {}
            Err(service::ServiceError::Auth(_)) => {
                return problem(
                    StatusCode::FORBIDDEN,
                    "mfa_required",
                    "sign in with your second factor before you add another",
                );
            }
            Err(e) => return crate::error::service_error(e).into_response(),
        }
    }
    tracing::info!(principal = %who.actor(), "passkey registered");
    Json(json!({ "approver_key": key.to_string() })).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PasskeyVote {
    csrf: String,
    /// `approve` or `reject`.
    vote: String,
    expires_at_ms: i64,
    /// `webauthn:<authenticatorData>.<clientDataJSON>.<signature>`.
    signature: String,
    /// Why, for a rejection.
    #[serde(default)]
    reason: Option<String>,
}

/// A vote signed in the browser: verified against the statement the server
/// makes from the stored transfer (never from what the page showed), then
/// recorded as any approval is.
pub(super) async fn vote(
    State(svc): State<Service>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<PasskeyVote>,
) -> Response {
    let who = match signed_in_to_change(&svc, &headers, &body.csrf).await {
        Ok(w) => w,
        Err(r) => return r,
    };
    let Ok(id) = id.parse::<domain::TransferId>() else {
        return (StatusCode::NOT_FOUND, Html(pages::refused())).into_response();
    };
    let vote = match body.vote.as_str() {
        "approve" => policy::Vote::Approve,
        "reject" => policy::Vote::Reject,
        _ => {
            return problem(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "vote: approve or reject",
            );
        }
    };
    let Ok(signature) = body.signature.parse::<policy::ApprovalSignature>() else {
        return problem(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "signature: a WebAuthn assertion",
        );
    };
    let wallet = match crate::transfers::wallet_of(&svc, id).await {
        Ok(w) => w,
        Err(e) => return e.into_response(),
    };
    let Ok(can) = svc.authorize::<perm::ApproveTransfer>(&who, Some(wallet)) else {
        return (StatusCode::FORBIDDEN, Html(pages::refused())).into_response();
    };
    let request = VoteRequest {
        vote,
        expires_at: Timestamp::from_millis(body.expires_at_ms),
        signature,
        reason: body.reason,
    };
    match can.vote(id, &request).await {
        Ok(t) => Json(json!({ "state": t.state })).into_response(),
        Err(e @ (service::ServiceError::Storage(_) | service::ServiceError::Sealed)) => {
            unavailable(&e)
        }
        Err(e) => crate::error::service_error(e).into_response(),
    }
}
