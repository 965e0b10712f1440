//! Prices kept by operators, in millionths of a dollar per whole unit.

use domain::{Actor, Timestamp};

use crate::error::StorageError;
use crate::row::{parsed, ts};
use crate::tx::WriteTx;

impl WriteTx {
    pub async fn price_in_tx(
        &mut self,
        asset: &str,
    ) -> Result<Option<(u128, Timestamp)>, StorageError> {
        let row = sqlx::query("SELECT micro_usd, as_of_ms FROM prices WHERE asset = $1")
            .bind(asset)
            .fetch_optional(&mut *self.tx)
            .await?;
        row.map(|r| Ok((parsed(&r, "micro_usd")?, ts(&r, "as_of_ms")?)))
            .transpose()
    }
}

impl WriteTx {
    pub async fn set_price(
        &mut self,
        asset: &str,
        micro_usd: u128,
        as_of: Timestamp,
        by: &Actor,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO prices (asset, micro_usd, as_of_ms, set_by) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (asset) DO UPDATE SET micro_usd = excluded.micro_usd, \
             as_of_ms = excluded.as_of_ms, set_by = excluded.set_by",
        )
        .bind(asset)
        .bind(micro_usd.to_string())
        .bind(as_of.as_millis())
        .bind(by.to_string())
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }
}
