//! Bitcoin through the service: configured networks, how our keys' outputs
//! are spent (P2WPKH, P2TR), their addresses, and deposits recorded as held
//! outputs. Sends are batches of approved transfers (`btc_transfers`),
//! signed only through the gate (`gate`).

use std::sync::Arc;

use chain_btc::Spend;
use domain::{Actor, BitcoinNetwork, KeyAlgorithm, KeyId, KeyPurpose, Network};
use serde_json::json;
use storage::{BtcUtxoRow, StorageError};

pub use crate::error::BtcServiceError;
use crate::record::entry;
use crate::service::{Service, ServiceError};
pub use crate::settings::{BatchRule, BtcNetwork, ConsolidationRule};

pub(crate) fn net_name(n: BitcoinNetwork) -> String {
    Network::Bitcoin(n).to_string()
}

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
        Spend::P2wshMulti { threshold, pubkeys } => json!({
            "type": "p2wsh-multi",
            "key": key.to_string(),
            "threshold": threshold,
            "pubkeys": pubkeys.iter().map(hex::encode).collect::<Vec<_>>(),
        }),
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
        Some("p2wsh-multi") => Spend::P2wshMulti {
            threshold: v["threshold"]
                .as_u64()
                .and_then(|t| usize::try_from(t).ok())
                .ok_or_else(bad)?,
            pubkeys: v["pubkeys"]
                .as_array()
                .ok_or_else(bad)?
                .iter()
                .map(|k| {
                    hex::decode(k.as_str().unwrap_or_default())
                        .ok()
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(bad)
                })
                .collect::<Result<_, _>>()?,
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
    /// A new batching rule for a configured network's payouts (a
    /// configuration reload): the next pass gathers by it. False when the
    /// network is not configured.
    pub fn set_btc_batch(&self, network: BitcoinNetwork, batch: BatchRule) -> bool {
        let mut nets = self
            .btc_networks()
            .write()
            .unwrap_or_else(|p| p.into_inner());
        match nets.get_mut(&net_name(network)) {
            Some(net) => {
                *net = Arc::new(BtcNetwork {
                    batch,
                    ..BtcNetwork::clone(net)
                });
                true
            }
            None => false,
        }
    }

    pub fn add_btc_network(&self, net: BtcNetwork) {
        self.configure_btc(&net);
        self.btc_networks()
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(net_name(net.network), Arc::new(net));
        self.apply_governed(&self.current());
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

    /// How outputs paying `key` are spent: P2WPKH for ECDSA keys (an
    /// external key's too), P2TR (BIP-86 key path) for BIP-340 keys, P2WSH
    /// `sortedmulti` for a multisig account.
    pub async fn btc_spend_for(&self, key: KeyId) -> Result<Spend, ServiceError> {
        self.btc_spend_at(key, &[]).await
    }

    /// How outputs paying `key` (an HD account key: at `child` below its
    /// account, derived from its xpub alone, watch-only) are spent: P2WPKH
    /// for BIP-84 (ECDSA) accounts, P2TR key path for BIP-86 ones.
    pub(crate) async fn btc_spend_at(
        &self,
        key: KeyId,
        child: &[u32],
    ) -> Result<Spend, ServiceError> {
        if child.is_empty() {
            return self.btc_spend_single(key).await;
        }
        let row = self.store().key(key).await?;
        if row.purpose != KeyPurpose::TransferSigning || row.hd_path.is_none() {
            return Err(ServiceError::KeyNotUsable(format!(
                "key {key} is not an HD transfer-signing key"
            )));
        }
        let pubkey = keys::hd::derive_from_xpub(&row.public_key, child)
            .map_err(|e| ServiceError::KeyNotUsable(e.to_string()))?;
        match row.algorithm {
            KeyAlgorithm::EcdsaSecp256k1 => Ok(Spend::P2wpkh { pubkey }),
            // BIP-86: the child's x-only key is the internal key.
            KeyAlgorithm::SchnorrBip340 => {
                let mut internal_key = [0u8; 32];
                internal_key.copy_from_slice(&pubkey[1..]);
                Ok(Spend::P2tr { internal_key })
            }
            KeyAlgorithm::Ed25519 => Err(ServiceError::KeyNotUsable(format!(
                "key {key} is Ed25519: no Bitcoin output uses it"
            ))),
        }
    }

    async fn btc_spend_single(&self, key: KeyId) -> Result<Spend, ServiceError> {
        let row = self.store().key(key).await?;
        if row.purpose != KeyPurpose::TransferSigning || row.hd_path.is_some() {
            return Err(ServiceError::KeyNotUsable(format!(
                "key {key} is not a single transfer-signing key"
            )));
        }
        // A multisig account: its cosigners' keys, `threshold` of them.
        if row.backend == domain::KeyBackend::Multisig {
            return self.multisig(&row).await?.spend();
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
        if let Some(wallet) = wallet {
            crate::ledger::other_moved(
                &mut tx,
                crate::ledger::Other {
                    wallet,
                    asset: &domain::Asset::bitcoin(network).id().to_string(),
                    kind: "recorded",
                    available: i128::from(value_sat),
                    transfer: None,
                    txid: Some(&row.txid),
                    block: None,
                    reference: format!("recorded:{}:{}:{vout}", row.network, row.txid),
                },
                now,
            )
            .await?;
        }
        self.commit(tx, &[e], now).await?;
        Ok(row)
    }
}

/// Confirmation target (blocks) for a batch whose most urgent transfer has
/// this priority rank.
pub(crate) fn target_blocks(rank: u8) -> u16 {
    match rank {
        0 => 24,
        1 => 6,
        2 => 2,
        _ => 1,
    }
}

pub(crate) fn chain_btc_network(n: BitcoinNetwork) -> bitcoin::Network {
    match n {
        BitcoinNetwork::Mainnet => bitcoin::Network::Bitcoin,
        BitcoinNetwork::Testnet => bitcoin::Network::Testnet,
        BitcoinNetwork::Signet => bitcoin::Network::Signet,
        BitcoinNetwork::Regtest => bitcoin::Network::Regtest,
    }
}
