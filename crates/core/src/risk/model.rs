//! The likelihood-ratio model of Freeman et al., "Who Are You? A Statistical Approach to
//! Measuring User Authenticity" (NDSS 2016), as evaluated by Wiefling et al. (ACM TOPS 2022).
//!
//! For a login with feature values x = (x_1 … x_K) the evidence that it is an attack is
//!
//! ```text
//!         p(x | attacker)       K   p_A(x_k)
//!   LR = ----------------  ≈   Π  ----------- ,    L = ln LR = Σ_k ℓ_k
//!          p(x | user u)       k=1  p̃(x_k | u)
//! ```
//!
//! with the features treated as independent, as in the paper. The **attacker model**
//! p_A is the population frequency of the value over trusted logins (as in the paper, an attacker
//! is a draw from the population), add-β smoothed so unseen values keep a little mass:
//!
//! ```text
//!   p_A(x) = (G(x) + β) / (N + β (V + 1))       G: population count, N: total, V: distinct
//! ```
//!
//! Device ids are random per device, so the population count of a device is the user's own
//! count and no population table is kept for them. Hours use a 24-bin histogram with add-one
//! smoothing.
//!
//! Freeman's population attacker is the *naive* attacker of Wiefling et al. ("Is This Really
//! You?", ESORICS 2019). Real account-takeover crews are *targeted*: they rent residential
//! proxies in the victim's country and ISP, copy the victim's browser from infostealer logs and
//! act at the victim's usual hours. The attacker model is therefore a mixture, per feature k,
//! of the population draw and a mimic who draws from the victim's own smoothed distribution:
//!
//! ```text
//!   p_A,k(x) = (1 − ρ_k) · p_pop(x) + ρ_k · p̃(x | u)
//!   ⇒  LR_k = (1 − ρ_k) · p_pop(x) / p̃(x | u) + ρ_k  ≥  ρ_k
//! ```
//!
//! ρ_k ([`Mimicry`]) is how cheaply an attacker copies feature k: 0 for the device id (that
//! takes theft of the device cookie, which session binding addresses), a little for the exact
//! network, more for the ASN, half for country, user-agent family and hour. A copyable value
//! that matches can then vouch for the user by at most ln ρ_k (−0.69 for ρ = ½) instead of the
//! −3 to −5 a rare country or ISP would otherwise earn — the weakness of the pure population
//! model against a targeted attacker.
//!
//! The **user model** is the user's own frequency, smoothed by backing off to the population
//! (Freeman's answer to values the user has never shown):
//!
//! ```text
//!   p̃(x | u) = λ_u · c_u(x) / n_u + (1 − λ_u) · p_A(x),     λ_u = n_u / (n_u + d_u + α)
//! ```
//!
//! n_u is the user's (decayed) history size, d_u the effective number of distinct values
//! seen and α a pseudo-count (Witten–Bell back-off, whose weight on the unseen grows with how
//! varied the user is and shrinks with how much history there is). Two consequences drive the
//! whole engine:
//!
//! * an **unseen** value scores ℓ = ln((1 − ρ)/(1 − λ_u) + ρ), with 1/(1 − λ_u) =
//!   (n + d + α)/(d + α), whatever its population frequency: little evidence for a user with
//!   three logins, strong evidence for a user with two hundred logins from one network; a user
//!   with no history scores 0;
//! * a **seen** value scores below that, and strongly negative when the value is rare in
//!   the population (the user's own home network) — matching a value an attacker could not
//!   easily have is strong evidence of authenticity, matching "Chrome on Windows" is not.
//!
//! **Account activity.** Freeman's score has a second factor, p(u | attack) / p(u | login):
//! attackers pick accounts without regard to how often their owners log in, owners of
//! dormant accounts rarely do, so a login to a dormant account is a priori more suspicious —
//! and it is exactly there that the feature terms are weak (little history, small λ). With
//! p(u | attack) = 1/|U| and p(u | login) = n_u/N this is n̄/n_u, n̄ = N/|U| being the
//! typical account's login count (`typical_logins`, an operator setting). The term is
//!
//! ```text
//!   ℓ_activity = min(activity_cap, max(0, ln(n̄ / max(n_u, ½))))
//! ```
//!
//! floored at 0: on an exchange attackers prefer busy (funded) accounts, so Freeman's uniform
//! targeting would wrongly discount evidence against active accounts. It depends on the
//! profile only, so it never breaks monotonicity in the observation.
//!
//! **Probation.** Before a sensitive action, a value first learned less than
//! `sensitive_probation_hours` ago counts as unseen: an attacker whose login slipped through
//! must not be vouched for by the device and network that login just taught the profile
//! (exchanges hold withdrawals after a new-device login for the same reason).
//!
//! Each ℓ_k is clamped to `[feature_min, feature_max]` so that one familiar value (a known
//! device) cannot cancel every anomaly, and one anomaly alone cannot reach the top. Clamping
//! preserves order, so "seen" never scores above "unseen".
//!
//! **Squash to 0–100.** The total L (Freeman terms plus the explainable extra terms of
//! [`super::signals`]) is mapped by a logistic curve:
//!
//! ```text
//!   score = round(100 · σ((L − offset) / temperature)),     σ(z) = 1 / (1 + e^(−z))
//! ```
//!
//! Read as Bayes: score/100 is the posterior probability of attack for prior odds
//! e^(−offset) (default 1 : 55) with the likelihood tempered by 1/temperature (default ½).
//! Tempering is the standard correction for the independence assumption, which over-counts
//! correlated evidence (a new network usually also means a new ASN and country). The curve
//! is strictly increasing, so every argument about L holds for the score.

