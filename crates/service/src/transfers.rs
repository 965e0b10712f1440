//! Transfers as the policy judges them: the facts are gathered, the policy
//! in force evaluated, and the intent stored with the version and decision
//! it was judged under (pinned: later changes never reach it) in one
//! transaction with its audit record. Then approvals (signed statements),
//! time locks, cancellation, lapse, and the hand-over to a send — always
//! behind the freeze check.

use std::collections::BTreeSet;

use domain::intent::IntentParts;
use domain::{
    AccountId, Actor, Address, Amount, Asset, AssetId, AssetKind, Network, Permission, Role,
    Timestamp, TransferId, TransferIntent, TransferKind, WalletId, permits,
};
use lifecycle::{Event, State, Verdict};
use policy::{
    ApprovalStatement, Decision, Destination, Facts, Outcome, Policy, Price, TxType, Vote,
    WindowPer, WindowTotal,
};
use serde_json::json;
use storage::{ApprovalRow, StorageError, TransferRow, WindowOf, WriteTx};

use crate::identity::{AuthError, Can, perm};
use crate::keystore::entry;
use crate::service::{Service, ServiceError};

/// Transfer states, as the [`lifecycle`] machine names them.
pub mod state {
    use lifecycle::State as S;
    pub const BLOCKED: &str = S::Blocked.as_str();
    pub const PENDING_APPROVAL: &str = S::PendingApproval.as_str();
    pub const TIME_LOCKED: &str = S::TimeLocked.as_str();
    pub const QUEUED: &str = S::Queued.as_str();
    pub const SIGNING: &str = S::Signing.as_str();
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

/// How long a worker holds a queued transfer it is handing to the chain.
/// Only a matter of efficiency: the planning transaction moves the transfer
/// out of `queued` only if it is still there, so two workers never both
/// plan it; a dead worker's claim lapses after this long.
const CLAIM_LEASE_MS: i64 = 60_000;
/// A queued transfer not handed to the chain within this long fails
/// rather than go out unexpectedly late (after a long freeze or outage).
pub(crate) const MAX_PENDING_MS: i64 = 7 * 24 * 3_600_000;
/// How many transfers a worker claims at once.
const CLAIM_BATCH: u32 = 16;
/// A transfer on its way to the chain that has not moved for this long is
/// shown as stuck.
pub const STUCK_AFTER_MS: i64 = 15 * 60_000;

/// What one pass of [`Service::execute_due`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutePass {
    /// Handed to the chain (planned; signing and broadcast follow).
    pub submitted: usize,
    /// Failed for now; tried again after a backoff.
    pub deferred: usize,
    /// Failed for good.
    pub failed: usize,
}

/// What kind of failure an attempt's error is: one that may go away by
/// itself (a node, a freeze, fees, the keystore), one a person must mend
/// (configuration, funds, the plan refused by a cap), or one that never
/// will (the transaction as approved cannot be built, stored data that
/// does not add up).
pub(crate) fn classify(e: &ServiceError) -> lifecycle::Failure {
    use crate::eth::EthError as Eth;
    use lifecycle::Failure as F;
    match e {
        ServiceError::Storage(StorageError::Corrupt(_))
        // What the intent asks cannot be built into an approvable plan.
        | ServiceError::NotApproved(_)
        | ServiceError::Eth(
            Eth::Refused(_)
            | Eth::Address(_)
            | Eth::Amount(_)
            | Eth::Call(_)
            | Eth::Tx(_)
            | Eth::Mismatch(_),
        ) => F::Terminal,
        ServiceError::Btc(crate::btc::BtcServiceError::Plan(
            chain_btc::FeeError::FeeOverCap { .. }
            | chain_btc::FeeError::RateOverCap { .. }
            | chain_btc::FeeError::Plan(chain_btc::BtcError::InsufficientFunds { .. }),
        )) => F::NeedsPerson,
        ServiceError::Btc(crate::btc::BtcServiceError::Plan(_)) => F::Terminal,
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
        actor: &actor,
        why: m.why,
        at: now,
    })
    .await?;
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
        crate::webhooks::enqueue(
            tx,
            "transfer.pending_approval",
            json!({ "transfer": t.id.to_string(), "wallet": t.wallet.to_string(), "asset": t.asset, "amount": t.amount.to_string(), "destination": t.destination }),
            now,
        )
        .await?;
    }
    Ok((e, step))
}

/// What an initiator asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferRequest {
    pub wallet: WalletId,
    pub asset: AssetId,
    /// A decimal amount in the asset's units.
    pub amount: String,
    pub destination: String,
    pub reference: Option<String>,
    /// The client's own id for the transfer, unique per initiator.
    pub external_id: Option<String>,
    /// Higher goes first among queued transfers.
    pub priority: Priority,
    /// A transfer that must complete before this one starts (one the
    /// initiator can see); if it ends otherwise, this one fails.
    pub depends_on: Option<TransferId>,
}

/// A queued transfer's place in line.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    #[default]
    Normal,
    High,
    Urgent,
}

impl Priority {
    pub const fn rank(self) -> u8 {
        match self {
            Priority::Low => 0,
            Priority::Normal => 1,
            Priority::High => 2,
            Priority::Urgent => 3,
        }
    }

    /// The priority of a stored rank.
    pub fn of_rank(rank: u8) -> Option<Priority> {
        [
            Priority::Low,
            Priority::Normal,
            Priority::High,
            Priority::Urgent,
        ]
        .into_iter()
        .find(|p| p.rank() == rank)
    }
}

impl TransferRequest {
    /// SHA-256 over the request's fields in a fixed order: what an
    /// idempotency key is bound to.
    fn hash(&self) -> String {
        use sha2::{Digest, Sha256};
        let canonical = json!([
            self.wallet.to_string(),
            self.asset.to_string(),
            self.amount,
            self.destination,
            self.reference,
            self.external_id,
            self.priority.rank(),
            self.depends_on.map(|d| d.to_string()),
        ]);
        hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
    }
}

/// A stored transfer, and whether this request only replayed an earlier
/// one with the same idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Submission {
    pub transfer: TransferRow,
    pub replayed: bool,
}

fn check_token(s: &str, what: &str, max: usize) -> Result<(), ServiceError> {
    let ok = (1..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what}: 1 to {max} printable ASCII characters, no spaces"
        )))
    }
}

/// A decision with the policy version it was made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgment {
    pub policy_version: Option<u64>,
    pub decision: Decision,
    /// The transfer's value in millionths of a dollar at the latest known
    /// price, recorded for later USD windows whether or not this policy
    /// asked for it (the decision's own figure when it did).
    pub usd_micro: Option<u128>,
}

/// An approver's signed answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteRequest {
    pub vote: Vote,
    pub expires_at: Timestamp,
    pub signature: [u8; 64],
}

