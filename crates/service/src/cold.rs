//! The cold tier's round trip: a Bitcoin send the server may not complete
//! alone (a cold wallet's, or a multisig account's whose missing cosigners
//! are held outside) is signed as far as the server may and handed out as
//! a PSBT (BIP-174); its transfers wait in `awaiting_signature`. The PSBT
//! signed offline (`strongroom offline sign`, any BIP-174 signer) comes
//! back and is accepted only if, combined with what the server signed, it
//! finalises into exactly the approved plan, every input verified by
//! Bitcoin Core's interpreter; then it is stored and broadcast as any
//! send. A PSBT that is not the plan changes nothing and is audited.
//! Cancelling an exported transfer, or its lapse after [`EXPORT_WINDOW_MS`],
//! gives its outputs back.

use domain::{Actor, BitcoinNetwork, Network, Timestamp, TransferId};
use lifecycle::Event;
use serde_json::json;
use storage::{BtcSendRow, TransferRow, WriteTx};

use crate::access::{Can, perm};
use crate::btc::BtcServiceError;
use crate::moves::{Move, corrupt, state, transition};
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// How long an exported send waits for its offline signature before its
/// transfers lapse and its outputs go back (three days; the outputs'
/// reservation itself ends after seven).
pub const EXPORT_WINDOW_MS: i64 = 3 * 86_400_000;

/// A transfer's transaction as handed out for its offline signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsigned {
    pub transfer: TransferId,
    pub network: Network,
    pub exported_at: Timestamp,
    /// When it lapses unless signed.
    pub expires_at: Timestamp,
    /// The transfers it pays (a Bitcoin batch pays several).
    pub transfers: Vec<TransferId>,
    pub tx: UnsignedTx,
}

/// The transaction itself, as each chain's offline signers take it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnsignedTx {
    Bitcoin {
        /// The PSBT (BIP-174), with the signatures the server made.
        psbt: Vec<u8>,
        /// The id of the transaction once signed (segwit: fixed already).
        txid: String,
        fee_sat: u64,
        /// What it spends: `txid:vout` and value.
        inputs: Vec<(String, u64)>,
        /// What it pays: address, value, and whether it is the wallet's change.
        outputs: Vec<(String, u64, bool)>,
    },
    Ethereum(Box<EthUnsigned>),
}

/// An Ethereum transaction to sign offline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EthUnsigned {
    /// The unsigned EIP-2718 payload (`0x02 ‖ rlp(…)`): its keccak-256 is
    /// what the key signs.
    pub payload: Vec<u8>,
    pub signing_hash: [u8; 32],
    /// The sender, whose key must sign.
    pub from: String,
    pub plan: chain_eth::TxPlan,
    /// What the transfer pays, to whom (for a token: the token's
    /// recipient, not the contract the transaction calls).
    pub asset: String,
    pub recipient: String,
    pub amount: u128,
}

/// A PSBT as text: base64 (BIP-174's text form) or hex, surrounding
/// whitespace ignored.
pub fn decode_psbt(text: &str) -> Result<Vec<u8>, ServiceError> {
    let t = text.trim();
    let bytes = if t.len().is_multiple_of(2) && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(t).ok()
    } else {
        data_encoding::BASE64.decode(t.as_bytes()).ok()
    };
    bytes
        .filter(|b| b.starts_with(b"psbt\xff"))
        .ok_or_else(|| ServiceError::Invalid("psbt: a PSBT in base64 or hex".into()))
}

/// A signed Ethereum transaction as text: hex, `0x` or not.
pub fn decode_transaction(text: &str) -> Result<Vec<u8>, ServiceError> {
    let t = text.trim();
    hex::decode(t.strip_prefix("0x").unwrap_or(t))
        .ok()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| ServiceError::Invalid("transaction: a signed transaction in hex".into()))
}

/// A PSBT's text form (base64).
pub fn encode_psbt(bytes: &[u8]) -> String {
    data_encoding::BASE64.encode(bytes)
}

impl Can<'_, perm::ReadWallet> {
    /// A transfer's transaction waiting for its offline signature.
    pub async fn unsigned(&self, id: TransferId) -> Result<Unsigned, ServiceError> {
        in_wallet(self, id).await?;
        self.svc.unsigned_transfer(id).await
    }
}

