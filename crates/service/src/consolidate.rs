//! Consolidation: a wallet's many small Bitcoin outputs spent into one of
//! its own while fees are low (`[[bitcoin]] consolidate_below_sat_vb`), so
//! they are not spent later at a higher rate. An ordinary transfer of kind
//! `consolidation`: judged by the policy in force (a rule matches it with
//! `types = ["consolidation"]`), approved as the policy says, batched alone,
//! planned from the small outputs only, and signed through the gate, which
//! signs it only if it pays the wallet itself.

use domain::{Asset, BitcoinNetwork, Permission, TransferKind, WalletId, permits};
use storage::{StorageError, TransferRow};

use crate::access::{Can, perm};
use crate::btc::{BtcServiceError, net_name};
use crate::moves::invalid;
use crate::requests::{Priority, TransferRequest};
use crate::service::ServiceError;

impl Can<'_, perm::InitiateTransfer> {
    /// Asks for a consolidation of the wallet's small outputs on `n`, now:
    /// refused (409) while the fee rate is above the configured level or
    /// when fewer small outputs than the configured minimum are free. It
    /// pays the wallet's own (next) deposit address all its outputs hold
    /// but the fee cap; whatever the fee leaves comes back as change.
    pub async fn consolidate(
        &self,
        wallet: WalletId,
        n: BitcoinNetwork,
    ) -> Result<TransferRow, ServiceError> {
        if !permits(
            self.who.grants(),
            Permission::InitiateTransfer,
            Some(wallet),
        ) {
            return Err(StorageError::NotFound { what: "wallet" }.into());
        }
        let svc = self.svc;
        let net = svc.btc_network(n)?;
        let name = net_name(n);
        let rule = net
            .consolidation
            .ok_or_else(|| invalid(format!("consolidation is not configured on {name}")))?;
        // The rate a low-priority payout would pay now.
        let rate = match &net.client {
            Some(c) => c
                .fee_rate(crate::btc::target_blocks(0))
                .await
                .unwrap_or(net.fee_rate),
            None => net.fee_rate,
        };
        if rate > rule.below_sat_vb {
            return Err(ServiceError::Conflict(format!(
                "the fee rate is {rate} sat/vB, above the consolidation level of {} sat/vB",
                rule.below_sat_vb
            )));
        }
        let retired = svc.retired_btc_keys(wallet, &name).await?;
        let cold = svc.is_cold(wallet).await?;
        let mut candidates = Vec::new();
        for row in svc
            .store()
            .wallet_btc_utxos(wallet, &name, "available")
            .await?
        {
            let key = crate::btc::spend_of(&row.spend)?.1;
            if !retired.contains(&key) && (!cold || svc.signs_offline(key).await?) {
                candidates.push(crate::btc_transfers::utxo_of(&row)?);
            }
        }
        let small = crate::btc_transfers::consolidation_inputs(candidates, &rule, rate);
        if small.len() < rule.min_outputs {
            return Err(ServiceError::Conflict(format!(
                "{} free outputs of at most {} sat: a consolidation needs {}",
                small.len(),
                rule.max_output_sat,
                rule.min_outputs
            )));
        }
        let total = small
            .iter()
            .try_fold(0u64, |a, u| a.checked_add(u.value_sat))
            .ok_or_else(|| invalid("amounts overflow"))?;
        // One at a time: a second waits for the first to end.
        let base = format!("consolidation:{wallet}:{name}");
        let mut external_id = base.clone();
        for k in 2u32.. {
            match svc
                .store()
                .sweeps_by_external_id(&external_id)
                .await?
                .first()
            {
                None => break,
                Some((id, st)) if !st.parse::<lifecycle::State>().is_ok_and(|s| s.is_final()) => {
                    return Err(ServiceError::Conflict(format!(
                        "a consolidation of this wallet is under way: transfer {id}"
                    )));
                }
                Some(_) => external_id = format!("{base}:{k}"),
            }
        }
        let destination = self.svc.internal_address(self.actor(), wallet, n).await?;
        // It pays itself all of them but their fee at this rate (with room
        // for a change output the planner may weigh): spending fewer would
        // not cover it, so the plan spends them all, into one output.
        let to = chain_btc::BtcAddress::parse(&destination, n)
            .map_err(|e| invalid(format!("own address: {e}")))?
            .script_pubkey();
        let change_room = to.len() as u64 + 9;
        let plan = chain_btc::BtcPlan {
            payouts: vec![chain_btc::Payout {
                script_pubkey: to,
                value_sat: total,
            }],
            inputs: small.clone(),
            change: None,
            rbf: true,
        };
        let vsize = plan.max_vsize().map_err(BtcServiceError::Tx)?;
        let fee = rate
            .max(1)
            .checked_mul(vsize.saturating_add(change_room))
            .ok_or_else(|| invalid("fee overflows"))?;
        let units = total
            .checked_sub(fee)
            .filter(|u| fee <= net.fee_caps.max_fee && *u >= 1_000)
            .ok_or_else(|| {
                ServiceError::Conflict(format!(
                    "{total} sat in small outputs: their fee of {fee} sat leaves too little, or \
                     exceeds the cap of {} sat",
                    net.fee_caps.max_fee
                ))
            })?;
        let asset = Asset::bitcoin(n);
        self.submit(&TransferRequest {
            wallet,
            asset: asset.id().clone(),
            amount: domain::amount::format_units(u128::from(units), asset.decimals(), false),
            destination,
            reference: Some(format!("consolidation of {} small outputs", small.len())),
            external_id: Some(external_id),
            priority: Priority::Low,
            depends_on: None,
            kind: TransferKind::Consolidation,
            source: None,
        })
        .await
    }
}
