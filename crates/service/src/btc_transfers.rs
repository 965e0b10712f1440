//! Bitcoin transfers through the queue: a wallet's keys on a network
//! (outputs paying them are the wallet's), the funds check over its
//! outputs, and batches — queued payouts of one wallet gathered by time and
//! size into one transaction whose outputs are reserved, whose PSBT is
//! pinned with every transfer's move to `signing` in one transaction, and
//! which is signed only if it still pays exactly what was approved (Bitcoin
//! Core's interpreter verifying every input), then stored, then broadcast.

use std::collections::HashMap;

use chain_btc::{BtcAddress, Payout, Spend, Utxo};
use domain::{Actor, BitcoinNetwork, KeyId, Network, Timestamp, WalletId};
use lifecycle::Event;
use serde_json::json;
use storage::{BtcSendRow, StorageError, TransferRow, WriteTx};

use crate::btc::{BtcServiceError, net_name, spend_of};
use crate::moves::{Move, corrupt, invalid, state, transition};
use crate::record::entry;
use crate::service::{Service, ServiceError};

impl Service {
    /// Gives a single transfer-signing key to a wallet on a Bitcoin
    /// network: outputs paying its address are the wallet's, and the
    /// wallet's payouts spend them. Returns the address.
    pub async fn register_btc_key(
        &self,
        actor: &Actor,
        network: BitcoinNetwork,
        key: KeyId,
        wallet: WalletId,
    ) -> Result<String, ServiceError> {
        let address = self.btc_address(key, network).await?;
        self.register_btc_account(actor, network, key, wallet)
            .await?;
        Ok(address)
    }

    /// Gives a key (single, or an HD account) to a wallet on a network.
    pub(crate) async fn register_btc_account(
        &self,
        actor: &Actor,
        network: BitcoinNetwork,
        key: KeyId,
        wallet: WalletId,
    ) -> Result<(), ServiceError> {
        self.btc_network(network)?;
        self.store().wallet(wallet).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let e = account_added(&mut tx, actor, network, key, wallet, now).await?;
        self.commit(tx, &[e], now).await?;
        Ok(())
    }

    /// The address at (`chain`, `index`) below an HD account key, derived
    /// from its xpub alone (not yet recorded).
    pub(crate) async fn derive_btc_address(
        &self,
        wallet: WalletId,
        n: BitcoinNetwork,
        key: KeyId,
        chain: u32,
        index: u32,
    ) -> Result<storage::BtcAddressRow, ServiceError> {
        let spend = self.btc_spend_at(key, &[chain, index]).await?;
        let spk = spend.script_pubkey().map_err(BtcServiceError::Tx)?;
        let address = bitcoin::Address::from_script(&spk, crate::btc::chain_btc_network(n))
            .map_err(|_| BtcServiceError::Tx(chain_btc::BtcError::BadKey))?;
        Ok(storage::BtcAddressRow {
            network: net_name(n),
            key,
            chain,
            index,
            address: address.to_string(),
            script_pubkey: spk.to_hex_string(),
            wallet,
            created_at: self.now(),
        })
    }

    /// No deposit address for a key no verified backup holds (unless an
    /// operator accepted the risk for it).
    pub(crate) async fn backed_up(&self, key: domain::KeyId) -> Result<(), ServiceError> {
        if self.store().key_backed_up(&key.to_string()).await? {
            Ok(())
        } else {
            Err(ServiceError::NotBackedUp(key.to_string()))
        }
    }

