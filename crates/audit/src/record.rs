//! Audit records: what happened, who did it, to what, and the chain link.

use std::fmt;
use std::str::FromStr;

use domain::canonical::Writer;
use domain::{Actor, Timestamp};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::canonical_json::{CanonicalJsonError, canonical_json};

const MAGIC: &[u8] = b"SRAR";
/// Current version of the canonical record encoding.
pub const RECORD_VERSION: u16 = 1;
const MAX_SUBJECT_LEN: usize = 256;
const MAX_DETAILS_LEN: usize = 16 * 1024;

/// A SHA-256 hash in the chain.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash(pub [u8; 32]);

/// As lower-case hex.
impl serde::Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Hash {
    /// The "previous hash" of the first record.
    pub const GENESIS: Hash = Hash([0u8; 32]);
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl FromStr for Hash {
    type Err = AuditError;

    /// Lower-case hex only: a hash has one spelling.
    fn from_str(s: &str) -> Result<Self, AuditError> {
        let mut out = [0u8; 32];
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(AuditError::BadHash(s.to_owned()));
        }
        hex::decode_to_slice(s, &mut out).map_err(|_| AuditError::BadHash(s.to_owned()))?;
        Ok(Hash(out))
    }
}

/// The end of the chain: the last record's sequence number and hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub seq: u64,
    pub hash: Hash,
}

impl Head {
    pub const GENESIS: Head = Head {
        seq: 0,
        hash: Hash::GENESIS,
    };
}

/// What was done, as a dotted lower-case name: `account.created`, `server.started`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Action(String);

