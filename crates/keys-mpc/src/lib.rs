//! Threshold signing: no whole key ever exists.
//!
//! FROST (RFC 9591, the Zcash Foundation's audited crates) for BIP-340
//! Schnorr on secp256k1 with the Taproot tweak (`frost-secp256k1-tr`) and
//! for Ed25519 (`frost-ed25519`):
//!
//! - [`dkg`]: key generation without a trusted dealer, three rounds
//!   (broadcast commitments with proofs of knowledge, echo-checked;
//!   point-to-point secret shares; verification). Each party ends with its
//!   own [`KeyShare`]; the group key is the same for all of them.
//! - [`sign`]: two rounds with a coordinator. A signer commits to fresh
//!   nonces, then — given the coordinator's signing package — checks that
//!   the package carries its own commitment and exactly the message it
//!   vouches for, records the nonce as used in its [`NonceJournal`]
//!   (durably) and only then gives out its share. The coordinator checks
//!   every share and names the parties whose shares do not verify.
//!
//! Every message is an [`Envelope`] bound to one session: a message of
//! another session, round or sender, a duplicate, or a body that does not
//! parse aborts the session before anything is kept, naming the party
//! ([`Abort::culprits`]) where the protocol allows it.
//!
//! Around the protocol: [`net`] (TLS 1.3 between pinned self-signed
//! identities, length-prefixed frames), [`wire`] (node identities;
//! requests; protocol messages signed by their node and, point to point,
//! encrypted to their recipient, so the relaying coordinator can neither
//! forge nor read them), [`node`] (the signer node: sealed share store,
//! nonce journal, its own audit log) and [`cluster`] (the coordinator in
//! the server).
//!
//! ## What is where
//!
//! threshold signing, ADR 0013. FROST with the Zcash Foundation's crates for Taproot
//! (`frost-secp256k1-tr`: the DKG's group key is the BIP-86 output key) and Ed25519: `dkg::Dkg`
//! (one party's three-round ceremony, round one echo-checked before any share is looked at),
//! `dkg::KeyShare` (redacted, zeroizing, bytes for a sealed store), `sign::{commit, sign,
//! Coordinator}` (the signer signs only the message it vouches for, after recording its nonce in
//! the fsync'd `NonceJournal`; the coordinator names the parties whose shares fail). `cosign`: a
//! node's own checks before it signs (ADR 0013): from a Taproot input's transaction and prevouts
//! it derives the sighash itself and requires every output to be change or exactly an approved
//! transfer of the key's own wallet and the node's network, approvals by approvers enrolled in its
//! own `[policy]`, its fee cap and hourly limit; `PaidJournal` lets an approved transfer be paid
//! by one transaction or its conflicting replacements only. `Envelope` binds every message to
//! suite, session, round, sender and recipient; `Abort::culprits` names who broke a session.
//! `net`: TLS 1.3 (rustls, ring) between self-signed `rcgen` identities pinned by SHA-256
//! fingerprint both ways, length-prefixed JSON frames. `wire`: node identities (`NodeKeys`: TLS,
//! Ed25519 message key, age X25519 key; `NodePublic` is what others pin), `Request`/`Response`,
//! `Relayed` (protocol messages signed by their node, age-encrypted when addressed to one node:
//! the relaying coordinator can neither forge nor read them; a bad signature blames no one).
//! `dkg::Dkg::refresh`: the same ceremony as a share refresh (frost-core's `refresh_dkg_*`; the
//! group key stays, a member left out is removed; stored shares and packages list their parties).
//! `node/refresh.rs`: a node stages the refreshed share until the coordinator commits it
//! (`Cluster::refresh`, `Cluster::commit_refresh`, idempotent). `node/epoch.rs`: the server's
//! epoch (a restored server's restore time), announced on each connection, kept on disk; a
//! connection that did not announce the highest is refused.
//! `node`: the signer node behind `strongroom signer run` (shares sealed with XChaCha20-Poly1305
//! under a store key that the operator's passphrase opens through age/scrypt; nonce journal; its
//! own hash-chained audit log, verified when opened; refusals audited). `cluster`: the coordinator
//! a server runs (ceremonies with every signer; signing with the first threshold of those that
//! commit, again without those that fail; `BlameLedger` freezes a key after repeated aborts blamed
//! on one party). `ecdsa`: threshold ECDSA with CGGMP24 (`=0.7.0-alpha.3`) — each protocol
//! (auxiliary information from safe primes a node finds itself, key generation, presignatures) on
//! a node's own thread as a `round_based` state machine that the coordinator steps with `Step`
//! requests over the same signed, encrypted relay (`node/ecdsa_steps.rs`,
//! `cluster/ecdsa_coord.rs`); presignatures in node memory only, pooled per key by the
//! coordinator, journaled as used before a partial signature leaves; a node signs only an Ethereum
//! transaction it checked (`cosign::check_ethereum`) and hashes it itself; the coordinator checks
//! each partial signature against the presignature's commitments (naming a cheat) and the result
//! with `k256`. `testing`: approvals, payments, `Loopback` nodes in one process, published test
//! primes (`tests/data/cggmp-primes.json`).

