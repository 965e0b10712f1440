//! A signer node: its own data directory, its own sealed share store
//! (shares encrypted under a store key that only its operator's
//! passphrase opens), its own nonce journal and audit log, serving pinned
//! servers over mutually authenticated TLS.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use keys::Secret32;
use keys::envelope::Binding;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::cosign::{self, CosignPolicy};
use crate::dkg_impl::Dkg;
use crate::envelope::{Abort, PartyIndex, SessionId};
use crate::journal::NonceJournal;
use crate::net::{self, Fingerprint, NetError};
use crate::sign_impl::{PendingNonce, commit, sign};
use crate::wire::{self, NodeKeys, NodePublic, Relayed, Request, Response, check_key_id};
use crate::{Ed25519, Suite, Taproot};

mod audit_file;
mod ecdsa_steps;
mod epoch;
#[cfg(feature = "test-hooks")]
pub mod hooks;
mod refresh;
mod shares;
/// Without the `test-hooks` feature: nothing is read, nothing armed.
#[cfg(not(feature = "test-hooks"))]
pub mod hooks {
    use super::Node;

    /// Arms nothing (a release build).
    pub fn arm_from_env(node: Node, _kill: fn(&'static str) -> !) -> Result<Node, String> {
        Ok(node)
    }

    /// Uses no published primes (a release build).
    pub fn test_primes_from_env(_node: &Node) -> Result<bool, String> {
        Ok(false)
    }
}

use audit_file::AuditFile;

/// Runs `$body` with `C` bound to the suite named `$suite`.
macro_rules! by_suite {
    ($suite:expr, |$c:ident| $body:block) => {{
        let s: &str = $suite;
        if s == <Taproot as Suite>::NAME {
            type $c = Taproot;
            $body
        } else if s == <Ed25519 as Suite>::NAME {
            type $c = Ed25519;
            $body
        } else {
            return Err(Abort::Parameters(format!("unknown suite {s:?}")));
        }
    }};
}

/// Ceremonies and commitments in progress, at most each: a coordinator
/// that starts sessions and never finishes them cannot grow the node
/// without end.
const MAX_OPEN: usize = 1024;
/// A session not finished within this long is dropped (an unused nonce is
/// simply forgotten: it was never used).
const SESSION_TTL: Duration = Duration::from_secs(300);
/// Connections served at once, and how long a handshake or an idle
/// connection may take.
const MAX_CONNECTIONS: usize = 64;
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// The longest refusal reason kept in the audit log.
const MAX_REASON: usize = 300;

/// `signer.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// This node's party index (1 to n).
    pub index: u16,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    /// Certificate fingerprints of the servers allowed to call this node.
    pub servers: Vec<String>,
    /// The other signer nodes, as each printed itself at `signer init`.
    pub peers: Vec<NodePublic>,
    /// What this node checks before it signs.
    pub policy: CosignPolicy,
    /// Whether it takes part in threshold ECDSA (Ethereum keys). `false`
    /// for a node of FROST keys only: it searches for no safe primes
    /// (minutes of CPU) and refuses every ECDSA ceremony.
    #[serde(default = "ecdsa_on")]
    pub ecdsa: bool,
}