impl Can<'_, perm::OperateQueue> {
    /// Brings back a transfer's PSBT signed offline (see
    /// [`Service::import_signed`]). Returns the transaction id and the
    /// transfer's state after it (`signed`, or `broadcasting`).
    pub async fn import_signed(
        &self,
        id: TransferId,
        psbt: &[u8],
    ) -> Result<(String, String), ServiceError> {
        in_wallet(self, id).await?;
        let txid = self.svc.import_signed(self.actor(), id, psbt).await?;
        Ok((txid, self.svc.store().transfer(id).await?.state))
    }
}

/// A transfer of a wallet the capability reaches; `404` for any other.
async fn in_wallet<P: perm::Perm>(can: &Can<'_, P>, id: TransferId) -> Result<(), ServiceError> {
    let t = can.svc.store().transfer(id).await?;
    if domain::permits(can.who.grants(), P::PERMISSION, Some(t.wallet)) {
        Ok(())
    } else {
        Err(storage::StorageError::NotFound { what: "transfer" }.into())
    }
}

fn btc_network_of(send: &BtcSendRow) -> Result<BitcoinNetwork, ServiceError> {
    match send.network.parse::<Network>() {
        Ok(Network::Bitcoin(n)) => Ok(n),
        _ => Err(corrupt("Bitcoin send", "not a Bitcoin network")),
    }
}

impl Service {
    /// Hands a planned send out for its offline signature: the PSBT with
    /// the server's signatures stored, every transfer moved to
    /// `awaiting_signature`, audited, in one transaction.
    pub(crate) async fn btc_export(
        &self,
        send: &BtcSendRow,
        psbt: &bitcoin::Psbt,
        made: usize,
        missing: usize,
    ) -> Result<(), ServiceError> {
        let mut psbt = psbt.clone();
        self.name_offline_keys(&send.id, &mut psbt).await?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.set_btc_send_exported(&send.id, &psbt.serialize())
            .await?;
        let mut entries = Vec::new();
        let why = format!(
            "signed as far as the server may ({made} signatures); {missing} more to come from \
             keys held offline"
        );
        for t in tx.transfers_of_btc_send(&send.id).await? {
            let m = Move::new(Event::Exported, &Actor::System, &why);
            entries.push(transition(&mut tx, &t, m, now).await?.0);
        }
        entries.push(entry(
            &Actor::System,
            "btc.send.exported",
            &format!("btc-send:{}", send.id),
            json!({
                "unsigned_txid": psbt.unsigned_tx.compute_txid().to_string(),
                "signatures_made": made,
                "signatures_missing": missing,
                "expires_at_ms": now.as_millis().saturating_add(EXPORT_WINDOW_MS),
            }),
        )?);
        self.commit(tx, &entries, now).await
    }

    /// Names, in each input of a PSBT handed out, the keys held outside
    /// that sign it and whose origin is known (`PSBT_IN_BIP32_DERIVATION`:
    /// master fingerprint and path), as hardware wallets and BIP-174
    /// signers find their keys. Only a hint: what comes back is checked
    /// against the plan whatever it says.
    async fn name_offline_keys(
        &self,
        send_id: &str,
        psbt: &mut bitcoin::Psbt,
    ) -> Result<(), ServiceError> {
        let utxos = self.store().btc_utxos_of_send(send_id).await?;
        let outpoints: Vec<bitcoin::OutPoint> = psbt
            .unsigned_tx
            .input
            .iter()
            .map(|i| i.previous_output)
            .collect();
        for (input, o) in psbt.inputs.iter_mut().zip(outpoints) {
            let Some(u) = utxos
                .iter()
                .find(|u| u.txid == o.txid.to_string() && u.vout == o.vout)
            else {
                continue;
            };
            let (_, key, _) = crate::btc::spend_of(&u.spend)?;
            let row = self.store().key(key).await?;
            let holders = match row.backend {
                domain::KeyBackend::External => vec![row],
                domain::KeyBackend::Multisig => self.multisig(&row).await?.cosigners,
                _ => Vec::new(),
            };
            for h in holders {
                let Some(origin) = crate::cosigners::origin_of(&h) else {
                    continue;
                };
                let pk = hex::decode(&h.public_key)
                    .ok()
                    .and_then(|b| bitcoin::secp256k1::PublicKey::from_slice(&b).ok())
                    .ok_or_else(|| corrupt("external key", h.id))?;
                input.bip32_derivation.insert(pk, origin);
            }
        }
        Ok(())
    }

