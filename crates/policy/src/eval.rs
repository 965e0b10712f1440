//! The evaluator: (policy, facts) -> decision, with a trace that says which
//! rules were tried, why each did or did not match, and which one decided.
//!
//! It cannot fail: any error (a missing window total, a stale price, an
//! overflow, a limit finer than the asset's decimals) is a block, and the
//! trace says why.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use domain::amount::format_units;
use domain::{Actor, AssetId, Decimals, Role, Timestamp, WalletId};
use serde::{Deserialize, Serialize};

use crate::approval::Resolved;
use crate::document::{
    Action, DestinationKind, Hours, Limit, Policy, Range, Rule, Tier, TxType, USD_DECIMALS,
    Weekday, WindowSpec, WindowUnit,
};

/// Where a transfer goes, as the service found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// An address-book entry past its cooling-off period, with its groups.
    Whitelisted { groups: BTreeSet<String> },
    /// Another wallet of this custodian.
    Internal,
    /// Anything else.
    OneTime,
}

impl Destination {
    pub fn kind(&self) -> DestinationKind {
        match self {
            Destination::Whitelisted { .. } => DestinationKind::Whitelisted,
            Destination::Internal => DestinationKind::Internal,
            Destination::OneTime => DestinationKind::OneTime,
        }
    }
}

/// A price snapshot: millionths of a dollar per whole unit of the asset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Price {
    pub micro_usd_per_unit: u128,
    pub as_of: Timestamp,
}

/// What earlier transfers add up to over one window (this transfer not
/// included). `usd_micro` is `None` when some of them have no known value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowTotal {
    pub spec: WindowSpec,
    /// Earlier transfers of the same asset, in its base units.
    pub asset_units: u128,
    /// Earlier transfers of every asset, in millionths of a dollar.
    pub usd_micro: Option<u128>,
    /// How many earlier transfers, of every asset.
    pub count: u64,
}

/// Everything the evaluator knows about one transfer. The service gathers
/// these; the evaluator never asks for more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    pub initiator: Actor,
    pub initiator_roles: BTreeSet<Role>,
    pub wallet: WalletId,
    pub tier: Tier,
    pub destination: Destination,
    pub asset: AssetId,
    pub decimals: Decimals,
    /// In the asset's base units.
    pub amount: u128,
    pub tx_type: TxType,
    pub price: Option<Price>,
    pub now: Timestamp,
    pub windows: Vec<WindowTotal>,
}

/// What the policy says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "verdict")]
pub enum Outcome {
    Allow {
        time_lock_s: u64,
    },
    Block,
    RequireApproval {
        requirement: Resolved,
        initiator_may_approve: bool,
        time_lock_s: u64,
    },
}

impl Outcome {
    /// 0 (allow at once) to 3 (block): a larger number never lets more through.
    pub fn strictness(&self) -> u8 {
        match self {
            Outcome::Allow { time_lock_s: 0 } => 0,
            Outcome::Allow { .. } => 1,
            Outcome::RequireApproval { .. } => 2,
            Outcome::Block => 3,
        }
    }

    pub fn time_lock_s(&self) -> u64 {
        match self {
            Outcome::Allow { time_lock_s } | Outcome::RequireApproval { time_lock_s, .. } => {
                *time_lock_s
            }
            Outcome::Block => 0,
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Allow { time_lock_s: 0 } => f.write_str("allow"),
            Outcome::Allow { time_lock_s } => write!(f, "allow after a {time_lock_s} s time lock"),
            Outcome::Block => f.write_str("block"),
            Outcome::RequireApproval {
                requirement,
                initiator_may_approve,
                time_lock_s,
            } => {
                write!(f, "require approval: {requirement}")?;
                if *initiator_may_approve {
                    f.write_str("; the initiator may approve")?;
                }
                if *time_lock_s > 0 {
                    write!(f, "; then a {time_lock_s} s time lock")?;
                }
                Ok(())
            }
        }
    }
}

/// One line of the explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// `breaker <name>`, `rule <n> <name>` or `default`.
    pub subject: String,
    pub result: StepResult,
    pub why: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    Matched,
    NoMatch,
    Tripped,
    Error,
}

/// The decision and its explanation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub outcome: Outcome,
    /// The rule that decided, if one did.
    pub rule: Option<String>,
    /// The circuit breaker that tripped, if one did: the wallet must be frozen.
    pub breaker: Option<String>,
    /// Whether an error decided (always a block).
    pub error: bool,
    /// The transfer's value in millionths of a dollar, when a price was given.
    pub usd_micro: Option<u128>,
    pub trace: Vec<Step>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.trace {
            let r = match s.result {
                StepResult::Matched => "matched",
                StepResult::NoMatch => "no match",
                StepResult::Tripped => "TRIPPED",
                StepResult::Error => "ERROR",
            };
            writeln!(f, "{}: {r}: {}", s.subject, s.why)?;
        }
        write!(f, "=> {}", self.outcome)
    }
}

