//! What travels between a coordinator and signer nodes: node identities,
//! requests and responses, and protocol messages relayed by the
//! coordinator — signed by their sending node and, when addressed to one
//! node, encrypted to it, so the relay can neither forge nor read them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::envelope::{Abort, Envelope, SessionId};
use crate::net::{Fingerprint, NetError, TlsIdentity, write_private};

/// Domain separation for node signatures over protocol messages.
const SIGNED_CONTEXT: &[u8] = b"strongroom/mpc/message/v1\n";

/// A node's public identity, exchanged at enrolment and pinned by every
/// other node and server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodePublic {
    pub index: u16,
    /// SHA-256 of its TLS certificate.
    pub fingerprint: String,
    /// Its Ed25519 message-signing key, hex.
    pub ed25519: String,
    /// Its age (X25519) recipient, for messages addressed to it.
    pub age: String,
}

/// A node's secret identity: TLS key, message-signing key, decryption key.
pub struct NodeKeys {
    pub tls: TlsIdentity,
    sign: SigningKey,
    age: age::x25519::Identity,
}

impl fmt::Debug for NodeKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeKeys")
            .field("tls", &self.tls)
            .field(
                "ed25519",
                &hex::encode(self.sign.verifying_key().as_bytes()),
            )
            .finish_non_exhaustive()
    }
}

