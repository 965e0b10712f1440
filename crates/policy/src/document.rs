//! Policy documents: what operators write (TOML or JSON), checked into a
//! [`Policy`] the evaluator can trust. Unknown keys, empty lists, dangling
//! group names and malformed amounts are refused at load, with the rule's
//! name in the message, so a typo can never silently widen a rule.

use std::collections::{BTreeMap, BTreeSet};

use crate::terms::invalid;
pub use crate::terms::{
    ActionKind, DestinationKind, MAX_DOCUMENT_BYTES, PolicyError, Tier, TxType, Weekday, WindowPer,
    WindowSpec, WindowUnit,
};
use domain::amount::parse_units;
use domain::{Actor, ApiKeyId, AssetId, Decimals, Role, UserId, WalletId};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The most rules one policy may hold.
pub const MAX_RULES: usize = 10_000;
/// USD amounts are kept in millionths of a dollar.
pub const USD_DECIMALS: u8 = 6;

// ---- The document as written -------------------------------------------

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyDocument {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// How old a price may be before a USD rule refuses to judge with it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_max_age_seconds: Option<u64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupDoc>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub breakers: Vec<BreakerDoc>,
    pub rules: Vec<RuleDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupDoc {
    pub name: String,
    /// `user:<uuid>` or `api-key:<uuid>`.
    pub members: Vec<String>,
}

/// A circuit breaker: a wallet whose outflow over `seconds` would pass the
/// limit is frozen and the transfer blocked, whichever rule would match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerDoc {
    pub name: String,
    pub seconds: u64,
    /// With `max`: the asset whose outflow is limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asset: Option<String>,
    /// In the asset's units, as a decimal string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// In US dollars, as a decimal string (all assets together).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_usd: Option<String>,
    /// How many transfers (every asset, this one included) the wallet may
    /// make over `seconds`: many small withdrawals in minutes trip it long
    /// before a value limit would.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_count: Option<u64>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RangeDoc {
    /// Matches amounts strictly greater than this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<String>,
    /// Matches amounts less than or equal to this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowDoc {
    pub seconds: u64,
    pub per: WindowPer,
    pub unit: WindowUnit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub above: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_most: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HoursDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days: Option<Vec<Weekday>>,
    /// `HH:MM`, UTC, inclusive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// `HH:MM`, UTC, exclusive. Earlier than `from` means overnight.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InitiatorsDoc {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// One approval requirement: exactly one of `group` (with `threshold`),
/// `all_of` or `any_of`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequirementDoc {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all_of: Option<Vec<RequirementDoc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub any_of: Option<Vec<RequirementDoc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleDoc {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiators: Option<InitiatorsDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wallets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tiers: Option<Vec<Tier>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destinations: Option<Vec<DestinationKind>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address_groups: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assets: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub types: Option<Vec<TxType>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount: Option<RangeDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<RangeDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<WindowDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<HoursDoc>,
    pub action: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approvals: Option<RequirementDoc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initiator_may_approve: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_lock_seconds: Option<u64>,
}

// ---- The checked policy --------------------------------------------------

/// A limit written as a decimal string in the asset's units: checked for
/// shape at load, converted with the transfer's decimals at evaluation (a
/// limit finer than the asset's decimals is then an evaluation error, a deny).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssetLimit(pub(crate) String);

impl AssetLimit {
    fn new(s: &str, what: &str) -> Result<Self, PolicyError> {
        let bad = |e: String| invalid(format!("{what}: {s:?} is not a decimal amount: {e}"));
        // Checked at its own precision here; at the asset's when judged.
        let places = s.split_once('.').map_or(0, |(_, f)| f.len());
        let d = u8::try_from(places)
            .ok()
            .and_then(|p| Decimals::new(p).ok())
            .ok_or_else(|| bad("more decimals than any asset has".into()))?;
        parse_units(s, d).map_err(|e| bad(e.to_string()))?;
        Ok(AssetLimit(s.to_owned()))
    }

