//! A backup's head: `"SRBK" 0x0001 | manifest length (u32 BE) | manifest
//! (JSON) | signature (64)`, then the entries in the manifest's order. The
//! audit key signs SHA-256 of the manifest's bytes as written
//! ([`crate::backup_message`]); the binary encrypts, writes and restores.
//!
//! Reading is in three steps, each refusing what is not a backup: the head
//! ([`read_head`]), the manifest's JSON ([`Manifest::parse`]) and, once the
//! signature is known good, what the manifest says ([`Manifest::check`]).

use std::io::Read;

use serde::{Deserialize, Serialize};

/// The first six bytes of every backup's plaintext.
pub const MAGIC: &[u8; 6] = b"SRBK\x00\x01";
/// The manifest's `format`.
pub const FORMAT: &str = "strongroom-backup";
/// The manifest's `version` this build reads and writes.
pub const VERSION: u32 = 1;
/// A manifest larger than this is not one.
pub const MAX_MANIFEST: u32 = 1 << 20;

/// What a backup holds, signed by the audit key.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: String,
    pub version: u32,
    pub created_at_ms: i64,
    /// The keystore id (hex), or `none` before one exists.
    pub instance: String,
    /// `sqlite` or `postgres`.
    pub database: String,
    pub schema_version: i64,
    pub audit_seq: u64,
    pub audit_hash: String,
    /// The audit key's public half (hex): what signed this.
    pub audit_key: String,
    /// Every key the database holds (listed before the copy was taken).
    pub keys: Vec<String>,
    pub entries: Vec<ManifestEntry>,
}

/// One file in a backup: its name (lower-case ASCII letters), size and
/// SHA-256 (hex).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestEntry {
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Why bytes are not a backup this build reads.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    #[error("not a Strongroom backup")]
    NotABackup,
    #[error("its manifest is too large")]
    TooLarge,
    #[error("damaged or truncated ({0})")]
    Truncated(String),
    #[error("its manifest: {0}")]
    Unreadable(String),
    #[error("an unknown backup format")]
    UnknownFormat,
    #[error("an entry named {0:?}")]
    BadEntryName(String),
    #[error("two entries named {0:?}")]
    DuplicateEntry(String),
}

/// The manifest's bytes as written and the signature over them, read from
/// the start of a backup's plaintext; `r` is left at the first entry.
pub fn read_head(r: &mut impl Read) -> Result<(Vec<u8>, [u8; 64]), ManifestError> {
    let broken = |e: std::io::Error| ManifestError::Truncated(e.to_string());
    let mut magic = [0u8; 6];
    r.read_exact(&mut magic).map_err(broken)?;
    if &magic != MAGIC {
        return Err(ManifestError::NotABackup);
    }
    let mut len = [0u8; 4];
    r.read_exact(&mut len).map_err(broken)?;
    let len = u32::from_be_bytes(len);
    if len > MAX_MANIFEST {
        return Err(ManifestError::TooLarge);
    }
    let mut text = vec![0u8; len as usize];
    r.read_exact(&mut text).map_err(broken)?;
    let mut sig = [0u8; 64];
    r.read_exact(&mut sig).map_err(broken)?;
    Ok((text, sig))
}

/// The head [`read_head`] reads: the magic, the manifest's length, the
/// manifest and its signature.
pub fn head_bytes(manifest: &[u8], sig: &[u8; 64]) -> Result<Vec<u8>, ManifestError> {
    let len = u32::try_from(manifest.len())
        .ok()
        .filter(|l| *l <= MAX_MANIFEST)
        .ok_or(ManifestError::TooLarge)?;
    Ok([MAGIC.as_slice(), &len.to_be_bytes(), manifest, sig].concat())
}

impl Manifest {
    /// The manifest's JSON, as read (nothing in it is believed until the
    /// signature over these bytes is checked).
    pub fn parse(bytes: &[u8]) -> Result<Self, ManifestError> {
        serde_json::from_slice(bytes).map_err(|e| ManifestError::Unreadable(e.to_string()))
    }

    /// Its canonical bytes: what [`Manifest::parse`] reads back as the same
    /// manifest, and the bytes a new backup is signed over.
    pub fn to_bytes(&self) -> Result<Vec<u8>, ManifestError> {
        serde_json::to_vec(self).map_err(|e| ManifestError::Unreadable(e.to_string()))
    }

    /// What a signed manifest must say before its entries are read: this
    /// format and version, and entries named by lower-case ASCII letters
    /// only (each a file name in a scratch directory), each once.
    pub fn check(&self) -> Result<(), ManifestError> {
        if self.format != FORMAT || self.version != VERSION {
            return Err(ManifestError::UnknownFormat);
        }
        let mut seen = std::collections::BTreeSet::new();
        for e in &self.entries {
            if e.name.is_empty() || !e.name.bytes().all(|b| b.is_ascii_lowercase()) {
                return Err(ManifestError::BadEntryName(e.name.clone()));
            }
            if !seen.insert(e.name.as_str()) {
                return Err(ManifestError::DuplicateEntry(e.name.clone()));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: VERSION,
            created_at_ms: 1,
            instance: "none".into(),
            database: "sqlite".into(),
            schema_version: 31,
            audit_seq: 2,
            audit_hash: "00".repeat(32),
            audit_key: "11".repeat(32),
            keys: vec![],
            entries: vec![ManifestEntry {
                name: "database".into(),
                size: 3,
                sha256: "22".repeat(32),
            }],
        }
    }

    #[test]
    fn a_head_reads_back_and_leaves_the_reader_at_the_entries() {
        let m = manifest();
        let bytes = m.to_bytes().unwrap();
        let mut all = head_bytes(&bytes, &[7; 64]).unwrap();
        all.extend_from_slice(b"abc");
        let mut r = all.as_slice();
        let (text, sig) = read_head(&mut r).unwrap();
        assert_eq!((text.as_slice(), sig), (bytes.as_slice(), [7; 64]));
        assert_eq!(r, b"abc");
        assert_eq!(Manifest::parse(&text).unwrap(), m);
        m.check().unwrap();
    }

    #[test]
    fn what_is_not_a_backup_is_refused_with_why() {
        let bytes = manifest().to_bytes().unwrap();
        let head = head_bytes(&bytes, &[0; 64]).unwrap();
        let mut other = head.clone();
        other[0] = b'X';
        assert_eq!(
            read_head(&mut other.as_slice()),
            Err(ManifestError::NotABackup)
        );
        let mut big = head.clone();
        big[6..10].copy_from_slice(&(MAX_MANIFEST + 1).to_be_bytes());
        assert_eq!(read_head(&mut big.as_slice()), Err(ManifestError::TooLarge));
        assert!(matches!(
            read_head(&mut &head[..head.len() - 1]),
            Err(ManifestError::Truncated(_))
        ));
        for (name, why) in [
            ("../x", ManifestError::BadEntryName("../x".into())),
            ("", ManifestError::BadEntryName(String::new())),
            ("database", ManifestError::DuplicateEntry("database".into())),
        ] {
            let mut m = manifest();
            m.entries.push(ManifestEntry {
                name: name.into(),
                size: 0,
                sha256: String::new(),
            });
            assert_eq!(m.check(), Err(why));
        }
        let mut m = manifest();
        m.version = 2;
        assert_eq!(m.check(), Err(ManifestError::UnknownFormat));
    }
}
