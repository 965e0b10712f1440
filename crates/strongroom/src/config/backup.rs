//! `[backup]`: who backups are encrypted to.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackup {
    /// age recipients (`age1…`), one per line: any of their identities
    /// decrypts a backup. Kept away from this machine's own files.
    recipients_file: PathBuf,
    /// Scheduled backups: written by the server into this directory.
    dir: Option<PathBuf>,
    /// How often (default daily).
    #[serde(default = "default_every")]
    every_seconds: u64,
    /// How many scheduled backups are kept (the oldest go).
    #[serde(default = "default_keep")]
    keep: usize,
}

fn default_every() -> u64 {
    86_400
}

fn default_keep() -> usize {
    7
}

/// Backups the server takes itself.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub dir: PathBuf,
    pub every: std::time::Duration,
    pub keep: usize,
}

/// Backups as configured: their recipients, read and checked at load.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub recipients: Vec<String>,
    pub schedule: Option<Schedule>,
}

pub(super) fn backup(
    raw: Option<RawBackup>,
    base: &Path,
) -> Result<Option<BackupConfig>, ConfigError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let key = "backup.recipients_file";
    let path = base.join(&raw.recipients_file);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| ConfigError::new(key, format!("cannot read {}: {e}", path.display())))?;
    let mut recipients = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        line.parse::<age::x25519::Recipient>()
            .map_err(|e| ConfigError::new(key, format!("{line:?} is not an age recipient: {e}")))?;
        recipients.push(line.to_owned());
    }
    if recipients.is_empty() {
        return Err(ConfigError::new(key, "no age recipient in the file"));
    }
    if !(1..=7 * 86_400).contains(&raw.every_seconds) {
        return Err(ConfigError::new(
            "backup.every_seconds",
            "between 1 and 604800 (a week)",
        ));
    }
    if !(1..=1000).contains(&raw.keep) {
        return Err(ConfigError::new("backup.keep", "between 1 and 1000"));
    }
    let schedule = raw.dir.map(|d| Schedule {
        dir: base.join(d),
        every: std::time::Duration::from_secs(raw.every_seconds),
        keep: raw.keep,
    });
    Ok(Some(BackupConfig {
        recipients,
        schedule,
    }))
}
