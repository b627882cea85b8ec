//! High-value friction in the server: configuration, the shared checks handlers call (settings
//! lock, holds), sealing of the anti-phishing code and evidence, emailed action links, and the
//! worker that delivers confirmed withdrawal intents to the exchange back end.
//!
//! Delivery: each confirmed intent is `POST`ed to `friction.upstream_url` with
//! `Idempotency-Key: <intent id>` and `X-Gatehouse-Delivery: <intent id>` (stable across
//! retries), `X-Gatehouse-Event: withdrawal.confirmed` and `X-Gatehouse-Signature` computed as
//! for security webhooks ([`crate::notify::signature`]) with `friction.upstream_secret`. It is
//! retried until the back end answers 2xx; the back end deduplicates on the key, so a retry
//! after a lost acknowledgement is never a second withdrawal.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::clock::{Clock, Span, Timestamp};
use gatehouse_core::crypto::envelope::{Aad, Keyring};
use gatehouse_core::friction::LinkAction;
use gatehouse_core::ids::UserId;
use gatehouse_core::secret::{SecretBytes, SecretString, Token};
use gatehouse_core::store::{EmailToken, Store, StoreError};
use gatehouse_core::withdrawal::{Amount, Asset, Intent};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Notify;

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::routes::PREFIX;
use crate::state::AppState;

/// Per-asset withdrawal rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AssetRule {
    /// Most that may be confirmed per rolling 24 h, as a decimal string.
    pub daily_limit: String,
    /// Above this amount the step-up must be phishing-resistant (WebAuthn with UV).
    pub phishing_resistant_above: String,
}

/// `[friction]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FrictionConfig {
    /// Delay before a new address-book entry is usable, in seconds (default 24 h).
    pub address_activation_secs: i64,
    /// Withdrawal hold after a password, email or factor change or a withdraw-scope key, in
    /// seconds (default 24 h).
    pub hold_secs: i64,
    /// Withdrawal hold after a completed recovery, in seconds (default 48 h).
    pub recovery_hold_secs: i64,
    /// Wait before a settings unlock takes effect, in days (default 3).
    pub settings_unlock_days: i64,
    /// Mandatory wait before a recovery case can be approved, in seconds (default 72 h).
    pub recovery_wait_secs: i64,
    /// Lifetime of a password-reset link, in seconds (≤ 1800).
    pub password_reset_ttl_secs: i64,
    /// Lifetime of the freeze and cancel links in notices, in seconds (default 7 days).
    pub link_ttl_secs: i64,
    /// How long an intent may wait for confirmation, in seconds (default 10 min).
    pub intent_ttl_secs: i64,
    /// The exchange back end's withdrawal endpoint (`http(s)://…`); empty: intents are
    /// confirmed and kept until one is configured.
    pub upstream_url: String,
    /// Shared secret for `X-Gatehouse-Signature` on deliveries (≥ 32 characters).
    pub upstream_secret: SecretString,
    /// Wait before retrying a failed delivery, in seconds.
    pub delivery_retry_secs: i64,
    /// Per-attempt delivery timeout, in ms.
    pub delivery_timeout_ms: u64,
    /// Assets that may be withdrawn, with their limits. Anything else is refused.
    pub assets: BTreeMap<String, AssetRule>,
}

impl Default for FrictionConfig {
    fn default() -> Self {
        let rule = |limit: &str, pr: &str| AssetRule { daily_limit: limit.into(), phishing_resistant_above: pr.into() };
        Self {
            address_activation_secs: 24 * 3600,
            hold_secs: 24 * 3600,
            recovery_hold_secs: 48 * 3600,
            settings_unlock_days: 3,
            recovery_wait_secs: 72 * 3600,
            password_reset_ttl_secs: 30 * 60,
            link_ttl_secs: 7 * 24 * 3600,
            intent_ttl_secs: 600,
            upstream_url: String::new(),
            upstream_secret: SecretString::default(),
            delivery_retry_secs: 5,
            delivery_timeout_ms: 5000,
            assets: BTreeMap::from([
                ("BTC".to_owned(), rule("2", "0.1")),
                ("ETH".to_owned(), rule("50", "2")),
                ("USDT".to_owned(), rule("100000", "5000")),
            ]),
        }
    }
}

