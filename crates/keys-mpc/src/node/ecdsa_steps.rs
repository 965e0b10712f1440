//! A signer node's side of threshold ECDSA (CGGMP24): its safe primes and
//! auxiliary information, key generation, presignatures, and partial
//! signatures after the co-signer checks.

use std::collections::HashMap;
use std::sync::Mutex;

use cggmp24::key_share::AnyKeyShare as _;
use keys::envelope as sealed;

use super::{Node, Open, binding, bound, check_key_id, lock, now, once, purge, take};
use crate::cosign;
use crate::ecdsa::{self, Inbound, Output, Run, SUITE};
use crate::envelope::{Abort, Envelope, Round, SessionId};
use crate::wire::{Relayed, Response, StepOutput};

/// Presignatures a node keeps at once (across keys): a coordinator cannot
/// grow it without end. They are in memory only.
const MAX_PRESIGNATURES: usize = 4096;
/// A presignature not used within this long is forgotten (the coordinator
/// takes another).
const PRESIGNATURE_TTL: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A running ECDSA protocol: its thread, and the parties in protocol order.
#[derive(Debug)]
pub(super) struct EcdsaRun {
    run: Run,
    members: Vec<u16>,
    /// `aux`, `keygen` or `presign`: bound into every message's suite.
    kind: &'static str,
}

/// A presignature waiting for its message, with the parties that made it.
pub(super) struct Presig {
    presignature: Box<cggmp24::Presignature<ecdsa::Secp256k1>>,
    parties: Vec<u16>,
}

impl std::fmt::Debug for Presig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Presig(<secret>, parties {:?})", self.parties)
    }
}

#[derive(Debug, Default)]
pub(super) struct EcdsaState {
    pub runs: Mutex<HashMap<SessionId, Open<EcdsaRun>>>,
    pub presigs: Mutex<HashMap<SessionId, Open<Presig>>>,
}

const PRIMES: &str = "ecdsa-primes.sealed";
const AUX: &str = "ecdsa-aux.sealed";

impl Node {
    /// Whether this node has its auxiliary information, and how many of
    /// its four safe primes it has found.
    pub fn ecdsa_status(&self) -> Result<(bool, usize), Abort> {
        let aux = self.dir.join(AUX).exists();
        Ok((aux, self.kept_primes()?.len()))
    }

    /// Searches for this node's safe primes (minutes of CPU), keeping each
    /// as found: a search stopped midway resumes where it was. Nothing to
    /// do once the auxiliary information exists.
    pub fn find_primes(&self) -> Result<(), Abort> {
        if self.dir.join(AUX).exists() {
            return Ok(());
        }
        let have = self.kept_primes()?;
        if have.len() >= 4 {
            return Ok(());
        }
        ecdsa::find_primes(have, |found| {
            self.keep_primes(found)
                .map_err(|e| std::io::Error::other(e.to_string()))
        })
        .map_err(Abort::Internal)?;
        self.audit(
            "mpc.ecdsa.primes",
            &format!("party:{}", self.index),
            serde_json::json!({ "found": 4 }),
        )
    }

    /// Uses published primes (test data) instead of searching: for tests
    /// only — anyone who has read them knows this node's Paillier secret.
    /// Audited as such. Test builds only (feature `test-hooks`).
    #[cfg(feature = "test-hooks")]
    pub fn use_test_primes(&self, primes: &[String]) -> Result<(), Abort> {
        ecdsa::primes_from(primes).map_err(Abort::Parameters)?;
        self.keep_primes(primes)?;
        self.audit(
            "mpc.ecdsa.test_primes",
            &format!("party:{}", self.index),
            serde_json::json!({ "warning": "published primes: for tests only" }),
        )
    }

    /// This node's auxiliary information, to keep as test data (tests only).
    #[cfg(feature = "test-support")]
    pub fn test_aux(&self) -> Result<String, Abort> {
        serde_json::to_string(&self.aux_info()?).map_err(|e| Abort::Internal(e.to_string()))
    }

