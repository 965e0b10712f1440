//! The governance log from the service's side: each governed change appends
//! its record in the transaction that makes it (with a `governance.logged`
//! anchor in the audit log), the verified state is kept at the log's head
//! (one read of the head per use), and a governed row that differs from the
//! state is a forgery: ignored, audited, announced and frozen.

use std::collections::BTreeSet;
use std::sync::Arc;

use domain::{Actor, Scope, Timestamp, WalletId};
use serde_json::json;
use storage::{GovRecordRow, WriteTx};
use zeroize::Zeroizing;

use crate::freezes::{FreezeScope, new_freeze, place_in};
use crate::gov_state::{Authority, Content, GovState, MacKey, SignedVote, mac_of};
use crate::record::entry;
use crate::service::{Service, ServiceError};

/// Records read at a time when the state catches up.
const PAGE: u32 = 1000;

/// A governed row that is not what the verified log says.
#[derive(Debug, Clone)]
pub(crate) struct Forgery {
    /// The table.
    pub(crate) table: &'static str,
    /// Which row (a principal, an id, an asset, …).
    pub(crate) key: String,
    /// The wallet it would act on, if one; otherwise every wallet freezes.
    pub(crate) wallet: Option<WalletId>,
    /// What the row says, and what the log says.
    pub(crate) found: String,
    pub(crate) expected: String,
}

impl Service {
    /// At unseal (the key derived from the root) and seal (`None`): the
    /// state is replayed again, MACs checked while the key is held.
    pub(crate) fn set_governance_key(&self, key: Option<Zeroizing<MacKey>>) {
        let holder = self.governance_state();
        if let Ok(mut k) = holder.key.write() {
            *k = key;
        }
        if let Ok(mut s) = holder.state.write() {
            *s = Arc::new(GovState::genesis());
        }
    }

    /// After an unseal: the MAC key is held, the log replayed with it and
    /// every governed table compared (a failure is logged; the next use
    /// replays again).
    pub(crate) async fn governance_unsealed(&self, key: Zeroizing<MacKey>) {
        self.set_governance_key(Some(key));
        if let Err(e) = self.governance_reload().await {
            tracing::error!(error = %e, "replaying the governance log after the unseal failed");
        }
        if let Err(e) = self.authenticate_old_judgments().await {
            tracing::error!(error = %e, "authenticating the judgments made before schema 32 failed");
        }
        if let Err(e) = self.record_configured().await {
            tracing::error!(error = %e, "recording the networks' first fee caps and endpoints failed");
        }
    }

    #[cfg(feature = "testing")]
    pub(crate) fn governance_mac_for_tests(&self, hash: &[u8; 32]) -> Option<String> {
        self.mac_key().map(|k| mac_of(&k, hash))
    }

    /// The governance MAC key, while unsealed (the judgment key derives
    /// from it).
    pub(crate) fn governance_mac_key(&self) -> Option<Zeroizing<MacKey>> {
        self.mac_key()
    }

    fn mac_key(&self) -> Option<Zeroizing<MacKey>> {
        self.governance_state()
            .key
            .read()
            .ok()
            .and_then(|k| k.clone())
    }

    pub(crate) fn current(&self) -> Arc<GovState> {
        self.governance_state()
            .state
            .read()
            .map(|s| s.clone())
            .unwrap_or_else(|_| Arc::new(GovState::genesis()))
    }

    /// `who`'s approver key in force (its canonical text: Ed25519 hex, or
    /// a passkey's `webauthn:…`), as the verified governance log gives it.
    pub async fn approver_key_in_force(
        &self,
        who: &domain::Actor,
    ) -> Result<Option<String>, ServiceError> {
        Ok(self.gov().await?.approver_key(who).map(str::to_owned))
    }

