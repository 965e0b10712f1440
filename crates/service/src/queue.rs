//! The queue: approved transfers claimed in order (priority, then age,
//! dependencies ended; leases so several workers are safe), handed to the
//! chain senders wallet by wallet, and each failed attempt classified —
//! retried after a backoff, held for a person, or failed; and the
//! operators' view of it (retry, cancel, replace, stuck).

use domain::{Actor, AssetId, BitcoinNetwork, Network, Timestamp, TransferId, WalletId};
use lifecycle::{Event, State};
use serde_json::json;
use storage::{StorageError, TransferRow};

use crate::access::{Can, perm};
use crate::error::ApprovalError;
use crate::moves::{
    MAX_PENDING_MS, Move, classify, corrupt, decode_intent, invalid, state, transition,
};
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// How long a worker holds a queued transfer it is handing to the chain.
/// Only a matter of efficiency: the planning transaction moves the transfer
/// out of `queued` only if it is still there, so two workers never both
/// plan it; a dead worker's claim lapses after this long.
const CLAIM_LEASE_MS: i64 = 60_000;

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

/// A transfer that needs a look, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stuck {
    pub transfer: TransferRow,
    pub why: String,
}

/// How long a worker holds the transfers of a batch it is planning.
const BATCH_LEASE_MS: i64 = 60_000;

/// What one batch did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    pub submitted: usize,
    pub deferred: usize,
    pub failed: usize,
    /// Left to wait for the batch's window.
    pub waiting: usize,
}

impl Service {
    /// Carries out `claimed` (queued payouts of one wallet on the network)
    /// with any others queued and due, as one transaction: or lets them
    /// wait, while the batch is neither old nor full enough — until the
    /// oldest queued payout of the wallet has waited the window.
    pub(crate) async fn execute_btc_batch(
        &self,
        claimed: Vec<TransferRow>,
        n: BitcoinNetwork,
    ) -> Result<BatchOutcome, ServiceError> {
        let mut out = BatchOutcome::default();
        let Some(first) = claimed.first().cloned() else {
            return Ok(out);
        };
        let net = self.btc_network(n)?;
        let now = self.now();
        let oldest = self
            .store()
            .oldest_queued(first.wallet, &first.asset)
            .await?
            .unwrap_or(now);
        let due = oldest.as_millis().saturating_add(net.batch.window_ms);
        // Room for the change output within the most outputs a transaction
        // may have (the approval check's and the signer nodes' limit).
        let max_payouts = net
            .batch
            .max_payouts
            .clamp(1, chain_btc::MAX_PAYOUTS.saturating_sub(1));
        let mut batch = claimed;
        batch.truncate(max_payouts);
        let room = u32::try_from(max_payouts.saturating_sub(batch.len())).unwrap_or(0);
        if room > 0 {
            batch.extend(
                self.store()
                    .claim_batch(&storage::BatchClaim {
                        wallet: first.wallet,
                        asset: &first.asset,
                        now,
                        lease_ms: BATCH_LEASE_MS,
                        limit: room,
                        batch_due: Timestamp::from_millis(due),
                        created_after: Timestamp::from_millis(
                            now.as_millis().saturating_sub(crate::moves::MAX_PENDING_MS),
                        ),
                        claimer: self.instance(),
                    })
                    .await?,
            );
        }
        if batch.len() < max_payouts && due > now.as_millis() {
            let ids: Vec<_> = batch.iter().map(|t| t.id).collect();
            self.store()
                .delay_transfers(&ids, Timestamp::from_millis(due))
                .await?;
            out.waiting = ids.len();
            return Ok(out);
        }
        // Each payout checked on its own: one that cannot go fails alone.
        let mut ready = Vec::new();
        for t in batch {
            match self.btc_payout_of(&t, n).await {
                Ok(p) => ready.push((t, p)),
                Err(e) => self.count_failure(&mut out, t.id, &e).await?,
            }
        }
        if ready.is_empty() {
            return Ok(out);
        }
        // One order for the payouts, the one the signer checks against.
        ready.sort_by_key(|(t, _)| (t.created_at, t.id));
        // A sweep of a rotated key goes alone, from that key's outputs; a
        // consolidation alone, from the wallet's small outputs.
        let (sweeps, payouts): (Vec<_>, Vec<_>) = ready
            .into_iter()
            .partition(|(_, p)| p.is_sweep() || p.is_consolidation());
        let mut sends: Vec<Vec<_>> = sweeps.into_iter().map(|s| vec![s]).collect();
        if !payouts.is_empty() {
            sends.push(payouts);
        }
        let wallet = first.wallet;
        for ready in sends {
            let planned = self.plan_btc_batch(wallet, n, &ready).await;
            let send_id = match planned {
                Ok(id) => id,
                Err(e) => {
                    for (t, _) in &ready {
                        self.count_failure(&mut out, t.id, &e).await?;
                    }
                    continue;
                }
            };
            out.submitted += ready.len();
            crate::crash::point("after_reservation");
            // From here the send exists: signing or broadcast that fails now
            // is taken up again by the resumer.
            if let Err(e) = self.btc_sign_and_send(&send_id).await {
                tracing::warn!(send = %send_id, error = %e, "batch planned; signing or broadcast deferred");
            }
        }
        Ok(out)
    }

