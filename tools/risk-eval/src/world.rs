//! The synthetic Internet: countries, autonomous systems, address blocks and a GeoIP that
//! answers from the same ground truth (the test double of [`GeoLookup`]).
//!
//! Addresses encode their owner so that GeoIP needs no table: IPv4 `a.p1.p2.h` belongs to AS
//! index `a - 11`, /24 number `p1·256 + p2`; IPv6 `2a00:A:P:S::H` to AS index `A`, /48 `P`.
//! AS numbers are from the private-use range (64512+), so nothing here pretends to be a
//! real network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use gatehouse_core::risk::{GeoInfo, GeoLookup, GeoPoint};

use crate::rand::Rand;

/// A country: code, UTC offset in hours, centroid and share of the exchange's users.
#[derive(Debug, Clone, Copy)]
pub struct Country {
    /// ISO code.
    pub code: &'static str,
    /// UTC offset, hours.
    pub tz: i64,
    /// Latitude of the main city.
    pub lat: f64,
    /// Longitude of the main city.
    pub lon: f64,
    /// Share of users.
    pub weight: f64,
}

/// The countries of the synthetic user base (an Asia-heavy exchange).
pub const COUNTRIES: [Country; 12] = [
    Country { code: "KR", tz: 9, lat: 37.57, lon: 126.98, weight: 30.0 },
    Country { code: "JP", tz: 9, lat: 35.68, lon: 139.69, weight: 10.0 },
    Country { code: "US", tz: -5, lat: 40.71, lon: -74.01, weight: 12.0 },
    Country { code: "DE", tz: 1, lat: 52.52, lon: 13.40, weight: 8.0 },
    Country { code: "GB", tz: 0, lat: 51.51, lon: -0.13, weight: 8.0 },
    Country { code: "FR", tz: 1, lat: 48.86, lon: 2.35, weight: 5.0 },
    Country { code: "SG", tz: 8, lat: 1.35, lon: 103.82, weight: 5.0 },
    Country { code: "IN", tz: 5, lat: 19.08, lon: 72.88, weight: 6.0 },
    Country { code: "BR", tz: -3, lat: -23.55, lon: -46.63, weight: 5.0 },
    Country { code: "AU", tz: 10, lat: -33.87, lon: 151.21, weight: 4.0 },
    Country { code: "CA", tz: -5, lat: 43.65, lon: -79.38, weight: 4.0 },
    Country { code: "VN", tz: 7, lat: 10.82, lon: 106.63, weight: 3.0 },
];

/// Countries where hosting providers have data centres (indices into [`COUNTRIES`]).
const HOSTING_POPS: [usize; 7] = [2, 3, 4, 5, 6, 1, 0];

/// What kind of network an AS is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsKind {
    /// Home broadband.
    Residential,
    /// Mobile carrier.
    Mobile,
    /// Hotel, café and airport Wi-Fi.
    PublicWifi,
    /// Cloud and VPS providers (data centres in several countries).
    Hosting,
}

/// One autonomous system.
#[derive(Debug, Clone, Copy)]
pub struct As {
    /// Kind.
    pub kind: AsKind,
    /// Country (ignored for hosting, whose country depends on the prefix).
    pub country: usize,
    /// Market share within its country and kind.
    pub share: f64,
    /// Whether customers may get IPv6.
    pub v6: bool,
}

/// A network a client sits in: an AS and a /24 (or /48) number within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    /// AS index.
    pub asn: u16,
    /// Prefix number within the AS.
    pub prefix: u16,
    /// IPv6 (/48) rather than IPv4 (/24).
    pub v6: bool,
}

/// Residential ISPs per country, by market share.
const RESIDENTIAL_SHARES: [f64; 4] = [0.4, 0.3, 0.2, 0.1];
/// Mobile carriers per country.
const MOBILE_SHARES: [f64; 2] = [0.6, 0.4];
/// Public Wi-Fi operators per country.
const WIFI_SHARES: [f64; 3] = [0.5, 0.3, 0.2];
/// Hosting providers.
const HOSTING: usize = 5;
/// Prefixes per AS.
const PREFIXES: usize = 4096;

/// The world.
#[derive(Debug, Clone)]
pub struct World {
    /// Every AS; the index is the AS's identity.
    pub asns: Vec<As>,
}

impl Default for World {
    fn default() -> Self {
        Self::new()
    }
}

