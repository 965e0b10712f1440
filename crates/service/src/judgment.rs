//! A transfer's judgment, authenticated: when a transfer is judged, the
//! server stores with it an HMAC-SHA256 of what was judged (id, wallet,
//! initiator, asset, amount, destination, intent and digest, policy
//! version, decision and its id, time) under a key derived from the
//! keystore root (HKDF-SHA256 of the governance MAC key, info
//! `strongroom/judgment-mac/v1`). Before any key signs for a transfer, or
//! its transaction is handed out to be signed offline, the authenticator
//! must verify over the row as stored: a judgment rewritten in the database
//! — an allowed transfer's destination and digest, a decision turned to
//! allow or to a lower threshold — takes the refuse path (history, audit
//! record, `transfer.sign_refused`, the wallet frozen).
//!
//! Transfers judged before schema 32 have none. The first unsealed server
//! after the upgrade authenticates those still open that agree with their
//! `transfer.judged` audit record (wallet, asset, amount, digest, policy
//! version, decision id and outcome), once: it then writes
//! `transfer.judgments_authenticated`, after which a transfer without an
//! authenticator is a forgery. Until then, one is not signed (retried).

use hmac::{Hmac, KeyInit, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use storage::TransferRow;
use zeroize::Zeroizing;

use crate::moves::corrupt;
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// The audit action written once the transfers judged before schema 32
/// were authenticated.
const AUTHENTICATED: &str = "transfer.judgments_authenticated";

/// SHA-256 of what was judged, each field length-prefixed after a domain
/// tag: two different judgments never hash alike.
fn judged_hash(t: &TransferRow) -> [u8; 32] {
    let mut h = Sha256::new();
    let mut field = |b: &[u8]| {
        h.update((b.len() as u64).to_be_bytes());
        h.update(b);
    };
    field(b"strongroom/judgment/v1");
    field(t.id.to_string().as_bytes());
    field(t.wallet.to_string().as_bytes());
    field(t.initiator.to_string().as_bytes());
    field(t.asset.as_bytes());
    field(t.amount.to_string().as_bytes());
    field(t.destination.as_bytes());
    field(&t.intent);
    field(t.digest.as_bytes());
    field(&t.policy_version.to_be_bytes());
    field(t.decision_id.as_bytes());
    field(t.decision.as_bytes());
    field(&t.created_at.as_millis().to_be_bytes());
    h.finalize().into()
}

fn hmac(key: &[u8; 32]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length")
}

/// The authenticator of `t`'s judgment under `key`, hex.
fn mac_hex(key: &[u8; 32], t: &TransferRow) -> String {
    let mut m = hmac(key);
    m.update(&judged_hash(t));
    hex::encode(m.finalize().into_bytes())
}

/// Whether `t`'s judgment as stored is the one authenticated.
fn verifies(key: &[u8; 32], t: &TransferRow) -> bool {
    let Some(bytes) = t.judgment_mac.as_deref().and_then(|m| hex::decode(m).ok()) else {
        return false;
    };
    let mut m = hmac(key);
    m.update(&judged_hash(t));
    m.verify_slice(&bytes).is_ok()
}

impl Service {
    /// The judgment key, while unsealed.
    fn judgment_key(&self) -> Option<Zeroizing<[u8; 32]>> {
        let gov = self.governance_mac_key()?;
        let hk = hkdf::Hkdf::<Sha256>::from_prk(gov.as_ref()).ok()?;
        let mut out = Zeroizing::new([0u8; 32]);
        hk.expand(b"strongroom/judgment-mac/v1", out.as_mut())
            .ok()?;
        Some(out)
    }

    /// The authenticator of `t`'s judgment (sealed: none can be made, and
    /// nothing is judged).
    pub(crate) fn judgment_mac(&self, t: &TransferRow) -> Result<String, ServiceError> {
        let key = self.judgment_key().ok_or(ServiceError::Sealed)?;
        Ok(mac_hex(&key, t))
    }

    /// Before a key signs for `paying` (or their transaction is handed
    /// out): each judgment is the one this installation made. One that is
    /// not takes the refuse path for `send`.
    pub(crate) async fn judgments_stand(
        &self,
        send: &str,
        paying: &[TransferRow],
    ) -> Result<(), ServiceError> {
        if paying.is_empty() {
            return Ok(());
        }
        let key = self.judgment_key().ok_or(ServiceError::Sealed)?;
        for t in paying {
            if verifies(&key, t) {
                continue;
            }
            if t.judgment_mac.is_none() && !self.store().audit_has(AUTHENTICATED).await? {
                return Err(ServiceError::SigningStopped(
                    "transfers judged before the upgrade are not yet authenticated (the first \
                     unseal does it); tried again later"
                        .into(),
                ));
            }
            return Err(self
                .refuse_to_sign(crate::refusal::Refused {
                    send: send.to_owned(),
                    wallet: t.wallet,
                    transfers: &[t.id],
                    why: "its judgment as stored is not the one this installation made (the \
                          authenticator does not verify): rewritten in the database"
                        .into(),
                })
                .await);
        }
        Ok(())
    }

    /// [`Service::judgments_stand`] before a transfer is planned: nothing is
    /// planned (no nonce or output reserved) for a rewritten judgment.
    /// Sealed, planning goes on: the check before signing needs the
    /// unsealed keystore anyway.
    pub(crate) async fn judgment_stands_for_planning(
        &self,
        t: &TransferRow,
    ) -> Result<(), ServiceError> {
        if self.judgment_key().is_none() {
            return Ok(());
        }
        self.judgments_stand(&format!("transfer:{}", t.id), std::slice::from_ref(t))
            .await
    }

    /// After an unseal: the open transfers judged before schema 32 that
    /// agree with their `transfer.judged` audit record are authenticated,
    /// once for the installation. Returns how many were (and how many did
    /// not agree: they stay without one, and are refused at the gate).
    pub(crate) async fn authenticate_old_judgments(&self) -> Result<(usize, usize), ServiceError> {
        if self.store().audit_has(AUTHENTICATED).await? {
            return Ok((0, 0));
        }
        let key = self.judgment_key().ok_or(ServiceError::Sealed)?;
        let (mut done, mut differ) = (0, Vec::new());
        let now = self.now();
        // One transaction: the authenticators and the mark that ends this.
        let mut tx = self.store().begin().await?;
        for t in self.store().open_transfers_unauthenticated().await? {
            let subject = format!("transfer:{}", t.id);
            let judged = self
                .store()
                .audit_details_of("transfer.judged", &subject)
                .await?;
            if judged.len() != 1 || !agrees(&t, &judged[0])? {
                differ.push(t.id.to_string());
                continue;
            }
            tx.set_judgment_mac(t.id, &mac_hex(&key, &t)).await?;
            done += 1;
        }
        let e = entry(
            &domain::Actor::System,
            AUTHENTICATED,
            "transfers",
            json!({ "authenticated": done, "not_matching_their_record": differ }),
        )?;
        self.commit(tx, &[e], now).await?;
        if !differ.is_empty() {
            tracing::error!(transfers = ?differ, "open transfers differ from their judged audit record: they will be refused at signing");
        }
        Ok((done, differ.len()))
    }
}

/// Whether the transfer row agrees with its `transfer.judged` record.
fn agrees(t: &TransferRow, details: &str) -> Result<bool, ServiceError> {
    let d: serde_json::Value = serde_json::from_str(details).map_err(|e| corrupt("audit", e))?;
    let decision: policy::Decision =
        serde_json::from_str(&t.decision).map_err(|e| corrupt("decision", e))?;
    let text = |k: &str| d[k].as_str().unwrap_or_default().to_owned();
    Ok(text("wallet") == t.wallet.to_string()
        && text("asset") == t.asset
        && text("amount") == t.amount.to_string()
        && text("digest") == t.digest
        && text("decision_id") == t.decision_id
        && text("outcome") == decision.outcome.to_string()
        && d["policy_version"].as_u64().unwrap_or(0) == t.policy_version)
}