pub(crate) fn invalid(s: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(s.into())
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> ServiceError {
    StorageError::Corrupt(format!("{what}: {e}")).into()
}

/// The parts of a request that do not depend on the database's state.
pub(crate) struct Prepared {
    pub(crate) asset: Asset,
    pub(crate) amount: Amount,
    pub(crate) network: String,
    /// Canonical key (EVM: lower-case hex; Bitcoin: bech32).
    pub(crate) destination_key: String,
    /// As shown and signed (EVM: EIP-55).
    pub(crate) destination: Address,
}

impl Service {
    pub(crate) fn governance(&self) -> Result<crate::governance::GovernanceConfig, ServiceError> {
        self.governance_cell()
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .ok_or(ServiceError::GovernanceNotConfigured)
    }

    /// Configures governance. Until then proposals and transfers are refused.
    pub fn set_governance(&self, cfg: crate::governance::GovernanceConfig) {
        *self
            .governance_cell()
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(cfg);
    }

    fn prepare(&self, req: &TransferRequest) -> Result<Prepared, ServiceError> {
        let chain_id = match req.asset.network() {
            Network::Evm { chain_id } => chain_id,
            Network::Bitcoin(n) => return self.prepare_btc(req, n),
        };
        let net = self
            .eth_network(chain_id)
            .map_err(|e| invalid(format!("asset {}: {e}", req.asset)))?;
        let asset = match req.asset.kind() {
            AssetKind::Native => Asset::ether(chain_id),
            AssetKind::Erc20(_) => net
                .config
                .tokens
                .iter()
                .find(|t| t.asset.id() == &req.asset)
                .map(|t| t.asset.clone())
                .ok_or_else(|| invalid(format!("asset {} is not configured", req.asset)))?,
        };
        let amount =
            Amount::parse(&req.amount, &asset).map_err(|e| invalid(format!("amount: {e}")))?;
        if amount.is_zero() {
            return Err(invalid("amount: must be greater than zero"));
        }
        let to = chain_eth::DestinationRules {
            allow_unchecksummed: net.config.allow_unchecksummed,
            whitelist: &[],
        }
        .check(&req.destination)
        .map_err(|e| invalid(format!("destination: {e}")))?;
        let network = asset.network().to_string();
        let destination = Address::new(asset.network(), &to.to_string())
            .map_err(|e| invalid(format!("destination: {e}")))?;
        Ok(Prepared {
            asset,
            amount,
            network,
            destination_key: to.to_lower_hex(),
            destination,
        })
    }

    /// Judges a transfer inside one transaction that holds, in this order:
    /// the governance lock (shared: no policy, address book or group change
    /// lands meanwhile), the wallet's row lock and locks on the initiator
    /// and the destination (rolling windows cannot race). Everything the
    /// evaluator sees is read under them; the caller commits or drops `tx`.
    async fn judge(
        &self,
        who: &Actor,
        roles: &BTreeSet<Role>,
        req: &TransferRequest,
        p: &Prepared,
    ) -> Result<(WriteTx, Judgment, Timestamp), ServiceError> {
        let mut tx = self.store().begin().await?;
        tx.governance_lock(true).await?;
        let (_, tier) = tx.lock_wallet(req.wallet).await?;
        let tier: policy::Tier = tier.parse().map_err(|e| corrupt("wallet tier", e))?;
        tx.lock_names(&[
            format!("initiator:{who}"),
            format!("destination:{}", p.destination_key),
        ])
        .await?;
        // The clock is read once the locks are held.
        let now = self.now();
        let destination = match tx
            .whitelist_entry_in_tx(&p.network, &p.destination_key)
            .await?
        {
            // Still cooling off: not yet in the address book for policy.
            Some(e) if e.usable_from <= now => Destination::Whitelisted {
                groups: e.group.into_iter().collect(),
            },
            _ if tx
                .is_own_eth_address_in_tx(&p.network, &p.destination_key)
                .await? =>
            {
                Destination::Internal
            }
            _ => Destination::OneTime,
        };
        let price =
            tx.price_in_tx(&req.asset.to_string())
                .await?
                .map(|(micro_usd_per_unit, as_of)| Price {
                    micro_usd_per_unit,
                    as_of,
                });
        let (policy_version, pol) = match tx.current_policy_version().await? {
            Some(v) => {
                let row = tx.policy_in_tx(v).await?;
                let pol =
                    Policy::from_json(&row.document).map_err(|e| corrupt("stored policy", e))?;
                (Some(v), pol)
            }
            // No policy yet: the catch-all blocks.
            None => (
                None,
                Policy::from_toml("rules = []").map_err(|e| invalid(e.to_string()))?,
            ),
        };
        let known = Known { destination, price };
        let facts = facts(&mut tx, who, roles, req, p, tier, &pol, &known, now).await?;
        let decision = policy::evaluate(&pol, &facts);
        let usd_micro = decision.usd_micro.or_else(|| {
            let pr = price?;
            let den = 10u128.checked_pow(u32::from(p.asset.decimals().get()))?;
            Some(
                p.amount
                    .units()
                    .checked_mul(pr.micro_usd_per_unit)?
                    .div_ceil(den),
            )
        });
        let j = Judgment {
            policy_version,
            decision,
            usd_micro,
        };
        Ok((tx, j, now))
    }

    /// The wallet a transfer belongs to, to authorise acting on it.
    pub async fn transfer_wallet(&self, id: TransferId) -> Result<WalletId, ServiceError> {
        Ok(self.store().transfer(id).await?.wallet)
    }

    /// Moves time-locked transfers whose lock has ended to `queued`, and
    /// lapses those that waited too long for approvals. Returns how many moved.
    pub async fn advance_transfers(&self) -> Result<usize, ServiceError> {
        use lifecycle::Event;
        let mut moved = 0;
        for (from, event, why) in [
            (state::TIME_LOCKED, Event::LockEnded, "time lock ended"),
            (
                state::PENDING_APPROVAL,
                Event::Lapsed,
                "approvals did not arrive in time",
            ),
        ] {
            // Page by page until nothing is due: each row moved leaves the set.
            loop {
                let now = self.now();
                let due = self.store().transfers_due(from, now, 200).await?;
                if due.is_empty() {
                    break;
                }
                for t in due {
                    let mut tx = self.store().begin().await?;
                    let t = tx.lock_transfer(t.id).await?;
                    if t.state != from {
                        continue;
                    }
                    let (e, _) =
                        transition(&mut tx, &t, Move::new(event, &Actor::System, why), now).await?;
                    self.commit(tx, &[e], now).await?;
                    moved += 1;
                }
            }
        }
        Ok(moved)
    }

    /// Checks again, right before a transfer goes to the chain, that the
    /// approvals it needed still stand (approvals were unexpired when they
    /// made the quorum; only a voided one, a revoked key, takes it back).
    /// One that lost them goes back to waiting for approvals.
    pub(crate) async fn ensure_approvals_stand(&self, t: &TransferRow) -> Result<(), ServiceError> {
        let id = t.id;
        let now = self.now();
        let decision: Decision =
            serde_json::from_str(&t.decision).map_err(|e| corrupt("decision", e))?;
        if let Outcome::RequireApproval { requirement, .. } = &decision.outcome {
            let approvals = self.store().approvals(id).await?;
            let standing: BTreeSet<Actor> = approvals.iter().filter_map(standing).collect();
            if !requirement.satisfied(&standing) {
                let mut tx = self.store().begin().await?;
                let entries = retally(&mut tx, id, now).await?;
                if !entries.is_empty() {
                    self.commit(tx, &entries, now).await?;
                }
                return Err(invalid(
                    "the transfer's approvals have expired or been voided",
                ));
            }
        }
        Ok(())
    }

    /// Hands a queued transfer to the Ethereum sender of its wallet. The
    /// freeze and the approvals (not voided) are checked again here; the
    /// send's plan and the transfer's move to `signing` are committed
    /// together (only from `queued`), so a transfer is sent at most once.
    pub async fn execute_transfer(
        &self,
        id: TransferId,
        urgency: chain_eth::Urgency,
    ) -> Result<storage::EthSendRow, ServiceError> {
        let planned = self.plan_transfer(id, urgency).await?;
        self.eth_finish(planned).await
    }

    /// The planning half of [`Self::execute_transfer`]: the nonce taken and
    /// stored, the transfer moved to `signing`.
    async fn plan_transfer(
        &self,
        id: TransferId,
        urgency: chain_eth::Urgency,
    ) -> Result<crate::eth::PlannedSend, ServiceError> {
        let t = self.store().transfer(id).await?;
        if t.state != state::QUEUED {
            return Err(invalid(format!("the transfer is {}, not queued", t.state)));
        }
        self.ensure_not_frozen(Some(t.wallet), None).await?;
        self.ensure_approvals_stand(&t).await?;
        let assets = self.configured_assets();
        let intent = decode_intent(&t, &assets)?;
        let network = intent.amount().asset().network().to_string();
        let from = self
            .store()
            .wallet_eth_sender(t.wallet, &network)
            .await?
            .ok_or_else(|| invalid(format!("the wallet has no sender on {network}")))?;
        let from: chain_eth::EthAddress = from.parse().map_err(|e| corrupt("sender", e))?;
        self.eth_plan(&t, &intent, from, urgency).await
    }

    /// Hands queued transfers whose attempt is due to the chain, highest
    /// priority first (claimed in that order; each wallet's planned in that
    /// order, wallets and signatures concurrently), until none is left. Each is claimed first (of
    /// several servers, one takes it); a transfer whose dependency ended
    /// without completing fails; a failed attempt is classified: tried again
    /// after an exponential backoff, held for a person, or failed for good —
    /// each audited.
    pub async fn execute_due(&self) -> Result<ExecutePass, ServiceError> {
        use lifecycle::{Event, Failure};
        let mut pass = ExecutePass::default();
        loop {
            let claimed = self
                .store()
                .claim_transfers(self.now(), CLAIM_LEASE_MS, CLAIM_BATCH)
                .await?;
            if claimed.is_empty() {
                return Ok(pass);
            }
            // Bitcoin payouts of one wallet go out together.
            let mut batches: std::collections::BTreeMap<
                (WalletId, String),
                (domain::BitcoinNetwork, Vec<TransferRow>),
            > = Default::default();
            let mut evm: std::collections::BTreeMap<WalletId, Vec<TransferId>> = Default::default();
            let mut failures = Vec::new();
            for (t, dependency) in claimed {
                let age = self
                    .now()
                    .as_millis()
                    .saturating_sub(t.created_at.as_millis());
                let (event, why) = match dependency.as_deref() {
                    Some(d) if d != state::COMPLETED => (
                        Event::DependencyFailed,
                        format!("the transfer it depends on ended {d}"),
                    ),
                    _ if age > MAX_PENDING_MS => (
                        Event::AttemptFailed(Failure::Terminal),
                        format!(
                            "not handed to the chain within {} days of its request",
                            MAX_PENDING_MS / 86_400_000
                        ),
                    ),
                    _ => {
                        crate::crash::point("after_claim");
                        let btc = match t.asset.parse::<AssetId>().map(|a| a.network()) {
                            Ok(Network::Bitcoin(n)) => Some(n),
                            _ => None,
                        };
                        if let Some(n) = btc {
                            batches
                                .entry((t.wallet, t.asset.clone()))
                                .or_insert_with(|| (n, Vec::new()))
                                .1
                                .push(t);
                            continue;
                        }
                        evm.entry(t.wallet).or_default().push(t.id);
                        continue;
                    }
                };
                failures.push((t.id, event, why));
            }
            // Wallets concurrently; within one, each transfer is planned
            // (its nonce taken) in claim order, so priority orders nonces,
            // and signed and broadcast while the next one is planned.
            let mut wallets = tokio::task::JoinSet::new();
            for (_, ids) in evm {
                let svc = self.clone();
                wallets.spawn(async move { svc.send_in_order(ids).await });
            }
            // Every send is waited for, even after an error: none is left
            // half-way to be cut off when this pass ends.
            let mut broken = None;
            while let Some(joined) = wallets.join_next().await {
                match joined {
                    Ok(results) => {
                        for (id, r) in results {
                            match r {
                                Ok(()) => pass.submitted += 1,
                                // Another worker carried it out meanwhile.
                                Err(ServiceError::Storage(StorageError::Conflict { .. })) => {}
                                Err(e) => failures.push((
                                    id,
                                    Event::AttemptFailed(classify(&e)),
                                    e.to_string(),
                                )),
                            }
                        }
                    }
                    // A panic goes on as it would have without the task,
                    // once the others are done.
                    Err(e) => {
                        if let Ok(p) = e.try_into_panic() {
                            broken.get_or_insert(p);
                        }
                    }
                }
            }
            if let Some(p) = broken {
                std::panic::resume_unwind(p);
            }
            for (id, event, why) in failures {
                let now = self.now();
                let mut tx = self.store().begin().await?;
                let t = tx.lock_transfer(id).await?;
                if t.state != state::QUEUED {
                    continue; // moved on (e.g. back to waiting for approvals)
                }
                let (e, step) =
                    transition(&mut tx, &t, Move::new(event, &Actor::System, &why), now).await?;
                self.commit(tx, &[e], now).await?;
                if step.to == lifecycle::State::Failed {
                    tracing::error!(transfer = %t.id, error = %why, "transfer failed");
                    pass.failed += 1;
                } else {
                    tracing::warn!(transfer = %t.id, error = %why, "transfer attempt failed");
                    pass.deferred += 1;
                }
            }
            let mut waiting = 0;
            for (_, (n, members)) in batches {
                let b = self.execute_btc_batch(members, n).await?;
                pass.submitted += b.submitted;
                pass.deferred += b.deferred;
                pass.failed += b.failed;
                waiting += b.waiting;
            }
            if waiting > 0 && pass == ExecutePass::default() {
                // Only batches that wait for their window: nothing more now.
                return Ok(pass);
            }
        }
    }

    /// Plans one wallet's claimed transfers one after another (in claim
    /// order) and finishes each — signature and broadcast — concurrently
    /// with the planning of the next. Returns each transfer's planning
    /// result; a failure to sign or broadcast is the resumer's to retry.
    async fn send_in_order(
        &self,
        ids: Vec<TransferId>,
    ) -> Vec<(TransferId, Result<(), ServiceError>)> {
        let mut results = Vec::with_capacity(ids.len());
        let mut finishing = tokio::task::JoinSet::new();
        for id in ids {
            match self.plan_transfer(id, chain_eth::Urgency::Normal).await {
                Ok(planned) => {
                    results.push((id, Ok(())));
                    let svc = self.clone();
                    finishing.spawn(async move {
                        if let Err(e) = svc.eth_finish(planned).await {
                            tracing::warn!(transfer = %id, error = %e, "send not finished");
                        }
                    });
                }
                Err(e) => results.push((id, Err(e))),
            }
        }
        // All finished before a panic goes on: none is cut off half-way.
        let mut broken = None;
        while let Some(j) = finishing.join_next().await {
            if let Err(e) = j
                && let Ok(p) = e.try_into_panic()
            {
                broken.get_or_insert(p);
            }
        }
        if let Some(p) = broken {
            std::panic::resume_unwind(p);
        }
        results
    }

    /// Records a failed attempt of a queued transfer (if it is still
    /// queued): a backoff, a hold, or its end. Returns whether it failed
    /// for good.
    pub(crate) async fn attempt_failed(
        &self,
        id: TransferId,
        failure: lifecycle::Failure,
        why: &str,
    ) -> Result<Option<bool>, ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let t = tx.lock_transfer(id).await?;
        if t.state != state::QUEUED {
            return Ok(None);
        }
        let (e, step) = transition(
            &mut tx,
            &t,
            Move::new(Event::AttemptFailed(failure), &Actor::System, why),
            now,
        )
        .await?;
        self.commit(tx, &[e], now).await?;
        Ok(Some(step.to == State::Failed))
    }

    /// Another attempt now for a queued transfer that is held for a person
    /// or waiting out a backoff (audited).
    async fn retry_transfer(
        &self,
        by: &Actor,
        id: TransferId,
        why: &str,
    ) -> Result<TransferRow, ServiceError> {
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let t = tx.lock_transfer(id).await?;
        if t.state != state::QUEUED {
            return Err(ApprovalError::NotAwaiting(t.state.clone()).into());
        }
        let (e, _) = transition(
            &mut tx,
            &t,
            Move::new(lifecycle::Event::OperatorRetry, by, why),
            now,
        )
        .await?;
        self.commit(tx, &[e], now).await?;
        Ok(self.store().transfer(id).await?)
    }

    /// Refuses a transfer the wallet cannot cover. The chain's holdings on
    /// the wallet's sender must cover, in the asset, this amount and every
    /// transfer of the asset still to leave; and in ether, every ether
    /// transfer still to leave plus the fee cap of each transfer still to
    /// leave on the network (tokens' gas is paid in ether too). Outflows are
    /// read first, under the judgment's wallet lock, and counted until their
    /// transaction is confirmed: a send already in a block is counted twice
    /// for a few blocks (the safe direction), never missed.
    /// What the node says a wallet's sender holds of a transfer's asset
    /// (and ether, for fees), read before the transfer's write transaction
    /// so the database's write lock is not held over node round trips.
    /// `None` when there is nothing to read or the read failed: the funds
    /// check then reads under the lock (and reports any error there).
    async fn held_before(&self, req: &TransferRequest, p: &Prepared) -> Option<Held> {
        let Network::Evm { chain_id } = req.asset.network() else {
            return None;
        };
        let net = self.eth_network(chain_id).ok()?;
        let from = self
            .store()
            .wallet_eth_sender(req.wallet, &p.network)
            .await
            .ok()??
            .parse()
            .ok()?;
        self.held(&net, from, &req.asset, None).await.ok()
    }

    /// What `from` holds at the newest credited block (see
    /// [`Self::credited_block`]).
    async fn held(
        &self,
        net: &crate::eth::EthNetwork,
        from: chain_eth::EthAddress,
        asset: &AssetId,
        recorded: Option<u64>,
    ) -> Result<Held, ServiceError> {
        let at = self.credited_block(net, recorded).await?;
        let token = match net.config.tokens.iter().find(|t| t.asset.id() == asset) {
            Some(t) => Some(
                net.client
                    .erc20_balance_at(t.contract, from, at)
                    .await
                    .map_err(crate::eth::EthError::Node)?,
            ),
            None => None,
        };
        let ether = net
            .client
            .balance_at(from, at)
            .await
            .map_err(crate::eth::EthError::Node)?;
        Ok(Held {
            from,
            at,
            ether,
            token,
        })
    }

    async fn ensure_funds(
        &self,
        tx: &mut WriteTx,
        req: &TransferRequest,
        p: &Prepared,
        before: Option<Held>,
    ) -> Result<(), ServiceError> {
        let chain_id = match req.asset.network() {
            Network::Evm { chain_id } => chain_id,
            Network::Bitcoin(n) => return self.ensure_btc_funds(tx, req, p, n).await,
        };
        let net = self
            .eth_network(chain_id)
            .map_err(|e| invalid(format!("asset {}: {e}", req.asset)))?;
        let from = tx
            .wallet_eth_sender_in_tx(req.wallet, &p.network)
            .await?
            .ok_or_else(|| invalid(format!("the wallet has no sender on {}", p.network)))?;
        let from: chain_eth::EthAddress = from.parse().map_err(|e| corrupt("sender", e))?;
        let outflows = tx.wallet_outflows_in_tx(req.wallet).await?;
        let need = needs(
            &outflows,
            &p.network,
            &req.asset.to_string(),
            &Asset::ether(chain_id).id().to_string(),
            p.amount.units(),
            net.config.fee_caps.max_total_fee,
        )
        .ok_or_else(|| corrupt("outflows", "overflow"))?;
        let ether = Asset::ether(chain_id);
        let check = |needed: u128, held: u128, asset: &Asset| {
            if needed <= held {
                return Ok(());
            }
            let d = asset.decimals();
            Err(ServiceError::InsufficientFunds(format!(
                "{} {} needed (this transfer, those still to leave and their fee caps), {} held",
                domain::amount::format_units(needed, d, false),
                asset.symbol().as_str(),
                domain::amount::format_units(held, d, false),
            )))
        };
        let recorded = tx
            .eth_highest_block_in_tx(&p.network, &from.to_lower_hex())
            .await?;
        // Balances read before this transaction count only if every send
        // finished since (no longer an outflow) is in them: finished at
        // or below the block they were read at. Otherwise read again, here.
        let token = net
            .config
            .tokens
            .iter()
            .find(|t| t.asset.id() == &req.asset);
        let held = match before {
            Some(h)
                if h.from == from
                    && recorded.is_none_or(|r| r <= h.at)
                    && (token.is_none() || h.token.is_some()) =>
            {
                h
            }
            _ => self.held(&net, from, &req.asset, recorded).await?,
        };
        if let Some(t) = token {
            let units = held
                .token
                .ok_or_else(|| corrupt("token balance", "not read"))?;
            check(need.asset, units, &t.asset)?;
        }
        check(need.ether, held.ether, &ether)
    }

    /// The block whose balances count: the newest at the network's
    /// confirmation depth, so a deposit is credited only once it is that
    /// deep (and a reorganised one never was). Our own sends are counted as
    /// outflows until they are finished at that depth; a node whose depth
    /// is below the block of a send already finished (a lagging endpoint)
    /// would show a balance from before it while it no longer counts as an
    /// outflow, so it is refused rather than trusted.
    pub(crate) async fn credited_block(
        &self,
        net: &crate::eth::EthNetwork,
        recorded: Option<u64>,
    ) -> Result<u64, ServiceError> {
        let head = net
            .client
            .block_number()
            .await
            .map_err(crate::eth::EthError::Node)?;
        let at = head.saturating_sub(net.config.confirmations.saturating_sub(1));
        if recorded.is_some_and(|r| r > at) {
            return Err(
                crate::eth::EthError::Node(crate::eth::ClientError::Unavailable(
                    "the node is behind a send already finished".into(),
                ))
                .into(),
            );
        }
        Ok(at)
    }

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
}