    /// A wallet's next deposit address on a Bitcoin network: for an HD
    /// account, the last receive address issued while nothing has paid it,
    /// else the next one (recorded and audited); for a single key, its one
    /// address.
    pub(crate) async fn next_deposit_address(
        &self,
        actor: &Actor,
        wallet: WalletId,
        n: BitcoinNetwork,
    ) -> Result<String, ServiceError> {
        let name = net_name(n);
        self.btc_network(n)?;
        let keys = self.store().btc_current_account_keys(wallet, &name).await?;
        let mut hd = None;
        for k in &keys {
            if self.store().key(*k).await?.hd_path.is_some() {
                hd = Some(*k);
                break;
            }
        }
        let Some(key) = hd else {
            let single = keys
                .first()
                .ok_or_else(|| invalid(format!("the wallet has no account on {name}")))?;
            self.backed_up(*single).await?;
            return self.btc_address(*single, n).await;
        };
        self.backed_up(key).await?;
        let issued = self.store().btc_addresses_of_key(&name, key, 0).await?;
        if let Some(last) = issued.first()
            && !self
                .store()
                .btc_script_used(&name, &last.script_pubkey)
                .await?
        {
            return Ok(last.address.clone());
        }
        self.issue_btc_address(actor, wallet, n, key, issued.first().map(|a| a.index))
            .await
    }

    /// An address of the wallet's own for itself, not handed to anyone: for
    /// an HD account a new one on its internal (change) chain, recorded and
    /// audited; for a single key or a multisig account, its one address.
    pub(crate) async fn internal_address(
        &self,
        actor: &Actor,
        wallet: WalletId,
        n: BitcoinNetwork,
    ) -> Result<String, ServiceError> {
        let name = net_name(n);
        let keys = self.store().btc_current_account_keys(wallet, &name).await?;
        let key = *keys
            .first()
            .ok_or_else(|| invalid(format!("the wallet has no account on {name}")))?;
        if self.store().key(key).await?.hd_path.is_none() {
            return self.btc_address(key, n).await;
        }
        let next = self
            .store()
            .btc_addresses_of_key(&name, key, 1)
            .await?
            .first()
            .map_or(0, |a| a.index.saturating_add(1));
        let a = self.derive_btc_address(wallet, n, key, 1, next).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.insert_btc_address(&a).await?;
        let e = address_entry(actor, &a)?;
        self.commit(tx, &[e], now).await?;
        Ok(a.address)
    }

