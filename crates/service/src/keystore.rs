//! The sealed keystore in a running service: initialisation, unsealing with
//! a quorum of shares, sealing, and the key inventory with its lifecycle.
//!
//! While sealed, the service holds no key material at all. Unsealed, it holds
//! the root key, the key-encryption keys and the opened keystore keys in
//! memory, in types that zeroize on drop; sealing drops them all.

use std::collections::HashMap;

use domain::{Actor, KeyBackend, KeyId, KeyPurpose, KeyState};
use keys::envelope::{self, Binding};
use keys::shamir::{self, Progress, Unseal, UnsealShare};
use keys::{KeyRef, PublicKey, Secret32, SignRequest, Signature, Signer, SoftwareSigner};
use serde_json::json;
use sha2::{Digest, Sha256};
use storage::{KekRow, KeyRow, KeystoreRow};

use crate::record::entry;
use crate::service::{Service, ServiceError};
pub use crate::vault::SealStatus;
use crate::vault::{Grounds, Opened, Permit, Vault, algorithm, open_material, open_sealed, status};

pub(crate) fn keystore_hex(id: &[u8; 16]) -> String {
    hex::encode(id)
}

pub(crate) fn kek_binding(keystore: &str, version: u32) -> Binding<'_> {
    Binding {
        kind: "kek",
        id: keystore,
        version,
    }
}

pub(crate) fn public_hex(p: &PublicKey) -> String {
    match p {
        PublicKey::Secp256k1(b) => hex::encode(b),
        PublicKey::XOnly(b) | PublicKey::Ed25519(b) => hex::encode(b),
    }
}

pub(crate) fn random16() -> Result<[u8; 16], ServiceError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b)
        .map_err(|_| ServiceError::Invalid("random number generator failed".into()))?;
    Ok(b)
}

