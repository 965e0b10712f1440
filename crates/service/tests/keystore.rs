//! The sealed keystore end to end on SQLite and PostgreSQL: init, unseal by
//! quorum, keys, self-tests, seal, bad shares, damaged ciphertext, and a KEK
//! rotation interrupted half-way.

#![allow(clippy::unwrap_used)] // Tests: a panic is the failure report.

use std::sync::Arc;

use domain::{Actor, KeyAlgorithm, KeyPurpose, KeyState};
use service::keys::shamir::{self, UnsealShare};
use service::{Checkpointer, NewKey, SealStatus, Service, ServiceError, SystemClock};
use storage::Backend;
use storage::testing::TestDb;

storage::on_both!(
    fixture;
    init_unseal_create_sign_seal,
    bad_shares_change_nothing_and_are_audited,
    wrong_quorum_is_refused_and_resets,
    damaged_ciphertext_is_a_clear_error,
    interrupted_kek_rotation_leaves_every_key_readable,
    lifecycle_and_purpose_gate_signing,
    hd_keys_sign_and_derive_watch_only,
    stale_kek_is_refused_after_a_rotation_elsewhere,
    destroyed_keys_lose_their_material,
    a_damaged_key_does_not_stop_a_rotation,
    signing_keys_rotate_to_a_new_version,
);

async fn fixture(db: TestDb) -> Fixture {
    Fixture::new(db).await
}

struct Fixture {
    db: TestDb,
    svc: Service,
    shares: Vec<UnsealShare>,
    _dir: tempfile::TempDir,
}

fn alice() -> Actor {
    "operator:alice".parse().unwrap()
}

fn new_key(algorithm: KeyAlgorithm) -> NewKey {
    NewKey {
        purpose: KeyPurpose::TransferSigning,
        algorithm,
        backend: domain::KeyBackend::Keystore,
        cryptoperiod_days: 365,
    }
}

