//! A stuck Bitcoin send sped up by a BIP-125 replacement, through the same
//! gate as any send: the replacement spends the same inputs and pays the
//! same transfers, its extra fee taken from the change; `chain_btc::approve`
//! checks it against the transfers' stored intents, the reserved outputs,
//! the wallet's own scripts and the fee caps before any key signs; it is
//! signed, verified by Core's interpreter, stored with the transaction it
//! replaces (either may still be mined: the loop knows both), audited, and
//! broadcast under the freeze's ordering.
//!
//! The loop (`btc_watch`) asks for it when a send has waited
//! `bump_after_blocks` blocks since it was first seen waiting; the rate is
//! the node's estimate for the batch's most urgent transfer, at least one
//! sat/vB over the current rate, never above the cap. At the cap, or with
//! too little change to pay more, the send is left as it is and a person is
//! told (an alert in the log).

use domain::{Actor, BitcoinNetwork};
use serde_json::json;
use storage::BtcSendRow;

use crate::btc::{net_name, target_blocks};
use crate::btc_transfers::utxo_of;
use crate::error::BtcServiceError;
use crate::moves::corrupt;
use crate::record::entry;
use crate::service::{Service, ServiceError};

impl Service {
    /// Replaces the broadcast send `send` by a faster one, if it can;
    /// returns the new txid. `tip` is the height it waits from afterwards.
    pub(crate) async fn btc_bump(
        &self,
        n: BitcoinNetwork,
        send: &BtcSendRow,
        tip: u64,
    ) -> Result<Option<String>, ServiceError> {
        let net = self.btc_network(n)?;
        let Some(client) = net.client.clone() else {
            return Ok(None);
        };
        let wallet = send
            .wallet
            .ok_or_else(|| corrupt("Bitcoin send", "no wallet"))?;
        self.ensure_not_frozen(Some(wallet), None).await?;
        let (Some(old_txid), Some(_)) = (&send.txid, &send.raw) else {
            return Ok(None);
        };
        let transfers = self.store().transfers_of_btc_send(&send.id).await?;
        let rank = transfers.iter().map(|t| t.priority).max().unwrap_or(1);
        let old = bitcoin::Psbt::deserialize(&send.psbt).map_err(|e| corrupt("PSBT", e))?;
        // The plan the stored transaction is: its reserved inputs in order,
        // one payout per transfer, then the change.
        let reserved = self.store().btc_utxos_of_send(&send.id).await?;
        let mut inputs = Vec::with_capacity(old.unsigned_tx.input.len());
        for i in &old.unsigned_tx.input {
            let row = reserved
                .iter()
                .find(|r| {
                    r.txid == i.previous_output.txid.to_string() && r.vout == i.previous_output.vout
                })
                .ok_or_else(|| corrupt("Bitcoin send", "an input it does not hold"))?;
            inputs.push(utxo_of(row)?);
        }
        let mut outputs = old.unsigned_tx.output.iter().map(|o| chain_btc::Payout {
            script_pubkey: o.script_pubkey.clone(),
            value_sat: o.value.to_sat(),
        });
        let payouts: Vec<_> = outputs.by_ref().take(transfers.len()).collect();
        let change = outputs.next();
        let plan = chain_btc::BtcPlan {
            inputs,
            payouts,
            change,
            rbf: true,
        };
        let vsize = plan.max_vsize().map_err(BtcServiceError::Tx)?.max(1);
        let old_rate = send.fee_sat.div_ceil(vsize);
        let estimate = client
            .fee_rate(target_blocks(rank))
            .await
            .unwrap_or(net.fee_rate);
        let rate = estimate
            .max(old_rate.saturating_add(1))
            .min(net.fee_caps.max_fee_rate);
        if rate <= old_rate {
            tracing::error!(alert = true, send = %send.id, rate = old_rate,
                "a Bitcoin send waits at the fee cap: a person decides (raise the cap, or wait)");
            return Ok(None);
        }
        let faster = match chain_btc::bump(&plan, rate) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(alert = true, send = %send.id, error = %e,
                    "a Bitcoin send cannot be sped up by replacement");
                return Ok(None);
            }
        };
        net.fee_caps.check(&faster).map_err(BtcServiceError::Plan)?;
        // Its keys sign offline: a faster replacement would need them
        // again; it waits as it is (nothing is signed for nothing).
        for key in self.btc_send_keys(&send.id).await? {
            if self.signs_offline(key).await? {
                tracing::info!(send = %send.id, "not sped up: its transaction needs offline signatures");
                return Ok(None);
            }
        }
        let psbt = faster.psbt().map_err(BtcServiceError::Tx)?;
        // Approved as any send is, from the stored intents, then signed
        // through the gate.
        let signed = match self
            .btc_approve_and_sign(send, &psbt, &transfers, n, wallet)
            .await?
        {
            crate::gate::BtcSigned::Whole(t) => t,
            // Checked above; a cold wallet's key is never the last signer.
            crate::gate::BtcSigned::Partial { .. } => return Ok(None),
        };
        let txid = signed.compute_txid().to_string();
        let raw = bitcoin::consensus::serialize(&signed);
        let fee = faster.fee_sat().map_err(BtcServiceError::Tx)?;
        let keys = self.btc_send_keys(&send.id).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.replace_btc_send(
            &send.id,
            old_txid,
            (&psbt.serialize(), &raw, &txid, fee),
            tip,
            now,
        )
        .await?;
        let e = entry(
            &Actor::System,
            "btc.tx.replaced",
            &format!("btc-send:{}", send.id),
            json!({ "network": net_name(n), "old_txid": old_txid, "txid": txid,
                    "old_fee_sat": send.fee_sat, "fee_sat": fee, "fee_rate": rate,
                    "target_blocks": target_blocks(rank) }),
        )?;
        self.commit(tx, &[e], now).await?;
        self.btc_send_again(&client, &send.id, wallet, &keys, &raw, &txid)
            .await?;
        Ok(Some(txid))
    }

    /// Hands a broadcast send's stored bytes to the node (again), ordered
    /// with every freeze like any broadcast; a refusal is logged (the next
    /// pass tries again).
    pub(crate) async fn btc_send_again(
        &self,
        client: &chain_btc_client::BtcClient,
        id: &str,
        wallet: domain::WalletId,
        keys: &[domain::KeyId],
        raw: &[u8],
        txid: &str,
    ) -> Result<(), ServiceError> {
        let (flight, sent) = self
            .broadcast(
                format!("btc-send:{id}"),
                Some(wallet),
                keys,
                client.broadcast(raw, txid),
                |e| matches!(e, chain_btc_client::ClientError::Unavailable(_)),
                || chain_btc_client::ClientError::Unavailable("the broadcast timed out".into()),
            )
            .await?;
        match sent {
            Ok(_) => {
                let now = self.now();
                let mut tx = self.store().begin().await?;
                flight.end_in(&mut tx, "sent", now).await?;
                let e = entry(
                    &Actor::System,
                    "btc.tx.broadcast",
                    &format!("btc-send:{id}"),
                    json!({ "txid": txid }),
                )?;
                self.commit(tx, &[e], now).await?;
                self.broadcasts_ended().notify_waiters();
            }
            Err(e) => {
                tracing::warn!(send = %id, error = %e, "a Bitcoin send was not accepted (yet)");
            }
        }
        Ok(())
    }

    /// Sends that wait: noted when first seen waiting; sent again when the
    /// node has lost them; replaced by a faster one after
    /// `bump_after_blocks`. How many were replaced.
    pub(crate) async fn btc_stuck(
        &self,
        n: BitcoinNetwork,
        tip: u64,
    ) -> Result<usize, ServiceError> {
        let net = self.btc_network(n)?;
        let Some(client) = net.client.clone() else {
            return Ok(0);
        };
        let mut replaced = 0;
        for send in self
            .store()
            .btc_sends_in(&net_name(n), &["broadcast"])
            .await?
        {
            let (Some(wallet), Some(txid), Some(raw)) = (send.wallet, &send.txid, &send.raw) else {
                continue;
            };
            let Some(since) = send.waiting_since else {
                let now = self.now();
                let mut tx = self.store().begin().await?;
                tx.set_btc_waiting_since(&send.id, tip).await?;
                let e = entry(
                    &Actor::System,
                    "btc.send.waiting",
                    &format!("btc-send:{}", send.id),
                    json!({ "txid": txid, "tip": tip }),
                )?;
                self.commit(tx, &[e], now).await?;
                continue;
            };
            if tip >= since.saturating_add(net.bump_after_blocks) {
                match self.btc_bump(n, &send, tip).await {
                    Ok(Some(_)) => replaced += 1,
                    Ok(None) => {}
                    Err(ServiceError::Frozen(_)) => {}
                    Err(e) => {
                        tracing::warn!(send = %send.id, error = %e, "a Bitcoin send was not sped up");
                    }
                }
            } else if client.tx_state(txid).await.map_err(BtcServiceError::Node)?
                == chain_btc_client::TxState::Unknown
            {
                let keys = self.btc_send_keys(&send.id).await?;
                match self
                    .btc_send_again(&client, &send.id, wallet, &keys, raw, txid)
                    .await
                {
                    Ok(()) | Err(ServiceError::Frozen(_)) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(replaced)
    }
}
