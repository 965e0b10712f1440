//! Distributed key generation (FROST's Pedersen DKG with proofs of
//! knowledge), one party's side; and the same ceremony run as a share
//! refresh (frost-core's `refresh_dkg_*`): every member adds a fresh
//! sharing of zero to its share, so the group key stays and the old shares
//! no longer combine with the new ones — a member left out is removed.

use std::collections::BTreeMap;
use std::fmt;

use frost_core::keys::{KeyPackage, PublicKeyPackage, dkg, refresh};
use frost_core::{Identifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::Suite;
use crate::envelope::{Abort, Envelope, PartyIndex, Round, SessionId, collect, from_frost};

/// The most parties a key may have.
pub const MAX_PARTIES: u16 = 64;

/// One party's run of a key-generation ceremony.
pub struct Dkg<C: Suite> {
    session: SessionId,
    /// SHA-256 of what the key is for (its id and wallet), compared
    /// between the parties with round one's echo.
    context: String,
    me: PartyIndex,
    parties: Vec<PartyIndex>,
    threshold: u16,
    mode: Mode<C>,
    stage: Stage<C>,
}

/// A new key, or a refresh of the share this party holds.
enum Mode<C: Suite> {
    Fresh,
    Refresh(Box<KeyShare<C>>),
}

impl<C: Suite> Mode<C> {
    fn rounds(&self) -> (Round, Round) {
        match self {
            Mode::Fresh => (Round::Dkg1, Round::Dkg2),
            Mode::Refresh(_) => (Round::Refresh1, Round::Refresh2),
        }
    }
}

enum Stage<C: Suite> {
    Round1 {
        secret: dkg::round1::SecretPackage<C>,
        own: Vec<u8>,
    },
    Round2 {
        secret: dkg::round2::SecretPackage<C>,
        round1: BTreeMap<Identifier<C>, dkg::round1::Package<C>>,
        view: BTreeMap<u16, String>,
    },
    Spent,
}

impl<C: Suite> fmt::Debug for Dkg<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let stage = match self.stage {
            Stage::Round1 { .. } => "round 1",
            Stage::Round2 { .. } => "round 2",
            Stage::Spent => "spent",
        };
        f.debug_struct("Dkg")
            .field("suite", &C::NAME)
            .field("session", &self.session)
            .field("me", &self.me)
            .field("parties", &self.parties.len())
            .field("threshold", &self.threshold)
            .field("refresh", &matches!(self.mode, Mode::Refresh(_)))
            .field("stage", &stage)
            .finish()
    }
}

