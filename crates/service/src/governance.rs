//! Governance: changes to policies, the address book, roles, approver keys,
//! wallet tiers and freeze releases are proposals that take effect only
//! with the admin quorum (any admin can veto). Freezes take one authorised
//! person and hold until a quorum releases them.

use domain::{Actor, Grant, Role, Scope, Timestamp, WalletId, permits};
use serde_json::json;
use storage::{
    ApproverKeyRow, PolicyRow, ProposalRow, StorageError, VoteRow, WhitelistRow, WriteTx,
};

use crate::access::{Can, Principal, perm};
pub use crate::changes::{Change, DeniedEntry};
use crate::changes::{
    approver_key_of, canonical_address, grant_of, invalid, price_of, principal_of, public_key_of,
};
use crate::error::{ApprovalError, AuthError};
pub use crate::freezes::{FreezeScope, Placed};
use crate::gov_log::Forgery;
use crate::gov_state::{Authority, Content, Effects, SignedVote};
use crate::proposal_checks::key_is_theirs_alone;
use crate::record::entry;
pub use crate::screening::DeniedAddress;
use crate::service::{Service, ServiceError};
pub use crate::settings::GovernanceConfig;

/// The statement an admin signs to vote on `row` (a proposal made before
/// signed votes has no base and cannot be signed).
pub(crate) fn statement_of(
    row: &ProposalRow,
    change: &Change,
    approve: bool,
) -> Result<policy::GovernanceStatement, ServiceError> {
    let (Some(base_seq), Some(base_hash)) = (row.base_seq, &row.base_hash) else {
        return Err(ServiceError::Conflict(
            "the proposal was made before votes were signed: propose it again".into(),
        ));
    };
    let corrupt = |what: &str| StorageError::Corrupt(format!("proposal {}: {what}", row.id));
    Ok(policy::GovernanceStatement {
        proposal: *uuid::Uuid::try_parse(&row.id)
            .map_err(|_| corrupt("id"))?
            .as_bytes(),
        change_digest: change.digest()?,
        base_seq,
        base_hash: hex::decode(base_hash)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| corrupt("base hash"))?,
        approve,
    })
}

/// Whether a stored vote's signature verifies.
fn verifies(statement: &policy::GovernanceStatement, key: &str, sig: &str) -> bool {
    let key: Option<[u8; 32]> = hex::decode(key).ok().and_then(|b| b.try_into().ok());
    let sig: Option<[u8; 64]> = hex::decode(sig).ok().and_then(|b| b.try_into().ok());
    matches!((key, sig), (Some(k), Some(s)) if statement.verify(&k, &s).is_ok())
}

/// Whether the principal holds the global admin role now.
fn is_admin(who: &Principal) -> bool {
    who.grants()
        .iter()
        .any(|g| g.role() == Role::Admin && g.scope() == Scope::Global)
}

/// A proposal with its votes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProposalView {
    pub proposal: ProposalRow,
    pub votes: Vec<VoteRow>,
}

impl ProposalView {
    /// The change it proposes.
    pub fn change(&self) -> Result<Change, ServiceError> {
        serde_json::from_str(&self.proposal.payload)
            .map_err(|e| StorageError::Corrupt(format!("proposal payload: {e}")).into())
    }

    /// What an admin signs to approve (or veto) it.
    pub fn statement(&self, approve: bool) -> Result<policy::GovernanceStatement, ServiceError> {
        statement_of(&self.proposal, &self.change()?, approve)
    }
}

impl Service {
    /// The console's door for grants (`init --admin`, `apikey create`): open
    /// for any role during the bootstrap ceremony — until governance first
    /// applies a change, a mark nothing resets (the governance log's first
    /// quorum record, and its anchor in the audit log) — then only for
    /// read-only roles (viewer, auditor): every other grant is a proposal
    /// under the quorum. Checked in the transaction that adds the grants,
    /// under the exclusive governance lock. Returns whether this is the
    /// bootstrap (recorded with the grant).
    pub(crate) async fn console_door(
        &self,
        tx: &mut WriteTx,
        grants: &[Grant],
    ) -> Result<bool, ServiceError> {
        tx.governance_lock(false).await?;
        if !self.bootstrap_closed(tx).await? {
            return Ok(true);
        }
        match grants.iter().find(|g| !g.role().is_read_only()) {
            None => Ok(false),
            Some(g) => Err(ServiceError::GovernanceInForce(format!(
                "the console grants only viewer and auditor once governance has acted; {} is a \
                 proposal under the admin quorum: `strongroom apikey propose` (an admin's key) \
                 or POST /v1/api-keys",
                g.role()
            ))),
        }
    }

