//! The ledger against the chain, per wallet and asset on each EVM network
//! (ether and every configured token): what the wallet's senders hold at
//! the confirmation depth against the ledger's `available + reserved`.
//!
//! The comparison is made only when it can be exact: the deposit scanner
//! is past the depth block, the wallet has no deposit pending of the asset
//! and none of its senders has a transaction on its way. The first exact
//! comparison writes the wallet's `opening` movement (funds held before the
//! ledger began, e.g. before this version); every later difference is a
//! drift: less on chain than the ledger says means funds left without a
//! transaction Strongroom signed (a token allowance abused, a contract
//! drained), more means a deposit the scanner missed.

use std::collections::BTreeMap;

use domain::{Actor, Asset, WalletId};
use serde_json::json;

use crate::record::entry;
use crate::service::{Service, ServiceError};

/// A difference between the chain and the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Drift {
    pub network: String,
    pub wallet: WalletId,
    pub asset: String,
    /// The wallet's senders on the network, lower-case hex.
    pub addresses: Vec<String>,
    pub block: u64,
    pub chain: u128,
    pub ledger: i128,
}

impl Drift {
    /// Chain minus ledger.
    pub fn difference(&self) -> i128 {
        i128::try_from(self.chain)
            .unwrap_or(i128::MAX)
            .saturating_sub(self.ledger)
    }
}

fn node(e: chain_eth_client::ClientError) -> ServiceError {
    crate::eth::EthError::Node(e).into()
}

impl Service {
    /// Every exact comparison's difference, on every EVM network; the
    /// number of (wallet, asset) pairs compared. Openings are written here.
    pub(crate) async fn eth_drifts(&self) -> Result<(Vec<Drift>, u64), ServiceError> {
        let mut drifts = Vec::new();
        let mut compared = 0u64;
        for chain_id in self.eth_chain_ids() {
            let net = self.eth_network(chain_id)?;
            let network = net.network().to_string();
            // The chain first, then this database (what lands between is
            // then counted on both sides or skipped, never on one).
            let head = net.client.block_number().await.map_err(node)?;
            let at = head.saturating_sub(net.config.confirmations.saturating_sub(1));
            let mut wallets: BTreeMap<WalletId, Vec<chain_eth::EthAddress>> = BTreeMap::new();
            for (sender, wallet) in self.store().eth_senders_on(&network).await? {
                if let Some(w) = wallet {
                    let a = sender.address.parse().map_err(|_| {
                        storage::StorageError::Corrupt(format!("address {}", sender.address))
                    })?;
                    wallets.entry(w).or_default().push(a);
                }
            }
            let mut assets = vec![(Asset::ether(chain_id), None)];
            assets.extend(
                net.config
                    .tokens
                    .iter()
                    .map(|t| (t.asset.clone(), Some(t.contract))),
            );
            let mut chain = Vec::new();
            for (wallet, addresses) in &wallets {
                for (asset, contract) in &assets {
                    let mut held = 0u128;
                    for a in addresses {
                        let v = match contract {
                            None => net.client.balance_at(*a, at).await,
                            Some(c) => net.client.erc20_balance_at(*c, *a, at).await,
                        }
                        .map_err(node)?;
                        held = held
                            .checked_add(v)
                            .ok_or_else(|| crate::moves::corrupt("balance", "overflow"))?;
                    }
                    chain.push((*wallet, asset.id().to_string(), addresses.clone(), held));
                }
            }
            // The scanner's cursor: in memory ahead of the database's (kept
            // every hundred blocks), either one past the depth block.
            let remembered = self
                .scan_cursors()
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .get(&network)
                .copied();
            let stored = self.store().scan_cursor(&network).await?;
            if remembered.max(stored).is_none_or(|next| next <= at) {
                continue; // the scanner has not read up to the depth yet
            }
            let in_flight: std::collections::HashSet<String> = self
                .store()
                .eth_sends_in(&network, &crate::eth::state::OPEN)
                .await?
                .into_iter()
                .map(|s| s.address)
                .collect();
            let mut ledgers = std::collections::HashMap::new();
            for (wallet, asset, addresses, held) in chain {
                let hex: Vec<String> = addresses.iter().map(|a| a.to_lower_hex()).collect();
                if hex.iter().any(|a| in_flight.contains(a)) {
                    continue;
                }
                // Each wallet's balances read once, for all its assets.
                let held_by = match ledgers.entry(wallet) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(self.store().ledger_balances(wallet).await?)
                    }
                };
                let b = held_by
                    .iter()
                    .find(|(a, _)| *a == asset)
                    .map(|(_, b)| *b)
                    .unwrap_or_default();
                if b.pending != 0 {
                    continue;
                }
                compared += 1;
                let d = Drift {
                    network: network.clone(),
                    wallet,
                    asset,
                    addresses: hex,
                    block: at,
                    chain: held,
                    ledger: b.available.saturating_add(b.reserved),
                };
                let opening = format!("opening:{}:{}", d.wallet, d.asset);
                if !self.store().ledger_has(&opening).await? {
                    self.ledger_opening(&d, &opening).await?;
                } else if d.difference() != 0 {
                    drifts.push(d);
                }
            }
        }
        Ok((drifts, compared))
    }

    /// The wallet's funds of an asset held before its ledger began.
    async fn ledger_opening(&self, d: &Drift, reference: &str) -> Result<(), ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        crate::ledger::other_moved(
            &mut tx,
            crate::ledger::Other {
                wallet: d.wallet,
                asset: &d.asset,
                kind: "opening",
                available: d.difference(),
                transfer: None,
                txid: None,
                block: Some(d.block),
                reference: reference.to_owned(),
            },
            now,
        )
        .await?;
        let e = entry(
            &Actor::System,
            "ledger.opened",
            &format!("wallet:{}", d.wallet),
            json!({ "asset": d.asset, "network": d.network, "block": d.block,
                    "chain": d.chain.to_string(), "ledger": d.ledger.to_string() }),
        )?;
        self.commit(tx, &[e], now).await?;
        Ok(())
    }
}
