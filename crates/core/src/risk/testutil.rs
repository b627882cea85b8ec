//! Fixtures shared by the risk tests.

use std::net::IpAddr;

use crate::clock::Timestamp;
use crate::ids::{DeviceId, UserId};
use crate::rng::SeededRng;

use super::Observation;

/// A fixed instant: 2027-01-15T08:00:00Z (a Friday morning in UTC).
pub(crate) const T0: Timestamp = Timestamp::from_secs(1_800_000_000 - 1_800_000_000 % 86_400 + 8 * 3600);

/// A deterministic device id.
pub(crate) fn device(n: u64) -> DeviceId {
    DeviceId::generate(Timestamp::from_secs(1), &SeededRng::new(1000 + n))
}

/// A deterministic user id.
pub(crate) fn user(n: u64) -> UserId {
    UserId::generate(Timestamp::from_secs(1), &SeededRng::new(5000 + n))
}

/// A login observation from `ip` with UA family `ua` and device 0.
pub(crate) fn login_obs(ip: IpAddr, ua: &str) -> Observation {
    let mut o = Observation::new(ip);
    o.device = Some(device(0));
    o.ua_family = Some(ua.to_owned());
    o
}