    /// The verified governance state at the log's head (read on the pool).
    pub(crate) async fn gov(&self) -> Result<Arc<GovState>, ServiceError> {
        let head = self.store().governance_head().await?;
        if let Some(s) = self.up_to_date(&head) {
            return Ok(s);
        }
        let _one = self.governance_state().loading.lock().await;
        // Read again under the lock: another caller may have caught up, and
        // a head read before waiting could look older than what it saw.
        let head = self.store().governance_head().await?;
        if let Some(s) = self.up_to_date(&head) {
            return Ok(s);
        }
        let seen = self.current();
        if let Some(f) = rolled_back(&seen, &head) {
            self.raise(f, false).await?;
            return Ok(seen);
        }
        let mut state = GovState::clone(&seen);
        let key = self.mac_key();
        while state.broken.is_none() && state.head_seq < head.0 {
            let page = self.store().governance_after(state.head_seq, PAGE).await?;
            if page.is_empty() {
                break;
            }
            state.replay(&page, key.as_deref());
        }
        let state = Arc::new(state);
        if let Ok(mut s) = self.governance_state().state.write()
            && state.head_seq >= s.head_seq
        {
            *s = state.clone();
        }
        // Fee caps and endpoints the log governs, in force from now.
        self.apply_governed(&state);
        if let Some(why) = &state.broken {
            self.raise(broken_log(why), false).await?;
        }
        Ok(state)
    }

    /// The verified governance state at the head this transaction sees.
    /// Never kept for others: it may include this transaction's own,
    /// uncommitted records. An alarm it finds is raised by a task of its
    /// own (raising takes a transaction too).
    pub(crate) async fn gov_in(&self, tx: &mut WriteTx) -> Result<Arc<GovState>, ServiceError> {
        let head = tx.governance_head_in_tx().await?;
        if let Some(s) = self.up_to_date(&head) {
            return Ok(s);
        }
        let seen = self.current();
        if let Some(f) = rolled_back(&seen, &head) {
            self.raise(f, true).await?;
            return Ok(seen);
        }
        let mut state = GovState::clone(&seen);
        let key = self.mac_key();
        while state.broken.is_none() && state.head_seq < head.0 {
            let page = tx.governance_after_in_tx(state.head_seq, PAGE).await?;
            if page.is_empty() {
                break;
            }
            state.replay(&page, key.as_deref());
        }
        if let Some(why) = &state.broken {
            self.raise(broken_log(why), true).await?;
        }
        Ok(Arc::new(state))
    }

    fn up_to_date(&self, head: &(u64, String)) -> Option<Arc<GovState>> {
        let s = self.current();
        (s.head_seq == head.0 && hex::encode(s.head_hash) == head.1 && s.broken.is_none())
            .then_some(s)
    }

    /// [`forged`](Self::forged) now, or (inside a transaction, which on
    /// SQLite holds the one write turn) from a task of its own.
    pub(crate) async fn raise(&self, f: Forgery, in_tx: bool) -> Result<(), ServiceError> {
        if !in_tx {
            return self.forged(f).await;
        }
        let svc = self.clone();
        tokio::spawn(async move {
            if let Err(e) = svc.forged(f).await {
                tracing::error!(error = %e, "raising a forged governance row failed");
            }
        });
        Ok(())
    }

    /// Replays the whole log again (with the MAC key, after an unseal),
    /// checks it against its anchor in the audit log, and compares every
    /// governed table with it.
    pub(crate) async fn governance_reload(&self) -> Result<(), ServiceError> {
        if let Ok(mut s) = self.governance_state().state.write() {
            *s = Arc::new(GovState::genesis());
        }
        let state = self.gov().await?;
        if let Some(anchor) = self
            .store()
            .latest_audit_details("governance.logged")
            .await?
        {
            let v: serde_json::Value = serde_json::from_str(&anchor).unwrap_or_default();
            let (seq, hash) = (v["seq"].as_u64(), v["hash"].as_str());
            if seq != Some(state.head_seq) || hash != Some(hex::encode(state.head_hash).as_str()) {
                self.forged(Forgery {
                    table: "governance_log",
                    key: "head".into(),
                    wallet: None,
                    found: format!("head {}", state.head_seq),
                    expected: format!("the audit log's anchor {anchor}"),
                })
                .await?;
            }
        }
        self.governance_sweep().await
    }

    /// The MAC key, or `Sealed` (records of one person or the quorum are
    /// written only by an unsealed server).
    fn mac_for(
        &self,
        authority: Authority,
        hash: &[u8; 32],
    ) -> Result<Option<String>, ServiceError> {
        match self.mac_key() {
            Some(k) => Ok(Some(mac_of(&k, hash))),
            None if matches!(authority, Authority::Bootstrap | Authority::Console) => Ok(None),
            None => Err(ServiceError::Sealed),
        }
    }