    /// Grants from the console, in `tx`: through [`console_door`](Self::console_door),
    /// each grant stored and logged (a `bootstrap` record for a governing
    /// role during the ceremony, a `console` record for a read-only one),
    /// with the admin signing key `signing_key` enrolled when an admin is
    /// made at bootstrap. Returns whether this is the bootstrap and the
    /// audit anchors to commit.
    pub(crate) async fn console_grants(
        &self,
        tx: &mut WriteTx,
        who: &Actor,
        grants: &[Grant],
        until: Option<Timestamp>,
        signing_key: Option<&str>,
        now: Timestamp,
    ) -> Result<(bool, Vec<audit::Entry>), ServiceError> {
        let bootstrap = self.console_door(tx, grants).await?;
        let mut anchors = Vec::new();
        for g in grants {
            tx.insert_grant(who, *g, until, now, &Actor::System).await?;
            let authority = if g.role().is_read_only() {
                Authority::Console
            } else {
                Authority::Bootstrap
            };
            let content = Content::Grant {
                principal: who.to_string(),
                role: g.role().as_str().into(),
                scope: g.scope().to_string(),
                until_ms: until.map(Timestamp::as_millis),
            };
            anchors.extend(
                self.log_governance(tx, authority, &Actor::System, &content, &[], now)
                    .await?,
            );
        }
        let admin = grants
            .iter()
            .any(|g| g.role() == Role::Admin && g.scope() == Scope::Global);
        if let (true, true, Some(key)) = (bootstrap, admin, signing_key) {
            public_key_of(key)?;
            tx.insert_approver_key(&ApproverKeyRow {
                principal: who.clone(),
                public_key: key.to_lowercase(),
                registered_at: now,
                revoked_at: None,
            })
            .await?;
            let content = Content::ApproverKey {
                principal: who.to_string(),
                public_key: key.to_lowercase(),
            };
            anchors.extend(
                self.log_governance(tx, Authority::Bootstrap, &Actor::System, &content, &[], now)
                    .await?,
            );
        }
        Ok((bootstrap, anchors))
    }

    /// Proposes a change. Nothing applies until enough admins have voted
    /// with their signing keys (`POST /v1/proposals/{id}/votes` with an
    /// `SRGV` signature; `strongroom proposal approve`).
    pub async fn propose(
        &self,
        who: &Principal,
        change: Change,
    ) -> Result<ProposalView, ServiceError> {
        if !permits(who.grants(), change.describe().2, None) {
            return Err(AuthError::Forbidden.into());
        }
        if !who.mfa() && who.grants().iter().any(|g| g.role().is_privileged()) {
            return Err(AuthError::MfaRequired.into());
        }
        let summary = self.validate(&change).await?;
        let now = self.now();
        let cfg = self.governance()?;
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.store().begin().await?;
        let (base_seq, base_hash) = tx.governance_head_in_tx().await?;
        let row = ProposalRow {
            id: id.clone(),
            kind: change.describe().0.into(),
            payload: change.canonical()?,
            summary: summary.clone(),
            proposed_by: who.actor().clone(),
            created_at: now,
            expires_at: Timestamp::from_millis(now.as_millis().saturating_add(cfg.proposal_ttl_ms)),
            state: "open".into(),
            decided_at: None,
            base_seq: Some(base_seq),
            base_hash: Some(base_hash),
        };
        tx.insert_proposal(&row).await?;
        let e = entry(
            who.actor(),
            "proposal.created",
            &format!("proposal:{id}"),
            json!({ "kind": row.kind, "summary": summary, "change_digest": hex::encode(change.digest()?), "base_seq": base_seq }),
        )?;
        self.commit(tx, &[e], now).await?;
        self.proposal(&id).await
    }

