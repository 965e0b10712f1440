//! Wallets over HTTP: wallets and their accounts, deposit addresses,
//! balances and deposits, and reading the sends that carry transfers — each
//! behind the capability its operation needs; outside the caller's scope a
//! wallet's things are `404`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use domain::{Timestamp, WalletId};
use serde::{Deserialize, Serialize};
use service::Service;
use service::identity::perm;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::{Authed, can};
use crate::error::{ApiError, ErrorBody, bad, not_found, page_limit, scoped, service_error};
use crate::paging::PageQuery;

pub(crate) fn routes() -> OpenApiRouter<Service> {
    OpenApiRouter::new()
        .routes(routes!(create_wallet, list_wallets))
        .routes(routes!(get_wallet))
        .routes(routes!(open_account))
        .routes(routes!(deposit_address))
        .routes(routes!(wallet_balances))
        .routes(routes!(wallet_deposits))
        .routes(routes!(eth_send))
        .routes(routes!(btc_send))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewWallet {
    name: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WalletDto {
    id: String,
    name: String,
}

/// Creates a wallet (admin).
#[utoipa::path(post, path = "/v1/wallets", tag = "wallets", request_body = NewWallet,
    responses((status = 201, body = WalletDto)))]
async fn create_wallet(
    State(svc): State<Service>,
    Authed(who): Authed,
    Json(req): Json<NewWallet>,
) -> Result<(StatusCode, Json<WalletDto>), ApiError> {
    let can = can::<perm::ManageNetworks>(&svc, &who)?;
    let w = can.create_wallet(&req.name).await.map_err(service_error)?;
    Ok((
        StatusCode::CREATED,
        Json(WalletDto {
            id: w.id.to_string(),
            name: w.name,
        }),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountDto {
    /// `eip155:<chain id>` or `bitcoin:<network>`.
    network: String,
    /// Where deposits to the wallet go on that network.
    address: String,
    /// The transfer-signing key behind it.
    key: String,
    /// For a watch-only wallet elsewhere (Bitcoin accounts; absent for
    /// Ethereum and threshold keys).
    watch_only: Option<WatchOnlyDto>,
}

/// A Bitcoin account as Bitcoin Core (`importdescriptors`), Sparrow or
/// Electrum import it to watch the same addresses.
#[derive(Debug, Serialize, ToSchema)]
pub struct WatchOnlyDto {
    /// Receive addresses: an output descriptor with its checksum
    /// (`wpkh(tpub…/0/*)#…` for an HD account, `wpkh(<key>)#…` otherwise).
    descriptor: String,
    /// Change addresses of an HD account (`…/1/*`).
    change_descriptor: Option<String>,
    /// An HD account's hardened path (`m/84'/1'/0'`).
    account_path: Option<String>,
    /// An HD account's extended public key, with the network's prefix.
    xpub: Option<String>,
    /// The same with its SLIP-132 prefix (`zpub`/`vpub` for P2WPKH).
    slip132: Option<String>,
}

fn account_dto(a: service::wallets::WalletAccount) -> AccountDto {
    AccountDto {
        network: a.network.to_string(),
        address: a.address,
        key: a.key.to_string(),
        watch_only: a.watch.map(|w| WatchOnlyDto {
            descriptor: w.descriptor,
            change_descriptor: w.change_descriptor,
            account_path: w.account_path,
            xpub: w.xpub,
            slip132: w.slip132,
        }),
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WalletDetailDto {
    id: String,
    name: String,
    /// Its accounts: one per network, with the deposit address.
    accounts: Vec<AccountDto>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct WalletsQuery {
    /// The page after this wallet id (the last of the previous page).
    after: Option<String>,
    /// At most this many (1 to 500, default 100).
    #[param(minimum = 1, maximum = 500)]
    limit: Option<u32>,
}

/// The wallets the caller may read, in creation order.
#[utoipa::path(get, path = "/v1/wallets", tag = "wallets", params(WalletsQuery),
    responses((status = 200, body = [WalletDto])))]
async fn list_wallets(
    State(svc): State<Service>,
    Authed(who): Authed,
    Query(q): Query<WalletsQuery>,
) -> Result<Json<Vec<WalletDto>>, ApiError> {
    let after: Option<WalletId> = q
        .after
        .as_deref()
        .map(|w| w.parse().map_err(|_| bad("`after`: a wallet id")))
        .transpose()?;
    let limit = page_limit(q.limit, 100, 500)?;
    // A global reader, or one whose grants name wallets: each lists what
    // it may read.
    let scoped = who.grants().iter().find_map(|g| match g.scope() {
        domain::Scope::Wallet(w) => Some(w),
        domain::Scope::Global => None,
    });
    let can = svc
        .authorize::<perm::ReadWallet>(&who, None)
        .or_else(|e| match scoped {
            Some(w) => svc.authorize::<perm::ReadWallet>(&who, Some(w)),
            None => Err(e),
        })
        .map_err(|e| crate::error::auth_error(&e))?;
    let rows = can.wallets(after, limit).await.map_err(service_error)?;
    Ok(Json(
        rows.into_iter()
            .map(|w| WalletDto {
                id: w.id.to_string(),
                name: w.name,
            })
            .collect(),
    ))
}

/// A wallet and its deposit addresses, for those who may read it (`404`
/// outside their scope).
#[utoipa::path(get, path = "/v1/wallets/{id}", tag = "wallets",
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")), responses((status = 200, body = WalletDetailDto), (status = 404, body = ErrorBody)))]
async fn get_wallet(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<WalletDetailDto>, ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| not_found("wallet"))?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, Some(wallet))
        .map_err(scoped("wallet"))?;
    let (w, accounts) = can.wallet(wallet).await.map_err(service_error)?;
    Ok(Json(WalletDetailDto {
        id: w.id.to_string(),
        name: w.name,
        accounts: accounts.into_iter().map(account_dto).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAccount {
    /// `eip155:<chain id>` or `bitcoin:<network>`, configured on this server.
    network: String,
    /// Where the new key lives: `keystore` (the default), `pkcs11` (the
    /// configured HSM), `keystore-hd` (Bitcoin: a BIP-84 HD account, a new
    /// P2WPKH address per deposit), `keystore-hd-taproot` (the same, BIP-86
    /// Taproot addresses), `threshold` (shares on the configured signer
    /// nodes, each checking what it signs) or `multisig` (Bitcoin: P2WSH
    /// `sortedmulti`, with `threshold` and `cosigners`).
    backend: Option<String>,
    /// `multisig`: how many cosigners' signatures spend (1 to 15).
    #[schema(minimum = 1, maximum = 15)]
    threshold: Option<u8>,
    /// `multisig`: its cosigners, 1 to 15, in order.
    #[schema(max_items = 15)]
    cosigners: Option<Vec<CosignerDto>>,
    /// `external`: the compressed secp256k1 public key (66 hex digits) of
    /// a key held outside the server (a cold wallet's): what it must sign
    /// is handed out (`GET /v1/transfers/{id}/unsigned`) and brought back.
    #[schema(pattern = "^(02|03)[0-9a-fA-F]{64}$")]
    public_key: Option<String>,
    /// `external`: who or what holds it (1 to 64 of a-z A-Z 0-9 . _ - @).
    label: Option<String>,
    /// `external`: where its holder derives it, `<master fingerprint>/<path>`.
    #[schema(max_length = 200)]
    origin: Option<String>,
}

/// A multisig cosigner: a new key on a backend of this server, or a key
/// held outside it (a cold signer, a hardware wallet) by its public key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CosignerDto {
    /// `keystore` or `pkcs11`: a new key made here. Not with `public_key`.
    backend: Option<String>,
    /// A compressed secp256k1 public key (66 hex digits) held outside.
    #[schema(pattern = "^(02|03)[0-9a-fA-F]{64}$")]
    public_key: Option<String>,
    /// Who or what holds the external key (1 to 64 of a-z A-Z 0-9 . _ - @).
    label: Option<String>,
    /// Where its holder derives the external key: `<master fingerprint>/
    /// <path>` (e.g. `d34db33f/48'/0'/0'/2'/0/0`), named in the PSBTs
    /// handed out so hardware wallets find it.
    #[schema(max_length = 200)]
    origin: Option<String>,
}

/// Opens an account for a wallet on a network (admin): a new
/// transfer-signing key on the chosen backend, given to the wallet; answers
/// with its deposit address.
#[utoipa::path(post, path = "/v1/wallets/{id}/accounts", tag = "wallets", request_body = NewAccount,
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")),
    responses((status = 201, body = AccountDto), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn open_account(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Json(req): Json<NewAccount>,
) -> Result<(StatusCode, Json<AccountDto>), ApiError> {
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m);
    let wallet: WalletId = id
        .parse()
        .map_err(|_| ApiError::new(StatusCode::NOT_FOUND, "not_found", "wallet not found"))?;
    let network: domain::Network = req
        .network
        .parse()
        .map_err(|e: domain::NetworkError| bad(format!("network: {e}")))?;
    use service::wallets::AccountKey;
    let multi_fields = req.threshold.is_some() || req.cosigners.is_some();
    let external_fields = req.public_key.is_some() || req.label.is_some() || req.origin.is_some();
    let backend = match req.backend.as_deref().unwrap_or("keystore") {
        "keystore" => AccountKey::Single(domain::KeyBackend::Keystore),
        "pkcs11" => AccountKey::Single(domain::KeyBackend::Pkcs11),
        "keystore-hd" => AccountKey::Hd,
        "keystore-hd-taproot" => AccountKey::HdTaproot,
        "threshold" => AccountKey::Single(domain::KeyBackend::Threshold),
        "external" => AccountKey::External(service::cosigners::ExternalKey {
            public_key: req
                .public_key
                .clone()
                .ok_or_else(|| bad("backend external needs public_key".into()))?,
            label: req.label.clone().unwrap_or_else(|| "external".into()),
            origin: req.origin.clone(),
        }),
        "multisig" => {
            let mut cosigners = Vec::new();
            for c in req.cosigners.unwrap_or_default() {
                use service::cosigners::Cosigner;
                cosigners.push(match (c.backend.as_deref(), c.public_key) {
                    (Some("keystore"), None) => Cosigner::New(domain::KeyBackend::Keystore),
                    (Some("pkcs11"), None) => Cosigner::New(domain::KeyBackend::Pkcs11),
                    (None, Some(public_key)) => {
                        Cosigner::External(service::cosigners::ExternalKey {
                            public_key,
                            label: c.label.unwrap_or_else(|| "external".into()),
                            origin: c.origin,
                        })
                    }
                    _ => {
                        return Err(bad(
                            "a cosigner is {\"backend\": \"keystore\" | \"pkcs11\"} or \
                             {\"public_key\": …, \"label\": …}"
                                .into(),
                        ));
                    }
                });
            }
            AccountKey::Multisig {
                threshold: usize::from(req.threshold.unwrap_or(0)),
                cosigners,
            }
        }
        other => {
            return Err(bad(format!(
                "backend: keystore, pkcs11, keystore-hd, keystore-hd-taproot, threshold, \
                 multisig or external, not {other:?}"
            )));
        }
    };
    if !matches!(backend, AccountKey::Multisig { .. }) && multi_fields {
        return Err(bad(
            "threshold and cosigners are for backend multisig".into()
        ));
    }
    if !matches!(backend, AccountKey::External { .. }) && external_fields {
        return Err(bad(
            "public_key, label and origin are for backend external".into()
        ));
    }
    let can = can::<perm::ManageNetworks>(&svc, &who)?;
    let a = can
        .open_account(wallet, network, backend)
        .await
        .map_err(service_error)?;
    Ok((StatusCode::CREATED, Json(account_dto(a))))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EthSendDto {
    id: String,
    network: String,
    from: String,
    nonce: u64,
    asset: String,
    to: String,
    /// Base units, as a string of digits.
    amount: String,
    /// The same in the asset's units.
    amount_decimal: Option<String>,
    decimals: Option<u8>,
    state: String,
    block_number: Option<u64>,
    block_hash: Option<String>,
    /// The transaction included (or, until then, the latest attempt):
    /// its hash and signed bytes (hex), absent before it is signed.
    tx_hash: Option<String>,
    raw_tx: Option<String>,
    /// Its kind: `send`, `speed-up` or `cancel`.
    attempt_kind: Option<String>,
    /// Wei paid in fees, once the transaction is final.
    fee_paid: Option<String>,
    /// The same in ether (18 decimals, whatever the asset sent).
    fee_paid_decimal: Option<String>,
}

/// An Ethereum send, for callers who may read its wallet. Outside their
/// scope it is `404`, as if it did not exist.
#[utoipa::path(get, path = "/v1/eth/sends/{id}", tag = "ethereum",
    params(("id" = String, Path)), responses((status = 200, body = EthSendDto), (status = 404, body = ErrorBody)))]
async fn eth_send(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<EthSendDto>, ApiError> {
    let wallet: Option<WalletId> = svc.eth_send_wallet(&id).await.map_err(service_error)?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, wallet)
        .map_err(scoped("Ethereum send"))?;
    let (s, attempt, fee) = can.eth_send_detail(&id).await.map_err(service_error)?;
    Ok(Json(EthSendDto {
        block_hash: s.block_hash.clone(),
        tx_hash: attempt.as_ref().and_then(|a| a.tx_hash.clone()),
        raw_tx: attempt
            .as_ref()
            .and_then(|a| a.raw.as_ref().map(|r| format!("0x{}", hex::encode(r)))),
        attempt_kind: attempt.map(|a| a.kind),
        fee_paid: fee.map(|f| f.to_string()),
        fee_paid_decimal: fee.and_then(|f| crate::amounts::decimal(f, Some(18))),
        amount_decimal: crate::amounts::decimal(s.amount, svc.asset_decimals(&s.asset)),
        decimals: svc.asset_decimals(&s.asset),
        id: s.id,
        network: s.network,
        from: crate::error::shown_address(s.address),
        nonce: s.nonce,
        asset: s.asset,
        to: crate::error::shown_address(s.recipient),
        amount: s.amount.to_string(),
        state: s.state,
        block_number: s.block_number,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BtcSendDto {
    id: String,
    network: String,
    wallet: Option<String>,
    /// `planned`, `signed`, `broadcast`, `failed`.
    state: String,
    txid: Option<String>,
    fee_sat: u64,
    /// The fee in bitcoin (8 decimals).
    fee_decimal: String,
    /// The signed transaction, hex (once signed).
    raw: Option<String>,
    /// The approved PSBT (BIP-174 bytes), hex.
    psbt: String,
    /// The transfers it pays out.
    transfers: Vec<String>,
}

/// A Bitcoin send (a batch of payouts), for callers who may read its
/// wallet; outside their scope it is `404`.
#[utoipa::path(get, path = "/v1/btc/sends/{id}", tag = "bitcoin",
    params(("id" = String, Path)), responses((status = 200, body = BtcSendDto), (status = 404, body = ErrorBody)))]
async fn btc_send(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<BtcSendDto>, ApiError> {
    let wallet = svc.btc_send_wallet(&id).await.map_err(service_error)?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, wallet)
        .map_err(scoped("Bitcoin send"))?;
    let (s, transfers) = can.btc_send(&id).await.map_err(service_error)?;
    Ok(Json(BtcSendDto {
        id: s.id,
        network: s.network,
        wallet: s.wallet.map(|w| w.to_string()),
        state: s.state,
        txid: s.txid,
        fee_sat: s.fee_sat,
        fee_decimal: crate::amounts::decimal(u128::from(s.fee_sat), Some(8)).unwrap_or_default(),
        raw: s.raw.map(hex::encode),
        psbt: hex::encode(&s.psbt),
        transfers: transfers.into_iter().map(|t| t.id.to_string()).collect(),
    }))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddressRequest {
    /// `bitcoin:<network>` or `eip155:<chain id>`.
    network: String,
    /// Ethereum HD accounts: whom the address is for, in the caller's terms
    /// (a user id; 1 to 100 of `A-Z a-z 0-9 . _ : @ - /`). The same label
    /// gets the same address.
    #[serde(default)]
    label: Option<String>,
}

/// The wallet's next deposit address on a network (an initiator of the
/// wallet): on Bitcoin, for an HD account the last one issued while nothing
/// has paid it, else a new one; on Ethereum, a single-key account's one
/// address, or an HD account's address for `label` (one per label; without
/// one, the last unlabelled one issued while nothing has paid it, else a
/// new one), whose funds are swept to its sender (`POST
/// /v1/wallets/{id}/sweep`). Only
/// for a key a verified backup holds (`409 key_not_backed_up` otherwise).
/// An HD account's address comes with its derivation (`key`,
/// `derivation_path`, `chain`, `index`) for watch-only import.
#[utoipa::path(post, path = "/v1/wallets/{id}/addresses", tag = "wallets", request_body = AddressRequest,
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")),
    responses((status = 200, description = "`{\"network\", \"address\"}`, with `key`, `derivation_path`, `chain` and `index` for an HD account's"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn deposit_address(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Json(req): Json<AddressRequest>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| not_found("wallet"))?;
    let network = req.network.parse::<domain::Network>().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "network: bitcoin:<network> or eip155:<chain id>",
        )
    })?;
    // Who may read the wallet but not initiate from it is told so (403);
    // outside the caller's scope it does not exist (404).
    let can = svc
        .authorize::<perm::InitiateTransfer>(&who, Some(wallet))
        .map_err(|e| {
            if svc
                .authorize::<perm::ReadWallet>(&who, Some(wallet))
                .is_ok()
            {
                crate::error::auth_error(&e)
            } else {
                scoped("wallet")(e)
            }
        })?;
    let (address, derivation) = match network {
        domain::Network::Bitcoin(_) if req.label.is_some() => {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                "label: for Ethereum HD accounts (a Bitcoin HD account issues a new address \
                 once the last was paid)",
            ));
        }
        domain::Network::Bitcoin(n) => can.deposit_address_derived(wallet, n).await,
        domain::Network::Evm { chain_id } => {
            can.eth_deposit_address(wallet, chain_id, req.label.as_deref())
                .await
        }
    }
    .map_err(service_error)?;
    let mut body = serde_json::json!({ "network": req.network, "address": address });
    if let Some(d) = derivation {
        body["key"] = serde_json::json!(d.key.to_string());
        body["derivation_path"] = serde_json::json!(d.path);
        body["chain"] = serde_json::json!(d.chain);
        body["index"] = serde_json::json!(d.index);
    }
    Ok(Json(body))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceDto {
    asset: String,
    symbol: String,
    decimals: u8,
    /// The account (EIP-55 address) on an EVM network; absent for Bitcoin,
    /// whose balance is every output the wallet's keys hold.
    account: Option<String>,
    /// Base units as strings of digits, each with its `_decimal` in the
    /// asset's units. `on_chain`, `credited` and `available` are absent
    /// when no node answered.
    on_chain: Option<String>,
    on_chain_decimal: Option<String>,
    /// As of the newest block at the network's confirmation depth: deposits
    /// count once this deep.
    credited: Option<String>,
    credited_decimal: Option<String>,
    /// Deposits seen, not yet at the confirmation depth.
    incoming: String,
    incoming_decimal: String,
    /// Queued, or on its way and not yet at the confirmation depth.
    reserved: String,
    reserved_decimal: String,
    /// Waiting for approvals or in a time lock.
    awaiting: String,
    awaiting_decimal: String,
    /// Ether only: what the open transfers on the network may still pay in
    /// fees — a planned one its plan's bound (gas limit × max fee per gas),
    /// any other the most its plan could pay within the fee caps. Counted
    /// out of `available`.
    fees_reserved: String,
    fees_reserved_decimal: String,
    /// What one more transfer could be (for ether: after the fees every
    /// open transfer may still pay and one more transfer's fee).
    available: Option<String>,
    available_decimal: Option<String>,
}

/// A wallet's balances: on chain, reserved, awaiting approval, available.
#[utoipa::path(get, path = "/v1/wallets/{id}/balances", tag = "wallets",
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")), responses((status = 200, body = [BalanceDto]), (status = 404, body = ErrorBody)))]
async fn wallet_balances(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Vec<BalanceDto>>, ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| not_found("wallet"))?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, Some(wallet))
        .map_err(scoped("wallet"))?;
    let rows = can.balances(wallet).await.map_err(service_error)?;
    Ok(Json(
        rows.into_iter()
            .map(|b| {
                let d = Some(b.asset.decimals().get());
                let dec = |v: u128| crate::amounts::decimal(v, d).unwrap_or_default();
                BalanceDto {
                    asset: b.asset.id().to_string(),
                    symbol: b.asset.symbol().as_str().to_owned(),
                    decimals: b.asset.decimals().get(),
                    account: b.account,
                    on_chain: b.on_chain.map(|v| v.to_string()),
                    on_chain_decimal: b.on_chain.map(dec),
                    credited: b.credited.map(|v| v.to_string()),
                    credited_decimal: b.credited.map(dec),
                    incoming: b.incoming.to_string(),
                    incoming_decimal: dec(b.incoming),
                    reserved: b.reserved.to_string(),
                    reserved_decimal: dec(b.reserved),
                    awaiting: b.awaiting.to_string(),
                    awaiting_decimal: dec(b.awaiting),
                    fees_reserved: b.fees_reserved.to_string(),
                    fees_reserved_decimal: dec(b.fees_reserved),
                    available: b.available.map(|v| v.to_string()),
                    available_decimal: b.available.map(dec),
                }
            })
            .collect(),
    ))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DepositDto {
    /// `<tx hash>:<log index>`: the cursor for the next page.
    id: String,
    network: String,
    tx_hash: String,
    /// The event's index in its block; -1 for ether the transaction carried.
    log_index: i64,
    address: String,
    /// Who paid: an address; `internal:<address>` when it is one of the same
    /// wallet's (a deposit address's sweep into its sender, a gas top-up),
    /// `change:<send>` for a Bitcoin send's own change: the wallet's money
    /// moving, not a payment to it.
    from: String,
    asset: String,
    /// Base units, as a string of digits.
    amount: String,
    /// The same in the asset's units.
    amount_decimal: Option<String>,
    decimals: Option<u8>,
    block_number: u64,
    /// `seen`, `credited` (at the confirmation depth) or `reorged`.
    state: String,
    seen_at_ms: i64,
    credited_at_ms: Option<i64>,
}

/// A wallet's deposits (Ethereum: ether and configured tokens), newest
/// first; paged by deposit id (`<tx hash>:<log index>`).
#[utoipa::path(get, path = "/v1/wallets/{id}/deposits", tag = "wallets",
    params(("id" = String, Path, format = "uuid", pattern = "^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$"), PageQuery),
    responses((status = 200, body = [DepositDto]), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn wallet_deposits(
    State(svc): State<Service>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Query(q): Query<PageQuery>,
) -> Result<Json<Vec<DepositDto>>, ApiError> {
    let wallet: WalletId = id.parse().map_err(|_| not_found("wallet"))?;
    let can = svc
        .authorize::<perm::ReadWallet>(&who, Some(wallet))
        .map_err(scoped("wallet"))?;
    let after = q
        .after()
        .map(|a| {
            a.rsplit_once(':')
                .and_then(|(hash, index)| Some((hash, index.parse::<i64>().ok()?)))
                .ok_or_else(|| bad("`after`: a deposit id, <tx hash>:<log index>"))
        })
        .transpose()?;
    let rows = can
        .deposits_page(wallet, after, q.limit()?)
        .await
        .map_err(service_error)?;
    Ok(Json(
        rows.into_iter()
            .map(|d| DepositDto {
                id: format!("{}:{}", d.tx_hash, d.log_index),
                network: d.network,
                tx_hash: d.tx_hash,
                log_index: d.log_index,
                address: crate::error::shown_address(d.address),
                from: crate::error::shown_address(d.from),
                amount_decimal: crate::amounts::decimal(d.amount, svc.asset_decimals(&d.asset)),
                decimals: svc.asset_decimals(&d.asset),
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
