//! The tamper-evident audit log, as pure data and functions.
//!
//! Records are hash-chained: each one's SHA-256 covers its canonical bytes and
//! the hash of the record before it, so editing, deleting or reordering any
//! record breaks the chain from that point on. Deleting the newest records
//! leaves a valid but shorter chain, so the head is periodically signed with an
//! Ed25519 audit key into a checkpoint kept outside the database; a log that
//! ends before a signed checkpoint has been truncated.
//!
//! No I/O here: storage reads and writes records, the service writes
//! checkpoint files, the binary writes backups (whose head and manifest
//! [`backup`] reads from the reader it is given), and the clock is a
//! parameter.
//!
//! ## What is where
//!
//! `Entry` (what callers record), `Record` (hash-chained, canonical bytes), canonical JSON for
//! details, `AuditSigningKey` and signed `Checkpoint`s, and the streaming `Verifier` whose `Break`
//! names the first untrustworthy record; a backup's signed manifest (`backup`).

pub mod backup;
mod canonical_json;
mod checkpoint;
mod record;
mod verify;

pub use canonical_json::{CanonicalJsonError, canonical_json};
pub use checkpoint::{
    AuditPublicKey, AuditSigningKey, Checkpoint, CheckpointError, backup_message,
};
pub use record::{Action, AuditError, Details, Entry, Hash, Head, RECORD_VERSION, Record};
pub use verify::{Break, EPOCH_ACTION, Report, Superseded, Verifier};
