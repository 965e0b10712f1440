//! The coordinator's side of threshold ECDSA: it relays each protocol's
//! messages between the nodes until all finish, keeps a pool of
//! presignatures per key, and combines partial signatures, checking each.

use std::collections::BTreeMap;
use std::time::Duration;

use super::{Cluster, ClusterError, SignerEndpoint};
use crate::cosign::Subject;
use crate::ecdsa::{self, EcdsaSignature, PresignPublic};
use crate::envelope::{Abort, SessionId};
use crate::os_rng;
use crate::wire::{Relayed, Request, Response, StepOutput};

/// What a node answers for a presignature it does not have (it restarted,
/// or the presignature expired): the coordinator drops it and takes another.
pub(crate) const NO_PRESIGNATURE: &str = "no such presignature here";

/// The longest a step of an ECDSA ceremony may take on a node (the
/// auxiliary-information rounds take seconds of CPU each, more on a busy
/// machine).
const CEREMONY_STEP: Duration = Duration::from_secs(600);

/// The most rounds of relayed messages one protocol run may take.
const MAX_ROUNDS: u32 = 32;

/// A presignature the signers `parties` hold for one key, made in
/// `session`, with its public part (to check their partial signatures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pooled {
    pub session: SessionId,
    pub parties: Vec<u16>,
    pub public: PresignPublic,
}

impl Cluster {
    /// The auxiliary-information ceremony among all the signers (once per
    /// group of signers, before their first ECDSA key).
    pub async fn ecdsa_aux(&self) -> Result<(), ClusterError> {
        let session = SessionId::random(&mut os_rng());
        let all = self.signers.clone();
        let out = self
            .run_protocol(&all, &|_| Request::EcdsaAux { session }, CEREMONY_STEP)
            .await?;
        for (index, o) in out {
            if !matches!(o, StepOutput::Aux) {
                return Err(unexpected(index, "not auxiliary information"));
            }
        }
        Ok(())
    }

    /// A threshold ECDSA key made by all the signers for `wallet`; its
    /// public key (SEC1 compressed), which every signer must report alike.
    pub async fn ecdsa_generate(
        &self,
        key_id: &str,
        wallet: &str,
        threshold: u16,
    ) -> Result<[u8; 33], ClusterError> {
        let session = SessionId::random(&mut os_rng());
        let all = self.signers.clone();
        let out = self
            .run_protocol(
                &all,
                &|_| Request::EcdsaKeygen {
                    key_id: key_id.to_owned(),
                    wallet: wallet.to_owned(),
                    session,
                    threshold,
                },
                CEREMONY_STEP,
            )
            .await?;
        let mut key: Option<[u8; 33]> = None;
        for (index, o) in out {
            let StepOutput::Key { public_key, .. } = o else {
                return Err(unexpected(index, "no key"));
            };
            let k: [u8; 33] = hex::decode(&public_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| unexpected(index, "public key"))?;
            match key {
                None => key = Some(k),
                Some(first) if first == k => {}
                Some(_) => return Err(ClusterError::Disagree),
            }
        }
        key.ok_or(ClusterError::TooFew {
            got: 0,
            needed: self.signers.len(),
        })
    }

    /// A presignature for `key_id` by exactly `parties` (the key's
    /// threshold of them), added to the pool.
    pub async fn presign(&self, key_id: &str, parties: &[u16]) -> Result<Pooled, ClusterError> {
        let p = self.presign_unpooled(key_id, parties).await?;
        self.pool_lock()
            .entry(key_id.to_owned())
            .or_default()
            .push_back(p.clone());
        Ok(p)
    }

