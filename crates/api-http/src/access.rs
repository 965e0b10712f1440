//! Access over HTTP: sign-in, TOTP, the caller's identity, users and
//! grants, API keys and the audit log — each behind the capability its
//! operation needs.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use domain::{Actor, ApiKeyId, Grant, Role, Scope};
use serde::{Deserialize, Serialize};
use service::Service;
use service::identity::perm;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authed, SESSION_COOKIE, Source, can};
use crate::error::{ApiError, ErrorBody, bad, page_limit, service_error};
use crate::paging::{PageQuery, page};

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(logout))
        .routes(routes!(totp_enrol))
        .routes(routes!(totp_confirm))
        .routes(routes!(me))
        .routes(routes!(list_users, create_user))
        .routes(routes!(add_grant))
        .routes(routes!(remove_grant))
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(revoke_api_key))
        .routes(routes!(audit_log))
        .routes(routes!(reconciliation_runs))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    username: String,
    password: String,
    /// The current six-digit code, once TOTP is enrolled.
    totp: Option<String>,
}

impl std::fmt::Debug for LoginRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResponse {
    user: String,
    /// Echo it in `X-CSRF-Token` on every state-changing request.
    csrf_token: String,
    /// The session passed a second factor.
    mfa: bool,
    /// Privileged use waits until TOTP is enrolled (`/v1/auth/totp/enrol`).
    enrol_totp: bool,
}

/// Signs in with a password (and TOTP once enrolled). Sets the session
/// cookie: `Secure; HttpOnly; SameSite=Strict`.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses(
        (status = 200, body = LoginResponse),
        (status = 401, description = "`invalid_credentials`, the one answer for every failure (wrong name, password or code, a missing code, a locked account)", body = ErrorBody),
    ))]
async fn login(
    State(svc): State<Service>,
    Source(address): Source,
    Json(req): Json<LoginRequest>,
) -> Result<Response, ApiError> {
    let out = svc
        .login(&req.username, req.password, req.totp.as_deref(), &address)
        .await
        .map_err(service_error)?;
    let cookie = format!(
        "{SESSION_COOKIE}={}; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age={}",
        out.session_token,
        service::identity::SESSION_MS / 1000
    );
    let mut resp = Json(LoginResponse {
        user: out.user.to_string(),
        csrf_token: out.csrf_token.clone(),
        mfa: out.mfa,
        enrol_totp: out.enrol_totp,
    })
    .into_response();
    let v = HeaderValue::from_str(&cookie).map_err(|_| bad("cookie"))?;
    resp.headers_mut().insert(header::SET_COOKIE, v);
    Ok(resp)
}

/// Ends the session.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "auth",
    responses((status = 204, description = "Signed out")))]
async fn logout(State(svc): State<Service>, Authed(who): Authed) -> Result<Response, ApiError> {
    svc.logout(&who).await.map_err(service_error)?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static(
            "sr_session=; Path=/; HttpOnly; Secure; SameSite=Strict; Max-Age=0",
        ),
    );
    Ok(resp)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// Scan it into an authenticator app; shown once.
    otpauth_uri: String,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpEnrol {
    /// A code from the factor already enrolled, to replace it.
    code: Option<String>,
}

/// Starts TOTP enrolment for the signed-in user (replacing an enrolled
/// factor needs a code from it).
#[utoipa::path(post, path = "/v1/auth/totp/enrol", tag = "auth", request_body = Option<TotpEnrol>,
    responses((status = 200, body = TotpEnrolment), (status = 401, description = "`totp_required` or `invalid_credentials`", body = ErrorBody)))]
async fn totp_enrol(
    State(svc): State<Service>,
    Authed(who): Authed,
    body: axum::body::Bytes,
) -> Result<Json<TotpEnrolment>, ApiError> {
    let req: TotpEnrol = if body.is_empty() {
        TotpEnrol::default()
    } else {
        // `null` is no body too (the document allows it).
        serde_json::from_slice::<Option<TotpEnrol>>(&body)
            .map(Option::unwrap_or_default)
            .map_err(|_| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the request body is not valid",
                )
            })?
    };
    let otpauth_uri = svc
        .totp_enrol(&who, req.code.as_deref())
        .await
        .map_err(service_error)?;
    Ok(Json(TotpEnrolment { otpauth_uri }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpConfirm {
    code: String,
}

/// Confirms TOTP enrolment with a code from the new secret. Each code is
/// accepted once (RFC 6238 §5.2): the code that confirmed cannot also
/// sign in — the next sign-in takes the next 30-second code.
#[utoipa::path(post, path = "/v1/auth/totp/confirm", tag = "auth", request_body = TotpConfirm,
    responses((status = 204, description = "Enrolled; this session has passed MFA")))]
