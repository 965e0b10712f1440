//! What the binary configures the service with: EVM and Bitcoin networks
//! (with their node clients) and how governance is run. Plain data, at the
//! bottom of the layers.

use std::sync::Arc;

use chain_btc::FeeCaps as BtcFeeCaps;
use chain_btc_client::BtcClient;
use chain_eth::{EthAddress, FeeCaps};
use chain_eth_client::EthClient;
use domain::{Asset, BitcoinNetwork, Network};

/// A token the operators configured on a network.
#[derive(Debug, Clone)]
pub struct EthToken {
    pub asset: Asset,
    pub contract: EthAddress,
    /// The most gas a transfer of this token may use.
    pub max_gas: u64,
}

/// One EVM network as configured.
#[derive(Debug, Clone)]
pub struct EthNetworkConfig {
    pub chain_id: u64,
    /// Legacy (EIP-155) transactions, for networks without EIP-1559.
    pub legacy: bool,
    /// Blocks on top of the including block before a send is final.
    pub confirmations: u64,
    /// Blocks a broadcast send next in line for its sender may wait unmined
    /// before it is sped up (`eth_stall`).
    pub bump_after_blocks: u64,
    pub fee_caps: FeeCaps,
    /// The least priority fee offered, in wei.
    pub min_priority_fee: u128,
    /// Accept destinations written in one case (no checksum).
    pub allow_unchecksummed: bool,
    pub tokens: Vec<EthToken>,
}

impl EthNetworkConfig {
    /// What a transfer of `asset` not yet planned reserves for its fee: the
    /// most its plan may pay — its gas limit (a plain transfer's 21 000, a
    /// token's configured ceiling) at the capped fee per gas — within the
    /// cap on the whole fee. Once planned, its own plan's bound replaces it.
    pub fn fee_reserve(&self, asset: &str) -> u128 {
        self.fee_bound(asset, None)
    }

    /// The most a transfer of `asset` may pay in fees, every speed-up
    /// included: its gas limit once planned (`planned_gas`), else the
    /// asset's, at the capped fee per gas, within the cap on a whole fee.
    pub fn fee_bound(&self, asset: &str, planned_gas: Option<u64>) -> u128 {
        let gas = if planned_gas.is_some() {
            planned_gas
        } else if asset.ends_with("/native") {
            Some(chain_eth::approved::PLAIN_GAS)
        } else {
            self.tokens
                .iter()
                .find(|t| t.asset.id().to_string() == asset)
                .map(|t| t.max_gas)
        };
        match gas {
            Some(gas) => u128::from(gas)
                .saturating_mul(self.fee_caps.max_fee_per_gas)
                .min(self.fee_caps.max_total_fee),
            None => self.fee_caps.max_total_fee,
        }
    }
}

/// What the configuration file says of one network's governed settings
/// (`governed`): its fee caps and its endpoints' origins — their first
/// values, and what a difference is logged against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Configured {
    pub(crate) caps: crate::changes::GovernedFeeCaps,
    pub(crate) origins: Vec<String>,
}

/// The configured networks, by name (`eip155:1`, `bitcoin:mainnet`).
pub(crate) type ConfiguredNetworks =
    std::sync::RwLock<std::collections::BTreeMap<String, Configured>>;

/// A configured network and its node client.
#[derive(Debug)]
pub struct EthNetwork {
    pub config: EthNetworkConfig,
    pub client: Arc<EthClient>,
}

impl EthNetwork {
    pub(crate) fn network(&self) -> Network {
        Network::Evm {
            chain_id: self.config.chain_id,
        }
    }
}

/// One Bitcoin network as configured.
#[derive(Debug, Clone)]
pub struct BtcNetwork {
    pub network: BitcoinNetwork,
    pub fee_caps: BtcFeeCaps,
    /// Sat per virtual byte for transfers when no node estimates one.
    pub fee_rate: u64,
    /// How queued payouts of one wallet are gathered into one transaction.
    pub batch: BatchRule,
    /// Blocks on top of a deposit's (its own counted) before it is
    /// credited, and of a send's before it is complete.
    pub confirmations: u64,
    /// Blocks a broadcast send may wait before it is replaced by a faster
    /// one (BIP-125), again after each replacement, up to the fee cap.
    pub bump_after_blocks: u64,
    /// Where to broadcast; without one, sends stop at `signed`.
    pub client: Option<Arc<BtcClient>>,
    /// When and what a wallet may consolidate (none: never).
    pub consolidation: Option<ConsolidationRule>,
}

