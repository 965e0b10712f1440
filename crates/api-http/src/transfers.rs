//! Transfers over HTTP: requested (with `Idempotency-Key`), dry-run,
//! listed and read with their history, approved or rejected with an
//! approver's signature, cancelled; and the operators' queue (retry,
//! replace, stuck).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::{Timestamp, TransferId, WalletId};
use serde::{Deserialize, Serialize};
use service::Service;
use service::identity::{AuthError, perm};
use service::storage::{ApprovalRow, TransferRow};
use service::transfers::{Priority, TransferRequest, VoteRequest};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authed;
use crate::error::{
    ApiError, ErrorBody, auth_error, bad, not_found, page_limit, scoped, service_error,
};
use crate::paging::{PageQuery, page};

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(dry_run))
        .routes(routes!(list_transfers, create_transfer))
        .routes(routes!(get_transfer))
        .routes(routes!(vote_transfer))
        .routes(routes!(cancel_transfer))
        .routes(routes!(retry_transfer))
        .routes(routes!(replace_transfer))
        .routes(routes!(stuck_transfers))
        .routes(routes!(consolidate))
        .routes(routes!(sweep_deposits))
}

/// A consolidation's network.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsolidateRequest {
    /// `bitcoin:<network>`, with `consolidate_below_sat_vb` configured.
    #[schema(example = "bitcoin:regtest")]
    network: String,
}

/// Asks for a consolidation of the wallet's small Bitcoin outputs into one
/// of its own (an initiator of the wallet): a transfer of kind
/// `consolidation`, judged by the policy (a rule matches it with `types =
/// ["consolidation"]`). `409 conflict` while the fee rate is above the
/// configured level, or when too few small outputs are free.
#[utoipa::path(post, path = "/v1/wallets/{id}/consolidate", tag = "transfers", request_body = ConsolidateRequest,
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")),
    responses((status = 201, body = TransferDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn consolidate(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Json(req): Json<ConsolidateRequest>,
) -> Result<(StatusCode, Json<TransferDto>), ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| not_found("wallet"))?;
    let Ok(domain::Network::Bitcoin(n)) = req.network.parse::<domain::Network>() else {
        return Err(bad("network: bitcoin:<network>"));
    };
    let can = svc
        .authorize::<perm::InitiateTransfer>(&who, Some(wallet))
        .map_err(scoped("wallet"))?;
    let t = can.consolidate(wallet, n).await.map_err(service_error)?;
    Ok((StatusCode::CREATED, Json(transfer_dto(&svc, t, vec![]))))
}

/// A deposit sweep's network.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SweepRequest {
    /// `eip155:<chain id>`, where the wallet has an HD account.
    #[schema(example = "eip155:1")]
    network: String,
}

/// What a deposit sweep made and left.
#[derive(Debug, Serialize, ToSchema)]
pub struct SweepDto {
    /// The transfers made: gas top-ups (kind `gas_top_up`) first, then the
    /// sweeps (kind `sweep`), each judged by the policy.
    transfers: Vec<TransferDto>,
    /// Deposit addresses left as they are, each with the reason.
    left: Vec<String>,
}

