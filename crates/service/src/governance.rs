//! Governance: changes to policies, the address book, roles, approver keys,
//! wallet tiers and freeze releases are proposals that take effect only
//! with the admin quorum (any admin can veto). Freezes take one authorised
//! person and hold until a quorum releases them.

use domain::{Actor, Grant, Permission, Role, Scope, Timestamp, WalletId, permits};
use serde::{Deserialize, Serialize};
use serde_json::json;
use storage::{
    ApproverKeyRow, PolicyRow, ProposalRow, StorageError, VoteRow, WhitelistRow, WriteTx,
};

use crate::access::{Can, Principal, perm};
use crate::error::AuthError;
use crate::freezes::check_label;
pub use crate::freezes::{FreezeScope, Placed};
use crate::record::entry;
use crate::service::{Service, ServiceError};
pub use crate::settings::GovernanceConfig;

/// A change that needs the admin quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Change {
    /// A new policy version (TOML or JSON text).
    SetPolicy {
        document: String,
    },
    /// An address-book entry, usable after the cooling-off period.
    AddAddress {
        network: String,
        address: String,
        label: String,
        #[serde(default)]
        group: Option<String>,
    },
    RemoveAddress {
        id: String,
    },
    Grant {
        principal: String,
        role: String,
        scope: String,
        #[serde(default)]
        until_ms: Option<i64>,
    },
    Revoke {
        principal: String,
        role: String,
        scope: String,
    },
    /// An approver's Ed25519 public key (hex); replaces any earlier one.
    RegisterApproverKey {
        principal: String,
        public_key: String,
    },
    /// Revokes an approver's key and voids their pending approvals.
    RevokeApproverKey {
        principal: String,
    },
    SetWalletTier {
        wallet: String,
        tier: String,
    },
    /// An operator-kept price for USD rules: US dollars per whole unit, a
    /// decimal string (moves every USD limit, so it is governed too).
    SetPrice {
        asset: String,
        usd: String,
    },
    /// Ends a freeze, after an optional cool-down.
    ReleaseFreeze {
        freeze_id: String,
        #[serde(default)]
        cool_down_s: u64,
    },
}

impl Change {
    /// Its kind (as in its JSON), the audit action recorded when it
    /// applies, and the permission that may propose it.
    fn describe(&self) -> (&'static str, &'static str, Permission) {
        use Permission::*;
        match self {
            Change::SetPolicy { .. } => ("set_policy", "policy.activated", ManagePolicy),
            Change::AddAddress { .. } => ("add_address", "address_book.added", ManagePolicy),
            Change::RemoveAddress { .. } => {
                ("remove_address", "address_book.removed", ManagePolicy)
            }
            Change::Grant { .. } => ("grant", "grant.added", ManageUsers),
            Change::Revoke { .. } => ("revoke", "grant.removed", ManageUsers),
            Change::RegisterApproverKey { .. } => (
                "register_approver_key",
                "approver_key.registered",
                ManageUsers,
            ),
            Change::RevokeApproverKey { .. } => {
                ("revoke_approver_key", "approver_key.revoked", ManageUsers)
            }
            Change::SetWalletTier { .. } => ("set_wallet_tier", "wallet.tier_set", ManageNetworks),
            Change::SetPrice { .. } => ("set_price", "price.set", ManagePolicy),
            Change::ReleaseFreeze { .. } => ("release_freeze", "freeze.released", Freeze),
        }
    }
}

fn invalid(s: impl Into<String>) -> ServiceError {
    ServiceError::Invalid(s.into())
}

fn principal_of(s: &str) -> Result<Actor, ServiceError> {
    match s.parse::<Actor>() {
        Ok(a @ (Actor::User(_) | Actor::ApiKey(_))) => Ok(a),
        _ => Err(invalid(format!(
            "principal {s:?}: expected user:<uuid> or api-key:<uuid>"
        ))),
    }
}