/// Balances of an EVM sender at a block, as the node gave them.
struct Held {
    from: chain_eth::EthAddress,
    at: u64,
    ether: u128,
    /// Of the transfer's token, if it is one.
    token: Option<u128>,
}

struct Known {
    destination: Destination,
    price: Option<Price>,
}

/// The facts for one transfer; rolling windows are read inside `tx`.
#[allow(clippy::too_many_arguments)]
async fn facts(
    tx: &mut WriteTx,
    who: &Actor,
    roles: &BTreeSet<Role>,
    req: &TransferRequest,
    p: &Prepared,
    tier: policy::Tier,
    pol: &Policy,
    known: &Known,
    now: Timestamp,
) -> Result<Facts, ServiceError> {
    let asset_id = req.asset.to_string();
    let mut windows = Vec::new();
    for spec in pol.window_specs() {
        let since = Timestamp::from_millis(
            now.as_millis().saturating_sub(
                i64::try_from(spec.seconds)
                    .unwrap_or(i64::MAX / 1000)
                    .saturating_mul(1000),
            ),
        );
        let of = match spec.per {
            WindowPer::Wallet => WindowOf::Wallet(req.wallet),
            WindowPer::Initiator => WindowOf::Initiator(who),
            WindowPer::Destination => WindowOf::Destination(&p.destination_key),
        };
        let items = tx.window_items(of, since).await?;
        let mut asset_units: u128 = 0;
        let mut usd: Option<u128> = Some(0);
        for i in &items {
            if i.asset == asset_id {
                asset_units = asset_units
                    .checked_add(i.amount)
                    .ok_or_else(|| corrupt("window total", "overflow"))?;
            }
            usd = match (usd, i.usd_micro) {
                (Some(a), Some(b)) => a.checked_add(b),
                _ => None,
            };
        }
        windows.push(WindowTotal {
            spec,
            asset_units,
            usd_micro: usd,
        });
    }
    Ok(Facts {
        initiator: who.clone(),
        initiator_roles: roles.clone(),
        wallet: req.wallet,
        tier,
        destination: known.destination.clone(),
        asset: req.asset.clone(),
        decimals: p.asset.decimals(),
        amount: p.amount.units(),
        tx_type: TxType::Transfer,
        price: known.price,
        now,
        windows,
    })
}

