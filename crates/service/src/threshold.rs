//! Threshold keys as a wallet backend: shares held by separate signer
//! nodes (`strongroom signer`), which make keys together for one wallet and
//! sign together only what each of them checked itself (ADR 0013). The
//! server is their coordinator: it relays, keeps presignature pools warm,
//! and gives each request the transaction and the transfer's approvals.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use domain::{KeyAlgorithm, WalletId};
use keys::{EcdsaSignature, PublicKey, Signature};
use keys_mpc::cluster::{Cluster, ClusterError};
use keys_mpc::cosign::{Approval, ApprovedTransfer, Subject};
use keys_mpc::dkg::GroupPublic;

use crate::ServiceError;

/// The signer nodes this server coordinates.
#[derive(Debug)]
pub struct ThresholdKeys {
    cluster: Cluster,
    /// How many of the nodes sign (more than half of them).
    threshold: u16,
    /// Presignatures kept ready per ECDSA key.
    presignatures: usize,
    refilling: Mutex<HashSet<String>>,
    /// The last refusal written into each transfer's history (by this
    /// process): the resumer asks again every pass.
    noted: Mutex<std::collections::HashMap<String, String>>,
}

pub(crate) fn unavailable(e: ClusterError) -> ServiceError {
    match e {
        // The nodes' own checks refused: the request is not one they sign.
        ClusterError::Refused { index, reason, .. } => {
            ServiceError::SignersRefused(format!("signer {index}: {reason}"))
        }
        ClusterError::KeyFrozen { .. } | ClusterError::Incompatible { .. } => {
            ServiceError::KeyNotUsable(e.to_string())
        }
        // Not enough of them answered: no quorum now (retried).
        ClusterError::TooFew { .. }
        | ClusterError::Timeout { .. }
        | ClusterError::Unreachable { .. } => ServiceError::SignersUnavailable(e.to_string()),
        other => ServiceError::Key(keys::KeyError::Backend(other.to_string())),
    }
}

impl ThresholdKeys {
    pub fn new(cluster: Cluster, threshold: u16, presignatures: usize) -> ThresholdKeys {
        ThresholdKeys {
            cluster,
            threshold,
            presignatures,
            refilling: Mutex::default(),
            noted: Mutex::default(),
        }
    }

    /// Whether `why` differs from the last refusal noted for `transfer`.
    fn new_refusal(&self, transfer: &str, why: &str) -> bool {
        self.noted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(transfer)
            .is_none_or(|w| w != why)
    }

    fn noted(&self, transfer: &str, why: &str) {
        self.noted
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(transfer.to_owned(), why.to_owned());
    }

    /// Presignatures kept ready per ECDSA key.
    pub fn presignatures(&self) -> usize {
        self.presignatures
    }

    pub fn cluster(&self) -> &Cluster {
        &self.cluster
    }

    /// Tells the signer nodes this server's epoch (the time of its latest
    /// restore, from `service::recovery`): more than n − threshold of them
    /// must take it, so that those that did not cannot make a quorum for a
    /// server left over from before the restore.
    pub async fn announce_epoch(&self, epoch: u64) -> Result<(), ServiceError> {
        self.cluster.set_epoch(epoch);
        let took = self.cluster.announce_epoch().await;
        let n = self.cluster.signers().len();
        let needed = (n + 1).saturating_sub(usize::from(self.threshold));
        if took.len() < needed {
            return Err(ServiceError::KeyNotUsable(format!(
                "only {} of {n} signer nodes took this restored server's epoch {epoch}; {needed} \
                 must, so that the others cannot make a quorum for a server left over from \
                 before the restore",
                took.len()
            )));
        }
        Ok(())
    }

    /// Makes a key for `wallet` among all the nodes: FROST with the Taproot
    /// tweak for Schnorr keys (the group key is the output key), CGGMP24
    /// for ECDSA. Returns the public key as the inventory keeps it, and the
    /// reference the inventory keeps for the nodes: their key id, and for
    /// FROST keys `#` and the public package (hex) the coordinator checks
    /// each signer's share against.
    pub async fn create(
        self: &Arc<Self>,
        algorithm: KeyAlgorithm,
        key_ref: &str,
        wallet: WalletId,
    ) -> Result<(PublicKey, String), ServiceError> {
        let wallet = wallet.to_string();
        let public = match algorithm {
            KeyAlgorithm::EcdsaSecp256k1 => {
                let pk = self
                    .cluster
                    .ecdsa_generate(key_ref, &wallet, self.threshold)
                    .await
                    .map_err(unavailable)?;
                self.refill_later(key_ref, self.threshold);
                // The key's own threshold, kept with it: a later change of
                // `[threshold]` applies to new keys only.
                (
                    PublicKey::Secp256k1(pk),
                    format!("{key_ref}#t={}", self.threshold),
                )
            }
            KeyAlgorithm::SchnorrBip340 => {
                let k = self
                    .cluster
                    .generate(
                        <keys_mpc::Taproot as keys_mpc::Suite>::NAME,
                        key_ref,
                        &wallet,
                        self.threshold,
                    )
                    .await
                    .map_err(unavailable)?;
                (
                    PublicKey::XOnly(k.group_key),
                    format!("{key_ref}#{}", hex::encode(&k.public)),
                )
            }
            KeyAlgorithm::Ed25519 => {
                return Err(ServiceError::Invalid(
                    "threshold Ed25519 keys have no chain here to sign for".into(),
                ));
            }
        };
        Ok(public)
    }

