//! Second factors on the server: what an account has enrolled, checking a TOTP or backup code
//! with throttling, replay handling, audit and mail, and minting the short-lived MFA tokens
//! (pending logins and step-up proofs).
//!
//! Failures of any factor count toward the same per-account login throttle as passwords
//! (R15): the counters are keyed by the account's email exactly as in
//! [`crate::routes::sessions::throttle_keys`].

pub mod config;
pub mod mail;
pub mod openapi;
pub mod sms;
pub mod webauthn;

use axum::Json;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::account::Account;
use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::mfa::store::{AccessRotation, FactorUse, MfaToken, MfaTokenPurpose, StepUpGrant, totp_seed_aad};
use gatehouse_core::mfa::{BackupCodeSet, TotpCheck, TotpParams, TotpSecret};
use gatehouse_core::secret::Token;
use gatehouse_core::session::SessionKind;
use gatehouse_core::stepup::FactorStrength;
use gatehouse_core::store::SideEffects;
use gatehouse_core::throttle::ThrottleDecision;
use serde_json::Value;

use crate::auth::{Authenticated, Via};
use crate::error::{ApiError, ApiResult, ErrorCode, request_id};
use crate::http::{COOKIE_ACCESS, ClientCtx, set_cookie};
use crate::routes::sessions::throttle_keys;
use crate::state::AppState;

/// What an account has enrolled.
#[derive(Debug, Clone, Default)]
pub struct Factors {
    /// An active TOTP factor.
    pub totp: bool,
    /// WebAuthn credentials that are not flagged.
    pub webauthn: usize,
    /// Of which passkeys (discoverable, user-verifying).
    pub passkeys: usize,
    /// Unused backup codes.
    pub backup_remaining: usize,
    /// Size of the current backup set.
    pub backup_total: usize,
    /// An SMS number is set and an SMS sender is configured (login only; weaker).
    pub sms: bool,
}

impl Factors {
    /// Whether the account has a real second factor (backup codes alone do not count: they
    /// are the way back in when the factor is lost).
    pub fn has_second_factor(&self) -> bool {
        self.totp || self.webauthn > 0
    }

    /// Whether a login needs a second step (SMS counts here, as a last resort, but never for
    /// step-up).
    pub fn has_login_factor(&self) -> bool {
        self.has_second_factor() || self.sms
    }

    /// Methods usable to finish a login or step up, strongest first.
    pub fn methods(&self) -> Vec<&'static str> {
        let mut m = vec![];
        if self.webauthn > 0 {
            m.push("webauthn");
        }
        if self.totp {
            m.push("totp");
        }
        if self.backup_remaining > 0 {
            m.push("backup_code");
        }
        if self.sms {
            m.push("sms");
        }
        m
    }
}

/// Loads the account's factors.
pub async fn factors(state: &AppState, account: &Account) -> ApiResult<Factors> {
    let totp = state.store.find_totp(account.id).await?.is_some_and(|t| t.confirmed_at.is_some());
    let creds = state.store.list_webauthn_credentials(account.id).await?;
    let live: Vec<_> = creds.iter().filter(|c| c.flagged_at.is_none()).collect();
    let codes = state.store.backup_codes(account.id).await?;
    let sms = !state.config.mfa.sms.webhook_url.is_empty() && state.store.find_sms_number(account.id).await?.is_some();
    Ok(Factors {
        sms,
        totp,
        webauthn: live.len(),
        passkeys: live.iter().filter(|c| c.kind == "passkey").count(),
        backup_remaining: codes.iter().filter(|c| !c.used).count(),
        backup_total: codes.len(),
    })
}

/// An audit event about `account` from `client`.
pub fn event_for(account: &Account, client: &ClientCtx, kind: EventKind, outcome: Outcome) -> AuditEvent {
    let mut e = AuditEvent::new(kind, outcome).by_user(account.id);
    e.ip = Some(client.ip.to_string());
    e.request_id = Some(request_id());
    e
}

/// Refuses with 429 while the account's throttle says wait; `Ok(false)` when locked (the
/// caller answers as for a wrong code, without checking it).
pub async fn throttle_gate(state: &AppState, account: &Account, client: &ClientCtx) -> ApiResult<bool> {
    let trusted = match client.device {
        Some(d) => state.store.is_known_device(account.id, d).await?,
        None => false,
    };
    throttle_gate_as(state, account, client, trusted).await
}

