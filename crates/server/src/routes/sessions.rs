//! Login, refresh, logout and the device list.
//!
//! Login answers identically — same status, body and headers, after the same Argon2 work —
//! for an unknown address, a locked or disabled account and a wrong password (R16, R17).
//! Throttling is decided before any hashing from counters keyed by the address
//! ([`gatehouse_core::throttle`]), so it too behaves the same for addresses that do not exist.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::account::{Account, Email};
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::{DeviceId, SessionId};
use gatehouse_core::password::Password;
use gatehouse_core::password::hash::Verification;
use gatehouse_core::secret::Token;
use gatehouse_core::session::{RefreshOutcome, Session, SessionKind, derive_successor};
use gatehouse_core::store::{NewSession, RefreshRequest, SideEffects};
use gatehouse_core::throttle::{ThrottleDecision, keys};
use serde::Deserialize;
use serde_json::json;

use super::accounts::password_field;
use super::event;
use crate::auth::{Authenticated, Via};
use crate::error::{ApiError, ApiResult, ErrorCode, request_id};
use crate::hashing::Admission;
use crate::http::{
    ApiJson, COOKIE_ACCESS, COOKIE_DEVICE, COOKIE_REFRESH, ClientCtx, clear_cookie, cookie, csrf_ok, set_cookie,
};
use crate::mail::templates;
use crate::state::AppState;

/// Device cookies live 400 days (the longest browsers keep a cookie).
const DEVICE_COOKIE_SECS: i64 = 400 * 24 * 3600;

/// `POST /_gh/api/v1/sessions`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    email: String,
    password: String,
    /// `api` (default: tokens in the body) or `browser` (tokens in `__Host-` cookies only).
    #[serde(default = "default_kind")]
    session_type: SessionKind,
}

fn default_kind() -> SessionKind {
    SessionKind::Api
}

/// Outcome of checking a password with throttling applied.
enum PasswordCheck {
    /// Right password for an active account.
    Ok { needs_rehash: bool },
    /// Anything else; already counted and audited.
    Failed,
}

/// Runs Argon2 on the pool: against the account's hash, or against the dummy hash when there
/// is no usable account, so both take the same time.
async fn run_verify(
    state: &AppState,
    admission: &Admission,
    account: Option<&Account>,
    password: &Password,
) -> ApiResult<Verification> {
    let hasher = state.hasher.clone();
    let password = password.clone();
    let stored = account.map(|a| a.password_hash.clone());
    admission
        .run(move || match stored {
            Some(h) => hasher.verify(&password, &h),
            None => {
                hasher.verify_dummy(&password);
                Verification::Mismatch
            }
        })
        .await
        .map_err(|_| ApiError::new(ErrorCode::Overloaded))
}

/// Throttle keys for `email` from `client`: the account counter and the source counter (the
/// device id when presented, else the IP).
pub fn throttle_keys(email: &Email, client: &ClientCtx) -> Vec<String> {
    let source = client.device.map(|d| format!("dev:{d}")).unwrap_or_else(|| format!("ip:{}", client.ip));
    vec![keys::account(email.as_str()), keys::source(email.as_str(), &source)]
}