    pub fn units(&self, decimals: Decimals) -> Result<u128, String> {
        parse_units(&self.0, decimals).map_err(|e| format!("limit {:?}: {e}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn usd(s: &str, what: &str) -> Result<u128, PolicyError> {
    let d = Decimals::new(USD_DECIMALS).map_err(|e| invalid(e.to_string()))?;
    parse_units(s, d).map_err(|e| invalid(format!("{what}: {s:?} is not a dollar amount: {e}")))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    Asset(AssetLimit),
    /// Millionths of a dollar.
    Usd(u128),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    pub above: Option<Limit>,
    pub at_most: Option<Limit>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub spec: WindowSpec,
    pub unit: WindowUnit,
    pub range: Range,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hours {
    pub days: Option<BTreeSet<Weekday>>,
    /// Minutes after midnight UTC: [from, to), overnight when to < from.
    pub minutes: Option<(u16, u16)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Initiators {
    pub users: BTreeSet<UserId>,
    pub api_keys: BTreeSet<ApiKeyId>,
    pub roles: BTreeSet<Role>,
    pub groups: BTreeSet<String>,
}

/// An approval requirement as written: groups by name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Group { group: String, threshold: u32 },
    AllOf(Vec<Requirement>),
    AnyOf(Vec<Requirement>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Allow {
        time_lock_s: u64,
    },
    Block,
    RequireApproval {
        requirement: Requirement,
        initiator_may_approve: bool,
        time_lock_s: u64,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub name: String,
    pub initiators: Option<Initiators>,
    pub wallets: Option<BTreeSet<WalletId>>,
    pub tiers: Option<BTreeSet<Tier>>,
    pub destinations: Option<BTreeSet<DestinationKind>>,
    pub address_groups: Option<BTreeSet<String>>,
    pub assets: Option<BTreeSet<AssetId>>,
    pub types: Option<BTreeSet<TxType>>,
    pub amount: Option<Range>,
    pub usd: Option<Range>,
    pub window: Option<Window>,
    pub hours: Option<Hours>,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Breaker {
    pub name: String,
    pub seconds: u64,
    pub limit: BreakerLimit,
}

/// What a breaker limits over its window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BreakerLimit {
    /// The outflow of one asset, in its units.
    Asset(AssetId, AssetLimit),
    /// The outflow of every asset, in millionths of a dollar.
    Usd(u128),
    /// The number of transfers, every asset.
    Count(u64),
}

/// A checked policy document. The rules are tried in order; the first that
/// matches decides; when none matches the transfer is blocked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(crate) document: PolicyDocument,
    pub(crate) price_max_age_ms: Option<i64>,
    pub(crate) groups: BTreeMap<String, BTreeSet<Actor>>,
    pub(crate) breakers: Vec<Breaker>,
    pub(crate) rules: Vec<Rule>,
}

impl Policy {
    /// Reads a policy from TOML.
    pub fn from_toml(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(PolicyError::TooLarge);
        }
        let doc: PolicyDocument =
            toml::from_str(text).map_err(|e| PolicyError::Syntax(e.message().to_owned()))?;
        Policy::from_document(doc)
    }

    /// Reads a policy from JSON.
    pub fn from_json(text: &str) -> Result<Policy, PolicyError> {
        if text.len() > MAX_DOCUMENT_BYTES {
            return Err(PolicyError::TooLarge);
        }
        let doc: PolicyDocument =
            serde_json::from_str(text).map_err(|e| PolicyError::Syntax(e.to_string()))?;
        Policy::from_document(doc)
    }

    /// Reads TOML or JSON (JSON when the first non-blank character is `{`).
    pub fn parse(text: &str) -> Result<Policy, PolicyError> {
        if text.trim_start().starts_with('{') {
            Policy::from_json(text)
        } else {
            Policy::from_toml(text)
        }
    }

    pub fn from_document(doc: PolicyDocument) -> Result<Policy, PolicyError> {
        if doc.rules.len() > MAX_RULES {
            return Err(invalid(format!("a policy holds at most {MAX_RULES} rules")));
        }
        let mut groups = BTreeMap::new();
        for g in &doc.groups {
            check_name(&g.name, "group name")?;
            if g.members.is_empty() {
                return Err(invalid(format!("group {:?} has no members", g.name)));
            }
            let mut members = BTreeSet::new();
            for m in &g.members {
                let a: Actor = m.parse().map_err(|_| {
                    invalid(format!(
                        "group {:?}: member {m:?} is not user:<uuid> or api-key:<uuid>",
                        g.name
                    ))
                })?;
                if !matches!(a, Actor::User(_) | Actor::ApiKey(_)) {
                    return Err(invalid(format!(
                        "group {:?}: member {m:?} is not user:<uuid> or api-key:<uuid>",
                        g.name
                    )));
                }
                if !members.insert(a) {
                    return Err(invalid(format!("group {:?}: {m} is listed twice", g.name)));
                }
            }
            if groups.insert(g.name.clone(), members).is_some() {
                return Err(invalid(format!("group {:?} is defined twice", g.name)));
            }
        }
        let mut uses_usd = false;
        let mut breakers = Vec::new();
        let mut names = BTreeSet::new();
        for b in &doc.breakers {
            check_name(&b.name, "breaker name")?;
            if !names.insert(format!("breaker:{}", b.name)) {
                return Err(invalid(format!("breaker {:?} is defined twice", b.name)));
            }
            if b.seconds == 0 {
                return Err(invalid(format!(
                    "breaker {:?}: seconds must be positive",
                    b.name
                )));
            }
            let what = format!("breaker {:?}", b.name);
            let limit = match (&b.asset, &b.max, &b.max_usd, b.max_count) {
                (Some(a), Some(m), None, None) => {
                    BreakerLimit::Asset(asset_id(a, &what)?, AssetLimit::new(m, &what)?)
                }
                (None, None, Some(m), None) => {
                    uses_usd = true;
                    BreakerLimit::Usd(usd(m, &what)?)
                }
                (None, None, None, Some(n)) if n > 0 => BreakerLimit::Count(n),
                (None, None, None, Some(_)) => {
                    return Err(invalid(format!("{what}: max_count must be positive")));
                }
                _ => {
                    return Err(invalid(format!(
                        "{what}: give either asset and max, max_usd, or max_count"
                    )));
                }
            };
            breakers.push(Breaker {
                name: b.name.clone(),
                seconds: b.seconds,
                limit,
            });
        }
        let mut rules = Vec::with_capacity(doc.rules.len());
        for r in &doc.rules {
            check_name(&r.name, "rule name")?;
            if !names.insert(format!("rule:{}", r.name)) {
                return Err(invalid(format!("rule {:?} is defined twice", r.name)));
            }
            let rule = rule(r, &groups)?;
            uses_usd |= rule.usd.is_some()
                || rule
                    .window
                    .as_ref()
                    .is_some_and(|w| w.unit == WindowUnit::Usd);
            rules.push(rule);
        }
        let price_max_age_ms = match doc.price_max_age_seconds {
            Some(s) if s > 0 => Some(
                i64::try_from(s)
                    .ok()
                    .and_then(|s| s.checked_mul(1000))
                    .ok_or_else(|| invalid("price_max_age_seconds is too large"))?,
            ),
            Some(_) => return Err(invalid("price_max_age_seconds must be positive")),
            None if uses_usd => {
                return Err(invalid(
                    "price_max_age_seconds is required when a rule or breaker is written in USD",
                ));
            }
            None => None,
        };
        Ok(Policy {
            document: doc,
            price_max_age_ms,
            groups,
            breakers,
            rules,
        })
    }

    pub fn document(&self) -> &PolicyDocument {
        &self.document
    }

    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    pub fn groups(&self) -> &BTreeMap<String, BTreeSet<Actor>> {
        &self.groups
    }

    /// The canonical JSON of the document (what is stored and hashed).
    pub fn canonical_json(&self) -> String {
        serde_json::to_string(&self.document).unwrap_or_default()
    }

    /// SHA-256 of [`Policy::canonical_json`], hex.
    pub fn digest(&self) -> String {
        hex::encode(Sha256::digest(self.canonical_json().as_bytes()))
    }

    /// Every rolling window the evaluator will ask for: the service totals
    /// these (and only these) before it calls [`crate::evaluate`].
    pub fn window_specs(&self) -> BTreeSet<WindowSpec> {
        let mut out: BTreeSet<WindowSpec> = self
            .rules
            .iter()
            .filter_map(|r| r.window.as_ref().map(|w| w.spec))
            .collect();
        out.extend(self.breakers.iter().map(|b| WindowSpec {
            per: WindowPer::Wallet,
            seconds: b.seconds,
        }));
        out
    }

    /// Whether anything in the policy is written in USD (then a price is needed).
    pub fn needs_price(&self) -> bool {
        self.price_max_age_ms.is_some()
    }
}

fn check_name(name: &str, what: &str) -> Result<(), PolicyError> {
    let ok = (1..=64).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "{what} {name:?} must be 1 to 64 of a-z A-Z 0-9 space - _ . :"
        )))
    }
}

