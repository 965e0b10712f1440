//! How a transfer moves: its states, one step of the lifecycle machine
//! stored with its history line, webhook event and audit record
//! ([`transition`]), its stored intent read back and checked against its
//! digest ([`decode_intent`]), and what kind of failure an attempt's error
//! is ([`classify`]). Below the chain senders and the queue, which move
//! transfers; above only the service's core.

use domain::{Actor, Asset, Timestamp, TransferIntent};
use serde_json::json;
use storage::{StorageError, TransferRow, WriteTx};

use crate::record::entry;
use crate::service::{Service, ServiceError};

/// Transfer states, as the [`lifecycle`] machine names them.
pub mod state {
    use lifecycle::State as S;
    pub const BLOCKED: &str = S::Blocked.as_str();
    pub const PENDING_APPROVAL: &str = S::PendingApproval.as_str();
    pub const TIME_LOCKED: &str = S::TimeLocked.as_str();
    pub const QUEUED: &str = S::Queued.as_str();
    pub const SIGNING: &str = S::Signing.as_str();
    pub const AWAITING_SIGNATURE: &str = S::AwaitingSignature.as_str();
    pub const SIGNED: &str = S::Signed.as_str();
    pub const BROADCASTING: &str = S::Broadcasting.as_str();
    pub const CONFIRMING: &str = S::Confirming.as_str();
    pub const REJECTED: &str = S::Rejected.as_str();
    pub const EXPIRED: &str = S::Expired.as_str();
    pub const CANCELLED: &str = S::Cancelled.as_str();
    /// Its transaction reached the network's confirmation depth.
    pub const COMPLETED: &str = S::Completed.as_str();
    /// It cannot be carried out (refused when built, or reverted on chain).
    pub const FAILED: &str = S::Failed.as_str();
}

/// A queued transfer not handed to the chain within this long fails
/// rather than go out unexpectedly late (after a long freeze or outage).
pub(crate) const MAX_PENDING_MS: i64 = 7 * 24 * 3_600_000;

/// What kind of failure an attempt's error is: one that may go away by
/// itself (a node, a freeze, fees, the keystore), one a person must mend
/// (configuration, funds, the plan refused by a cap), or one that never
/// will (the transaction as approved cannot be built, stored data that
/// does not add up).
pub(crate) fn classify(e: &ServiceError) -> lifecycle::Failure {
    use crate::error::EthError as Eth;
    use lifecycle::Failure as F;
    match e {
        ServiceError::Storage(StorageError::Corrupt(_))
        // What the intent asks cannot be built into an approvable plan.
        | ServiceError::NotApproved(_)
        // A destination denied: never paid, whatever is tried.
        | ServiceError::Screened { .. }
        | ServiceError::Eth(
            Eth::Refused(_)
            | Eth::Address(_)
            | Eth::Tx(_),
        ) => F::Terminal,
        ServiceError::Btc(crate::error::BtcServiceError::Plan(
            chain_btc::FeeError::FeeOverCap { .. }
            | chain_btc::FeeError::RateOverCap { .. }
            | chain_btc::FeeError::Plan(chain_btc::BtcError::InsufficientFunds { .. }),
        )) => F::NeedsPerson,
        ServiceError::Btc(crate::error::BtcServiceError::Plan(_)) => F::Terminal,
        ServiceError::Invalid(_)
        | ServiceError::Storage(StorageError::NotFound { .. })
        | ServiceError::InsufficientFunds(_)
        | ServiceError::Eth(Eth::NetworkNotConfigured(_) | Eth::AssetNotConfigured(_)) => {
            F::NeedsPerson
        }
        _ => F::Retryable,
    }
}

/// How a transfer moves: the event, who moved it and why.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Move<'a> {
    pub event: lifecycle::Event,
    pub by: &'a Actor,
    pub why: &'a str,
    /// When a time lock ends (moving into one).
    pub unlock_at: Option<Timestamp>,
    /// The send now carrying it out (moving into `signing`).
    pub eth_send_id: Option<&'a str>,
    /// The Bitcoin send now carrying it out (moving into `signing`).
    pub btc_send_id: Option<&'a str>,
}

impl<'a> Move<'a> {
    pub(crate) fn new(event: lifecycle::Event, by: &'a Actor, why: &'a str) -> Move<'a> {
        Move {
            event,
            by,
            why,
            unlock_at: None,
            eth_send_id: None,
            btc_send_id: None,
        }
    }
}