    async fn presign_unpooled(
        &self,
        key_id: &str,
        parties: &[u16],
    ) -> Result<Pooled, ClusterError> {
        let session = SessionId::random(&mut os_rng());
        let mut parties = parties.to_vec();
        parties.sort_unstable();
        parties.dedup();
        let nodes: Vec<SignerEndpoint> = self
            .signers
            .iter()
            .filter(|s| parties.contains(&s.index))
            .cloned()
            .collect();
        if nodes.len() != parties.len() {
            return Err(ClusterError::Abort(Abort::Parameters(
                "a presignature's parties must be signers of this cluster".into(),
            )));
        }
        let out = self
            .run_protocol(
                &nodes,
                &|_| Request::EcdsaPresign {
                    key_id: key_id.to_owned(),
                    session,
                    parties: parties.clone(),
                },
                self.links.timeout,
            )
            .await?;
        let mut public: Option<PresignPublic> = None;
        for (index, o) in out {
            let StepOutput::Presignature { public: p, .. } = o else {
                return Err(unexpected(index, "no presignature"));
            };
            match &public {
                None => public = Some(p),
                Some(first) if *first == p => {}
                Some(_) => return Err(ClusterError::Disagree),
            }
        }
        let public = public.ok_or(ClusterError::TooFew {
            got: 0,
            needed: parties.len(),
        })?;
        Ok(Pooled {
            session,
            parties,
            public,
        })
    }

    /// Presignatures ready, per key.
    pub fn pool_sizes(&self) -> Vec<(String, usize)> {
        let mut sizes: Vec<_> = self
            .pool_lock()
            .iter()
            .map(|(k, q)| (k.clone(), q.len()))
            .collect();
        sizes.sort();
        sizes
    }

    /// Presignatures ready for `key_id`.
    pub fn pooled(&self, key_id: &str) -> usize {
        self.pool_lock().get(key_id).map_or(0, |q| q.len())
    }

    /// Makes presignatures for `key_id` (by the first `threshold` signers
    /// that answer) until `target` are ready; how many it made.
    pub async fn refill(
        &self,
        key_id: &str,
        threshold: u16,
        target: usize,
    ) -> Result<usize, ClusterError> {
        let mut made = 0;
        let mut excluded = Vec::new();
        while self.pooled(key_id) < target {
            let parties = self.quorum(threshold, &excluded)?;
            match self.presign(key_id, &parties).await {
                Ok(_) => made += 1,
                Err(e) => match down(&e) {
                    Some(index) => excluded.push(index),
                    None => return Err(e),
                },
            }
        }
        Ok(made)
    }

    /// The first `threshold` signers not `excluded`.
    fn quorum(&self, threshold: u16, excluded: &[u16]) -> Result<Vec<u16>, ClusterError> {
        let parties: Vec<u16> = self
            .signers
            .iter()
            .map(|s| s.index)
            .filter(|i| !excluded.contains(i))
            .take(usize::from(threshold))
            .collect();
        if parties.len() < usize::from(threshold) {
            return Err(ClusterError::TooFew {
                got: parties.len(),
                needed: usize::from(threshold),
            });
        }
        Ok(parties)
    }

    fn take_pooled(&self, key_id: &str, excluded: &[u16]) -> Option<Pooled> {
        let mut pool = self.pool_lock();
        let q = pool.get_mut(key_id)?;
        let at = q
            .iter()
            .position(|p| !p.parties.iter().any(|i| excluded.contains(i)))?;
        q.remove(at)
    }

