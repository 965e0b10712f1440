//! FROST signing with a coordinator: the signers' side and the
//! coordinator's.

use std::collections::BTreeMap;
use std::fmt;

use frost_core::round1::{SigningCommitments, SigningNonces};
use frost_core::round2::SignatureShare;
use frost_core::{Identifier, SigningPackage};
use sha2::{Digest, Sha256};

use crate::Suite;
use crate::dkg_impl::{GroupPublic, KeyShare};
use crate::envelope::{Abort, Envelope, PartyIndex, Round, SessionId, collect, from_frost};
use crate::journal::{JournalError, NonceJournal};

/// The coordinator's sender number on the wire.
const COORDINATOR: u16 = 0;

/// A signer's nonces for one signing session, kept in memory only and
/// consumed by [`sign`]: they are never written anywhere, so no restore
/// can bring them back, and the journal refuses their commitment twice.
pub struct PendingNonce<C: Suite> {
    session: SessionId,
    nonces: SigningNonces<C>,
    commitments: SigningCommitments<C>,
    id: [u8; 32],
}

impl<C: Suite> fmt::Debug for PendingNonce<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PendingNonce")
            .field("session", &self.session)
            .field("id", &hex::encode(self.id))
            .finish_non_exhaustive()
    }
}

impl<C: Suite> PendingNonce<C> {
    /// What the journal records when the nonce is used: a hash of the
    /// suite, session and public commitments.
    pub fn id(&self) -> [u8; 32] {
        self.id
    }
}

/// Round 1: fresh nonces for `session`; the commitments go to the
/// coordinator.
pub fn commit<C: Suite>(
    share: &KeyShare<C>,
    session: SessionId,
    rng: &mut impl rand_core::CryptoRngCore,
) -> Result<(PendingNonce<C>, Envelope), Abort> {
    let (nonces, commitments) = frost_core::round1::commit(share.key.signing_share(), rng);
    let body = commitments
        .serialize()
        .map_err(|e| Abort::Internal(e.to_string()))?;
    let mut h = Sha256::new();
    h.update(C::NAME.as_bytes());
    h.update(session.0);
    h.update(share.me.get().to_be_bytes());
    h.update(&body);
    let id: [u8; 32] = h.finalize().into();
    let msg = Envelope::new(
        C::NAME,
        session,
        Round::Commit,
        share.me.get(),
        Some(COORDINATOR),
        &body,
    );
    Ok((
        PendingNonce {
            session,
            nonces,
            commitments,
            id,
        },
        msg,
    ))
}

/// Round 2: this signer's share of the signature over `approved` — the
/// message the signer vouches for (meant to be a sighash it computed from
/// the transaction it checked; see ADR 0013 on co-signer checks). Refuses
/// a package for another message, without this signer's own commitment,
/// with fewer than the threshold or with strangers. The nonce is recorded
/// as used in `journal` (durably) before the share is computed.
pub fn sign<C: Suite>(
    share: &KeyShare<C>,
    pending: PendingNonce<C>,
    package: &Envelope,
    approved: &[u8],
    journal: &mut NonceJournal,
) -> Result<Envelope, Abort> {
    if package.from != COORDINATOR {
        return Err(Abort::NotAParty { from: package.from });
    }
    let body = package.open(
        C::NAME,
        pending.session,
        Round::Package,
        share.me.get(),
        false,
    )?;
    let refused = |why: &str| Abort::PackageRefused(why.to_owned());
    let sp = SigningPackage::<C>::deserialize(&body).map_err(|e| Abort::Malformed {
        from: COORDINATOR,
        what: format!("signing package: {e}"),
    })?;
    if sp.message().as_slice() != approved {
        return Err(refused("its message is not the one this signer checked"));
    }
    if sp.signing_commitment(&share.me.identifier::<C>()?) != Some(pending.commitments) {
        return Err(refused("it does not carry this signer's commitment"));
    }
    let known: Vec<Identifier<C>> = share
        .parties
        .iter()
        .map(|p| p.identifier::<C>())
        .collect::<Result<_, _>>()?;
    if sp
        .signing_commitments()
        .keys()
        .any(|id| !known.contains(id))
    {
        return Err(refused("it names a signer that is not a party of this key"));
    }
    if sp.signing_commitments().len() < usize::from(share.threshold) {
        return Err(refused("fewer signers than the threshold"));
    }
    journal.consume(&pending.id).map_err(|e| match e {
        JournalError::Used => Abort::NonceReused(hex::encode(pending.id)),
        e => Abort::Journal(e.to_string()),
    })?;
    let s = frost_core::round2::sign(&sp, &pending.nonces, &share.key)
        .map_err(|e| from_frost(e, &share.parties))?;
    drop(pending);
    Ok(Envelope::new(
        C::NAME,
        package.session,
        Round::Share,
        share.me.get(),
        Some(COORDINATOR),
        &s.serialize(),
    ))
}

