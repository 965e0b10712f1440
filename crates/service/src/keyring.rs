//! The key inventory: keys made on every backend (keystore keys sealed
//! under a data key, HD accounts from a fresh mnemonic, HSM keys made in the
//! token, threshold keys made by the signer nodes), their rotation and
//! lifecycle (suspension, compromise, destruction), and their self-test —
//! each step committed with its audit record.

use audit::Entry;
use domain::{Actor, KeyAlgorithm, KeyBackend, KeyId, KeyPurpose, KeyState};
use keys::envelope::{self, Binding};
use keys::{PublicKey, Secret32, SignRequest, Signature, Signer};
use serde_json::json;
use sha2::{Digest, Sha256};
use storage::KeyRow;

use crate::keystore::{bip32_prefix, public_hex, random_secret};
use crate::record::entry;
use crate::service::{Service, ServiceError};
use crate::vault::Vault;
use crate::vault::algorithm;

/// An HD key request: a fresh BIP-39 mnemonic whose seed is sealed in the
/// keystore; the inventory shows the account's xpub.
#[derive(Debug, Clone)]
pub struct NewHdKey {
    pub purpose: KeyPurpose,
    /// ECDSA (BIP-44/84) or BIP-340 Schnorr (BIP-86).
    pub algorithm: KeyAlgorithm,
    /// The hardened account path, e.g. `m/84'/0'/0'`.
    pub account_path: String,
    pub cryptoperiod_days: u32,
}

/// A key-creation request.
#[derive(Debug, Clone, Copy)]
pub struct NewKey {
    pub purpose: KeyPurpose,
    pub algorithm: KeyAlgorithm,
    /// The keystore (sealed in the database) or the HSM.
    pub backend: KeyBackend,
    /// The cryptoperiod: how long the key may sign.
    pub cryptoperiod_days: u32,
}

/// The result of a key's self-test: a signature over a challenge that names
/// the key, verified by an independent library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelfTest {
    pub challenge: String,
    pub public_key: String,
    pub signature: String,
}

/// What differs between the ways a key is made (keystore, HD, HSM); its
/// inventory row and its audit record are built from it the same way.
pub(crate) struct Made {
    pub(crate) id: KeyId,
    pub(crate) version: u32,
    pub(crate) purpose: KeyPurpose,
    pub(crate) algorithm: KeyAlgorithm,
    pub(crate) backend: KeyBackend,
    pub(crate) backend_ref: Option<String>,
    pub(crate) public_key: String,
    /// KEK version, sealed data key, sealed material.
    pub(crate) sealed: Option<(u32, Vec<u8>, Vec<u8>)>,
    pub(crate) hd_path: Option<String>,
    pub(crate) entropy: String,
    pub(crate) ceremony: &'static str,
    pub(crate) cryptoperiod_days: u32,
}

fn check_cryptoperiod(days: u32) -> Result<(), ServiceError> {
    if !(1..=3650).contains(&days) {
        return Err(ServiceError::Invalid(
            "cryptoperiod must be 1 to 3650 days".into(),
        ));
    }
    Ok(())
}

fn parse_public(algorithm: KeyAlgorithm, hex_key: &str) -> Result<PublicKey, ServiceError> {
    let bad = || ServiceError::KeyNotUsable("stored public key is malformed".into());
    let bytes = hex::decode(hex_key).map_err(|_| bad())?;
    Ok(match algorithm {
        KeyAlgorithm::EcdsaSecp256k1 => PublicKey::Secp256k1(bytes.try_into().map_err(|_| bad())?),
        KeyAlgorithm::SchnorrBip340 => PublicKey::XOnly(bytes.try_into().map_err(|_| bad())?),
        KeyAlgorithm::Ed25519 => PublicKey::Ed25519(bytes.try_into().map_err(|_| bad())?),
    })
}

impl Service {
    /// Creates a key in the keystore: fresh material from the OS CSPRNG,
    /// sealed under its own data key, which is wrapped under the current KEK.
    pub async fn create_key(&self, actor: &Actor, new: NewKey) -> Result<KeyRow, ServiceError> {
        self.create_key_for(actor, new, None).await
    }

