//! The PKCS#11 backend against a real SoftHSM2 token. One token per test
//! process (nextest runs each test in its own).

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use keys::{Algorithm, KeyError, SignRequest, Signer, conformance};
use keys_pkcs11::testing::{SoftHsm, USER_PIN};
use keys_pkcs11::{HsmError, Pkcs11Signer};
use zeroize::Zeroizing;

fn open(hsm: &SoftHsm, pin: &str) -> Result<Pkcs11Signer, HsmError> {
    Pkcs11Signer::open(
        &SoftHsm::module(),
        &hsm.label,
        &Zeroizing::new(pin.to_owned()),
        2,
    )
}

#[tokio::test]
async fn softhsm_conforms() {
    let hsm = SoftHsm::new("conformance");
    let signer = open(&hsm, USER_PIN).unwrap();
    conformance::ecdsa(&signer).await;
    conformance::ed25519(&signer).await;
    conformance::refusals(&signer).await;
    // No PKCS#11 mechanism signs BIP-340: refused, not faked in software.
    assert!(matches!(
        signer.generate(Algorithm::SchnorrBip340).await,
        Err(KeyError::Unsupported(Algorithm::SchnorrBip340))
    ));
}

#[tokio::test]
async fn keys_are_sensitive_non_extractable_and_found_again() {
    let hsm = SoftHsm::new("inventory");
    let key = {
        let signer = open(&hsm, USER_PIN).unwrap();
        let key = signer.generate(Algorithm::EcdsaSecp256k1).await.unwrap();
        assert!(signer.is_protected(&key).unwrap());
        key
    };
    // A new session pool finds the key in the token by its id.
    let signer = open(&hsm, USER_PIN).unwrap();
    let pk = signer.public_key(&key).await.unwrap();
    let sig = signer
        .sign(&key, SignRequest::EcdsaDigest([9; 32]))
        .await
        .unwrap();
    assert!(matches!(sig, keys::Signature::Ecdsa(_)));
    assert!(matches!(pk, keys::PublicKey::Secp256k1(_)));

    // The same for an Ed25519 key, whose curve tokens may name differently.
    let ed = signer.generate(Algorithm::Ed25519).await.unwrap();
    drop(signer);
    let signer = open(&hsm, USER_PIN).unwrap();
    assert!(matches!(
        signer.public_key(&ed).await.unwrap(),
        keys::PublicKey::Ed25519(_)
    ));
    let sig = signer
        .sign(&ed, SignRequest::Ed25519Message(b"again"))
        .await
        .unwrap();
    assert!(matches!(sig, keys::Signature::Ed25519(_)));
}

#[tokio::test]
async fn wrong_pin_is_refused() {
    let hsm = SoftHsm::new("pin");
    assert!(matches!(open(&hsm, "000000"), Err(HsmError::WrongPin)));
}

#[tokio::test]
async fn missing_token_is_named() {
    let _hsm = SoftHsm::new("present");
    let err = Pkcs11Signer::open(
        &SoftHsm::module(),
        "absent",
        &Zeroizing::new(USER_PIN.to_owned()),
        1,
    )
    .unwrap_err();
    assert!(
        matches!(&err, HsmError::NoToken(l) if l == "absent"),
        "{err}"
    );
}

#[tokio::test]
async fn unknown_key_is_an_error() {
    let hsm = SoftHsm::new("unknown");
    let signer = open(&hsm, USER_PIN).unwrap();
    let missing = keys::KeyRef("pkcs11:00112233445566778899aabbccddeeff".into());
    assert!(matches!(
        signer
            .sign(&missing, SignRequest::EcdsaDigest([1; 32]))
            .await,
        Err(KeyError::UnknownKey(_))
    ));
    let garbage = keys::KeyRef("pkcs11:zz".into());
    assert!(matches!(
        signer.public_key(&garbage).await,
        Err(KeyError::UnknownKey(_))
    ));
}

#[tokio::test]
async fn secrets_wrap_under_a_token_key() {
    use keys::Wrapper;
    let hsm = SoftHsm::new("wrap");
    let signer = open(&hsm, USER_PIN).unwrap();
    let key = signer.create_wrapping_key().unwrap();
    let sealed = signer.wrap(&key, b"binding", &[7u8; 32]).unwrap();
    assert_eq!(
        &signer.unwrap(&key, b"binding", &sealed).unwrap()[..],
        &[7u8; 32]
    );
    assert!(signer.unwrap(&key, b"other", &sealed).is_err());
    let mut flipped = sealed.clone();
    flipped[20] ^= 1;
    assert!(signer.unwrap(&key, b"binding", &flipped).is_err());
    let other = signer.create_wrapping_key().unwrap();
    assert!(signer.unwrap(&other, b"binding", &sealed).is_err());
    assert!(matches!(
        signer.unwrap(&keys::KeyRef("pkcs11-wrap:00".into()), b"binding", &sealed),
        Err(KeyError::UnknownKey(_))
    ));
}
