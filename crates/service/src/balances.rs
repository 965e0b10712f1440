//! What a wallet's readers see: its transfers (with their history and
//! approvals), balances (on chain, reserved, awaiting, available) and
//! deposits.

use domain::{Asset, Network, Permission, TransferId, WalletId, permits};
use storage::{ApprovalRow, StorageError, TransferRow};

use crate::access::{Can, perm};
use crate::error::AuthError;
use crate::moves::corrupt;
use crate::requests::needs;
use crate::service::{Service, ServiceError};

/// One asset of a wallet: what the chain holds and what is spoken for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetBalance {
    pub asset: Asset,
    /// The account (EIP-55 address) on an EVM network; none for Bitcoin,
    /// whose balance is every output the wallet's keys hold.
    pub account: Option<String>,
    /// On chain at the latest block, on the wallet's sender; `None` when no
    /// node answered.
    pub on_chain: Option<u128>,
    /// On chain at the network's confirmation depth: what is credited
    /// (deposits count once this deep).
    pub credited: Option<u128>,
    /// Deposits seen, not yet at the confirmation depth.
    pub incoming: u128,
    /// Queued, or on its way and not yet at the confirmation depth.
    pub reserved: u128,
    /// Waiting for approvals or in a time lock.
    pub awaiting: u128,
    /// Ether only: what the open transfers on the network may still pay in
    /// fees (each planned one its plan's bound, each other the most its
    /// plan could pay within the caps). Counted out of `available`.
    pub fees_reserved: u128,
    /// The most one more transfer could be: credited less reserved and
    /// awaiting and, for ether, every open transfer's fee cap and its own
    /// (zero when over-committed).
    pub available: Option<u128>,
}

/// Of `asset`, what open transfers take: (committed, awaiting approval or
/// a time lock).
fn spoken_for(outflows: &[storage::Outflow], asset: &str) -> Result<(u128, u128), ServiceError> {
    let (mut reserved, mut awaiting) = (0u128, 0u128);
    for o in outflows.iter().filter(|o| o.asset == asset) {
        let slot = if o.committed {
            &mut reserved
        } else {
            &mut awaiting
        };
        *slot = slot
            .checked_add(o.amount)
            .ok_or_else(|| corrupt("outflows", "overflow"))?;
    }
    Ok((reserved, awaiting))
}