/// What a wallet must hold on a network for one more transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Needs {
    /// In the transfer's own asset (for ether, the same as `ether`).
    asset: u128,
    /// In ether: ether still to leave and the fee cap of every transfer.
    ether: u128,
}

/// `outflows` are (asset id, base units, committed) of the wallet's open
/// transfers; `None` on overflow.
fn needs(
    outflows: &[(String, u128, bool)],
    network: &str,
    asset: &str,
    ether: &str,
    amount: u128,
    fee_cap: u128,
) -> Option<Needs> {
    let prefix = format!("{network}/");
    let mut in_asset = amount;
    let mut in_ether = if asset == ether { amount } else { 0 };
    let mut open: u128 = 1;
    for (a, units, _) in outflows {
        if !a.starts_with(&prefix) {
            continue;
        }
        open = open.checked_add(1)?;
        if a == asset {
            in_asset = in_asset.checked_add(*units)?;
        }
        if a == ether {
            in_ether = in_ether.checked_add(*units)?;
        }
    }
    Some(Needs {
        asset: in_asset,
        ether: in_ether.checked_add(fee_cap.checked_mul(open)?)?,
    })
}

/// Approvals that count toward a quorum not yet reached: not voided, not expired.
fn valid_approvers(approvals: &[ApprovalRow], now: Timestamp) -> BTreeSet<Actor> {
    approvals
        .iter()
        .filter(|a| a.expires_at > now)
        .filter_map(standing)
        .collect()
}

