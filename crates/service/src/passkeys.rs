//! Passkeys as a second factor at sign-in: a person adds and removes their
//! own (not governed: they decide who the person is, not what money may
//! do), and signs in with the password and a WebAuthn assertion over a
//! challenge the console issued for that sign-in, verified by
//! `policy::passkey`. A passkey counts as the second factor a privileged
//! role needs, as TOTP does.

use domain::{Actor, Timestamp};
use serde_json::json;
use storage::{PasskeyRow, UserRow};

use crate::access::Principal;
use crate::error::AuthError;
use crate::record::entry;
use crate::service::{Service, ServiceError};
use crate::totp;

/// How recent a sign-in must be to add or remove a second factor.
pub const RECENT_MS: i64 = 10 * 60 * 1000;

/// What proves the person at sign-in, after the password.
#[derive(Debug, Clone, Copy)]
pub enum SecondFactor<'a> {
    /// A TOTP code, or none (a person without TOTP signs in with the
    /// password alone, and a role that needs a second factor is closed).
    Totp(Option<&'a str>),
    /// A passkey's assertion over `challenge`, which the server issued
    /// for this sign-in (and forgot once answered).
    Passkey {
        credential_id: &'a [u8],
        assertion: &'a policy::Assertion,
        challenge: [u8; 32],
    },
}

/// The second factor as checked: whether it holds, the TOTP step used, the
/// passkey used (credential id, its new counter), and whether the session
/// counts as past a second factor.
pub(crate) struct FactorCheck {
    pub(crate) ok: bool,
    pub(crate) step: Option<u64>,
    pub(crate) passkey: Option<(String, u32)>,
    pub(crate) mfa: bool,
}

impl Service {
    /// Checks `factor` for `user` (whose password was `password_ok`).
    pub(crate) async fn second_factor(
        &self,
        user: &UserRow,
        password_ok: bool,
        factor: &SecondFactor<'_>,
        now: Timestamp,
    ) -> Result<FactorCheck, ServiceError> {
        let none = |ok| FactorCheck {
            ok,
            step: None,
            passkey: None,
            mfa: false,
        };
        match (factor, &user.totp_sealed) {
            (_, _) if !password_ok => Ok(none(false)),
            // Without TOTP the password alone opens a session that has
            // passed no second factor, unless the person has a passkey:
            // then the passkey is required (a stolen password alone must
            // not open a session from which a factor could be enrolled).
            (SecondFactor::Totp(_), None) => {
                Ok(none(self.store().passkeys_of(user.id).await?.is_empty()))
            }
            // Counted as a failure, like a wrong code.
            (SecondFactor::Totp(None), Some(_)) => Ok(none(false)),
            (SecondFactor::Totp(Some(code)), Some(sealed)) => {
                let secret = self
                    .open_service_secret("totp", &user.id.to_string(), sealed)
                    .await?;
                let unix = u64::try_from(now.as_millis() / 1000).unwrap_or(0);
                let step = totp::verify(&secret, code, unix).filter(|s| *s > user.totp_last_step);
                Ok(FactorCheck {
                    ok: step.is_some(),
                    step,
                    passkey: None,
                    mfa: true,
                })
            }
            (
                SecondFactor::Passkey {
                    credential_id,
                    assertion,
                    challenge,
                },
                _,
            ) => {
                let Some(rp) = self.relying_party() else {
                    return Ok(none(false));
                };
                let id = hex::encode(credential_id);
                let rows = self.store().passkeys_of(user.id).await?;
                let Some(row) = rows.iter().find(|p| p.credential_id == id) else {
                    return Ok(none(false));
                };
                let Some(key) = hex::decode(&row.public_key)
                    .ok()
                    .and_then(|k| <[u8; 33]>::try_from(k).ok())
                else {
                    return Err(storage::StorageError::Corrupt("passkey public key".into()).into());
                };
                Ok(
                    match policy::passkey::verify_sign_in(&key, assertion, challenge, &rp) {
                        // A counter that did not move forward: a replay, or
                        // a cloned authenticator (0 and 0: it keeps none).
                        Ok(count)
                            if count <= row.sign_count && (count, row.sign_count) != (0, 0) =>
                        {
                            tracing::warn!(user = %user.id, "passkey signature counter did not move forward");
                            none(false)
                        }
                        Ok(count) => FactorCheck {
                            ok: true,
                            step: None,
                            passkey: Some((id, count)),
                            mfa: true,
                        },
                        Err(_) => none(false),
                    },
                )
            }
        }
    }