    /// [`Service::create_key`] for a wallet's account: threshold keys are
    /// made for one wallet, which each signer node binds to its share.
    pub(crate) async fn create_key_for(
        &self,
        actor: &Actor,
        new: NewKey,
        wallet: Option<domain::WalletId>,
    ) -> Result<KeyRow, ServiceError> {
        if new.backend == KeyBackend::Threshold {
            check_cryptoperiod(new.cryptoperiod_days)?;
            let wallet = wallet.ok_or_else(|| {
                ServiceError::Invalid(
                    "threshold keys are made for a wallet: open an account with backend \"threshold\""
                        .into(),
                )
            })?;
            if !matches!(*self.vault().lock().await, Vault::Unsealed(_)) {
                return Err(ServiceError::Sealed);
            }
            return self.create_threshold_key(actor, new, wallet).await;
        }
        if new.backend == KeyBackend::Pkcs11 {
            check_cryptoperiod(new.cryptoperiod_days)?;
            if !matches!(*self.vault().lock().await, Vault::Unsealed(_)) {
                return Err(ServiceError::Sealed);
            }
            return self.create_hsm_key(actor, new).await;
        }
        self.create_keystore_key(actor, new, None).await
    }

    /// Rotates a keystore signing key: a new key with fresh material and the
    /// next version number, and the old one deactivated, in one transaction.
    /// Addresses of the old key keep their funds until they are moved; the
    /// old key's state, history and public key stay in the inventory.
    pub async fn rotate_key(
        &self,
        actor: &Actor,
        id: KeyId,
        cryptoperiod_days: u32,
    ) -> Result<KeyRow, ServiceError> {
        let old = self.store().key(id).await?;
        if old.backend != KeyBackend::Keystore || old.hd_path.is_some() {
            return Err(ServiceError::Invalid(
                "only single keystore keys rotate in place; create a new HD or HSM key instead"
                    .into(),
            ));
        }
        // A compromised key stays compromised; any other is deactivated.
        if old.state != KeyState::Compromised {
            old.state
                .check_transition(KeyState::Deactivated)
                .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        }
        let new = NewKey {
            purpose: old.purpose,
            algorithm: old.algorithm,
            backend: KeyBackend::Keystore,
            cryptoperiod_days,
        };
        self.create_keystore_key(actor, new, Some(&old)).await
    }