impl Fixture {
    async fn new(db: TestDb) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let svc = Self::service(&db, &dir);
        assert_eq!(svc.seal_status().await.unwrap(), SealStatus::Uninitialized);
        let shares = svc.init_keystore(&alice(), 3, 5).await.unwrap();
        assert_eq!(shares.len(), 5);
        Fixture {
            db,
            svc,
            shares,
            _dir: dir,
        }
    }

    fn service(db: &TestDb, dir: &tempfile::TempDir) -> Service {
        let cp = Checkpointer::for_tests(dir.path(), 4, 1000);
        Service::new(db.store.clone(), Arc::new(SystemClock), cp)
    }

    async fn unseal(&self, picks: [usize; 3]) {
        for (i, p) in picks.iter().enumerate() {
            let status = self
                .svc
                .unseal(&Actor::Anonymous, &self.shares[*p])
                .await
                .unwrap();
            let expected = if i < 2 {
                SealStatus::Sealed {
                    have: i as u8 + 1,
                    need: 3,
                }
            } else {
                SealStatus::Unsealed
            };
            assert_eq!(status, expected);
        }
    }

    async fn audit_actions(&self) -> Vec<String> {
        self.db
            .store
            .audit_page(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| r.action)
            .collect()
    }

    async fn audit_text(&self) -> String {
        self.db
            .store
            .audit_page(0, 10_000)
            .await
            .unwrap()
            .into_iter()
            .map(|r| format!("{} {} {} {}", r.actor, r.action, r.subject, r.details))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

async fn init_unseal_create_sign_seal(f: Fixture) {
    assert!(matches!(
        f.svc.init_keystore(&alice(), 3, 5).await,
        Err(ServiceError::AlreadyInitialized)
    ));
    assert_eq!(
        f.svc.seal_status().await.unwrap(),
        SealStatus::Sealed { have: 0, need: 3 }
    );
    assert!(matches!(
        f.svc
            .create_key(&alice(), new_key(KeyAlgorithm::Ed25519))
            .await,
        Err(ServiceError::Sealed)
    ));

    f.unseal([0, 1, 2]).await;
    let mut ids = Vec::new();
    for alg in [
        KeyAlgorithm::EcdsaSecp256k1,
        KeyAlgorithm::SchnorrBip340,
        KeyAlgorithm::Ed25519,
    ] {
        let key = f.svc.create_key(&alice(), new_key(alg)).await.unwrap();
        assert_eq!(key.state, KeyState::Active);
        f.svc.key_self_test(&alice(), key.id).await.unwrap();
        ids.push(key.id);
    }

    f.svc.seal(&alice()).await.unwrap();
    assert!(matches!(
        f.svc.key_self_test(&alice(), ids[0]).await,
        Err(ServiceError::Sealed)
    ));

    // Another quorum, another service (a restart): the keys come back.
    let restarted = Fixture::service(&f.db, &f._dir);
    for p in [4, 2, 3] {
        restarted
            .unseal(&Actor::Anonymous, &f.shares[p])
            .await
            .unwrap();
    }
    for id in &ids {
        restarted.key_self_test(&alice(), *id).await.unwrap();
    }

    // No share and no key material ever reaches the audit log.
    let audit = f.audit_text().await;
    for s in &f.shares {
        let body = s.as_str().trim_start_matches("srshare1-");
        assert!(
            !audit.contains(&body[..40]),
            "a share reached the audit log"
        );
    }
    let actions = f.audit_actions().await;
    for a in [
        "keystore.initialized",
        "keystore.unsealed",
        "key.created",
        "key.self_tested",
        "keystore.sealed",
    ] {
        assert!(
            actions.iter().any(|x| x == a),
            "{a} not audited: {actions:?}"
        );
    }
}

async fn bad_shares_change_nothing_and_are_audited(f: Fixture) {
    let (_, token) = f
        .svc
        .unseal_giving(&Actor::Anonymous, &f.shares[0])
        .await
        .unwrap();
    let token = token.expect("the first share's holder gets a reset token");
    let before = f.audit_actions().await.len();

    let dup = f
        .svc
        .unseal(&Actor::Anonymous, &f.shares[0])
        .await
        .unwrap_err();
    assert!(
        matches!(dup, ServiceError::Share(shamir::ShareError::Duplicate(_))),
        "{dup}"
    );
    let junk = f
        .svc
        .unseal(&Actor::Anonymous, &UnsealShare::from_text("srshare1-00"))
        .await
        .unwrap_err();
    assert!(
        matches!(junk, ServiceError::Share(shamir::ShareError::Format)),
        "{junk}"
    );
    let foreign =
        shamir::split([9; 16], &service::keys::Secret32::random().unwrap(), 3, 5).unwrap();
    let err = f
        .svc
        .unseal(&Actor::Anonymous, &foreign[0])
        .await
        .unwrap_err();
    assert!(
        matches!(err, ServiceError::Share(shamir::ShareError::Foreign)),
        "{err}"
    );

    assert_eq!(
        f.svc.seal_status().await.unwrap(),
        SealStatus::Sealed { have: 1, need: 3 }
    );
    let refused = f.audit_actions().await[before..]
        .iter()
        .filter(|a| *a == "keystore.unseal_refused")
        .count();
    assert_eq!(refused, 3);

    // A well-formed share of this keystore, with a real holder's index,
    // that was never issued: refused before it takes the index.
    let id = f.db.store.keystore().await.unwrap().unwrap().keystore_id;
    let forged = shamir::split(id, &service::keys::Secret32::random().unwrap(), 3, 5).unwrap();
    for share in &forged[1..3] {
        let err = f.svc.unseal(&Actor::Anonymous, share).await.unwrap_err();
        assert!(
            matches!(err, ServiceError::Share(shamir::ShareError::NotIssued)),
            "{err}"
        );
    }
    assert_eq!(
        f.svc.seal_status().await.unwrap(),
        SealStatus::Sealed { have: 1, need: 3 }
    );
    // Only the first share's holder (or an officer) may start over.
    assert!(matches!(
        f.svc.unseal_reset_as_starter("0123456789abcdef").await,
        Err(ServiceError::Auth(service::identity::AuthError::Forbidden))
    ));
    assert_eq!(
        f.svc.seal_status().await.unwrap(),
        SealStatus::Sealed { have: 1, need: 3 }
    );
    assert_eq!(
        f.svc.unseal_reset_as_starter(&token).await.unwrap(),
        SealStatus::Sealed { have: 0, need: 3 }
    );
    let actions = f.audit_actions().await;
    assert!(actions.iter().any(|a| a == "keystore.unseal_reset_refused"));
}

async fn wrong_quorum_is_refused_and_resets(f: Fixture) {
    // Well-formed shares of this keystore's id, but of another root key,
    // on a keystore made before share tags were kept: only the keystore
    // itself can tell, once the threshold is reached.
    f.db.store
        .execute_unchecked("DELETE FROM keystore_share_tags")
        .await
        .unwrap();
    let id = f.db.store.keystore().await.unwrap().unwrap().keystore_id;
    let impostor = shamir::split(id, &service::keys::Secret32::random().unwrap(), 3, 5).unwrap();
    f.svc.unseal(&Actor::Anonymous, &impostor[0]).await.unwrap();
    f.svc.unseal(&Actor::Anonymous, &impostor[1]).await.unwrap();
    let err = f
        .svc
        .unseal(&Actor::Anonymous, &impostor[2])
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::WrongShares), "{err}");
    assert_eq!(
        f.svc.seal_status().await.unwrap(),
        SealStatus::Sealed { have: 0, need: 3 }
    );
    assert!(
        f.audit_actions()
            .await
            .iter()
            .any(|a| a == "keystore.unseal_failed")
    );
    f.unseal([0, 1, 2]).await;
}

