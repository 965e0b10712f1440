//! A transfer request: what an initiator asks for, validated against the
//! configured networks and assets (amount in the asset's base units,
//! destination checked for its network), and the funds check made under the
//! wallet's lock — what the chain holds at the credited depth against this
//! transfer, every outflow still open, and the fees they may pay (a planned
//! send's own bound; until then the most a plan could pay within the caps).

use chain_btc::BtcAddress;
use domain::{
    Address, Amount, Asset, AssetId, AssetKind, BitcoinNetwork, Network, TransferId, TransferKind,
    WalletId,
};
use serde_json::json;
use storage::WriteTx;

use crate::moves::{corrupt, invalid};
use crate::service::{Service, ServiceError};

/// What an initiator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    pub wallet: WalletId,
    pub asset: AssetId,
    /// A decimal amount in the asset's units.
    pub amount: String,
    pub destination: String,
    pub reference: Option<String>,
    /// The client's own id for the transfer, unique per initiator.
    pub external_id: Option<String>,
    /// Higher goes first among queued transfers.
    pub priority: Priority,
    /// A transfer that must complete before this one starts (one the
    /// initiator can see); if it ends otherwise, this one fails.
    pub depends_on: Option<TransferId>,
    /// A withdrawal, or a sweep of a rotated key's funds to its successor
    /// (made by the rotation itself, never asked for over the API).
    pub kind: TransferKind,
    /// A sweep of an Ethereum deposit address: its account id (the sweep's
    /// source, bound in its intent). `None`: the wallet's own account.
    pub source: Option<domain::AccountId>,
}

/// A queued transfer's place in line.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub const fn rank(self) -> u8 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        }
    }

    /// The priority of a stored rank.
    pub fn of_rank(rank: u8) -> Option<Priority> {
        [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ]
        .into_iter()
        .find(|p| p.rank() == rank)
    }
}

