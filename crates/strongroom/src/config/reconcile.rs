//! `[reconciliation]`: how often the server compares every account with
//! the chains (`service::reconcile`).

use std::time::Duration;

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReconciliation {
    /// Seconds between passes: an outflow Strongroom did not sign is found
    /// within one block interval and this.
    #[serde(default = "default_every")]
    every_seconds: u64,
}

fn default_every() -> u64 {
    30
}

/// The interval between passes (30 s without the section).
pub(super) fn every(raw: Option<RawReconciliation>) -> Result<Duration, ConfigError> {
    let seconds = raw.map_or_else(default_every, |r| r.every_seconds);
    if !(5..=86_400).contains(&seconds) {
        return Err(ConfigError::new(
            "reconciliation.every_seconds",
            "must be between 5 and 86400",
        ));
    }
    Ok(Duration::from_secs(seconds))
}
