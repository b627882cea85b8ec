//! What the engine remembers: one [`UserProfile`] per account and one [`GlobalStats`] for the
//! whole population, as plain serde data the store keeps as JSON.
//!
//! Invariants:
//! * **Bounded.** Every table has a cap ([`limits`]); when a value would exceed it, the
//!   lightest values (after decay; ties broken by oldest `last_seen`) are forgotten first. A
//!   profile stays a few kilobytes whatever the account's history, so an attacker cannot grow
//!   it without bound by rotating values.
//! * **Decaying.** Counts halve every [`limits::USER_HALF_LIFE`] (user) or
//!   [`limits::GLOBAL_HALF_LIFE`] (population): the laptop sold two years ago stops vouching
//!   for the account. Decay is applied lazily with a per-table anchor (weights are stored
//!   scaled by `2^((t - anchor)/half_life)`), so an update costs O(1), not O(table).
//! * **Learned from trusted events only.** [`UserProfile::learn`] and [`GlobalStats::learn`]
//!   must only see events the owner has proven: a login that passed every factor (including
//!   any step-up the engine asked for) or an API call the engine allowed. Learning from
//!   attempts would let an attacker *teach* the profile his device and network with a few
//!   failed logins and then log in "from a known place" (profile poisoning), and learning population frequencies from a
//!   botnet would make its values look ordinary.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::clock::{Span, Timestamp};

use super::Observation;
use super::features::{Feature, hour_of_day, network_prefix, value_of};

/// Caps and half-lives. Constants, not configuration: a stored profile must mean the same
/// thing to every instance that reads it.
pub mod limits {
    use crate::clock::Span;

    /// Half-life of a user's counts.
    pub const USER_HALF_LIFE: Span = Span::days(90);
    /// Half-life of population counts.
    pub const GLOBAL_HALF_LIFE: Span = Span::days(30);
    /// Half-life of an API key's observed peak call rate.
    pub const RATE_HALF_LIFE: Span = Span::days(7);
    /// Devices remembered per user.
    pub const DEVICES: usize = 16;
    /// Networks remembered per user.
    pub const NETWORKS: usize = 32;
    /// Autonomous systems remembered per user.
    pub const ASNS: usize = 16;
    /// Countries remembered per user.
    pub const COUNTRIES: usize = 16;
    /// User-agent families remembered per user.
    pub const UA_FAMILIES: usize = 8;
    /// API keys remembered per user.
    pub const API_KEYS: usize = 16;
    /// Networks remembered per API key.
    pub const KEY_NETWORKS: usize = 16;
    /// Routes remembered per API key.
    pub const KEY_ROUTES: usize = 32;
    /// Scopes remembered per API key (there are 7).
    pub const KEY_SCOPES: usize = 8;
    /// Networks in the population table.
    pub const GLOBAL_NETWORKS: usize = 8192;
    /// Autonomous systems in the population table.
    pub const GLOBAL_ASNS: usize = 2048;
    /// Countries in the population table.
    pub const GLOBAL_COUNTRIES: usize = 300;
    /// User-agent families in the population table.
    pub const GLOBAL_UA_FAMILIES: usize = 512;
    /// A value whose decayed weight falls below this is forgotten at the next pruning.
    pub const DUST: f64 = 0.02;
}

/// Rebase the decay anchor once stored weights have grown by 2^30.
const REBASE_AFTER: f64 = 30.0;

fn halvings(from: Timestamp, to: Timestamp, half_life: Span) -> f64 {
    let hl = half_life.as_millis().max(1) as f64;
    to.since(from).as_millis() as f64 / hl
}

/// One remembered value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
struct Entry {
    /// Weight, scaled to the table's anchor.
    w: f64,
    /// When the value was last learned.
    last_seen: Timestamp,
    /// When the value was first learned (for the probation of new values).
    first_seen: Timestamp,
}

