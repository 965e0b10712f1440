//! The signing gate: the only way from an approved plan to a signature.
//!
//! A transfer-signing key signs nothing but a [`chain_eth::Approved`] or a
//! [`chain_btc::Approved`], which only the pure chain crates make, from the
//! decoded, digest-checked intents. The gate first checks that the paid
//! transfers' approvals still stand (core `approvals`: unexpired, keys in
//! force, approvers still in their groups; a transfer that lost them gives
//! its reservation back), then derives the digests from the approved plan, signs through the vault (seal, key state, purpose,
//! cryptoperiod, freezes), verifies each signature with a second library,
//! and accepts the signed bytes only if they are that very plan. When a
//! built plan is not what was approved, [`Service::refuse_to_sign`] (core `refusal`) is the
//! one refuse path for every chain: a history line on each transfer, one
//! audit record, a webhook event and a freeze of the wallet, in one
//! transaction.

use std::collections::HashMap;

use domain::{KeyId, KeyPurpose, WalletId};
use keys::{PublicKey, SignRequest, Signature, TapTweak};
use keys_mpc::cosign::{ApprovedTransfer, Subject};
use storage::KeyRow;

use crate::service::{Service, ServiceError};
use crate::vault::{Grounds, Permit};

/// The key that signs for an output: a single key, or an HD account key
/// and the (unhardened) child path below its account.
pub(crate) type Signer = (KeyId, Vec<u32>);

/// The child path below an HD key's account for sender `index`: the
/// external chain, `0/index`.
pub(crate) fn child_of(sender: &storage::EthSenderRow) -> Vec<u32> {
    child_at(sender.hd_index)
}

/// The child path of HD sender `index` (`0/index`, BIP-44's external
/// chain); none for a single key.
pub(crate) fn child_at(index: Option<u32>) -> Vec<u32> {
    index.map(|i| vec![0, i]).unwrap_or_default()
}

/// The compressed public key that signs for `sender`, from its key's row
/// (the key itself, or its account xpub's child).
pub(crate) fn sender_public_key(key: &KeyRow, child: &[u32]) -> Result<[u8; 33], ServiceError> {
    if child.is_empty() {
        return hex::decode(&key.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| storage::StorageError::Corrupt("public key".into()).into());
    }
    keys::hd::derive_from_xpub(&key.public_key, child)
        .map_err(|e| ServiceError::KeyNotUsable(e.to_string()))
}

impl Service {
    /// Signs an approved Ethereum plan with `sender`'s key (an HD key's
    /// child for an HD sender), once the
    /// approvals of the transfer it pays (`paying`) still stand. Threshold
    /// keys' nodes are shown `subject` and check it themselves.
    pub(crate) async fn sign_eth(
        &self,
        approved: &chain_eth::Approved,
        sender: &storage::EthSenderRow,
        subject: Option<&Subject>,
        paying: &[storage::TransferRow],
    ) -> Result<(KeyRow, chain_eth::SignedTx), ServiceError> {
        let child = child_of(sender);
        self.approvals_stand(paying).await?;
        // A cold wallet's transaction is never completed here: its sender
        // must be a key held outside (handed out before the gate).
        if self.is_cold(approved.wallet()).await? {
            return Err(ServiceError::KeyNotUsable(
                "a cold wallet's Ethereum sender signs offline: its key must be held outside"
                    .into(),
            ));
        }
        let request = SignRequest::EcdsaDigest(approved.signing_hash());
        // A sweep to a successor's address may be signed by a key no
        // longer in force (the vault checks whose address it is).
        let network = domain::Network::Evm {
            chain_id: approved.plan().chain_id,
        }
        .to_string();
        let to = approved.sweep_to().map(|a| a.to_lower_hex());
        let permit = match &to {
            Some(to) => Permit::Sweep {
                network: &network,
                to,
            },
            None => Permit::Ordinary,
        };
        let (row, sig) = self
            .sign_checked(
                sender.key_id,
                Some(approved.wallet()),
                KeyPurpose::TransferSigning,
                &child,
                request.clone(),
                Grounds { subject, permit },
            )
            .await?;
        // A second implementation (libsecp256k1) checks what the backend
        // made, with the public key of the sender (the HD child's).
        let pk = sender_public_key(&row, &child)?;
        keys::verify::verify(&PublicKey::Secp256k1(pk), &request, &sig).map_err(|e| {
            ServiceError::KeyNotUsable(format!("the signature does not verify: {e}"))
        })?;
        let Signature::Ecdsa(e) = sig else {
            return Err(ServiceError::KeyNotUsable("not an ECDSA signature".into()));
        };
        let signed = approved
            .finish(chain_eth::EcdsaParts {
                r: e.r,
                s: e.s,
                recovery_id: e.recovery_id,
            })
            .map_err(|e| ServiceError::NotApproved(e.to_string()))?;
        Ok((row, signed))
    }

