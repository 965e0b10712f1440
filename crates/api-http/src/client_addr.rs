//! The client's address: the peer of the connection, or, when the peer is a
//! trusted proxy, the nearest untrusted hop of `X-Forwarded-For`.
//!
//! Anyone can write `X-Forwarded-For`, so it is read only when the peer is
//! in a configured [`Cidr`], and only from the right (the hops our proxies
//! appended) to the left, skipping hops that are themselves trusted
//! proxies. The first untrusted hop is the client; a hop that does not
//! parse stops the walk at the last trusted address, and at most
//! [`MAX_HOPS`] hops are read. Addresses are compared in canonical form
//! (`::ffff:a.b.c.d` is `a.b.c.d`), since dual-stack listeners report IPv4
//! peers as IPv4-mapped IPv6.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

use axum::http::HeaderMap;

/// The header proxies append the address of their own peer to.
pub const FORWARDED_FOR: &str = "x-forwarded-for";

/// Most `X-Forwarded-For` hops read, from the right.
pub const MAX_HOPS: usize = 16;

/// A network: an address with its host bits cleared and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    net: IpAddr,
    len: u8,
}

/// Why a network does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CidrError {
    /// The part before the `/` is not an IP address.
    Address(String),
    /// The part after the `/` is not a number.
    Length(String),
    /// The prefix is longer than the address family allows.
    TooLong { len: u8, max: u8 },
}

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CidrError::Address(a) => write!(f, "{a:?} is not an IP address"),
            CidrError::Length(l) => write!(f, "{l:?} is not a prefix length"),
            CidrError::TooLong { len, max } => {
                write!(f, "prefix length {len} is longer than {max}")
            }
        }
    }
}

impl std::error::Error for CidrError {}

/// `bits` ones followed by zeros, in a `u32`.
fn mask_v4(bits: u8) -> u32 {
    u32::MAX
        .checked_shl(32 - u32::from(bits.min(32)))
        .unwrap_or(0)
}

/// `bits` ones followed by zeros, in a `u128`.
fn mask_v6(bits: u8) -> u128 {
    u128::MAX
        .checked_shl(128 - u32::from(bits.min(128)))
        .unwrap_or(0)
}

impl Cidr {
    /// The network of `addr`'s first `len` bits (host bits cleared).
    pub fn new(addr: IpAddr, len: u8) -> Result<Self, CidrError> {
        let max = match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        };
        if len > max {
            return Err(CidrError::TooLong { len, max });
        }
        let net = match addr {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask_v4(len))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask_v6(len))),
        };
        Ok(Cidr { net, len })
    }

    /// The network address (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.net
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether `ip` is in this network, comparing canonical forms: an
    /// IPv4-mapped address is its IPv4 address, and an IPv4 address is in
    /// an IPv6 network when its mapped form is (`::/0` holds everything).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.net, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(a)) => u32::from(a) & mask_v4(self.len) == u32::from(net),
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                u128::from(a) & mask_v6(self.len) == u128::from(net)
            }
            (IpAddr::V6(net), IpAddr::V4(a)) => {
                u128::from(a.to_ipv6_mapped()) & mask_v6(self.len) == u128::from(net)
            }
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

/// A prefix length: one to three decimal digits (no sign, no spaces).
fn parse_len(l: &str) -> Option<u8> {
    if l.is_empty() || l.len() > 3 || !l.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    l.parse().ok()
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// `a.b.c.d/n`, `x:y::z/n`, or a bare address (`/32` or `/128`).
    fn from_str(s: &str) -> Result<Self, CidrError> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (s, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| CidrError::Address(addr.to_owned()))?;
        let len = match len {
            None => match ip {
                IpAddr::V4(_) => 32,
                IpAddr::V6(_) => 128,
            },
            Some(l) => parse_len(l).ok_or_else(|| CidrError::Length(l.to_owned()))?,
        };
        Cidr::new(ip, len)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.len)
    }
}

fn trusted_by(trusted: &[Cidr], ip: IpAddr) -> bool {
    trusted.iter().any(|c| c.contains(ip))
}

/// One `X-Forwarded-For` hop: an address, or an address with a port
/// (some proxies write one).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|s| s.ip()))
}

