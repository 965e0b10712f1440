//! The keystore row and the key inventory. Only sealed material is stored.

use domain::{KeyAlgorithm, KeyBackend, KeyId, KeyPurpose, KeyState, Timestamp};
use sqlx::Row;

use crate::error::StorageError;
use crate::store::Store;
use crate::tx::WriteTx;

/// The sealed keystore's one row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeystoreRow {
    pub keystore_id: [u8; 16],
    pub threshold: u8,
    pub shares: u8,
    /// The KEK version new keys are wrapped under.
    pub current_kek: u32,
    pub created_at: Timestamp,
    pub created_by: String,
}

/// A key-encryption key, sealed under the root key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KekRow {
    pub version: u32,
    pub sealed: Vec<u8>,
    pub created_at: Timestamp,
}

/// One key of the inventory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyRow {
    pub id: KeyId,
    pub version: u32,
    pub purpose: KeyPurpose,
    pub algorithm: KeyAlgorithm,
    pub backend: KeyBackend,
    /// The backend's reference (an HSM object id); none for keystore keys.
    pub backend_ref: Option<String>,
    pub state: KeyState,
    /// Hex of the public key in its chain form.
    pub public_key: String,
    /// Canonical JSON: who made it, when, from what entropy, in which ceremony.
    pub provenance: String,
    pub kek_version: Option<u32>,
    pub dek_sealed: Option<Vec<u8>>,
    pub material_sealed: Option<Vec<u8>>,
    pub created_at: Timestamp,
    /// End of the cryptoperiod: the key stops signing after it.
    pub expires_at: Timestamp,
    /// For HD keys: the account path (`m/84'/0'/0'`); the sealed material is
    /// the BIP-32 seed and `public_key` the account's xpub.
    pub hd_path: Option<String>,
}

const KEY_COLUMNS: &str = "id, version, purpose, algorithm, backend, backend_ref, state, public_key, \
     provenance, kek_version, dek_sealed, material_sealed, created_at_ms, expires_at_ms, hd_path";

impl WriteTx {
    /// Keeps the tags of the unseal shares issued (index → hex of the tag).
    pub async fn insert_share_tags(&mut self, tags: &[(u8, [u8; 32])]) -> Result<(), StorageError> {
        for (idx, tag) in tags {
            sqlx::query("INSERT INTO keystore_share_tags (idx, tag) VALUES ($1, $2)")
                .bind(i64::from(*idx))
                .bind(hex::encode(tag))
                .execute(&mut *self.tx)
                .await
                .map_err(|e| StorageError::from_sqlx(e, "share tag"))?;
        }
        Ok(())
    }