/// Sweeps what the wallet's Ethereum deposit addresses hold (at the
/// confirmation depth) into its sender (an initiator of the wallet):
/// transfers of kind `sweep` from each address, each token's gas paid
/// first by a `gas_top_up` transfer from the sender when the address holds
/// too little ether; ether swept less the fees of every sweep of the
/// address. A rule matches them with `types = ["sweep"]` and `["gas_top_up"]`.
/// An address whose earlier sweep is still under way is left for later.
#[utoipa::path(post, path = "/v1/wallets/{id}/sweep", tag = "transfers", request_body = SweepRequest,
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")),
    responses((status = 200, body = SweepDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn sweep_deposits(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Json(req): Json<SweepRequest>,
) -> Result<Json<SweepDto>, ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| not_found("wallet"))?;
    let Ok(domain::Network::Evm { chain_id }) = req.network.parse::<domain::Network>() else {
        return Err(bad("network: eip155:<chain id>"));
    };
    let can = svc
        .authorize::<perm::InitiateTransfer>(&who, Some(wallet))
        .map_err(scoped("wallet"))?;
    let made = can
        .sweep_deposits(wallet, chain_id)
        .await
        .map_err(service_error)?;
    Ok(Json(SweepDto {
        transfers: made
            .transfers
            .into_iter()
            .map(|t| transfer_dto(&svc, t, vec![]))
            .collect(),
        left: made.left,
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({
    "wallet": "0190c3a2-7d1e-7c55-9a3e-2f4b5c6d7e8f",
    "asset": "eip155:1/native",
    "amount": "0.5",
    "destination": "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
    "reference": "payout 1842",
    "external_id": "order-1842",
    "priority": "normal"
}))]
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
            kind: domain::TransferKind::Withdrawal,
            source: None,
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
    /// Base units, as a string of digits.
    amount: String,
    /// The same in the asset's units (`"0.5"`).
    amount_decimal: Option<String>,
    /// Places between the two (absent for a token no longer configured).
    decimals: Option<u8>,
    destination: String,
    /// `pending_approval`, `time_locked`, `queued`, `signing`
    /// (`awaiting_signature`: a cold wallet's, handed out for its offline
    /// signature), `signed`, `broadcasting`, `confirming`, then one of
    /// `completed`, `failed`, `blocked`, `rejected`, `expired`, `cancelled`
    /// (see ARCHITECTURE.md).
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

fn transfer_dto(svc: &Service, t: TransferRow, approvals: Vec<ApprovalRow>) -> TransferDto {
    let decimals = svc.asset_decimals(&t.asset);
    TransferDto {
        amount_decimal: crate::amounts::decimal(t.amount, decimals),
        decimals,
        id: t.id.to_string(),
        wallet: t.wallet.to_string(),
        initiator: t.initiator.to_string(),
        asset: t.asset,
        amount: t.amount.to_string(),
        destination: crate::error::shown_address(t.destination),
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
    let key = match headers.get(crate::auth::IDEMPOTENCY_HEADER) {
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
            .approvals_of(s.transfer.id)
            .await
            .map_err(service_error)?;
        let mut resp = Json(transfer_dto(&svc, s.transfer, approvals)).into_response();
        resp.headers_mut()
            .insert("idempotency-replayed", HeaderValue::from_static("true"));
        return Ok(resp);
    }
    Ok((
        StatusCode::CREATED,
        Json(transfer_dto(&svc, s.transfer, vec![])),
    )
        .into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TransferQuery {
    /// Only this wallet's transfers (needed unless you read every wallet).
    wallet: Option<String>,
    /// Only transfers in this state.
    state: Option<String>,
    /// The id of the last transfer of the previous page (the list's one
    /// cursor convention); the next page holds older ones.
    after: Option<String>,
    /// The same as `after` (kept for clients written before it).
    before: Option<String>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
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
    if q.after.is_some() && q.before.is_some() {
        return Err(bad("`after` and `before` are the same cursor: give one"));
    }
    let before: Option<TransferId> = q
        .after
        .as_deref()
        .or(q.before.as_deref())
        .map(|t| t.parse().map_err(|e: domain::IdError| bad(e.to_string())))
        .transpose()?;
    if let Some(s) = &q.state
        && s.parse::<lifecycle::State>().is_err()
    {
        return Err(bad(format!(
            "`state`: one of {}",
            lifecycle::State::ALL.map(|s| s.as_str()).join(", ")
        )));
    }
    let limit = page_limit(q.limit, 100, 500)?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, wallet)
        .map_err(|e| auth_error(&e))?;
    let rows = can
        .transfers(wallet, q.state.as_deref(), before, limit)
        .await
        .map_err(service_error)?;
    Ok(Json(
        rows.into_iter()
            .map(|t| transfer_dto(&svc, t, vec![]))
            .collect(),
    ))
}

pub(crate) fn transfer_id(id: &str) -> Result<TransferId, ApiError> {
    id.parse().map_err(|_| not_found("transfer"))
}

/// The wallet of a transfer, or `404` for anyone outside it.
pub(crate) async fn wallet_of(svc: &Service, id: TransferId) -> Result<WalletId, ApiError> {
    svc.transfer_wallet(id).await.map_err(service_error)
}

/// A transfer with its decision and approvals.
#[utoipa::path(get, path = "/v1/transfers/{id}", tag = "transfers",
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")), responses((status = 200, body = TransferDto), (status = 404, body = ErrorBody)))]
async fn get_transfer(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<TransferDto>, ApiError> {
    let id = transfer_id(&id)?;
    let wallet = wallet_of(&svc, id).await?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, Some(wallet))
        .map_err(scoped("transfer"))?;
    let (t, a) = can.transfer(id).await.map_err(service_error)?;
    let history = can.history(id).await.map_err(service_error)?;
    let mut dto = transfer_dto(&svc, t, a);
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
    /// Over the approval statement: hex of an Ed25519 signature, or a
    /// passkey's WebAuthn assertion whose challenge is the statement's
    /// SHA-256 digest, `webauthn:<authenticatorData>.<clientDataJSON>.<signature>`
    /// (each base64url without padding).
    #[schema(max_length = 8192)]
    signature: String,
    /// Why, for a rejection: in the transfer's history and the audit
    /// record (not signed).
    #[schema(max_length = 500)]
    reason: Option<String>,
}

/// An approver's signed vote. The statement signed is `SRAP` v1 over
/// (digest, policy version, decision id, expiry, vote); see `strongroom approve`.
#[utoipa::path(post, path = "/v1/transfers/{id}/approvals", tag = "transfers", request_body = TransferVote,
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")),
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
    let signature: policy::ApprovalSignature = body
        .signature
        .parse()
        .map_err(|e: policy::passkey::SignatureFormError| bad(e.to_string()))?;
    let wallet = wallet_of(&svc, id).await?;
    let can = svc
        .authorize::<perm::ApproveTransfer>(&who, Some(wallet))
        .map_err(scoped("transfer"))?;
    let t = can
        .vote(
            id,
            &VoteRequest {
                vote,
                expires_at: Timestamp::from_millis(body.expires_at_ms),
                signature,
                reason: body.reason,
            },
        )
        .await
        .map_err(service_error)?;
    let a = svc.approvals_of(id).await.map_err(service_error)?;
    Ok(Json(transfer_dto(&svc, t, a)))
}

/// Cancels a transfer not yet handed to the chain: an approver of its
/// wallet, its initiator, or an operator of the queue.
#[utoipa::path(post, path = "/v1/transfers/{id}/cancel", tag = "transfers",
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")), responses((status = 200, body = TransferDto), (status = 409, body = ErrorBody)))]
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
                .map_err(scoped("transfer"))?
                .cancel(id)
                .await
        }
        Err(AuthError::Forbidden) => {
            svc.authorize::<perm::InitiateTransfer>(&who, Some(wallet))
                .map_err(scoped("transfer"))?
                .cancel_own(id)
                .await
        }
        Err(other) => return Err(auth_error(&other)),
    }
    .map_err(service_error)?;
    Ok(Json(transfer_dto(&svc, t, vec![])))
}

