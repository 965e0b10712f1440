//! Identity and access: people (Argon2id passwords, TOTP), API keys (Ed25519
//! signed requests with a shared nonce store), sessions, grants, and the
//! capability handles through which every privileged operation is reached.
//!
//! A [`Principal`] is made only here, by verifying a credential. A
//! [`Can`] is made only by [`Service::authorize`] from a principal that
//! holds the permission at the right scope (and has passed MFA if it needs
//! to). Privileged operations are methods on `Can<'_, P>`: there is no
//! other way to call them from the API.

use argon2::{Algorithm, Argon2, Params, PasswordHasher, PasswordVerifier, Version};
use domain::{Actor, Grant, Permission, Role, Timestamp, UserId, WalletId, permits};
use serde_json::json;
use sha2::{Digest, Sha256};
use storage::{SessionRow, StorageError, UserRow, WalletRow};

pub use crate::access::{Can, Principal, perm};
pub use crate::error::AuthError;
use crate::governance::{Change, ProposalView};
pub use crate::passkeys::{RECENT_MS as PASSKEY_RECENT_MS, SecondFactor};
use crate::record::entry;
use crate::service::{Service, ServiceError};
pub use crate::signed::{
    MAX_SERVER_DRIFT_MS, MAX_SKEW_MS, SignedRequest, request_message, request_message_v1,
};
use crate::totp;
use crate::wallets::{assign_only_eth_sender, create_wallet};

/// Failed sign-ins before the account locks (then with doubling backoff).
pub const LOCKOUT_AFTER: u32 = 5;
/// How long a session lasts.
pub const SESSION_MS: i64 = 8 * 3600 * 1000;

/// What a successful sign-in returns. The tokens are shown once.
#[derive(Clone)]
pub struct LoginOutcome {
    pub session_token: String,
    pub csrf_token: String,
    pub user: UserId,
    /// The session passed a second factor.
    pub mfa: bool,
    /// The user must enrol TOTP before privileged use.
    pub enrol_totp: bool,
}

impl std::fmt::Debug for LoginOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginOutcome")
            .field("user", &self.user)
            .field("mfa", &self.mfa)
            .finish_non_exhaustive()
    }
}

fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn random_token() -> Result<String, ServiceError> {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b)
        .map_err(|_| ServiceError::Invalid("random number generator failed".into()))?;
    Ok(data_encoding::BASE64URL_NOPAD.encode(&b))
}

