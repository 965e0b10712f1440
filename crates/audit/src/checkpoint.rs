//! Signed checkpoints of the chain head, kept outside the database.

use std::fmt;

use domain::Timestamp;
use domain::canonical::Writer;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::record::{Hash, Head};

const MAGIC: &[u8] = b"SRCP";
const CHECKPOINT_VERSION: u16 = 1;

/// The Ed25519 key that signs audit checkpoints.
///
/// Zeroized on drop (by `ed25519-dalek`); never printed, serialised or cloned.
pub struct AuditSigningKey(SigningKey);

impl fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditSigningKey(<redacted>)")
    }
}

impl AuditSigningKey {
    /// Takes a 32-byte seed, which the caller's buffer keeps zeroized.
    pub fn from_seed(seed: &Zeroizing<[u8; 32]>) -> Self {
        AuditSigningKey(SigningKey::from_bytes(seed))
    }

    pub fn public(&self) -> AuditPublicKey {
        AuditPublicKey(self.0.verifying_key())
    }

    /// Signs a backup's manifest digest ([`backup_message`]).
    pub fn sign_backup(&self, manifest_digest: &[u8; 32]) -> [u8; 64] {
        self.0.sign(&backup_message(manifest_digest)).to_bytes()
    }

    /// Signs the head of the chain as of `now`.
    pub fn sign_checkpoint(&self, head: Head, now: Timestamp) -> Checkpoint {
        let sig = self.0.sign(&message(head, now));
        Checkpoint::from_signature(head, now, &self.public(), &sig.to_bytes())
    }
}

impl Checkpoint {
    /// The bytes a checkpoint's Ed25519 signature covers, for signers that
    /// live elsewhere (an HSM).
    pub fn message(head: Head, time: Timestamp) -> Vec<u8> {
        message(head, time)
    }

    /// A checkpoint from a signature made elsewhere over [`Checkpoint::message`].
    /// It is checked like any other by [`Checkpoint::verify`].
    pub fn from_signature(
        head: Head,
        time: Timestamp,
        key: &AuditPublicKey,
        sig: &[u8; 64],
    ) -> Self {
        Checkpoint {
            v: CHECKPOINT_VERSION,
            seq: head.seq,
            head: head.hash.to_string(),
            time_ms: time.as_millis(),
            key: key.to_string(),
            sig: hex::encode(sig),
        }
    }
}

/// The public half of the audit key: what auditors need to verify checkpoints.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AuditPublicKey(VerifyingKey);

impl AuditPublicKey {
    pub fn from_bytes(b: &[u8; 32]) -> Result<Self, CheckpointError> {
        VerifyingKey::from_bytes(b)
            .map(AuditPublicKey)
            .map_err(|_| CheckpointError::BadKey)
    }

    /// Verifies a backup's signature over its manifest digest (strict).
    pub fn verify_backup(
        &self,
        manifest_digest: &[u8; 32],
        sig: &[u8; 64],
    ) -> Result<(), CheckpointError> {
        self.0
            .verify_strict(
                &backup_message(manifest_digest),
                &ed25519_dalek::Signature::from_bytes(sig),
            )
            .map_err(|_| CheckpointError::BadSignature)
    }

    pub fn from_hex(s: &str) -> Result<Self, CheckpointError> {
        let mut b = [0u8; 32];
        hex::decode_to_slice(s, &mut b).map_err(|_| CheckpointError::BadKey)?;
        Self::from_bytes(&b)
    }
}

impl fmt::Debug for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditPublicKey({self})")
    }
}

impl fmt::Display for AuditPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

/// One line of the checkpoint file: the chain head at `seq`, signed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Checkpoint {
    pub v: u16,
    pub seq: u64,
    pub head: String,
    pub time_ms: i64,
    pub key: String,
    pub sig: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    #[error("not a valid Ed25519 public key")]
    BadKey,
    #[error("unsupported checkpoint version {0}")]
    Version(u16),
    #[error("signed by key {0}, which is not the trusted audit key")]
    UntrustedKey(String),
    #[error("malformed head hash or signature")]
    Malformed,
    #[error("signature does not verify")]
    BadSignature,
}

impl Checkpoint {
    pub fn head(&self) -> Result<Head, CheckpointError> {
        let hash: Hash = self.head.parse().map_err(|_| CheckpointError::Malformed)?;
        Ok(Head {
            seq: self.seq,
            hash,
        })
    }