impl Action {
    pub fn new(s: &str) -> Result<Self, AuditError> {
        let ok = (1..=64).contains(&s.len())
            && !s.starts_with('.')
            && !s.ends_with('.')
            && !s.contains("..")
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'_');
        if !ok {
            return Err(AuditError::BadAction(s.to_owned()));
        }
        Ok(Action(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Structured details of an entry, kept as canonical JSON.
///
/// Built from `serde_json` values: secret types in Strongroom implement
/// neither `Serialize` nor `Display`, so they cannot reach a record by accident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details(String);

impl Details {
    /// An empty object.
    pub fn none() -> Self {
        Details("{}".to_owned())
    }

    /// Details from a JSON object.
    pub fn new(v: &Value) -> Result<Self, AuditError> {
        if !v.is_object() {
            return Err(AuditError::DetailsNotObject);
        }
        let s = canonical_json(v)?;
        if s.len() > MAX_DETAILS_LEN {
            return Err(AuditError::DetailsTooLarge(s.len()));
        }
        Ok(Details(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What a caller asks to be recorded. The chain fields are added by
/// [`Record::next`] inside the storage transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub actor: Actor,
    pub action: Action,
    pub subject: String,
    pub details: Details,
}

impl Entry {
    pub fn new(
        actor: Actor,
        action: &str,
        subject: impl Into<String>,
        details: Details,
    ) -> Result<Self, AuditError> {
        let subject = subject.into();
        if subject.len() > MAX_SUBJECT_LEN || subject.chars().any(char::is_control) {
            return Err(AuditError::BadSubject);
        }
        Ok(Entry {
            actor,
            action: Action::new(action)?,
            subject,
            details,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    #[error("invalid audit action {0:?}: dotted lower-case words, at most 64 characters")]
    BadAction(String),
    #[error("audit subject must be at most {MAX_SUBJECT_LEN} bytes without control characters")]
    BadSubject,
    #[error("audit details must be a JSON object")]
    DetailsNotObject,
    #[error("audit details are {0} bytes; at most {MAX_DETAILS_LEN} are allowed")]
    DetailsTooLarge(usize),
    #[error(transparent)]
    Json(#[from] CanonicalJsonError),
    #[error("invalid hash {0:?}: expected 64 hex digits")]
    BadHash(String),
    #[error("the audit log is full: sequence numbers are exhausted")]
    SequenceExhausted,
}

/// One record of the chain, as stored.
///
/// Fields are kept as the strings that were hashed, so a record read back
/// from a tampered database can still be hashed and reported, whatever was
/// written into it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub version: u16,
    pub time: Timestamp,
    pub actor: String,
    pub action: String,
    pub subject: String,
    pub details: String,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl Record {
    /// The record that follows `head` for `entry` at time `now`.
    pub fn next(head: &Head, entry: &Entry, now: Timestamp) -> Result<Record, AuditError> {
        let seq = head
            .seq
            .checked_add(1)
            .ok_or(AuditError::SequenceExhausted)?;
        let mut r = Record {
            seq,
            version: RECORD_VERSION,
            time: now,
            actor: entry.actor.to_string(),
            action: entry.action.as_str().to_owned(),
            subject: entry.subject.clone(),
            details: entry.details.as_str().to_owned(),
            prev_hash: head.hash,
            hash: Hash::GENESIS,
        };
        r.hash = r.computed_hash();
        Ok(r)
    }

    /// The canonical encoding of everything but the record's own hash:
    ///
    /// ```text
    /// "SRAR" version:u16 seq:u64 time_ms:i64 actor:str action:str
    /// subject:str details:str prev_hash:32
    /// ```
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut w = Writer::new(MAGIC, self.version);
        w.u64(self.seq)
            .i64(self.time.as_millis())
            .str(&self.actor)
            .str(&self.action)
            .str(&self.subject)
            .str(&self.details)
            .fixed(&self.prev_hash.0);
        w.finish()
    }

    pub fn computed_hash(&self) -> Hash {
        Hash(Sha256::digest(self.canonical_bytes()).into())
    }

    pub fn head(&self) -> Head {
        Head {
            seq: self.seq,
            hash: self.hash,
        }
    }

    /// Marks a record read from storage whose hashes could not even be
    /// parsed: its stored hash becomes the complement of its computed one,
    /// so verification reports it as edited, whatever else it holds.
    pub fn mark_unreadable(&mut self) {
        let mut h = self.computed_hash();
        for b in &mut h.0 {
            *b = !*b;
        }
        self.hash = h;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entry() -> Entry {
        Entry::new(
            "operator:alice".parse().unwrap(),
            "account.created",
            "account:0190b5a8-0000-7000-8000-000000000001",
            Details::new(&json!({"name": "Treasury", "tier": 1})).unwrap(),
        )
        .unwrap()
    }

    #[test]
    fn canonical_bytes_snapshot() {
        let r = Record::next(
            &Head::GENESIS,
            &entry(),
            Timestamp::from_millis(1_795_322_120_123),
        )
        .unwrap();
        expect_test::expect!["5352415200010000000000000001000001a2018987bb0000000e6f70657261746f723a616c6963650000000f6163636f756e742e637265617465640000002c6163636f756e743a30313930623561382d303030302d373030302d383030302d3030303030303030303030310000001c7b226e616d65223a225472656173757279222c2274696572223a317d0000000000000000000000000000000000000000000000000000000000000000"].assert_eq(&hex::encode(r.canonical_bytes()));
        expect_test::expect!["6c980ff6c3d3580c633852a7a65383b8ec0d82f2d1f667d739634e18a3ea37c4"]
            .assert_eq(&r.hash.to_string());
        let r2 = Record::next(
            &r.head(),
            &entry(),
            Timestamp::from_millis(1_795_322_120_124),
        )
        .unwrap();
        assert_eq!(r2.seq, 2);
        assert_eq!(r2.prev_hash, r.hash);
        assert_ne!(r2.hash, r.hash);
    }

    #[test]
    fn hashes_have_one_spelling() {
        let h = "ab".repeat(32);
        assert!(h.parse::<Hash>().is_ok());
        assert!(h.to_uppercase().parse::<Hash>().is_err());
        assert!("ab".parse::<Hash>().is_err());
    }

    #[test]
    fn unreadable_records_never_verify() {
        let mut r = Record::next(&Head::GENESIS, &entry(), Timestamp::UNIX_EPOCH).unwrap();
        r.mark_unreadable();
        assert_ne!(r.computed_hash(), r.hash);
    }

    #[test]
    fn refuses_bad_entries() {
        assert!(Action::new("Account.Created").is_err());
        assert!(Action::new("account..created").is_err());
        assert!(Action::new(".x").is_err());
        assert!(Action::new("").is_err());
        assert!(Details::new(&json!([1])).is_err());
        assert!(Details::new(&json!({"x": "a".repeat(20_000)})).is_err());
        let full = Head {
            seq: u64::MAX,
            hash: Hash::GENESIS,
        };
        assert_eq!(
            Record::next(&full, &entry(), Timestamp::UNIX_EPOCH),
            Err(AuditError::SequenceExhausted)
        );
        assert!(Entry::new(domain::Actor::System, "x", "a\nb", Details::none()).is_err());
    }
}