type Why = String;

/// Judges one transfer. First match wins; no match blocks; any error blocks.
pub fn evaluate(policy: &Policy, facts: &Facts) -> Decision {
    let mut trace = Vec::new();
    let windows: Windows<'_> = facts.windows.iter().map(|w| (w.spec, w)).collect();
    let cx = Cx {
        facts,
        windows: &windows,
    };
    let usd = match usd_value(policy, facts) {
        Ok(v) => v,
        Err(e) => return error(trace, "price".into(), e, None),
    };
    for b in &policy.breakers {
        let subject = format!("breaker {}", b.name);
        match breaker(b, cx, usd) {
            Ok(None) => trace.push(Step {
                subject,
                result: StepResult::NoMatch,
                why: "outflow within its limit".into(),
            }),
            Ok(Some(why)) => {
                trace.push(Step {
                    subject,
                    result: StepResult::Tripped,
                    why,
                });
                return Decision {
                    outcome: Outcome::Block,
                    rule: None,
                    breaker: Some(b.name.clone()),
                    error: false,
                    usd_micro: usd.value(),
                    trace,
                };
            }
            Err(e) => return error(trace, subject, e, usd.value()),
        }
    }
    for (i, rule) in policy.rules.iter().enumerate() {
        let subject = format!("rule {} {}", i + 1, rule.name);
        match matches(policy, rule, cx, usd) {
            Ok(None) => {
                let outcome = outcome(policy, rule);
                trace.push(Step {
                    subject,
                    result: StepResult::Matched,
                    why: format!("every condition holds: {outcome}"),
                });
                return Decision {
                    outcome,
                    rule: Some(rule.name.clone()),
                    breaker: None,
                    error: false,
                    usd_micro: usd.value(),
                    trace,
                };
            }
            Ok(Some(why)) => trace.push(Step {
                subject,
                result: StepResult::NoMatch,
                why,
            }),
            Err(e) => return error(trace, subject, e, usd.value()),
        }
    }
    trace.push(Step {
        subject: "default".into(),
        result: StepResult::Matched,
        why: "no rule matched: blocked".into(),
    });
    Decision {
        outcome: Outcome::Block,
        rule: None,
        breaker: None,
        error: false,
        usd_micro: usd.value(),
        trace,
    }
}

fn error(mut trace: Vec<Step>, subject: String, why: String, usd: Option<u128>) -> Decision {
    trace.push(Step {
        subject,
        result: StepResult::Error,
        why: format!("{why}: blocked"),
    });
    Decision {
        outcome: Outcome::Block,
        rule: None,
        breaker: None,
        error: true,
        usd_micro: usd,
        trace,
    }
}

fn outcome(policy: &Policy, rule: &Rule) -> Outcome {
    match &rule.action {
        Action::Allow { time_lock_s } => Outcome::Allow {
            time_lock_s: *time_lock_s,
        },
        Action::Block => Outcome::Block,
        Action::RequireApproval {
            requirement,
            initiator_may_approve,
            time_lock_s,
        } => Outcome::RequireApproval {
            // The groups' members as of this version are pinned into the
            // decision: a later change of the groups never reaches it.
            requirement: Resolved::resolve(requirement, &policy.groups),
            initiator_may_approve: *initiator_may_approve,
            time_lock_s: *time_lock_s,
        },
    }
}

/// The transfer's value in dollars, if a price was given and is usable.
#[derive(Debug, Clone, Copy)]
enum Usd {
    /// The policy needs no price.
    NotNeeded,
    /// Millionths of a dollar.
    Value(u128),
    /// Needed but missing or stale: a USD condition then errors (denies).
    Unknown(&'static str),
}

impl Usd {
    fn value(self) -> Option<u128> {
        match self {
            Usd::Value(v) => Some(v),
            _ => None,
        }
    }

