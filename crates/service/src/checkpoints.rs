//! Signed checkpoints of the audit chain head, appended to a file outside
//! the database and flushed to disk (file and directory) before they count.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use audit::{AuditPublicKey, AuditSigningKey, Break, Checkpoint, Head, Report, Verifier};
use domain::Timestamp;
use storage::{StorageError, Store};
use tokio::sync::Mutex;

use crate::error::ServiceError;

/// The append-only file of checkpoints, one JSON object a line.
#[derive(Debug, Clone)]
pub struct CheckpointFile {
    path: PathBuf,
}

impl CheckpointFile {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        CheckpointFile { path: path.into() }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Beside this file, `<name>.superseded`: checkpoints a lost copy of
    /// the log was signed with past the backup a restore came from. Only
    /// [`verify_audit`] reads it, and only a restore's epoch record naming
    /// each one makes it agree with the log.
    pub fn superseded(&self) -> CheckpointFile {
        let mut p = self.path.as_os_str().to_owned();
        p.push(".superseded");
        CheckpointFile::new(PathBuf::from(p))
    }

    /// All checkpoints, or `None` if the file does not exist.
    ///
    /// A last line without its newline is a write torn by a crash: it is
    /// skipped (its checkpoint never counted). Any other line that does not
    /// parse is an error naming the line.
    pub fn read_all(&self) -> Result<Option<Vec<Checkpoint>>, ServiceError> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let complete = match text.rfind('\n') {
            Some(i) => &text[..=i],
            None => "",
        };
        if complete.len() < text.len() {
            tracing::warn!(path = %self.path.display(), "ignoring a torn last checkpoint line");
        }
        let mut out = Vec::new();
        for (i, line) in complete.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let cp = serde_json::from_str(line).map_err(|e| ServiceError::CheckpointLine {
                path: self.path.display().to_string(),
                line: i + 1,
                reason: e.to_string(),
            })?;
            out.push(cp);
        }
        Ok(Some(out))
    }

    /// Removes a torn last line left by a crash (it never counted), so that
    /// the next checkpoint starts on a line of its own. Called at start-up.
    pub fn repair_torn_tail(&self) -> Result<(), ServiceError> {
        let text = match std::fs::read(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(self.io(e)),
        };
        let keep = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if keep == text.len() {
            return Ok(());
        }
        tracing::warn!(path = %self.path.display(), bytes = text.len() - keep, "removing a torn last checkpoint line");
        let f = OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        f.set_len(keep as u64).map_err(|e| self.io(e))?;
        f.sync_all().map_err(|e| self.io(e))
    }

    /// Appends one checkpoint and makes it durable, after cutting off a
    /// torn last line (a write that failed half-way never counted).
    pub fn append(&self, cp: &Checkpoint) -> Result<(), ServiceError> {
        let mut line = serde_json::to_string(cp).map_err(|e| ServiceError::Checkpoint {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
        let len = f.metadata().map_err(|e| self.io(e))?.len();
        if len > 0 {
            let mut last = [0u8; 1];
            f.seek(SeekFrom::End(-1)).map_err(|e| self.io(e))?;
            f.read_exact(&mut last).map_err(|e| self.io(e))?;
            if last[0] != b'\n' {
                // A write torn by a full disk or a crash (its checkpoint
                // never counted): cut off, here as at start-up.
                drop(f);
                self.repair_torn_tail()?;
                return self.append(cp);
            }
        }
        f.write_all(line.as_bytes()).map_err(|e| self.io(e))?;
        f.sync_all().map_err(|e| self.io(e))?;
        sync_dir(&self.path).map_err(|e| self.io(e))
    }

    fn io(&self, e: std::io::Error) -> ServiceError {
        ServiceError::Checkpoint {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

/// Flushes the directory entry of `path`, so a new file survives a crash.
pub(crate) fn sync_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// The Ed25519 key that signs checkpoints: a 0600 file, or a key inside the
/// HSM that never leaves it.
#[derive(Debug)]
pub enum CheckpointSigner {
    File(AuditSigningKey),
    Hsm {
        hsm: std::sync::Arc<dyn keys::Signer>,
        key: keys::KeyRef,
        public: AuditPublicKey,
    },
}

impl From<AuditSigningKey> for CheckpointSigner {
    fn from(k: AuditSigningKey) -> Self {
        CheckpointSigner::File(k)
    }
}

impl CheckpointSigner {
    /// An HSM key; its public half is read from the token.
    pub async fn hsm(
        hsm: std::sync::Arc<dyn keys::Signer>,
        key: keys::KeyRef,
    ) -> Result<Self, ServiceError> {
        let keys::PublicKey::Ed25519(pk) = hsm.public_key(&key).await? else {
            return Err(ServiceError::Invalid(format!(
                "audit key {key} is not an Ed25519 key"
            )));
        };
        let public = AuditPublicKey::from_bytes(&pk)
            .map_err(|e| ServiceError::Invalid(format!("audit key {key}: {e}")))?;
        Ok(CheckpointSigner::Hsm { hsm, key, public })
    }

    pub fn public(&self) -> AuditPublicKey {
        match self {
            CheckpointSigner::File(k) => k.public(),
            CheckpointSigner::Hsm { public, .. } => *public,
        }
    }

    /// Signs a backup's manifest digest (`SRBM` v1), with the same key as
    /// the checkpoints, wherever it lives.
    pub async fn sign_backup(&self, manifest_digest: &[u8; 32]) -> Result<[u8; 64], ServiceError> {
        match self {
            CheckpointSigner::File(k) => Ok(k.sign_backup(manifest_digest)),
            CheckpointSigner::Hsm { hsm, key, .. } => {
                let msg = audit::backup_message(manifest_digest);
                match hsm
                    .sign(key, keys::SignRequest::Ed25519Message(&msg))
                    .await?
                {
                    keys::Signature::Ed25519(sig) => Ok(sig),
                    _ => Err(ServiceError::Invalid(
                        "the HSM answered with another scheme".into(),
                    )),
                }
            }
        }
    }

    async fn sign(&self, head: Head, now: Timestamp) -> Result<Checkpoint, ServiceError> {
        match self {
            CheckpointSigner::File(k) => Ok(k.sign_checkpoint(head, now)),
            CheckpointSigner::Hsm { hsm, key, public } => {
                let msg = Checkpoint::message(head, now);
                match hsm
                    .sign(key, keys::SignRequest::Ed25519Message(&msg))
                    .await?
                {
                    keys::Signature::Ed25519(sig) => {
                        Ok(Checkpoint::from_signature(head, now, public, &sig))
                    }
                    _ => Err(ServiceError::Invalid(
                        "the HSM answered with another scheme".into(),
                    )),
                }
            }
        }
    }
}

/// When to write a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// After this many new records.
    pub every_records: u64,
    /// And at least this often while records are being added.
    pub every: Duration,
}

/// Signs the chain head into the checkpoint file when the policy says so,
/// after checking that the records since the last checkpoint chain onto it:
/// a checkpoint never blesses history an intruder rewrote in between.
#[derive(Debug)]
pub struct Checkpointer {
    key: CheckpointSigner,
    file: CheckpointFile,
    policy: CheckpointPolicy,
    /// The head at the last checkpoint written; also serialises writers.
    last: Mutex<Head>,
    health: std::sync::Mutex<CheckpointHealth>,
    /// How long writes may fail before signing stops (milliseconds; set
    /// again when the configuration is reloaded).
    fail_closed_after_ms: std::sync::atomic::AtomicU64,
}

/// Whether checkpoints are being written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckpointHealth {
    /// The head the last checkpoint signed.
    pub seq: u64,
    /// When the last checkpoint was written (this run, or the file's last).
    pub written_at: Option<Timestamp>,
    /// Since when writes fail, and the last failure.
    pub failing: Option<(Timestamp, String)>,
}

/// Records waiting this long for a checkpoint make the server not ready.
pub const STALE_AFTER: Duration = Duration::from_secs(900);

/// Signing stops after checkpoints have failed this long, by default.
pub const FAIL_CLOSED_AFTER: Duration = Duration::from_secs(600);

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Checkpointer {
    /// Opens the checkpoint file, checking that what it holds was signed by `key`.
    pub fn open(
        key: impl Into<CheckpointSigner>,
        file: CheckpointFile,
        policy: CheckpointPolicy,
    ) -> Result<Self, ServiceError> {
        let key = key.into();
        let public = key.public();
        file.repair_torn_tail()?;
        let existing = file.read_all()?.unwrap_or_default();
        let mut last = Head::GENESIS;
        let mut written_at = None;
        for (i, cp) in existing.iter().enumerate() {
            let head = cp
                .verify(&public)
                .map_err(|e| ServiceError::CheckpointLine {
                    path: file.path().display().to_string(),
                    line: i + 1,
                    reason: e.to_string(),
                })?;
            if head.seq >= last.seq {
                last = head;
                written_at = Some(Timestamp::from_millis(cp.time_ms));
            }
        }
        Ok(Checkpointer {
            key,
            file,
            policy,
            last: Mutex::new(last),
            health: std::sync::Mutex::new(CheckpointHealth {
                seq: last.seq,
                written_at,
                failing: None,
            }),
            fail_closed_after_ms: std::sync::atomic::AtomicU64::new(millis(FAIL_CLOSED_AFTER)),
        })
    }

    /// Signing stops once checkpoints have failed for `after` (a log that
    /// cannot be anchored must not keep moving money).
    #[must_use]
    pub fn fail_closed_after(self, after: Duration) -> Checkpointer {
        self.set_fail_closed_after(after);
        self
    }

    /// [`Checkpointer::fail_closed_after`], while serving.
    pub fn set_fail_closed_after(&self, after: Duration) {
        self.fail_closed_after_ms
            .store(millis(after), std::sync::atomic::Ordering::Relaxed);
    }

    pub fn health(&self) -> CheckpointHealth {
        self.health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether records have waited for a checkpoint at `now` longer than
    /// [`STALE_AFTER`] or two checkpoint periods, whichever is longer, with
    /// the log `audit_records` long (the alert `StrongroomCheckpointStale`
    /// says so at 15 minutes). Unknown (no checkpoint written yet in the
    /// file) is not stale.
    pub fn stale(&self, audit_records: u64, now: Timestamp) -> bool {
        let h = self.health();
        let limit = STALE_AFTER.max(self.policy.every.saturating_mul(2));
        let limit = i64::try_from(limit.as_millis()).unwrap_or(i64::MAX);
        audit_records > h.seq
            && h.written_at
                .is_some_and(|at| now.as_millis().saturating_sub(at.as_millis()) > limit)
    }

    /// Why signing must stop at `now`: checkpoint writes have failed for
    /// longer than allowed.
    pub fn signing_stopped(&self, now: Timestamp) -> Option<String> {
        let h = self.health();
        let (since, why) = h.failing?;
        let limit = i64::try_from(
            self.fail_closed_after_ms
                .load(std::sync::atomic::Ordering::Relaxed),
        )
        .unwrap_or(i64::MAX);
        (now.as_millis().saturating_sub(since.as_millis()) >= limit).then(|| {
            format!(
                "audit checkpoints have failed since {} ({why}): signing is stopped until one \
                 is written",
                since.to_rfc3339()
            )
        })
    }

    fn note(&self, outcome: Result<Head, String>, now: Timestamp) {
        let mut h = self.health.lock().unwrap_or_else(|p| p.into_inner());
        match outcome {
            Ok(head) => {
                h.seq = head.seq;
                h.written_at = Some(now);
                h.failing = None;
            }
            Err(why) => {
                let since = h.failing.as_ref().map_or(now, |(t, _)| *t);
                h.failing = Some((since, why));
            }
        }
    }

    pub fn public_key(&self) -> AuditPublicKey {
        self.key.public()
    }

    /// The key the checkpoints are signed with (backups are signed by it too).
    pub fn signer(&self) -> &CheckpointSigner {
        &self.key
    }

    pub fn policy(&self) -> CheckpointPolicy {
        self.policy
    }

    /// After a commit whose last record is `head`: writes a checkpoint if
    /// `every_records` records were added since the last one.
    pub async fn after_commit(
        &self,
        store: &Store,
        head: Head,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let mut last = self.last.lock().await;
        if head.seq < last.seq.saturating_add(self.policy.every_records) {
            return Ok(());
        }
        self.write(store, &mut last, head, now).await
    }

    /// Writes a checkpoint of the database's head if any record was added
    /// since the last one.
    pub async fn tick(&self, store: &Store, now: Timestamp) -> Result<(), ServiceError> {
        let mut last = self.last.lock().await;
        let head = store.audit_head().await?;
        if head.seq <= last.seq {
            return Ok(());
        }
        self.write(store, &mut last, head, now).await
    }

    async fn write(
        &self,
        store: &Store,
        last: &mut Head,
        head: Head,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let written = self.write_unnoted(store, last, head, now).await;
        self.note(
            written.as_ref().map(|()| head).map_err(ToString::to_string),
            now,
        );
        written
    }

    async fn write_unnoted(
        &self,
        store: &Store,
        last: &mut Head,
        head: Head,
        now: Timestamp,
    ) -> Result<(), ServiceError> {
        let mut v = Verifier::resume(*last);
        feed(store, &mut v, head.seq).await.map_err(|e| match e {
            Fed::Storage(e) => ServiceError::Storage(e),
            Fed::Broken(b) => ServiceError::AuditBroken(b),
        })?;
        if v.head() != head {
            return Err(ServiceError::AuditBroken(Break::HeadMismatch {
                last: v.head().seq,
                head: head.seq,
            }));
        }
        let cp = self.key.sign(head, now).await?;
        self.file.append(&cp)?;
        *last = head;
        tracing::debug!(seq = head.seq, "audit checkpoint written");
        Ok(())
    }
}

impl Checkpointer {
    /// A checkpointer for tests and benchmarks: a fixed audit key from
    /// `seed`, the checkpoint file `cp` in `dir`, checkpoints every
    /// `every_records` records or hour.
    pub fn for_tests(dir: &std::path::Path, seed: u8, every_records: u64) -> Checkpointer {
        let key = audit::AuditSigningKey::from_seed(&zeroize::Zeroizing::new([seed; 32]));
        Checkpointer::open(
            key,
            CheckpointFile::new(dir.join("cp")),
            CheckpointPolicy {
                every_records,
                every: std::time::Duration::from_secs(3600),
            },
        )
        .unwrap_or_else(|e| panic!("a test checkpoint file in {}: {e}", dir.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zeroize::Zeroizing;

    #[test]
    fn a_torn_last_line_is_skipped_and_cut_off_by_the_next_append() {
        let dir = tempfile::tempdir().unwrap();
        let file = CheckpointFile::new(dir.path().join("cp"));
        let key = AuditSigningKey::from_seed(&Zeroizing::new([5; 32]));
        let head = |seq| Head {
            seq,
            hash: audit::Hash([seq as u8; 32]),
        };
        file.append(&key.sign_checkpoint(head(1), Timestamp::UNIX_EPOCH))
            .unwrap();
        // A crash in the middle of the next append.
        let mut f = OpenOptions::new().append(true).open(file.path()).unwrap();
        f.write_all(b"{\"v\":1,\"seq\":2,\"he").unwrap();
        assert_eq!(file.read_all().unwrap().unwrap().len(), 1);
        // The next append cuts the torn line off first (no restart).
        file.append(&key.sign_checkpoint(head(3), Timestamp::UNIX_EPOCH))
            .unwrap();
        let seqs: Vec<u64> = file
            .read_all()
            .unwrap()
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(seqs, [1, 3]);
    }
}

// `audit verify`: the stored chain against the signed checkpoints.

const PAGE: u32 = 2_000;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The log or its checkpoints have been tampered with.
    #[error("audit log is broken: {0}")]
    Broken(#[from] Break),
    #[error(
        "the checkpoint file {0} is missing or empty but the log has records: it may have been deleted or emptied"
    )]
    NoCheckpoints(String),
    /// A checkpoint line that does not parse: the file was damaged or edited.
    #[error("{0}")]
    CheckpointFile(String),
    /// Verification could not run.
    #[error(transparent)]
    Service(#[from] ServiceError),
}

/// Verifies every record in sequence order, in pages, against the checkpoints.
///
/// The head is read first and the log verified up to it, so a server that
/// keeps appending meanwhile does not make a sound log look truncated.
pub async fn verify_audit(
    store: &Store,
    checkpoints: &CheckpointFile,
    key: &AuditPublicKey,
) -> Result<Report, VerifyError> {
    let read = |file: &CheckpointFile| match file.read_all() {
        Ok(c) => Ok(c.unwrap_or_default()),
        Err(e @ ServiceError::CheckpointLine { .. }) => {
            Err(VerifyError::CheckpointFile(e.to_string()))
        }
        Err(e) => Err(VerifyError::from(e)),
    };
    let cps = read(checkpoints)?;
    // Only the lost copy's checkpoints, kept apart by a restore, may be
    // excused by an epoch record.
    let lost = read(&checkpoints.superseded())?;
    let head = store.audit_head().await.map_err(ServiceError::from)?;
    let mut v = Verifier::with_lost(&cps, &lost, key)?;
    feed(store, &mut v, head.seq).await.map_err(|e| match e {
        Fed::Storage(e) => VerifyError::Service(e.into()),
        Fed::Broken(b) => VerifyError::Broken(b),
    })?;
    let report = v.finish(Some(head))?;
    if cps.is_empty() && report.records > 0 {
        return Err(VerifyError::NoCheckpoints(
            checkpoints.path().display().to_string(),
        ));
    }
    Ok(report)
}

/// Why [`feed`] stopped early.
#[derive(Debug)]
pub(crate) enum Fed {
    Storage(StorageError),
    Broken(Break),
}

/// Feeds `v` the stored records after its head, in sequence order, page by
/// page, up to and including `until`. Stops at the first break.
pub(crate) async fn feed(store: &Store, v: &mut Verifier, until: u64) -> Result<(), Fed> {
    loop {
        let page = store
            .audit_page(v.head().seq, PAGE)
            .await
            .map_err(Fed::Storage)?;
        if page.is_empty() {
            return Ok(());
        }
        // Each record either advances the head or is a break, so this ends.
        for r in &page {
            if r.seq > until {
                return Ok(());
            }
            v.push(r).map_err(Fed::Broken)?;
        }
    }
}