    /// The transaction of a transfer waiting for its offline signature.
    pub async fn unsigned_transfer(&self, id: TransferId) -> Result<Unsigned, ServiceError> {
        let t = self.store().transfer(id).await?;
        if t.eth_send_id.is_some() {
            return self.eth_unsigned(&t).await;
        }
        let send = exported_send(self, &t).await?;
        let n = btc_network_of(&send)?;
        let psbt = bitcoin::Psbt::deserialize(&send.psbt).map_err(|e| corrupt("PSBT", e))?;
        let own = self.own_scripts(t.wallet, &send.network).await?;
        let net = crate::btc::chain_btc_network(n);
        let inputs = psbt
            .unsigned_tx
            .input
            .iter()
            .zip(chain_btc::prevouts_of(&psbt).map_err(BtcServiceError::Tx)?)
            .map(|(i, p)| (i.previous_output.to_string(), p.value.to_sat()))
            .collect();
        let outputs = psbt
            .unsigned_tx
            .output
            .iter()
            .map(|o| {
                let address = bitcoin::Address::from_script(&o.script_pubkey, net)
                    .map_or_else(|_| o.script_pubkey.to_hex_string(), |a| a.to_string());
                (address, o.value.to_sat(), own.contains(&o.script_pubkey))
            })
            .collect();
        Ok(Unsigned {
            transfer: id,
            network: Network::Bitcoin(n),
            exported_at: t.updated_at,
            expires_at: lapses_at(&t),
            transfers: self
                .store()
                .transfers_of_btc_send(&send.id)
                .await?
                .iter()
                .map(|t| t.id)
                .collect(),
            tx: UnsignedTx::Bitcoin {
                txid: psbt.unsigned_tx.compute_txid().to_string(),
                psbt: send.psbt.clone(),
                fee_sat: send.fee_sat,
                inputs,
                outputs,
            },
        })
    }

    /// Takes back a transfer's PSBT signed offline. Accepted only if,
    /// combined with what the server signed, it is the very transaction
    /// approved, finalised, and verified input by input by Bitcoin Core's
    /// interpreter: then stored with every transfer's move to `signed`,
    /// and broadcast. Anything else (another transaction — an output
    /// changed, an input added, another fee —, a signature by a key not
    /// of the wallet, too few signatures) is refused with its reason,
    /// audited, and changes nothing. Returns the transaction id.
    pub async fn import_signed(
        &self,
        actor: &Actor,
        id: TransferId,
        signed: &[u8],
    ) -> Result<String, ServiceError> {
        let t = self.store().transfer(id).await?;
        if t.eth_send_id.is_some() {
            return self.eth_import(actor, &t, signed).await;
        }
        let send = exported_send(self, &t).await?;
        let n = btc_network_of(&send)?;
        let wallet = send
            .wallet
            .ok_or_else(|| corrupt("Bitcoin send", "no wallet"))?;
        self.ensure_not_frozen(Some(wallet), None).await?;
        let transfers = self.store().transfers_of_btc_send(&send.id).await?;
        // Approvals revoked since it was handed out: pulled back, refused
        // (one that merely expired since stood when it was handed out).
        self.approvals_stand_as_of(&transfers, Some(t.updated_at))
            .await?;
        let ours = bitcoin::Psbt::deserialize(&send.psbt).map_err(|e| corrupt("PSBT", e))?;
        // The stored plan itself not what was approved is tampering with
        // the database: the one refuse path.
        let (approved, _) = self
            .btc_approved_or_refused(&send, &ours, &transfers, n, wallet)
            .await?;
        let accepted = bitcoin::Psbt::deserialize(signed)
            .map_err(|e| format!("not a PSBT: {e}"))
            .and_then(|theirs| {
                // The server's own signatures win over any brought back.
                let mut combined = theirs;
                chain_btc::combine(&mut combined, ours.clone())
                    .map_err(|_| "it is not the transaction handed out".to_owned())?;
                approved.accept(combined).map_err(|e| e.to_string())
            });
        let signed = match accepted {
            Ok(tx) => tx,
            Err(why) => {
                let subject = format!("btc-send:{}", send.id);
                return Err(self.refuse_import(actor, &subject, &transfers, why).await);
            }
        };
        let txid = signed.compute_txid().to_string();
        let raw = bitcoin::consensus::serialize(&signed);
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.set_btc_send_signed(&send.id, &raw, &txid).await?;
        let mut entries = Vec::new();
        for t in tx.transfers_of_btc_send(&send.id).await? {
            let m = Move::new(
                Event::Signed,
                actor,
                "signed offline; verified, the approved plan, and stored",
            );
            entries.push(transition(&mut tx, &t, m, now).await?.0);
        }
        entries.push(entry(
            actor,
            "btc.tx.signed",
            &format!("btc-send:{}", send.id),
            json!({ "txid": txid, "vsize": signed.vsize(), "transfers": entries.len(), "offline": true }),
        )?);
        self.commit(tx, &entries, now).await?;
        // Broadcast now if a node answers; otherwise the queue's next pass.
        if let Err(e) = self.btc_sign_and_send(&send.id).await {
            tracing::warn!(send = %send.id, error = %e, "broadcast deferred");
        }
        Ok(txid)
    }

