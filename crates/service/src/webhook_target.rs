//! Where a webhook may be delivered: never to this host, a private or
//! link-local network, a cloud metadata address or another internal
//! service (the database, a signer node) — the server would otherwise be a
//! proxy into its own network, and a port scanner.
//!
//! A target is checked when it is registered and again at every delivery:
//! an address literal by [`check_url`], a name by the client's resolver,
//! which resolves once per delivery (no connections are kept) and hands the
//! connector only addresses it checked, so a name that rebinds to an
//! internal address between registration and delivery is refused. Hosts an
//! operator names in `[webhooks] allow_hosts` may resolve anywhere; the
//! loopback test mode allows loopback targets. Deliveries go over
//! `https://` (rustls, the system's roots or the configured CA bundle);
//! plain `http://` only to loopback in the test mode. A failed delivery is
//! recorded only as a class (`target not allowed`, `unreachable`,
//! `HTTP <status>`), never with a reason that would tell whether a port is
//! open.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// Where webhooks may go, as the operator configured it.
#[derive(Debug, Clone, Default)]
pub struct WebhookPolicy {
    /// Hosts (lower case, no trailing dot) that may resolve to any address.
    pub allow_hosts: BTreeSet<String>,
    /// Loopback targets allowed, over plain HTTP too (tests and
    /// development only).
    pub allow_loopback: bool,
    /// Whose certificates receivers must present (none: the system's
    /// trust store).
    pub tls: Option<tls::ClientTls>,
    /// Seconds to wait after each failed attempt; the attempt after the
    /// last is final. None: [`DEFAULT_RETRY_DELAYS_S`].
    pub retry_delays_s: Option<Vec<u64>>,
}

/// Delays after each failed attempt (Standard Webhooks' schedule): the
/// eighth failure, some 27 hours after the event, is final.
pub const DEFAULT_RETRY_DELAYS_S: [u64; 7] = [5, 300, 1800, 7200, 18_000, 36_000, 36_000];

impl WebhookPolicy {
    /// The delay after failed attempt number `attempt` (from 0), or none
    /// when that failure is final.
    pub fn retry_delay_s(&self, attempt: usize) -> Option<u64> {
        match &self.retry_delays_s {
            Some(d) => d.get(attempt).copied(),
            None => DEFAULT_RETRY_DELAYS_S.get(attempt).copied(),
        }
    }

    /// The loopback test mode: receivers on this host are allowed.
    pub fn loopback_for_tests() -> Self {
        WebhookPolicy {
            allow_loopback: true,
            ..WebhookPolicy::default()
        }
    }
}

/// IPv4 networks no webhook may reach: this network, private, carrier-grade
/// NAT, loopback, link-local (with 169.254.169.254, the metadata service),
/// IETF protocol assignments, benchmarking, multicast, reserved and
/// broadcast, and Azure's wire server. Documentation networks are left
/// out (unroutable anyway).
const DENIED_V4: &[(u32, u32)] = &[
    (0x0000_0000, 8),
    (0x0a00_0000, 8),
    (0x6440_0000, 10),
    (0x7f00_0000, 8),
    (0xa9fe_0000, 16),
    (0xac10_0000, 12),
    (0xc000_0000, 24),
    (0xc0a8_0000, 16),
    (0xc612_0000, 15),
    (0xe000_0000, 4),
    (0xf000_0000, 4),
    (0xa83f_8110, 32),
];

/// IPv6 networks no webhook may reach: unspecified, loopback, discard,
/// IETF protocol assignments (Teredo included), 6to4, NAT64's local use,
/// unique-local (fd00:ec2::254 among them), link-local, site-local,
/// multicast. IPv4-mapped and NAT64 addresses are judged by the IPv4
/// address inside.
const DENIED_V6: &[(u128, u32)] = &[
    (0, 128),
    (1, 128),
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64),
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23),
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16),
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48),
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7),
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10),
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10),
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8),
];

fn in_v4(a: Ipv4Addr, (net, len): (u32, u32)) -> bool {
    let mask = u32::MAX.checked_shl(32 - len).unwrap_or(0);
    u32::from(a) & mask == net & mask
}

fn in_v6(a: Ipv6Addr, (net, len): (u128, u32)) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0);
    u128::from(a) & mask == net & mask
}

/// Whether no webhook may reach `ip` (unless its host is allow-listed).
pub fn forbidden(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(a) => DENIED_V4.iter().any(|n| in_v4(a, *n)),
        IpAddr::V6(a) => {
            // NAT64 (64:ff9b::/96): the IPv4 address in the last 32 bits.
            if in_v6(a, (0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96)) {
                let v4 = Ipv4Addr::from(u32::try_from(u128::from(a) & 0xffff_ffff).unwrap_or(0));
                return DENIED_V4.iter().any(|n| in_v4(v4, *n));
            }
            DENIED_V6.iter().any(|n| in_v6(a, *n))
        }
    }
}

/// Whether a target at `ip`, of host `host`, is allowed under `p`.
fn allowed(p: &WebhookPolicy, host: &str, ip: IpAddr) -> bool {
    p.allow_hosts.contains(host) || !forbidden(ip) || (p.allow_loopback && ip.is_loopback())
}