    fn pool_lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<String, std::collections::VecDeque<Pooled>>,
    > {
        self.pool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An ECDSA signature under `key_id` (public key `public_key`, SEC1
    /// compressed; `threshold` signers) for the Ethereum transaction in
    /// `subject`, which each signer checks and hashes itself. A pooled
    /// presignature is used if one is ready, otherwise one is made now. A
    /// signer down or timing out is left out and a new presignature used;
    /// partial signatures that do not verify are blamed on their signer.
    /// Never is one presignature given two messages: each is taken out of
    /// the pool before it is used, and its signers journal it.
    pub async fn sign_ecdsa(
        &self,
        key_id: &str,
        public_key: &[u8; 33],
        threshold: u16,
        subject: &Subject,
    ) -> Result<EcdsaSignature, ClusterError> {
        if let Some((party, count)) = self.ledger.as_ref().and_then(|l| l.frozen(key_id)) {
            return Err(ClusterError::KeyFrozen {
                key_id: key_id.to_owned(),
                party,
                count,
            });
        }
        let Subject::Ethereum { tx, .. } = subject else {
            return Err(ClusterError::Abort(Abort::Parameters(
                "ECDSA keys sign Ethereum transactions".into(),
            )));
        };
        let preimage = tx.plan()?.signing_payload();
        let mut excluded: Vec<u16> = Vec::new();
        // Presignatures a restarted node forgot are dropped one by one; the
        // pool is finite, and each other failure leaves a signer out.
        let mut stale = 0usize;
        loop {
            let p = match self.take_pooled(key_id, &excluded) {
                Some(p) => p,
                None => {
                    let parties = self.quorum(threshold, &excluded)?;
                    match self.presign_unpooled(key_id, &parties).await {
                        Ok(p) => p,
                        Err(e) => match down(&e) {
                            Some(index) => {
                                tracing::warn!(signer = index, error = %e, "presigning without it");
                                excluded.push(index);
                                continue;
                            }
                            None => return Err(e),
                        },
                    }
                }
            };
            let by_index: BTreeMap<u16, &SignerEndpoint> =
                self.signers.iter().map(|s| (s.index, s)).collect();
            let requests: Vec<(SignerEndpoint, Request)> = p
                .parties
                .iter()
                .filter_map(|i| by_index.get(i))
                .map(|s| {
                    (
                        (*s).clone(),
                        Request::EcdsaSign {
                            key_id: key_id.to_owned(),
                            presignature: p.session,
                            subject: subject.clone(),
                        },
                    )
                })
                .collect();
            let mut sigmas = BTreeMap::new();
            let mut retry = false;
            let mut refused = None;
            for (index, r) in self.fan_out(requests).await {
                match r {
                    Ok(Response::Partial { sigma }) => {
                        sigmas.insert(index, sigma);
                    }
                    Ok(_) => return Err(unexpected(index, "no partial signature")),
                    Err(ClusterError::Refused { reason, .. })
                        if reason.contains(NO_PRESIGNATURE) && stale < 64 =>
                    {
                        stale += 1;
                        retry = true;
                    }
                    Err(e) => match down(&e) {
                        Some(index) => {
                            tracing::warn!(signer = index, error = %e, "signing without it");
                            excluded.push(index);
                            retry = true;
                        }
                        None => {
                            refused.get_or_insert(e);
                        }
                    },
                }
            }
            if let Some(e) = refused {
                // A refusal (the nodes' own checks) is final for this
                // request. Nodes that refused before journaling keep the
                // presignature unused; when none answered a partial
                // signature it goes back to the pool.
                if sigmas.is_empty() && !retry {
                    self.pool_lock()
                        .entry(key_id.to_owned())
                        .or_default()
                        .push_front(p);
                }
                return Err(e);
            }
            if retry {
                continue;
            }
            let partials: Vec<String> = p
                .parties
                .iter()
                .map(|i| sigmas.get(i).cloned().unwrap_or_default())
                .collect();
            match ecdsa::combine(&p.public, &p.parties, &partials, &preimage, public_key) {
                Ok(sig) => return Ok(sig),
                Err(a) => {
                    let e = ClusterError::Abort(a);
                    let culprits = e.culprits();
                    let parties: Vec<crate::PartyIndex> = p
                        .parties
                        .iter()
                        .filter_map(|i| crate::PartyIndex::new(*i))
                        .collect();
                    if culprits.is_empty() || self.blame(key_id, &parties, &e)? {
                        return Err(self.ledger.as_ref().and_then(|l| l.frozen(key_id)).map_or(
                            e,
                            |(party, count)| ClusterError::KeyFrozen {
                                key_id: key_id.to_owned(),
                                party,
                                count,
                            },
                        ));
                    }
                    tracing::warn!(
                        key = key_id,
                        ?culprits,
                        "partial signatures that do not verify: signing without them"
                    );
                    excluded.extend(culprits);
                }
            }
        }
    }

    /// Runs one protocol among `nodes`: starts it on each, then relays each
    /// node's messages to their recipients until every node has finished.
    /// Each node speaks only for itself, to parties of the protocol.
    async fn run_protocol(
        &self,
        nodes: &[SignerEndpoint],
        start: &(dyn Fn(&SignerEndpoint) -> Request + Sync),
        timeout: Duration,
    ) -> Result<BTreeMap<u16, StepOutput>, ClusterError> {
        let members: Vec<u16> = nodes.iter().map(|s| s.index).collect();
        let Some(first) = nodes.first() else {
            return Err(ClusterError::TooFew { got: 0, needed: 1 });
        };
        let Some(session) = (match start(first) {
            Request::EcdsaAux { session }
            | Request::EcdsaKeygen { session, .. }
            | Request::EcdsaPresign { session, .. } => Some(session),
            _ => None,
        }) else {
            return Err(ClusterError::Abort(Abort::Internal(
                "not an ECDSA protocol".into(),
            )));
        };
        let mut answers = self
            .fan_out_within(
                nodes.iter().map(|s| (s.clone(), start(s))).collect(),
                timeout,
            )
            .await;
        let mut outputs: BTreeMap<u16, StepOutput> = BTreeMap::new();
        // Each protocol has a handful of rounds: nodes that keep addressing
        // each other beyond this are stopped.
        let mut rounds = 0u32;
        loop {
            rounds += 1;
            if rounds > MAX_ROUNDS {
                return Err(ClusterError::Abort(Abort::Protocol(format!(
                    "more than {MAX_ROUNDS} rounds: stopped"
                ))));
            }
            let mut inbox: BTreeMap<u16, Vec<Relayed>> = BTreeMap::new();
            for (index, r) in answers {
                let Response::Step { messages, output } = r? else {
                    return Err(unexpected(index, "not a protocol step"));
                };
                for m in messages {
                    if m.from != index {
                        return Err(unexpected(index, "a message from another party"));
                    }
                    match m.to {
                        None => {
                            for other in members.iter().filter(|i| **i != index) {
                                inbox.entry(*other).or_default().push(m.clone());
                            }
                        }
                        Some(t) if t != index && members.contains(&t) => {
                            inbox.entry(t).or_default().push(m);
                        }
                        Some(_) => return Err(unexpected(index, "a message to no party")),
                    }
                }
                if let Some(o) = output {
                    outputs.insert(index, o);
                }
            }
            if outputs.len() == nodes.len() {
                return Ok(outputs);
            }
            let next: Vec<(SignerEndpoint, Request)> = nodes
                .iter()
                .filter(|s| !outputs.contains_key(&s.index))
                .filter_map(|s| {
                    inbox
                        .remove(&s.index)
                        .map(|messages| (s.clone(), Request::Step { session, messages }))
                })
                .collect();
            if next.is_empty() {
                return Err(ClusterError::Abort(Abort::Protocol(
                    "the protocol stalled: parties wait with no messages to deliver".into(),
                )));
            }
            answers = self.fan_out_within(next, timeout).await;
        }
    }
}

fn unexpected(index: u16, what: &str) -> ClusterError {
    ClusterError::Unexpected {
        index,
        what: what.to_owned(),
    }
}

/// The signer an error shows to be down (unreachable or too slow): it is
/// left out of the next attempt. A refusal is not that: it is final.
fn down(e: &ClusterError) -> Option<u16> {
    match e {
        ClusterError::Unreachable { index, .. }
        | ClusterError::Timeout { index, .. }
        | ClusterError::Incompatible { index, .. } => Some(*index),
        _ => None,
    }
}
