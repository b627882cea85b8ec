//! The explainable terms the Freeman model does not cover: velocity, credential stuffing,
//! session binding, impossible travel and API-key behaviour.
//!
//! Each term is a non-negative log-likelihood-ratio weight (nats) added to the Freeman sum,
//! except the API-key network/ASN/scope terms, which are Freeman terms over the key's own
//! history and may be negative (a key used from its usual server is evidence of the owner).
//! Every weight is configuration ([`SignalWeights`]) and every firing is recorded in the
//! assessment with its weight and the numbers behind it.
//!
//! Attacks in view, and the term that answers each:
//!
//! | attack | term |
//! |---|---|
//! | password guessing on one account | [`Signal::FailureVelocity`], [`Signal::LoginVelocity`] |
//! | credential stuffing (one IP, many accounts) | [`Signal::ManyAccountsFromIp`] |
//! | distributed guessing (one account, many IPs) | [`Signal::ManyNetworksForAccount`] |
//! | stolen cookie or bearer token replayed elsewhere | [`Signal::SessionDeviceMismatch`] |
//! | login from across the world an hour after the last | [`Signal::ImpossibleTravel`] |
//! | leaked API key | [`Signal::ApiKeyNewNetwork`], [`Signal::ApiKeyRareScope`], [`Signal::ApiCallVelocity`] |
//! | key-id probing / signature forging | [`Signal::BadSignatureBurst`] |
//!
//! Velocity weights grow linearly with the excess over a threshold and are capped, so the
//! terms stay explainable ("7 failures, 4 over the threshold, 0.7 each") and bounded.

use serde::{Deserialize, Serialize};

use crate::clock::{Span, Timestamp};

use super::features::network_prefix;
use super::model::{ModelParams, freeman_term, population_frequency};
use super::profile::{GlobalStats, UserProfile};
use super::{Contribution, Observation, RiskError, Signal};

/// Weights and thresholds of the extra terms.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SignalWeights {
    /// Login attempts per hour on one account before [`Signal::LoginVelocity`] fires.
    pub login_velocity_threshold: u32,
    /// Weight per attempt over that threshold.
    pub login_velocity_step: f64,
    /// Failures per hour on one account before [`Signal::FailureVelocity`] fires.
    pub failure_threshold: u32,
    /// Weight per failure over that threshold.
    pub failure_step: f64,
    /// Distinct accounts per hour from one IP before [`Signal::ManyAccountsFromIp`] fires.
    pub ip_accounts_threshold: u32,
    /// Weight per account over that threshold.
    pub ip_accounts_step: f64,
    /// Failed logins per hour from one IP (any account) that also fire it.
    pub ip_failures_threshold: u32,
    /// Weight per failure over that threshold.
    pub ip_failures_step: f64,
    /// Distinct networks per hour for one account before [`Signal::ManyNetworksForAccount`].
    pub account_networks_threshold: u32,
    /// Weight per network over that threshold.
    pub account_networks_step: f64,
    /// Largest weight of any one velocity term.
    pub velocity_cap: f64,
    /// Weight of a session presented by another device or user-agent family than it is
    /// bound to (ln 1100: the binding is rarely wrong for a legitimate client).
    pub session_device_mismatch: f64,
    /// Weight of impossible travel.
    pub impossible_travel: f64,
    /// Speed above which travel since the last trusted login is impossible, km/h.
    pub max_speed_kmh: f64,
    /// Distances below this are GeoIP noise, never impossible travel, km.
    pub min_travel_km: f64,
    /// Bounds of the API-key network term (Freeman term over the key's networks).
    pub key_network_bounds: (f64, f64),
    /// Bounds of the API-key ASN term.
    pub key_asn_bounds: (f64, f64),
    /// Bounds of the API-key scope term (attacker model: uniform over the 7 scopes).
    pub key_scope_bounds: (f64, f64),
    /// [`Signal::ApiCallVelocity`] fires above `max(api_rate_factor × peak, api_rate_floor)`
    /// calls per minute.
    pub api_rate_factor: f64,
    /// Floor of that rate, calls per minute.
    pub api_rate_floor: u32,
    /// Weight of [`Signal::ApiCallVelocity`].
    pub api_rate_weight: f64,
    /// Bad signatures per 10 minutes for one key before [`Signal::BadSignatureBurst`].
    pub bad_signature_threshold: u32,
    /// Weight per bad signature at or over that threshold.
    pub bad_signature_step: f64,
    /// Weight of an operator denylist hit (which is also at least `Deny`).
    pub denylist: f64,
    /// Weight of [`Signal::ProofOfPossessionFailure`]: a bound token used without its key is
    /// close to proof of theft (ln 400).
    pub pop_failure: f64,
}

