//! The labelled traffic generator: users with habits, their sessions and API batches, and the
//! four attacks. Everything is drawn from one [`Rand`], in a fixed order, so a seed fixes the
//! traffic. The README lists the assumptions and their limits.

use std::net::IpAddr;

use gatehouse_core::apikey::Scope;
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::ids::{DeviceId, UserId};
use gatehouse_core::risk::SessionBinding;

use crate::Config;
use crate::rand::Rand;
use crate::world::{AsKind, COUNTRIES, Net, World};

/// 2026-01-05T00:00:00Z, a Monday: the first simulated day.
pub const START: Timestamp = Timestamp::from_secs(1_767_571_200);

/// A kind of legitimate behaviour, for the false-challenge breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Behaviour {
    /// Known device at home or at work.
    Routine,
    /// Phone on its mobile carrier (address churn within and across the carrier's prefixes).
    Mobile,
    /// On a trip: hotel and café Wi-Fi, roaming or a local SIM, another time zone.
    Travel,
    /// A device first used less than two days ago (phone replaced, cookies cleared, new browser).
    NewDevice,
    /// An hour the user rarely logs in at.
    OddHour,
    /// An API bot's batch from its usual server.
    ApiRoutine,
    /// An API bot's batches in the 24 h after moving to a new server.
    ApiMigration,
}

impl Behaviour {
    /// Every behaviour, in report order.
    pub const ALL: [Behaviour; 7] = [
        Behaviour::Routine,
        Behaviour::Mobile,
        Behaviour::Travel,
        Behaviour::NewDevice,
        Behaviour::OddHour,
        Behaviour::ApiRoutine,
        Behaviour::ApiMigration,
    ];

    /// Report label.
    pub fn label(self) -> &'static str {
        match self {
            Behaviour::Routine => "routine (known device, home/work)",
            Behaviour::Mobile => "mobile carrier churn",
            Behaviour::Travel => "travel (hotel Wi-Fi, roaming, new country/time zone)",
            Behaviour::NewDevice => "new device (phone replaced, cookies cleared, new browser)",
            Behaviour::OddHour => "unusual hour",
            Behaviour::ApiRoutine => "API bot, usual server",
            Behaviour::ApiMigration => "API bot moved to a new server (first 24 h)",
        }
    }

    /// Whether this is API-key traffic (a batch of calls) rather than a web/app session.
    pub fn is_api(self) -> bool {
        matches!(self, Behaviour::ApiRoutine | Behaviour::ApiMigration)
    }
}

/// The attacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AttackKind {
    /// A stolen session token replayed from another device, then a withdrawal.
    SessionReplay,
    /// A reused password found by a botnet's credential stuffing, then a withdrawal.
    CredentialStuffing,
    /// A leaked API key used from a new network, then a withdrawal or orders.
    ApiKeyLeak,
    /// A correct password (and phished second factor) from attacker infrastructure, then a
    /// withdrawal-address change.
    AccountTakeover,
    /// Out of model, reported apart: a session replayed with the victim's whole cookie jar
    /// (device cookie included) from a browser of the same family (an infostealer kit).
    ClonedSessionReplay,
}

impl AttackKind {
    /// Every attack, in report order.
    pub const ALL: [AttackKind; 4] = [
        AttackKind::SessionReplay,
        AttackKind::CredentialStuffing,
        AttackKind::ApiKeyLeak,
        AttackKind::AccountTakeover,
    ];

    /// Whether the attack is inside the engine's threat model (and counted in the totals).
    pub fn in_model(self) -> bool {
        self != AttackKind::ClonedSessionReplay
    }

    /// Report label.
    pub fn label(self) -> &'static str {
        match self {
            AttackKind::SessionReplay => "stolen session replayed from another device → withdrawal",
            AttackKind::CredentialStuffing => "credential stuffing (botnet), successful logins → withdrawal",
            AttackKind::ApiKeyLeak => "leaked API key from a new network → withdraw/orders",
            AttackKind::AccountTakeover => "account takeover from attacker infrastructure → address change",
            AttackKind::ClonedSessionReplay => {
                "(out of model) session replayed with the cloned device cookie and browser"
            }
        }
    }
}

/// Who is behind a chain of requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Actor {
    /// The account's owner (or the owner's bot).
    Normal(Behaviour),
    /// An attacker; each chain is one attack instance.
    Attack(AttackKind),
    /// A failed stuffing attempt: fills the velocity counters, is not an instance.
    StuffingNoise,
}

