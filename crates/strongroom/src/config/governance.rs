//! The `[governance]` section of the configuration: the admin quorum, the
//! windows proposals, address-book entries and approvals run in, and
//! look-alike screening.

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGovernance {
    admin_quorum: u32,
    whitelist_cooling_off_hours: u64,
    #[serde(default = "default_proposal_ttl")]
    proposal_ttl_hours: u64,
    #[serde(default = "default_day")]
    approval_window_hours: u64,
    #[serde(default = "default_day")]
    max_approval_ttl_hours: u64,
    /// Look-alike screening: characters compared at the start and the end
    /// of an address's body (after `0x`, `bc1q`, …).
    #[serde(default = "default_lookalike")]
    lookalike_head: u8,
    #[serde(default = "default_lookalike")]
    lookalike_tail: u8,
}

fn default_proposal_ttl() -> u64 {
    168
}

fn default_day() -> u64 {
    24
}

fn default_lookalike() -> u8 {
    4
}

pub(crate) fn governance(
    g: &RawGovernance,
) -> Result<service::governance::GovernanceConfig, ConfigError> {
    if !(1..=20).contains(&g.admin_quorum) {
        return Err(ConfigError::new(
            "governance.admin_quorum",
            "must be between 1 and 20 (admins whose approval a change needs)",
        ));
    }
    let hours = |key: &str, v: u64, min: u64, max: u64| -> Result<i64, ConfigError> {
        if !(min..=max).contains(&v) {
            return Err(ConfigError::new(
                &format!("governance.{key}"),
                format!("must be between {min} and {max} hours"),
            ));
        }
        // At most a year of hours: no overflow.
        Ok(i64::try_from(v).unwrap_or(0) * 3_600_000)
    };
    Ok(service::governance::GovernanceConfig {
        admin_quorum: g.admin_quorum,
        whitelist_cooling_off_ms: hours(
            "whitelist_cooling_off_hours",
            g.whitelist_cooling_off_hours,
            0,
            24 * 90,
        )?,
        proposal_ttl_ms: hours("proposal_ttl_hours", g.proposal_ttl_hours, 1, 24 * 90)?,
        approval_window_ms: hours("approval_window_hours", g.approval_window_hours, 1, 24 * 30)?,
        max_approval_ttl_ms: hours(
            "max_approval_ttl_hours",
            g.max_approval_ttl_hours,
            1,
            24 * 30,
        )?,
        lookalike_head: chars("lookalike_head", g.lookalike_head)?,
        lookalike_tail: chars("lookalike_tail", g.lookalike_tail)?,
    })
}

/// 1 to 16 characters: fewer than that would match nothing's look-alikes
/// or everything's.
fn chars(key: &str, v: u8) -> Result<u8, ConfigError> {
    if !(1..=16).contains(&v) {
        return Err(ConfigError::new(
            &format!("governance.{key}"),
            "must be between 1 and 16 characters",
        ));
    }
    Ok(v)
}