/// An approval that still stands once the quorum was reached (it was
/// unexpired then): only a voided one (a revoked key) is taken back.
fn standing(a: &ApprovalRow) -> Option<Actor> {
    (a.vote == "approve" && a.voided_at.is_none()).then(|| a.approver.clone())
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
            ServiceError::Eth(crate::eth::EthError::AssetNotConfigured(a))
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
    crate::webhooks::enqueue(
        tx,
        "transfer.state_changed",
        json!({ "transfer": t.id.to_string(), "wallet": t.wallet.to_string(), "state": to }),
        now,
    )
    .await
}

/// Re-counts a transfer's approvals (after a revocation): one that no
/// longer has them goes back to waiting for approvals. Returns the audit
/// records to commit (none if nothing moved).
pub(crate) async fn retally(
    tx: &mut WriteTx,
    id: TransferId,
    now: Timestamp,
) -> Result<Vec<audit::Entry>, ServiceError> {
    let t = tx.lock_transfer(id).await?;
    if ![state::TIME_LOCKED, state::QUEUED].contains(&t.state.as_str()) {
        return Ok(Vec::new());
    }
    let decision: Decision =
        serde_json::from_str(&t.decision).map_err(|e| corrupt("decision", e))?;
    let Outcome::RequireApproval { requirement, .. } = &decision.outcome else {
        return Ok(Vec::new());
    };
    let approvals = tx.approvals_in_tx(id).await?;
    if requirement.satisfied(&approvals.iter().filter_map(standing).collect()) {
        return Ok(Vec::new());
    }
    let (e, _) = transition(
        tx,
        &t,
        Move::new(
            lifecycle::Event::ApprovalsLost,
            &Actor::System,
            "approvals were voided",
        ),
        now,
    )
    .await?;
    Ok(vec![e])
}

fn roles_of(grants: &[domain::Grant], wallet: WalletId) -> BTreeSet<Role> {
    grants
        .iter()
        .filter(|g| match g.scope() {
            domain::Scope::Global => true,
            domain::Scope::Wallet(w) => w == wallet,
        })
        .map(domain::Grant::role)
        .collect()
}

impl Can<'_, perm::InitiateTransfer> {
    fn check_wallet(&self, wallet: WalletId) -> Result<(), ServiceError> {
        if permits(
            self.who.grants(),
            Permission::InitiateTransfer,
            Some(wallet),
        ) {
            Ok(())
        } else {
            Err(AuthError::Forbidden.into())
        }
    }

    /// Would this transfer be allowed, and why? Nothing is stored.
    pub async fn dry_run(&self, req: &TransferRequest) -> Result<Judgment, ServiceError> {
        self.check_wallet(req.wallet)?;
        let svc = self.svc;
        svc.governance()?;
        let p = svc.prepare(req)?;
        let roles = roles_of(self.who.grants(), req.wallet);
        let (tx, j, _) = svc.judge(self.who.actor(), &roles, req, &p).await?;
        // Dropped without commit: rolled back, nothing written.
        drop(tx);
        Ok(j)
    }

    /// Stores the transfer with its judgment: blocked, waiting for
    /// approvals, time-locked or approved. A tripped circuit breaker also
    /// freezes the wallet and raises an alert, in the same transaction.
    pub async fn submit(&self, req: &TransferRequest) -> Result<TransferRow, ServiceError> {
        Ok(self.submit_once(req, None).await?.transfer)
    }

    /// [`submit`](Self::submit) with an idempotency key: the same key with
    /// the same request gives back the transfer it first made (nothing new
    /// is judged or stored); with another request it is refused. The key is
    /// stored in the transfer's own transaction, under the wallet's lock, so
    /// concurrent retries wait for the first and then replay it.
    pub async fn submit_once(
        &self,
        req: &TransferRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Submission, ServiceError> {
        self.check_wallet(req.wallet)?;
        let svc = self.svc;
        let cfg = svc.governance()?;
        if let Some(k) = idempotency_key {
            check_token(k, "Idempotency-Key", 255)?;
        }
        if let Some(e) = &req.external_id {
            check_token(e, "external_id", 128)?;
        }
        // A retry is answered before anything that may have changed since
        // the first request (a freeze it tripped, the configuration); the
        // same check runs again under the locks for concurrent retries.
        let request_hash = req.hash();
        if let Some(key) = idempotency_key
            && let Some((hash, earlier)) =
                svc.store().idempotency_key(self.who.actor(), key).await?
        {
            if hash != request_hash {
                return Err(ServiceError::IdempotencyMismatch);
            }
            return Ok(Submission {
                transfer: svc.store().transfer(earlier).await?,
                replayed: true,
            });
        }
        let p = svc.prepare(req)?;
        if let Some(f) = svc.frozen(Some(req.wallet), None).await? {
            return Err(ServiceError::Frozen(f.scope));
        }
        let who = self.who.actor();
        let roles = roles_of(self.who.grants(), req.wallet);
        let held = svc.held_before(req, &p).await;
        let (mut tx, j, now) = svc.judge(who, &roles, req, &p).await?;
        if let Some(key) = idempotency_key
            && let Some((hash, earlier)) = tx.idempotency_key(who, key).await?
        {
            drop(tx);
            if hash != request_hash {
                return Err(ServiceError::IdempotencyMismatch);
            }
            return Ok(Submission {
                transfer: svc.store().transfer(earlier).await?,
                replayed: true,
            });
        }
        if let Some(ext) = &req.external_id
            && let Some(earlier) = tx.transfer_by_external_id(who, ext).await?
        {
            return Err(ServiceError::Conflict(format!(
                "transfer {earlier} already has the external id {ext:?}"
            )));
        }
        if let Some(dep) = req.depends_on {
            let d = tx.lock_transfer(dep).await.map_err(|e| match e {
                StorageError::NotFound { .. } => invalid("depends_on: no such transfer"),
                e => e.into(),
            })?;
            if !permits(self.who.grants(), Permission::ReadWallet, Some(d.wallet)) {
                return Err(invalid("depends_on: no such transfer"));
            }
            let ended: State = d.state.parse().map_err(|e| corrupt("state", e))?;
            if ended.is_final() && d.state != state::COMPLETED {
                return Err(invalid(format!(
                    "depends_on: transfer {dep} ended {}",
                    d.state
                )));
            }
        }
        if !matches!(j.decision.outcome, Outcome::Block) {
            svc.ensure_funds(&mut tx, req, &p, held).await?;
        }
        let id = TransferId::from_uuid(uuid::Uuid::now_v7());
        let intent = TransferIntent::new(IntentParts {
            id,
            kind: TransferKind::Withdrawal,
            // Wallets are not grouped into accounts yet: the wallet's id
            // stands for its account.
            account: AccountId::from_uuid(*req.wallet.as_uuid()),
            wallet: req.wallet,
            amount: p.amount.clone(),
            destination: p.destination.clone(),
            reference: req.reference.clone(),
            initiator: who.clone(),
            created_at: now,
        })
        .map_err(|e| invalid(e.to_string()))?;
        let d = &j.decision;
        let (verdict, unlock, expires) = match &d.outcome {
            Outcome::Block if d.breaker.is_some() => (Verdict::BreakerTripped, None, None),
            Outcome::Block => (Verdict::Block, None, None),
            Outcome::Allow { time_lock_s: 0 } => (Verdict::Allow, None, None),
            Outcome::Allow { time_lock_s } => (
                Verdict::AllowAfterLock,
                Some(after(now, *time_lock_s)),
                None,
            ),
            Outcome::RequireApproval { .. } => (
                Verdict::RequireApproval,
                None,
                Some(Timestamp::from_millis(
                    now.as_millis().saturating_add(cfg.approval_window_ms),
                )),
            ),
        };
        // Received and judged within this transaction: the history shows
        // both steps, the row is stored in the state they lead to.
        let received = lifecycle::step(State::Submitted, Event::Received)
            .map_err(|e| ServiceError::Conflict(e.to_string()))?;
        let judged = lifecycle::step(received.to, Event::Judged(verdict))
            .map_err(|e| ServiceError::Conflict(e.to_string()))?;
        let st = judged.to.as_str();
        let decision_json = serde_json::to_string(d).map_err(|e| invalid(e.to_string()))?;
        let row = TransferRow {
            id,
            wallet: req.wallet,
            initiator: who.clone(),
            asset: req.asset.to_string(),
            amount: p.amount.units(),
            destination: p.destination_key.clone(),
            intent: intent.canonical_bytes(),
            digest: intent.digest().to_string(),
            policy_version: j.policy_version.unwrap_or(0),
            decision_id: uuid::Uuid::now_v7().to_string(),
            decision: decision_json,
            state: st.into(),
            usd_micro: j.usd_micro,
            expires_at: expires,
            unlock_at: unlock,
            eth_send_id: None,
            external_id: req.external_id.clone(),
            attempts: 0,
            next_attempt_at: now,
            last_error: None,
            priority: req.priority.rank(),
            depends_on: req.depends_on,
            held_at: None,
            finished_at: judged.to.is_final().then_some(now),
            btc_send_id: None,
            created_at: now,
            updated_at: now,
        };
        tx.insert_transfer(&row).await?;
        let actor = who.to_string();
        let rule = d.rule.as_deref().unwrap_or("no rule matched");
        for (s, why) in [
            (State::Submitted, "requested"),
            (received.to, "policy evaluated"),
            (judged.to, rule),
        ] {
            tx.add_history(id, s.as_str(), &actor, why, now).await?;
        }
        if let Some(key) = idempotency_key {
            tx.insert_idempotency_key(who, key, &request_hash, id, now)
                .await?;
        }
        transfer_event(&mut tx, &row, st, now).await?;
        if st == state::PENDING_APPROVAL {
            crate::webhooks::enqueue(
                &mut tx,
                "transfer.pending_approval",
                json!({
                    "transfer": id.to_string(),
                    "wallet": req.wallet.to_string(),
                    "asset": row.asset,
                    "amount": row.amount.to_string(),
                    "destination": p.destination.as_str(),
                    "rule": d.rule,
                    "expires_at_ms": expires.map(Timestamp::as_millis),
                }),
                now,
            )
            .await?;
        }
        let mut entries = vec![entry(
            who,
            "transfer.judged",
            &format!("transfer:{id}"),
            json!({
                "wallet": req.wallet.to_string(),
                "asset": row.asset,
                "amount": row.amount.to_string(),
                "destination": p.destination.as_str(),
                "digest": row.digest,
                "policy_version": j.policy_version,
                "decision_id": row.decision_id,
                "rule": d.rule,
                "outcome": d.outcome.to_string(),
                "error": d.error,
                "state": st,
            }),
        )?];
        if let Some(b) = &d.breaker {
            let f = storage::FreezeRow {
                id: uuid::Uuid::now_v7().to_string(),
                scope: crate::governance::FreezeScope::Wallet(req.wallet).to_string(),
                reason: format!("circuit breaker {b}"),
                frozen_by: Actor::System,
                frozen_at: now,
                released_at: None,
                release_proposal: None,
            };
            tx.insert_freeze(&f).await?;
            crate::webhooks::enqueue(
                &mut tx,
                "circuit_breaker",
                json!({ "wallet": req.wallet.to_string(), "breaker": b, "freeze": f.id, "transfer": id.to_string() }),
                now,
            )
            .await?;
            entries.push(entry(
                &Actor::System,
                "freeze.placed",
                &format!("freeze:{}", f.id),
                json!({ "scope": f.scope, "reason": f.reason }),
            )?);
            tracing::warn!(wallet = %req.wallet, breaker = %b, "circuit breaker tripped: wallet frozen");
        }
        svc.commit(tx, &entries, now).await?;
        crate::crash::point("after_intent_insert");
        Ok(Submission {
            transfer: row,
            replayed: false,
        })
    }
}

