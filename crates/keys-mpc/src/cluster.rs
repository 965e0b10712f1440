//! The coordinator's side, in the server: it reaches pinned signer nodes
//! over mutually authenticated TLS, relays their (signed, encrypted)
//! messages through a ceremony, and drives signing sessions, checking
//! every share itself.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::dkg_impl::GroupPublic;
use crate::envelope::{Abort, SessionId};
use crate::net::{self, Fingerprint, NetError, TlsIdentity};
use crate::sign_impl::Coordinator;
use crate::wire::{Relayed, Request, Response};
use crate::{Suite, os_rng};

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
}

type Stream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

#[derive(Debug)]
struct Links {
    tls: TlsIdentity,
    timeout: Duration,
    open: BTreeMap<u16, tokio::sync::Mutex<Option<Stream>>>,
}

impl Cluster {
    pub fn new(tls: TlsIdentity, signers: Vec<SignerEndpoint>, timeout: Duration) -> Cluster {
        let open = signers
            .iter()
            .map(|s| (s.index, tokio::sync::Mutex::new(None)))
            .collect();
        Cluster {
            signers,
            links: Arc::new(Links { tls, timeout, open }),
        }
    }

    pub fn signers(&self) -> &[SignerEndpoint] {
        &self.signers
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
        let tasks: Vec<(u16, tokio::task::JoinHandle<_>)> = requests
            .into_iter()
            .map(|(s, req)| {
                let links = self.links.clone();
                (
                    s.index,
                    tokio::spawn(async move { links.call(&s, &req).await }),
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
        threshold: u16,
    ) -> Result<NewKey, ClusterError> {
        let session = SessionId::random(&mut os_rng());
        let all = |req: &dyn Fn(&SignerEndpoint) -> Request| {
            self.signers
                .iter()
                .map(|s| (s.clone(), req(s)))
                .collect::<Vec<_>>()
        };
        // Round 1: each node's broadcast.
        let start = self
            .fan_out(all(&|_| Request::DkgStart {
                suite: suite.to_owned(),
                key_id: key_id.to_owned(),
                session,
                threshold,
            }))
            .await;
        let broadcasts = messages(start)?;
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
        let direct = messages(round1)?;
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
        let mut key: Option<NewKey> = None;
        for (index, r) in done {
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
        key.ok_or(ClusterError::TooFew {
            got: 0,
            needed: self.signers.len(),
        })
    }

    /// A signing session for `message` under the key `key_id`: commitments
    /// from every signer that answers (those down or refusing are left
    /// out), one package, shares checked against each signer's verifying
    /// share, the signature checked against the group key. A failure ends
    /// the session; another attempt is a new session with fresh nonces.
    pub async fn sign<C: Suite>(
        &self,
        key_id: &str,
        group: &GroupPublic<C>,
        message: &[u8],
    ) -> Result<[u8; 64], ClusterError> {
        let session = SessionId::random(&mut os_rng());
        let commits = self
            .fan_out(
                self.signers
                    .iter()
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
                    .collect(),
            )
            .await;
        let mut envelopes = Vec::new();
        let mut refusals = Vec::new();
        for (index, r) in commits {
            match r {
                Ok(Response::Commitment { envelope }) => envelopes.push(envelope),
                Ok(_) => {
                    return Err(ClusterError::Unexpected {
                        index,
                        what: "no commitment".into(),
                    });
                }
                Err(e) => {
                    tracing::warn!(signer = index, error = %e, "signer left out of the session");
                    refusals.push(e);
                }
            }
        }
        let needed = usize::from(group.threshold());
        if envelopes.len() < needed {
            return Err(match refusals.into_iter().next() {
                Some(e @ ClusterError::Refused { .. }) if envelopes.is_empty() => e,
                _ => ClusterError::TooFew {
                    got: envelopes.len(),
                    needed,
                },
            });
        }
        let mut coordinator = Coordinator::new(session, group.clone(), message);
        let packages = coordinator.package(&envelopes)?;
        let by_index: BTreeMap<u16, &SignerEndpoint> =
            self.signers.iter().map(|s| (s.index, s)).collect();
        let mut requests = Vec::new();
        for p in packages {
            let s =
                p.to.and_then(|t| by_index.get(&t))
                    .ok_or_else(|| Abort::Internal("package for no signer".into()))?;
            requests.push((
                (*s).clone(),
                Request::Sign {
                    suite: C::NAME.to_owned(),
                    key_id: key_id.to_owned(),
                    session,
                    package: p,
                    message: hex::encode(message),
                },
            ));
        }
        let mut shares = Vec::new();
        for (index, r) in self.fan_out(requests).await {
            match r? {
                Response::Share { envelope } => shares.push(envelope),
                _ => {
                    return Err(ClusterError::Unexpected {
                        index,
                        what: "no share".into(),
                    });
                }
            }
        }
        Ok(coordinator.aggregate(&shares)?)
    }
}

/// The relayed messages of a round, or the first failure.
fn messages(
    answers: BTreeMap<u16, Result<Response, ClusterError>>,
) -> Result<Vec<Relayed>, ClusterError> {
    let mut out = Vec::new();
    for (index, r) in answers {
        match r? {
            Response::Messages { messages } => out.extend(messages),
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
        let index = s.index;
        let Some(slot) = self.open.get(&index) else {
            return Err(ClusterError::Unexpected {
                index,
                what: "not a signer of this cluster".into(),
            });
        };
        let mut slot = slot.lock().await;
        let exchange = async {
            if let Some(stream) = slot.as_mut() {
                match exchange(stream, req).await {
                    Ok(r) => return Ok(r),
                    Err(e) => tracing::debug!(signer = index, error = %e, "reconnecting"),
                }
            }
            *slot = None;
            let mut stream = self.connect(s).await?;
            let r = exchange(&mut stream, req).await?;
            *slot = Some(stream);
            Ok(r)
        };
        let r = match tokio::time::timeout(self.timeout, exchange).await {
            Err(_) => Err(ClusterError::Timeout {
                index,
                timeout: self.timeout,
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
        r
    }

    async fn connect(&self, s: &SignerEndpoint) -> Result<Stream, NetError> {
        let connector = net::connector(&self.tls, s.fingerprint)?;
        let tcp = tokio::net::TcpStream::connect(&s.addr).await?;
        tcp.set_nodelay(true)?;
        Ok(connector.connect(net::server_name()?, tcp).await?)
    }
}

async fn exchange(stream: &mut Stream, req: &Request) -> Result<Response, NetError> {
    net::write_frame(stream, req).await?;
    net::read_frame::<_, Response>(stream)
        .await?
        .ok_or_else(|| NetError::Malformed("the signer closed the connection".into()))
}