/// The host of a URL as compared with `allow_hosts`.
fn host_key(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Checks a webhook URL: `https://host[:port]/path` (plain `http://` only
/// to loopback in the test mode), no user-info, at most 2048 bytes, and an
/// address literal not in a forbidden network. A name is checked as it
/// resolves, at each delivery.
pub fn check_url(url: &str, p: &WebhookPolicy) -> Result<reqwest::Url, String> {
    let bad = || {
        "a webhook URL is https://host[:port]/path without user-info, to a public address or a \
         host in [webhooks] allow_hosts"
            .to_owned()
    };
    if url.len() > 2048 {
        return Err(bad());
    }
    let u = reqwest::Url::parse(url).map_err(|_| bad())?;
    // The bound holds for the URL as stored and used, too: a Unicode host
    // grows when written as punycode, and what is accepted once must be
    // accepted again as written (found by fuzzing).
    if u.as_str().len() > 2048 || !u.username().is_empty() || u.password().is_some() {
        return Err(bad());
    }
    let host = u.host_str().map(host_key).ok_or_else(bad)?;
    match u.scheme() {
        "https" => {}
        "http" if p.allow_loopback && tls::is_loopback_host(&host) => {}
        "http" => {
            return Err(
                "a webhook is delivered over https:// (plain http:// only to loopback in the \
                 test mode): its payload and signature would travel in clear"
                    .to_owned(),
            );
        }
        _ => return Err(bad()),
    }
    // An address literal, as the URL parser normalised it (`0x7f.1` is
    // 127.0.0.1; IPv6 in brackets).
    let literal = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .ok();
    if let Some(ip) = literal
        && !allowed(p, &host, ip)
    {
        return Err(
            "the webhook's target address is not allowed (a private, loopback, link-local or \
                    metadata address)"
                .to_owned(),
        );
    }
    if host == "localhost" && !p.allow_loopback && !p.allow_hosts.contains(&host) {
        return Err(bad());
    }
    Ok(u)
}

/// A target refused before any connection was made.
#[derive(Debug)]
struct NotAllowed;

impl std::fmt::Display for NotAllowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("target not allowed")
    }
}

impl std::error::Error for NotAllowed {}

/// Resolves a name once and gives the connector only the addresses it
/// checked; any forbidden address refuses the whole name.
#[derive(Debug, Clone)]
struct GuardedResolver {
    policy: Arc<WebhookPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = host_key(name.as_str());
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() || addrs.iter().any(|a| !allowed(&policy, &host, a.ip())) {
                return Err(Box::new(NotAllowed) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The HTTP client deliveries go out through under `policy`: its resolver
/// checks every name, no proxy (it would be checked instead of the
/// target), no redirects, no kept connections (each delivery resolves and
/// checks again), 10 s at most.
pub(crate) fn client(policy: &WebhookPolicy) -> reqwest::Client {
    let tls = match &policy.tls {
        Some(t) => Ok(t.clone()),
        None => tls::ClientTls::new(&tls::Roots::System),
    };
    let builder = match tls {
        Ok(t) => t.http_client(),
        Err(e) => {
            // No trust store: https deliveries fail (as unreachable) rather
            // than going out unverified.
            tracing::error!(error = %e, "webhook TLS: the system's trust store did not load");
            tls::install_default_provider();
            reqwest::Client::builder().tls_certs_only(Vec::new())
        }
    };
    builder
        .dns_resolver(GuardedResolver {
            policy: Arc::new(policy.clone()),
        })
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap_or_default()
}

/// What a delivery that failed records: `target not allowed` (refused
/// before any connection) or `unreachable` (a name that does not resolve,
/// a refused or reset connection, a timeout — alike, so the record tells
/// nothing about which ports are open).
pub(crate) fn failure_class(e: &reqwest::Error) -> &'static str {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<NotAllowed>() {
            return "target not allowed";
        }
        source = s.source();
    }
    "unreachable"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
    }

    #[test]
    fn internal_and_metadata_addresses_are_forbidden() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "0.0.0.0",
            "168.63.129.16",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "ff02::1",
        ] {
            assert!(forbidden(ip(a)), "{a}");
        }
        for a in [
            "8.8.8.8",
            "2606:4700::1111",
            "203.0.113.10",
            "64:ff9b::808:808",
        ] {
            assert!(!forbidden(ip(a)), "{a}");
        }
    }

    #[test]
    fn urls_are_checked_as_written() {
        let strict = WebhookPolicy::default();
        let ok = |u: &str, p: &WebhookPolicy| check_url(u, p).is_ok();
        assert!(ok("https://hooks.example.com/x", &strict));
        assert!(ok("https://203.0.113.10:8080/hook", &strict));
        for u in [
            "http://hooks.example.com/x",
            "http://203.0.113.10:8080/hook",
            "https://127.0.0.1:5432/",
            "http://127.0.0.1:5432/",
            "http://169.254.169.254/latest/meta-data",
            "http://[fc00::1]/x",
            "http://10.0.0.1/x",
            "http://0x7f.1/x",
            "http://localhost:9/x",
            "http://user@example.com/x",
            "ftp://example.com/x",
            "not a url",
        ] {
            assert!(!ok(u, &strict), "{u}");
        }
        let tests = WebhookPolicy::loopback_for_tests();
        assert!(ok("http://127.0.0.1:9/x", &tests));
        assert!(ok("https://127.0.0.1:9/x", &tests));
        assert!(!ok("http://10.0.0.1/x", &tests));
        assert!(!ok("http://hooks.example.com/x", &tests));
        let named = WebhookPolicy {
            allow_hosts: ["10.0.0.1".to_owned()].into(),
            ..WebhookPolicy::default()
        };
        assert!(ok("https://10.0.0.1/x", &named));
        assert!(!ok("http://10.0.0.1/x", &named));
    }
}
