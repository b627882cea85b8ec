//! Engine tests at fixed instants: one per signal, smoothing, monotonicity, decisions.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use super::testutil::{T0, device, login_obs};
use super::*;
use crate::clock::Span;

const HOME: &str = "203.0.113.";
const SEOUL: GeoPoint = GeoPoint { lat: 37.57, lon: 126.98 };
const LONDON: GeoPoint = GeoPoint { lat: 51.51, lon: -0.13 };

/// GeoIP test double: answers by /24.
#[derive(Debug, Default)]
struct TableGeo(BTreeMap<String, GeoInfo>);

impl GeoLookup for TableGeo {
    fn lookup(&self, ip: IpAddr) -> Option<GeoInfo> {
        self.0.get(&features::network_prefix(ip)).cloned()
    }
}

fn geo() -> Arc<TableGeo> {
    let mut t = BTreeMap::new();
    let info =
        |cc: &str, asn: u32, at: GeoPoint| GeoInfo { country: Some(cc.into()), asn: Some(asn), location: Some(at) };
    t.insert("203.0.113.0/24".to_owned(), info("KR", 4766, SEOUL));
    t.insert("198.51.100.0/24".to_owned(), info("KR", 9318, SEOUL));
    t.insert("192.0.2.0/24".to_owned(), info("GB", 16509, LONDON));
    Arc::new(TableGeo(t))
}

