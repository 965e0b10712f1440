//! Governance over HTTP: the policy in force, proposals and their votes,
//! freezes and the address book.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use domain::{Permission, Timestamp, permits};
use serde::{Deserialize, Serialize};
use service::Service;
use service::governance::{Change, FreezeScope, ProposalView};
use service::identity::{AuthError, Principal, perm};
use service::storage::{FreezeRow, ProposalRow};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authed, can};
use crate::error::{ApiError, ErrorBody, auth_error, bad, not_found, plain_id, service_error};
use crate::paging::{PageQuery, page};

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(current_policy))
        .routes(routes!(list_proposals, create_proposal))
        .routes(routes!(get_proposal))
        .routes(routes!(vote_proposal))
        .routes(routes!(list_freezes, create_freeze))
        .routes(routes!(address_book))
        .routes(routes!(deny_list))
}

/// Those who govern or oversee read proposals, freezes and the policy.
pub(crate) fn overseer(who: &Principal) -> Result<(), ApiError> {
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
        .current_policy()
        .await
        .map_err(service_error)?
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

#[derive(Debug, Serialize, ToSchema)]
pub struct VoteDto {
    voter: String,
    vote: String,
    at_ms: i64,
    /// The admin's signing key and signature (hex), for an approval.
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<String>,
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
    /// What an admin signs to vote (`SRGV` v1, README "Governance votes"):
    /// SHA-256 of the change's canonical JSON (hex), and the governance
    /// log's head the proposal was made on.
    #[serde(skip_serializing_if = "Option::is_none")]
    change_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_seq: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    base_hash: Option<String>,
    /// The statement to sign to approve, hex (a client should rebuild it
    /// from the fields above and compare).
    #[serde(skip_serializing_if = "Option::is_none")]
    approve_statement: Option<String>,
}

fn proposal_dto(p: ProposalRow, votes: Vec<VoteDto>) -> ProposalDto {
    let change: serde_json::Value =
        serde_json::from_str(&p.payload).unwrap_or(serde_json::Value::Null);
    let statement = ProposalView {
        proposal: p.clone(),
        votes: Vec::new(),
    }
    .statement(true)
    .ok();
    let change_digest = statement.map(|s| hex::encode(s.change_digest));
    let approve_statement = statement.map(|s| hex::encode(s.message()));
    ProposalDto {
        change_digest,
        base_seq: p.base_seq,
        base_hash: p.base_hash.clone(),
        approve_statement,
        change,
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
            public_key: v.public_key,
            signature: v.signature,
        })
        .collect();
    proposal_dto(v.proposal, votes)
}

/// Proposals, newest first (paged by id: `after` the last of a page).
#[utoipa::path(get, path = "/v1/proposals", tag = "governance", params(PageQuery),
    responses((status = 200, body = [ProposalDto])))]
async fn list_proposals(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<PageQuery>,
) -> Result<Json<Vec<ProposalDto>>, ApiError> {
    overseer(&who)?;
    if let Some(after) = q.after() {
        plain_id(after, "proposal").map_err(|_| bad("`after`: a proposal id"))?;
    }
    let rows = svc
        .proposals(q.after(), q.limit()?)
        .await
        .map_err(service_error)?;
    // Each with its votes, as `GET /v1/proposals/{id}` shows it.
    let mut out = Vec::with_capacity(rows.len());
    for p in rows {
        out.push(view_dto(svc.proposal(&p.id).await.map_err(service_error)?));
    }
    Ok(Json(out))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposalBody {
    /// `{"kind": "set_policy", "document": "..."}`, `add_address`,
    /// `remove_address`, `grant`, `revoke`, `register_approver_key`,
    /// `revoke_approver_key`, `set_wallet_tier`, `set_price`
    /// (`{"kind": "set_price", "asset": "eip155:1/native", "usd": "3000.5"}`),
    /// `release_freeze`, `deny_addresses` (`{"kind": "deny_addresses",
    /// "list": "incident 42", "entries": [{"network": "eip155:1",
    /// "address": "0x…", "reason": "…"}]}`), `undeny_address`
    /// (`{"kind": "undeny_address", "network": …, "address": …}`),
    /// `set_fee_caps` (`{"kind": "set_fee_caps", "network": "eip155:1",
    /// "max_rate": "200000000000", "max_total": "10000000000000000"}`: wei
    /// per gas and wei, or sat/vB and sat on Bitcoin), `set_endpoints`
    /// (`{"kind": "set_endpoints", "network": "eip155:1", "origins":
    /// ["https://node.example:8545"]}`).
    #[schema(value_type = Object)]
    change: serde_json::Value,
}

/// Proposes a change. An admin's proposal carries their approval; it
/// applies when the admin quorum is reached.
#[utoipa::path(post, path = "/v1/proposals", tag = "governance", request_body = ProposalBody,
    responses((status = 201, body = ProposalDto), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "What the change names does not exist (a freeze to release)", body = ErrorBody)))]
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
    /// The admin's Ed25519 signature (128 hex digits) over the proposal's
    /// `approve_statement` (or, for a veto, the same with vote 2), by the
    /// signing key governance gave them. Required to approve.
    #[serde(default)]
    signature: Option<String>,
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
    let signature = match body.signature.as_deref() {
        None => None,
        Some(h) => Some(
            hex::decode(h)
                .ok()
                .and_then(|b| <[u8; 64]>::try_from(b).ok())
                .ok_or_else(|| bad("signature: 128 hex digits of an Ed25519 signature"))?,
        ),
    };
    let v = svc
        .vote(&who, &id, approve, signature)
        .await
        .map_err(service_error)?;
    Ok(Json(view_dto(v)))
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