fn asset_id(s: &str, what: &str) -> Result<AssetId, PolicyError> {
    s.parse()
        .map_err(|e| invalid(format!("{what}: asset {s:?}: {e}")))
}

fn non_empty<T>(v: &Option<Vec<T>>, what: &str, rule: &str) -> Result<(), PolicyError> {
    match v {
        Some(v) if v.is_empty() => Err(invalid(format!(
            "rule {rule:?}: {what} is empty (it would match nothing; leave it out to match anything)"
        ))),
        _ => Ok(()),
    }
}

fn range(d: &RangeDoc, usd_unit: bool, what: &str) -> Result<Range, PolicyError> {
    let lim = |s: &Option<String>| -> Result<Option<Limit>, PolicyError> {
        s.as_deref()
            .map(|s| {
                if usd_unit {
                    usd(s, what).map(Limit::Usd)
                } else {
                    AssetLimit::new(s, what).map(Limit::Asset)
                }
            })
            .transpose()
    };
    let r = Range {
        above: lim(&d.above)?,
        at_most: lim(&d.at_most)?,
    };
    if r.above.is_none() && r.at_most.is_none() {
        return Err(invalid(format!("{what}: give above, at_most or both")));
    }
    if let (Some(Limit::Usd(a)), Some(Limit::Usd(b))) = (&r.above, &r.at_most)
        && a >= b
    {
        return Err(invalid(format!("{what}: above must be less than at_most")));
    }
    Ok(r)
}