impl<C: Suite> Dkg<C> {
    /// Starts a ceremony for `n` parties of which `threshold` sign, as
    /// party `me`: returns the round-1 message for everyone.
    pub fn start(
        session: SessionId,
        me: PartyIndex,
        n: u16,
        threshold: u16,
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<(Dkg<C>, Envelope), Abort> {
        Self::start_for(session, me, n, threshold, b"", rng)
    }

    /// [`Dkg::start`] for a key described by `context` (its id and
    /// wallet): every party must have been told the same, or the ceremony
    /// stops at round two, before any share is kept.
    pub fn start_for(
        session: SessionId,
        me: PartyIndex,
        n: u16,
        threshold: u16,
        context: &[u8],
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<(Dkg<C>, Envelope), Abort> {
        if !(2..=MAX_PARTIES).contains(&n) || !(2..=n).contains(&threshold) {
            return Err(Abort::Parameters(format!(
                "{threshold} of {n}: need 2 ≤ threshold ≤ parties ≤ {MAX_PARTIES}"
            )));
        }
        if me.get() > n {
            return Err(Abort::Parameters(format!("{me} of only {n}")));
        }
        let parties: Vec<PartyIndex> = (1..=n).filter_map(PartyIndex::new).collect();
        let (secret, package) = dkg::part1::<C, _>(me.identifier()?, n, threshold, rng)
            .map_err(|e| Abort::Internal(e.to_string()))?;
        let own = package
            .serialize()
            .map_err(|e| Abort::Internal(e.to_string()))?;
        let msg = Envelope::new(C::NAME, session, Round::Dkg1, me.get(), None, &own);
        Ok((
            Dkg {
                session,
                context: digest(context),
                me,
                parties,
                threshold,
                mode: Mode::Fresh,
                stage: Stage::Round1 { secret, own },
            },
            msg,
        ))
    }

    /// Starts a refresh of `share` among `members` (this party and others
    /// of the key, at least its threshold of them): the group key stays,
    /// every member's share changes, and a party left out is removed —
    /// its old share no longer combines with the new ones. `context`
    /// describes the key as for [`Dkg::start_for`]; the member list is
    /// compared between the parties with it.
    pub fn refresh(
        session: SessionId,
        share: KeyShare<C>,
        members: &[PartyIndex],
        context: &[u8],
        rng: &mut impl rand_core::CryptoRngCore,
    ) -> Result<(Dkg<C>, Envelope), Abort> {
        let mut parties = members.to_vec();
        parties.sort();
        parties.dedup();
        if !parties.contains(&share.me) {
            return Err(Abort::Parameters(format!(
                "{} is not among the refresh's members",
                share.me
            )));
        }
        if let Some(p) = parties.iter().find(|p| !share.parties.contains(p)) {
            return Err(Abort::Parameters(format!("{p} is not a party of this key")));
        }
        let n = u16::try_from(parties.len())
            .map_err(|_| Abort::Parameters("too many members".into()))?;
        if n < share.threshold {
            return Err(Abort::Parameters(format!(
                "{n} members cannot keep a threshold of {}",
                share.threshold
            )));
        }
        let (secret, package) =
            refresh::refresh_dkg_part1::<C, _>(share.me.identifier()?, n, share.threshold, rng)
                .map_err(|e| Abort::Internal(e.to_string()))?;
        let own = package
            .serialize()
            .map_err(|e| Abort::Internal(e.to_string()))?;
        let me = share.me;
        let msg = Envelope::new(C::NAME, session, Round::Refresh1, me.get(), None, &own);
        let listed: Vec<String> = parties.iter().map(|p| p.get().to_string()).collect();
        let mut described = context.to_vec();
        described.extend_from_slice(format!("\nrefresh among {}", listed.join(",")).as_bytes());
        Ok((
            Dkg {
                session,
                context: digest(&described),
                me,
                parties,
                threshold: share.threshold,
                mode: Mode::Refresh(Box::new(share)),
                stage: Stage::Round1 { secret, own },
            },
            msg,
        ))
    }

    /// Whether this ceremony refreshes a share (rather than making a key).
    pub fn is_refresh(&self) -> bool {
        matches!(self.mode, Mode::Refresh(_))
    }

    /// Takes everyone else's round-1 message; returns one round-2 message
    /// for each of them.
    pub fn round1(&mut self, messages: &[Envelope]) -> Result<Vec<Envelope>, Abort> {
        let Stage::Round1 { secret, own } = std::mem::replace(&mut self.stage, Stage::Spent) else {
            return Err(Abort::Internal("round 1 is over".into()));
        };
        let (first, second) = self.mode.rounds();
        let got = collect(&self.parties, Some(self.me), messages)?;
        let mut round1 = BTreeMap::new();
        let mut view = BTreeMap::new();
        // Entry 0 (no party has it): what the key is for.
        view.insert(0, self.context.clone());
        view.insert(self.me.get(), digest(&own));
        for (p, m) in &got {
            let body = m.open(C::NAME, self.session, first, self.me.get(), true)?;
            let package =
                dkg::round1::Package::<C>::deserialize(&body).map_err(|e| Abort::Malformed {
                    from: p.get(),
                    what: format!("round-1 package: {e}"),
                })?;
            view.insert(p.get(), digest(&body));
            round1.insert(p.identifier::<C>()?, package);
        }
        let (secret, out) = match self.mode {
            Mode::Fresh => dkg::part2(secret, &round1),
            Mode::Refresh(_) => refresh::refresh_dkg_part2(secret, &round1),
        }
        .map_err(|e| from_frost(e, &self.parties))?;
        let mut messages = Vec::with_capacity(out.len());
        for p in got.keys() {
            let package = out
                .get(&p.identifier::<C>()?)
                .ok_or_else(|| Abort::Internal(format!("no round-2 package for {p}")))?;
            let body = Zeroizing::new(
                package
                    .serialize()
                    .map_err(|e| Abort::Internal(e.to_string()))?,
            );
            let mut m = Envelope::new(
                C::NAME,
                self.session,
                second,
                self.me.get(),
                Some(p.get()),
                &body,
            );
            m.echo = Some(view.clone());
            messages.push(m);
        }
        self.stage = Stage::Round2 {
            secret,
            round1,
            view,
        };
        Ok(messages)
    }

    /// Takes everyone else's round-2 message (checking first that all saw
    /// the same round 1); returns this party's share of the new key.
    pub fn round2(mut self, messages: &[Envelope]) -> Result<KeyShare<C>, Abort> {
        let Stage::Round2 {
            secret,
            round1,
            view,
        } = std::mem::replace(&mut self.stage, Stage::Spent)
        else {
            return Err(Abort::Internal("not at round 2".into()));
        };
        let (_, second) = self.mode.rounds();
        let got = collect(&self.parties, Some(self.me), messages)?;
        // The echoes first: no share is looked at until every party is
        // known to have seen the same round 1.
        for (p, m) in &got {
            let Some(echo) = &m.echo else {
                return Err(Abort::Malformed {
                    from: p.get(),
                    what: "round-2 message without its echo of round 1".into(),
                });
            };
            if echo.len() != view.len() || echo.keys().ne(view.keys()) {
                return Err(Abort::Malformed {
                    from: p.get(),
                    what: "echo of round 1 names other parties".into(),
                });
            }
            for (sender, hash) in &view {
                if *sender == 0 && echo.get(sender) != Some(hash) {
                    return Err(Abort::Parameters(format!(
                        "{p} was told another key id or wallet for this ceremony than this party"
                    )));
                }
                if echo.get(sender) != Some(hash) {
                    let sender = PartyIndex::new(*sender)
                        .ok_or_else(|| Abort::Internal("party 0 in the view".into()))?;
                    return Err(Abort::Equivocation {
                        sender,
                        reported_by: *p,
                    });
                }
            }
        }
        let mut round2 = BTreeMap::new();
        for (p, m) in &got {
            let body =
                Zeroizing::new(m.open(C::NAME, self.session, second, self.me.get(), false)?);
            let package =
                dkg::round2::Package::<C>::deserialize(&body).map_err(|e| Abort::Malformed {
                    from: p.get(),
                    what: format!("round-2 package: {e}"),
                })?;
            round2.insert(p.identifier::<C>()?, package);
        }
        let (key, public) = match std::mem::replace(&mut self.mode, Mode::Fresh) {
            Mode::Fresh => dkg::part3(&secret, &round1, &round2),
            Mode::Refresh(old) => {
                let old = *old;
                let group = *old.public.verifying_key();
                let refreshed = refresh::refresh_dkg_shares(
                    &secret,
                    &round1,
                    &round2,
                    old.public.clone(),
                    old.key.clone(),
                );
                if refreshed
                    .as_ref()
                    .is_ok_and(|(k, p)| *k.verifying_key() != group || *p.verifying_key() != group)
                {
                    return Err(Abort::Internal(
                        "the refreshed share is for another group key".into(),
                    ));
                }
                refreshed
            }
        }
        .map_err(|e| from_frost(e, &self.parties))?;
        Ok(KeyShare {
            me: self.me,
            parties: self.parties.clone(),
            threshold: self.threshold,
            key,
            public,
        })
    }
}

fn digest(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// One party's share of a threshold key, with the group's public parts.
/// The signing share zeroizes on drop and is never printed.
pub struct KeyShare<C: Suite> {
    pub(crate) me: PartyIndex,
    pub(crate) parties: Vec<PartyIndex>,
    pub(crate) threshold: u16,
    pub(crate) key: KeyPackage<C>,
    pub(crate) public: PublicKeyPackage<C>,
}

impl<C: Suite> fmt::Debug for KeyShare<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyShare")
            .field("suite", &C::NAME)
            .field("me", &self.me)
            .field("parties", &self.parties.len())
            .field("threshold", &self.threshold)
            .field("group_key", &self.group_key().map(hex::encode).ok())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Stored {
    suite: String,
    me: PartyIndex,
    parties: u16,
    /// The parties when they are not 1 to `parties` (after a refresh
    /// removed one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    members: Option<Vec<u16>>,
    threshold: u16,
    key: String,
    public: String,
}

/// The stored form of a party list: none for 1 to n.
fn members_of(parties: &[PartyIndex]) -> Result<(u16, Option<Vec<u16>>), Abort> {
    let n = u16::try_from(parties.len()).map_err(|_| Abort::Internal("too many parties".into()))?;
    let listed: Vec<u16> = parties.iter().map(|p| p.get()).collect();
    let plain = listed.iter().copied().eq(1..=n);
    Ok((n, (!plain).then_some(listed)))
}

/// Reads a stored party list: `n` parties, 1 to n unless listed; listed
/// ones ascending, distinct, each known to `public` by its verifying share.
fn read_members<C: Suite>(
    n: u16,
    members: Option<&[u16]>,
    public: &PublicKeyPackage<C>,
) -> Option<Vec<PartyIndex>> {
    let parties: Vec<PartyIndex> = match members {
        None => (1..=n).filter_map(PartyIndex::new).collect(),
        Some(m) => m
            .iter()
            .map(|i| PartyIndex::new(*i))
            .collect::<Option<_>>()?,
    };
    let known = parties.len() == usize::from(n)
        && n <= MAX_PARTIES
        && parties.windows(2).all(|w| w[0] < w[1])
        && public.verifying_shares().len() == parties.len()
        && parties.iter().all(|p| {
            p.identifier::<C>()
                .is_ok_and(|id| public.verifying_shares().contains_key(&id))
        });
    known.then_some(parties)
}

impl<C: Suite> KeyShare<C> {
    pub fn me(&self) -> PartyIndex {
        self.me
    }

    pub fn parties(&self) -> &[PartyIndex] {
        &self.parties
    }

    pub fn threshold(&self) -> u16 {
        self.threshold
    }

    /// The group key as other software takes it (see [`Suite`]).
    pub fn group_key(&self) -> Result<[u8; 32], Abort> {
        C::group_key_bytes(self.public.verifying_key())
    }

    pub fn verifying_key(&self) -> &VerifyingKey<C> {
        self.public.verifying_key()
    }

    /// What the coordinator needs: the group's public parts.
    pub fn public(&self) -> GroupPublic<C> {
        GroupPublic {
            parties: self.parties.clone(),
            threshold: self.threshold,
            public: self.public.clone(),
        }
    }

    /// The share for sealed storage (the caller encrypts it at rest).
    pub fn to_secret_bytes(&self) -> Result<Zeroizing<Vec<u8>>, Abort> {
        let key = Zeroizing::new(
            self.key
                .serialize()
                .map_err(|e| Abort::Internal(e.to_string()))?,
        );
        let public = self
            .public
            .serialize()
            .map_err(|e| Abort::Internal(e.to_string()))?;
        let (parties, members) = members_of(&self.parties)?;
        let mut stored = Stored {
            suite: C::NAME.into(),
            me: self.me,
            parties,
            members,
            threshold: self.threshold,
            key: hex::encode(&*key),
            public: hex::encode(public),
        };
        let out = serde_json::to_vec(&stored).map_err(|e| Abort::Internal(e.to_string()));
        zeroize::Zeroize::zeroize(&mut stored.key);
        out.map(Zeroizing::new)
    }

    /// Reads what [`KeyShare::to_secret_bytes`] wrote.
    pub fn from_secret_bytes(bytes: &[u8]) -> Result<KeyShare<C>, Abort> {
        let bad = |what: &str| Abort::Parameters(format!("stored key share: {what}"));
        let stored = StoredGuard(serde_json::from_slice(bytes).map_err(|_| bad("not JSON"))?);
        if stored.0.suite != C::NAME {
            return Err(bad("another suite"));
        }
        let key_bytes = Zeroizing::new(hex::decode(&stored.0.key).map_err(|_| bad("key"))?);
        let key = KeyPackage::<C>::deserialize(&key_bytes).map_err(|_| bad("key"))?;
        let public_bytes = hex::decode(&stored.0.public).map_err(|_| bad("public"))?;
        let public =
            PublicKeyPackage::<C>::deserialize(&public_bytes).map_err(|_| bad("public"))?;
        let parties = read_members(stored.0.parties, stored.0.members.as_deref(), &public)
            .ok_or_else(|| bad("parties"))?;
        if !(2..=stored.0.parties).contains(&stored.0.threshold)
            || !parties.contains(&stored.0.me)
            || key.identifier() != &stored.0.me.identifier::<C>()?
            || key.verifying_key() != public.verifying_key()
        {
            return Err(bad("inconsistent"));
        }
        Ok(KeyShare {
            me: stored.0.me,
            parties,
            threshold: stored.0.threshold,
            key,
            public,
        })
    }
}

/// Zeroizes the stored key's hex when dropped.
struct StoredGuard(Stored);

impl Drop for StoredGuard {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0.key);
    }
}

/// A threshold key's public parts: its parties, threshold and the
/// verifying shares the coordinator checks signature shares against.
#[derive(Clone)]
pub struct GroupPublic<C: Suite> {
    pub(crate) parties: Vec<PartyIndex>,
    pub(crate) threshold: u16,
    pub(crate) public: PublicKeyPackage<C>,
}

impl<C: Suite> fmt::Debug for GroupPublic<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GroupPublic")
            .field("suite", &C::NAME)
            .field("parties", &self.parties.len())
            .field("threshold", &self.threshold)
            .field(
                "group_key",
                &C::group_key_bytes(self.public.verifying_key())
                    .map(hex::encode)
                    .ok(),
            )
            .finish()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StoredPublic {
    suite: String,
    parties: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    members: Option<Vec<u16>>,
    threshold: u16,
    public: String,
}

impl<C: Suite> GroupPublic<C> {
    pub fn threshold(&self) -> u16 {
        self.threshold
    }

