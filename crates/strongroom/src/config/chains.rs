//! Chains in the configuration: `[[ethereum]]` networks (endpoints, fee
//! caps in wei as digit strings, tokens) and `[[bitcoin]]` networks
//! (endpoints, fee caps, batching), each checked at load.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// One `[[bitcoin]]` network.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBitcoin {
    network: String,
    max_fee_rate_sat_vb: u64,
    max_fee_sat: u64,
    #[serde(default = "default_btc_fee_rate")]
    fee_rate_sat_vb: u64,
    #[serde(default)]
    batch_window_seconds: u64,
    #[serde(default = "default_batch_max")]
    batch_max_payouts: u64,
    #[serde(default = "default_btc_poll")]
    poll_seconds: u64,
    #[serde(default = "default_rpc_timeout")]
    timeout_seconds: u64,
    /// Blocks on top of a deposit's (its own counted) before it is credited
    /// and a send is complete.
    #[serde(default = "default_btc_confirmations")]
    confirmations: u64,
    /// Blocks a send may wait before a faster replacement (BIP-125).
    #[serde(default = "default_btc_confirmations")]
    bump_after_blocks: u64,
    /// Consolidation of small outputs, allowed at or below this fee rate
    /// (none: no consolidation).
    consolidate_below_sat_vb: Option<u64>,
    /// What counts as small (default 100 000 sat).
    #[serde(default = "default_small_output")]
    consolidate_max_output_sat: u64,
    /// How many small outputs make a consolidation worth it (default 10).
    #[serde(default = "default_min_outputs")]
    consolidate_min_outputs: u64,
    /// The most inputs one consolidation spends (default 100).
    #[serde(default = "default_max_inputs")]
    consolidate_max_inputs: u64,
    #[serde(default)]
    endpoints: Vec<RawBtcEndpoint>,
}

fn default_btc_confirmations() -> u64 {
    6
}

fn default_small_output() -> u64 {
    100_000
}

fn default_min_outputs() -> u64 {
    10
}

fn default_max_inputs() -> u64 {
    100
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBtcEndpoint {
    /// `core` (JSON-RPC) or `esplora` (REST).
    kind: String,
    url: String,
    /// Plain `http://` to a host that is not this machine.
    #[serde(default)]
    allow_http: bool,
    /// A file holding `user:password` for Core (kept out of this file).
    auth_file: Option<PathBuf>,
}

pub(super) fn default_btc_fee_rate() -> u64 {
    5
}

pub(super) fn default_batch_max() -> u64 {
    50
}

pub(super) fn default_btc_poll() -> u64 {
    10
}

/// One `[[ethereum]]` network. Wei amounts are strings of digits: TOML
/// integers stop at 2^63, and floats are never money.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawEthereum {
    chain_id: u64,
    endpoints: Vec<super::transport::RawEndpoint>,
    confirmations: u64,
    max_fee_per_gas_wei: String,
    max_total_fee_wei: String,
    #[serde(default = "default_min_priority")]
    min_priority_fee_wei: String,
    #[serde(default)]
    legacy: bool,
    #[serde(default)]
    allow_unchecksummed: bool,
    #[serde(default = "default_poll")]
    poll_seconds: u64,
    #[serde(default = "default_rpc_timeout")]
    timeout_seconds: u64,
    #[serde(default = "default_lag")]
    max_lag_blocks: u64,
    /// Blocks a send next in line may wait unmined before it is sped up.
    #[serde(default = "default_eth_bump")]
    bump_after_blocks: u64,
    #[serde(default)]
    tokens: Vec<RawToken>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    symbol: String,
    contract: String,
    decimals: u8,
    max_gas: u64,
}

pub(super) fn default_min_priority() -> String {
    "1000000000".into()
}

/// About four minutes of Ethereum mainnet's 12-second blocks.
pub(super) fn default_eth_bump() -> u64 {
    20
}

pub(super) fn default_poll() -> u64 {
    4
}

pub(super) fn default_rpc_timeout() -> u64 {
    10
}

pub(super) fn default_lag() -> u64 {
    5
}

/// A configured Bitcoin network.
#[derive(Debug, Clone)]
pub struct BitcoinConfig {
    pub network: domain::BitcoinNetwork,
    pub fee_caps: chain_btc::FeeCaps,
    pub fee_rate: u64,
    pub batch: service::btc::BatchRule,
    pub poll_every: Duration,
    pub timeout: Duration,
    pub confirmations: u64,
    pub bump_after_blocks: u64,
    pub endpoints: Vec<chain_btc_client::Endpoint>,
    pub consolidation: Option<service::btc::ConsolidationRule>,
}

/// A configured EVM network: what the service enforces and how to reach it.
#[derive(Debug, Clone)]
pub struct EthereumConfig {
    pub network: service::eth::EthNetworkConfig,
    pub endpoints: Vec<String>,
    pub poll_every: Duration,
    pub client: chain_eth_client::ClientOptions,
}