fn after(now: Timestamp, seconds: u64) -> Timestamp {
    Timestamp::from_millis(
        now.as_millis().saturating_add(
            i64::try_from(seconds)
                .unwrap_or(i64::MAX / 1000)
                .saturating_mul(1000),
        ),
    )
}

impl Can<'_, perm::ApproveTransfer> {
    fn in_scope(&self, t: &TransferRow) -> Result<(), ServiceError> {
        if permits(
            self.who.grants(),
            Permission::ApproveTransfer,
            Some(t.wallet),
        ) {
            Ok(())
        } else {
            Err(StorageError::NotFound { what: "transfer" }.into())
        }
    }

    /// The statement an approver signs for this transfer.
    pub async fn statement(
        &self,
        id: TransferId,
        vote: Vote,
        expires_at: Timestamp,
    ) -> Result<ApprovalStatement, ServiceError> {
        let t = self.svc.store().transfer(id).await?;
        self.in_scope(&t)?;
        statement_of(&t, vote, expires_at)
    }

    /// Records an approver's signed vote. A rejection ends the transfer;
    /// enough approvals move it on (to its time lock, or approved).
    pub async fn vote(&self, id: TransferId, v: &VoteRequest) -> Result<TransferRow, ServiceError> {
        let svc = self.svc;
        let who = self.who.actor();
        let now = svc.now();
        let cfg = svc.governance()?;
        if v.expires_at <= now {
            return Err(ApprovalError::Expired.into());
        }
        if v.expires_at.as_millis() > now.as_millis().saturating_add(cfg.max_approval_ttl_ms) {
            return Err(invalid(format!(
                "expires_at: at most {} s from now",
                cfg.max_approval_ttl_ms / 1000
            )));
        }
        let mut tx = svc.store().begin().await?;
        // The key first, then the transfer (the order a revocation takes):
        // a revocation either waits for this vote or is seen by it.
        let key = tx
            .approver_key_for_update(who)
            .await?
            .ok_or(ApprovalError::NoApproverKey)?;
        let public: [u8; 32] = hex::decode(&key.public_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("approver key", "not 32 bytes"))?;
        let t = tx.lock_transfer(id).await?;
        self.in_scope(&t)?;
        // Once per approver, whatever became of the transfer since; a vote
        // that was voided (a revoked key) or has expired may be cast again.
        let earlier = tx
            .approvals_in_tx(id)
            .await?
            .into_iter()
            .find(|a| a.approver == *who);
        if earlier
            .as_ref()
            .is_some_and(|a| a.voided_at.is_none() && a.expires_at > now)
        {
            return Err(ApprovalError::AlreadyVoted.into());
        }
        // Past its approval window it has lapsed, whether or not the
        // worker has marked it yet.
        if t.state == state::PENDING_APPROVAL && t.expires_at.is_some_and(|x| x <= now) {
            return Err(ApprovalError::NotAwaiting("lapsed".into()).into());
        }
        let decision: Decision =
            serde_json::from_str(&t.decision).map_err(|e| corrupt("decision", e))?;
        let Outcome::RequireApproval {
            requirement,
            initiator_may_approve,
            time_lock_s,
        } = &decision.outcome
        else {
            return Err(ApprovalError::NotAwaiting(t.state.clone()).into());
        };
        let open = [state::PENDING_APPROVAL, state::TIME_LOCKED, state::QUEUED];
        if !open.contains(&t.state.as_str())
            || (v.vote == Vote::Approve && t.state != state::PENDING_APPROVAL)
        {
            return Err(ApprovalError::NotAwaiting(t.state.clone()).into());
        }
        if !requirement.eligible(who) {
            return Err(ApprovalError::NotAnApprover.into());
        }
        if *who == t.initiator && !initiator_may_approve {
            return Err(ApprovalError::OwnTransfer.into());
        }
        statement_of(&t, v.vote, v.expires_at)?
            .verify(&public, &v.signature)
            .map_err(|_| ApprovalError::BadSignature)?;
        let row = ApprovalRow {
            transfer: id,
            approver: who.clone(),
            public_key: key.public_key.clone(),
            vote: match v.vote {
                Vote::Approve => "approve",
                Vote::Reject => "reject",
            }
            .into(),
            signature: hex::encode(v.signature),
            expires_at: v.expires_at,
            at: now,
            voided_at: None,
        };
        match earlier {
            None => tx.insert_approval(&row).await?,
            Some(_) => tx.replace_approval(&row, now).await?,
        }
        let subject = format!("transfer:{id}");
        let mut entries = vec![entry(
            who,
            match v.vote {
                Vote::Approve => "transfer.approved",
                Vote::Reject => "transfer.rejected",
            },
            &subject,
            json!({ "public_key": key.public_key, "expires_at_ms": v.expires_at.as_millis(), "decision_id": t.decision_id }),
        )?];
        let next = match v.vote {
            // A rejection ends a transfer that still waits; one already
            // approved is only rejected if it is still waiting for votes.
            Vote::Reject if t.state == state::PENDING_APPROVAL => {
                Some((Event::Rejected, None, "rejected by an approver"))
            }
            Vote::Reject => Some((
                Event::Cancel,
                None,
                "rejected by an approver after approval",
            )),
            Vote::Approve => {
                let approvals = tx.approvals_in_tx(id).await?;
                if requirement.satisfied(&valid_approvers(&approvals, now)) {
                    let time_lock = *time_lock_s > 0;
                    Some((
                        Event::ApprovalsMet { time_lock },
                        time_lock.then(|| after(now, *time_lock_s)),
                        if time_lock {
                            "approved; time lock started"
                        } else {
                            "approved"
                        },
                    ))
                } else {
                    None
                }
            }
        };
        if let Some((event, unlock, why)) = next {
            let mut m = Move::new(event, who, why);
            m.unlock_at = unlock;
            entries.push(transition(&mut tx, &t, m, now).await?.0);
        }
        svc.commit(tx, &entries, now).await?;
        Ok(svc.store().transfer(id).await?)
    }

    /// Cancels a transfer that waits for approvals or sits in its time
    /// lock: any approver of its wallet may.
    pub async fn cancel(&self, id: TransferId) -> Result<TransferRow, ServiceError> {
        cancel(
            self.svc,
            self.who.actor(),
            id,
            |t| self.in_scope(t),
            "cancelled by an approver",
        )
        .await
    }
}

