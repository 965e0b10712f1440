//! Idempotency keys: a principal's key bound to the hash of the request it
//! first came with and the transfer it made; external ids.

use domain::{Actor, Timestamp, TransferId};
use sqlx::Row;

use crate::error::StorageError;
use crate::row::{corrupt, parsed};
use crate::store::Store;
use crate::tx::WriteTx;

async fn idempotency_key_on<'e, E>(
    db: E,
    principal: &Actor,
    key: &str,
) -> Result<Option<(String, TransferId)>, StorageError>
where
    E: sqlx::Executor<'e, Database = sqlx::Any>,
{
    let row = sqlx::query(
        "SELECT request_hash, transfer_id FROM idempotency_keys WHERE principal = $1 AND key = $2",
    )
    .bind(principal.to_string())
    .bind(key)
    .fetch_optional(db)
    .await?;
    row.map(|r| Ok((r.try_get("request_hash")?, parsed(&r, "transfer_id")?)))
        .transpose()
}

impl WriteTx {
    /// The request hash and transfer an idempotency key was first used for,
    /// read under this transaction.
    pub async fn idempotency_key(
        &mut self,
        principal: &Actor,
        key: &str,
    ) -> Result<Option<(String, TransferId)>, StorageError> {
        idempotency_key_on(&mut *self.tx, principal, key).await
    }

    /// A transfer made by this principal under its external id, if any.
    pub async fn transfer_by_external_id(
        &mut self,
        initiator: &Actor,
        external_id: &str,
    ) -> Result<Option<TransferId>, StorageError> {
        let id: Option<String> = sqlx::query_scalar(
            "SELECT id FROM transfers WHERE initiator = $1 AND external_id = $2",
        )
        .bind(initiator.to_string())
        .bind(external_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        id.map(|s| s.parse().map_err(|e| corrupt("transfer id", &e)))
            .transpose()
    }

    pub async fn insert_idempotency_key(
        &mut self,
        principal: &Actor,
        key: &str,
        request_hash: &str,
        transfer: TransferId,
        at: Timestamp,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO idempotency_keys (principal, key, request_hash, transfer_id, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(principal.to_string())
        .bind(key)
        .bind(request_hash)
        .bind(transfer.to_string())
        .bind(at.as_millis())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "request with this idempotency key"))?;
        Ok(())
    }
}

impl Store {
    /// The request hash and transfer an idempotency key was first used for.
    pub async fn idempotency_key(
        &self,
        principal: &Actor,
        key: &str,
    ) -> Result<Option<(String, TransferId)>, StorageError> {
        idempotency_key_on(&self.pool, principal, key).await
    }
}
