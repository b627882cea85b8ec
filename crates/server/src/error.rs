//! The API's error format and the one mapping from error kinds to HTTP statuses.
//!
//! Every error body is `{"error": {"code", "message", "request_id", "details"?}}` with a
//! stable `code` (documented in `docs/api-errors.md` and the OpenAPI document). Server-side
//! failures answer with an opaque `request_id` and are logged in full; clients never see SQL,
//! stack traces, keys or tokens (R99).

use std::borrow::Cow;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::store::StoreError;
use serde_json::json;

tokio::task_local! {
    /// The current request's id, set by the request-id middleware.
    pub static REQUEST_ID: String;
}

/// The current request id, or `-` outside a request.
pub fn request_id() -> String {
    REQUEST_ID.try_with(|r| r.clone()).unwrap_or_else(|_| "-".into())
}

/// Every error the API can answer with. Each variant documents when it is used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorCode {
    /// 400: the body is not valid JSON or does not match the schema.
    InvalidRequest,
    /// 400: the email address is not valid.
    InvalidEmail,
    /// 400: the password was refused by the policy; `details.reason` says why.
    WeakPassword,
    /// 400: an emailed token is unknown, used or expired.
    InvalidToken,
    /// 400: a refresh token is unknown, used, revoked or expired (OAuth's `invalid_grant`).
    InvalidGrant,
    /// 401: wrong email or password (identical for unknown, locked and disabled accounts).
    InvalidCredentials,
    /// 401: no valid access token.
    Unauthenticated,
    /// 401: the access token has expired; refresh it.
    TokenExpired,
    /// 401: the session ended (absolute or idle limit, revoked).
    SessionExpired,
    /// 401: the token was presented from another device than the one it was issued to.
    DeviceMismatch,
    /// 403: the email address has not been verified yet.
    EmailUnverified,
    /// 403: the action needs the password re-entered.
    ReauthRequired,
    /// 403: the re-entered password was wrong.
    ReauthFailed,
    /// 403: a cookie-authenticated state change came from another site.
    CsrfRejected,
    /// 400: an API-key request broke a key rule (label, scopes, allowlist, expiry, public key).
    InvalidKeyRequest,
    /// 409: the account already has the maximum number of API keys.
    KeyLimit,
    /// 403: the risk engine asks the account holder to confirm this sign-in with the link
    /// emailed to the address on file (a new device or network, no second factor enrolled).
    SignInConfirmationRequired,
    /// 403: the risk engine refused this sign-in; the owner was emailed.
    SignInRefused,
    /// 403: the risk engine refused this sensitive action; the owner was emailed.
    ActionRefused,
    /// 403: the account is frozen; only recovery can lift it.
    AccountFrozen,
    /// 409: the new email address belongs to another account.
    EmailTaken,
    /// 404: no such resource.
    NotFound,
    /// 421: the request names a host this deployment does not serve.
    MisdirectedRequest,
    /// 405: method not allowed.
    MethodNotAllowed,
    /// 413: the request body is too large.
    PayloadTooLarge,
    /// 415: the request body must be `application/json`.
    UnsupportedMediaType,
    /// 429: too many attempts; wait `Retry-After` seconds.
    RateLimited,
    /// 503: the server is shedding expensive work; retry shortly.
    Overloaded,
    /// 503: a dependency (database, Redis) is unavailable; retry later.
    Unavailable,
    /// 500: an unexpected failure; quote `request_id` to the operator.
    Internal,
    // second factors and step-up (feat/mfa)
    /// 403: the account has no second factor; enrol one before this action.
    SecondFactorRequired,
    /// 403: the action needs a step-up token (`details.action`, `details.strength`).
    StepUpRequired,
    /// 403: the step-up token is unknown, used, expired, or for another action, binding or session.
    StepUpInvalid,
    /// 403: the action (or this high-value account) needs WebAuthn; TOTP and backup codes are not enough.
    PhishingResistantRequired,
    /// 401: a second-factor code (TOTP, backup code, SMS) was wrong or malformed.
    InvalidCode,
    /// 401: the TOTP step or backup code was already used (audited and notified).
    CodeReplayed,
    /// 400: the method is not enrolled, or is too weak for this flow (SMS for step-up).
    FactorNotAllowed,
    /// 409: an active factor of that kind exists; remove it first.
    FactorExists,
    /// 409: no pending (or an expired) enrolment to confirm.
    EnrolmentNotFound,
    /// 401: the pending-login token is unknown, used or expired.
    PendingLoginInvalid,
    /// 401: a WebAuthn registration or assertion failed verification.
    WebAuthnFailed,
    /// 400: the WebAuthn ceremony is unknown, used or expired.
    CeremonyInvalid,
    /// 403: the credential was flagged (sign-counter regression) and is refused.
    CredentialFlagged,
    // --- proof of possession (issue 9) ---
    /// 400: the DPoP proof at a token endpoint (login, refresh) was refused, or a resource
    /// request carried a malformed one (`details.dpop_error` names the failed check).
    InvalidDpopProof,
    /// 400: the DPoP proof lacks the current server nonce; retry with the `DPoP-Nonce` header
    /// value (RFC 9449 §8).
    UseDpopNonce,
    /// 401: the access token is DPoP-bound and the request's proof was missing or refused, or
    /// the token was presented as `Bearer` (RFC 9449 §7); see `WWW-Authenticate`.
    DpopProofRejected,
    /// 401: the access token is bound to a client certificate that this connection did not
    /// present (RFC 8705 §3).
    CertBindingRejected,
    // --- end proof of possession ---
    // friction (issue 5)
    /// 403: security settings are locked; `details.unlock_at` when an unlock is waiting.
    SettingsLocked,
    /// 403: withdrawals are held after a security change; `details.held_until`.
    WithdrawalsHeld,
    /// 403: the destination is in the address book but its activation delay has not passed; `details.active_at`.
    AddressNotActive,
    /// 403: allowlist-only mode is on (or the entry was cancelled) and the destination is not an active address-book entry.
    AddressNotAllowlisted,
    /// 403: the asset's rolling 24 h limit would be exceeded.
    DailyLimitExceeded,
    /// 400: unknown asset, malformed amount or address, or a bad label.
    InvalidWithdrawal,
    /// 409: the `intent_hash` sent with a confirmation is not the hash of the stored intent.
    IntentMismatch,
    /// 409: the intent expired or was cancelled.
    IntentNotConfirmable,
    /// 403: the step-up proof is weaker than the action requires (`details.required`), or not bound to this intent.
    StepUpTooWeak,
    /// 403: a staff-only endpoint was called by a non-staff account.
    AdminRequired,
    /// 403: the admin console needs a session signed in with WebAuthn (a passkey or a security key).
    AdminWebAuthnRequired,
    /// 409: a recovery case cannot be approved before its waiting period ends; `details.execute_after`.
    RecoveryWaiting,
    /// 409: reviewers cannot decide their own case, and high-value cases need two different reviewers.
    ReviewerConflict,
    /// 409: the case was already executed, rejected or cancelled.
    RecoveryClosed,
    // end friction
}

