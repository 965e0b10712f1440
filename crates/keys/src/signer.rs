//! The signer trait and the values that cross it.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// A boxed future, so that `dyn Signer` works for local and remote backends alike.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// The signature schemes Strongroom uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// ECDSA over secp256k1: Bitcoin legacy/segwit v0, Ethereum.
    EcdsaSecp256k1,
    /// BIP-340 Schnorr over secp256k1: Taproot.
    SchnorrBip340,
    /// Ed25519 (RFC 8032).
    Ed25519,
}

/// A backend's name for one of its keys. Opaque outside the backend.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRef(pub String);

impl fmt::Display for KeyRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The BIP-341 tweak to apply to a Taproot internal key before signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TapTweak {
    /// Key-path spend of an output without a script tree (BIP-86).
    NoScripts,
    /// Key-path spend of an output that commits to this script-tree root.
    MerkleRoot([u8; 32]),
}

/// What to sign. Digests are computed by the chain crates; the signer never
/// sees a transaction, only the 32 bytes that commit to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignRequest<'a> {
    EcdsaDigest([u8; 32]),
    SchnorrDigest {
        digest: [u8; 32],
        tweak: Option<TapTweak>,
    },
    Ed25519Message(&'a [u8]),
}

impl SignRequest<'_> {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            SignRequest::EcdsaDigest(_) => Algorithm::EcdsaSecp256k1,
            SignRequest::SchnorrDigest { .. } => Algorithm::SchnorrBip340,
            SignRequest::Ed25519Message(_) => Algorithm::Ed25519,
        }
    }
}

/// A public key as the chains use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublicKey {
    /// SEC1 compressed point (ECDSA keys).
    Secp256k1([u8; 33]),
    /// BIP-340 x-only key: the Taproot *internal* key for Schnorr keys.
    XOnly([u8; 32]),
    Ed25519([u8; 32]),
}

/// An ECDSA signature with low S (BIP-62, EIP-2) and the recovery id that
/// recovers the public key from it (Ethereum's `v`, less 27).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcdsaSignature {
    pub r: [u8; 32],
    pub s: [u8; 32],
    pub recovery_id: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signature {
    Ecdsa(EcdsaSignature),
    /// 64 bytes: R.x ‖ s.
    Schnorr([u8; 64]),
    /// 64 bytes: R ‖ S.
    Ed25519([u8; 64]),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    #[error("no key {0}")]
    UnknownKey(KeyRef),
    #[error("key {key} is a {actual:?} key, not {requested:?}")]
    WrongAlgorithm {
        key: KeyRef,
        actual: Algorithm,
        requested: Algorithm,
    },
    #[error("this backend does not offer {0:?} keys")]
    Unsupported(Algorithm),
    #[error("the random number generator failed")]
    Random,
    #[error("the signing library refused: {0}")]
    Signing(String),
    #[error("the key backend is unavailable: {0}")]
    Backend(String),
}

/// A key backend. Implementations keep key material to themselves: nothing
/// secret crosses this trait.
pub trait Signer: Send + Sync + std::fmt::Debug {
    /// A short name for logs and errors: `software`, `pkcs11`, `threshold`.
    fn backend(&self) -> &'static str;

    /// Sessions to the backend, if it keeps a pool: (open, idle).
    fn sessions(&self) -> Option<(usize, usize)> {
        None
    }

    /// Creates a key inside the backend.
    fn generate(&self, algorithm: Algorithm) -> BoxFuture<'_, Result<KeyRef, KeyError>>;

    fn public_key<'a>(&'a self, key: &'a KeyRef) -> BoxFuture<'a, Result<PublicKey, KeyError>>;

    /// Signs with `key`, refusing a request for another algorithm than the key's.
    fn sign<'a>(
        &'a self,
        key: &'a KeyRef,
        request: SignRequest<'a>,
    ) -> BoxFuture<'a, Result<Signature, KeyError>>;
}

/// A backend that can wrap secrets under a key it never releases (an HSM's
/// AES key): used to keep the keystore's root key for auto-unseal.
pub trait Wrapper: Send + Sync + std::fmt::Debug {
    /// Creates a new wrapping key inside the backend.
    fn create_wrapping_key(&self) -> Result<KeyRef, KeyError>;

    /// Encrypts `secret` under `key`, bound to `aad`.
    fn wrap(&self, key: &KeyRef, aad: &[u8], secret: &[u8]) -> Result<Vec<u8>, KeyError>;

    /// Decrypts what [`Wrapper::wrap`] made with the same key and `aad`.
    fn unwrap(
        &self,
        key: &KeyRef,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, KeyError>;
}
