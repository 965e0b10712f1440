//! Keys the server never completes a signature with alone: external keys (a
//! cold signer, a hardware wallet — the public key only, signing offline)
//! and multisig accounts (P2WSH `sortedmulti`), whose cosigners — keystore,
//! HSM or external keys — each sign for themselves. A multisig account is a
//! row of the key inventory with no material: its backend reference names
//! its threshold and cosigners, its public key is its witness script.

use domain::{Actor, KeyAlgorithm, KeyBackend, KeyId, KeyPurpose, KeyState};
use serde_json::json;
use storage::KeyRow;

use crate::keyring::Made;
use crate::moves::{corrupt, invalid};
use crate::service::{Service, ServiceError};

/// The most cosigners a multisig account has (the standard limit of
/// `OP_CHECKMULTISIG` wallets agree on for P2WSH).
pub const MAX_COSIGNERS: usize = 15;

/// A multisig account: `threshold` signatures of its cosigners' keys.
#[derive(Debug, Clone)]
pub(crate) struct Multisig {
    pub threshold: usize,
    /// In the order the account was opened with.
    pub cosigners: Vec<KeyRow>,
}

impl Multisig {
    fn pubkey(row: &KeyRow) -> Result<[u8; 33], ServiceError> {
        hex::decode(&row.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("cosigner public key", row.id))
    }

    /// How its outputs are spent.
    pub(crate) fn spend(&self) -> Result<chain_btc::Spend, ServiceError> {
        Ok(chain_btc::Spend::P2wshMulti {
            threshold: self.threshold,
            pubkeys: self
                .cosigners
                .iter()
                .map(Self::pubkey)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The cosigner whose key is `pubkey`.
    pub(crate) fn cosigner(&self, pubkey: &[u8; 33]) -> Option<&KeyRow> {
        self.cosigners
            .iter()
            .find(|c| Self::pubkey(c).is_ok_and(|p| p == *pubkey))
    }

    /// How many cosigners sign away from the server.
    pub(crate) fn offline(&self) -> usize {
        self.cosigners
            .iter()
            .filter(|c| c.backend == KeyBackend::External)
            .count()
    }
}

/// A cosigner of a new multisig account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cosigner {
    /// A new key made on a backend of the server (keystore or HSM).
    New(KeyBackend),
    /// A key held outside the server.
    External(ExternalKey),
}

/// A key held outside the server (a cold signer, a hardware wallet).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExternalKey {
    /// Its compressed secp256k1 public key, hex.
    pub public_key: String,
    /// Who or what holds it.
    pub label: String,
    /// Where its holder derives it: `<master fingerprint>/<path>` (BIP-32,
    /// e.g. `d34db33f/48'/0'/0'/2'/0/0`). Exported PSBTs then name it
    /// (`PSBT_IN_BIP32_DERIVATION`), as hardware wallets and BIP-174
    /// signers look for their keys.
    pub origin: Option<String>,
}

/// A key's origin, `<fingerprint>/<path>`, read.
pub(crate) fn parse_origin(
    text: &str,
) -> Result<(bitcoin::bip32::Fingerprint, bitcoin::bip32::DerivationPath), ServiceError> {
    let bad = || {
        invalid(format!(
            "origin: <8 hex digits of the master fingerprint>/<BIP-32 path>, not {text:?}"
        ))
    };
    let (fp, path) = text.split_once('/').ok_or_else(bad)?;
    let fp: bitcoin::bip32::Fingerprint = fp.parse().map_err(|_| bad())?;
    let path: bitcoin::bip32::DerivationPath = format!("m/{path}").parse().map_err(|_| bad())?;
    Ok((fp, path))
}

/// The origin recorded for an external key, if any.
pub(crate) fn origin_of(
    row: &KeyRow,
) -> Option<(bitcoin::bip32::Fingerprint, bitcoin::bip32::DerivationPath)> {
    let v: serde_json::Value = serde_json::from_str(row.backend_ref.as_deref()?).ok()?;
    parse_origin(v["origin"].as_str()?).ok()
}

/// A compressed secp256k1 public key, checked to be a point of the curve.
fn compressed_key(text: &str) -> Result<[u8; 33], ServiceError> {
    let bad = || {
        invalid(format!(
            "public key: 33 bytes of hex (a compressed secp256k1 key), not {text:?}"
        ))
    };
    let bytes: [u8; 33] = hex::decode(text)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    bitcoin::secp256k1::PublicKey::from_slice(&bytes).map_err(|_| bad())?;
    Ok(bytes)
}

impl Service {
    /// Records a key held outside the server (a cold signer, a hardware
    /// wallet): its public key only. The server never signs with it; what
    /// it must sign is handed out as a PSBT and brought back.
    pub async fn import_external_key(
        &self,
        actor: &Actor,
        key: &ExternalKey,
    ) -> Result<KeyRow, ServiceError> {
        let bytes = compressed_key(&key.public_key.to_ascii_lowercase())?;
        crate::moves::check_name(&key.label, "an external key's label")?;
        let origin = match &key.origin {
            Some(o) => {
                let (fp, path) = parse_origin(o)?;
                Some(format!(
                    "{fp}/{}",
                    path.to_string().trim_start_matches("m/")
                ))
            }
            None => None,
        };
        let reference = audit::canonical_json(&json!({ "label": key.label, "origin": origin }))?;
        self.record_keyless(
            actor,
            (KeyBackend::External, reference),
            hex::encode(bytes),
            ("held outside the server", "external"),
        )
        .await
    }

