//! The ledger over HTTP: a wallet's movements, its balance history and its
//! statements (JSON or CSV), for its readers; outside the caller's scope a
//! wallet is `404`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use domain::{Timestamp, WalletId};
use serde::{Deserialize, Serialize};
use service::Service;
use service::identity::perm;
use service::statements::MovementLine;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody, not_found, page_limit, scoped, service_error};

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(wallet_ledger))
        .routes(routes!(balance_history))
        .routes(routes!(wallet_statement))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct LedgerQuery {
    /// One asset (`bip122:…/slip44:0`, `eip155:1/slip44:60`, …); all without.
    asset: Option<String>,
    /// From this time (ms since 1970, inclusive); the beginning without.
    from_ms: Option<i64>,
    /// Until this time (exclusive); now without.
    to_ms: Option<i64>,
    /// After this movement (`seq` of the previous page's last).
    after: Option<i64>,
    /// At most this many (1 to 1000, default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesDto {
    /// Base units as signed strings of digits, each with its `_decimal`
    /// in the asset's units.
    available: String,
    available_decimal: Option<String>,
    pending: String,
    pending_decimal: Option<String>,
    reserved: String,
    reserved_decimal: Option<String>,
    /// Places between base units and the asset's units.
    decimals: Option<u8>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MovementDto {
    seq: i64,
    at_ms: i64,
    asset: String,
    /// `deposit_seen`, `deposit_credited`, `deposit_reorged`, `reserved`,
    /// `released`, `payout`, `fee`, `recorded`.
    kind: String,
    delta: BalancesDto,
    /// The wallet's balances of the asset after this movement.
    after: BalancesDto,
    transfer: Option<String>,
    txid: Option<String>,
    block: Option<u64>,
}

fn balances(b: service::statements::BalancesText, decimals: Option<u8>) -> BalancesDto {
    let dec = |t: &str| crate::amounts::signed_decimal(t, decimals);
    BalancesDto {
        available_decimal: dec(&b.available),
        pending_decimal: dec(&b.pending),
        reserved_decimal: dec(&b.reserved),
        available: b.available,
        pending: b.pending,
        reserved: b.reserved,
        decimals,
    }
}

fn movement(svc: &Service, m: MovementLine) -> MovementDto {
    let d = svc.asset_decimals(&m.asset);
    MovementDto {
        seq: m.seq,
        at_ms: m.at_ms,
        asset: m.asset,
        kind: m.kind,
        delta: balances(m.delta, d),
        after: balances(m.after, d),
        transfer: m.transfer,
        txid: m.txid,
        block: m.block,
    }
}

fn window(from: Option<i64>, to: Option<i64>) -> (Timestamp, Option<Timestamp>) {
    (
        Timestamp::from_millis(from.unwrap_or(0)),
        to.map(Timestamp::from_millis),
    )
}

/// A page of a wallet's movements, for a caller who may read it (`404`
/// outside its scope): what the ledger and the balance history serve.
async fn movements(
    svc: &Service,
    who: &service::identity::Principal,
    id: &str,
    asset: Option<&str>,
    range: (Option<i64>, Option<i64>),
    after: Option<i64>,
    limit: u32,
) -> Result<Vec<MovementLine>, ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| not_found("wallet"))?;
    let can = svc
        .authorize::<perm::ReadWallet>(who, Some(wallet))
        .map_err(scoped("wallet"))?;
    let (from, to) = window(range.0, range.1);
    can.ledger(wallet, asset, from, to, after, limit)
        .await
        .map_err(service_error)
}

/// A wallet's ledger: every movement of its funds, oldest first.
#[utoipa::path(get, path = "/v1/wallets/{id}/ledger", tag = "wallets",
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"), LedgerQuery),
    responses((status = 200, body = [MovementDto]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn wallet_ledger(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Query(q): Query<LedgerQuery>,
) -> Result<Json<Vec<MovementDto>>, ApiError> {
    let limit = page_limit(q.limit, 100, 1000)?;
    let range = (q.from_ms, q.to_ms);
    let rows = movements(&svc, &who, &id, q.asset.as_deref(), range, q.after, limit).await?;
    Ok(Json(rows.into_iter().map(|m| movement(&svc, m)).collect()))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct HistoryQuery {
    /// The asset.
    asset: String,
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    after: Option<i64>,
    /// At most this many (1 to 1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u32>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalancePointDto {
    at_ms: i64,
    /// The movement that made it.
    seq: i64,
    /// The wallet's balances of the asset after that movement.
    balances: BalancesDto,
}

/// A wallet's balances of one asset over time: a point per movement, with
/// the balances after it.
#[utoipa::path(get, path = "/v1/wallets/{id}/balances/history", tag = "wallets",
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"), HistoryQuery),
    responses((status = 200, body = [BalancePointDto]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn balance_history(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Result<Json<Vec<BalancePointDto>>, ApiError> {
    let limit = page_limit(q.limit, 1000, 1000)?;
    let range = (q.from_ms, q.to_ms);
    let rows = movements(&svc, &who, &id, Some(&q.asset), range, q.after, limit).await?;
    Ok(Json(
        rows.into_iter()
            .map(|m| BalancePointDto {
                balances: balances(m.after, svc.asset_decimals(&m.asset)),
                at_ms: m.at_ms,
                seq: m.seq,
            })
            .collect(),
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct StatementQuery {
    from_ms: Option<i64>,
    to_ms: Option<i64>,
    /// `json` (the default) or `csv`.
    format: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AssetTotalsDto {
    asset: String,
    opening: BalancesDto,
    closing: BalancesDto,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct StatementDto {
    wallet: String,
    from_ms: i64,
    to_ms: i64,
    assets: Vec<AssetTotalsDto>,
    movements: Vec<MovementDto>,
}

/// A wallet's statement over a range: opening and closing balances per
/// asset and every movement between, with its transfer, transaction and
/// block; as JSON or CSV (`format=csv`).
#[utoipa::path(get, path = "/v1/wallets/{id}/statement", tag = "wallets",
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"), StatementQuery),
    responses((status = 200, body = StatementDto, content_type = "application/json"),
        (status = 200, body = String, content_type = "text/csv"),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn wallet_statement(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Query(q): Query<StatementQuery>,
) -> Result<Response, ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| not_found("wallet"))?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, Some(wallet))
        .map_err(scoped("wallet"))?;
    let csv = match q.format.as_deref() {
        None | Some("json") => false,
        Some("csv") => true,
        Some(_) => {
            return Err(service_error(service::ServiceError::Invalid(
                "format is json or csv".into(),
            )));
        }
    };
    let (from, to) = window(q.from_ms, q.to_ms);
    let s = can
        .statement(wallet, from, to)
        .await
        .map_err(service_error)?;
    if csv {
        return Ok((
            [
                (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
                (
                    header::CONTENT_DISPOSITION,
                    format!("attachment; filename=\"statement-{wallet}.csv\""),
                ),
            ],
            s.to_csv(),
        )
            .into_response());
    }
    Ok(Json(StatementDto {
        wallet: s.wallet,
        from_ms: s.from_ms,
        to_ms: s.to_ms,
        assets: s
            .assets
            .into_iter()
            .map(|a| {
                let d = svc.asset_decimals(&a.asset);
                AssetTotalsDto {
                    asset: a.asset,
                    opening: balances(a.opening, d),
                    closing: balances(a.closing, d),
                }
            })
            .collect(),
        movements: s.movements.into_iter().map(|m| movement(&svc, m)).collect(),
    })
    .into_response())
}
