//! Ethereum through the service: sending addresses, sends with nonces from
//! the database, signing behind the keystore's gate, broadcast,
//! confirmations and reorgs, replacement, rebroadcast after a restart, and
//! nonce reports.
//!
//! Every send pays one approved transfer. Order: price and build the plan
//! and check it against the transfer's intent ([`chain_eth::approve`]) →
//! commit the nonce and the exact plan with its signing hash and audit
//! record → read both back, approve again, and sign only the
//! [`chain_eth::Approved`] plan through the gate (which checks the signed
//! bytes decode to it) → commit the bytes with their audit record →
//! broadcast (ordered with freezes). A crash anywhere resumes from the
//! database ([`Service::eth_resume`]) without a second transaction for the
//! same nonce being invented.

use std::sync::Arc;

pub use crate::error::{ClientError, EthError};
pub use crate::settings::{EthNetwork, EthNetworkConfig, EthToken};
pub use chain_eth::Urgency;
use chain_eth::fees;
use chain_eth::{EthAddress, Fees, Intended, TxPlan};
use chain_eth_client::TxStatus;
use domain::{Actor, KeyId, Network, Timestamp, TransferIntent};
use serde_json::json;
use storage::{EthAttemptRow, EthSendRow, EthSenderRow, StorageError};

pub(crate) use crate::eth_rows::hex32;
use crate::eth_rows::{attempt_row, parse_addr, plan_of};
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// A send whose nonce is stored and whose transaction is not signed yet.
#[derive(Debug)]
pub(crate) struct PlannedSend {
    net: Arc<EthNetwork>,
    sender: EthSenderRow,
    send_id: String,
}

/// How to replace a send still waiting to be mined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replacement {
    /// The same transaction with higher fees.
    SpeedUp(Urgency),
    /// Zero ether to the sender itself with higher fees: the nonce is used
    /// up and the payment never happens (if it wins the race).
    Cancel,
}

/// States of a send (`eth_sends.state`).
pub mod state {
    pub const SIGNING: &str = "signing";
    pub const SIGNED: &str = "signed";
    pub const BROADCAST: &str = "broadcast";
    pub const INCLUDED: &str = "included";
    pub const CONFIRMED: &str = "confirmed";
    pub const REVERTED: &str = "reverted";
    pub const CANCELLED: &str = "cancelled";
    pub const NONCE_TAKEN: &str = "nonce-taken";
    /// Not final: the watcher and the resumer work on these.
    pub const OPEN: [&str; 4] = [SIGNING, SIGNED, BROADCAST, INCLUDED];
}

pub(crate) fn addr_key(a: EthAddress) -> String {
    a.to_lower_hex()
}

fn fee_json(f: &Fees) -> serde_json::Value {
    match *f {
        Fees::Eip1559 {
            max_fee_per_gas,
            max_priority_fee_per_gas,
        } => json!({
            "max_fee_per_gas": max_fee_per_gas.to_string(),
            "max_priority_fee_per_gas": max_priority_fee_per_gas.to_string(),
        }),
        Fees::Legacy { gas_price } => json!({ "gas_price": gas_price.to_string() }),
    }
}

impl Service {
    /// Exports the fee estimate a plan on `net` uses.
    fn fee_estimated(&self, net: &EthNetwork, fees: Fees) {
        let network = net.network().to_string();
        match fees {
            Fees::Eip1559 {
                max_fee_per_gas,
                max_priority_fee_per_gas,
            } => {
                self.metrics()
                    .fee_estimated(&network, "max_fee_per_gas_wei", max_fee_per_gas);
                self.metrics().fee_estimated(
                    &network,
                    "priority_fee_wei",
                    max_priority_fee_per_gas,
                );
            }
            Fees::Legacy { gas_price } => {
                self.metrics()
                    .fee_estimated(&network, "gas_price_wei", gas_price);
            }
        }
    }