pub(super) fn wei(key: &str, v: &str) -> Result<u128, ConfigError> {
    if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ConfigError::new(
            key,
            "must be a whole number of wei, in digits",
        ));
    }
    v.parse()
        .map_err(|_| ConfigError::new(key, "does not fit 128 bits"))
}

pub(super) fn btc(raw: RawBitcoin, i: usize, base: &Path) -> Result<BitcoinConfig, ConfigError> {
    let key = |k: &str| format!("bitcoin[{i}].{k}");
    let network = match format!("bitcoin:{}", raw.network).parse::<domain::Network>() {
        Ok(domain::Network::Bitcoin(n)) => n,
        _ => {
            return Err(ConfigError::new(
                &key("network"),
                "mainnet, testnet, signet or regtest",
            ));
        }
    };
    for (k, v) in [
        ("max_fee_rate_sat_vb", raw.max_fee_rate_sat_vb),
        ("max_fee_sat", raw.max_fee_sat),
    ] {
        if v == 0 {
            return Err(ConfigError::new(&key(k), "fee caps must be above 0"));
        }
    }
    if raw.fee_rate_sat_vb == 0 || raw.fee_rate_sat_vb > raw.max_fee_rate_sat_vb {
        return Err(ConfigError::new(
            &key("fee_rate_sat_vb"),
            "must be between 1 and max_fee_rate_sat_vb",
        ));
    }
    if !(1..=1000).contains(&raw.batch_max_payouts) {
        return Err(ConfigError::new(
            &key("batch_max_payouts"),
            "must be between 1 and 1000",
        ));
    }
    if raw.batch_window_seconds > 86_400 {
        return Err(ConfigError::new(
            &key("batch_window_seconds"),
            "at most a day",
        ));
    }
    if !(1..=3600).contains(&raw.poll_seconds) {
        return Err(ConfigError::new(
            &key("poll_seconds"),
            "must be between 1 and 3600",
        ));
    }
    for (k, v) in [
        ("confirmations", raw.confirmations),
        ("bump_after_blocks", raw.bump_after_blocks),
    ] {
        if !(1..=1000).contains(&v) {
            return Err(ConfigError::new(&key(k), "must be between 1 and 1000"));
        }
    }
    let consolidation = match raw.consolidate_below_sat_vb {
        None => None,
        Some(below) => {
            if below == 0 || below > raw.max_fee_rate_sat_vb {
                return Err(ConfigError::new(
                    &key("consolidate_below_sat_vb"),
                    "between 1 and max_fee_rate_sat_vb",
                ));
            }
            if !(2..=1000).contains(&raw.consolidate_min_outputs)
                || !(raw.consolidate_min_outputs..=1000).contains(&raw.consolidate_max_inputs)
            {
                return Err(ConfigError::new(
                    &key("consolidate_min_outputs"),
                    "2 ≤ consolidate_min_outputs ≤ consolidate_max_inputs ≤ 1000",
                ));
            }
            Some(service::btc::ConsolidationRule {
                below_sat_vb: below,
                max_output_sat: raw.consolidate_max_output_sat,
                min_outputs: usize::try_from(raw.consolidate_min_outputs).unwrap_or(10),
                max_inputs: usize::try_from(raw.consolidate_max_inputs).unwrap_or(100),
            })
        }
    };
    let mut endpoints = Vec::with_capacity(raw.endpoints.len());
    for (j, e) in raw.endpoints.into_iter().enumerate() {
        let ekey = |k: &str| key(&format!("endpoints[{j}].{k}"));
        let kind = match e.kind.as_str() {
            "core" => chain_btc_client::EndpointKind::Core,
            "esplora" => chain_btc_client::EndpointKind::Esplora,
            _ => return Err(ConfigError::new(&ekey("kind"), "core or esplora")),
        };
        if e.url.contains('@') {
            return Err(ConfigError::new(
                &ekey("url"),
                "a URL without credentials (they go in auth_file)",
            ));
        }
        super::transport::url_rule(&ekey("url"), &e.url, e.allow_http)?;
        let auth = match e.auth_file {
            Some(f) => {
                let path = base.join(f);
                let text = std::fs::read_to_string(&path).map_err(|err| {
                    ConfigError::new(
                        &ekey("auth_file"),
                        format!("cannot read {}: {err}", path.display()),
                    )
                })?;
                Some(text.trim().to_owned())
            }
            None => None,
        };
        endpoints.push(chain_btc_client::Endpoint {
            kind,
            url: e.url,
            auth,
        });
    }
    Ok(BitcoinConfig {
        network,
        fee_caps: chain_btc::FeeCaps {
            max_fee_rate: raw.max_fee_rate_sat_vb,
            max_fee: raw.max_fee_sat,
        },
        fee_rate: raw.fee_rate_sat_vb,
        batch: service::btc::BatchRule {
            window_ms: i64::try_from(raw.batch_window_seconds)
                .unwrap_or(86_400)
                .saturating_mul(1000),
            max_payouts: usize::try_from(raw.batch_max_payouts).unwrap_or(1000),
        },
        poll_every: Duration::from_secs(raw.poll_seconds),
        timeout: Duration::from_secs(raw.timeout_seconds.clamp(1, 300)),
        confirmations: raw.confirmations,
        bump_after_blocks: raw.bump_after_blocks,
        endpoints,
        consolidation,
    })
}