impl FrictionConfig {
    /// Refuses values outside their bounds.
    pub fn validate(&self) -> Result<(), String> {
        let pos = |v: i64, name: &str| if v > 0 { Ok(()) } else { Err(format!("friction.{name} must be positive")) };
        pos(self.address_activation_secs, "address_activation_secs")?;
        pos(self.hold_secs, "hold_secs")?;
        pos(self.recovery_hold_secs, "recovery_hold_secs")?;
        pos(self.settings_unlock_days, "settings_unlock_days")?;
        pos(self.recovery_wait_secs, "recovery_wait_secs")?;
        pos(self.link_ttl_secs, "link_ttl_secs")?;
        pos(self.delivery_retry_secs, "delivery_retry_secs")?;
        if !(60..=1800).contains(&self.password_reset_ttl_secs) {
            return Err("friction.password_reset_ttl_secs must be 60..=1800 (30 minutes at most)".into());
        }
        if !(60..=3600).contains(&self.intent_ttl_secs) {
            return Err("friction.intent_ttl_secs must be 60..=3600".into());
        }
        if !self.upstream_url.is_empty() {
            if !self.upstream_url.starts_with("http://") && !self.upstream_url.starts_with("https://") {
                return Err("friction.upstream_url must be an http(s) URL".into());
            }
            if self.upstream_secret.expose().len() < 32 {
                return Err("friction.upstream_secret must be at least 32 characters".into());
            }
        }
        for (name, rule) in &self.assets {
            if Asset::parse(name).is_none_or(|a| a.as_str() != name) {
                return Err(format!("friction.assets.{name}: tickers are 2-10 upper-case letters or digits"));
            }
            Amount::parse(&rule.daily_limit)
                .map_err(|_| format!("friction.assets.{name}.daily_limit is not an amount"))?;
            Amount::parse(&rule.phishing_resistant_above)
                .map_err(|_| format!("friction.assets.{name}.phishing_resistant_above is not an amount"))?;
        }
        Ok(())
    }

    /// The rule for `asset`, with limits in base units: `(daily_limit, phishing_resistant_above)`.
    pub fn rule(&self, asset: &Asset) -> Option<(i64, i64)> {
        let r = self.assets.get(asset.as_str())?;
        Some((Amount::parse(&r.daily_limit).ok()?.units(), Amount::parse(&r.phishing_resistant_above).ok()?.units()))
    }

    /// The hold after a security change.
    pub fn hold(&self) -> Span {
        Span::secs(self.hold_secs)
    }
}

/// When the withdrawal hold after a change of second factors ends (issue 5: a factor added or
/// removed holds withdrawals like a password change).
pub fn factor_change_hold_until(state: &AppState) -> gatehouse_core::clock::Timestamp {
    state.clock.now().plus(state.config.friction.hold())
}

/// Refuses a security-setting change while the settings lock is on (`settings_locked`), and
/// audits the refusal.
pub async fn ensure_settings_unlocked(state: &AppState, auth: &Authenticated, what: &str) -> ApiResult<()> {
    let f = state.store.find_friction(auth.account.id).await?;
    if f.is_settings_locked(auth.now) {
        let e = auth.event(EventKind::SettingsChangeRefused, Outcome::Denied).with("setting", what);
        state.store.append(vec![e]).await?;
        let mut err = ApiError::new(ErrorCode::SettingsLocked);
        if let Some(at) = f.settings_unlock_at {
            err = err.details(json!({ "unlock_at": at.to_rfc3339() }));
        }
        return Err(err);
    }
    Ok(())
}

fn code_aad(user: UserId) -> Aad {
    Aad::new(&["anti_phishing_code", &user.to_string(), "v1"])
}

