//! Freezes: what they cover, whether one is in force, and placing one.
//!
//! Below the signing gate: the gate and every broadcast read freezes from
//! here, and the governance layer above releases them by quorum.
//!
//! A freeze and the broadcasts are ordered in the database, across
//! processes: every broadcast registers in flight under the shared freeze
//! lock after reading the freezes ([`Service::begin_broadcast`]); a freeze
//! is inserted under the exclusive lock, reads the broadcasts registered
//! before it, and returns only once they have ended (or their time ran
//! out), naming those that may have reached the network. Nothing starts
//! after it.

use std::fmt;
use std::str::FromStr;

use std::time::Duration;

use domain::{Actor, KeyId, Timestamp, WalletId};
use serde_json::json;
use storage::{BroadcastRow, FreezeRow, WriteTx};

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

/// How long a broadcast may take before it is abandoned (its bytes may
/// still reach the network: a freeze names it).
pub const BROADCAST_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a freeze waits for the broadcasts that started before it (less
/// than the API's request timeout): those still running then are named as
/// `in_flight` (they may reach the network).
const FREEZE_WAIT_MS: i64 = 20_000;

/// Ended broadcasts are kept this long (for a freeze's answer and review).
const BROADCASTS_KEPT_MS: i64 = 24 * 3_600_000;

/// A freeze placed, with the broadcasts that started before it and may
/// have reached the network (a transaction handed to a node cannot be
/// recalled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub freeze: FreezeRow,
    /// `eth-send:<id>#<attempt>` or `btc-send:<id>`, with how each ended:
    /// `sent`, `unknown` or `in_flight` (its time ran out).
    pub may_have_reached: Vec<(String, String)>,
}

/// A broadcast registered in flight; end it with its outcome.
#[derive(Debug)]
#[must_use = "a broadcast in flight holds up every freeze until it ends"]
pub(crate) struct InFlight {
    id: String,
}

impl InFlight {
    /// Ends the broadcast in `tx`, with the send's change of state.
    pub(crate) async fn end_in(
        &self,
        tx: &mut WriteTx,
        outcome: &str,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        tx.end_broadcast(&self.id, outcome, now).await?;
        Ok(())
    }
}

/// Whether a freeze of `scope` covers a wallet or key.
fn covers(scope: &str, wallet: Option<WalletId>, key: Option<KeyId>) -> bool {
    match scope.parse::<FreezeScope>() {
        Ok(FreezeScope::Global) => true,
        Ok(FreezeScope::Wallet(w)) => Some(w) == wallet,
        Ok(FreezeScope::Key(k)) => Some(k) == key,
        // An unreadable scope freezes everything (fail closed).
        Err(_) => true,
    }
}

/// Whether a freeze of `scope` covers something of `wallet` spending from
/// `keys` (any of them).
fn covers_any(scope: &str, wallet: Option<WalletId>, keys: &[KeyId]) -> bool {
    covers(scope, wallet, None) || keys.iter().any(|k| covers(scope, wallet, Some(*k)))
}