    /// A new split of the same root: the tags of the new shares replace the
    /// old ones (which the server then refuses), with the new threshold.
    pub async fn replace_share_tags(
        &mut self,
        threshold: u8,
        tags: &[(u8, [u8; 32])],
    ) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM keystore_share_tags")
            .execute(&mut *self.tx)
            .await?;
        let shares = u8::try_from(tags.len())
            .map_err(|_| StorageError::Corrupt(format!("{} shares", tags.len())))?;
        sqlx::query("UPDATE keystore SET threshold = $1, shares = $2 WHERE id = 1")
            .bind(i64::from(threshold))
            .bind(i64::from(shares))
            .execute(&mut *self.tx)
            .await?;
        self.insert_share_tags(tags).await
    }

    /// Creates the keystore with its first KEK; refuses a second keystore.
    pub async fn insert_keystore(
        &mut self,
        k: &KeystoreRow,
        kek: &KekRow,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO keystore (id, keystore_id, threshold, shares, current_kek, \
             created_at_ms, created_by) VALUES (1, $1, $2, $3, $4, $5, $6)",
        )
        .bind(hex::encode(k.keystore_id))
        .bind(i32::from(k.threshold))
        .bind(i32::from(k.shares))
        .bind(i64::from(k.current_kek))
        .bind(k.created_at.as_millis())
        .bind(&k.created_by)
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "keystore"))?;
        self.insert_kek(kek).await
    }

    /// Adds a KEK version (a rotation's first step).
    pub async fn insert_kek(&mut self, kek: &KekRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO keystore_keks (version, sealed, created_at_ms) VALUES ($1, $2, $3)",
        )
        .bind(i64::from(kek.version))
        .bind(kek.sealed.clone())
        .bind(kek.created_at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "KEK version"))?;
        Ok(())
    }

    /// Makes `to` the KEK new keys are wrapped under, if `from` still is.
    pub async fn set_current_kek(&mut self, from: u32, to: u32) -> Result<(), StorageError> {
        let r =
            sqlx::query("UPDATE keystore SET current_kek = $1 WHERE id = 1 AND current_kek = $2")
                .bind(i64::from(to))
                .bind(i64::from(from))
                .execute(&mut *self.tx)
                .await?;
        if r.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "keystore version",
            });
        }
        Ok(())
    }

    /// Checks, under a lock on the keystore row, that `expected` is still the
    /// current KEK: a process that unsealed before a rotation elsewhere must
    /// not wrap a new key under a KEK being retired.
    pub async fn check_current_kek(&mut self, expected: u32) -> Result<(), StorageError> {
        let sql = match self.backend() {
            crate::Backend::Sqlite => "SELECT current_kek FROM keystore WHERE id = 1",
            crate::Backend::Postgres => "SELECT current_kek FROM keystore WHERE id = 1 FOR UPDATE",
        };
        let current: i64 = sqlx::query_scalar(sql)
            .fetch_optional(&mut *self.tx)
            .await?
            .ok_or(StorageError::NotFound { what: "keystore" })?;
        if current != i64::from(expected) {
            return Err(StorageError::Conflict {
                what: "key-encryption key version (rotated elsewhere: seal and unseal again)",
            });
        }
        Ok(())
    }

    /// Erases a destroyed key's sealed material: no backup can bring it back.
    pub async fn destroy_key_material(&mut self, id: KeyId) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE keys SET dek_sealed = NULL, material_sealed = NULL, kek_version = NULL \
             WHERE id = $1 AND state = 'destroyed'",
        )
        .bind(id.to_string())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Stores the root key wrapped under an HSM key, for auto-unseal.
    pub async fn set_auto_unseal(
        &mut self,
        key_ref: &str,
        sealed: &[u8],
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE keystore SET auto_unseal_ref = $1, auto_unseal_sealed = $2 WHERE id = 1",
        )
        .bind(key_ref)
        .bind(sealed.to_vec())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// Removes a KEK version that no key is wrapped under any more.
    pub async fn delete_kek(&mut self, version: u32) -> Result<(), StorageError> {
        let in_use: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM keys WHERE kek_version = $1")
            .bind(i64::from(version))
            .fetch_one(&mut *self.tx)
            .await?;
        if in_use > 0 {
            return Err(StorageError::Conflict {
                what: "KEK still in use",
            });
        }
        sqlx::query("DELETE FROM keystore_keks WHERE version = $1")
            .bind(i64::from(version))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn insert_key(&mut self, k: &KeyRow) -> Result<(), StorageError> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
        )))
        .bind(k.id.to_string())
        .bind(i64::from(k.version))
        .bind(k.purpose.as_str())
        .bind(k.algorithm.as_str())
        .bind(k.backend.as_str())
        .bind(k.backend_ref.clone())
        .bind(k.state.as_str())
        .bind(&k.public_key)
        .bind(&k.provenance)
        .bind(k.kek_version.map(i64::from))
        .bind(k.dek_sealed.clone())
        .bind(k.material_sealed.clone())
        .bind(k.created_at.as_millis())
        .bind(k.expires_at.as_millis())
        .bind(k.hd_path.clone())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "key"))?;
        Ok(())
    }

    /// Moves a key from `from` to `to`; fails if someone moved it first.
    pub async fn set_key_state(
        &mut self,
        id: KeyId,
        from: KeyState,
        to: KeyState,
    ) -> Result<(), StorageError> {
        let r = sqlx::query("UPDATE keys SET state = $1 WHERE id = $2 AND state = $3")
            .bind(to.as_str())
            .bind(id.to_string())
            .bind(from.as_str())
            .execute(&mut *self.tx)
            .await?;
        if r.rows_affected() != 1 {
            return Err(StorageError::Conflict { what: "key state" });
        }
        Ok(())
    }

    /// Re-wraps one key's data key under a new KEK version.
    pub async fn rewrap_key(
        &mut self,
        id: KeyId,
        from_kek: u32,
        to_kek: u32,
        dek_sealed: &[u8],
    ) -> Result<(), StorageError> {
        let r = sqlx::query(
            "UPDATE keys SET kek_version = $1, dek_sealed = $2 WHERE id = $3 AND kek_version = $4",
        )
        .bind(i64::from(to_kek))
        .bind(dek_sealed.to_vec())
        .bind(id.to_string())
        .bind(i64::from(from_kek))
        .execute(&mut *self.tx)
        .await?;
        if r.rows_affected() != 1 {
            return Err(StorageError::Conflict {
                what: "key wrapping",
            });
        }
        Ok(())
    }
}

impl Store {
    /// The tags of the unseal shares issued, by index (empty for a keystore
    /// made before tags were kept).
    pub async fn share_tags(
        &self,
    ) -> Result<std::collections::BTreeMap<u8, [u8; 32]>, StorageError> {
        let rows = sqlx::query("SELECT idx, tag FROM keystore_share_tags ORDER BY idx")
            .fetch_all(&self.pool)
            .await?;
        let corrupt = || StorageError::Corrupt("share tag".into());
        rows.iter()
            .map(|r| {
                let idx: i64 = r.try_get("idx")?;
                let tag: String = r.try_get("tag")?;
                let mut t = [0u8; 32];
                hex::decode_to_slice(&tag, &mut t).map_err(|_| corrupt())?;
                Ok((u8::try_from(idx).map_err(|_| corrupt())?, t))
            })
            .collect()
    }

