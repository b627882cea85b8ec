//! Behavioural risk engine: how much does this login, session use, sensitive action or API
//! call look like the account's owner, and what should the server do about it?
//!
//! **Model.** The core is the likelihood-ratio model of Freeman et al., "Who Are You? A
//! Statistical Approach to Measuring User Authenticity" (NDSS 2016), which Wiefling et al.
//! ("Pump Up Password Security! Evaluating and Enhancing Risk-Based Authentication on a
//! Real-World Large-Scale Online Service", ACM TOPS 2022) evaluated on real traffic: the observed device, network, ASN, country, user-agent family and hour
//! are compared with the account's own history (smoothed towards the population for values
//! it has never shown) and with the population (the attacker model) — see [`model`]. The
//! attacks that model does not see (velocity, credential stuffing, stolen sessions,
//! impossible travel, leaked API keys, bad-signature bursts) add explainable terms —
//! see [`signals`]. The sum of log-likelihood ratios goes through a documented logistic squash
//! to a 0–100 score ([`model::ModelParams::squash`]), and per-action thresholds turn the score
//! into a [`Decision`] ([`decision`]). Every term is returned with its weight
//! ([`Contribution`]), so each decision can be audited and explained.
//!
//! **How the server uses it.**
//! 1. Build an [`Observation`] for the request (IP, device id, user-agent family, the
//!    session's binding or the API key's id/scope/route, velocities from the shared counters
//!    or a [`VelocityTracker`], and [`RiskEngine::geo_for`] if GeoIP is configured). Count the
//!    attempt in the velocity counters *before* evaluating it.
//! 2. `engine.evaluate(&profile, &stats, &obs, action, now)` at login (after the password
//!    check, before issuing a session), before each sensitive action, on session refresh and
//!    on API-key use. Audit the [`Assessment`] (score, decision, reasons) every time.
//! 3. Act on the decision ([`decision`] has the table).
//! 4. Only after a **fully authenticated** success (every factor, including the step-up the
//!    engine asked for) — or an API call the engine allowed — call
//!    [`UserProfile::learn`] and [`GlobalStats::learn`] and persist both as JSON. Attempts are
//!    never learned: an attacker could otherwise teach the profile his own device and network
//!    with failed logins and then log in "from a known place".
//!
//! **Invariants.** Pure: no clock, no randomness, no I/O (`now` is an argument). Bounded:
//! profiles and statistics have capped tables with decaying counts ([`profile::limits`]).
//! Monotone: turning any observed value from seen to unseen, or adding any signal, never
//! lowers the score (every extra weight is ≥ 0, the squash is increasing). Fail closed: an
//! operator denylist hit is at least `Deny`, and a NaN score reads as 100.

pub mod decision;
pub mod features;
pub mod geo;
pub mod model;
pub mod profile;
pub mod signals;
pub mod velocity;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly
mod engine_tests;
#[cfg(test)]
pub(crate) mod testutil;

use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::apikey::Scope;
use crate::clock::{Span, Timestamp};
use crate::ids::DeviceId;

pub use decision::{ActionThresholds, Decision, RiskAction, Thresholds};
pub use features::Feature;
pub use geo::{GeoError, GeoInfo, GeoLookup, GeoPoint};
pub use model::{Mimicry, ModelParams};
pub use profile::{GlobalStats, UserProfile};
pub use signals::SignalWeights;
pub use velocity::{Velocity, VelocityTracker};

/// Why the engine could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RiskError {
    /// A configuration value is out of range: (setting, what is wrong).
    #[error("invalid risk configuration {0}: {1}")]
    InvalidPolicy(&'static str, &'static str),
}

/// The session a request presents, as bound at login ([`crate::session::Session`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionBinding {
    /// The device the session was created on.
    pub device: DeviceId,
    /// The user-agent family it was created with (`Chrome/Windows`).
    pub ua_family: String,
}

