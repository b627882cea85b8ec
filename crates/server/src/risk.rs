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

use crate::sharded::{PARTS, Sharded};

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
/// Per key id: the recent assessments by (network, scope).
type ApiRecent = HashMap<String, HashMap<(ipnet::IpNet, &'static str), (Decision, Timestamp)>>;

struct Cached {
    profile: UserProfile,
    loaded: Instant,
    dirty: bool,
}

/// The risk service.
pub struct RiskService {
    engine: RiskEngine,
    /// Sign-in and proof-of-possession counters (per account and address).
    velocity: Mutex<VelocityTracker>,
    /// API-key counters (calls, bad signatures), counted on every gateway request: each worker
    /// thread counts into its own part (no lock or cache line shared between cores); a read
    /// (once per assessment, at most once a second per key, network and scope) adds the parts.
    key_velocity: Sharded<VelocityTracker>,
    profiles: Mutex<HashMap<UserId, Cached>>,
    global: Mutex<(GlobalStats, bool)>,
    /// How long a cached profile is trusted before it is reloaded (other instances learn too).
    ttl: Duration,
    /// Recent API-key assessments by (key, network, scope): a busy key is scored (and learned
    /// from) at most once a second per network and scope, not on every request.
    /// Looked up by `&str` and network value, so the per-request check allocates nothing.
    api_recent: Sharded<ApiRecent>,
}

/// Keys with recent API assessments kept per part before stale ones are swept.
const API_RECENT_PER_PART: usize = 100_000 / PARTS;

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
            key_velocity: Sharded::new(|| VelocityTracker::new(200_000 / PARTS)),
            profiles: Mutex::new(HashMap::new()),
            global: Mutex::new((GlobalStats::new(), false)),
            ttl: Duration::from_secs(60),
            api_recent: Sharded::default(),
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
            obs.velocity = v.velocity(user, obs.ip, None, now);
        }
        if let Some(key_id) = key_id {
            let (calls, bad) = self.key_velocity.each().fold((0u32, 0u32), |(calls, bad), part| {
                let k = part.velocity(None, obs.ip, Some(key_id), now);
                (calls.saturating_add(k.key_calls_1m), bad.saturating_add(k.key_bad_signatures_10m))
            });
            obs.velocity.key_calls_1m = calls;
            obs.velocity.key_bad_signatures_10m = bad;
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
        self.key_velocity.mine().record_api_call(key_id, now);
    }

    /// Counts a bad signature for a known key (and forgets its recent assessments, so the next
    /// call is scored afresh with the burst in view).
    pub fn record_bad_signature(&self, key_id: &str, now: Timestamp) {
        self.key_velocity.mine().record_bad_signature(key_id, now);
        self.api_recent.part(key_id).remove(key_id);
    }

    /// A decision made within the last second for this key, network and scope, if any.
    pub fn recent_api_decision(
        &self,
        key_id: &str,
        ip: IpAddr,
        scope: &'static str,
        now: Timestamp,
    ) -> Option<Decision> {
        let net = gatehouse_core::risk::features::network(ip);
        let m = self.api_recent.part(key_id);
        m.get(key_id)?.get(&(net, scope)).filter(|(_, at)| now.since(*at) < API_REASSESS).map(|(d, _)| *d)
    }

    /// Remembers a decision for [`recent_api_decision`](Self::recent_api_decision).
    pub fn remember_api_decision(&self, key_id: &str, ip: IpAddr, scope: &'static str, d: Decision, now: Timestamp) {
        let fresh = |at: &Timestamp| now.since(*at) < API_REASSESS;
        let mut m = self.api_recent.part(key_id);
        if m.len() > API_RECENT_PER_PART {
            m.retain(|_, by| {
                by.retain(|_, (_, at)| fresh(at));
                !by.is_empty()
            });
        }
        let by = match m.get_mut(key_id) {
            Some(by) => by,
            None => m.entry(key_id.to_owned()).or_default(),
        };
        // one key seen from many networks: keep only the assessments still standing
        if by.len() > 256 {
            by.retain(|_, (_, at)| fresh(at));
        }
        by.insert((gatehouse_core::risk::features::network(ip), scope), (d, now));
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

/// How long a sign-in confirmation link works.
pub const SIGN_IN_CONFIRMATION_TTL: gatehouse_core::clock::Span = gatehouse_core::clock::Span::minutes(30);

/// A sign-in the risk engine let through (or asked to confirm), with what to learn from it
/// once it completes.
#[derive(Debug, Clone)]
pub struct LoginAssessment {
    /// What was observed.
    pub obs: Observation,
    /// The engine's verdict.
    pub assessment: Assessment,
}

impl LoginAssessment {
    /// Details for the login's audit event.
    pub fn summary(&self) -> serde_json::Value {
        json!({
            "score": self.assessment.score,
            "decision": self.assessment.decision,
            "reasons": self.assessment.reasons.iter().take(8).collect::<Vec<_>>(),
        })
    }
}

/// Scores a sign-in whose password was verified, before any session exists (R107).
///
/// * `Allow` → `Ok(Some(_))`: go on, then [`learn_sign_in`] once the session is committed.
/// * `StepUp` → the account holder must confirm: by the second factor when one is enrolled
///   (`has_second_factor`; the caller's factor step does it), otherwise through a single-use
///   link emailed to the address on file that teaches the profile this device and network.
/// * `Deny` and `Freeze` → refused (`sign_in_refused`), audited with the reasons, the owner
///   emailed and the security team told by signed webhook; `Freeze` also freezes the account.
///
/// `Ok(None)` when the risk engine is off.
pub async fn assess_login(
    state: &crate::state::AppState,
    account: &gatehouse_core::account::Account,
    client: &crate::http::ClientCtx,
    has_second_factor: bool,
) -> crate::error::ApiResult<Option<LoginAssessment>> {
    use crate::error::{ApiError, ErrorCode};
    let Some(r) = &state.risk else { return Ok(None) };
    let now = state.clock.now();
    r.record_login(&account.id, client.ip, true, now);
    let mut obs = Observation::new(client.ip);
    obs.device = client.device;
    obs.ua_family = Some(client.ua_family.key());
    let obs = r.observe(obs, Some(&account.id), None, now);
    let assessment = r.assess(state.store.as_ref(), account.id, &obs, RiskAction::Login, now).await?;
    let decision = assessment.decision;
    let la = LoginAssessment { obs, assessment };
    if decision == Decision::Allow || (decision == Decision::StepUp && has_second_factor) {
        return Ok(Some(la));
    }
    let mut fx = SideEffects::event(decision_event(account.id, RiskAction::Login, &la.assessment, client.ip));
    if decision == Decision::StepUp {
        confirm_by_email(state, account, client, &la, fx).await?;
        return Err(ApiError::new(ErrorCode::SignInConfirmationRequired));
    }
    let what = format!("a sign-in from {} ({})", client.ip, client.ua_family.display_name());
    notify_challenge(state, &mut fx, account.id, RiskAction::Login, &la.assessment, &what).await?;
    if decision == Decision::Freeze {
        freeze(state, account.id, &la.assessment, fx).await?;
    } else {
        state.store.record(fx).await?;
    }
    state.wake_mailer();
    state.wake_webhooks();
    Err(ApiError::new(ErrorCode::SignInRefused))
}

/// Teaches the profile a sign-in that completed (every factor checked).
pub fn learn_sign_in(
    state: &crate::state::AppState,
    user: UserId,
    client: &crate::http::ClientCtx,
    device: gatehouse_core::ids::DeviceId,
) {
    if let Some(r) = &state.risk {
        let now = state.clock.now();
        let mut obs = Observation::new(client.ip);
        obs.device = Some(device);
        obs.ua_family = Some(client.ua_family.key());
        let obs = r.observe(obs, Some(&user), None, now);
        r.learn(user, &obs, now);
    }
}

/// Counts a failed sign-in for the velocity signals.
pub fn record_login_failure(state: &crate::state::AppState, user: &UserId, ip: IpAddr) {
    if let Some(r) = &state.risk {
        r.record_login(user, ip, false, state.clock.now());
    }
}

/// The token purpose of a sign-in confirmation: it names what the link will teach the
/// profile, so a link cannot be edited to vouch for another device or address.
pub fn confirmation_purpose(ip: IpAddr, device: Option<&str>, ua: &str) -> String {
    format!("confirm_sign_in:{ip}:{}:{ua}", device.unwrap_or("-"))
}

async fn confirm_by_email(
    state: &crate::state::AppState,
    account: &gatehouse_core::account::Account,
    client: &crate::http::ClientCtx,
    la: &LoginAssessment,
    mut fx: SideEffects,
) -> crate::error::ApiResult<()> {
    use gatehouse_core::secret::Token;
    let now = state.clock.now();
    let token = Token::generate(state.rng.as_ref());
    let device = client.device.map(|d| d.to_string());
    let ua = client.ua_family.key();
    let et = gatehouse_core::store::EmailToken {
        hash: token.hash(),
        user_id: account.id,
        purpose: confirmation_purpose(client.ip, device.as_deref(), &ua),
        expires_at: now.plus(SIGN_IN_CONFIRMATION_TTL),
    };
    // Every part is URL-safe as it stands: an IP address, a device id and a `client/os` key.
    let link = format!(
        "{}{}/confirm-sign-in?token={}&ip={}&device={}&ua={}",
        state.config.server.public_origin,
        crate::routes::PREFIX,
        token.expose(),
        client.ip,
        device.as_deref().unwrap_or("-"),
        ua,
    );
    let mail = state.mail(
        account.email.as_str(),
        &crate::mail::templates::confirm_sign_in(&client.ip.to_string(), &client.ua_family.display_name(), &link),
    )?;
    fx.mails.push(mail);
    if let Some(e) = fx.events.first_mut() {
        *e = e.clone().with("confirmation", "email").with("score", la.assessment.score);
    }
    state.store.issue_email_token(&et, now, fx).await?;
    state.wake_mailer();
    Ok(())
}

/// Consumes a sign-in confirmation link: the profile learns the device, network and browser
/// it vouches for, so the next sign-in from there is let through.
pub async fn confirm_sign_in(
    state: &crate::state::AppState,
    client: &crate::http::ClientCtx,
    token: &str,
    ip: &str,
    device: &str,
    ua: &str,
) -> crate::error::ApiResult<()> {
    use crate::error::{ApiError, ErrorCode};
    let invalid = || ApiError::new(ErrorCode::InvalidToken);
    let token = gatehouse_core::secret::Token::parse(token).ok_or_else(invalid)?;
    let ip: IpAddr = ip.parse().map_err(|_| invalid())?;
    let device = match device {
        "-" => None,
        d => Some(gatehouse_core::ids::DeviceId::parse(d).ok_or_else(invalid)?),
    };
    if ua.is_empty() || ua.len() > 64 || !ua.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b)) {
        return Err(invalid());
    }
    let device_text = device.map(|d| d.to_string());
    let purpose = confirmation_purpose(ip, device_text.as_deref(), ua);
    let now = state.clock.now();
    let mut ev = AuditEvent::new(EventKind::SignInConfirmed, Outcome::Success).with("confirmed_ip", ip.to_string());
    ev.ip = Some(client.ip.to_string());
    let fx = move |user: UserId| SideEffects::event(ev.clone().about(user));
    let user = state.store.consume_email_token(token.hash(), &purpose, now, &fx).await?.ok_or_else(invalid)?;
    if let Some(r) = &state.risk {
        let mut obs = Observation::new(ip);
        obs.device = device;
        obs.ua_family = Some(ua.to_owned());
        let obs = r.observe(obs, Some(&user), None, now);
        r.learn(user, &obs, now);
        r.flush(state.store.as_ref(), now).await?;
    }
    Ok(())
}