    /// Signs every input of an approved Bitcoin transaction with its key
    /// (`keys_of`: by the spent script), and accepts the result only if
    /// Core's interpreter verifies it and it is the approved transaction.
    /// `transfers`: what it pays, with approvals, for threshold keys' nodes;
    /// `paying`: their rows, whose approvals must still stand.
    ///
    /// A multisig account's inputs are signed by its cosigners the server
    /// holds, up to its threshold; external keys sign offline. A cold
    /// wallet's transaction is never completed here: the server makes at
    /// most threshold − 1 of an input's signatures (none for a single
    /// external key), so an offline signature is always needed. What
    /// cannot be completed here comes back [`BtcSigned::Partial`], with
    /// the signatures made (each verified as it entered).
    pub(crate) async fn sign_btc(
        &self,
        network: &str,
        approved: &chain_btc::Approved,
        keys_of: &HashMap<String, Signer>,
        transfers: &[ApprovedTransfer],
        paying: &[storage::TransferRow],
    ) -> Result<BtcSigned, ServiceError> {
        self.approvals_stand(paying).await?;
        let cold = self.is_cold(approved.wallet()).await?;
        let mut who = Cosigning::default();
        // A signature that does not verify, or a transaction Core refuses,
        // is the backend's failure (retried), not a plan that differs.
        let btc = |e: chain_btc::BtcError| ServiceError::Btc(crate::error::BtcServiceError::Tx(e));
        let plan = approved.plan();
        let mut signed = approved.psbt().clone();
        // A sweep to a successor's address may be signed by a key no
        // longer in force (the vault checks whose address it is).
        let permit = match approved.sweep_to() {
            Some(to) => Permit::Sweep { network, to },
            None => Permit::Ordinary,
        };
        for t in approved.signing_tasks().map_err(btc)? {
            let mut subject = None;
            let (input, request) = match t {
                chain_btc::SigningTask::Ecdsa { input, digest, .. } => {
                    (input, SignRequest::EcdsaDigest(digest))
                }
                chain_btc::SigningTask::Schnorr { input, digest, .. } => (
                    input,
                    SignRequest::SchnorrDigest {
                        digest,
                        tweak: Some(TapTweak::NoScripts),
                    },
                ),
                // A threshold key: its nodes derive the sighash themselves
                // from the transaction, and check what it pays.
                chain_btc::SigningTask::SchnorrOutput { input, digest, .. } => {
                    subject = Some(taproot_subject(approved.psbt(), input, transfers)?);
                    (
                        input,
                        SignRequest::SchnorrDigest {
                            digest,
                            tweak: None,
                        },
                    )
                }
            };
            let spend = &plan
                .inputs
                .get(input)
                .ok_or_else(|| ServiceError::NotApproved(format!("no input {input}")))?
                .spend;
            let spk = spend.script_pubkey().map_err(btc)?.to_hex_string();
            let (key, child) = keys_of.get(&spk).ok_or_else(|| {
                ServiceError::NotApproved(format!("no key of the wallet spends input {input}"))
            })?;
            let Some(key) = who.signer(self, (*key, spend), &t, cold).await? else {
                continue; // signed offline, or enough signatures here
            };
            let (_, sig) = self
                .sign_checked(
                    key,
                    Some(approved.wallet()),
                    KeyPurpose::TransferSigning,
                    child,
                    request,
                    Grounds {
                        subject: subject.as_ref(),
                        permit,
                    },
                )
                .await?;
            // Each signature is checked by libsecp256k1 as it enters.
            match sig {
                Signature::Ecdsa(e) => {
                    let mut rs = [0u8; 64];
                    rs[..32].copy_from_slice(&e.r);
                    rs[32..].copy_from_slice(&e.s);
                    chain_btc::add_ecdsa(&mut signed, &t, &rs).map_err(btc)?;
                }
                Signature::Schnorr(s) => {
                    chain_btc::add_schnorr(&mut signed, &t, &s).map_err(btc)?;
                }
                Signature::Ed25519(_) => {
                    return Err(ServiceError::KeyNotUsable(
                        "an Ed25519 signature for a Bitcoin input".into(),
                    ));
                }
            }
        }
        if let Some(missing) = who.missing(cold)? {
            return Ok(BtcSigned::Partial {
                psbt: signed,
                made: who.made.values().sum(),
                missing,
            });
        }
        // Core's interpreter verifies every input; the result must be the plan.
        approved.accept(signed).map(BtcSigned::Whole).map_err(btc)
    }

