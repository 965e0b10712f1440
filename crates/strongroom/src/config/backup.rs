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
}

/// Backups as configured: their recipients, read and checked at load.
#[derive(Debug, Clone)]
pub struct BackupConfig {
    pub recipients: Vec<String>,
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
    Ok(Some(BackupConfig { recipients }))
}
