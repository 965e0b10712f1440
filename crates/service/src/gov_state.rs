//! The governance state as the verified governance log makes it: who holds
//! which role, API keys, approver (admin signing) keys, policy versions,
//! the address book, prices and wallet tiers.
//!
//! Replay checks each record before it counts: the hash chain, the MAC
//! under the key derived from the keystore root (when the server holds
//! it), what its authority may do (`bootstrap` only before the first
//! quorum record, `console` read-only roles and API keys, `key-holder` API
//! keys), and for a `quorum` record the admins' `SRGV` signatures — each by
//! an admin in force at that point of the log, with the key the log gives
//! them, over the proposal, its change's digest and the base the proposal
//! was made on — at least as many as the quorum it records. Replay stops at
//! the first record that fails: nothing after it counts.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use domain::{Actor, Grant, Role, Scope, Timestamp, WalletId};
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use storage::GovRecordRow;
use zeroize::Zeroizing;

use crate::changes::{
    Change, GovernedFeeCaps, canonical_address, canonical_denied, fee_caps_of, grant_of,
    origins_of, price_of, principal_of,
};

/// Who wrote a record, and so what it may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Authority {
    /// The console during the bootstrap ceremony: any grant, API key or
    /// admin signing key, until the first quorum record.
    Bootstrap,
    /// The console afterwards: read-only roles, API keys and their
    /// revocation.
    Console,
    /// One person through the API: an API key registered (roles come by
    /// proposal) or revoked.
    KeyHolder,
    /// A proposal the admin quorum signed.
    Quorum,
    /// The server at an unseal: a configured network's first fee caps and
    /// endpoints, only while the log holds none for it (later values come
    /// from the quorum alone).
    Configuration,
}

impl Authority {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Authority::Bootstrap => "bootstrap",
            Authority::Console => "console",
            Authority::KeyHolder => "key-holder",
            Authority::Quorum => "quorum",
            Authority::Configuration => "configuration",
        }
    }

    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "bootstrap" => Authority::Bootstrap,
            "console" => Authority::Console,
            "key-holder" => Authority::KeyHolder,
            "quorum" => Authority::Quorum,
            "configuration" => Authority::Configuration,
            other => return Err(format!("unknown authority {other:?}")),
        })
    }

    /// Records the console writes while sealed carry no MAC; the others
    /// always do.
    fn needs_mac(self) -> bool {
        matches!(
            self,
            Authority::KeyHolder | Authority::Quorum | Authority::Configuration
        )
    }
}

/// What a record says happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Content {
    Grant {
        principal: String,
        role: String,
        scope: String,
        until_ms: Option<i64>,
    },
    ApiKey {
        id: String,
        public_key: String,
        expires_at_ms: i64,
        /// The user who holds the key (`user:<id>`); absent in records
        /// written before owners existed, and for a key of no one's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        owner: Option<String>,
    },
    ApiKeyRevoked {
        id: String,
    },
    /// An admin's signing key, enrolled at bootstrap.
    ApproverKey {
        principal: String,
        public_key: String,
    },
    Proposal {
        id: String,
        change: Change,
        base_seq: u64,
        base_hash: String,
        quorum: u32,
        #[serde(default)]
        effects: Effects,
    },
    /// A network's first fee caps, from the configuration.
    FeeCaps {
        network: String,
        max_rate: String,
        max_total: String,
    },
    /// A network's first endpoints (origins), from the configuration.
    Endpoints {
        network: String,
        origins: Vec<String>,
    },
}

/// What the server chose when it applied a change (everything else is
/// derived from the signed change itself).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Effects {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) policy_version: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) address_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) usable_from_ms: Option<i64>,
}

/// One signed vote that made a quorum.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SignedVote {
    pub(crate) voter: String,
    pub(crate) public_key: String,
    pub(crate) signature: String,
}