    /// Whether governance placed the wallet in the cold tier (from the
    /// verified log; no governance, no tiers).
    pub(crate) async fn is_cold(&self, wallet: WalletId) -> Result<bool, ServiceError> {
        match self.gov().await {
            Ok(g) => Ok(g.tier(wallet) == policy::Tier::Cold.as_str()),
            Err(ServiceError::GovernanceNotConfigured) => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// A Bitcoin transaction through the gate: whole (signed, verified by
/// Core's interpreter, the approved plan), or waiting for offline
/// signatures (a cold wallet's, a multisig account's external cosigners).
#[derive(Debug)]
pub(crate) enum BtcSigned {
    Whole(bitcoin::Transaction),
    /// The plan's PSBT with the signatures the server made (`made`);
    /// `missing` more are needed from keys held outside.
    Partial {
        psbt: bitcoin::Psbt,
        made: usize,
        missing: usize,
    },
}

/// Who signs each input of one transaction: a key of the server, a
/// multisig account's cosigners, or someone offline.
#[derive(Default)]
struct Cosigning {
    /// Per input: signatures the server made.
    made: HashMap<usize, usize>,
    /// Per input: signatures it needs (a multisig account's threshold).
    needed: HashMap<usize, usize>,
    /// Per input: the account key that spends it.
    inputs: HashMap<usize, KeyId>,
    rows: HashMap<KeyId, (KeyRow, Option<crate::cosigners::Multisig>)>,
}

impl Cosigning {
    /// The key that makes `task`'s signature here, or none: an external
    /// key (it signs offline), or an input already signed as far as the
    /// server may (its threshold; one fewer in a cold wallet).
    async fn signer(
        &mut self,
        svc: &Service,
        (key, spend): (KeyId, &chain_btc::Spend),
        task: &chain_btc::SigningTask,
        cold: bool,
    ) -> Result<Option<KeyId>, ServiceError> {
        if let std::collections::hash_map::Entry::Vacant(slot) = self.rows.entry(key) {
            let row = svc.store().key(key).await?;
            let ms = match row.backend {
                domain::KeyBackend::Multisig => Some(svc.multisig(&row).await?),
                _ => None,
            };
            slot.insert((row, ms));
        }
        let Some((row, ms)) = self.rows.get(&key) else {
            return Ok(None);
        };
        let input = task.input();
        let (threshold, signer) = match (ms, task) {
            (Some(ms), chain_btc::SigningTask::Ecdsa { pubkey, .. }) => {
                // The script spent is its account's, threshold and keys:
                // the count of signatures follows what is spent.
                if ms.spend()? != *spend {
                    return Err(ServiceError::NotApproved(format!(
                        "input {input}: its script is not its account's"
                    )));
                }
                let c = ms.cosigner(pubkey).ok_or_else(|| {
                    ServiceError::NotApproved(format!("input {input}: a key not of its multisig"))
                })?;
                (ms.threshold, c)
            }
            (Some(_), _) => {
                return Err(ServiceError::NotApproved(format!(
                    "input {input}: a multisig input takes ECDSA signatures only"
                )));
            }
            (None, _) => (1, row),
        };
        self.needed.insert(input, threshold);
        self.inputs.insert(input, key);
        let allowed = if cold {
            threshold.saturating_sub(1)
        } else {
            threshold
        };
        let made = self.made.entry(input).or_default();
        if signer.backend == domain::KeyBackend::External || *made >= allowed {
            return Ok(None);
        }
        *made += 1;
        Ok(Some(signer.id))
    }

    /// How many signatures must still come from outside, or none when the
    /// transaction is whole. An error when they cannot: a cold wallet's
    /// input with no key held offline, whose signatures the server alone
    /// would have to make.
    fn missing(&self, cold: bool) -> Result<Option<usize>, ServiceError> {
        let mut missing = 0;
        for (input, needed) in &self.needed {
            let made = self.made.get(input).copied().unwrap_or(0);
            let short = needed.saturating_sub(made);
            if short == 0 {
                continue;
            }
            let offline = self.offline_for(*input);
            if offline < short {
                return Err(ServiceError::KeyNotUsable(format!(
                    "input {input} needs {short} more signatures and only {offline} of its \
                     keys sign offline{}",
                    if cold {
                        " (a cold wallet's transaction needs a key held offline)"
                    } else {
                        ""
                    }
                )));
            }
            missing += short;
        }
        Ok((missing > 0).then_some(missing))
    }

    /// How many of the keys that may sign `input` are held offline.
    fn offline_for(&self, input: usize) -> usize {
        self.inputs
            .get(&input)
            .and_then(|k| self.rows.get(k))
            .map_or(0, |(row, ms)| match ms {
                Some(ms) => ms.offline(),
                None => usize::from(row.backend == domain::KeyBackend::External),
            })
    }
}

/// What a threshold key's signer nodes are shown for `input` of `psbt`.
fn taproot_subject(
    psbt: &bitcoin::Psbt,
    input: usize,
    transfers: &[ApprovedTransfer],
) -> Result<Subject, ServiceError> {
    let missing = || ServiceError::NotApproved("an input without its spent output".into());
    let prevouts = psbt
        .inputs
        .iter()
        .map(|i| {
            i.witness_utxo
                .as_ref()
                .map(|o| keys_mpc::cosign::Prevout {
                    value: o.value.to_sat(),
                    script_pubkey: hex::encode(o.script_pubkey.as_bytes()),
                })
                .ok_or_else(missing)
        })
        .collect::<Result<_, _>>()?;
    Ok(Subject::BitcoinTaproot {
        tx: hex::encode(bitcoin::consensus::serialize(&psbt.unsigned_tx)),
        prevouts,
        input: u32::try_from(input).map_err(|_| missing())?,
        transfers: transfers.to_vec(),
    })
}