fn engine() -> RiskEngine {
    RiskEngine::new(RiskPolicy::default(), vec!["100.64.0.0/10".parse().unwrap()], Some(geo())).unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A login from home at 08:xx UTC on device 0 with Chrome/Windows.
fn home_obs(e: &RiskEngine, host: u8) -> Observation {
    let addr = ip(&format!("{HOME}{host}"));
    let mut o = login_obs(addr, "Chrome/Windows");
    o.geo = e.geo_for(addr);
    o
}

/// `days` daily logins from home at 08:00 UTC, ending the day before [`T0`]; a population of
/// 400 other accounts with varied networks, agents and hours.
fn history(e: &RiskEngine, days: i64) -> (UserProfile, GlobalStats) {
    let mut p = UserProfile::new();
    let mut g = GlobalStats::new();
    for d in (1..=days).rev() {
        let at = T0.minus(Span::days(d)).plus(Span::minutes(d % 40));
        let o = home_obs(e, (d % 200) as u8 + 1);
        p.learn(&o, at);
        g.learn(&o, at);
    }
    let uas = ["Chrome/Windows", "Chrome/Windows", "Safari/iOS", "Chrome/Android", "Safari/macOS", "Firefox/Linux"];
    for u in 0..400u32 {
        let mut o = login_obs(ip(&format!("10.{}.{}.9", u / 200, u % 200)), uas[(u % 6) as usize]);
        o.device = Some(device(100 + u64::from(u)));
        g.learn(&o, T0.minus(Span::hours(i64::from(u % 24) + 1)));
    }
    (p, g)
}

fn weight_of(a: &Assessment, s: Signal) -> Option<f64> {
    a.reasons.iter().find(|c| c.signal == s).map(|c| c.weight)
}

fn eval(e: &RiskEngine, p: &UserProfile, g: &GlobalStats, o: &Observation, action: RiskAction) -> Assessment {
    e.evaluate(p, g, o, action, T0)
}

#[test]
fn the_owner_at_home_is_allowed_with_negative_evidence() {
    let e = engine();
    let (p, g) = history(&e, 40);
    let a = eval(&e, &p, &g, &home_obs(&e, 77), RiskAction::Sensitive);
    assert_eq!(a.decision, Decision::Allow);
    assert!(a.score <= 2, "{}", a.score);
    for s in [Signal::KnownDevice, Signal::KnownNetwork, Signal::KnownAsn, Signal::KnownCountry, Signal::KnownUaFamily]
    {
        assert!(weight_of(&a, s).unwrap() < 0.0, "{s:?}");
    }
    assert!(weight_of(&a, Signal::UsualHour).unwrap() <= 0.0);
}

#[test]
fn new_device_is_a_positive_term() {
    let e = engine();
    let (p, g) = history(&e, 40);
    let mut o = home_obs(&e, 5);
    o.device = Some(device(9));
    let a = eval(&e, &p, &g, &o, RiskAction::Login);
    let w = weight_of(&a, Signal::NewDevice).unwrap();
    // 40 logins (about 34 after decay), one device: ln((n + 1 + 1) / (1 + 1)).
    assert!(w > 2.8 && w < 21f64.ln(), "{w}");
    assert!(a.score > eval(&e, &p, &g, &home_obs(&e, 5), RiskAction::Login).score);
}

#[test]
fn new_ipv4_slash_24_but_not_a_new_host_in_the_same_24() {
    let e = engine();
    let (p, g) = history(&e, 40);
    let same24 = eval(&e, &p, &g, &home_obs(&e, 250), RiskAction::Login);
    assert!(weight_of(&same24, Signal::KnownNetwork).is_some(), "DHCP churn inside the /24 is the same network");
    let mut o = home_obs(&e, 5);
    o.ip = ip("198.51.100.5");
    o.geo = e.geo_for(o.ip);
    let a = eval(&e, &p, &g, &o, RiskAction::Login);
    assert!(weight_of(&a, Signal::NewNetwork).unwrap() > 2.5);
    assert!(weight_of(&a, Signal::NewAsn).unwrap() > 2.5);
    assert!(weight_of(&a, Signal::KnownCountry).is_some());
}

#[test]
fn new_ipv6_slash_48() {
    let e = engine();
    let mut p = UserProfile::new();
    let g = GlobalStats::new();
    for d in 1..=30 {
        let o = login_obs(ip(&format!("2001:db8:1:{d:x}::{d:x}")), "Safari/macOS");
        p.learn(&o, T0.minus(Span::days(d)));
    }
    let known = eval(&e, &p, &g, &login_obs(ip("2001:db8:1:ffff::1"), "Safari/macOS"), RiskAction::Login);
    assert!(weight_of(&known, Signal::KnownNetwork).is_some());
    let new = eval(&e, &p, &g, &login_obs(ip("2001:db8:2::1"), "Safari/macOS"), RiskAction::Login);
    assert!(weight_of(&new, Signal::NewNetwork).unwrap() > 2.5);
}

#[test]
fn new_user_agent_family() {
    let e = engine();
    let (p, g) = history(&e, 40);
    let mut o = home_obs(&e, 5);
    o.ua_family = Some("Firefox/Linux".into());
    let a = eval(&e, &p, &g, &o, RiskAction::Login);
    // ρ = ½ for user agents (copied from infostealer logs): ln(½·(n + 2)/2 + ½).
    assert!(weight_of(&a, Signal::NewUaFamily).unwrap() > 2.0);
}

#[test]
fn unusual_hour() {
    let e = engine();
    let (p, g) = history(&e, 40);
    let o = home_obs(&e, 5);
    let night = e.evaluate(&p, &g, &o, RiskAction::Login, T0.plus(Span::hours(19))); // 03:00 UTC
    assert!(weight_of(&night, Signal::UnusualHour).unwrap() > 1.0);
    let morning = e.evaluate(&p, &g, &o, RiskAction::Login, T0);
    assert!(weight_of(&morning, Signal::UsualHour).is_some());
    assert!(night.log_lr > morning.log_lr);
}

#[test]
fn velocity_signals_fire_over_their_thresholds() {
    let e = engine();
    let (p, g) = history(&e, 40);
    let base = home_obs(&e, 5);
    type SetVelocity = fn(&mut Velocity);
    let cases: [(SetVelocity, Signal, f64); 4] = [
        (|v| v.user_logins_1h = 15, Signal::LoginVelocity, 2.5),
        (|v| v.user_failures_1h = 7, Signal::FailureVelocity, 2.8),
        (|v| v.ip_accounts_1h = 8, Signal::ManyAccountsFromIp, 4.0),
        (|v| v.user_networks_1h = 6, Signal::ManyNetworksForAccount, 2.0),
    ];
    for (set, signal, expected) in cases {
        let mut o = base.clone();
        set(&mut o.velocity);
        let a = eval(&e, &p, &g, &o, RiskAction::Login);
        let w = weight_of(&a, signal).unwrap_or_else(|| panic!("{signal:?} did not fire"));
        assert!((w - expected).abs() < 1e-9, "{signal:?}: {w}");
    }
    // At the thresholds nothing fires.
    let mut o = base.clone();
    o.velocity = Velocity {
        user_logins_1h: 10,
        user_failures_1h: 3,
        ip_accounts_1h: 4,
        ip_failures_1h: 10,
        user_networks_1h: 4,
        ..Velocity::default()
    };
    let quiet = eval(&e, &p, &g, &o, RiskAction::Login);
    assert!(quiet.reasons.iter().all(|c| c.weight <= 0.0), "{:?}", quiet.reasons);
    // Many failures from one IP also read as stuffing, even over few accounts.
    o.velocity.ip_failures_1h = 20;
    assert!(weight_of(&eval(&e, &p, &g, &o, RiskAction::Login), Signal::ManyAccountsFromIp).is_some());
}

#[test]
fn session_used_from_another_device() {
    let e = engine();
    let (p, g) = history(&e, 40);
    let mut o = home_obs(&e, 5);
    o.session = Some(SessionBinding { device: device(0), ua_family: "Chrome/Windows".into() });
    assert_eq!(weight_of(&eval(&e, &p, &g, &o, RiskAction::Session), Signal::SessionDeviceMismatch), None);
    o.device = Some(device(3));
    let a = eval(&e, &p, &g, &o, RiskAction::Session);
    assert_eq!(weight_of(&a, Signal::SessionDeviceMismatch), Some(7.0));
    // Same device cookie, other browser family: still a mismatch.
    o.device = Some(device(0));
    o.ua_family = Some("Firefox/Linux".into());
    assert!(weight_of(&eval(&e, &p, &g, &o, RiskAction::Session), Signal::SessionDeviceMismatch).is_some());
}

// proof of possession (issue 9)
#[test]
fn refused_proofs_of_possession_are_a_strong_signal() {
    let e = engine();
    let (p, g) = history(&e, 40);
    let mut o = home_obs(&e, 5);
    for action in [RiskAction::Login, RiskAction::Session, RiskAction::Sensitive] {
        assert_eq!(weight_of(&eval(&e, &p, &g, &o, action), Signal::ProofOfPossessionFailure), None);
    }
    let mut t = super::velocity::VelocityTracker::new(64);
    let user = crate::ids::UserId::generate(T0, &crate::rng::OsRng);
    t.record_pop_failure(&user, T0);
    o.velocity = t.velocity(Some(&user), o.ip, None, T0.plus(Span::minutes(59)));
    assert_eq!(o.velocity.user_pop_failures_1h, 1);
    for action in [RiskAction::Login, RiskAction::Session, RiskAction::Sensitive] {
        assert_eq!(weight_of(&eval(&e, &p, &g, &o, action), Signal::ProofOfPossessionFailure), Some(6.0));
    }
    // An hour later it is forgotten.
    o.velocity = t.velocity(Some(&user), o.ip, None, T0.plus(Span::minutes(61)));
    assert_eq!(weight_of(&eval(&e, &p, &g, &o, RiskAction::Login), Signal::ProofOfPossessionFailure), None);
}

fn api_obs(e: &RiskEngine, addr: &str, scope: crate::apikey::Scope) -> Observation {
    let mut o = Observation::new(ip(addr));
    o.geo = e.geo_for(o.ip);
    o.api = Some(ApiUse { key_id: "key-1".into(), scope, route: format!("GET /v1/{}", scope.name()) });
    o
}

fn key_history(e: &RiskEngine) -> (UserProfile, GlobalStats) {
    use crate::apikey::Scope;
    let (mut p, g) = history(e, 40);
    for i in 0..200 {
        let scope = if i % 4 == 0 { Scope::PlaceOrders } else { Scope::ViewAssets };
        p.learn(&api_obs(e, &format!("192.0.2.{}", 1 + i % 3), scope), T0.minus(Span::minutes(10 * (200 - i))));
    }
    (p, g)
}

#[test]
fn api_key_from_a_new_network() {
    use crate::apikey::Scope;
    let e = engine();
    let (p, g) = key_history(&e);
    let usual = eval(&e, &p, &g, &api_obs(&e, "192.0.2.3", Scope::ViewAssets), RiskAction::ApiKeyUse);
    assert_eq!(usual.decision, Decision::Allow);
    assert!(weight_of(&usual, Signal::ApiKeyKnownNetwork).unwrap() < 0.0);
    let moved = eval(&e, &p, &g, &api_obs(&e, "198.51.100.20", Scope::ViewAssets), RiskAction::ApiKeyUse);
    assert!(weight_of(&moved, Signal::ApiKeyNewNetwork).unwrap() > 4.0);
    assert!(moved.decision.is_challenge(), "{moved:?}");
    // The key's usage is learned apart from logins: the login profile did not gain networks.
    assert_eq!(p.known(Feature::Network, T0).len(), 1);
}

#[test]
fn api_key_suddenly_using_a_rare_scope() {
    use crate::apikey::Scope;
    let e = engine();
    let (p, g) = key_history(&e);
    let usual = eval(&e, &p, &g, &api_obs(&e, "192.0.2.3", Scope::PlaceOrders), RiskAction::ApiKeyUse);
    assert!(weight_of(&usual, Signal::ApiKeyUsualScope).is_some());
    let rare = eval(&e, &p, &g, &api_obs(&e, "192.0.2.3", Scope::Withdraw), RiskAction::ApiKeyUse);
    assert!(weight_of(&rare, Signal::ApiKeyRareScope).unwrap() > 3.0);
    assert!(rare.score > usual.score);
}

#[test]
fn bad_signature_burst_and_call_velocity() {
    use crate::apikey::Scope;
    let e = engine();
    let (p, g) = key_history(&e);
    let mut o = api_obs(&e, "192.0.2.3", Scope::ViewAssets);
    o.velocity.key_bad_signatures_10m = 4;
    assert_eq!(weight_of(&eval(&e, &p, &g, &o, RiskAction::ApiKeyUse), Signal::BadSignatureBurst), None);
    o.velocity.key_bad_signatures_10m = 8;
    let a = eval(&e, &p, &g, &o, RiskAction::ApiKeyUse);
    assert_eq!(weight_of(&a, Signal::BadSignatureBurst), Some(2.0));
    o.velocity.key_calls_1m = 500;
    assert!(weight_of(&eval(&e, &p, &g, &o, RiskAction::ApiKeyUse), Signal::ApiCallVelocity).is_some());
}

#[test]
fn denylisted_address_is_denied_whatever_the_score() {
    let (p, g) = history(&engine(), 40);
    let e = RiskEngine::new(RiskPolicy::default(), vec!["203.0.113.0/25".parse().unwrap()], Some(geo())).unwrap();
    let a = eval(&e, &p, &g, &home_obs(&e, 5), RiskAction::Login);
    assert_eq!(a.decision, Decision::Deny);
    assert!(weight_of(&a, Signal::Denylisted).is_some());
    // IPv4-mapped form of the same address is on the list too.
    assert!(e.is_denylisted(ip("::ffff:203.0.113.5")));
    let ok = eval(&e, &p, &g, &home_obs(&e, 200), RiskAction::Login);
    assert_eq!(ok.decision, Decision::Allow);
}

#[test]
fn impossible_travel() {
    let e = engine();
    let (mut p, g) = history(&e, 40);
    p.learn(&home_obs(&e, 5), T0.minus(Span::hours(2)));
    let mut o = home_obs(&e, 5);
    o.ip = ip("192.0.2.50");
    o.geo = e.geo_for(o.ip);
    let a = eval(&e, &p, &g, &o, RiskAction::Login);
    assert_eq!(weight_of(&a, Signal::ImpossibleTravel), Some(3.0));
    // Twenty hours later the same trip is possible.
    let later = e.evaluate(&p, &g, &o, RiskAction::Login, T0.plus(Span::hours(18)));
    assert_eq!(weight_of(&later, Signal::ImpossibleTravel), None);
}

#[test]
fn unseen_network_counts_little_with_little_history_and_much_with_much() {
    let e = engine();
    let (short, g) = history(&e, 2);
    let (long, _) = history(&e, 120);
    let mut o = home_obs(&e, 5);
    o.ip = ip("198.51.100.5");
    o.geo = e.geo_for(o.ip);
    let ws = weight_of(&eval(&e, &short, &g, &o, RiskAction::Login), Signal::NewNetwork).unwrap();
    let wl = weight_of(&eval(&e, &long, &g, &o, RiskAction::Login), Signal::NewNetwork).unwrap();
    assert!(ws < 1.1 && wl > 3.5, "little history {ws}, much history {wl}");
    // A brand-new account has no evidence either way.
    let fresh = eval(&e, &UserProfile::new(), &g, &o, RiskAction::Login);
    assert_eq!(fresh.log_lr, 0.0);
}

#[test]
fn adding_an_anomaly_never_lowers_the_score() {
    let e = engine();
    let (p, g) = history(&e, 40);
    type Anomaly = fn(&mut Observation, &RiskEngine);
    let anomalies: [Anomaly; 9] = [
        |o, _| o.device = Some(device(42)),
        |o, e| {
            o.ip = ip("198.51.100.7");
            o.geo = e.geo_for(o.ip);
        },
        |o, e| {
            o.ip = ip("192.0.2.7");
            o.geo = e.geo_for(o.ip);
        },
        |o, _| o.ua_family = Some("Edge/Windows".into()),
        |o, _| o.velocity.user_failures_1h = 9,
        |o, _| o.velocity.ip_accounts_1h = 12,
        |o, _| o.velocity.user_networks_1h = 7,
        |o, _| o.session = Some(SessionBinding { device: device(77), ua_family: "Safari/iOS".into() }),
        |o, _| o.ip = ip("100.64.1.1"),
    ];
    for action in [RiskAction::Login, RiskAction::Session, RiskAction::Sensitive] {
        // Every subset of anomalies, added one at a time in every order given by a bitmask walk.
        for mask in 0u32..(1 << anomalies.len()) {
            let mut o = home_obs(&e, 5);
            let mut last = eval(&e, &p, &g, &o, action);
            for (i, f) in anomalies.iter().enumerate() {
                if mask & (1 << i) == 0 {
                    continue;
                }
                f(&mut o, &e);
                let next = eval(&e, &p, &g, &o, action);
                assert!(
                    next.log_lr >= last.log_lr - 1e-9 && next.score >= last.score && next.decision >= last.decision,
                    "{action:?} mask {mask:#b} anomaly {i}: {} -> {}",
                    last.log_lr,
                    next.log_lr
                );
                last = next;
            }
        }
    }
}

#[test]
fn thresholds_differ_per_action_and_freeze_is_reachable() {
    let e = engine();
    let (p, g) = history(&e, 40);
    // A password-holding stranger: new device and browser on a new network of the same country.
    let mut o = home_obs(&e, 5);
    o.device = Some(device(50));
    o.ua_family = Some("Chrome/Android".into());
    o.ip = ip("198.51.100.9");
    o.geo = e.geo_for(o.ip);
    let login = eval(&e, &p, &g, &o, RiskAction::Login);
    let sensitive = eval(&e, &p, &g, &o, RiskAction::Sensitive);
    assert_eq!(login.score, sensitive.score);
    assert!(sensitive.decision.is_challenge());
    assert!(sensitive.decision >= login.decision);
    // The same stranger replaying the owner's session cookie before a withdrawal: freeze.
    o.session = Some(SessionBinding { device: device(0), ua_family: "Chrome/Windows".into() });
    let replay = eval(&e, &p, &g, &o, RiskAction::Sensitive);
    assert!(replay.score >= e.policy().thresholds.sensitive.freeze, "{}", replay.score);
    assert_eq!(replay.decision, Decision::Freeze);
    assert_eq!(replay.reasons[0].signal, Signal::SessionDeviceMismatch, "largest reason first");
}

#[test]
fn assessments_serialise_for_the_audit_log() {
    let e = engine();
    let (p, g) = history(&e, 10);
    let a = eval(&e, &p, &g, &home_obs(&e, 5), RiskAction::Login);
    let json = serde_json::to_value(&a).unwrap();
    assert_eq!(json["decision"], "allow");
    assert!(json["reasons"].as_array().unwrap().iter().any(|r| r["signal"] == "known_device"));
    let g2: GlobalStats = serde_json::from_str(&serde_json::to_string(&g).unwrap()).unwrap();
    let again = eval(&e, &p, &g2, &home_obs(&e, 5), RiskAction::Login);
    assert_eq!(again.score, a.score);
    assert!((again.log_lr - a.log_lr).abs() < 1e-9);
}

#[test]
fn invalid_policy_is_refused() {
    let mut policy = RiskPolicy::default();
    policy.signals.session_device_mismatch = -1.0;
    assert!(RiskEngine::new(policy, vec![], None).is_err());
}

#[test]
fn a_device_learned_minutes_ago_does_not_vouch_for_a_withdrawal() {
    let e = engine();
    let (mut p, g) = history(&e, 40);
    let mut o = home_obs(&e, 5);
    o.device = Some(device(66));
    o.ip = ip("198.51.100.5");
    o.geo = e.geo_for(o.ip);
    // A login that slipped through is learned…
    p.learn(&o, T0.minus(Span::minutes(10)));
    let login = eval(&e, &p, &g, &o, RiskAction::Login);
    assert!(weight_of(&login, Signal::KnownDevice).is_some());
    // …but ten minutes later its device and network are still new for a sensitive action.
    let withdraw = eval(&e, &p, &g, &o, RiskAction::Sensitive);
    assert!(weight_of(&withdraw, Signal::NewDevice).unwrap() > 2.0);
    assert!(weight_of(&withdraw, Signal::NewNetwork).is_some());
    assert!(withdraw.decision.is_challenge());
    // A day later the probation is over.
    let later = e.evaluate(&p, &g, &o, RiskAction::Sensitive, T0.plus(Span::days(1)));
    assert!(weight_of(&later, Signal::KnownDevice).is_some());
}

#[test]
fn leaving_out_the_device_cookie_is_a_new_device() {
    let e = engine();
    let (p, g) = history(&e, 40);
    let mut o = home_obs(&e, 5);
    o.device = None;
    o.ua_family = None;
    let a = eval(&e, &p, &g, &o, RiskAction::Login);
    assert!(weight_of(&a, Signal::NewDevice).unwrap() > 2.0);
    assert!(weight_of(&a, Signal::NewUaFamily).unwrap() > 2.0);
}

#[test]
fn dormant_accounts_carry_the_activity_term() {
    let e = engine();
    let (dormant, g) = history(&e, 2);
    let (busy, _) = history(&e, 60);
    let o = home_obs(&e, 5);
    let w = weight_of(&eval(&e, &dormant, &g, &o, RiskAction::Login), Signal::RarelyActiveAccount).unwrap();
    assert!(w > 2.0 && w <= e.policy().model.activity_cap);
    assert_eq!(weight_of(&eval(&e, &busy, &g, &o, RiskAction::Login), Signal::RarelyActiveAccount), None);
}
