//! Signed checkpoints of the audit chain head, appended to a file outside
//! the database and flushed to disk (file and directory) before they count.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use audit::{AuditPublicKey, AuditSigningKey, Checkpoint, Head};
use domain::Timestamp;
use storage::Store;
use tokio::sync::Mutex;

use crate::service::ServiceError;

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

    /// All checkpoints, or `None` if the file does not exist.
    pub fn read_all(&self) -> Result<Option<Vec<Checkpoint>>, ServiceError> {
        let f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        let mut out = Vec::new();
        for (i, line) in BufReader::new(f).lines().enumerate() {
            let line = line.map_err(|e| self.io(e))?;
            if line.trim().is_empty() {
                continue;
            }
            let cp = serde_json::from_str(&line).map_err(|e| ServiceError::Checkpoint {
                path: self.path.display().to_string(),
                reason: format!("line {}: {e}", i + 1),
            })?;
            out.push(cp);
        }
        Ok(Some(out))
    }

    /// Appends one checkpoint and makes it durable.
    pub fn append(&self, cp: &Checkpoint) -> Result<(), ServiceError> {
        let mut line = serde_json::to_string(cp).map_err(|e| ServiceError::Checkpoint {
            path: self.path.display().to_string(),
            reason: e.to_string(),
        })?;
        line.push('\n');
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(|e| self.io(e))?;
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

/// When to write a checkpoint.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// After this many new records.
    pub every_records: u64,
    /// And at least this often while records are being added.
    pub every: Duration,
}

/// Signs the chain head into the checkpoint file when the policy says so.
#[derive(Debug)]
pub struct Checkpointer {
    key: AuditSigningKey,
    file: CheckpointFile,
    policy: CheckpointPolicy,
    /// Sequence number of the last checkpoint written; also serialises writers.
    last: Mutex<u64>,
}

impl Checkpointer {
    /// Opens the checkpoint file, checking that what it holds was signed by `key`.
    pub fn open(
        key: AuditSigningKey,
        file: CheckpointFile,
        policy: CheckpointPolicy,
    ) -> Result<Self, ServiceError> {
        let public = key.public();
        let existing = file.read_all()?.unwrap_or_default();
        let mut last = 0;
        for (i, cp) in existing.iter().enumerate() {
            let head = cp.verify(&public).map_err(|e| ServiceError::Checkpoint {
                path: file.path().display().to_string(),
                reason: format!("line {}: {e}", i + 1),
            })?;
            last = last.max(head.seq);
        }
        Ok(Checkpointer {
            key,
            file,
            policy,
            last: Mutex::new(last),
        })
    }

    pub fn public_key(&self) -> AuditPublicKey {
        self.key.public()
    }

    pub fn policy(&self) -> CheckpointPolicy {
        self.policy
    }

    /// After a commit whose last record is `head`: writes a checkpoint if
    /// `every_records` records were added since the last one. `head` is
    /// committed, so it can be signed without reading the database again.
    pub async fn after_commit(&self, head: Head, now: Timestamp) -> Result<(), ServiceError> {
        let mut last = self.last.lock().await;
        if head.seq < last.saturating_add(self.policy.every_records) {
            return Ok(());
        }
        self.write(&mut last, head, now)
    }

    /// Writes a checkpoint of the database's head if any record was added
    /// since the last one.
    pub async fn tick(&self, store: &Store, now: Timestamp) -> Result<(), ServiceError> {
        let mut last = self.last.lock().await;
        let head = store.audit_head().await?;
        if head.seq <= *last {
            return Ok(());
        }
        self.write(&mut last, head, now)
    }

    fn write(&self, last: &mut u64, head: Head, now: Timestamp) -> Result<(), ServiceError> {
        let cp = self.key.sign_checkpoint(head, now);
        self.file.append(&cp)?;
        *last = head.seq;
        tracing::debug!(seq = head.seq, "audit checkpoint written");
        Ok(())
    }
}
