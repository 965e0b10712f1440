//! Messages, parties, sessions, and why a session stops.

use std::collections::BTreeMap;
use std::fmt;
use std::num::NonZeroU16;

use serde::{Deserialize, Serialize};

/// A party of a threshold key: 1 to n. (The coordinator, which holds no
/// share, is sender 0 on the wire.)
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u16", into = "u16")]
pub struct PartyIndex(NonZeroU16);

impl PartyIndex {
    pub fn new(i: u16) -> Option<PartyIndex> {
        NonZeroU16::new(i).map(PartyIndex)
    }

    pub fn get(self) -> u16 {
        self.0.get()
    }

    pub(crate) fn identifier<C: frost_core::Ciphersuite>(
        self,
    ) -> Result<frost_core::Identifier<C>, Abort> {
        frost_core::Identifier::try_from(self.get())
            .map_err(|e| Abort::Internal(format!("identifier {}: {e}", self.get())))
    }
}

impl TryFrom<u16> for PartyIndex {
    type Error = String;
    fn try_from(i: u16) -> Result<Self, String> {
        PartyIndex::new(i).ok_or_else(|| "party index 0".to_owned())
    }
}

impl From<PartyIndex> for u16 {
    fn from(p: PartyIndex) -> u16 {
        p.get()
    }
}

impl fmt::Debug for PartyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "party {}", self.get())
    }
}

impl fmt::Display for PartyIndex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "party {}", self.get())
    }
}

/// One ceremony or one signing: 32 random bytes chosen by whoever starts
/// it. Messages carry it; a message of another session is refused, so a
/// message cannot be replayed into a later session.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SessionId(pub [u8; 32]);

impl SessionId {
    pub fn random(rng: &mut impl rand_core::CryptoRngCore) -> SessionId {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        SessionId(b)
    }
}

impl TryFrom<String> for SessionId {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        let b = hex::decode(&s).map_err(|_| "session id: not hex".to_owned())?;
        b.try_into()
            .map(SessionId)
            .map_err(|_| "session id: not 32 bytes".to_owned())
    }
}

impl From<SessionId> for String {
    fn from(s: SessionId) -> String {
        hex::encode(s.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "session {}", hex::encode(&self.0[..8]))
    }
}

/// Which step of which protocol a message belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Round {
    /// DKG round 1: commitments and proof of knowledge, to everyone.
    Dkg1,
    /// DKG round 2: a secret share, to one party (with the echo of round 1).
    Dkg2,
    /// Signing round 1: a signer's nonce commitments, to the coordinator.
    Commit,
    /// The coordinator's signing package, to each chosen signer.
    Package,
    /// Signing round 2: a signer's signature share, to the coordinator.
    Share,
    /// A CGGMP24 message (the protocol numbers its own rounds).
    Mpc,
    /// Share refresh round 1: commitments to a sharing of zero, to everyone.
    Refresh1,
    /// Share refresh round 2: a share of zero, to one party (with the echo).
    Refresh2,
}

/// A protocol message. The transport authenticates who sent it (and
/// encrypts point-to-point ones); the envelope binds it to its suite,
/// session, round, sender and recipient, all checked on receipt.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub suite: String,
    pub session: SessionId,
    pub round: Round,
    /// The sending party; 0 for the coordinator.
    pub from: u16,
    /// The receiving party, for point-to-point messages; 0 for the
    /// coordinator; `None` for a broadcast.
    pub to: Option<u16>,
    /// The protocol's own encoding, hex.
    pub body: String,
    /// DKG round 2: the sender's view of every round-1 message (party →
    /// SHA-256 of its body), so that a party who sent different round-1
    /// messages to different peers is caught before any share is kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<BTreeMap<u16, String>>,
}

/// A DKG round-2 body is a secret share: never printed.
impl fmt::Debug for Envelope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = if matches!(self.round, Round::Dkg2 | Round::Refresh2 | Round::Mpc) {
            "<secret share>".to_owned()
        } else {
            format!("{} hex digits", self.body.len())
        };
        f.debug_struct("Envelope")
            .field("suite", &self.suite)
            .field("session", &self.session)
            .field("round", &self.round)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("body", &body)
            .finish_non_exhaustive()
    }
}