/// An API key as the log has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KeyState {
    pub(crate) public_key: String,
    pub(crate) expires_at: Timestamp,
    pub(crate) revoked: bool,
    /// The user who holds it; `None`: the key is a person of its own.
    pub(crate) owner: Option<Actor>,
}

/// An address-book entry as the log has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AddressState {
    pub(crate) network: String,
    pub(crate) address: String,
    pub(crate) label: String,
    pub(crate) group: Option<String>,
    pub(crate) usable_from: Timestamp,
    pub(crate) removed: bool,
}

/// A policy version as the log has it.
/// Why an address is on the deny list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeniedState {
    pub(crate) list: String,
    pub(crate) reason: String,
    pub(crate) since: Timestamp,
}

#[derive(Debug, Clone)]
pub(crate) struct PolicyState {
    pub(crate) digest: String,
    pub(crate) policy: Arc<policy::Policy>,
}

/// The MAC key, derived from the keystore root.
pub(crate) type MacKey = [u8; 32];

/// The MAC of a record's hash.
pub(crate) fn mac_of(key: &MacKey, hash: &[u8; 32]) -> String {
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(hash);
    hex::encode(m.finalize().into_bytes())
}

fn mac_ok(key: &MacKey, hash: &[u8; 32], mac: &str) -> bool {
    let Ok(bytes) = hex::decode(mac) else {
        return false;
    };
    let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(hash);
    m.verify_slice(&bytes).is_ok()
}

fn hash_of(s: &str) -> Result<[u8; 32], String> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| format!("{s:?} is not a 32-byte hex hash"))
}

fn bytes64(s: &str) -> Result<[u8; 64], String> {
    hex::decode(s)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "a signature is 64 bytes of hex".to_owned())
}

/// The verified governance state.
#[derive(Debug, Clone, Default)]
pub(crate) struct GovState {
    pub(crate) head_seq: u64,
    pub(crate) head_hash: [u8; 32],
    /// Every record's hash, by sequence number (index 0 is the genesis).
    hashes: Vec<[u8; 32]>,
    /// A quorum record counted: the bootstrap is over, for good.
    pub(crate) bootstrap_closed: bool,
    last_bootstrap_seq: u64,
    /// The largest quorum a quorum record stated: later ones may not state less.
    quorum_floor: u32,
    grants: BTreeMap<Actor, Vec<(Grant, Option<Timestamp>)>>,
    api_keys: BTreeMap<String, KeyState>,
    approver_keys: BTreeMap<Actor, String>,
    policies: BTreeMap<u64, PolicyState>,
    whitelist: BTreeMap<String, AddressState>,
    prices: BTreeMap<String, (u128, Timestamp)>,
    tiers: BTreeMap<String, String>,
    /// (network, canonical address) → why it is denied.
    denied: BTreeMap<(String, String), DeniedState>,
    /// Each network's fee caps, once recorded.
    fee_caps: BTreeMap<String, GovernedFeeCaps>,
    /// Each network's allowed endpoint origins, once recorded.
    endpoints: BTreeMap<String, BTreeSet<String>>,
    applied: BTreeSet<String>,
    /// Why replay stopped, if it did: the records from there on are ignored.
    pub(crate) broken: Option<String>,
}

impl GovState {
    /// The state before any record.
    pub(crate) fn genesis() -> GovState {
        GovState {
            hashes: vec![[0; 32]],
            ..GovState::default()
        }
    }

    /// Replays `records` (in order, following the head) onto this state,
    /// stopping at the first that fails (the reason kept in `broken`).
    pub(crate) fn replay(&mut self, records: &[GovRecordRow], key: Option<&MacKey>) {
        for r in records {
            if self.broken.is_some() {
                return;
            }
            if let Err(why) = self.apply(r, key) {
                self.broken = Some(format!("governance record {}: {why}", r.seq));
            }
        }
    }

