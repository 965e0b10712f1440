//! The conformance suite every [`Signer`] backend must pass.
//!
//! Each signature is checked by [`crate::verify`], which uses a library other
//! than the one the software backend signs with: ECDSA by libsecp256k1 (with
//! low S and public-key recovery from the recovery id), BIP-340 by `k256`
//! under the internal and the BIP-341-tweaked key, Ed25519 by
//! `ed25519-dalek` in strict mode. Backends call [`run`], or the parts they
//! support, from their own tests.

use crate::signer::{
    Algorithm, KeyError, KeyRef, PublicKey, SignRequest, Signature, Signer, TapTweak,
};
use crate::verify::verify;

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

async fn key(signer: &dyn Signer, algorithm: Algorithm) -> (KeyRef, PublicKey) {
    let key = signer
        .generate(algorithm)
        .await
        .unwrap_or_else(|e| panic!("{}: generate {algorithm:?}: {e}", signer.backend()));
    let public = signer.public_key(&key).await.expect("public key");
    let expected = matches!(
        (algorithm, public),
        (Algorithm::EcdsaSecp256k1, PublicKey::Secp256k1(_))
            | (Algorithm::SchnorrBip340, PublicKey::XOnly(_))
            | (Algorithm::Ed25519, PublicKey::Ed25519(_))
    );
    assert!(
        expected,
        "{}: {algorithm:?} key with public key {public:?}",
        signer.backend()
    );
    (key, public)
}

async fn check(signer: &dyn Signer, key: &KeyRef, public: &PublicKey, request: SignRequest<'_>) {
    let sig: Signature = signer
        .sign(key, request.clone())
        .await
        .unwrap_or_else(|e| panic!("{}: sign {request:?}: {e}", signer.backend()));
    verify(public, &request, &sig)
        .unwrap_or_else(|e| panic!("{}: {request:?}: {e}", signer.backend()));
}

/// Low-S ECDSA signatures that libsecp256k1 verifies and that recover the key.
pub async fn ecdsa(signer: &dyn Signer) {
    let (key, public) = key(signer, Algorithm::EcdsaSecp256k1).await;
    for _ in 0..ROUNDS {
        check(signer, &key, &public, SignRequest::EcdsaDigest(random32())).await;
    }
}

/// BIP-340 signatures, plain and BIP-341-tweaked.
pub async fn schnorr(signer: &dyn Signer) {
    let (key, public) = key(signer, Algorithm::SchnorrBip340).await;
    for tweak in [
        None,
        Some(TapTweak::NoScripts),
        Some(TapTweak::MerkleRoot(random32())),
    ] {
        for _ in 0..ROUNDS {
            let digest = random32();
            check(
                signer,
                &key,
                &public,
                SignRequest::SchnorrDigest { digest, tweak },
            )
            .await;
        }
    }
}

/// Ed25519 signatures over messages of several lengths.
pub async fn ed25519(signer: &dyn Signer) {
    let (key, public) = key(signer, Algorithm::Ed25519).await;
    for len in [0usize, 1, 32, 33, 1000] {
        let msg: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
        check(signer, &key, &public, SignRequest::Ed25519Message(&msg)).await;
    }
}

/// A key signs only with its own algorithm; unknown keys are errors; a
/// signature does not verify for another digest.
pub async fn refusals(signer: &dyn Signer) {
    let (ed, _) = key(signer, Algorithm::Ed25519).await;
    let err = signer
        .sign(&ed, SignRequest::EcdsaDigest([1; 32]))
        .await
        .expect_err("an Ed25519 key must not sign ECDSA");
    assert!(
        matches!(err, KeyError::WrongAlgorithm { .. }),
        "{}: {err}",
        signer.backend()
    );
    unknown_key_refused(signer).await;

    let (ec, public) = key(signer, Algorithm::EcdsaSecp256k1).await;
    let sig = signer
        .sign(&ec, SignRequest::EcdsaDigest([2; 32]))
        .await
        .expect("sign");
    assert!(
        verify(&public, &SignRequest::EcdsaDigest([3; 32]), &sig).is_err(),
        "{}: a signature verified for another digest",
        signer.backend()
    );
}

/// For backends that sign only what they can check themselves (threshold
/// signer nodes): a bare ECDSA or BIP-340 digest — which could be any
/// transaction's — is refused with a typed error, never signed.
pub async fn checked_only(signer: &dyn Signer) {
    for (algorithm, request) in [
        (
            Algorithm::EcdsaSecp256k1,
            SignRequest::EcdsaDigest(random32()),
        ),
        (
            Algorithm::SchnorrBip340,
            SignRequest::SchnorrDigest {
                digest: random32(),
                tweak: None,
            },
        ),
    ] {
        let (key, _) = key(signer, algorithm).await;
        let err = signer
            .sign(&key, request.clone())
            .await
            .expect_err("a bare digest must not be signed");
        assert!(
            matches!(err, KeyError::Unsupported(_) | KeyError::Signing(_)),
            "{}: {request:?}: {err}",
            signer.backend()
        );
    }
    unknown_key_refused(signer).await;
}

/// A key the backend does not have is an error of its own.
async fn unknown_key_refused(signer: &dyn Signer) {
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