/// Small outputs of a wallet are spent into one of its own only while the
/// fee rate is at most `below_sat_vb`: outputs of at most `max_output_sat`,
/// at least `min_outputs` of them, at most `max_inputs` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsolidationRule {
    pub below_sat_vb: u64,
    pub max_output_sat: u64,
    pub min_outputs: usize,
    pub max_inputs: usize,
}

/// Queued payouts of one wallet go out together once the oldest has waited
/// `window_ms` or `max_payouts` are waiting, whichever comes first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRule {
    pub window_ms: i64,
    pub max_payouts: usize,
}

impl Default for BatchRule {
    /// No waiting: each pass sends what is queued, up to 50 payouts.
    fn default() -> Self {
        BatchRule {
            window_ms: 0,
            max_payouts: 50,
        }
    }
}

/// How governance and approvals are run. The binary reads it from the
/// `[governance]` section; there is no silent default there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GovernanceConfig {
    /// Admin approvals a proposal needs (the proposer's included).
    pub admin_quorum: u32,
    /// How long a proposal stays open.
    pub proposal_ttl_ms: i64,
    /// How long a new address-book entry waits before it can be used.
    pub whitelist_cooling_off_ms: i64,
    /// How long a transfer waits for its approvals before it lapses.
    pub approval_window_ms: i64,
    /// The longest an approver's signature may stay valid.
    pub max_approval_ttl_ms: i64,
    /// Look-alike screening: a destination sharing this many characters
    /// at the start and at the end of its body (after `0x`, `bc1q`, …)
    /// with an address-book entry or a recent destination, without being
    /// it, is refused (address poisoning).
    pub lookalike_head: u8,
    pub lookalike_tail: u8,
}

impl GovernanceConfig {
    /// What a single-admin test or development installation runs with.
    pub fn single_admin() -> Self {
        GovernanceConfig {
            admin_quorum: 1,
            proposal_ttl_ms: 7 * 24 * 3_600_000,
            whitelist_cooling_off_ms: 24 * 3_600_000,
            approval_window_ms: 24 * 3_600_000,
            max_approval_ttl_ms: 24 * 3_600_000,
            lookalike_head: 4,
            lookalike_tail: 4,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fees_are_bounded_by_the_gas_limit_at_the_capped_price() {
        let token = Asset::new(
            "eip155:1/erc20:0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
                .parse()
                .unwrap(),
            domain::Symbol::new("USDC").unwrap(),
            domain::Decimals::new(6).unwrap(),
        )
        .unwrap();
        let cfg = EthNetworkConfig {
            chain_id: 1,
            legacy: false,
            confirmations: 12,
            bump_after_blocks: 3,
            fee_caps: FeeCaps {
                max_fee_per_gas: 100,
                max_total_fee: 10_000_000,
            },
            min_priority_fee: 1,
            allow_unchecksummed: false,
            tokens: vec![EthToken {
                asset: token.clone(),
                contract: "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
                    .parse()
                    .unwrap(),
                max_gas: 90_000,
            }],
        };
        let usdc = token.id().to_string();
        assert_eq!(cfg.fee_reserve("eip155:1/native"), 2_100_000);
        // A token not yet planned: its ceiling; planned: the plan's limit.
        assert_eq!(cfg.fee_reserve(&usdc), 9_000_000);
        assert_eq!(cfg.fee_bound(&usdc, Some(60_000)), 6_000_000);
        // Never above the cap on a whole fee.
        assert_eq!(cfg.fee_bound(&usdc, Some(200_000)), 10_000_000);
        // A token no longer configured: the whole cap.
        assert_eq!(
            cfg.fee_reserve("eip155:1/erc20:0x00000000000000000000000000000000000000aa"),
            10_000_000
        );
    }
}