impl ErrorCode {
    /// The stable code string.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InvalidRequest => "invalid_request",
            Self::InvalidEmail => "invalid_email",
            Self::WeakPassword => "weak_password",
            Self::InvalidToken => "invalid_token",
            Self::InvalidGrant => "invalid_grant",
            Self::InvalidCredentials => "invalid_credentials",
            Self::Unauthenticated => "unauthenticated",
            Self::TokenExpired => "token_expired",
            Self::SessionExpired => "session_expired",
            Self::DeviceMismatch => "device_mismatch",
            Self::EmailUnverified => "email_unverified",
            Self::ReauthRequired => "reauth_required",
            Self::ReauthFailed => "reauth_failed",
            Self::CsrfRejected => "csrf_rejected",
            Self::InvalidKeyRequest => "invalid_key_request",
            Self::KeyLimit => "key_limit",
            Self::SignInConfirmationRequired => "sign_in_confirmation_required",
            Self::SignInRefused => "sign_in_refused",
            Self::ActionRefused => "action_refused",
            Self::AccountFrozen => "account_frozen",
            Self::EmailTaken => "email_taken",
            Self::NotFound => "not_found",
            Self::MisdirectedRequest => "misdirected_request",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited => "rate_limited",
            Self::Overloaded => "overloaded",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
            // feat/mfa
            Self::SecondFactorRequired => "second_factor_required",
            Self::StepUpRequired => "step_up_required",
            Self::StepUpInvalid => "step_up_invalid",
            Self::PhishingResistantRequired => "phishing_resistant_required",
            Self::InvalidCode => "invalid_code",
            Self::CodeReplayed => "code_replayed",
            Self::FactorNotAllowed => "factor_not_allowed",
            Self::FactorExists => "factor_exists",
            Self::EnrolmentNotFound => "enrolment_not_found",
            Self::PendingLoginInvalid => "pending_login_invalid",
            Self::WebAuthnFailed => "webauthn_failed",
            Self::CeremonyInvalid => "ceremony_invalid",
            Self::CredentialFlagged => "credential_flagged",
            // proof of possession (issue 9)
            Self::InvalidDpopProof => "invalid_dpop_proof",
            Self::UseDpopNonce => "use_dpop_nonce",
            Self::DpopProofRejected => "dpop_proof_rejected",
            Self::CertBindingRejected => "cert_binding_rejected",
            // friction (issue 5)
            Self::SettingsLocked => "settings_locked",
            Self::WithdrawalsHeld => "withdrawals_held",
            Self::AddressNotActive => "address_not_active",
            Self::AddressNotAllowlisted => "address_not_allowlisted",
            Self::DailyLimitExceeded => "daily_limit_exceeded",
            Self::InvalidWithdrawal => "invalid_withdrawal",
            Self::IntentMismatch => "intent_mismatch",
            Self::IntentNotConfirmable => "intent_not_confirmable",
            Self::StepUpTooWeak => "step_up_too_weak",
            Self::AdminRequired => "admin_required",
            Self::AdminWebAuthnRequired => "admin_webauthn_required",
            Self::RecoveryWaiting => "recovery_waiting",
            Self::ReviewerConflict => "reviewer_conflict",
            Self::RecoveryClosed => "recovery_closed",
            // end friction
        }
    }

    /// The HTTP status for this code.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::InvalidRequest
            | Self::InvalidEmail
            | Self::WeakPassword
            | Self::InvalidToken
            | Self::InvalidGrant
            | Self::InvalidKeyRequest => StatusCode::BAD_REQUEST,
            Self::KeyLimit | Self::EmailTaken => StatusCode::CONFLICT,
            Self::InvalidCredentials
            | Self::Unauthenticated
            | Self::TokenExpired
            | Self::SessionExpired
            | Self::DeviceMismatch => StatusCode::UNAUTHORIZED,
            Self::EmailUnverified
            | Self::ReauthRequired
            | Self::ReauthFailed
            | Self::CsrfRejected
            | Self::SignInConfirmationRequired
            | Self::SignInRefused
            | Self::ActionRefused
            | Self::AccountFrozen => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MisdirectedRequest => StatusCode::MISDIRECTED_REQUEST,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            Self::Overloaded | Self::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            // feat/mfa
            Self::SecondFactorRequired => StatusCode::FORBIDDEN,
            Self::StepUpRequired => StatusCode::FORBIDDEN,
            Self::StepUpInvalid => StatusCode::FORBIDDEN,
            Self::PhishingResistantRequired => StatusCode::FORBIDDEN,
            Self::InvalidCode => StatusCode::UNAUTHORIZED,
            Self::CodeReplayed => StatusCode::UNAUTHORIZED,
            Self::FactorNotAllowed => StatusCode::BAD_REQUEST,
            Self::FactorExists => StatusCode::CONFLICT,
            Self::EnrolmentNotFound => StatusCode::CONFLICT,
            Self::PendingLoginInvalid => StatusCode::UNAUTHORIZED,
            Self::WebAuthnFailed => StatusCode::UNAUTHORIZED,
            Self::CeremonyInvalid => StatusCode::BAD_REQUEST,
            Self::CredentialFlagged => StatusCode::FORBIDDEN,
            // proof of possession (issue 9)
            Self::InvalidDpopProof | Self::UseDpopNonce => StatusCode::BAD_REQUEST,
            Self::DpopProofRejected | Self::CertBindingRejected => StatusCode::UNAUTHORIZED,
            // friction (issue 5)
            Self::SettingsLocked => StatusCode::FORBIDDEN,
            Self::WithdrawalsHeld => StatusCode::FORBIDDEN,
            Self::AddressNotActive => StatusCode::FORBIDDEN,
            Self::AddressNotAllowlisted => StatusCode::FORBIDDEN,
            Self::DailyLimitExceeded => StatusCode::FORBIDDEN,
            Self::InvalidWithdrawal => StatusCode::BAD_REQUEST,
            Self::IntentMismatch => StatusCode::CONFLICT,
            Self::IntentNotConfirmable => StatusCode::CONFLICT,
            Self::StepUpTooWeak => StatusCode::FORBIDDEN,
            Self::AdminRequired | Self::AdminWebAuthnRequired => StatusCode::FORBIDDEN,
            Self::RecoveryWaiting => StatusCode::CONFLICT,
            Self::ReviewerConflict => StatusCode::CONFLICT,
            Self::RecoveryClosed => StatusCode::CONFLICT,
            // end friction
        }
    }

    /// The default human message.
    pub fn default_message(&self) -> &'static str {
        match self {
            Self::InvalidRequest => "The request is malformed.",
            Self::InvalidEmail => "That is not a valid email address.",
            Self::WeakPassword => "That password is not allowed.",
            Self::InvalidToken => "This link is invalid or has expired.",
            Self::InvalidGrant => "The refresh token is invalid.",
            Self::InvalidCredentials => "Invalid email or password.",
            Self::Unauthenticated => "Authentication required.",
            Self::TokenExpired => "The access token has expired.",
            Self::SessionExpired => "The session has ended. Sign in again.",
            Self::DeviceMismatch => "This session belongs to another device.",
            Self::EmailUnverified => "Verify your email address first.",
            Self::ReauthRequired => "Enter your password to continue.",
            Self::ReauthFailed => "The password is incorrect.",
            Self::CsrfRejected => "Cross-site request refused.",
            Self::InvalidKeyRequest => "The API key request is not valid.",
            Self::KeyLimit => "This account already has the maximum number of API keys.",
            Self::SignInConfirmationRequired => {
                "We do not recognise this device. Confirm the sign-in with the link we emailed you, then sign in again."
            }
            Self::SignInRefused => "This sign-in was refused for your security. We have emailed the account owner.",
            Self::ActionRefused => "This action was refused for your security. We have emailed the account owner.",
            Self::AccountFrozen => "This account is frozen to protect it. Recover it to make changes.",
            Self::EmailTaken => "That email address belongs to another account.",
            Self::NotFound => "Not found.",
            Self::MisdirectedRequest => "This server does not serve that host.",
            Self::MethodNotAllowed => "Method not allowed.",
            Self::PayloadTooLarge => "The request body is too large.",
            Self::UnsupportedMediaType => "Send the body as application/json.",
            Self::RateLimited => "Too many attempts. Try again later.",
            Self::Overloaded => "The server is busy. Try again shortly.",
            Self::Unavailable => "The service is temporarily unavailable.",
            Self::Internal => "Internal error.",
            // feat/mfa
            Self::SecondFactorRequired => "Enrol a second factor (authenticator app or security key) first.",
            Self::StepUpRequired => "Confirm with a second factor first.",
            Self::StepUpInvalid => "The step-up token is invalid, used, expired or for another action.",
            Self::PhishingResistantRequired => "This action needs a security key or passkey.",
            Self::InvalidCode => "The code is incorrect.",
            Self::CodeReplayed => "This code was already used.",
            Self::FactorNotAllowed => "That factor cannot be used here.",
            Self::FactorExists => "That factor is already enrolled.",
            Self::EnrolmentNotFound => "There is no pending enrolment; start again.",
            Self::PendingLoginInvalid => "The sign-in attempt expired. Sign in again.",
            Self::WebAuthnFailed => "The security key could not be verified.",
            Self::CeremonyInvalid => "The security-key request expired. Try again.",
            Self::CredentialFlagged => "This security key was disabled after a suspected clone.",
            // proof of possession (issue 9)
            Self::InvalidDpopProof => "The DPoP proof was refused.",
            Self::UseDpopNonce => "Send a DPoP proof with the server nonce from the DPoP-Nonce header.",
            Self::DpopProofRejected => "This token needs a valid DPoP proof made with its key.",
            Self::CertBindingRejected => "This token is bound to another client certificate.",
            // friction (issue 5)
            Self::SettingsLocked => {
                "Security settings are locked; unlock them first (the unlock takes effect after a waiting period)."
            }
            Self::WithdrawalsHeld => "Withdrawals are held after a recent security change.",
            Self::AddressNotActive => "This withdrawal address is not active yet.",
            Self::AddressNotAllowlisted => "Withdrawals may only go to active addresses in your address book.",
            Self::DailyLimitExceeded => "This withdrawal would exceed the daily limit.",
            Self::InvalidWithdrawal => "The withdrawal request is not valid.",
            Self::IntentMismatch => "The confirmation does not match the withdrawal's details.",
            Self::IntentNotConfirmable => "This withdrawal can no longer be confirmed.",
            Self::StepUpTooWeak => "This action needs a stronger verification.",
            Self::AdminRequired => "This needs a staff account.",
            Self::AdminWebAuthnRequired => "The admin console needs a sign-in with a passkey or security key.",
            Self::RecoveryWaiting => "The recovery waiting period has not passed.",
            Self::ReviewerConflict => "A different reviewer must decide.",
            Self::RecoveryClosed => "This recovery case is closed.",
            // end friction
        }
    }

    /// Every code, for documentation and tests.
    pub const ALL: [ErrorCode; 61] = [
        Self::InvalidRequest,
        Self::InvalidEmail,
        Self::WeakPassword,
        Self::InvalidToken,
        Self::InvalidGrant,
        Self::InvalidCredentials,
        Self::Unauthenticated,
        Self::TokenExpired,
        Self::SessionExpired,
        Self::DeviceMismatch,
        Self::EmailUnverified,
        Self::ReauthRequired,
        Self::ReauthFailed,
        Self::CsrfRejected,
        Self::InvalidKeyRequest,
        Self::KeyLimit,
        Self::SignInConfirmationRequired,
        Self::SignInRefused,
        Self::ActionRefused,
        Self::AccountFrozen,
        Self::EmailTaken,
        Self::NotFound,
        Self::MisdirectedRequest,
        Self::MethodNotAllowed,
        Self::PayloadTooLarge,
        Self::UnsupportedMediaType,
        Self::RateLimited,
        Self::Overloaded,
        Self::Unavailable,
        Self::Internal,
        // feat/mfa
        Self::SecondFactorRequired,
        Self::StepUpRequired,
        Self::StepUpInvalid,
        Self::PhishingResistantRequired,
        Self::InvalidCode,
        Self::CodeReplayed,
        Self::FactorNotAllowed,
        Self::FactorExists,
        Self::EnrolmentNotFound,
        Self::PendingLoginInvalid,
        Self::WebAuthnFailed,
        Self::CeremonyInvalid,
        Self::CredentialFlagged,
        // proof of possession (issue 9)
        Self::InvalidDpopProof,
        Self::UseDpopNonce,
        Self::DpopProofRejected,
        Self::CertBindingRejected,
        // friction (issue 5)
        Self::SettingsLocked,
        Self::WithdrawalsHeld,
        Self::AddressNotActive,
        Self::AddressNotAllowlisted,
        Self::DailyLimitExceeded,
        Self::InvalidWithdrawal,
        Self::IntentMismatch,
        Self::IntentNotConfirmable,
        Self::StepUpTooWeak,
        Self::AdminRequired,
        Self::AdminWebAuthnRequired,
        Self::RecoveryWaiting,
        Self::ReviewerConflict,
        Self::RecoveryClosed,
        // end friction
    ];
}

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// What went wrong.
    pub code: ErrorCode,
    /// Message for humans (defaults to the code's).
    pub message: Cow<'static, str>,
    /// Structured extras (`reason` for weak passwords).
    pub details: Option<serde_json::Value>,
    /// `Retry-After` seconds, for 429 and 503.
    pub retry_after: Option<i64>,
    /// A `WWW-Authenticate` challenge (proof of possession, issue 9: `DPoP error=…`).
    pub challenge: Option<String>,
}

