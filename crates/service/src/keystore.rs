//! The sealed keystore in a running service: initialisation, unsealing with
//! a quorum of shares, sealing, and the key inventory with its lifecycle.
//!
//! While sealed, the service holds no key material at all. Unsealed, it holds
//! the root key, the key-encryption keys and the opened keystore keys in
//! memory, in types that zeroize on drop; sealing drops them all.

use std::collections::HashMap;

use audit::Entry;
use domain::{Actor, KeyAlgorithm, KeyBackend, KeyId, KeyPurpose, KeyState};
use keys::envelope::{self, Binding};
use keys::shamir::{self, Progress, Unseal, UnsealShare};
use keys::{
    Algorithm, KeyRef, PublicKey, Secret32, SignRequest, Signature, Signer, SoftwareSigner,
};
use serde_json::json;
use sha2::{Digest, Sha256};
use storage::{KekRow, KeyRow, KeystoreRow};

use crate::record::entry;
use crate::service::{Service, ServiceError};
pub use crate::vault::SealStatus;
use crate::vault::{Opened, Vault, status};

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

fn keystore_hex(id: &[u8; 16]) -> String {
    hex::encode(id)
}

fn kek_binding(keystore: &str, version: u32) -> Binding<'_> {
    Binding {
        kind: "kek",
        id: keystore,
        version,
    }
}

fn algorithm(a: KeyAlgorithm) -> Algorithm {
    match a {
        KeyAlgorithm::EcdsaSecp256k1 => Algorithm::EcdsaSecp256k1,
        KeyAlgorithm::SchnorrBip340 => Algorithm::SchnorrBip340,
        KeyAlgorithm::Ed25519 => Algorithm::Ed25519,
    }
}

fn public_hex(p: &PublicKey) -> String {
    match p {
        PublicKey::Secp256k1(b) => hex::encode(b),
        PublicKey::XOnly(b) | PublicKey::Ed25519(b) => hex::encode(b),
    }
}

fn random16() -> Result<[u8; 16], ServiceError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|_| ServiceError::Invalid("random number generator failed".into()))?;
    Ok(b)
}

fn random_secret() -> Result<Secret32, ServiceError> {
    Secret32::random().map_err(|_| ServiceError::Invalid("random number generator failed".into()))
}

impl Service {
    /// Where the keystore stands. Notices a keystore initialised by another
    /// process (`strongroom init`) since the last look.
    pub async fn seal_status(&self) -> Result<SealStatus, ServiceError> {
        let mut vault = self.vault().lock().await;
        self.refresh(&mut vault).await?;
        Ok(status(&vault))
    }

    async fn refresh(&self, vault: &mut Vault) -> Result<(), ServiceError> {
        if matches!(vault, Vault::Uninitialized)
            && let Some(k) = self.store().keystore().await?
        {
            *vault = Vault::Sealed(Unseal::new(k.keystore_id, k.threshold));
        }
        Ok(())
    }

    /// Creates the keystore: a root key from the OS CSPRNG, split into
    /// `shares` unseal shares of which `threshold` rebuild it, and a first
    /// KEK sealed under it. Returns the shares, to be handed to their holders;
    /// they are not kept anywhere. The keystore starts sealed.
    pub async fn init_keystore(
        &self,
        actor: &Actor,
        threshold: u8,
        shares: u8,
    ) -> Result<Vec<UnsealShare>, ServiceError> {
        let mut vault = self.vault().lock().await;
        self.refresh(&mut vault).await?;
        if !matches!(*vault, Vault::Uninitialized) {
            return Err(ServiceError::AlreadyInitialized);
        }
        let keystore_id = random16()?;
        let root = random_secret()?;
        let kek = random_secret()?;
        let id_hex = keystore_hex(&keystore_id);
        let split = shamir::split(keystore_id, &root, threshold, shares)?;
        let sealed = envelope::wrap(&root, kek_binding(&id_hex, 1), &kek)?;
        let now = self.now();
        let row = KeystoreRow {
            keystore_id,
            threshold,
            shares,
            current_kek: 1,
            created_at: now,
            created_by: actor.to_string(),
        };
        let kek_row = KekRow {
            version: 1,
            sealed,
            created_at: now,
        };
        let mut tx = self.store().begin().await?;
        tx.insert_keystore(&row, &kek_row).await?;
        let e = entry(
            actor,
            "keystore.initialized",
            &format!("keystore:{id_hex}"),
            json!({ "threshold": threshold, "shares": shares, "kek_version": 1 }),
        )?;
        self.commit(tx, &[e], now).await?;
        *vault = Vault::Sealed(Unseal::new(keystore_id, threshold));
        Ok(split)
    }