fn ecdsa_on() -> bool {
    true
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    #[error(transparent)]
    Net(#[from] NetError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("configuration: {0}")]
    Config(String),
    #[error("the passphrase does not open this node's store")]
    WrongPassphrase,
    #[error("audit log: {0}")]
    Audit(String),
    #[error("nonce journal: {0}")]
    Journal(#[from] crate::journal::JournalError),
}

/// Creates a node's data directory: identity, and a store key sealed
/// under the operator's passphrase. Returns what the others must pin.
pub fn init(dir: &Path, index: u16, passphrase: &str) -> Result<NodePublic, NodeError> {
    if PartyIndex::new(index).is_none() {
        return Err(NodeError::Config("index must be 1 or more".into()));
    }
    std::fs::create_dir_all(dir)?;
    if dir.join("store-key.age").exists() {
        return Err(NodeError::Config(format!(
            "{} already holds a signer node",
            dir.display()
        )));
    }
    std::fs::create_dir_all(dir.join("shares"))?;
    let keys = NodeKeys::generate()?;
    keys.save(dir)?;
    let store_key = Secret32::random().map_err(|e| NodeError::Config(e.to_string()))?;
    let recipient =
        age::scrypt::Recipient::new(age::secrecy::SecretString::from(passphrase.to_owned()));
    let sealed_key = age::encrypt(&recipient, store_key.expose())
        .map_err(|e| NodeError::Config(format!("sealing the store key: {e}")))?;
    net::write_private(&dir.join("store-key.age"), &sealed_key)?;
    Ok(keys.public(index))
}

/// A running signer node.
#[derive(Debug)]
pub struct Node {
    index: u16,
    n: u16,
    keys: NodeKeys,
    peers: BTreeMap<u16, NodePublic>,
    servers: Vec<Fingerprint>,
    dir: PathBuf,
    store_key: Secret32,
    journal: Mutex<NonceJournal>,
    audit: Mutex<AuditFile>,
    policy: CosignPolicy,
    paid: Mutex<cosign::PaidJournal>,
    /// When this node gave out its recent signature shares (the last hour).
    recent: Mutex<std::collections::VecDeque<Instant>>,
    dkgs: Mutex<HashMap<SessionId, Open<AnyDkg>>>,
    /// The highest server epoch announced (see `node/epoch.rs`).
    epoch: Mutex<u64>,
    pending: Mutex<HashMap<SessionId, Open<AnyNonce>>>,
    ecdsa: ecdsa_steps::EcdsaState,
    /// Threshold ECDSA is on (see [`NodeConfig::ecdsa`]).
    ecdsa_on: bool,
    after_answer: Option<CrashHook>,
    fault: Option<Fault>,
}

/// A misbehaviour for the fault tests (`STRONGROOM_SIGNER_FAULT` in the
/// binary): never set otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answers signing requests with a share that is a valid scalar but
    /// not this node's share.
    BadShare,
    /// Publishes, in the auxiliary-information ceremony, a Paillier
    /// modulus with a small factor (its own modulus times 3), as the
    /// BitForge attack does.
    BadAuxModulus,
}

/// Called with the request's name after each answer is sent: the crash
/// tests' way to kill a node between two rounds (`STRONGROOM_SIGNER_CRASH_AT`
/// in the binary). None is installed otherwise.
pub struct CrashHook(Box<dyn Fn(&'static str) + Send + Sync>);

impl std::fmt::Debug for CrashHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CrashHook")
    }
}

/// The names a crash hook is called with.
pub const ANSWERS: [&str; 15] = [
    "info",
    "dkg_start",
    "dkg_round1",
    "dkg_round2",
    "commit",
    "sign",
    "ecdsa_aux",
    "ecdsa_keygen",
    "ecdsa_presign",
    "step",
    "ecdsa_sign",
    "refresh_start",
    "refresh_commit",
    "epoch",
    "paid_intents",
];

impl Node {
    /// Opens the node's store with the operator's passphrase.
    pub fn open(config: &NodeConfig, passphrase: &str) -> Result<Node, NodeError> {
        let dir = config.data_dir.clone();
        let keys = NodeKeys::load(&dir)?;
        let identity =
            age::scrypt::Identity::new(age::secrecy::SecretString::from(passphrase.to_owned()));
        let sealed_key = std::fs::read(dir.join("store-key.age"))?;
        let plain = Zeroizing::new(
            age::decrypt(&identity, &sealed_key).map_err(|_| NodeError::WrongPassphrase)?,
        );
        let mut k: [u8; 32] = plain[..]
            .try_into()
            .map_err(|_| NodeError::Config("store key is not 32 bytes".into()))?;
        let store_key = Secret32::from_bytes(&mut k);
        let n = u16::try_from(config.peers.len() + 1)
            .map_err(|_| NodeError::Config("too many peers".into()))?;
        let mut peers = BTreeMap::new();
        for p in &config.peers {
            if p.index == config.index || p.index == 0 || p.index > n {
                return Err(NodeError::Config(format!(
                    "peer index {}: parties are numbered 1 to {n}, this node is {}",
                    p.index, config.index
                )));
            }
            if peers.insert(p.index, p.clone()).is_some() {
                return Err(NodeError::Config(format!("peer {} twice", p.index)));
            }
        }
        if config.index == 0 || config.index > n {
            return Err(NodeError::Config(format!(
                "index {}: parties are numbered 1 to {n}",
                config.index
            )));
        }
        let servers = config
            .servers
            .iter()
            .map(|s| s.parse())
            .collect::<Result<Vec<Fingerprint>, _>>()?;
        if servers.is_empty() {
            return Err(NodeError::Config("no server is allowed to call".into()));
        }
        cosign::check_policy(&config.policy).map_err(NodeError::Config)?;
        Ok(Node {
            index: config.index,
            n,
            keys,
            peers,
            servers,
            journal: Mutex::new(NonceJournal::open(&dir.join("nonces.journal"))?),
            audit: Mutex::new(AuditFile::open(&dir.join("audit.log"))?),
            dir,
            store_key,
            policy: config.policy.clone(),
            paid: Mutex::new(cosign::PaidJournal::open(
                &config.data_dir.join("paid.journal"),
            )?),
            recent: Mutex::default(),
            dkgs: Mutex::default(),
            epoch: Mutex::new(epoch::load(&config.data_dir)?),
            pending: Mutex::default(),
            ecdsa: ecdsa_steps::EcdsaState::default(),
            ecdsa_on: config.ecdsa,
            after_answer: None,
            fault: None,
        })
    }

    /// Installs the crash tests' hook (see [`CrashHook`]; test builds only).
    #[cfg(feature = "test-hooks")]
    pub fn with_crash_hook(mut self, hook: impl Fn(&'static str) + Send + Sync + 'static) -> Node {
        self.after_answer = Some(CrashHook(Box::new(hook)));
        self
    }

    /// Makes the node misbehave (fault tests; test builds only).
    #[cfg(feature = "test-hooks")]
    pub fn with_fault(mut self, fault: Fault) -> Node {
        self.fault = Some(fault);
        self
    }

    pub fn public(&self) -> NodePublic {
        self.keys.public(self.index)
    }

    /// Accepts pinned servers on `listener` until the task is dropped.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
    ) -> Result<(), NodeError> {
        let acceptor = net::acceptor(&self.keys.tls, self.servers.clone())?;
        let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
        self.audit(
            "mpc.node.started",
            &format!("party:{}", self.index),
            serde_json::json!({
                "listen": listener.local_addr()?.to_string(),
                // Test hooks, recorded so that an audit shows a node that
                // was started misbehaving on purpose.
                "crash_hook": self.after_answer.is_some(),
                "fault": self.fault.map(|f| format!("{f:?}")),
            }),
        )
        .map_err(|e| NodeError::Audit(e.to_string()))?;
        loop {
            let (tcp, peer) = listener.accept().await?;
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                tracing::warn!(%peer, "too many connections: refused");
                continue;
            };
            let (acceptor, node) = (acceptor.clone(), self.clone());
            tokio::spawn(async move {
                if let Err(e) = node.connection(acceptor, tcp).await {
                    tracing::warn!(%peer, error = %e, "signer connection ended");
                }
                drop(slot);
            });
        }
    }

    async fn connection(
        self: Arc<Self>,
        acceptor: tokio_rustls::TlsAcceptor,
        tcp: tokio::net::TcpStream,
    ) -> Result<(), NetError> {
        tcp.set_nodelay(true)?;
        let timed_out = || NetError::Io(std::io::ErrorKind::TimedOut.into());
        let mut tls = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp))
            .await
            .map_err(|_| timed_out())??;
        let from = net::peer_fingerprint(tls.get_ref().1)?;
        // The epoch this connection's server announced (none: 0), and
        // whether it said hello in this node's protocol.
        let mut announced = 0;
        let mut greeted = false;
        while let Some(req) =
            tokio::time::timeout(IDLE_TIMEOUT, net::read_frame::<_, Request>(&mut tls))
                .await
                .map_err(|_| timed_out())??
        {
            let node = self.clone();
            let op = op_name(&req);
            let announcing = match &req {
                Request::Epoch { epoch } => Some(*epoch),
                _ => None,
            };
            let stale = match (&req, announcing) {
                (Request::Hello { protocol }, _) => hello(*protocol),
                _ if !greeted => Err(Abort::Policy(format!(
                    "a connection starts with hello in signer protocol {}: the server is of \
                     another Strongroom version than this node",
                    wire::PROTOCOL
                ))),
                (Request::Info, _) | (_, Some(_)) => Ok(()),
                _ => self.current(announced),
            };
            if matches!((&req, &stale), (Request::Hello { .. }, Ok(()))) {
                greeted = true;
                net::write_frame(
                    &mut tls,
                    &Response::Hello {
                        protocol: wire::PROTOCOL,
                    },
                )
                .await?;
                continue;
            }
            let resp = match stale {
                Err(e) => self.refused(from, op, &e),
                Ok(()) => tokio::task::spawn_blocking(move || node.handle(from, req))
                    .await
                    .unwrap_or_else(|e| Response::Refused {
                        reason: format!("internal: {e}"),
                        culprits: vec![],
                    }),
            };
            if let (Some(e), Response::Epoch { .. }) = (announcing, &resp) {
                announced = e;
            }
            net::write_frame(&mut tls, &resp).await?;
            if let Some(CrashHook(hook)) = &self.after_answer {
                hook(op);
            }
        }
        Ok(())
    }

    /// Answers one request; a refusal is recorded in the node's audit log.
    pub fn handle(&self, from: Fingerprint, req: Request) -> Response {
        let op = op_name(&req);
        match self.answer(from, req) {
            Ok(r) => r,
            Err(e) => self.refused(from, op, &e),
        }
    }

    /// A refusal, recorded in the node's audit log.
    fn refused(&self, from: Fingerprint, op: &str, e: &Abort) -> Response {
        let culprits: Vec<u16> = e.culprits().iter().map(|p| p.get()).collect();
        let audited = self.audit(
            "mpc.request.refused",
            &format!("server:{from}"),
            serde_json::json!({ "op": op, "reason": short(&e.to_string()), "culprits": culprits }),
        );
        let reason = match audited {
            Ok(()) => short(&e.to_string()),
            Err(a) => format!("{} (and the audit log failed: {a})", short(&e.to_string())),
        };
        Response::Refused { reason, culprits }
    }

    fn answer(&self, from: Fingerprint, req: Request) -> Result<Response, Abort> {
        match req {
            Request::Hello { protocol } => hello(protocol).map(|()| Response::Hello {
                protocol: wire::PROTOCOL,
            }),
            Request::Info => Ok(Response::Info {
                public: self.public(),
                parties: (1..=self.n).collect(),
            }),
            Request::DkgStart {
                suite,
                key_id,
                wallet,
                session,
                threshold,
            } => {
                let wallet = self.check_new_key(&key_id, &wallet, threshold)?;
                let mut dkgs = lock(&self.dkgs);
                purge(&mut dkgs);
                if dkgs.len() >= MAX_OPEN {
                    return Err(Abort::Parameters("too many ceremonies open".into()));
                }
                if dkgs.values().any(|o| o.key_id == key_id) {
                    return Err(Abort::Parameters(format!("key {key_id} is being made")));
                }
                // A session id is used once, ever: a second round-1 message
                // for one session would pass for equivocation.
                self.once(b"dkg-session", &session)?;
                let me = party(self.index)?;
                let mut rng = crate::os_rng();
                let (dkg, msg) = by_suite!(&suite, |C| {
                    let context = format!("{key_id}\n{wallet}");
                    let (d, m) = Dkg::<C>::start_for(
                        session,
                        me,
                        self.n,
                        threshold,
                        context.as_bytes(),
                        &mut rng,
                    )?;
                    (C::dkg_in(d), m)
                });
                let relayed = self.keys.seal(&msg, None)?;
                self.audit(
                    "mpc.dkg.started",
                    &format!("mpc-key:{key_id}"),
                    serde_json::json!({ "suite": suite, "threshold": threshold, "wallet": wallet,
                        "parties": self.n, "server": from.to_string() }),
                )?;
                dkgs.insert(session, Open::new(key_id, wallet, dkg));
                Ok(Response::Messages {
                    messages: vec![relayed],
                })
            }
            Request::DkgRound1 { session, messages } => {
                let Open {
                    since,
                    key_id,
                    wallet,
                    state: dkg,
                } = take(&self.dkgs, &session, "no such ceremony")?;
                let envelopes = self.open_all(&messages)?;
                let (dkg, out) = match dkg {
                    AnyDkg::Taproot(mut d) => {
                        let out = d.round1(&envelopes)?;
                        (AnyDkg::Taproot(d), out)
                    }
                    AnyDkg::Ed25519(mut d) => {
                        let out = d.round1(&envelopes)?;
                        (AnyDkg::Ed25519(d), out)
                    }
                };
                let mut sealed = Vec::with_capacity(out.len());
                for m in &out {
                    let to =
                        m.to.and_then(|t| self.peers.get(&t))
                            .ok_or_else(|| Abort::Internal("round-2 message to no peer".into()))?;
                    sealed.push(self.keys.seal(m, Some(to))?);
                }
                lock(&self.dkgs).insert(
                    session,
                    Open {
                        since,
                        key_id,
                        wallet,
                        state: dkg,
                    },
                );
                Ok(Response::Messages { messages: sealed })
            }
            Request::DkgRound2 { session, messages } => {
                let Open {
                    key_id,
                    wallet,
                    state: dkg,
                    ..
                } = take(&self.dkgs, &session, "no such ceremony")?;
                let envelopes = self.open_all(&messages)?;
                match dkg {
                    AnyDkg::Taproot(d) => self.finish(&key_id, &wallet, session, d, &envelopes),
                    AnyDkg::Ed25519(d) => self.finish(&key_id, &wallet, session, d, &envelopes),
                }
            }
            Request::Commit {
                suite,
                key_id,
                session,
            } => {
                check_key_id(&key_id)?;
                let mut pending = lock(&self.pending);
                purge(&mut pending);
                if pending.len() >= MAX_OPEN {
                    return Err(Abort::Parameters("too many signing sessions open".into()));
                }
                if pending.contains_key(&session) {
                    return Err(Abort::Parameters("this session has committed".into()));
                }
                let mut rng = crate::os_rng();
                let (nonce, envelope) = by_suite!(&suite, |C| {
                    let (share, _) = self.load::<C>(&key_id)?;
                    let (n, m) = commit(&share, session, &mut rng)?;
                    (C::nonce_in(n), m)
                });
                pending.insert(session, Open::new(key_id, String::new(), nonce));
                Ok(Response::Commitment { envelope })
            }
            Request::Sign {
                suite,
                key_id,
                session,
                package,
                subject,
            } => {
                let Open {
                    key_id: committed_key,
                    state: nonce,
                    ..
                } = take(&self.pending, &session, "no commitment for this session")?;
                if committed_key != key_id {
                    return Err(Abort::PackageRefused(
                        "the session committed for another key".into(),
                    ));
                }
                // A freeze that cannot be read counts as one.
                if self.dir.join("frozen").try_exists().unwrap_or(true) {
                    return Err(Abort::Policy("this node is frozen by its operator".into()));
                }
                let (envelope, summary) = by_suite!(&suite, |C| {
                    let (share, wallet) = self.load::<C>(&key_id)?;
                    let taproot = if C::NAME == <Taproot as Suite>::NAME {
                        Some(share.group_key()?)
                    } else {
                        None
                    };
                    // The message is derived here, from what the node was
                    // shown and checked — never taken from the server.
                    let checked = cosign::check(&self.policy, taproot, &wallet, &subject, now()?)?;
                    let mut paid = lock(&self.paid);
                    paid.check(&checked)?;
                    let nonce = C::nonce_out(nonce).ok_or_else(|| {
                        Abort::PackageRefused("committed for another suite".into())
                    })?;
                    let mut journal = lock(&self.journal);
                    let mut e = sign(&share, nonce, &package, &checked.message, &mut journal)?;
                    // Counted once the package passed its checks too (a
                    // refused package spends no one's budget); over the
                    // limit, the share made is dropped with its nonce.
                    self.rate_slot()?;
                    // On disk before the share leaves.
                    paid.record(&checked)
                        .map_err(|e| Abort::Journal(format!("paid intents: {e}")))?;
                    if self.fault == Some(Fault::BadShare) {
                        e.body = "01".repeat(32);
                    }
                    (e, checked.summary)
                });
                self.audit(
                    "mpc.sign.share",
                    &format!("mpc-key:{key_id}"),
                    serde_json::json!({ "session": String::from(session),
                        "signed": summary, "server": from.to_string() }),
                )?;
                Ok(Response::Share { envelope })
            }
            Request::Epoch { epoch } => self.announce(from, epoch),
            Request::PaidIntents => Ok(Response::PaidIntents {
                intents: lock(&self.paid).intents(),
            }),
            Request::RefreshStart {
                suite,
                key_id,
                session,
                parties,
            } => self.refresh_start(from, suite, key_id, session, parties),
            Request::RefreshCommit {
                suite,
                key_id,
                session,
            } => self.refresh_commit(&suite, &key_id, session),
            Request::EcdsaAux { .. }
            | Request::EcdsaKeygen { .. }
            | Request::EcdsaPresign { .. }
            | Request::EcdsaSign { .. }
                if !self.ecdsa_on =>
            {
                Err(Abort::Policy(
                    "threshold ECDSA is off on this node (ecdsa = false)".into(),
                ))
            }
            Request::EcdsaAux { session } => self.ecdsa_aux(session),
            Request::EcdsaKeygen {
                key_id,
                wallet,
                session,
                threshold,
            } => self.ecdsa_keygen(key_id, wallet, session, threshold),
            Request::EcdsaPresign {
                key_id,
                session,
                parties,
            } => self.ecdsa_presign(key_id, session, parties),
            Request::Step { session, messages } => self.ecdsa_step(session, messages),
            Request::EcdsaSign {
                key_id,
                presignature,
                subject,
            } => self.ecdsa_sign(from, key_id, presignature, subject),
        }
    }

    /// Takes one of this hour's signatures, or refuses.
    fn rate_slot(&self) -> Result<(), Abort> {
        let mut recent = lock(&self.recent);
        while recent
            .front()
            .is_some_and(|t| t.elapsed() >= Duration::from_secs(3600))
        {
            recent.pop_front();
        }
        if recent.len() >= self.policy.signatures_per_hour as usize {
            return Err(Abort::Policy(format!(
                "{} signatures in the last hour, this node's limit",
                recent.len()
            )));
        }
        recent.push_back(Instant::now());
        Ok(())
    }

    fn open_all(&self, messages: &[Relayed]) -> Result<Vec<crate::Envelope>, Abort> {
        messages
            .iter()
            .map(|m| self.keys.open(self.index, m, &self.peers))
            .collect()
    }

    fn audit(&self, action: &str, subject: &str, details: serde_json::Value) -> Result<(), Abort> {
        lock(&self.audit)
            .append(action, subject, &details)
            .map_err(|e| Abort::Internal(format!("audit log: {e}")))
    }
}