    fn apply(&mut self, r: &GovRecordRow, key: Option<&MacKey>) -> Result<(), String> {
        if r.seq != self.head_seq.saturating_add(1) {
            return Err(format!("out of order after {}", self.head_seq));
        }
        if hash_of(&r.prev_hash)? != self.head_hash {
            return Err("does not follow the record before it".into());
        }
        let fields = policy::RecordFields {
            seq: r.seq,
            prev_hash: self.head_hash,
            time_ms: r.time_ms,
            authority: &r.authority,
            actor: &r.actor,
            content: &r.content,
            approvals: &r.approvals,
        };
        let hash = fields.hash();
        if hash_of(&r.hash)? != hash {
            return Err("its hash does not match its fields".into());
        }
        let authority = Authority::parse(&r.authority)?;
        match (key, &r.mac) {
            (Some(k), Some(m)) if !mac_ok(k, &hash, m) => return Err("its MAC is wrong".into()),
            (Some(_), None) if authority.needs_mac() => return Err("it has no MAC".into()),
            _ => {}
        }
        let content: Content =
            serde_json::from_str(&r.content).map_err(|e| format!("unreadable content: {e}"))?;
        let at = Timestamp::from_millis(r.time_ms);
        let settles = matches!(content, Content::FeeCaps { .. } | Content::Endpoints { .. });
        if settles != (authority == Authority::Configuration) {
            return Err(
                "only the configuration records a network's first fee caps and endpoints, and it records nothing else"
                    .into(),
            );
        }
        match (authority, &content) {
            (Authority::Quorum, Content::Proposal { .. }) => {}
            (Authority::Quorum, _) | (_, Content::Proposal { .. }) => {
                return Err("only the quorum applies proposals".into());
            }
            (Authority::Bootstrap, _) if self.bootstrap_closed => {
                return Err("a bootstrap record after the bootstrap closed".into());
            }
            (Authority::Bootstrap, _) => {}
            (Authority::Console, Content::Grant { role, .. }) => {
                let read_only = role.parse::<Role>().is_ok_and(Role::is_read_only);
                if !read_only {
                    return Err("the console grants only read-only roles".into());
                }
            }
            (Authority::Console | Authority::KeyHolder, Content::ApproverKey { .. }) => {
                return Err("an admin signing key outside the bootstrap".into());
            }
            (Authority::KeyHolder, Content::Grant { .. }) => {
                return Err("a key holder grants no role".into());
            }
            (Authority::Console | Authority::KeyHolder | Authority::Configuration, _) => {}
        }
        match content {
            Content::Proposal {
                id,
                change,
                base_seq,
                base_hash,
                quorum,
                effects,
            } => {
                let base = usize::try_from(base_seq)
                    .ok()
                    .and_then(|i| self.hashes.get(i))
                    .ok_or("its base is not in the log")?;
                if base_seq >= r.seq || *base != hash_of(&base_hash)? {
                    return Err("its base is not the log it was proposed on".into());
                }
                if !self.bootstrap_closed && self.last_bootstrap_seq > base_seq {
                    return Err("the bootstrap changed after it was proposed".into());
                }
                // One spelling of an id (a UUID parses in several).
                let canonical = uuid::Uuid::try_parse(&id).map(|u| u.hyphenated().to_string());
                if canonical.as_deref() != Ok(id.as_str()) {
                    return Err("its id is not a UUID in lower-case hyphenated form".into());
                }
                if !self.applied.insert(id.clone()) {
                    return Err("the proposal was applied before".into());
                }
                if quorum < self.quorum_floor {
                    return Err(format!(
                        "it states a quorum of {quorum}, below the {} the log required",
                        self.quorum_floor
                    ));
                }
                if effects.usable_from_ms.is_some_and(|u| u < r.time_ms) {
                    return Err("an address usable before it was added".into());
                }
                self.check_quorum(&id, &change, base_seq, *base, quorum, &r.approvals, at)?;
                self.apply_change(&change, &effects, at)?;
                self.bootstrap_closed = true;
                self.quorum_floor = self.quorum_floor.max(quorum);
            }
            other => {
                self.apply_plain(other)?;
                if authority == Authority::Bootstrap {
                    self.last_bootstrap_seq = r.seq;
                }
            }
        }
        self.head_seq = r.seq;
        self.head_hash = hash;
        self.hashes.push(hash);
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn check_quorum(
        &self,
        id: &str,
        change: &Change,
        base_seq: u64,
        base_hash: [u8; 32],
        quorum: u32,
        approvals: &str,
        at: Timestamp,
    ) -> Result<(), String> {
        let proposal = *uuid::Uuid::try_parse(id)
            .map_err(|_| "its id is not a UUID")?
            .as_bytes();
        let statement = policy::GovernanceStatement {
            proposal,
            change_digest: change.digest().map_err(|e| e.to_string())?,
            base_seq,
            base_hash,
            approve: true,
        };
        let votes: Vec<SignedVote> =
            serde_json::from_str(approvals).map_err(|e| format!("unreadable approvals: {e}"))?;
        let mut voters = BTreeSet::new();
        for v in &votes {
            let voter: Actor = v.voter.parse().map_err(|_| "a voter is not a principal")?;
            if !self.is_admin(&voter, at) {
                return Err(format!("{voter} was not an admin"));
            }
            if self.approver_keys.get(&voter) != Some(&v.public_key) {
                return Err(format!("{voter} signed with a key not theirs"));
            }
            let key = hash_of(&v.public_key)?;
            statement
                .verify(&key, &bytes64(&v.signature)?)
                .map_err(|e| format!("{voter}'s vote: {e}"))?;
            // A person counts once, whichever of their keys signed.
            if !voters.insert(self.person_of(&voter)) {
                return Err(format!("an admin counted twice ({voter})"));
            }
        }
        if quorum == 0 || voters.len() < quorum as usize {
            return Err(format!(
                "{} signed approvals, the quorum is {quorum}",
                voters.len()
            ));
        }
        Ok(())
    }

    fn add_grant(&mut self, who: Actor, g: Grant, until: Option<Timestamp>) -> Result<(), String> {
        let list = self.grants.entry(who).or_default();
        if list.iter().any(|(x, _)| *x == g) {
            return Err("the grant exists".into());
        }
        list.push((g, until));
        Ok(())
    }

    fn apply_plain(&mut self, c: Content) -> Result<(), String> {
        match c {
            Content::Grant {
                principal,
                role,
                scope,
                until_ms,
            } => {
                let who = principal_of(&principal).map_err(|e| e.to_string())?;
                let g = grant_of(&role, &scope).map_err(|e| e.to_string())?;
                self.add_grant(who, g, until_ms.map(Timestamp::from_millis))
            }
            Content::ApiKey {
                id,
                public_key,
                expires_at_ms,
                owner,
            } => {
                let owner = match owner {
                    None => None,
                    Some(o) => match principal_of(&o).map_err(|e| e.to_string())? {
                        u @ Actor::User(_) => Some(u),
                        _ => return Err(format!("an API key's owner is a user, not {o}")),
                    },
                };
                let fresh = KeyState {
                    public_key,
                    expires_at: Timestamp::from_millis(expires_at_ms),
                    revoked: false,
                    owner,
                };
                match self.api_keys.insert(id, fresh) {
                    None => Ok(()),
                    Some(_) => Err("the API key exists".into()),
                }
            }
            Content::ApiKeyRevoked { id } => match self.api_keys.get_mut(&id) {
                Some(k) => {
                    k.revoked = true;
                    Ok(())
                }
                None => Err("no such API key".into()),
            },
            Content::ApproverKey {
                principal,
                public_key,
            } => {
                let who = principal_of(&principal).map_err(|e| e.to_string())?;
                self.approver_keys.insert(who, public_key.to_lowercase());
                Ok(())
            }
            Content::Proposal { .. } => Err("a proposal outside the quorum".into()),
            Content::FeeCaps {
                network,
                max_rate,
                max_total,
            } => {
                let (network, caps) =
                    fee_caps_of(&network, &max_rate, &max_total).map_err(|e| e.to_string())?;
                if self.fee_caps.contains_key(&network) {
                    return Err(format!("{network}'s fee caps are governed already"));
                }
                self.fee_caps.insert(network, caps);
                Ok(())
            }
            Content::Endpoints { network, origins } => {
                let (network, set) = origins_of(&network, &origins).map_err(|e| e.to_string())?;
                if self.endpoints.contains_key(&network) {
                    return Err(format!("{network}'s endpoints are governed already"));
                }
                self.endpoints.insert(network, set);
                Ok(())
            }
        }
    }

    fn apply_change(
        &mut self,
        change: &Change,
        effects: &Effects,
        at: Timestamp,
    ) -> Result<(), String> {
        let text = |e: crate::error::ServiceError| e.to_string();
        match change {
            Change::SetPolicy { document } => {
                let p = policy::Policy::parse(document).map_err(|e| e.to_string())?;
                let version = effects.policy_version.ok_or("no policy version")?;
                let next = self.policies.keys().next_back().map_or(1, |v| v + 1);
                if version != next {
                    return Err(format!("policy version {version} after {}", next - 1));
                }
                let digest = p.digest();
                self.policies.insert(
                    version,
                    PolicyState {
                        digest,
                        policy: Arc::new(p),
                    },
                );
            }
            Change::AddAddress {
                network,
                address,
                label,
                group,
            } => {
                let (network, address) = canonical_address(network, address).map_err(text)?;
                let id = effects.address_id.clone().ok_or("no address id")?;
                let usable_from = effects.usable_from_ms.ok_or("no usable_from")?;
                let entry = AddressState {
                    network,
                    address,
                    label: label.clone(),
                    group: group.clone(),
                    usable_from: Timestamp::from_millis(usable_from),
                    removed: false,
                };
                if self.whitelist.insert(id, entry).is_some() {
                    return Err("the address-book id exists".into());
                }
            }
            Change::RemoveAddress { id } => {
                self.whitelist
                    .get_mut(id)
                    .ok_or("no such address-book entry")?
                    .removed = true;
            }
            Change::Grant {
                principal,
                role,
                scope,
                until_ms,
            } => {
                let who = principal_of(principal).map_err(text)?;
                let g = grant_of(role, scope).map_err(text)?;
                self.add_grant(who, g, until_ms.map(Timestamp::from_millis))?;
            }
            Change::Revoke {
                principal,
                role,
                scope,
            } => {
                let who = principal_of(principal).map_err(text)?;
                let g = grant_of(role, scope).map_err(text)?;
                if let Some(list) = self.grants.get_mut(&who) {
                    list.retain(|(x, _)| *x != g);
                }
            }
            Change::RegisterApproverKey {
                principal,
                public_key,
            } => {
                let who = principal_of(principal).map_err(text)?;
                self.approver_keys.insert(who, public_key.to_lowercase());
            }
            Change::RevokeApproverKey { principal } => {
                let who = principal_of(principal).map_err(text)?;
                self.approver_keys.remove(&who);
            }
            Change::SetWalletTier { wallet, tier } => {
                let w: WalletId = wallet.parse().map_err(|e: domain::IdError| e.to_string())?;
                let t: policy::Tier = tier
                    .parse()
                    .map_err(|e: policy::PolicyError| e.to_string())?;
                self.tiers.insert(w.to_string(), t.as_str().to_owned());
            }
            Change::SetPrice { asset, usd } => {
                let (a, micro) = price_of(asset, usd).map_err(text)?;
                self.prices.insert(a.to_string(), (micro, at));
            }
            // Freezes are not governance state (their release is audited).
            Change::ReleaseFreeze { .. } => {}
            Change::DenyAddresses { list, entries } => {
                for e in entries {
                    let key = canonical_denied(&e.network, &e.address).map_err(text)?;
                    let why = DeniedState {
                        list: list.clone(),
                        reason: e.reason.clone(),
                        since: at,
                    };
                    self.denied.insert(key, why);
                }
            }
            Change::UndenyAddress { network, address } => {
                let key = canonical_denied(network, address).map_err(text)?;
                self.denied.remove(&key).ok_or("not on the deny list")?;
            }
            Change::SetFeeCaps {
                network,
                max_rate,
                max_total,
            } => {
                let (network, caps) = fee_caps_of(network, max_rate, max_total).map_err(text)?;
                self.fee_caps.insert(network, caps);
            }
            Change::SetEndpoints { network, origins } => {
                let (network, set) = origins_of(network, origins).map_err(text)?;
                self.endpoints.insert(network, set);
            }
        }
        Ok(())
    }

    /// The grants `who` holds at `at`.
    pub(crate) fn grants_of(&self, who: &Actor, at: Timestamp) -> Vec<Grant> {
        let mut out: Vec<Grant> = self
            .grants
            .get(who)
            .into_iter()
            .flatten()
            .filter(|(_, until)| until.is_none_or(|u| u > at))
            .map(|(g, _)| *g)
            .collect();
        out.sort_by_key(|g| (g.role().as_str(), g.scope().to_string()));
        out
    }

    /// Whether `who` may do `permission` on `wallet` at `at`, as the
    /// verified log has it (an API key only while valid).
    pub(crate) fn permits(
        &self,
        who: &Actor,
        permission: domain::Permission,
        wallet: domain::WalletId,
        at: Timestamp,
    ) -> bool {
        self.key_valid(who, at)
            && domain::permits(&self.grants_of(who, at), permission, Some(wallet))
    }

    /// Whether `who` may act at `at` at all: an API key only while neither
    /// revoked nor expired; anyone else, always.
    fn key_valid(&self, who: &Actor, at: Timestamp) -> bool {
        match who {
            Actor::ApiKey(id) => self
                .api_keys
                .get(&id.to_string())
                .is_some_and(|k| !k.revoked && k.expires_at > at),
            _ => true,
        }
    }

    /// Whether `who` is an admin at `at` (an API key only while valid).
    pub(crate) fn is_admin(&self, who: &Actor, at: Timestamp) -> bool {
        self.key_valid(who, at)
            && self
                .grants_of(who, at)
                .iter()
                .any(|g| g.role() == Role::Admin && g.scope() == Scope::Global)
    }

    /// The largest quorum the log has required so far.
    pub(crate) fn quorum_floor(&self) -> u32 {
        self.quorum_floor
    }

    /// The admins at `at`.
    pub(crate) fn admins(&self, at: Timestamp) -> BTreeSet<Actor> {
        self.grants
            .keys()
            .filter(|a| self.is_admin(a, at))
            .cloned()
            .collect()
    }

    pub(crate) fn api_key(&self, id: &str) -> Option<&KeyState> {
        self.api_keys.get(id)
    }

    /// The person behind a principal: an API key's owner when the log
    /// names one, else the principal itself. A quorum counts people: a
    /// user's session and the keys they hold are one approver.
    pub(crate) fn person_of(&self, who: &Actor) -> Actor {
        match who {
            Actor::ApiKey(id) => self
                .api_keys
                .get(&id.to_string())
                .and_then(|k| k.owner.clone())
                .unwrap_or_else(|| who.clone()),
            _ => who.clone(),
        }
    }

    /// An approver's (or admin's) signing key in force, hex.
    pub(crate) fn approver_key(&self, who: &Actor) -> Option<&str> {
        self.approver_keys.get(who).map(String::as_str)
    }

    pub(crate) fn policy(&self, version: u64) -> Option<&PolicyState> {
        self.policies.get(&version)
    }

    /// The policy in force: its version and state.
    pub(crate) fn current_policy(&self) -> Option<(u64, &PolicyState)> {
        self.policies.iter().next_back().map(|(v, p)| (*v, p))
    }

    /// The active address-book entry for an address, with its id.
    pub(crate) fn address(&self, network: &str, address: &str) -> Option<(&str, &AddressState)> {
        self.whitelist
            .iter()
            .find(|(_, a)| !a.removed && a.network == network && a.address == address)
            .map(|(id, a)| (id.as_str(), a))
    }

    /// Every address-book entry, by id (removed ones too).
    /// Why `address` (canonical) is denied on `network`, if it is.
    /// An EVM address denied on one chain is denied on every one: the same
    /// key (and often the same holder) controls it everywhere.
    pub(crate) fn denied(&self, network: &str, address: &str) -> Option<&DeniedState> {
        if let Some(d) = self.denied.get(&(network.to_owned(), address.to_owned())) {
            return Some(d);
        }
        if !network.starts_with("eip155:") {
            return None;
        }
        self.denied
            .iter()
            .find(|((n, a), _)| n.starts_with("eip155:") && a == address)
            .map(|(_, d)| d)
    }

    /// The deny list: (network, canonical address) → why.
    pub(crate) fn deny_list(&self) -> &BTreeMap<(String, String), DeniedState> {
        &self.denied
    }

    pub(crate) fn addresses(&self) -> &BTreeMap<String, AddressState> {
        &self.whitelist
    }

    /// A price (millionths of a dollar per whole unit) and when it was set.
    pub(crate) fn price(&self, asset: &str) -> Option<(u128, Timestamp)> {
        self.prices.get(asset).copied()
    }

    /// A network's governed fee caps, once recorded.
    pub(crate) fn fee_caps(&self, network: &str) -> Option<GovernedFeeCaps> {
        self.fee_caps.get(network).copied()
    }

    /// A network's allowed endpoint origins, once recorded.
    pub(crate) fn endpoints(&self, network: &str) -> Option<&BTreeSet<String>> {
        self.endpoints.get(network)
    }

    /// A wallet's tier (`hot` until governance set another).
    pub(crate) fn tier(&self, wallet: WalletId) -> &str {
        self.tiers
            .get(&wallet.to_string())
            .map_or("hot", String::as_str)
    }

    /// Whether any quorum record followed the bootstrap records after the
    /// base `seq` (a proposal made before the bootstrap changed).
    pub(crate) fn bootstrap_after(&self, seq: u64) -> bool {
        !self.bootstrap_closed && self.last_bootstrap_seq > seq
    }

    /// Every principal the state gives a grant to (for the sweep).
    pub(crate) fn principals(&self) -> impl Iterator<Item = &Actor> {
        self.grants.keys()
    }

    pub(crate) fn approver_keys(&self) -> &BTreeMap<Actor, String> {
        &self.approver_keys
    }
}

/// The process's copy of the verified state, and the MAC key while
/// unsealed.
pub(crate) struct Gov {
    pub(crate) key: std::sync::RwLock<Option<Zeroizing<MacKey>>>,
    pub(crate) state: std::sync::RwLock<Arc<GovState>>,
    pub(crate) loading: tokio::sync::Mutex<()>,
    /// Forgeries already raised by this process, and one raise at a time
    /// (a second raise of the same waits for the first to commit).
    pub(crate) alerted: tokio::sync::Mutex<BTreeSet<String>>,
}

impl Default for Gov {
    fn default() -> Self {
        Gov {
            key: Default::default(),
            state: std::sync::RwLock::new(Arc::new(GovState::genesis())),
            loading: Default::default(),
            alerted: Default::default(),
        }
    }
}

impl std::fmt::Debug for Gov {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gov").finish_non_exhaustive()
    }
}