fn grant_of(role: &str, scope: &str) -> Result<Grant, ServiceError> {
    let role: Role = role
        .parse()
        .map_err(|e: domain::AccessError| invalid(e.to_string()))?;
    let scope: Scope = scope
        .parse()
        .map_err(|e: domain::AccessError| invalid(e.to_string()))?;
    Grant::new(role, scope).map_err(|e| invalid(e.to_string()))
}

fn public_key_of(hex_key: &str) -> Result<[u8; 32], ServiceError> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| invalid("public_key: 64 hex digits of an Ed25519 key"))?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&bytes)
        .map_err(|_| invalid("public_key is not a valid Ed25519 key"))?;
    if key.is_weak() {
        return Err(invalid("public_key is a weak (small-order) key"));
    }
    Ok(bytes)
}

/// A price: the asset and millionths of a dollar per whole unit, above zero
/// (a zero price would switch USD limits off).
fn price_of(asset: &str, usd: &str) -> Result<(domain::AssetId, u128), ServiceError> {
    let a: domain::AssetId = asset
        .parse()
        .map_err(|e: domain::AssetError| invalid(e.to_string()))?;
    let d = domain::Decimals::new(policy::document::USD_DECIMALS)
        .map_err(|e| invalid(e.to_string()))?;
    let micro = domain::amount::parse_units(usd, d).map_err(|e| invalid(e.to_string()))?;
    if micro == 0 {
        return Err(invalid("usd: a price above zero"));
    }
    Ok((a, micro))
}