/// [`throttle_gate`] with the device's standing already known: an authenticated caller's
/// device is known by definition (its session is bound to the device that presents it), so
/// a step-up needs no lookup for it.
async fn throttle_gate_as(state: &AppState, account: &Account, client: &ClientCtx, trusted: bool) -> ApiResult<bool> {
    let keys = throttle_keys(&account.email, client);
    let counters = state.store.load_counters(&keys).await?;
    match state.config.throttle.decide(&counters[0], &counters[1], trusted, state.clock.now()) {
        ThrottleDecision::Allow => Ok(true),
        ThrottleDecision::Locked => Ok(false),
        ThrottleDecision::Wait(w) => {
            let e = event_for(account, client, EventKind::LoginThrottled, Outcome::Denied)
                .with("flow", "second_factor")
                .with("retry_after_secs", w.as_secs_ceil());
            state.store.append(vec![e]).await?;
            Err(ApiError::new(ErrorCode::RateLimited).retry_after(w.as_secs_ceil()))
        }
    }
}

/// Counts a failed factor against the account's login throttle and commits `failed`.
pub async fn count_failure(
    state: &AppState,
    account: &Account,
    client: &ClientCtx,
    failed: AuditEvent,
) -> ApiResult<()> {
    let keys = throttle_keys(&account.email, client);
    let rule = state.config.throttle.lock_rule(account.is_admin);
    let on_lock = event_for(account, client, EventKind::AccountLocked, Outcome::Denied);
    state.store.record_failure(&keys, rule, state.clock.now(), SideEffects::event(failed), on_lock).await?;
    Ok(())
}

/// A second-factor method named in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Authenticator app.
    Totp,
    /// One of the backup codes.
    BackupCode,
    /// Security key or passkey (two-phase: start, then finish).
    Webauthn,
    /// SMS (login only, last resort).
    Sms,
}

/// Checks a TOTP or backup code for `account` (throttled, counted, audited, replay notified).
/// `flow` names the flow in audit events. Returns the factor name on success.
pub async fn verify_code(
    state: &AppState,
    account: &Account,
    client: &ClientCtx,
    method: Method,
    code: &str,
    flow: &str,
) -> ApiResult<&'static str> {
    verify_code_then(state, account, client, method, code, flow, None).await
}

/// [`verify_code`], and on success commits `then` (a step-up) in the same store write as the
/// factor's use: one group commit for the used step, the token, the proof and the rotated
/// access token, refused as a whole if the step or code was already used.
pub async fn verify_code_then(
    state: &AppState,
    account: &Account,
    client: &ClientCtx,
    method: Method,
    code: &str,
    flow: &str,
    then: Option<&StepUpMint>,
) -> ApiResult<&'static str> {
    if code.len() > 64 {
        return Err(ApiError::new(ErrorCode::InvalidCode));
    }
    // A step-up (`then`) comes from an authenticated session on this very device.
    let open = match then {
        Some(_) => throttle_gate_as(state, account, client, true).await?,
        None => throttle_gate(state, account, client).await?,
    };
    match method {
        Method::Totp => verify_totp(state, account, client, code, flow, open, then).await.map(|()| "totp"),
        Method::BackupCode => {
            verify_backup(state, account, client, code, flow, open, then).await.map(|()| "backup_code")
        }
        Method::Webauthn | Method::Sms => Err(ApiError::new(ErrorCode::FactorNotAllowed)),
    }
}