/// A session's state while it is open.
#[derive(Debug)]
struct Open<T> {
    since: Instant,
    key_id: String,
    /// The wallet a key being made is for (empty for signing sessions).
    wallet: String,
    state: T,
}

impl<T> Open<T> {
    fn new(key_id: String, wallet: String, state: T) -> Open<T> {
        Open {
            since: Instant::now(),
            key_id,
            wallet,
            state,
        }
    }
}

/// What a share's envelope is bound to: the key and its wallet.
fn bound(key_id: &str, wallet: &str) -> String {
    format!("{key_id}@{wallet}")
}

/// Drops sessions older than [`SESSION_TTL`].
fn purge<T>(m: &mut HashMap<SessionId, Open<T>>) {
    m.retain(|_, o| o.since.elapsed() < SESSION_TTL);
}

/// Takes a session's state out (it goes back only if the step succeeds).
fn take<T>(
    m: &Mutex<HashMap<SessionId, Open<T>>>,
    session: &SessionId,
    missing: &str,
) -> Result<Open<T>, Abort> {
    let mut m = lock(m);
    purge(&mut m);
    m.remove(session)
        .ok_or_else(|| Abort::Parameters(missing.to_owned()))
}

/// A journal id for something that must happen once (domain-separated
/// from nonce ids).
fn once(kind: &[u8], session: &SessionId) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(kind);
    h.update(session.0);
    h.finalize().into()
}