    async fn create_keystore_key(
        &self,
        actor: &Actor,
        new: NewKey,
        predecessor: Option<&KeyRow>,
    ) -> Result<KeyRow, ServiceError> {
        check_cryptoperiod(new.cryptoperiod_days)?;
        let mut vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &mut *vault else {
            return Err(ServiceError::Sealed);
        };
        let id = KeyId::from_uuid(uuid::Uuid::now_v7());
        let id_text = id.to_string();
        let version = predecessor.map_or(Ok(1), |p| {
            p.version
                .checked_add(1)
                .ok_or_else(|| ServiceError::Invalid("key versions exhausted".into()))
        })?;
        // Draw until the bytes are a valid key (secp256k1 refuses ~2^-128 of them).
        let (secret, key_ref) = loop {
            let candidate = random_secret()?;
            let copy = Secret32::from_bytes(&mut candidate.expose().to_owned());
            match opened.signer.import(algorithm(new.algorithm), copy) {
                Ok(r) => break (candidate, r),
                Err(keys::KeyError::Signing(_)) => continue,
                Err(e) => return Err(e.into()),
            }
        };
        let current_kek = opened.current_kek;
        // Everything after the import either commits or removes the key again.
        let stored = async {
            let public = opened.signer.public_key(&key_ref).await?;
            let dek = random_secret()?;
            let kek = opened.keks.get(&current_kek).ok_or(ServiceError::Sealed)?;
            let material_sealed = envelope::seal(
                &dek,
                Binding {
                    kind: "key",
                    id: &id_text,
                    version,
                },
                secret.expose(),
            )?;
            let dek_sealed = envelope::wrap(
                kek,
                Binding {
                    kind: "dek",
                    id: &id_text,
                    version,
                },
                &dek,
            )?;
            let (row, e, now) = self.key_record(
                actor,
                Made {
                    id,
                    version,
                    purpose: new.purpose,
                    algorithm: new.algorithm,
                    backend: KeyBackend::Keystore,
                    backend_ref: None,
                    public_key: public_hex(&public),
                    sealed: Some((current_kek, dek_sealed, material_sealed)),
                    hd_path: None,
                    entropy: "os-csprng".into(),
                    ceremony: if predecessor.is_some() {
                        "keystore-rotation"
                    } else {
                        "keystore"
                    },
                    cryptoperiod_days: new.cryptoperiod_days,
                },
            )?;
            let mut entries = vec![e];
            let mut tx = self.store().begin().await?;
            tx.check_current_kek(current_kek).await?;
            tx.insert_key(&row).await?;
            if let Some(p) = predecessor {
                tx.set_key_successor(p.id, id).await?;
                entries.push(entry(
                    actor,
                    "key.rotated",
                    &format!("key:{}", p.id),
                    json!({ "successor": id.to_string(), "successor_version": version }),
                )?);
            }
            if let Some(p) = predecessor.filter(|p| p.state != KeyState::Compromised) {
                tx.set_key_state(p.id, p.state, KeyState::Deactivated)
                    .await?;
                entries.push(entry(
                    actor,
                    "key.state_changed",
                    &format!("key:{}", p.id),
                    json!({
                        "from": p.state.as_str(),
                        "to": KeyState::Deactivated.as_str(),
                        "reason": "rotated",
                        "successor": id.to_string(),
                        "successor_version": version,
                    }),
                )?);
            }
            let records = tx.commit(&entries, now).await?;
            Ok::<_, ServiceError>((row, records))
        }
        .await;
        match stored {
            Ok((row, records)) => {
                opened.loaded.insert(id, key_ref);
                drop(vault);
                self.after_commit(&records).await;
                Ok(row)
            }
            Err(err) => {
                // Not persisted, so not kept: the in-memory copy goes too.
                let _ = opened.signer.remove(&key_ref);
                Err(err)
            }
        }
    }

    /// Creates an HD key: a fresh 24-word BIP-39 mnemonic, returned once for
    /// its paper backup; its seed sealed in the keystore; the account's xpub
    /// in the inventory for watch-only derivation of deposit addresses.
    pub async fn create_hd_key(
        &self,
        actor: &Actor,
        new: NewHdKey,
    ) -> Result<(KeyRow, keys::hd::Mnemonic), ServiceError> {
        self.create_hd_key_from(actor, new, None, "").await
    }