    /// Uses published auxiliary information (test data) instead of running
    /// the ceremony: tests only, audited as such.
    #[cfg(feature = "test-support")]
    pub fn use_test_aux(&self, aux: &str) -> Result<(), Abort> {
        let aux: ecdsa::AuxInfo =
            serde_json::from_str(aux).map_err(|e| Abort::Parameters(e.to_string()))?;
        self.keep_aux(&aux)?;
        self.audit(
            "mpc.ecdsa.test_aux",
            &format!("party:{}", self.index),
            serde_json::json!({ "warning": "published auxiliary information: for tests only" }),
        )
    }

    fn keep_aux(&self, aux: &ecdsa::AuxInfo) -> Result<(), Abort> {
        // Keys are completed with it: it is never replaced.
        if self.dir.join(AUX).exists() {
            return Err(Abort::Parameters(
                "this node has its auxiliary information".into(),
            ));
        }
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(aux).map_err(|e| Abort::Internal(e.to_string()))?,
        );
        let b = sealed::seal(&self.store_key, binding("ecdsa-aux"), &json)
            .map_err(|e| Abort::Internal(e.to_string()))?;
        crate::journal::replace_file(&self.dir.join(AUX), &b)
            .map_err(|e| Abort::Internal(format!("keeping aux info: {e}")))
    }

    fn kept_primes(&self) -> Result<Vec<String>, Abort> {
        match std::fs::read(self.dir.join(PRIMES)) {
            Ok(b) => {
                let plain = sealed::open(&self.store_key, binding("ecdsa-primes"), &b)
                    .map_err(|_| Abort::Internal("the kept primes do not open".into()))?;
                serde_json::from_slice(&plain).map_err(|e| Abort::Internal(e.to_string()))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(Abort::Internal(e.to_string())),
        }
    }

    fn keep_primes(&self, primes: &[String]) -> Result<(), Abort> {
        let json = zeroize::Zeroizing::new(
            serde_json::to_vec(primes).map_err(|e| Abort::Internal(e.to_string()))?,
        );
        let b = sealed::seal(&self.store_key, binding("ecdsa-primes"), &json)
            .map_err(|e| Abort::Internal(e.to_string()))?;
        crate::journal::replace_file(&self.dir.join(PRIMES), &b)
            .map_err(|e| Abort::Internal(format!("keeping primes: {e}")))
    }

    fn aux_info(&self) -> Result<ecdsa::AuxInfo, Abort> {
        let b = std::fs::read(self.dir.join(AUX)).map_err(|_| {
            Abort::Parameters(
                "this node has no auxiliary information for ECDSA yet (run the ceremony)".into(),
            )
        })?;
        let plain = sealed::open(&self.store_key, binding("ecdsa-aux"), &b)
            .map_err(|_| Abort::Internal("the auxiliary information does not open".into()))?;
        serde_json::from_slice(&plain).map_err(|e| Abort::Internal(e.to_string()))
    }

    fn load_ecdsa(&self, key_id: &str) -> Result<(ecdsa::KeyShare, String), Abort> {
        let (plain, wallet) = self.load_bytes(key_id)?;
        let share: ecdsa::KeyShare = serde_json::from_slice(&plain)
            .map_err(|_| Abort::Parameters(format!("key {key_id} is not an ECDSA key")))?;
        Ok((share, wallet))
    }

    /// Starts the auxiliary-information protocol among all the parties.
    pub(super) fn ecdsa_aux(&self, session: SessionId) -> Result<Response, Abort> {
        if self.dir.join(AUX).exists() {
            return Err(Abort::Parameters(
                "this node has its auxiliary information".into(),
            ));
        }
        let kept = self.kept_primes()?;
        if kept.len() < 4 {
            return Err(Abort::Parameters(format!(
                "this node has found {} of its 4 safe primes: try again when it has all",
                kept.len()
            )));
        }
        if lock(&self.ecdsa.runs)
            .values()
            .any(|o| o.state.kind == "aux")
        {
            return Err(Abort::Parameters(
                "an auxiliary-information ceremony is running".into(),
            ));
        }
        let primes = ecdsa::primes_from(&kept).map_err(Abort::Internal)?;
        self.once(b"ecdsa-session", &session)?;
        let eid = ecdsa::execution_id("aux", &session, &[&self.n.to_string()]);
        let members: Vec<u16> = (1..=self.n).collect();
        let (run, step) = ecdsa::aux(eid, self.index - 1, self.n, primes)?;
        self.started(
            session,
            String::new(),
            String::new(),
            ("aux", run, members),
            step,
        )
    }

    /// Starts a key-generation ceremony among all the parties.
    pub(super) fn ecdsa_keygen(
        &self,
        key_id: String,
        wallet: String,
        session: SessionId,
        threshold: u16,
    ) -> Result<Response, Abort> {
        let wallet = self.check_new_key(&key_id, &wallet, threshold)?;
        self.aux_info()?;
        self.once(b"ecdsa-session", &session)?;
        let eid = ecdsa::execution_id(
            "keygen",
            &session,
            &[
                &key_id,
                &wallet,
                &threshold.to_string(),
                &self.n.to_string(),
            ],
        );
        let members: Vec<u16> = (1..=self.n).collect();
        let (run, step) = ecdsa::keygen(eid, self.index - 1, self.n, threshold)?;
        self.audit(
            "mpc.dkg.started",
            &format!("mpc-key:{key_id}"),
            serde_json::json!({ "suite": SUITE, "threshold": threshold, "wallet": wallet,
                "parties": self.n }),
        )?;
        self.started(session, key_id, wallet, ("keygen", run, members), step)
    }

    /// Starts a presignature with exactly the key's threshold of parties.
    pub(super) fn ecdsa_presign(
        &self,
        key_id: String,
        session: SessionId,
        mut parties: Vec<u16>,
    ) -> Result<Response, Abort> {
        check_key_id(&key_id)?;
        let (share, _) = self.load_ecdsa(&key_id)?;
        parties.sort_unstable();
        parties.dedup();
        if parties.len() != usize::from(share.min_signers())
            || parties.iter().any(|p| *p == 0 || *p > self.n)
        {
            return Err(Abort::Parameters(format!(
                "a presignature takes exactly {} distinct parties of 1 to {}",
                share.min_signers(),
                self.n
            )));
        }
        let Some(i) = parties.iter().position(|p| *p == self.index) else {
            return Err(Abort::Parameters(
                "this node is not one of the parties".into(),
            ));
        };
        self.once(b"ecdsa-session", &session)?;
        let names: Vec<String> = parties.iter().map(u16::to_string).collect();
        let mut context: Vec<&str> = vec![&key_id];
        context.extend(names.iter().map(String::as_str));
        let eid = ecdsa::execution_id("presign", &session, &context);
        let at_keygen: Vec<u16> = parties.iter().map(|p| p - 1).collect();
        let i = u16::try_from(i).map_err(|_| Abort::Internal("index".into()))?;
        let (run, step) = ecdsa::presign(eid, i, at_keygen, Box::new(share))?;
        self.started(
            session,
            key_id,
            String::new(),
            ("presign", run, parties),
            step,
        )
    }

    /// Records a run and answers with its first messages.
    fn started(
        &self,
        session: SessionId,
        key_id: String,
        wallet: String,
        (kind, run, members): (&'static str, Run, Vec<u16>),
        step: ecdsa::Step,
    ) -> Result<Response, Abort> {
        let open = Open::new(key_id, wallet, EcdsaRun { run, members, kind });
        self.answer_step(session, open, step)
    }

    /// The next step of a run, with the messages the coordinator relayed.
    pub(super) fn ecdsa_step(
        &self,
        session: SessionId,
        messages: Vec<Relayed>,
    ) -> Result<Response, Abort> {
        let open = take(&self.ecdsa.runs, &session, "no such ECDSA session")?;
        let mut inbound = Vec::with_capacity(messages.len());
        for m in &messages {
            let e: Envelope = self.keys.open(self.index, m, &self.peers)?;
            let Some(from) = open.state.members.iter().position(|p| *p == e.from) else {
                return Err(Abort::NotAParty { from: e.from });
            };
            let suite = format!("{SUITE}/{}", open.state.kind);
            let body = e.open(&suite, session, Round::Mpc, self.index, e.to.is_none())?;
            inbound.push(Inbound {
                from: u16::try_from(from).map_err(|_| Abort::Internal("index".into()))?,
                broadcast: e.to.is_none(),
                body: zeroize::Zeroizing::new(body),
            });
        }
        let step = open.state.run.step(inbound)?;
        self.answer_step(session, open, step)
    }

    /// Seals a step's messages; keeps the run if it goes on, or what it
    /// made if it finished.
    fn answer_step(
        &self,
        session: SessionId,
        mut open: Open<EcdsaRun>,
        step: ecdsa::Step,
    ) -> Result<Response, Abort> {
        let suite = format!("{SUITE}/{}", open.state.kind);
        let mut messages = Vec::with_capacity(step.sends.len());
        for out in &step.sends {
            #[cfg(feature = "test-hooks")]
            let body =
                if self.fault == Some(super::Fault::BadAuxModulus) && open.state.kind == "aux" {
                    zeroize::Zeroizing::new(small_factor_modulus(&out.body))
                } else {
                    out.body.clone()
                };
            #[cfg(not(feature = "test-hooks"))]
            let body = out.body.clone();
            let to = match out.to {
                None => None,
                Some(i) => {
                    let party = open
                        .state
                        .members
                        .get(usize::from(i))
                        .copied()
                        .ok_or_else(|| Abort::Internal("a message to no party".into()))?;
                    Some(
                        self.peers
                            .get(&party)
                            .ok_or_else(|| Abort::Internal("a message to no peer".into()))?,
                    )
                }
            };
            let e = Envelope::new(
                &suite,
                session,
                Round::Mpc,
                self.index,
                to.map(|p| p.index),
                &body,
            );
            messages.push(self.keys.seal(&e, to)?);
        }
        let output = match step.done {
            None => {
                let mut runs = lock(&self.ecdsa.runs);
                purge(&mut runs);
                if runs.len() >= super::MAX_OPEN {
                    return Err(Abort::Parameters("too many ECDSA sessions open".into()));
                }
                // A run that moves is alive: its time counts from its last
                // step (the auxiliary-information rounds are long).
                open.since = std::time::Instant::now();
                runs.insert(session, open);
                None
            }
            // The run names a sender by its place among the members.
            Some(Err(Abort::Malformed { from, what })) => {
                let party = usize::from(from)
                    .checked_sub(1)
                    .and_then(|i| open.state.members.get(i))
                    .copied()
                    .unwrap_or(0);
                return Err(Abort::Malformed { from: party, what });
            }
            // Blamed by their places among the members, too.
            Some(Err(Abort::Blamed { culprits, why })) => {
                let culprits = culprits
                    .iter()
                    .filter_map(|p| {
                        let party = open
                            .state
                            .members
                            .get(usize::from(p.get()).checked_sub(1)?)?;
                        crate::PartyIndex::new(*party)
                    })
                    .collect();
                return Err(Abort::Blamed { culprits, why });
            }
            Some(Err(e)) => return Err(e),
            Some(Ok(made)) => Some(self.made(session, open, made)?),
        };
        Ok(Response::Step { messages, output })
    }

    fn made(
        &self,
        session: SessionId,
        open: Open<EcdsaRun>,
        made: Output,
    ) -> Result<StepOutput, Abort> {
        match made {
            Output::Aux(aux) => {
                self.keep_aux(&aux)?;
                // The primes are in the auxiliary information now; they are
                // never used for another.
                let _ = std::fs::remove_file(self.dir.join(PRIMES));
                self.audit(
                    "mpc.ecdsa.aux",
                    &format!("party:{}", self.index),
                    serde_json::json!({ "parties": self.n }),
                )?;
                Ok(StepOutput::Aux)
            }
            Output::Key(incomplete) => {
                let share = ecdsa::KeyShare::from_parts((*incomplete, self.aux_info()?))
                    .map_err(|e| Abort::Internal(format!("completing the share: {e}")))?;
                let public_key = hex::encode(ecdsa::group_key(&share));
                let plain = zeroize::Zeroizing::new(
                    serde_json::to_vec(&share).map_err(|e| Abort::Internal(e.to_string()))?,
                );
                self.keep_bytes(
                    &open.key_id,
                    &open.wallet,
                    &plain,
                    serde_json::json!({ "suite": SUITE, "group_key": public_key,
                        "wallet": open.wallet, "threshold": share.min_signers(),
                        "parties": share.n() }),
                )?;
                Ok(StepOutput::Key {
                    key_id: open.key_id,
                    public_key,
                })
            }
            Output::Presignature(presignature, public) => {
                let mut presigs = lock(&self.ecdsa.presigs);
                // Old ones go first: a run that ended without the
                // coordinator pooling its result must not fill the node.
                presigs.retain(|_, o| o.since.elapsed() < PRESIGNATURE_TTL);
                if presigs.len() >= MAX_PRESIGNATURES
                    && let Some(oldest) =
                        presigs.iter().min_by_key(|(_, o)| o.since).map(|(k, _)| *k)
                {
                    presigs.remove(&oldest);
                }
                presigs.insert(
                    session,
                    Open::new(
                        open.key_id.clone(),
                        String::new(),
                        Presig {
                            presignature,
                            parties: open.state.members,
                        },
                    ),
                );
                Ok(StepOutput::Presignature {
                    key_id: open.key_id,
                    public,
                })
            }
        }
    }

    /// A partial signature from a kept presignature, over the message this
    /// node derives from `subject` after checking it.
    pub(super) fn ecdsa_sign(
        &self,
        from: crate::net::Fingerprint,
        key_id: String,
        presignature: SessionId,
        subject: cosign::Subject,
    ) -> Result<Response, Abort> {
        let open = {
            let mut presigs = lock(&self.ecdsa.presigs);
            presigs
                .remove(&presignature)
                .ok_or_else(|| Abort::Parameters(crate::cluster::NO_PRESIGNATURE.into()))?
        };
        if open.key_id != key_id {
            return Err(Abort::PackageRefused(
                "the presignature was made for another key".into(),
            ));
        }
        // Until the journal takes it, a refused request leaves the
        // presignature unused: it goes back.
        let put_back = |open: Open<Presig>| {
            lock(&self.ecdsa.presigs).insert(presignature, open);
        };
        let checked = (|| {
            if self.dir.join("frozen").try_exists().unwrap_or(true) {
                return Err(Abort::Policy("this node is frozen by its operator".into()));
            }
            let (share, wallet) = self.load_ecdsa(&key_id)?;
            let key = ecdsa::group_key(&share);
            cosign::check_ethereum(&self.policy, &key, &wallet, &subject, now()?)
        })();
        let checked = match checked {
            Ok(c) => c,
            Err(e) => {
                put_back(open);
                return Err(e);
            }
        };
        // The paid journal is held from its check to its record: two
        // requests paying one intent at once cannot both pass.
        let mut paid = lock(&self.paid);
        if let Err(e) = paid.check(&checked) {
            drop(paid);
            put_back(open);
            return Err(e);
        }
        // Over the hourly limit: refused with the presignature unused.
        if let Err(e) = self.rate_slot() {
            drop(paid);
            put_back(open);
            return Err(e);
        }
        // Used, on disk, before anything of it leaves.
        self.once(b"ecdsa-presignature", &presignature)?;
        let Open {
            state: Presig {
                presignature: p, ..
            },
            ..
        } = open;
        let sigma = if self.fault == Some(super::Fault::BadShare) {
            "01".repeat(32)
        } else {
            ecdsa::partial(*p, &checked.message)
        };
        paid.record(&checked)
            .map_err(|e| Abort::Journal(format!("paid intents: {e}")))?;
        drop(paid);
        self.audit(
            "mpc.sign.share",
            &format!("mpc-key:{key_id}"),
            serde_json::json!({ "presignature": String::from(presignature),
                "signed": checked.summary, "server": from.to_string() }),
        )?;
        Ok(Response::Partial { sigma })
    }

    /// Records `session` as used for `kind`, durably; refuses a second use.
    pub(super) fn once(&self, kind: &[u8], session: &SessionId) -> Result<(), Abort> {
        lock(&self.journal)
            .consume(&once(kind, session))
            .map_err(|e| match e {
                crate::journal::JournalError::Used => {
                    Abort::Parameters("this session id was used before".into())
                }
                e => Abort::Journal(e.to_string()),
            })
    }
}

/// Checks a new key's parameters for this node: the key id, a threshold
/// over half the parties, the wallet id; no key of that id here yet.
impl Node {
    pub(super) fn check_new_key(
        &self,
        key_id: &str,
        wallet: &str,
        threshold: u16,
    ) -> Result<String, Abort> {
        check_key_id(key_id)?;
        // Each node's own records (paid intents, the key's wallet) protect
        // only if every signing quorum includes a node of every other: two
        // quorums must overlap.
        if u32::from(threshold) * 2 <= u32::from(self.n) {
            return Err(Abort::Parameters(format!(
                "threshold {threshold} of {}: more than half the signers must sign",
                self.n
            )));
        }
        let wallet = wallet
            .parse::<domain::WalletId>()
            .map_err(|_| Abort::Parameters("wallet: not a wallet id".into()))?
            .to_string();
        if self.share_path(key_id).exists() {
            return Err(Abort::Parameters(format!("key {key_id} exists")));
        }
        Ok(wallet)
    }

    pub(super) fn seal_share(
        &self,
        key_id: &str,
        wallet: &str,
        plain: &[u8],
    ) -> Result<Vec<u8>, Abort> {
        sealed::seal(&self.store_key, binding(&bound(key_id, wallet)), plain)
            .map_err(|e| Abort::Internal(e.to_string()))
    }
}

/// A protocol message with every Paillier modulus (`N`, as the library
/// writes big integers: `{"radix":16,"value":…}`) multiplied by 3: a
/// modulus with a small factor, for the BitForge fault (test builds only).
/// Anything else is sent as it was.
#[cfg(feature = "test-hooks")]
fn small_factor_modulus(body: &[u8]) -> Vec<u8> {
    fn times_three(hex: &str) -> Option<String> {
        let mut out = Vec::with_capacity(hex.len() + 1);
        let mut carry = 0u32;
        for c in hex.chars().rev() {
            let d = c.to_digit(16)? * 3 + carry;
            out.push(std::char::from_digit(d % 16, 16)?);
            carry = d / 16;
        }
        if carry > 0 {
            out.push(std::char::from_digit(carry, 16)?);
        }
        Some(out.into_iter().rev().collect())
    }
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, x) in map.iter_mut() {
                    if k == "N"
                        && let Some(hex) = x["value"].as_str().and_then(times_three)
                    {
                        x["value"] = serde_json::Value::String(hex);
                    } else {
                        walk(x);
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut v) => {
            walk(&mut v);
            serde_json::to_vec(&v).unwrap_or_else(|_| body.to_vec())
        }
        Err(_) => body.to_vec(),
    }
}
