//! The features the likelihood model compares, and how they are read off an observation.
//!
//! Freeman et al. (NDSS 2016) score a login by a handful of categorical features treated
//! as independent. Ours are the same kinds of value, chosen so that each one is cheap to read,
//! stable for a legitimate user and costly for an attacker to copy:
//!
//! | feature | value | why this granularity |
//! |---|---|---|
//! | [`Feature::Network`] | IPv4 /24 or IPv6 /48 prefix | a home router's DHCP lease and a mobile carrier's address churn stay inside it; an attacker's proxy almost never lands in it |
//! | [`Feature::Asn`] | autonomous system number (GeoIP) | a carrier moving a phone between prefixes stays in its ASN |
//! | [`Feature::Country`] | ISO 3166 code (GeoIP) | travel is visible but weak evidence: attackers rent proxies in the victim's country |
//! | [`Feature::UaFamily`] | `client/os` without versions ([`crate::device::UaFamily::key`]) | browser updates do not change it |
//! | [`Feature::Device`] | the device cookie / `Gatehouse-Device` id | random per device, so only theft of the cookie reproduces it |
//! | [`Feature::Hour`] | hour of day, UTC, 24 circular buckets | a user's habits are learned in UTC, so time zones need no configuration |
//!
//! Invariant: IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are read as IPv4, so a dual-stack
//! listener does not turn one home network into two.

use std::net::IpAddr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;

use super::Observation;

/// Prefix length that stands for "one IPv4 network" (a home, an office, a carrier pool).
pub const IPV4_PREFIX_LEN: u8 = 24;
/// Prefix length that stands for "one IPv6 network" (the usual allocation to one customer site).
pub const IPV6_PREFIX_LEN: u8 = 48;

/// One categorical feature of the login model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Feature {
    /// The device id.
    Device,
    /// The IPv4 /24 or IPv6 /48 network.
    Network,
    /// The autonomous system (needs GeoIP).
    Asn,
    /// The country (needs GeoIP).
    Country,
    /// The user-agent family.
    UaFamily,
    /// The UTC hour of day.
    Hour,
}

impl Feature {
    /// Every feature, in the order terms are computed and reported.
    pub const ALL: [Feature; 6] =
        [Feature::Device, Feature::Network, Feature::Asn, Feature::Country, Feature::UaFamily, Feature::Hour];

    /// Stable name for audit records.
    pub const fn name(self) -> &'static str {
        match self {
            Feature::Device => "device",
            Feature::Network => "network",
            Feature::Asn => "asn",
            Feature::Country => "country",
            Feature::UaFamily => "ua_family",
            Feature::Hour => "hour",
        }
    }
}

/// The value recorded for a missing device id or user agent.
pub const NO_VALUE: &str = "none";

/// The network an address belongs to, as text: `203.0.113.0/24` or `2001:db8:1::/48`.
pub fn network_prefix(ip: IpAddr) -> String {
    network(ip).to_string()
}

/// The network an address belongs to (the value [`network_prefix`] writes out), for use as a
/// map key without formatting it.
pub fn network(ip: IpAddr) -> IpNet {
    match canonical_ip(ip) {
        IpAddr::V4(v4) => {
            Ipv4Net::new(v4, IPV4_PREFIX_LEN).map_or(IpNet::from(IpAddr::V4(v4)), |n| IpNet::V4(n.trunc()))
        }
        IpAddr::V6(v6) => {
            Ipv6Net::new(v6, IPV6_PREFIX_LEN).map_or(IpNet::from(IpAddr::V6(v6)), |n| IpNet::V6(n.trunc()))
        }
    }
}

/// The address with IPv4-mapped IPv6 unwrapped to IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// The UTC hour of day (0–23) of an instant.
pub fn hour_of_day(at: Timestamp) -> usize {
    // rem_euclid keeps instants before 1970 in range; the cast is of a value in 0..24.
    usize::try_from(at.as_secs().div_euclid(3600).rem_euclid(24)).unwrap_or(0)
}

/// The text value of a categorical feature in an observation, if the observation has it.
/// [`Feature::Hour`] is not categorical text and is handled by the model directly.
pub fn value_of(obs: &Observation, feature: Feature) -> Option<String> {
    match feature {
        // A missing device id is itself a value ("none"), so leaving the cookie out never
        // removes the device term.
        Feature::Device => Some(obs.device.map_or_else(|| NO_VALUE.to_owned(), |d| d.to_string())),
        Feature::Network => Some(network_prefix(obs.ip)),
        Feature::Asn => obs.geo.as_ref().and_then(|g| g.asn).map(|a| format!("AS{a}")),
        Feature::Country => obs.geo.as_ref().and_then(|g| g.country.clone()),
        Feature::UaFamily => {
            Some(obs.ua_family.clone().filter(|s| !s.is_empty()).unwrap_or_else(|| NO_VALUE.to_owned()))
        }
        Feature::Hour => None,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_slash_24_and_slash_48() {
        assert_eq!(network_prefix("203.0.113.77".parse().unwrap()), "203.0.113.0/24");
        assert_eq!(network_prefix("2001:db8:1:2:3::9".parse().unwrap()), "2001:db8:1::/48");
        assert_eq!(network_prefix("::ffff:198.51.100.9".parse().unwrap()), "198.51.100.0/24");
    }

    #[test]
    fn hours_are_utc_and_wrap() {
        assert_eq!(hour_of_day(Timestamp::from_secs(0)), 0);
        assert_eq!(hour_of_day(Timestamp::from_secs(13 * 3600 + 59)), 13);
        assert_eq!(hour_of_day(Timestamp::from_secs(-1)), 23);
    }
}