    fn get(self) -> Result<u128, Why> {
        match self {
            Usd::Value(v) => Ok(v),
            Usd::NotNeeded => Err("no price for a USD condition".into()),
            Usd::Unknown(why) => Err(why.into()),
        }
    }
}

fn usd_value(policy: &Policy, facts: &Facts) -> Result<Usd, Why> {
    let Some(max_age) = policy.price_max_age_ms else {
        return Ok(Usd::NotNeeded);
    };
    let Some(p) = facts.price else {
        return Ok(Usd::Unknown("no price is known for the asset"));
    };
    let age = facts.now.as_millis().saturating_sub(p.as_of.as_millis());
    if age > max_age || age < 0 {
        return Ok(Usd::Unknown("the asset's price is stale"));
    }
    // Rounded up: a limit is never passed by rounding.
    let num = facts
        .amount
        .checked_mul(p.micro_usd_per_unit)
        .ok_or("the transfer's dollar value overflows")?;
    let den = 10u128
        .checked_pow(u32::from(facts.decimals.get()))
        .ok_or("the asset's decimals overflow")?;
    Ok(Usd::Value(num.div_ceil(den)))
}

type Windows<'a> = BTreeMap<WindowSpec, &'a WindowTotal>;

/// The facts with their window totals indexed.
#[derive(Debug, Clone, Copy)]
struct Cx<'a> {
    facts: &'a Facts,
    windows: &'a Windows<'a>,
}

fn window_total<'a>(cx: Cx<'a>, spec: WindowSpec) -> Result<&'a WindowTotal, Why> {
    cx.windows.get(&spec).copied().ok_or_else(|| {
        format!(
            "no total was given for the {} s window per {:?}",
            spec.seconds, spec.per
        )
    })
}

fn fmt_units(units: u128, d: Decimals) -> String {
    format_units(units, d, false)
}

fn fmt_usd(micro: u128) -> String {
    let d = Decimals::new(USD_DECIMALS).ok();
    d.map_or_else(
        || micro.to_string(),
        |d| format!("${}", format_units(micro, d, false)),
    )
}

fn breaker(b: &crate::document::Breaker, cx: Cx<'_>, usd: Usd) -> Result<Option<Why>, Why> {
    let facts = cx.facts;
    let spec = WindowSpec {
        per: crate::document::WindowPer::Wallet,
        seconds: b.seconds,
    };
    use crate::document::BreakerLimit;
    match &b.limit {
        BreakerLimit::Count(max) => {
            // Payments only: a rotation's sweeps or a consolidation (the
            // wallet's own moves) never trip it, though they count.
            if facts.tx_type != crate::terms::TxType::Transfer {
                return Ok(None);
            }
            let total = window_total(cx, spec)?
                .count
                .checked_add(1)
                .ok_or("window count overflows")?;
            Ok((total > *max).then(|| {
                format!(
                    "wallet made {total} transfers over {} s, more than {max}",
                    b.seconds
                )
            }))
        }
        BreakerLimit::Asset(asset, max) => {
            if *asset != facts.asset {
                return Ok(None);
            }
            let max = max.units(facts.decimals)?;
            let total = window_total(cx, spec)?
                .asset_units
                .checked_add(facts.amount)
                .ok_or("window total overflows")?;
            Ok((total > max).then(|| {
                format!(
                    "wallet outflow {} over {} s would pass {}",
                    fmt_units(total, facts.decimals),
                    b.seconds,
                    fmt_units(max, facts.decimals)
                )
            }))
        }
        BreakerLimit::Usd(max) => {
            let earlier = window_total(cx, spec)?
                .usd_micro
                .ok_or("some earlier transfers in the window have no dollar value")?;
            let total = earlier
                .checked_add(usd.get()?)
                .ok_or("window total overflows")?;
            Ok((total > *max).then(|| {
                format!(
                    "wallet outflow {} over {} s would pass {}",
                    fmt_usd(total),
                    b.seconds,
                    fmt_usd(*max)
                )
            }))
        }
    }
}

