//! Independent verification of what a [`Signer`](crate::Signer) returned:
//! ECDSA with libsecp256k1 (including public-key recovery from the recovery
//! id), BIP-340 with `k256` under the internal or tweaked key, Ed25519 with
//! `ed25519-dalek` in strict mode. The software backend signs each scheme
//! with the other library.

use bitcoin::hashes::Hash as _;
use bitcoin::key::TapTweak as _;
use bitcoin::secp256k1::{self, Secp256k1};

use crate::signer::{PublicKey, SignRequest, Signature, TapTweak};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    #[error("the signature scheme does not match the request or the key")]
    Mismatch,
    #[error("malformed public key or signature")]
    Malformed,
    #[error("ECDSA S is not in the lower half")]
    HighS,
    #[error("the recovery id recovers another key")]
    Recovery,
    #[error("the signature does not verify")]
    Invalid,
}

/// Checks `signature` over `request` under `public`.
pub fn verify(
    public: &PublicKey,
    request: &SignRequest<'_>,
    signature: &Signature,
) -> Result<(), VerifyError> {
    match (public, request, signature) {
        (PublicKey::Secp256k1(pk), SignRequest::EcdsaDigest(digest), Signature::Ecdsa(sig)) => {
            let secp = Secp256k1::verification_only();
            let pk = secp256k1::PublicKey::from_slice(pk).map_err(|_| VerifyError::Malformed)?;
            let mut compact = [0u8; 64];
            compact[..32].copy_from_slice(&sig.r);
            compact[32..].copy_from_slice(&sig.s);
            let parsed = secp256k1::ecdsa::Signature::from_compact(&compact)
                .map_err(|_| VerifyError::Malformed)?;
            let mut low = parsed;
            low.normalize_s();
            if low != parsed {
                return Err(VerifyError::HighS);
            }
            let msg = secp256k1::Message::from_digest(*digest);
            secp.verify_ecdsa(&msg, &parsed, &pk)
                .map_err(|_| VerifyError::Invalid)?;
            let recid = secp256k1::ecdsa::RecoveryId::from_i32(i32::from(sig.recovery_id))
                .map_err(|_| VerifyError::Malformed)?;
            let rs = secp256k1::ecdsa::RecoverableSignature::from_compact(&compact, recid)
                .map_err(|_| VerifyError::Malformed)?;
            match secp.recover_ecdsa(&msg, &rs) {
                Ok(q) if q == pk => Ok(()),
                _ => Err(VerifyError::Recovery),
            }
        }
        (
            PublicKey::XOnly(internal),
            SignRequest::SchnorrDigest { digest, tweak },
            Signature::Schnorr(sig),
        ) => {
            let output = output_key(internal, *tweak)?;
            let vk = k256::schnorr::VerifyingKey::from_bytes(&output)
                .map_err(|_| VerifyError::Malformed)?;
            let sig =
                k256::schnorr::Signature::try_from(&sig[..]).map_err(|_| VerifyError::Malformed)?;
            vk.verify_raw(digest, &sig)
                .map_err(|_| VerifyError::Invalid)
        }
        (PublicKey::Ed25519(pk), SignRequest::Ed25519Message(msg), Signature::Ed25519(sig)) => {
            let vk =
                ed25519_dalek::VerifyingKey::from_bytes(pk).map_err(|_| VerifyError::Malformed)?;
            vk.verify_strict(msg, &ed25519_dalek::Signature::from_bytes(sig))
                .map_err(|_| VerifyError::Invalid)
        }
        _ => Err(VerifyError::Mismatch),
    }
}

/// The x-only key a (possibly tweaked) BIP-340 signature verifies under.
pub fn output_key(internal: &[u8; 32], tweak: Option<TapTweak>) -> Result<[u8; 32], VerifyError> {
    let Some(tweak) = tweak else {
        return Ok(*internal);
    };
    let secp = Secp256k1::verification_only();
    let key =
        secp256k1::XOnlyPublicKey::from_slice(internal).map_err(|_| VerifyError::Malformed)?;
    let root = match tweak {
        TapTweak::NoScripts => None,
        TapTweak::MerkleRoot(r) => Some(bitcoin::TapNodeHash::from_byte_array(r)),
    };
    Ok(key
        .tap_tweak(&secp, root)
        .0
        .to_x_only_public_key()
        .serialize())
}