fn hhmm(s: &str, what: &str) -> Result<u16, PolicyError> {
    let bad = || invalid(format!("{what}: {s:?} is not HH:MM"));
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let h: u16 = h.parse().map_err(|_| bad())?;
    let m: u16 = m.parse().map_err(|_| bad())?;
    if h > 23 || m > 59 {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

fn requirement(
    d: &RequirementDoc,
    groups: &BTreeMap<String, BTreeSet<Actor>>,
    what: &str,
    depth: usize,
) -> Result<Requirement, PolicyError> {
    if depth > 8 {
        return Err(invalid(format!("{what}: approvals nest deeper than 8")));
    }
    match (&d.group, d.threshold, &d.all_of, &d.any_of) {
        (Some(g), Some(t), None, None) => {
            let members = groups
                .get(g)
                .ok_or_else(|| invalid(format!("{what}: no group named {g:?}")))?;
            if t == 0 || t as usize > members.len() {
                return Err(invalid(format!(
                    "{what}: threshold {t} for group {g:?} must be 1 to its {} members",
                    members.len()
                )));
            }
            Ok(Requirement::Group {
                group: g.clone(),
                threshold: t,
            })
        }
        (None, None, Some(v), None) | (None, None, None, Some(v)) => {
            if v.is_empty() {
                return Err(invalid(format!("{what}: all_of / any_of is empty")));
            }
            let inner = v
                .iter()
                .map(|r| requirement(r, groups, what, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            if d.all_of.is_some() {
                // Every part of all_of must be met by different people: a
                // member of two parts would make one person count twice.
                let mut seen: BTreeSet<&Actor> = BTreeSet::new();
                for part in &inner {
                    for m in members_of(part, groups) {
                        if !seen.insert(m) {
                            return Err(invalid(format!(
                                "{what}: the parts of all_of share the member {m}: one person would count for two parts"
                            )));
                        }
                    }
                }
                Ok(Requirement::AllOf(inner))
            } else {
                Ok(Requirement::AnyOf(inner))
            }
        }
        _ => Err(invalid(format!(
            "{what}: each approval requirement is exactly one of group + threshold, all_of, any_of"
        ))),
    }
}

/// Everyone a requirement could count.
fn members_of<'a>(
    r: &Requirement,
    groups: &'a BTreeMap<String, BTreeSet<Actor>>,
) -> BTreeSet<&'a Actor> {
    match r {
        Requirement::Group { group, .. } => groups
            .get(group)
            .map(|m| m.iter().collect())
            .unwrap_or_default(),
        Requirement::AllOf(v) | Requirement::AnyOf(v) => {
            v.iter().flat_map(|p| members_of(p, groups)).collect()
        }
    }
}

fn rule(r: &RuleDoc, groups: &BTreeMap<String, BTreeSet<Actor>>) -> Result<Rule, PolicyError> {
    let name = r.name.as_str();
    let what = format!("rule {name:?}");
    non_empty(&r.wallets, "wallets", name)?;
    non_empty(&r.tiers, "tiers", name)?;
    non_empty(&r.destinations, "destinations", name)?;
    non_empty(&r.address_groups, "address_groups", name)?;
    non_empty(&r.assets, "assets", name)?;
    non_empty(&r.types, "types", name)?;
    let initiators = match &r.initiators {
        None => None,
        Some(i) => {
            if i.users.is_empty()
                && i.api_keys.is_empty()
                && i.roles.is_empty()
                && i.groups.is_empty()
            {
                return Err(invalid(format!("{what}: initiators is empty")));
            }
            let mut out = Initiators::default();
            for u in &i.users {
                out.users
                    .insert(u.parse().map_err(|e| invalid(format!("{what}: {e}")))?);
            }
            for k in &i.api_keys {
                out.api_keys
                    .insert(k.parse().map_err(|e| invalid(format!("{what}: {e}")))?);
            }
            for role in &i.roles {
                out.roles
                    .insert(role.parse().map_err(|e| invalid(format!("{what}: {e}")))?);
            }
            for g in &i.groups {
                if !groups.contains_key(g) {
                    return Err(invalid(format!("{what}: no group named {g:?}")));
                }
                out.groups.insert(g.clone());
            }
            Some(out)
        }
    };
    let wallets = r
        .wallets
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|w| {
                    w.parse::<WalletId>()
                        .map_err(|e| invalid(format!("{what}: {e}")))
                })
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .transpose()?;
    let assets = r
        .assets
        .as_ref()
        .map(|v| {
            v.iter()
                .map(|a| asset_id(a, &what))
                .collect::<Result<BTreeSet<_>, _>>()
        })
        .transpose()?;
    if let Some(groups) = &r.address_groups {
        for g in groups {
            check_name(g, "address group")?;
        }
    }
    let amount = r
        .amount
        .as_ref()
        .map(|d| range(d, false, &format!("{what} amount")))
        .transpose()?;
    let usd_range = r
        .usd
        .as_ref()
        .map(|d| range(d, true, &format!("{what} usd")))
        .transpose()?;
    let window = r
        .window
        .as_ref()
        .map(|w| {
            if w.seconds == 0 {
                return Err(invalid(format!("{what}: window seconds must be positive")));
            }
            let range = range(
                &RangeDoc {
                    above: w.above.clone(),
                    at_most: w.at_most.clone(),
                },
                w.unit == WindowUnit::Usd,
                &format!("{what} window"),
            )?;
            Ok(Window {
                spec: WindowSpec {
                    per: w.per,
                    seconds: w.seconds,
                },
                unit: w.unit,
                range,
            })
        })
        .transpose()?;
    let hours = r
        .hours
        .as_ref()
        .map(|h| {
            let days = h
                .days
                .as_ref()
                .map(|d| d.iter().copied().collect::<BTreeSet<_>>());
            if days.as_ref().is_some_and(BTreeSet::is_empty) {
                return Err(invalid(format!("{what}: hours.days is empty")));
            }
            let minutes = match (&h.from, &h.to) {
                (Some(f), Some(t)) => {
                    let (f, t) = (hhmm(f, &what)?, hhmm(t, &what)?);
                    if f == t {
                        return Err(invalid(format!("{what}: hours.from equals hours.to")));
                    }
                    Some((f, t))
                }
                (None, None) => None,
                _ => return Err(invalid(format!("{what}: hours needs both from and to"))),
            };
            if days.is_none() && minutes.is_none() {
                return Err(invalid(format!("{what}: hours is empty")));
            }
            Ok(Hours { days, minutes })
        })
        .transpose()?;
    let time_lock_s = r.time_lock_seconds.unwrap_or(0);
    if time_lock_s > 366 * 24 * 3600 {
        return Err(invalid(format!("{what}: time_lock_seconds is over a year")));
    }
    let action = match r.action {
        ActionKind::Allow | ActionKind::Block if r.approvals.is_some() => {
            return Err(invalid(format!(
                "{what}: approvals are given only with action = \"require_approval\""
            )));
        }
        ActionKind::Allow | ActionKind::Block if r.initiator_may_approve.is_some() => {
            return Err(invalid(format!(
                "{what}: initiator_may_approve is given only with action = \"require_approval\""
            )));
        }
        ActionKind::Block if r.time_lock_seconds.is_some() => {
            return Err(invalid(format!("{what}: a blocking rule has no time lock")));
        }
        ActionKind::Allow => Action::Allow { time_lock_s },
        ActionKind::Block => Action::Block,
        ActionKind::RequireApproval => {
            let d = r.approvals.as_ref().ok_or_else(|| {
                invalid(format!(
                    "{what}: action = \"require_approval\" needs approvals"
                ))
            })?;
            Action::RequireApproval {
                requirement: requirement(d, groups, &what, 0)?,
                initiator_may_approve: r.initiator_may_approve.unwrap_or(false),
                time_lock_s,
            }
        }
    };
    Ok(Rule {
        name: name.to_owned(),
        initiators,
        wallets,
        tiers: r.tiers.as_ref().map(|v| v.iter().copied().collect()),
        destinations: r.destinations.as_ref().map(|v| v.iter().copied().collect()),
        address_groups: r
            .address_groups
            .as_ref()
            .map(|v| v.iter().cloned().collect()),
        assets,
        types: r.types.as_ref().map(|v| v.iter().copied().collect()),
        amount,
        usd: usd_range,
        window,
        hours,
        action,
    })
}
