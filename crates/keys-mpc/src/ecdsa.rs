//! Threshold ECDSA on secp256k1 with CGGMP24 (the Lockness/Dfns crates,
//! pinned to the patched `=0.7.0-alpha.3`, ADR 0013).
//!
//! Four protocols, each run by every node on its own thread as a
//! `round_based` state machine that the coordinator steps by relaying the
//! messages the nodes emit (signed by their node and, point to point,
//! encrypted to their recipient — the same [`crate::wire::Relayed`] as
//! FROST's):
//!
//! - **auxiliary information** (Paillier and ring-Pedersen parameters),
//!   once per group of signers, from safe primes each node found itself
//!   ([`find_primes`], resumable) — or, in tests, primes kept as test data;
//! - **key generation**, threshold t of n, no dealer; each node completes its
//!   share with its auxiliary information and keeps it sealed;
//! - **presignatures** with exactly t signers, kept in memory only (a restart
//!   or a restore forgets them; none can be used twice);
//! - **signing** from a presignature: one message each, a partial signature
//!   over a message the node derives itself — never a bare hash
//!   (RUSTSEC-2025-0127) — after its co-signer checks, the presignature
//!   recorded as used (fsync) before the partial signature leaves.
//!
//! The coordinator checks each partial signature against the
//! presignature's public commitments, so a signer that sends a bad one is
//! named; the combined signature is checked against the group key by a
//! second implementation (`k256`) and given its recovery id.

use std::collections::VecDeque;
use std::sync::mpsc;
use std::time::Duration;

use cggmp24::generic_ec::coords::AlwaysHasAffineX as _;
use cggmp24::generic_ec::{NonZero, Point, Scalar};
use cggmp24::round_based::state_machine::{ProceedResult, StateMachine};
use cggmp24::round_based::{Incoming, MessageDestination, MessageType};
use cggmp24::signing::{PresignatureCommitment, PresignaturePublicData};
use cggmp24::{DataToSign, ExecutionId, PartialSignature, Presignature};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

use crate::envelope::{Abort, SessionId};

/// The curve.
pub type Secp256k1 = cggmp24::supported_curves::Secp256k1;
/// 128-bit security: 1536-bit safe primes, 3072-bit Paillier moduli.
pub type Level = cggmp24::security_level::SecurityLevel128;
pub type KeyShare = cggmp24::KeyShare<Secp256k1, Level>;
pub type AuxInfo = cggmp24::key_share::AuxInfo<Level>;
pub type Primes = cggmp24::PregeneratedPrimes<Level>;
type Integer = cggmp24::backend::Integer;

/// The suite's name on the wire and in storage.
pub const SUITE: &str = "cggmp24-secp256k1";

/// How long a protocol thread waits for the coordinator's next messages.
const STEP_WAIT: Duration = Duration::from_secs(300);
/// How long a node waits for its protocol thread to finish a step (the
/// auxiliary-information rounds take seconds of CPU each).
const STEP_WORK: Duration = Duration::from_secs(600);

/// The protocols' execution ids: the session, the protocol and its
/// context (key, wallet, parties), so that messages of one run mean
/// nothing in another and nodes told different contexts fail.
pub fn execution_id(kind: &str, session: &SessionId, context: &[&str]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"strongroom/cggmp24/");
    h.update(kind.as_bytes());
    h.update(b"\n");
    h.update(session.0);
    for c in context {
        h.update(b"\n");
        h.update(c.as_bytes());
    }
    h.finalize().into()
}

/// A message into a protocol run: the sender's index *in the protocol*
/// (0-based), whether it was broadcast, and its JSON (a key-generation
/// share among them: never printed).
pub(crate) struct Inbound {
    pub from: u16,
    pub broadcast: bool,
    pub body: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Inbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Inbound(from {}, broadcast {}, {} bytes)",
            self.from,
            self.broadcast,
            self.body.len()
        )
    }
}

/// A message out of a protocol run: its recipient's index in the
/// protocol, `None` for everyone.
pub(crate) struct Outbound {
    pub to: Option<u16>,
    pub body: Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Outbound(to {:?}, {} bytes)", self.to, self.body.len())
    }
}

