//! The accounts repository.

use domain::{Account, AccountId, AccountName, Timestamp};
use sqlx::Row;

use crate::error::StorageError;
use crate::store::Store;
use crate::tx::WriteTx;

impl WriteTx {
    /// Inserts an account; its name must be unused.
    pub async fn insert_account(&mut self, a: &Account) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO accounts (id, name, created_at_ms, created_by) VALUES ($1, $2, $3, $4)",
        )
        .bind(a.id.to_string())
        .bind(a.name.as_str())
        .bind(a.created_at.as_millis())
        .bind(a.created_by.to_string())
        .execute(&mut *self.tx)
        .await
        .map_err(|e| StorageError::from_sqlx(e, "account"))?;
        Ok(())
    }
}

impl Store {
    pub async fn account(&self, id: AccountId) -> Result<Account, StorageError> {
        let row =
            sqlx::query("SELECT id, name, created_at_ms, created_by FROM accounts WHERE id = $1")
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await?
                .ok_or(StorageError::NotFound { what: "account" })?;
        account_from_row(&row)
    }

    /// All accounts, by name.
    pub async fn accounts(&self) -> Result<Vec<Account>, StorageError> {
        let rows =
            sqlx::query("SELECT id, name, created_at_ms, created_by FROM accounts ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(account_from_row).collect()
    }
}

fn account_from_row(row: &sqlx::any::AnyRow) -> Result<Account, StorageError> {
    let corrupt = |what: &str, e: &dyn std::fmt::Display| {
        StorageError::Corrupt(format!("account {what}: {e}"))
    };
    let id: String = row.try_get("id")?;
    let name: String = row.try_get("name")?;
    let by: String = row.try_get("created_by")?;
    Ok(Account {
        id: id.parse().map_err(|e| corrupt("id", &e))?,
        name: AccountName::new(&name).map_err(|e| corrupt("name", &e))?,
        created_at: Timestamp::from_millis(row.try_get("created_at_ms")?),
        created_by: by.parse().map_err(|e| corrupt("created_by", &e))?,
    })
}
