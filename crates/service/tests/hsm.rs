//! Keys in an HSM (SoftHSM2) through the service: created in the token,
//! listed in the inventory, signing only while the keystore is unsealed.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;

use domain::{Actor, KeyAlgorithm, KeyBackend, KeyPurpose};
use keys_pkcs11::Pkcs11Signer;
use keys_pkcs11::testing::{SoftHsm, USER_PIN};
use service::{Checkpointer, NewKey, Service, ServiceError, SystemClock};
use storage::testing::TestDb;
use zeroize::Zeroizing;

/// A checkpointer writing into `dir`, with a fixed test audit key.
fn checkpointer(dir: &std::path::Path) -> Checkpointer {
    Checkpointer::for_tests(dir, 6, 1000)
}

fn new_key(algorithm: KeyAlgorithm) -> NewKey {
    NewKey {
        purpose: KeyPurpose::TransferSigning,
        algorithm,
        backend: KeyBackend::Pkcs11,
        cryptoperiod_days: 365,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hsm_keys_through_the_service() {
    let token = SoftHsm::new("service");
    let hsm = Pkcs11Signer::open(
        &SoftHsm::module(),
        &token.label,
        &Zeroizing::new(USER_PIN.into()),
        2,
    )
    .unwrap();
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let cp = checkpointer(dir.path());
    let svc = Service::with_hsm(
        db.store.clone(),
        Arc::new(SystemClock),
        cp,
        Some(Arc::new(hsm)),
    );
    let alice: Actor = "operator:alice".parse().unwrap();
    let shares = svc.init_keystore(&alice, 2, 2).await.unwrap();

    // Sealed: no key is made, none signs.
    assert!(matches!(
        svc.create_key(&alice, new_key(KeyAlgorithm::Ed25519)).await,
        Err(ServiceError::Sealed)
    ));
    for s in &shares {
        svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let mut ids = Vec::new();
    for alg in [KeyAlgorithm::EcdsaSecp256k1, KeyAlgorithm::Ed25519] {
        let key = svc.create_key(&alice, new_key(alg)).await.unwrap();
        assert_eq!(key.backend, KeyBackend::Pkcs11);
        assert!(key.material_sealed.is_none() && key.dek_sealed.is_none());
        assert!(key.backend_ref.as_deref().unwrap().starts_with("pkcs11:"));
        svc.key_self_test(&alice, key.id).await.unwrap();
        ids.push(key.id);
    }
    // No PKCS#11 mechanism signs BIP-340: refused, not done in software.
    let err = svc
        .create_key(&alice, new_key(KeyAlgorithm::SchnorrBip340))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot hold"), "{err}");

    svc.seal(&alice).await.unwrap();
    assert!(matches!(
        svc.key_self_test(&alice, ids[0]).await,
        Err(ServiceError::Sealed)
    ));

    // Without an HSM configured, HSM keys are named as unusable.
    let plain = Service::new(
        db.store.clone(),
        Arc::new(SystemClock),
        checkpointer(dir.path()),
    );
    for s in &shares {
        plain.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let err = plain.key_self_test(&alice, ids[0]).await.unwrap_err();
    assert!(err.to_string().contains("not configured"), "{err}");
    let err = plain
        .create_key(&alice, new_key(KeyAlgorithm::Ed25519))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("no HSM is configured"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_unseal_with_the_root_wrapped_in_the_hsm() {
    let token = SoftHsm::new("auto");
    let hsm = Arc::new(
        Pkcs11Signer::open(
            &SoftHsm::module(),
            &token.label,
            &Zeroizing::new(USER_PIN.into()),
            2,
        )
        .unwrap(),
    );
    let db = TestDb::sqlite().await;
    let dir = tempfile::tempdir().unwrap();
    let service = || {
        let cp = checkpointer(dir.path());
        Service::with_hsm_wrapper(db.store.clone(), Arc::new(SystemClock), cp, hsm.clone())
    };
    let svc = service();
    let alice: Actor = "operator:alice".parse().unwrap();
    let shares = svc.init_keystore(&alice, 2, 3).await.unwrap();
    assert!(
        !svc.auto_unseal(&Actor::System).await.unwrap(),
        "not enabled yet"
    );
    assert!(matches!(
        svc.enable_auto_unseal(&alice).await,
        Err(ServiceError::Sealed)
    ));
    for s in &shares[..2] {
        svc.unseal(&Actor::Anonymous, s).await.unwrap();
    }
    let key = svc
        .create_key(
            &alice,
            NewKey {
                backend: KeyBackend::Keystore,
                ..new_key(KeyAlgorithm::Ed25519)
            },
        )
        .await
        .unwrap();
    svc.enable_auto_unseal(&alice).await.unwrap();

    // A restart: the new process unseals itself through the HSM.
    let restarted = service();
    assert!(restarted.auto_unseal(&Actor::System).await.unwrap());
    restarted.key_self_test(&alice, key.id).await.unwrap();

    // A damaged wrapped root does not unseal, and the attempt is audited.
    let (key_ref, mut sealed) = db.store.auto_unseal().await.unwrap().unwrap();
    sealed[20] ^= 1;
    db.store
        .execute_unchecked(&format!(
            "UPDATE keystore SET auto_unseal_sealed = X'{}' WHERE auto_unseal_ref = '{key_ref}'",
            hex::encode(&sealed)
        ))
        .await
        .unwrap();
    let third = service();
    assert!(third.auto_unseal(&Actor::System).await.is_err());
    assert_eq!(
        third.seal_status().await.unwrap(),
        service::SealStatus::Sealed { have: 0, need: 2 }
    );
    let actions: Vec<String> = db
        .store
        .audit_page(0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.action)
        .collect();
    assert!(actions.iter().any(|a| a == "keystore.auto_unseal_enabled"));
    assert!(actions.iter().any(|a| a == "keystore.unseal_failed"));
}
