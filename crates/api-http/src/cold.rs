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

use service::cold::UnsignedTx;

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

/// An Ethereum transaction waiting for its offline signature: what it
/// does, to check on the offline signer's screen.
#[derive(Debug, Serialize, ToSchema)]
pub struct EthTxDto {
    chain_id: u64,
    /// The sender, whose key must sign (EIP-55).
    from: String,
    /// What the transaction calls or pays (a token's contract for a token).
    to: String,
    nonce: u64,
    /// Wei sent with the call, as a string of digits.
    #[schema(pattern = "^[0-9]+$")]
    value: String,
    /// The call data, hex (`0x…`; empty for a plain payment).
    data: String,
    gas_limit: u64,
    /// Wei per gas, as strings of digits (EIP-1559).
    max_fee_per_gas: String,
    max_priority_fee_per_gas: String,
    /// What the transfer pays, to whom, in base units (a token's recipient
    /// and amount, not the contract's).
    asset: String,
    recipient: String,
    #[schema(pattern = "^[0-9]+$")]
    amount: String,
}

/// A transfer's transaction waiting for its offline signature: a PSBT
/// (Bitcoin) or an unsigned EIP-1559 transaction (Ethereum).
#[derive(Debug, Serialize, ToSchema)]
#[schema(example = json!({
    "transfer": "01936f3e-7d2a-7c44-9a51-3b0c2d7e8f10",
    "network": "bitcoin:regtest",
    "exported_at_ms": 1_765_000_000_000_i64,
    "expires_at_ms": 1_765_259_200_000_i64,
    "transfers": ["01936f3e-7d2a-7c44-9a51-3b0c2d7e8f10"],
    "psbt": "cHNidP8BAH0CAAAAA…",
    "txid": "5e1f8c0c2b0e9d3a7f6b1c4d8e2f3a5b6c7d8e9f0a1b2c3d4e5f60718293a4b5",
    "fee": "2820",
    "fee_decimal": "0.0000282",
    "decimals": 8,
    "inputs": [{"outpoint": "9f…:0", "value": "100000000", "value_decimal": "1"}],
    "outputs": [{"address": "bcrt1q…", "value": "25000000", "value_decimal": "0.25", "change": false}]
}))]
pub struct UnsignedDto {
    transfer: String,
    network: String,
    exported_at_ms: i64,
    /// When it lapses unless signed (its outputs or nonce then go back).
    expires_at_ms: i64,
    /// The transfers it pays (a Bitcoin batch pays several).
    transfers: Vec<String>,
    /// Bitcoin: the PSBT (BIP-174) in base64, with the signatures the
    /// server made, for `strongroom offline sign` or any BIP-174 signer.
    #[serde(skip_serializing_if = "Option::is_none")]
    psbt: Option<String>,
    /// Bitcoin: the transaction's id once signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    txid: Option<String>,
    /// Bitcoin: satoshis, as a string of digits.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[0-9]+$")]
    fee: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fee_decimal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    decimals: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    inputs: Option<Vec<SpentDto>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outputs: Option<Vec<PaidDto>>,
    /// Ethereum: the unsigned EIP-2718 payload (`0x02…`), hex; its
    /// keccak-256 is `signing_hash`, what the sender's key signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    transaction: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signing_hash: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ethereum: Option<EthTxDto>,
}

fn btc(sat: u64) -> (String, String) {
    let units = u128::from(sat);
    (
        units.to_string(),
        decimal(units, Some(8)).unwrap_or_default(),
    )
}

/// The transaction of a transfer awaiting its offline signature (a cold
/// wallet's): a PSBT, or an unsigned Ethereum transaction, and what it
/// spends and pays, to check on the offline signer's screen.
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
    let mut dto = UnsignedDto {
        transfer: u.transfer.to_string(),
        network: u.network.to_string(),
        exported_at_ms: u.exported_at.as_millis(),
        expires_at_ms: u.expires_at.as_millis(),
        transfers: u.transfers.iter().map(ToString::to_string).collect(),
        psbt: None,
        txid: None,
        fee: None,
        fee_decimal: None,
        decimals: None,
        inputs: None,
        outputs: None,
        transaction: None,
        signing_hash: None,
        ethereum: None,
    };
    match u.tx {
        UnsignedTx::Bitcoin {
            psbt,
            txid,
            fee_sat,
            inputs,
            outputs,
        } => {
            let (fee, fee_decimal) = btc(fee_sat);
            dto.psbt = Some(service::cold::encode_psbt(&psbt));
            dto.txid = Some(txid);
            dto.fee = Some(fee);
            dto.fee_decimal = Some(fee_decimal);
            dto.decimals = Some(8);
            dto.inputs = Some(
                inputs
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
            );
            dto.outputs = Some(
                outputs
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
            );
        }
        UnsignedTx::Ethereum(e) => {
            let (max_fee, tip) = match e.plan.fees {
                chain_eth::Fees::Eip1559 {
                    max_fee_per_gas,
                    max_priority_fee_per_gas,
                } => (max_fee_per_gas, max_priority_fee_per_gas),
                chain_eth::Fees::Legacy { gas_price } => (gas_price, gas_price),
            };
            dto.transaction = Some(format!("0x{}", hex::encode(&e.payload)));
            dto.signing_hash = Some(format!("0x{}", hex::encode(e.signing_hash)));
            dto.ethereum = Some(EthTxDto {
                chain_id: e.plan.chain_id,
                from: e.from,
                to: e.plan.to.to_string(),
                nonce: e.plan.nonce,
                value: e.plan.value.to_string(),
                data: format!("0x{}", hex::encode(&e.plan.data)),
                gas_limit: e.plan.gas_limit,
                max_fee_per_gas: max_fee.to_string(),
                max_priority_fee_per_gas: tip.to_string(),
                asset: e.asset,
                recipient: e.recipient,
                amount: e.amount.to_string(),
            });
        }
    }
    Ok(Json(dto))
}

/// A transaction signed offline: a PSBT (Bitcoin) or a signed EIP-2718
/// transaction (Ethereum), one of the two.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignedPsbt {
    /// Bitcoin: the PSBT (BIP-174) in base64 or hex (within the server's
    /// body limit: some thousand inputs).
    #[schema(max_length = 400_000, pattern = "^[A-Za-z0-9+/=]+$")]
    psbt: Option<String>,
    /// Ethereum: the signed transaction, hex (`0x02…`).
    #[schema(max_length = 400_000, pattern = "^(0x)?[0-9a-fA-F]+$")]
    transaction: Option<String>,
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
    let bytes = match (&req.psbt, &req.transaction) {
        (Some(p), None) => service::cold::decode_psbt(p),
        (None, Some(t)) => service::cold::decode_transaction(t),
        _ => {
            return Err(ApiError::new(
                axum::http::StatusCode::BAD_REQUEST,
                "invalid_request",
                "one of psbt (Bitcoin) or transaction (Ethereum)",
            ));
        }
    }
    .map_err(service_error)?;
    let (txid, state) = can.import_signed(id, &bytes).await.map_err(service_error)?;
    Ok(Json(SignedDto {
        transfer: id.to_string(),
        txid,
        state,
    }))
}