use serde::{Deserialize, Serialize};

use crate::clock::{Span, Timestamp};

use super::RiskError;
use super::features::{Feature, hour_of_day, value_of};
use super::profile::{CountTable, GlobalStats, HourHistogram, UserProfile};
use super::{Contribution, Observation, Signal};

/// Parameters of the likelihood model and of the squash.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelParams {
    /// α, the back-off pseudo-count: how much history it takes before an unseen value counts.
    pub alpha: f64,
    /// β, the add-β smoothing of population frequencies.
    pub beta: f64,
    /// Lowest log-likelihood ratio one feature may contribute.
    pub feature_min: f64,
    /// Highest log-likelihood ratio one feature may contribute.
    pub feature_max: f64,
    /// Squash offset: minus the log prior odds of an attack.
    pub offset: f64,
    /// Squash temperature (> 0).
    pub temperature: f64,
    /// How cheaply an attacker copies each feature (the targeted share of the attacker model).
    pub mimicry: Mimicry,
    /// Hours during which a newly learned value does not vouch for a sensitive action.
    pub sensitive_probation_hours: i64,
    /// n₀, the (decayed) number of logins of a typical account, for the account-activity term.
    pub typical_logins: f64,
    /// Largest weight of the account-activity term.
    pub activity_cap: f64,
}

/// ρ_k per feature, each in [0, 1).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Mimicry {
    /// Device id.
    pub device: f64,
    /// /24 or /48 network.
    pub network: f64,
    /// Autonomous system.
    pub asn: f64,
    /// Country.
    pub country: f64,
    /// User-agent family.
    pub ua_family: f64,
    /// Hour of day.
    pub hour: f64,
}

impl Default for Mimicry {
    fn default() -> Self {
        Self { device: 0.0, network: 0.05, asn: 0.3, country: 0.5, ua_family: 0.5, hour: 0.5 }
    }
}

impl Mimicry {
    /// ρ for `feature`.
    pub fn of(&self, feature: Feature) -> f64 {
        match feature {
            Feature::Device => self.device,
            Feature::Network => self.network,
            Feature::Asn => self.asn,
            Feature::Country => self.country,
            Feature::UaFamily => self.ua_family,
            Feature::Hour => self.hour,
        }
    }

    fn all(&self) -> [f64; 6] {
        [self.device, self.network, self.asn, self.country, self.ua_family, self.hour]
    }
}

impl Default for ModelParams {
    fn default() -> Self {
        Self {
            alpha: 1.0,
            beta: 0.5,
            feature_min: -6.0,
            feature_max: 6.0,
            offset: 4.0,
            temperature: 2.0,
            mimicry: Mimicry::default(),
            sensitive_probation_hours: 24,
            typical_logins: 20.0,
            activity_cap: 2.5,
        }
    }
}