impl Default for SignalWeights {
    fn default() -> Self {
        Self {
            login_velocity_threshold: 10,
            login_velocity_step: 0.5,
            failure_threshold: 3,
            failure_step: 0.7,
            ip_accounts_threshold: 4,
            ip_accounts_step: 1.0,
            ip_failures_threshold: 10,
            ip_failures_step: 0.3,
            account_networks_threshold: 4,
            account_networks_step: 1.0,
            velocity_cap: 6.0,
            session_device_mismatch: 7.0,
            impossible_travel: 3.0,
            max_speed_kmh: 1000.0,
            min_travel_km: 500.0,
            key_network_bounds: (-4.0, 6.0),
            key_asn_bounds: (-3.0, 4.0),
            key_scope_bounds: (-2.0, 5.0),
            api_rate_factor: 3.0,
            api_rate_floor: 60,
            api_rate_weight: 2.0,
            bad_signature_threshold: 5,
            bad_signature_step: 0.5,
            denylist: 4.0,
            pop_failure: 6.0,
        }
    }
}

impl SignalWeights {
    /// Refuses negative or non-finite weights: an anomaly must never lower the score.
    pub fn validate(&self) -> Result<(), RiskError> {
        let weights = [
            self.login_velocity_step,
            self.failure_step,
            self.ip_accounts_step,
            self.ip_failures_step,
            self.account_networks_step,
            self.velocity_cap,
            self.session_device_mismatch,
            self.impossible_travel,
            self.api_rate_weight,
            self.bad_signature_step,
            self.denylist,
            self.pop_failure,
            self.max_speed_kmh,
            self.min_travel_km,
            self.api_rate_factor,
        ];
        if weights.iter().any(|w| !w.is_finite() || *w < 0.0) {
            return Err(RiskError::InvalidPolicy("risk.signals", "weights must be finite and >= 0"));
        }
        for (lo, hi) in [self.key_network_bounds, self.key_asn_bounds, self.key_scope_bounds] {
            if !(lo.is_finite() && hi.is_finite() && lo <= 0.0 && 0.0 <= hi) {
                return Err(RiskError::InvalidPolicy("risk.signals", "key term bounds must satisfy lo <= 0 <= hi"));
            }
        }
        Ok(())
    }
}

fn over(count: u32, threshold: u32, step: f64, cap: f64) -> Option<f64> {
    (count >= threshold && threshold > 0).then(|| (f64::from(count - threshold + 1) * step).min(cap))
}

/// Velocity and credential-stuffing terms for a login-like action.
pub fn velocity_terms(obs: &Observation, w: &SignalWeights, out: &mut Vec<Contribution>) {
    let v = &obs.velocity;
    if v.user_pop_failures_1h > 0 {
        out.push(Contribution::new(
            Signal::ProofOfPossessionFailure,
            w.pop_failure,
            format!("{} refused proofs of possession for this account in 1 h", v.user_pop_failures_1h),
        ));
    }
    let cap = w.velocity_cap;
    if let Some(x) = over(v.user_logins_1h, w.login_velocity_threshold + 1, w.login_velocity_step, cap) {
        out.push(Contribution::new(Signal::LoginVelocity, x, format!("{} login attempts in 1 h", v.user_logins_1h)));
    }
    if let Some(x) = over(v.user_failures_1h, w.failure_threshold + 1, w.failure_step, cap) {
        out.push(Contribution::new(Signal::FailureVelocity, x, format!("{} failed logins in 1 h", v.user_failures_1h)));
    }
    let by_accounts = over(v.ip_accounts_1h, w.ip_accounts_threshold + 1, w.ip_accounts_step, cap).unwrap_or(0.0);
    let by_failures = over(v.ip_failures_1h, w.ip_failures_threshold + 1, w.ip_failures_step, cap).unwrap_or(0.0);
    let x = by_accounts.max(by_failures);
    if x > 0.0 {
        out.push(Contribution::new(
            Signal::ManyAccountsFromIp,
            x,
            format!("{} accounts and {} failures from this IP in 1 h", v.ip_accounts_1h, v.ip_failures_1h),
        ));
    }
    if let Some(x) = over(v.user_networks_1h, w.account_networks_threshold + 1, w.account_networks_step, cap) {
        out.push(Contribution::new(
            Signal::ManyNetworksForAccount,
            x,
            format!("account tried from {} networks in 1 h", v.user_networks_1h),
        ));
    }
}

/// [`Signal::SessionDeviceMismatch`]: the session is presented by another device or
/// user-agent family than the one it was bound to at login.
pub fn session_terms(obs: &Observation, w: &SignalWeights, out: &mut Vec<Contribution>) {
    let Some(bound) = &obs.session else {
        return;
    };
    let same_device = obs.device.is_some() && obs.device == Some(bound.device);
    let same_ua = obs.ua_family.as_deref() == Some(bound.ua_family.as_str());
    if !(same_device && same_ua) {
        let presented = obs.device.map_or_else(|| "none".to_owned(), |d| d.to_string());
        out.push(Contribution::new(
            Signal::SessionDeviceMismatch,
            w.session_device_mismatch,
            format!(
                "bound to {} ({}), presented {} ({})",
                bound.device,
                bound.ua_family,
                presented,
                obs.ua_family.as_deref().unwrap_or("none")
            ),
        ));
    }
}

