//! `[console]`: where the web console is reached, for passkeys. A passkey
//! is scoped to an RP ID (a domain name, never an IP address) and used from
//! pages of listed origins; without the section, passkeys are refused
//! (password and TOTP still sign in; approvals are made on the command line).

use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConsole {
    /// The domain passkeys are scoped to (`localhost` in development).
    rp_id: String,
    /// The console's origins (`https://custody.example.com`), each on
    /// the RP ID or one of its subdomains; plain `http` for `localhost` only.
    origins: Vec<String>,
}

pub(super) fn relying_party(
    raw: Option<RawConsole>,
) -> Result<Option<policy::RelyingParty>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    policy::RelyingParty::new(&raw.rp_id, &raw.origins)
        .map(Some)
        .map_err(|e| {
            let key = if e.starts_with("rp_id") {
                "console.rp_id"
            } else {
                "console.origins"
            };
            ConfigError::new(key, e)
        })
}