/// Scores the use of an existing session (a refresh) from `client` (R107): `Deny` ends the
/// session, `Freeze` freezes the account; `StepUp` is recorded and the owner told, and the
/// next sensitive action asks for its proof anyway. Every non-`Allow` decision is audited.
pub async fn assess_session(
    state: &crate::state::AppState,
    session: &gatehouse_core::session::Session,
    client: &crate::http::ClientCtx,
) -> crate::error::ApiResult<()> {
    use crate::error::{ApiError, ErrorCode};
    let Some(r) = &state.risk else { return Ok(()) };
    let now = state.clock.now();
    let mut obs = Observation::new(client.ip);
    obs.device = client.device;
    obs.ua_family = Some(client.ua_family.key());
    obs.session =
        Some(gatehouse_core::risk::SessionBinding { device: session.device_id, ua_family: session.ua_family.clone() });
    let obs = r.observe(obs, Some(&session.user_id), None, now);
    let a = r.assess(state.store.as_ref(), session.user_id, &obs, RiskAction::Session, now).await?;
    if a.decision == Decision::Allow {
        return Ok(());
    }
    let user = session.user_id;
    let mut fx = SideEffects::event(
        decision_event(user, RiskAction::Session, &a, client.ip).with("session", session.id.to_string()),
    );
    let what = format!("your session on {} used from {}", session.device_name, client.ip);
    notify_challenge(state, &mut fx, user, RiskAction::Session, &a, &what).await?;
    let refused = match a.decision {
        Decision::Allow | Decision::StepUp => {
            state.store.record(fx).await?;
            false
        }
        Decision::Deny => {
            state.store.revoke_session(user, session.id, "risk_engine", now, fx).await?;
            true
        }
        Decision::Freeze => {
            freeze(state, user, &a, fx).await?;
            true
        }
    };
    state.wake_mailer();
    state.wake_webhooks();
    if refused { Err(ApiError::new(ErrorCode::SessionExpired)) } else { Ok(()) }
}