/// A bounded, exponentially decaying count of categorical values.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CountTable {
    half_life: Span,
    cap: usize,
    anchor: Option<Timestamp>,
    total: f64,
    entries: BTreeMap<String, Entry>,
}

impl CountTable {
    /// An empty table holding at most `cap` values, whose counts halve every `half_life`.
    pub fn new(cap: usize, half_life: Span) -> Self {
        Self { half_life, cap: cap.max(1), anchor: None, total: 0.0, entries: BTreeMap::new() }
    }

    fn factor(&self, now: Timestamp) -> f64 {
        match self.anchor {
            Some(a) => (-halvings(a, now, self.half_life)).exp2(),
            None => 0.0,
        }
    }

    /// Counts one occurrence of `value` at `now`, then enforces the cap.
    pub fn add(&mut self, value: &str, now: Timestamp) {
        let anchor = *self.anchor.get_or_insert(now);
        let mut e = halvings(anchor, now, self.half_life);
        if e > REBASE_AFTER {
            let shrink = (-e).exp2();
            self.total *= shrink;
            for entry in self.entries.values_mut() {
                entry.w *= shrink;
            }
            self.anchor = Some(now);
            e = 0.0;
        }
        let inc = e.exp2();
        self.total += inc;
        let entry = self.entries.entry(value.to_owned()).or_insert(Entry { w: 0.0, last_seen: now, first_seen: now });
        entry.w += inc;
        entry.last_seen = entry.last_seen.max(now);
        if self.entries.len() > self.cap {
            self.prune(now);
        }
    }

    /// Forgets dust and, beyond the cap, the lightest (then oldest) values. Tables larger than
    /// 64 values are cut to 90 % of the cap so that pruning is amortised.
    pub fn prune(&mut self, now: Timestamp) {
        let f = self.factor(now);
        self.entries.retain(|_, e| e.w * f >= limits::DUST);
        if self.entries.len() <= self.cap {
            return;
        }
        let keep = if self.cap > 64 { self.cap * 9 / 10 } else { self.cap };
        let mut order: Vec<(f64, Timestamp, String)> =
            self.entries.iter().map(|(k, e)| (e.w, e.last_seen, k.clone())).collect();
        order.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let excess = self.entries.len().saturating_sub(keep);
        for (_, _, k) in order.into_iter().take(excess) {
            self.entries.remove(&k);
        }
    }

    /// Decayed weight of `value` at `now` (0 when unknown).
    pub fn weight(&self, value: &str, now: Timestamp) -> f64 {
        self.entries.get(value).map_or(0.0, |e| e.w * self.factor(now))
    }

    /// Decayed total of everything ever counted (forgotten values included): "how much
    /// history there is".
    pub fn total(&self, now: Timestamp) -> f64 {
        self.total * self.factor(now)
    }

    /// Effective number of distinct values: Σ min(1, weight). A value seen once long ago counts
    /// for less than one.
    pub fn distinct(&self, now: Timestamp) -> f64 {
        let f = self.factor(now);
        self.entries.values().map(|e| (e.w * f).min(1.0)).sum()
    }

    /// Number of remembered values.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// When `value` was first counted (since it was last forgotten).
    pub fn first_seen(&self, value: &str) -> Option<Timestamp> {
        self.entries.get(value).map(|e| e.first_seen)
    }

    /// When `value` was last counted.
    pub fn last_seen(&self, value: &str) -> Option<Timestamp> {
        self.entries.get(value).map(|e| e.last_seen)
    }

    /// Remembered values with their decayed weights, heaviest first.
    pub fn values(&self, now: Timestamp) -> Vec<(String, f64)> {
        let f = self.factor(now);
        let mut v: Vec<(String, f64)> = self.entries.iter().map(|(k, e)| (k.clone(), e.w * f)).collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

/// A decaying histogram over the 24 UTC hours.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HourHistogram {
    half_life: Span,
    anchor: Option<Timestamp>,
    bins: [f64; 24],
}

impl HourHistogram {
    /// An empty histogram whose counts halve every `half_life`.
    pub fn new(half_life: Span) -> Self {
        Self { half_life, anchor: None, bins: [0.0; 24] }
    }