pub mod cluster;
pub mod cosign;
mod dkg_impl;
pub mod ecdsa;
mod envelope;
mod journal;
pub mod net;
pub mod node;
mod passkeys;
mod people;
mod sign_impl;
pub mod signer;
#[cfg(feature = "test-support")]
pub mod testing;
pub mod wire;

pub use envelope::{Abort, Envelope, PartyIndex, Round, SessionId};
pub use journal::{JournalError, NonceJournal};

/// Key generation without a dealer.
pub mod dkg {
    pub use crate::dkg_impl::{Dkg, GroupPublic, KeyShare, MAX_PARTIES};
}

/// Signing with a coordinator.
pub mod sign {
    pub use crate::sign_impl::{Coordinator, PendingNonce, commit, sign};
}

/// The Taproot suite: BIP-340 signatures valid for the BIP-86-tweaked
/// group key (the DKG's output key, which is what the address commits to).
pub type Taproot = frost_secp256k1_tr::Secp256K1Sha256TR;
/// The Ed25519 suite: RFC 8032 signatures.
pub type Ed25519 = frost_ed25519::Ed25519Sha512;

pub use frost_core::Ciphersuite;

/// A suite this crate runs: its name on the wire and in storage, and how
/// its group key and signatures leave it as plain bytes.
pub trait Suite: Ciphersuite {
    const NAME: &'static str;

    /// The group key as other software takes it: the x-only output key for
    /// Taproot (32 bytes), the public key for Ed25519 (32 bytes).
    fn group_key_bytes(key: &frost_core::VerifyingKey<Self>) -> Result<[u8; 32], Abort> {
        let b = key
            .serialize()
            .map_err(|e| Abort::Internal(e.to_string()))?;
        fixed(&b, "group key")
    }

    /// A signature as other software takes it: 64 bytes (BIP-340 `R.x ‖ s`;
    /// RFC 8032 `R ‖ S`).
    fn signature_bytes(sig: &frost_core::Signature<Self>) -> Result<[u8; 64], Abort> {
        let b = sig
            .serialize()
            .map_err(|e| Abort::Internal(e.to_string()))?;
        fixed(&b, "signature")
    }
}

fn fixed<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], Abort> {
    b.try_into()
        .map_err(|_| Abort::Internal(format!("{what} is not {N} bytes")))
}

impl Suite for Taproot {
    const NAME: &'static str = "frost-secp256k1-tr";

    fn group_key_bytes(key: &frost_core::VerifyingKey<Self>) -> Result<[u8; 32], Abort> {
        // SEC1 compressed: the parity byte, then x.
        let b = key
            .serialize()
            .map_err(|e| Abort::Internal(e.to_string()))?;
        fixed(b.get(1..).unwrap_or_default(), "group key's x")
    }
}

impl Suite for Ed25519 {
    const NAME: &'static str = "frost-ed25519";
}

/// Randomness for the protocols: the operating system's.
pub fn os_rng() -> rand_core::OsRng {
    rand_core::OsRng
}