    /// Creates an HD key from `mnemonic` (one brought from another wallet,
    /// its BIP-39 checksum already checked) or, without one, a fresh one;
    /// the seed is derived with `passphrase` (BIP-39's "25th word", empty
    /// for none) and only the seed is sealed. Neither the words nor the
    /// passphrase are recorded anywhere, the audit log included.
    pub async fn create_hd_key_from(
        &self,
        actor: &Actor,
        new: NewHdKey,
        mnemonic: Option<keys::hd::Mnemonic>,
        passphrase: &str,
    ) -> Result<(KeyRow, keys::hd::Mnemonic), ServiceError> {
        if new.algorithm == KeyAlgorithm::Ed25519 {
            return Err(ServiceError::Invalid(
                "Ed25519 HD keys (SLIP-10) derive hardened only and have no xpub; create single keys".into(),
            ));
        }
        check_cryptoperiod(new.cryptoperiod_days)?;
        keys::hd::check_account_path(&new.account_path)
            .map_err(|e| ServiceError::Invalid(format!("account path: {e}")))?;
        let (mnemonic, entropy) = match mnemonic {
            Some(m) => (m, "imported-mnemonic"),
            None => (
                keys::hd::Mnemonic::generate().map_err(|e| ServiceError::Invalid(e.to_string()))?,
                "os-csprng",
            ),
        };
        let seed = mnemonic.to_seed(passphrase);
        let xpub = keys::hd::xpub(&seed, &new.account_path, bip32_prefix())
            .map_err(|e| ServiceError::Invalid(format!("account path: {e}")))?;
        let mut vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &mut *vault else {
            return Err(ServiceError::Sealed);
        };
        let id = KeyId::from_uuid(uuid::Uuid::now_v7());
        let id_text = id.to_string();
        let dek = random_secret()?;
        let kek = opened
            .keks
            .get(&opened.current_kek)
            .ok_or(ServiceError::Sealed)?;
        let material_sealed = envelope::seal(
            &dek,
            Binding {
                kind: "key",
                id: &id_text,
                version: 1,
            },
            seed.expose(),
        )?;
        let dek_sealed = envelope::wrap(
            kek,
            Binding {
                kind: "dek",
                id: &id_text,
                version: 1,
            },
            &dek,
        )?;
        let (row, e, now) = self.key_record(
            actor,
            Made {
                id,
                version: 1,
                purpose: new.purpose,
                algorithm: new.algorithm,
                backend: KeyBackend::Keystore,
                backend_ref: None,
                public_key: xpub,
                sealed: Some((opened.current_kek, dek_sealed, material_sealed)),
                hd_path: Some(new.account_path.clone()),
                entropy: entropy.into(),
                ceremony: "keystore-hd",
                cryptoperiod_days: new.cryptoperiod_days,
            },
        )?;
        let mut tx = self.store().begin().await?;
        tx.check_current_kek(opened.current_kek).await?;
        tx.insert_key(&row).await?;
        let records = tx.commit(&[e], now).await?;
        opened.seeds.insert(id, seed);
        drop(vault);
        self.after_commit(&records).await;
        Ok((row, mnemonic))
    }

    /// Creates a key inside the HSM: generated there, sensitive and
    /// non-extractable; the inventory keeps its token reference and public key.
    async fn create_hsm_key(&self, actor: &Actor, new: NewKey) -> Result<KeyRow, ServiceError> {
        let hsm = self.hsm().ok_or_else(|| {
            ServiceError::Invalid("no HSM is configured ([hsm] in the configuration)".into())
        })?;
        let key_ref = hsm
            .generate(algorithm(new.algorithm))
            .await
            .map_err(|e| match e {
                keys::KeyError::Unsupported(a) => {
                    ServiceError::Invalid(format!("the HSM cannot hold {a:?} keys"))
                }
                other => other.into(),
            })?;
        let public = hsm.public_key(&key_ref).await?;
        let id = KeyId::from_uuid(uuid::Uuid::now_v7());
        let entropy = format!("{}-token", hsm.backend());
        self.record_held_key(
            actor,
            &new,
            id,
            (KeyBackend::Pkcs11, key_ref.0),
            &public,
            &entropy,
        )
        .await
    }

    /// Records in the inventory a key whose material another backend holds
    /// (an HSM, signer nodes): its reference there and its public key.
    async fn record_held_key(
        &self,
        actor: &Actor,
        new: &NewKey,
        id: KeyId,
        (backend, backend_ref): (KeyBackend, String),
        public: &PublicKey,
        entropy: &str,
    ) -> Result<KeyRow, ServiceError> {
        let (row, e, now) = self.key_record(
            actor,
            Made {
                id,
                version: 1,
                purpose: new.purpose,
                algorithm: new.algorithm,
                backend,
                backend_ref: Some(backend_ref),
                public_key: public_hex(public),
                sealed: None,
                hd_path: None,
                entropy: entropy.to_owned(),
                ceremony: if backend == KeyBackend::Threshold {
                    "threshold"
                } else {
                    "hsm"
                },
                cryptoperiod_days: new.cryptoperiod_days,
            },
        )?;
        let mut tx = self.store().begin().await?;
        tx.insert_key(&row).await?;
        self.commit(tx, &[e], now).await?;
        Ok(row)
    }