/// A session, an API batch or an attack: requests from one client.
#[derive(Debug, Clone)]
pub struct Chain {
    /// Who.
    pub actor: Actor,
    /// Account index (indices ≥ the number of users are addresses that do not exist).
    pub user: u32,
    /// Whether the chain starts after the warm-up.
    pub measured: bool,
    /// Device id presented.
    pub device: Option<DeviceId>,
    /// User-agent family presented.
    pub ua: &'static str,
    /// Client address.
    pub ip: IpAddr,
    /// The session presented by refreshes and sensitive actions.
    pub binding: Option<SessionBinding>,
    /// The API key used.
    pub key: Option<String>,
}

/// What one request does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepKind {
    /// A failed password attempt (counted, not evaluated).
    LoginFail,
    /// A login with the correct password.
    Login,
    /// Session use or refresh.
    Refresh,
    /// A sensitive action (withdrawal, address change).
    Sensitive,
    /// A signed API call; `sensitive` marks the call the attack is after.
    ApiCall {
        /// The scope the route needs.
        scope: Scope,
        /// The attacker's goal (for attacks) or a withdrawal (for owners).
        sensitive: bool,
    },
}

/// One request at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Step {
    /// When.
    pub t: Timestamp,
    /// Which chain.
    pub chain: u32,
    /// What.
    pub kind: StepKind,
}

/// The generated traffic, steps in time order.
#[derive(Debug)]
pub struct Traffic {
    /// Number of real accounts.
    pub users: usize,
    /// Account ids (real accounts first, then addresses that do not exist).
    pub user_ids: Vec<UserId>,
    /// Chains.
    pub chains: Vec<Chain>,
    /// Steps, sorted by time (ties by generation order).
    pub steps: Vec<Step>,
    /// Start of the measured period.
    pub measure_from: Timestamp,
}

const DESKTOP_UAS: [(&str, f64); 7] = [
    ("Chrome/Windows", 45.0),
    ("Chrome/macOS", 12.0),
    ("Safari/macOS", 15.0),
    ("Edge/Windows", 12.0),
    ("Firefox/Windows", 8.0),
    ("Firefox/Linux", 4.0),
    ("Chrome/Linux", 4.0),
];
const PHONE_UAS: [(&str, f64); 3] = [("Safari/iOS", 45.0), ("Chrome/Android", 50.0), ("SamsungBrowser/Android", 5.0)];
const BOT_UA: &str = "python-requests/Other";

/// Local-hour login propensity: office worker, evening user, night owl, active trader.
const CHRONOTYPES: [[f64; 24]; 4] = [
    [
        0.2, 0.1, 0.0, 0.0, 0.0, 0.0, 0.5, 2.0, 3.0, 2.0, 1.0, 1.0, 2.5, 2.0, 1.0, 1.0, 1.0, 1.5, 3.0, 4.0, 4.0, 3.5,
        2.5, 1.0,
    ],
    [
        0.5, 0.2, 0.0, 0.0, 0.0, 0.0, 0.2, 0.5, 0.5, 0.3, 0.3, 0.3, 0.8, 0.5, 0.3, 0.3, 0.5, 1.0, 2.0, 3.0, 4.0, 4.5,
        4.0, 2.0,
    ],
    [
        3.0, 3.0, 2.5, 1.5, 0.5, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.2, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 1.5, 2.0, 3.0,
        3.5, 3.5,
    ],
    [
        0.5, 0.3, 0.2, 0.2, 0.2, 0.3, 1.0, 2.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 3.0, 2.5,
        2.0, 1.0,
    ],
];
const CHRONOTYPE_SHARES: [f64; 4] = [0.45, 0.3, 0.1, 0.15];