/// Scores a sensitive action by a signed-in user before its step-up proof is checked (R107):
/// `Deny` and `Freeze` refuse it (`action_refused`; `Freeze` freezes the account), `StepUp`
/// is returned so the step-up flow can ask for a stronger proof. Non-`Allow` decisions are
/// audited and the owner told.
pub async fn assess_sensitive(
    state: &crate::state::AppState,
    auth: &crate::auth::Authenticated,
    action: gatehouse_core::stepup::SensitiveAction,
) -> crate::error::ApiResult<Decision> {
    use crate::error::{ApiError, ErrorCode};
    let Some(r) = &state.risk else { return Ok(Decision::Allow) };
    let now = state.clock.now();
    let client = &auth.client;
    let mut obs = Observation::new(client.ip);
    obs.device = client.device;
    obs.ua_family = Some(client.ua_family.key());
    obs.session = Some(gatehouse_core::risk::SessionBinding {
        device: auth.session.device_id,
        ua_family: auth.session.ua_family.clone(),
    });
    let user = auth.account.id;
    let obs = r.observe(obs, Some(&user), None, now);
    let a = r.assess(state.store.as_ref(), user, &obs, RiskAction::Sensitive, now).await?;
    if a.decision == Decision::Allow {
        return Ok(Decision::Allow);
    }
    let mut fx =
        SideEffects::event(decision_event(user, RiskAction::Sensitive, &a, client.ip).with("what", action.as_str()));
    let what = format!("an attempt to {} from {}", action.as_str().replace('_', " "), client.ip);
    notify_challenge(state, &mut fx, user, RiskAction::Sensitive, &a, &what).await?;
    match a.decision {
        Decision::Freeze => freeze(state, user, &a, fx).await?,
        _ => state.store.record(fx).await?,
    }
    state.wake_mailer();
    state.wake_webhooks();
    match a.decision {
        Decision::Deny | Decision::Freeze => Err(ApiError::new(ErrorCode::ActionRefused)),
        d => Ok(d),
    }
}