async fn totp_confirm(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(req): Json<TotpConfirm>,
) -> Result<StatusCode, ApiError> {
    svc.totp_confirm(&who, &req.code)
        .await
        .map_err(service_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantDto {
    #[schema(value_type = RoleName)]
    role: String,
    /// `global` or `wallet:<uuid>` (a wallet scope for initiators,
    /// approvers and viewers only).
    #[schema(
        pattern = "^(global|wallet:[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})$"
    )]
    scope: String,
}

/// A role, as grants name it (for the document: the server parses the
/// text with `domain::Role`).
#[derive(ToSchema)]
#[serde(rename_all = "kebab-case")]
#[allow(dead_code)]
pub enum RoleName {
    Admin,
    SecurityOfficer,
    PolicyAdmin,
    Initiator,
    Approver,
    Auditor,
    Viewer,
}

impl GrantDto {
    fn parse(&self) -> Result<Grant, ApiError> {
        let role: Role = self
            .role
            .parse()
            .map_err(|e: domain::AccessError| bad(e.to_string()))?;
        let scope: Scope = self
            .scope
            .parse()
            .map_err(|e: domain::AccessError| bad(e.to_string()))?;
        Grant::new(role, scope).map_err(|e| bad(e.to_string()))
    }

    fn of(g: &Grant) -> Self {
        GrantDto {
            role: g.role().as_str().to_owned(),
            scope: g.scope().to_string(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    actor: String,
    grants: Vec<GrantDto>,
    mfa: bool,
}

/// Who the caller is and what they hold.
#[utoipa::path(get, path = "/v1/me", tag = "auth", responses((status = 200, body = Me)))]
async fn me(Authed(who): Authed) -> Json<Me> {
    Json(Me {
        actor: who.actor().to_string(),
        grants: who.grants().iter().map(GrantDto::of).collect(),
        mfa: who.mfa(),
    })
}

#[derive(Debug, Serialize, ToSchema)]
pub struct UserDto {
    id: String,
    name: String,
    state: String,
    totp: bool,
    /// The proposals for the roles asked for (applied at once with a
    /// quorum of one).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    role_proposals: Vec<ProposalRef>,
}

/// A governance proposal made on the caller's behalf.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalRef {
    id: String,
    /// `open` (waiting for the admin quorum) or `applied`.
    state: String,
}

fn proposal_ref(v: service::governance::ProposalView) -> ProposalRef {
    ProposalRef {
        id: v.proposal.id,
        state: v.proposal.state,
    }
}

/// Users (admin), in creation order (paged by id).
#[utoipa::path(get, path = "/v1/users", tag = "users", params(PageQuery),
    responses((status = 200, body = [UserDto])))]
