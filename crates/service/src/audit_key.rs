//! The audit checkpoint key on disk: 32 secret bytes in hex, mode 0600.
//!
//! Until the keystore exists this file is where the key lives; loading
//! refuses a file that other users could read.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use audit::{AuditPublicKey, AuditSigningKey};
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditKeyError {
    #[error("audit key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "audit key file {path} is readable by other users (mode {mode:o}); run: chmod 600 {path}"
    )]
    Permissions { path: String, mode: u32 },
    #[error("audit key file {path} does not hold 64 hex digits")]
    Malformed { path: String },
    #[error("audit key file {path} already exists; refusing to overwrite a key")]
    Exists { path: String },
    #[error("the operating system's random number generator failed")]
    Random,
}

/// Loads the signing key, refusing group- or world-accessible files.
pub fn load_audit_key(path: &Path) -> Result<AuditSigningKey, AuditKeyError> {
    let p = path.display().to_string();
    let io = |source| AuditKeyError::Io {
        path: p.clone(),
        source,
    };
    let mode = fs::metadata(path).map_err(io)?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(AuditKeyError::Permissions {
            path: p,
            mode: mode & 0o777,
        });
    }
    let text = Zeroizing::new(fs::read_to_string(path).map_err(io)?);
    let mut seed = Zeroizing::new([0u8; 32]);
    hex::decode_to_slice(text.trim(), seed.as_mut())
        .map_err(|_| AuditKeyError::Malformed { path: p.clone() })?;
    Ok(AuditSigningKey::from_seed(&seed))
}

/// Creates a new key file with mode 0600 from the OS CSPRNG and returns the
/// public key. Never overwrites.
pub fn generate_audit_key(path: &Path) -> Result<AuditPublicKey, AuditKeyError> {
    let p = path.display().to_string();
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut()).map_err(|_| AuditKeyError::Random)?;
    let key = AuditSigningKey::from_seed(&seed);
    let text = Zeroizing::new(format!("{}\n", hex::encode(&seed[..])));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| match source.kind() {
            std::io::ErrorKind::AlreadyExists => AuditKeyError::Exists { path: p.clone() },
            _ => AuditKeyError::Io {
                path: p.clone(),
                source,
            },
        })?;
    let io = |source| AuditKeyError::Io {
        path: p.clone(),
        source,
    };
    f.write_all(text.as_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    crate::checkpoints::sync_dir(path).map_err(io)?;
    Ok(key.public())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generate_load_and_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.key");
        let public = generate_audit_key(&path).unwrap();
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(load_audit_key(&path).unwrap().public(), public);
        assert!(matches!(
            generate_audit_key(&path),
            Err(AuditKeyError::Exists { .. })
        ));

        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_audit_key(&path).unwrap_err();
        assert!(
            matches!(e, AuditKeyError::Permissions { mode: 0o644, .. }),
            "{e}"
        );

        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&path, "not hex").unwrap();
        let e = load_audit_key(&path).unwrap_err();
        assert!(matches!(e, AuditKeyError::Malformed { .. }));
        // The error never carries the file's content.
        assert!(!e.to_string().contains("not hex"));
    }
}
