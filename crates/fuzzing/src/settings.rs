//! What operators and integrators configure: the server's configuration
//! file (TOML), read at start and at every reload (paths in it are joined
//! to a directory that does not exist, so a named file is a clean error,
//! never a read), and a webhook's target URL, given over the API.

use std::net::IpAddr;
use std::path::Path;

use service::webhook_target::{WebhookPolicy, check_url, forbidden};
use strongroom::config::Config;

/// A configuration: parsed or refused with the key at fault and why,
/// never a panic; the same text twice, the same verdict.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let base = Path::new("/nonexistent/strongroom-fuzz");
    let once = Config::parse(text, base);
    if let Err(e) = &once {
        assert!(!e.key.is_empty(), "an error names its key: {e}");
        assert!(!e.message.is_empty(), "an error says why: {e}");
    }
    let again = Config::parse(text, base);
    assert_eq!(
        once.as_ref()
            .map(|c| format!("{:?}", c.listen))
            .map_err(ToString::to_string),
        again
            .as_ref()
            .map(|c| format!("{:?}", c.listen))
            .map_err(ToString::to_string),
        "one text, one verdict"
    );
}

/// A webhook URL, under the production rules (the first byte) or the
/// loopback test mode: one accepted is `https://` (plain `http://` only to
/// loopback in the test mode), carries no user-info, names no forbidden
/// address literal, and is accepted again as written after normalising.
pub fn webhook_url(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    let policy = WebhookPolicy {
        allow_loopback: mode % 2 == 1,
        ..WebhookPolicy::default()
    };
    let Ok(u) = check_url(text, &policy) else {
        return;
    };
    assert!(u.username().is_empty() && u.password().is_none(), "{u}");
    let host = u.host_str().unwrap_or_default();
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    match u.scheme() {
        "https" => {}
        "http" => assert!(
            policy.allow_loopback,
            "plain http outside the test mode: {u}"
        ),
        other => panic!("scheme {other} accepted: {u}"),
    }
    if let Some(ip) = literal {
        assert!(
            !forbidden(ip) || (policy.allow_loopback && ip.is_loopback()),
            "a forbidden address accepted: {u}"
        );
    }
    let again = check_url(u.as_str(), &policy);
    assert_eq!(
        again.as_ref().ok(),
        Some(&u),
        "normalised, accepted as itself: {u}"
    );
}
