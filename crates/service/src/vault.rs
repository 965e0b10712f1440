//! The vault: the keystore as held in memory — uninitialised, sealed with
//! its unseal progress, or unsealed with the root key, the key-encryption
//! keys, the opened keys and HD seeds (all zeroized on drop), and how sealed
//! key material opens under the key-encryption keys (a key another process
//! made after this one unsealed opens when it first signs). Only the
//! keystore's operations (`keystore.rs`) change it, under its lock.

use std::collections::HashMap;
use std::fmt;

use domain::{KeyAlgorithm, KeyId};
use keys::envelope::{self, Binding};
use keys::shamir::Unseal;
use keys::{Algorithm, KeyRef, Secret32, SoftwareSigner};
use storage::KeyRow;

use crate::error::ServiceError;

/// Where the keystore stands, as operators see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealStatus {
    Uninitialized,
    Sealed { have: u8, need: u8 },
    Unsealed,
}

/// The keystore as held in memory.
pub(crate) enum Vault {
    Uninitialized,
    Sealed(Unseal),
    Unsealed(Box<Opened>),
}

impl fmt::Debug for Vault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Vault::Uninitialized => f.write_str("Uninitialized"),
            Vault::Sealed(u) => write!(f, "Sealed({u:?})"),
            Vault::Unsealed(_) => f.write_str("Unsealed(<redacted>)"),
        }
    }
}

pub(crate) struct Opened {
    pub(crate) keystore_id: [u8; 16],
    pub(crate) threshold: u8,
    pub(crate) root: Secret32,
    pub(crate) keks: HashMap<u32, Secret32>,
    pub(crate) current_kek: u32,
    pub(crate) signer: SoftwareSigner,
    pub(crate) loaded: HashMap<KeyId, KeyRef>,
    /// HD keys: their BIP-32 seeds, from which signing keys derive on demand.
    pub(crate) seeds: HashMap<KeyId, keys::hd::Seed>,
}

pub(crate) fn status(vault: &Vault) -> SealStatus {
    match vault {
        Vault::Uninitialized => SealStatus::Uninitialized,
        Vault::Sealed(u) => {
            let (have, need) = u.progress();
            SealStatus::Sealed { have, need }
        }
        Vault::Unsealed(_) => SealStatus::Unsealed,
    }
}

impl Opened {
    /// The key of the governance log's MACs.
    pub(crate) fn governance_mac_key(&self) -> Result<zeroize::Zeroizing<[u8; 32]>, ServiceError> {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&self.keystore_id), self.root.expose());
        let mut out = zeroize::Zeroizing::new([0u8; 32]);
        hk.expand(b"strongroom/governance-mac/v1", out.as_mut())
            .map_err(|_| ServiceError::Invalid("key derivation failed".into()))?;
        Ok(out)
    }

    pub(crate) fn service_secrets_key(&self) -> Result<Secret32, ServiceError> {
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(Some(&self.keystore_id), self.root.expose());
        let mut out = [0u8; 32];
        hk.expand(b"strongroom/service-secrets/v1", &mut out)
            .map_err(|_| ServiceError::Invalid("key derivation failed".into()))?;
        Ok(Secret32::from_bytes(&mut out))
    }
}

/// What a signature is for, as far as the key's state goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Permit<'a> {
    /// Anything the key's purpose allows: the key active and within its
    /// cryptoperiod.
    Ordinary,
    /// A sweep of the key's funds to `to` (lower-case hex for Ethereum, the
    /// address for Bitcoin) on `network`:
    /// also by a rotated or compromised key, or one past its cryptoperiod,
    /// when `to` is its successor's.
    Sweep { network: &'a str, to: &'a str },
}

/// Why a signature may be made: what a threshold key's signer nodes are
/// shown (they check it themselves) and what the key's state must allow.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Grounds<'a> {
    pub subject: Option<&'a keys_mpc::cosign::Subject>,
    pub permit: Permit<'a>,
}

pub(crate) fn algorithm(a: KeyAlgorithm) -> Algorithm {
    match a {
        KeyAlgorithm::EcdsaSecp256k1 => Algorithm::EcdsaSecp256k1,
        KeyAlgorithm::SchnorrBip340 => Algorithm::SchnorrBip340,
        KeyAlgorithm::Ed25519 => Algorithm::Ed25519,
    }
}

/// A keystore key made by another process after this one unsealed (the
/// console, another server on the database) is opened when it first signs,
/// under the key-encryption keys this process holds.
impl Opened {
    pub(crate) fn open_if_new(&mut self, key: &KeyRow) -> Result<(), ServiceError> {
        self.open_new(key).map_err(|e| {
            ServiceError::KeyNotUsable(format!("key {} material is unreadable ({e})", key.id))
        })
    }

    fn open_new(&mut self, key: &KeyRow) -> Result<(), ServiceError> {
        if key.hd_path.is_some() {
            if !self.seeds.contains_key(&key.id) {
                let seed = open_sealed(&self.keks, key).and_then(|b| {
                    keys::hd::Seed::from_bytes(&b)
                        .map_err(|e| ServiceError::KeyNotUsable(e.to_string()))
                })?;
                self.seeds.insert(key.id, seed);
            }
        } else if !self.loaded.contains_key(&key.id) {
            let secret = open_material(&self.keks, key)?;
            let r = self.signer.import(algorithm(key.algorithm), secret)?;
            self.loaded.insert(key.id, r);
        }
        Ok(())
    }
}

pub(crate) fn open_material(
    keks: &HashMap<u32, Secret32>,
    key: &KeyRow,
) -> Result<Secret32, ServiceError> {
    let plain = open_sealed(keks, key)?;
    let mut bytes: [u8; 32] = plain[..].try_into().map_err(|_| {
        ServiceError::KeyNotUsable(format!("key {} material has the wrong length", key.id))
    })?;
    Ok(Secret32::from_bytes(&mut bytes))
}

/// Opens a keystore key's sealed material: KEK → data key → material.
pub(crate) fn open_sealed(
    keks: &HashMap<u32, Secret32>,
    key: &KeyRow,
) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
    let missing = || ServiceError::KeyNotUsable(format!("key {} has no sealed material", key.id));
    let kek = keks
        .get(&key.kek_version.ok_or_else(missing)?)
        .ok_or_else(missing)?;
    let id = key.id.to_string();
    let dek = envelope::unwrap(
        kek,
        Binding {
            kind: "dek",
            id: &id,
            version: key.version,
        },
        key.dek_sealed.as_deref().ok_or_else(missing)?,
    )?;
    Ok(envelope::open(
        &dek,
        Binding {
            kind: "key",
            id: &id,
            version: key.version,
        },
        key.material_sealed.as_deref().ok_or_else(missing)?,
    )?)
}