async fn damaged_ciphertext_is_a_clear_error(f: Fixture) {
    f.unseal([0, 1, 2]).await;
    let good = f
        .svc
        .create_key(&alice(), new_key(KeyAlgorithm::Ed25519))
        .await
        .unwrap();
    let bad = f
        .svc
        .create_key(&alice(), new_key(KeyAlgorithm::EcdsaSecp256k1))
        .await
        .unwrap();
    f.svc.seal(&alice()).await.unwrap();

    // One flipped bit in one key's sealed material.
    let mut material = bad.material_sealed.clone().unwrap();
    let last = material.len() - 1;
    material[last] ^= 1;
    let literal = bytes_literal(&f, &material);
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE keys SET material_sealed = {literal} WHERE id = '{}'",
            bad.id
        ))
        .await
        .unwrap();
    f.unseal([0, 1, 2]).await;
    f.svc.key_self_test(&alice(), good.id).await.unwrap();
    let err = f.svc.key_self_test(&alice(), bad.id).await.unwrap_err();
    assert!(err.to_string().contains("unreadable"), "{err}");
    assert!(f.audit_text().await.contains(&bad.id.to_string()));

    // One flipped bit in the sealed KEK: the keystore no longer unseals.
    f.svc.seal(&alice()).await.unwrap();
    let mut kek = f.db.store.keks().await.unwrap().remove(0);
    kek.sealed[30] ^= 1;
    let literal = bytes_literal(&f, &kek.sealed);
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE keystore_keks SET sealed = {literal} WHERE version = {}",
            kek.version
        ))
        .await
        .unwrap();
    f.svc.unseal(&Actor::Anonymous, &f.shares[0]).await.unwrap();
    f.svc.unseal(&Actor::Anonymous, &f.shares[1]).await.unwrap();
    let err = f
        .svc
        .unseal(&Actor::Anonymous, &f.shares[2])
        .await
        .unwrap_err();
    assert!(matches!(err, ServiceError::WrongShares), "{err}");
}

/// A byte-string literal in the backend's SQL.
fn bytes_literal(f: &Fixture, bytes: &[u8]) -> String {
    match f.db.store.backend() {
        Backend::Sqlite => format!("X'{}'", hex::encode(bytes)),
        Backend::Postgres => format!("'\\x{}'::bytea", hex::encode(bytes)),
    }
}