    /// Records in the inventory, with its audit record, a transfer-signing
    /// ECDSA key with no material here: its backend and reference, its
    /// public key (or script), where it came from and in which ceremony.
    async fn record_keyless(
        &self,
        actor: &Actor,
        (backend, reference): (KeyBackend, String),
        public_key: String,
        (entropy, ceremony): (&str, &'static str),
    ) -> Result<KeyRow, ServiceError> {
        let (row, e, now) = self.key_record(
            actor,
            Made {
                id: KeyId::from_uuid(uuid::Uuid::now_v7()),
                version: 1,
                purpose: KeyPurpose::TransferSigning,
                algorithm: KeyAlgorithm::EcdsaSecp256k1,
                backend,
                backend_ref: Some(reference),
                public_key,
                sealed: None,
                hd_path: None,
                entropy: entropy.into(),
                ceremony,
                cryptoperiod_days: 3650,
            },
        )?;
        let mut tx = self.store().begin().await?;
        tx.insert_key(&row).await?;
        self.commit(tx, &[e], now).await?;
        Ok(row)
    }

    /// Records a multisig account over `cosigners` (rows already in the
    /// inventory): `threshold` of their keys spend its outputs.
    pub(crate) async fn record_multisig_key(
        &self,
        actor: &Actor,
        threshold: usize,
        cosigners: &[KeyRow],
    ) -> Result<KeyRow, ServiceError> {
        check_cosigners(threshold, cosigners)?;
        let ms = Multisig {
            threshold,
            cosigners: cosigners.to_vec(),
        };
        let script = ms
            .spend()?
            .witness_script()
            .map_err(|e| invalid(e.to_string()))?
            .ok_or_else(|| invalid("not a multisig"))?;
        let reference = audit::canonical_json(&json!({
            "threshold": threshold,
            "cosigners": cosigners.iter().map(|c| c.id.to_string()).collect::<Vec<_>>(),
        }))?;
        self.record_keyless(
            actor,
            (KeyBackend::Multisig, reference),
            script.to_hex_string(),
            ("its cosigners' keys", "multisig"),
        )
        .await
    }

    /// Whether a key held outside must sign for the outputs of `key`: an
    /// external key's, or a multisig account's with an external cosigner.
    pub(crate) async fn signs_offline(&self, key: KeyId) -> Result<bool, ServiceError> {
        let row = self.store().key(key).await?;
        Ok(match row.backend {
            KeyBackend::External => true,
            KeyBackend::Multisig => self.multisig(&row).await?.offline() > 0,
            _ => false,
        })
    }

    /// A multisig account key's threshold and cosigners, read back and
    /// checked against its recorded script.
    pub(crate) async fn multisig(&self, row: &KeyRow) -> Result<Multisig, ServiceError> {
        if row.backend != KeyBackend::Multisig {
            return Err(ServiceError::KeyNotUsable(format!(
                "key {} is not a multisig account",
                row.id
            )));
        }
        let v: serde_json::Value =
            serde_json::from_str(row.backend_ref.as_deref().unwrap_or_default())
                .map_err(|e| corrupt("multisig reference", e))?;
        let threshold = v["threshold"]
            .as_u64()
            .and_then(|t| usize::try_from(t).ok())
            .ok_or_else(|| corrupt("multisig reference", "no threshold"))?;
        let mut cosigners = Vec::new();
        for id in v["cosigners"].as_array().into_iter().flatten() {
            let id: KeyId = id
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| corrupt("multisig reference", "a cosigner id"))?;
            cosigners.push(self.store().key(id).await?);
        }
        let ms = Multisig {
            threshold,
            cosigners,
        };
        // The script its outputs pay is the one recorded when it was made.
        let script = ms
            .spend()?
            .witness_script()
            .map_err(|e| corrupt("multisig", e))?
            .map(|s| s.to_hex_string());
        if script.as_deref() != Some(row.public_key.as_str()) {
            return Err(corrupt(
                "multisig",
                "its cosigners no longer make its script",
            ));
        }
        Ok(ms)
    }
}

/// 1 ≤ threshold ≤ cosigners ≤ [`MAX_COSIGNERS`].
pub(crate) fn check_shape(threshold: usize, cosigners: usize) -> Result<(), ServiceError> {
    if threshold == 0 || threshold > cosigners || cosigners > MAX_COSIGNERS {
        return Err(invalid(format!(
            "a multisig needs 1 ≤ threshold ≤ cosigners ≤ {MAX_COSIGNERS}: {threshold} of {cosigners}"
        )));
    }
    Ok(())
}

/// [`check_shape`]; each an active single
/// ECDSA transfer-signing key of the keystore, the HSM or outside; no key
/// twice.
fn check_cosigners(threshold: usize, cosigners: &[KeyRow]) -> Result<(), ServiceError> {
    check_shape(threshold, cosigners.len())?;
    let mut seen = std::collections::BTreeSet::new();
    for c in cosigners {
        let usable = c.purpose == KeyPurpose::TransferSigning
            && c.algorithm == KeyAlgorithm::EcdsaSecp256k1
            && c.hd_path.is_none()
            && c.state == KeyState::Active
            && matches!(
                c.backend,
                KeyBackend::Keystore | KeyBackend::Pkcs11 | KeyBackend::External
            );
        if !usable {
            return Err(invalid(format!(
                "key {} cannot cosign: a cosigner is an active single ECDSA transfer-signing \
                 key of the keystore, the HSM or outside the server",
                c.id
            )));
        }
        if !seen.insert(c.public_key.to_ascii_lowercase()) {
            return Err(invalid(format!(
                "the key {} appears twice among the cosigners",
                c.public_key
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_key_must_be_a_compressed_point() {
        let g = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
        assert!(compressed_key(g).is_ok());
        // Not on the curve, uncompressed, short, not hex.
        let off = "020000000000000000000000000000000000000000000000000000000000000000";
        assert!(compressed_key(off).is_err());
        assert!(compressed_key(&format!("04{}", &g[2..])).is_err());
        assert!(compressed_key(&g[..64]).is_err());
        assert!(compressed_key("zz").is_err());
    }
}