    /// Issues (records and audits) the next receive address of the HD
    /// account `key` for `wallet`, after index `last`.
    pub(crate) async fn issue_btc_address(
        &self,
        actor: &Actor,
        wallet: WalletId,
        n: BitcoinNetwork,
        key: KeyId,
        last: Option<u32>,
    ) -> Result<String, ServiceError> {
        let mut next = last.map_or(0, |i| i.saturating_add(1));
        // Two requests at once: the loser of the index takes the next one.
        for _ in 0..3 {
            let a = self.derive_btc_address(wallet, n, key, 0, next).await?;
            let now = self.now();
            let mut tx = self.store().begin().await?;
            match tx.insert_btc_address(&a).await {
                Ok(()) => {
                    let e = address_entry(actor, &a)?;
                    self.commit(tx, &[e], now).await?;
                    return Ok(a.address);
                }
                Err(StorageError::Conflict { .. }) => {
                    drop(tx);
                    next = next.saturating_add(1);
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ServiceError::Conflict(
            "deposit addresses are being issued for this wallet; try again".into(),
        ))
    }

    /// Records an output paying an address Strongroom issued (an HD
    /// account's): the wallet's to spend, signed by the child key.
    pub async fn btc_record_deposit_to(
        &self,
        actor: &Actor,
        n: BitcoinNetwork,
        address: &str,
        txid: &str,
        vout: u32,
        value_sat: u64,
    ) -> Result<storage::BtcUtxoRow, ServiceError> {
        let parsed = BtcAddress::parse(address, n).map_err(|e| invalid(format!("address: {e}")))?;
        let row = self
            .store()
            .btc_address_row(&net_name(n), &parsed.to_string())
            .await?
            .ok_or_else(|| invalid("not an address Strongroom issued"))?;
        let child = [row.chain, row.index];
        let spend = self.btc_spend_at(row.key, &child).await?;
        self.btc_record_output(
            actor,
            n,
            row.key,
            &child,
            spend,
            Some(row.wallet),
            txid,
            vout,
            value_sat,
        )
        .await
    }

    /// The wallet's keys on `network` whose accounts a rotation retired:
    /// their outputs go only to their sweeps.
    pub(crate) async fn retired_btc_keys(
        &self,
        wallet: WalletId,
        network: &str,
    ) -> Result<Vec<KeyId>, ServiceError> {
        let current = self
            .store()
            .btc_current_account_keys(wallet, network)
            .await?;
        Ok(self
            .store()
            .btc_account_keys(wallet, network)
            .await?
            .into_iter()
            .filter(|k| !current.contains(k))
            .collect())
    }

    /// The scripts a wallet's change may pay: its single keys' and every
    /// address issued to it.
    pub(crate) async fn own_scripts(
        &self,
        wallet: WalletId,
        network: &str,
    ) -> Result<Vec<bitcoin::ScriptBuf>, ServiceError> {
        let mut own = Vec::new();
        for k in self.store().btc_account_keys(wallet, network).await? {
            if self.store().key(k).await?.hd_path.is_none() {
                let spend = self.btc_spend_for(k).await?;
                own.push(spend.script_pubkey().map_err(BtcServiceError::Tx)?);
            }
        }
        for a in self.store().wallet_btc_addresses(wallet, network).await? {
            own.push(
                bitcoin::ScriptBuf::from_hex(&a.script_pubkey).map_err(|e| corrupt("script", e))?,
            );
        }
        Ok(own)
    }

    /// What a queued transfer asks of the batch, from its stored intent
    /// (checked against its digest), after the freeze and its approvals.
    pub(crate) async fn btc_payout_of(
        &self,
        t: &TransferRow,
        n: BitcoinNetwork,
    ) -> Result<chain_btc::Intended, ServiceError> {
        self.ensure_not_frozen(Some(t.wallet), None).await?;
        self.approvals_stand(std::slice::from_ref(t)).await?;
        self.judgment_stands_for_planning(t).await?;
        // Every payout of a batch, not only the one that was claimed first.
        self.screen_denied(&net_name(n), &t.destination).await?;
        intended_payout(self, t, n)?.map_err(|e| corrupt("intent", e))
    }

    /// Selects the wallet's outputs for the payouts and commits, in one
    /// transaction, their reservation, the PSBT and every transfer's move
    /// to `signing`, with the audit records. Returns the send's id.
    pub(crate) async fn plan_btc_batch(
        &self,
        wallet: WalletId,
        n: BitcoinNetwork,
        ready: &[(TransferRow, chain_btc::Intended)],
    ) -> Result<String, ServiceError> {
        let net = self.btc_network(n)?;
        let name = net_name(n);
        // A sweep (alone in its send) spends the rotated key's outputs only,
        // and whatever its fee leaves goes to its destination too.
        let sweep = match ready {
            [(_, one)] => match one.sweep_to() {
                Some(to) => Some((
                    self.store()
                        .btc_sweep_source(wallet, &name, to)
                        .await?
                        .ok_or_else(|| {
                            invalid(
                                "a sweep goes only from a rotated key to its successor's address",
                            )
                        })?,
                    one.payout().script_pubkey.clone(),
                )),
                None => None,
            },
            _ => None,
        };
        let keys = self.store().btc_current_account_keys(wallet, &name).await?;
        let change_key = *keys
            .first()
            .ok_or_else(|| invalid(format!("the wallet has no key on {name}")))?;
        // A single key takes its change back; an HD account a new change
        // address (chain 1), recorded with the plan.
        let change_address = if sweep.is_some() {
            None
        } else if self.store().key(change_key).await?.hd_path.is_some() {
            let next = self
                .store()
                .btc_addresses_of_key(&name, change_key, 1)
                .await?
                .first()
                .map_or(0, |a| a.index.saturating_add(1));
            Some(
                self.derive_btc_address(wallet, n, change_key, 1, next)
                    .await?,
            )
        } else {
            None
        };
        let change = match (&change_address, &sweep) {
            (_, Some((_, to))) => to.clone(),
            (Some(a), None) => {
                bitcoin::ScriptBuf::from_hex(&a.script_pubkey).map_err(|e| corrupt("script", e))?
            }
            (None, None) => self
                .btc_spend_for(change_key)
                .await?
                .script_pubkey()
                .map_err(BtcServiceError::Tx)?,
        };
        let retired = self.retired_btc_keys(wallet, &name).await?;
        // A consolidation (alone in its send) spends the small outputs only.
        let consolidation = match ready {
            [(_, one)] if one.is_consolidation() => Some(
                net.consolidation
                    .ok_or_else(|| invalid(format!("consolidation is not configured on {name}")))?,
            ),
            _ => None,
        };
        // A cold wallet spends only outputs a key held outside must sign
        // too: the server never completes its transaction alone.
        let cold = self.is_cold(wallet).await?;
        let mut offline: HashMap<KeyId, bool> = HashMap::new();
        let mut candidates = Vec::new();
        for row in self
            .store()
            .wallet_btc_utxos(wallet, &name, "available")
            .await?
        {
            let key = spend_of(&row.spend)?.1;
            let usable = match &sweep {
                Some((from, _)) => key == *from,
                None => !retired.contains(&key),
            };
            if usable && cold && !offline.contains_key(&key) {
                offline.insert(key, self.signs_offline(key).await?);
            }
            if usable && (!cold || offline.get(&key) == Some(&true)) {
                candidates.push(utxo_of(&row)?);
            }
        }
        // The fee follows the most urgent payout of the batch: the node's
        // estimate for confirmation within 1 (urgent), 2 (high), 6
        // (normal) or 24 (low) blocks, never above the cap.
        let target =
            crate::btc::target_blocks(ready.iter().map(|(t, _)| t.priority).max().unwrap_or(1));
        let fee_rate = match &net.client {
            Some(c) => c.fee_rate(target).await.unwrap_or(net.fee_rate),
            None => net.fee_rate,
        }
        .min(net.fee_caps.max_fee_rate);
        self.metrics().fee_estimated(
            &domain::Network::Bitcoin(net.network).to_string(),
            "sat_per_vb",
            u128::from(fee_rate),
        );
        if let Some(rule) = &consolidation {
            // Fees rose while it waited: it waits again (retried later).
            if fee_rate > rule.below_sat_vb {
                return Err(ServiceError::Conflict(format!(
                    "the fee rate is {fee_rate} sat/vB, above the consolidation level of {} sat/vB",
                    rule.below_sat_vb
                )));
            }
            candidates = consolidation_inputs(candidates, rule, fee_rate);
        }
        let payouts: Vec<Payout> = ready.iter().map(|(_, i)| i.payout().clone()).collect();
        let plan = chain_btc::select(&candidates, &payouts, &change, fee_rate, true)
            .map_err(BtcServiceError::Plan)?;
        net.fee_caps.check(&plan).map_err(BtcServiceError::Plan)?;
        let psbt = plan.psbt().map_err(BtcServiceError::Tx)?;
        // Checked as it will be before signing (refused plainly here): the
        // intents, the wallet's own outputs and scripts (the new change
        // address among them), the caps.
        let mut own = self.own_scripts(wallet, &name).await?;
        own.push(change.clone());
        let intended: Vec<chain_btc::Intended> = ready.iter().map(|(_, i)| i.clone()).collect();
        let paying = chain_btc::Paying {
            wallet,
            reserved: &plan.inputs,
            own: &own,
        };
        chain_btc::approve(&intended, paying, &net.fee_caps, &psbt.unsigned_tx)
            .map_err(|e| ServiceError::NotApproved(e.to_string()))?;
        let fee_sat = plan.fee_sat().map_err(BtcServiceError::Tx)?;
        let outpoints: Vec<(String, u32)> = plan
            .inputs
            .iter()
            .map(|u| (u.outpoint.txid.to_string(), u.outpoint.vout))
            .collect();
        let now = self.now();
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.store().begin().await?;
        let mut entries = Vec::new();
        if let (Some(a), Some(_)) = (&change_address, &plan.change) {
            tx.insert_btc_address(a).await?;
            entries.push(address_entry(&Actor::System, a)?);
        }
        tx.reserve_btc_utxos(
            &name,
            &outpoints,
            &id,
            Timestamp::from_millis(now.as_millis().saturating_add(7 * 86_400_000)),
        )
        .await?;
        tx.insert_btc_send(&BtcSendRow {
            id: id.clone(),
            network: name.clone(),
            psbt: psbt.serialize(),
            raw: None,
            txid: None,
            fee_sat,
            state: "planned".into(),
            wallet: Some(wallet),
            created_at: now,
            created_by: Actor::System,
            block: None,
            waiting_since: None,
        })
        .await?;
        for (t, _) in ready {
            // Only from `queued`: of two workers, the second finds it moved
            // on and its reservation goes back with its transaction.
            let t = tx.lock_transfer(t.id).await?;
            let mut m = Move::new(
                Event::Planned,
                &Actor::System,
                "outputs reserved and the transaction pinned",
            );
            m.btc_send_id = Some(&id);
            entries.push(transition(&mut tx, &t, m, now).await?.0);
        }
        entries.push(entry(
            &Actor::System,
            "btc.send.planned",
            &format!("btc-send:{id}"),
            json!({
                "network": name,
                "wallet": wallet.to_string(),
                "inputs": outpoints.iter().map(|(t, v)| format!("{t}:{v}")).collect::<Vec<_>>(),
                "transfers": ready.iter().map(|(t, _)| t.id.to_string()).collect::<Vec<_>>(),
                "fee_sat": fee_sat,
                "fee_rate": fee_rate,
                "fee_target_blocks": target,
                "unsigned_txid": psbt.unsigned_tx.compute_txid().to_string(),
            }),
        )?);
        self.commit(tx, &entries, now).await?;
        Ok(id)
    }

    /// Signs a planned send (if it is not signed yet) and broadcasts its
    /// stored transaction when a node is configured.
    pub async fn btc_sign_and_send(&self, send_id: &str) -> Result<(), ServiceError> {
        let send = self.store().btc_send(send_id).await?;
        if send.state == "planned" {
            self.btc_sign_send(&send).await?;
        }
        let send = self.store().btc_send(send_id).await?;
        if send.state == "signed" {
            self.btc_broadcast_send(&send).await?;
        }
        Ok(())
    }

    /// Signs and broadcasts every planned or signed send of a transfer
    /// batch (after a restart). Returns how many were signed or sent.
    pub async fn btc_resume(&self, n: BitcoinNetwork) -> Result<usize, ServiceError> {
        let mut done = 0;
        for send in self
            .store()
            .btc_sends_in(&net_name(n), &["planned", "signed"])
            .await?
        {
            if send.wallet.is_none() {
                continue;
            }
            match self.btc_sign_and_send(&send.id).await {
                Ok(()) => done += 1,
                Err(e) => tracing::warn!(send = %send.id, error = %e, "Bitcoin resume failed"),
            }
        }
        Ok(done)
    }

    /// What is signed is what was approved: the stored PSBT must be exactly
    /// the plan rebuilt from the outputs reserved for it and its transfers'
    /// intents (each paid once, in order, with change only to the wallet's
    /// own keys). A mismatch refuses to sign, is audited, and freezes the
    /// wallet. Otherwise every input is signed through the keystore's gate,
    /// Core's interpreter verifies the result, and the transaction is
    /// stored with every transfer's move to `signed`.
    async fn btc_sign_send(&self, send: &BtcSendRow) -> Result<(), ServiceError> {
        let wallet = send
            .wallet
            .ok_or_else(|| invalid("the send carries no transfer"))?;
        let n = match send.network.parse::<Network>() {
            Ok(Network::Bitcoin(n)) => n,
            _ => return Err(corrupt("Bitcoin send", "not a Bitcoin network")),
        };
        self.ensure_not_frozen(Some(wallet), None).await?;
        let psbt = bitcoin::Psbt::deserialize(&send.psbt).map_err(|e| corrupt("PSBT", e))?;
        let transfers = self.store().transfers_of_btc_send(&send.id).await?;
        // Released meanwhile (a payout lost its approvals): a race lost, not
        // tampering; nothing to sign.
        if self.store().btc_send(&send.id).await?.state != "planned" {
            return Err(ServiceError::Conflict("the send was released".into()));
        }
        let signed = match self
            .btc_approve_and_sign(send, &psbt, &transfers, n, wallet)
            .await?
        {
            crate::gate::BtcSigned::Whole(t) => t,
            // What the server may sign is signed: the rest is offline.
            crate::gate::BtcSigned::Partial {
                psbt,
                made,
                missing,
            } => return self.btc_export(send, &psbt, made, missing).await,
        };
        crate::crash::point("after_signing");
        let txid = signed.compute_txid().to_string();
        let raw = bitcoin::consensus::serialize(&signed);
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.set_btc_send_signed(&send.id, &raw, &txid).await?;
        let mut entries = Vec::new();
        for t in tx.transfers_of_btc_send(&send.id).await? {
            let m = Move::new(Event::Signed, &Actor::System, "signed, verified and stored");
            entries.push(transition(&mut tx, &t, m, now).await?.0);
        }
        entries.push(entry(
            &Actor::System,
            "btc.tx.signed",
            &format!("btc-send:{}", send.id),
            json!({ "txid": txid, "vsize": signed.vsize(), "transfers": entries.len() }),
        )?);
        self.commit(tx, &entries, now).await?;
        crate::crash::point("after_persist");
        Ok(())
    }

    /// Signs `psbt` for `send` (its plan, or a faster replacement of it)
    /// if it is what was approved: a mismatch takes the one refuse path
    /// (audited, the wallet frozen); the signer nodes' refusal is noted
    /// against the transfers.
    pub(crate) async fn btc_approve_and_sign(
        &self,
        send: &BtcSendRow,
        psbt: &bitcoin::Psbt,
        transfers: &[TransferRow],
        n: BitcoinNetwork,
        wallet: WalletId,
    ) -> Result<crate::gate::BtcSigned, ServiceError> {
        let ids: Vec<domain::TransferId> = transfers.iter().map(|t| t.id).collect();
        let (approved, keys_of) = self
            .btc_approved_or_refused(send, psbt, transfers, n, wallet)
            .await?;
        // The judgments it carries out are the ones made here.
        self.judgments_stand(&format!("btc-send:{}", send.id), transfers)
            .await?;
        let mut approvals = Vec::with_capacity(transfers.len());
        for t in transfers {
            let votes = self.store().approvals(t.id).await?;
            approvals.push(crate::threshold::approved_transfer(t, &votes));
        }
        let signed = self
            .sign_btc(&send.network, &approved, &keys_of, &approvals, transfers)
            .await;
        if let Err(failed) = &signed
            && let Err(e) = self.note_signers_failure(&ids, failed).await
        {
            tracing::warn!(send = %send.id, error = %e, "the signers' failure was not noted");
        }
        signed
    }

    /// [`Service::btc_approved`], a plan that is not what was approved
    /// taking the one refuse path (audited, the wallet frozen).
    pub(crate) async fn btc_approved_or_refused(
        &self,
        send: &BtcSendRow,
        psbt: &bitcoin::Psbt,
        transfers: &[TransferRow],
        n: BitcoinNetwork,
        wallet: WalletId,
    ) -> Result<(chain_btc::Approved, HashMap<String, crate::gate::Signer>), ServiceError> {
        match self.btc_approved(send, psbt, transfers, n, wallet).await? {
            Ok(a) => Ok(a),
            Err(why) => {
                let ids: Vec<domain::TransferId> = transfers.iter().map(|t| t.id).collect();
                Err(self
                    .refuse_to_sign(crate::refusal::Refused {
                        send: format!("btc-send:{}", send.id),
                        wallet,
                        transfers: &ids,
                        why,
                    })
                    .await)
            }
        }
    }

    /// The keys whose outputs a send spends: a freeze of any stops it.
    pub(crate) async fn btc_send_keys(&self, send_id: &str) -> Result<Vec<KeyId>, ServiceError> {
        let mut keys = Vec::new();
        for u in self.store().btc_utxos_of_send(send_id).await? {
            let (_, key, _) = spend_of(&u.spend)?;
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        Ok(keys)
    }

    /// What is signed is what was approved: the stored transaction checked
    /// by [`chain_btc::approve`] against its transfers' stored intents, the
    /// outputs reserved for it and the wallet's own scripts. The inner error
    /// says why it is not approved; the outer one is a failure to look.
    pub(crate) async fn btc_approved(
        &self,
        send: &BtcSendRow,
        psbt: &bitcoin::Psbt,
        transfers: &[TransferRow],
        n: BitcoinNetwork,
        wallet: WalletId,
    ) -> Result<
        Result<(chain_btc::Approved, HashMap<String, crate::gate::Signer>), String>,
        ServiceError,
    > {
        let mut intended = Vec::with_capacity(transfers.len());
        for t in transfers {
            match intended_payout(self, t, n)? {
                Ok(i) => intended.push(i),
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
        let mut keys_of = HashMap::new();
        let mut reserved = Vec::new();
        for row in self.store().btc_utxos_of_send(&send.id).await? {
            let (_, key, child) = spend_of(&row.spend)?;
            keys_of.insert(row.script_pubkey.clone(), (key, child));
            reserved.push(utxo_of(&row)?);
        }
        let own = self.own_scripts(wallet, &send.network).await?;
        let paying = chain_btc::Paying {
            wallet,
            reserved: &reserved,
            own: &own,
        };
        let caps = self.btc_network(n)?.fee_caps;
        match chain_btc::approve(&intended, paying, &caps, &psbt.unsigned_tx) {
            Ok(a) => Ok(Ok((a, keys_of))),
            // Fee caps may have tightened since planning: a person's
            // matter, not tampering.
            Err(chain_btc::Refusal::Fee(e)) => Err(BtcServiceError::Plan(e).into()),
            Err(why) => Ok(Err(why.to_string())),
        }
    }

    /// Broadcasts a signed send when a node is configured (a freeze of its
    /// wallet stops it; the bytes wait).
    async fn btc_broadcast_send(&self, send: &BtcSendRow) -> Result<(), ServiceError> {
        let n = match send.network.parse::<Network>() {
            Ok(Network::Bitcoin(n)) => n,
            _ => return Err(corrupt("Bitcoin send", "not a Bitcoin network")),
        };
        let net = self.btc_network(n)?;
        let Some(client) = &net.client else {
            return Ok(()); // signed bytes wait for a node (or an operator)
        };
        let (Some(raw), Some(txid)) = (&send.raw, &send.txid) else {
            return Err(corrupt("Bitcoin send", "signed without bytes"));
        };
        let keys = self.btc_send_keys(&send.id).await?;
        // Ordered with every freeze, in any process (see `freezes`).
        let (flight, sent) = self
            .broadcast(
                format!("btc-send:{}", send.id),
                send.wallet,
                &keys,
                client.broadcast(raw, txid),
                |e| matches!(e, chain_btc_client::ClientError::Unavailable(_)),
                || chain_btc_client::ClientError::Unavailable("the broadcast timed out".into()),
            )
            .await?;
        match sent {
            Ok(_) => {
                crate::crash::point("after_broadcast");
                let now = self.now();
                let mut tx = self.store().begin().await?;
                flight.end_in(&mut tx, "sent", now).await?;
                tx.set_btc_send_state(&send.id, "signed", "broadcast")
                    .await?;
                let mut entries = Vec::new();
                for t in tx.transfers_of_btc_send(&send.id).await? {
                    if t.state == state::SIGNED {
                        let m =
                            Move::new(Event::Broadcast, &Actor::System, "handed to the network");
                        entries.push(transition(&mut tx, &t, m, now).await?.0);
                    }
                }
                entries.push(entry(
                    &Actor::System,
                    "btc.tx.broadcast",
                    &format!("btc-send:{}", send.id),
                    json!({ "txid": txid }),
                )?);
                self.commit(tx, &entries, now).await?;
                self.broadcasts_ended().notify_waiters();
                Ok(())
            }
            Err(chain_btc_client::ClientError::Unavailable(why)) => {
                tracing::warn!(send = %send.id, error = %why, "Bitcoin broadcast deferred");
                Ok(())
            }
            Err(e) => Err(BtcServiceError::Node(e).into()),
        }
    }
}

/// The outputs a consolidation spends, of those the wallet may spend: of at
/// most the rule's size and worth more than their own input's fee at
/// `rate`, the smallest first, at most the rule's number. The same at the
/// request and when it is planned, so the plan spends what was priced.
pub(crate) fn consolidation_inputs(
    mut candidates: Vec<Utxo>,
    rule: &crate::btc::ConsolidationRule,
    rate: u64,
) -> Vec<Utxo> {
    candidates.retain(|u| {
        // 41 bytes outside the witness (outpoint, script length, sequence).
        let fee = u
            .spend
            .max_witness_weight()
            .map(|w| (w.to_wu() + 164).div_ceil(4).saturating_mul(rate.max(1)));
        u.value_sat <= rule.max_output_sat && fee.is_ok_and(|f| f < u.value_sat)
    });
    candidates.sort_by_key(|u| (u.value_sat, u.outpoint));
    candidates.truncate(rule.max_inputs);
    candidates
}

/// What a transfer's stored intent (checked against its digest) asks of a
/// transaction on `n`: the inner error is a refusal (a stored intent that
/// cannot be paid there), the outer one a failure to read.
fn intended_payout(
    svc: &Service,
    t: &TransferRow,
    n: BitcoinNetwork,
) -> Result<Result<chain_btc::Intended, String>, ServiceError> {
    let intent = match crate::moves::decode_intent(t, &svc.configured_assets()) {
        Ok(i) => i,
        Err(e @ ServiceError::Storage(StorageError::Corrupt(_))) => {
            return Ok(Err(format!("the stored intent: {e}")));
        }
        Err(e) => return Err(e),
    };
    Ok(chain_btc::Intended::of(&intent, n).map_err(|e| e.to_string()))
}

pub(crate) fn utxo_of(row: &storage::BtcUtxoRow) -> Result<Utxo, ServiceError> {
    let (spend, _, _): (Spend, KeyId, Vec<u32>) = spend_of(&row.spend)?;
    let txid: bitcoin::Txid = row
        .txid
        .parse()
        .map_err(|_| StorageError::Corrupt("stored txid".into()))?;
    Ok(Utxo {
        outpoint: bitcoin::OutPoint {
            txid,
            vout: row.vout,
        },
        value_sat: row.value_sat,
        spend,
    })
}

pub(crate) fn address_entry(
    actor: &Actor,
    a: &storage::BtcAddressRow,
) -> Result<audit::Entry, ServiceError> {
    entry(
        actor,
        "btc.address.issued",
        &format!("wallet:{}", a.wallet),
        json!({
            "network": a.network,
            "key": a.key.to_string(),
            "chain": a.chain,
            "index": a.index,
            "address": a.address,
        }),
    )
}

/// Gives a key to a wallet on a network, in `tx`; the audit record.
pub(crate) async fn account_added(
    tx: &mut WriteTx,
    actor: &Actor,
    network: BitcoinNetwork,
    key: KeyId,
    wallet: WalletId,
    now: Timestamp,
) -> Result<audit::Entry, ServiceError> {
    tx.insert_btc_account(&net_name(network), key, wallet, now)
        .await?;
    entry(
        actor,
        "btc.account.added",
        &format!("wallet:{wallet}"),
        json!({ "network": net_name(network), "key": key.to_string() }),
    )
}