impl Can<'_, perm::ReadWallet> {
    /// A transfer's intent as the server itself reads it before signing:
    /// decoded with the configured assets (symbol and decimals must be
    /// theirs), its digest the stored one.
    pub fn transfer_intent(&self, t: &TransferRow) -> Result<domain::TransferIntent, ServiceError> {
        crate::moves::decode_intent(t, &self.svc.configured_assets())
    }

    /// Transfers newest first, of one wallet (read on that wallet) or of
    /// all (a global read); paged by the oldest id of the previous page.
    pub async fn transfers(
        &self,
        wallet: Option<WalletId>,
        state: Option<&str>,
        before: Option<TransferId>,
        limit: u32,
    ) -> Result<Vec<TransferRow>, ServiceError> {
        if !permits(self.who.grants(), Permission::ReadWallet, wallet) {
            return Err(AuthError::Forbidden.into());
        }
        Ok(self
            .svc
            .store()
            .transfers_page(wallet, state, before, limit.clamp(1, 500))
            .await?)
    }

    /// Balances of a wallet's assets on every EVM network it sends on.
    pub async fn balances(&self, wallet: WalletId) -> Result<Vec<AssetBalance>, ServiceError> {
        if !permits(self.who.grants(), Permission::ReadWallet, Some(wallet)) {
            return Err(StorageError::NotFound { what: "wallet" }.into());
        }
        let svc = self.svc;
        svc.store().wallet(wallet).await?;
        let outflows = svc.store().wallet_outflows(wallet).await?;
        let mut incoming: std::collections::BTreeMap<String, u128> = Default::default();
        for d in svc.store().wallet_deposits(wallet, 10_000).await? {
            let internal = d.from.starts_with("change:") || d.from.starts_with("internal:");
            if d.state == "seen" && !internal {
                let slot = incoming.entry(d.asset).or_default();
                *slot = slot.saturating_add(d.amount);
            }
        }
        let mut out: Vec<AssetBalance> = Vec::new();
        // Every account, the sender transfers leave from first on each
        // network. A database from before one account per network may hold
        // a second: it is counted, and spends nothing.
        for (network, address) in svc.store().wallet_eth_senders(wallet).await? {
            let Ok(Network::Evm { chain_id }) = network.parse::<Network>() else {
                continue;
            };
            let Ok(net) = svc.eth_network(chain_id) else {
                continue;
            };
            let sending = svc.store().wallet_eth_sender(wallet, &network).await?;
            let spends = sending.as_deref() == Some(address.as_str());
            let from: chain_eth::EthAddress =
                address.parse().map_err(|e| corrupt("sender address", e))?;
            let ether = Asset::ether(chain_id);
            let ether_id = ether.id().to_string();
            let mut assets = vec![(ether, None)];
            assets.extend(
                net.config
                    .tokens
                    .iter()
                    .map(|t| (t.asset.clone(), Some(t.contract))),
            );
            let recorded = svc
                .store()
                .eth_highest_block(&network, &from.to_lower_hex())
                .await?;
            let credited_at = svc.credited_block(&net, recorded).await.ok();
            for (asset, contract) in assets {
                let on_chain = match contract {
                    None => net.client.balance(from).await,
                    Some(c) => net.client.erc20_balance(c, from).await,
                }
                .ok();
                let credited = match (credited_at, contract) {
                    (None, _) => None,
                    (Some(at), None) => net.client.balance_at(from, at).await.ok(),
                    (Some(at), Some(c)) => net.client.erc20_balance_at(c, from, at).await.ok(),
                };
                let id = asset.id().to_string();
                if !spends {
                    out.push(AssetBalance {
                        account: Some(from.to_string()),
                        incoming: 0,
                        asset,
                        on_chain,
                        credited,
                        reserved: 0,
                        awaiting: 0,
                        fees_reserved: 0,
                        available: credited.map(|_| 0),
                    });
                    continue;
                }
                let (reserved, awaiting) = spoken_for(&outflows, &id)?;
                // The most one more transfer could be: what the funds check
                // would allow (for ether, after the fees every open transfer
                // may pay and its own).
                let need = needs(&outflows, &network, &id, &ether_id, 0, |a, gas| {
                    net.config.fee_bound(a, gas)
                })
                .ok_or_else(|| corrupt("outflows", "overflow"))?;
                let (bound, fees_reserved) = if id == ether_id {
                    (need.ether, need.fees_reserved)
                } else {
                    (need.asset, 0)
                };
                out.push(AssetBalance {
                    account: Some(from.to_string()),
                    incoming: incoming.get(&id).copied().unwrap_or(0),
                    asset,
                    on_chain,
                    credited,
                    reserved,
                    awaiting,
                    fees_reserved,
                    available: credited.map(|h| h.saturating_sub(bound)),
                });
            }
        }
        self.btc_balances(wallet, &outflows, &incoming, &mut out)
            .await?;
        Ok(out)
    }

    /// Bitcoin, per configured network the wallet has an account on:
    /// credited is what its held outputs (free or reserved, not yet seen
    /// spent) carry; available leaves out what is spoken for and the
    /// network's fee cap.
    async fn btc_balances(
        &self,
        wallet: WalletId,
        outflows: &[storage::Outflow],
        incoming: &std::collections::BTreeMap<String, u128>,
        out: &mut Vec<AssetBalance>,
    ) -> Result<(), ServiceError> {
        let svc = self.svc;
        let nets: Vec<_> = svc
            .btc_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for net in nets {
            let network = crate::btc::net_name(net.network);
            if svc
                .store()
                .btc_account_keys(wallet, &network)
                .await?
                .is_empty()
            {
                continue;
            }
            let mut credited = 0u128;
            for state in ["available", "reserved"] {
                for u in svc
                    .store()
                    .wallet_btc_utxos(wallet, &network, state)
                    .await?
                {
                    credited = credited
                        .checked_add(u128::from(u.value_sat))
                        .ok_or_else(|| corrupt("outputs", "overflow"))?;
                }
            }
            let asset = Asset::bitcoin(net.network);
            let id = asset.id().to_string();
            let (reserved, awaiting) = spoken_for(outflows, &id)?;
            let bound = reserved
                .saturating_add(awaiting)
                .saturating_add(u128::from(net.fee_caps.max_fee));
            out.push(AssetBalance {
                account: None,
                incoming: incoming.get(&id).copied().unwrap_or(0),
                asset,
                on_chain: None,
                credited: Some(credited),
                reserved,
                awaiting,
                fees_reserved: 0,
                available: Some(credited.saturating_sub(bound)),
            });
        }
        Ok(())
    }

    pub async fn transfer(
        &self,
        id: TransferId,
    ) -> Result<(TransferRow, Vec<ApprovalRow>), ServiceError> {
        let t = self.svc.store().transfer(id).await?;
        if !permits(self.who.grants(), Permission::ReadWallet, Some(t.wallet)) {
            return Err(StorageError::NotFound { what: "transfer" }.into());
        }
        let a = self.svc.store().approvals(id).await?;
        Ok((t, a))
    }

    /// A wallet's deposits (Ethereum), newest first.
    pub async fn deposits(
        &self,
        wallet: WalletId,
        limit: u32,
    ) -> Result<Vec<storage::DepositRow>, ServiceError> {
        self.deposits_page(wallet, None, limit).await
    }

    /// A page of a wallet's deposits, newest first, after the one `after`
    /// names (transaction hash, log index).
    pub async fn deposits_page(
        &self,
        wallet: WalletId,
        after: Option<(&str, i64)>,
        limit: u32,
    ) -> Result<Vec<storage::DepositRow>, ServiceError> {
        if !permits(self.who.grants(), Permission::ReadWallet, Some(wallet)) {
            return Err(StorageError::NotFound { what: "wallet" }.into());
        }
        self.svc.store().wallet(wallet).await?;
        Ok(self
            .svc
            .store()
            .wallet_deposits_page(wallet, after, limit.clamp(1, 500))
            .await?)
    }

    /// Every state the transfer passed through: when, by whom, why.
    pub async fn history(&self, id: TransferId) -> Result<Vec<storage::HistoryRow>, ServiceError> {
        let t = self.svc.store().transfer(id).await?;
        if !permits(self.who.grants(), Permission::ReadWallet, Some(t.wallet)) {
            return Err(StorageError::NotFound { what: "transfer" }.into());
        }
        Ok(self.svc.store().transfer_history(id).await?)
    }
}

impl Service {
    /// A transfer's approvals, for a caller already authorised on it (the
    /// answer to its request or vote).
    pub async fn approvals_of(&self, id: TransferId) -> Result<Vec<ApprovalRow>, ServiceError> {
        Ok(self.store().approvals(id).await?)
    }
}