impl ModelParams {
    /// Refuses parameters that would break the model's guarantees.
    pub fn validate(&self) -> Result<(), RiskError> {
        let finite = [self.alpha, self.beta, self.feature_min, self.feature_max, self.offset, self.temperature]
            .iter()
            .all(|v| v.is_finite());
        if !finite || !self.typical_logins.is_finite() || !self.activity_cap.is_finite() || self.activity_cap < 0.0 {
            return Err(RiskError::InvalidPolicy("risk.model", "values must be finite, activity_cap >= 0"));
        }
        if self.alpha <= 0.0 || self.beta <= 0.0 || self.temperature <= 0.0 {
            return Err(RiskError::InvalidPolicy("risk.model", "alpha, beta and temperature must be finite and > 0"));
        }
        if self.feature_min > 0.0 || self.feature_max < 0.0 {
            return Err(RiskError::InvalidPolicy("risk.model", "feature_min must be <= 0 <= feature_max"));
        }
        if self.mimicry.all().iter().any(|r| !(0.0..1.0).contains(r)) {
            return Err(RiskError::InvalidPolicy("risk.model.mimicry", "each share must be in [0, 1)"));
        }
        if !(0..=24 * 30).contains(&self.sensitive_probation_hours) {
            return Err(RiskError::InvalidPolicy("risk.model", "sensitive_probation_hours must be 0..=720"));
        }
        Ok(())
    }

    /// The monotone squash of a total log-likelihood ratio to 0–100.
    pub fn squash(&self, log_lr: f64) -> u8 {
        if log_lr.is_nan() {
            return 100; // fail closed
        }
        let z = (log_lr - self.offset) / self.temperature;
        let p = 1.0 / (1.0 + (-z).exp());
        // p is in [0, 1], so the rounded value is in [0, 100].
        (p * 100.0).round().clamp(0.0, 100.0) as u8
    }
}

/// The smoothing computation for one feature value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Smoothed {
    /// Whether the user has shown the value before.
    pub seen: bool,
    /// λ_u.
    pub lambda: f64,
    /// p̃(x | u).
    pub p_user: f64,
    /// p_A(x).
    pub p_attacker: f64,
    /// Clamped ln(p_A / p̃).
    pub log_lr: f64,
}

/// The term for one value, from the user's history (n, d, c(x)), the population frequency
/// p_pop(x) and the mimic share ρ: ℓ = ln((1 − ρ) p_pop / p̃ + ρ), clamped to `bounds`.
pub fn freeman_term(
    n: f64,
    d: f64,
    c: f64,
    p_pop: f64,
    rho: f64,
    params: &ModelParams,
    bounds: (f64, f64),
) -> Smoothed {
    let p_pop = p_pop.clamp(f64::MIN_POSITIVE, 1.0);
    if n <= 0.0 {
        return Smoothed { seen: false, lambda: 0.0, p_user: p_pop, p_attacker: p_pop, log_lr: 0.0 };
    }
    let rho = rho.clamp(0.0, 0.999);
    let lambda = n / (n + d + params.alpha);
    let p_user = lambda * (c / n).min(1.0) + (1.0 - lambda) * p_pop;
    let p_attacker = (1.0 - rho) * p_pop + rho * p_user;
    let log_lr = (p_attacker.ln() - p_user.ln()).clamp(bounds.0, bounds.1);
    Smoothed { seen: c > 0.0, lambda, p_user, p_attacker, log_lr }
}

/// Population frequency of `value` in `table`, add-β smoothed.
pub fn population_frequency(table: &CountTable, value: &str, beta: f64, now: Timestamp) -> f64 {
    let n = table.total(now);
    let v = table.len() as f64;
    (table.weight(value, now) + beta) / (n + beta * (v + 1.0))
}

fn hour_frequency(h: &HourHistogram, hour: usize, now: Timestamp) -> f64 {
    let n = h.total(now);
    (h.smoothed_share(hour, now) * n + 1.0) / (n + 24.0)
}

