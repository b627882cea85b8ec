//! Server-rendered pages for people, under `/_gh/…` (issue 7).
//!
//! Invariants:
//! - **One code path.** A page handler never re-implements a rule: it calls the JSON API's own
//!   handler in process ([`api`]) and renders its answer, so throttling, audit events, mail and
//!   the transaction boundaries are the API's, byte for byte (ADR 0009).
//! - **No JavaScript needed.** Every flow is an HTML form; static script (WebAuthn only) lives
//!   in `/_gh/assets/` because the CSP forbids inline script.
//! - **CSRF.** Cookie-authenticated posts go through [`crate::auth::Authenticated`], which
//!   refuses cross-site state changes (`Sec-Fetch-Site` / `Origin`, R50); the unauthenticated
//!   forms (login, register, verify) apply the same check, so login CSRF is refused too.
//! - **Accessible forms.** Every control has a `<label>`; an error is rendered next to its field
//!   and tied to it with `aria-describedby` and `aria-invalid` ([`form::Field`]).
//! - **No reflection of free text.** Notices travel as fixed keys (`?notice=signed_out`), never
//!   as text in the URL; templates are auto-escaped (askama).
//!
//! Adding a page: a template under `crates/server/templates/` that extends `base.html`, a
//! struct deriving `askama::Template` with a `layout: Layout` field, a handler that calls the
//! API handler and [`render`]s, and one line in [`router`].

pub mod account;
pub mod admin; // admin console (feat/admin)
pub mod api;
pub mod api_keys;
pub mod assets;
pub mod confirm;
pub mod factors;
pub mod form;
pub mod phishing;
pub mod proof;
pub mod protection;
pub mod recover;
pub mod security;
pub mod session;

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};

use crate::error::{ApiError, ErrorCode, request_id};
use crate::state::AppState;

pub use session::Signed;

/// The Content-Security-Policy of every page: no inline script or style, nothing from other
/// origins, forms post only to us, no framing (R51).
pub const PAGE_CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Builds the page routes; `app` merges them into the main router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/_gh/assets/{name}", get(assets::serve))
        .route("/_gh/register", get(account::register_page).post(account::register))
        .route("/_gh/verify-email", get(account::verify_page).post(account::verify))
        .route("/_gh/login", get(account::login_page).post(account::login))
        .route("/_gh/login/second-factor", post(account::second_factor))
        .route("/_gh/logout", post(account::logout))
        .route("/_gh/confirm-sign-in", get(confirm::page).post(confirm::confirm))
        .route("/_gh/account/security", get(security::overview))
        .route("/_gh/account/password", post(security::change_password))
        .route("/_gh/account/devices", get(security::devices))
        .route("/_gh/account/devices/revoke-others", post(security::revoke_others))
        .route("/_gh/account/devices/{id}/revoke", post(security::revoke_device))
        .route("/_gh/account/history", get(security::history))
        .route("/_gh/account/factors", get(factors::list))
        .route("/_gh/account/factors/totp", post(factors::totp_start))
        .route("/_gh/account/factors/totp/confirm", post(factors::totp_confirm))
        .route("/_gh/account/factors/totp/remove", post(factors::totp_remove))
        .route("/_gh/account/factors/keys/{id}/remove", post(factors::key_remove))
        .route("/_gh/account/backup-codes", post(factors::regenerate))
        .route("/_gh/account/api-keys", get(api_keys::list).post(api_keys::create))
        .route("/_gh/account/api-keys/{id}", get(api_keys::detail))
        .route("/_gh/account/api-keys/{id}/{action}", post(api_keys::act))
        .route("/_gh/account/protection", get(protection::page))
        .route("/_gh/account/settings-lock", post(protection::lock))
        .route("/_gh/account/settings-lock/unlock", post(protection::unlock))
        .route("/_gh/account/settings-lock/cancel", post(protection::cancel_unlock))
        .route("/_gh/account/anti-phishing-code", post(protection::set_code))
        .route("/_gh/account/withdrawal-addresses", get(protection::addresses).post(protection::add_address))
        .route("/_gh/account/withdrawal-addresses/{id}/cancel", post(protection::cancel_address))
        .route("/_gh/recover", get(recover::page))
        .route("/_gh/recover/reset", post(recover::request_reset))
        .route("/_gh/recover/case", post(recover::open_case))
        .route("/_gh/official", get(phishing::official))
        .route("/_gh/check-url", get(phishing::check_url))
        .merge(admin::router()) // admin console (feat/admin)
        .layer(axum::middleware::from_fn(api::carry_cookies))
}

/// What every page's layout needs: the title, who is signed in, and a one-line notice.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// The page title (also the `<h1>`).
    pub title: String,
    /// The signed-in account's address, when there is one (shows the account navigation).
    pub user: Option<String>,
    /// A status notice shown above the content.
    pub notice: Option<&'static str>,
    /// The navigation entry to mark as current.
    pub section: &'static str,
}