    /// Creates a key among the signer nodes (a ceremony with all of them):
    /// the inventory keeps the nodes' name for it and its group key.
    async fn create_threshold_key(
        &self,
        actor: &Actor,
        new: NewKey,
        wallet: domain::WalletId,
    ) -> Result<KeyRow, ServiceError> {
        let t = self.threshold().cloned().ok_or_else(|| {
            ServiceError::Invalid("no signer nodes are configured ([threshold])".into())
        })?;
        if new.purpose != KeyPurpose::TransferSigning {
            return Err(ServiceError::Invalid(
                "threshold keys sign transfers only".into(),
            ));
        }
        let id = KeyId::from_uuid(uuid::Uuid::now_v7());
        // The nodes' key id: the inventory's, which they keep as the file
        // name of their share (letters, digits and hyphens).
        let key_ref = id.to_string();
        let (public, backend_ref) = t.create(new.algorithm, &key_ref, wallet).await?;
        self.record_held_key(
            actor,
            &new,
            id,
            (KeyBackend::Threshold, backend_ref),
            &public,
            "threshold-dkg",
        )
        .await
    }

    /// Moves a key through its lifecycle (NIST SP 800-57), audited.
    pub async fn set_key_state(
        &self,
        actor: &Actor,
        id: KeyId,
        to: KeyState,
    ) -> Result<KeyRow, ServiceError> {
        let key = self.store().key(id).await?;
        key.state
            .check_transition(to)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
        if to == KeyState::Destroyed && key.backend == KeyBackend::Threshold {
            // The shares are on the signer nodes; marking the key destroyed
            // here would not remove them.
            return Err(ServiceError::Invalid(
                "a threshold key's shares are on its signer nodes: their operators delete them \
                 (deactivate or declare it compromised here)"
                    .into(),
            ));
        }
        let e = entry(
            actor,
            "key.state_changed",
            &format!("key:{id}"),
            json!({ "from": key.state.as_str(), "to": to.as_str() }),
        )?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.set_key_state(id, key.state, to).await?;
        if to == KeyState::Destroyed {
            // Destroyed means gone: the sealed material too, not only the state.
            tx.destroy_key_material(id).await?;
        }
        let records = tx.commit(&[e], now).await?;
        if to == KeyState::Destroyed
            && let Vault::Unsealed(opened) = &mut *self.vault().lock().await
        {
            opened.seeds.remove(&id);
            if let Some(r) = opened.loaded.remove(&id) {
                let _ = opened.signer.remove(&r);
            }
        }
        self.after_commit(&records).await;
        Ok(self.store().key(id).await?)
    }

    /// Signs a challenge that names the key and the moment, and verifies the
    /// signature with an independent library. The challenge is
    /// domain-separated, so a self-test can never produce a signature that a
    /// chain would accept.
    pub async fn key_self_test(&self, actor: &Actor, id: KeyId) -> Result<SelfTest, ServiceError> {
        let key = self.store().key(id).await?;
        let now = self.now();
        let challenge = format!("strongroom/key-self-test/v1/{id}/{}", now.as_millis());
        let digest: [u8; 32] = Sha256::digest(challenge.as_bytes()).into();
        let request = match key.algorithm {
            KeyAlgorithm::EcdsaSecp256k1 => SignRequest::EcdsaDigest(digest),
            KeyAlgorithm::SchnorrBip340 => SignRequest::SchnorrDigest {
                digest,
                tweak: None,
            },
            KeyAlgorithm::Ed25519 => SignRequest::Ed25519Message(challenge.as_bytes()),
        };
        // HD keys sign with their first receive key (`…/0/0`), whose public
        // key is derived from the stored xpub: watch-only and seed agree.
        let child: &[u32] = if key.hd_path.is_some() { &[0, 0] } else { &[] };
        let (key, sig) = self
            .sign_as(id, None, key.purpose, child, request.clone())
            .await?;
        let public = match &key.hd_path {
            Some(_) => {
                let pk = keys::hd::derive_from_xpub(&key.public_key, child)
                    .map_err(|e| ServiceError::KeyNotUsable(e.to_string()))?;
                match key.algorithm {
                    KeyAlgorithm::SchnorrBip340 => {
                        let mut x = [0u8; 32];
                        x.copy_from_slice(&pk[1..]);
                        PublicKey::XOnly(x)
                    }
                    _ => PublicKey::Secp256k1(pk),
                }
            }
            None => parse_public(key.algorithm, &key.public_key)?,
        };
        keys::verify(&public, &request, &sig)
            .map_err(|e| ServiceError::KeyNotUsable(format!("self-test signature: {e}")))?;
        let signature = match sig {
            Signature::Ecdsa(s) => format!(
                "{}{}{:02x}",
                hex::encode(s.r),
                hex::encode(s.s),
                s.recovery_id
            ),
            Signature::Schnorr(b) | Signature::Ed25519(b) => hex::encode(b),
        };
        self.audit_subject(
            actor,
            "key.self_tested",
            &format!("key:{id}"),
            json!({ "challenge": challenge }),
        )
        .await?;
        Ok(SelfTest {
            challenge,
            public_key: key.public_key,
            signature,
        })
    }
}

