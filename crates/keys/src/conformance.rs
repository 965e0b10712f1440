//! The conformance suite every [`Signer`] backend must pass.
//!
//! Each signature is checked by a library other than the one that made it in
//! the software backend: ECDSA by libsecp256k1 (with public-key recovery from
//! the recovery id), BIP-340 by `k256`, Ed25519 by `ed25519-dalek` in strict
//! mode. Backends call [`run`] from their own tests.

use bitcoin::hashes::Hash as _;
use bitcoin::key::TapTweak as _;
use bitcoin::secp256k1::{self, Secp256k1};

use crate::signer::{
    Algorithm, KeyError, KeyRef, PublicKey, SignRequest, Signature, Signer, TapTweak,
};

const ROUNDS: usize = 16;

fn random32() -> [u8; 32] {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("OS random number generator");
    b
}

/// Runs every check against `signer`, panicking with the first failure.
pub async fn run(signer: &dyn Signer) {
    ecdsa(signer).await;
    schnorr(signer).await;
    ed25519(signer).await;
    refusals(signer).await;
}

/// Low-S ECDSA signatures that libsecp256k1 verifies and that recover the key.
pub async fn ecdsa(signer: &dyn Signer) {
    let secp = Secp256k1::verification_only();
    let key = signer
        .generate(Algorithm::EcdsaSecp256k1)
        .await
        .expect("generate ECDSA key");
    let PublicKey::Secp256k1(pk) = signer.public_key(&key).await.expect("public key") else {
        panic!(
            "{}: ECDSA key without a secp256k1 public key",
            signer.backend()
        );
    };
    let pk = secp256k1::PublicKey::from_slice(&pk).expect("valid compressed point");
    for _ in 0..ROUNDS {
        let digest = random32();
        let Signature::Ecdsa(sig) = signer
            .sign(&key, SignRequest::EcdsaDigest(digest))
            .await
            .expect("ECDSA signature")
        else {
            panic!(
                "{}: ECDSA request answered with another scheme",
                signer.backend()
            );
        };
        let mut compact = [0u8; 64];
        compact[..32].copy_from_slice(&sig.r);
        compact[32..].copy_from_slice(&sig.s);
        let msg = secp256k1::Message::from_digest(digest);
        let parsed = secp256k1::ecdsa::Signature::from_compact(&compact).expect("64-byte r||s");
        let mut normalized = parsed;
        normalized.normalize_s();
        assert_eq!(parsed, normalized, "{}: S is not low", signer.backend());
        secp.verify_ecdsa(&msg, &parsed, &pk).unwrap_or_else(|e| {
            panic!(
                "{}: libsecp256k1 rejects the signature: {e}",
                signer.backend()
            )
        });
        let recid = secp256k1::ecdsa::RecoveryId::from_i32(i32::from(sig.recovery_id))
            .expect("recovery id 0..=3");
        let recoverable = secp256k1::ecdsa::RecoverableSignature::from_compact(&compact, recid)
            .expect("recoverable signature");
        let recovered = secp.recover_ecdsa(&msg, &recoverable).expect("recovery");
        assert_eq!(
            recovered,
            pk,
            "{}: the recovery id recovers another key",
            signer.backend()
        );
    }
}

/// BIP-340 signatures, plain and BIP-341-tweaked, that `k256` verifies
/// under the internal or the tweaked output key.
pub async fn schnorr(signer: &dyn Signer) {
    let secp = Secp256k1::verification_only();
    let key = signer
        .generate(Algorithm::SchnorrBip340)
        .await
        .expect("generate Schnorr key");
    let PublicKey::XOnly(internal) = signer.public_key(&key).await.expect("public key") else {
        panic!(
            "{}: Schnorr key without an x-only public key",
            signer.backend()
        );
    };
    let internal_key = secp256k1::XOnlyPublicKey::from_slice(&internal).expect("valid x-only key");
    let root = random32();
    let cases = [
        (None, internal),
        (
            Some(TapTweak::NoScripts),
            internal_key
                .tap_tweak(&secp, None)
                .0
                .to_x_only_public_key()
                .serialize(),
        ),
        (
            Some(TapTweak::MerkleRoot(root)),
            internal_key
                .tap_tweak(&secp, Some(bitcoin::TapNodeHash::from_byte_array(root)))
                .0
                .to_x_only_public_key()
                .serialize(),
        ),
    ];
    for (tweak, output_key) in cases {
        let vk = k256::schnorr::VerifyingKey::from_bytes(&output_key).expect("k256 parses the key");
        for _ in 0..ROUNDS {
            let digest = random32();
            let Signature::Schnorr(sig) = signer
                .sign(&key, SignRequest::SchnorrDigest { digest, tweak })
                .await
                .expect("Schnorr signature")
            else {
                panic!(
                    "{}: Schnorr request answered with another scheme",
                    signer.backend()
                );
            };
            let sig = k256::schnorr::Signature::try_from(&sig[..]).expect("64-byte signature");
            vk.verify_raw(&digest, &sig).unwrap_or_else(|e| {
                panic!(
                    "{}: k256 rejects the {tweak:?} signature: {e}",
                    signer.backend()
                )
            });
        }
    }
}

/// Ed25519 signatures over messages of several lengths, verified strictly.
pub async fn ed25519(signer: &dyn Signer) {
    let key = signer
        .generate(Algorithm::Ed25519)
        .await
        .expect("generate Ed25519 key");
    let PublicKey::Ed25519(pk) = signer.public_key(&key).await.expect("public key") else {
        panic!(
            "{}: Ed25519 key without an Ed25519 public key",
            signer.backend()
        );
    };
    let vk = ed25519_dalek::VerifyingKey::from_bytes(&pk).expect("valid Ed25519 key");
    for len in [0usize, 1, 32, 33, 1000] {
        let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        let Signature::Ed25519(sig) = signer
            .sign(&key, SignRequest::Ed25519Message(&msg))
            .await
            .expect("Ed25519 signature")
        else {
            panic!(
                "{}: Ed25519 request answered with another scheme",
                signer.backend()
            );
        };
        vk.verify_strict(&msg, &ed25519_dalek::Signature::from_bytes(&sig))
            .unwrap_or_else(|e| {
                panic!(
                    "{}: ed25519-dalek rejects the signature: {e}",
                    signer.backend()
                )
            });
    }
}

/// A key signs only with its own algorithm; unknown keys are errors.
pub async fn refusals(signer: &dyn Signer) {
    let ed = signer
        .generate(Algorithm::Ed25519)
        .await
        .expect("generate Ed25519 key");
    let err = signer
        .sign(&ed, SignRequest::EcdsaDigest([1; 32]))
        .await
        .expect_err("an Ed25519 key must not sign ECDSA");
    assert!(
        matches!(err, KeyError::WrongAlgorithm { .. }),
        "{}: {err}",
        signer.backend()
    );
    let missing = KeyRef("no-such-key".into());
    let err = signer
        .sign(&missing, SignRequest::Ed25519Message(b"x"))
        .await
        .expect_err("an unknown key must not sign");
    assert!(
        matches!(err, KeyError::UnknownKey(_)),
        "{}: {err}",
        signer.backend()
    );
}