async fn interrupted_kek_rotation_leaves_every_key_readable(f: Fixture) {
    f.unseal([0, 1, 2]).await;
    let a = f
        .svc
        .create_key(&alice(), new_key(KeyAlgorithm::Ed25519))
        .await
        .unwrap();
    let b = f
        .svc
        .create_key(&alice(), new_key(KeyAlgorithm::EcdsaSecp256k1))
        .await
        .unwrap();
    // A crash while re-wrapping key b: the database refuses that one update.
    let fault = match f.db.store.backend() {
        Backend::Sqlite => format!(
            "CREATE TRIGGER crash BEFORE UPDATE OF kek_version ON keys WHEN NEW.id = '{}' \
             BEGIN SELECT RAISE(ABORT, 'simulated crash'); END",
            b.id
        ),
        Backend::Postgres => format!(
            "CREATE FUNCTION crash() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN IF NEW.id = '{}' THEN RAISE EXCEPTION 'simulated crash'; END IF; RETURN NEW; END; $$; \
             CREATE TRIGGER crash BEFORE UPDATE ON keys FOR EACH ROW EXECUTE FUNCTION crash()",
            b.id
        ),
    };
    f.db.store.execute_unchecked(&fault).await.unwrap();
    let err = f.svc.rotate_kek(&alice()).await.unwrap_err();
    assert!(err.to_string().contains("simulated crash"), "{err}");
    let versions = |k: &storage::KeyRow| k.kek_version;
    let (a2, b2) = (
        f.db.store.key(a.id).await.unwrap(),
        f.db.store.key(b.id).await.unwrap(),
    );
    assert_eq!((versions(&a2), versions(&b2)), (Some(2), Some(1)));

    // Restart half-way: both keys open, from two KEK versions.
    f.svc.seal(&alice()).await.unwrap();
    f.unseal([2, 3, 4]).await;
    f.svc.key_self_test(&alice(), a.id).await.unwrap();
    f.svc.key_self_test(&alice(), b.id).await.unwrap();

    // The fault is gone; finishing the rotation re-wraps b and retires KEK 1.
    let drop_fault = match f.db.store.backend() {
        Backend::Sqlite => "DROP TRIGGER crash",
        Backend::Postgres => "DROP TRIGGER crash ON keys",
    };
    f.db.store.execute_unchecked(drop_fault).await.unwrap();
    f.svc.finish_kek_rotation(&alice()).await.unwrap();
    assert_eq!(f.db.store.key(b.id).await.unwrap().kek_version, Some(2));
    let keks: Vec<u32> =
        f.db.store
            .keks()
            .await
            .unwrap()
            .iter()
            .map(|k| k.version)
            .collect();
    assert_eq!(keks, [2]);
    f.svc.seal(&alice()).await.unwrap();
    f.unseal([0, 3, 4]).await;
    f.svc.key_self_test(&alice(), b.id).await.unwrap();
}

async fn lifecycle_and_purpose_gate_signing(f: Fixture) {
    f.unseal([0, 1, 2]).await;
    let key = f
        .svc
        .create_key(
            &alice(),
            NewKey {
                purpose: KeyPurpose::Approval,
                cryptoperiod_days: 30,
                ..new_key(KeyAlgorithm::Ed25519)
            },
        )
        .await
        .unwrap();
    f.svc
        .set_key_state(&alice(), key.id, KeyState::Suspended)
        .await
        .unwrap();
    let err = f.svc.key_self_test(&alice(), key.id).await.unwrap_err();
    assert!(err.to_string().contains("suspended"), "{err}");
    f.svc
        .set_key_state(&alice(), key.id, KeyState::Active)
        .await
        .unwrap();
    f.svc.key_self_test(&alice(), key.id).await.unwrap();
    f.svc
        .set_key_state(&alice(), key.id, KeyState::Deactivated)
        .await
        .unwrap();
    let err = f
        .svc
        .set_key_state(&alice(), key.id, KeyState::Active)
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot go from deactivated to active"),
        "{err}"
    );
    f.svc
        .set_key_state(&alice(), key.id, KeyState::Destroyed)
        .await
        .unwrap();
    assert!(f.svc.key_self_test(&alice(), key.id).await.is_err());
    assert!(matches!(
        f.svc
            .create_key(
                &alice(),
                NewKey {
                    cryptoperiod_days: 0,
                    ..new_key(KeyAlgorithm::Ed25519)
                }
            )
            .await,
        Err(ServiceError::Invalid(_))
    ));
}

