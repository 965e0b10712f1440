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
    let rp_id = raw.rp_id.trim_end_matches('.').to_ascii_lowercase();
    let domain_ok = !rp_id.is_empty()
        && rp_id.len() <= 253
        && rp_id.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && rp_id.parse::<std::net::Ipv4Addr>().is_err();
    if !domain_ok {
        return Err(ConfigError::new(
            "console.rp_id",
            "must be a domain name (passkeys are not scoped to IP addresses)",
        ));
    }
    if raw.origins.is_empty() {
        return Err(ConfigError::new(
            "console.origins",
            "must list the console's origins (https://host[:port])",
        ));
    }
    for o in &raw.origins {
        let (scheme, rest) = o.split_once("://").unwrap_or(("", ""));
        let host =
            rest.rsplit_once(':').map_or(
                rest,
                |(h, port)| {
                    if port.parse::<u16>().is_ok() { h } else { rest }
                },
            );
        let on_rp = host == rp_id || host.ends_with(&format!(".{rp_id}"));
        let scheme_ok = scheme == "https" || (scheme == "http" && host == "localhost");
        if !on_rp || !scheme_ok || host.contains('/') {
            return Err(ConfigError::new(
                "console.origins",
                format!(
                    "{o:?}: an origin https://host[:port] on {rp_id} (http only for localhost)"
                ),
            ));
        }
    }
    Ok(Some(policy::RelyingParty {
        rp_id,
        origins: raw.origins,
    }))
}
