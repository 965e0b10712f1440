//! Bitcoin through the service: deposits recorded as held outputs, and
//! sends that select and reserve outputs, commit the approved PSBT with
//! its audit record before any key signs, sign each input through the
//! keystore's gate, have Bitcoin Core's interpreter verify the result,
//! commit the signed transaction, then broadcast it.

use std::sync::Arc;

use chain_btc::{BtcAddress, FeeCaps, Payout, SigningTask, Spend, Utxo};
use chain_btc_client::BtcClient;
use domain::{Actor, Amount, Asset, BitcoinNetwork, KeyAlgorithm, KeyId, KeyPurpose, Network};
use keys::{SignRequest, Signature, TapTweak};
use serde_json::json;
use storage::{BtcSendRow, BtcUtxoRow, StorageError};

use crate::keystore::entry;
use crate::service::{Service, ServiceError};

/// One Bitcoin network as configured.
#[derive(Debug)]
pub struct BtcNetwork {
    pub network: BitcoinNetwork,
    pub fee_caps: FeeCaps,
    /// Sat per virtual byte for transfers when no node estimates one.
    pub fee_rate: u64,
    /// How queued payouts of one wallet are gathered into one transaction.
    pub batch: BatchRule,
    /// Where to broadcast; without one, sends stop at `signed`.
    pub client: Option<Arc<BtcClient>>,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BtcServiceError {
    #[error("{0} is not configured")]
    NetworkNotConfigured(String),
    #[error("destination refused: {0}")]
    Address(#[from] chain_btc::AddressError),
    #[error("amount refused: {0}")]
    Amount(#[from] domain::AmountError),
    #[error("{0}")]
    Plan(#[from] chain_btc::FeeError),
    #[error("transaction: {0}")]
    Tx(#[from] chain_btc::BtcError),
    #[error("node: {0}")]
    Node(#[from] chain_btc_client::ClientError),
    #[error("the signed transaction is not the approved one")]
    Mismatch,
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

/// What to pay.
#[derive(Debug, Clone)]
pub struct BtcSendRequest {
    pub network: BitcoinNetwork,
    /// (address as written, decimal BTC amount).
    pub payouts: Vec<(String, String)>,
    /// Sat per virtual byte.
    pub fee_rate: u64,
    /// The key whose P2WPKH address receives the change.
    pub change_key: KeyId,
}

pub(crate) fn net_name(n: BitcoinNetwork) -> String {
    Network::Bitcoin(n).to_string()
}

/// The key that signs for an output: a single key, or an HD account key
/// and the (unhardened) child path below its account.
pub(crate) type Signer = (KeyId, Vec<u32>);

/// How a held output is spent, with the key (and HD child) that signs for it.
pub(crate) fn spend_json(spend: &Spend, key: KeyId, child: &[u32]) -> serde_json::Value {
    let mut v = match spend {
        Spend::P2wpkh { pubkey } => {
            json!({"type": "p2wpkh", "key": key.to_string(), "pubkey": hex::encode(pubkey)})
        }
        Spend::P2tr { internal_key } => {
            json!({"type": "p2tr", "key": key.to_string(), "internal_key": hex::encode(internal_key)})
        }
        Spend::P2trOutput { output_key } => {
            json!({"type": "p2tr-output", "key": key.to_string(), "output_key": hex::encode(output_key)})
        }
        Spend::P2wshMulti { .. } => json!({"type": "p2wsh-multi", "key": key.to_string()}),
    };
    if !child.is_empty() {
        v["child"] = json!(child);
    }
    v
}

pub(crate) fn spend_of(text: &str) -> Result<(Spend, KeyId, Vec<u32>), ServiceError> {
    let bad = || ServiceError::Storage(StorageError::Corrupt("stored Bitcoin spend".into()));
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| bad())?;
    let key: KeyId = v["key"]
        .as_str()
        .and_then(|k| k.parse().ok())
        .ok_or_else(bad)?;
    let bytes = |k: &str| hex::decode(v[k].as_str().unwrap_or_default()).map_err(|_| bad());
    let spend = match v["type"].as_str() {
        Some("p2wpkh") => Spend::P2wpkh {
            pubkey: bytes("pubkey")?.try_into().map_err(|_| bad())?,
        },
        Some("p2tr") => Spend::P2tr {
            internal_key: bytes("internal_key")?.try_into().map_err(|_| bad())?,
        },
        Some("p2tr-output") => Spend::P2trOutput {
            output_key: bytes("output_key")?.try_into().map_err(|_| bad())?,
        },
        _ => return Err(bad()),
    };
    let child = match v.get("child") {
        None => Vec::new(),
        Some(c) => c
            .as_array()
            .ok_or_else(bad)?
            .iter()
            .map(|i| {
                i.as_u64()
                    .and_then(|i| u32::try_from(i).ok())
                    .ok_or_else(bad)
            })
            .collect::<Result<_, _>>()?,
    };
    Ok((spend, key, child))
}

impl Service {
    pub fn add_btc_network(&self, net: BtcNetwork) {
        let mut nets = self
            .btc_networks()
            .write()
            .unwrap_or_else(|p| p.into_inner());
        nets.insert(net_name(net.network), Arc::new(net));
    }

    pub(crate) fn btc_network(&self, n: BitcoinNetwork) -> Result<Arc<BtcNetwork>, ServiceError> {
        let nets = self
            .btc_networks()
            .read()
            .unwrap_or_else(|p| p.into_inner());
        nets.get(&net_name(n))
            .cloned()
            .ok_or_else(|| BtcServiceError::NetworkNotConfigured(net_name(n)).into())
    }

    /// How outputs paying `key` are spent: P2WPKH for ECDSA keys, P2TR
    /// (BIP-86 key path) for BIP-340 keys.
    pub async fn btc_spend_for(&self, key: KeyId) -> Result<Spend, ServiceError> {
        self.btc_spend_at(key, &[]).await
    }

    /// How outputs paying `key` (an HD account key: at `child` below its
    /// account, derived from its xpub alone, watch-only) are spent: P2WPKH.
    pub(crate) async fn btc_spend_at(
        &self,
        key: KeyId,
        child: &[u32],
    ) -> Result<Spend, ServiceError> {
        if child.is_empty() {
            return self.btc_spend_single(key).await;
        }
        let row = self.store().key(key).await?;
        if row.purpose != KeyPurpose::TransferSigning
            || row.hd_path.is_none()
            || row.algorithm != KeyAlgorithm::EcdsaSecp256k1
        {
            return Err(ServiceError::KeyNotUsable(format!(
                "key {key} is not an ECDSA HD transfer-signing key"
            )));
        }
        let pubkey = keys::hd::derive_from_xpub(&row.public_key, child)
            .map_err(|e| ServiceError::KeyNotUsable(e.to_string()))?;
        Ok(Spend::P2wpkh { pubkey })
    }

    async fn btc_spend_single(&self, key: KeyId) -> Result<Spend, ServiceError> {
        let row = self.store().key(key).await?;
        if row.purpose != KeyPurpose::TransferSigning || row.hd_path.is_some() {
            return Err(ServiceError::KeyNotUsable(format!(
                "key {key} is not a single transfer-signing key"
            )));
        }
        let bad = || ServiceError::Storage(StorageError::Corrupt("public key".into()));
        let bytes = hex::decode(&row.public_key).map_err(|_| bad())?;
        match row.algorithm {
            KeyAlgorithm::EcdsaSecp256k1 => Ok(Spend::P2wpkh {
                pubkey: bytes.try_into().map_err(|_| bad())?,
            }),
            // A threshold key's group key is the output key already.
            KeyAlgorithm::SchnorrBip340 if row.backend == domain::KeyBackend::Threshold => {
                Ok(Spend::P2trOutput {
                    output_key: bytes.try_into().map_err(|_| bad())?,
                })
            }
            KeyAlgorithm::SchnorrBip340 => Ok(Spend::P2tr {
                internal_key: bytes.try_into().map_err(|_| bad())?,
            }),
            KeyAlgorithm::Ed25519 => Err(ServiceError::KeyNotUsable(format!(
                "key {key} is Ed25519: no Bitcoin output uses it"
            ))),
        }
    }

    /// The address of `key` on `network`.
    pub async fn btc_address(
        &self,
        key: KeyId,
        network: BitcoinNetwork,
    ) -> Result<String, ServiceError> {
        let spend = self.btc_spend_for(key).await?;
        let spk = spend.script_pubkey().map_err(BtcServiceError::Tx)?;
        let a = bitcoin::Address::from_script(&spk, chain_btc_network(network))
            .map_err(|_| BtcServiceError::Tx(chain_btc::BtcError::BadKey))?;
        Ok(a.to_string())
    }

    /// Records an output paying one of our keys (a deposit the watcher found).
    pub async fn btc_record_deposit(
        &self,
        actor: &Actor,
        network: BitcoinNetwork,
        key: KeyId,
        txid: &str,
        vout: u32,
        value_sat: u64,
    ) -> Result<BtcUtxoRow, ServiceError> {
        self.btc_network(network)?;
        let spend = self.btc_spend_for(key).await?;
        let wallet = self
            .store()
            .btc_account_wallet(&net_name(network), key)
            .await?;
        self.btc_record_output(
            actor,
            network,
            key,
            &[],
            spend,
            wallet,
            txid,
            vout,
            value_sat,
        )
        .await
    }

    /// Records an output spent by `spend` (key `key`, HD `child`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn btc_record_output(
        &self,
        actor: &Actor,
        network: BitcoinNetwork,
        key: KeyId,
        child: &[u32],
        spend: Spend,
        wallet: Option<domain::WalletId>,
        txid: &str,
        vout: u32,
        value_sat: u64,
    ) -> Result<BtcUtxoRow, ServiceError> {
        self.btc_network(network)?;
        if txid.len() != 64 || !txid.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ServiceError::Invalid("a txid is 64 hex digits".into()));
        }
        if value_sat == 0 {
            return Err(ServiceError::Invalid(
                "an output carries at least 1 sat".into(),
            ));
        }
        let spk = spend.script_pubkey().map_err(BtcServiceError::Tx)?;
        let now = self.now();
        let row = BtcUtxoRow {
            network: net_name(network),
            txid: txid.to_ascii_lowercase(),
            vout,
            value_sat,
            script_pubkey: spk.to_hex_string(),
            spend: spend_json(&spend, key, child).to_string(),
            state: "available".into(),
            reserved_by: None,
            wallet,
            created_at: now,
        };
        let e = entry(
            actor,
            "btc.deposit.recorded",
            &format!("btc:{}:{}:{vout}", row.network, row.txid),
            json!({ "value_sat": value_sat, "key": key.to_string(), "child": child }),
        )?;
        let mut tx = self.store().begin().await?;
        tx.insert_btc_utxo(&row).await?;
        self.commit(tx, &[e], now).await?;
        Ok(row)
    }

    /// Pays `req.payouts` from held outputs. Returns the send as stored.
    pub async fn btc_send(
        &self,
        actor: &Actor,
        req: BtcSendRequest,
    ) -> Result<BtcSendRow, ServiceError> {
        let net = self.btc_network(req.network)?;
        let name = net_name(req.network);
        let btc = Asset::bitcoin(req.network);
        let mut payouts = Vec::with_capacity(req.payouts.len());
        for (to, amount) in &req.payouts {
            let address = BtcAddress::parse(to, req.network).map_err(BtcServiceError::Address)?;
            let amount = Amount::parse(amount, &btc).map_err(BtcServiceError::Amount)?;
            let value_sat = u64::try_from(amount.units())
                .map_err(|_| ServiceError::Invalid("amount too large".into()))?;
            payouts.push(Payout {
                script_pubkey: address.script_pubkey(),
                value_sat,
            });
        }
        let change = self
            .btc_spend_for(req.change_key)
            .await?
            .script_pubkey()
            .map_err(BtcServiceError::Tx)?;
        let mut keys_of = std::collections::HashMap::new();
        let mut candidates = Vec::new();
        for row in self.store().btc_utxos(&name, "available").await? {
            let (spend, key, child) = spend_of(&row.spend)?;
            let txid: bitcoin::Txid = row
                .txid
                .parse()
                .map_err(|_| StorageError::Corrupt("stored txid".into()))?;
            keys_of.insert(row.script_pubkey.clone(), (key, child));
            candidates.push(Utxo {
                outpoint: bitcoin::OutPoint {
                    txid,
                    vout: row.vout,
                },
                value_sat: row.value_sat,
                spend,
            });
        }
        let plan = chain_btc::select(&candidates, &payouts, &change, req.fee_rate, true)
            .map_err(BtcServiceError::Plan)?;
        net.fee_caps.check(&plan).map_err(BtcServiceError::Plan)?;
        let psbt = plan.psbt().map_err(BtcServiceError::Tx)?;

        // The plan, its reservation and its audit record, before any signature.
        let now = self.now();
        let id = uuid::Uuid::now_v7().to_string();
        let fee_sat = plan.fee_sat().map_err(BtcServiceError::Tx)?;
        let outpoints: Vec<(String, u32)> = plan
            .inputs
            .iter()
            .map(|u| (u.outpoint.txid.to_string(), u.outpoint.vout))
            .collect();
        let row = BtcSendRow {
            id: id.clone(),
            network: name.clone(),
            psbt: psbt.serialize(),
            raw: None,
            txid: None,
            fee_sat,
            state: "planned".into(),
            wallet: None,
            created_at: now,
            created_by: actor.clone(),
        };
        let e = entry(
            actor,
            "btc.send.planned",
            &format!("btc-send:{id}"),
            json!({
                "network": name,
                "inputs": outpoints.iter().map(|(t, v)| format!("{t}:{v}")).collect::<Vec<_>>(),
                "payouts": req.payouts.iter().map(|(a, v)| json!({"to": a, "amount": v})).collect::<Vec<_>>(),
                "fee_sat": fee_sat,
                "unsigned_txid": psbt.unsigned_tx.compute_txid().to_string(),
            }),
        )?;
        let mut tx = self.store().begin().await?;
        tx.reserve_btc_utxos(
            &name,
            &outpoints,
            &id,
            domain::Timestamp::from_millis(now.as_millis() + 86_400_000),
        )
        .await?;
        tx.insert_btc_send(&row).await?;
        self.commit(tx, &[e], now).await?;

        // Sign and verify; if that fails, the reservation is released and
        // the send marked failed, in one audited transaction.
        let tx_signed = match self.btc_sign(None, &plan, &keys_of, psbt, &[]).await {
            Ok(t) => t,
            Err(e) => {
                let now = self.now();
                let rec = entry(
                    &Actor::System,
                    "btc.send.failed",
                    &format!("btc-send:{id}"),
                    json!({ "reason": e.to_string() }),
                )?;
                let mut tx = self.store().begin().await?;
                tx.release_btc_utxos(&id).await?;
                tx.set_btc_send_state(&id, "planned", "failed").await?;
                self.commit(tx, &[rec], now).await?;
                return Err(e);
            }
        };
        let txid = tx_signed.compute_txid().to_string();
        let raw = bitcoin::consensus::serialize(&tx_signed);
        let now = self.now();
        let e = entry(
            &Actor::System,
            "btc.tx.signed",
            &format!("btc-send:{id}"),
            json!({ "txid": txid, "vsize": tx_signed.vsize() }),
        )?;
        let mut tx = self.store().begin().await?;
        tx.set_btc_send_signed(&id, &raw, &txid).await?;
        self.commit(tx, &[e], now).await?;

        if let Some(client) = &net.client {
            // A global freeze stops the broadcast; the signed bytes wait.
            self.ensure_not_frozen(None, None).await?;
            match client.broadcast(&raw, &txid).await {
                Ok(_) => {
                    let now = self.now();
                    let e = entry(
                        &Actor::System,
                        "btc.tx.broadcast",
                        &format!("btc-send:{id}"),
                        json!({ "txid": txid }),
                    )?;
                    let mut tx = self.store().begin().await?;
                    tx.set_btc_send_state(&id, "signed", "broadcast").await?;
                    self.commit(tx, &[e], now).await?;
                }
                Err(chain_btc_client::ClientError::Unavailable(why)) => {
                    tracing::warn!(send = %id, error = %why, "Bitcoin broadcast deferred");
                }
                Err(e) => return Err(BtcServiceError::Node(e).into()),
            }
        }
        Ok(self.store().btc_send(&id).await?)
    }

    /// Signs every input of `psbt` with its key, through the gate, and
    /// accepts the result only if Core verifies it and it is the plan.
    /// `transfers`: what the transaction pays, with its approvals, for the
    /// signer nodes of threshold keys to check.
    pub(crate) async fn btc_sign(
        &self,
        wallet: Option<domain::WalletId>,
        plan: &chain_btc::BtcPlan,
        keys_of: &std::collections::HashMap<String, Signer>,
        psbt: bitcoin::Psbt,
        transfers: &[keys_mpc::cosign::ApprovedTransfer],
    ) -> Result<bitcoin::Transaction, ServiceError> {
        let spends: Vec<Spend> = plan.inputs.iter().map(|u| u.spend.clone()).collect();
        let mut signed = psbt;
        for t in chain_btc::signing_tasks(&signed, &spends).map_err(BtcServiceError::Tx)? {
            let mut subject = None;
            let (input, request) = match t {
                SigningTask::Ecdsa { input, digest, .. } => {
                    (input, SignRequest::EcdsaDigest(digest))
                }
                SigningTask::Schnorr { input, digest, .. } => (
                    input,
                    SignRequest::SchnorrDigest {
                        digest,
                        tweak: Some(TapTweak::NoScripts),
                    },
                ),
                // A threshold key: its nodes derive the sighash themselves
                // from the transaction, and check what it pays.
                SigningTask::SchnorrOutput { input, digest, .. } => {
                    subject = Some(taproot_subject(&signed, input, transfers)?);
                    (
                        input,
                        SignRequest::SchnorrDigest {
                            digest,
                            tweak: None,
                        },
                    )
                }
            };
            let spk = plan.inputs[input]
                .spend
                .script_pubkey()
                .map_err(BtcServiceError::Tx)?
                .to_hex_string();
            let (key, child) = keys_of.get(&spk).ok_or(BtcServiceError::Mismatch)?;
            let (_, sig) = self
                .sign_checked(
                    *key,
                    wallet,
                    KeyPurpose::TransferSigning,
                    child,
                    request,
                    subject.as_ref(),
                )
                .await?;
            match sig {
                Signature::Ecdsa(e) => {
                    let mut rs = [0u8; 64];
                    rs[..32].copy_from_slice(&e.r);
                    rs[32..].copy_from_slice(&e.s);
                    chain_btc::add_ecdsa(&mut signed, &t, &rs).map_err(BtcServiceError::Tx)?;
                }
                Signature::Schnorr(s) => {
                    chain_btc::add_schnorr(&mut signed, &t, &s).map_err(BtcServiceError::Tx)?;
                }
                Signature::Ed25519(_) => return Err(BtcServiceError::Mismatch.into()),
            }
        }
        // Core's interpreter verifies every input; the result must be the plan.
        Ok(chain_btc::accept_signed(plan, signed).map_err(BtcServiceError::Tx)?)
    }
}

/// What a threshold key's signer nodes are shown for `input` of `psbt`.
fn taproot_subject(
    psbt: &bitcoin::Psbt,
    input: usize,
    transfers: &[keys_mpc::cosign::ApprovedTransfer],
) -> Result<keys_mpc::cosign::Subject, ServiceError> {
    let prevouts = psbt
        .inputs
        .iter()
        .map(|i| {
            i.witness_utxo
                .as_ref()
                .map(|o| keys_mpc::cosign::Prevout {
                    value: o.value.to_sat(),
                    script_pubkey: hex::encode(o.script_pubkey.as_bytes()),
                })
                .ok_or(BtcServiceError::Mismatch)
        })
        .collect::<Result<_, _>>()?;
    Ok(keys_mpc::cosign::Subject::BitcoinTaproot {
        tx: hex::encode(bitcoin::consensus::serialize(&psbt.unsigned_tx)),
        prevouts,
        input: u32::try_from(input).map_err(|_| BtcServiceError::Mismatch)?,
        transfers: transfers.to_vec(),
    })
}

pub(crate) fn chain_btc_network(n: BitcoinNetwork) -> bitcoin::Network {
    match n {
        BitcoinNetwork::Mainnet => bitcoin::Network::Bitcoin,
        BitcoinNetwork::Testnet => bitcoin::Network::Testnet,
        BitcoinNetwork::Signet => bitcoin::Network::Signet,
        BitcoinNetwork::Regtest => bitcoin::Network::Regtest,
    }
}