    /// Appends a record in `tx` (after the head, which it locks); returns
    /// the audit anchor to commit with it.
    pub(crate) async fn log_governance(
        &self,
        tx: &mut WriteTx,
        authority: Authority,
        actor: &Actor,
        content: &Content,
        approvals: &[SignedVote],
        now: Timestamp,
    ) -> Result<Vec<audit::Entry>, ServiceError> {
        let canonical = |v: serde_json::Value| {
            audit::canonical_json(&v).map_err(|e| ServiceError::Invalid(e.to_string()))
        };
        let content = canonical(serde_json::to_value(content).map_err(invalid)?)?;
        let approvals = canonical(serde_json::to_value(approvals).map_err(invalid)?)?;
        let (head_seq, head_hash) = tx.lock_governance_head().await?;
        // The state at the locked head: what the record must follow.
        let state = self.gov_in(tx).await?;
        let closes = authority == Authority::Quorum && !state.bootstrap_closed;
        let prev: [u8; 32] = hex::decode(&head_hash)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| storage::StorageError::Corrupt("governance head hash".into()))?;
        let actor_text = actor.to_string();
        let fields = policy::RecordFields {
            seq: head_seq.saturating_add(1),
            prev_hash: prev,
            time_ms: now.as_millis(),
            authority: authority.as_str(),
            actor: &actor_text,
            content: &content,
            approvals: &approvals,
        };
        let hash = fields.hash();
        let row = GovRecordRow {
            seq: fields.seq,
            time_ms: fields.time_ms,
            authority: authority.as_str().into(),
            actor: actor_text.clone(),
            content: content.clone(),
            approvals: approvals.clone(),
            prev_hash: head_hash,
            hash: hex::encode(hash),
            mac: self.mac_for(authority, &hash)?,
        };
        // Replay must accept it, or it is not written: a record the log
        // refuses would stop every later one (and freeze everything).
        let mut trial = GovState::clone(&state);
        trial.replay(std::slice::from_ref(&row), self.mac_key().as_deref());
        if let Some(why) = trial.broken {
            return Err(ServiceError::Conflict(format!(
                "the governance log would refuse this change ({why}); nothing was changed"
            )));
        }
        tx.append_governance(&row).await?;
        let mut out = vec![entry(
            &Actor::System,
            "governance.logged",
            &format!("governance:{}", row.seq),
            json!({ "seq": row.seq, "hash": row.hash, "authority": row.authority }),
        )?];
        if closes {
            out.push(entry(
                &Actor::System,
                "governance.bootstrap_closed",
                &format!("governance:{}", row.seq),
                json!({ "seq": row.seq }),
            )?);
        }
        Ok(out)
    }

    /// The grants `who` holds at `now`: those the verified log gives and
    /// the table holds too (a deleted row is a grant lost; a row the log
    /// does not give is ignored, and raised).
    pub(crate) async fn grants_in_force(
        &self,
        who: &Actor,
        now: Timestamp,
    ) -> Result<Vec<domain::Grant>, ServiceError> {
        let gov = self.gov().await?;
        let mut rows = self.store().grants(who, now).await?;
        rows.sort_by_key(|g| (g.role().as_str(), g.scope().to_string()));
        let logged = gov.grants_of(who, now);
        // A difference counts only if no governance change landed while the
        // rows were read (a grant applied meanwhile is not forged).
        if rows != logged && self.steady(&gov).await? {
            self.raise(grants_forgery(who, &rows, &logged), false)
                .await?;
        }
        Ok(logged.into_iter().filter(|g| rows.contains(g)).collect())
    }

    /// An API key's public key if it may sign requests at `now`: as the
    /// verified log has it, with a row that agrees (a row the log does not
    /// know, or that differs, is raised; either revoked or expired is
    /// inactive). `None` for a key nobody registered.
    pub(crate) async fn api_key_in_force(
        &self,
        id: domain::ApiKeyId,
        now: Timestamp,
    ) -> Result<Option<Result<String, crate::error::AuthError>>, ServiceError> {
        let gov = self.gov().await?;
        let row = match self.store().api_key(id).await {
            Ok(r) => Some(r),
            Err(storage::StorageError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        let logged = gov.api_key(&id.to_string());
        let same = match (&row, logged) {
            (Some(r), Some(l)) => {
                r.public_key == l.public_key
                    && r.expires_at == l.expires_at
                    && r.revoked_at.is_some() == l.revoked
                    && r.owner == l.owner
            }
            (None, None) => true,
            _ => false,
        };
        // Only if no governance change landed while the row was read.
        if !same && self.steady(&gov).await? {
            self.raise(
                Forgery {
                    table: "api_keys",
                    key: id.to_string(),
                    wallet: None,
                    found: row
                        .as_ref()
                        .map_or_else(|| "no row".into(), |r| format!("{r:?}")),
                    expected: logged.map_or_else(|| "no key".into(), |l| format!("{l:?}")),
                },
                false,
            )
            .await?;
        }
        let (Some(row), Some(logged)) = (row, logged) else {
            return Ok(None);
        };
        let active = !logged.revoked
            && row.revoked_at.is_none()
            && logged.expires_at > now
            && row.expires_at > now;
        Ok(Some(if active {
            Ok(logged.public_key.clone())
        } else {
            Err(crate::error::AuthError::KeyInactive)
        }))
    }

    /// Whether the bootstrap is over: a quorum record counted, or the audit
    /// log says one did (a mark nothing resets).
    pub(crate) async fn bootstrap_closed(&self, tx: &mut WriteTx) -> Result<bool, ServiceError> {
        Ok(self.gov_in(tx).await?.bootstrap_closed
            || self
                .store()
                .latest_audit_details("governance.bootstrap_closed")
                .await?
                .is_some())
    }

    /// Raises a forgery once per process: an audit record, a
    /// `governance.forged_row` event and a freeze (the wallet's, or every
    /// wallet's), in one transaction. Not under the vault lock (a signing
    /// path that meets a forgery holds it): the freeze is ordered with
    /// broadcasts by its own lock, and every decision already ignores the row.
    pub(crate) async fn forged(&self, f: Forgery) -> Result<(), ServiceError> {
        let mark = format!("{}:{}:{}", f.table, f.key, f.found);
        let mut alerted = self.governance_state().alerted.lock().await;
        if alerted.contains(&mark) {
            return Ok(());
        }
        tracing::error!(table = f.table, key = %f.key, found = %f.found, "a governed row differs from the governance log: ignored, wallet frozen");
        let now = self.now();
        let mut tx = self.store().begin().await?;
        let details = json!({
            "table": f.table, "key": f.key, "found": f.found, "expected": f.expected,
            "wallet": f.wallet.map(|w| w.to_string()),
        });
        crate::outbox::enqueue(&mut tx, "governance.forged_row", details.clone(), now).await?;
        let alert = entry(
            &Actor::System,
            "governance.forged_row",
            &format!("{}:{}", f.table, f.key),
            details,
        )?;
        let scope = f.wallet.map_or(FreezeScope::Global, FreezeScope::Wallet);
        let reason = format!("a forged governance row ({} {})", f.table, f.key);
        let freeze = new_freeze(&Actor::System, scope, &reason, now);
        let placed = place_in(&mut tx, &Actor::System, &freeze, now).await?;
        self.commit(tx, &[alert, placed], now).await?;
        alerted.insert(mark);
        Ok(())
    }

    /// Compares every governed table with the verified state; each row that
    /// differs is raised (audited, announced, frozen). The server runs it at
    /// every unseal and with each audit checkpoint tick; decisions never
    /// wait for it, they read the verified state.
    pub async fn governance_sweep(&self) -> Result<(), ServiceError> {
        let state = self.gov().await?;
        let now = self.now();
        let rows = self.store().governed_rows(now).await?;
        let mut found = Vec::new();
        // Grants: every principal in either.
        let mut principals: BTreeSet<Actor> = state.principals().cloned().collect();
        principals.extend(rows.grants.iter().map(|(a, _)| a.clone()));
        for who in principals {
            let mut in_rows: Vec<_> = rows
                .grants
                .iter()
                .filter(|(a, _)| *a == who)
                .map(|(_, g)| *g)
                .collect();
            in_rows.sort_by_key(|g| (g.role().as_str(), g.scope().to_string()));
            let expected = state.grants_of(&who, now);
            if in_rows != expected {
                found.push(grants_forgery(&who, &in_rows, &expected));
            }
        }
        for k in self.store().api_keys().await? {
            let id = k.id.to_string();
            let same = state.api_key(&id).is_some_and(|s| {
                s.public_key == k.public_key
                    && s.expires_at == k.expires_at
                    && s.revoked == k.revoked_at.is_some()
                    && s.owner == k.owner
            });
            if !same {
                found.push(plain("api_keys", id, format!("{k:?}"), "the logged key"));
            }
        }
        let logged_keys = state.approver_keys();
        for (who, key) in &rows.approver_keys {
            if logged_keys.get(who) != Some(key) {
                found.push(plain(
                    "approver_keys",
                    who.to_string(),
                    key.clone(),
                    "the logged key",
                ));
            }
        }
        for (v, digest) in &rows.policies {
            if state.policy(*v).is_none_or(|p| p.digest != *digest) {
                found.push(plain(
                    "policies",
                    v.to_string(),
                    digest.clone(),
                    "the logged digest",
                ));
            }
        }
        for w in self.store().whitelist().await? {
            let ok = state.addresses().get(&w.id).is_some_and(|a| {
                !a.removed
                    && a.network == w.network
                    && a.address == w.address
                    && a.group == w.group
                    && a.usable_from == w.usable_from
            });
            if !ok {
                found.push(plain(
                    "whitelist",
                    w.id.clone(),
                    w.address.clone(),
                    "no such entry",
                ));
            }
        }
        for (asset, micro) in &rows.prices {
            if state.price(asset).map(|(m, _)| m) != Some(*micro) {
                found.push(plain(
                    "prices",
                    asset.clone(),
                    micro.to_string(),
                    "the logged price",
                ));
            }
        }
        for (wallet, tier) in &rows.tiers {
            if state.tier(*wallet) != tier {
                let mut f = plain(
                    "wallets",
                    wallet.to_string(),
                    tier.clone(),
                    state.tier(*wallet),
                );
                f.wallet = Some(*wallet);
                found.push(f);
            }
        }
        // Rows read while a change landed are compared again next time.
        if !self.steady(&state).await? {
            return Ok(());
        }
        for f in found {
            self.forged(f).await?;
        }
        Ok(())
    }

    /// Whether the log's head is still the one `state` was read at (rows
    /// read since then belong to it).
    async fn steady(&self, state: &GovState) -> Result<bool, ServiceError> {
        let (seq, hash) = self.store().governance_head().await?;
        Ok(seq == state.head_seq && hash == hex::encode(state.head_hash))
    }
}

fn invalid(e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Invalid(e.to_string())
}

fn plain(table: &'static str, key: String, found: String, expected: &str) -> Forgery {
    Forgery {
        table,
        key,
        wallet: None,
        found,
        expected: expected.to_owned(),
    }
}

/// A principal's grant rows against the logged ones; a difference only at
/// one wallet freezes that wallet.
pub(crate) fn grants_forgery(
    who: &Actor,
    rows: &[domain::Grant],
    expected: &[domain::Grant],
) -> Forgery {
    let differing: Vec<_> = rows
        .iter()
        .filter(|g| !expected.contains(g))
        .chain(expected.iter().filter(|g| !rows.contains(g)))
        .collect();
    let wallets: BTreeSet<WalletId> = differing
        .iter()
        .filter_map(|g| match g.scope() {
            Scope::Wallet(w) => Some(w),
            Scope::Global => None,
        })
        .collect();
    let wallet = match (
        wallets.len(),
        differing.iter().all(|g| g.scope() != Scope::Global),
    ) {
        (1, true) => wallets.into_iter().next(),
        _ => None,
    };
    let show = |gs: &[domain::Grant]| {
        gs.iter()
            .map(|g| format!("{}@{}", g.role(), g.scope()))
            .collect::<Vec<_>>()
            .join(",")
    };
    Forgery {
        table: "grants",
        key: who.to_string(),
        wallet,
        found: show(rows),
        expected: show(expected),
    }
}

/// A head behind (or beside) what this process already verified.
fn rolled_back(seen: &GovState, head: &(u64, String)) -> Option<Forgery> {
    let behind = head.0 < seen.head_seq
        || (head.0 == seen.head_seq && head.1 != hex::encode(seen.head_hash));
    behind.then(|| Forgery {
        table: "governance_log",
        key: "head".into(),
        wallet: None,
        found: format!("head {}", head.0),
        expected: format!(
            "at least {} (this server verified it): the log was rolled back or rewritten",
            seen.head_seq
        ),
    })
}

/// A log whose replay stopped: everything from that record on is ignored.
fn broken_log(why: &str) -> Forgery {
    Forgery {
        table: "governance_log",
        key: "replay".into(),
        wallet: None,
        found: why.to_owned(),
        expected: "a record the log's rules accept".into(),
    }
}