    /// Adds a configured network (at start-up).
    pub fn add_eth_network(&self, network: EthNetwork) {
        self.configure_eth(&network);
        self.eth_networks()
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(network.config.chain_id, Arc::new(network));
        self.apply_governed(&self.current());
    }

    pub fn eth_network(&self, chain_id: u64) -> Result<Arc<EthNetwork>, EthError> {
        let nets = self
            .eth_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner());
        nets.get(&chain_id)
            .cloned()
            .ok_or(EthError::NetworkNotConfigured(chain_id))
    }

    pub(crate) fn eth_chain_ids(&self) -> Vec<u64> {
        let nets = self
            .eth_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner());
        nets.keys().copied().collect()
    }

    /// Registers the address of an ECDSA transfer-signing key on a network.
    /// Its first nonce is the chain's nonce now: nonces below it belong to
    /// whoever used the key before.
    pub async fn register_eth_sender(
        &self,
        actor: &Actor,
        key_id: KeyId,
        chain_id: u64,
    ) -> Result<EthSenderRow, ServiceError> {
        if self.store().key(key_id).await?.backend == domain::KeyBackend::Threshold {
            // Its nodes bound it to one wallet, and sign for one chain: it
            // got its sender when its account was opened.
            return Err(ServiceError::Invalid(format!(
                "key {key_id} is a threshold key: it sends for the account it was made for"
            )));
        }
        self.register_eth_sender_unchecked(actor, key_id, chain_id, None)
            .await
    }

    /// Prices and builds the payment an approved intent asks for, and
    /// checks it against the intent ([`chain_eth::approve`]); nothing is
    /// stored. The nonce is a placeholder until the database hands one out.
    async fn eth_prepare(
        &self,
        net: &EthNetwork,
        sender: chain_eth::Sender,
        intended: &Intended,
        urgency: Urgency,
    ) -> Result<chain_eth::Approved, ServiceError> {
        let chain_id = net.config.chain_id;
        let to = intended.recipient();
        if net.config.tokens.iter().any(|t| t.contract == to) {
            return Err(EthError::Refused(format!(
                "{to} is a token contract: tokens sent to it are lost"
            ))
            .into());
        }
        let client = &net.client;
        let history = client.fee_history(10).await.map_err(EthError::Node)?;
        let estimate = fees::estimate(&history, urgency, net.config.min_priority_fee)
            .map_err(EthError::Fee)?;
        let fees = if net.config.legacy {
            Fees::Legacy {
                gas_price: estimate.max_per_gas(),
            }
        } else {
            estimate
        };
        self.fee_estimated(net, fees);
        let plan = match intended.token() {
            None => {
                let gas = client
                    .estimate_gas(sender.address, to, intended.amount(), &[])
                    .await
                    .map_err(EthError::Node)?;
                if gas != chain_eth::approved::PLAIN_GAS {
                    return Err(EthError::Refused(format!(
                        "{to} runs code when paid ({gas} gas); only plain transfers are sent"
                    ))
                    .into());
                }
                TxPlan::native(chain_id, 0, to, intended.amount(), fees)
            }
            Some(contract) => {
                let token = net
                    .config
                    .tokens
                    .iter()
                    .find(|t| t.contract == contract)
                    .ok_or_else(|| EthError::AssetNotConfigured(contract.to_string()))?;
                let data = chain_eth::calls::erc20_transfer(to, intended.amount());
                let gas = match client
                    .estimate_gas(sender.address, contract, 0, &data)
                    .await
                {
                    Ok(gas) => gas,
                    // The token itself refuses: no fee is spent trying.
                    Err(ClientError::Rpc { message, .. }) if message.contains("revert") => {
                        return Err(EthError::Refused(format!(
                            "the token's transfer reverts: {message}"
                        ))
                        .into());
                    }
                    Err(e) => return Err(EthError::Node(e).into()),
                };
                // A transfer that answers false moves nothing, yet its
                // transaction succeeds: tried first, and refused.
                let answer = client
                    .call_from(sender.address, contract, &data)
                    .await
                    .map_err(EthError::Node)?;
                // No answer is also what an address without code gives: a
                // token configured where none is deployed moves nothing.
                if answer.is_empty()
                    && client
                        .code(contract)
                        .await
                        .map_err(EthError::Node)?
                        .is_empty()
                {
                    return Err(EthError::Refused(format!(
                        "no contract at {contract}: the token is not deployed on this chain"
                    ))
                    .into());
                }
                if !chain_eth::calls::erc20_transfer_succeeded(&answer) {
                    return Err(EthError::Refused(format!(
                        "the token's transfer answers {} instead of true: it would move nothing",
                        if answer.iter().all(|b| *b == 0) && !answer.is_empty() {
                            "false".to_owned()
                        } else {
                            format!("0x{}", hex::encode(&answer))
                        }
                    ))
                    .into());
                }
                // A quarter more than estimated, within the token's ceiling.
                let gas = gas.saturating_add(gas / 4);
                if gas > token.max_gas {
                    return Err(EthError::Refused(format!(
                        "the transfer needs {gas} gas, over the {} configured for this token",
                        token.max_gas
                    ))
                    .into());
                }
                TxPlan::erc20(chain_id, 0, contract, to, intended.amount(), gas, fees)
            }
        };
        // Fee caps are a person's matter (not tampering): refused plainly.
        net.config.fee_caps.check(&plan).map_err(EthError::Fee)?;
        chain_eth::approve(
            intended,
            &sender,
            &net.config.fee_caps,
            chain_eth::Kind::Payment,
            plan,
        )
        .map_err(|e| ServiceError::NotApproved(e.to_string()))
    }

    /// Plans the send of an approved, queued transfer: priced, checked
    /// against its intent, given the sender's next nonce and stored with
    /// the transfer's move to `signing`; nothing signed yet.
    pub(crate) async fn eth_plan(
        &self,
        t: &storage::TransferRow,
        intent: &TransferIntent,
        from: EthAddress,
        urgency: Urgency,
    ) -> Result<PlannedSend, ServiceError> {
        let asset = intent.amount().asset();
        let Network::Evm { chain_id } = asset.network() else {
            return Err(EthError::AssetNotConfigured(asset.id().to_string()).into());
        };
        let net = self.eth_network(chain_id)?;
        let network = net.network().to_string();
        let sender = self.store().eth_sender(&network, &addr_key(from)).await?;
        let intended =
            Intended::of(intent).map_err(|e| ServiceError::NotApproved(e.to_string()))?;
        let approved = self
            .eth_prepare(
                &net,
                chain_eth::Sender {
                    address: from,
                    wallet: t.wallet,
                },
                &intended,
                urgency,
            )
            .await?;
        let mut plan = approved.plan().clone();

        let now = self.now();
        let send_id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.store().begin().await?;
        let nonce = tx.next_eth_nonce(&network, &sender.address).await?;
        plan.nonce = nonce;
        let send = EthSendRow {
            id: send_id.clone(),
            network: network.clone(),
            address: sender.address.clone(),
            nonce,
            asset: asset.id().to_string(),
            recipient: addr_key(intended.recipient()),
            amount: intended.amount(),
            state: state::SIGNING.into(),
            included_attempt: None,
            block_number: None,
            block_hash: None,
            created_at: now,
            created_by: t.initiator.clone(),
            updated_at: now,
        };
        tx.insert_eth_send(&send).await?;
        let attempt = attempt_row(&send_id, 1, "original", &plan, now);
        tx.insert_eth_attempt(&attempt).await?;
        // Only from `queued`: of two workers, the second finds it moved on,
        // and its nonce goes back with its rolled-back transaction.
        let locked = tx.lock_transfer(t.id).await?;
        let mut m = crate::moves::Move::new(
            lifecycle::Event::Planned,
            &Actor::System,
            "nonce reserved and plan pinned",
        );
        m.eth_send_id = Some(&send_id);
        let moved = crate::moves::transition(&mut tx, &locked, m, now).await?.0;
        let planned = entry(
            &t.initiator,
            "eth.send.planned",
            &format!("eth-send:{send_id}"),
            json!({
                "network": network,
                "from": from.to_string(),
                "nonce": nonce,
                "asset": asset.id().to_string(),
                "to": intended.recipient().to_string(),
                "amount": intended.amount().to_string(),
                "gas_limit": plan.gas_limit,
                "fees": fee_json(&plan.fees),
                "signing_hash": attempt.signing_hash,
                "transfer": t.id.to_string(),
            }),
        )?;
        self.commit(tx, &[moved, planned], now).await?;
        crate::crash::point("after_reservation");
        Ok(PlannedSend {
            net,
            sender,
            send_id,
        })
    }

    /// Signs and broadcasts a planned send. From here the send exists: a
    /// failure to sign or broadcast leaves it pending for the resumer, and
    /// the caller gets the send (never an error that would invite a second,
    /// duplicate request).
    pub(crate) async fn eth_finish(&self, p: PlannedSend) -> Result<EthSendRow, ServiceError> {
        if let Err(e) = self
            .eth_sign_and_send(&p.net, &p.sender, &p.send_id, 1)
            .await
        {
            tracing::warn!(send = %p.send_id, error = %e, "send planned; signing or broadcast deferred");
        }
        Ok(self.store().eth_send(&p.send_id).await?)
    }

    /// Signs attempt `n` of a send from its stored plan (if not signed
    /// yet), then broadcasts its stored bytes.
    pub(crate) async fn eth_sign_and_send(
        &self,
        net: &EthNetwork,
        sender: &EthSenderRow,
        send_id: &str,
        n: u32,
    ) -> Result<bool, ServiceError> {
        let send = self.store().eth_send(send_id).await?;
        let attempts = self.store().eth_attempts(send_id).await?;
        let a = attempts
            .iter()
            .find(|a| a.attempt == n)
            .ok_or(StorageError::NotFound {
                what: "Ethereum attempt",
            })?;
        let raw = match &a.raw {
            Some(raw) => raw.clone(),
            // None: handed out for its offline signature (`cold`).
            None => match self
                .eth_sign_attempt(net, sender, &send, &attempts, a)
                .await?
            {
                Some(raw) => raw,
                None => return Ok(false),
            },
        };
        self.eth_broadcast(net, &send, n, &raw).await
    }

    /// What is signed is what was approved: the stored plan of attempt `a`
    /// checked by [`chain_eth::approve`] against the stored intent of the
    /// transfer the send pays (a replacement against the original too).
    /// The inner error says why it is not approved (a refusal, which
    /// freezes the wallet); the outer one is a failure to look.
    pub(crate) async fn eth_approved(
        &self,
        net: &EthNetwork,
        sender: &EthSenderRow,
        send: &EthSendRow,
        t: &storage::TransferRow,
        attempts: &[EthAttemptRow],
        a: &EthAttemptRow,
    ) -> Result<Result<chain_eth::Approved, String>, ServiceError> {
        let plan = plan_of(send, a, net.config.chain_id)?;
        let assets = self.configured_assets();
        let intent = match crate::moves::decode_intent(t, &assets) {
            Ok(i) => i,
            Err(e @ ServiceError::Storage(StorageError::Corrupt(_))) => {
                return Ok(Err(format!("the stored intent: {e}")));
            }
            Err(e) => return Err(e),
        };
        let intended = match Intended::of(&intent) {
            Ok(i) => i,
            Err(e) => return Ok(Err(e.to_string())),
        };
        // A deposit address sends only its own sweeps; nothing else names one.
        if let Err(why) = self.sends_for(sender, &intent).await? {
            return Ok(Err(why));
        }
        let wallet = self
            .store()
            .eth_sender_wallet(&sender.network, &sender.address)
            .await?;
        let Some(wallet) = wallet else {
            return Ok(Err("the sender belongs to no wallet".into()));
        };
        let sender = chain_eth::Sender {
            address: parse_addr(&sender.address)?,
            wallet,
        };
        let original = match attempts.first() {
            Some(first) => plan_of(send, first, net.config.chain_id)?,
            None => return Ok(Err("a send without its original attempt".into())),
        };
        let kind = match a.kind.as_str() {
            "original" if a.attempt == 1 => chain_eth::Kind::Payment,
            "speed-up" => chain_eth::Kind::SpeedUp {
                original: &original,
            },
            "cancel" => chain_eth::Kind::Cancel {
                original: &original,
            },
            other => return Ok(Err(format!("an attempt of kind {other:?}"))),
        };
        match chain_eth::approve(&intended, &sender, &net.config.fee_caps, kind, plan) {
            Ok(a) => Ok(Ok(a)),
            // Fee caps may have tightened since planning: a person's matter,
            // not tampering (what the plan pays is checked before the caps).
            Err(chain_eth::Refusal::Fee(e)) => Err(EthError::Fee(e).into()),
            Err(why) => Ok(Err(why.to_string())),
        }
    }

    /// What a threshold key's signers are shown for `plan`: the
    /// transaction, the transfer it pays, its decision and approvals.
    async fn threshold_subject(
        &self,
        t: &storage::TransferRow,
        plan: &TxPlan,
    ) -> Result<keys_mpc::cosign::Subject, ServiceError> {
        let approvals = self.store().approvals(t.id).await?;
        let tx = keys_mpc::cosign::EthereumTx::from_plan(plan).ok_or_else(|| {
            ServiceError::KeyNotUsable("threshold keys sign EIP-1559 transactions only".into())
        })?;
        Ok(keys_mpc::cosign::Subject::Ethereum {
            tx,
            transfers: vec![crate::threshold::approved_transfer(t, &approvals)],
        })
    }

    async fn eth_sign_attempt(
        &self,
        net: &EthNetwork,
        sender: &EthSenderRow,
        send: &EthSendRow,
        attempts: &[EthAttemptRow],
        a: &EthAttemptRow,
    ) -> Result<Option<Vec<u8>>, ServiceError> {
        let wallet = self
            .store()
            .eth_sender_wallet(&sender.network, &sender.address)
            .await?;
        // A frozen wallet or key signs nothing (checked again in the gate);
        // checked first, so a refused plan freezes the wallet only once.
        self.ensure_not_frozen(wallet, Some(sender.key_id)).await?;
        let Some(t) = self.store().transfer_of_send(&send.id).await? else {
            // Released meanwhile (its transfer lost its approvals, the nonce
            // given back): a race lost, not tampering.
            let now = self.store().eth_send(&send.id).await;
            if !now
                .as_ref()
                .is_ok_and(|s| state::OPEN.contains(&s.state.as_str()))
            {
                return Err(ServiceError::Conflict("the send was released".into()));
            }
            // A send no transfer carries: nothing was approved for it.
            let why = "the send pays no approved transfer".to_owned();
            return Err(match wallet {
                Some(wallet) => {
                    self.refuse_to_sign(crate::refusal::Refused {
                        send: format!("eth-send:{}", send.id),
                        wallet,
                        transfers: &[],
                        why,
                    })
                    .await
                }
                None => ServiceError::NotApproved(why),
            });
        };
        // The transfer's own wallet too: a refusal freezes it, and the next
        // pass must stop here rather than refuse again.
        self.ensure_not_frozen(Some(t.wallet), None).await?;
        let plan = plan_of(send, a, net.config.chain_id)?;
        let stored_hash_differs = hex32(&plan.signing_hash()) != a.signing_hash;
        let approved = if stored_hash_differs {
            Err("the stored plan and its signing hash differ".to_owned())
        } else {
            self.eth_approved(net, sender, send, &t, attempts, a)
                .await?
        };
        let approved = match approved {
            Ok(approved) => approved,
            Err(why) => {
                return Err(self
                    .refuse_to_sign(crate::refusal::Refused {
                        send: format!("eth-send:{}", send.id),
                        wallet: t.wallet,
                        transfers: &[t.id],
                        why,
                    })
                    .await);
            }
        };
        // The judgment it carries out is the one made here.
        self.judgments_stand(&format!("eth-send:{}", send.id), std::slice::from_ref(&t))
            .await?;
        // A key held outside signs offline: the plan is handed out. A
        // threshold key's signer nodes check the transaction and the
        // transfer's approvals themselves: they are shown both.
        let subject = match self.store().key(sender.key_id).await?.backend {
            domain::KeyBackend::External => return self.eth_export(&t, send).await.map(|()| None),
            domain::KeyBackend::Threshold => {
                Some(self.threshold_subject(&t, approved.plan()).await?)
            }
            _ => None,
        };
        let signed = self
            .sign_eth(
                &approved,
                sender,
                subject.as_ref(),
                std::slice::from_ref(&t),
            )
            .await;
        if let Err(failed) = &signed
            // Noted if it can be; the failure is the error either way.
            && let Err(e) = self.note_signers_failure(&[t.id], failed).await
        {
            tracing::warn!(send = %send.id, error = %e, "the signers' failure was not noted");
        }
        let (key, signed) = signed?;
        crate::crash::point("after_signing");
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.set_eth_attempt_signed(
            &send.id,
            a.attempt,
            &a.signing_hash,
            &signed.raw,
            &hex32(&signed.hash),
        )
        .await?;
        let mut entries = Vec::new();
        if send.state == state::SIGNING {
            tx.set_eth_send_state(&send.id, state::SIGNING, state::SIGNED, None, now)
                .await?;
            entries.extend(
                follow(
                    &mut tx,
                    &send.id,
                    lifecycle::Event::Signed,
                    "signed and stored",
                    now,
                )
                .await?,
            );
        }
        entries.push(entry(
            &Actor::System,
            "eth.tx.signed",
            &format!("eth-send:{}", send.id),
            json!({
                "attempt": a.attempt,
                "nonce": send.nonce,
                "tx_hash": hex32(&signed.hash),
                "key": sender.key_id.to_string(),
                "backend": key.backend.to_string(),
            }),
        )?);
        self.commit(tx, &entries, now).await?;
        crate::crash::point("after_persist");
        Ok(Some(signed.raw))
    }

    async fn eth_broadcast(
        &self,
        net: &EthNetwork,
        send: &EthSendRow,
        n: u32,
        raw: &[u8],
    ) -> Result<bool, ServiceError> {
        let wallet = self
            .store()
            .eth_sender_wallet(&send.network, &send.address)
            .await?;
        let key = self
            .store()
            .eth_sender(&send.network, &send.address)
            .await?
            .key_id;
        let decoded = chain_eth::decode(raw).map_err(EthError::Tx)?;
        let (flight, sent) = self
            .broadcast(
                format!("eth-send:{}#{n}", send.id),
                wallet,
                &[key],
                net.client.send_raw(raw, decoded.hash),
                |e| matches!(e, ClientError::Unavailable(_)),
                || ClientError::Unavailable("the broadcast timed out".into()),
            )
            .await?;
        match sent {
            Ok(_) => {
                crate::crash::point("after_broadcast");
                let now = self.now();
                // Read before the write transaction: a pooled read while it
                // holds SQLite's write lock could wait on the lock itself.
                let current = self.store().eth_send(&send.id).await?;
                let mut tx = self.store().begin().await?;
                flight.end_in(&mut tx, "sent", now).await?;
                tx.set_eth_attempt_state(&send.id, n, "broadcast").await?;
                let mut entries = Vec::new();
                if current.state == state::SIGNED {
                    match tx
                        .set_eth_send_state(&send.id, state::SIGNED, state::BROADCAST, None, now)
                        .await
                    {
                        Ok(()) => {
                            send_event(&mut tx, send, state::BROADCAST, now).await?;
                            entries.extend(
                                follow(
                                    &mut tx,
                                    &send.id,
                                    lifecycle::Event::Broadcast,
                                    "handed to the network",
                                    now,
                                )
                                .await?,
                            );
                        }
                        // Moved on meanwhile (the watcher saw it mined): fine.
                        Err(StorageError::Conflict { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                entries.push(entry(
                    &Actor::System,
                    "eth.tx.broadcast",
                    &format!("eth-send:{}", send.id),
                    json!({ "attempt": n, "tx_hash": hex32(&decoded.hash) }),
                )?);
                self.commit(tx, &entries, now).await?;
                self.broadcasts_ended().notify_waiters();
                Ok(true)
            }
            Err(ClientError::Unavailable(why)) => {
                // Signed and stored: the resumer sends the same bytes later.
                tracing::warn!(send = %send.id, error = %why, "broadcast deferred: no node reachable");
                Ok(false)
            }
            Err(ClientError::NonceTaken(hash)) => {
                // Used by a replacement of this send that won, or not?
                for a in self.store().eth_attempts(&send.id).await? {
                    let Some(raw) = &a.raw else { continue };
                    let h = chain_eth::decode(raw).map_err(EthError::Tx)?.hash;
                    if net.client.tx_status(h).await.map_err(EthError::Node)? != TxStatus::Unknown {
                        return Ok(false);
                    }
                }
                let now = self.now();
                let current = self.store().eth_send(&send.id).await?;
                // Only a send not yet seen on chain can lose its nonce.
                if ![state::SIGNED, state::BROADCAST].contains(&current.state.as_str()) {
                    return Ok(false);
                }
                let mut tx = self.store().begin().await?;
                tx.set_eth_send_state(&send.id, &current.state, state::NONCE_TAKEN, None, now)
                    .await?;
                send_event(&mut tx, send, state::NONCE_TAKEN, now).await?;
                let mut entries = vec![entry(
                    &Actor::System,
                    "eth.nonce.taken",
                    &format!("eth-send:{}", send.id),
                    json!({ "nonce": send.nonce, "tx_hash": format!("0x{hash}") }),
                )?];
                // Its transfer did not happen: it fails, for a person to look at.
                entries.extend(
                    follow(
                        &mut tx,
                        &send.id,
                        lifecycle::Event::NonceTaken,
                        "its nonce was used by another transaction",
                        now,
                    )
                    .await?,
                );
                self.commit(tx, &entries, now).await?;
                Err(EthError::Node(ClientError::NonceTaken(hash)).into())
            }
            Err(e) => Err(EthError::Node(e).into()),
        }
    }

    /// Replaces a send not yet included: a new attempt with the same nonce
    /// and fees at least 12.5 % higher, signed and broadcast.
    pub async fn eth_replace(
        &self,
        actor: &Actor,
        send_id: &str,
        how: Replacement,
    ) -> Result<EthSendRow, ServiceError> {
        let send = self.store().eth_send(send_id).await?;
        if ![state::SIGNED, state::BROADCAST].contains(&send.state.as_str()) {
            return Err(EthError::NotReplaceable(send.state).into());
        }
        let chain_id = crate::eth_rows::chain_of(&send.network)?;
        let net = self.eth_network(chain_id)?;
        let sender = self
            .store()
            .eth_sender(&send.network, &send.address)
            .await?;
        if matches!(how, Replacement::Cancel)
            && self.store().key(sender.key_id).await?.backend == domain::KeyBackend::Threshold
        {
            // Its signer nodes sign only what pays an approved transfer: a
            // cancel would be refused after taking the send's place.
            return Err(ServiceError::Invalid(
                "a threshold key's send is sped up, not cancelled: its signers sign only \
                 transactions paying approved transfers"
                    .into(),
            ));
        }
        let attempts = self.store().eth_attempts(send_id).await?;
        let last = attempts.last().ok_or(StorageError::NotFound {
            what: "Ethereum attempt",
        })?;
        let old = plan_of(&send, last, chain_id)?;
        let urgency = match how {
            Replacement::SpeedUp(u) => u,
            Replacement::Cancel => Urgency::Fast,
        };
        let history = net.client.fee_history(10).await.map_err(EthError::Node)?;
        let current = fees::estimate(&history, urgency, net.config.min_priority_fee)
            .map_err(EthError::Fee)?;
        let current = if net.config.legacy {
            Fees::Legacy {
                gas_price: current.max_per_gas(),
            }
        } else {
            current
        };
        let fees = fees::bump(old.fees, current).map_err(EthError::Fee)?;
        let (kind, plan) = match how {
            // Speeding up a cancel is still a cancel.
            Replacement::SpeedUp(_) if last.kind == "cancel" => ("cancel", TxPlan { fees, ..old }),
            Replacement::SpeedUp(_) => ("speed-up", TxPlan { fees, ..old }),
            Replacement::Cancel => (
                "cancel",
                TxPlan::native(chain_id, send.nonce, parse_addr(&send.address)?, 0, fees),
            ),
        };
        net.config.fee_caps.check(&plan).map_err(EthError::Fee)?;
        let n = last.attempt + 1;
        let now = self.now();
        let row = attempt_row(send_id, n, kind, &plan, now);
        // Checked against the transfer's intent and the original before it
        // is stored (refused plainly here), and again before it is signed.
        let t = self
            .store()
            .transfer_of_send(send_id)
            .await?
            .ok_or_else(|| {
                ServiceError::NotApproved("the send pays no approved transfer".into())
            })?;
        if let Err(why) = self
            .eth_approved(&net, &sender, &send, &t, &attempts, &row)
            .await?
        {
            return Err(ServiceError::NotApproved(why));
        }
        let e = entry(
            actor,
            "eth.send.replacing",
            &format!("eth-send:{send_id}"),
            json!({
                "attempt": n,
                "kind": kind,
                "nonce": send.nonce,
                "fees": fee_json(&plan.fees),
                "signing_hash": row.signing_hash,
            }),
        )?;
        let mut tx = self.store().begin().await?;
        tx.insert_eth_attempt(&row).await?;
        self.commit(tx, &[e], now).await?;
        self.eth_sign_and_send(&net, &sender, send_id, n).await?;
        Ok(self.store().eth_send(send_id).await?)
    }
}

/// Moves the transfer a send carries out (if it carries one) by `event`,
/// in the send's own transaction; the audit record to commit with it.
pub(crate) async fn follow(
    tx: &mut storage::WriteTx,
    send_id: &str,
    event: lifecycle::Event,
    why: &str,
    now: domain::Timestamp,
) -> Result<Option<audit::Entry>, ServiceError> {
    let Some(t) = tx.transfer_of_send(send_id).await? else {
        return Ok(None);
    };
    let m = crate::moves::Move::new(event, &Actor::System, why);
    Ok(Some(crate::moves::transition(tx, &t, m, now).await?.0))
}

/// A `transfer.state_changed` event for a send, into the outbox of `tx`.
pub(crate) async fn send_event(
    tx: &mut storage::WriteTx,
    send: &EthSendRow,
    new_state: &str,
    now: Timestamp,
) -> Result<(), ServiceError> {
    crate::outbox::enqueue(
        tx,
        "transfer.state_changed",
        json!({
            "transfer": send.id,
            "network": send.network,
            "from": send.address,
            "nonce": send.nonce,
            "asset": send.asset,
            "to": send.recipient,
            "amount": send.amount.to_string(),
            "state": new_state,
        }),
        now,
    )
    .await
}
