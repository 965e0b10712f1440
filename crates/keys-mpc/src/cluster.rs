//! The coordinator's side, in the server: it reaches pinned signer nodes
//! over mutually authenticated TLS, relays their (signed, encrypted)
//! messages through a ceremony, and drives signing sessions, checking
//! every share itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::cosign::Subject;
use crate::dkg_impl::GroupPublic;
use crate::envelope::{Abort, SessionId};
use crate::net::{self, Fingerprint, NetError, TlsIdentity};
use crate::sign_impl::Coordinator;
use crate::wire::{Relayed, Request, Response};
use crate::{Suite, os_rng};

mod ecdsa_coord;
mod handshake;
use handshake::{announce, exchange, hello};
mod health;
pub(crate) use ecdsa_coord::NO_PRESIGNATURE;
pub use ecdsa_coord::Pooled;

/// One signer node as the server pins it.
#[derive(Debug, Clone)]
pub struct SignerEndpoint {
    pub index: u16,
    /// `host:port`.
    pub addr: String,
    pub fingerprint: Fingerprint,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClusterError {
    #[error("signer {index} cannot be reached: {source}")]
    Unreachable { index: u16, source: NetError },
    #[error("signer {index} did not answer within {0:?}", .timeout)]
    Timeout { index: u16, timeout: Duration },
    #[error("signer {index} refused: {reason}")]
    Refused {
        index: u16,
        reason: String,
        culprits: Vec<u16>,
    },
    #[error("signer {index} answered out of protocol: {what}")]
    Unexpected { index: u16, what: String },
    #[error("only {got} of {needed} signers answered")]
    TooFew { got: usize, needed: usize },
    #[error("the signers disagree on the new key")]
    Disagree,
    #[error(transparent)]
    Abort(#[from] Abort),
    #[error(
        "key {key_id} is frozen: {count} aborted sessions were blamed on party {party} \
         (an operator must look, then unfreeze it)"
    )]
    KeyFrozen {
        key_id: String,
        party: u16,
        count: u32,
    },
    #[error("the blame ledger cannot be written: {0}")]
    Ledger(String),
    #[error(
        "signer {index} does not speak signer protocol {ours} (this server's): {what}; run the \
         same Strongroom version on the server and its nodes"
    )]
    Incompatible { index: u16, ours: u16, what: String },
}

impl ClusterError {
    /// Parties blamed by this error (by a signer node, or by the
    /// coordinator's own checks of the shares).
    pub fn culprits(&self) -> Vec<u16> {
        match self {
            ClusterError::Refused { culprits, .. } => culprits.clone(),
            ClusterError::Abort(a) => a.culprits().iter().map(|p| p.get()).collect(),
            _ => Vec::new(),
        }
    }
}

/// A key the signers made: its group key and the public package the
/// coordinator keeps to check signature shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKey {
    pub group_key: [u8; 32],
    pub public: Vec<u8>,
}

/// The signer nodes of one deployment, as a server reaches them: one
/// TLS connection kept open per node (requests on it one at a time).
#[derive(Debug)]
pub struct Cluster {
    signers: Vec<SignerEndpoint>,
    links: Arc<Links>,
    ledger: Option<BlameLedger>,
    /// Aborted sessions blamed on a party, since start.
    blamed: std::sync::atomic::AtomicU64,
    /// ECDSA presignatures ready, per key.
    pool: std::sync::Mutex<std::collections::HashMap<String, std::collections::VecDeque<Pooled>>>,
}

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

#[derive(Debug)]
struct Links {
    tls: TlsIdentity,
    timeout: Duration,
    /// The server's epoch, announced first on every connection.
    epoch: std::sync::atomic::AtomicU64,
    /// Each signer's open connection, and the epoch announced on it.
    open: BTreeMap<u16, tokio::sync::Mutex<Option<(Stream, u64)>>>,
    /// Whether each signer answered its last call: 0 not yet called, 1
    /// answered, 2 did not.
    answered: BTreeMap<u16, std::sync::atomic::AtomicU8>,
    /// The signer protocol each spoke at its last hello (0: none yet).
    protocols: BTreeMap<u16, std::sync::atomic::AtomicU16>,
}