    /// Enrolling TOTP while the person already signs in with a passkey
    /// takes a session that passed it.
    pub(crate) async fn may_enrol_totp(
        &self,
        who: &Principal,
        user: &UserRow,
    ) -> Result<(), ServiceError> {
        if user.totp_sealed.is_none()
            && !who.mfa
            && !self.store().passkeys_of(user.id).await?.is_empty()
        {
            return Err(AuthError::MfaRequired.into());
        }
        Ok(())
    }

    /// Changing one's second factors takes a session signed in within
    /// the last [`RECENT_MS`] (a second factor included): a session cookie
    /// stolen later cannot put the thief's passkey in, or take one out.
    async fn signed_in_recently(&self, who: &Principal) -> Result<(), ServiceError> {
        let Some(hash) = &who.session else {
            return Err(AuthError::Forbidden.into());
        };
        let session = self.store().session(hash).await?;
        if !who.mfa || self.now().as_millis() - session.created_at.as_millis() > RECENT_MS {
            return Err(AuthError::MfaRequired.into());
        }
        Ok(())
    }

    /// The signed-in person's passkeys.
    pub async fn passkeys(&self, who: &Principal) -> Result<Vec<PasskeyRow>, ServiceError> {
        let Actor::User(id) = who.actor else {
            return Err(AuthError::Forbidden.into());
        };
        Ok(self.store().passkeys_of(id).await?)
    }

    /// Adds a passkey (after its registration ceremony) to sign in with.
    /// Someone who already has a second factor must be signed in with one:
    /// a stolen password alone adds nothing.
    pub async fn add_passkey(
        &self,
        who: &Principal,
        key: &policy::ApproverKey,
    ) -> Result<(), ServiceError> {
        let (
            Actor::User(id),
            policy::ApproverKey::Passkey {
                credential_id,
                public_key,
            },
        ) = (&who.actor, key)
        else {
            return Err(AuthError::Forbidden.into());
        };
        let now = self.now();
        let user = self.store().user(*id).await?;
        let mut tx = self.store().begin().await?;
        let existing = tx.passkeys_in_tx(*id).await?;
        if user.totp_sealed.is_some() || !existing.is_empty() {
            self.signed_in_recently(who).await?;
        }
        let credential = hex::encode(credential_id);
        tx.insert_passkey(&PasskeyRow {
            credential_id: credential.clone(),
            user_id: *id,
            public_key: hex::encode(public_key),
            sign_count: 0,
            created_at: now,
            last_used_at: None,
        })
        .await?;
        let e = entry(
            &who.actor,
            "auth.passkey.added",
            &who.actor.to_string(),
            json!({ "credential_id": credential }),
        )?;
        self.commit(tx, &[e], now).await?;
        Ok(())
    }

    /// Removes one of the person's passkeys, signed in with a second
    /// factor; never the last one of someone whose role needs one.
    pub async fn remove_passkey(
        &self,
        who: &Principal,
        credential_id: &str,
    ) -> Result<(), ServiceError> {
        let Actor::User(id) = who.actor else {
            return Err(AuthError::Forbidden.into());
        };
        self.signed_in_recently(who).await?;
        let now = self.now();
        let user = self.store().user(id).await?;
        let mut tx = self.store().begin().await?;
        tx.delete_passkey(id, credential_id).await?;
        let left = tx.passkeys_in_tx(id).await?;
        let privileged = who.grants().iter().any(|g| g.role().is_privileged());
        if privileged && user.totp_sealed.is_none() && left.is_empty() {
            return Err(ServiceError::Conflict(
                "this is your last second factor and your role needs one: add another first".into(),
            ));
        }
        // The sessions it may have opened end (this one, signed in just
        // now past a second factor, stays).
        let ended = match &who.session {
            Some(keep) => tx.end_other_sessions(id, keep).await?,
            None => 0,
        };
        let e = entry(
            &who.actor,
            "auth.passkey.removed",
            &who.actor.to_string(),
            json!({ "credential_id": credential_id, "sessions_ended": ended }),
        )?;
        self.commit(tx, &[e], now).await?;
        Ok(())
    }
}