/// Constant-time equality of two hex digests.
fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn argon2() -> Result<Argon2<'static>, ServiceError> {
    // OWASP's Argon2id floor is 19 MiB, t = 2; this is more (≈ 0.2 s here).
    let params = Params::new(64 * 1024, 3, 1, None)
        .map_err(|e| ServiceError::Invalid(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// At most two Argon2 computations (64 MiB each) at a time, whatever the
/// number of concurrent sign-ins: a burst queues instead of exhausting
/// memory...
static ARGON2_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// ...and at most 16 more wait for a slot: beyond that a sign-in is
/// refused at once (429) rather than queued without bound.
static ARGON2_ADMITTED: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2 + 16);

/// A turn at Argon2: admitted (or refused at once), then a slot.
async fn argon2_turn() -> Result<
    (
        tokio::sync::SemaphorePermit<'static>,
        tokio::sync::SemaphorePermit<'static>,
    ),
    ServiceError,
> {
    let shut = |_| ServiceError::Invalid("password hashing is shut down".into());
    let admitted = ARGON2_ADMITTED.try_acquire().map_err(|e| match e {
        tokio::sync::TryAcquireError::NoPermits => {
            ServiceError::from(AuthError::Throttled { retry_after_s: 1 })
        }
        tokio::sync::TryAcquireError::Closed => shut(()),
    })?;
    let slot = ARGON2_SLOTS.acquire().await.map_err(|_| shut(()))?;
    Ok((admitted, slot))
}

/// Hashes a password (Argon2id, random salt) in a blocking thread.
pub(crate) async fn hash_password(password: String) -> Result<String, ServiceError> {
    let password = zeroize::Zeroizing::new(password);
    let _turn = argon2_turn().await?;
    tokio::task::spawn_blocking(move || {
        argon2()?
            .hash_password(password.as_bytes())
            .map(|h| h.to_string())
            .map_err(|e| ServiceError::Invalid(format!("password hashing: {e}")))
    })
    .await
    .map_err(|e| ServiceError::Invalid(format!("password hashing: {e}")))?
}

async fn verify_password(password: String, hash: String) -> Result<bool, ServiceError> {
    let password = zeroize::Zeroizing::new(password);
    let _turn = argon2_turn().await?;
    Ok(tokio::task::spawn_blocking(move || {
        Argon2::default()
            .verify_password(password.as_bytes(), hash.as_str())
            .is_ok()
    })
    .await
    .unwrap_or(false))
}

/// A PHC hash of a password nobody has, verified when the user does not
/// exist so that a wrong name costs as much time as a wrong password.
const DUMMY_HASH: &str = "$argon2id$v=19$m=65536,t=3,p=1$c29tZXNhbHRzb21lc2FsdA$8nPdDSKc2Ce5Ui7Ko6NRbgFLvb0Lr1c59YxZVyp9wMM";

fn check_password_rules(password: &str) -> Result<(), ServiceError> {
    if password.chars().count() < 12 {
        return Err(ServiceError::Invalid(
            "a password needs at least 12 characters".into(),
        ));
    }
    if password.len() > 1024 {
        return Err(ServiceError::Invalid(
            "a password may have at most 1024 bytes".into(),
        ));
    }
    Ok(())
}

fn check_user_name(name: &str) -> Result<(), ServiceError> {
    crate::moves::check_name(name, "a user name")
}

impl Service {
    /// Creates the first admin, from the console, while no user exists,
    /// with their governance signing key (hex Ed25519, what
    /// `strongroom approver-key new` prints) if given: an admin votes on
    /// proposals only with one.
    pub async fn bootstrap_admin(
        &self,
        console: &Actor,
        name: &str,
        password: String,
        signing_key: Option<&str>,
    ) -> Result<UserRow, ServiceError> {
        if !self.store().users().await?.is_empty() {
            return Err(ServiceError::Invalid(
                "users exist already: the first admin is made once".into(),
            ));
        }
        self.insert_user(
            console,
            name,
            password,
            &[Grant::global(Role::Admin)],
            signing_key,
        )
        .await
    }

    async fn insert_user(
        &self,
        by: &Actor,
        name: &str,
        password: String,
        grants: &[Grant],
        signing_key: Option<&str>,
    ) -> Result<UserRow, ServiceError> {
        check_user_name(name)?;
        // Names are ASCII (`check_user_name`): `Admin` and `admin` are one.
        if let Some(u) = self
            .store()
            .users()
            .await?
            .into_iter()
            .find(|u| u.name.eq_ignore_ascii_case(name))
        {
            return Err(ServiceError::Conflict(format!(
                "a user named {} exists (names are compared without case)",
                u.name
            )));
        }
        check_password_rules(&password)?;
        let hash = hash_password(password).await?;
        let now = self.now();
        let user = UserRow {
            id: UserId::from_uuid(uuid::Uuid::now_v7()),
            name: name.to_owned(),
            password_hash: hash,
            totp_sealed: None,
            totp_pending: None,
            totp_last_step: 0,
            state: "active".into(),
            failed_logins: 0,
            locked_until: Timestamp::from_millis(0),
            created_at: now,
            created_by: by.clone(),
        };
        let actor = Actor::User(user.id);
        let grant_names: Vec<String> = grants
            .iter()
            .map(|g| format!("{}@{}", g.role(), g.scope()))
            .collect();
        let e = entry(
            by,
            "user.created",
            &actor.to_string(),
            json!({ "name": name, "grants": grant_names }),
        )?;
        let mut tx = self.store().begin().await?;
        tx.insert_user(&user).await?;
        let mut entries = vec![e];
        if !grants.is_empty() {
            let (_, anchors) = self
                .console_grants(&mut tx, &actor, grants, None, signing_key, now)
                .await?;
            entries.extend(anchors);
        }
        self.commit(tx, &entries, now).await?;
        Ok(user)
    }

    /// Password (and TOTP once enrolled) sign-in.
    pub async fn login(
        &self,
        name: &str,
        password: String,
        totp_code: Option<&str>,
        address: &str,
    ) -> Result<LoginOutcome, ServiceError> {
        self.login_with(name, password, SecondFactor::Totp(totp_code), address)
            .await
    }

    /// Password and a second factor (TOTP, or a passkey instead). Failures
    /// count towards a lock-out with doubling backoff; a new address is
    /// flagged.
    pub async fn login_with(
        &self,
        name: &str,
        password: String,
        factor: SecondFactor<'_>,
        address: &str,
    ) -> Result<LoginOutcome, ServiceError> {
        let now = self.now();
        // A budget per name, charged before anything is looked up (unknown
        // names too): bounds the Argon2 work, audit records and lockouts
        // one name can be made to cost.
        let name_key = crate::limiter::hashed_key(&[b"login", name.as_bytes()]);
        let at = u64::try_from(now.as_millis()).unwrap_or(0);
        if let Err(retry_after_s) = self.login_names().take(name_key, at) {
            return Err(AuthError::Throttled { retry_after_s }.into());
        }
        let user = match self.store().user_by_name(name).await {
            Ok(u) if u.state == "active" => u,
            Ok(_) | Err(StorageError::NotFound { .. }) => {
                verify_password(password, DUMMY_HASH.into()).await?;
                return Err(AuthError::InvalidCredentials.into());
            }
            Err(e) => return Err(e.into()),
        };
        let subject = Actor::User(user.id).to_string();
        // One answer for every failure, whatever the account: a locked
        // account, a missing one-time code and a wrong password all read
        // as "invalid credentials" (no account enumeration, no oracle).
        if user.locked_until > now {
            // The same work as a real check; the real hash is never tried.
            verify_password(password, DUMMY_HASH.into()).await?;
            let e = entry(
                &Actor::Anonymous,
                "auth.login.refused",
                &subject,
                json!({ "address": address, "reason": "locked" }),
            )?;
            let tx = self.store().begin().await?;
            self.commit(tx, &[e], now).await?;
            return Err(AuthError::InvalidCredentials.into());
        }
        let password_ok = verify_password(password, user.password_hash.clone()).await?;
        let checked = self.second_factor(&user, password_ok, &factor, now).await?;
        if !(password_ok && checked.ok) {
            let mut tx = self.store().begin().await?;
            // Incremented in the database: concurrent guesses all count.
            let failed = tx.add_login_failure(user.id).await?;
            if failed >= LOCKOUT_AFTER {
                let minutes = 1i64 << (failed - LOCKOUT_AFTER).min(6);
                let until = Timestamp::from_millis(now.as_millis() + minutes * 60_000);
                tx.set_login_failures(user.id, failed, until).await?;
            }
            let e = entry(
                &Actor::Anonymous,
                "auth.login.failed",
                &subject,
                json!({ "address": address, "failures": failed, "locked": failed >= LOCKOUT_AFTER }),
            )?;
            self.commit(tx, &[e], now).await?;
            return Err(AuthError::InvalidCredentials.into());
        }
        let grants = self.grants_in_force(&Actor::User(user.id), now).await?;
        let privileged = grants.iter().any(|g| g.role().is_privileged());
        // The session records only whether a second factor was verified;
        // whether one is needed is decided from the grants at each request
        // (a viewer granted more later must enrol and sign in with it).
        let mfa = checked.mfa;
        let session_token = random_token()?;
        let csrf_token = random_token()?;
        let session = SessionRow {
            token_hash: hash_token(&session_token),
            user_id: user.id,
            csrf_hash: hash_token(&csrf_token),
            mfa,
            address: address.to_owned(),
            created_at: now,
            expires_at: Timestamp::from_millis(now.as_millis() + SESSION_MS),
        };
        let mut tx = self.store().begin().await?;
        if let Some(step) = checked.step {
            tx.advance_totp_step(user.id, step).await?;
        }
        if let Some((credential, count)) = &checked.passkey {
            tx.use_passkey(credential, *count, now).await?;
        }
        tx.set_login_failures(user.id, 0, Timestamp::from_millis(0))
            .await?;
        let new_address = tx.note_login_address(user.id, address, now).await?;
        tx.insert_session(&session).await?;
        let mut entries = vec![entry(
            &Actor::User(user.id),
            "auth.login",
            &subject,
            json!({ "address": address, "mfa": mfa }),
        )?];
        if new_address {
            entries.push(entry(
                &Actor::User(user.id),
                "auth.login.new_address",
                &subject,
                json!({ "address": address }),
            )?);
        }
        self.commit(tx, &entries, now).await?;
        Ok(LoginOutcome {
            session_token,
            csrf_token,
            user: user.id,
            mfa,
            enrol_totp: !mfa && privileged,
        })
    }

    /// The principal behind a session cookie. State-changing requests must
    /// carry the session's CSRF token.
    pub async fn authenticate_session(
        &self,
        token: &str,
        csrf: Option<&str>,
        changes_state: bool,
    ) -> Result<Principal, ServiceError> {
        let now = self.now();
        let hash = hash_token(token);
        let s = match self.store().session(&hash).await {
            Ok(s) if s.expires_at > now => s,
            Ok(_) | Err(StorageError::NotFound { .. }) => return Err(AuthError::NoSession.into()),
            Err(e) => return Err(e.into()),
        };
        if changes_state && !csrf.is_some_and(|c| same(&hash_token(c), &s.csrf_hash)) {
            return Err(AuthError::Csrf.into());
        }
        let user = self.store().user(s.user_id).await?;
        if user.state != "active" {
            return Err(AuthError::NoSession.into());
        }
        let actor = Actor::User(user.id);
        Ok(Principal {
            grants: self.grants_in_force(&actor, now).await?,
            actor,
            mfa: s.mfa,
            session: Some(hash),
        })
    }

    pub async fn logout(&self, who: &Principal) -> Result<(), ServiceError> {
        let Some(hash) = &who.session else {
            return Ok(());
        };
        let now = self.now();
        let e = entry(&who.actor, "auth.logout", &who.actor.to_string(), json!({}))?;
        let mut tx = self.store().begin().await?;
        tx.delete_session(hash).await?;
        self.commit(tx, &[e], now).await?;
        Ok(())
    }

    /// Starts TOTP enrolment: a fresh secret, sealed as pending. Returns the
    /// `otpauth://` URI (shown once).
    pub async fn totp_enrol(
        &self,
        who: &Principal,
        current_code: Option<&str>,
    ) -> Result<String, ServiceError> {
        let Actor::User(id) = who.actor else {
            return Err(AuthError::Forbidden.into());
        };
        let user = self.store().user(id).await?;
        self.may_enrol_totp(who, &user).await?;
        // Replacing an enrolled factor takes a code from it: a stolen
        // session cannot swap the second factor for the thief's.
        let mut proven_step = None;
        if let Some(sealed) = &user.totp_sealed {
            let code = current_code.ok_or(AuthError::TotpRequired)?;
            let secret = self
                .open_service_secret("totp", &id.to_string(), sealed)
                .await?;
            let unix = u64::try_from(self.now().as_millis() / 1000).unwrap_or(0);
            proven_step = Some(
                totp::verify(&secret, code, unix)
                    .filter(|s| *s > user.totp_last_step)
                    .ok_or(AuthError::InvalidCredentials)?,
            );
        }
        let mut secret = zeroize::Zeroizing::new([0u8; 20]);
        getrandom::fill(&mut secret[..])
            .map_err(|_| ServiceError::Invalid("random number generator failed".into()))?;
        let sealed = self
            .seal_service_secret("totp-pending", &id.to_string(), &secret[..])
            .await?;
        let now = self.now();
        let e = entry(
            &who.actor,
            "auth.totp.enrolment_started",
            &who.actor.to_string(),
            json!({}),
        )?;
        let mut tx = self.store().begin().await?;
        if let Some(step) = proven_step {
            tx.advance_totp_step(id, step).await?;
        }
        tx.set_totp(id, user.totp_sealed.as_deref(), Some(&sealed))
            .await?;
        self.commit(tx, &[e], now).await?;
        Ok(totp::otpauth_uri(&secret[..], &user.name))
    }

    /// Confirms enrolment with a code from the new secret; the session that
    /// confirms it counts as having passed MFA.
    pub async fn totp_confirm(&self, who: &Principal, code: &str) -> Result<(), ServiceError> {
        let Actor::User(id) = who.actor else {
            return Err(AuthError::Forbidden.into());
        };
        let user = self.store().user(id).await?;
        let pending = user.totp_pending.ok_or(AuthError::InvalidCredentials)?;
        let secret = self
            .open_service_secret("totp-pending", &id.to_string(), &pending)
            .await?;
        let now = self.now();
        let unix = u64::try_from(now.as_millis() / 1000).unwrap_or(0);
        let step = totp::verify(&secret, code, unix).ok_or(AuthError::InvalidCredentials)?;
        let sealed = self
            .seal_service_secret("totp", &id.to_string(), &secret)
            .await?;
        let e = entry(
            &who.actor,
            "auth.totp.enrolled",
            &who.actor.to_string(),
            json!({}),
        )?;
        let mut tx = self.store().begin().await?;
        tx.set_totp(id, Some(&sealed), None).await?;
        tx.advance_totp_step(id, step.max(user.totp_last_step + 1))
            .await?;
        if let Some(hash) = &who.session {
            tx.set_session_mfa(hash).await?;
        }
        self.commit(tx, &[e], now).await?;
        Ok(())
    }
}

impl Can<'_, perm::ManageUsers> {
    /// Creates a user without roles and proposes each role: role changes
    /// take the admin quorum (with a quorum of one they apply at once).
    pub async fn create_user(
        &self,
        name: &str,
        password: String,
        grants: &[Grant],
    ) -> Result<(UserRow, Vec<ProposalView>), ServiceError> {
        // Checked before anything is stored.
        for g in grants {
            Grant::new(g.role(), g.scope()).map_err(|e| ServiceError::Invalid(e.to_string()))?;
        }
        self.svc.governance()?;
        let user = self
            .svc
            .insert_user(&self.who.actor, name, password, &[], None)
            .await?;
        let mut proposals = Vec::new();
        for g in grants {
            proposals.push(self.grant(&Actor::User(user.id), *g, None).await?);
        }
        Ok((user, proposals))
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, ServiceError> {
        Ok(self.svc.store().users().await?)
    }

    /// Proposes a role, optionally until a time (a temporary delegation
    /// that expires on its own).
    pub async fn grant(
        &self,
        principal: &Actor,
        grant: Grant,
        until: Option<Timestamp>,
    ) -> Result<ProposalView, ServiceError> {
        self.svc
            .propose(
                self.who,
                Change::Grant {
                    principal: principal.to_string(),
                    role: grant.role().as_str().into(),
                    scope: grant.scope().to_string(),
                    until_ms: until.map(Timestamp::as_millis),
                },
            )
            .await
    }

    /// Proposes removing a role.
    pub async fn revoke_grant(
        &self,
        principal: &Actor,
        grant: Grant,
    ) -> Result<ProposalView, ServiceError> {
        self.svc
            .propose(
                self.who,
                Change::Revoke {
                    principal: principal.to_string(),
                    role: grant.role().as_str().into(),
                    scope: grant.scope().to_string(),
                },
            )
            .await
    }
}

impl Can<'_, perm::ReadAudit> {
    pub async fn audit_page(
        &self,
        after: u64,
        limit: u32,
    ) -> Result<Vec<audit::Record>, ServiceError> {
        Ok(self.svc.store().audit_page(after, limit.min(1000)).await?)
    }
}