impl Cluster {
    pub fn new(tls: TlsIdentity, signers: Vec<SignerEndpoint>, timeout: Duration) -> Cluster {
        let open = signers
            .iter()
            .map(|s| (s.index, tokio::sync::Mutex::new(None)))
            .collect();
        let answered = signers
            .iter()
            .map(|s| (s.index, std::sync::atomic::AtomicU8::new(0)))
            .collect();
        let protocols = signers
            .iter()
            .map(|s| (s.index, std::sync::atomic::AtomicU16::new(0)))
            .collect();
        Cluster {
            signers,
            links: Arc::new(Links {
                tls,
                timeout,
                epoch: std::sync::atomic::AtomicU64::new(0),
                open,
                answered,
                protocols,
            }),
            ledger: None,
            blamed: std::sync::atomic::AtomicU64::new(0),
            pool: std::sync::Mutex::default(),
        }
    }

    /// Counts aborted signing sessions blamed on each party (by the
    /// protocol: bad shares, malformed messages — not a party that is
    /// down or refuses) in `ledger`; a key with `limit` blamed on one
    /// party is frozen until an operator unfreezes it.
    pub fn with_blame_ledger(mut self, ledger: BlameLedger) -> Cluster {
        self.ledger = Some(ledger);
        self
    }

    /// [`Cluster::with_blame_ledger`] on a cluster already made.
    pub fn set_blame_ledger(&mut self, ledger: BlameLedger) {
        self.ledger = Some(ledger);
    }

    pub fn signers(&self) -> &[SignerEndpoint] {
        &self.signers
    }

    /// The server's epoch (the time of its latest restore): announced on
    /// every connection from now on (those open announce it before their
    /// next request). A node that learned a higher one refuses this
    /// cluster's requests.
    pub fn set_epoch(&self, epoch: u64) {
        self.links
            .epoch
            .fetch_max(epoch, std::sync::atomic::Ordering::SeqCst);
    }

    /// Each signer's paid journal (intent digests, hex), or why it could
    /// not be read.
    pub async fn paid_intents(&self) -> BTreeMap<u16, Result<Vec<String>, ClusterError>> {
        let requests = self
            .signers
            .iter()
            .map(|s| (s.clone(), Request::PaidIntents))
            .collect();
        self.fan_out(requests)
            .await
            .into_iter()
            .map(|(i, r)| {
                let r = match r {
                    Ok(Response::PaidIntents { intents }) => Ok(intents),
                    Ok(_) => Err(ClusterError::Unexpected {
                        index: i,
                        what: "no paid intents".into(),
                    }),
                    Err(e) => Err(e),
                };
                (i, r)
            })
            .collect()
    }