    async fn count_failure(
        &self,
        out: &mut BatchOutcome,
        id: domain::TransferId,
        e: &ServiceError,
    ) -> Result<(), ServiceError> {
        match self.attempt_failed(id, classify(e), &e.to_string()).await? {
            Some(true) => out.failed += 1,
            Some(false) => out.deferred += 1,
            None => {}
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
        self.approvals_stand(std::slice::from_ref(&t)).await?;
        self.judgment_stands_for_planning(&t).await?;
        let assets = self.configured_assets();
        let intent = decode_intent(&t, &assets)?;
        let network = intent.amount().asset().network().to_string();
        self.screen_denied(&network, &t.destination).await?;
        // From the wallet's account; a sweep from the deposit address its
        // intent names, or the retired account whose successor it pays.
        let to: chain_eth::EthAddress = intent
            .destination()
            .as_str()
            .parse()
            .map_err(|e| corrupt("destination", e))?;
        let from = self
            .eth_source(
                t.wallet,
                &network,
                intent.kind(),
                Some(intent.account()),
                &to.to_lower_hex(),
            )
            .await?
            .ok_or_else(|| invalid(format!("the wallet has no sender on {network}")))?;
        // Before a nonce is taken: the sender's key must not be frozen
        // (nothing is planned that could not be signed), and a cold
        // wallet's sender must be a key held outside (the gate refuses any
        // other), else it is held for a person.
        let key = self.store().eth_sender(&network, &from).await?.key_id;
        self.ensure_not_frozen(Some(t.wallet), Some(key)).await?;
        if self.is_cold(t.wallet).await? && !self.signs_offline(key).await? {
            return Err(invalid(
                "a cold wallet's Ethereum sender signs offline: its key must be held outside \
                 (an account with backend external)",
            ));
        }
        let from: chain_eth::EthAddress = from.parse().map_err(|e| corrupt("sender", e))?;
        self.eth_plan(&t, &intent, from, urgency).await
    }

    /// Takes back the claims this server's previous run held (same
    /// instance id): after a crash they are due at once, not after their
    /// lease — queued transfers, and webhook deliveries a crash interrupted
    /// (sent again with their webhook-id). How many transfers.
    pub async fn reclaim_leases(&self) -> Result<u64, ServiceError> {
        match self.store().reclaim_deliveries(self.instance()).await {
            Ok(0) => {}
            Ok(deliveries) => tracing::info!(
                deliveries,
                "took back the webhook deliveries of this server's previous run"
            ),
            // The transfers' claims are taken back all the same.
            Err(e) => {
                tracing::error!(error = %e, "could not take back this server's webhook deliveries")
            }
        }
        Ok(self
            .store()
            .reclaim_leases(self.instance(), self.now())
            .await?)
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
            let started = std::time::Instant::now();
            let claimed = self
                .store()
                .claim_transfers(self.now(), CLAIM_LEASE_MS, CLAIM_BATCH, self.instance())
                .await?;
            self.metrics().claimed(started.elapsed().as_secs_f64());
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
                        // Screened again before anything is signed: a
                        // destination denied since it was approved fails.
                        let network = t.asset.split('/').next().unwrap_or_default();
                        match self.screen_denied(network, &t.destination).await {
                            Ok(()) => {}
                            Err(e @ ServiceError::Screened { .. }) => {
                                failures.push((
                                    t.id,
                                    Event::AttemptFailed(Failure::Terminal),
                                    e.to_string(),
                                ));
                                continue;
                            }
                            // Not known now: its claim runs out, and it is
                            // claimed (and screened) again.
                            Err(_) => continue,
                        }
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
        if step.to != State::Failed {
            self.metrics().retried();
        }
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

    /// How many transfers are queued (the queue's depth).
    pub async fn queued(&self) -> Result<u64, ServiceError> {
        Ok(self.svc.store().queued_count().await?)
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
                    let quiet = format!(
                        "{} for {} s without a change",
                        t.state,
                        now.as_millis().saturating_sub(t.updated_at.as_millis()) / 1000
                    );
                    match &t.last_error {
                        Some(e) => format!("{quiet}: {e}"),
                        None => quiet,
                    }
                };
                Stuck { transfer: t, why }
            })
            .collect())
    }
}

/// Cancels a transfer waiting for approvals, in its time lock, or approved
/// but not yet handed to the chain (the worker's planning transaction and
/// this one cannot both win: each moves it only from those states).
pub(crate) async fn cancel(
    svc: &Service,
    by: &Actor,
    id: TransferId,
    allowed: impl Fn(&TransferRow) -> Result<(), ServiceError>,
    why: &str,
) -> Result<TransferRow, ServiceError> {
    // Handed out for its offline signature: asked of the node first (no
    // database transaction held over it), whether it is out already.
    let before = svc.store().transfer(id).await?;
    if before.state == state::AWAITING_SIGNATURE {
        allowed(&before)?;
        svc.ensure_not_broadcast(&before).await?;
    }
    let now = svc.now();
    let mut tx = svc.store().begin().await?;
    let t = tx.lock_transfer(id).await?;
    allowed(&t)?;
    // Handed out for its offline signature: not whole yet, so it stops,
    // and its batch's outputs go back (the node asked above; handed out
    // since then, it is asked on the next try).
    if t.state == state::AWAITING_SIGNATURE {
        if before.state != state::AWAITING_SIGNATURE {
            return Err(ServiceError::Conflict(
                "it was handed out for its offline signature meanwhile: try again".into(),
            ));
        }
        let entries =
            crate::cold::release_exported(&mut tx, &t, Event::Cancel, by, why, now).await?;
        svc.commit(tx, &entries, now).await?;
        return Ok(svc.store().transfer(id).await?);
    }
    let open = [state::PENDING_APPROVAL, state::TIME_LOCKED, state::QUEUED];
    if !open.contains(&t.state.as_str()) {
        return Err(ApprovalError::NotAwaiting(t.state.clone()).into());
    }
    let (e, _) = transition(&mut tx, &t, Move::new(Event::Cancel, by, why), now).await?;
    svc.commit(tx, &[e], now).await?;
    Ok(svc.store().transfer(id).await?)
}