    /// Takes one unseal share. Every attempt is audited, refused or not.
    pub async fn unseal(
        &self,
        actor: &Actor,
        share: &UnsealShare,
    ) -> Result<SealStatus, ServiceError> {
        let mut vault = self.vault().lock().await;
        self.refresh(&mut vault).await?;
        let unseal = match &mut *vault {
            Vault::Uninitialized => return Err(ServiceError::NotInitialized),
            Vault::Unsealed(_) => return Ok(SealStatus::Unsealed),
            Vault::Sealed(u) => u,
        };
        let progress = match unseal.give(share) {
            Ok(p) => p,
            Err(e) => {
                self.audit(
                    actor,
                    "keystore.unseal_refused",
                    json!({ "reason": e.to_string() }),
                )
                .await?;
                return Err(e.into());
            }
        };
        let root = match progress {
            Progress::Partial { have, need } => {
                self.audit(
                    actor,
                    "keystore.unseal_progress",
                    json!({ "have": have, "need": need }),
                )
                .await?;
                return Ok(SealStatus::Sealed { have, need });
            }
            Progress::Complete(root) => root,
        };
        match self.open(root).await {
            Ok((opened, unreadable)) => {
                self.audit(
                    actor,
                    "keystore.unsealed",
                    json!({
                        "keys": opened.loaded.len() + opened.seeds.len(),
                        "unreadable_keys": unreadable
                    }),
                )
                .await?;
                *vault = Vault::Unsealed(Box::new(opened));
                Ok(SealStatus::Unsealed)
            }
            Err(e) => {
                self.audit(
                    actor,
                    "keystore.unseal_failed",
                    json!({ "reason": e.to_string() }),
                )
                .await?;
                Err(e)
            }
        }
    }

    /// Opens the keystore with a candidate root key: every KEK, then every
    /// keystore key. Keys whose stored material does not open are left out
    /// and named (they cannot sign); a root key that opens no KEK is refused.
    async fn open(&self, root: Secret32) -> Result<(Opened, Vec<String>), ServiceError> {
        let ks = self
            .store()
            .keystore()
            .await?
            .ok_or(ServiceError::NotInitialized)?;
        let id_hex = keystore_hex(&ks.keystore_id);
        let mut keks = HashMap::new();
        for row in self.store().keks().await? {
            let kek = envelope::unwrap(&root, kek_binding(&id_hex, row.version), &row.sealed)
                .map_err(|_| ServiceError::WrongShares)?;
            keks.insert(row.version, kek);
        }
        if !keks.contains_key(&ks.current_kek) {
            return Err(ServiceError::WrongShares);
        }
        let signer = SoftwareSigner::new();
        let mut loaded = HashMap::new();
        let mut seeds = HashMap::new();
        let mut unreadable = Vec::new();
        for key in self.store().keys().await? {
            if key.backend != KeyBackend::Keystore || key.state == KeyState::Destroyed {
                continue;
            }
            if key.hd_path.is_some() {
                match open_sealed(&keks, &key).and_then(|b| {
                    keys::hd::Seed::from_bytes(&b)
                        .map_err(|e| ServiceError::KeyNotUsable(e.to_string()))
                }) {
                    Ok(seed) => {
                        seeds.insert(key.id, seed);
                    }
                    Err(e) => {
                        tracing::error!(key = %key.id, error = %e, "HD seed does not open");
                        unreadable.push(key.id.to_string());
                    }
                }
                continue;
            }
            match open_material(&keks, &key).and_then(|secret| {
                signer
                    .import(algorithm(key.algorithm), secret)
                    .map_err(ServiceError::from)
            }) {
                Ok(r) => {
                    loaded.insert(key.id, r);
                }
                Err(e) => {
                    tracing::error!(key = %key.id, error = %e, "key material does not open");
                    unreadable.push(key.id.to_string());
                }
            }
        }
        Ok((
            Opened {
                keystore_id: ks.keystore_id,
                threshold: ks.threshold,
                root,
                keks,
                current_kek: ks.current_kek,
                signer,
                loaded,
                seeds,
            },
            unreadable,
        ))
    }