/// What a protocol run produced.
pub(crate) enum Output {
    Aux(Box<AuxInfo>),
    Key(Box<cggmp24::IncompleteKeyShare<Secp256k1>>),
    Presignature(Box<Presignature<Secp256k1>>, PresignPublic),
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Output::Aux(_) => "Output::Aux",
            Output::Key(_) => "Output::Key",
            Output::Presignature(..) => "Output::Presignature",
        })
    }
}

/// One step's result: messages to send and, at the end, the output.
#[derive(Debug)]
pub(crate) struct Step {
    pub sends: Vec<Outbound>,
    pub done: Option<Result<Output, Abort>>,
}

/// A protocol running on its own thread, stepped by message batches.
/// Dropping it ends the thread at its next wait.
#[derive(Debug)]
pub(crate) struct Run {
    inbox: mpsc::Sender<Vec<Inbound>>,
    steps: mpsc::Receiver<Step>,
}

impl Run {
    /// Starts `protocol` on a thread and returns its first step.
    pub fn start(
        name: &str,
        protocol: impl FnOnce(&mpsc::Receiver<Vec<Inbound>>, &mpsc::Sender<Step>) + Send + 'static,
    ) -> Result<(Run, Step), Abort> {
        let (inbox, inbox_rx) = mpsc::channel();
        let (steps_tx, steps) = mpsc::channel();
        std::thread::Builder::new()
            .name(format!("cggmp-{name}"))
            .spawn(move || protocol(&inbox_rx, &steps_tx))
            .map_err(|e| Abort::Internal(format!("starting the protocol: {e}")))?;
        let run = Run { inbox, steps };
        let first = run.wait()?;
        Ok((run, first))
    }

    /// Gives the run the messages addressed to it; its next step.
    pub fn step(&self, messages: Vec<Inbound>) -> Result<Step, Abort> {
        self.inbox
            .send(messages)
            .map_err(|_| Abort::Internal("the protocol run has ended".into()))?;
        self.wait()
    }

    fn wait(&self) -> Result<Step, Abort> {
        self.steps
            .recv_timeout(STEP_WORK)
            .map_err(|_| Abort::Internal("the protocol run stopped answering".into()))
    }
}

/// Runs a state machine until it finishes, handing out its messages each
/// time it waits for more. Messages that do not parse end the run, named.
pub(crate) fn drive<SM, O, E>(
    mut sm: SM,
    inbox: &mpsc::Receiver<Vec<Inbound>>,
    steps: &mpsc::Sender<Step>,
) -> (Result<O, Abort>, Vec<Outbound>)
where
    SM: StateMachine<Output = Result<O, E>>,
    SM::Msg: Serialize + DeserializeOwned,
    E: std::fmt::Display + std::fmt::Debug,
{
    let mut pending: VecDeque<Inbound> = VecDeque::new();
    let mut sends: Vec<Outbound> = Vec::new();
    let mut next_id: u64 = 0;
    loop {
        match sm.proceed() {
            ProceedResult::SendMsg(out) => {
                let body = match serde_json::to_vec(&out.msg) {
                    Ok(b) => Zeroizing::new(b),
                    Err(e) => return (Err(Abort::Internal(e.to_string())), sends),
                };
                let to = match out.recipient {
                    MessageDestination::AllParties => None,
                    MessageDestination::OneParty(i) => Some(i),
                };
                sends.push(Outbound { to, body });
            }
            ProceedResult::NeedsOneMoreMessage => {
                let m = loop {
                    if let Some(m) = pending.pop_front() {
                        break m;
                    }
                    let out = Step {
                        sends: std::mem::take(&mut sends),
                        done: None,
                    };
                    if steps.send(out).is_err() {
                        return (Err(Abort::Internal("dropped".into())), Vec::new());
                    }
                    match inbox.recv_timeout(STEP_WAIT) {
                        Ok(batch) => pending.extend(batch),
                        Err(_) => {
                            return (Err(Abort::Internal("no more messages".into())), Vec::new());
                        }
                    }
                };
                let from = m.from;
                let Ok(msg) = serde_json::from_slice::<SM::Msg>(&m.body) else {
                    return (
                        Err(Abort::Malformed {
                            from: from.saturating_add(1),
                            what: "not a message of this protocol".into(),
                        }),
                        sends,
                    );
                };
                let incoming = Incoming {
                    id: next_id,
                    sender: from,
                    msg_type: if m.broadcast {
                        MessageType::Broadcast
                    } else {
                        MessageType::P2P
                    },
                    msg,
                };
                next_id += 1;
                if sm.received_msg(incoming).is_err() {
                    return (
                        Err(Abort::Internal("the protocol refused a message".into())),
                        sends,
                    );
                }
            }
            ProceedResult::Output(Ok(o)) => return (Ok(o), sends),
            ProceedResult::Output(Err(e)) => {
                // The library names the parties whose proofs failed (an
                // auxiliary-information modulus with small factors, a bad
                // range proof): they are blamed, as a bad share is.
                let culprits = blamed(&format!("{e:?}"));
                let abort = if culprits.is_empty() {
                    Abort::Protocol(e.to_string())
                } else {
                    Abort::Blamed {
                        culprits,
                        why: e.to_string(),
                    }
                };
                return (Err(abort), sends);
            }
            ProceedResult::Yielded => {}
            ProceedResult::Error(e) => return (Err(Abort::Internal(e.to_string())), sends),
        }
    }
}

