//! Who the client is: the TCP peer, or, when the peer is a trusted reverse proxy, the
//! right-most address in `X-Forwarded-For` that is not itself a trusted proxy.
//!
//! Right-most, not left-most: every proxy appends the address it received the request
//! from, so only the entries added by our own proxies can be believed; anything to the left
//! of the first untrusted entry was written by the client and may be forged.

use http::HeaderMap;
use ipnet::IpNet;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The client address of a request, put in its extensions by the server (the TCP peer, or
/// the forwarded address when the peer is a trusted proxy). Every per-address decision uses
/// it through [`ClientIp::key`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientIp(pub IpAddr);

impl ClientIp {
    /// The client address the server put in `req`'s extensions; a request that did not come
    /// through the accept loop (none does in production) counts as the unspecified address.
    pub fn of_request<B>(req: &http::Request<B>) -> IpAddr {
        req.extensions()
            .get::<ClientIp>()
            .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0)
    }

    pub fn key(self) -> AddrKey {
        AddrKey::of(self.0)
    }
}

/// What per-address limits count by: an IPv4 address, or an IPv6 /64 (one subscriber's
/// network: a single host usually owns a whole /64, so counting single IPv6 addresses
/// would let it take 2^64 identities). IPv4-mapped IPv6 addresses count as IPv4.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AddrKey(IpAddr);

impl AddrKey {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self(IpAddr::V4(v4)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self(IpAddr::V4(v4)),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    Self(IpAddr::V6(Ipv6Addr::from(prefix)))
                }
            },
        }
    }
}

impl std::fmt::Display for AddrKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            IpAddr::V4(v4) => v4.fmt(f),
            IpAddr::V6(v6) => write!(f, "{v6}/64"),
        }
    }
}

/// `TRUSTED_PROXIES` could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an IP address or CIDR")]
pub struct BadProxyEntry(pub String);

/// The configured reverse proxies.
#[derive(Debug, Clone, Default)]
pub struct TrustedProxies(Vec<IpNet>);

/// Most `X-Forwarded-For` entries looked at, from the right: a chain of proxies is short,
/// and a client-written header can be long.
const MAX_HOPS: usize = 16;

impl TrustedProxies {
    /// Parses a comma-separated list of IPs and CIDRs; empty entries are ignored.
    pub fn parse(list: &str) -> Result<Self, BadProxyEntry> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| BadProxyEntry(s.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client address of a request that arrived from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = canonical(peer);
        if !self.contains(peer) {
            return peer;
        }
        // Several header lines are one list, in order.
        let mut hops: Vec<&str> = Vec::new();
        for value in headers.get_all("x-forwarded-for") {
            let Ok(value) = value.to_str() else {
                return peer;
            };
            hops.extend(value.split(','));
        }
        let mut nearest = peer;
        for hop in hops.iter().rev().take(MAX_HOPS) {
            let Some(ip) = parse_hop(hop) else {
                // Garbage where a proxy address should be: believe no further.
                return nearest;
            };
            if !self.contains(ip) {
                return ip;
            }
            nearest = ip;
        }
        nearest
    }
}

/// One `X-Forwarded-For` entry: an IP, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    hop.parse::<IpAddr>()
        .or_else(|_| hop.parse::<SocketAddr>().map(|s| s.ip()))
        .ok()
        .map(canonical)
}

/// IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a dual-stack listener reports) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        IpAddr::V4(_) => ip,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn cidrs_and_bare_addresses_are_matched() {
        let t = TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7 ,fd00::/8,").unwrap();
        assert!(t.contains(ip("10.200.3.4")));
        assert!(t.contains(ip("192.168.1.7")));
        assert!(!t.contains(ip("192.168.1.8")));
        assert!(t.contains(ip("fd12::1")));
        assert!(
            t.contains(ip("::ffff:10.1.1.1")),
            "mapped IPv4 counts as IPv4"
        );
        assert!(!t.contains(ip("11.0.0.1")));
        assert_eq!(
            TrustedProxies::parse("10.0.0.0/33").unwrap_err(),
            BadProxyEntry("10.0.0.0/33".into())
        );
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }

    #[test]
    fn forwarded_for_is_ignored_from_an_untrusted_peer() {
        let t = TrustedProxies::parse("10.0.0.1").unwrap();
        let h = xff(&["1.2.3.4"]);
        assert_eq!(t.client_ip(ip("8.8.8.8"), &h), ip("8.8.8.8"));
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.0.0.1"), &h),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn the_rightmost_untrusted_hop_is_the_client() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        // The client forged the first entry; our proxies appended the rest.
        let h = xff(&["6.6.6.6, 1.2.3.4", "10.0.0.9"]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &h), ip("1.2.3.4"));
        let h = xff(&["[2001:db8::5]:443, 5.6.7.8:1234"]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &h), ip("5.6.7.8"));
    }

    #[test]
    fn missing_garbage_or_all_trusted_hops_stop_at_the_nearest_trusted_one() {
        let t = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            t.client_ip(ip("10.0.0.1"), &HeaderMap::new()),
            ip("10.0.0.1")
        );
        let h = xff(&["1.2.3.4, nonsense, 10.0.0.7"]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.7"));
        let h = xff(&["10.0.0.5, 10.0.0.6"]);
        assert_eq!(t.client_ip(ip("10.0.0.1"), &h), ip("10.0.0.5"));
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix_and_mapped_ipv4_as_ipv4() {
        assert_eq!(
            AddrKey::of(ip("2001:db8:1:2:aaaa::1")),
            AddrKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(
            AddrKey::of(ip("2001:db8:1:2::1")),
            AddrKey::of(ip("2001:db8:1:3::1"))
        );
        assert_eq!(
            AddrKey::of(ip("::ffff:1.2.3.4")),
            AddrKey::of(ip("1.2.3.4"))
        );
        assert_eq!(AddrKey::of(ip("2001:db8::1")).to_string(), "2001:db8::/64");
    }
}