impl Can<'_, perm::SealKeystore> {
    pub async fn seal(&self) -> Result<(), ServiceError> {
        self.svc.seal(&self.who.actor).await
    }

    /// Discards the unseal shares given so far (a security officer or admin).
    pub async fn unseal_reset(&self) -> Result<crate::SealStatus, ServiceError> {
        self.svc.unseal_reset(&self.who.actor, "officer").await
    }
}

impl Can<'_, perm::ManageNetworks> {
    pub async fn create_wallet(&self, name: &str) -> Result<WalletRow, ServiceError> {
        create_wallet(self.svc, &self.who.actor, name).await
    }

    /// Opens an account for the wallet on a network: a new key (on a
    /// backend, or an HD account for Bitcoin), registered as the wallet's
    /// sender (Ethereum) or key (Bitcoin). Returns its deposit address.
    pub async fn open_account(
        &self,
        wallet: WalletId,
        network: domain::Network,
        kind: crate::wallets::AccountKey,
    ) -> Result<crate::wallets::WalletAccount, ServiceError> {
        self.svc
            .open_account(&self.who.actor, wallet, network, kind)
            .await
    }

    /// Puts an Ethereum sender in a wallet (grants on the wallet then reach it).
    pub async fn assign_eth_sender(
        &self,
        chain_id: u64,
        address: chain_eth::EthAddress,
        wallet: WalletId,
    ) -> Result<(), ServiceError> {
        assign_only_eth_sender(self.svc, &self.who.actor, chain_id, address, wallet).await
    }
}

