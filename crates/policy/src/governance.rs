//! What an admin signs to vote on a governance proposal (`SRGV` v1), and
//! the hash that chains the governance log (`SRGL` v1).
//!
//! A vote names the proposal, the digest of its change, and the log head
//! the proposal was made on (`base`): a signature pins the whole history it
//! was given on, so nobody — not even a holder of the server's MAC key —
//! can rewrite what came before and keep the admins' signatures valid.

use domain::canonical::Writer;
use sha2::{Digest, Sha256};

use crate::approval::StatementError;

const STATEMENT_MAGIC: &[u8] = b"SRGV";
/// Version of the governance vote encoding.
pub const GOVERNANCE_STATEMENT_VERSION: u16 = 1;
const RECORD_MAGIC: &[u8] = b"SRGL";
/// Version of the governance log record hash.
pub const GOVERNANCE_RECORD_VERSION: u16 = 1;

/// An admin's vote on a proposal, as signed with their own Ed25519 key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GovernanceStatement {
    /// The proposal's id (a UUID's 16 bytes).
    pub proposal: [u8; 16],
    /// SHA-256 of the change's canonical JSON.
    pub change_digest: [u8; 32],
    /// The governance log's head when the proposal was made.
    pub base_seq: u64,
    pub base_hash: [u8; 32],
    /// Approve (`true`) or veto.
    pub approve: bool,
}

impl GovernanceStatement {
    /// ```text
    /// "SRGV" version:u16 proposal_id:16 change_digest:32 base_seq:u64
    /// base_hash:32 vote:u8 (1 approve, 2 veto)
    /// ```
    pub fn message(&self) -> Vec<u8> {
        let mut w = Writer::new(STATEMENT_MAGIC, GOVERNANCE_STATEMENT_VERSION);
        w.fixed(&self.proposal)
            .fixed(&self.change_digest)
            .u64(self.base_seq)
            .fixed(&self.base_hash)
            .u8(if self.approve { 1 } else { 2 });
        w.finish()
    }

    /// Verifies an admin's signature (strict: no malleable or small-order
    /// encodings, no weak keys).
    pub fn verify(
        &self,
        public_key: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<(), StatementError> {
        crate::approval::verify_strict(public_key, &self.message(), signature)
    }
}

/// One governance log record, as hashed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordFields<'a> {
    pub seq: u64,
    pub prev_hash: [u8; 32],
    pub time_ms: i64,
    /// `bootstrap`, `console`, `key-holder` or `quorum`.
    pub authority: &'a str,
    pub actor: &'a str,
    /// The record's content, canonical JSON.
    pub content: &'a str,
    /// The signed votes that made a quorum record, canonical JSON (`[]`
    /// for the others).
    pub approvals: &'a str,
}

impl RecordFields<'_> {
    /// ```text
    /// SHA-256("SRGL" version:u16 seq:u64 prev_hash:32 time_ms:i64
    ///         authority:str actor:str content:str approvals:str)
    /// ```
    /// (`str` is a 32-bit length and the UTF-8 bytes.)
    pub fn hash(&self) -> [u8; 32] {
        let mut w = Writer::new(RECORD_MAGIC, GOVERNANCE_RECORD_VERSION);
        w.u64(self.seq)
            .fixed(&self.prev_hash)
            .i64(self.time_ms)
            .str(self.authority)
            .str(self.actor)
            .str(self.content)
            .str(self.approvals);
        Sha256::digest(w.finish()).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    fn statement() -> GovernanceStatement {
        GovernanceStatement {
            proposal: [0x11; 16],
            change_digest: [0x22; 32],
            base_seq: 7,
            base_hash: [0x33; 32],
            approve: true,
        }
    }

    #[test]
    fn the_encodings_are_fixed() {
        expect_test::expect!["5352475600011111111111111111111111111111111122222222222222222222222222222222222222222222222222222222222222220000000000000007333333333333333333333333333333333333333333333333333333333333333301"]
            .assert_eq(&hex::encode(statement().message()));
        let r = RecordFields {
            seq: 1,
            prev_hash: [0; 32],
            time_ms: 1_700_000_000_000,
            authority: "bootstrap",
            actor: "console",
            content: r#"{"grant":{}}"#,
            approvals: "[]",
        };
        expect_test::expect!["518223320d58058fd8bcff7c3643bc6ff27198a6376fced1378917856e5fa9f7"]
            .assert_eq(&hex::encode(r.hash()));
    }

    #[test]
    fn a_vote_verifies_only_as_signed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let public = key.verifying_key().to_bytes();
        let s = statement();
        let sig = key.sign(&s.message()).to_bytes();
        assert_eq!(s.verify(&public, &sig), Ok(()));
        for other in [
            GovernanceStatement {
                approve: false,
                ..s
            },
            GovernanceStatement { base_seq: 8, ..s },
            GovernanceStatement {
                base_hash: [0x34; 32],
                ..s
            },
            GovernanceStatement {
                change_digest: [0x23; 32],
                ..s
            },
            GovernanceStatement {
                proposal: [0x12; 16],
                ..s
            },
        ] {
            assert_eq!(
                other.verify(&public, &sig),
                Err(StatementError::BadSignature)
            );
        }
        // The identity point is a weak key: refused whatever the signature.
        let mut weak = [0u8; 32];
        weak[0] = 1;
        assert_eq!(s.verify(&weak, &sig), Err(StatementError::BadKey));
    }
}
