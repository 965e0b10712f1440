//! A transfer judged: the facts gathered under the wallet's locks (rolling
//! windows, the address book and prices as the verified governance log
//! has them, rows that disagree raised), the policy in force evaluated,
//! and whether the destination was ever paid before.

use std::collections::BTreeSet;

use domain::{Actor, Role, Timestamp, TransferKind};
use policy::{Decision, Destination, Facts, Policy, Price, TxType, WindowPer, WindowTotal};
use storage::{WindowOf, WriteTx};

use crate::gov_log::Forgery;
use crate::moves::{corrupt, invalid};
use crate::requests::{Prepared, TransferRequest};
use crate::service::{Service, ServiceError};

/// A decision with the policy version it was made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Judgment {
    pub policy_version: Option<u64>,
    pub decision: Decision,
    /// The transfer's value in millionths of a dollar at the latest known
    /// price, recorded for later USD windows whether or not this policy
    /// asked for it (the decision's own figure when it did).
    pub usd_micro: Option<u128>,
    /// No transfer on the network ever completed to this destination:
    /// shown to approvers (stored with the decision as
    /// `first_time_destination`).
    pub first_time_destination: bool,
}

impl Service {
    /// Judges a transfer inside one transaction that holds, in this order:
    /// the governance lock (shared: no policy, address book or group change
    /// lands meanwhile), the wallet's row lock and locks on the initiator
    /// and the destination (rolling windows cannot race). Everything the
    /// evaluator sees is read under them; the caller commits or drops `tx`.
    pub(crate) async fn judge(
        &self,
        who: &Actor,
        roles: &BTreeSet<Role>,
        req: &TransferRequest,
        p: &Prepared,
    ) -> Result<(WriteTx, Judgment, Timestamp), ServiceError> {
        let mut tx = self.store().begin().await?;
        tx.governance_lock(true).await?;
        let (_, tier_row) = tx.lock_wallet(req.wallet).await?;
        // What governance decided, from the verified log; a row that says
        // otherwise is ignored (and raised).
        let gov = self.gov_in(&mut tx).await?;
        let mut forged = Vec::new();
        let logged_tier = gov.tier(req.wallet);
        if tier_row != logged_tier {
            forged.push(Forgery {
                table: "wallets",
                key: req.wallet.to_string(),
                wallet: Some(req.wallet),
                found: tier_row.clone(),
                expected: logged_tier.to_owned(),
            });
        }
        let tier: policy::Tier = logged_tier.parse().map_err(|e| corrupt("wallet tier", e))?;
        tx.lock_names(&[
            format!("initiator:{who}"),
            format!("destination:{}", p.destination_key),
        ])
        .await?;
        // The clock is read once the locks are held.
        let now = self.now();
        let row = tx
            .whitelist_entry_in_tx(&p.network, &p.destination_key)
            .await?;
        let logged = gov.address(&p.network, &p.destination_key);
        let agrees = match (&row, logged) {
            (Some(r), Some((id, l))) => {
                r.id == id && r.group == l.group && r.usable_from == l.usable_from
            }
            (None, None) => true,
            _ => false,
        };
        if !agrees {
            forged.push(Forgery {
                table: "whitelist",
                key: format!("{} {}", p.network, p.destination_key),
                wallet: Some(req.wallet),
                found: format!("{row:?}"),
                expected: format!("{logged:?}"),
            });
        }
        // A row the log does not have counts for nothing; a logged entry
        // whose row is gone is not relied on either.
        let destination = match (logged, &row) {
            // Still cooling off: not yet in the address book for policy.
            (Some((_, e)), Some(_)) if e.usable_from <= now => Destination::Whitelisted {
                groups: e.group.clone().into_iter().collect(),
            },
            _ if tx
                .is_own_eth_address_in_tx(&p.network, &p.destination_key)
                .await? =>
            {
                Destination::Internal
            }
            _ => Destination::OneTime,
        };
        let asset = req.asset.to_string();
        let price_row = tx.price_in_tx(&asset).await?.map(|(m, _)| m);
        let logged_price = gov.price(&asset);
        if price_row != logged_price.map(|(m, _)| m) {
            forged.push(Forgery {
                table: "prices",
                key: asset.clone(),
                wallet: None,
                found: format!("{price_row:?}"),
                expected: format!("{:?}", logged_price.map(|(m, _)| m)),
            });
        }
        let price = logged_price.map(|(micro_usd_per_unit, as_of)| Price {
            micro_usd_per_unit,
            as_of,
        });
        let row_policy = tx.current_policy_digest().await?;
        let logged_policy = gov.current_policy();
        if row_policy.as_ref().map(|(v, d)| (*v, d.as_str()))
            != logged_policy.map(|(v, p)| (v, p.digest.as_str()))
        {
            forged.push(Forgery {
                table: "policies",
                key: "current".into(),
                wallet: None,
                found: format!("{row_policy:?}"),
                expected: format!("{:?}", logged_policy.map(|(v, p)| (v, &p.digest))),
            });
        }
        let no_policy;
        let (policy_version, pol): (Option<u64>, &Policy) = match logged_policy {
            Some((v, p)) => (Some(v), &p.policy),
            // No policy yet: the catch-all blocks.
            None => {
                no_policy = Policy::from_toml("rules = []").map_err(|e| invalid(e.to_string()))?;
                (None, &no_policy)
            }
        };
        for f in forged {
            self.raise(f, true).await?;
        }
        let known = Known { destination, price };
        let facts = facts(&mut tx, who, roles, req, p, tier, pol, &known, now).await?;
        let decision = policy::evaluate(pol, &facts);
        self.metrics().decided(&decision);
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
        // Never paid before: approvers are told (read under the locks).
        let first_time_destination = !tx.ever_paid_in_tx(&p.network, &p.destination_key).await?;
        let j = Judgment {
            policy_version,
            decision,
            usd_micro,
            first_time_destination,
        };
        Ok((tx, j, now))
    }
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
            count: u64::try_from(items.len()).unwrap_or(u64::MAX),
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
        tx_type: match req.kind {
            TransferKind::Sweep => TxType::Sweep,
            TransferKind::Consolidation => TxType::Consolidation,
            TransferKind::GasTopUp => TxType::GasTopUp,
            _ => TxType::Transfer,
        },
        price: known.price,
        now,
        windows,
    })
}
