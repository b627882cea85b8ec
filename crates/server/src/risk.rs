//! The risk engine in the server: profiles cached in memory and persisted in batches,
//! in-memory velocity counters, and the handling of each decision (audit with reasons, owner
//! email and signed webhook for step-up, deny and freeze; freezing the account on `freeze`).
//!
//! Profiles learn only from requests that were fully authenticated *and* allowed: learning
//! from attempts would let an attacker teach the profile his own device and network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::UserId;
use gatehouse_core::risk::{
    Assessment, Decision, GlobalStats, Observation, RiskAction, RiskEngine, RiskPolicy, UserProfile, VelocityTracker,
};
use gatehouse_core::store::{SideEffects, Store, StoreError};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use serde_json::json;

/// `[risk]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RiskConfig {
    /// Score the risk of logins, sessions, sensitive actions and API-key use.
    pub enabled: bool,
    /// Engine thresholds and model parameters.
    pub policy: RiskPolicy,
    /// Operator-provided IP denylist (CIDRs).
    pub denylist: Vec<IpNet>,
    /// MaxMind-format country/city database, optional.
    pub geoip_city: Option<std::path::PathBuf>,
    /// MaxMind-format ASN database, optional.
    pub geoip_asn: Option<std::path::PathBuf>,
}

impl Default for RiskConfig {
    fn default() -> Self {
        Self { enabled: true, policy: RiskPolicy::default(), denylist: vec![], geoip_city: None, geoip_asn: None }
    }
}