impl TransferRequest {
    /// SHA-256 over the request's fields in a fixed order: what an
    /// idempotency key is bound to.
    pub(crate) fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = json!([
            self.wallet.to_string(),
            self.asset.to_string(),
            self.amount,
            self.destination,
            self.reference,
            self.external_id,
            self.priority.rank(),
            self.depends_on.map(|d| d.to_string()),
            self.kind,
            self.source.map(|s| s.to_string()),
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// The parts of a request that do not depend on the database's state.
pub(crate) struct Prepared {
    pub(crate) asset: Asset,
    pub(crate) amount: Amount,
    pub(crate) network: String,
    /// Canonical key (EVM: lower-case hex; Bitcoin: bech32).
    pub(crate) destination_key: String,
    /// As shown and signed (EVM: EIP-55).
    pub(crate) destination: Address,
}

/// Balances of an EVM sender at a block, as the node gave them.
pub(crate) struct Held {
    from: chain_eth::EthAddress,
    at: u64,
    ether: u128,
    /// Of the transfer's token, if it is one.
    token: Option<u128>,
}

impl Service {
    /// Checks a request against the configured networks and assets, then
    /// screens its destination (deny list, look-alikes).
    pub(crate) async fn prepare(&self, req: &TransferRequest) -> Result<Prepared, ServiceError> {
        let p = self.prepare_unscreened(req).await?;
        self.screen_destination(&p.network, &p.destination_key)
            .await?;
        Ok(p)
    }

    async fn prepare_unscreened(&self, req: &TransferRequest) -> Result<Prepared, ServiceError> {
        let chain_id = match req.asset.network() {
            Network::Evm { chain_id } => chain_id,
            Network::Bitcoin(n) => return self.prepare_btc(req, n),
        };
        let net = self
            .eth_network(chain_id)
            .map_err(|e| invalid(format!("asset {}: {e}", req.asset)))?;
        let asset = match req.asset.kind() {
            AssetKind::Native => Asset::ether(chain_id),
            AssetKind::Erc20(_) => net
                .config
                .tokens
                .iter()
                .find(|t| t.asset.id() == &req.asset)
                .map(|t| t.asset.clone())
                .ok_or_else(|| invalid(format!("asset {} is not configured", req.asset)))?,
        };
        let amount =
            Amount::parse(&req.amount, &asset).map_err(|e| invalid(format!("amount: {e}")))?;
        if amount.is_zero() {
            return Err(invalid("amount: must be greater than zero"));
        }
        let check = |whitelist: &[String]| {
            chain_eth::DestinationRules {
                allow_unchecksummed: net.config.allow_unchecksummed,
                whitelist,
            }
            .check(&req.destination)
        };
        // Written in one case (no checksum), a destination is taken only
        // as an address-book entry exactly as the book holds it (lower
        // case): governance checked that one when it was added.
        let to = match check(&[]) {
            Err(chain_eth::AddressError::Unchecksummed(_)) => {
                let network = asset.network().to_string();
                let book: Vec<String> = self
                    .address_book()
                    .await?
                    .into_iter()
                    .filter(|w| w.network == network)
                    .map(|w| w.address)
                    .collect();
                check(&book)
            }
            checked => checked,
        }
        .map_err(|e| invalid(format!("destination: {e}")))?;
        // Refused now, as the worker would refuse it later.
        if net.config.tokens.iter().any(|t| t.contract == to) {
            return Err(invalid(format!(
                "destination: {to} is a token contract: tokens sent to it are lost"
            )));
        }
        // Ether is sent only where no code runs when paid (the worker
        // refuses the plan otherwise): said now. A node that cannot answer
        // leaves it to the worker, which fails closed.
        if *asset.id().kind() == AssetKind::Native
            && net.client.code(to).await.is_ok_and(|code| !code.is_empty())
        {
            return Err(invalid(format!(
                "destination: {to} is a contract (code runs when it is paid); only plain \
                 transfers are sent"
            )));
        }
        // A token configured where nothing is deployed holds nothing and
        // moves nothing: said now (the worker checks again).
        if let AssetKind::Erc20(c) = asset.id().kind()
            && net
                .client
                .code(chain_eth::EthAddress::from(*c))
                .await
                .is_ok_and(|code| code.is_empty())
        {
            return Err(invalid(format!(
                "asset {}: no contract is deployed at its address on this chain",
                req.asset
            )));
        }
        let network = asset.network().to_string();
        let destination = Address::new(asset.network(), &to.to_string())
            .map_err(|e| invalid(format!("destination: {e}")))?;
        Ok(Prepared {
            asset,
            amount,
            network,
            destination_key: to.to_lower_hex(),
            destination,
        })
    }

    /// A source account is named only by a sweep of one of the wallet's
    /// Ethereum deposit addresses, on the transfer's network.
    pub(crate) async fn check_source(
        &self,
        req: &TransferRequest,
        p: &Prepared,
    ) -> Result<(), ServiceError> {
        if req.source.is_some()
            && (req.kind != TransferKind::Sweep
                || !matches!(p.asset.network(), Network::Evm { .. }))
        {
            return Err(invalid(
                "source: only a sweep of an Ethereum deposit address names a source account",
            ));
        }
        if let Some(id) = req.source {
            let ours = self
                .store()
                .eth_deposit_address(id)
                .await?
                .is_some_and(|d| d.wallet == req.wallet && d.network == p.network);
            if !ours {
                return Err(invalid(
                    "source: no deposit address of this wallet on this network",
                ));
            }
        }
        Ok(())
    }

    /// [`Self::prepare`], and what the funds check would refuse without
    /// reading balances: a payment to the wallet's own sender (dry-run).
    pub(crate) async fn prepare_checked(
        &self,
        req: &TransferRequest,
    ) -> Result<Prepared, ServiceError> {
        let p = self.prepare(req).await?;
        self.check_source(req, &p).await?;
        if matches!(req.asset.network(), Network::Evm { .. })
            && !matches!(req.kind, TransferKind::Sweep)
            && self
                .store()
                .wallet_eth_sender(req.wallet, &p.network)
                .await?
                .is_some_and(|from| from.eq_ignore_ascii_case(&p.destination_key))
        {
            return Err(invalid(
                "destination: the wallet's own sender (a transfer to itself pays only fees)",
            ));
        }
        Ok(p)
    }

    /// Refuses a transfer the wallet cannot cover. The chain's holdings on
    /// the wallet's sender must cover, in the asset, this amount and every
    /// transfer of the asset still to leave; and in ether, every ether
    /// transfer still to leave plus the fee cap of each transfer still to
    /// leave on the network (tokens' gas is paid in ether too). Outflows are
    /// read first, under the judgment's wallet lock, and counted until their
    /// transaction is confirmed: a send already in a block is counted twice
    /// for a few blocks (the safe direction), never missed.
    /// What the node says a wallet's sender holds of a transfer's asset
    /// (and ether, for fees), read before the transfer's write transaction
    /// so the database's write lock is not held over node round trips.
    /// `None` when there is nothing to read or the read failed: the funds
    /// check then reads under the lock (and reports any error there).
    pub(crate) async fn held_before(&self, req: &TransferRequest, p: &Prepared) -> Option<Held> {
        let Network::Evm { chain_id } = req.asset.network() else {
            return None;
        };
        let net = self.eth_network(chain_id).ok()?;
        let from = self
            .eth_source(
                req.wallet,
                &p.network,
                req.kind,
                req.source,
                &p.destination_key,
            )
            .await;
        let from = from.ok()??.parse().ok()?;
        self.held(&net, from, &req.asset, None).await.ok()
    }

    /// What `from` holds at the newest credited block (see
    /// [`Self::credited_block`]).
    async fn held(
        &self,
        net: &crate::eth::EthNetwork,
        from: chain_eth::EthAddress,
        asset: &AssetId,
        recorded: Option<u64>,
    ) -> Result<Held, ServiceError> {
        let at = self.credited_block(net, recorded).await?;
        let token = match net.config.tokens.iter().find(|t| t.asset.id() == asset) {
            Some(t) => Some(
                net.client
                    .erc20_balance_at(t.contract, from, at)
                    .await
                    .map_err(crate::eth::EthError::Node)?,
            ),
            None => None,
        };
        let ether = net
            .client
            .balance_at(from, at)
            .await
            .map_err(crate::eth::EthError::Node)?;
        Ok(Held {
            from,
            at,
            ether,
            token,
        })
    }

    pub(crate) async fn ensure_funds(
        &self,
        tx: &mut WriteTx,
        req: &TransferRequest,
        p: &Prepared,
        before: Option<Held>,
    ) -> Result<(), ServiceError> {
        let chain_id = match req.asset.network() {
            Network::Evm { chain_id } => chain_id,
            Network::Bitcoin(n) => return self.ensure_btc_funds(tx, req, p, n).await,
        };
        let net = self
            .eth_network(chain_id)
            .map_err(|e| invalid(format!("asset {}: {e}", req.asset)))?;
        let from = match (req.kind, req.source) {
            (TransferKind::Sweep, Some(id)) => self.deposit_sweep_source(tx, req, p, id).await?,
            (_, Some(_)) => return Err(invalid("source: only a sweep names a source account")),
            (TransferKind::GasTopUp, None) => {
                self.check_gas_top_up(req, p, &net).await?;
                tx.wallet_eth_sender_in_tx(req.wallet, &p.network)
                    .await?
                    .ok_or_else(|| invalid(format!("the wallet has no sender on {}", p.network)))?
            }
            (TransferKind::Sweep, None) => tx
                .sweep_source_in_tx(req.wallet, &p.network, &p.destination_key)
                .await?
                .ok_or_else(|| {
                    invalid("a sweep goes only from a rotated account to its successor's address")
                })?,
            _ => tx
                .wallet_eth_sender_in_tx(req.wallet, &p.network)
                .await?
                .ok_or_else(|| invalid(format!("the wallet has no sender on {}", p.network)))?,
        };
        let from: chain_eth::EthAddress = from.parse().map_err(|e| corrupt("sender", e))?;
        // A deposit sweep's gas may come from the top-up it waits for.
        let topped_up = self.topped_up(tx, req, &from).await?;
        if from.to_lower_hex() == p.destination_key {
            return Err(invalid(
                "destination: the wallet's own sender (a transfer to itself pays only fees)",
            ));
        }
        // A sweep empties the retired account: the wallet's other outflows
        // leave from its current one. A deposit address's open sweeps are
        // its own outflows.
        let outflows = match (req.kind, req.source) {
            (TransferKind::Sweep, Some(id)) => tx.deposit_outflows_in_tx(id).await?,
            (TransferKind::Sweep, None) => Vec::new(),
            _ => tx.wallet_outflows_in_tx(req.wallet).await?,
        };
        let need = needs(
            &outflows,
            &p.network,
            &req.asset.to_string(),
            &Asset::ether(chain_id).id().to_string(),
            p.amount.units(),
            |a, gas| net.config.fee_bound(a, gas),
        )
        .ok_or_else(|| corrupt("outflows", "overflow"))?;
        let ether = Asset::ether(chain_id);
        let check = |needed: u128, held: u128, asset: &Asset| {
            if needed <= held {
                return Ok(());
            }
            let d = asset.decimals();
            Err(ServiceError::InsufficientFunds(format!(
                "{} {} needed (this transfer, those still to leave and the fees they may pay), {} held",
                domain::amount::format_units(needed, d, false),
                asset.symbol().as_str(),
                domain::amount::format_units(held, d, false),
            )))
        };
        let recorded = tx
            .eth_highest_block_in_tx(&p.network, &from.to_lower_hex())
            .await?;
        // Balances read before this transaction count only if every send
        // finished since (no longer an outflow) is in them: finished at
        // or below the block they were read at. Otherwise read again, here.
        let token = net
            .config
            .tokens
            .iter()
            .find(|t| t.asset.id() == &req.asset);
        let held = match before {
            Some(h)
                if h.from == from
                    && recorded.is_none_or(|r| r <= h.at)
                    && (token.is_none() || h.token.is_some()) =>
            {
                h
            }
            _ => self.held(&net, from, &req.asset, recorded).await?,
        };
        if let Some(t) = token {
            let units = held
                .token
                .ok_or_else(|| corrupt("token balance", "not read"))?;
            check(need.asset, units, &t.asset)?;
        }
        check(need.ether, held.ether.saturating_add(topped_up), &ether)
    }

    /// The block whose balances count: the newest at the network's
    /// confirmation depth, so a deposit is credited only once it is that
    /// deep (and a reorganised one never was). Our own sends are counted as
    /// outflows until they are finished at that depth; a node whose depth
    /// is below the block of a send already finished (a lagging endpoint)
    /// would show a balance from before it while it no longer counts as an
    /// outflow, so it is refused rather than trusted.
    pub(crate) async fn credited_block(
        &self,
        net: &crate::eth::EthNetwork,
        recorded: Option<u64>,
    ) -> Result<u64, ServiceError> {
        let head = net
            .client
            .block_number()
            .await
            .map_err(crate::eth::EthError::Node)?;
        let at = head.saturating_sub(net.config.confirmations.saturating_sub(1));
        if recorded.is_some_and(|r| r > at) {
            return Err(
                crate::eth::EthError::Node(crate::eth::ClientError::Unavailable(
                    "the node is behind a send already finished".into(),
                ))
                .into(),
            );
        }
        Ok(at)
    }

    pub(crate) fn prepare_btc(
        &self,
        req: &TransferRequest,
        n: BitcoinNetwork,
    ) -> Result<Prepared, ServiceError> {
        self.btc_network(n)
            .map_err(|e| invalid(format!("asset {}: {e}", req.asset)))?;
        let asset = Asset::bitcoin(n);
        if asset.id() != &req.asset {
            return Err(invalid(format!("asset {} is not configured", req.asset)));
        }
        let amount =
            Amount::parse(&req.amount, &asset).map_err(|e| invalid(format!("amount: {e}")))?;
        if amount.is_zero() {
            return Err(invalid("amount: must be greater than zero"));
        }
        let to = BtcAddress::parse(&req.destination, n)
            .map_err(|e| invalid(format!("destination: {e}")))?;
        let dust = to.script_pubkey().minimal_non_dust().to_sat();
        if amount.units() < u128::from(dust) {
            return Err(invalid(format!(
                "amount: below {dust} sat, the least an output to this address may carry"
            )));
        }
        let text = to.to_string();
        let destination = domain::Address::new(asset.network(), &text)
            .map_err(|e| invalid(format!("destination: {e}")))?;
        Ok(Prepared {
            network: asset.network().to_string(),
            asset,
            amount,
            destination_key: text,
            destination,
        })
    }

    /// Refuses a Bitcoin transfer the wallet cannot pay now: its free
    /// outputs (outputs reserved by a send are spoken for; its change counts
    /// once it is recorded back) must cover this amount, every payout still
    /// waiting for a transaction, and the fee cap of each.
    pub(crate) async fn ensure_btc_funds(
        &self,
        tx: &mut WriteTx,
        req: &TransferRequest,
        p: &Prepared,
        n: BitcoinNetwork,
    ) -> Result<(), ServiceError> {
        let net = self.btc_network(n)?;
        // A sweep spends its rotated key's outputs only; anything else, the
        // wallet's other outputs (a rotated key's are for its sweep).
        let sweep_from = match req.kind {
            TransferKind::Sweep => Some(
                tx.btc_sweep_source_in_tx(req.wallet, &p.network, &p.destination_key)
                    .await?
                    .ok_or_else(|| {
                        invalid("a sweep goes only from a rotated key to its successor's address")
                    })?,
            ),
            _ => None,
        };
        let retired = self.retired_btc_keys(req.wallet, &p.network).await?;
        let mut held: u128 = 0;
        for u in tx
            .wallet_btc_utxos_in_tx(req.wallet, &p.network, "available")
            .await?
        {
            let (_, key, _) = crate::btc::spend_of(&u.spend)?;
            let counts = match sweep_from {
                Some(from) => key == from,
                None => !retired.contains(&key),
            };
            if counts {
                held = held.saturating_add(u128::from(u.value_sat));
            }
        }
        // A consolidation pays the wallet itself what its outputs hold but
        // their fee (already taken off): what leaves is that fee alone.
        if req.kind == TransferKind::Consolidation && p.amount.units() <= held {
            return Ok(());
        }
        let asset = req.asset.to_string();
        let waiting = match sweep_from {
            Some(_) => Vec::new(),
            None => tx.unplanned_outflows_in_tx(req.wallet, &asset).await?,
        };
        let mut needed = p.amount.units();
        for units in &waiting {
            needed = needed
                .checked_add(*units)
                .and_then(|x| x.checked_add(u128::from(net.fee_caps.max_fee)))
                .ok_or_else(|| corrupt("outflows", "overflow"))?;
        }
        needed = needed.saturating_add(u128::from(net.fee_caps.max_fee));
        if needed <= held {
            return Ok(());
        }
        let d = p.asset.decimals();
        Err(ServiceError::InsufficientFunds(format!(
            "{} BTC needed (this transfer, those still to leave and their fee caps), {} held",
            domain::amount::format_units(needed, d, false),
            domain::amount::format_units(held, d, false),
        )))
    }
}

/// What the wallet must hold on `network` for one more transfer of
/// `amount` of `asset`, given its open transfers: in the asset, every open
/// transfer of it and this one; in ether, every ether transfer and the most
/// each transfer on the network may pay in fees (`fee_bound`: its planned
/// gas limit once planned, its asset's until then, at the capped price).
/// `None` on overflow.
pub(crate) fn needs(
    outflows: &[storage::Outflow],
    network: &str,
    asset: &str,
    ether: &str,
    amount: u128,
    fee_bound: impl Fn(&str, Option<u64>) -> u128,
) -> Option<Needs> {
    let prefix = format!("{network}/");
    let mut in_asset = amount;
    let mut in_ether = if asset == ether { amount } else { 0 };
    let mut fees: u128 = 0;
    for o in outflows {
        if !o.asset.starts_with(&prefix) {
            continue;
        }
        fees = fees.checked_add(fee_bound(&o.asset, o.planned_gas))?;
        if o.asset == asset {
            in_asset = in_asset.checked_add(o.amount)?;
        }
        if o.asset == ether {
            in_ether = in_ether.checked_add(o.amount)?;
        }
    }
    Some(Needs {
        asset: in_asset,
        ether: in_ether
            .checked_add(fees)?
            .checked_add(fee_bound(asset, None))?,
        fees_reserved: fees,
    })
}

/// What a wallet must hold on a network for one more transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Needs {
    /// In the transfer's own asset (for ether, the same as `ether`).
    pub(crate) asset: u128,
    /// In ether: ether still to leave, the fees the open transfers may
    /// pay, and this one's.
    pub(crate) ether: u128,
    /// The fees the open transfers on the network may pay (reserved).
    pub(crate) fees_reserved: u128,
}

impl Service {
    /// A deposit sweep's source (lower-case hex): the deposit address `id`
    /// of this wallet and network; it pays only the wallet's own sender.
    async fn deposit_sweep_source(
        &self,
        tx: &mut WriteTx,
        req: &TransferRequest,
        p: &Prepared,
        id: domain::AccountId,
    ) -> Result<String, ServiceError> {
        let d = tx
            .eth_deposit_address_in_tx(id)
            .await?
            .filter(|d| d.wallet == req.wallet && d.network == p.network)
            .ok_or_else(|| invalid("source: no deposit address of this wallet on this network"))?;
        let account = tx.wallet_eth_sender_in_tx(req.wallet, &p.network).await?;
        if account.as_deref() != Some(p.destination_key.as_str()) {
            return Err(invalid(
                "destination: a deposit address is swept only to its wallet's sender",
            ));
        }
        Ok(d.address)
    }

    /// A gas top-up pays ether to one of the wallet's own deposit addresses,
    /// at most the fees of sweeping every configured token from it.
    async fn check_gas_top_up(
        &self,
        req: &TransferRequest,
        p: &Prepared,
        net: &crate::eth::EthNetwork,
    ) -> Result<(), ServiceError> {
        if *p.asset.id().kind() != AssetKind::Native {
            return Err(invalid("asset: a gas top-up pays ether"));
        }
        let ours = self
            .store()
            .eth_deposit_address_at(&p.network, &p.destination_key)
            .await?
            .is_some_and(|d| d.wallet == req.wallet);
        if !ours {
            return Err(invalid(
                "destination: a gas top-up pays one of the wallet's own deposit addresses",
            ));
        }
        let most = net
            .config
            .tokens
            .iter()
            .map(|t| net.config.fee_reserve(&t.asset.id().to_string()))
            .fold(0u128, u128::saturating_add);
        if p.amount.units() > most {
            return Err(invalid(format!(
                "amount: a gas top-up is at most the fees of sweeping every configured token \
                 ({most} wei)"
            )));
        }
        Ok(())
    }

    /// The ether a deposit sweep's gas top-up (the transfer it depends on,
    /// paying its source, not yet ended) brings: counted as held.
    async fn topped_up(
        &self,
        tx: &mut WriteTx,
        req: &TransferRequest,
        from: &chain_eth::EthAddress,
    ) -> Result<u128, ServiceError> {
        let (TransferKind::Sweep, Some(_), Some(dep)) = (req.kind, req.source, req.depends_on)
        else {
            return Ok(0);
        };
        let d = tx.lock_transfer(dep).await?;
        let intent = crate::moves::decode_intent(&d, &self.configured_assets())?;
        let open = !d
            .state
            .parse::<lifecycle::State>()
            .map_err(|e| corrupt("state", e))?
            .is_final();
        let pays_source = intent
            .destination()
            .as_str()
            .parse::<chain_eth::EthAddress>()
            .is_ok_and(|a| a == *from);
        Ok(
            if open && pays_source && intent.kind() == TransferKind::GasTopUp {
                intent.amount().units()
            } else {
                0
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = "eip155:1";
    const ETH: &str = "eip155:1/native";
    const USDC: &str = "eip155:1/erc20:a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";

    fn outflow(asset: &str, amount: u128, planned_gas: Option<u64>) -> storage::Outflow {
        storage::Outflow {
            asset: asset.to_owned(),
            amount,
            committed: true,
            planned_gas,
        }
    }

    #[test]
    fn transfers_reserve_the_fee_their_plan_may_pay() {
        // An ether transfer reserves 3 until planned, a token transfer 8;
        // planned, its gas limit bounds it (here the fee is the gas).
        let reserve = |asset: &str, gas: Option<u64>| match gas {
            Some(g) => u128::from(g),
            None if asset == ETH => 3,
            None => 8,
        };
        let open = vec![
            // Planned: its attempts may pay at most 2.
            outflow(ETH, 5, Some(2)),
            outflow(USDC, 700, None),
            // Another network's transfers need nothing here.
            outflow("eip155:10/native", 9_000, None),
        ];
        // One more ether transfer of 2: 5 + 2 ether, fees 2 + 8 open and 3.
        assert_eq!(
            needs(&open, NET, ETH, ETH, 2, reserve),
            Some(Needs {
                asset: 7,
                ether: 20,
                fees_reserved: 10,
            })
        );
        // One more token transfer of 300: 1 000 tokens, and in ether the
        // open ether transfer, the open fees and its own 8.
        assert_eq!(
            needs(&open, NET, USDC, ETH, 300, reserve),
            Some(Needs {
                asset: 1_000,
                ether: 23,
                fees_reserved: 10,
            })
        );
        assert_eq!(needs(&open, NET, ETH, ETH, u128::MAX, reserve), None);
    }
}