impl Can<'_, perm::ReadWallet> {
    /// A Bitcoin send of a wallet in scope (outside it, as if it did not
    /// exist), with the transfers it carries.
    pub async fn btc_send(
        &self,
        id: &str,
    ) -> Result<(storage::BtcSendRow, Vec<storage::TransferRow>), ServiceError> {
        let send = self.svc.store().btc_send(id).await?;
        let global = permits(&self.who.grants, Permission::ReadWallet, None);
        if !global && (send.wallet.is_none() || send.wallet != self.target) {
            return Err(StorageError::NotFound {
                what: "Bitcoin send",
            }
            .into());
        }
        let transfers = self.svc.store().transfers_of_btc_send(id).await?;
        Ok((send, transfers))
    }

    /// A wallet and its accounts (deposit addresses), if in scope.
    pub async fn wallet(
        &self,
        wallet: WalletId,
    ) -> Result<(WalletRow, Vec<crate::wallets::WalletAccount>), ServiceError> {
        if !domain::permits(
            &self.who.grants,
            domain::Permission::ReadWallet,
            Some(wallet),
        ) {
            return Err(storage::StorageError::NotFound { what: "wallet" }.into());
        }
        let w = self.svc.store().wallet(wallet).await?;
        Ok((w, self.svc.wallet_accounts(wallet).await?))
    }

    /// An Ethereum send, if it belongs to the wallet this capability is
    /// for (or the capability is global). Outside the scope it is as if it
    /// did not exist.
    pub async fn eth_send(&self, id: &str) -> Result<storage::EthSendRow, ServiceError> {
        let send = self.svc.store().eth_send(id).await?;
        let wallet = self
            .svc
            .store()
            .eth_sender_wallet(&send.network, &send.address)
            .await?;
        let global = permits(&self.who.grants, Permission::ReadWallet, None);
        if !global && (wallet.is_none() || wallet != self.target) {
            return Err(StorageError::NotFound {
                what: "Ethereum send",
            }
            .into());
        }
        Ok(send)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dummy_hash_parses_so_unknown_names_cost_a_full_verification() {
        assert!(argon2::PasswordHash::new(DUMMY_HASH).is_ok());
        let t = std::time::Instant::now();
        assert!(Argon2::default().verify_password(b"x", DUMMY_HASH).is_err());
        assert!(
            t.elapsed() > std::time::Duration::from_millis(10),
            "it ran Argon2"
        );
    }
}