/// The client's address, in canonical form: the `peer` itself unless it is
/// in `trusted`; then the nearest `X-Forwarded-For` hop, read from the
/// right, that is not in `trusted` (or the last trusted one, when the hops
/// run out, stop parsing, or pass [`MAX_HOPS`]). `None` without a peer.
pub fn client_ip(peer: Option<IpAddr>, headers: &HeaderMap, trusted: &[Cidr]) -> Option<IpAddr> {
    let mut ip = peer?.to_canonical();
    if !trusted_by(trusted, ip) {
        return Some(ip);
    }
    // The last header line holds the nearest hops; an unreadable line is
    // garbage, like an unparsable hop.
    let hops = headers
        .get_all(FORWARDED_FOR)
        .iter()
        .rev()
        .flat_map(|v| v.to_str().unwrap_or("\u{0}").rsplit(','));
    for hop in hops.take(MAX_HOPS) {
        match parse_hop(hop) {
            Some(a) => {
                ip = a.to_canonical();
                if !trusted_by(trusted, ip) {
                    return Some(ip);
                }
            }
            None => break,
        }
    }
    Some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|c| c.parse().expect("a network")).collect()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                FORWARDED_FOR,
                HeaderValue::from_str(v).expect("a header value"),
            );
        }
        h
    }

    #[test]
    fn without_a_trusted_proxy_the_header_is_ignored() {
        let h = xff(&["1.1.1.1"]);
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &h, &[]),
            Some(ip("10.0.0.1"))
        );
        let other = cidrs(&["192.168.0.0/16"]);
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &h, &other),
            Some(ip("10.0.0.1"))
        );
        assert_eq!(client_ip(None, &h, &other), None);
    }

    #[test]
    fn a_trusted_peer_passes_on_the_nearest_untrusted_hop() {
        let t = cidrs(&["10.0.0.0/8"]);
        let h = xff(&["1.1.1.1, 10.0.0.2"]);
        assert_eq!(client_ip(Some(ip("10.0.0.1")), &h, &t), Some(ip("1.1.1.1")));
        // The same hops over two header lines.
        let h = xff(&["1.1.1.1", "10.0.0.2"]);
        assert_eq!(client_ip(Some(ip("10.0.0.1")), &h, &t), Some(ip("1.1.1.1")));
        // A dual-stack peer.
        let h = xff(&["1.1.1.1"]);
        assert_eq!(
            client_ip(Some(ip("::ffff:10.0.0.1")), &h, &t),
            Some(ip("1.1.1.1"))
        );
        // No header: the proxy itself.
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &HeaderMap::new(), &t),
            Some(ip("10.0.0.1"))
        );
    }

    #[test]
    fn a_spoofed_leftmost_hop_is_ignored() {
        let t = cidrs(&["10.0.0.0/8"]);
        let h = xff(&["6.6.6.6, 1.1.1.1"]);
        assert_eq!(client_ip(Some(ip("10.0.0.1")), &h, &t), Some(ip("1.1.1.1")));
    }

    #[test]
    fn a_garbage_hop_stops_at_the_last_trusted_one() {
        let t = cidrs(&["10.0.0.0/8"]);
        let h = xff(&["1.1.1.1, garbage, 10.0.0.2"]);
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &h, &t),
            Some(ip("10.0.0.2"))
        );
        let h = xff(&["1.1.1.1, "]);
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &h, &t),
            Some(ip("10.0.0.1"))
        );
        // A port is not garbage.
        let h = xff(&["1.1.1.1:443"]);
        assert_eq!(client_ip(Some(ip("10.0.0.1")), &h, &t), Some(ip("1.1.1.1")));
    }

    #[test]
    fn at_most_sixteen_hops_are_read() {
        let t = cidrs(&["10.0.0.0/8"]);
        let mut hops = vec!["1.1.1.1"];
        hops.extend(std::iter::repeat_n("10.9.9.9", MAX_HOPS));
        let h = xff(&[hops.join(", ").as_str()]);
        assert_eq!(
            client_ip(Some(ip("10.0.0.1")), &h, &t),
            Some(ip("10.9.9.9"))
        );
    }

    #[test]
    fn networks_parse_with_checked_lengths() {
        for bad in [
            "10.0.0.0/33",
            "::1/129",
            "x",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        assert_eq!(
            "10.0.0.0/33".parse::<Cidr>(),
            Err(CidrError::TooLong { len: 33, max: 32 })
        );
        let c: Cidr = "10.1.2.3/8".parse().expect("a network");
        assert_eq!(c.to_string(), "10.0.0.0/8");
        assert!(c.contains(ip("10.200.0.1")));
        assert!(!c.contains(ip("11.0.0.1")));
        assert!(c.contains(ip("::ffff:10.0.0.1")));
        assert_eq!(
            "10.0.0.1".parse::<Cidr>().expect("bare").to_string(),
            "10.0.0.1/32"
        );
        assert_eq!("::1".parse::<Cidr>().expect("bare").to_string(), "::1/128");
        let v6: Cidr = "2001:db8::1/32".parse().expect("a network");
        assert_eq!(v6.to_string(), "2001:db8::/32");
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("10.0.0.1")));
        let all: Cidr = "0.0.0.0/0".parse().expect("a network");
        assert!(all.contains(ip("1.2.3.4")));
        assert!(!all.contains(ip("::1")));
        let everything: Cidr = "::/0".parse().expect("a network");
        assert!(everything.contains(ip("1.2.3.4")));
    }
}