impl Service {
    /// Registers a broadcast about to start, in one transaction under the
    /// shared freeze lock: refused if a freeze covers its wallet or key.
    /// `send` names it (`eth-send:<id>#<n>`, `btc-send:<id>`).
    async fn begin_broadcast(
        &self,
        send: String,
        wallet: Option<WalletId>,
        keys: &[KeyId],
    ) -> Result<InFlight, ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.freeze_lock(true).await?;
        if let Some(f) = tx
            .active_freezes_in_tx(now)
            .await?
            .into_iter()
            .find(|f| covers_any(&f.scope, wallet, keys))
        {
            return Err(ServiceError::Frozen(f.scope));
        }
        tx.prune_broadcasts(Timestamp::from_millis(
            now.as_millis().saturating_sub(BROADCASTS_KEPT_MS),
        ))
        .await?;
        let id = uuid::Uuid::now_v7().to_string();
        let started = entry(
            &Actor::System,
            "broadcast.started",
            &send,
            json!({ "broadcast": id }),
        )?;
        tx.start_broadcast(&BroadcastRow {
            id: id.clone(),
            send,
            wallet: wallet.map(|w| w.to_string()),
            // Every key it spends from (a Bitcoin send may spend several).
            key: (!keys.is_empty()).then(|| {
                keys.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            }),
            started_at: now,
            ended_at: None,
            outcome: None,
        })
        .await?;
        self.commit(tx, &[started], now).await?;
        Ok(InFlight { id })
    }

    /// One broadcast, ordered with every freeze: registered in flight
    /// (refused if a freeze covers `wallet` or `key`), then `send` run for
    /// at most [`BROADCAST_TIMEOUT`]. A failure ends the broadcast here:
    /// `unknown` when `may_have_reached(e)` (it may have reached a node
    /// before it failed, or timed out: `timed_out()`), else `refused`. A
    /// success is left for the caller to end with the send's new state
    /// ([`InFlight::end_in`]).
    pub(crate) async fn broadcast<T, E>(
        &self,
        name: String,
        wallet: Option<WalletId>,
        keys: &[KeyId],
        send: impl std::future::Future<Output = Result<T, E>>,
        may_have_reached: impl Fn(&E) -> bool,
        timed_out: impl FnOnce() -> E,
    ) -> Result<(InFlight, Result<T, E>), ServiceError> {
        let flight = self.begin_broadcast(name, wallet, keys).await?;
        let sent = tokio::time::timeout(BROADCAST_TIMEOUT, send)
            .await
            .unwrap_or_else(|_| Err(timed_out()));
        if let Err(e) = &sent {
            let outcome = if may_have_reached(e) {
                "unknown"
            } else {
                "refused"
            };
            self.end_broadcast(&flight, outcome).await?;
        }
        Ok((flight, sent))
    }

    /// Ends a broadcast that did not go through, in its own transaction.
    pub(crate) async fn end_broadcast(
        &self,
        f: &InFlight,
        outcome: &str,
    ) -> Result<(), ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        tx.end_broadcast(&f.id, outcome, now).await?;
        let ended = entry(
            &Actor::System,
            "broadcast.ended",
            &format!("broadcast:{}", f.id),
            json!({ "outcome": outcome }),
        )?;
        self.commit(tx, &[ended], now).await?;
        self.broadcasts_ended().notify_waiters();
        Ok(())
    }

    /// Waits until each broadcast in `started` has ended, or its time has
    /// run out (a process that died mid-broadcast never ends its row), for
    /// at most [`FREEZE_WAIT_MS`] in all; returns those that may have
    /// reached the network.
    async fn drain(
        &self,
        started: Vec<BroadcastRow>,
    ) -> Result<Vec<(String, String)>, ServiceError> {
        let mut out = Vec::new();
        let waited_enough = self.now().as_millis().saturating_add(FREEZE_WAIT_MS);
        for b in started {
            let deadline = b
                .started_at
                .as_millis()
                .saturating_add(
                    i64::try_from(BROADCAST_TIMEOUT.as_millis())
                        .unwrap_or(i64::MAX / 2)
                        .saturating_add(5_000),
                )
                .min(waited_enough);
            let outcome = loop {
                // Registered before a look, so an end between the look and
                // the wait is not missed.
                let ended = self.broadcasts_ended().notified();
                let row = self.store().broadcast(&b.id).await?;
                if let Some(o) = row.outcome {
                    break o;
                }
                let left = deadline.saturating_sub(self.now().as_millis());
                if left <= 0 {
                    break "in_flight".to_owned();
                }
                // Another process's broadcast ends without waking this one:
                // look again at least every 100 ms.
                let wait = Duration::from_millis(u64::try_from(left.min(100)).unwrap_or(100));
                let _ = tokio::time::timeout(wait, ended).await;
            };
            if outcome != "refused" {
                out.push((b.send, outcome));
            }
        }
        Ok(out)
    }

    /// Places a freeze, under the vault lock (a signature in progress in
    /// this process finishes first, none starts after) and the exclusive
    /// freeze lock (no broadcast starts after, in any process); answers
    /// once every broadcast it covers that started before it has ended.
    pub(crate) async fn freeze_as(
        &self,
        by: &Actor,
        scope: FreezeScope,
        reason: &str,
    ) -> Result<Placed, ServiceError> {
        check_label(reason, "reason")?;
        if let FreezeScope::Wallet(w) = scope {
            self.store().wallet(w).await?;
        }
        if let FreezeScope::Key(k) = scope {
            self.store().key(k).await?;
        }
        // Under the vault lock: a signature in progress in this process
        // finishes first, and none starts after the freeze returns.
        let vault = self.vault().lock().await;
        let now = self.now();
        let row = new_freeze(by, scope, reason, now);
        let mut tx = self.store().begin().await?;
        let e = place_in(&mut tx, by, &row, now).await?;
        let started: Vec<BroadcastRow> = tx
            .broadcasts_in_flight()
            .await?
            .into_iter()
            .filter(|b| {
                let wallet = b.wallet.as_deref().and_then(|w| w.parse().ok());
                let keys: Vec<KeyId> = b
                    .key
                    .iter()
                    .flat_map(|k| k.split(','))
                    .filter_map(|k| k.parse().ok())
                    .collect();
                covers_any(&row.scope, wallet, &keys)
            })
            .collect();
        self.commit(tx, &[e], now).await?;
        drop(vault);
        tracing::warn!(scope = %row.scope, in_flight = started.len(), "frozen");
        let may_have_reached = self.drain(started).await?;
        if !may_have_reached.is_empty() {
            let now = self.now();
            let tx = self.store().begin().await?;
            let e = entry(
                &Actor::System,
                "freeze.broadcasts_drained",
                &format!("freeze:{}", row.id),
                json!({ "may_have_reached": may_have_reached
                    .iter()
                    .map(|(send, outcome)| json!({ "send": send, "outcome": outcome }))
                    .collect::<Vec<_>>() }),
            )?;
            self.commit(tx, &[e], now).await?;
        }
        Ok(Placed {
            freeze: row,
            may_have_reached,
        })
    }

    /// The freeze in force over a wallet or key, if any (global first).
    pub async fn frozen(
        &self,
        wallet: Option<WalletId>,
        key: Option<KeyId>,
    ) -> Result<Option<FreezeRow>, ServiceError> {
        let now = self.now();
        let freezes = self.store().active_freezes(now).await?;
        let applies = |f: &&FreezeRow| covers(&f.scope, wallet, key);
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
    ) -> Result<Placed, ServiceError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_freeze_covers_a_send_spending_from_any_of_its_keys() {
        let k1 = KeyId::from_uuid(uuid::Uuid::now_v7());
        let k2 = KeyId::from_uuid(uuid::Uuid::now_v7());
        let w = WalletId::from_uuid(uuid::Uuid::now_v7());
        let key_scope = FreezeScope::Key(k2).to_string();
        assert!(covers_any(&key_scope, Some(w), &[k1, k2]));
        assert!(!covers_any(&key_scope, Some(w), &[k1]));
        assert!(!covers_any(&key_scope, Some(w), &[]));
        assert!(covers_any(
            &FreezeScope::Wallet(w).to_string(),
            Some(w),
            &[]
        ));
        assert!(covers_any(&FreezeScope::Global.to_string(), None, &[]));
        assert!(covers_any("not a scope", None, &[]), "fail closed");
    }
}