/// Seals an anti-phishing code for storage.
pub fn seal_code(state: &AppState, user: UserId, code: &str) -> ApiResult<String> {
    let sealed = state
        .keyring
        .seal(code.as_bytes(), &code_aad(user), state.rng.as_ref())
        .map_err(|e| ApiError::internal("anti-phishing code sealing", e))?;
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

/// Opens a stored anti-phishing code (`None` if absent or unreadable).
pub fn open_code(keyring: &Keyring, user: UserId, sealed: Option<&str>) -> Option<String> {
    let blob = URL_SAFE_NO_PAD.decode(sealed?).ok()?;
    let plain = keyring.open(&blob, &code_aad(user)).ok()?;
    String::from_utf8(plain.expose().to_vec()).ok()
}

/// Seals recovery evidence for storage (it may hold personal data).
pub fn seal_evidence(state: &AppState, case_id: &str, text: &str) -> ApiResult<String> {
    let sealed = state
        .keyring
        .seal(text.as_bytes(), &Aad::new(&["recovery_evidence", case_id, "v1"]), state.rng.as_ref())
        .map_err(|e| ApiError::internal("evidence sealing", e))?;
    Ok(URL_SAFE_NO_PAD.encode(sealed))
}

/// Opens sealed recovery evidence.
pub fn open_evidence(state: &AppState, case_id: &str, sealed: &str) -> Option<String> {
    let blob = URL_SAFE_NO_PAD.decode(sealed).ok()?;
    let plain = state.keyring.open(&blob, &Aad::new(&["recovery_evidence", case_id, "v1"])).ok()?;
    String::from_utf8(plain.expose().to_vec()).ok()
}

/// A single-use link for `action`: the token row to store and the URL to mail.
pub fn action_link(state: &AppState, user: UserId, action: &LinkAction) -> (EmailToken, String) {
    link_for(
        &state.config.server.public_origin,
        &state.config.friction,
        state.rng.as_ref(),
        user,
        action,
        state.clock.now(),
    )
}

/// Same, without an [`AppState`] (the mail worker).
pub fn link_for(
    origin: &str,
    cfg: &FrictionConfig,
    rng: &dyn gatehouse_core::rng::SecureRng,
    user: UserId,
    action: &LinkAction,
    now: Timestamp,
) -> (EmailToken, String) {
    let token = Token::generate(rng);
    let row = EmailToken {
        hash: token.hash(),
        user_id: user,
        purpose: action.purpose(),
        expires_at: now.plus(Span::secs(cfg.link_ttl_secs)),
    };
    (row, format!("{origin}{PREFIX}/link?action={}&token={}", action.name(), token.expose()))
}

/// The JSON an intent is shown (and delivered) as.
pub fn intent_json(i: &Intent) -> serde_json::Value {
    let details: serde_json::Value = serde_json::from_str(&i.canonical).unwrap_or(json!({}));
    json!({
        "id": i.details.id,
        "state": i.state,
        "intent": details,
        "intent_canonical": i.canonical,
        "intent_hash": hex::encode(gatehouse_core::withdrawal::hash_canonical(&i.canonical)),
        "confirmed_at": i.confirmed_at.map(|t| t.to_rfc3339()),
        "delivered_at": i.delivered_at.map(|t| t.to_rfc3339()),
        "delivery_attempts": i.attempts,
    })
}

/// Delivers confirmed intents to the exchange back end.
pub struct IntentDelivery {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    url: String,
    secret: SecretBytes,
    retry: Span,
    client: crate::gateway::proxy::HttpClient,
    wake: Arc<Notify>,
}

impl IntentDelivery {
    /// Builds the worker.
    pub fn new(cfg: &FrictionConfig, store: Arc<dyn Store>, clock: Arc<dyn Clock>, wake: Arc<Notify>) -> Self {
        Self {
            store,
            clock,
            url: cfg.upstream_url.clone(),
            secret: SecretBytes::new(cfg.upstream_secret.expose().as_bytes().to_vec()),
            retry: Span::secs(cfg.delivery_retry_secs),
            client: crate::gateway::proxy::client(Duration::from_millis(cfg.delivery_timeout_ms)),
            wake,
        }
    }

    async fn deliver(&self, i: &Intent) -> anyhow::Result<()> {
        let body = json!({
            "event": "withdrawal.confirmed",
            "idempotency_key": i.details.id,
            "intent": serde_json::from_str::<serde_json::Value>(&i.canonical)?,
            "intent_hash": hex::encode(gatehouse_core::withdrawal::hash_canonical(&i.canonical)),
            "confirmed_at": i.confirmed_at.map(|t| t.to_rfc3339()),
        })
        .to_string();
        let sig = crate::notify::signature(&self.secret, &i.details.id, self.clock.now(), &body);
        let req = hyper::Request::post(&self.url)
            .header("content-type", "application/json")
            .header("idempotency-key", &i.details.id)
            .header("x-gatehouse-event", "withdrawal.confirmed")
            .header("x-gatehouse-delivery", &i.details.id)
            .header("x-gatehouse-signature", sig)
            .body(Full::new(Bytes::from(body)))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await??;
        if resp.status().is_success() { Ok(()) } else { anyhow::bail!("back end answered {}", resp.status()) }
    }

    /// Delivers what is due; returns how many were acknowledged.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let batch = self.store.claim_intents(self.clock.now(), Span::secs(60), 20).await?;
        let mut n = 0;
        for i in &batch {
            match self.deliver(i).await {
                Ok(()) => {
                    let now = self.clock.now();
                    self.store.mark_intent_delivered(&i.details.id, now).await?;
                    let mut e = AuditEvent::new(EventKind::WithdrawalDelivered, Outcome::Success)
                        .with("intent", i.details.id.clone())
                        .with("attempts", i.attempts);
                    e.subject = i.user();
                    self.store.append(vec![e]).await?;
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(intent = %i.details.id, error = %e, "withdrawal delivery failed; will retry");
                    let at = self.clock.now().plus(self.retry);
                    self.store.mark_intent_failed(&i.details.id, &e.to_string(), at).await?;
                }
            }
        }
        Ok(n)
    }

    /// Runs forever: on every wake-up and at least every second.
    pub async fn run(self) {
        loop {
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "withdrawal outbox unavailable"),
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
        }
    }
}

/// Drops `user`'s keys from the gateway's cache after they were suspended in the store.
pub async fn invalidate_keys(state: &AppState, user: UserId) -> ApiResult<()> {
    if let Some(gw) = &state.gateway {
        for k in state.store.list_api_keys(user).await? {
            gw.keys.invalidate(&k.id);
        }
    }
    Ok(())
}