/// The parties a CGGMP error blames: its `AbortBlame`s' `faulty_party`
/// (0-based in the library, 1-based here), read from the error's debug
/// form (the library keeps the blame in private types).
fn blamed(debug: &str) -> Vec<crate::PartyIndex> {
    let mut out: Vec<crate::PartyIndex> = debug
        .split("faulty_party: ")
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let index: u16 = digits.parse().ok()?;
            crate::PartyIndex::new(index.checked_add(1)?)
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Finishes a run on its thread: the last messages and the output.
pub(crate) fn finish<O>(
    steps: &mpsc::Sender<Step>,
    (result, sends): (Result<O, Abort>, Vec<Outbound>),
    wrap: impl FnOnce(O) -> Output,
) {
    let _ = steps.send(Step {
        sends,
        done: Some(result.map(wrap)),
    });
}

/// The auxiliary-information protocol for party `i` (0-based) of `n`.
pub(crate) fn aux(eid: [u8; 32], i: u16, n: u16, primes: Primes) -> Result<(Run, Step), Abort> {
    Run::start("aux", move |inbox, steps| {
        let mut rng = crate::os_rng();
        let sm = cggmp24::aux_info_gen(ExecutionId::new(&eid), i, n, primes)
            .into_state_machine(&mut rng);
        finish(steps, drive(sm, inbox, steps), |a| Output::Aux(Box::new(a)));
    })
}

/// Threshold key generation for party `i` (0-based) of `n`.
pub(crate) fn keygen(eid: [u8; 32], i: u16, n: u16, t: u16) -> Result<(Run, Step), Abort> {
    Run::start("keygen", move |inbox, steps| {
        let mut rng = crate::os_rng();
        let sm = cggmp24::keygen::<Secp256k1>(ExecutionId::new(&eid), i, n)
            .set_threshold(t)
            .into_state_machine(&mut rng);
        finish(steps, drive(sm, inbox, steps), |k| Output::Key(Box::new(k)));
    })
}

/// A presignature with `share`, by signer `i` (0-based) of the signers
/// whose key-generation indices are `at_keygen`.
pub(crate) fn presign(
    eid: [u8; 32],
    i: u16,
    at_keygen: Vec<u16>,
    share: Box<KeyShare>,
) -> Result<(Run, Step), Abort> {
    Run::start("presign", move |inbox, steps| {
        let mut rng = crate::os_rng();
        let sm = cggmp24::signing(ExecutionId::new(&eid), i, &at_keygen, &share)
            .generate_presignature_sync(&mut rng);
        let (r, sends) = drive(sm, inbox, steps);
        let r = r.and_then(|(p, public)| Ok((p, PresignPublic::from_data(&public)?)));
        finish(steps, (r, sends), |(p, public)| {
            Output::Presignature(Box::new(p), public)
        });
    })
}

/// A presignature's public part, as nodes report it and the coordinator
/// keeps it: Γ and each signer's commitments (compressed points, hex), in
/// the order of the signers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresignPublic {
    pub gamma: String,
    pub commitments: Vec<[String; 2]>,
}

impl PresignPublic {
    fn from_data(d: &PresignaturePublicData<Secp256k1>) -> Result<PresignPublic, Abort> {
        Ok(PresignPublic {
            gamma: hex::encode(d.Gamma.to_bytes(true)),
            commitments: d
                .commitments
                .iter()
                .map(|c| {
                    [
                        hex::encode(c.tilde_Delta.to_bytes(true)),
                        hex::encode(c.tilde_S.to_bytes(true)),
                    ]
                })
                .collect(),
        })
    }