    /// A signed PSBT that is not the plan: audited (who brought it, why it
    /// was refused) with a webhook event; nothing else changes.
    async fn refuse_import(
        &self,
        actor: &Actor,
        subject: &str,
        transfers: &[TransferRow],
        why: String,
    ) -> ServiceError {
        tracing::warn!(send = %subject, %why, "an offline-signed transaction was refused");
        let refused = async {
            let now = self.now();
            let mut tx = self.store().begin().await?;
            let ids: Vec<String> = transfers.iter().map(|t| t.id.to_string()).collect();
            let details = json!({ "send": subject, "transfers": ids, "why": why });
            crate::outbox::enqueue(&mut tx, "transfer.signature_refused", details.clone(), now)
                .await?;
            let e = entry(actor, "transfer.signature_refused", subject, details)?;
            self.commit(tx, &[e], now).await
        }
        .await;
        match refused {
            Ok(()) => ServiceError::SignatureRefused(why),
            Err(e) => e,
        }
    }

    /// Lapses the transfers handed out longer than [`EXPORT_WINDOW_MS`]
    /// ago; their outputs or nonces go back. Returns how many lapsed.
    pub(crate) async fn lapse_exported(&self) -> Result<usize, ServiceError> {
        let mut lapsed = 0;
        for t in self
            .store()
            .transfers_in(state::AWAITING_SIGNATURE, 1_000)
            .await?
        {
            let now = self.now();
            if lapses_at(&t) > now {
                continue;
            }
            if let Err(e) = self.ensure_not_broadcast(&t).await {
                tracing::warn!(transfer = %t.id, error = %e, "not lapsed: it may be on the network");
                continue;
            }
            let mut tx = self.store().begin().await?;
            let t = tx.lock_transfer(t.id).await?;
            if t.state != state::AWAITING_SIGNATURE {
                continue; // a batch-mate lapsed with it
            }
            let why = "its offline signature did not come back in time";
            let entries =
                release_exported(&mut tx, &t, Event::Lapsed, &Actor::System, why, now).await?;
            self.commit(tx, &entries, now).await?;
            lapsed += 1;
        }
        Ok(lapsed)
    }
}

