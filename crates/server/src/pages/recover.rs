//! Recovery without signing in: ask for a password-reset link by email (the second factor is
//! not touched and withdrawals are held afterwards; the link's page is the API's
//! `/_gh/reset-password`), or open a human-reviewed recovery case when the second factor is
//! lost too. Both answer the same whether or not the address has an account.

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::json;

use super::form::{Field, PageForm, cross_site, message};
use super::{Layout, api, error_page, render};
use crate::error::ErrorCode;
use crate::http::ClientCtx;
use crate::routes;
use crate::state::AppState;

/// The recovery page: reset by email, or open a case.
#[derive(askama::Template)]
#[template(path = "recover.html")]
pub struct RecoverPage {
    layout: Layout,
    reset_email: Field,
    case_email: Field,
    evidence: Field,
}

impl RecoverPage {
    fn new() -> Self {
        Self {
            layout: Layout::public("Recover your account"),
            reset_email: Field::new("email", "Email address", "email", "email").id("reset-email"),
            case_email: Field::new("email", "Email address", "email", "email").id("case-email"),
            evidence: Field::new("evidence", "What can you tell us?", "textarea", "off")
                .hint("Recent deposits, when you opened the account, devices you used. Never your password."),
        }
    }
}

/// `GET /_gh/recover`
pub async fn page() -> Response {
    render(StatusCode::OK, &RecoverPage::new())
}

/// Body of the reset request.
#[derive(Debug, Deserialize)]
pub struct ResetForm {
    #[serde(default)]
    email: String,
}

/// `POST /_gh/recover/reset`
pub async fn request_reset(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    client: ClientCtx,
    PageForm(f): PageForm<ResetForm>,
) -> Response {
    if let Some(r) = cross_site(&state, &method, &headers) {
        return r;
    }
    let result = match api::body(json!({ "email": f.email })) {
        Ok(b) => api::answer(routes::recovery::request_reset(State(state), client, b).await).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(a) => message(StatusCode::ACCEPTED, "Check your email", "reset_sent", &api::text(&a.body, "message"), None),
        Err(e) => error_page(&e, None),
    }
}

/// Body of the case form.
#[derive(Debug, Deserialize)]
pub struct CaseForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    evidence: String,
}

/// `POST /_gh/recover/case`
pub async fn open_case(
    State(state): State<AppState>,
    method: Method,
    headers: HeaderMap,
    client: ClientCtx,
    PageForm(f): PageForm<CaseForm>,
) -> Response {
    if let Some(r) = cross_site(&state, &method, &headers) {
        return r;
    }
    let result = match api::body(json!({ "email": f.email, "evidence": f.evidence })) {
        Ok(b) => api::answer(routes::recovery::open_case(State(state), client, b).await).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(a) => {
            message(StatusCode::ACCEPTED, "Recovery requested", "case_opened", &api::text(&a.body, "message"), None)
        }
        Err(e) if e.code == ErrorCode::InvalidRequest => {
            let mut p = RecoverPage::new();
            p.case_email = p.case_email.value(f.email.chars().take(254).collect::<String>());
            p.evidence = p.evidence.error(e.message.clone());
            render(e.code.status(), &p)
        }
        Err(e) => error_page(&e, None),
    }
}