    fn factor(&self, now: Timestamp) -> f64 {
        match self.anchor {
            Some(a) => (-halvings(a, now, self.half_life)).exp2(),
            None => 0.0,
        }
    }

    /// Counts one event at `now`'s hour.
    pub fn add(&mut self, now: Timestamp) {
        let anchor = *self.anchor.get_or_insert(now);
        let mut e = halvings(anchor, now, self.half_life);
        if e > REBASE_AFTER {
            let shrink = (-e).exp2();
            self.bins.iter_mut().for_each(|b| *b *= shrink);
            self.anchor = Some(now);
            e = 0.0;
        }
        if let Some(b) = self.bins.get_mut(hour_of_day(now)) {
            *b += e.exp2();
        }
    }

    /// Decayed count in hour `h` (0–23; other values read as 0).
    pub fn bin(&self, h: usize, now: Timestamp) -> f64 {
        self.bins.get(h).copied().unwrap_or(0.0) * self.factor(now)
    }

    /// Decayed total.
    pub fn total(&self, now: Timestamp) -> f64 {
        self.bins.iter().sum::<f64>() * self.factor(now)
    }

    /// Effective number of distinct hours: Σ min(1, count).
    pub fn distinct(&self, now: Timestamp) -> f64 {
        let f = self.factor(now);
        self.bins.iter().map(|b| (b * f).min(1.0)).sum()
    }

    /// Kernel-smoothed share of events in hour `h`: half its own bin and a quarter of each
    /// neighbour, so 21:00 vouches a little for 22:00 (habits are not aligned to the hour).
    pub fn smoothed_share(&self, h: usize, now: Timestamp) -> f64 {
        let total = self.total(now);
        if total <= 0.0 {
            return 0.0;
        }
        let at = |i: usize| self.bin(i % 24, now);
        (0.5 * at(h) + 0.25 * at(h + 23) + 0.25 * at(h + 1)) / total
    }
}

/// Where and when the account last logged in successfully (for impossible travel).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct LastLogin {
    /// When.
    pub at: Timestamp,
    /// Latitude in degrees, if GeoIP knew it.
    pub lat: Option<f64>,
    /// Longitude in degrees, if GeoIP knew it.
    pub lon: Option<f64>,
}

/// What one API key usually does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KeyProfile {
    /// Networks the key is used from.
    pub networks: CountTable,
    /// Autonomous systems the key is used from (when GeoIP is configured).
    pub asns: CountTable,
    /// Scopes its calls needed.
    pub scopes: CountTable,
    /// Normalised routes it called (kept for the audit trail and the device page).
    pub routes: CountTable,
    /// Highest calls-per-minute seen, decaying with [`limits::RATE_HALF_LIFE`].
    peak_rate: f64,
    /// When the peak was last updated.
    peak_at: Option<Timestamp>,
    /// Last allowed use.
    pub last_used: Timestamp,
}

impl KeyProfile {
    fn new(now: Timestamp) -> Self {
        Self {
            networks: CountTable::new(limits::KEY_NETWORKS, limits::USER_HALF_LIFE),
            asns: CountTable::new(limits::ASNS, limits::USER_HALF_LIFE),
            scopes: CountTable::new(limits::KEY_SCOPES, limits::USER_HALF_LIFE),
            routes: CountTable::new(limits::KEY_ROUTES, limits::USER_HALF_LIFE),
            peak_rate: 0.0,
            peak_at: None,
            last_used: now,
        }
    }

    /// The decayed peak calls-per-minute at `now`.
    pub fn peak_rate(&self, now: Timestamp) -> f64 {
        match self.peak_at {
            Some(at) => self.peak_rate * (-halvings(at, now, limits::RATE_HALF_LIFE)).exp2(),
            None => 0.0,
        }
    }
}