impl Service {
    /// Before a transaction handed out is stopped (cancelled, lapsed): the
    /// network must not have it already. Whoever holds the offline key may
    /// have completed and broadcast it; then it is brought back
    /// (`POST /v1/transfers/{id}/signed`) and followed, never stopped with
    /// its outputs or nonce given to another transfer. Without a node to
    /// ask (Bitcoin without one configured), nothing is asked.
    pub(crate) async fn ensure_not_broadcast(&self, t: &TransferRow) -> Result<(), ServiceError> {
        let on_network = |what: String| {
            ServiceError::Conflict(format!(
                "{what}: the transaction handed out may have been signed and sent; bring it back \
                 signed instead (POST /v1/transfers/{}/signed)",
                t.id
            ))
        };
        if let Some(id) = &t.eth_send_id {
            let send = self.store().eth_send(id).await?;
            let net = self.eth_network(crate::eth_rows::chain_of(&send.network)?)?;
            let from = crate::eth_rows::parse_addr(&send.address)?;
            let next = net
                .client
                .nonce(from, chain_eth_client::NonceTag::Pending)
                .await
                .map_err(crate::error::EthError::Node)?;
            if next > send.nonce {
                return Err(on_network(format!(
                    "nonce {} of {from} is used on the network already",
                    send.nonce
                )));
            }
            return Ok(());
        }
        let Some(id) = &t.btc_send_id else {
            return Ok(());
        };
        let send = self.store().btc_send(id).await?;
        let n = btc_network_of(&send)?;
        let Some(client) = self.btc_network(n)?.client.clone() else {
            return Ok(());
        };
        let psbt = bitcoin::Psbt::deserialize(&send.psbt).map_err(|e| corrupt("PSBT", e))?;
        let txid = psbt.unsigned_tx.compute_txid().to_string();
        let node = |e| ServiceError::from(BtcServiceError::Node(e));
        // Its inputs are segwit: signing cannot change its id. An input
        // spent by another transaction is someone else's spend (the
        // Bitcoin loop reports it), not this one out.
        if client.tx_state(&txid).await.map_err(node)? != chain_btc_client::TxState::Unknown {
            return Err(on_network(format!("the node knows transaction {txid}")));
        }
        Ok(())
    }
}

/// When a transfer waiting for its offline signature lapses: the window
/// after it started waiting.
fn lapses_at(t: &TransferRow) -> Timestamp {
    Timestamp::from_millis(t.updated_at.as_millis().saturating_add(EXPORT_WINDOW_MS))
}

/// The exported send of a transfer waiting for its offline signature.
async fn exported_send(svc: &Service, t: &TransferRow) -> Result<BtcSendRow, ServiceError> {
    if t.state != state::AWAITING_SIGNATURE {
        return Err(ServiceError::Conflict(format!(
            "the transfer is {}, not awaiting an offline signature",
            t.state
        )));
    }
    let id = t
        .btc_send_id
        .as_deref()
        .ok_or_else(|| corrupt("transfer awaiting a signature", "it names no send"))?;
    let send = svc.store().btc_send(id).await?;
    if send.state != "exported" {
        return Err(ServiceError::Conflict(format!(
            "its transaction is {}, not handed out",
            send.state
        )));
    }
    Ok(send)
}

/// Stops an exported send in `tx` (`t`, one of its transfers, locked there,
/// takes `event`: a cancel or a lapse): its outputs go back; its other
/// transfers go back to the queue (their approvals stand) or lapse with it.
/// Returns the audit records.
pub(crate) async fn release_exported(
    tx: &mut WriteTx,
    t: &TransferRow,
    event: Event,
    by: &Actor,
    why: &str,
    now: Timestamp,
) -> Result<Vec<audit::Entry>, ServiceError> {
    if let Some(send) = &t.eth_send_id {
        // Nothing was signed here: the nonce goes to the sender's next plan.
        let nonce = tx.release_eth_send(send, now).await?;
        let why = format!("{why}; nonce {nonce} given back");
        let m = Move::new(event, by, &why);
        return Ok(vec![
            transition(tx, t, m, now).await?.0,
            entry(
                by,
                "eth.send.released",
                &format!("eth-send:{send}"),
                json!({ "nonce": nonce, "transfer": t.id.to_string(), "why": why }),
            )?,
        ]);
    }
    let send = t
        .btc_send_id
        .clone()
        .ok_or_else(|| corrupt("transfer awaiting a signature", "it names no send"))?;
    tx.set_btc_send_state(&send, "exported", "released").await?;
    let outputs = tx.release_btc_utxos(&send).await?;
    let mut entries = Vec::new();
    let mut moved = Vec::new();
    for other in tx.transfers_of_btc_send(&send).await? {
        let (event, why) = if other.id == t.id || event == Event::Lapsed {
            (event, format!("{why}; reserved outputs given back"))
        } else {
            (
                Event::Unplanned,
                format!(
                    "another payout of its batch was stopped ({why}); reserved outputs given back"
                ),
            )
        };
        let m = Move::new(event, by, &why);
        entries.push(transition(tx, &other, m, now).await?.0);
        moved.push(other.id.to_string());
    }
    entries.push(entry(
        by,
        "btc.send.released",
        &format!("btc-send:{send}"),
        json!({ "outputs": outputs, "transfers": moved, "why": why }),
    )?);
    Ok(entries)
}