/// Checks a password for `email` with every anti-automation rule applied; counts failures.
/// `purpose` names the flow in audit events (`login`, `reauth`).
async fn check_password(
    state: &AppState,
    admission: &Admission,
    client: &ClientCtx,
    email: &Email,
    account: Option<&Account>,
    password: &Password,
    purpose: &str,
) -> ApiResult<PasswordCheck> {
    let now = state.clock.now();
    let keys = throttle_keys(email, client);
    let trusted = match (account, client.device) {
        (Some(a), Some(d)) => state.store.is_known_device(a.id, d).await?,
        _ => false,
    };
    let counters = state.store.load_counters(&keys).await?;
    let decision = state.config.throttle.decide(&counters[0], &counters[1], trusted, now);
    let subject = |mut e: gatehouse_core::audit::AuditEvent| {
        if let Some(a) = account {
            e.subject = Some(a.id);
        }
        e.with("flow", purpose)
    };
    match decision {
        ThrottleDecision::Wait(wait) => {
            let e = subject(event(EventKind::LoginThrottled, Outcome::Denied, client));
            state.store.append(vec![e.with("retry_after_secs", wait.as_secs_ceil())]).await?;
            return Err(ApiError::new(ErrorCode::RateLimited).retry_after(wait.as_secs_ceil()));
        }
        ThrottleDecision::Locked => {
            // Same work and same answer as a wrong password; not counted, so the lock stays
            // time-based.
            run_verify(state, admission, None, password).await?;
            let e = subject(event(EventKind::LoginFailed, Outcome::Denied, client)).with("reason", "locked");
            state.store.append(vec![e]).await?;
            return Ok(PasswordCheck::Failed);
        }
        ThrottleDecision::Allow => {}
    }
    let usable = account.filter(|a| a.can_sign_in());
    let verdict = run_verify(state, admission, usable, password).await?;
    if let Verification::Match { needs_rehash } = verdict {
        return Ok(PasswordCheck::Ok { needs_rehash });
    }
    let reason = match account {
        None => "unknown_account",
        Some(a) if !a.can_sign_in() => "disabled",
        Some(_) => "wrong_password",
    };
    if let Some(a) = account {
        crate::risk::record_login_failure(state, &a.id, client.ip);
    }
    let rule = state.config.throttle.lock_rule(account.is_some_and(|a| a.is_admin));
    let failed = subject(event(EventKind::LoginFailed, Outcome::Failure, client)).with("reason", reason);
    let on_lock = subject(event(EventKind::AccountLocked, Outcome::Denied, client));
    state.store.record_failure(&keys, rule, now, SideEffects::event(failed), on_lock).await?;
    Ok(PasswordCheck::Failed)
}

fn invalid_credentials() -> ApiError {
    ApiError::new(ErrorCode::InvalidCredentials)
}

/// Tokens and cookies for a new or refreshed session.
struct Issued {
    access: Token,
    refresh: Token,
    access_expires_at: Timestamp,
}

