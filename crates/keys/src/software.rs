//! The software backend: keys held in process memory.
//!
//! ECDSA is signed with `k256` (RustCrypto); BIP-340 Schnorr, with its
//! BIP-341 tweak, with libsecp256k1 through rust-bitcoin. The conformance
//! suite then verifies each with the *other* library.

use std::collections::HashMap;
use std::sync::Mutex;

use bitcoin::hashes::Hash as _;
use bitcoin::key::TapTweak as _;
use bitcoin::secp256k1::{All, Keypair, Message, Secp256k1};

use crate::secret::Secret32;
use crate::signer::{
    Algorithm, BoxFuture, EcdsaSignature, KeyError, KeyRef, PublicKey, SignRequest, Signature,
    Signer, TapTweak,
};

/// A key as held in memory. ECDSA and Ed25519 keys are kept parsed, so that
/// signing does not recompute the public key each time; both types zeroize
/// their scalar on drop. Schnorr keys stay as bytes because libsecp256k1's
/// `Keypair` does not wipe itself; it is rebuilt for each signature.
enum SoftKey {
    Ecdsa(k256::ecdsa::SigningKey),
    Schnorr(Secret32),
    Ed25519(ed25519_dalek::SigningKey),
}

impl SoftKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            SoftKey::Ecdsa(_) => Algorithm::EcdsaSecp256k1,
            SoftKey::Schnorr(_) => Algorithm::SchnorrBip340,
            SoftKey::Ed25519(_) => Algorithm::Ed25519,
        }
    }
}

/// Keys in memory, zeroized when removed or when the signer is dropped.
pub struct SoftwareSigner {
    /// Boxed, so that growing the table moves pointers, not key bytes.
    keys: Mutex<HashMap<String, Box<SoftKey>>>,
    secp: Secp256k1<All>,
}

impl std::fmt::Debug for SoftwareSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.keys.lock().map(|k| k.len()).unwrap_or(0);
        write!(f, "SoftwareSigner({n} keys)")
    }
}

impl Default for SoftwareSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl SoftwareSigner {
    pub fn new() -> Self {
        SoftwareSigner {
            keys: Mutex::new(HashMap::new()),
            secp: Secp256k1::new(),
        }
    }

    /// Takes a secret made elsewhere (a keystore entry, an HD derivation).
    pub fn import(&self, algorithm: Algorithm, secret: Secret32) -> Result<KeyRef, KeyError> {
        fn invalid<E>(_: E) -> KeyError {
            KeyError::Signing("not a valid secp256k1 secret key".into())
        }
        let key = match algorithm {
            Algorithm::EcdsaSecp256k1 => SoftKey::Ecdsa(
                k256::ecdsa::SigningKey::from_bytes(secret.expose().into()).map_err(invalid)?,
            ),
            Algorithm::SchnorrBip340 => {
                k256::SecretKey::from_bytes(secret.expose().into()).map_err(invalid)?;
                SoftKey::Schnorr(secret)
            }
            Algorithm::Ed25519 => {
                SoftKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(secret.expose()))
            }
        };
        let mut id = [0u8; 16];
        getrandom::fill(&mut id).map_err(|_| KeyError::Random)?;
        let name = format!("soft:{}", hex::encode(id));
        self.lock()?.insert(name.clone(), Box::new(key));
        Ok(KeyRef(name))
    }

    /// Forgets a key; its bytes are zeroized.
    pub fn remove(&self, key: &KeyRef) -> Result<(), KeyError> {
        self.lock()?
            .remove(&key.0)
            .map(drop)
            .ok_or_else(|| KeyError::UnknownKey(key.clone()))
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Box<SoftKey>>>, KeyError> {
        self.keys
            .lock()
            .map_err(|_| KeyError::Backend("key table lock poisoned".into()))
    }

    fn with_key<T>(
        &self,
        key: &KeyRef,
        f: impl FnOnce(&SoftKey) -> Result<T, KeyError>,
    ) -> Result<T, KeyError> {
        let keys = self.lock()?;
        let k = keys
            .get(&key.0)
            .ok_or_else(|| KeyError::UnknownKey(key.clone()))?;
        f(k)
    }

    fn public_key_now(&self, key: &KeyRef) -> Result<PublicKey, KeyError> {
        self.with_key(key, |k| {
            Ok(match k {
                SoftKey::Ecdsa(sk) => ecdsa_public(sk),
                SoftKey::Schnorr(secret) => schnorr_public(&self.secp, secret)?,
                SoftKey::Ed25519(sk) => PublicKey::Ed25519(sk.verifying_key().to_bytes()),
            })
        })
    }

    fn sign_now(&self, key: &KeyRef, request: &SignRequest<'_>) -> Result<Signature, KeyError> {
        self.with_key(key, |k| match (k, request) {
            (SoftKey::Ecdsa(sk), SignRequest::EcdsaDigest(d)) => {
                ecdsa_sign(sk, d).map(Signature::Ecdsa)
            }
            (SoftKey::Schnorr(secret), SignRequest::SchnorrDigest { digest, tweak }) => {
                let mut aux = [0u8; 32];
                getrandom::fill(&mut aux).map_err(|_| KeyError::Random)?;
                schnorr_sign(&self.secp, secret, digest, *tweak, &aux).map(Signature::Schnorr)
            }
            (SoftKey::Ed25519(sk), SignRequest::Ed25519Message(m)) => {
                use ed25519_dalek::Signer as _;
                Ok(Signature::Ed25519(sk.sign(m).to_bytes()))
            }
            (k, r) => Err(KeyError::WrongAlgorithm {
                key: key.clone(),
                actual: k.algorithm(),
                requested: r.algorithm(),
            }),
        })
    }
}