impl Service {
    /// Hands an Ethereum send out for its offline signature (its sender's
    /// key is held outside): the transfer waits in `awaiting_signature`,
    /// audited, with its nonce kept. Again for the same send, nothing.
    pub(crate) async fn eth_export(
        &self,
        t: &TransferRow,
        send: &storage::EthSendRow,
    ) -> Result<(), ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let t = tx.lock_transfer(t.id).await?;
        if t.state != state::SIGNING {
            return Ok(()); // handed out already (or moved on)
        }
        let why = "its sender's key is held outside: handed out for its offline signature";
        let m = Move::new(Event::Exported, &Actor::System, why);
        let moved = transition(&mut tx, &t, m, now).await?.0;
        let e = entry(
            &Actor::System,
            "eth.send.exported",
            &format!("eth-send:{}", send.id),
            json!({
                "nonce": send.nonce,
                "transfer": t.id.to_string(),
                "expires_at_ms": now.as_millis().saturating_add(EXPORT_WINDOW_MS),
            }),
        )?;
        self.commit(tx, &[moved, e], now).await
    }

    /// The send, its network, its sender and its first attempt, of an
    /// Ethereum transfer waiting for its offline signature.
    async fn eth_exported(&self, t: &TransferRow) -> Result<EthExported, ServiceError> {
        if t.state != state::AWAITING_SIGNATURE {
            return Err(ServiceError::Conflict(format!(
                "the transfer is {}, not awaiting an offline signature",
                t.state
            )));
        }
        let id = t
            .eth_send_id
            .as_deref()
            .ok_or_else(|| corrupt("transfer awaiting a signature", "it names no send"))?;
        let send = self.store().eth_send(id).await?;
        let attempts = self.store().eth_attempts(id).await?;
        let first = attempts
            .first()
            .cloned()
            .ok_or_else(|| corrupt("Ethereum send", "no attempt"))?;
        if send.state != crate::eth::state::SIGNING || first.raw.is_some() {
            return Err(ServiceError::Conflict(format!(
                "its transaction is {}, not waiting for a signature",
                send.state
            )));
        }
        let chain_id = crate::eth_rows::chain_of(&send.network)?;
        let net = self.eth_network(chain_id)?;
        let sender = self
            .store()
            .eth_sender(&send.network, &send.address)
            .await?;
        Ok(EthExported {
            plan: crate::eth_rows::plan_of(&send, &first, chain_id)?,
            send,
            attempts,
            net,
            sender,
        })
    }

    async fn eth_unsigned(&self, t: &TransferRow) -> Result<Unsigned, ServiceError> {
        let x = self.eth_exported(t).await?;
        let network: Network = x.send.network.parse().map_err(|e| corrupt("network", e))?;
        let from = crate::eth_rows::parse_addr(&x.send.address)?.to_string();
        Ok(Unsigned {
            transfer: t.id,
            network,
            exported_at: t.updated_at,
            expires_at: lapses_at(t),
            transfers: vec![t.id],
            tx: UnsignedTx::Ethereum(Box::new(EthUnsigned {
                payload: x.plan.signing_payload(),
                signing_hash: x.plan.signing_hash(),
                from,
                plan: x.plan,
                asset: x.send.asset,
                recipient: x.send.recipient,
                amount: x.send.amount,
            })),
        })
    }

    /// Takes back an Ethereum transaction signed offline: accepted only if
    /// it is the approved plan byte for byte (EIP-2718, low S), signed by
    /// the sender's key — recovered by alloy and verified again by
    /// libsecp256k1 — then stored, the transfer `signed`, and broadcast.
    /// Anything else is refused, audited, and changes nothing.
    async fn eth_import(
        &self,
        actor: &Actor,
        t: &TransferRow,
        raw: &[u8],
    ) -> Result<String, ServiceError> {
        let x = self.eth_exported(t).await?;
        self.ensure_not_frozen(Some(t.wallet), Some(x.sender.key_id))
            .await?;
        self.approvals_stand_as_of(std::slice::from_ref(t), Some(t.updated_at))
            .await?;
        let subject = format!("eth-send:{}", x.send.id);
        let first = &x.attempts[0];
        let approved = match self
            .eth_approved(&x.net, &x.sender, &x.send, t, &x.attempts, first)
            .await?
        {
            Ok(a) => a,
            Err(why) => {
                return Err(self
                    .refuse_to_sign(crate::refusal::Refused {
                        send: subject,
                        wallet: t.wallet,
                        transfers: &[t.id],
                        why,
                    })
                    .await);
            }
        };
        let key = self.store().key(x.sender.key_id).await?;
        let accepted = accept_eth(&approved, &key.public_key, raw);
        let signed = match accepted {
            Ok(s) => s,
            Err(why) => {
                return Err(self
                    .refuse_import(actor, &subject, std::slice::from_ref(t), why)
                    .await);
            }
        };
        let hash = crate::eth_rows::hex32(&signed.hash);
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.set_eth_attempt_signed(
            &x.send.id,
            first.attempt,
            &first.signing_hash,
            &signed.raw,
            &hash,
        )
        .await?;
        use crate::eth::state::{SIGNED, SIGNING};
        tx.set_eth_send_state(&x.send.id, SIGNING, SIGNED, None, now)
            .await?;
        let mut entries = Vec::new();
        let why = "signed offline; verified, the approved plan, and stored";
        entries.extend(crate::eth::follow(&mut tx, &x.send.id, Event::Signed, why, now).await?);
        entries.push(entry(
            actor,
            "eth.tx.signed",
            &subject,
            json!({ "attempt": first.attempt, "nonce": x.send.nonce, "tx_hash": hash, "key": key.id.to_string(), "offline": true }),
        )?);
        self.commit(tx, &entries, now).await?;
        // Broadcast now if a node answers; otherwise the watcher's next pass.
        if let Err(e) = self
            .eth_sign_and_send(&x.net, &x.sender, &x.send.id, first.attempt)
            .await
        {
            tracing::warn!(send = %x.send.id, error = %e, "broadcast deferred");
        }
        Ok(hash)
    }
}