impl Envelope {
    pub fn to_bytes(&self) -> Vec<u8> {
        // A struct of strings and integers always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a message that `from` (as the transport authenticated it)
    /// sent. Anything that does not parse is that sender's fault.
    pub fn from_bytes(from: u16, bytes: &[u8]) -> Result<Envelope, Abort> {
        let e: Envelope = serde_json::from_slice(bytes).map_err(|e| Abort::Malformed {
            from,
            what: format!("envelope: {e}"),
        })?;
        if e.from != from {
            return Err(Abort::Malformed {
                from,
                what: format!("claims to come from {}", e.from),
            });
        }
        Ok(e)
    }

    pub(crate) fn new(
        suite: &str,
        session: SessionId,
        round: Round,
        from: u16,
        to: Option<u16>,
        body: &[u8],
    ) -> Envelope {
        Envelope {
            suite: suite.to_owned(),
            session,
            round,
            from,
            to,
            body: hex::encode(body),
            echo: None,
        }
    }

    /// Checks the binding (suite, session, round, recipient) and returns
    /// the body.
    pub(crate) fn open(
        &self,
        suite: &str,
        session: SessionId,
        round: Round,
        me: u16,
        broadcast: bool,
    ) -> Result<Vec<u8>, Abort> {
        let from = self.from;
        if self.suite != suite {
            return Err(Abort::Malformed {
                from,
                what: format!("suite {:?}, this session runs {suite}", self.suite),
            });
        }
        if self.session != session {
            return Err(Abort::WrongSession { from });
        }
        if self.round != round {
            return Err(Abort::OutOfOrder {
                from,
                expected: round,
                got: self.round,
            });
        }
        let to_ok = match (broadcast, self.to) {
            (true, None) => true,
            (false, Some(t)) => t == me,
            _ => false,
        };
        if !to_ok {
            return Err(Abort::Malformed {
                from,
                what: format!("addressed to {:?}, not to {me}", self.to),
            });
        }
        hex::decode(&self.body).map_err(|_| Abort::Malformed {
            from,
            what: "body is not hex".into(),
        })
    }
}

/// Why a session stopped. Nothing of an aborted session is kept; a retry
/// is a new session with fresh nonces.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Abort {
    #[error("{} sent a malformed message: {what}", sender(*from))]
    Malformed { from: u16, what: String },
    #[error("{} sent a message of another session", sender(*from))]
    WrongSession { from: u16 },
    #[error("{} sent a {got:?} message where {expected:?} was due", sender(*from))]
    OutOfOrder {
        from: u16,
        expected: Round,
        got: Round,
    },
    #[error("message from {}, which is not a party of this session", sender(*from))]
    NotAParty { from: u16 },
    #[error(
        "a message said to be from {} is not signed by it (altered in transit, \
         or not meant for this node)",
        sender(*from)
    )]
    Unauthenticated { from: u16 },
    #[error("{} sent the same round twice", sender(*from))]
    Duplicate { from: u16 },
    #[error("no message from {parties:?}")]
    Missing { parties: Vec<PartyIndex> },
    #[error(
        "{reported_by} saw another round-one message from {sender} than this party did: \
         {sender} sent different ones to different parties, or {reported_by} lies about it"
    )]
    Equivocation {
        sender: PartyIndex,
        reported_by: PartyIndex,
    },
    #[error("{culprit}'s proof of knowledge does not verify")]
    InvalidProof { culprit: PartyIndex },
    #[error("the secret share from {culprit} does not match its commitments")]
    InvalidSecretShare { culprit: PartyIndex },
    #[error("signature shares that do not verify: {culprits:?}")]
    InvalidShares { culprits: Vec<PartyIndex> },
    #[error("signing package refused: {0}")]
    PackageRefused(String),
    #[error("refused by this signer's own policy: {0}")]
    Policy(String),
    #[error("nonce already used: {0}")]
    NonceReused(String),
    #[error("bad parameters: {0}")]
    Parameters(String),
    #[error("nonce journal: {0}")]
    Journal(String),
    #[error("the protocol aborted: {0}")]
    Protocol(String),
    /// The protocol aborted and named who broke it (a proof that failed:
    /// a Paillier modulus with small factors, a bad range proof).
    #[error("the protocol aborted, blaming {culprits:?}: {why}")]
    Blamed {
        culprits: Vec<PartyIndex>,
        why: String,
    },
    #[error("internal: {0}")]
    Internal(String),
}