    /// An ECDSA signature for the Ethereum transaction in `subject`, which
    /// every signer checks against the approvals it carries.
    pub async fn sign_ecdsa(
        self: &Arc<Self>,
        backend_ref: &str,
        public: &[u8; 33],
        subject: &Subject,
    ) -> Result<Signature, ServiceError> {
        let (key_ref, threshold) = match backend_ref.split_once("#t=") {
            Some((k, t)) => (
                k,
                t.parse::<u16>().map_err(|_| {
                    ServiceError::KeyNotUsable("the key's threshold is unreadable".into())
                })?,
            ),
            None => (backend_ref, self.threshold),
        };
        let sig = self
            .cluster
            .sign_ecdsa(key_ref, public, threshold, subject)
            .await
            .map_err(unavailable)?;
        self.refill_later(key_ref, threshold);
        Ok(Signature::Ecdsa(EcdsaSignature {
            r: sig.r,
            s: sig.s,
            recovery_id: sig.recovery_id,
        }))
    }

    /// A BIP-340 signature for one Taproot input of the transaction in
    /// `subject`; `message` is the sighash the server derived, which every
    /// node derives again itself.
    pub async fn sign_taproot(
        &self,
        backend_ref: &str,
        message: &[u8],
        subject: &Subject,
    ) -> Result<Signature, ServiceError> {
        let bad = || ServiceError::KeyNotUsable("the key's public package is unreadable".into());
        let (key_ref, package) = backend_ref.split_once('#').ok_or_else(bad)?;
        let package = hex::decode(package).map_err(|_| bad())?;
        let group = GroupPublic::<keys_mpc::Taproot>::from_bytes(&package)
            .map_err(|e| ServiceError::KeyNotUsable(format!("public package: {e}")))?;
        let sig = self
            .cluster
            .sign(key_ref, &group, message, subject)
            .await
            .map_err(unavailable)?;
        Ok(Signature::Schnorr(sig))
    }

    /// Tops up `key_ref`'s presignature pool in the background, one refill
    /// at a time per key. A refill that fails is logged; signing then makes
    /// its presignature on demand.
    pub fn refill_later(self: &Arc<Self>, key_ref: &str, threshold: u16) {
        if self.presignatures == 0
            || self.cluster.pooled(key_ref) >= self.presignatures
            || !self
                .refilling
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key_ref.to_owned())
        {
            return;
        }
        let me = self.clone();
        let key = key_ref.to_owned();
        tokio::spawn(async move {
            if let Err(e) = me.cluster.refill(&key, threshold, me.presignatures).await {
                tracing::warn!(key = %key, error = %e, "presignature pool not refilled");
            }
            me.refilling
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&key);
        });
    }
}

/// A transfer as the signer nodes are shown it: its intent, the decision it
/// was judged under, and its approvers' signed votes.
pub(crate) fn approved_transfer(
    t: &storage::TransferRow,
    approvals: &[storage::ApprovalRow],
) -> ApprovedTransfer {
    ApprovedTransfer {
        intent: hex::encode(&t.intent),
        policy_version: t.policy_version,
        decision_id: t.decision_id.clone(),
        approvals: approvals
            .iter()
            .filter(|a| a.vote == "approve" && a.voided_at.is_none())
            .map(|a| Approval {
                approver: a.public_key.clone(),
                expires_at_ms: a.expires_at.as_millis(),
                signature: a.signature.clone(),
            })
            .collect(),
    }
}

impl crate::Service {
    /// Writes why the signer nodes did not sign (they refused, or too few
    /// of them answered) into each transfer's history, its `last_error`
    /// and the audit log (once per transfer and reason): they stay in
    /// `signing`, retried, where `/v1/transfers/{id}` and the stuck view
    /// show why. Other errors are not the signers'.
    pub(crate) async fn note_signers_failure(
        &self,
        transfers: &[domain::TransferId],
        e: &ServiceError,
    ) -> Result<(), ServiceError> {
        let Some(t) = self.threshold() else {
            return Ok(());
        };
        let (why, said, action) = match e {
            // The reason without the signer that gave it: each signer of a
            // quorum refuses alike.
            ServiceError::SignersRefused(why) => (
                why.split_once(": ").map_or(why.as_str(), |(_, w)| w),
                "the signer nodes refused",
                "transfer.signers_refused",
            ),
            ServiceError::SignersUnavailable(why) => (
                why.as_str(),
                "no quorum of signer nodes answered",
                "transfer.signers_unavailable",
            ),
            _ => return Ok(()),
        };
        for id in transfers {
            if !t.new_refusal(&id.to_string(), why) {
                continue;
            }
            tracing::error!(transfer = %id, %why, "{said}");
            let now = self.now();
            let mut tx = self.store().begin().await?;
            let row = tx.lock_transfer(*id).await?;
            let line = format!("{said}: {why}");
            tx.add_history(row.id, &row.state, "system", &line, now)
                .await?;
            tx.set_last_error(row.id, &line).await?;
            let e = crate::record::entry(
                &domain::Actor::System,
                action,
                &format!("transfer:{id}"),
                serde_json::json!({ "why": why }),
            )?;
            self.commit(tx, &[e], now).await?;
            t.noted(&id.to_string(), why);
        }
        Ok(())
    }
}