async fn hd_keys_sign_and_derive_watch_only(f: Fixture) {
    use service::NewHdKey;
    use service::keys::hd;
    f.unseal([0, 1, 2]).await;
    let hd_key = |algorithm, path: &str| NewHdKey {
        purpose: KeyPurpose::TransferSigning,
        algorithm,
        account_path: path.to_owned(),
        cryptoperiod_days: 365,
    };
    let (key, mnemonic) = f
        .svc
        .create_hd_key(
            &alice(),
            hd_key(KeyAlgorithm::EcdsaSecp256k1, "m/84'/0'/0'"),
        )
        .await
        .unwrap();
    assert_eq!(mnemonic.phrase().split(' ').count(), 24);
    assert!(key.public_key.starts_with("xpub"));
    assert_eq!(key.hd_path.as_deref(), Some("m/84'/0'/0'"));
    f.svc.key_self_test(&alice(), key.id).await.unwrap();

    // Watch-only: the stored xpub derives the same deposit keys as the seed.
    let seed = mnemonic.to_seed("");
    for i in [0u32, 5] {
        let watch = hd::derive_from_xpub(&key.public_key, &[0, i]).unwrap();
        let secret = hd::derive_secp256k1(&seed, &format!("m/84'/0'/0'/0/{i}")).unwrap();
        let full = k256::ecdsa::SigningKey::from_bytes(secret.expose().into())
            .unwrap()
            .verifying_key()
            .to_encoded_point(true);
        assert_eq!(&watch[..], full.as_bytes());
    }
    // The mnemonic never reaches the audit log.
    let audit = f.audit_text().await;
    let phrase = mnemonic.phrase();
    let words: Vec<&str> = phrase.split(' ').collect();
    assert!(!audit.contains(&words[..4].join(" ")));

    let (taproot, _) = f
        .svc
        .create_hd_key(&alice(), hd_key(KeyAlgorithm::SchnorrBip340, "m/86'/0'/0'"))
        .await
        .unwrap();
    f.svc.key_self_test(&alice(), taproot.id).await.unwrap();

    // The seeds survive a seal and another quorum.
    f.svc.seal(&alice()).await.unwrap();
    f.unseal([1, 3, 4]).await;
    f.svc.key_self_test(&alice(), key.id).await.unwrap();
    f.svc.key_self_test(&alice(), taproot.id).await.unwrap();

    assert!(matches!(
        f.svc
            .create_hd_key(&alice(), hd_key(KeyAlgorithm::Ed25519, "m/44'/501'/0'"))
            .await,
        Err(ServiceError::Invalid(_))
    ));
    assert!(matches!(
        f.svc
            .create_hd_key(&alice(), hd_key(KeyAlgorithm::EcdsaSecp256k1, "m/84'/x"))
            .await,
        Err(ServiceError::Invalid(_))
    ));
}

async fn stale_kek_is_refused_after_a_rotation_elsewhere(f: Fixture) {
    // Two processes unsealed at KEK 1; one rotates; the other must not wrap
    // a new key under the KEK being retired.
    f.unseal([0, 1, 2]).await;
    let other = Fixture::service(&f.db, &f._dir);
    for p in [2, 3, 4] {
        other.unseal(&Actor::Anonymous, &f.shares[p]).await.unwrap();
    }
    other.rotate_kek(&alice()).await.unwrap();
    let err = f
        .svc
        .create_key(&alice(), new_key(KeyAlgorithm::Ed25519))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("rotated elsewhere"), "{err}");
    f.svc.seal(&alice()).await.unwrap();
    f.unseal([0, 1, 2]).await;
    let key = f
        .svc
        .create_key(&alice(), new_key(KeyAlgorithm::Ed25519))
        .await
        .unwrap();
    assert_eq!(key.kek_version, Some(2));
}