/// Everything the engine knows about one account's habits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserProfile {
    /// Schema version of this JSON document.
    pub version: u32,
    pub(crate) devices: CountTable,
    pub(crate) networks: CountTable,
    pub(crate) asns: CountTable,
    pub(crate) countries: CountTable,
    pub(crate) ua_families: CountTable,
    pub(crate) hours: HourHistogram,
    /// Last trusted login.
    pub last_login: Option<LastLogin>,
    pub(crate) api_keys: BTreeMap<String, KeyProfile>,
}

impl Default for UserProfile {
    fn default() -> Self {
        Self::new()
    }
}

impl UserProfile {
    /// Current schema version.
    pub const VERSION: u32 = 1;

    /// A profile with no history: every feature is scored as "no evidence either way".
    pub fn new() -> Self {
        let hl = limits::USER_HALF_LIFE;
        Self {
            version: Self::VERSION,
            devices: CountTable::new(limits::DEVICES, hl),
            networks: CountTable::new(limits::NETWORKS, hl),
            asns: CountTable::new(limits::ASNS, hl),
            countries: CountTable::new(limits::COUNTRIES, hl),
            ua_families: CountTable::new(limits::UA_FAMILIES, hl),
            hours: HourHistogram::new(hl),
            last_login: None,
            api_keys: BTreeMap::new(),
        }
    }

    /// Learns from one **trusted** event at `now` (see the module docs for why only those):
    ///
    /// * an observation without [`Observation::api`] is a login that passed every factor and
    ///   any step-up: devices, networks, ASN, country, user-agent family and hour are counted;
    /// * an observation with [`Observation::api`] is an API call the engine allowed (or whose
    ///   new network the owner confirmed): the key's network, scope, route and rate are counted.
    ///
    /// Refreshes and sensitive actions are not logins and must not be passed here (they would
    /// count one login many times).
    pub fn learn(&mut self, obs: &Observation, now: Timestamp) {
        if let Some(api) = &obs.api {
            if !self.api_keys.contains_key(&api.key_id) && self.api_keys.len() >= limits::API_KEYS {
                // Forget the key unused for longest.
                let oldest = self
                    .api_keys
                    .iter()
                    .min_by(|a, b| a.1.last_used.cmp(&b.1.last_used).then(a.0.cmp(b.0)))
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.api_keys.remove(&k);
                }
            }
            let key = self.api_keys.entry(api.key_id.clone()).or_insert_with(|| KeyProfile::new(now));
            key.networks.add(&network_prefix(obs.ip), now);
            if let Some(asn) = value_of(obs, Feature::Asn) {
                key.asns.add(&asn, now);
            }
            key.scopes.add(api.scope.name(), now);
            key.routes.add(&api.route, now);
            let rate = f64::from(obs.velocity.key_calls_1m);
            if rate >= key.peak_rate(now) {
                key.peak_rate = rate;
                key.peak_at = Some(now);
            }
            key.last_used = key.last_used.max(now);
            return;
        }
        for feature in Feature::ALL {
            if let (Some(table), Some(v)) = (self.table_mut(feature), value_of(obs, feature)) {
                table.add(&v, now);
            }
        }
        self.hours.add(now);
        let loc = obs.geo.as_ref().and_then(|g| g.location);
        self.last_login = Some(LastLogin { at: now, lat: loc.map(|l| l.lat), lon: loc.map(|l| l.lon) });
    }

    pub(crate) fn table(&self, feature: Feature) -> Option<&CountTable> {
        match feature {
            Feature::Device => Some(&self.devices),
            Feature::Network => Some(&self.networks),
            Feature::Asn => Some(&self.asns),
            Feature::Country => Some(&self.countries),
            Feature::UaFamily => Some(&self.ua_families),
            Feature::Hour => None,
        }
    }

    fn table_mut(&mut self, feature: Feature) -> Option<&mut CountTable> {
        match feature {
            Feature::Device => Some(&mut self.devices),
            Feature::Network => Some(&mut self.networks),
            Feature::Asn => Some(&mut self.asns),
            Feature::Country => Some(&mut self.countries),
            Feature::UaFamily => Some(&mut self.ua_families),
            Feature::Hour => None,
        }
    }

    /// The hour-of-day histogram.
    pub fn hours(&self) -> &HourHistogram {
        &self.hours
    }

    /// Decayed number of trusted logins.
    pub fn login_count(&self, now: Timestamp) -> f64 {
        self.hours.total(now)
    }

    /// The remembered values of one categorical feature (heaviest first), e.g. for a
    /// "known devices" page.
    pub fn known(&self, feature: Feature, now: Timestamp) -> Vec<(String, f64)> {
        self.table(feature).map(|t| t.values(now)).unwrap_or_default()
    }

    /// What the profile knows about an API key.
    pub fn api_key(&self, key_id: &str) -> Option<&KeyProfile> {
        self.api_keys.get(key_id)
    }

    /// Number of API keys remembered.
    pub fn api_key_count(&self) -> usize {
        self.api_keys.len()
    }
}

