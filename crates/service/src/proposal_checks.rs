//! What a proposal must pass before it is put to the admins: its change
//! checked in full (and summarised for them), and that governance keeps
//! enough people with signing keys to act again.

use domain::{Actor, Role, Scope, WalletId};

use crate::changes::{
    Change, approver_key_of, canonical_address, grant_of, invalid, price_of, principal_of,
};
use crate::freezes::check_label;
use crate::service::{Service, ServiceError};

impl Service {
    /// Checks a change fully before it is proposed; returns its summary.
    pub(crate) async fn validate(&self, change: &Change) -> Result<String, ServiceError> {
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
                // Whose key it is, as the log has it: the admins signing
                // see who they give a vote to.
                let held = match &a {
                    Actor::ApiKey(id) => match self.gov().await?.api_key(&id.to_string()) {
                        Some(k) => match &k.owner {
                            Some(o) => format!(" (held by {o})"),
                            None => " (a key with no owner: a person of its own)".to_owned(),
                        },
                        None => String::new(),
                    },
                    _ => String::new(),
                };
                format!("grant {} at {} to {a}{held}", g.role(), g.scope())
            }
            Change::Revoke {
                principal,
                role,
                scope,
            } => {
                let a = principal_of(principal)?;
                let g = grant_of(role, scope)?;
                if g.role() == Role::Admin && g.scope() == Scope::Global {
                    self.keeps_quorum(&a).await?;
                }
                format!("revoke {} at {} from {a}", g.role(), g.scope())
            }
            Change::RegisterApproverKey {
                principal,
                public_key,
            } => {
                let a = principal_of(principal)?;
                let key = approver_key_of(public_key)?;
                key_is_theirs_alone(&*self.gov().await?, &a, &key)?;
                // What admins compare out of band: the key itself (a
                // passkey's credential id is only its name).
                let fingerprint = hex::encode(&key.point()[key.point().len() - 8..]);
                let kind = match key {
                    policy::ApproverKey::Ed25519(_) => "approver key",
                    // It replaces the principal's Ed25519 key, which an
                    // admin's governance votes need.
                    policy::ApproverKey::Passkey { .. } => {
                        self.keeps_quorum(&a).await?;
                        "passkey approver key"
                    }
                };
                format!("{kind} …{fingerprint} for {a}")
            }
            Change::RevokeApproverKey { principal } => {
                let a = principal_of(principal)?;
                self.keeps_quorum(&a).await?;
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
            Change::DenyAddresses { list, entries } => crate::screening::check_deny(list, entries)?,
            Change::UndenyAddress { network, address } => {
                self.check_undeny(network, address).await?
            }
            Change::SetFeeCaps { .. } | Change::SetEndpoints { .. } => {
                self.check_governed(change).await?
            }
        })
    }

    /// Refuses a change that would leave fewer admins with a signing key
    /// than the quorum: governance could never act again.
    pub(crate) async fn keeps_quorum(&self, leaving: &Actor) -> Result<(), ServiceError> {
        let gov = self.gov().await?;
        let now = self.now();
        let quorum = self
            .governance()?
            .admin_quorum
            .max(gov.quorum_floor())
            .max(1) as usize;
        // People, not principals: one user's session and keys are one vote.
        let remaining = gov
            .admins(now)
            .into_iter()
            .filter(|a| {
                a != leaving
                    && gov
                        .approver_key(a)
                        .is_some_and(|k| !k.starts_with(policy::passkey::WEBAUTHN))
            })
            .map(|a| gov.person_of(&a))
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        // The state of things refuses it, not the request: 409.
        if remaining < quorum {
            return Err(ServiceError::Conflict(format!(
                "it would leave {remaining} admins with a signing key, fewer than the quorum \
                 ({quorum}): governance could not act again"
            )));
        }
        Ok(())
    }
}

/// Refuses a key that is another principal's approver key in force, under
/// any name (a passkey's point with another credential id): one key must
/// never count as two approvers.
pub(crate) fn key_is_theirs_alone(
    gov: &crate::gov_state::GovState,
    principal: &Actor,
    key: &policy::ApproverKey,
) -> Result<(), ServiceError> {
    let taken = gov.approver_keys().iter().any(|(who, k)| {
        who != principal
            && k.parse::<policy::ApproverKey>()
                .is_ok_and(|k| k.point() == key.point())
    });
    if taken {
        return Err(ServiceError::Conflict(
            "this key is another principal's approver key".into(),
        ));
    }
    Ok(())
}