/// Moves a transfer one step through the [`lifecycle`] machine, in `tx`:
/// the state (only from the state it was read in: a transfer that moved on
/// meanwhile is a conflict), the record's changes, a history line, the
/// webhook events; returns the audit record to commit with it. An event
/// the state does not take is refused, and nothing changes.
pub(crate) async fn transition(
    tx: &mut WriteTx,
    t: &TransferRow,
    m: Move<'_>,
    now: Timestamp,
) -> Result<(audit::Entry, lifecycle::Step), ServiceError> {
    use lifecycle::{Change, Effect};
    let from: lifecycle::State = t.state.parse().map_err(|e| corrupt("state", e))?;
    let step = lifecycle::step(from, m.event).map_err(|e| ServiceError::Conflict(e.to_string()))?;
    let attempts = t.attempts.saturating_add(1);
    let failure = if step.changes.contains(&Change::Backoff) {
        let next = now
            .as_millis()
            .saturating_add(lifecycle::backoff_ms(attempts));
        Some((attempts, Timestamp::from_millis(next), m.why))
    } else if matches!(m.event, lifecycle::Event::AttemptFailed(_)) {
        Some((attempts, now, m.why))
    } else {
        None
    };
    let actor = m.by.to_string();
    tx.move_transfer(&storage::TransferMove {
        id: t.id,
        from: from.as_str(),
        to: step.to.as_str(),
        unlock_at: m.unlock_at,
        eth_send_id: m.eth_send_id,
        btc_send_id: m.btc_send_id,
        failure,
        hold: step.changes.contains(&Change::Hold),
        reset: step.changes.contains(&Change::ResetAttempts),
        finish: step.changes.contains(&Change::Finish),
        release: step.changes.contains(&Change::Release),
        actor: &actor,
        why: m.why,
        at: now,
    })
    .await?;
    crate::ledger::transfer_moved(tx, t, from.as_str(), step.to.as_str(), now).await?;
    let subject = format!("transfer:{}", t.id);
    let e = if step.to == from {
        // Within `queued`: an attempt failed, or an operator retried.
        let (action, details) = match failure {
            Some((n, next, _)) => (
                "transfer.attempt_failed",
                json!({ "error": m.why, "attempts": n, "held": step.changes.contains(&Change::Hold), "next_attempt_at_ms": next.as_millis() }),
            ),
            None => ("transfer.retried", json!({ "why": m.why })),
        };
        entry(m.by, action, &subject, details)?
    } else {
        transfer_event(tx, t, step.to.as_str(), now).await?;
        state_entry(m.by, t, step.to.as_str(), m.why)?
    };
    if step.effects.contains(&Effect::AskApprovers) && from != lifecycle::State::PendingPolicy {
        crate::outbox::enqueue(
            tx,
            "transfer.pending_approval",
            json!({ "transfer": t.id.to_string(), "wallet": t.wallet.to_string(), "asset": t.asset, "amount": t.amount.to_string(), "destination": t.destination }),
            now,
        )
        .await?;
    }
    Ok((e, step))
}

pub(crate) fn invalid(s: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(s.into())
}

/// A name (of a wallet, a user): 1 to 64 of a-z A-Z 0-9 . _ - @.
pub(crate) fn check_name(name: &str, what: &str) -> Result<(), ServiceError> {
    let ok = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'@'));
    if ok {
        Ok(())
    } else {
        Err(ServiceError::Invalid(format!(
            "{what} is 1 to 64 of a-z A-Z 0-9 . _ - @"
        )))
    }
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> ServiceError {
    StorageError::Corrupt(format!("{what}: {e}")).into()
}

/// A stored transfer's intent, checked against its digest. An asset no
/// longer configured is for a person to mend (the configuration), not a
/// corruption.
pub(crate) fn decode_intent(
    t: &TransferRow,
    assets: &[Asset],
) -> Result<TransferIntent, ServiceError> {
    let intent = TransferIntent::decode(&t.intent, |id| {
        assets.iter().find(|a| a.id() == id).cloned()
    })
    .map_err(|e| match e {
        domain::intent::IntentError::UnknownAsset(a) => {
            ServiceError::Eth(crate::error::EthError::AssetNotConfigured(a))
        }
        e => corrupt("intent", e),
    })?;
    if intent.digest().to_string() != t.digest {
        return Err(corrupt("intent", "digest mismatch"));
    }
    Ok(intent)
}

pub(crate) fn state_entry(
    by: &Actor,
    t: &TransferRow,
    to: &str,
    why: &str,
) -> Result<audit::Entry, ServiceError> {
    entry(
        by,
        "transfer.state_changed",
        &format!("transfer:{}", t.id),
        json!({ "from": t.state, "to": to, "why": why }),
    )
}

pub(crate) async fn transfer_event(
    tx: &mut WriteTx,
    t: &TransferRow,
    to: &str,
    now: Timestamp,
) -> Result<(), ServiceError> {
    crate::outbox::enqueue(
        tx,
        "transfer.state_changed",
        json!({ "transfer": t.id.to_string(), "wallet": t.wallet.to_string(), "state": to }),
        now,
    )
    .await
}

impl Service {
    /// Every asset of the configured networks.
    pub(crate) fn configured_assets(&self) -> Vec<Asset> {
        let nets = self
            .eth_networks()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut out = Vec::new();
        for n in nets.values() {
            out.push(Asset::ether(n.config.chain_id));
            out.extend(n.config.tokens.iter().map(|t| t.asset.clone()));
        }
        drop(nets);
        let btc = self
            .btc_networks()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        out.extend(btc.values().map(|n| Asset::bitcoin(n.network)));
        out
    }

    /// The decimals of an asset by its id: a native coin's are its chain's;
    /// a token's come from the configuration (none for a token no longer
    /// configured).
    pub fn asset_decimals(&self, id: &str) -> Option<u8> {
        let parsed: domain::AssetId = id.parse().ok()?;
        if *parsed.kind() == domain::AssetKind::Native {
            return Some(match parsed.network() {
                domain::Network::Bitcoin(_) => 8,
                domain::Network::Evm { .. } => 18,
            });
        }
        self.configured_assets()
            .into_iter()
            .find(|a| *a.id() == parsed)
            .map(|a| a.decimals().get())
    }
}