impl World {
    /// Builds the fixed world (it does not depend on the seed).
    pub fn new() -> Self {
        let mut asns = Vec::new();
        for c in 0..COUNTRIES.len() {
            for (i, s) in RESIDENTIAL_SHARES.iter().enumerate() {
                asns.push(As { kind: AsKind::Residential, country: c, share: *s, v6: i < 2 });
            }
            for s in MOBILE_SHARES {
                asns.push(As { kind: AsKind::Mobile, country: c, share: s, v6: false });
            }
            for s in WIFI_SHARES {
                asns.push(As { kind: AsKind::PublicWifi, country: c, share: s, v6: false });
            }
        }
        for _ in 0..HOSTING {
            asns.push(As { kind: AsKind::Hosting, country: 0, share: 1.0 / HOSTING as f64, v6: false });
        }
        Self { asns }
    }

    /// A random country by user share.
    pub fn country(&self, r: &mut Rand) -> usize {
        let w: Vec<f64> = COUNTRIES.iter().map(|c| c.weight).collect();
        r.weighted(&w)
    }

    /// An AS of `kind` in `country`, by market share (hosting ignores the country).
    pub fn pick_as(&self, r: &mut Rand, kind: AsKind, country: usize) -> u16 {
        let cands: Vec<usize> = (0..self.asns.len())
            .filter(|&i| self.asns[i].kind == kind && (kind == AsKind::Hosting || self.asns[i].country == country))
            .collect();
        let w: Vec<f64> = cands.iter().map(|&i| self.asns[i].share).collect();
        cands.get(r.weighted(&w)).map_or(0, |&i| i as u16)
    }

    /// A random network in AS `asn`; IPv6 with probability `p_v6` where the AS offers it.
    pub fn net_in(&self, r: &mut Rand, asn: u16, p_v6: f64) -> Net {
        let v6 = self.asns.get(usize::from(asn)).is_some_and(|a| a.v6) && r.chance(p_v6);
        Net { asn, prefix: r.below(PREFIXES) as u16, v6 }
    }

    /// A random hosting network located in `country` (if a provider has a data centre there;
    /// otherwise anywhere).
    pub fn hosting_in(&self, r: &mut Rand, country: Option<usize>) -> Net {
        let asn = self.pick_as(r, AsKind::Hosting, 0);
        let mut prefix = r.below(PREFIXES) as u16;
        if let Some(c) = country
            && let Some(pop) = HOSTING_POPS.iter().position(|p| *p == c)
        {
            let n = HOSTING_POPS.len() as u16;
            prefix = prefix - prefix % n + pop as u16;
        }
        Net { asn, prefix, v6: false }
    }

    /// The address of host `host` in `net`.
    pub fn ip(&self, net: Net, host: u16) -> IpAddr {
        if net.v6 {
            IpAddr::V6(Ipv6Addr::new(0x2a00, net.asn, net.prefix, host >> 8, 0, 0, 0, host.max(1)))
        } else {
            let [p1, p2] = net.prefix.to_be_bytes();
            IpAddr::V4(Ipv4Addr::new(11 + net.asn as u8, p1, p2, (host % 254 + 1) as u8))
        }
    }

    /// The country a network geolocates to.
    pub fn country_of(&self, net: Net) -> usize {
        match self.asns.get(usize::from(net.asn)) {
            Some(a) if a.kind == AsKind::Hosting => HOSTING_POPS[usize::from(net.prefix) % HOSTING_POPS.len()],
            Some(a) => a.country,
            None => 0,
        }
    }

    fn decode(&self, ip: IpAddr) -> Option<Net> {
        let net = match ip {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                Net { asn: u16::from(o[0].checked_sub(11)?), prefix: u16::from_be_bytes([o[1], o[2]]), v6: false }
            }
            IpAddr::V6(v6) => {
                let s = v6.segments();
                if s[0] != 0x2a00 {
                    return None;
                }
                Net { asn: s[1], prefix: s[2], v6: true }
            }
        };
        (usize::from(net.asn) < self.asns.len()).then_some(net)
    }
}

/// GeoIP over the synthetic world: exact country and AS, city centroid jittered by prefix.
#[derive(Debug, Clone, Default)]
pub struct WorldGeo(pub World);

impl GeoLookup for WorldGeo {
    fn lookup(&self, ip: IpAddr) -> Option<GeoInfo> {
        let net = self.0.decode(ip)?;
        let c = COUNTRIES.get(self.0.country_of(net))?;
        let jitter = |k: u16| (f64::from(k % 17) - 8.0) / 8.0;
        Some(GeoInfo {
            country: Some(c.code.to_owned()),
            asn: Some(64512 + u32::from(net.asn)),
            location: Some(GeoPoint { lat: c.lat + jitter(net.prefix), lon: c.lon + jitter(net.prefix / 17) }),
        })
    }
}