/// An Ethereum send handed out, with what signing it needs.
struct EthExported {
    send: storage::EthSendRow,
    attempts: Vec<storage::EthAttemptRow>,
    plan: chain_eth::TxPlan,
    net: std::sync::Arc<crate::eth::EthNetwork>,
    sender: storage::EthSenderRow,
}

/// A signed Ethereum transaction brought back, checked against the
/// approved plan: decoded (EIP-2718, low S), the very plan, recovered to
/// the sender, re-encoded to the same bytes, and its signature verified by
/// a second library (libsecp256k1) under the sender's public key.
fn accept_eth(
    approved: &chain_eth::Approved,
    public_key: &str,
    raw: &[u8],
) -> Result<chain_eth::SignedTx, String> {
    let d = chain_eth::decode(raw).map_err(|e| format!("not a signed transaction: {e}"))?;
    if d.plan != *approved.plan() {
        return Err("it is not the transaction handed out".into());
    }
    if d.from != approved.from() {
        return Err(format!(
            "it is signed by {}, not by the sender {}",
            d.from,
            approved.from()
        ));
    }
    let signed = approved.finish(d.signature).map_err(|e| e.to_string())?;
    if signed.raw != raw {
        return Err("it is not in its canonical encoding".into());
    }
    let pk: [u8; 33] = hex::decode(public_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "the sender's public key is unreadable".to_owned())?;
    keys::verify::verify(
        &keys::PublicKey::Secp256k1(pk),
        &keys::SignRequest::EcdsaDigest(approved.signing_hash()),
        &keys::Signature::Ecdsa(keys::EcdsaSignature {
            r: d.signature.r,
            s: d.signature.s,
            recovery_id: d.signature.recovery_id,
        }),
    )
    .map_err(|e| format!("the signature does not verify: {e}"))?;
    Ok(signed)
}
