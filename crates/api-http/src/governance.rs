//! Policy, governance, freezes, transfers and approvals over HTTP.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::{Permission, Timestamp, TransferId, WalletId, permits};
use serde::{Deserialize, Serialize};
use service::Service;
use service::governance::{Change, FreezeScope, ProposalView};
use service::identity::{AuthError, Principal, perm};
use service::storage::{ApprovalRow, FreezeRow, ProposalRow, TransferRow};
use service::transfers::{Priority, TransferRequest, VoteRequest};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authed, can};
use crate::error::{ApiError, ErrorBody, auth_error, service_error};

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(current_policy))
        .routes(routes!(dry_run))
        .routes(routes!(list_proposals, create_proposal))
        .routes(routes!(get_proposal))
        .routes(routes!(vote_proposal))
        .routes(routes!(list_freezes, create_freeze))
        .routes(routes!(address_book))
        .routes(routes!(wallet_balances))
        .routes(routes!(wallet_deposits))
        .routes(routes!(list_transfers, create_transfer))
        .routes(routes!(get_transfer))
        .routes(routes!(vote_transfer))
        .routes(routes!(cancel_transfer))
        .routes(routes!(retry_transfer))
        .routes(routes!(replace_transfer))
        .routes(routes!(stuck_transfers))
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("{what} not found"),
    )
}

/// Those who govern or oversee read proposals, freezes and the policy.
fn overseer(who: &Principal) -> Result<(), ApiError> {
    let any = [
        Permission::ManageUsers,
        Permission::ManagePolicy,
        Permission::Freeze,
        Permission::ReadAudit,
    ]
    .iter()
    .any(|p| permits(who.grants(), *p, None));
    if !any {
        return Err(auth_error(&AuthError::Forbidden));
    }
    if !who.mfa() {
        return Err(auth_error(&AuthError::MfaRequired));
    }
    Ok(())
}

#[derive(Debug, Serialize, ToSchema)]
pub struct PolicyDto {
    version: u64,
    digest: String,
    /// The document as canonical JSON.
    #[schema(value_type = Object)]
    document: serde_json::Value,
    created_at_ms: i64,
}

/// The policy in force (`404` before the first one).
#[utoipa::path(get, path = "/v1/policy", tag = "policy",
    responses((status = 200, body = PolicyDto), (status = 404, body = ErrorBody)))]