/// The coordinator of one signing session: it holds no share, gathers
/// commitments, hands out one signing package, and checks and aggregates
/// the shares.
pub struct Coordinator<C: Suite> {
    session: SessionId,
    group: GroupPublic<C>,
    message: Vec<u8>,
    package: Option<(SigningPackage<C>, Vec<PartyIndex>)>,
}

impl<C: Suite> fmt::Debug for Coordinator<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Coordinator")
            .field("session", &self.session)
            .field("group", &self.group)
            .field("signers", &self.package.as_ref().map(|p| p.1.clone()))
            .finish_non_exhaustive()
    }
}

impl<C: Suite> Coordinator<C> {
    pub fn new(session: SessionId, group: GroupPublic<C>, message: &[u8]) -> Coordinator<C> {
        Coordinator {
            session,
            group,
            message: message.to_vec(),
            package: None,
        }
    }

    /// Checks one signer's commitments as they arrive (binding to this
    /// session and round, encoding), so that a bad one leaves out only its
    /// sender.
    pub fn check_commitment(&self, m: &Envelope) -> Result<(), Abort> {
        let body = m.open(C::NAME, self.session, Round::Commit, COORDINATOR, false)?;
        SigningCommitments::<C>::deserialize(&body).map_err(|e| Abort::Malformed {
            from: m.from,
            what: format!("commitments: {e}"),
        })?;
        Ok(())
    }

    /// Checks one signer's share as it arrives (binding, encoding); its
    /// verification against the signer's verifying share is
    /// [`Coordinator::aggregate`]'s.
    pub fn check_share(&self, m: &Envelope) -> Result<(), Abort> {
        let body = m.open(C::NAME, self.session, Round::Share, COORDINATOR, false)?;
        SignatureShare::<C>::deserialize(&body).map_err(|e| Abort::Malformed {
            from: m.from,
            what: format!("signature share: {e}"),
        })?;
        Ok(())
    }

    /// Takes the commitments that arrived (at least the threshold; a party
    /// that is down simply sends none) and returns the signing package for
    /// each of their senders.
    pub fn package(&mut self, commitments: &[Envelope]) -> Result<Vec<Envelope>, Abort> {
        if self.package.is_some() {
            return Err(Abort::Internal("this session's package is made".into()));
        }
        let mut map = BTreeMap::new();
        let mut signers = Vec::new();
        for m in commitments {
            let Some(p) = PartyIndex::new(m.from).filter(|p| self.group.parties.contains(p)) else {
                return Err(Abort::NotAParty { from: m.from });
            };
            if signers.contains(&p) {
                return Err(Abort::Duplicate { from: m.from });
            }
            let body = m.open(C::NAME, self.session, Round::Commit, COORDINATOR, false)?;
            let c = SigningCommitments::<C>::deserialize(&body).map_err(|e| Abort::Malformed {
                from: m.from,
                what: format!("commitments: {e}"),
            })?;
            map.insert(p.identifier::<C>()?, c);
            signers.push(p);
        }
        if signers.len() < usize::from(self.group.threshold) {
            let missing = self
                .group
                .parties
                .iter()
                .filter(|p| !signers.contains(p))
                .copied()
                .collect();
            return Err(Abort::Missing { parties: missing });
        }
        signers.sort();
        let sp = SigningPackage::new(map, &self.message);
        let body = sp.serialize().map_err(|e| Abort::Internal(e.to_string()))?;
        let out = signers
            .iter()
            .map(|p| {
                Envelope::new(
                    C::NAME,
                    self.session,
                    Round::Package,
                    COORDINATOR,
                    Some(p.get()),
                    &body,
                )
            })
            .collect();
        self.package = Some((sp, signers));
        Ok(out)
    }

    /// Checks every share against its signer's verifying share (naming
    /// those that fail) and returns the signature, verified against the
    /// group key.
    pub fn aggregate(&self, shares: &[Envelope]) -> Result<[u8; 64], Abort> {
        let Some((sp, signers)) = &self.package else {
            return Err(Abort::Internal("no package was made".into()));
        };
        let got = collect(signers, None, shares)?;
        let mut map = BTreeMap::new();
        for (p, m) in &got {
            let body = m.open(C::NAME, self.session, Round::Share, COORDINATOR, false)?;
            let s = SignatureShare::<C>::deserialize(&body).map_err(|e| Abort::Malformed {
                from: p.get(),
                what: format!("signature share: {e}"),
            })?;
            map.insert(p.identifier::<C>()?, s);
        }
        let sig = frost_core::aggregate(sp, &map, &self.group.public)
            .map_err(|e| from_frost(e, &self.group.parties))?;
        self.group
            .public
            .verifying_key()
            .verify(&self.message, &sig)
            .map_err(|e| Abort::Internal(format!("aggregate does not verify: {e}")))?;
        C::signature_bytes(&sig)
    }
}