impl NodeKeys {
    pub fn generate() -> Result<NodeKeys, NetError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(&mut *seed).map_err(|e| NetError::Identity(e.to_string()))?;
        Ok(NodeKeys {
            tls: TlsIdentity::generate()?,
            sign: SigningKey::from_bytes(&seed),
            age: age::x25519::Identity::generate(),
        })
    }

    /// Writes the identity into `dir` (secret files mode 0600, never
    /// overwritten).
    pub fn save(&self, dir: &Path) -> Result<(), NetError> {
        self.tls.save(dir)?;
        write_private(&dir.join("ed25519.key"), self.sign.as_bytes())?;
        use age::secrecy::ExposeSecret as _;
        write_private(
            &dir.join("age.key"),
            self.age.to_string().expose_secret().as_bytes(),
        )?;
        Ok(())
    }

    pub fn load(dir: &Path) -> Result<NodeKeys, NetError> {
        let bad = |what: &str| NetError::Identity(format!("{}: {what}", dir.display()));
        let seed = Zeroizing::new(std::fs::read(dir.join("ed25519.key"))?);
        let seed: &[u8; 32] = seed[..]
            .try_into()
            .map_err(|_| bad("ed25519.key is not 32 bytes"))?;
        let age_text = Zeroizing::new(std::fs::read_to_string(dir.join("age.key"))?);
        let age = age_text
            .trim()
            .parse::<age::x25519::Identity>()
            .map_err(|_| bad("age.key is not an age identity"))?;
        Ok(NodeKeys {
            tls: TlsIdentity::load(dir)?,
            sign: SigningKey::from_bytes(seed),
            age,
        })
    }

    pub fn public(&self, index: u16) -> NodePublic {
        NodePublic {
            index,
            fingerprint: self.tls.fingerprint().to_string(),
            ed25519: hex::encode(self.sign.verifying_key().as_bytes()),
            age: self.age.to_public().to_string(),
        }
    }

    /// Signs `envelope` as this node and, if it is addressed to `to`,
    /// encrypts it to that node.
    pub fn seal(&self, envelope: &Envelope, to: Option<&NodePublic>) -> Result<Relayed, Abort> {
        let text = String::from_utf8(envelope.to_bytes())
            .map_err(|_| Abort::Internal("envelope is not UTF-8".into()))?;
        let mut signed = SIGNED_CONTEXT.to_vec();
        signed.extend_from_slice(text.as_bytes());
        let inner = Signed {
            envelope: text,
            sig: hex::encode(self.sign.sign(&signed).to_bytes()),
        };
        let json =
            Zeroizing::new(serde_json::to_vec(&inner).map_err(|e| Abort::Internal(e.to_string()))?);
        let payload = match to {
            None => {
                String::from_utf8(json.to_vec()).map_err(|_| Abort::Internal("not UTF-8".into()))?
            }
            Some(r) => {
                let recipient: age::x25519::Recipient = r
                    .age
                    .parse()
                    .map_err(|_| Abort::Parameters(format!("party {}'s age key", r.index)))?;
                age::encrypt_and_armor(&recipient, &json)
                    .map_err(|e| Abort::Internal(format!("encrypting: {e}")))?
            }
        };
        Ok(Relayed {
            from: envelope.from,
            to: to.map(|r| r.index),
            payload,
        })
    }

    /// Opens a relayed message addressed to this node (`me`) or broadcast:
    /// decrypts it, checks its sender's signature and reads the envelope.
    /// A message whose signature fails blames no one: the relay may have
    /// altered it.
    pub fn open(
        &self,
        me: u16,
        m: &Relayed,
        peers: &BTreeMap<u16, NodePublic>,
    ) -> Result<Envelope, Abort> {
        let Some(sender) = peers.get(&m.from).filter(|_| m.from != me) else {
            return Err(Abort::NotAParty { from: m.from });
        };
        let json: Zeroizing<Vec<u8>> = match m.to {
            None => Zeroizing::new(m.payload.as_bytes().to_vec()),
            Some(t) if t == me => Zeroizing::new(
                age::decrypt(&self.age, m.payload.as_bytes())
                    .map_err(|_| Abort::Unauthenticated { from: m.from })?,
            ),
            Some(_) => {
                return Err(Abort::Unauthenticated { from: m.from });
            }
        };
        let inner: Signed =
            serde_json::from_slice(&json).map_err(|_| Abort::Unauthenticated { from: m.from })?;
        let vk = hex::decode(&sender.ed25519)
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .and_then(|b| VerifyingKey::from_bytes(&b).ok())
            .ok_or_else(|| Abort::Parameters(format!("party {}'s ed25519 key", m.from)))?;
        let sig = hex::decode(&inner.sig)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
            .map(|b| ed25519_dalek::Signature::from_bytes(&b))
            .ok_or(Abort::Unauthenticated { from: m.from })?;
        let mut signed = SIGNED_CONTEXT.to_vec();
        signed.extend_from_slice(inner.envelope.as_bytes());
        vk.verify_strict(&signed, &sig)
            .map_err(|_| Abort::Unauthenticated { from: m.from })?;
        let e = Envelope::from_bytes(m.from, inner.envelope.as_bytes())?;
        if e.to != m.to {
            return Err(Abort::Malformed {
                from: m.from,
                what: "relayed to another recipient than it names".into(),
            });
        }
        Ok(e)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signed {
    envelope: String,
    sig: String,
}

/// A protocol message as the coordinator relays it between signer nodes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Relayed {
    pub from: u16,
    /// The one node that can read it; `None` for a broadcast.
    pub to: Option<u16>,
    /// The signed message (JSON), or its age encryption (armored).
    pub payload: String,
}

/// The signer protocol this build speaks: raised with any change to these
/// messages that a build of the other version would not read the same. A
/// server and a node talk only when they speak the same one: every
/// connection starts with [`Request::Hello`].
pub const PROTOCOL: u16 = 1;