async fn current_policy(
    State(svc): State<Service>,
    Authed(who): Authed,
) -> Result<Json<PolicyDto>, ApiError> {
    overseer(&who)?;
    let p = svc
        .store()
        .current_policy()
        .await
        .map_err(|e| service_error(e.into()))?
        .ok_or_else(|| not_found("policy"))?;
    Ok(Json(PolicyDto {
        version: p.version,
        digest: p.digest,
        document: serde_json::from_str(&p.document).map_err(|e| {
            service_error(
                service::storage::StorageError::Corrupt(format!("stored policy: {e}")).into(),
            )
        })?,
        created_at_ms: p.created_at.as_millis(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferBody {
    wallet: String,
    /// `eip155:<chain>/native` or `eip155:<chain>/erc20:<contract>`.
    asset: String,
    /// A decimal amount in the asset's units, as a string.
    amount: String,
    destination: String,
    reference: Option<String>,
    /// Your own id for the transfer, unique among your transfers.
    external_id: Option<String>,
    /// `low`, `normal` (the default), `high` or `urgent`: higher goes first
    /// among queued transfers.
    #[schema(value_type = Option<String>)]
    priority: Option<Priority>,
    /// A transfer that must complete first; if it ends otherwise, this one
    /// fails.
    depends_on: Option<String>,
}

impl TransferBody {
    fn parse(&self) -> Result<TransferRequest, ApiError> {
        Ok(TransferRequest {
            wallet: self
                .wallet
                .parse()
                .map_err(|e: domain::IdError| bad(e.to_string()))?,
            asset: self
                .asset
                .parse()
                .map_err(|e: domain::AssetError| bad(e.to_string()))?,
            amount: self.amount.clone(),
            destination: self.destination.clone(),
            reference: self.reference.clone(),
            external_id: self.external_id.clone(),
            priority: self.priority.unwrap_or_default(),
            depends_on: self
                .depends_on
                .as_deref()
                .map(|d| {
                    d.parse()
                        .map_err(|e: domain::IdError| bad(format!("depends_on: {e}")))
                })
                .transpose()?,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionDto {
    /// The policy version judged under (none before the first policy).
    policy_version: Option<u64>,
    /// The decision with its explanation: outcome, deciding rule, trace.
    #[schema(value_type = Object)]
    decision: serde_json::Value,
    /// The explanation as text, one line per rule tried.
    explanation: String,
}

/// Would this transfer be allowed, and why? Nothing is created.
#[utoipa::path(post, path = "/v1/policy/dry-run", tag = "policy", request_body = TransferBody,
    responses((status = 200, body = DecisionDto), (status = 400, body = ErrorBody)))]
async fn dry_run(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(body): Json<TransferBody>,
) -> Result<Json<DecisionDto>, ApiError> {
    let req = body.parse()?;
    let can = svc
        .authorize::<perm::InitiateTransfer>(&who, Some(req.wallet))
        .map_err(|e| auth_error(&e))?;
    let j = can.dry_run(&req).await.map_err(service_error)?;
    Ok(Json(DecisionDto {
        policy_version: j.policy_version,
        decision: serde_json::to_value(&j.decision).map_err(|_| bad("decision"))?,
        explanation: j.decision.to_string(),
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct VoteDto {
    voter: String,
    vote: String,
    at_ms: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProposalDto {
    id: String,
    kind: String,
    summary: String,
    #[schema(value_type = Object)]
    change: serde_json::Value,
    proposed_by: String,
    /// `open`, `applied`, `vetoed` or `expired`.
    state: String,
    created_at_ms: i64,
    expires_at_ms: i64,
    votes: Vec<VoteDto>,
}

fn proposal_dto(p: ProposalRow, votes: Vec<VoteDto>) -> ProposalDto {
    ProposalDto {
        change: serde_json::from_str(&p.payload).unwrap_or(serde_json::Value::Null),
        id: p.id,
        kind: p.kind,
        summary: p.summary,
        proposed_by: p.proposed_by.to_string(),
        state: p.state,
        created_at_ms: p.created_at.as_millis(),
        expires_at_ms: p.expires_at.as_millis(),
        votes,
    }
}

fn view_dto(v: ProposalView) -> ProposalDto {
    let votes = v
        .votes
        .into_iter()
        .map(|v| VoteDto {
            voter: v.voter.to_string(),
            vote: v.vote,
            at_ms: v.at.as_millis(),
        })
        .collect();
    proposal_dto(v.proposal, votes)
}

/// Recent proposals, newest first.
#[utoipa::path(get, path = "/v1/proposals", tag = "governance",
    responses((status = 200, body = [ProposalDto])))]
async fn list_proposals(
    State(svc): State<Service>,
    Authed(who): Authed,
) -> Result<Json<Vec<ProposalDto>>, ApiError> {
    overseer(&who)?;
    let rows = svc.proposals(200).await.map_err(service_error)?;
    Ok(Json(
        rows.into_iter().map(|p| proposal_dto(p, vec![])).collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalBody {
    /// `{"kind": "set_policy", "document": "..."}`, `add_address`,
    /// `remove_address`, `grant`, `revoke`, `register_approver_key`,
    /// `revoke_approver_key`, `set_wallet_tier`, `release_freeze`.
    #[schema(value_type = Object)]
    change: serde_json::Value,
}

/// Proposes a change. An admin's proposal carries their approval; it
/// applies when the admin quorum is reached.
#[utoipa::path(post, path = "/v1/proposals", tag = "governance", request_body = ProposalBody,
    responses((status = 201, body = ProposalDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
async fn create_proposal(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(body): Json<ProposalBody>,
) -> Result<(StatusCode, Json<ProposalDto>), ApiError> {
    let change: Change =
        serde_json::from_value(body.change).map_err(|e| bad(format!("change: {e}")))?;
    let v = svc.propose(&who, change).await.map_err(service_error)?;
    Ok((StatusCode::CREATED, Json(view_dto(v))))
}

/// One proposal with its votes.
#[utoipa::path(get, path = "/v1/proposals/{id}", tag = "governance",
    params(("id" = String, Path)), responses((status = 200, body = ProposalDto), (status = 404, body = ErrorBody)))]
async fn get_proposal(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<ProposalDto>, ApiError> {
    overseer(&who)?;
    let v = svc.proposal(&id).await.map_err(service_error)?;
    Ok(Json(view_dto(v)))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalVote {
    /// `approve` or `veto`.
    vote: String,
}

/// An admin's vote on a proposal: `approve` counts toward the quorum,
/// `veto` ends it.
#[utoipa::path(post, path = "/v1/proposals/{id}/votes", tag = "governance", request_body = ProposalVote,
    params(("id" = String, Path)), responses((status = 200, body = ProposalDto), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn vote_proposal(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Json(body): Json<ProposalVote>,
) -> Result<Json<ProposalDto>, ApiError> {
    let approve = match body.vote.as_str() {
        "approve" => true,
        "veto" => false,
        _ => return Err(bad("vote: approve or veto")),
    };
    let v = svc.vote(&who, &id, approve).await.map_err(service_error)?;
    Ok(Json(view_dto(v)))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceDto {
    asset: String,
    symbol: String,
    decimals: u8,
    /// Base units as decimal strings. `on_chain`, `credited` and `available`
    /// are absent when no node answered.
    on_chain: Option<String>,
    /// As of the newest block at the network's confirmation depth: deposits
    /// count once this deep.
    credited: Option<String>,
    /// Deposits seen, not yet at the confirmation depth.
    incoming: String,
    /// Queued, or on its way and not yet at the confirmation depth.
    reserved: String,
    /// Waiting for approvals or in a time lock.
    awaiting: String,
    available: Option<String>,
}

/// A wallet's balances: on chain, reserved, awaiting approval, available.
#[utoipa::path(get, path = "/v1/wallets/{id}/balances", tag = "wallets",
    params(("id" = String, Path)), responses((status = 200, body = [BalanceDto]), (status = 404, body = ErrorBody)))]
async fn wallet_balances(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<BalanceDto>>, ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| not_found("wallet"))?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, Some(wallet))
        .map_err(|e| match e {
            AuthError::Forbidden => not_found("wallet"),
            other => auth_error(&other),
        })?;
    let rows = can.balances(wallet).await.map_err(service_error)?;
    Ok(Json(
        rows.into_iter()
            .map(|b| BalanceDto {
                asset: b.asset.id().to_string(),
                symbol: b.asset.symbol().as_str().to_owned(),
                decimals: b.asset.decimals().get(),
                on_chain: b.on_chain.map(|v| v.to_string()),
                credited: b.credited.map(|v| v.to_string()),
                incoming: b.incoming.to_string(),
                reserved: b.reserved.to_string(),
                awaiting: b.awaiting.to_string(),
                available: b.available.map(|v| v.to_string()),
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AddressDto {
    id: String,
    network: String,
    /// Canonical form (EVM: lower-case hex; Bitcoin: bech32).
    address: String,
    label: String,
    group: Option<String>,
    /// Policy treats it as whitelisted from then on (cooling-off).
    usable_from_ms: i64,
}

/// The address book (entries are added and removed by proposals).
#[utoipa::path(get, path = "/v1/address-book", tag = "governance",
    responses((status = 200, body = [AddressDto])))]
async fn address_book(
    State(svc): State<Service>,
    Authed(who): Authed,
) -> Result<Json<Vec<AddressDto>>, ApiError> {
    overseer(&who)?;
    let rows = svc
        .store()
        .whitelist()
        .await
        .map_err(|e| service_error(e.into()))?;
    Ok(Json(
        rows.into_iter()
            .map(|w| AddressDto {
                id: w.id,
                network: w.network,
                address: w.address,
                label: w.label,
                group: w.group,
                usable_from_ms: w.usable_from.as_millis(),
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FreezeDto {
    id: String,
    scope: String,
    reason: String,
    frozen_by: String,
    frozen_at_ms: i64,
    /// When a quorum's release takes effect (after its cool-down).
    released_at_ms: Option<i64>,
}

fn freeze_dto(f: FreezeRow) -> FreezeDto {
    FreezeDto {
        id: f.id,
        scope: f.scope,
        reason: f.reason,
        frozen_by: f.frozen_by.to_string(),
        frozen_at_ms: f.frozen_at.as_millis(),
        released_at_ms: f.released_at.map(Timestamp::as_millis),
    }
}

/// Freezes in force.
#[utoipa::path(get, path = "/v1/freezes", tag = "governance",
    responses((status = 200, body = [FreezeDto])))]
async fn list_freezes(
    State(svc): State<Service>,
    Authed(who): Authed,
) -> Result<Json<Vec<FreezeDto>>, ApiError> {
    overseer(&who)?;
    let rows = svc.freezes().await.map_err(service_error)?;
    Ok(Json(rows.into_iter().map(freeze_dto).collect()))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeBody {
    /// `global`, `wallet:<uuid>` or `key:<uuid>`.
    scope: String,
    reason: String,
}

/// Freezes at once (security officer or admin). Releasing takes a
/// `release_freeze` proposal under the admin quorum.
#[utoipa::path(post, path = "/v1/freezes", tag = "governance", request_body = FreezeBody,
    responses((status = 201, body = FreezeDto), (status = 400, body = ErrorBody)))]
async fn create_freeze(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(body): Json<FreezeBody>,
) -> Result<(StatusCode, Json<FreezeDto>), ApiError> {
    let can = can::<perm::Freeze>(&svc, &who)?;
    let scope: FreezeScope = body.scope.parse().map_err(service_error)?;
    let f = can
        .freeze(scope, &body.reason)
        .await
        .map_err(service_error)?;
    Ok((StatusCode::CREATED, Json(freeze_dto(f))))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalDto {
    approver: String,
    vote: String,
    expires_at_ms: i64,
    at_ms: i64,
    voided: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransferDto {
    id: String,
    wallet: String,
    initiator: String,
    asset: String,
    /// Base units, as a decimal string.
    amount: String,
    destination: String,
    /// `pending_approval`, `time_locked`, `queued`, `signing`, `signed`,
    /// `broadcasting`, `confirming`, then one of `completed`, `failed`,
    /// `blocked`, `rejected`, `expired`, `cancelled` (see ARCHITECTURE.md).
    state: String,
    /// What approvers sign: the intent's digest, the policy version and the
    /// decision id (with their vote and an expiry).
    digest: String,
    /// The intent's canonical bytes (`SRTI` v1), hex: its SHA-256 is the
    /// digest, so an approver can check what they sign.
    intent: String,
    policy_version: u64,
    decision_id: String,
    #[schema(value_type = Object)]
    decision: serde_json::Value,
    expires_at_ms: Option<i64>,
    unlock_at_ms: Option<i64>,
    eth_send: Option<String>,
    /// The Bitcoin send (a batch) carrying it out.
    btc_send: Option<String>,
    /// Your own id for it.
    external_id: Option<String>,
    /// Failed attempts to hand it to the chain, and the last error.
    attempts: u32,
    last_error: Option<String>,
    /// `low`, `normal`, `high` or `urgent`.
    #[schema(value_type = String)]
    priority: Option<Priority>,
    depends_on: Option<String>,
    /// Held for a person since then (no automatic retry).
    held_at_ms: Option<i64>,
    finished_at_ms: Option<i64>,
    created_at_ms: i64,
    approvals: Vec<ApprovalDto>,
    /// Every state it passed through (on a single transfer's read).
    #[serde(skip_serializing_if = "Option::is_none")]
    history: Option<Vec<HistoryDto>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryDto {
    state: String,
    actor: String,
    why: String,
    at_ms: i64,
}

fn transfer_dto(t: TransferRow, approvals: Vec<ApprovalRow>) -> TransferDto {
    TransferDto {
        id: t.id.to_string(),
        wallet: t.wallet.to_string(),
        initiator: t.initiator.to_string(),
        asset: t.asset,
        amount: t.amount.to_string(),
        destination: t.destination,
        state: t.state,
        digest: t.digest,
        intent: hex::encode(&t.intent),
        policy_version: t.policy_version,
        decision_id: t.decision_id,
        decision: serde_json::from_str(&t.decision).unwrap_or(serde_json::Value::Null),
        expires_at_ms: t.expires_at.map(Timestamp::as_millis),
        unlock_at_ms: t.unlock_at.map(Timestamp::as_millis),
        eth_send: t.eth_send_id,
        btc_send: t.btc_send_id,
        external_id: t.external_id,
        attempts: t.attempts,
        last_error: t.last_error,
        priority: Priority::of_rank(t.priority),
        depends_on: t.depends_on.map(|d| d.to_string()),
        held_at_ms: t.held_at.map(Timestamp::as_millis),
        finished_at_ms: t.finished_at.map(Timestamp::as_millis),
        created_at_ms: t.created_at.as_millis(),
        history: None,
        approvals: approvals
            .into_iter()
            .map(|a| ApprovalDto {
                approver: a.approver.to_string(),
                vote: a.vote,
                expires_at_ms: a.expires_at.as_millis(),
                at_ms: a.at.as_millis(),
                voided: a.voided_at.is_some(),
            })
            .collect(),
    }
}

/// Requests a transfer: it is judged by the policy in force and stored
/// with its decision (blocked ones too, for the record). With an
/// `Idempotency-Key` header, a retry of the same request returns the same
/// transfer (`200`, `Idempotency-Replayed: true`) and creates nothing.
#[utoipa::path(post, path = "/v1/transfers", tag = "transfers", request_body = TransferBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "1 to 255 printable characters; retries with it are safe")),
    responses((status = 201, body = TransferDto), (status = 200, description = "a replay of the same request", body = TransferDto),
        (status = 400, body = ErrorBody),
        (status = 409, description = "`frozen`, `insufficient_funds`, or `conflict` (external id taken)", body = ErrorBody),
        (status = 503, description = "`node_unavailable`: the balance could not be read", body = ErrorBody),
        (status = 422, description = "`idempotency_key_reused` with another request", body = ErrorBody)))]
async fn create_transfer(
    State(svc): State<Service>,
    Authed(who): Authed,
    headers: HeaderMap,
    Json(body): Json<TransferBody>,
) -> Result<Response, ApiError> {
    let req = body.parse()?;
    let key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .map_err(|_| bad("Idempotency-Key: printable ASCII"))?
                .to_owned(),
        ),
        None => None,
    };
    let can = svc
        .authorize::<perm::InitiateTransfer>(&who, Some(req.wallet))
        .map_err(|e| auth_error(&e))?;
    let s = can
        .submit_once(&req, key.as_deref())
        .await
        .map_err(service_error)?;
    if s.replayed {
        let approvals = svc
            .store()
            .approvals(s.transfer.id)
            .await
            .map_err(|e| service_error(e.into()))?;
        let mut resp = Json(transfer_dto(s.transfer, approvals)).into_response();
        resp.headers_mut()
            .insert("idempotency-replayed", HeaderValue::from_static("true"));
        return Ok(resp);
    }
    Ok((StatusCode::CREATED, Json(transfer_dto(s.transfer, vec![]))).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TransferQuery {
    /// Only this wallet's transfers (needed unless you read every wallet).
    wallet: Option<String>,
    /// Only transfers in this state.
    state: Option<String>,
    /// The page after this transfer id (the last of the previous page).
    before: Option<String>,
    /// At most this many (1 to 500, default 100).
    limit: Option<u32>,
}

/// Transfers, newest first.
#[utoipa::path(get, path = "/v1/transfers", tag = "transfers", params(TransferQuery),
    responses((status = 200, body = [TransferDto]), (status = 403, body = ErrorBody)))]
async fn list_transfers(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<TransferQuery>,
) -> Result<Json<Vec<TransferDto>>, ApiError> {
    let wallet: Option<WalletId> = q
        .wallet
        .as_deref()
        .map(|w| w.parse().map_err(|e: domain::IdError| bad(e.to_string())))
        .transpose()?;
    let before: Option<TransferId> = q
        .before
        .as_deref()
        .map(|t| t.parse().map_err(|e: domain::IdError| bad(e.to_string())))
        .transpose()?;
    if let Some(s) = &q.state
        && !(1..=32).contains(&s.len())
    {
        return Err(bad("state: a transfer state"));
    }
    let can = svc
        .authorize::<perm::ReadWallet>(&who, wallet)
        .map_err(|e| auth_error(&e))?;
    let rows = can
        .transfers(wallet, q.state.as_deref(), before, q.limit.unwrap_or(100))
        .await
        .map_err(service_error)?;
    Ok(Json(
        rows.into_iter().map(|t| transfer_dto(t, vec![])).collect(),
    ))
}

fn transfer_id(id: &str) -> Result<TransferId, ApiError> {
    id.parse().map_err(|_| not_found("transfer"))
}

/// The wallet of a transfer, or `404` for anyone outside it.
async fn wallet_of(svc: &Service, id: TransferId) -> Result<WalletId, ApiError> {
    svc.transfer_wallet(id).await.map_err(service_error)
}

fn scoped(e: AuthError) -> ApiError {
    match e {
        AuthError::Forbidden => not_found("transfer"),
        other => auth_error(&other),
    }
}

/// A transfer with its decision and approvals.
#[utoipa::path(get, path = "/v1/transfers/{id}", tag = "transfers",
    params(("id" = String, Path)), responses((status = 200, body = TransferDto), (status = 404, body = ErrorBody)))]
async fn get_transfer(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<TransferDto>, ApiError> {
    let id = transfer_id(&id)?;
    let wallet = wallet_of(&svc, id).await?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, Some(wallet))
        .map_err(scoped)?;
    let (t, a) = can.transfer(id).await.map_err(service_error)?;
    let history = can.history(id).await.map_err(service_error)?;
    let mut dto = transfer_dto(t, a);
    dto.history = Some(
        history
            .into_iter()
            .map(|h| HistoryDto {
                state: h.state,
                actor: h.actor,
                why: h.why,
                at_ms: h.at.as_millis(),
            })
            .collect(),
    );
    Ok(Json(dto))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TransferVote {
    /// `approve` or `reject`.
    vote: String,
    /// When this approval lapses (unix ms), as signed.
    expires_at_ms: i64,
    /// Hex of the Ed25519 signature over the approval statement.
    signature: String,
}

/// An approver's signed vote. The statement signed is `SRAP` v1 over
/// (digest, policy version, decision id, expiry, vote); see `strongroom approve`.
#[utoipa::path(post, path = "/v1/transfers/{id}/approvals", tag = "transfers", request_body = TransferVote,
    params(("id" = String, Path)),
    responses((status = 200, body = TransferDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn vote_transfer(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Json(body): Json<TransferVote>,
) -> Result<Json<TransferDto>, ApiError> {
    let id = transfer_id(&id)?;
    let vote = match body.vote.as_str() {
        "approve" => policy::Vote::Approve,
        "reject" => policy::Vote::Reject,
        _ => return Err(bad("vote: approve or reject")),
    };
    let signature: [u8; 64] = hex::decode(&body.signature)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| bad("signature: 128 hex digits"))?;
    let wallet = wallet_of(&svc, id).await?;
    let can = svc
        .authorize::<perm::ApproveTransfer>(&who, Some(wallet))
        .map_err(scoped)?;
    let t = can
        .vote(
            id,
            &VoteRequest {
                vote,
                expires_at: Timestamp::from_millis(body.expires_at_ms),
                signature,
            },
        )
        .await
        .map_err(service_error)?;
    let a = svc
        .store()
        .approvals(id)
        .await
        .map_err(|e| service_error(e.into()))?;
    Ok(Json(transfer_dto(t, a)))
}

/// Cancels a transfer not yet handed to the chain: an approver of its
/// wallet, its initiator, or an operator of the queue.
#[utoipa::path(post, path = "/v1/transfers/{id}/cancel", tag = "transfers",
    params(("id" = String, Path)), responses((status = 200, body = TransferDto), (status = 409, body = ErrorBody)))]
async fn cancel_transfer(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<TransferDto>, ApiError> {
    let id = transfer_id(&id)?;
    let wallet = wallet_of(&svc, id).await?;
    let t = match svc.authorize::<perm::ApproveTransfer>(&who, Some(wallet)) {
        Ok(can) => can.cancel(id).await,
        Err(AuthError::Forbidden)
            if svc
                .authorize::<perm::OperateQueue>(&who, Some(wallet))
                .is_ok() =>
        {
            svc.authorize::<perm::OperateQueue>(&who, Some(wallet))
                .map_err(scoped)?
                .cancel(id)
                .await
        }
        Err(AuthError::Forbidden) => {
            svc.authorize::<perm::InitiateTransfer>(&who, Some(wallet))
                .map_err(scoped)?
                .cancel_own(id)
                .await
        }
        Err(other) => return Err(auth_error(&other)),
    }
    .map_err(service_error)?;
    Ok(Json(transfer_dto(t, vec![])))
}

/// Another attempt now for a queued transfer held for a person or waiting
/// out a backoff (an operator of the queue; audited).
#[utoipa::path(post, path = "/v1/transfers/{id}/retry", tag = "transfers",
    params(("id" = String, Path)), responses((status = 200, body = TransferDto), (status = 409, body = ErrorBody)))]
async fn retry_transfer(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<TransferDto>, ApiError> {
    let id = transfer_id(&id)?;
    let wallet = wallet_of(&svc, id).await?;
    let t = svc
        .authorize::<perm::OperateQueue>(&who, Some(wallet))
        .map_err(scoped)?
        .retry(id)
        .await
        .map_err(service_error)?;
    Ok(Json(transfer_dto(t, vec![])))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StuckDto {
    transfer: TransferDto,
    /// Why it needs a look.
    why: String,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StuckQuery {
    /// At most this many (1 to 500, default 100).
    limit: Option<u32>,
}

/// What is stuck and why: queued transfers held for a person or whose
/// attempts failed, and transfers on their way to the chain that have not
/// moved for 15 minutes.
#[utoipa::path(get, path = "/v1/transfers/stuck", tag = "transfers", params(StuckQuery),
    responses((status = 200, body = [StuckDto]), (status = 403, body = ErrorBody)))]
async fn stuck_transfers(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<StuckQuery>,
) -> Result<Json<Vec<StuckDto>>, ApiError> {
    let can = svc
        .authorize::<perm::OperateQueue>(&who, None)
        .map_err(|e| auth_error(&e))?;
    let rows = can
        .stuck(q.limit.unwrap_or(100))
        .await
        .map_err(service_error)?;
    Ok(Json(
        rows.into_iter()
            .map(|s| StuckDto {
                transfer: transfer_dto(s.transfer, vec![]),
                why: s.why,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Replace {
    /// `speed_up` (the same payment, higher fees) or `cancel` (nothing
    /// paid: zero ether to the sender itself at the same nonce).
    how: String,
    /// For a speed-up: `normal` or `fast` (the default).
    urgency: Option<String>,
}

/// Replaces a stuck transaction (an operator of the queue): the network's
/// fee caps bound it, freezes and the signing gate apply, and the transfer
/// follows whichever transaction wins its nonce.
#[utoipa::path(post, path = "/v1/transfers/{id}/replace", tag = "transfers", request_body = Replace,
    params(("id" = String, Path)),
    responses((status = 200, body = String), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn replace_transfer(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Json(body): Json<Replace>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use service::eth::{Replacement, Urgency};
    let id = transfer_id(&id)?;
    let how = match (body.how.as_str(), body.urgency.as_deref()) {
        ("speed_up", None | Some("fast")) => Replacement::SpeedUp(Urgency::Fast),
        ("speed_up", Some("normal")) => Replacement::SpeedUp(Urgency::Normal),
        ("speed_up", Some(_)) => return Err(bad("urgency: normal or fast")),
        ("cancel", None) => Replacement::Cancel,
        ("cancel", Some(_)) => return Err(bad("a cancel takes no urgency")),
        _ => return Err(bad("how: speed_up or cancel")),
    };
    let wallet = wallet_of(&svc, id).await?;
    let send = svc
        .authorize::<perm::OperateQueue>(&who, Some(wallet))
        .map_err(scoped)?
        .replace(id, how)
        .await
        .map_err(service_error)?;
    Ok(Json(
        serde_json::json!({ "send": send.id, "state": send.state }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DepositDto {
    network: String,
    tx_hash: String,
    /// The event's index in its block; -1 for ether the transaction carried.
    log_index: i64,
    address: String,
    from: String,
    asset: String,
    /// Base units, as a decimal string.
    amount: String,
    block_number: u64,
    /// `seen`, `credited` (at the confirmation depth) or `reorged`.
    state: String,
    seen_at_ms: i64,
    credited_at_ms: Option<i64>,
}

/// A wallet's deposits (Ethereum: ether and configured tokens), newest first.
#[utoipa::path(get, path = "/v1/wallets/{id}/deposits", tag = "wallets",
    params(("id" = String, Path)), responses((status = 200, body = [DepositDto]), (status = 404, body = ErrorBody)))]
async fn wallet_deposits(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<DepositDto>>, ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| not_found("wallet"))?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, Some(wallet))
        .map_err(|e| match e {
            AuthError::Forbidden => not_found("wallet"),
            other => auth_error(&other),
        })?;
    let rows = can.deposits(wallet, 100).await.map_err(service_error)?;
    Ok(Json(
        rows.into_iter()
            .map(|d| DepositDto {
                network: d.network,
                tx_hash: d.tx_hash,
                log_index: d.log_index,
                address: d.address,
                from: d.from,
                asset: d.asset,
                amount: d.amount.to_string(),
                block_number: d.block_number,
                state: d.state,
                seen_at_ms: d.seen_at.as_millis(),
                credited_at_ms: d.credited_at.map(Timestamp::as_millis),
            })
            .collect(),
    ))
}