/// The API key a request is signed with.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiUse {
    /// The key's id (text form).
    pub key_id: String,
    /// The scope the route needs.
    pub scope: Scope,
    /// The normalised route (`GET /v1/accounts`).
    pub route: String,
}

/// Everything the engine looks at for one request. Plain data, so it can be audited as is.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Observation {
    /// The true client address (after trusted-proxy resolution).
    pub ip: IpAddr,
    /// The device id presented (cookie or `Gatehouse-Device`), if any.
    pub device: Option<DeviceId>,
    /// The user-agent family key (`client/os`), if any.
    pub ua_family: Option<String>,
    /// GeoIP answer for `ip`, if GeoIP is configured ([`RiskEngine::geo_for`]).
    pub geo: Option<GeoInfo>,
    /// The session presented, for session use and sensitive actions.
    pub session: Option<SessionBinding>,
    /// The API key used, for API-key calls.
    pub api: Option<ApiUse>,
    /// Recent counts, including this attempt.
    pub velocity: Velocity,
}

impl Observation {
    /// An observation of a request from `ip` with nothing else known yet.
    pub fn new(ip: IpAddr) -> Self {
        Self { ip, device: None, ua_family: None, geo: None, session: None, api: None, velocity: Velocity::default() }
    }
}

/// A named reason that moved the score. Names are stable `snake_case` for audit records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Signal {
    /// The device id is in the profile.
    KnownDevice,
    /// A device id the account has not used (or none at all).
    NewDevice,
    /// The /24 or /48 network is in the profile.
    KnownNetwork,
    /// A network the account has not used.
    NewNetwork,
    /// The autonomous system is in the profile.
    KnownAsn,
    /// An autonomous system the account has not used.
    NewAsn,
    /// The country is in the profile.
    KnownCountry,
    /// A country the account has not logged in from.
    NewCountry,
    /// The user-agent family is in the profile.
    KnownUaFamily,
    /// A user-agent family the account has not used.
    NewUaFamily,
    /// An hour of day at which the account usually logs in.
    UsualHour,
    /// An hour of day at which the account rarely or never logs in.
    UnusualHour,
    /// The account logs in rarely, so the feature terms have little history to go on
    /// (Freeman's account-activity factor).
    RarelyActiveAccount,
    /// Farther from the last trusted login than an airliner could fly since.
    ImpossibleTravel,
    /// Many login attempts on the account.
    LoginVelocity,
    /// Many failed login attempts on the account.
    FailureVelocity,
    /// The IP address tried many accounts or failed many times (credential stuffing).
    ManyAccountsFromIp,
    /// The account was tried from many networks (distributed guessing).
    ManyNetworksForAccount,
    /// The session is presented by another device or user-agent family than it is bound to.
    SessionDeviceMismatch,
    /// The API key is used from a network or ASN it usually uses.
    ApiKeyKnownNetwork,
    /// The API key is used from a network or ASN it has not used.
    ApiKeyNewNetwork,
    /// The API key uses a scope it usually uses.
    ApiKeyUsualScope,
    /// The API key suddenly uses a scope it rarely or never uses.
    ApiKeyRareScope,
    /// The API key calls far faster than its usual peak.
    ApiCallVelocity,
    /// Many requests naming the key failed signature verification.
    BadSignatureBurst,
    /// The IP address is on the operator's denylist.
    Denylisted,
    /// A DPoP proof or client-certificate binding for the account's sessions was refused in
    /// the last hour: someone holds a token without its key (issue 9).
    ProofOfPossessionFailure,
}

/// One term of the score: which signal, its weight in nats (natural-log likelihood ratio;
/// positive means "more like an attacker"), and the numbers behind it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// The signal.
    pub signal: Signal,
    /// Its log-likelihood-ratio weight.
    pub weight: f64,
    /// Human-readable detail for the audit log (values and counts, never secrets).
    pub detail: String,
}

impl Contribution {
    /// A contribution.
    pub fn new(signal: Signal, weight: f64, detail: String) -> Self {
        Self { signal, weight, detail }
    }
}