/// (API key, network, scope) of a recent assessment.
type ApiUseKey = (String, String, &'static str);

struct Cached {
    profile: UserProfile,
    loaded: Instant,
    dirty: bool,
}

/// The risk service.
pub struct RiskService {
    engine: RiskEngine,
    velocity: Mutex<VelocityTracker>,
    profiles: Mutex<HashMap<UserId, Cached>>,
    global: Mutex<(GlobalStats, bool)>,
    /// How long a cached profile is trusted before it is reloaded (other instances learn too).
    ttl: Duration,
    /// Recent API-key assessments by (key, network, scope): a busy key is scored (and learned
    /// from) at most once a second per network and scope, not on every request.
    api_recent: Mutex<HashMap<ApiUseKey, (Decision, Timestamp)>>,
}

/// How long an API-key assessment stands for further calls from the same network and scope.
const API_REASSESS: gatehouse_core::clock::Span = gatehouse_core::clock::Span::secs(1);

impl RiskService {
    /// Builds the engine from configuration (opening the GeoIP databases if configured).
    pub fn new(cfg: &RiskConfig) -> anyhow::Result<Self> {
        let geo: Option<std::sync::Arc<dyn gatehouse_core::risk::GeoLookup>> = match &cfg.geoip_city {
            Some(city) => Some(std::sync::Arc::new(
                gatehouse_core::risk::geo::MaxMindGeo::open(city, cfg.geoip_asn.as_deref())
                    .map_err(|e| anyhow::anyhow!("risk.geoip: {e}"))?,
            )),
            None => None,
        };
        let engine =
            RiskEngine::new(cfg.policy, cfg.denylist.clone(), geo).map_err(|e| anyhow::anyhow!("risk: {e}"))?;
        Ok(Self {
            engine,
            velocity: Mutex::new(VelocityTracker::new(200_000)),
            profiles: Mutex::new(HashMap::new()),
            global: Mutex::new((GlobalStats::new(), false)),
            ttl: Duration::from_secs(60),
            api_recent: Mutex::new(HashMap::new()),
        })
    }

    /// Loads the population statistics at start-up.
    pub async fn load(&self, store: &dyn Store) -> Result<(), StoreError> {
        if let Some(json) = store.load_risk_global().await?
            && let Ok(stats) = serde_json::from_str::<GlobalStats>(&json)
            && let Ok(mut g) = self.global.lock()
        {
            g.0 = stats;
        }
        Ok(())
    }

    async fn profile(&self, store: &dyn Store, user: UserId) -> Result<UserProfile, StoreError> {
        if let Ok(m) = self.profiles.lock()
            && let Some(c) = m.get(&user)
            && (c.dirty || c.loaded.elapsed() < self.ttl)
        {
            return Ok(c.profile.clone());
        }
        let profile = match store.load_risk_profile(user).await? {
            Some(json) => serde_json::from_str(&json).unwrap_or_default(),
            None => UserProfile::new(),
        };
        if let Ok(mut m) = self.profiles.lock() {
            if m.len() > 50_000 {
                m.retain(|_, c| c.dirty);
            }
            m.insert(user, Cached { profile: profile.clone(), loaded: Instant::now(), dirty: false });
        }
        Ok(profile)
    }

    /// An observation with this instance's velocity counts filled in.
    pub fn observe(
        &self,
        mut obs: Observation,
        user: Option<&UserId>,
        key_id: Option<&str>,
        now: Timestamp,
    ) -> Observation {
        obs.geo = self.engine.geo_for(obs.ip);
        if let Ok(v) = self.velocity.lock() {
            obs.velocity = v.velocity(user, obs.ip, key_id, now);
        }
        obs
    }

    /// Counts a login attempt (success or failure) for the velocity signals.
    pub fn record_login(&self, user: &UserId, ip: IpAddr, success: bool, now: Timestamp) {
        if let Ok(mut v) = self.velocity.lock() {
            v.record_login(user, ip, success, now);
        }
    }

    /// Counts a refused DPoP proof or certificate binding for `user`'s tokens (issue 9): a
    /// strong signal on the account's next assessment.
    pub fn record_pop_failure(&self, user: &UserId, now: Timestamp) {
        if let Ok(mut v) = self.velocity.lock() {
            v.record_pop_failure(user, now);
        }
    }

    /// Counts a verified API call.
    pub fn record_api_call(&self, key_id: &str, now: Timestamp) {
        if let Ok(mut v) = self.velocity.lock() {
            v.record_api_call(key_id, now);
        }
    }

    /// Counts a bad signature for a known key (and forgets its recent assessments, so the next
    /// call is scored afresh with the burst in view).
    pub fn record_bad_signature(&self, key_id: &str, now: Timestamp) {
        if let Ok(mut v) = self.velocity.lock() {
            v.record_bad_signature(key_id, now);
        }
        if let Ok(mut m) = self.api_recent.lock() {
            m.retain(|(k, _, _), _| k != key_id);
        }
    }

    /// A decision made within the last second for this key, network and scope, if any.
    pub fn recent_api_decision(
        &self,
        key_id: &str,
        ip: IpAddr,
        scope: &'static str,
        now: Timestamp,
    ) -> Option<Decision> {
        let net = gatehouse_core::risk::features::network_prefix(ip);
        let m = self.api_recent.lock().ok()?;
        m.get(&(key_id.to_owned(), net, scope)).filter(|(_, at)| now.since(*at) < API_REASSESS).map(|(d, _)| *d)
    }

    /// Remembers a decision for [`recent_api_decision`](Self::recent_api_decision).
    pub fn remember_api_decision(&self, key_id: &str, ip: IpAddr, scope: &'static str, d: Decision, now: Timestamp) {
        if let Ok(mut m) = self.api_recent.lock() {
            if m.len() > 100_000 {
                m.retain(|_, (_, at)| now.since(*at) < API_REASSESS);
            }
            let net = gatehouse_core::risk::features::network_prefix(ip);
            m.insert((key_id.to_owned(), net, scope), (d, now));
        }
    }

    /// Scores `obs` for `user` and `action`.
    pub async fn assess(
        &self,
        store: &dyn Store,
        user: UserId,
        obs: &Observation,
        action: RiskAction,
        now: Timestamp,
    ) -> Result<Assessment, StoreError> {
        let profile = self.profile(store, user).await?;
        let stats = self.global.lock().map(|g| g.0.clone()).unwrap_or_default();
        Ok(self.engine.evaluate(&profile, &stats, obs, action, now))
    }

    /// Learns from an allowed, fully authenticated request.
    pub fn learn(&self, user: UserId, obs: &Observation, now: Timestamp) {
        if let Ok(mut m) = self.profiles.lock() {
            let c = m.entry(user).or_insert_with(|| Cached {
                profile: UserProfile::new(),
                loaded: Instant::now(),
                dirty: false,
            });
            c.profile.learn(obs, now);
            c.dirty = true;
        }
        if let Ok(mut g) = self.global.lock() {
            g.0.learn(obs, now);
            g.1 = true;
        }
    }

    /// Writes learned profiles and statistics.
    pub async fn flush(&self, store: &dyn Store, now: Timestamp) -> Result<(), StoreError> {
        let dirty: Vec<(UserId, String)> = match self.profiles.lock() {
            Ok(mut m) => m
                .iter_mut()
                .filter(|(_, c)| c.dirty)
                .filter_map(|(u, c)| {
                    c.dirty = false;
                    c.loaded = Instant::now();
                    serde_json::to_string(&c.profile).ok().map(|j| (*u, j))
                })
                .collect(),
            Err(_) => vec![],
        };
        store.save_risk_profiles(&dirty, now).await?;
        let global = match self.global.lock() {
            Ok(mut g) if g.1 => {
                g.1 = false;
                serde_json::to_string(&g.0).ok()
            }
            _ => None,
        };
        if let Some(json) = global {
            store.save_risk_global(&json, now).await?;
        }
        Ok(())
    }
}

/// The audit event recording an assessment with its reasons.
pub fn decision_event(user: UserId, action: RiskAction, a: &Assessment, ip: IpAddr) -> AuditEvent {
    let outcome = if a.decision == Decision::Allow { Outcome::Success } else { Outcome::Denied };
    let mut e = AuditEvent::new(EventKind::RiskDecision, outcome).about(user);
    e.ip = Some(ip.to_string());
    e.with("action", action.name())
        .with("score", a.score)
        .with("decision", json!(a.decision))
        .with("reasons", json!(a.reasons.iter().take(8).collect::<Vec<_>>()))
}

/// What to tell the owner and the security team about a challenge, committed with `fx`.
pub async fn notify_challenge(
    state: &crate::state::AppState,
    fx: &mut SideEffects,
    user: UserId,
    action: RiskAction,
    a: &Assessment,
    what: &str,
) -> Result<(), StoreError> {
    if a.decision == Decision::Allow {
        return Ok(());
    }
    if let Some(account) = state.store.find_account(user).await?
        && let Ok(m) = state.mail(account.email.as_str(), &crate::mail::templates::risk_alert(what, a.decision))
    {
        fx.mails.push(m);
    }
    let body = json!({
        "topic": "risk.decision",
        "user": user.to_string(),
        "action": action.name(),
        "decision": a.decision,
        "score": a.score,
        "reasons": a.reasons.iter().take(8).collect::<Vec<_>>(),
        "what": what,
        "at": state.clock.now().to_rfc3339(),
    });
    if let Some(h) = state.webhook("risk.decision", body) {
        fx.webhooks.push(h);
    }
    Ok(())
}
