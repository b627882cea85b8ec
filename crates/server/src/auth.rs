//! The authenticated-request extractor: who is signed in, on which session, from which device.
//!
//! Order of checks: token present (bearer or cookie, never both) → token known (by SHA-256,
//! compared in constant time by the store) → token not expired → session live (not revoked,
//! within absolute and idle limits) → presented from the bound device (mismatch is refused and
//! audited) → account active → CSRF for cookie-authenticated state changes. Every failure
//! is a denial; a store that does not answer is a 503.

use axum::extract::FromRequestParts;
use axum::http::{header, request::Parts};
use gatehouse_core::account::{Account, AccountStatus};
use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::clock::Timestamp;
use gatehouse_core::secret::Token;
use gatehouse_core::session::{Session, SessionRejection};

use crate::error::{ApiError, ErrorCode, request_id};
use crate::http::{COOKIE_ACCESS, ClientCtx, cookie, csrf_ok};
use crate::state::AppState;

/// How the access token arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `__Host-gh_at` cookie.
    Cookie,
    /// `Authorization: Bearer`.
    Bearer,
    /// `Authorization: DPoP` with a `DPoP` proof (issue 9, RFC 9449 §7.1).
    Dpop,
}

/// A signed-in caller.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// The session.
    pub session: Session,
    /// Its account.
    pub account: Account,
    /// Cookie or bearer.
    pub via: Via,
    /// The caller's context.
    pub client: ClientCtx,
    /// When this request was authenticated.
    pub now: Timestamp,
}

fn bearer(parts: &Parts) -> Result<Option<(&str, Via)>, ApiError> {
    let mut values = parts.headers.get_all(header::AUTHORIZATION).iter();
    let Some(v) = values.next() else { return Ok(None) };
    if values.next().is_some() {
        return Err(ApiError::new(ErrorCode::InvalidRequest).message("Send one Authorization header."));
    }
    let v = v.to_str().map_err(|_| ApiError::new(ErrorCode::Unauthenticated))?;
    match v.split_once(' ') {
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => Ok(Some((t.trim(), Via::Bearer))),
        Some((scheme, t)) if scheme.eq_ignore_ascii_case("dpop") => Ok(Some((t.trim(), Via::Dpop))),
        _ => Err(ApiError::new(ErrorCode::Unauthenticated)),
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let client = ClientCtx::from_parts(parts, &state.trusted_proxies);
        let from_bearer = bearer(parts)?;
        let from_cookie = cookie(&parts.headers, COOKIE_ACCESS);
        let (raw, via) = match (from_bearer, from_cookie) {
            (Some(_), Some(_)) => {
                return Err(ApiError::new(ErrorCode::InvalidRequest).message("Send the token in one place only."));
            }
            (Some((t, via)), None) => (t, via),
            (None, Some(t)) => (t, Via::Cookie),
            (None, None) => return Err(ApiError::new(ErrorCode::Unauthenticated)),
        };
        let token = Token::parse(raw).ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
        let now = state.clock.now();
        let gatehouse_core::store::AccessRecord { session, expires_at, account, binding } =
            state.store.find_by_access(token.hash()).await?.ok_or_else(|| ApiError::new(ErrorCode::Unauthenticated))?;
        if now >= expires_at {
            return Err(ApiError::new(ErrorCode::TokenExpired));
        }
        match session.check(now, &state.config.session, account.is_admin) {
            Ok(()) => {}
            Err(SessionRejection::Revoked) => return Err(ApiError::new(ErrorCode::Unauthenticated)),
            Err(_) => return Err(ApiError::new(ErrorCode::SessionExpired)),
        }
        if session.check_device(client.device.as_ref(), &client.ua_family.key()).is_err() {
            let mut e = AuditEvent::new(EventKind::SessionDeviceMismatch, Outcome::Denied).about(account.id);
            e.ip = Some(client.ip.to_string());
            e.request_id = Some(request_id());
            let e = e
                .with("session", session.id.to_string())
                .with("presented_family", client.ua_family.key())
                .with("bound_family", session.ua_family.clone());
            state.store.append(vec![e]).await?;
            return Err(ApiError::new(ErrorCode::DeviceMismatch));
        }
        if account.status != AccountStatus::Active {
            return Err(ApiError::new(ErrorCode::Unauthenticated));
        }
        // Proof of possession (issue 9): bound tokens need their key or certificate.
        crate::pop::check_access(state, parts, &session, binding.as_ref(), raw, via, &client).await?;
        if via == Via::Cookie && !csrf_ok(&parts.method, &parts.headers, &state.config.server.public_origin) {
            return Err(ApiError::new(ErrorCode::CsrfRejected));
        }
        if session.needs_touch(now) {
            state.store.touch_session(session.id, now, &client.ip.to_string()).await?;
        }
        Ok(Self { session, account, via, client, now })
    }
}

impl Authenticated {
    /// An audit event about this caller's own account, with IP and request id filled in.
    pub fn event(&self, kind: EventKind, outcome: Outcome) -> AuditEvent {
        let mut e = AuditEvent::new(kind, outcome).by_user(self.account.id);
        e.ip = Some(self.client.ip.to_string());
        e.request_id = Some(request_id());
        e.with("session", self.session.id.to_string())
    }
}