/// Another attempt now for a queued transfer held for a person or waiting
/// out a backoff (an operator of the queue; audited).
#[utoipa::path(post, path = "/v1/transfers/{id}/retry", tag = "transfers",
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")), responses((status = 200, body = TransferDto), (status = 409, body = ErrorBody)))]
async fn retry_transfer(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<TransferDto>, ApiError> {
    let id = transfer_id(&id)?;
    let wallet = wallet_of(&svc, id).await?;
    let t = svc
        .authorize::<perm::OperateQueue>(&who, Some(wallet))
        .map_err(scoped("transfer"))?
        .retry(id)
        .await
        .map_err(service_error)?;
    Ok(Json(transfer_dto(&svc, t, vec![])))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StuckDto {
    transfer: TransferDto,
    /// Why it needs a look.
    why: String,
}

/// What is stuck and why: queued transfers held for a person or whose
/// attempts failed, and transfers on their way to the chain that have not
/// moved for 15 minutes; the 500 oldest at most, paged by transfer id.
#[utoipa::path(get, path = "/v1/transfers/stuck", tag = "transfers", params(PageQuery),
    responses((status = 200, body = [StuckDto]), (status = 403, body = ErrorBody)))]
async fn stuck_transfers(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<PageQuery>,
) -> Result<Json<Vec<StuckDto>>, ApiError> {
    let can = svc
        .authorize::<perm::OperateQueue>(&who, None)
        .map_err(|e| auth_error(&e))?;
    let rows = can.stuck(500).await.map_err(service_error)?;
    let mut rows: Vec<(String, _)> = rows
        .into_iter()
        .map(|s| (s.transfer.id.to_string(), s))
        .collect();
    rows = page(rows, |(id, _)| id, &q)?;
    let rows = rows.into_iter().map(|(_, s)| s);
    Ok(Json(
        rows.into_iter()
            .map(|s| StuckDto {
                transfer: transfer_dto(&svc, s.transfer, vec![]),
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
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")),
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
        .map_err(scoped("transfer"))?
        .replace(id, how)
        .await
        .map_err(service_error)?;
    Ok(Json(
        serde_json::json!({ "send": send.id, "state": send.state }),
    ))
}