pub(super) fn eth(
    raw: RawEthereum,
    i: usize,
    client_tls: &tls::ClientTls,
) -> Result<EthereumConfig, ConfigError> {
    use chain_eth::EthAddress;
    use domain::{Asset, AssetId, AssetKind, ContractAddress, Decimals, Network, Symbol};
    let key = |k: &str| format!("ethereum[{i}].{k}");
    if raw.chain_id == 0 {
        return Err(ConfigError::new(&key("chain_id"), "must not be 0"));
    }
    let network = Network::Evm {
        chain_id: raw.chain_id,
    };
    if raw.endpoints.is_empty() {
        return Err(ConfigError::new(&key("endpoints"), "at least one node URL"));
    }
    let endpoints = raw
        .endpoints
        .into_iter()
        .enumerate()
        .map(|(j, e)| e.checked(&key(&format!("endpoints[{j}]"))))
        .collect::<Result<Vec<_>, _>>()?;
    if !(1..=1000).contains(&raw.confirmations) {
        return Err(ConfigError::new(
            &key("confirmations"),
            "must be between 1 and 1000",
        ));
    }
    if !(1..=1000).contains(&raw.bump_after_blocks) {
        return Err(ConfigError::new(
            &key("bump_after_blocks"),
            "must be between 1 and 1000",
        ));
    }
    if !(1..=3600).contains(&raw.poll_seconds) {
        return Err(ConfigError::new(
            &key("poll_seconds"),
            "must be between 1 and 3600",
        ));
    }
    if !(1..=300).contains(&raw.timeout_seconds) {
        return Err(ConfigError::new(
            &key("timeout_seconds"),
            "must be between 1 and 300",
        ));
    }
    let fee_caps = chain_eth::FeeCaps {
        max_fee_per_gas: wei(&key("max_fee_per_gas_wei"), &raw.max_fee_per_gas_wei)?,
        max_total_fee: wei(&key("max_total_fee_wei"), &raw.max_total_fee_wei)?,
    };
    let min_priority_fee = wei(&key("min_priority_fee_wei"), &raw.min_priority_fee_wei)?;
    if fee_caps.max_fee_per_gas == 0 || fee_caps.max_total_fee == 0 {
        return Err(ConfigError::new(
            &key("max_fee_per_gas_wei"),
            "fee caps must be above 0",
        ));
    }
    let mut tokens: Vec<service::eth::EthToken> = Vec::new();
    for (j, t) in raw.tokens.into_iter().enumerate() {
        let tkey = |k: &str| key(&format!("tokens[{j}].{k}"));
        // Contracts are written checksummed: a typo here would route every payment.
        let contract = EthAddress::parse_checksummed(&t.contract)
            .map_err(|e| ConfigError::new(&tkey("contract"), e.to_string()))?;
        chain_eth::check_destination(contract)
            .map_err(|e| ConfigError::new(&tkey("contract"), e.to_string()))?;
        if tokens.iter().any(|o| o.contract == contract) {
            return Err(ConfigError::new(&tkey("contract"), "configured twice"));
        }
        let bad = |k: &str, e: &dyn std::fmt::Display| ConfigError::new(&tkey(k), e.to_string());
        let id = AssetId::new(
            network,
            AssetKind::Erc20(ContractAddress::from_bytes(*contract.as_bytes())),
        )
        .map_err(|e| bad("contract", &e))?;
        let asset = Asset::new(
            id,
            Symbol::new(&t.symbol).map_err(|e| bad("symbol", &e))?,
            Decimals::new(t.decimals).map_err(|e| bad("decimals", &e))?,
        )
        .map_err(|e| bad("decimals", &e))?;
        if !(21_000..=10_000_000).contains(&t.max_gas) {
            return Err(ConfigError::new(
                &tkey("max_gas"),
                "must be between 21000 and 10000000",
            ));
        }
        tokens.push(service::eth::EthToken {
            asset,
            contract,
            max_gas: t.max_gas,
        });
    }
    Ok(EthereumConfig {
        network: service::eth::EthNetworkConfig {
            chain_id: raw.chain_id,
            legacy: raw.legacy,
            confirmations: raw.confirmations,
            bump_after_blocks: raw.bump_after_blocks,
            fee_caps,
            min_priority_fee,
            allow_unchecksummed: raw.allow_unchecksummed,
            tokens,
        },
        endpoints,
        poll_every: Duration::from_secs(raw.poll_seconds),
        client: chain_eth_client::ClientOptions {
            timeout: Duration::from_secs(raw.timeout_seconds),
            max_lag_blocks: raw.max_lag_blocks,
            tls: Some(client_tls.clone()),
        },
    })
}
