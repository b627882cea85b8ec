//! Register, verify the email address, sign in and sign out.

use axum::extract::{Query, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::password::policy::MIN_CODE_POINTS;
use serde::Deserialize;
use serde_json::json;

use super::form::{Field, PageForm, cross_site, message};
use super::{Layout, Signed, api, error_page, is_safe_next, render, see_other};
use crate::error::ErrorCode;
use crate::http::ClientCtx;
use crate::routes;
use crate::state::AppState;

/// Query of the public pages: an optional notice key and where to go after signing in.
#[derive(Debug, Default, Deserialize)]
pub struct PublicQuery {
    #[serde(default)]
    notice: Option<String>,
    #[serde(default)]
    next: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

/// The registration form.
#[derive(askama::Template)]
#[template(path = "register.html")]
pub struct RegisterPage {
    layout: Layout,
    email: Field,
    password: Field,
}

impl RegisterPage {
    fn new() -> Self {
        Self {
            layout: Layout::public("Create your account"),
            email: Field::new("email", "Email address", "email", "email"),
            password: Field::new("password", "Password", "password", "new-password").hint(format!(
                "At least {MIN_CODE_POINTS} characters. A few unrelated words are easy to remember and hard to guess."
            )),
        }
    }
}

/// Body of the registration form.
#[derive(Debug, Deserialize)]
pub struct RegisterForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

/// `GET /_gh/register`
pub async fn register_page() -> Response {
    render(StatusCode::OK, &RegisterPage::new())
}

/// `POST /_gh/register`: the API's registration; the answer never says whether the address
/// already had an account (R84).
pub async fn register(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    client: ClientCtx,
    PageForm(f): PageForm<RegisterForm>,
) -> Response {
    if let Some(r) = cross_site(&state, &method, &headers) {
        return r;
    }
    let result = match api::body(json!({ "email": f.email, "password": f.password })) {
        Ok(b) => api::answer(routes::accounts::register(State(state), client, b).await).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => message(
            StatusCode::ACCEPTED,
            "Check your email",
            "verification_sent",
            "If this address can be registered, we have sent it a verification link. Open it to finish.",
            None,
        ),
        Err(e) => {
            let mut page = RegisterPage::new();
            page.email = page.email.value(f.email.chars().take(254).collect::<String>());
            match e.code {
                ErrorCode::InvalidEmail => page.email = page.email.error(e.message),
                ErrorCode::WeakPassword | ErrorCode::PayloadTooLarge | ErrorCode::InvalidRequest => {
                    page.password = page.password.error(e.message)
                }
                _ => return error_page(&e, None),
            }
            render(e.code.status(), &page)
        }
    }
}

/// The page behind the emailed link: a button, so mail scanners that prefetch links cannot
/// use the token up.
#[derive(askama::Template)]
#[template(path = "verify_email.html")]
pub struct VerifyPage {
    layout: Layout,
    token: String,
}

/// `GET /_gh/verify-email?token=…`
pub async fn verify_page(Query(q): Query<PublicQuery>) -> Response {
    let token: String = q
        .token
        .unwrap_or_default()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(64)
        .collect();
    render(StatusCode::OK, &VerifyPage { layout: Layout::public("Verify your email address"), token })
}

/// Body of the verification form.
#[derive(Debug, Deserialize)]
pub struct VerifyForm {
    #[serde(default)]
    token: String,
}

/// `POST /_gh/verify-email`
pub async fn verify(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    client: ClientCtx,
    PageForm(f): PageForm<VerifyForm>,
) -> Response {
    if let Some(r) = cross_site(&state, &method, &headers) {
        return r;
    }
    let result = match api::body(json!({ "token": f.token })) {
        Ok(b) => api::answer(routes::accounts::verify_email(State(state), client, b).await).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(_) => message(
            StatusCode::OK,
            "Email address verified",
            "verified",
            "Your email address is verified. You can sign in now.",
            Some(("/_gh/login", "Sign in")),
        ),
        Err(e) if matches!(e.code, ErrorCode::InvalidToken | ErrorCode::InvalidRequest) => message(
            StatusCode::BAD_REQUEST,
            "Link not valid",
            "invalid_token",
            "This link is invalid, already used or has expired.",
            None,
        ),
        Err(e) => error_page(&e, None),
    }
}

/// The sign-in form.
#[derive(askama::Template)]
#[template(path = "login.html")]
pub struct LoginPage {
    layout: Layout,
    email: Field,
    password: Field,
    next: String,
    error: Option<String>,
}

impl LoginPage {
    fn new(next: Option<String>) -> Self {
        Self {
            layout: Layout::public("Sign in"),
            email: Field::new("email", "Email address", "email", "username"),
            password: Field::new("password", "Password", "password", "current-password"),
            next: next.filter(|n| is_safe_next(n)).unwrap_or_default(),
            error: None,
        }
    }
}

/// `GET /_gh/login`
pub async fn login_page(Query(q): Query<PublicQuery>) -> Response {
    let mut page = LoginPage::new(q.next);
    page.layout = page.layout.with_notice(q.notice.as_deref());
    render(StatusCode::OK, &page)
}

/// Body of the sign-in form.
#[derive(Debug, Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /_gh/login`: the API's password login with a browser session (`__Host-` cookies).
pub async fn login(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    client: ClientCtx,
    pop: crate::pop::PopCtx,
    PageForm(f): PageForm<LoginForm>,
) -> Response {
    if let Some(r) = cross_site(&state, &method, &headers) {
        return r;
    }
    let req = json!({ "email": f.email, "password": f.password, "session_type": "browser" });
    let result = match api::body(req) {
        Ok(b) => api::answer(routes::sessions::login(State(state), client, pop, b).await).await,
        Err(e) => Err(e),
    };
    let mut page = LoginPage::new(f.next);
    match result {
        Ok(a) if api::text(&a.body, "status") == "second_factor_required" => {
            let mut p = second_factor_page(&api::text(&a.body, "pending_token"), &page.next);
            p.webauthn = api::strings(&a.body, "methods").iter().any(|m| m == "webauthn");
            render(StatusCode::OK, &p)
        }
        Ok(a) => {
            let to = if page.next.is_empty() { "/_gh/account/security" } else { page.next.as_str() };
            see_other(to, a.cookies)
        }
        Err(e) => {
            page.email = page.email.value(f.email.chars().take(254).collect::<String>());
            match e.code {
                // One message for every credential failure (R16): the form-level error.
                ErrorCode::InvalidCredentials
                | ErrorCode::EmailUnverified
                | ErrorCode::RateLimited
                | ErrorCode::SignInConfirmationRequired
                | ErrorCode::SignInRefused
                | ErrorCode::AccountFrozen => {
                    page.error = Some(e.message.to_string());
                }
                ErrorCode::PayloadTooLarge | ErrorCode::InvalidRequest => {
                    page.password = page.password.error(e.message);
                }
                _ => return error_page(&e, None),
            }
            let mut resp = render(e.code.status(), &page);
            if let Some(secs) = e.retry_after
                && let Ok(v) = axum::http::HeaderValue::from_str(&secs.to_string())
            {
                resp.headers_mut().insert(axum::http::header::RETRY_AFTER, v);
            }
            resp
        }
    }
}

/// `POST /_gh/logout`: ends this session everywhere at once and clears the cookies.
pub async fn logout(State(state): State<AppState>, who: Signed) -> Response {
    match api::answer(routes::sessions::logout(State(state), who.0).await).await {
        Ok(a) => see_other("/_gh/login?notice=signed_out", a.cookies),
        Err(e) => error_page(&e, None),
    }
    .into_response()
}

/// The second step of signing in (an account with a second factor).
#[derive(askama::Template)]
#[template(path = "login_second_factor.html")]
pub struct SecondFactorPage {
    layout: Layout,
    pending_token: String,
    next: String,
    code: Field,
    error: Option<String>,
    webauthn: bool,
}

fn second_factor_page(token: &str, next: &str) -> SecondFactorPage {
    SecondFactorPage {
        layout: Layout::public("Enter your code"),
        pending_token: token.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').take(64).collect(),
        next: if is_safe_next(next) { next.to_owned() } else { String::new() },
        code: Field::new("code", "Authentication code", "text", "one-time-code")
            .hint("The 6-digit code from your authenticator app, or one of your backup codes."),
        error: None,
        webauthn: true,
    }
}

/// Body of the second-step form.
#[derive(Debug, Deserialize)]
pub struct SecondFactorForm {
    #[serde(default)]
    pending_token: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    next: Option<String>,
}

/// `POST /_gh/login/second-factor`: the API's second step; the session starts only here.
pub async fn second_factor(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    client: ClientCtx,
    pop: crate::pop::PopCtx,
    PageForm(f): PageForm<SecondFactorForm>,
) -> Response {
    if let Some(r) = cross_site(&state, &method, &headers) {
        return r;
    }
    let code = f.code.trim();
    let req = json!({ "pending_token": f.pending_token, "method": super::proof::code_method(code), "code": code });
    let result = match api::body(req) {
        Ok(b) => api::answer(routes::mfa::second_factor(State(state), client, pop, b).await).await,
        Err(e) => Err(e),
    };
    let mut page = second_factor_page(&f.pending_token, f.next.as_deref().unwrap_or_default());
    match result {
        Ok(a) => {
            let to = if page.next.is_empty() { "/_gh/account/security" } else { page.next.as_str() };
            see_other(to, a.cookies)
        }
        Err(e) if e.code == ErrorCode::PendingLoginInvalid => {
            let mut login = LoginPage::new(f.next);
            login.error = Some("Your sign-in expired. Please start again.".into());
            render(e.code.status(), &login)
        }
        Err(e) if matches!(e.code, ErrorCode::InvalidCode | ErrorCode::RateLimited | ErrorCode::InvalidRequest) => {
            page.code = page.code.error(e.message.clone());
            render(e.code.status(), &page)
        }
        Err(e) => error_page(&e, None),
    }
}