async fn verify_totp(
    state: &AppState,
    account: &Account,
    client: &ClientCtx,
    code: &str,
    flow: &str,
    open: bool,
    then: Option<&StepUpMint>,
) -> ApiResult<()> {
    let Some(factor) = state.store.find_totp(account.id).await?.filter(|f| f.confirmed_at.is_some()) else {
        return Err(ApiError::new(ErrorCode::FactorNotAllowed).message("No authenticator app is enrolled."));
    };
    let failed = |reason: &str| {
        event_for(account, client, EventKind::TotpFailed, Outcome::Failure)
            .with("flow", flow)
            .with("reason", reason.to_owned())
    };
    if !open {
        count_failure(state, account, client, failed("locked")).await?;
        return Err(ApiError::new(ErrorCode::InvalidCode));
    }
    let seed = state
        .keyring
        .open(&factor.seed_sealed, &totp_seed_aad(&account.id))
        .map_err(|e| ApiError::internal("totp seed", e))?;
    let secret = TotpSecret::from_bytes(seed).map_err(|e| ApiError::internal("totp seed", e))?;
    let now = state.clock.now();
    match gatehouse_core::mfa::verify(&secret, &TotpParams::ENROLMENT, code, now, factor.last_step) {
        TotpCheck::Accepted { step } => {
            // The success event commits with the used-step record (one group commit).
            let ok = event_for(account, client, EventKind::TotpVerified, Outcome::Success)
                .with("flow", flow)
                .with("step", step);
            let fresh = match then {
                None => state.store.consume_totp_step(account.id, step, now, SideEffects::event(ok)).await?,
                Some(m) => m.commit(state, FactorUse::TotpStep(step), SideEffects::event(ok)).await?,
            };
            if fresh {
                return Ok(());
            }
            replay(state, account, client, flow, step).await
        }
        TotpCheck::Replayed { step } => replay(state, account, client, flow, step).await,
        TotpCheck::Rejected | TotpCheck::Malformed => {
            count_failure(state, account, client, failed("wrong_code")).await?;
            Err(ApiError::new(ErrorCode::InvalidCode))
        }
    }
}

/// A reused TOTP step: refused, audited, counted and notified (R24).
async fn replay(state: &AppState, account: &Account, client: &ClientCtx, flow: &str, step: u64) -> ApiResult<()> {
    let e = event_for(account, client, EventKind::TotpReplay, Outcome::Denied).with("flow", flow).with("step", step);
    let mail = state.mail(account.email.as_str(), &mail::totp_replay(&client.ip.to_string()))?;
    state.store.record(SideEffects::default().mail(mail)).await?;
    count_failure(state, account, client, e).await?;
    state.wake_mailer();
    Err(ApiError::new(ErrorCode::CodeReplayed))
}

async fn verify_backup(
    state: &AppState,
    account: &Account,
    client: &ClientCtx,
    code: &str,
    flow: &str,
    open: bool,
    then: Option<&StepUpMint>,
) -> ApiResult<()> {
    let rows = state.store.backup_codes(account.id).await?;
    let failed = |kind, reason: &str| {
        event_for(account, client, kind, Outcome::Failure).with("flow", flow).with("reason", reason.to_owned())
    };
    if rows.is_empty() {
        return Err(ApiError::new(ErrorCode::FactorNotAllowed).message("There are no backup codes."));
    }
    if !open {
        count_failure(state, account, client, failed(EventKind::BackupCodeFailed, "locked")).await?;
        return Err(ApiError::new(ErrorCode::InvalidCode));
    }
    let stored: Vec<_> = rows.iter().map(|r| r.hash.clone()).collect();
    let presented = gatehouse_core::secret::SecretString::from(code);
    let found = state
        .hash_pool
        .run(move || BackupCodeSet::verify(presented.expose(), &stored))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Overloaded))?
        .map_err(|e| ApiError::internal("backup codes", e))?;
    let Some(row) = found.and_then(|i| rows.get(i)) else {
        count_failure(state, account, client, failed(EventKind::BackupCodeFailed, "wrong_code")).await?;
        return Err(ApiError::new(ErrorCode::InvalidCode));
    };
    let now = state.clock.now();
    let remaining = rows.iter().filter(|r| !r.used).count().saturating_sub(1);
    if !row.used {
        let used = event_for(account, client, EventKind::BackupCodeUsed, Outcome::Success)
            .with("flow", flow)
            .with("remaining", remaining);
        let mail = state.mail(account.email.as_str(), &mail::backup_code_used(remaining, &client.ip.to_string()))?;
        let fx = SideEffects::event(used).mail(mail);
        let fresh = match then {
            None => state.store.consume_backup_code(account.id, row.position, now, fx).await?,
            Some(m) => m.commit(state, FactorUse::BackupCode(row.position), fx).await?,
        };
        if fresh {
            state.wake_mailer();
            return Ok(());
        }
    }
    let e = event_for(account, client, EventKind::BackupCodeReplay, Outcome::Denied).with("flow", flow);
    count_failure(state, account, client, e).await?;
    Err(ApiError::new(ErrorCode::CodeReplayed).message("This backup code was already used."))
}