impl ApiError {
    /// An error with the code's default message.
    pub fn new(code: ErrorCode) -> Self {
        let message = Cow::Borrowed(code.default_message());
        let retry_after = match code {
            ErrorCode::Overloaded => Some(1),
            ErrorCode::Unavailable => Some(5),
            _ => None,
        };
        Self { code, message, details: None, retry_after, challenge: None }
    }

    /// Replaces the message.
    pub fn message(mut self, m: impl Into<Cow<'static, str>>) -> Self {
        self.message = m.into();
        self
    }

    /// Adds details.
    pub fn details(mut self, d: serde_json::Value) -> Self {
        self.details = Some(d);
        self
    }

    /// Sets `Retry-After`.
    pub fn retry_after(mut self, secs: i64) -> Self {
        self.retry_after = Some(secs.max(1));
        self
    }

    /// An internal failure: logged with the request id, answered opaquely.
    pub fn internal(context: &str, err: impl std::fmt::Display) -> Self {
        tracing::error!(request_id = %request_id(), context, error = %err, "internal error");
        Self::new(ErrorCode::Internal)
    }
}

impl From<ErrorCode> for ApiError {
    fn from(code: ErrorCode) -> Self {
        Self::new(code)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(m) => {
                tracing::warn!(request_id = %request_id(), error = %m, "store unavailable");
                Self::new(ErrorCode::Unavailable)
            }
            StoreError::Conflict => Self::internal("store", "unexpected conflict"),
            other => Self::internal("store", other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut err = json!({
            "code": self.code.as_str(),
            "message": self.message,
            "request_id": request_id(),
        });
        if let (Some(d), Some(obj)) = (self.details, err.as_object_mut()) {
            obj.insert("details".into(), d);
        }
        let mut resp = (self.code.status(), axum::Json(json!({ "error": err }))).into_response();
        if let Some(v) = self.retry_after.and_then(|s| HeaderValue::from_str(&s.to_string()).ok()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        // proof of possession (issue 9)
        if let Some(v) = self.challenge.and_then(|c| HeaderValue::from_str(&c).ok()) {
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        resp
    }
}

/// Handler result.
pub type ApiResult<T> = Result<T, ApiError>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_code_has_a_unique_name_a_status_and_a_message() {
        let names: HashSet<_> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::ALL.len());
        for c in ErrorCode::ALL {
            assert!(c.status().is_client_error() || c.status().is_server_error(), "{c:?}");
            assert!(!c.default_message().is_empty());
        }
        assert_eq!(ErrorCode::InvalidCredentials.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(ErrorCode::PayloadTooLarge.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(ErrorCode::Overloaded.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(ErrorCode::RateLimited.status(), StatusCode::TOO_MANY_REQUESTS);
    }

    #[test]
    fn every_code_is_documented() {
        let doc = include_str!("../../../docs/api-errors.md");
        for c in ErrorCode::ALL {
            let row = format!("| `{}` | {} |", c.as_str(), c.status().as_u16());
            assert!(doc.contains(&row), "docs/api-errors.md lacks the row {row}");
        }
    }

    #[test]
    fn store_errors_never_leak_their_text() {
        let e: ApiError = StoreError::Other("SELECT secret FROM x".into()).into();
        assert_eq!(e.code, ErrorCode::Internal);
        assert!(!e.message.contains("SELECT"));
        let e: ApiError = StoreError::Unavailable("pg down".into()).into();
        assert_eq!((e.code, e.retry_after), (ErrorCode::Unavailable, Some(5)));
    }
}