    fn to_data(&self) -> Result<PresignaturePublicData<Secp256k1>, Abort> {
        let point = |h: &str| {
            hex::decode(h)
                .ok()
                .and_then(|b| Point::<Secp256k1>::from_bytes(b).ok())
                .ok_or_else(|| Abort::Internal("presignature: not a point".into()))
        };
        Ok(PresignaturePublicData {
            Gamma: NonZero::from_point(point(&self.gamma)?)
                .ok_or_else(|| Abort::Internal("presignature: Γ is zero".into()))?,
            commitments: self
                .commitments
                .iter()
                .map(|[d, s]| {
                    Ok(PresignatureCommitment {
                        tilde_Delta: point(d)?,
                        tilde_S: point(s)?,
                    })
                })
                .collect::<Result<_, Abort>>()?,
        })
    }
}

/// A signer's partial signature over `preimage` (hashed with keccak-256,
/// as Ethereum does) from its presignature, which this consumes.
pub(crate) fn partial(p: Presignature<Secp256k1>, preimage: &[u8]) -> String {
    let m = DataToSign::<Secp256k1>::digest::<sha3::Keccak256>(preimage);
    hex::encode(p.issue_partial_signature(m).sigma.to_be_bytes())
}

/// An ECDSA signature ready for Ethereum: low S, with the recovery id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcdsaSignature {
    pub r: [u8; 32],
    pub s: [u8; 32],
    pub recovery_id: u8,
}

/// The coordinator's side: checks each signer's partial signature
/// (`partials[j]` from the j-th signer of the presignature, named by
/// `parties[j]`) against the presignature's commitments, combines them,
/// and checks the signature over `preimage` under `public_key` (SEC1
/// compressed) with `k256`.
pub fn combine(
    public: &PresignPublic,
    parties: &[u16],
    partials: &[String],
    preimage: &[u8],
    public_key: &[u8; 33],
) -> Result<EcdsaSignature, Abort> {
    let data = public.to_data()?;
    if partials.len() != data.commitments.len() || parties.len() != partials.len() {
        return Err(Abort::Internal(
            "one partial signature per signer is needed".into(),
        ));
    }
    let m = DataToSign::<Secp256k1>::digest::<sha3::Keccak256>(preimage);
    let r = data.Gamma.x().to_scalar();
    let ms = DataToSign::<Secp256k1>::digest::<sha3::Keccak256>(preimage).to_scalar();
    let mut sigs = Vec::with_capacity(partials.len());
    let mut culprits = Vec::new();
    for ((hex_sigma, c), party) in partials.iter().zip(&data.commitments).zip(parties) {
        let sigma = hex::decode(hex_sigma)
            .ok()
            .filter(|b| b.len() == 32)
            .and_then(|b| Scalar::<Secp256k1>::from_be_bytes(b).ok());
        let Some(sigma) = sigma else {
            return Err(Abort::Malformed {
                from: *party,
                what: "partial signature is not a scalar".into(),
            });
        };
        // The check `combine` makes for all at once, one signer at a time,
        // so the one that cheated is named.
        if sigma * data.Gamma != ms * c.tilde_Delta + r * c.tilde_S {
            culprits.push(*party);
        }
        sigs.push(PartialSignature { sigma });
    }
    if !culprits.is_empty() {
        let culprits = culprits
            .into_iter()
            .filter_map(crate::PartyIndex::new)
            .collect();
        return Err(Abort::InvalidShares { culprits });
    }
    let sig = PartialSignature::combine(&sigs, &data, m)
        .ok_or_else(|| Abort::Internal("the partial signatures do not combine".into()))?;
    let pk = Point::<Secp256k1>::from_bytes(public_key)
        .map_err(|_| Abort::Internal("the group key is not a point".into()))?;
    sig.verify(&pk, &m)
        .map_err(|_| Abort::Internal("the combined signature does not verify".into()))?;
    let mut rs = [0u8; 64];
    sig.write_to_slice(&mut rs);
    let (r, s) = rs.split_at(32);
    let (r, s): ([u8; 32], [u8; 32]) = (
        r.try_into().map_err(|_| Abort::Internal("r".into()))?,
        s.try_into().map_err(|_| Abort::Internal("s".into()))?,
    );
    recovery(r, s, preimage, public_key)
}

