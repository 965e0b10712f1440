//! Passkeys people sign in with: one row per WebAuthn credential.

use domain::{Timestamp, UserId};
use sqlx::Row;
use sqlx::any::AnyRow;

use crate::error::StorageError;
use crate::row::{corrupt, opt_ts, parsed, ts};
use crate::store::Store;
use crate::tx::WriteTx;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasskeyRow {
    /// Hex.
    pub credential_id: String,
    pub user_id: UserId,
    /// P-256, SEC1 compressed, hex.
    pub public_key: String,
    pub sign_count: u32,
    pub created_at: Timestamp,
    pub last_used_at: Option<Timestamp>,
}

const COLUMNS: &str =
    "credential_id, user_id, public_key, sign_count, created_at_ms, last_used_at_ms";

fn from_row(row: &AnyRow) -> Result<PasskeyRow, StorageError> {
    let count: i64 = row.try_get("sign_count")?;
    Ok(PasskeyRow {
        credential_id: row.try_get("credential_id")?,
        user_id: parsed(row, "user_id")?,
        public_key: row.try_get("public_key")?,
        sign_count: u32::try_from(count).map_err(|e| corrupt("sign_count", &e))?,
        created_at: ts(row, "created_at_ms")?,
        last_used_at: opt_ts(row, "last_used_at_ms")?,
    })
}

impl Store {
    /// A person's passkeys, oldest first.
    pub async fn passkeys_of(&self, user: UserId) -> Result<Vec<PasskeyRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at_ms, credential_id"
        )))
        .bind(user.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(from_row).collect()
    }
}

impl WriteTx {
    /// A person's passkeys, read in this transaction (a removal counts what
    /// is left where it commits).
    pub async fn passkeys_in_tx(&mut self, user: UserId) -> Result<Vec<PasskeyRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM passkeys WHERE user_id = $1 ORDER BY created_at_ms, credential_id"
        )))
        .bind(user.to_string())
        .fetch_all(&mut *self.tx)
        .await?;
        rows.iter().map(from_row).collect()
    }

    /// A new passkey; one registered already (by anyone) is a conflict.
    pub async fn insert_passkey(&mut self, p: &PasskeyRow) -> Result<(), StorageError> {
        let done = sqlx::query(
            "INSERT INTO passkeys (credential_id, user_id, public_key, sign_count, created_at_ms, \
             last_used_at_ms) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (credential_id) DO NOTHING",
        )
        .bind(&p.credential_id)
        .bind(p.user_id.to_string())
        .bind(&p.public_key)
        .bind(i64::from(p.sign_count))
        .bind(p.created_at.as_millis())
        .bind(p.last_used_at.map(|t| t.as_millis()))
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "passkey (already registered)",
            });
        }
        Ok(())
    }

    /// Removes one of `user`'s passkeys.
    pub async fn delete_passkey(
        &mut self,
        user: UserId,
        credential_id: &str,
    ) -> Result<(), StorageError> {
        let done = sqlx::query("DELETE FROM passkeys WHERE credential_id = $1 AND user_id = $2")
            .bind(credential_id)
            .bind(user.to_string())
            .execute(&mut *self.tx)
            .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::NotFound { what: "passkey" });
        }
        Ok(())
    }

    /// Ends every session of `user` but `keep` (after a change of their
    /// second factors: what the old one opened closes); how many ended.
    pub async fn end_other_sessions(
        &mut self,
        user: UserId,
        keep: &str,
    ) -> Result<u64, StorageError> {
        let done = sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND token_hash <> $2")
            .bind(user.to_string())
            .bind(keep)
            .execute(&mut *self.tx)
            .await?;
        Ok(done.rows_affected())
    }

    /// Records a sign-in with a passkey: its counter must have moved
    /// forward (or both be 0: the authenticator keeps none), else the
    /// credential may have been cloned and the sign-in is refused.
    pub async fn use_passkey(
        &mut self,
        credential_id: &str,
        sign_count: u32,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        let done = sqlx::query(
            "UPDATE passkeys SET sign_count = $1, last_used_at_ms = $2 \
             WHERE credential_id = $3 AND (sign_count < $1 OR (sign_count = 0 AND $1 = 0))",
        )
        .bind(i64::from(sign_count))
        .bind(at.as_millis())
        .bind(credential_id)
        .execute(&mut *self.tx)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "passkey signature counter (went backwards: a cloned authenticator?)",
            });
        }
        Ok(())
    }
}
