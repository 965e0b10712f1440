//! `[threshold]` in the configuration: the signer nodes a server
//! coordinates, their pinned identities, and the pool and blame settings.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

/// `[threshold]`: the signer nodes threshold keys live on.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawThreshold {
    /// This server's TLS identity towards the nodes (`strongroom signer
    /// server-identity --dir` makes it and prints what the nodes pin).
    identity_dir: PathBuf,
    /// How many nodes sign: more than half of them.
    threshold: u16,
    #[serde(default = "default_presignatures")]
    presignatures: usize,
    #[serde(default = "default_signer_timeout")]
    timeout_seconds: u64,
    /// Aborted signing sessions blamed on one node before the key freezes.
    #[serde(default = "default_blame_limit")]
    blame_limit: u32,
    signers: Vec<RawSigner>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSigner {
    index: u16,
    /// `host:port`.
    addr: String,
    /// SHA-256 of its TLS certificate, as `signer init` printed it.
    fingerprint: String,
}

pub(super) fn default_presignatures() -> usize {
    4
}

pub(super) fn default_signer_timeout() -> u64 {
    30
}

pub(super) fn default_blame_limit() -> u32 {
    3
}

/// The signer nodes, checked.
#[derive(Debug, Clone)]
pub struct ThresholdConfig {
    pub identity_dir: PathBuf,
    pub threshold: u16,
    pub presignatures: usize,
    pub timeout: Duration,
    pub blame_limit: u32,
    pub signers: Vec<keys_mpc::cluster::SignerEndpoint>,
}

pub(super) fn threshold(raw: RawThreshold, base: &Path) -> Result<ThresholdConfig, ConfigError> {
    let n = raw.signers.len();
    if !(2..=64).contains(&n) {
        return Err(ConfigError::new(
            "threshold.signers",
            "two to 64 signer nodes",
        ));
    }
    if raw.threshold as usize > n || usize::from(raw.threshold) * 2 <= n {
        return Err(ConfigError::new(
            "threshold.threshold",
            format!("more than half of the {n} signers, and at most all of them"),
        ));
    }
    if raw.presignatures > 1024 {
        return Err(ConfigError::new("threshold.presignatures", "at most 1024"));
    }
    if !(1..=600).contains(&raw.timeout_seconds) {
        return Err(ConfigError::new(
            "threshold.timeout_seconds",
            "must be between 1 and 600",
        ));
    }
    if raw.blame_limit == 0 {
        return Err(ConfigError::new("threshold.blame_limit", "at least 1"));
    }
    let mut signers = Vec::with_capacity(n);
    for (i, sgn) in raw.signers.into_iter().enumerate() {
        let at = |f: &str| format!("threshold.signers[{i}].{f}");
        if sgn.index == 0 || usize::from(sgn.index) > n {
            return Err(ConfigError::new(
                &at("index"),
                format!("signers are numbered 1 to {n}"),
            ));
        }
        if signers
            .iter()
            .any(|o: &keys_mpc::cluster::SignerEndpoint| o.index == sgn.index)
        {
            return Err(ConfigError::new(&at("index"), "used twice"));
        }
        let fingerprint = sgn
            .fingerprint
            .parse()
            .map_err(|e| ConfigError::new(&at("fingerprint"), format!("{e}")))?;
        signers.push(keys_mpc::cluster::SignerEndpoint {
            index: sgn.index,
            addr: sgn.addr,
            fingerprint,
        });
    }
    signers.sort_by_key(|s| s.index);
    Ok(ThresholdConfig {
        identity_dir: base.join(raw.identity_dir),
        threshold: raw.threshold,
        presignatures: raw.presignatures,
        timeout: Duration::from_secs(raw.timeout_seconds),
        blame_limit: raw.blame_limit,
        signers,
    })
}