    /// Turns auto-unseal on: the root key (in memory while unsealed) is
    /// wrapped under a new AES key inside the HSM and stored. From then on the
    /// server can unseal itself at start while the HSM is reachable; shares
    /// still work, and the wrapped root is useless without the token.
    pub async fn enable_auto_unseal(&self, actor: &Actor) -> Result<(), ServiceError> {
        let wrapper = self
            .wrapper()
            .ok_or_else(|| {
                ServiceError::Invalid(
                    "auto-unseal needs an HSM ([hsm] in the configuration)".into(),
                )
            })?
            .clone();
        let vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &*vault else {
            return Err(ServiceError::Sealed);
        };
        let key = wrapper.create_wrapping_key()?;
        let aad = auto_unseal_aad(&opened.keystore_id);
        let sealed = wrapper.wrap(&key, &aad, opened.root.expose())?;
        let now = self.now();
        let e = entry(
            actor,
            "keystore.auto_unseal_enabled",
            "keystore",
            json!({ "hsm_key": key.0 }),
        )?;
        let mut tx = self.store().begin().await?;
        tx.set_auto_unseal(&key.0, &sealed).await?;
        let records = tx.commit(&[e], now).await?;
        drop(vault);
        self.after_commit(&records).await;
        Ok(())
    }

    /// Unseals with the root key wrapped in the HSM, if auto-unseal is on.
    /// Returns whether it did. Failures are audited like any unseal.
    pub async fn auto_unseal(&self, actor: &Actor) -> Result<bool, ServiceError> {
        let Some(wrapper) = self.wrapper().cloned() else {
            return Ok(false);
        };
        let Some((key_ref, sealed)) = self.store().auto_unseal().await? else {
            return Ok(false);
        };
        let mut vault = self.vault().lock().await;
        self.refresh(&mut vault).await?;
        if !matches!(*vault, Vault::Sealed(_)) {
            return Ok(matches!(*vault, Vault::Unsealed(_)));
        }
        let ks = self
            .store()
            .keystore()
            .await?
            .ok_or(ServiceError::NotInitialized)?;
        let opened = async {
            let root =
                wrapper.unwrap(&KeyRef(key_ref), &auto_unseal_aad(&ks.keystore_id), &sealed)?;
            let mut bytes: [u8; 32] = root[..].try_into().map_err(|_| ServiceError::WrongShares)?;
            self.open(Secret32::from_bytes(&mut bytes)).await
        }
        .await;
        match opened {
            Ok((opened, unreadable)) => {
                self.audit(
                    actor,
                    "keystore.unsealed",
                    json!({ "via": "hsm", "keys": opened.loaded.len() + opened.seeds.len(), "unreadable_keys": unreadable }),
                )
                .await?;
                *vault = Vault::Unsealed(Box::new(opened));
                Ok(true)
            }
            Err(e) => {
                self.audit(
                    actor,
                    "keystore.unseal_failed",
                    json!({ "via": "hsm", "reason": e.to_string() }),
                )
                .await?;
                Err(e)
            }
        }
    }

    /// Discards the shares given so far.
    pub async fn unseal_reset(&self, actor: &Actor) -> Result<SealStatus, ServiceError> {
        let mut vault = self.vault().lock().await;
        self.refresh(&mut vault).await?;
        if let Vault::Sealed(u) = &mut *vault {
            u.reset();
            self.audit(actor, "keystore.unseal_reset", json!({}))
                .await?;
        }
        Ok(status(&vault))
    }