    /// Announces the epoch to every signer now; the indices of those that
    /// took it.
    pub async fn announce_epoch(&self) -> Vec<u16> {
        let requests = self
            .signers
            .iter()
            .map(|s| (s.clone(), Request::Info))
            .collect();
        self.fan_out(requests)
            .await
            .into_iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| i)
            .collect()
    }

    /// One request to one signer, on a fresh connection.
    pub async fn call(&self, s: &SignerEndpoint, req: &Request) -> Result<Response, ClusterError> {
        self.links.call(s, req).await
    }

    /// Requests to several signers at once; each answer by signer index.
    async fn fan_out(
        &self,
        requests: Vec<(SignerEndpoint, Request)>,
    ) -> BTreeMap<u16, Result<Response, ClusterError>> {
        self.fan_out_within(requests, self.links.timeout).await
    }

    /// [`Cluster::fan_out`], each call given `timeout`.
    async fn fan_out_within(
        &self,
        requests: Vec<(SignerEndpoint, Request)>,
        timeout: Duration,
    ) -> BTreeMap<u16, Result<Response, ClusterError>> {
        let tasks: Vec<(u16, tokio::task::JoinHandle<_>)> = requests
            .into_iter()
            .map(|(s, req)| {
                let links = self.links.clone();
                (
                    s.index,
                    tokio::spawn(async move { links.call_within(&s, &req, timeout).await }),
                )
            })
            .collect();
        let mut out = BTreeMap::new();
        for (index, t) in tasks {
            let r = t.await.unwrap_or_else(|e| {
                Err(ClusterError::Unexpected {
                    index,
                    what: format!("the call ended abnormally: {e}"),
                })
            });
            out.insert(index, r);
        }
        out
    }

    /// A key-generation ceremony among all the signers (each must take
    /// part): messages relayed as they come, every node checking every
    /// message itself. Returns the group key all of them reported.
    pub async fn generate(
        &self,
        suite: &str,
        key_id: &str,
        wallet: &str,
        threshold: u16,
    ) -> Result<NewKey, ClusterError> {
        let session = SessionId::random(&mut os_rng());
        let start = Request::DkgStart {
            suite: suite.to_owned(),
            key_id: key_id.to_owned(),
            wallet: wallet.to_owned(),
            session,
            threshold,
        };
        self.ceremony(&self.signers, session, start).await
    }

    /// A share refresh of the FROST key `key_id` among the signers
    /// `members` (at least the key's threshold of its parties; a party left
    /// out is removed). Every member keeps its new share staged; returns
    /// the session and the new public package all of them reported — the
    /// caller records it, then [`Cluster::commit_refresh`] swaps the new
    /// shares in. The group key is the same (each node checks).
    pub async fn refresh(
        &self,
        suite: &str,
        key_id: &str,
        members: &[u16],
    ) -> Result<(SessionId, NewKey), ClusterError> {
        let nodes = self.members(members)?;
        let session = SessionId::random(&mut os_rng());
        let start = Request::RefreshStart {
            suite: suite.to_owned(),
            key_id: key_id.to_owned(),
            session,
            parties: members.to_vec(),
        };
        Ok((session, self.ceremony(&nodes, session, start).await?))
    }

    /// Makes refresh `session`'s staged shares the key's shares on every
    /// member; each must answer with the same public package (done again
    /// after a partial failure, it finishes the rest).
    pub async fn commit_refresh(
        &self,
        suite: &str,
        key_id: &str,
        session: SessionId,
        members: &[u16],
    ) -> Result<NewKey, ClusterError> {
        let nodes = self.members(members)?;
        let requests = nodes
            .iter()
            .map(|s| {
                (
                    s.clone(),
                    Request::RefreshCommit {
                        suite: suite.to_owned(),
                        key_id: key_id.to_owned(),
                        session,
                    },
                )
            })
            .collect();
        same_key(self.fan_out(requests).await)
    }

    /// The endpoints of `members`, each a signer of this cluster.
    fn members(&self, members: &[u16]) -> Result<Vec<SignerEndpoint>, ClusterError> {
        members
            .iter()
            .map(|i| {
                self.signers
                    .iter()
                    .find(|s| s.index == *i)
                    .cloned()
                    .ok_or_else(|| {
                        ClusterError::Abort(Abort::Parameters(format!(
                            "{i} is not a signer of this cluster"
                        )))
                    })
            })
            .collect()
    }

    /// The three rounds of a key-generation or refresh ceremony among
    /// `nodes`, started by `start`.
    async fn ceremony(
        &self,
        nodes: &[SignerEndpoint],
        session: SessionId,
        start: Request,
    ) -> Result<NewKey, ClusterError> {
        let all = |req: &dyn Fn(&SignerEndpoint) -> Request| {
            nodes
                .iter()
                .map(|s| (s.clone(), req(s)))
                .collect::<Vec<_>>()
        };
        // Round 1: each node's broadcast.
        let start = self.fan_out(all(&|_| start.clone())).await;
        // Each node speaks for itself only: one broadcast, its own.
        let broadcasts = messages(start, |index, m| {
            m.len() == 1 && m[0].from == index && m[0].to.is_none()
        })?;
        // Round 2: each node takes the others' broadcasts, answers with a
        // message for each other node.
        let round1 = self
            .fan_out(all(&|s| Request::DkgRound1 {
                session,
                messages: broadcasts
                    .iter()
                    .filter(|m| m.from != s.index)
                    .cloned()
                    .collect(),
            }))
            .await;
        // One message from each node to each other node.
        let parties: Vec<u16> = nodes.iter().map(|s| s.index).collect();
        let direct = messages(round1, |index, m| {
            let mut to: Vec<u16> = m.iter().filter_map(|x| x.to).collect();
            to.sort_unstable();
            to.dedup();
            m.len() + 1 == parties.len()
                && to.len() == m.len()
                && m.iter().all(|x| x.from == index)
                && to.iter().all(|t| *t != index && parties.contains(t))
        })?;
        let done = self
            .fan_out(all(&|s| Request::DkgRound2 {
                session,
                messages: direct
                    .iter()
                    .filter(|m| m.to == Some(s.index))
                    .cloned()
                    .collect(),
            }))
            .await;
        same_key(done)
    }

    /// A signature over `message` under the key `key_id`: a session with
    /// `threshold` of the signers that commit (those down, refusing or
    /// answering out of protocol are left out); shares are checked against
    /// each signer's verifying share, the signature against the group key.
    /// A session that fails because of particular signers (a refusal, a
    /// timeout, a share that does not verify) is run again, as a new
    /// session with fresh nonces, without them — as long as enough remain.
    ///
    /// `subject` is what each node checks and derives the message from
    /// (ADR 0013); `message` is what the coordinator derived the same way,
    /// for its package: a node refuses a package for anything else.
    pub async fn sign<C: Suite>(
        &self,
        key_id: &str,
        group: &GroupPublic<C>,
        message: &[u8],
        subject: &Subject,
    ) -> Result<[u8; 64], ClusterError> {
        if let Some((party, count)) = self.ledger.as_ref().and_then(|l| l.frozen(key_id)) {
            return Err(ClusterError::KeyFrozen {
                key_id: key_id.to_owned(),
                party,
                count,
            });
        }
        let mut excluded = Vec::new();
        loop {
            match self
                .sign_once(key_id, group, message, subject, &excluded)
                .await
            {
                Ok(sig) => return Ok(sig),
                Err((e, _)) if self.blame(key_id, group.parties(), &e)? => {
                    return Err(self.ledger.as_ref().and_then(|l| l.frozen(key_id)).map_or(
                        e,
                        |(party, count)| ClusterError::KeyFrozen {
                            key_id: key_id.to_owned(),
                            party,
                            count,
                        },
                    ));
                }
                Err((e, blamed)) if blamed.is_empty() => return Err(e),
                Err((e, blamed)) => {
                    tracing::warn!(key = key_id, error = %e, ?blamed, "signing again without them");
                    excluded.extend(blamed);
                    if self.signers.len() - excluded.len() < usize::from(group.threshold()) {
                        return Err(e);
                    }
                }
            }
        }
    }

    /// Records the parties the coordinator's own checks blame in `e`
    /// (never what a node says of another: a malicious node could name an
    /// honest one); whether that froze the key.
    fn blame(
        &self,
        key_id: &str,
        parties: &[crate::PartyIndex],
        e: &ClusterError,
    ) -> Result<bool, ClusterError> {
        let Some(ledger) = &self.ledger else {
            return Ok(false);
        };
        let ClusterError::Abort(a) = e else {
            return Ok(false);
        };
        let mut froze = false;
        for party in a.culprits().into_iter().filter(|p| parties.contains(p)) {
            let party = party.get();
            self.blamed
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let count = ledger
                .record(key_id, party, &e.to_string())
                .map_err(|e| ClusterError::Ledger(e.to_string()))?;
            if count >= ledger.limit {
                tracing::error!(
                    alert = true,
                    key = key_id,
                    party,
                    count,
                    "key frozen: aborted signing sessions keep blaming one party"
                );
                froze = true;
            }
        }
        Ok(froze)
    }

    /// One signing session; on failure, the error and the signers to
    /// leave out of the next one.
    async fn sign_once<C: Suite>(
        &self,
        key_id: &str,
        group: &GroupPublic<C>,
        message: &[u8],
        subject: &Subject,
        excluded: &[u16],
    ) -> Result<[u8; 64], (ClusterError, Vec<u16>)> {
        let fail = |e: ClusterError| (e, Vec::new());
        let session = SessionId::random(&mut os_rng());
        let asked: Vec<(SignerEndpoint, Request)> = self
            .signers
            .iter()
            .filter(|s| !excluded.contains(&s.index))
            // A signer removed from the key by a refresh is not asked.
            .filter(|s| group.parties().iter().any(|p| p.get() == s.index))
            .map(|s| {
                (
                    s.clone(),
                    Request::Commit {
                        suite: C::NAME.to_owned(),
                        key_id: key_id.to_owned(),
                        session,
                    },
                )
            })
            .collect();
        let mut coordinator = Coordinator::new(session, group.clone(), message);
        let mut committed = Vec::new();
        let mut first_refusal = None;
        for (index, r) in self.fan_out(asked).await {
            match r {
                Ok(Response::Commitment { envelope }) if envelope.from == index => {
                    match coordinator.check_commitment(&envelope) {
                        Ok(()) => committed.push(envelope),
                        Err(e) => {
                            tracing::warn!(signer = index, error = %e, "bad commitment: left out")
                        }
                    }
                }
                Ok(_) => tracing::warn!(signer = index, "answered a commitment out of protocol"),
                Err(e) => {
                    tracing::warn!(signer = index, error = %e, "signer left out of the session");
                    if matches!(e, ClusterError::Refused { .. }) {
                        first_refusal.get_or_insert(e);
                    }
                }
            }
        }
        let needed = usize::from(group.threshold());
        if committed.len() < needed {
            return Err(fail(match first_refusal {
                Some(e) if committed.is_empty() => e,
                _ => ClusterError::TooFew {
                    got: committed.len(),
                    needed,
                },
            }));
        }
        // The first `threshold` of them (by party): the others' nonces are
        // forgotten by their nodes unused.
        committed.sort_by_key(|e| e.from);
        committed.truncate(needed);
        let packages = coordinator
            .package(&committed)
            .map_err(|e| fail(e.into()))?;
        let by_index: BTreeMap<u16, &SignerEndpoint> =
            self.signers.iter().map(|s| (s.index, s)).collect();
        let mut requests = Vec::new();
        for p in packages {
            let s =
                p.to.and_then(|t| by_index.get(&t))
                    .ok_or_else(|| fail(Abort::Internal("package for no signer".into()).into()))?;
            requests.push((
                (*s).clone(),
                Request::Sign {
                    suite: C::NAME.to_owned(),
                    key_id: key_id.to_owned(),
                    session,
                    package: p,
                    subject: subject.clone(),
                },
            ));
        }
        let mut shares = Vec::new();
        let mut blamed = Vec::new();
        let mut first_error = None;
        for (index, r) in self.fan_out(requests).await {
            match r {
                Ok(Response::Share { envelope }) if envelope.from == index => {
                    match coordinator.check_share(&envelope) {
                        Ok(()) => shares.push(envelope),
                        // Over its own pinned connection: its fault.
                        Err(e) => {
                            blamed.push(index);
                            first_error.get_or_insert(ClusterError::Abort(Abort::Malformed {
                                from: index,
                                what: e.to_string(),
                            }));
                        }
                    }
                }
                Ok(_) => {
                    blamed.push(index);
                    first_error.get_or_insert(ClusterError::Unexpected {
                        index,
                        what: "no share of its own".into(),
                    });
                }
                Err(e) => {
                    blamed.push(index);
                    first_error.get_or_insert(e);
                }
            }
        }
        if let Some(e) = first_error {
            return Err((e, blamed));
        }
        coordinator.aggregate(&shares).map_err(|e| {
            let culprits = e.culprits().iter().map(|p| p.get()).collect();
            (e.into(), culprits)
        })
    }
}