async fn freeze(
    state: &crate::state::AppState,
    user: UserId,
    a: &Assessment,
    mut fx: SideEffects,
) -> Result<(), StoreError> {
    fx.events.push(
        AuditEvent::new(EventKind::AccountFrozen, Outcome::Success)
            .about(user)
            .with("by", "risk_engine")
            .with("score", a.score),
    );
    if !state.store.freeze_account(user, "risk_engine", state.clock.now(), fx.clone()).await? {
        state.store.record(fx).await?;
    }
    if let Some(gw) = &state.gateway {
        for k in state.store.list_api_keys(user).await? {
            gw.keys.invalidate(&k.id);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;
    use gatehouse_core::clock::Span;

    #[test]
    fn a_recent_api_assessment_stands_per_key_network_and_scope_for_a_second() {
        let r = RiskService::new(&RiskConfig::default()).unwrap();
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        r.remember_api_decision("k1", ip("203.0.113.5"), "view_assets", Decision::Allow, t0);
        r.remember_api_decision("k2", ip("2001:db8:1:2::1"), "place_orders", Decision::StepUp, t0);
        // Same key, same /24 network, same scope: stands.
        assert_eq!(r.recent_api_decision("k1", ip("203.0.113.99"), "view_assets", t0), Some(Decision::Allow));
        assert_eq!(r.recent_api_decision("k1", ip("::ffff:203.0.113.7"), "view_assets", t0), Some(Decision::Allow));
        // Another network, scope or key: scored afresh.
        assert_eq!(r.recent_api_decision("k1", ip("203.0.114.5"), "view_assets", t0), None);
        assert_eq!(r.recent_api_decision("k1", ip("203.0.113.5"), "withdraw", t0), None);
        assert_eq!(r.recent_api_decision("k3", ip("203.0.113.5"), "view_assets", t0), None);
        // IPv6 by /48.
        assert_eq!(r.recent_api_decision("k2", ip("2001:db8:1:ffff::9"), "place_orders", t0), Some(Decision::StepUp));
        assert_eq!(r.recent_api_decision("k2", ip("2001:db8:2::1"), "place_orders", t0), None);
        // For one second only.
        let later = t0.plus(Span::millis(999));
        assert_eq!(r.recent_api_decision("k1", ip("203.0.113.5"), "view_assets", later), Some(Decision::Allow));
        assert_eq!(r.recent_api_decision("k1", ip("203.0.113.5"), "view_assets", t0.plus(Span::secs(1))), None);
        // A bad signature forgets the key's assessments, and only that key's.
        r.record_bad_signature("k1", t0);
        assert_eq!(r.recent_api_decision("k1", ip("203.0.113.5"), "view_assets", t0), None);
        assert_eq!(r.recent_api_decision("k2", ip("2001:db8:1::1"), "place_orders", t0), Some(Decision::StepUp));
    }

    /// Workers count a key's calls in their own parts; an observation adds them all up.
    #[test]
    fn key_counts_from_several_threads_are_added_up() {
        let r = RiskService::new(&RiskConfig::default()).unwrap();
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        std::thread::scope(|s| {
            for t in 0..3 {
                let r = &r;
                s.spawn(move || {
                    for _ in 0..5 {
                        r.record_api_call("k1", t0);
                    }
                    r.record_api_call("k2", t0);
                    if t < 2 {
                        r.record_bad_signature("k1", t0);
                    }
                });
            }
        });
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let obs = r.observe(gatehouse_core::risk::Observation::new(ip), None, Some("k1"), t0.plus(Span::secs(1)));
        assert_eq!((obs.velocity.key_calls_1m, obs.velocity.key_bad_signatures_10m), (15, 2));
        let obs = r.observe(gatehouse_core::risk::Observation::new(ip), None, Some("k2"), t0.plus(Span::secs(1)));
        assert_eq!((obs.velocity.key_calls_1m, obs.velocity.key_bad_signatures_10m), (3, 0));
    }

    #[test]
    fn one_key_seen_from_many_networks_keeps_a_bounded_memory() {
        let r = RiskService::new(&RiskConfig::default()).unwrap();
        let t0 = Timestamp::from_millis(1_800_000_000_000);
        for i in 0..1000u32 {
            let ip = IpAddr::from([10, (i >> 8) as u8, i as u8, 1]);
            // one new network every 10 ms: at most ~100 assessments stand at any instant
            r.remember_api_decision("k1", ip, "view_assets", Decision::Allow, t0.plus(Span::millis(i64::from(i) * 10)));
        }
        let m = r.api_recent.part("k1");
        assert!(m["k1"].len() <= 257, "{}", m["k1"].len());
        assert!(m["k1"].len() >= 100);
    }
}