/// An address in its one canonical spelling for the network, checked by
/// the chain crate: EIP-55 for EVM (mixed case required), lower-case
/// bech32 for Bitcoin.
pub(crate) fn canonical_address(
    network: &str,
    text: &str,
) -> Result<(String, String), ServiceError> {
    let net: domain::Network = network
        .parse()
        .map_err(|e: domain::NetworkError| invalid(e.to_string()))?;
    match net {
        domain::Network::Evm { .. } => {
            let a = chain_eth::DestinationRules {
                allow_unchecksummed: false,
                whitelist: &[],
            }
            .check(text)
            .map_err(|e| invalid(e.to_string()))?;
            Ok((net.to_string(), a.to_lower_hex()))
        }
        domain::Network::Bitcoin(b) => {
            let a = chain_btc::BtcAddress::parse(text, b).map_err(|e| invalid(e.to_string()))?;
            Ok((net.to_string(), a.to_string()))
        }
    }
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

impl Service {
    /// The console's door for grants (`init --admin`, `apikey create`): open
    /// for any role during the bootstrap ceremony — while no admin exists,
    /// or until governance first applies a change — then only for
    /// read-only roles (viewer, auditor): every other grant is a proposal
    /// under the quorum. Checked in the transaction that adds the grants,
    /// under the exclusive governance lock. Returns whether this is the
    /// bootstrap (recorded with the grant).
    pub(crate) async fn console_door(
        &self,
        tx: &mut WriteTx,
        grants: &[Grant],
        now: Timestamp,
    ) -> Result<bool, ServiceError> {
        tx.governance_lock(false).await?;
        if tx.admins_in_tx(now).await?.is_empty() || !tx.any_applied_proposal_in_tx().await? {
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

    /// Proposes a change. The proposer's own approval counts when they are
    /// an admin; with a quorum of one the change applies at once.
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
        let row = ProposalRow {
            id: id.clone(),
            kind: change.describe().0.into(),
            payload: serde_json::to_string(&change).map_err(|e| invalid(e.to_string()))?,
            summary: summary.clone(),
            proposed_by: who.actor().clone(),
            created_at: now,
            expires_at: Timestamp::from_millis(now.as_millis().saturating_add(cfg.proposal_ttl_ms)),
            state: "open".into(),
            decided_at: None,
        };
        let mut tx = self.store().begin().await?;
        tx.insert_proposal(&row).await?;
        let mut entries = vec![entry(
            who.actor(),
            "proposal.created",
            &format!("proposal:{id}"),
            json!({ "kind": row.kind, "summary": summary }),
        )?];
        if is_admin(who) {
            tx.insert_vote(
                &id,
                &VoteRow {
                    voter: who.actor().clone(),
                    vote: "approve".into(),
                    at: now,
                },
            )
            .await?;
            entries.push(entry(
                who.actor(),
                "proposal.approved",
                &format!("proposal:{id}"),
                json!({}),
            )?);
            self.maybe_apply(&mut tx, &row, &change, now, &mut entries)
                .await?;
        }
        self.commit(tx, &entries, now).await?;
        self.proposal(&id).await
    }

    /// An admin's vote: `approve` counts toward the quorum; `veto` ends the
    /// proposal.
    pub async fn vote(
        &self,
        who: &Principal,
        id: &str,
        approve: bool,
    ) -> Result<ProposalView, ServiceError> {
        if !is_admin(who) {
            return Err(AuthError::Forbidden.into());
        }
        if !who.mfa() {
            return Err(AuthError::MfaRequired.into());
        }
        let now = self.now();
        let mut tx = self.store().begin().await?;
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
        let v = VoteRow {
            voter: who.actor().clone(),
            vote: if approve { "approve" } else { "veto" }.into(),
            at: now,
        };
        // Checked first (a failed insert would abort a PostgreSQL
        // transaction): an admin who approved may still veto; nobody counts
        // twice.
        let earlier = tx
            .votes_in_tx(id)
            .await?
            .into_iter()
            .any(|x| x.voter == *who.actor());
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
            let change: Change = serde_json::from_str(&row.payload)
                .map_err(|e| StorageError::Corrupt(format!("proposal payload: {e}")))?;
            self.maybe_apply(&mut tx, &row, &change, now, &mut entries)
                .await?;
        } else {
            tx.set_proposal_state(id, "vetoed", now).await?;
            entries.push(entry(who.actor(), "proposal.vetoed", &subject, json!({}))?);
        }
        self.commit(tx, &entries, now).await?;
        self.proposal(id).await
    }

    pub async fn proposal(&self, id: &str) -> Result<ProposalView, ServiceError> {
        Ok(ProposalView {
            proposal: self.store().proposal(id).await?,
            votes: self.store().votes(id).await?,
        })
    }

    pub async fn proposals(&self, limit: u32) -> Result<Vec<ProposalRow>, ServiceError> {
        Ok(self.store().proposals(limit.min(500)).await?)
    }

    /// Checks a change fully before it is proposed; returns its summary.
    async fn validate(&self, change: &Change) -> Result<String, ServiceError> {
        Ok(match change {
            Change::SetPolicy { document } => {
                let p = policy::Policy::parse(document).map_err(|e| invalid(e.to_string()))?;
                format!(
                    "policy with {} rules, digest {}",
                    p.rules().len(),
                    p.digest()
                )
            }
            Change::AddAddress {
                network,
                address,
                label,
                group,
            } => {
                let (net, addr) = canonical_address(network, address)?;
                check_label(label, "label")?;
                if let Some(g) = group {
                    check_label(g, "group")?;
                }
                format!("add {addr} on {net} ({label})")
            }
            Change::RemoveAddress { id } => {
                let _ = uuid::Uuid::try_parse(id).map_err(|_| invalid("id: a UUID"))?;
                format!("remove address-book entry {id}")
            }
            Change::Grant {
                principal,
                role,
                scope,
                until_ms,
            } => {
                let a = principal_of(principal)?;
                let g = grant_of(role, scope)?;
                if until_ms.is_some_and(|u| u <= self.now().as_millis()) {
                    return Err(invalid("until_ms is in the past"));
                }
                format!("grant {} at {} to {a}", g.role(), g.scope())
            }
            Change::Revoke {
                principal,
                role,
                scope,
            } => {
                let a = principal_of(principal)?;
                let g = grant_of(role, scope)?;
                format!("revoke {} at {} from {a}", g.role(), g.scope())
            }
            Change::RegisterApproverKey {
                principal,
                public_key,
            } => {
                let a = principal_of(principal)?;
                public_key_of(public_key)?;
                format!("approver key {} for {a}", &public_key[..16])
            }
            Change::RevokeApproverKey { principal } => {
                let a = principal_of(principal)?;
                format!("revoke the approver key of {a}")
            }
            Change::SetWalletTier { wallet, tier } => {
                let w: WalletId = wallet
                    .parse()
                    .map_err(|e: domain::IdError| invalid(e.to_string()))?;
                self.store().wallet(w).await?;
                let t: policy::Tier = tier
                    .parse()
                    .map_err(|e: policy::PolicyError| invalid(e.to_string()))?;
                format!("wallet {w} becomes {t}")
            }
            Change::SetPrice { asset, usd } => {
                let (a, _) = price_of(asset, usd)?;
                format!("the price of {a} becomes ${usd}")
            }
            Change::ReleaseFreeze {
                freeze_id,
                cool_down_s,
            } => {
                let f = self.store().freeze(freeze_id).await?;
                if f.released_at.is_some() {
                    return Err(invalid("the freeze is already released"));
                }
                if *cool_down_s > 30 * 24 * 3600 {
                    return Err(invalid("cool_down_s is over 30 days"));
                }
                format!(
                    "release freeze {} ({}) after {cool_down_s} s",
                    f.id, f.scope
                )
            }
        })
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
        let admins = tx.admins_in_tx(now).await?;
        let votes = tx.votes_in_tx(&row.id).await?;
        // Only those who are admins now count: a demoted admin's vote lapses.
        let approvals = votes
            .iter()
            .filter(|v| v.vote == "approve" && admins.contains(&v.voter))
            .count();
        let quorum = self.governance()?.admin_quorum.max(1) as usize;
        debug_assert!(quorum >= 1);
        if approvals < quorum {
            return Ok(());
        }
        // Exclusive: no transfer is being judged while the change lands.
        tx.governance_lock(false).await?;
        tx.set_proposal_state(&row.id, "applied", now).await?;
        let subject = format!("proposal:{}", row.id);
        let mut pulled_back = Vec::new();
        let details = self.apply(tx, row, change, now, &mut pulled_back).await?;
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
    ) -> Result<serde_json::Value, ServiceError> {
        let by = &row.proposed_by;
        Ok(match change {
            Change::SetPolicy { document } => {
                let p = policy::Policy::parse(document).map_err(|e| invalid(e.to_string()))?;
                let version = tx.current_policy_version().await?.unwrap_or(0) + 1;
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
                public_key_of(public_key)?;
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
        })
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
        tx.revoke_approver_keys(who, now).await?;
        let touched = tx.void_approvals_of(who, now).await?;
        for id in &touched {
            pulled_back.extend(crate::approvals::retally(tx, *id, now).await?);
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
    /// The policy in force, if one was ever applied.
    pub async fn current_policy(&self) -> Result<Option<storage::PolicyRow>, ServiceError> {
        Ok(self.store().current_policy().await?)
    }

    /// The address book.
    pub async fn address_book(&self) -> Result<Vec<WhitelistRow>, ServiceError> {
        Ok(self.store().whitelist().await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_change_is_named_as_its_json_says() {
        let s = || String::from("x");
        let all = [
            Change::SetPolicy { document: s() },
            Change::AddAddress {
                network: s(),
                address: s(),
                label: s(),
                group: None,
            },
            Change::RemoveAddress { id: s() },
            Change::Grant {
                principal: s(),
                role: s(),
                scope: s(),
                until_ms: None,
            },
            Change::Revoke {
                principal: s(),
                role: s(),
                scope: s(),
            },
            Change::RegisterApproverKey {
                principal: s(),
                public_key: s(),
            },
            Change::RevokeApproverKey { principal: s() },
            Change::SetWalletTier {
                wallet: s(),
                tier: s(),
            },
            Change::SetPrice {
                asset: s(),
                usd: s(),
            },
            Change::ReleaseFreeze {
                freeze_id: s(),
                cool_down_s: 0,
            },
        ];
        for c in all {
            let json = serde_json::to_value(&c).unwrap_or_default();
            assert_eq!(json["kind"], c.describe().0);
        }
    }
}