    /// Seals: all key material leaves memory (zeroized) at once, with no
    /// I/O before it, so a failing database cannot keep keys open. The audit
    /// record follows; if it cannot be written the keystore stays sealed and
    /// the error is returned.
    pub async fn seal(&self, actor: &Actor) -> Result<(), ServiceError> {
        let mut vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &*vault else {
            return Err(ServiceError::Sealed);
        };
        let (id, threshold) = (opened.keystore_id, opened.threshold);
        *vault = Vault::Sealed(Unseal::new(id, threshold));
        drop(vault);
        self.audit(actor, "keystore.sealed", json!({})).await
    }

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
        old.state
            .check_transition(KeyState::Deactivated)
            .map_err(|e| ServiceError::Invalid(e.to_string()))?;
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
        if new.algorithm == KeyAlgorithm::Ed25519 {
            return Err(ServiceError::Invalid(
                "Ed25519 HD keys (SLIP-10) derive hardened only and have no xpub; create single keys".into(),
            ));
        }
        check_cryptoperiod(new.cryptoperiod_days)?;
        let mnemonic =
            keys::hd::Mnemonic::generate().map_err(|e| ServiceError::Invalid(e.to_string()))?;
        let seed = mnemonic.to_seed("");
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
                entropy: "os-csprng".into(),
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

    /// Signs with a keystore key for `purpose`, refusing a key that is not
    /// active, past its cryptoperiod, or made for another purpose.
    pub(crate) async fn sign_as(
        &self,
        id: KeyId,
        wallet: Option<domain::WalletId>,
        purpose: KeyPurpose,
        child: &[u32],
        request: SignRequest<'_>,
    ) -> Result<(KeyRow, Signature), ServiceError> {
        self.sign_checked(id, wallet, purpose, child, request, None)
            .await
    }

    /// [`Service::sign_as`], with what a threshold key's signer nodes check
    /// before they sign (`subject`: the transaction and the approvals of
    /// what it pays). Threshold keys sign nothing without it.
    pub(crate) async fn sign_checked(
        &self,
        id: KeyId,
        wallet: Option<domain::WalletId>,
        purpose: KeyPurpose,
        child: &[u32],
        request: SignRequest<'_>,
        subject: Option<&keys_mpc::cosign::Subject>,
    ) -> Result<(KeyRow, Signature), ServiceError> {
        // The vault lock first, then the key's row: a suspension or a
        // compromise committed before this point stops this signature.
        let mut vault = self.vault().lock().await;
        let key = self.signable(&vault, id, wallet, purpose).await?;
        if key.backend == KeyBackend::Threshold {
            // The signer nodes take a network round trip (more when a
            // presignature must be made first): not under the vault lock,
            // which seals and freezes wait for. What changed meanwhile is
            // seen by the same checks after the signature, under the lock
            // again: then the signature is dropped.
            drop(vault);
            let sig = self.sign_threshold(&key, subject, request).await?;
            let vault = self.vault().lock().await;
            self.signable(&vault, id, wallet, purpose).await?;
            drop(vault);
            return Ok((key, sig));
        }
        let Vault::Unsealed(opened) = &mut *vault else {
            return Err(ServiceError::Sealed);
        };
        let sig = match key.backend {
            KeyBackend::Keystore if key.hd_path.is_some() => {
                let seed = opened.seeds.get(&id).ok_or_else(|| {
                    ServiceError::KeyNotUsable(format!("key {id} seed is unreadable"))
                })?;
                let path = child_path(key.hd_path.as_deref().unwrap_or("m"), child);
                let secret = keys::hd::derive_secp256k1(seed, &path)
                    .map_err(|e| ServiceError::KeyNotUsable(e.to_string()))?;
                // Derived for this one signature, then forgotten (zeroized).
                let r = opened.signer.import(algorithm(key.algorithm), secret)?;
                let sig = opened.signer.sign(&r, request).await;
                opened.signer.remove(&r)?;
                sig?
            }
            KeyBackend::Keystore => {
                let r = opened.loaded.get(&id).ok_or_else(|| {
                    ServiceError::KeyNotUsable(format!("key {id} material is unreadable"))
                })?;
                opened.signer.sign(r, request).await?
            }
            KeyBackend::Pkcs11 => {
                let hsm = self.hsm().ok_or_else(|| {
                    ServiceError::KeyNotUsable(format!(
                        "key {id} is in an HSM that is not configured"
                    ))
                })?;
                let r = KeyRef(key.backend_ref.clone().ok_or_else(|| {
                    ServiceError::KeyNotUsable(format!("key {id} has no HSM reference"))
                })?);
                hsm.sign(&r, request).await?
            }
            // Handled above, without the vault lock.
            KeyBackend::Threshold => {
                return Err(ServiceError::KeyNotUsable(format!(
                    "key {id}: threshold keys sign through their nodes"
                )));
            }
        };
        Ok((key, sig))
    }