impl Signer for SoftwareSigner {
    fn backend(&self) -> &'static str {
        "software"
    }

    fn generate(&self, algorithm: Algorithm) -> BoxFuture<'_, Result<KeyRef, KeyError>> {
        Box::pin(async move {
            // A uniformly random 32-byte string is a valid secp256k1 scalar
            // except with probability ~2^-128; draw again in that case.
            loop {
                let secret = Secret32::random().map_err(|_| KeyError::Random)?;
                match self.import(algorithm, secret) {
                    Err(KeyError::Signing(_)) => continue,
                    other => return other,
                }
            }
        })
    }

    fn public_key<'a>(&'a self, key: &'a KeyRef) -> BoxFuture<'a, Result<PublicKey, KeyError>> {
        Box::pin(async move { self.public_key_now(key) })
    }

    fn sign<'a>(
        &'a self,
        key: &'a KeyRef,
        request: SignRequest<'a>,
    ) -> BoxFuture<'a, Result<Signature, KeyError>> {
        Box::pin(async move { self.sign_now(key, &request) })
    }
}

fn ecdsa_public(sk: &k256::ecdsa::SigningKey) -> PublicKey {
    let point = sk.verifying_key().to_encoded_point(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(point.as_bytes());
    PublicKey::Secp256k1(out)
}

fn schnorr_public(secp: &Secp256k1<All>, secret: &Secret32) -> Result<PublicKey, KeyError> {
    let kp = Keypair::from_seckey_slice(secp, secret.expose())
        .map_err(|e| KeyError::Signing(e.to_string()))?;
    Ok(PublicKey::XOnly(kp.x_only_public_key().0.serialize()))
}

/// ECDSA over a 32-byte digest, RFC 6979 nonces, S normalised to the low half
/// and the recovery id adjusted to match.
fn ecdsa_sign(sk: &k256::ecdsa::SigningKey, digest: &[u8; 32]) -> Result<EcdsaSignature, KeyError> {
    use k256::ecdsa::RecoveryId;
    let (sig, recid) = sk
        .sign_prehash_recoverable(digest)
        .map_err(|e| KeyError::Signing(e.to_string()))?;
    let (sig, recid) = match sig.normalize_s() {
        Some(low) => (
            low,
            RecoveryId::new(!recid.is_y_odd(), recid.is_x_reduced()),
        ),
        None => (sig, recid),
    };
    let (r, s) = sig.split_bytes();
    Ok(EcdsaSignature {
        r: r.into(),
        s: s.into(),
        recovery_id: recid.to_byte(),
    })
}

/// BIP-340 over a 32-byte digest with the given auxiliary randomness,
/// after the BIP-341 tweak if one is asked for.
fn schnorr_sign(
    secp: &Secp256k1<All>,
    secret: &Secret32,
    digest: &[u8; 32],
    tweak: Option<TapTweak>,
    aux: &[u8; 32],
) -> Result<[u8; 64], KeyError> {
    let mut base = Keypair::from_seckey_slice(secp, secret.expose())
        .map_err(|e| KeyError::Signing(e.to_string()))?;
    let mut kp = match tweak {
        None => base,
        Some(TapTweak::NoScripts) => base.tap_tweak(secp, None).to_keypair(),
        Some(TapTweak::MerkleRoot(root)) => base
            .tap_tweak(secp, Some(bitcoin::TapNodeHash::from_byte_array(root)))
            .to_keypair(),
    };
    let msg = Message::from_digest(*digest);
    let sig = secp.sign_schnorr_with_aux_rand(&msg, &kp, aux).serialize();
    // libsecp256k1's key pairs do not wipe themselves.
    kp.non_secure_erase();
    base.non_secure_erase();
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex<const N: usize>(s: &str) -> [u8; N] {
        let v = hex::decode(s).unwrap();
        v.try_into().unwrap()
    }

    /// BIP-340's official vectors: our signing reproduces every signature
    /// byte for byte; k256 (the conformance verifier) accepts exactly the
    /// valid ones.
    #[test]
    fn bip340_vectors() {
        let secp = Secp256k1::new();
        let csv = include_str!("../tests/vectors/bip340.csv");
        let mut signed = 0;
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (index, sk, pk, aux, msg, sig, valid) =
                (f[0], f[1], f[2], f[3], f[4], f[5], f[6] == "TRUE");
            let msg: [u8; 32] = unhex(msg);
            let sig: [u8; 64] = unhex(sig);
            if !sk.is_empty() {
                let secret = Secret32::from_bytes(&mut unhex(sk));
                assert_eq!(
                    schnorr_public(&secp, &secret).unwrap(),
                    PublicKey::XOnly(unhex(pk)),
                    "vector {index}"
                );
                let ours = schnorr_sign(&secp, &secret, &msg, None, &unhex(aux)).unwrap();
                assert_eq!(ours, sig, "vector {index}");
                signed += 1;
            }
            let verified = k256::schnorr::VerifyingKey::from_bytes(&unhex::<32>(pk))
                .ok()
                .and_then(|vk| {
                    let s = k256::schnorr::Signature::try_from(&sig[..]).ok()?;
                    Some(vk.verify_raw(&msg, &s).is_ok())
                })
                .unwrap_or(false);
            assert_eq!(verified, valid, "vector {index}");
        }
        assert_eq!(signed, 4);
    }

    /// RFC 8032's vectors: Ed25519 is deterministic, so the bytes must match.
    #[test]
    fn rfc8032_vectors() {
        let signer = SoftwareSigner::new();
        let csv = include_str!("../tests/vectors/rfc8032-ed25519.csv");
        for line in csv.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let key = signer
                .import(Algorithm::Ed25519, Secret32::from_bytes(&mut unhex(f[1])))
                .unwrap();
            assert_eq!(
                signer.public_key_now(&key).unwrap(),
                PublicKey::Ed25519(unhex(f[2])),
                "{}",
                f[0]
            );
            let msg = hex::decode(f[3]).unwrap();
            let sig = signer
                .sign_now(&key, &SignRequest::Ed25519Message(&msg))
                .unwrap();
            assert_eq!(sig, Signature::Ed25519(unhex(f[4])), "{}", f[0]);
        }
    }
}