fn short(s: &str) -> String {
    let mut out: String = s.chars().take(MAX_REASON).collect();
    if out.len() < s.len() {
        out.push('…');
    }
    out
}

/// The time, or a refusal when the clock reads before 1970 (approvals
/// would never expire against it).
fn now() -> Result<domain::Timestamp, Abort> {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .map(domain::Timestamp::from_millis)
        .ok_or_else(|| Abort::Internal("the system clock reads before 1970".into()))
}

fn binding(key_id: &str) -> Binding<'_> {
    Binding {
        kind: "mpc-share",
        id: key_id,
        version: 1,
    }
}

fn party(i: u16) -> Result<PartyIndex, Abort> {
    PartyIndex::new(i).ok_or_else(|| Abort::Parameters("party 0".into()))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether a server's hello is in this node's protocol.
fn hello(protocol: u16) -> Result<(), Abort> {
    if protocol == wire::PROTOCOL {
        return Ok(());
    }
    Err(Abort::Policy(format!(
        "this node speaks signer protocol {}, the server {protocol}: run the same Strongroom \
         version on both",
        wire::PROTOCOL
    )))
}

fn op_name(r: &Request) -> &'static str {
    match r {
        Request::Hello { .. } => "hello",
        Request::Info => "info",
        Request::DkgStart { .. } => "dkg_start",
        Request::DkgRound1 { .. } => "dkg_round1",
        Request::DkgRound2 { .. } => "dkg_round2",
        Request::Commit { .. } => "commit",
        Request::Sign { .. } => "sign",
        Request::EcdsaAux { .. } => "ecdsa_aux",
        Request::EcdsaKeygen { .. } => "ecdsa_keygen",
        Request::EcdsaPresign { .. } => "ecdsa_presign",
        Request::Step { .. } => "step",
        Request::EcdsaSign { .. } => "ecdsa_sign",
        Request::RefreshStart { .. } => "refresh_start",
        Request::RefreshCommit { .. } => "refresh_commit",
        Request::Epoch { .. } => "epoch",
        Request::PaidIntents => "paid_intents",
    }
}