/// A step-up about to be granted: the new step-up token, the session's new access token
/// (R43) and the success event, prepared before the factor is checked so that the check's
/// write can carry them ([`verify_code_then`], [`StepUpMint::commit`]).
pub struct StepUpMint {
    token: Token,
    access: Token,
    grant: StepUpGrant,
    event: AuditEvent,
    kind: SessionKind,
    via: Via,
    expires_at: Timestamp,
    access_expires_at: Timestamp,
}

impl StepUpMint {
    /// Prepares a step-up token for `action` (+ `binding` hex) on the caller's session, proven
    /// with `factor` of `strength`.
    pub fn new(
        state: &AppState,
        auth: &Authenticated,
        action: gatehouse_core::stepup::SensitiveAction,
        binding: &str,
        factor: &str,
        strength: FactorStrength,
    ) -> Self {
        let now = state.clock.now();
        let rng = state.rng.as_ref();
        let token = Token::generate(rng);
        let access = Token::generate(rng);
        let expires_at = now.plus(Span::secs(state.config.mfa.step_up_ttl_secs));
        let access_expires_at = now.plus(state.config.session.access_ttl()).min(auth.session.expires_at);
        let session = auth.session.id;
        let t = MfaToken {
            hash: token.hash(),
            user_id: auth.account.id,
            purpose: MfaTokenPurpose::StepUp,
            session_id: Some(session),
            action: action.as_str().to_owned(),
            binding: binding.to_owned(),
            factor: factor.to_owned(),
            strength: strength.as_str().to_owned(),
            detail: "{}".into(),
            created_at: now,
            expires_at,
        };
        let event = event_for(&auth.account, &auth.client, EventKind::StepUpSucceeded, Outcome::Success)
            .with("action", action.as_str())
            .with("factor", factor.to_owned())
            .with("strength", strength.as_str())
            .with("session", session.to_string())
            .with("bound", !binding.is_empty())
            .with("token_rotated", true);
        let grant = StepUpGrant {
            used: FactorUse::Nothing,
            token: t,
            access: Some(AccessRotation { hash: access.hash(), expires_at: access_expires_at }),
        };
        Self { token, access, grant, event, kind: auth.session.kind, via: auth.via, expires_at, access_expires_at }
    }

    /// Commits the grant with the factor's use and its side effects (one store write); false
    /// when the factor was already used (nothing written).
    pub async fn commit(&self, state: &AppState, used: FactorUse, fx: SideEffects) -> ApiResult<bool> {
        let grant = StepUpGrant { used, ..self.grant.clone() };
        Ok(state.store.grant_step_up(&grant, fx.and(self.event.clone())).await?)
    }

    /// The answer to a granted step-up: 201 with the step-up token, and the session's new
    /// access token where the caller keeps it — in the body for an API session (`access_token`,
    /// `token_type`, `access_token_expires_in`, as at login), in the `__Host-` access cookie for
    /// a browser session. The previous access token no longer works.
    pub fn response(&self, state: &AppState, mut body: Value) -> Response {
        let now = state.clock.now();
        let access_secs = self.access_expires_at.since(now).as_secs_ceil();
        body["step_up_token"] = self.token.expose().into();
        body["expires_in"] = self.expires_at.since(now).as_secs_ceil().into();
        let mut headers = HeaderMap::new();
        match self.kind {
            SessionKind::Api => {
                body["access_token"] = self.access.expose().into();
                body["token_type"] = (if self.via == Via::Dpop { "DPoP" } else { "Bearer" }).into();
                body["access_token_expires_in"] = access_secs.into();
            }
            SessionKind::Browser => {
                if let Ok(v) = HeaderValue::from_str(&set_cookie(COOKIE_ACCESS, self.access.expose(), access_secs)) {
                    headers.append(header::SET_COOKIE, v);
                }
            }
        }
        (StatusCode::CREATED, headers, Json(body)).into_response()
    }
}

/// The strength a factor proves.
pub fn strength_of(factor: &str) -> FactorStrength {
    match factor {
        "webauthn" => FactorStrength::PhishingResistant,
        "totp" | "backup_code" => FactorStrength::AnySecondFactor,
        _ => FactorStrength::Password,
    }
}
