//! Freezes: what they cover, whether one is in force, and placing one.
//!
//! Below the signing gate: the gate and every broadcast read freezes from
//! here, and the governance layer above releases them by quorum.

use std::fmt;
use std::str::FromStr;

use domain::{Actor, KeyId, Timestamp, WalletId};
use serde_json::json;
use storage::{FreezeRow, WriteTx};

use crate::record::entry;
use crate::service::{Service, ServiceError};

/// What a freeze covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FreezeScope {
    Global,
    Wallet(WalletId),
    Key(KeyId),
}

impl fmt::Display for FreezeScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FreezeScope::Global => f.write_str("global"),
            FreezeScope::Wallet(w) => write!(f, "wallet:{w}"),
            FreezeScope::Key(k) => write!(f, "key:{k}"),
        }
    }
}

impl FromStr for FreezeScope {
    type Err = ServiceError;
    fn from_str(s: &str) -> Result<Self, ServiceError> {
        let bad = || {
            ServiceError::Invalid(format!(
                "freeze scope {s:?}: expected global, wallet:<uuid> or key:<uuid>"
            ))
        };
        if s == "global" {
            return Ok(FreezeScope::Global);
        }
        let (kind, id) = s.split_once(':').ok_or_else(bad)?;
        match kind {
            "wallet" => id.parse().map(FreezeScope::Wallet).map_err(|_| bad()),
            "key" => id.parse().map(FreezeScope::Key).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

/// A label or reason: 1 to 64 printable characters.
pub(crate) fn check_label(s: &str, what: &str) -> Result<(), ServiceError> {
    let ok = (1..=64).contains(&s.chars().count()) && !s.chars().any(char::is_control);
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "{what}: 1 to 64 printable characters"
        )))
    }
}

/// Writes `row` into `tx` with its webhook event; the audit record to
/// commit with it.
pub(crate) async fn place_in(
    tx: &mut WriteTx,
    by: &Actor,
    row: &FreezeRow,
    now: Timestamp,
) -> Result<audit::Entry, ServiceError> {
    tx.insert_freeze(row).await?;
    crate::outbox::enqueue(
        tx,
        "freeze",
        json!({ "freeze": row.id, "scope": row.scope, "reason": row.reason }),
        now,
    )
    .await?;
    entry(
        by,
        "freeze.placed",
        &format!("freeze:{}", row.id),
        json!({ "scope": row.scope, "reason": row.reason }),
    )
}

/// A new freeze of `scope`, placed by `by` at `now`.
pub(crate) fn new_freeze(
    by: &Actor,
    scope: FreezeScope,
    reason: &str,
    now: Timestamp,
) -> FreezeRow {
    FreezeRow {
        id: uuid::Uuid::now_v7().to_string(),
        scope: scope.to_string(),
        reason: reason.to_owned(),
        frozen_by: by.clone(),
        frozen_at: now,
        released_at: None,
        release_proposal: None,
    }
}

impl Service {
    /// Places a freeze, under the vault lock: a signature in progress in
    /// this process finishes first, and none starts after this returns.
    pub(crate) async fn freeze_as(
        &self,
        by: &Actor,
        scope: FreezeScope,
        reason: &str,
    ) -> Result<FreezeRow, ServiceError> {
        check_label(reason, "reason")?;
        if let FreezeScope::Wallet(w) = scope {
            self.store().wallet(w).await?;
        }
        if let FreezeScope::Key(k) = scope {
            self.store().key(k).await?;
        }
        // Under the vault lock: a signature in progress in this process
        // finishes first, and none starts after the freeze returns.
        let _vault = self.vault().lock().await;
        let now = self.now();
        let row = new_freeze(by, scope, reason, now);
        let mut tx = self.store().begin().await?;
        let e = place_in(&mut tx, by, &row, now).await?;
        self.commit(tx, &[e], now).await?;
        tracing::warn!(scope = %row.scope, "frozen");
        Ok(row)
    }

    /// The freeze in force over a wallet or key, if any (global first).
    pub async fn frozen(
        &self,
        wallet: Option<WalletId>,
        key: Option<KeyId>,
    ) -> Result<Option<FreezeRow>, ServiceError> {
        let now = self.now();
        let freezes = self.store().active_freezes(now).await?;
        let applies = |f: &&FreezeRow| match f.scope.parse::<FreezeScope>() {
            Ok(FreezeScope::Global) => true,
            Ok(FreezeScope::Wallet(w)) => Some(w) == wallet,
            Ok(FreezeScope::Key(k)) => Some(k) == key,
            // An unreadable scope freezes everything (fail closed).
            Err(_) => true,
        };
        Ok(freezes.iter().find(applies).cloned())
    }

    pub async fn freezes(&self) -> Result<Vec<FreezeRow>, ServiceError> {
        Ok(self.store().active_freezes(self.now()).await?)
    }

    /// Freezes from the console (the CLI with the server's own files), for
    /// when the API cannot be reached.
    pub async fn console_freeze(
        &self,
        console: &Actor,
        scope: FreezeScope,
        reason: &str,
    ) -> Result<FreezeRow, ServiceError> {
        self.freeze_as(console, scope, reason).await
    }

    /// Refuses when a freeze covers the wallet or key: called immediately
    /// before every signature and broadcast of a transfer.
    pub(crate) async fn ensure_not_frozen(
        &self,
        wallet: Option<WalletId>,
        key: Option<KeyId>,
    ) -> Result<(), ServiceError> {
        match self.frozen(wallet, key).await? {
            Some(f) => Err(ServiceError::Frozen(f.scope)),
            None => Ok(()),
        }
    }
}