    pub fn parties(&self) -> &[PartyIndex] {
        &self.parties
    }

    pub fn group_key(&self) -> Result<[u8; 32], Abort> {
        C::group_key_bytes(self.public.verifying_key())
    }

    /// For the coordinator's storage (public: no secret in it).
    pub fn to_bytes(&self) -> Result<Vec<u8>, Abort> {
        let public = self
            .public
            .serialize()
            .map_err(|e| Abort::Internal(e.to_string()))?;
        let (parties, members) = members_of(&self.parties)?;
        serde_json::to_vec(&StoredPublic {
            suite: C::NAME.into(),
            parties,
            members,
            threshold: self.threshold,
            public: hex::encode(public),
        })
        .map_err(|e| Abort::Internal(e.to_string()))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<GroupPublic<C>, Abort> {
        let bad = |what: &str| Abort::Parameters(format!("stored group key: {what}"));
        let s: StoredPublic = serde_json::from_slice(bytes).map_err(|_| bad("not JSON"))?;
        if s.suite != C::NAME {
            return Err(bad("another suite"));
        }
        if !(2..=s.parties).contains(&s.threshold) || s.parties > MAX_PARTIES {
            return Err(bad("threshold"));
        }
        let public =
            PublicKeyPackage::<C>::deserialize(&hex::decode(&s.public).map_err(|_| bad("public"))?)
                .map_err(|_| bad("public"))?;
        let parties = read_members(s.parties, s.members.as_deref(), &public)
            .ok_or_else(|| bad("verifying shares"))?;
        Ok(GroupPublic {
            parties,
            threshold: s.threshold,
            public,
        })
    }
}