fn signal_for(feature: Feature, seen: bool) -> Signal {
    match (feature, seen) {
        (Feature::Device, true) => Signal::KnownDevice,
        (Feature::Device, false) => Signal::NewDevice,
        (Feature::Network, true) => Signal::KnownNetwork,
        (Feature::Network, false) => Signal::NewNetwork,
        (Feature::Asn, true) => Signal::KnownAsn,
        (Feature::Asn, false) => Signal::NewAsn,
        (Feature::Country, true) => Signal::KnownCountry,
        (Feature::Country, false) => Signal::NewCountry,
        (Feature::UaFamily, true) => Signal::KnownUaFamily,
        (Feature::UaFamily, false) => Signal::NewUaFamily,
        (Feature::Hour, true) => Signal::UsualHour,
        (Feature::Hour, false) => Signal::UnusualHour,
    }
}

/// The Freeman terms of a login-like observation (login, session use, sensitive action).
/// With `probation`, values first learned less than that long ago count as unseen.
pub fn login_terms(
    profile: &UserProfile,
    stats: &GlobalStats,
    obs: &Observation,
    params: &ModelParams,
    probation: Option<Span>,
    now: Timestamp,
) -> Vec<Contribution> {
    let bounds = (params.feature_min, params.feature_max);
    let mut out = Vec::with_capacity(7);
    let n_u = profile.login_count(now);
    if n_u > 0.0 {
        let w = (params.typical_logins / n_u.max(0.5)).ln().clamp(0.0, params.activity_cap);
        if w > 0.0 {
            out.push(Contribution {
                signal: Signal::RarelyActiveAccount,
                weight: w,
                detail: format!("{n_u:.1} recent logins, typical account {:.0}", params.typical_logins),
            });
        }
    }
    for feature in Feature::ALL {
        if feature == Feature::Hour {
            let h = hour_of_day(now);
            let hist = profile.hours();
            let n = hist.total(now);
            let c = hist.smoothed_share(h, now) * n;
            let p_pop = hour_frequency(stats.hours(), h, now);
            let s = freeman_term(n, hist.distinct(now), c, p_pop, params.mimicry.hour, params, bounds);
            if n > 0.0 {
                // "Usual" means the hour speaks for the user, not merely that a neighbour was seen.
                let signal = if s.log_lr > 0.0 { Signal::UnusualHour } else { Signal::UsualHour };
                out.push(Contribution {
                    signal,
                    weight: s.log_lr,
                    detail: format!("{h:02}h UTC; λ={:.2} p_user={:.3} p_pop={:.3}", s.lambda, s.p_user, s.p_attacker),
                });
            }
            continue;
        }
        let (Some(value), Some(table)) = (value_of(obs, feature), profile.table(feature)) else {
            continue;
        };
        let n = table.total(now);
        if n <= 0.0 {
            continue;
        }
        let recent = probation.is_some_and(|p| table.first_seen(&value).is_some_and(|f| now.since(f) < p));
        let c = if recent { 0.0 } else { table.weight(&value, now) };
        let p_a = match stats.table(feature) {
            Some(g) => population_frequency(g, &value, params.beta, now),
            // Device ids are unique per device: the population count is the user's own.
            None => (c + params.beta) / (stats.login_count(now) + 1.0),
        };
        let s = freeman_term(n, table.distinct(now), c, p_a, params.mimicry.of(feature), params, bounds);
        let note = if recent { " (first seen within the probation period)" } else { "" };
        out.push(Contribution {
            signal: signal_for(feature, s.seen),
            weight: s.log_lr,
            detail: format!(
                "{} {value}{note}; λ={:.2} p_user={:.2e} p_attacker={:.2e}",
                feature.name(),
                s.lambda,
                s.p_user,
                s.p_attacker
            ),
        });
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly
mod tests {
    use super::*;

    #[test]
    fn unseen_values_weigh_more_with_more_history() {
        let p = ModelParams::default();
        let b = (p.feature_min, p.feature_max);
        // One login from one network: an unseen network is weak evidence…
        let little = freeman_term(1.0, 1.0, 0.0, 0.01, 0.0, &p, b);
        // …two hundred logins from two networks: strong evidence.
        let much = freeman_term(200.0, 2.0, 0.0, 0.01, 0.0, &p, b);
        assert!(!little.seen && !much.seen);
        assert!((little.log_lr - (3.0f64 / 2.0).ln()).abs() < 1e-12, "{}", little.log_lr);
        assert!((much.log_lr - (203.0f64 / 3.0).ln()).abs() < 1e-12, "{}", much.log_lr);
        assert!(much.log_lr > 4.0 && little.log_lr < 0.5);
        // The population frequency of an unseen value does not matter (it cancels).
        let rare = freeman_term(200.0, 2.0, 0.0, 1e-6, 0.0, &p, b);
        assert!((rare.log_lr - much.log_lr).abs() < 1e-9);
        // No history at all: no evidence either way.
        assert_eq!(freeman_term(0.0, 0.0, 0.0, 0.3, 0.5, &p, b).log_lr, 0.0);
    }

    #[test]
    fn seen_values_lower_the_score_most_when_rare_in_the_population() {
        let p = ModelParams::default();
        let b = (p.feature_min, p.feature_max);
        let common = freeman_term(50.0, 1.0, 50.0, 0.35, 0.0, &p, b);
        let rare = freeman_term(50.0, 1.0, 50.0, 1e-4, 0.0, &p, b);
        assert!(common.seen && common.log_lr < 0.0 && common.log_lr > -1.5);
        assert!(rare.log_lr < -6.0 + 1e-9, "clamped at feature_min: {}", rare.log_lr);
        let unseen = freeman_term(50.0, 1.0, 0.0, 0.35, 0.0, &p, b);
        assert!(unseen.log_lr > common.log_lr);
    }

    #[test]
    fn a_mimic_attacker_caps_what_a_copyable_match_can_vouch() {
        let p = ModelParams::default();
        let b = (p.feature_min, p.feature_max);
        // A rare country the user always logs in from: −6 under the naive attacker…
        let naive = freeman_term(50.0, 1.0, 50.0, 0.005, 0.0, &p, b);
        // …but at most ln ½ when half of the attackers rent proxies in the victim's country.
        let targeted = freeman_term(50.0, 1.0, 50.0, 0.005, 0.5, &p, b);
        assert!(naive.log_lr < -5.0);
        assert!(targeted.log_lr >= 0.5f64.ln() - 1e-12 && targeted.log_lr < -0.6, "{}", targeted.log_lr);
        // Unseen stays above seen for every share and history size (monotonicity).
        for rho in [0.0, 0.05, 0.3, 0.5, 0.9] {
            for n in [0.5, 1.0, 3.0, 30.0, 300.0] {
                let seen = freeman_term(n, 2.0, n / 2.0, 0.01, rho, &p, b);
                let unseen = freeman_term(n, 2.0, 0.0, 0.01, rho, &p, b);
                assert!(unseen.log_lr >= seen.log_lr, "rho {rho} n {n}");
            }
        }
        let unseen = freeman_term(30.0, 1.0, 0.0, 0.01, 0.5, &p, b);
        assert!((unseen.log_lr - (0.5 * 32.0 / 2.0 + 0.5f64).ln()).abs() < 1e-9);
    }

    #[test]
    fn squash_is_monotone_and_bounded() {
        let p = ModelParams::default();
        let mut last = 0;
        for i in -400..=400 {
            let s = p.squash(f64::from(i) / 10.0);
            assert!(s >= last && s <= 100);
            last = s;
        }
        assert_eq!(p.squash(-40.0), 0);
        assert_eq!(p.squash(40.0), 100);
        assert_eq!(p.squash(p.offset), 50);
        assert_eq!(p.squash(f64::NAN), 100);
    }

    #[test]
    fn parameters_are_validated() {
        assert!(ModelParams::default().validate().is_ok());
        assert!(ModelParams { temperature: 0.0, ..Default::default() }.validate().is_err());
        assert!(ModelParams { feature_min: 1.0, ..Default::default() }.validate().is_err());
        assert!(ModelParams { alpha: f64::NAN, ..Default::default() }.validate().is_err());
        let mimicry = Mimicry { country: 1.0, ..Default::default() };
        assert!(ModelParams { mimicry, ..Default::default() }.validate().is_err());
    }
}