/// The engine's answer for one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Assessment {
    /// 0 (surely the owner) to 100 (surely not).
    pub score: u8,
    /// The total log-likelihood ratio the score was squashed from.
    pub log_lr: f64,
    /// What to do.
    pub decision: Decision,
    /// Every term, largest weight first.
    pub reasons: Vec<Contribution>,
}

/// The engine's configuration (`[risk]` in the server's configuration file).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskPolicy {
    /// Per-action thresholds.
    pub thresholds: ActionThresholds,
    /// Likelihood model and squash.
    pub model: ModelParams,
    /// Extra terms.
    pub signals: SignalWeights,
}

impl RiskPolicy {
    /// Refuses inconsistent settings.
    pub fn validate(&self) -> Result<(), RiskError> {
        self.thresholds.validate()?;
        self.model.validate()?;
        self.signals.validate()
    }
}

/// The risk engine: configuration, the operator's denylist and an optional GeoIP source.
#[derive(Debug, Clone)]
pub struct RiskEngine {
    policy: RiskPolicy,
    denylist: Vec<IpNet>,
    geo: Option<Arc<dyn GeoLookup>>,
}

impl RiskEngine {
    /// An engine with a validated policy, the operator's IP denylist and optional GeoIP.
    pub fn new(policy: RiskPolicy, denylist: Vec<IpNet>, geo: Option<Arc<dyn GeoLookup>>) -> Result<Self, RiskError> {
        policy.validate()?;
        let denylist = denylist.into_iter().map(|n| n.trunc()).collect();
        Ok(Self { policy, denylist, geo })
    }

    /// The policy in force.
    pub fn policy(&self) -> &RiskPolicy {
        &self.policy
    }

    /// GeoIP for `ip`, if configured; put it in [`Observation::geo`].
    pub fn geo_for(&self, ip: IpAddr) -> Option<GeoInfo> {
        self.geo.as_ref().and_then(|g| g.lookup(features::canonical_ip(ip)))
    }

    /// Whether `ip` is on the operator's denylist.
    pub fn is_denylisted(&self, ip: IpAddr) -> bool {
        let ip = features::canonical_ip(ip);
        self.denylist.iter().any(|n| n.contains(&ip))
    }

    /// Scores one request against the account's profile and the population statistics.
    pub fn evaluate(
        &self,
        profile: &UserProfile,
        stats: &GlobalStats,
        obs: &Observation,
        action: RiskAction,
        now: Timestamp,
    ) -> Assessment {
        let p = &self.policy;
        let mut reasons = match action {
            RiskAction::ApiKeyUse => {
                let mut out = Vec::new();
                signals::api_terms(profile, stats, obs, &p.model, &p.signals, now, &mut out);
                out
            }
            RiskAction::Login | RiskAction::Session | RiskAction::Sensitive => {
                let probation =
                    (action == RiskAction::Sensitive).then(|| Span::hours(p.model.sensitive_probation_hours));
                let mut out = model::login_terms(profile, stats, obs, &p.model, probation, now);
                signals::velocity_terms(obs, &p.signals, &mut out);
                signals::session_terms(obs, &p.signals, &mut out);
                signals::travel_terms(profile, obs, &p.signals, now, &mut out);
                out
            }
        };
        let denied = self.is_denylisted(obs.ip);
        if denied {
            reasons.push(Contribution::new(
                Signal::Denylisted,
                p.signals.denylist,
                format!("{} is on the operator denylist", features::canonical_ip(obs.ip)),
            ));
        }
        let log_lr: f64 = reasons.iter().map(|c| c.weight).sum();
        let score = p.model.squash(log_lr);
        let mut decision = p.thresholds.for_action(action).decide(score);
        if denied {
            decision = decision.max(Decision::Deny);
        }
        reasons.sort_by(|a, b| b.weight.total_cmp(&a.weight).then(a.signal.cmp(&b.signal)));
        Assessment { score, log_lr, decision, reasons }
    }
}