impl Service {
    /// The inventory row of a new key and the audit record of its creation,
    /// at the present moment.
    pub(crate) fn key_record(
        &self,
        actor: &Actor,
        m: Made,
    ) -> Result<(KeyRow, Entry, domain::Timestamp), ServiceError> {
        check_cryptoperiod(m.cryptoperiod_days)?;
        let now = self.now();
        let expires_at = now
            .checked_add_millis(i64::from(m.cryptoperiod_days) * 86_400_000)
            .ok_or_else(|| ServiceError::Invalid("cryptoperiod overflows".into()))?;
        let (kek_version, dek_sealed, material_sealed) = match m.sealed {
            Some((k, d, s)) => (Some(k), Some(d), Some(s)),
            None => (None, None, None),
        };
        let row = KeyRow {
            id: m.id,
            version: m.version,
            purpose: m.purpose,
            algorithm: m.algorithm,
            backend: m.backend,
            backend_ref: m.backend_ref,
            state: KeyState::Active,
            public_key: m.public_key,
            provenance: audit::canonical_json(&json!({
                "created_by": actor.to_string(),
                "created_at_ms": now.as_millis(),
                "entropy": m.entropy,
                "ceremony": m.ceremony,
            }))?,
            kek_version,
            dek_sealed,
            material_sealed,
            created_at: now,
            expires_at,
            hd_path: m.hd_path,
        };
        let e = entry(
            actor,
            "key.created",
            &format!("key:{}", row.id),
            json!({
                "purpose": row.purpose.as_str(),
                "algorithm": row.algorithm.as_str(),
                "backend": row.backend.as_str(),
                "backend_ref": row.backend_ref,
                "hd_path": row.hd_path,
                "public_key": row.public_key,
                "expires_at_ms": expires_at.as_millis(),
            }),
        )?;
        Ok((row, e, now))
    }
}

impl Service {
    /// Splits the root key again, into `shares` new unseal shares of which
    /// `threshold` rebuild it (the keystore must be unsealed here). The old
    /// shares' tags are replaced: this server refuses them from now on.
    /// The root itself is unchanged, so an old share set still rebuilds it
    /// offline: when shares may have been stolen, not merely lost, this is
    /// not enough (see docs/runbooks/lost-unseal-share-holder.md).
    pub async fn reshare_unseal(
        &self,
        actor: &Actor,
        threshold: u8,
        shares: u8,
    ) -> Result<Vec<keys::shamir::UnsealShare>, ServiceError> {
        let vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &*vault else {
            return Err(ServiceError::Sealed);
        };
        let split = keys::shamir::split(opened.keystore_id, &opened.root, threshold, shares)?;
        let tags = split
            .iter()
            .map(keys::shamir::share_tag)
            .collect::<Result<Vec<_>, _>>()?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.replace_share_tags(threshold, &tags).await?;
        let e = entry(
            actor,
            "keystore.reshared",
            &format!("keystore:{}", hex::encode(opened.keystore_id)),
            json!({ "threshold": threshold, "shares": shares,
                    "old_shares": "refused from now on" }),
        )?;
        let records = tx.commit(&[e], now).await?;
        drop(vault);
        self.after_commit(&records).await;
        Ok(split)
    }
}