    /// Checks the signature against the trusted key (strict Ed25519: no
    /// malleable or small-order signatures).
    pub fn verify(&self, trusted: &AuditPublicKey) -> Result<Head, CheckpointError> {
        if self.v != CHECKPOINT_VERSION {
            return Err(CheckpointError::Version(self.v));
        }
        if self.key != trusted.to_string() {
            return Err(CheckpointError::UntrustedKey(self.key.clone()));
        }
        let head = self.head()?;
        let mut sig = [0u8; 64];
        hex::decode_to_slice(&self.sig, &mut sig).map_err(|_| CheckpointError::Malformed)?;
        // One spelling of a checkpoint: lower-case hex, as it is written
        // (an upper-case copy of a signed line is not that line).
        if hex::encode(sig) != self.sig || head.hash.to_string() != self.head {
            return Err(CheckpointError::Malformed);
        }
        let sig = ed25519_dalek::Signature::from_bytes(&sig);
        trusted
            .0
            .verify_strict(&message(head, Timestamp::from_millis(self.time_ms)), &sig)
            .map_err(|_| CheckpointError::BadSignature)?;
        Ok(head)
    }
}

/// What the audit key signs for a backup: `"SRBM" v1 | SHA-256 of the
/// manifest` (its own domain, so a backup signature is never a checkpoint).
pub fn backup_message(manifest_digest: &[u8; 32]) -> Vec<u8> {
    let mut w = Writer::new(b"SRBM", 1);
    w.fixed(manifest_digest);
    w.finish()
}

fn message(head: Head, time: Timestamp) -> Vec<u8> {
    let mut w = Writer::new(MAGIC, CHECKPOINT_VERSION);
    w.u64(head.seq).fixed(&head.hash.0).i64(time.as_millis());
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> AuditSigningKey {
        AuditSigningKey::from_seed(&Zeroizing::new([b; 32]))
    }

    /// Found by the `checkpoint` fuzz target: a signed line with its
    /// signature (or head) in upper case verified too.
    #[test]
    fn only_the_spelling_signed_verifies() {
        let k = key(7);
        let head = Head {
            seq: 3,
            hash: crate::Hash([0xab; 32]),
        };
        let c = k.sign_checkpoint(head, Timestamp::from_millis(1_800_000_000_000));
        assert!(c.verify(&k.public()).is_ok());
        let upper_sig = Checkpoint {
            sig: c.sig.to_uppercase(),
            ..c.clone()
        };
        assert_eq!(
            upper_sig.verify(&k.public()),
            Err(CheckpointError::Malformed)
        );
        let upper_head = Checkpoint {
            head: c.head.to_uppercase(),
            ..c.clone()
        };
        assert!(upper_head.verify(&k.public()).is_err());
    }

    #[test]
    fn sign_and_verify() {
        let k = key(7);
        let head = Head {
            seq: 42,
            hash: Hash([0xab; 32]),
        };
        let cp = k.sign_checkpoint(head, Timestamp::from_millis(1_795_322_120_123));
        assert_eq!(cp.verify(&k.public()), Ok(head));
        expect_test::expect![[r#"{"v":1,"seq":42,"head":"abababababababababababababababababababababababababababababababab","time_ms":1795322120123,"key":"ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c","sig":"23ef20b7df4cca631412693c94b0de3c51248afc9a364618779de5c3836b5ab0621755268c0f2007c776ac4923d69b05c671cab40c21646ef018f08fc2d33e0b"}"#]].assert_eq(&serde_json::to_string(&cp).unwrap());

        let mut moved = cp.clone();
        moved.seq = 41;
        assert_eq!(
            moved.verify(&k.public()),
            Err(CheckpointError::BadSignature)
        );
        let mut later = cp.clone();
        later.time_ms += 1;
        assert_eq!(
            later.verify(&k.public()),
            Err(CheckpointError::BadSignature)
        );
        let other = key(8);
        assert!(matches!(
            cp.verify(&other.public()),
            Err(CheckpointError::UntrustedKey(_))
        ));
        let mut forged = other.sign_checkpoint(head, Timestamp::UNIX_EPOCH);
        forged.key = k.public().to_string();
        assert_eq!(
            forged.verify(&k.public()),
            Err(CheckpointError::BadSignature)
        );
    }

    #[test]
    fn debug_redacts_secret() {
        assert_eq!(format!("{:?}", key(1)), "AuditSigningKey(<redacted>)");
    }
}
