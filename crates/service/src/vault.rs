//! The vault: the keystore as held in memory — uninitialised, sealed with
//! its unseal progress, or unsealed with the root key, the key-encryption
//! keys, the opened keys and HD seeds (all zeroized on drop). Only the
//! keystore's operations (`keystore.rs`) change it, under its lock.

use std::collections::HashMap;
use std::fmt;

use domain::KeyId;
use keys::shamir::Unseal;
use keys::{KeyRef, Secret32, SoftwareSigner};

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
    /// A sweep of the key's funds to `to` (lower-case hex) on `network`:
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