impl Can<'_, perm::InitiateTransfer> {
    /// The wallet's next deposit address on a Bitcoin network (a fresh one
    /// from an HD account once the last was paid).
    pub async fn deposit_address(
        &self,
        wallet: WalletId,
        network: domain::BitcoinNetwork,
    ) -> Result<String, ServiceError> {
        if !permits(
            self.who.grants(),
            Permission::InitiateTransfer,
            Some(wallet),
        ) {
            return Err(StorageError::NotFound { what: "wallet" }.into());
        }
        self.svc
            .next_deposit_address(self.who.actor(), wallet, network)
            .await
    }

    /// Cancels one's own transfer while it is not yet handed to the chain.
    pub async fn cancel_own(&self, id: TransferId) -> Result<TransferRow, ServiceError> {
        let who = self.who.actor();
        cancel(
            self.svc,
            who,
            id,
            |t| {
                let mine = t.initiator == *who
                    && permits(
                        self.who.grants(),
                        Permission::InitiateTransfer,
                        Some(t.wallet),
                    );
                if mine {
                    Ok(())
                } else {
                    Err(StorageError::NotFound { what: "transfer" }.into())
                }
            },
            "cancelled by its initiator",
        )
        .await
    }
}

/// Cancels a transfer waiting for approvals, in its time lock, or approved
/// but not yet handed to the chain (the worker's planning transaction and
/// this one cannot both win: each moves it only from those states).
async fn cancel(
    svc: &Service,
    by: &Actor,
    id: TransferId,
    allowed: impl Fn(&TransferRow) -> Result<(), ServiceError>,
    why: &str,
) -> Result<TransferRow, ServiceError> {
    let now = svc.now();
    let mut tx = svc.store().begin().await?;
    let t = tx.lock_transfer(id).await?;
    allowed(&t)?;
    let open = [state::PENDING_APPROVAL, state::TIME_LOCKED, state::QUEUED];
    if !open.contains(&t.state.as_str()) {
        return Err(ApprovalError::NotAwaiting(t.state.clone()).into());
    }
    let (e, _) = transition(&mut tx, &t, Move::new(Event::Cancel, by, why), now).await?;
    svc.commit(tx, &[e], now).await?;
    Ok(svc.store().transfer(id).await?)
}

impl Can<'_, perm::OperateQueue> {
    /// Another attempt now for a queued transfer held for a person or
    /// waiting out a backoff.
    pub async fn retry(&self, id: TransferId) -> Result<TransferRow, ServiceError> {
        self.svc
            .retry_transfer(self.who.actor(), id, "retried by an operator")
            .await
    }

    /// Cancels a transfer not yet handed to the chain.
    pub async fn cancel(&self, id: TransferId) -> Result<TransferRow, ServiceError> {
        cancel(
            self.svc,
            self.who.actor(),
            id,
            |_| Ok(()),
            "cancelled by an operator",
        )
        .await
    }

    /// Replaces the transaction of a transfer on its way (signed or
    /// broadcast, not yet in a block): a speed-up pays the same with higher
    /// fees, a cancel pays nothing to the sender itself at the same nonce.
    /// The network's fee caps bound both, the freeze and the signing gate
    /// apply, and the replacement is checked against the approved transfer
    /// before it is signed; the transfer follows whichever wins.
    pub async fn replace(
        &self,
        id: TransferId,
        how: crate::eth::Replacement,
    ) -> Result<storage::EthSendRow, ServiceError> {
        let t = self.svc.store().transfer(id).await?;
        if ![state::SIGNED, state::BROADCASTING].contains(&t.state.as_str()) {
            return Err(ApprovalError::NotAwaiting(t.state.clone()).into());
        }
        let send = t
            .eth_send_id
            .clone()
            .ok_or_else(|| invalid("only Ethereum transactions are replaced"))?;
        let why = match how {
            crate::eth::Replacement::SpeedUp(_) => "speed-up requested by an operator",
            crate::eth::Replacement::Cancel => "cancel on chain requested by an operator",
        };
        let now = self.svc.now();
        let mut tx = self.svc.store().begin().await?;
        let locked = tx.lock_transfer(id).await?;
        if ![state::SIGNED, state::BROADCASTING].contains(&locked.state.as_str()) {
            return Err(ApprovalError::NotAwaiting(locked.state.clone()).into());
        }
        tx.add_history(id, &locked.state, &self.who.actor().to_string(), why, now)
            .await?;
        let e = entry(
            self.who.actor(),
            "transfer.replacement_requested",
            &format!("transfer:{id}"),
            json!({ "send": send, "why": why }),
        )?;
        self.svc.commit(tx, &[e], now).await?;
        self.svc.eth_replace(self.who.actor(), &send, how).await
    }

    /// What needs a look, and why: queued transfers held for a person or
    /// whose attempts failed, and transfers on their way to the chain that
    /// have not moved for [`STUCK_AFTER_MS`].
    pub async fn stuck(&self, limit: u32) -> Result<Vec<Stuck>, ServiceError> {
        let now = self.svc.now();
        let quiet = Timestamp::from_millis(now.as_millis().saturating_sub(STUCK_AFTER_MS));
        let rows = self
            .svc
            .store()
            .transfers_stuck(quiet, limit.clamp(1, 500))
            .await?;
        Ok(rows
            .into_iter()
            .map(|t| {
                let why = if t.held_at.is_some() {
                    format!(
                        "held for a person after {} failed attempts: {}",
                        t.attempts,
                        t.last_error.as_deref().unwrap_or("no error recorded")
                    )
                } else if t.state == state::QUEUED {
                    format!(
                        "{} failed attempts, next at {} ms: {}",
                        t.attempts,
                        t.next_attempt_at.as_millis(),
                        t.last_error.as_deref().unwrap_or("no error recorded")
                    )
                } else {
                    format!(
                        "{} for {} s without a change",
                        t.state,
                        now.as_millis().saturating_sub(t.updated_at.as_millis()) / 1000
                    )
                };
                Stuck { transfer: t, why }
            })
            .collect())
    }
}

/// A transfer that needs a look, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub transfer: TransferRow,
    pub why: String,
}

/// One asset of a wallet: what the chain holds and what is spoken for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetBalance {
    pub asset: Asset,
    /// On chain at the latest block, on the wallet's sender; `None` when no
    /// node answered.
    pub on_chain: Option<u128>,
    /// On chain at the network's confirmation depth: what is credited
    /// (deposits count once this deep).
    pub credited: Option<u128>,
    /// Deposits seen, not yet at the confirmation depth.
    pub incoming: u128,
    /// Queued, or on its way and not yet at the confirmation depth.
    pub reserved: u128,
    /// Waiting for approvals or in a time lock.
    pub awaiting: u128,
    /// The most one more transfer could be: credited less reserved and
    /// awaiting and, for ether, every open transfer's fee cap and its own
    /// (zero when over-committed).
    pub available: Option<u128>,
}