pub(crate) fn random_secret() -> Result<Secret32, ServiceError> {
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

    pub(crate) async fn refresh(&self, vault: &mut Vault) -> Result<(), ServiceError> {
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
        let tags = split
            .iter()
            .map(shamir::share_tag)
            .collect::<Result<Vec<_>, _>>()?;
        let mut tx = self.store().begin().await?;
        tx.insert_keystore(&row, &kek_row).await?;
        tx.insert_share_tags(&tags).await?;
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
        Ok(self.unseal_giving(actor, share).await?.0)
    }

    /// [`Service::unseal`], with the token handed to whoever gave the first
    /// share of a round: with it (and only with it, or with the authority
    /// to seal) the round may be started over.
    pub async fn unseal_giving(
        &self,
        actor: &Actor,
        share: &UnsealShare,
    ) -> Result<(SealStatus, Option<String>), ServiceError> {
        let mut vault = self.vault().lock().await;
        self.refresh(&mut vault).await?;
        let unseal = match &mut *vault {
            Vault::Uninitialized => return Err(ServiceError::NotInitialized),
            Vault::Unsealed(_) => return Ok((SealStatus::Unsealed, None)),
            Vault::Sealed(u) => u,
        };
        // Only shares that were issued count (a keystore made before tags
        // were kept has none: any well-formed share of it is taken).
        let tags = self.store().share_tags().await?;
        if !tags.is_empty() {
            unseal.set_tags(tags);
        }
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
                let token = if have == 1 {
                    let token = hex::encode(random16()?);
                    unseal.set_starter(Sha256::digest(token.as_bytes()).into());
                    Some(token)
                } else {
                    None
                };
                self.audit(
                    actor,
                    "keystore.unseal_progress",
                    json!({ "have": have, "need": need }),
                )
                .await?;
                return Ok((SealStatus::Sealed { have, need }, token));
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
                let gov_key = opened.governance_mac_key()?;
                *vault = Vault::Unsealed(Box::new(opened));
                drop(vault);
                self.governance_unsealed(gov_key).await;
                Ok((SealStatus::Unsealed, None))
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
                let gov_key = opened.governance_mac_key()?;
                *vault = Vault::Unsealed(Box::new(opened));
                drop(vault);
                self.governance_unsealed(gov_key).await;
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
    pub(crate) async fn unseal_reset(
        &self,
        actor: &Actor,
        by: &str,
    ) -> Result<SealStatus, ServiceError> {
        let mut vault = self.vault().lock().await;
        self.refresh(&mut vault).await?;
        if let Vault::Sealed(u) = &mut *vault {
            u.reset();
            self.audit(actor, "keystore.unseal_reset", json!({ "by": by }))
                .await?;
        }
        Ok(status(&vault))
    }

    /// Starts the unseal over, by whoever gave this round's first share
    /// (their token); anyone else is refused (and audited), and the shares
    /// given so far stay.
    pub async fn unseal_reset_as_starter(&self, token: &str) -> Result<SealStatus, ServiceError> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let started =
            matches!(&*self.vault().lock().await, Vault::Sealed(u) if u.started_by(&hash));
        if !started {
            self.audit(
                &Actor::Anonymous,
                "keystore.unseal_reset_refused",
                json!({}),
            )
            .await?;
            return Err(crate::error::AuthError::Forbidden.into());
        }
        self.unseal_reset(&Actor::Anonymous, "starter").await
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
        self.set_governance_key(None);
        self.audit(actor, "keystore.sealed", json!({})).await
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
        let grounds = Grounds {
            subject: None,
            permit: Permit::Ordinary,
        };
        self.sign_checked(id, wallet, purpose, child, request, grounds)
            .await
    }

    /// [`Service::sign_as`], with its grounds: what a threshold key's
    /// signer nodes check before they sign (`subject`: the transaction and
    /// the approvals of what it pays; threshold keys sign nothing without
    /// it) and whether it is a sweep to the key's successor (which a key no
    /// longer in force may still sign).
    pub(crate) async fn sign_checked(
        &self,
        id: KeyId,
        wallet: Option<domain::WalletId>,
        purpose: KeyPurpose,
        child: &[u32],
        request: SignRequest<'_>,
        grounds: Grounds<'_>,
    ) -> Result<(KeyRow, Signature), ServiceError> {
        // A log that cannot be anchored by checkpoints moves no money.
        if let Some(why) = self.checkpointer().signing_stopped(self.now()) {
            return Err(ServiceError::SigningStopped(why));
        }
        // A bounded number at once: the rest wait their turn.
        let (turns, _) = self.signing_turns();
        let _turn = turns
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Sealed)?;
        let started = std::time::Instant::now();
        let signed = self
            .sign_unmetered(id, wallet, purpose, child, request, grounds)
            .await;
        let backend = match &signed {
            Ok((row, _)) => row.backend.as_str(),
            Err(_) => self
                .store()
                .key(id)
                .await
                .map_or("unknown", |row| row.backend.as_str()),
        };
        let seconds = started.elapsed().as_secs_f64();
        self.metrics()
            .signed(backend, &id.to_string(), signed.is_ok(), seconds);
        signed
    }

    async fn sign_unmetered(
        &self,
        id: KeyId,
        wallet: Option<domain::WalletId>,
        purpose: KeyPurpose,
        child: &[u32],
        request: SignRequest<'_>,
        grounds: Grounds<'_>,
    ) -> Result<(KeyRow, Signature), ServiceError> {
        let Grounds { subject, permit } = grounds;
        // The vault lock first, then the key's row: a suspension or a
        // compromise committed before this point stops this signature.
        let mut vault = self.vault().lock().await;
        let key = self.signable(&vault, id, wallet, purpose, permit).await?;
        if key.backend == KeyBackend::Threshold {
            // The signer nodes take a network round trip (more when a
            // presignature must be made first): not under the vault lock,
            // which seals and freezes wait for. What changed meanwhile is
            // seen by the same checks after the signature, under the lock
            // again: then the signature is dropped.
            drop(vault);
            let sig = self.sign_threshold(&key, subject, request).await?;
            let vault = self.vault().lock().await;
            self.signable(&vault, id, wallet, purpose, permit).await?;
            drop(vault);
            return Ok((key, sig));
        }
        let Vault::Unsealed(opened) = &mut *vault else {
            return Err(ServiceError::Sealed);
        };
        if key.backend == KeyBackend::Keystore {
            opened.open_if_new(&key)?;
        }
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
            // Never here: its holders sign offline; a multisig account's
            // cosigners sign, each with its own key.
            KeyBackend::External | KeyBackend::Multisig => {
                return Err(ServiceError::KeyNotUsable(format!(
                    "key {id} is {}: the server does not sign with it",
                    key.backend
                )));
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
    /// not frozen (a freeze takes the same lock), the system unsealed. A
    /// rotated (deactivated) or compromised key, or one past its
    /// cryptoperiod, signs only a sweep to its successor's address.
    pub(crate) async fn signable(
        &self,
        vault: &Vault,
        id: KeyId,
        wallet: Option<domain::WalletId>,
        purpose: KeyPurpose,
        permit: Permit<'_>,
    ) -> Result<KeyRow, ServiceError> {
        let key = self.store().key(id).await?;
        if key.purpose != purpose {
            return Err(ServiceError::KeyNotUsable(format!(
                "key {id} is for {}, not {}",
                key.purpose, purpose
            )));
        }
        let in_force = key.state.may_sign() && self.now() < key.expires_at;
        if !in_force && !self.sweeps_to_successor(&key, permit).await? {
            return Err(ServiceError::KeyNotUsable(if key.state.may_sign() {
                format!("key {id} is past its cryptoperiod")
            } else if key.state == KeyState::Compromised {
                format!("key {id} is compromised: it signs only sweeps to its successor")
            } else {
                format!("key {id} is {}", key.state)
            }));
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

    /// Whether `permit` is a sweep of `key`'s funds to an address of its
    /// successor (on Ethereum, or of a later one, up to
    /// [`MAX_SUCCESSORS`]), and `key` may still sign one (active, rotated
    /// or compromised; not suspended, destroyed or never activated).
    async fn sweeps_to_successor(
        &self,
        key: &KeyRow,
        permit: Permit<'_>,
    ) -> Result<bool, ServiceError> {
        let Permit::Sweep { network, to } = permit else {
            return Ok(false);
        };
        if !matches!(
            key.state,
            KeyState::Active | KeyState::Deactivated | KeyState::Compromised
        ) {
            return Ok(false);
        }
        // Its successor, and theirs after a later rotation (a deposit
        // address of a key rotated twice is swept to the newest account).
        let mut successors = Vec::new();
        let mut at = key.id;
        while successors.len() < MAX_SUCCESSORS {
            match self.store().key_successor(at).await? {
                Some(s) if s != key.id && !successors.contains(&s) => {
                    successors.push(s);
                    at = s;
                }
                _ => break,
            }
        }
        if successors.is_empty() {
            return Ok(false);
        }
        if matches!(network.parse(), Ok(domain::Network::Bitcoin(_))) {
            // The key's account there names its successor's address.
            return Ok(self
                .store()
                .btc_accounts_of_key(key.id)
                .await?
                .iter()
                .any(|a| a.network == network && a.successor_address.as_deref() == Some(to)));
        }
        Ok(match self.store().eth_sender(network, to).await {
            Ok(s) => successors.contains(&s.key_id),
            Err(storage::StorageError::NotFound { .. }) => false,
            Err(e) => return Err(e.into()),
        })
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

    pub(crate) async fn audit(
        &self,
        actor: &Actor,
        action: &str,
        details: serde_json::Value,
    ) -> Result<(), ServiceError> {
        self.audit_subject(actor, action, "keystore", details).await
    }

    pub(crate) async fn audit_subject(
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

/// What the HSM-wrapped root key is bound to.
pub(crate) fn auto_unseal_aad(keystore_id: &[u8; 16]) -> Vec<u8> {
    format!("strongroom/auto-unseal/{}", keystore_hex(keystore_id)).into_bytes()
}

/// `path/c1/c2…` for non-hardened children below an account path.
pub(crate) fn child_path(account: &str, child: &[u32]) -> String {
    let mut p = account.to_owned();
    for c in child {
        p.push('/');
        p.push_str(&c.to_string());
    }
    p
}

/// How far down a key's line of successors a sweep may go.
const MAX_SUCCESSORS: usize = 16;

/// Extended keys are written with the mainnet version bytes (`xpub`).
pub(crate) fn bip32_prefix() -> bip32::Prefix {
    bip32::Prefix::XPUB
}
