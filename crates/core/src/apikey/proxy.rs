//! The true client address behind reverse proxies (R19).
//!
//! IP allowlists and per-IP rate limits are only as good as the address they look at. A
//! client can send any `X-Forwarded-For` it likes, so the header is believed only when the
//! TCP peer is one of the operator's own proxies ([`TrustedProxies`]), and then only the part
//! those proxies appended: the list is walked from the right, skipping trusted hops, and the
//! first untrusted address is the client. Anything to its left was written by the client and
//! is ignored. The attack this stops: `X-Forwarded-For: <an allowlisted IP>` sent directly to
//! gatehouse, or through a proxy that appends to it.
//!
//! Rules of [`TrustedProxies::client_ip`]:
//! * Peer not trusted → the peer address; the header is ignored entirely.
//! * Peer trusted, header absent or empty → the peer address.
//! * Walking right to left: a trusted address is skipped; the first untrusted one is the
//!   client. If every address is trusted, the leftmost one is used (a request that started
//!   inside the proxy network; nginx `real_ip_recursive` does the same).
//! * An element that is not a bare IP address (ports, `unknown`, obfuscated ids, garbage)
//!   met before the client was found, or more than [`MAX_HOPS`] trusted hops → the **peer**
//!   address with `malformed = true`, for the server to log. The peer is a proxy, so using it
//!   matches no customer allowlist (fail closed) rather than trusting a guess.
//! * Several header lines are one comma-separated list, in order (RFC 9110 §5.3); empty list
//!   elements are skipped (§5.6.1).
//! * All addresses are compared and returned in canonical form (`::ffff:a.b.c.d` → IPv4).

use std::net::IpAddr;

use ipnet::IpNet;

/// Most trusted hops walked before giving up.
pub const MAX_HOPS: usize = 16;
/// Longest header text examined (all lines together); beyond it the header is malformed.
pub const MAX_HEADER_LEN: usize = 4096;

/// A trusted-proxy entry that is neither a CIDR network nor an address (shown shortened).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trusted proxy network {0:?}")]
pub struct ProxyConfigError(pub String);

/// The operator's proxy networks.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

/// Where the client address came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientIpSource {
    /// The TCP peer.
    Peer,
    /// `X-Forwarded-For`, as appended by a trusted proxy.
    ForwardedFor,
}

/// The client address and how it was found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientIp {
    /// The address to use for allowlists, rate limits and logs.
    pub ip: IpAddr,
    /// Where it came from.
    pub source: ClientIpSource,
    /// The header from a trusted peer could not be read: log it.
    pub malformed: bool,
}

impl TrustedProxies {
    /// No trusted proxy: the peer is always the client.
    pub fn none() -> Self {
        Self(Vec::new())
    }