/// A request from a server (coordinator) to a signer node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// First on every connection: the server's signer protocol. A node of
    /// another refuses it, and everything after it.
    Hello { protocol: u16 },
    /// Who the node is and which parties it knows.
    Info,
    /// Starts a key-generation ceremony among all the node's parties.
    DkgStart {
        suite: String,
        key_id: String,
        /// The wallet the key is for: each node binds it to its share, and
        /// signs only transfers of that wallet with it.
        wallet: String,
        session: SessionId,
        threshold: u16,
    },
    /// The other parties' round-1 broadcasts.
    DkgRound1 {
        session: SessionId,
        messages: Vec<Relayed>,
    },
    /// The round-2 messages addressed to this node.
    DkgRound2 {
        session: SessionId,
        messages: Vec<Relayed>,
    },
    /// Fresh nonce commitments for a signing session.
    Commit {
        suite: String,
        key_id: String,
        session: SessionId,
    },
    /// A signature share for the coordinator's package, over the message
    /// the node derives from `subject` after checking it.
    Sign {
        suite: String,
        key_id: String,
        session: SessionId,
        package: Envelope,
        subject: crate::cosign::Subject,
    },
    /// Threshold ECDSA: the auxiliary-information protocol among all the
    /// The transfers (intent digests, hex) this node has given a share
    /// for, from its paid journal: read only, for the server's
    /// reconciliation.
    PaidIntents,
    /// The server's epoch (the time of its latest restore, 0 if none):
    /// sent first on each connection; a node refuses every other request
    /// (but `Info`) on a connection that announced less than the highest
    /// it was ever told.
    Epoch { epoch: u64 },
    /// Round one of a share refresh of a FROST key among `parties` (this
    /// node one of them; a party of the key left out is removed). Rounds
    /// two and three are `DkgRound1` and `DkgRound2`; the new share waits
    /// staged for `RefreshCommit`.
    RefreshStart {
        suite: String,
        key_id: String,
        session: SessionId,
        parties: Vec<u16>,
    },
    /// Makes the share staged by refresh `session` the key's share (done
    /// again, answers the same).
    RefreshCommit {
        suite: String,
        key_id: String,
        session: SessionId,
    },
    /// node's parties (once per group of signers).
    EcdsaAux { session: SessionId },
    /// Threshold ECDSA: a key-generation ceremony among all the parties.
    EcdsaKeygen {
        key_id: String,
        wallet: String,
        session: SessionId,
        threshold: u16,
    },
    /// Threshold ECDSA: a presignature by exactly the key's threshold of
    /// `parties`, kept by each in memory.
    EcdsaPresign {
        key_id: String,
        session: SessionId,
        parties: Vec<u16>,
    },
    /// The next messages of a running ECDSA protocol addressed to this node.
    Step {
        session: SessionId,
        messages: Vec<Relayed>,
    },
    /// A partial signature from the presignature made in session
    /// `presignature`, over the message the node derives from `subject`.
    EcdsaSign {
        key_id: String,
        presignature: SessionId,
        subject: crate::cosign::Subject,
    },
}

/// What a finished ECDSA protocol gave a node.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "made", rename_all = "snake_case", deny_unknown_fields)]
pub enum StepOutput {
    Aux,
    Key {
        key_id: String,
        /// SEC1 compressed, hex.
        public_key: String,
    },
    Presignature {
        key_id: String,
        public: crate::ecdsa::PresignPublic,
    },
}

/// A signer node's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case", deny_unknown_fields)]
pub enum Response {
    Info {
        public: NodePublic,
        parties: Vec<u16>,
    },
    Messages {
        messages: Vec<Relayed>,
    },
    /// A key made: its group key (hex) and its public package (hex), which
    /// every party must report identically.
    Key {
        key_id: String,
        group_key: String,
        public: String,
    },
    Commitment {
        envelope: Envelope,
    },
    Share {
        envelope: Envelope,
    },
    /// A step of an ECDSA protocol: messages to relay, and what the node
    /// made if the protocol finished.
    Step {
        messages: Vec<Relayed>,
        output: Option<StepOutput>,
    },
    /// An ECDSA partial signature (a scalar, hex).
    Partial {
        sigma: String,
    },
    /// [`Request::PaidIntents`]'s answer.
    PaidIntents {
        intents: Vec<String>,
    },
    /// The epoch announced was taken.
    Epoch {
        epoch: u64,
    },
    /// The node speaks the server's protocol (its own, named).
    Hello {
        protocol: u16,
    },
    /// Refused or aborted; `culprits` are parties the node blames.
    Refused {
        reason: String,
        culprits: Vec<u16>,
    },
}

/// Checks a key id: 1 to 64 of `A-Z a-z 0-9 -`.
pub fn check_key_id(id: &str) -> Result<(), Abort> {
    if (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        Ok(())
    } else {
        Err(Abort::Parameters(format!(
            "key id {id:?}: 1 to 64 of A-Z a-z 0-9 -"
        )))
    }
}

/// Fingerprints as pinned in configuration.
pub fn parse_fingerprint(s: &str) -> Result<Fingerprint, NetError> {
    s.parse()
}