fn token_response(
    status: StatusCode,
    session: &Session,
    issued: &Issued,
    now: Timestamp,
    extra: serde_json::Value,
) -> Response {
    let expires_in = issued.access_expires_at.since(now).as_secs_ceil();
    let mut body = json!({
        "status": "authenticated",
        "session_id": session.id.to_string(),
        "device_id": session.device_id.to_string(),
        "expires_in": expires_in,
        "session_expires_at": session.expires_at.to_rfc3339(),
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let mut headers = HeaderMap::new();
    match session.kind {
        SessionKind::Api => {
            if let Some(b) = body.as_object_mut() {
                // A bound session says `DPoP` here (issue 9, `crate::pop::token_fields`).
                b.entry("token_type").or_insert_with(|| "Bearer".into());
                b.insert("access_token".into(), issued.access.expose().into());
                b.insert("refresh_token".into(), issued.refresh.expose().into());
            }
        }
        SessionKind::Browser => {
            let refresh_secs = session.expires_at.since(now).as_secs_ceil();
            for c in [
                set_cookie(COOKIE_ACCESS, issued.access.expose(), expires_in),
                set_cookie(COOKIE_REFRESH, issued.refresh.expose(), refresh_secs),
                set_cookie(COOKIE_DEVICE, &session.device_id.to_string(), DEVICE_COOKIE_SECS),
            ] {
                if let Ok(v) = HeaderValue::from_str(&c) {
                    headers.append(header::SET_COOKIE, v);
                }
            }
        }
    }
    (status, headers, Json(body)).into_response()
}

/// Signs in with email and password.
pub async fn login(
    State(state): State<AppState>,
    client: ClientCtx,
    pop: crate::pop::PopCtx,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let password = password_field(&req.password)?;
    // Proof of possession (issue 9): a DPoP proof or client certificate binds the session.
    // Checked before any hashing: it is cheap and a bad proof costs the caller nothing.
    let cnf = pop.login_binding(&state, &client).await?;
    // A place in the hashing pool first: when it is full, answer 503 before touching the
    // database (F10).
    let admission = state.hash_pool.admit().map_err(|_| ApiError::new(ErrorCode::Overloaded))?;
    // An address that cannot exist is answered like an unknown one (same work, same body).
    let email = Email::parse(&req.email).unwrap_or_else(|_| Email::from_stored(req.email.trim().to_ascii_lowercase()));
    let account = state.store.find_account_by_email(&email).await?;
    let check = check_password(&state, &admission, &client, &email, account.as_ref(), &password, "login").await?;
    let (PasswordCheck::Ok { needs_rehash }, Some(account)) = (check, account) else {
        return Err(invalid_credentials());
    };
    if account.email_verified_at.is_none() {
        return Err(ApiError::new(ErrorCode::EmailUnverified));
    }
    if needs_rehash {
        rehash(&state, &admission, &account, &password, &client).await?;
    }
    drop(admission);
    // feat/mfa: an account with a second factor gets a pending-login token, not a session.
    let factors = crate::mfa::factors(&state, &account).await?;
    // Behavioural risk (R107): refused, or confirmed by email when there is no second factor
    // to ask for, before any session exists.
    let risk = crate::risk::assess_login(&state, &account, &client, factors.has_login_factor()).await?;
    if factors.has_login_factor() {
        return crate::routes::mfa::pending_login(&state, &client, &account, req.session_type, &factors).await;
    }
    start_session(
        &state,
        &client,
        &account,
        req.session_type,
        &["password"],
        json!({ "notices": ["no_second_factor"], "second_factor": false }),
        SignInContext { risk: risk.as_ref(), cnf: cnf.as_ref() },
    )
    .await
}

/// What a sign-in carries into its session besides the factors: the risk engine's assessment
/// (recorded with the login event) and the proof-of-possession binding (issue 9).
#[derive(Debug, Default, Clone, Copy)]
pub struct SignInContext<'a> {
    /// The assessment made after the password, when the risk engine is on.
    pub risk: Option<&'a crate::risk::LoginAssessment>,
    /// The key or certificate the session's tokens are bound to.
    pub cnf: Option<&'a gatehouse_core::pop::Confirmation>,
}

/// Creates a session after every required factor was checked: new tokens (R43), the login
/// counters reset (R14), `factors` recorded in the audit event; `extra` merges into the body.
pub async fn start_session(
    state: &AppState,
    client: &ClientCtx,
    account: &Account,
    kind: SessionKind,
    factors: &[&str],
    extra: serde_json::Value,
    with: SignInContext<'_>,
) -> ApiResult<Response> {
    let SignInContext { risk, cnf } = with;
    let now = state.clock.now();
    let rng = state.rng.as_ref();
    let device_id = client.device.unwrap_or_else(|| DeviceId::generate(now, rng));
    let session = Session {
        id: SessionId::generate(now, rng),
        user_id: account.id,
        device_id,
        ua_family: client.ua_family.key(),
        device_name: client.ua_family.display_name(),
        kind,
        created_ip: client.ip.to_string(),
        last_ip: client.ip.to_string(),
        created_at: now,
        last_seen_at: now,
        expires_at: now.plus(state.config.session.absolute()),
        auth_time: now,
        revoked_at: None,
        revoke_reason: None,
    };
    let issued = Issued {
        access: Token::generate(rng),
        refresh: Token::generate(rng),
        access_expires_at: now.plus(state.config.session.access_ttl()),
    };
    let new = NewSession {
        session: session.clone(),
        access_hash: issued.access.hash(),
        access_expires_at: issued.access_expires_at,
        refresh_hash: issued.refresh.hash(),
    };
    let mut ok = event(EventKind::LoginSucceeded, Outcome::Success, client)
        .with("session", session.id.to_string())
        .with("device", session.device_name.clone())
        .with("factors", json!(factors));
    ok.actor = Some(account.id);
    ok.subject = Some(account.id);
    if let Some(r) = risk {
        ok = ok.with("risk", r.summary());
    }
    let ok = if cnf.is_some() { ok.with("bound", crate::pop::token_fields(cnf)["cnf"].clone()) } else { ok };
    let keys = throttle_keys(&account.email, client);
    crate::pop::create_session(state, &new, cnf, &keys, SideEffects::event(ok)).await?;
    // A completed sign-in (every factor checked) is what profiles learn from.
    crate::risk::learn_sign_in(state, account.id, client, session.device_id);
    let mut extra = extra;
    if let Some(e) = extra.as_object_mut() {
        e.insert("factors".into(), json!(factors));
    }
    extend(&mut extra, crate::pop::token_fields(cnf));
    Ok(token_response(StatusCode::CREATED, &session, &issued, now, extra))
}

async fn rehash(
    state: &AppState,
    admission: &Admission,
    account: &Account,
    password: &Password,
    client: &ClientCtx,
) -> ApiResult<()> {
    let hasher = state.hasher.clone();
    let rng = state.rng.clone();
    let password = password.clone();
    let new = admission
        .run(move || hasher.hash(&password, rng.as_ref()))
        .await
        .map_err(|_| ApiError::new(ErrorCode::Overloaded))?
        .map_err(|e| ApiError::internal("password hashing", e))?;
    let mut e = event(EventKind::PasswordRehashed, Outcome::Success, client);
    e.actor = Some(account.id);
    e.subject = Some(account.id);
    state.store.rehash_password(account.id, &account.password_hash, &new, SideEffects::event(e)).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

/// `POST /_gh/api/v1/sessions/refresh`: exchanges a refresh token (JSON body for API clients,
/// the `__Host-gh_rt` cookie for browsers) for a new pair.
pub async fn refresh(
    State(state): State<AppState>,
    client: ClientCtx,
    pop: crate::pop::PopCtx,
    method: axum::http::Method,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Response> {
    let (raw, via_cookie) = if body.iter().all(u8::is_ascii_whitespace) {
        let c = cookie(&headers, COOKIE_REFRESH).ok_or_else(|| ApiError::new(ErrorCode::InvalidGrant))?;
        if !csrf_ok(&method, &headers, &state.config.server.public_origin) {
            return Err(ApiError::new(ErrorCode::CsrfRejected));
        }
        (c.to_owned(), true)
    } else {
        let is_json = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        if !is_json {
            return Err(ApiError::new(ErrorCode::UnsupportedMediaType));
        }
        let b: RefreshBody = serde_json::from_slice(&body)
            .map_err(|_| ApiError::new(ErrorCode::InvalidRequest).message("Expected {\"refresh_token\": …}."))?;
        (b.refresh_token, false)
    };
    let presented = Token::parse(&raw).ok_or_else(|| ApiError::new(ErrorCode::InvalidGrant))?;
    // Proof of possession (issue 9): a bound family needs its key; another key revokes it.
    let cnf = pop.refresh_binding(&state, &client, presented.hash()).await?;
    let (successor, access) = derive_successor(&state.refresh_key, &presented)
        .ok_or_else(|| ApiError::internal("refresh", "successor derivation failed"))?;
    let now = state.clock.now();
    let req = RefreshRequest {
        presented: presented.hash(),
        successor: successor.hash(),
        access: access.hash(),
        access_expires_at: now.plus(state.config.session.access_ttl()),
        device: client.device,
        ua_family: client.ua_family.key(),
        ip: client.ip.to_string(),
        now,
        policy: state.config.session,
    };
    let client_for_fx = client.clone();
    let fx = move |o: &RefreshOutcome| -> SideEffects {
        let mk = |kind, outcome, user, session: SessionId| {
            let mut e = event(kind, outcome, &client_for_fx).with("session", session.to_string());
            e.subject = Some(user);
            e
        };
        match o {
            RefreshOutcome::Rotated { session_id, user_id } => {
                SideEffects::event(mk(EventKind::TokenRefreshed, Outcome::Success, *user_id, *session_id))
            }
            RefreshOutcome::Grace { session_id, user_id } => SideEffects::event(
                mk(EventKind::TokenRefreshed, Outcome::Success, *user_id, *session_id).with("grace", true),
            ),
            RefreshOutcome::Reuse { session_id, user_id } => {
                SideEffects::event(mk(EventKind::RefreshReuse, Outcome::Denied, *user_id, *session_id))
            }
            RefreshOutcome::DeviceMismatch { session_id, user_id } => SideEffects::event(
                mk(EventKind::SessionDeviceMismatch, Outcome::Denied, *user_id, *session_id)
                    .with("presented_family", client_for_fx.ua_family.key())
                    .with("flow", "refresh"),
            ),
            RefreshOutcome::Invalid => SideEffects::default(),
        }
    };
    let outcome = state.store.rotate_refresh(&req, &fx).await?;
    let (session_id, user_id) = match outcome {
        RefreshOutcome::Rotated { session_id, user_id } | RefreshOutcome::Grace { session_id, user_id } => {
            (session_id, user_id)
        }
        RefreshOutcome::Reuse { user_id, session_id } => {
            notify_reuse(&state, user_id, session_id, now).await;
            return Err(ApiError::new(ErrorCode::InvalidGrant));
        }
        RefreshOutcome::DeviceMismatch { .. } => return Err(ApiError::new(ErrorCode::DeviceMismatch)),
        RefreshOutcome::Invalid => return Err(ApiError::new(ErrorCode::InvalidGrant)),
    };
    let session = state
        .store
        .list_sessions(user_id, now)
        .await?
        .into_iter()
        .find(|s| s.id == session_id)
        .ok_or_else(|| ApiError::new(ErrorCode::InvalidGrant))?;
    if via_cookie != (session.kind == SessionKind::Browser) {
        // A browser refresh token sent as a bearer body, or the reverse: refuse.
        return Err(ApiError::new(ErrorCode::InvalidGrant));
    }
    crate::risk::assess_session(&state, &session, &client).await?;
    let issued =
        Issued { access, refresh: successor, access_expires_at: req.access_expires_at.min(session.expires_at) };
    Ok(token_response(StatusCode::OK, &session, &issued, now, crate::pop::token_fields(cnf.as_ref())))
}

/// Adds the members of `more` to the object `into`.
fn extend(into: &mut serde_json::Value, more: serde_json::Value) {
    if let (Some(a), serde_json::Value::Object(b)) = (into.as_object_mut(), more) {
        a.extend(b);
    }
}

/// Emails the owner about a refresh-token reuse (best effort: the revocation already
/// committed; the notice is queued durably and retried).
async fn notify_reuse(state: &AppState, user: gatehouse_core::ids::UserId, session: SessionId, now: Timestamp) {
    let Ok(Some(account)) = state.store.find_account(user).await else { return };
    let device = state
        .store
        .list_sessions(user, Timestamp::from_millis(0))
        .await
        .ok()
        .and_then(|l| l.into_iter().find(|s| s.id == session).map(|s| s.device_name))
        .unwrap_or_else(|| "a device".into());
    let Ok(mail) = state.mail(account.email.as_str(), &templates::session_reuse_alert(&device, &now.to_rfc3339()))
    else {
        return;
    };
    if let Err(e) = state.store.record(SideEffects::default().mail(mail)).await {
        tracing::warn!(request_id = %request_id(), error = %e, "could not queue the reuse alert");
    }
    state.wake_mailer();
}

fn cleared_cookies() -> HeaderMap {
    let mut h = HeaderMap::new();
    for name in [COOKIE_ACCESS, COOKIE_REFRESH] {
        if let Ok(v) = HeaderValue::from_str(&clear_cookie(name)) {
            h.append(header::SET_COOKIE, v);
        }
    }
    h
}

/// `DELETE /_gh/api/v1/sessions/current`: logout, effective at once on every instance.
pub async fn logout(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Response> {
    let e = auth.event(EventKind::Logout, Outcome::Success);
    state.store.revoke_session(auth.account.id, auth.session.id, "logout", auth.now, SideEffects::event(e)).await?;
    let headers = if auth.via == Via::Cookie { cleared_cookies() } else { HeaderMap::new() };
    Ok((StatusCode::NO_CONTENT, headers).into_response())
}

/// `GET /_gh/api/v1/sessions`: the device list.
pub async fn list(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Json<serde_json::Value>> {
    let sessions = state.store.list_sessions(auth.account.id, auth.now).await?;
    let items: Vec<_> = sessions
        .into_iter()
        .filter(|s| s.check(auth.now, &state.config.session, auth.account.is_admin).is_ok())
        .map(|s| {
            json!({
                "id": s.id.to_string(),
                "device_name": s.device_name,
                "kind": s.kind.as_str(),
                "ip": s.last_ip,
                "created_at": s.created_at.to_rfc3339(),
                "last_seen_at": s.last_seen_at.to_rfc3339(),
                "current": s.id == auth.session.id,
            })
        })
        .collect();
    Ok(Json(json!({ "sessions": items })))
}

/// Body of the revocation endpoints: a step-up token for `revoke_sessions` (or the password,
/// where the policy allows it).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReauthBody {
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    step_up_token: Option<String>,
}

impl ReauthBody {
    fn input(&self) -> crate::stepup::StepUpInput<'_> {
        crate::stepup::StepUpInput { password: self.password.as_deref(), step_up_token: self.step_up_token.as_deref() }
    }
}

/// Checks the re-entered password of the signed-in user, with throttling and counting.
pub async fn reauthenticate(state: &AppState, auth: &Authenticated, password: Option<&str>) -> ApiResult<()> {
    let Some(raw) = password.filter(|p| !p.is_empty()) else {
        return Err(ApiError::new(ErrorCode::ReauthRequired));
    };
    let password = password_field(raw)?;
    let admission = state.hash_pool.admit().map_err(|_| ApiError::new(ErrorCode::Overloaded))?;
    match check_password(state, &admission, &auth.client, &auth.account.email, Some(&auth.account), &password, "reauth")
        .await?
    {
        PasswordCheck::Ok { .. } => {
            state.store.set_auth_time(auth.session.id, state.clock.now()).await?;
            Ok(())
        }
        PasswordCheck::Failed => Err(ApiError::new(ErrorCode::ReauthFailed)),
    }
}

/// `POST /_gh/api/v1/sessions/{id}/revoke`
pub async fn revoke(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReauthBody>,
) -> ApiResult<Response> {
    let id = SessionId::parse(&id).ok_or_else(|| ApiError::new(ErrorCode::NotFound))?;
    crate::stepup::require(&state, &auth, gatehouse_core::stepup::SensitiveAction::RevokeSessions, None, body.input())
        .await?;
    let e = auth.event(EventKind::SessionRevoked, Outcome::Success).with("revoked_session", id.to_string());
    if !state.store.revoke_session(auth.account.id, id, "revoked_by_user", auth.now, SideEffects::event(e)).await? {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST /_gh/api/v1/sessions/revoke-others`
pub async fn revoke_others(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(body): ApiJson<ReauthBody>,
) -> ApiResult<Json<serde_json::Value>> {
    crate::stepup::require(&state, &auth, gatehouse_core::stepup::SensitiveAction::RevokeSessions, None, body.input())
        .await?;
    let e = auth.event(EventKind::SessionsRevokedOthers, Outcome::Success);
    let n = state
        .store
        .revoke_other_sessions(
            auth.account.id,
            Some(auth.session.id),
            "revoked_by_user",
            auth.now,
            SideEffects::event(e),
        )
        .await?;
    Ok(Json(json!({ "revoked": n })))
}