/// The key every node reported, which must be the same.
fn same_key(
    answers: BTreeMap<u16, Result<Response, ClusterError>>,
) -> Result<NewKey, ClusterError> {
    let needed = answers.len();
    let mut key: Option<NewKey> = None;
    for (index, r) in answers {
        let Response::Key {
            group_key, public, ..
        } = r?
        else {
            return Err(ClusterError::Unexpected {
                index,
                what: "no key".into(),
            });
        };
        let bad = |what: &str| ClusterError::Unexpected {
            index,
            what: what.into(),
        };
        let k = NewKey {
            group_key: hex::decode(&group_key)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| bad("group key"))?,
            public: hex::decode(&public).map_err(|_| bad("public package"))?,
        };
        match &key {
            None => key = Some(k),
            Some(first) if *first == k => {}
            Some(_) => return Err(ClusterError::Disagree),
        }
    }
    key.ok_or(ClusterError::TooFew { got: 0, needed })
}

/// The relayed messages of a round (each node's passing `ok`), or the
/// first failure.
fn messages(
    answers: BTreeMap<u16, Result<Response, ClusterError>>,
    ok: impl Fn(u16, &[Relayed]) -> bool,
) -> Result<Vec<Relayed>, ClusterError> {
    let mut out = Vec::new();
    for (index, r) in answers {
        match r? {
            Response::Messages { messages } if ok(index, &messages) => out.extend(messages),
            _ => {
                return Err(ClusterError::Unexpected {
                    index,
                    what: "no messages".into(),
                });
            }
        }
    }
    Ok(out)
}