    pub async fn keystore(&self) -> Result<Option<KeystoreRow>, StorageError> {
        let Some(row) = sqlx::query(
            "SELECT keystore_id, threshold, shares, current_kek, created_at_ms, created_by \
             FROM keystore WHERE id = 1",
        )
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let corrupt = |what: &str| StorageError::Corrupt(format!("keystore {what}"));
        let id: String = row.try_get("keystore_id")?;
        let mut keystore_id = [0u8; 16];
        hex::decode_to_slice(&id, &mut keystore_id).map_err(|_| corrupt("id"))?;
        let small = |v: i64, what| u8::try_from(v).map_err(|_| corrupt(what));
        Ok(Some(KeystoreRow {
            keystore_id,
            threshold: small(row.try_get("threshold")?, "threshold")?,
            shares: small(row.try_get("shares")?, "shares")?,
            current_kek: u32::try_from(row.try_get::<i64, _>("current_kek")?)
                .map_err(|_| corrupt("KEK version"))?,
            created_at: Timestamp::from_millis(row.try_get("created_at_ms")?),
            created_by: row.try_get("created_by")?,
        }))
    }

    /// The HSM key reference and the wrapped root key, if auto-unseal is on.
    pub async fn auto_unseal(&self) -> Result<Option<(String, Vec<u8>)>, StorageError> {
        let row =
            sqlx::query("SELECT auto_unseal_ref, auto_unseal_sealed FROM keystore WHERE id = 1")
                .fetch_optional(&self.pool)
                .await?;
        let Some(row) = row else { return Ok(None) };
        let r: Option<String> = row.try_get("auto_unseal_ref")?;
        let s: Option<Vec<u8>> = row.try_get("auto_unseal_sealed")?;
        Ok(r.zip(s))
    }

    /// Every KEK version, oldest first.
    pub async fn keks(&self) -> Result<Vec<KekRow>, StorageError> {
        let rows = sqlx::query(
            "SELECT version, sealed, created_at_ms FROM keystore_keks ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KekRow {
                    version: u32::try_from(r.try_get::<i64, _>("version")?)
                        .map_err(|_| StorageError::Corrupt("KEK version".into()))?,
                    sealed: r.try_get("sealed")?,
                    created_at: Timestamp::from_millis(r.try_get("created_at_ms")?),
                })
            })
            .collect()
    }

    pub async fn key(&self, id: KeyId) -> Result<KeyRow, StorageError> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM keys WHERE id = $1"
        )))
        .bind(id.to_string())
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StorageError::NotFound { what: "key" })?;
        key_from_row(&row)
    }

    /// The whole inventory, oldest first.
    pub async fn keys(&self) -> Result<Vec<KeyRow>, StorageError> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM keys ORDER BY created_at_ms, id"
        )))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }
}

fn key_from_row(row: &sqlx::any::AnyRow) -> Result<KeyRow, StorageError> {
    let corrupt =
        |what: &str, e: &dyn std::fmt::Display| StorageError::Corrupt(format!("key {what}: {e}"));
    let text = |c: &str| -> Result<String, StorageError> { Ok(row.try_get::<String, _>(c)?) };
    let u32_of = |v: i64, what: &str| u32::try_from(v).map_err(|e| corrupt(what, &e));
    Ok(KeyRow {
        id: text("id")?.parse().map_err(|e| corrupt("id", &e))?,
        version: u32_of(row.try_get("version")?, "version")?,
        purpose: text("purpose")?
            .parse()
            .map_err(|e| corrupt("purpose", &e))?,
        algorithm: text("algorithm")?
            .parse()
            .map_err(|e| corrupt("algorithm", &e))?,
        backend: text("backend")?
            .parse()
            .map_err(|e| corrupt("backend", &e))?,
        backend_ref: row.try_get("backend_ref")?,
        state: text("state")?.parse().map_err(|e| corrupt("state", &e))?,
        public_key: text("public_key")?,
        provenance: text("provenance")?,
        kek_version: row
            .try_get::<Option<i64>, _>("kek_version")?
            .map(|v| u32_of(v, "KEK version"))
            .transpose()?,
        dek_sealed: row.try_get("dek_sealed")?,
        material_sealed: row.try_get("material_sealed")?,
        created_at: Timestamp::from_millis(row.try_get("created_at_ms")?),
        expires_at: Timestamp::from_millis(row.try_get("expires_at_ms")?),
        hd_path: row.try_get("hd_path")?,
    })
}
