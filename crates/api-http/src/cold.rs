//! The cold tier's round trip over HTTP: a transfer's transaction waiting
//! for its offline signature handed out as a PSBT, and the signed PSBT
//! brought back (accepted only if it is exactly the approved plan).

use axum::Json;
use axum::extract::{Path, State};
use serde::{Deserialize, Serialize};
use service::Service;
use service::identity::perm;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::amounts::decimal;
use crate::auth::Authed;
use crate::error::{ApiError, ErrorBody, scoped, service_error};
use crate::transfers::{transfer_id, wallet_of};

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(get_unsigned))
        .routes(routes!(post_signed))
}

/// One output a transaction spends.
#[derive(Debug, Serialize, ToSchema)]
pub struct SpentDto {
    /// `txid:vout`.
    outpoint: String,
    /// Satoshis, as a string of digits.
    #[schema(pattern = "^[0-9]+$")]
    value: String,
    value_decimal: String,
}

/// One output a transaction pays.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaidDto {
    address: String,
    /// Satoshis, as a string of digits.
    #[schema(pattern = "^[0-9]+$")]
    value: String,
    value_decimal: String,
    /// The wallet's own change.
    change: bool,
}

/// A transfer's transaction waiting for its offline signature.
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "transfer": "01936f3e-7d2a-7c44-9a51-3b0c2d7e8f10",
    "network": "bitcoin:regtest",
    "psbt": "cHNidP8BAH0CAAAAA…",
    "txid": "5e1f8c0c2b0e9d3a7f6b1c4d8e2f3a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5",
    "exported_at_ms": 1_765_000_000_000_i64,
    "expires_at_ms": 1_765_259_200_000_i64,
    "fee": "2820",
    "fee_decimal": "0.0000282",
    "decimals": 8,
    "inputs": [{"outpoint": "9f…:0", "value": "100000000", "value_decimal": "1"}],
    "outputs": [{"address": "bcrt1q…", "value": "25000000", "value_decimal": "0.25", "change": false}],
    "transfers": ["01936f3e-7d2a-7c44-9a51-3b0c2d7e8f10"]
}))]
pub struct UnsignedDto {
    transfer: String,
    network: String,
    /// The PSBT (BIP-174) in base64, with the signatures the server made:
    /// for `strongroom offline sign` or any BIP-174 signer.
    psbt: String,
    /// The transaction's id once signed.
    txid: String,
    exported_at_ms: i64,
    /// When it lapses unless signed (its outputs then go back).
    expires_at_ms: i64,
    /// Satoshis, as a string of digits.
    #[schema(pattern = "^[0-9]+$")]
    fee: String,
    fee_decimal: String,
    decimals: u8,
    inputs: Vec<SpentDto>,
    outputs: Vec<PaidDto>,
    /// The transfers it pays (a batch pays several).
    transfers: Vec<String>,
}

fn btc(sat: u64) -> (String, String) {
    let units = u128::from(sat);
    (
        units.to_string(),
        decimal(units, Some(8)).unwrap_or_default(),
    )
}

/// The transaction of a transfer awaiting its offline signature (a cold
/// wallet's): its PSBT and what it spends and pays, to check on the
/// offline signer's screen.
#[utoipa::path(get, path = "/v1/transfers/{id}/unsigned", tag = "transfers",
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")),
    responses((status = 200, body = UnsignedDto), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn get_unsigned(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<UnsignedDto>, ApiError> {
    let id = transfer_id(&id)?;
    let wallet = wallet_of(&svc, id).await?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, Some(wallet))
        .map_err(scoped("transfer"))?;
    let u = can.unsigned(id).await.map_err(service_error)?;
    let (fee, fee_decimal) = btc(u.fee_sat);
    Ok(Json(UnsignedDto {
        transfer: u.transfer.to_string(),
        network: u.network.to_string(),
        psbt: service::cold::encode_psbt(&u.psbt),
        txid: u.txid,
        exported_at_ms: u.exported_at.as_millis(),
        expires_at_ms: u.expires_at.as_millis(),
        fee,
        fee_decimal,
        decimals: 8,
        inputs: u
            .inputs
            .into_iter()
            .map(|(outpoint, v)| {
                let (value, value_decimal) = btc(v);
                SpentDto {
                    outpoint,
                    value,
                    value_decimal,
                }
            })
            .collect(),
        outputs: u
            .outputs
            .into_iter()
            .map(|(address, v, change)| {
                let (value, value_decimal) = btc(v);
                PaidDto {
                    address,
                    value,
                    value_decimal,
                    change,
                }
            })
            .collect(),
        transfers: u.transfers.iter().map(ToString::to_string).collect(),
    }))
}

/// A PSBT signed offline.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedPsbt {
    /// The PSBT (BIP-174) in base64 or hex.
    #[schema(max_length = 1_000_000)]
    psbt: String,
}

/// A transfer's offline signature accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct SignedDto {
    transfer: String,
    /// The signed transaction's id.
    txid: String,
    /// `signed` (stored), or `broadcasting` (handed to the node already).
    state: String,
}

/// Brings back a transfer's PSBT signed offline (an operator of the
/// queue). Accepted only if, with the server's signatures, it is exactly
/// the approved transaction, every input verified by Bitcoin Core's
/// interpreter; then stored and broadcast. Anything else is refused
/// (`signature_refused`), audited, and changes nothing.
#[utoipa::path(post, path = "/v1/transfers/{id}/signed", tag = "transfers", request_body = SignedPsbt,
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")),
    responses((status = 200, body = SignedDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody), (status = 422, body = ErrorBody)))]
async fn post_signed(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Json(req): Json<SignedPsbt>,
) -> Result<Json<SignedDto>, ApiError> {
    let id = transfer_id(&id)?;
    let wallet = wallet_of(&svc, id).await?;
    let can = svc
        .authorize::<perm::OperateQueue>(&who, Some(wallet))
        .map_err(scoped("transfer"))?;
    let psbt = service::cold::decode_psbt(&req.psbt).map_err(service_error)?;
    let (txid, state) = can.import_signed(id, &psbt).await.map_err(service_error)?;
    Ok(Json(SignedDto {
        transfer: id.to_string(),
        txid,
        state,
    }))
}