/// Population frequencies of feature values over trusted logins: the attacker model
/// (Freeman et al.: an attacker is modelled as a draw from the whole population).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GlobalStats {
    /// Schema version of this JSON document.
    pub version: u32,
    pub(crate) networks: CountTable,
    pub(crate) asns: CountTable,
    pub(crate) countries: CountTable,
    pub(crate) ua_families: CountTable,
    pub(crate) hours: HourHistogram,
    /// Trusted logins counted (decayed); the denominator for device frequencies.
    pub(crate) logins: CountTable,
}

impl Default for GlobalStats {
    fn default() -> Self {
        Self::new()
    }
}

impl GlobalStats {
    /// Empty statistics.
    pub fn new() -> Self {
        let hl = limits::GLOBAL_HALF_LIFE;
        Self {
            version: UserProfile::VERSION,
            networks: CountTable::new(limits::GLOBAL_NETWORKS, hl),
            asns: CountTable::new(limits::GLOBAL_ASNS, hl),
            countries: CountTable::new(limits::GLOBAL_COUNTRIES, hl),
            ua_families: CountTable::new(limits::GLOBAL_UA_FAMILIES, hl),
            hours: HourHistogram::new(hl),
            logins: CountTable::new(1, hl),
        }
    }

    /// Counts one trusted login (same rule as [`UserProfile::learn`]; API calls are ignored).
    pub fn learn(&mut self, obs: &Observation, now: Timestamp) {
        if obs.api.is_some() {
            return;
        }
        for feature in [Feature::Network, Feature::Asn, Feature::Country, Feature::UaFamily] {
            if let (Some(table), Some(v)) = (self.table_mut(feature), value_of(obs, feature)) {
                table.add(&v, now);
            }
        }
        self.hours.add(now);
        self.logins.add("login", now);
    }

    pub(crate) fn table(&self, feature: Feature) -> Option<&CountTable> {
        match feature {
            Feature::Network => Some(&self.networks),
            Feature::Asn => Some(&self.asns),
            Feature::Country => Some(&self.countries),
            Feature::UaFamily => Some(&self.ua_families),
            Feature::Device | Feature::Hour => None,
        }
    }

    fn table_mut(&mut self, feature: Feature) -> Option<&mut CountTable> {
        match feature {
            Feature::Network => Some(&mut self.networks),
            Feature::Asn => Some(&mut self.asns),
            Feature::Country => Some(&mut self.countries),
            Feature::UaFamily => Some(&mut self.ua_families),
            Feature::Device | Feature::Hour => None,
        }
    }