fn sender(from: u16) -> String {
    match PartyIndex::new(from) {
        Some(p) => p.to_string(),
        None => "the coordinator".into(),
    }
}

impl Abort {
    /// The parties this abort blames: who sent what broke the session.
    /// Empty when no one can be blamed for certain: a party that is down,
    /// a refused package, a local failure — and what a relay can do with
    /// a party's genuine, signed messages (replay one into another session
    /// or round, or deliver it twice), or an echo that disagrees (either
    /// the sender equivocated or the reporter lies). The coordinator is
    /// never in the list.
    pub fn culprits(&self) -> Vec<PartyIndex> {
        match self {
            Abort::Malformed { from, .. } => PartyIndex::new(*from).into_iter().collect(),
            Abort::InvalidProof { culprit } | Abort::InvalidSecretShare { culprit } => {
                vec![*culprit]
            }
            Abort::InvalidShares { culprits } | Abort::Blamed { culprits, .. } => culprits.clone(),
            Abort::NotAParty { .. }
            | Abort::WrongSession { .. }
            | Abort::OutOfOrder { .. }
            | Abort::Duplicate { .. }
            | Abort::Equivocation { .. }
            | Abort::Unauthenticated { .. }
            | Abort::Missing { .. }
            | Abort::PackageRefused(_)
            | Abort::Policy(_)
            | Abort::NonceReused(_)
            | Abort::Parameters(_)
            | Abort::Journal(_)
            | Abort::Protocol(_)
            | Abort::Internal(_) => Vec::new(),
        }
    }
}

/// Collects one message per expected sender for a round: refuses
/// strangers, the recipient itself and duplicates; reports who is missing.
pub(crate) fn collect(
    expected: &[PartyIndex],
    me: Option<PartyIndex>,
    messages: &[Envelope],
) -> Result<BTreeMap<PartyIndex, Envelope>, Abort> {
    let mut got = BTreeMap::new();
    for m in messages {
        let Some(p) = PartyIndex::new(m.from).filter(|p| expected.contains(p) && Some(*p) != me)
        else {
            return Err(Abort::NotAParty { from: m.from });
        };
        if got.insert(p, m.clone()).is_some() {
            return Err(Abort::Duplicate { from: m.from });
        }
    }
    let missing: Vec<PartyIndex> = expected
        .iter()
        .filter(|p| Some(**p) != me && !got.contains_key(p))
        .copied()
        .collect();
    if !missing.is_empty() {
        return Err(Abort::Missing { parties: missing });
    }
    Ok(got)
}

/// Maps a FROST error to an abort, naming culprits by party.
pub(crate) fn from_frost<C: frost_core::Ciphersuite>(
    e: frost_core::Error<C>,
    parties: &[PartyIndex],
) -> Abort {
    let name = |id: &frost_core::Identifier<C>| {
        parties
            .iter()
            .copied()
            .find(|p| p.identifier::<C>().ok().as_ref() == Some(id))
    };
    match &e {
        frost_core::Error::InvalidProofOfKnowledge { culprit } => match name(culprit) {
            Some(p) => Abort::InvalidProof { culprit: p },
            None => Abort::Internal(e.to_string()),
        },
        frost_core::Error::InvalidSecretShare { culprit: Some(c) } => match name(c) {
            Some(p) => Abort::InvalidSecretShare { culprit: p },
            None => Abort::Internal(e.to_string()),
        },
        frost_core::Error::InvalidSignatureShare { culprits } => Abort::InvalidShares {
            culprits: culprits.iter().filter_map(name).collect(),
        },
        _ => Abort::Internal(e.to_string()),
    }
}