impl Links {
    /// One request to one signer: on its open connection if there is one
    /// (a connection found closed is opened again, once: the node refuses
    /// a repeated step of a session, so nothing happens twice), otherwise
    /// on a new one, kept for the next request.
    async fn call(&self, s: &SignerEndpoint, req: &Request) -> Result<Response, ClusterError> {
        self.call_within(s, req, self.timeout).await
    }

    async fn call_within(
        &self,
        s: &SignerEndpoint,
        req: &Request,
        timeout: Duration,
    ) -> Result<Response, ClusterError> {
        let index = s.index;
        let Some(slot) = self.open.get(&index) else {
            return Err(ClusterError::Unexpected {
                index,
                what: "not a signer of this cluster".into(),
            });
        };
        let mut slot = slot.lock().await;
        let epoch = self.epoch.load(std::sync::atomic::Ordering::SeqCst);
        let exchange = async {
            if let Some((stream, announced)) = slot.as_mut() {
                let r = async {
                    if *announced < epoch {
                        if let Some(refused) = announce(stream, epoch).await? {
                            return Ok(refused);
                        }
                        *announced = epoch;
                    }
                    exchange(stream, req).await
                };
                match r.await {
                    Ok(r) => return Ok(r),
                    Err(e) => tracing::debug!(signer = index, error = %e, "reconnecting"),
                }
            }
            *slot = None;
            let mut stream = self.connect(s).await?;
            match hello(&mut stream).await? {
                Ok(protocol) => {
                    if let Some(p) = self.protocols.get(&index) {
                        p.store(protocol, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                Err(what) => return Err(NetError::Incompatible(what)),
            }
            if epoch > 0
                && let Some(refused) = announce(&mut stream, epoch).await?
            {
                return Ok(refused);
            }
            let r = exchange(&mut stream, req).await?;
            *slot = Some((stream, epoch));
            Ok(r)
        };
        let r = match tokio::time::timeout(timeout, exchange).await {
            Err(_) => Err(ClusterError::Timeout { index, timeout }),
            Ok(Err(NetError::Incompatible(what))) => Err(ClusterError::Incompatible {
                index,
                ours: crate::wire::PROTOCOL,
                what,
            }),
            Ok(Err(source)) => Err(ClusterError::Unreachable { index, source }),
            Ok(Ok(Response::Refused { reason, culprits })) => Err(ClusterError::Refused {
                index,
                reason,
                culprits,
            }),
            Ok(Ok(r)) => Ok(r),
        };
        if matches!(r, Err(ClusterError::Timeout { .. })) {
            // A late answer must not be read as the next request's.
            *slot = None;
        }
        let down = matches!(
            r,
            Err(ClusterError::Timeout { .. }
                | ClusterError::Unreachable { .. }
                | ClusterError::Incompatible { .. })
        );
        if let Some(a) = self.answered.get(&index) {
            a.store(
                if down { 2 } else { 1 },
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        r
    }

    async fn connect(&self, s: &SignerEndpoint) -> Result<Stream, NetError> {
        let connector = net::connector(&self.tls, s.fingerprint)?;
        let tcp = tokio::net::TcpStream::connect(&s.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(connector.connect(net::server_name()?, tcp).await?)
    }
}

/// Signing sessions aborted with a party to blame, per key: one JSON line
/// per blame, synced before the session's error is returned. A key with
/// `limit` blames on one party is frozen; an operator's unfreeze (a line
/// for party 0) starts the count again.
#[derive(Debug)]
pub struct BlameLedger {
    lines: std::sync::Mutex<crate::journal::Lines>,
    limit: u32,
    counts: std::sync::Mutex<BTreeMap<(String, u16), u32>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BlameLine {
    key_id: String,
    party: u16,
    why: String,
    /// The operator unfroze the key (the counts start again).
    #[serde(default)]
    unfreeze: bool,
}

impl BlameLedger {
    pub fn open(path: &std::path::Path, limit: u32) -> std::io::Result<BlameLedger> {
        let (lines, records) = crate::journal::Lines::open::<BlameLine>(path)?;
        let mut counts = BTreeMap::new();
        for b in &records {
            apply(&mut counts, b);
        }
        Ok(BlameLedger {
            lines: std::sync::Mutex::new(lines),
            limit: limit.max(1),
            counts: std::sync::Mutex::new(counts),
        })
    }

    /// The party and count that froze `key_id`, if it is frozen.
    pub fn frozen(&self, key_id: &str) -> Option<(u16, u32)> {
        self.counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .find(|((k, _), n)| k == key_id && **n >= self.limit)
            .map(|((_, p), n)| (*p, *n))
    }

    /// Records a blame; returns the party's count for the key.
    pub fn record(&self, key_id: &str, party: u16, why: &str) -> std::io::Result<u32> {
        let line = BlameLine {
            key_id: key_id.to_owned(),
            party,
            why: why.chars().take(300).collect(),
            unfreeze: false,
        };
        self.write(&line)?;
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        apply(&mut counts, &line);
        Ok(counts
            .get(&(key_id.to_owned(), party))
            .copied()
            .unwrap_or(0))
    }

    /// An operator's decision that the key may sign again.
    pub fn unfreeze(&self, key_id: &str, why: &str) -> std::io::Result<()> {
        let line = BlameLine {
            key_id: key_id.to_owned(),
            party: 0,
            why: why.chars().take(300).collect(),
            unfreeze: true,
        };
        self.write(&line)?;
        apply(
            &mut self
                .counts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
            &line,
        );
        Ok(())
    }

    fn write(&self, line: &BlameLine) -> std::io::Result<()> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .append(line)
    }
}

fn apply(counts: &mut BTreeMap<(String, u16), u32>, b: &BlameLine) {
    if b.unfreeze {
        counts.retain(|(k, _), _| *k != b.key_id);
    } else {
        *counts.entry((b.key_id.clone(), b.party)).or_default() += 1;
    }
}