impl Can<'_, perm::ReadWallet> {
    /// Transfers newest first, of one wallet (read on that wallet) or of
    /// all (a global read); paged by the oldest id of the previous page.
    pub async fn transfers(
        &self,
        wallet: Option<WalletId>,
        state: Option<&str>,
        before: Option<TransferId>,
        limit: u32,
    ) -> Result<Vec<TransferRow>, ServiceError> {
        if !permits(self.who.grants(), Permission::ReadWallet, wallet) {
            return Err(AuthError::Forbidden.into());
        }
        Ok(self
            .svc
            .store()
            .transfers_page(wallet, state, before, limit.clamp(1, 500))
            .await?)
    }

    /// Balances of a wallet's assets on every EVM network it sends on.
    pub async fn balances(&self, wallet: WalletId) -> Result<Vec<AssetBalance>, ServiceError> {
        if !permits(self.who.grants(), Permission::ReadWallet, Some(wallet)) {
            return Err(StorageError::NotFound { what: "wallet" }.into());
        }
        let svc = self.svc;
        svc.store().wallet(wallet).await?;
        let outflows = svc.store().wallet_outflows(wallet).await?;
        let mut incoming: std::collections::BTreeMap<String, u128> = Default::default();
        for d in svc.store().wallet_deposits(wallet, 10_000).await? {
            if d.state == "seen" {
                let slot = incoming.entry(d.asset).or_default();
                *slot = slot.saturating_add(d.amount);
            }
        }
        let mut networks: Vec<String> = svc
            .store()
            .wallet_eth_senders(wallet)
            .await?
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        networks.dedup();
        let mut out: Vec<AssetBalance> = Vec::new();
        for network in networks {
            let Ok(Network::Evm { chain_id }) = network.parse::<Network>() else {
                continue;
            };
            let Ok(net) = svc.eth_network(chain_id) else {
                continue;
            };
            // The sender transfers leave from (as the funds check sees it).
            let Some(address) = svc.store().wallet_eth_sender(wallet, &network).await? else {
                continue;
            };
            let from: chain_eth::EthAddress =
                address.parse().map_err(|e| corrupt("sender address", e))?;
            let ether = Asset::ether(chain_id);
            let ether_id = ether.id().to_string();
            let mut assets = vec![(ether, None)];
            assets.extend(
                net.config
                    .tokens
                    .iter()
                    .map(|t| (t.asset.clone(), Some(t.contract))),
            );
            let recorded = svc
                .store()
                .eth_highest_block(&network, &from.to_lower_hex())
                .await?;
            let credited_at = svc.credited_block(&net, recorded).await.ok();
            for (asset, contract) in assets {
                let on_chain = match contract {
                    None => net.client.balance(from).await,
                    Some(c) => net.client.erc20_balance(c, from).await,
                }
                .ok();
                let credited = match (credited_at, contract) {
                    (None, _) => None,
                    (Some(at), None) => net.client.balance_at(from, at).await.ok(),
                    (Some(at), Some(c)) => net.client.erc20_balance_at(c, from, at).await.ok(),
                };
                let id = asset.id().to_string();
                let (mut reserved, mut awaiting) = (0u128, 0u128);
                for (a, amount, committed) in &outflows {
                    if *a == id {
                        let slot = if *committed {
                            &mut reserved
                        } else {
                            &mut awaiting
                        };
                        *slot = slot
                            .checked_add(*amount)
                            .ok_or_else(|| corrupt("outflows", "overflow"))?;
                    }
                }
                // The most one more transfer could be: what the funds check
                // would allow (for ether, after every open fee cap and its own).
                let need = needs(
                    &outflows,
                    &network,
                    &id,
                    &ether_id,
                    0,
                    net.config.fee_caps.max_total_fee,
                )
                .ok_or_else(|| corrupt("outflows", "overflow"))?;
                let bound = if id == ether_id {
                    need.ether
                } else {
                    need.asset
                };
                out.push(AssetBalance {
                    incoming: incoming.get(&id).copied().unwrap_or(0),
                    asset,
                    on_chain,
                    credited,
                    reserved,
                    awaiting,
                    available: credited.map(|h| h.saturating_sub(bound)),
                });
            }
        }
        Ok(out)
    }

    pub async fn transfer(
        &self,
        id: TransferId,
    ) -> Result<(TransferRow, Vec<ApprovalRow>), ServiceError> {
        let t = self.svc.store().transfer(id).await?;
        if !permits(self.who.grants(), Permission::ReadWallet, Some(t.wallet)) {
            return Err(StorageError::NotFound { what: "transfer" }.into());
        }
        let a = self.svc.store().approvals(id).await?;
        Ok((t, a))
    }

    /// A wallet's deposits (Ethereum), newest first.
    pub async fn deposits(
        &self,
        wallet: WalletId,
        limit: u32,
    ) -> Result<Vec<storage::DepositRow>, ServiceError> {
        if !permits(self.who.grants(), Permission::ReadWallet, Some(wallet)) {
            return Err(StorageError::NotFound { what: "wallet" }.into());
        }
        self.svc.store().wallet(wallet).await?;
        Ok(self
            .svc
            .store()
            .wallet_deposits(wallet, limit.clamp(1, 500))
            .await?)
    }

    /// Every state the transfer passed through: when, by whom, why.
    pub async fn history(&self, id: TransferId) -> Result<Vec<storage::HistoryRow>, ServiceError> {
        let t = self.svc.store().transfer(id).await?;
        if !permits(self.who.grants(), Permission::ReadWallet, Some(t.wallet)) {
            return Err(StorageError::NotFound { what: "transfer" }.into());
        }
        Ok(self.svc.store().transfer_history(id).await?)
    }
}

/// The statement for a stored transfer.
pub fn statement_of(
    t: &TransferRow,
    vote: Vote,
    expires_at: Timestamp,
) -> Result<ApprovalStatement, ServiceError> {
    let digest: [u8; 32] = hex::decode(&t.digest)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| corrupt("digest", "not 32 bytes"))?;
    let decision_id =
        uuid::Uuid::try_parse(&t.decision_id).map_err(|e| corrupt("decision id", e))?;
    Ok(ApprovalStatement {
        intent: domain::IntentDigest(digest),
        policy_version: t.policy_version,
        decision_id: *decision_id.as_bytes(),
        expires_at,
        vote,
    })
}

/// Why a vote was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ApprovalError {
    #[error("the approval has expired")]
    Expired,
    #[error("no approver key is registered for this principal")]
    NoApproverKey,
    #[error("the transfer is not waiting for this vote (it is {0})")]
    NotAwaiting(String),
    #[error("not in any approver group of the rule that judged this transfer")]
    NotAnApprover,
    #[error("the initiator may not approve their own transfer under this rule")]
    OwnTransfer,
    #[error("the approval signature does not verify for this transfer, decision and expiry")]
    BadSignature,
    #[error("this approver has already voted on this transfer")]
    AlreadyVoted,
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: &str = "eip155:1";
    const ETH: &str = "eip155:1/native";
    const USDC: &str = "eip155:1/erc20:a0b86991c6218b36c1d19d4a2e9eb0ce3606eb48";

    #[test]
    fn token_transfers_reserve_ether_for_their_gas() {
        let open = vec![
            (ETH.to_owned(), 5, true),
            (USDC.to_owned(), 700, false),
            // Another network's transfers need nothing here.
            ("eip155:10/native".to_owned(), 9_000, true),
        ];
        // One more ether transfer of 2: 5 + 2 ether, and three fee caps.
        assert_eq!(
            needs(&open, NET, ETH, ETH, 2, 10),
            Some(Needs {
                asset: 7,
                ether: 37
            })
        );
        // One more token transfer of 300: 1 000 tokens, and in ether the
        // open ether transfer and three fee caps.
        assert_eq!(
            needs(&open, NET, USDC, ETH, 300, 10),
            Some(Needs {
                asset: 1_000,
                ether: 35
            })
        );
        assert_eq!(needs(&open, NET, ETH, ETH, u128::MAX, 10), None);
    }
}