/// `Ok(None)`: every condition holds. `Ok(Some(why))`: the first that
/// does not. `Err`: a condition could not be judged.
fn matches(policy: &Policy, r: &Rule, cx: Cx<'_>, usd: Usd) -> Result<Option<Why>, Why> {
    let facts = cx.facts;
    if let Some(t) = &r.types
        && !t.contains(&facts.tx_type)
    {
        return Ok(Some(format!("type {:?} is not listed", facts.tx_type)));
    }
    if let Some(a) = &r.assets
        && !a.contains(&facts.asset)
    {
        return Ok(Some(format!("asset {} is not listed", facts.asset)));
    }
    if let Some(w) = &r.wallets
        && !w.contains(&facts.wallet)
    {
        return Ok(Some(format!("wallet {} is not listed", facts.wallet)));
    }
    if let Some(t) = &r.tiers
        && !t.contains(&facts.tier)
    {
        return Ok(Some(format!("tier {} is not listed", facts.tier)));
    }
    if let Some(d) = &r.destinations
        && !d.contains(&facts.destination.kind())
    {
        return Ok(Some(format!(
            "destination kind {:?} is not listed",
            facts.destination.kind()
        )));
    }
    if let Some(g) = &r.address_groups {
        let hit = match &facts.destination {
            Destination::Whitelisted { groups } => groups.iter().any(|x| g.contains(x)),
            _ => false,
        };
        if !hit {
            return Ok(Some("destination is in none of the address groups".into()));
        }
    }
    if let Some(i) = &r.initiators {
        let by_id = match &facts.initiator {
            Actor::User(u) => i.users.contains(u),
            Actor::ApiKey(k) => i.api_keys.contains(k),
            _ => false,
        };
        let by_role = facts.initiator_roles.iter().any(|x| i.roles.contains(x));
        let by_group = i.groups.iter().any(|g| {
            policy
                .groups
                .get(g)
                .is_some_and(|m| m.contains(&facts.initiator))
        });
        if !(by_id || by_role || by_group) {
            return Ok(Some(format!("initiator {} is not listed", facts.initiator)));
        }
    }
    if let Some(h) = &r.hours
        && let Some(why) = hours(h, facts.now)
    {
        return Ok(Some(why));
    }
    if let Some(range) = &r.amount
        && let Some(why) = in_range(range, facts.amount, facts.decimals, "amount")?
    {
        return Ok(Some(why));
    }
    if let Some(range) = &r.usd
        && let Some(why) = in_range(range, usd.get()?, facts.decimals, "dollar value")?
    {
        return Ok(Some(why));
    }
    if let Some(w) = &r.window {
        let total = window_total(cx, w.spec)?;
        let (sum, what) = match w.unit {
            WindowUnit::Asset => (
                total
                    .asset_units
                    .checked_add(facts.amount)
                    .ok_or("window total overflows")?,
                format!("{} s total", w.spec.seconds),
            ),
            WindowUnit::Usd => (
                total
                    .usd_micro
                    .ok_or("some earlier transfers in the window have no dollar value")?
                    .checked_add(usd.get()?)
                    .ok_or("window total overflows")?,
                format!("{} s dollar total", w.spec.seconds),
            ),
        };
        if let Some(why) = in_range(&w.range, sum, facts.decimals, &what)? {
            return Ok(Some(why));
        }
    }
    Ok(None)
}

fn in_range(range: &Range, v: u128, d: Decimals, what: &str) -> Result<Option<Why>, Why> {
    let show = |l: &Limit, x: u128| match l {
        Limit::Asset(_) => fmt_units(x, d),
        Limit::Usd(_) => fmt_usd(x),
    };
    let units = |l: &Limit| -> Result<u128, Why> {
        match l {
            Limit::Asset(a) => a.units(d),
            Limit::Usd(u) => Ok(*u),
        }
    };
    if let Some(l) = &range.above {
        let lim = units(l)?;
        if v <= lim {
            return Ok(Some(format!(
                "{what} {} is not above {}",
                show(l, v),
                show(l, lim)
            )));
        }
    }
    if let Some(l) = &range.at_most {
        let lim = units(l)?;
        if v > lim {
            return Ok(Some(format!(
                "{what} {} is above {}",
                show(l, v),
                show(l, lim)
            )));
        }
    }
    Ok(None)
}

/// The weekday (Monday 0) and minute of the day of a UTC instant.
pub fn utc_day_minute(t: Timestamp) -> (Weekday, u16) {
    let ms = t.as_millis();
    let days = ms.div_euclid(86_400_000);
    // 1970-01-01 was a Thursday.
    let wd = (days + 3).rem_euclid(7) as u8;
    let minute = (ms.rem_euclid(86_400_000) / 60_000) as u16;
    (Weekday::from_index(wd), minute)
}

fn hours(h: &Hours, now: Timestamp) -> Option<Why> {
    let (wd, minute) = utc_day_minute(now);
    if let Some(days) = &h.days
        && !days.contains(&wd)
    {
        return Some(format!("{wd:?} (UTC) is not listed"));
    }
    if let Some((from, to)) = h.minutes {
        let inside = if from < to {
            (from..to).contains(&minute)
        } else {
            minute >= from || minute < to
        };
        if !inside {
            return Some(format!(
                "{:02}:{:02} UTC is outside {:02}:{:02}-{:02}:{:02}",
                minute / 60,
                minute % 60,
                from / 60,
                from % 60,
                to / 60,
                to % 60
            ));
        }
    }
    None
}