    /// The signing gate, under the vault lock: the key's row read now, the
    /// right purpose, active, within its cryptoperiod, its wallet and it
    /// not frozen (a freeze takes the same lock), the system unsealed.
    async fn signable(
        &self,
        vault: &Vault,
        id: KeyId,
        wallet: Option<domain::WalletId>,
        purpose: KeyPurpose,
    ) -> Result<KeyRow, ServiceError> {
        let key = self.store().key(id).await?;
        if key.purpose != purpose {
            return Err(ServiceError::KeyNotUsable(format!(
                "key {id} is for {}, not {}",
                key.purpose, purpose
            )));
        }
        if !key.state.may_sign() {
            return Err(ServiceError::KeyNotUsable(format!(
                "key {id} is {}",
                key.state
            )));
        }
        if self.now() >= key.expires_at {
            return Err(ServiceError::KeyNotUsable(format!(
                "key {id} is past its cryptoperiod"
            )));
        }
        if purpose == KeyPurpose::TransferSigning {
            self.ensure_not_frozen(wallet, Some(id)).await?;
        }
        // A sealed system signs nothing, whichever backend holds the key.
        if !matches!(*vault, Vault::Unsealed(_)) {
            return Err(ServiceError::Sealed);
        }
        Ok(key)
    }

    /// A signature by a threshold key's signer nodes, which check
    /// `subject` themselves; nothing is signed without one.
    async fn sign_threshold(
        &self,
        key: &KeyRow,
        subject: Option<&keys_mpc::cosign::Subject>,
        request: SignRequest<'_>,
    ) -> Result<Signature, ServiceError> {
        let id = key.id;
        let t = self.threshold().ok_or_else(|| {
            ServiceError::KeyNotUsable(format!(
                "key {id} is held by signer nodes that are not configured"
            ))
        })?;
        let subject = subject.ok_or_else(|| {
            ServiceError::KeyNotUsable(format!(
                "key {id} is a threshold key: its signers sign only transactions they check"
            ))
        })?;
        let key_ref = key.backend_ref.clone().ok_or_else(|| {
            ServiceError::KeyNotUsable(format!("key {id} has no signer reference"))
        })?;
        let public = hex::decode(&key.public_key)
            .map_err(|_| ServiceError::KeyNotUsable("stored public key".into()))?;
        let sig = match request {
            SignRequest::EcdsaDigest(_) => {
                let pk: [u8; 33] = public
                    .try_into()
                    .map_err(|_| ServiceError::KeyNotUsable("stored public key".into()))?;
                t.sign_ecdsa(&key_ref, &pk, subject).await?
            }
            SignRequest::SchnorrDigest {
                digest,
                tweak: None,
            } => t.sign_taproot(&key_ref, &digest, subject).await?,
            other => {
                return Err(ServiceError::KeyNotUsable(format!(
                    "a threshold key signs no {:?} request",
                    other.algorithm()
                )));
            }
        };
        Ok(sig)
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

    /// Rotates the key-encryption key: a new KEK is sealed under the root key
    /// and made current; then every key wrapped under an older KEK is
    /// re-wrapped, one transaction each; then old KEKs no key uses are
    /// removed. Interrupted anywhere, every key stays readable, and running
    /// it again finishes the job.
    pub async fn rotate_kek(&self, actor: &Actor) -> Result<u32, ServiceError> {
        let mut vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &mut *vault else {
            return Err(ServiceError::Sealed);
        };
        let id_hex = keystore_hex(&opened.keystore_id);
        let from = opened.current_kek;
        let to = from
            .checked_add(1)
            .ok_or_else(|| ServiceError::Invalid("KEK versions exhausted".into()))?;
        let kek = random_secret()?;
        let sealed = envelope::wrap(&opened.root, kek_binding(&id_hex, to), &kek)?;
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.insert_kek(&KekRow {
            version: to,
            sealed,
            created_at: now,
        })
        .await?;
        tx.set_current_kek(from, to).await?;
        let e = entry(
            actor,
            "keystore.kek_rotated",
            &format!("keystore:{id_hex}"),
            json!({ "from": from, "to": to }),
        )?;
        tx.commit(&[e], now).await?;
        opened.keks.insert(to, kek);
        opened.current_kek = to;
        self.rewrap_all(opened, actor).await?;
        Ok(to)
    }

    /// Finishes a KEK rotation that was interrupted: re-wraps what is left
    /// and retires KEKs no key uses.
    pub async fn finish_kek_rotation(&self, actor: &Actor) -> Result<(), ServiceError> {
        let mut vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &mut *vault else {
            return Err(ServiceError::Sealed);
        };
        self.rewrap_all(opened, actor).await
    }

    /// Re-wraps every key not under the current KEK, then retires KEKs no key
    /// uses. A key whose data key does not open is skipped and audited, so
    /// one damaged key cannot hold every other key under an old KEK.
    async fn rewrap_all(&self, opened: &mut Opened, actor: &Actor) -> Result<(), ServiceError> {
        let to = opened.current_kek;
        let new_kek = opened.keks.get(&to).ok_or(ServiceError::Sealed)?;
        for key in self.store().keys().await? {
            let Some(from) = key.kek_version.filter(|&v| v != to) else {
                continue;
            };
            let (Some(old), Some(dek_sealed)) = (opened.keks.get(&from), key.dek_sealed.as_ref())
            else {
                continue;
            };
            let id_text = key.id.to_string();
            let binding = Binding {
                kind: "dek",
                id: &id_text,
                version: key.version,
            };
            let subject = format!("key:{}", key.id);
            let dek = match envelope::unwrap(old, binding, dek_sealed) {
                Ok(d) => d,
                Err(err) => {
                    tracing::error!(key = %key.id, error = %err, "data key does not open; not re-wrapped");
                    self.audit_subject(
                        actor,
                        "key.rewrap_failed",
                        &subject,
                        json!({ "from": from, "to": to }),
                    )
                    .await?;
                    continue;
                }
            };
            let rewrapped = envelope::wrap(new_kek, binding, &dek)?;
            let now = self.now();
            let mut tx = self.store().begin().await?;
            tx.rewrap_key(key.id, from, to, &rewrapped).await?;
            let e = entry(
                actor,
                "key.rewrapped",
                &subject,
                json!({ "from": from, "to": to }),
            )?;
            self.commit(tx, &[e], now).await?;
        }
        let old: Vec<u32> = opened.keks.keys().copied().filter(|&v| v != to).collect();
        for v in old {
            let now = self.now();
            let mut tx = self.store().begin().await?;
            match tx.delete_kek(v).await {
                Ok(()) => {}
                // Still wrapping a key that did not re-wrap: kept, so it opens.
                Err(storage::StorageError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
            let e = entry(
                actor,
                "keystore.kek_retired",
                "keystore",
                json!({ "version": v }),
            )?;
            self.commit(tx, &[e], now).await?;
            opened.keks.remove(&v);
        }
        Ok(())
    }

    async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        self.audit_subject(actor, action, "keystore", details).await
    }

    async fn audit_subject(
        &self,
        actor: &Actor,
        action: &str,
        subject: &str,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        let e = entry(actor, action, subject, details)?;
        let records = self.store().append_audit(&[e], self.now()).await?;
        self.after_commit(&records).await;
        Ok(())
    }
}

/// What differs between the ways a key is made (keystore, HD, HSM); its
/// inventory row and its audit record are built from it the same way.
struct Made {
    id: KeyId,
    version: u32,
    purpose: KeyPurpose,
    algorithm: KeyAlgorithm,
    backend: KeyBackend,
    backend_ref: Option<String>,
    public_key: String,
    /// KEK version, sealed data key, sealed material.
    sealed: Option<(u32, Vec<u8>, Vec<u8>)>,
    hd_path: Option<String>,
    entropy: String,
    ceremony: &'static str,
    cryptoperiod_days: u32,
}

fn check_cryptoperiod(days: u32) -> Result<(), ServiceError> {
    if !(1..=3650).contains(&days) {
        return Err(ServiceError::Invalid(
            "cryptoperiod must be 1 to 3650 days".into(),
        ));
    }
    Ok(())
}

impl Service {
    /// The inventory row of a new key and the audit record of its creation,
    /// at the present moment.
    fn key_record(
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

/// What the HSM-wrapped root key is bound to.
fn auto_unseal_aad(keystore_id: &[u8; 16]) -> Vec<u8> {
    format!("strongroom/auto-unseal/{}", keystore_hex(keystore_id)).into_bytes()
}

fn open_material(keks: &HashMap<u32, Secret32>, key: &KeyRow) -> Result<Secret32, ServiceError> {
    let plain = open_sealed(keks, key)?;
    let mut bytes: [u8; 32] = plain[..].try_into().map_err(|_| {
        ServiceError::KeyNotUsable(format!("key {} material has the wrong length", key.id))
    })?;
    Ok(Secret32::from_bytes(&mut bytes))
}

/// Opens a keystore key's sealed material: KEK → data key → material.
fn open_sealed(
    keks: &HashMap<u32, Secret32>,
    key: &KeyRow,
) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
    let missing = || ServiceError::KeyNotUsable(format!("key {} has no sealed material", key.id));
    let kek = keks
        .get(&key.kek_version.ok_or_else(missing)?)
        .ok_or_else(missing)?;
    let id = key.id.to_string();
    let dek = envelope::unwrap(
        kek,
        Binding {
            kind: "dek",
            id: &id,
            version: key.version,
        },
        key.dek_sealed.as_deref().ok_or_else(missing)?,
    )?;
    Ok(envelope::open(
        &dek,
        Binding {
            kind: "key",
            id: &id,
            version: key.version,
        },
        key.material_sealed.as_deref().ok_or_else(missing)?,
    )?)
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

/// `path/c1/c2…` for non-hardened children below an account path.
fn child_path(account: &str, child: &[u32]) -> String {
    let mut p = account.to_owned();
    for c in child {
        p.push('/');
        p.push_str(&c.to_string());
    }
    p
}

/// Extended keys are written with the mainnet version bytes (`xpub`).
fn bip32_prefix() -> bip32::Prefix {
    bip32::Prefix::XPUB
}

impl Service {
    /// Seals a service secret (a TOTP seed, a webhook signing secret) under
    /// a key derived from the root key (HKDF-SHA256), bound to what it is
    /// and whose. Needs the keystore unsealed, like every use of it.
    pub(crate) async fn seal_service_secret(
        &self,
        kind: &str,
        id: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, ServiceError> {
        let vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &*vault else {
            return Err(ServiceError::Sealed);
        };
        let key = opened.service_secrets_key()?;
        Ok(envelope::seal(
            &key,
            Binding {
                kind,
                id,
                version: 1,
            },
            plain,
        )?)
    }

    /// Opens what [`Service::seal_service_secret`] sealed.
    pub(crate) async fn open_service_secret(
        &self,
        kind: &str,
        id: &str,
        sealed: &[u8],
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, ServiceError> {
        let vault = self.vault().lock().await;
        let Vault::Unsealed(opened) = &*vault else {
            return Err(ServiceError::Sealed);
        };
        let key = opened.service_secrets_key()?;
        Ok(envelope::open(
            &key,
            Binding {
                kind,
                id,
                version: 1,
            },
            sealed,
        )?)
    }
}