/// [`Signal::ImpossibleTravel`]: faster than an airliner since the last trusted login.
pub fn travel_terms(
    profile: &UserProfile,
    obs: &Observation,
    w: &SignalWeights,
    now: Timestamp,
    out: &mut Vec<Contribution>,
) {
    let (Some(last), Some(here)) = (profile.last_login, obs.geo.as_ref().and_then(|g| g.location)) else {
        return;
    };
    let (Some(lat), Some(lon)) = (last.lat, last.lon) else {
        return;
    };
    let km = super::geo::GeoPoint { lat, lon }.distance_km(&here);
    if km < w.min_travel_km {
        return;
    }
    // At least a minute, so a same-instant pair reads as "very fast", not a division by zero.
    let hours = (now.since(last.at).as_millis().max(60_000) as f64) / 3_600_000.0;
    let speed = km / hours;
    if speed > w.max_speed_kmh {
        out.push(Contribution::new(
            Signal::ImpossibleTravel,
            w.impossible_travel,
            format!("{km:.0} km in {hours:.1} h ({speed:.0} km/h) since the last login"),
        ));
    }
}

/// API-key terms: the key's usual networks, ASNs and scopes (Freeman terms over the key's
/// own history), its call rate and bursts of bad signatures.
pub fn api_terms(
    profile: &UserProfile,
    stats: &GlobalStats,
    obs: &Observation,
    params: &ModelParams,
    w: &SignalWeights,
    now: Timestamp,
    out: &mut Vec<Contribution>,
) {
    let Some(api) = &obs.api else {
        return;
    };
    let v = &obs.velocity;
    if let Some(x) = over(v.key_bad_signatures_10m, w.bad_signature_threshold, w.bad_signature_step, w.velocity_cap) {
        out.push(Contribution::new(
            Signal::BadSignatureBurst,
            x,
            format!("{} bad signatures for this key in 10 min", v.key_bad_signatures_10m),
        ));
    }
    let Some(key) = profile.api_key(&api.key_id) else {
        return; // A key with no trusted history: no evidence either way.
    };
    // Calls that move funds or trade do not trust a network or ASN the key met only recently.
    let probation = (!api.scope.is_view()).then(|| Span::hours(params.sensitive_probation_hours));
    let weight = |t: &super::profile::CountTable, v: &str| {
        let recent = probation.is_some_and(|p| t.first_seen(v).is_some_and(|f| now.since(f) < p));
        if recent { 0.0 } else { t.weight(v, now) }
    };
    let mimic = &params.mimicry;
    let net = network_prefix(obs.ip);
    let table = &key.networks;
    let p_a = population_frequency(&stats.networks, &net, params.beta, now);
    let (n, d) = (table.total(now), table.distinct(now));
    let s = freeman_term(n, d, weight(table, &net), p_a, mimic.network, params, w.key_network_bounds);
    let signal = if s.seen { Signal::ApiKeyKnownNetwork } else { Signal::ApiKeyNewNetwork };
    out.push(Contribution::new(signal, s.log_lr, format!("key {} from {net}; λ={:.2}", api.key_id, s.lambda)));

    if let Some(asn) = obs.geo.as_ref().and_then(|g| g.asn) {
        let asn = format!("AS{asn}");
        let t = &key.asns;
        let p_a = population_frequency(&stats.asns, &asn, params.beta, now);
        let s = freeman_term(t.total(now), t.distinct(now), weight(t, &asn), p_a, mimic.asn, params, w.key_asn_bounds);
        let signal = if s.seen { Signal::ApiKeyKnownNetwork } else { Signal::ApiKeyNewNetwork };
        out.push(Contribution::new(signal, s.log_lr, format!("key {} from {asn}; λ={:.2}", api.key_id, s.lambda)));
    }

    let scope = api.scope.name();
    let t = &key.scopes;
    let uniform = 1.0 / crate::apikey::Scope::ALL.len() as f64;
    let s = freeman_term(t.total(now), t.distinct(now), t.weight(scope, now), uniform, 0.0, params, w.key_scope_bounds);
    let signal = if s.log_lr > 0.0 { Signal::ApiKeyRareScope } else { Signal::ApiKeyUsualScope };
    out.push(Contribution::new(
        signal,
        s.log_lr,
        format!("scope {scope} for {} (share {:.3})", api.route, t.weight(scope, now) / t.total(now).max(1e-9)),
    ));

    let peak = key.peak_rate(now);
    let limit = (w.api_rate_factor * peak).max(f64::from(w.api_rate_floor));
    if f64::from(v.key_calls_1m) > limit {
        out.push(Contribution::new(
            Signal::ApiCallVelocity,
            w.api_rate_weight,
            format!("{} calls/min, usual peak {peak:.0}", v.key_calls_1m),
        ));
    }
}