async fn list_users(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<PageQuery>,
) -> Result<Json<Vec<UserDto>>, ApiError> {
    let can = can::<perm::ManageUsers>(&svc, &who)?;
    let users = can.users().await.map_err(service_error)?;
    let mut users: Vec<(String, _)> = users.into_iter().map(|u| (u.id.to_string(), u)).collect();
    users = page(users, |(id, _)| id, &q)?;
    Ok(Json(
        users
            .into_iter()
            .map(|(_, u)| u)
            .map(|u| UserDto {
                id: u.id.to_string(),
                name: u.name,
                state: u.state,
                totp: u.totp_sealed.is_some(),
                role_proposals: vec![],
            })
            .collect(),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    /// At least 12 characters.
    password: String,
    grants: Vec<GrantDto>,
}

impl std::fmt::Debug for NewUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewUser")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Creates a user (admin).
#[utoipa::path(post, path = "/v1/users", tag = "users", request_body = NewUser,
    responses((status = 201, body = UserDto), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_user(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(req): Json<NewUser>,
) -> Result<(StatusCode, Json<UserDto>), ApiError> {
    let can = can::<perm::ManageUsers>(&svc, &who)?;
    let grants = req
        .grants
        .iter()
        .map(GrantDto::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let (u, proposals) = can
        .create_user(&req.name, req.password, &grants)
        .await
        .map_err(service_error)?;
    Ok((
        StatusCode::CREATED,
        Json(UserDto {
            id: u.id.to_string(),
            name: u.name,
            state: u.state,
            totp: false,
            role_proposals: proposals.into_iter().map(proposal_ref).collect(),
        }),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantChange {
    /// `user:<uuid>` or `api-key:<uuid>`.
    principal: String,
    role: String,
    scope: String,
    /// For a temporary delegation: when it lapses (unix ms).
    until_ms: Option<i64>,
}

impl GrantChange {
    fn parse(&self) -> Result<(Actor, Grant), ApiError> {
        let actor: Actor = self
            .principal
            .parse()
            .map_err(|e: domain::ActorError| bad(e.to_string()))?;
        if !matches!(actor, Actor::User(_) | Actor::ApiKey(_)) {
            return Err(bad("grants are held by users and API keys"));
        }
        let g = GrantDto {
            role: self.role.clone(),
            scope: self.scope.clone(),
        }
        .parse()?;
        Ok((actor, g))
    }
}

/// Proposes a role (admin): applied when the admin quorum approves.
#[utoipa::path(post, path = "/v1/grants", tag = "users", request_body = GrantChange,
    responses((status = 200, body = ProposalRef)))]
async fn add_grant(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(req): Json<GrantChange>,
) -> Result<Json<ProposalRef>, ApiError> {
    let can = can::<perm::ManageUsers>(&svc, &who)?;
    let (actor, grant) = req.parse()?;
    let v = can
        .grant(
            &actor,
            grant,
            req.until_ms.map(domain::Timestamp::from_millis),
        )
        .await
        .map_err(service_error)?;
    Ok(Json(proposal_ref(v)))
}

/// Proposes removing a role (admin): applied when the admin quorum approves.
#[utoipa::path(post, path = "/v1/grants/revoke", tag = "users", request_body = GrantChange,
    responses((status = 200, body = ProposalRef)))]
async fn remove_grant(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(req): Json<GrantChange>,
) -> Result<Json<ProposalRef>, ApiError> {
    let can = can::<perm::ManageUsers>(&svc, &who)?;
    let (actor, grant) = req.parse()?;
    let v = can
        .revoke_grant(&actor, grant)
        .await
        .map_err(service_error)?;
    Ok(Json(proposal_ref(v)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyDto {
    id: String,
    name: String,
    public_key: String,
    expires_at_ms: i64,
    revoked: bool,
    /// The user who holds the key (`user:<uuid>`): a quorum counts people,
    /// so their keys and their session supply one approval. `null`: the
    /// key is a person of its own.
    owner: Option<String>,
    /// The proposals for the roles asked for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    role_proposals: Vec<ProposalRef>,
}

/// API keys (admin), in creation order (paged by id).
#[utoipa::path(get, path = "/v1/api-keys", tag = "api-keys", params(PageQuery),
    responses((status = 200, body = [ApiKeyDto])))]
async fn list_api_keys(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<PageQuery>,
) -> Result<Json<Vec<ApiKeyDto>>, ApiError> {
    let can = can::<perm::ManageApiKeys>(&svc, &who)?;
    let keys = can.api_keys().await.map_err(service_error)?;
    let keys = page(keys.into_iter().map(key_dto).collect(), |k| &k.id, &q)?;
    Ok(Json(keys))
}

fn key_dto(k: service::storage::ApiKeyRow) -> ApiKeyDto {
    ApiKeyDto {
        id: k.id.to_string(),
        name: k.name,
        public_key: k.public_key,
        expires_at_ms: k.expires_at.as_millis(),
        revoked: k.revoked_at.is_some(),
        owner: k.owner.map(|o| o.to_string()),
        role_proposals: vec![],
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewApiKey {
    name: String,
    /// Hex of the Ed25519 public key, made on the client.
    public_key: String,
    grants: Vec<GrantDto>,
    valid_days: u32,
    /// The user who will hold the key, `user:<uuid>` (an active user).
    #[serde(default)]
    owner: Option<String>,
}

/// Registers an API key's public half (admin).
#[utoipa::path(post, path = "/v1/api-keys", tag = "api-keys", request_body = NewApiKey,
    responses((status = 201, body = ApiKeyDto), (status = 400, body = ErrorBody)))]
async fn create_api_key(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(req): Json<NewApiKey>,
) -> Result<(StatusCode, Json<ApiKeyDto>), ApiError> {
    let can = can::<perm::ManageApiKeys>(&svc, &who)?;
    let pk: [u8; 32] = hex_32(&req.public_key).ok_or_else(|| bad("public_key: 64 hex digits"))?;
    let grants = req
        .grants
        .iter()
        .map(GrantDto::parse)
        .collect::<Result<Vec<_>, _>>()?;
    let owner = match req.owner.as_deref() {
        None => None,
        Some(o) => match o.parse::<Actor>() {
            Ok(Actor::User(u)) => Some(u),
            _ => return Err(bad("owner: user:<uuid>")),
        },
    };
    let (k, proposals) = can
        .register_api_key(&req.name, &pk, &grants, req.valid_days, owner)
        .await
        .map_err(service_error)?;
    let mut dto = key_dto(k);
    dto.role_proposals = proposals.into_iter().map(proposal_ref).collect();
    Ok((StatusCode::CREATED, Json(dto)))
}

fn hex_32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// Revokes an API key at once (admin).
#[utoipa::path(post, path = "/v1/api-keys/{id}/revoke", tag = "api-keys",
    params(("id" = String, Path)), responses((status = 204, description = "Revoked")))]
async fn revoke_api_key(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let can = can::<perm::ManageApiKeys>(&svc, &who)?;
    let id: ApiKeyId = id
        .parse()
        .map_err(|e: domain::IdError| bad(e.to_string()))?;
    can.revoke_api_key(id).await.map_err(service_error)?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Records after this sequence number.
    after: Option<u64>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditRecordDto {
    seq: u64,
    /// The record format (`SRAR` version, docs/FORMATS.md).
    version: u16,
    time_ms: i64,
    actor: String,
    action: String,
    subject: String,
    /// Canonical JSON, as hashed.
    details: String,
    /// The previous record's hash (32 zero bytes before the first), hex.
    prev_hash: String,
    hash: String,
}

/// The audit log, a page at a time (auditor, security officer, admin).
#[utoipa::path(get, path = "/v1/audit", tag = "audit", params(AuditQuery),
    responses((status = 200, body = [AuditRecordDto])))]
async fn audit_log(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditRecordDto>>, ApiError> {
    let can = can::<perm::ReadAudit>(&svc, &who)?;
    let after = q.after.unwrap_or(0);
    if i64::try_from(after).is_err() {
        return Err(bad("`after`: a sequence number of the log"));
    }
    let page = can
        .audit_page(after, page_limit(q.limit, 100, 1000)?)
        .await
        .map_err(service_error)?;
    Ok(Json(
        page.into_iter()
            .map(|r| AuditRecordDto {
                seq: r.seq,
                time_ms: r.time.as_millis(),
                actor: r.actor,
                action: r.action,
                subject: r.subject,
                details: r.details,
                version: r.version,
                prev_hash: r.prev_hash.to_string(),
                hash: r.hash.to_string(),
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RunsQuery {
    /// Runs started before this time (ms since 1970): the next page.
    before: Option<i64>,
    /// At most this many (1 to 100, default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FindingDto {
    /// `unsigned_outflow`: a transaction from the account that Strongroom
    /// never signed (its key may be compromised; its wallet is frozen).
    kind: String,
    /// `<network>:<address>`.
    account: String,
    wallet: Option<String>,
    key: Option<String>,
    detail: String,
    /// The freeze the run placed for it.
    freeze: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationRunDto {
    id: String,
    started_at_ms: i64,
    finished_at_ms: i64,
    /// Every account was compared; a run that could not ask a node is not,
    /// and says why in `error`.
    complete: bool,
    error: Option<String>,
    accounts: u64,
    findings: Vec<FindingDto>,
}

/// Reconciliation runs, newest first, each with what it found (auditor,
/// security officer, admin).
#[utoipa::path(get, path = "/v1/reconciliation/runs", tag = "audit", params(RunsQuery),
    responses((status = 200, body = [ReconciliationRunDto])))]
async fn reconciliation_runs(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<RunsQuery>,
) -> Result<Json<Vec<ReconciliationRunDto>>, ApiError> {
    let can = can::<perm::ReadAudit>(&svc, &who)?;
    let runs = can
        .reconciliation_runs(
            page_limit(q.limit, 20, 100)?,
            q.before.map(domain::Timestamp::from_millis),
        )
        .await
        .map_err(service_error)?;
    Ok(Json(
        runs.into_iter()
            .map(|r| ReconciliationRunDto {
                id: r.id,
                started_at_ms: r.started_at_ms,
                finished_at_ms: r.finished_at_ms,
                complete: r.complete,
                error: r.error,
                accounts: r.accounts,
                findings: r
                    .findings
                    .into_iter()
                    .map(|f| FindingDto {
                        kind: f.kind,
                        account: f.account,
                        wallet: f.wallet.map(|w| w.to_string()),
                        key: f.key.map(|k| k.to_string()),
                        detail: f.detail,
                        freeze: f.freeze,
                    })
                    .collect(),
            })
            .collect(),
    ))
}