async fn destroyed_keys_lose_their_material(f: Fixture) {
    f.unseal([0, 1, 2]).await;
    let key = f
        .svc
        .create_key(&alice(), new_key(KeyAlgorithm::Ed25519))
        .await
        .unwrap();
    f.svc
        .set_key_state(&alice(), key.id, KeyState::Deactivated)
        .await
        .unwrap();
    f.svc
        .set_key_state(&alice(), key.id, KeyState::Destroyed)
        .await
        .unwrap();
    let stored = f.db.store.key(key.id).await.unwrap();
    assert_eq!(stored.state, KeyState::Destroyed);
    assert!(stored.material_sealed.is_none() && stored.dek_sealed.is_none());
}

async fn a_damaged_key_does_not_stop_a_rotation(f: Fixture) {
    f.unseal([0, 1, 2]).await;
    let good = f
        .svc
        .create_key(&alice(), new_key(KeyAlgorithm::Ed25519))
        .await
        .unwrap();
    let bad = f
        .svc
        .create_key(&alice(), new_key(KeyAlgorithm::Ed25519))
        .await
        .unwrap();
    let mut dek = bad.dek_sealed.clone().unwrap();
    dek[30] ^= 1;
    let literal = bytes_literal(&f, &dek);
    f.db.store
        .execute_unchecked(&format!(
            "UPDATE keys SET dek_sealed = {literal} WHERE id = '{}'",
            bad.id
        ))
        .await
        .unwrap();
    f.svc.rotate_kek(&alice()).await.unwrap();
    assert_eq!(f.db.store.key(good.id).await.unwrap().kek_version, Some(2));
    assert_eq!(f.db.store.key(bad.id).await.unwrap().kek_version, Some(1));
    // KEK 1 still wraps the damaged key, so it is kept.
    let keks: Vec<u32> =
        f.db.store
            .keks()
            .await
            .unwrap()
            .iter()
            .map(|k| k.version)
            .collect();
    assert_eq!(keks, [1, 2]);
    assert!(
        f.audit_actions()
            .await
            .iter()
            .any(|a| a == "key.rewrap_failed")
    );
}

async fn signing_keys_rotate_to_a_new_version(f: Fixture) {
    f.unseal([0, 1, 2]).await;
    let v1 = f
        .svc
        .create_key(&alice(), new_key(KeyAlgorithm::EcdsaSecp256k1))
        .await
        .unwrap();
    let v2 = f.svc.rotate_key(&alice(), v1.id, 90).await.unwrap();
    assert_eq!(v2.version, 2);
    assert_eq!((v2.purpose, v2.algorithm), (v1.purpose, v1.algorithm));
    assert_ne!(v2.public_key, v1.public_key);
    assert_eq!(
        f.db.store.key(v1.id).await.unwrap().state,
        KeyState::Deactivated
    );
    f.svc.key_self_test(&alice(), v2.id).await.unwrap();
    let err = f.svc.key_self_test(&alice(), v1.id).await.unwrap_err();
    assert!(err.to_string().contains("deactivated"), "{err}");
    // Version 2 reopens after a seal (its material is bound to version 2).
    f.svc.seal(&alice()).await.unwrap();
    f.unseal([2, 3, 4]).await;
    f.svc.key_self_test(&alice(), v2.id).await.unwrap();
    // A deactivated key does not rotate again.
    assert!(matches!(
        f.svc.rotate_key(&alice(), v1.id, 90).await,
        Err(ServiceError::Invalid(_))
    ));
    let v3 = f.svc.rotate_key(&alice(), v2.id, 90).await.unwrap();
    assert_eq!(v3.version, 3);
    assert!(
        f.audit_text()
            .await
            .contains(&format!("\"successor\":\"{}\"", v3.id))
    );
}
