//! Approvals: the requirement a decision pins (groups with their members at
//! judgment time), the tally against it, and the statement an approver signs.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use domain::canonical::Writer;
use domain::{Actor, IntentDigest, Timestamp};
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::document::Requirement;

/// An approval requirement with each group's members written in, so that a
/// later change of the groups never changes what a judged transfer needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Resolved {
    Group {
        group: String,
        threshold: u32,
        members: BTreeSet<Actor>,
    },
    AllOf(Vec<Resolved>),
    AnyOf(Vec<Resolved>),
}

impl Resolved {
    pub fn resolve(r: &Requirement, groups: &BTreeMap<String, BTreeSet<Actor>>) -> Resolved {
        match r {
            Requirement::Group { group, threshold } => Resolved::Group {
                group: group.clone(),
                threshold: *threshold,
                // A dangling name cannot pass validation; were it to, an
                // empty group can never be satisfied (fail closed).
                members: groups.get(group).cloned().unwrap_or_default(),
            },
            Requirement::AllOf(v) => {
                Resolved::AllOf(v.iter().map(|r| Resolved::resolve(r, groups)).collect())
            }
            Requirement::AnyOf(v) => {
                Resolved::AnyOf(v.iter().map(|r| Resolved::resolve(r, groups)).collect())
            }
        }
    }

    /// Whether these approvers (each counted once) satisfy the requirement.
    /// The parts of an `all_of` never share members (refused at load), so
    /// one person never counts for two of them.
    pub fn satisfied(&self, approvers: &BTreeSet<Actor>) -> bool {
        match self {
            Resolved::Group {
                threshold, members, ..
            } => members.intersection(approvers).count() >= *threshold as usize,
            Resolved::AllOf(v) => !v.is_empty() && v.iter().all(|r| r.satisfied(approvers)),
            Resolved::AnyOf(v) => v.iter().any(|r| r.satisfied(approvers)),
        }
    }

    /// The same requirement with each group's pinned members cut to those
    /// still in the group of that name in `groups` (the policy in force):
    /// a member who left no longer counts, one who joined never did, and a
    /// group that is gone has no one (fail closed).
    pub fn within(&self, groups: &BTreeMap<String, BTreeSet<Actor>>) -> Resolved {
        match self {
            Resolved::Group {
                group,
                threshold,
                members,
            } => Resolved::Group {
                group: group.clone(),
                threshold: *threshold,
                members: groups
                    .get(group)
                    .map(|now| members.intersection(now).cloned().collect())
                    .unwrap_or_default(),
            },
            Resolved::AllOf(v) => Resolved::AllOf(v.iter().map(|r| r.within(groups)).collect()),
            Resolved::AnyOf(v) => Resolved::AnyOf(v.iter().map(|r| r.within(groups)).collect()),
        }
    }

    /// Whether `who` is in any group the requirement names.
    pub fn eligible(&self, who: &Actor) -> bool {
        match self {
            Resolved::Group { members, .. } => members.contains(who),
            Resolved::AllOf(v) | Resolved::AnyOf(v) => v.iter().any(|r| r.eligible(who)),
        }
    }
}

impl fmt::Display for Resolved {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let list = |f: &mut fmt::Formatter<'_>, v: &[Resolved], sep: &str| {
            f.write_str("(")?;
            for (i, r) in v.iter().enumerate() {
                if i > 0 {
                    f.write_str(sep)?;
                }
                write!(f, "{r}")?;
            }
            f.write_str(")")
        };
        match self {
            Resolved::Group {
                group,
                threshold,
                members,
            } => write!(f, "{threshold} of {} in {group}", members.len()),
            Resolved::AllOf(v) => list(f, v, " and "),
            Resolved::AnyOf(v) => list(f, v, " or "),
        }
    }
}

/// An approver's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Vote {
    Approve,
    Reject,
}

impl Vote {
    fn code(self) -> u8 {
        match self {
            Vote::Approve => 1,
            Vote::Reject => 2,
        }
    }
}

const MAGIC: &[u8] = b"SRAP";
/// Version of the approval statement encoding.
pub const STATEMENT_VERSION: u16 = 1;

/// What an approver signs with their own Ed25519 key. It names the exact
/// intent (its digest), the policy version and decision it was judged
/// under, and an expiry: a signature cannot be replayed for another
/// transfer, another judgment, or after it lapses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApprovalStatement {
    pub intent: IntentDigest,
    pub policy_version: u64,
    pub decision_id: [u8; 16],
    pub expires_at: Timestamp,
    pub vote: Vote,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StatementError {
    #[error("the approver's public key is not a valid Ed25519 key")]
    BadKey,
    #[error("the approval signature does not verify")]
    BadSignature,
    #[error("the signature is not of the approver key's kind (Ed25519 or passkey)")]
    KindMismatch,
    #[error("the passkey approval is refused: {0}")]
    Passkey(String),
}

impl ApprovalStatement {
    /// ```text
    /// "SRAP" version:u16 intent_digest:32 policy_version:u64
    /// decision_id:16 expires_at_ms:i64 vote:u8
    /// ```
    pub fn message(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, STATEMENT_VERSION);
        w.fixed(&self.intent.0)
            .u64(self.policy_version)
            .fixed(&self.decision_id)
            .i64(self.expires_at.as_millis())
            .u8(self.vote.code());
        w.finish()
    }

    /// Verifies an approver's signature (strict: no malleable or small-order
    /// encodings).
    pub fn verify(
        &self,
        public_key: &[u8; 32],
        signature: &[u8; 64],
    ) -> Result<(), StatementError> {
        verify_strict(public_key, &self.message(), signature)
    }
}

/// An Ed25519 signature over `message`, strictly: no weak (small-order)
/// key, no malleable or small-order encodings. Shared by every statement
/// a person signs (`SRAP`, `SRGV`).
pub(crate) fn verify_strict(
    public_key: &[u8; 32],
    message: &[u8],
    signature: &[u8; 64],
) -> Result<(), StatementError> {
    let key = VerifyingKey::from_bytes(public_key).map_err(|_| StatementError::BadKey)?;
    if key.is_weak() {
        return Err(StatementError::BadKey);
    }
    key.verify_strict(message, &Signature::from_bytes(signature))
        .map_err(|_| StatementError::BadSignature)
}
