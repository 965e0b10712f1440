//! Share refresh of a threshold (FROST Taproot) key: the signer nodes add a
//! fresh sharing of zero to their shares — the group key, and so every
//! address, stays; the old shares no longer combine with the new ones — and
//! a node left out of the refresh is removed from the key.
//!
//! The nodes keep their new shares staged; the server records the new
//! public package and the session (one transaction with its audit record)
//! before it tells them to commit, and clears the session once all have. A
//! refresh interrupted between the two is finished by the next `key
//! refresh` of the key (a node's commit is idempotent). Signing meanwhile
//! works with any quorum on one generation of shares (the signature is
//! checked as a whole first); a mixed quorum's old shares fail their check
//! and the session is run again without them.
//!
//! Threshold ECDSA keys (CGGMP24 0.7 has no refresh) are rotated instead:
//! a new key among the nodes, and a sweep.

use domain::{Actor, KeyAlgorithm, KeyBackend, KeyId, KeyState};
use keys_mpc::dkg::GroupPublic;
use keys_mpc::{SessionId, Suite, Taproot};
use serde::Serialize;
use serde_json::json;

use crate::record::entry;
use crate::service::{Service, ServiceError};
use crate::threshold::unavailable;

/// What a refresh did.
#[derive(Debug, Clone, Serialize)]
pub struct Refreshed {
    pub key: KeyId,
    pub session: String,
    /// The signers holding shares of the key now.
    pub members: Vec<u16>,
    /// The signers removed from it.
    pub removed: Vec<u16>,
    /// An interrupted refresh was finished (no new one was started).
    pub resumed: bool,
}

impl Service {
    /// Refreshes the shares of threshold key `id` among its signers less
    /// `remove` (at least its threshold must remain); or, if a refresh of it
    /// was interrupted, finishes that one.
    pub async fn refresh_threshold_key(
        &self,
        actor: &Actor,
        id: KeyId,
        remove: &[u16],
    ) -> Result<Refreshed, ServiceError> {
        let t = self.threshold().cloned().ok_or_else(|| {
            ServiceError::Invalid("no signer nodes are configured ([threshold])".into())
        })?;
        let row = self.store().key(id).await?;
        if row.backend != KeyBackend::Threshold {
            return Err(ServiceError::Invalid(format!(
                "key {id} is not a threshold key: its shares cannot be refreshed"
            )));
        }
        if row.algorithm != KeyAlgorithm::SchnorrBip340 {
            return Err(ServiceError::Invalid(format!(
                "key {id} is a threshold ECDSA key, and CGGMP24 0.7 has no share refresh: \
                 rotate it (`key rotate`: a new key among the signers, and a sweep)"
            )));
        }
        if row.state == KeyState::Destroyed {
            return Err(ServiceError::Invalid(format!("key {id} is destroyed")));
        }
        let unreadable =
            || ServiceError::KeyNotUsable("the key's public package is unreadable".into());
        let backend_ref = row.backend_ref.clone().ok_or_else(unreadable)?;
        let (key_ref, package) = backend_ref.split_once('#').ok_or_else(unreadable)?;
        let group =
            GroupPublic::<Taproot>::from_bytes(&hex::decode(package).map_err(|_| unreadable())?)
                .map_err(|e| ServiceError::KeyNotUsable(format!("public package: {e}")))?;
        let parties: Vec<u16> = group.parties().iter().map(|p| p.get()).collect();
        let suite = Taproot::NAME;

        if let Some(session) = self.store().key_refresh(id).await? {
            let s = SessionId::try_from(session.clone()).map_err(|_| {
                ServiceError::KeyNotUsable("the refresh session is unreadable".into())
            })?;
            let k = t
                .cluster()
                .commit_refresh(suite, key_ref, s, &parties)
                .await
                .map_err(unavailable)?;
            if hex::encode(&k.public) != package {
                return Err(ServiceError::KeyNotUsable(format!(
                    "the signers committed another public package than the one recorded for \
                     refresh {session}"
                )));
            }
            self.end_refresh(actor, id, &session).await?;
            if remove.is_empty() {
                return Ok(Refreshed {
                    key: id,
                    session,
                    members: parties,
                    removed: Vec::new(),
                    resumed: true,
                });
            }
            // A removal asked for goes on, from the refreshed package.
            return Box::pin(self.refresh_threshold_key(actor, id, remove)).await;
        }

        if let Some(r) = remove.iter().find(|r| !parties.contains(r)) {
            return Err(ServiceError::Invalid(format!(
                "signer {r} holds no share of key {id} (its signers: {parties:?})"
            )));
        }
        let members: Vec<u16> = parties
            .iter()
            .filter(|p| !remove.contains(p))
            .copied()
            .collect();
        if members.len() < usize::from(group.threshold()) {
            return Err(ServiceError::Invalid(format!(
                "removing {remove:?} leaves {} signers of key {id}, below its threshold of {}",
                members.len(),
                group.threshold()
            )));
        }
        let (session, new) = t
            .cluster()
            .refresh(suite, key_ref, &members)
            .await
            .map_err(unavailable)?;
        if hex::encode(new.group_key) != row.public_key {
            return Err(ServiceError::KeyNotUsable(
                "the signers refreshed to another group key: nothing was committed".into(),
            ));
        }
        let new_group = GroupPublic::<Taproot>::from_bytes(&new.public)
            .map_err(|e| ServiceError::KeyNotUsable(format!("refreshed package: {e}")))?;
        if !new_group
            .parties()
            .iter()
            .map(|p| p.get())
            .eq(members.iter().copied())
        {
            return Err(ServiceError::KeyNotUsable(
                "the refreshed package names other signers: nothing was committed".into(),
            ));
        }
        let sid = String::from(session);
        let removed: Vec<u16> = remove.to_vec();
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.begin_key_refresh(
            id,
            &backend_ref,
            &format!("{key_ref}#{}", hex::encode(&new.public)),
            &sid,
        )
        .await?;
        let e = entry(
            actor,
            "key.refreshed",
            &format!("key:{id}"),
            json!({ "session": sid, "members": members, "removed": removed }),
        )?;
        self.commit(tx, &[e], now).await?;
        let committed = t
            .cluster()
            .commit_refresh(suite, key_ref, session, &members)
            .await
            .map_err(unavailable)?;
        if committed != new {
            return Err(ServiceError::KeyNotUsable(format!(
                "the signers committed another package than they staged for refresh {sid}"
            )));
        }
        self.end_refresh(actor, id, &sid).await?;
        Ok(Refreshed {
            key: id,
            session: sid,
            members,
            removed,
            resumed: false,
        })
    }

    /// Every signer committed refresh `session` of `id`.
    async fn end_refresh(
        &self,
        actor: &Actor,
        id: KeyId,
        session: &str,
    ) -> Result<(), ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.end_key_refresh(id, session).await?;
        let e = entry(
            actor,
            "key.refresh.committed",
            &format!("key:{id}"),
            json!({ "session": session }),
        )?;
        self.commit(tx, &[e], now).await
    }
}