    /// Trusts these networks (CIDR or bare address; host bits are cleared). No breadth limit
    /// here: trusting `0.0.0.0/0` is a visible configuration choice, not a typo to catch.
    pub fn parse<I, S>(entries: I) -> Result<Self, ProxyConfigError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        for e in entries {
            let e = e.as_ref();
            let net = match e.parse::<IpNet>() {
                Ok(n) => n.trunc(),
                Err(_) => {
                    e.parse::<IpAddr>().map(IpNet::from).map_err(|_| ProxyConfigError(e.chars().take(64).collect()))?
                }
            };
            nets.push(net);
        }
        Ok(Self(nets))
    }

    /// Whether `ip` is one of ours.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|n| n.contains(&ip))
    }

    /// The client address for a request from `peer` carrying these `X-Forwarded-For` lines.
    pub fn client_ip<'a, I>(&self, peer: IpAddr, xff_lines: I) -> ClientIp
    where
        I: IntoIterator<Item = &'a str>,
    {
        let peer = peer.to_canonical();
        let from_peer = |malformed| ClientIp { ip: peer, source: ClientIpSource::Peer, malformed };
        if !self.is_trusted(peer) {
            return from_peer(false);
        }
        let mut total = 0usize;
        let mut lines = Vec::new();
        for line in xff_lines {
            total = total.saturating_add(line.len()).saturating_add(1);
            if total > MAX_HEADER_LEN {
                return from_peer(true);
            }
            lines.push(line);
        }
        let mut leftmost_trusted = None;
        let mut hops = 0;
        for element in lines.iter().rev().flat_map(|l| l.rsplit(',')) {
            let element = element.trim_matches([' ', '\t']);
            if element.is_empty() {
                continue;
            }
            let Ok(ip) = element.parse::<IpAddr>() else {
                return from_peer(true);
            };
            let ip = ip.to_canonical();
            if !self.is_trusted(ip) {
                return ClientIp { ip, source: ClientIpSource::ForwardedFor, malformed: false };
            }
            hops += 1;
            if hops > MAX_HOPS {
                return from_peer(true);
            }
            leftmost_trusted = Some(ip);
        }
        match leftmost_trusted {
            Some(ip) => ClientIp { ip, source: ClientIpSource::ForwardedFor, malformed: false },
            None => from_peer(false),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        let Ok(ip) = s.parse() else { unreachable!("{s}") };
        ip
    }

    fn proxies() -> TrustedProxies {
        let Ok(p) = TrustedProxies::parse(["10.0.0.0/8", "fd00::/8", "192.0.2.1"]) else { unreachable!() };
        p
    }

    #[test]
    fn spoofed_header_from_untrusted_peer_is_ignored() {
        let c = proxies().client_ip(ip("203.0.113.9"), ["198.51.100.1"]);
        assert_eq!(c, ClientIp { ip: ip("203.0.113.9"), source: ClientIpSource::Peer, malformed: false });
        // Not even garbage is looked at.
        assert!(!proxies().client_ip(ip("203.0.113.9"), ["garbage"]).malformed);
        // Without any trusted proxy, the header never counts.
        let c = TrustedProxies::none().client_ip(ip("10.0.0.1"), ["198.51.100.1"]);
        assert_eq!(c.ip, ip("10.0.0.1"));
    }

    #[test]
    fn walks_right_to_left_past_trusted_hops() {
        let p = proxies();
        // The client prepended a fake entry; the proxy appended the real one.
        let c = p.client_ip(ip("10.0.0.2"), ["198.51.100.1, 203.0.113.50"]);
        assert_eq!((c.ip, c.source), (ip("203.0.113.50"), ClientIpSource::ForwardedFor));
        // Two proxy layers, split over two header lines.
        let c = p.client_ip(ip("10.0.0.2"), ["1.1.1.1, 203.0.113.50", "10.9.9.9"]);
        assert_eq!(c.ip, ip("203.0.113.50"));
        // Client-side garbage to the left of the client is never reached.
        let c = p.client_ip(ip("10.0.0.2"), ["<script>, unknown, 203.0.113.50"]);
        assert_eq!((c.ip, c.malformed), (ip("203.0.113.50"), false));
        // Mapped addresses are canonical.
        let c = p.client_ip(ip("::ffff:10.0.0.2"), ["::ffff:203.0.113.50"]);
        assert_eq!(c.ip, ip("203.0.113.50"));
        // All trusted: the leftmost.
        let c = p.client_ip(ip("10.0.0.2"), ["10.1.1.1, 10.2.2.2"]);
        assert_eq!(c.ip, ip("10.1.1.1"));
        // Empty elements and whitespace are tolerated.
        let c = p.client_ip(ip("10.0.0.2"), [" ,203.0.113.50 ,\t, "]);
        assert_eq!(c.ip, ip("203.0.113.50"));
    }

    #[test]
    fn trusted_peer_without_header_is_the_client() {
        let c = proxies().client_ip(ip("192.0.2.1"), []);
        assert_eq!(c, ClientIp { ip: ip("192.0.2.1"), source: ClientIpSource::Peer, malformed: false });
        assert_eq!(proxies().client_ip(ip("192.0.2.1"), [""]).source, ClientIpSource::Peer);
    }

    #[test]
    fn malformed_header_from_trusted_peer_uses_the_peer_and_flags_it() {
        let p = proxies();
        for bad in ["203.0.113.50:443", "[2001:db8::1]", "unknown", "203.0.113.50 extra", "_hidden", "1.2.3.4.5"] {
            let c = p.client_ip(ip("10.0.0.2"), [bad]);
            assert_eq!(c, ClientIp { ip: ip("10.0.0.2"), source: ClientIpSource::Peer, malformed: true }, "{bad}");
        }
        let many = vec!["10.0.0.3"; MAX_HOPS + 1].join(",");
        assert!(p.client_ip(ip("10.0.0.2"), [many.as_str()]).malformed);
        let huge = "1".repeat(MAX_HEADER_LEN + 1);
        assert!(p.client_ip(ip("10.0.0.2"), [huge.as_str()]).malformed);
    }

    #[test]
    fn proxy_list_parses_cidrs_and_addresses() {
        assert!(TrustedProxies::parse(["10.0.0.0/8", "::1", "172.16.5.4/12"]).is_ok());
        assert!(TrustedProxies::parse(["nope"]).is_err());
        let Ok(p) = TrustedProxies::parse(["172.16.5.4/12"]) else { unreachable!() };
        assert!(p.is_trusted(ip("172.31.0.1")));
    }

    proptest! {
        #[test]
        fn never_panics_and_untrusted_peer_always_wins(
            lines in proptest::collection::vec("\\PC{0,80}", 0..4), octet in 0u8..=255
        ) {
            let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
            let untrusted = IpAddr::from([203, 0, 113, octet]);
            let c = proxies().client_ip(untrusted, refs.iter().copied());
            prop_assert_eq!(c, ClientIp { ip: untrusted, source: ClientIpSource::Peer, malformed: false });
            let peer = ip("10.0.0.2");
            let c = proxies().client_ip(peer, refs.iter().copied());
            prop_assert!(c.source == ClientIpSource::ForwardedFor || c.ip == peer);
            prop_assert!(!c.malformed || (c.ip == peer && c.source == ClientIpSource::Peer));
        }

        #[test]
        fn list_of_addresses_yields_the_rightmost_untrusted(
            addrs in proptest::collection::vec((any::<bool>(), any::<u8>()), 1..10)
        ) {
            let ips: Vec<IpAddr> = addrs.iter()
                .map(|&(trusted, o)| if trusted { IpAddr::from([10, 0, 0, o]) } else { IpAddr::from([203, 0, 113, o]) })
                .collect();
            let header = ips.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            let c = proxies().client_ip(ip("10.0.0.1"), [header.as_str()]);
            let want = ips.iter().rev().find(|i| !proxies().is_trusted(**i)).or(ips.first()).copied();
            prop_assert_eq!(Some(c.ip), want);
            prop_assert!(!c.malformed);
        }
    }
}
