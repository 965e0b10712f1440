//! Sweeps of Ethereum deposit addresses into their wallet's sender: what
//! each deposit address of an HD account holds at the confirmation depth
//! is moved by ordinary transfers of kind `sweep` (judged by the policy in
//! force; a rule matches them with `types = ["sweep"]`), each naming its
//! deposit address as its source account in its intent. A token sweep
//! needs ether for its gas at the deposit address: when it holds too
//! little, a `gas_top_up` transfer from the sender pays the fees of its
//! token sweeps first (at the network's caps), and the token sweeps depend
//! on it. Ether is swept less the fees of every sweep of that address, and
//! only when it is worth more than its own fee. One sweep of an address is
//! under way at a time: an address with one still open is left for later.

use chain_eth::EthAddress;
use domain::{Asset, Permission, TransferKind, WalletId, permits};
use storage::{EthDepositAddressRow, StorageError, TransferRow};

use crate::access::{Can, perm};
use crate::eth::EthError;
use crate::moves::{corrupt, invalid};
use crate::requests::{Priority, TransferRequest};
use crate::service::ServiceError;

/// What a sweep request made, and what it left and why.
#[derive(Debug, Clone, Default)]
pub struct DepositSweeps {
    /// The transfers made: gas top-ups first, then the sweeps.
    pub transfers: Vec<TransferRow>,
    /// Deposit addresses left as they are, each with the reason.
    pub left: Vec<String>,
}

impl Can<'_, perm::InitiateTransfer> {
    /// Sweeps what the wallet's deposit addresses on `chain_id` hold (at
    /// the confirmation depth) into its sender. See the module documentation.
    pub async fn sweep_deposits(
        &self,
        wallet: WalletId,
        chain_id: u64,
    ) -> Result<DepositSweeps, ServiceError> {
        if !permits(
            self.who.grants(),
            Permission::InitiateTransfer,
            Some(wallet),
        ) {
            return Err(StorageError::NotFound { what: "wallet" }.into());
        }
        let svc = self.svc;
        let net = svc.eth_network(chain_id)?;
        let network = net.network().to_string();
        let account = svc
            .store()
            .wallet_eth_sender(wallet, &network)
            .await?
            .ok_or_else(|| invalid(format!("the wallet has no account on {network}")))?;
        let to: EthAddress = account.parse().map_err(|e| corrupt("sender", e))?;
        let at = svc.credited_block(&net, None).await?;
        let mut out = DepositSweeps::default();
        for d in svc.store().eth_deposit_addresses(wallet, &network).await? {
            let from: EthAddress = d.address.parse().map_err(|e| corrupt("address", e))?;
            if let Some(open) = self.open_sweep(&d).await? {
                out.left
                    .push(format!("{from}: its sweep {open} is still under way"));
                continue;
            }
            let mut tokens: Vec<(Asset, u128)> = Vec::new();
            for t in &net.config.tokens {
                let held = net
                    .client
                    .erc20_balance_at(t.contract, from, at)
                    .await
                    .map_err(EthError::Node)?;
                if held > 0 {
                    tokens.push((t.asset.clone(), held));
                }
            }
            let ether = Asset::ether(chain_id);
            let held = net
                .client
                .balance_at(from, at)
                .await
                .map_err(EthError::Node)?;
            let token_fees = tokens
                .iter()
                .map(|(a, _)| net.config.fee_reserve(&a.id().to_string()))
                .fold(0u128, u128::saturating_add);
            let ether_fee = net.config.fee_reserve(&ether.id().to_string());
            let mut depends_on = None;
            if held < token_fees {
                let t = self
                    .sweep_transfer(
                        &d,
                        TransferKind::GasTopUp,
                        &ether,
                        token_fees - held,
                        from,
                        None,
                    )
                    .await?;
                let ended = t
                    .state
                    .parse::<lifecycle::State>()
                    .map_err(|e| corrupt("state", e))?
                    .is_final();
                depends_on = Some(t.id);
                out.transfers.push(t);
                // Refused by the policy: its token sweeps would fail with it.
                if ended {
                    out.left
                        .push(format!("{from}: its gas top-up was not allowed"));
                    continue;
                }
            }
            for (asset, units) in &tokens {
                let t = self
                    .sweep_transfer(&d, TransferKind::Sweep, asset, *units, to, depends_on)
                    .await?;
                out.transfers.push(t);
            }
            // Ether, less the fees of every sweep of this address.
            let rest = held.saturating_sub(token_fees.saturating_add(ether_fee));
            if rest >= ether_fee && rest > 0 {
                let t = self
                    .sweep_transfer(&d, TransferKind::Sweep, &ether, rest, to, None)
                    .await?;
                out.transfers.push(t);
            } else if tokens.is_empty() {
                out.left.push(format!(
                    "{from}: {held} wei, no more than the fees of its sweep may be"
                ));
            }
        }
        Ok(out)
    }

    /// The open transfer of an earlier sweep of `d` (or of a gas top-up
    /// paying it), if any.
    async fn open_sweep(&self, d: &EthDepositAddressRow) -> Result<Option<String>, ServiceError> {
        let open = self.svc.store().open_transfers_of_deposit(d).await?;
        Ok(open.first().map(ToString::to_string))
    }

    /// One transfer of a sweep of `d`: a gas top-up to it (from the
    /// wallet's sender), or a sweep from it (to the sender `to`).
    async fn sweep_transfer(
        &self,
        d: &EthDepositAddressRow,
        kind: TransferKind,
        asset: &Asset,
        units: u128,
        to: EthAddress,
        depends_on: Option<domain::TransferId>,
    ) -> Result<TransferRow, ServiceError> {
        let (what, source) = match kind {
            TransferKind::GasTopUp => ("gas", None),
            _ => ("sweep", Some(d.id)),
        };
        let address: EthAddress = d.address.parse().map_err(|e| corrupt("address", e))?;
        self.submit(&TransferRequest {
            wallet: d.wallet,
            asset: asset.id().clone(),
            amount: domain::amount::format_units(units, asset.decimals(), false),
            destination: to.to_string(),
            reference: Some(format!("{what} of deposit address {address}")),
            // Unique per sweep: the address, what it moves (ether, or the
            // token's contract) and the time; at most 96 characters.
            external_id: Some(format!(
                "deposit:{}:{what}:{}:{}",
                d.id,
                match asset.id().kind() {
                    domain::AssetKind::Native => "ether".to_owned(),
                    domain::AssetKind::Erc20(c) => hex::encode(c.as_bytes()),
                },
                self.svc.now().as_millis()
            )),
            priority: Priority::Normal,
            depends_on,
            kind,
            source,
        })
        .await
    }
}