impl Layout {
    /// A layout for a page nobody needs to be signed in for.
    pub fn public(title: impl Into<String>) -> Self {
        Self { title: title.into(), ..Self::default() }
    }

    /// A layout for a signed-in page.
    pub fn signed(title: impl Into<String>, who: &Signed, section: &'static str) -> Self {
        Self { title: title.into(), user: Some(who.0.account.email.as_str().to_owned()), notice: None, section }
    }

    /// Adds the notice named by `key` (unknown keys show nothing).
    pub fn with_notice(mut self, key: Option<&str>) -> Self {
        self.notice = key.and_then(notice_text);
        self
    }
}

/// The fixed texts behind `?notice=` keys.
pub fn notice_text(key: &str) -> Option<&'static str> {
    Some(match key {
        "signed_out" => "You are signed out.",
        "signed_in_again" => "Your session ended. Sign in again to continue.",
        "device_revoked" => "The device was signed out.",
        "others_revoked" => "Every other device was signed out.",
        "password_changed" => "Your password was changed and your other devices were signed out.",
        "key_revoked" => "The API key was revoked.",
        "key_unlocked" => "Withdrawals are unlocked for this API key.",
        "allowlist_changed" => "The IP allowlist was updated.",
        "totp_enabled" => "Your authenticator app is on.",
        "totp_removed" => "The authenticator app was removed.",
        "key_added" => "Your security key was added.",
        "key_removed" => "The security key was removed.",
        "settings_locked" => "Your security settings are locked.",
        "unlock_scheduled" => {
            "The settings will unlock after the waiting period. We have emailed you a link to cancel."
        }
        "unlock_cancelled" => "The unlock was cancelled; your settings stay locked.",
        "code_saved" => "Your anti-phishing code was saved.",
        "address_added" => "The address was added. It becomes usable after the waiting period.",
        "address_cancelled" => "The address was removed.",
        _ => return None,
    })
}

/// Renders a template as a page with the page CSP.
pub fn render(status: StatusCode, page: &impl askama::Template) -> Response {
    match page.render() {
        Ok(html) => (status, [(header::CONTENT_SECURITY_POLICY, PAGE_CSP)], Html(html)).into_response(),
        Err(e) => ApiError::internal("template", e).into_response(),
    }
}

/// A `303 See Other` to `to`, carrying `headers` (cookies) along.
pub fn see_other(to: &str, headers: HeaderMap) -> Response {
    let mut resp = (StatusCode::SEE_OTHER, headers).into_response();
    if let Ok(v) = HeaderValue::from_str(to) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// A page with a heading, a paragraph and an optional link.
#[derive(askama::Template)]
#[template(path = "message.html")]
pub struct MessagePage {
    /// Layout.
    pub layout: Layout,
    /// The paragraph.
    pub text: String,
    /// An optional follow-up link (href, text).
    pub link: Option<(String, String)>,
    /// An id for the paragraph, so tests and assistive tech can find it.
    pub kind: &'static str,
}

/// Renders an API error as a page: its status, its human message, and the request id for
/// server errors (never internals).
pub fn error_page(e: &ApiError, user: Option<String>) -> Response {
    let mut text = e.message.to_string();
    if e.code.status().is_server_error() {
        text.push_str(&format!(" (Reference: {}.)", request_id()));
    }
    let title = match e.code {
        ErrorCode::NotFound => "Not found",
        ErrorCode::CsrfRejected => "Request refused",
        ErrorCode::RateLimited => "Too many attempts",
        _ if e.code.status().is_server_error() => "Something went wrong",
        _ => "That did not work",
    };
    let page =
        MessagePage { layout: Layout { user, ..Layout::public(title) }, text, link: None, kind: e.code.as_str() };
    render(e.code.status(), &page)
}

/// Formats an RFC 3339 instant for people (`2026-11-29 18:50 UTC`).
pub fn when(rfc3339: &str) -> String {
    match (rfc3339.get(..10), rfc3339.get(11..16)) {
        (Some(d), Some(t)) => format!("{d} {t} UTC"),
        _ => rfc3339.to_owned(),
    }
}

/// Whether a `next=` target is one of our own account pages (no open redirect).
pub fn is_safe_next(next: &str) -> bool {
    next.starts_with("/_gh/account/")
        && next.len() <= 200
        && next.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-_".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_targets_stay_on_our_account_pages() {
        assert!(is_safe_next("/_gh/account/devices"));
        for bad in ["//evil.example", "https://evil.example", "/_gh/account/../../x", "/_gh/login", "/_gh/account/a?b"]
        {
            assert!(!is_safe_next(bad), "{bad}");
        }
    }

    #[test]
    fn notices_are_fixed_texts() {
        assert_eq!(notice_text("signed_out"), Some("You are signed out."));
        assert_eq!(notice_text("<script>"), None);
    }

    #[test]
    fn instants_read_well() {
        assert_eq!(when("2026-11-29T18:50:16.123Z"), "2026-11-29 18:50 UTC");
        assert_eq!(when("x"), "x");
    }
}