#[derive(Debug)]
enum AnyDkg {
    Taproot(Dkg<Taproot>),
    Ed25519(Dkg<Ed25519>),
}

#[derive(Debug)]
enum AnyNonce {
    Taproot(PendingNonce<Taproot>),
    Ed25519(PendingNonce<Ed25519>),
}

/// Moves a suite's state in and out of the node's type-erased maps.
trait Erase: Suite + Sized {
    fn dkg_in(d: Dkg<Self>) -> AnyDkg;
    fn nonce_in(n: PendingNonce<Self>) -> AnyNonce;
    fn nonce_out(n: AnyNonce) -> Option<PendingNonce<Self>>;
}

impl Erase for Taproot {
    fn dkg_in(d: Dkg<Self>) -> AnyDkg {
        AnyDkg::Taproot(d)
    }
    fn nonce_in(n: PendingNonce<Self>) -> AnyNonce {
        AnyNonce::Taproot(n)
    }
    fn nonce_out(n: AnyNonce) -> Option<PendingNonce<Self>> {
        match n {
            AnyNonce::Taproot(n) => Some(n),
            AnyNonce::Ed25519(_) => None,
        }
    }
}

impl Erase for Ed25519 {
    fn dkg_in(d: Dkg<Self>) -> AnyDkg {
        AnyDkg::Ed25519(d)
    }
    fn nonce_in(n: PendingNonce<Self>) -> AnyNonce {
        AnyNonce::Ed25519(n)
    }
    fn nonce_out(n: AnyNonce) -> Option<PendingNonce<Self>> {
        match n {
            AnyNonce::Ed25519(n) => Some(n),
            AnyNonce::Taproot(_) => None,
        }
    }
}