    /// Decayed number of trusted logins.
    pub fn login_count(&self, now: Timestamp) -> f64 {
        self.logins.total(now)
    }

    /// The population hour histogram.
    pub fn hours(&self) -> &HourHistogram {
        &self.hours
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly
mod tests {
    use super::*;
    use crate::risk::testutil::{T0, login_obs};

    #[test]
    fn tables_respect_their_cap_and_forget_the_lightest() {
        let mut t = CountTable::new(4, Span::days(90));
        for _ in 0..10 {
            t.add("home", T0);
        }
        for i in 0..20 {
            t.add(&format!("hotel-{i}"), T0.plus(Span::minutes(i)));
        }
        assert_eq!(t.len(), 4);
        assert!(t.weight("home", T0) > 9.9, "the heavy value survives");
        assert!(t.weight("hotel-19", T0.plus(Span::hours(1))) > 0.0, "the newest light value survives");
        assert_eq!(t.weight("hotel-0", T0), 0.0);
        // Totals still count forgotten history.
        assert!((t.total(T0) - 30.0).abs() < 1e-2);
    }

    #[test]
    fn counts_halve_every_half_life_and_dust_is_forgotten() {
        let mut t = CountTable::new(8, Span::days(90));
        t.add("laptop", T0);
        t.add("laptop", T0);
        assert!((t.weight("laptop", T0.plus(Span::days(90))) - 1.0).abs() < 1e-9);
        assert!((t.total(T0.plus(Span::days(180))) - 0.5).abs() < 1e-9);
        // Two years later the laptop is dust and the next prune forgets it.
        let later = T0.plus(Span::days(730));
        t.add("phone", later);
        t.prune(later);
        assert_eq!(t.len(), 1);
        assert_eq!(t.last_seen("laptop"), None);
    }

    #[test]
    fn rebasing_keeps_weights_exact() {
        let mut t = CountTable::new(8, Span::days(1));
        t.add("a", T0);
        let far = T0.plus(Span::days(40));
        t.add("a", far);
        assert!((t.weight("a", far) - 1.0).abs() < 1e-6);
        assert!((t.weight("a", far.plus(Span::days(1))) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn a_profile_stays_small_whatever_the_history() {
        let mut p = UserProfile::new();
        let mut g = GlobalStats::new();
        for i in 0..2000u32 {
            let ip = format!("10.{}.{}.7", i / 256, i % 256).parse().unwrap();
            let mut obs = login_obs(ip, "Chrome/Windows");
            obs.device = Some(crate::risk::testutil::device(u64::from(i)));
            let now = T0.plus(Span::minutes(i64::from(i)));
            p.learn(&obs, now);
            g.learn(&obs, now);
        }
        assert!(p.devices.len() <= limits::DEVICES);
        assert!(p.networks.len() <= limits::NETWORKS);
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.len() < 16 * 1024, "profile JSON is {} bytes", json.len());
        let back: UserProfile = serde_json::from_str(&json).unwrap();
        // JSON keeps every value to within a rounding of the last bit.
        assert_eq!(back.devices.values(T0).len(), p.devices.values(T0).len());
        assert!((back.networks.total(T0) - p.networks.total(T0)).abs() < 1e-9);
        assert!(g.networks.len() <= limits::GLOBAL_NETWORKS);
    }

    #[test]
    fn hours_are_smoothed_over_neighbours() {
        let mut h = HourHistogram::new(Span::days(90));
        let nine = T0.plus(Span::hours(9 - i64::try_from(hour_of_day(T0)).unwrap()));
        for d in 0..10 {
            h.add(nine.plus(Span::days(d)));
        }
        let now = nine.plus(Span::days(10));
        assert!((h.smoothed_share(9, now) - 0.5).abs() < 1e-9);
        assert!((h.smoothed_share(10, now) - 0.25).abs() < 1e-9);
        assert_eq!(h.smoothed_share(15, now), 0.0);
    }
}
