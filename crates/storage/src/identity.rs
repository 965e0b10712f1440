//! Wallets, users, grants, API keys, request nonces and sessions.

use domain::{Actor, ApiKeyId, Grant, Role, Scope, Timestamp, UserId, WalletId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::row::{corrupt, opt_parsed, parsed, ts};
use crate::store::Store;
use crate::tx::WriteTx;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalletRow {
    pub id: WalletId,
    pub name: String,
    pub created_at: Timestamp,
    pub created_by: Actor,
}

/// A person. The password hash is a PHC string (Argon2id); the TOTP secret
/// is sealed (see `service`).
#[derive(Clone, PartialEq, Eq)]
pub struct UserRow {
    pub id: UserId,
    pub name: String,
    pub password_hash: String,
    pub totp_sealed: Option<Vec<u8>>,
    pub totp_pending: Option<Vec<u8>>,
    /// The last TOTP time step accepted: a code is never accepted twice.
    pub totp_last_step: u64,
    pub state: String,
    pub failed_logins: u32,
    pub locked_until: Timestamp,
    pub created_at: Timestamp,
    pub created_by: Actor,
}

impl std::fmt::Debug for UserRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRow")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("password_hash", &"<redacted>")
            .field("totp", &self.totp_sealed.is_some())
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRow {
    pub id: ApiKeyId,
    pub name: String,
    /// Hex of the Ed25519 public key.
    pub public_key: String,
    pub expires_at: Timestamp,
    pub revoked_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub created_by: Actor,
    /// The person who holds the key (a user), if one was named.
    pub owner: Option<Actor>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub token_hash: String,
    pub user_id: UserId,
    pub csrf_hash: String,
    pub mfa: bool,
    pub address: String,
    pub created_at: Timestamp,
    pub expires_at: Timestamp,
}

const USER_COLUMNS: &str = "id, name, password_hash, totp_sealed, totp_pending, totp_last_step, \
     state, failed_logins, locked_until_ms, created_at_ms, created_by";

fn user_from_row(row: &AnyRow) -> Result<UserRow, StorageError> {
    let failed: i64 = row.try_get("failed_logins")?;
    let step: i64 = row.try_get("totp_last_step")?;
    Ok(UserRow {
        id: parsed(row, "id")?,
        name: row.try_get("name")?,
        password_hash: row.try_get("password_hash")?,
        totp_sealed: row.try_get("totp_sealed")?,
        totp_pending: row.try_get("totp_pending")?,
        totp_last_step: u64::try_from(step).map_err(|e| corrupt("totp step", &e))?,
        state: row.try_get("state")?,
        failed_logins: u32::try_from(failed).map_err(|e| corrupt("failed logins", &e))?,
        locked_until: ts(row, "locked_until_ms")?,
        created_at: ts(row, "created_at_ms")?,
        created_by: parsed(row, "created_by")?,
    })
}

fn api_key_from_row(row: &AnyRow) -> Result<ApiKeyRow, StorageError> {
    let revoked: Option<i64> = row.try_get("revoked_at_ms")?;
    Ok(ApiKeyRow {
        id: parsed(row, "id")?,
        name: row.try_get("name")?,
        public_key: row.try_get("public_key")?,
        expires_at: ts(row, "expires_at_ms")?,
        revoked_at: revoked.map(Timestamp::from_millis),
        created_at: ts(row, "created_at_ms")?,
        created_by: parsed(row, "created_by")?,
        owner: opt_parsed(row, "owner")?,
    })
}

impl WriteTx {
    pub async fn insert_wallet(&mut self, w: &WalletRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO wallets (id, name, created_at_ms, created_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(w.id.to_string())
        .bind(&w.name)
        .bind(w.created_at.as_millis())
        .bind(w.created_by.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "wallet"))?;
        Ok(())
    }

    pub async fn set_eth_sender_wallet(
        &mut self,
        network: &str,
        address: &str,
        wallet: WalletId,
    ) -> Result<(), StorageError> {
        sqlx::query("UPDATE eth_senders SET wallet_id = $1 WHERE network = $2 AND address = $3")
            .bind(wallet.to_string())
            .bind(network)
            .bind(address)
            .execute(&mut *self.tx)
            .await
            .map_err(|e| StorageError::from_sqlx(e, "wallet"))?;
        Ok(())
    }

    pub async fn insert_user(&mut self, u: &UserRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO users ({USER_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
        )))
        .bind(u.id.to_string())
        .bind(&u.name)
        .bind(&u.password_hash)
        .bind(u.totp_sealed.clone())
        .bind(u.totp_pending.clone())
        .bind(i64::try_from(u.totp_last_step).map_err(|e| corrupt("totp step", &e))?)
        .bind(&u.state)
        .bind(i64::from(u.failed_logins))
        .bind(u.locked_until.as_millis())
        .bind(u.created_at.as_millis())
        .bind(u.created_by.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "user"))?;
        Ok(())
    }

    /// Counts one more failed sign-in, atomically (concurrent failures all
    /// count), and returns the new count.
    pub async fn add_login_failure(&mut self, user: UserId) -> Result<u32, StorageError> {
        sqlx::query("UPDATE users SET failed_logins = failed_logins + 1 WHERE id = $1")
            .bind(user.to_string())
            .execute(&mut *self.tx)
            .await?;
        let n: i64 = sqlx::query_scalar("SELECT failed_logins FROM users WHERE id = $1")
            .bind(user.to_string())
            .fetch_one(&mut *self.tx)
            .await?;
        u32::try_from(n).map_err(|e| corrupt("failed logins", &e))
    }

    /// Records a failed sign-in: the count and the lock-out end.
    pub async fn set_login_failures(
        &mut self,
        user: UserId,
        failed: u32,
        locked_until: Timestamp,
    ) -> Result<(), StorageError> {
        sqlx::query("UPDATE users SET failed_logins = $1, locked_until_ms = $2 WHERE id = $3")
            .bind(i64::from(failed))
            .bind(locked_until.as_millis())
            .bind(user.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Accepts a TOTP step, only if it is later than the last one accepted.
    pub async fn advance_totp_step(&mut self, user: UserId, step: u64) -> Result<(), StorageError> {
        let step = i64::try_from(step).map_err(|e| corrupt("totp step", &e))?;
        let done = sqlx::query(
            "UPDATE users SET totp_last_step = $1 WHERE id = $2 AND totp_last_step < $1",
        )
        .bind(step)
        .bind(user.to_string())
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "one-time code (already used)",
            });
        }
        Ok(())
    }

    pub async fn set_totp(
        &mut self,
        user: UserId,
        sealed: Option<&[u8]>,
        pending: Option<&[u8]>,
    ) -> Result<(), StorageError> {
        sqlx::query("UPDATE users SET totp_sealed = $1, totp_pending = $2 WHERE id = $3")
            .bind(sealed.map(<[u8]>::to_vec))
            .bind(pending.map(<[u8]>::to_vec))
            .bind(user.to_string())
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn insert_grant(
        &mut self,
        principal: &Actor,
        grant: Grant,
        expires_at: Option<Timestamp>,
        now: Timestamp,
        by: &Actor,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO grants (principal, role, scope, expires_at_ms, created_at_ms, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(principal.to_string())
        .bind(grant.role().as_str())
        .bind(grant.scope().to_string())
        .bind(expires_at.map(|t| t.as_millis()))
        .bind(now.as_millis())
        .bind(by.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "grant"))?;
        Ok(())
    }

    pub async fn delete_grant(
        &mut self,
        principal: &Actor,
        grant: Grant,
    ) -> Result<(), StorageError> {
        let done =
            sqlx::query("DELETE FROM grants WHERE principal = $1 AND role = $2 AND scope = $3")
                .bind(principal.to_string())
                .bind(grant.role().as_str())
                .bind(grant.scope().to_string())
                .execute(&mut *self.tx)
                .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound { what: "grant" });
        }
        Ok(())
    }

    pub async fn insert_api_key(&mut self, k: &ApiKeyRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO api_keys (id, name, public_key, expires_at_ms, revoked_at_ms, created_at_ms, created_by, owner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(k.id.to_string())
        .bind(&k.name)
        .bind(&k.public_key)
        .bind(k.expires_at.as_millis())
        .bind(k.revoked_at.map(|t| t.as_millis()))
        .bind(k.created_at.as_millis())
        .bind(k.created_by.to_string())
        .bind(k.owner.as_ref().map(ToString::to_string))
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "API key"))?;
        Ok(())
    }

    pub async fn revoke_api_key(
        &mut self,
        id: ApiKeyId,
        now: Timestamp,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at_ms = $1 WHERE id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now.as_millis())
        .bind(id.to_string())
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StorageError::NotFound {
                what: "active API key",
            });
        }
        Ok(())
    }

    pub async fn insert_session(&mut self, s: &SessionRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_hash, mfa, address, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&s.token_hash)
        .bind(s.user_id.to_string())
        .bind(&s.csrf_hash)
        .bind(i64::from(s.mfa))
        .bind(&s.address)
        .bind(s.created_at.as_millis())
        .bind(s.expires_at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "session"))?;
        Ok(())
    }

    pub async fn set_session_mfa(&mut self, token_hash: &str) -> Result<(), StorageError> {
        sqlx::query("UPDATE sessions SET mfa = 1 WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn delete_session(&mut self, token_hash: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Records a sign-in address; true if the user never used it before.
    pub async fn note_login_address(
        &mut self,
        user: UserId,
        address: &str,
        now: Timestamp,
    ) -> Result<bool, StorageError> {
        let known: Option<i64> = sqlx::query_scalar(
            "SELECT first_seen_ms FROM login_addresses WHERE user_id = $1 AND address = $2",
        )
        .bind(user.to_string())
        .bind(address)
        .fetch_optional(&mut *self.tx)
        .await?;
        if known.is_some() {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO login_addresses (user_id, address, first_seen_ms) VALUES ($1, $2, $3)",
        )
        .bind(user.to_string())
        .bind(address)
        .bind(now.as_millis())
        .execute(&mut *self.tx)
        .await?;
        Ok(true)
    }
}

impl Store {
    /// Wallets in id order (creation order: ids are UUIDv7), after `after`,
    /// at most `limit`.
    pub async fn wallets_page(
        &self,
        after: Option<WalletId>,
        limit: u32,
    ) -> Result<Vec<WalletRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, name, created_at_ms, created_by FROM wallets WHERE id > $1 \
             ORDER BY id LIMIT $2",
        )
        .bind(after.map(|w| w.to_string()).unwrap_or_default())
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WalletRow {
                    id: parsed(row, "id")?,
                    name: row.try_get("name")?,
                    created_at: ts(row, "created_at_ms")?,
                    created_by: parsed(row, "created_by")?,
                })
            })
            .collect()
    }

    pub async fn wallet(&self, id: WalletId) -> Result<WalletRow, StorageError> {
        let row =
            sqlx::query("SELECT id, name, created_at_ms, created_by FROM wallets WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StorageError::NotFound { what: "wallet" })?;
        Ok(WalletRow {
            id: parsed(&row, "id")?,
            name: row.try_get("name")?,
            created_at: ts(&row, "created_at_ms")?,
            created_by: parsed(&row, "created_by")?,
        })
    }

    /// The wallet an Ethereum sender belongs to.
    pub async fn eth_sender_wallet(
        &self,
        network: &str,
        address: &str,
    ) -> Result<Option<WalletId>, StorageError> {
        let w: Option<String> = sqlx::query_scalar(
            "SELECT wallet_id FROM eth_senders WHERE network = $1 AND address = $2",
        )
        .bind(network)
        .bind(address)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound {
            what: "Ethereum sender",
        })?;
        w.map(|w| w.parse().map_err(|e| corrupt("wallet id", &e)))
            .transpose()
    }

    pub async fn user(&self, id: UserId) -> Result<UserRow, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound { what: "user" })?;
        user_from_row(&row)
    }

    pub async fn user_by_name(&self, name: &str) -> Result<UserRow, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users WHERE name = $1"
        )))
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound { what: "user" })?;
        user_from_row(&row)
    }

    pub async fn users(&self) -> Result<Vec<UserRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {USER_COLUMNS} FROM users ORDER BY name"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(user_from_row).collect()
    }

    /// A principal's grants in force at `now`.
    pub async fn grants(
        &self,
        principal: &Actor,
        now: Timestamp,
    ) -> Result<Vec<Grant>, StorageError> {
        let rows = sqlx::query(
            "SELECT role, scope FROM grants WHERE principal = $1 \
             AND (expires_at_ms IS NULL OR expires_at_ms > $2) ORDER BY role, scope",
        )
        .bind(principal.to_string())
        .bind(now.as_millis())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let role: Role = parsed(r, "role")?;
                let scope: Scope = parsed(r, "scope")?;
                Grant::new(role, scope).map_err(|e| corrupt("grant", &e))
            })
            .collect()
    }

    pub async fn api_key(&self, id: ApiKeyId) -> Result<ApiKeyRow, StorageError> {
        let row = sqlx::query(
            "SELECT id, name, public_key, expires_at_ms, revoked_at_ms, created_at_ms, created_by, owner \
             FROM api_keys WHERE id = $1",
        )
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound { what: "API key" })?;
        api_key_from_row(&row)
    }

    pub async fn api_keys(&self) -> Result<Vec<ApiKeyRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT id, name, public_key, expires_at_ms, revoked_at_ms, created_at_ms, created_by, owner \
             FROM api_keys ORDER BY created_at_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    /// Records a request nonce with the request's signed time; `false` if
    /// the key used it before (a replay). Nonces signed before
    /// `forget_before` are pruned first, at most once a second (a nonce
    /// kept longer only refuses more): their requests are refused as stale
    /// anyway. (The column `seen_at_ms` holds the signed time.)
    pub async fn use_request_nonce(
        &self,
        key: ApiKeyId,
        nonce: &str,
        signed_at: Timestamp,
        forget_before: Timestamp,
    ) -> Result<bool, StorageError> {
        use std::sync::atomic::Ordering;
        let _turn = self.write_turn().await?;
        let forget = forget_before.as_millis();
        let pruned = self.nonces_pruned.load(Ordering::Relaxed);
        if forget >= pruned.saturating_add(1_000) {
            sqlx::query("DELETE FROM request_nonces WHERE seen_at_ms < $1")
                .bind(forget)
                .execute(&self.pool)
                .await?;
            self.nonces_pruned.fetch_max(forget, Ordering::Relaxed);
        }
        let r = sqlx::query(
            "INSERT INTO request_nonces (key_id, nonce, seen_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(key.to_string())
        .bind(nonce)
        .bind(signed_at.as_millis())
        .execute(&self.pool)
        .await;
        match r {
            Ok(_) => Ok(true),
            Err(e) => match StorageError::from_sqlx(e, "nonce") {
                StorageError::Conflict { .. } => Ok(false),
                other => Err(other),
            },
        }
    }

    pub async fn session(&self, token_hash: &str) -> Result<SessionRow, StorageError> {
        let row = sqlx::query(
            "SELECT token_hash, user_id, csrf_hash, mfa, address, created_at_ms, expires_at_ms \
             FROM sessions WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound { what: "session" })?;
        let mfa: i64 = row.try_get("mfa")?;
        Ok(SessionRow {
            token_hash: row.try_get("token_hash")?,
            user_id: parsed(&row, "user_id")?,
            csrf_hash: row.try_get("csrf_hash")?,
            mfa: mfa == 1,
            address: row.try_get("address")?,
            created_at: ts(&row, "created_at_ms")?,
            expires_at: ts(&row, "expires_at_ms")?,
        })
    }
}