    /// An admin's vote: `approve` (with the admin's `SRGV` signature, by the
    /// signing key governance gave them) counts toward the quorum; `veto`
    /// ends the proposal.
    pub async fn vote(
        &self,
        who: &Principal,
        id: &str,
        approve: bool,
        signature: Option<[u8; 64]>,
    ) -> Result<ProposalView, ServiceError> {
        if !is_admin(who) {
            return Err(AuthError::Forbidden.into());
        }
        if !who.mfa() {
            return Err(AuthError::MfaRequired.into());
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
        // Exclusive, before anything is read: no other change to governance
        // (nor any judgment) lands between this vote's reads and its record.
        tx.governance_lock(false).await?;
        let row = tx.lock_proposal(id).await?;
        if row.state != "open" {
            return Err(ServiceError::Conflict(format!(
                "the proposal is {}",
                row.state
            )));
        }
        let subject = format!("proposal:{id}");
        if now >= row.expires_at {
            tx.set_proposal_state(id, "expired", now).await?;
            let e = entry(&Actor::System, "proposal.expired", &subject, json!({}))?;
            self.commit(tx, &[e], now).await?;
            return Err(ServiceError::Conflict("the proposal has expired".into()));
        }
        let change: Change = serde_json::from_str(&row.payload)
            .map_err(|e| StorageError::Corrupt(format!("proposal payload: {e}")))?;
        let statement = statement_of(&row, &change, approve)?;
        // A veto needs no signature (it can only stop a change); an
        // approval is the admin's signature or nothing.
        let signed = match (signature, approve) {
            (None, false) => None,
            (None, true) => return Err(ApprovalError::SignatureRequired.into()),
            (Some(sig), _) => {
                let key = self.signing_key_of(&mut tx, who.actor()).await?;
                statement
                    .verify(&key, &sig)
                    .map_err(|_| ApprovalError::BadProposalSignature)?;
                Some((hex::encode(key), hex::encode(sig)))
            }
        };
        let (public_key, signature) = signed.unzip();
        let v = VoteRow {
            voter: who.actor().clone(),
            vote: if approve { "approve" } else { "veto" }.into(),
            at: now,
            public_key,
            signature,
        };
        // Checked first (a failed insert would abort a PostgreSQL
        // transaction): an admin who approved may still veto; nobody counts
        // twice.
        let votes = tx.votes_in_tx(id).await?;
        let earlier = votes.iter().any(|x| x.voter == *who.actor());
        // One person, one vote: an admin's other key (or their session's
        // key) approved already. The log's replay refuses such a quorum.
        if approve {
            let gov = self.gov_in(&mut tx).await?;
            let person = gov.person_of(who.actor());
            if let Some(other) = votes.iter().find(|x| {
                x.voter != *who.actor()
                    && x.vote == "approve"
                    && gov.person_of(&x.voter) == person
                    // A vote that no longer counts (its admin demoted, its
                    // key replaced) blocks no one.
                    && gov.is_admin(&x.voter, now)
                    && x.public_key.as_deref() == gov.approver_key(&x.voter)
            }) {
                return Err(ServiceError::Conflict(format!(
                    "{} already approved the proposal: one person supplies one vote",
                    other.voter
                )));
            }
        }
        match (earlier, approve) {
            (false, _) => tx.insert_vote(id, &v).await?,
            (true, false) => tx.change_vote(id, &v).await?,
            (true, true) => {
                return Err(ServiceError::Conflict(
                    "this admin has already voted on the proposal".into(),
                ));
            }
        }
        let mut entries = vec![];
        if approve {
            entries.push(entry(
                who.actor(),
                "proposal.approved",
                &subject,
                json!({}),
            )?);
            self.maybe_apply(&mut tx, &row, &change, now, &mut entries)
                .await?;
        } else {
            tx.set_proposal_state(id, "vetoed", now).await?;
            entries.push(entry(who.actor(), "proposal.vetoed", &subject, json!({}))?);
        }
        self.commit(tx, &entries, now).await?;
        self.proposal(id).await
    }

    /// An admin's signing key in force, as the verified log gives it (a row
    /// that says otherwise is raised, and ignored).
    async fn signing_key_of(
        &self,
        tx: &mut WriteTx,
        who: &Actor,
    ) -> Result<[u8; 32], ServiceError> {
        let row = tx.approver_key_in_force(who).await?;
        let gov = self.gov_in(tx).await?;
        let logged = gov.approver_key(who).map(str::to_owned);
        if row != logged {
            self.raise(
                Forgery {
                    table: "approver_keys",
                    key: who.to_string(),
                    wallet: None,
                    found: row.unwrap_or_default(),
                    expected: logged.clone().unwrap_or_default(),
                },
                true,
            )
            .await?;
        }
        let key = logged.ok_or(ApprovalError::NoApproverKey)?;
        public_key_of(&key)
    }

    pub async fn proposal(&self, id: &str) -> Result<ProposalView, ServiceError> {
        Ok(ProposalView {
            proposal: self.store().proposal(id).await?,
            votes: self.store().votes(id).await?,
        })
    }

    pub async fn proposals(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ProposalRow>, ServiceError> {
        Ok(self.store().proposals_page(after, limit.min(500)).await?)
    }

    /// Applies the change if the current admins' approvals reach the quorum.
    async fn maybe_apply(
        &self,
        tx: &mut WriteTx,
        row: &ProposalRow,
        change: &Change,
        now: Timestamp,
        entries: &mut Vec<audit::Entry>,
    ) -> Result<(), ServiceError> {
        let (Some(base_seq), Some(_)) = (row.base_seq, &row.base_hash) else {
            return Ok(());
        };
        // The head locked before the state is read: the record written
        // below follows exactly this state.
        tx.lock_governance_head().await?;
        let gov = self.gov_in(tx).await?;
        let subject = format!("proposal:{}", row.id);
        if gov.bootstrap_after(base_seq) {
            // Its signatures pin a log the bootstrap has since changed.
            tx.set_proposal_state(&row.id, "expired", now).await?;
            entries.push(entry(
                &Actor::System,
                "proposal.expired",
                &subject,
                json!({ "why": "the bootstrap changed after it was proposed" }),
            )?);
            return Ok(());
        }
        // Only those who are admins now (in the verified log, and active
        // users or valid keys) count, each with a signature by the key the
        // log gives them: a demoted admin's vote lapses, and so does one
        // signed with a key since replaced.
        let active = tx.admins_in_tx(now).await?;
        let statement = statement_of(row, change, true)?;
        let mut counted = Vec::new();
        // One vote per person (the log's replay refuses a quorum that
        // counts anyone twice): the first of their principals' votes.
        let mut people = std::collections::BTreeSet::new();
        for v in tx.votes_in_tx(&row.id).await? {
            let (Some(key), Some(sig)) = (&v.public_key, &v.signature) else {
                continue;
            };
            let valid = v.vote == "approve"
                && active.contains(&v.voter)
                && gov.is_admin(&v.voter, now)
                && gov.approver_key(&v.voter) == Some(key.as_str())
                && verifies(&statement, key, sig);
            if valid && people.insert(gov.person_of(&v.voter)) {
                counted.push(SignedVote {
                    voter: v.voter.to_string(),
                    public_key: key.clone(),
                    signature: sig.clone(),
                });
            }
        }
        let approvals = counted.len();
        // Never below a quorum the log already required (the configuration
        // may raise it, not lower it).
        let quorum = self
            .governance()?
            .admin_quorum
            .max(gov.quorum_floor())
            .max(1);
        if approvals < quorum as usize {
            return Ok(());
        }
        // Exclusive: no transfer is being judged while the change lands.
        tx.governance_lock(false).await?;
        tx.set_proposal_state(&row.id, "applied", now).await?;
        let mut pulled_back = Vec::new();
        let (details, effects) = self.apply(tx, row, change, now, &mut pulled_back).await?;
        let content = Content::Proposal {
            id: row.id.clone(),
            change: change.clone(),
            base_seq,
            base_hash: row.base_hash.clone().unwrap_or_default(),
            quorum,
            effects,
        };
        entries.extend(
            self.log_governance(
                tx,
                Authority::Quorum,
                &Actor::System,
                &content,
                &counted,
                now,
            )
            .await?,
        );
        entries.push(entry(
            &Actor::System,
            "proposal.applied",
            &subject,
            json!({ "kind": row.kind, "approvals": approvals, "quorum": quorum }),
        )?);
        // The change itself, as its own record: what an auditor looks for.
        let target = ["principal", "wallet", "freeze", "id"]
            .iter()
            .find_map(|k| details.get(*k).and_then(|v| v.as_str()))
            .map_or_else(|| subject.clone(), str::to_owned);
        let mut details = details;
        if let Some(m) = details.as_object_mut() {
            m.insert("proposal".into(), json!(row.id));
        }
        entries.push(entry(
            &row.proposed_by,
            change.describe().1,
            &target,
            details,
        )?);
        entries.extend(pulled_back);
        Ok(())
    }

    async fn apply(
        &self,
        tx: &mut WriteTx,
        row: &ProposalRow,
        change: &Change,
        now: Timestamp,
        pulled_back: &mut Vec<audit::Entry>,
    ) -> Result<(serde_json::Value, Effects), ServiceError> {
        let by = &row.proposed_by;
        let mut effects = Effects::default();
        let details = match change {
            Change::SetPolicy { document } => {
                let p = policy::Policy::parse(document).map_err(|e| invalid(e.to_string()))?;
                // The next version of the verified log (a forged row in the
                // table makes the insert fail, never shifts the numbering).
                let version = self
                    .gov_in(tx)
                    .await?
                    .current_policy()
                    .map_or(0, |(v, _)| v)
                    + 1;
                effects.policy_version = Some(version);
                tx.insert_policy(&PolicyRow {
                    version,
                    document: p.canonical_json(),
                    digest: p.digest(),
                    proposal_id: Some(row.id.clone()),
                    created_at: now,
                })
                .await?;
                json!({ "policy_version": version, "digest": p.digest() })
            }
            Change::AddAddress {
                network,
                address,
                label,
                group,
            } => {
                let (net, addr) = canonical_address(network, address)?;
                let usable_from = Timestamp::from_millis(
                    now.as_millis()
                        .saturating_add(self.governance()?.whitelist_cooling_off_ms),
                );
                let id = uuid::Uuid::now_v7().to_string();
                effects.address_id = Some(id.clone());
                effects.usable_from_ms = Some(usable_from.as_millis());
                tx.insert_whitelist(&WhitelistRow {
                    id: id.clone(),
                    network: net.clone(),
                    address: addr.clone(),
                    label: label.clone(),
                    group: group.clone(),
                    usable_from,
                    created_at: now,
                    removed_at: None,
                })
                .await?;
                json!({ "id": id, "network": net, "address": addr, "usable_from_ms": usable_from.as_millis() })
            }
            Change::RemoveAddress { id } => {
                tx.remove_whitelist(id, now).await?;
                json!({ "id": id })
            }
            Change::Grant {
                principal,
                role,
                scope,
                until_ms,
            } => {
                let a = principal_of(principal)?;
                let g = grant_of(role, scope)?;
                tx.insert_grant(&a, g, until_ms.map(Timestamp::from_millis), now, by)
                    .await?;
                json!({ "principal": a.to_string(), "role": g.role().as_str(), "scope": g.scope().to_string() })
            }
            Change::Revoke {
                principal,
                role,
                scope,
            } => {
                let a = principal_of(principal)?;
                let g = grant_of(role, scope)?;
                tx.delete_grant(&a, g).await?;
                json!({ "principal": a.to_string(), "role": g.role().as_str(), "scope": g.scope().to_string() })
            }
            Change::RegisterApproverKey {
                principal,
                public_key,
            } => {
                let a = principal_of(principal)?;
                let key = approver_key_of(public_key)?;
                key_is_theirs_alone(&*self.gov_in(tx).await?, &a, &key)?;
                let voided = self.revoke_approver(tx, &a, now, pulled_back).await?;
                tx.insert_approver_key(&ApproverKeyRow {
                    principal: a.clone(),
                    public_key: public_key.to_lowercase(),
                    registered_at: now,
                    revoked_at: None,
                })
                .await?;
                json!({ "principal": a.to_string(), "public_key": public_key.to_lowercase(), "voided_transfers": voided })
            }
            Change::RevokeApproverKey { principal } => {
                let a = principal_of(principal)?;
                let voided = self.revoke_approver(tx, &a, now, pulled_back).await?;
                json!({ "principal": a.to_string(), "voided_transfers": voided })
            }
            Change::SetWalletTier { wallet, tier } => {
                let w: WalletId = wallet
                    .parse()
                    .map_err(|e: domain::IdError| invalid(e.to_string()))?;
                let t: policy::Tier = tier
                    .parse()
                    .map_err(|e: policy::PolicyError| invalid(e.to_string()))?;
                tx.set_wallet_tier(w, t.as_str()).await?;
                json!({ "wallet": w.to_string(), "tier": t.as_str() })
            }
            Change::SetPrice { asset, usd } => {
                let (a, micro) = price_of(asset, usd)?;
                tx.set_price(&a.to_string(), micro, now, by).await?;
                json!({ "asset": a.to_string(), "usd": usd, "micro_usd": micro.to_string() })
            }
            Change::ReleaseFreeze {
                freeze_id,
                cool_down_s,
            } => {
                let at = Timestamp::from_millis(
                    now.as_millis().saturating_add(
                        i64::try_from(*cool_down_s)
                            .unwrap_or(i64::MAX / 2)
                            .saturating_mul(1000),
                    ),
                );
                tx.release_freeze(freeze_id, at, &row.id).await?;
                json!({ "freeze": freeze_id, "released_at_ms": at.as_millis() })
            }
            // The deny list is governance state alone (no table to keep).
            Change::DenyAddresses { list, entries } => {
                json!({ "list": list, "entries": entries.len() })
            }
            Change::UndenyAddress { network, address } => {
                let (network, address) = crate::changes::canonical_denied(network, address)?;
                json!({ "network": network, "address": address })
            }
            Change::SetFeeCaps { .. } | Change::SetEndpoints { .. } => {
                crate::governed::details(change)?
            }
        };
        Ok((details, effects))
    }

    /// Revokes an approver's key and voids their votes on transfers not yet
    /// signed, pulling back any that no longer have their approvals (one in
    /// `signing` gives its nonce or outputs back); their audit records go
    /// to `pulled_back`.
    async fn revoke_approver(
        &self,
        tx: &mut WriteTx,
        who: &Actor,
        now: Timestamp,
        pulled_back: &mut Vec<audit::Entry>,
    ) -> Result<Vec<String>, ServiceError> {
        let gov = self.gov_in(tx).await?;
        tx.revoke_approver_keys(who, now).await?;
        let touched = tx.void_approvals_of(who, now).await?;
        for id in &touched {
            pulled_back.extend(crate::approvals::retally(tx, *id, now, &gov).await?);
        }
        Ok(touched.iter().map(ToString::to_string).collect())
    }
}

impl Can<'_, perm::Freeze> {
    /// Freezes at once: one security officer or admin is enough.
    pub async fn freeze(
        &self,
        scope: FreezeScope,
        reason: &str,
    ) -> Result<crate::freezes::Placed, ServiceError> {
        self.svc
            .freeze_as(&self.who.actor().clone(), scope, reason)
            .await
    }
}

impl Service {
    /// The policy in force, if one was ever applied: as the verified
    /// governance log has it (a table row that differs is raised, and not
    /// shown).
    pub async fn current_policy(&self) -> Result<Option<storage::PolicyRow>, ServiceError> {
        let gov = self.gov().await?;
        let row = self.store().current_policy().await?;
        let Some((version, logged)) = gov.current_policy() else {
            if row.is_some() {
                self.sweep_later();
            }
            return Ok(None);
        };
        match row {
            Some(r) if r.version == version && r.digest == logged.digest => Ok(Some(r)),
            other => {
                self.sweep_later();
                Ok(Some(storage::PolicyRow {
                    version,
                    document: logged.policy.canonical_json(),
                    digest: logged.digest.clone(),
                    proposal_id: None,
                    created_at: other.map_or_else(|| self.now(), |r| r.created_at),
                }))
            }
        }
    }

    /// The address book: the entries the verified governance log holds
    /// (a row it does not is raised, and not shown).
    pub async fn address_book(&self) -> Result<Vec<WhitelistRow>, ServiceError> {
        let gov = self.gov().await?;
        let rows = self.store().whitelist().await?;
        let n = rows.len();
        let kept: Vec<WhitelistRow> = rows
            .into_iter()
            .filter(|w| {
                gov.addresses().get(&w.id).is_some_and(|a| {
                    !a.removed
                        && a.network == w.network
                        && a.address == w.address
                        && a.group == w.group
                        && a.usable_from == w.usable_from
                })
            })
            .collect();
        if kept.len() != n {
            self.sweep_later();
        }
        Ok(kept)
    }

    /// Compares every governed table with the log in a task of its own.
    fn sweep_later(&self) {
        let svc = self.clone();
        tokio::spawn(async move {
            if let Err(e) = svc.governance_sweep().await {
                tracing::error!(error = %e, "comparing the governed tables with the log failed");
            }
        });
    }
}