/// Checks `(r, s)` with `k256` (a second implementation) and finds the
/// recovery id that gives back `public_key`.
fn recovery(
    r: [u8; 32],
    s: [u8; 32],
    preimage: &[u8],
    public_key: &[u8; 33],
) -> Result<EcdsaSignature, Abort> {
    use k256::ecdsa::{RecoveryId, Signature, VerifyingKey};
    let bad = |w: &str| Abort::Internal(format!("signature: {w}"));
    let sig = Signature::from_scalars(r, s).map_err(|_| bad("not r and s"))?;
    if sig.normalize_s().is_some() {
        return Err(bad("high S"));
    }
    let vk = VerifyingKey::from_sec1_bytes(public_key).map_err(|_| bad("group key"))?;
    let prehash: [u8; 32] = <sha3::Keccak256 as sha3::Digest>::digest(preimage).into();
    use k256::ecdsa::signature::hazmat::PrehashVerifier as _;
    vk.verify_prehash(&prehash, &sig)
        .map_err(|_| bad("k256 does not verify it"))?;
    for id in 0..2u8 {
        let rid = RecoveryId::from_byte(id).ok_or_else(|| bad("recovery id"))?;
        if VerifyingKey::recover_from_prehash(&prehash, &sig, rid).is_ok_and(|k| k == vk) {
            return Ok(EcdsaSignature {
                r,
                s,
                recovery_id: id,
            });
        }
    }
    Err(bad("no recovery id gives back the key"))
}

/// A key's group public key, SEC1 compressed.
pub(crate) fn group_key(share: &KeyShare) -> [u8; 33] {
    let b = share.shared_public_key.to_bytes(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(&b);
    out
}

/// Safe primes for one node's auxiliary information, searched one at a
/// time; `found` is called with each (to be kept, so a restarted search
/// resumes where it was), `progress` with how many there are.
pub fn find_primes(
    mut have: Vec<String>,
    mut found: impl FnMut(&[String]) -> std::io::Result<()>,
) -> Result<Primes, String> {
    use cggmp24::security_level::SecurityLevel as _;
    let mut rng = crate::os_rng();
    while have.len() < 4 {
        let p = Integer::generate_safe_prime(&mut rng, Level::RSA_PRIME_BITLEN);
        have.push(serde_json::to_string(&p).map_err(|e| e.to_string())?);
        found(&have).map_err(|e| format!("keeping a safe prime: {e}"))?;
        tracing::info!(found = have.len(), of = 4, "safe prime found");
    }
    primes_from(&have)
}

/// Primes as [`find_primes`] keeps them (JSON of each integer).
pub fn primes_from(have: &[String]) -> Result<Primes, String> {
    let ints: Vec<Integer> = have
        .iter()
        .map(|s| serde_json::from_str(s).map_err(|e| format!("a kept prime: {e}")))
        .collect::<Result<_, _>>()?;
    let arr: [Integer; 4] = ints
        .try_into()
        .map_err(|_| "four primes are needed".to_owned())?;
    Primes::try_from(arr).map_err(|_| "a kept prime is too small".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The blame as cggmp24 prints it for an auxiliary-information run
    /// whose party 2 (index 1) revealed another modulus than it committed
    /// to (what the `BadAuxModulus` fault does).
    #[test]
    fn the_library_s_blame_names_the_culprits() {
        let debug = "KeyRefreshError(Aborted(ProtocolAborted { reason: InvalidDecommitment, \
                     parties: [AbortBlame { faulty_party: 1, data_message: 4, proof_message: 9 }, \
                     AbortBlame { faulty_party: 1, data_message: 5, proof_message: 9 }] }))";
        let two = crate::PartyIndex::new(2).into_iter().collect::<Vec<_>>();
        assert_eq!(blamed(debug), two);
        assert!(blamed("KeyRefreshError(IoError(..))").is_empty());
        assert!(blamed("faulty_party: 65535").is_empty(), "no party 65536");
        let abort = Abort::Blamed {
            culprits: two.clone(),
            why: "key refresh protocol failed to complete".into(),
        };
        assert_eq!(abort.culprits(), two);
    }
}