fn pick_ua(r: &mut Rand, table: &[(&'static str, f64)]) -> &'static str {
    let w: Vec<f64> = table.iter().map(|(_, w)| *w).collect();
    table.get(r.weighted(&w)).map_or("Chrome/Windows", |(ua, _)| ua)
}

#[derive(Debug, Clone)]
struct Device {
    id: DeviceId,
    ua: &'static str,
    first_day: i64,
}

#[derive(Debug, Clone)]
struct Trip {
    from_day: i64,
    to_day: i64,
    country: usize,
    hotel: Net,
    local_sim: Option<Net>,
}

#[derive(Debug, Clone)]
struct User {
    country: usize,
    chrono: usize,
    activity: f64,
    home: Net,
    work: Option<Net>,
    carrier: [Net; 4],
    desktop: Option<Device>,
    phone: Option<Device>,
    phone_swap: Option<(i64, bool)>,
    trips: Vec<Trip>,
    /// Measured sessions usable as replay victims: (chain, login time).
    sessions: Vec<(u32, Timestamp)>,
}

struct Gen<'a> {
    r: Rand,
    world: &'a World,
    cfg: &'a Config,
    chains: Vec<Chain>,
    steps: Vec<(Step, u64)>,
    seq: u64,
    measure_from: Timestamp,
}

fn day_start(d: i64) -> Timestamp {
    START.plus(Span::days(d))
}

impl Gen<'_> {
    fn device(&mut self, ua: &'static str, day: i64) -> Device {
        Device { id: DeviceId::generate(day_start(day), self.r.secure()), ua, first_day: day }
    }

    fn step(&mut self, t: Timestamp, chain: u32, kind: StepKind) {
        self.steps.push((Step { t, chain, kind }, self.seq));
        self.seq += 1;
    }

    fn chain(&mut self, c: Chain) -> u32 {
        self.chains.push(c);
        (self.chains.len() - 1) as u32
    }

    fn local_hour(&mut self, chrono: usize) -> i64 {
        let w = CHRONOTYPES.get(chrono).copied().unwrap_or([1.0; 24]);
        self.r.weighted(&w) as i64
    }

    fn at(&mut self, day: i64, local_hour: i64, tz: i64) -> Timestamp {
        day_start(day).plus(Span::hours(local_hour - tz)).plus(Span::secs(self.r.range(0, 3600)))
    }

    fn host(&mut self) -> u16 {
        self.r.below(250) as u16
    }

    /// A residential, mobile or hosting network an attacker would use against a victim in
    /// `country`: mostly residential proxies in the victim's own country.
    fn attacker_net(&mut self, country: usize) -> Net {
        let x = self.r.f64();
        let w = self.world;
        if x < 0.45 {
            let asn = w.pick_as(&mut self.r, AsKind::Residential, country);
            w.net_in(&mut self.r, asn, 0.2)
        } else if x < 0.55 {
            let asn = w.pick_as(&mut self.r, AsKind::Mobile, country);
            w.net_in(&mut self.r, asn, 0.0)
        } else if x < 0.8 {
            let c = if self.r.chance(0.5) { Some(country) } else { None };
            w.hosting_in(&mut self.r, c)
        } else {
            let other = w.country(&mut self.r);
            let asn = w.pick_as(&mut self.r, AsKind::Residential, other);
            w.net_in(&mut self.r, asn, 0.2)
        }
    }

    fn new_user(&mut self) -> User {
        let w = self.world;
        let country = w.country(&mut self.r);
        let chrono = self.r.weighted(&CHRONOTYPE_SHARES);
        let mut activity = (-0.6 + 0.9 * self.r.normal()).exp().clamp(0.03, 6.0);
        if chrono == 3 {
            activity = (activity * 2.0).min(8.0);
        }
        let home_as = w.pick_as(&mut self.r, AsKind::Residential, country);
        let home = w.net_in(&mut self.r, home_as, 0.5);
        let work = if self.r.chance(0.5) {
            let a = w.pick_as(&mut self.r, AsKind::Residential, country);
            Some(w.net_in(&mut self.r, a, 0.0))
        } else {
            None
        };
        let carrier_as = w.pick_as(&mut self.r, AsKind::Mobile, country);
        let carrier = [0; 4].map(|_| w.net_in(&mut self.r, carrier_as, 0.0));
        let mut desktop = None;
        let mut phone = None;
        if self.r.chance(0.85) {
            let ua = pick_ua(&mut self.r, &DESKTOP_UAS);
            desktop = Some(self.device(ua, -30));
        }
        if desktop.is_none() || self.r.chance(0.9) {
            let ua = pick_ua(&mut self.r, &PHONE_UAS);
            phone = Some(self.device(ua, -30));
        }
        let days = self.cfg.days;
        let phone_swap = (phone.is_some() && self.r.chance(0.08)).then(|| (self.r.range(1, days), self.r.chance(0.25)));
        let mut trips = Vec::new();
        for _ in 0..self.r.poisson(days as f64 / 60.0 * 0.6) {
            let from_day = self.r.range(0, days);
            let len = self.r.range(2, 9);
            let abroad = self.r.chance(0.65);
            let dest = if abroad {
                let mut c = w.country(&mut self.r);
                if c == country {
                    c = (c + 1 + self.r.below(COUNTRIES.len() - 1)) % COUNTRIES.len();
                }
                c
            } else {
                country
            };
            let hotel_as = w.pick_as(&mut self.r, AsKind::PublicWifi, dest);
            let hotel = w.net_in(&mut self.r, hotel_as, 0.0);
            let local_sim = if abroad && self.r.chance(0.5) {
                let a = w.pick_as(&mut self.r, AsKind::Mobile, dest);
                Some(w.net_in(&mut self.r, a, 0.0))
            } else {
                None
            };
            trips.push(Trip { from_day, to_day: from_day + len, country: dest, hotel, local_sim });
        }
        User { country, chrono, activity, home, work, carrier, desktop, phone, phone_swap, trips, sessions: Vec::new() }
    }

    /// One web/app session: optional typos, the login, refreshes and maybe a sensitive action.
    #[allow(clippy::too_many_arguments)]
    fn session(&mut self, user: u32, t0: Timestamp, dev: &Device, net: Net, host: u16, label: Behaviour) -> u32 {
        let ip = self.world.ip(net, host);
        let measured = t0 >= self.measure_from;
        let c = self.chain(Chain {
            actor: Actor::Normal(label),
            user,
            measured,
            device: Some(dev.id),
            ua: dev.ua,
            ip,
            binding: Some(SessionBinding { device: dev.id, ua_family: dev.ua.to_owned() }),
            key: None,
        });
        if self.r.chance(0.05) {
            self.step(t0.minus(Span::secs(20)), c, StepKind::LoginFail);
            if self.r.chance(0.2) {
                self.step(t0.minus(Span::secs(40)), c, StepKind::LoginFail);
            }
        }
        self.step(t0, c, StepKind::Login);
        for i in 0..self.r.below(4) {
            self.step(t0.plus(Span::minutes(10 * (i as i64 + 1))), c, StepKind::Refresh);
        }
        if self.r.chance(0.08) {
            let dt = Span::secs(self.r.range(60, 900));
            self.step(t0.plus(dt), c, StepKind::Sensitive);
        }
        c
    }

    fn user_sessions(&mut self, ui: u32, u: &mut User) {
        let tz = COUNTRIES.get(u.country).map_or(0, |c| c.tz);
        for day in 0..self.cfg.days {
            if let Some((swap_day, switch_os)) = u.phone_swap
                && swap_day == day
                && let Some(old) = u.phone.clone()
            {
                let ua = if switch_os {
                    if old.ua.ends_with("iOS") { "Chrome/Android" } else { "Safari/iOS" }
                } else {
                    old.ua
                };
                u.phone = Some(self.device(ua, day));
            }
            let trip = u.trips.iter().find(|t| t.from_day <= day && day < t.to_day).cloned();
            let local_tz = trip.as_ref().map_or(tz, |t| COUNTRIES.get(t.country).map_or(tz, |c| c.tz));
            let weekday = day % 7 < 5;
            for _ in 0..self.r.poisson(u.activity) {
                let odd = self.r.chance(0.05);
                let hour = if odd { self.r.range(0, 24) } else { self.local_hour(u.chrono) };
                let t0 = self.at(day, hour, local_tz);
                // Desktop users clear cookies or switch browsers now and then.
                if let Some(d) = u.desktop.as_mut() {
                    if self.r.chance(0.003) {
                        let ua = pick_ua(&mut self.r, &DESKTOP_UAS);
                        *d = Device { id: DeviceId::generate(t0, self.r.secure()), ua, first_day: day };
                    } else if self.r.chance(0.01) {
                        *d = Device { id: DeviceId::generate(t0, self.r.secure()), ua: d.ua, first_day: day };
                    }
                }
                let use_phone = match (&u.desktop, &u.phone) {
                    (Some(_), Some(_)) => self.r.chance(if trip.is_some() { 0.65 } else { 0.5 }),
                    (None, Some(_)) => true,
                    _ => false,
                };
                let Some(mut dev) = (if use_phone { u.phone.clone() } else { u.desktop.clone() }) else {
                    continue;
                };
                // A private window, a borrowed laptop, a hotel business centre: a one-off device.
                if self.r.chance(if trip.is_some() { 0.03 } else { 0.01 }) {
                    let ua = pick_ua(&mut self.r, &DESKTOP_UAS);
                    dev = Device { id: DeviceId::generate(t0, self.r.secure()), ua, first_day: day };
                }
                let carrier_w = [0.55, 0.25, 0.12, 0.08];
                let carrier = u.carrier[self.r.weighted(&carrier_w).min(3)];
                let (net, mut label) = if let Some(t) = &trip {
                    let x = self.r.f64();
                    let net = if !use_phone || x < 0.55 {
                        t.hotel
                    } else if x < 0.75 {
                        let a = self.world.pick_as(&mut self.r, AsKind::PublicWifi, t.country);
                        self.world.net_in(&mut self.r, a, 0.0)
                    } else {
                        t.local_sim.unwrap_or(carrier)
                    };
                    (net, Behaviour::Travel)
                } else if use_phone {
                    let x = self.r.f64();
                    if x < 0.45 {
                        (carrier, Behaviour::Mobile)
                    } else if x < 0.6 && u.work.is_some() && weekday {
                        (u.work.unwrap_or(u.home), Behaviour::Routine)
                    } else {
                        (u.home, Behaviour::Routine)
                    }
                } else {
                    let at_work = weekday && (9..18).contains(&hour) && self.r.chance(0.7);
                    (if at_work { u.work.unwrap_or(u.home) } else { u.home }, Behaviour::Routine)
                };
                if label != Behaviour::Travel {
                    if day - dev.first_day < 2 {
                        label = Behaviour::NewDevice;
                    } else if odd {
                        label = Behaviour::OddHour;
                    }
                }
                let host = self.host();
                let c = self.session(ui, t0, &dev, net, host, label);
                if t0 >= self.measure_from {
                    u.sessions.push((c, t0));
                }
            }
        }
    }

    fn api_key(&mut self, ui: u32, u: &User) -> Option<(String, Net)> {
        if !self.r.chance(0.15) {
            return None;
        }
        let w = self.world;
        let on_server = self.r.chance(0.7);
        let server = if on_server {
            let c = if self.r.chance(0.5) { Some(u.country) } else { None };
            w.hosting_in(&mut self.r, c)
        } else {
            u.home
        };
        let trading = self.r.chance(0.6);
        let withdraws = trading && self.r.chance(0.25);
        let migrate_at = self.r.chance(0.12).then(|| {
            day_start(self.r.range(self.cfg.warmup_days / 2, self.cfg.days)).plus(Span::hours(self.r.range(0, 24)))
        });
        let moved_to = w.hosting_in(&mut self.r, None);
        let key = format!("key-{ui:05}");
        let server_host = self.host();
        let moved_host = self.host();
        let batches = self.cfg.days * 6;
        for b in 0..batches {
            let t = START.plus(Span::hours(4 * b)).plus(Span::secs(self.r.range(-1200, 1200)));
            let (net, host, label) = match migrate_at {
                Some(m) if t >= m => {
                    let label =
                        if t.since(m) < Span::days(1) { Behaviour::ApiMigration } else { Behaviour::ApiRoutine };
                    (moved_to, moved_host, label)
                }
                _ => (server, if on_server { server_host } else { self.host() }, Behaviour::ApiRoutine),
            };
            let c = self.chain(Chain {
                actor: Actor::Normal(label),
                user: ui,
                measured: t >= self.measure_from,
                device: None,
                ua: BOT_UA,
                ip: w.ip(net, host),
                binding: None,
                key: Some(key.clone()),
            });
            let mut calls = if trading {
                vec![Scope::ViewAssets, Scope::ViewOrders, Scope::PlaceOrders]
            } else {
                vec![Scope::ViewAssets, Scope::ViewOrders, Scope::ViewAssets]
            };
            if withdraws && self.r.chance(1.0 / 18.0) {
                calls.push(Scope::Withdraw);
            }
            for (i, scope) in calls.into_iter().enumerate() {
                let sensitive = scope == Scope::Withdraw;
                self.step(t.plus(Span::secs(2 * i as i64)), c, StepKind::ApiCall { scope, sensitive });
            }
        }
        Some((key, server))
    }

    fn measured_instant(&mut self) -> Timestamp {
        let span = (self.cfg.days - self.cfg.warmup_days).max(1) * 86_400;
        self.measure_from.plus(Span::secs(self.r.range(3600, span - 3600)))
    }

    fn attacker_ua(&mut self, victim_ua: &'static str, copy: f64) -> &'static str {
        if self.r.chance(copy) { victim_ua } else { "Chrome/Windows" }
    }

    fn takeover(&mut self, ui: u32, u: &User) {
        let tz = COUNTRIES.get(u.country).map_or(0, |c| c.tz);
        let day = (self.measured_instant().since(START).as_millis() / 86_400_000).min(self.cfg.days - 1);
        let hour = if self.r.chance(0.7) { self.local_hour(u.chrono) } else { self.r.range(0, 24) };
        let t = self.at(day, hour, tz).max(self.measure_from);
        let victim_ua = u.desktop.as_ref().or(u.phone.as_ref()).map_or("Chrome/Windows", |d| d.ua);
        let ua = self.attacker_ua(victim_ua, 0.5);
        let dev = self.device(ua, day);
        let net = self.attacker_net(u.country);
        let host = self.host();
        let c = self.chain(Chain {
            actor: Actor::Attack(AttackKind::AccountTakeover),
            user: ui,
            measured: true,
            device: Some(dev.id),
            ua,
            ip: self.world.ip(net, host),
            binding: Some(SessionBinding { device: dev.id, ua_family: ua.to_owned() }),
            key: None,
        });
        self.step(t, c, StepKind::Login);
        if self.r.chance(0.3) {
            self.step(t.plus(Span::minutes(2)), c, StepKind::Refresh);
        }
        let dt = Span::secs(self.r.range(120, 1200));
        self.step(t.plus(dt), c, StepKind::Sensitive);
    }

    fn replay(&mut self, ui: u32, u: &User, cloned: bool) {
        if u.sessions.is_empty() {
            return;
        }
        let (victim, t0) = u.sessions[self.r.below(u.sessions.len())];
        let Some(binding) = self.chains.get(victim as usize).and_then(|c| c.binding.clone()) else {
            return;
        };
        let victim_ua = self.chains.get(victim as usize).map_or("Chrome/Windows", |c| c.ua);
        let (ua, device) = if cloned {
            (victim_ua, Some(binding.device))
        } else {
            let ua = self.attacker_ua(victim_ua, 0.6);
            (ua, if self.r.chance(0.7) { Some(self.device(ua, 0).id) } else { None })
        };
        let kind = if cloned { AttackKind::ClonedSessionReplay } else { AttackKind::SessionReplay };
        let net = self.attacker_net(u.country);
        let host = self.host();
        let c = self.chain(Chain {
            actor: Actor::Attack(kind),
            user: ui,
            measured: true,
            device,
            ua,
            ip: self.world.ip(net, host),
            binding: Some(binding),
            key: None,
        });
        let t = t0.plus(Span::secs(self.r.range(180, 3600)));
        self.step(t, c, StepKind::Refresh);
        if self.r.chance(0.5) {
            self.step(t.plus(Span::minutes(5)), c, StepKind::Refresh);
        }
        let dt = Span::secs(self.r.range(360, 1800));
        self.step(t.plus(dt), c, StepKind::Sensitive);
    }

    fn key_leak(&mut self, ui: u32, u: &User, key: &str) {
        let t = self.measured_instant();
        let net = if self.r.chance(0.6) {
            self.world.hosting_in(&mut self.r, None)
        } else {
            let c = if self.r.chance(0.5) { u.country } else { self.world.country(&mut self.r) };
            let a = self.world.pick_as(&mut self.r, AsKind::Residential, c);
            self.world.net_in(&mut self.r, a, 0.2)
        };
        let host = self.host();
        let c = self.chain(Chain {
            actor: Actor::Attack(AttackKind::ApiKeyLeak),
            user: ui,
            measured: true,
            device: None,
            ua: BOT_UA,
            ip: self.world.ip(net, host),
            binding: None,
            key: Some(key.to_owned()),
        });
        let probes = self.r.range(1, 5);
        for i in 0..probes {
            let scope = if i % 2 == 0 { Scope::ViewAssets } else { Scope::ViewOrders };
            self.step(t.plus(Span::secs(10 * i)), c, StepKind::ApiCall { scope, sensitive: false });
        }
        let scope = if self.r.chance(0.6) { Scope::Withdraw } else { Scope::PlaceOrders };
        self.step(t.plus(Span::secs(10 * probes + 5)), c, StepKind::ApiCall { scope, sensitive: true });
    }

    /// One credential-stuffing campaign over six hours from a botnet, against 40 % of the
    /// accounts and twice as many addresses that do not exist; 12 % of the real accounts
    /// reused the leaked password.
    fn stuffing(&mut self, users: &[User], fake_ids: u32) {
        let start = self.measured_instant();
        let bots: Vec<Net> = (0..(users.len() / 5).max(20))
            .map(|_| {
                let x = self.r.f64();
                let c = self.world.country(&mut self.r);
                if x < 0.6 {
                    let a = self.world.pick_as(&mut self.r, AsKind::Residential, c);
                    self.world.net_in(&mut self.r, a, 0.1)
                } else if x < 0.7 {
                    let a = self.world.pick_as(&mut self.r, AsKind::Mobile, c);
                    self.world.net_in(&mut self.r, a, 0.0)
                } else {
                    self.world.hosting_in(&mut self.r, None)
                }
            })
            .collect();
        let bot_hosts: Vec<u16> = bots.iter().map(|_| self.r.below(250) as u16).collect();
        let n = users.len() as u32;
        let mut targets: Vec<u32> = (0..n).filter(|_| self.r.chance(0.4)).collect();
        targets.extend(n..n + fake_ids);
        for ui in targets {
            let t = start.plus(Span::secs(self.r.range(0, 6 * 3600)));
            let b = self.r.below(bots.len());
            let ip = self.world.ip(bots[b], bot_hosts[b]);
            let hit = ui < n && self.r.chance(0.12);
            let ua = if self.r.chance(0.7) { "Chrome/Windows" } else { pick_ua(&mut self.r, &DESKTOP_UAS) };
            let device = if self.r.chance(0.7) { Some(self.device(ua, 0).id) } else { None };
            let actor = if hit { Actor::Attack(AttackKind::CredentialStuffing) } else { Actor::StuffingNoise };
            let c = self.chain(Chain {
                actor,
                user: ui,
                measured: true,
                device,
                ua,
                ip,
                binding: device.map(|d| SessionBinding { device: d, ua_family: ua.to_owned() }),
                key: None,
            });
            if hit {
                self.step(t, c, StepKind::Login);
                let dt = Span::secs(self.r.range(60, 600));
                self.step(t.plus(dt), c, StepKind::Sensitive);
            } else {
                self.step(t, c, StepKind::LoginFail);
            }
        }
    }
}

/// Generates the traffic for `cfg`.
pub fn generate(cfg: &Config, world: &World) -> Traffic {
    let measure_from = day_start(cfg.warmup_days);
    let mut g = Gen { r: Rand::new(cfg.seed), world, cfg, chains: Vec::new(), steps: Vec::new(), seq: 0, measure_from };
    let n = cfg.users;
    let mut user_ids: Vec<UserId> = (0..n).map(|_| UserId::generate(START, g.r.secure())).collect();
    let mut users: Vec<User> = (0..n).map(|_| g.new_user()).collect();
    let mut keys: Vec<(u32, String)> = Vec::new();
    for (i, u) in users.iter_mut().enumerate() {
        g.user_sessions(i as u32, u);
    }
    for (i, u) in users.iter().enumerate() {
        if let Some((k, _)) = g.api_key(i as u32, u) {
            keys.push((i as u32, k));
        }
    }
    let share = |x: f64| ((n as f64 * x).round() as usize).max(3);
    for _ in 0..share(0.04) {
        let ui = g.r.below(n);
        g.takeover(ui as u32, &users[ui]);
    }
    for _ in 0..share(0.04) {
        let ui = g.r.below(n);
        g.replay(ui as u32, &users[ui], false);
    }
    for _ in 0..share(0.02) {
        let ui = g.r.below(n);
        g.replay(ui as u32, &users[ui], true);
    }
    for (ui, k) in keys.clone() {
        if g.r.chance(0.3) {
            g.key_leak(ui, &users[ui as usize], &k);
        }
    }
    let fake = (n as u32) * 2 / 5 * 2;
    g.stuffing(&users, fake);
    for _ in 0..fake {
        user_ids.push(UserId::generate(START, g.r.secure()));
    }
    let mut steps = g.steps;
    steps.sort_by(|a, b| a.0.t.cmp(&b.0.t).then(a.1.cmp(&b.1)));
    Traffic { users: n, user_ids, chains: g.chains, steps: steps.into_iter().map(|(s, _)| s).collect(), measure_from }
}