/// The address book (entries are added and removed by proposals), paged
/// by entry id.
#[utoipa::path(get, path = "/v1/address-book", tag = "governance", params(PageQuery),
    responses((status = 200, body = [AddressDto])))]
async fn address_book(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<PageQuery>,
) -> Result<Json<Vec<AddressDto>>, ApiError> {
    overseer(&who)?;
    let rows = svc.address_book().await.map_err(service_error)?;
    let rows = page(rows, |w| &w.id, &q)?;
    Ok(Json(
        rows.into_iter()
            .map(|w| AddressDto {
                id: w.id,
                network: w.network,
                address: crate::error::shown_address(w.address),
                label: w.label,
                group: w.group,
                usable_from_ms: w.usable_from.as_millis(),
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeniedDto {
    /// `<network>/<address>`: the cursor for the next page.
    id: String,
    network: String,
    /// As the list compares it: EVM lower-case hex, bech32 lower case.
    address: String,
    /// The list it came from (name and version).
    list: String,
    reason: String,
    since_ms: i64,
}

/// The deny list: destinations no transfer may pay (entries are added,
/// a list at a time, and removed by proposals: `deny_addresses`,
/// `undeny_address`). Paged by id.
#[utoipa::path(get, path = "/v1/deny-list", tag = "governance", params(PageQuery),
    responses((status = 200, body = [DeniedDto])))]
async fn deny_list(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<PageQuery>,
) -> Result<Json<Vec<DeniedDto>>, ApiError> {
    overseer(&who)?;
    let rows = svc.deny_list().await.map_err(service_error)?;
    let rows = rows
        .into_iter()
        .map(|d| DeniedDto {
            id: format!("{}/{}", d.network, d.address),
            network: d.network,
            address: d.address,
            list: d.list,
            reason: d.reason,
            since_ms: d.since.as_millis(),
        })
        .collect();
    Ok(Json(page(rows, |d: &DeniedDto| &d.id, &q)?))
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

/// Freezes in force, paged by id.
#[utoipa::path(get, path = "/v1/freezes", tag = "governance", params(PageQuery),
    responses((status = 200, body = [FreezeDto])))]
async fn list_freezes(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<PageQuery>,
) -> Result<Json<Vec<FreezeDto>>, ApiError> {
    overseer(&who)?;
    let rows = svc.freezes().await.map_err(service_error)?;
    let rows = page(rows, |f| &f.id, &q)?;
    Ok(Json(rows.into_iter().map(freeze_dto).collect()))
}

/// A broadcast that started before the freeze and may have reached the
/// network: a transaction handed to a node cannot be recalled.
#[derive(Debug, Serialize, ToSchema)]
pub struct InFlightDto {
    /// `eth-send:<id>#<attempt>` or `btc-send:<id>`.
    send: String,
    /// `sent`, `unknown` (it failed, perhaps after a node took it) or
    /// `in_flight` (its time ran out before it ended).
    outcome: String,
}

/// The freeze placed, once every broadcast it covers that started before
/// it has ended.
#[derive(Debug, Serialize, ToSchema)]
pub struct FreezePlacedDto {
    #[serde(flatten)]
    freeze: FreezeDto,
    may_have_reached: Vec<InFlightDto>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreezeBody {
    /// `global`, `wallet:<uuid>` or `key:<uuid>`.
    scope: String,
    reason: String,
}

/// Freezes at once (security officer or admin): no signature and no
/// broadcast covered by it starts after it is placed. Answers once every
/// broadcast it covers that started before it has ended (at most 20 s;
/// any still running are listed as `in_flight`), listing those that may
/// have reached the network. Releasing takes a
/// `release_freeze` proposal under the admin quorum.
#[utoipa::path(post, path = "/v1/freezes", tag = "governance", request_body = FreezeBody,
    responses((status = 201, body = FreezePlacedDto), (status = 400, body = ErrorBody),
        (status = 404, description = "The wallet or key the scope names does not exist", body = ErrorBody)))]
async fn create_freeze(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(body): Json<FreezeBody>,
) -> Result<(StatusCode, Json<FreezePlacedDto>), ApiError> {
    let can = can::<perm::Freeze>(&svc, &who)?;
    let scope: FreezeScope = body.scope.parse().map_err(service_error)?;
    let placed = can
        .freeze(scope, &body.reason)
        .await
        .map_err(service_error)?;
    Ok((
        StatusCode::CREATED,
        Json(FreezePlacedDto {
            freeze: freeze_dto(placed.freeze),
            may_have_reached: placed
                .may_have_reached
                .into_iter()
                .map(|(send, outcome)| InFlightDto { send, outcome })
                .collect(),
        }),
    ))
}
