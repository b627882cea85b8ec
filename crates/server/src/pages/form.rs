//! Form plumbing shared by the pages: the labelled field model the `_macros.html` template
//! renders, the form-body extractor, and the CSRF check for forms posted without a session.

use axum::extract::{FromRequest, Request};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;

use super::{Layout, MessagePage, error_page, render};
use crate::error::{ApiError, ErrorCode};
use crate::http::csrf_ok;
use crate::state::AppState;

/// One labelled form control and its error, as `_macros.html` renders it.
#[derive(Debug, Clone)]
pub struct Field {
    /// Form field name.
    pub name: &'static str,
    /// Element id (unique on the page).
    pub id: String,
    /// Visible label.
    pub label: &'static str,
    /// `type` of the input (`email`, `password`, `text`, `textarea`, …).
    pub kind: &'static str,
    /// Value to show again (never for passwords).
    pub value: String,
    /// The error for this field, tied to it with `aria-describedby`.
    pub error: Option<String>,
    /// Help text, also tied with `aria-describedby`.
    pub hint: Option<String>,
    /// The `autocomplete` token.
    pub autocomplete: &'static str,
    /// Whether the browser should insist on a value.
    pub required: bool,
}

impl Field {
    /// A required text-like input.
    pub fn new(name: &'static str, label: &'static str, kind: &'static str, autocomplete: &'static str) -> Self {
        Self {
            name,
            id: name.replace('_', "-"),
            label,
            kind,
            value: String::new(),
            error: None,
            hint: None,
            autocomplete,
            required: true,
        }
    }

    /// The re-entered password every sensitive action asks for (R47).
    pub fn password_again(id_suffix: &str) -> Self {
        let mut f = Self::new("password", "Your password", "password", "current-password");
        f.id = format!("password-{id_suffix}");
        f.hint = Some("Enter your password again to confirm.".into());
        f
    }

    /// Sets the element id.
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = id.into();
        self
    }

    /// Sets the value shown.
    pub fn value(mut self, v: impl Into<String>) -> Self {
        self.value = v.into();
        self
    }

    /// Sets the hint.
    pub fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }

    /// Makes the field optional.
    pub fn optional(mut self) -> Self {
        self.required = false;
        self
    }

    /// Sets the error (as a sentence: the API's messages may start in lower case).
    pub fn error(mut self, e: impl Into<String>) -> Self {
        self.error = Some(sentence(&e.into()));
        self
    }

    /// Whether the field has an error.
    pub fn is_invalid(&self) -> bool {
        self.error.is_some()
    }

    /// The ids of the hint and error elements, for `aria-describedby`.
    pub fn described_by(&self) -> String {
        let mut ids = Vec::new();
        if self.hint.is_some() {
            ids.push(format!("{}-hint", self.id));
        }
        if self.error.is_some() {
            ids.push(format!("{}-error", self.id));
        }
        ids.join(" ")
    }
}

/// `msg` with its first letter capitalised.
pub fn sentence(msg: &str) -> String {
    let mut c = msg.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A form body (`application/x-www-form-urlencoded`), with a page as the rejection.
#[derive(Debug)]
pub struct PageForm<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for PageForm<T> {
    type Rejection = Response;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        match axum::Form::<T>::from_request(req, state).await {
            Ok(axum::Form(v)) => Ok(Self(v)),
            Err(rej) => {
                let code = if rej.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ErrorCode::PayloadTooLarge
                } else if rej.status() == StatusCode::UNSUPPORTED_MEDIA_TYPE {
                    ErrorCode::UnsupportedMediaType
                } else {
                    ErrorCode::InvalidRequest
                };
                Err(error_page(&ApiError::new(code).message("The form could not be read. Please try again."), None))
            }
        }
    }
}

/// The CSRF rule for forms posted without a session (login, register, verify): the same
/// same-origin check the cookie-authenticated API applies (R50), so a cross-site page cannot
/// sign a victim into the attacker's account. `Some` is the refusal page.
pub fn cross_site(state: &AppState, method: &Method, headers: &axum::http::HeaderMap) -> Option<Response> {
    if csrf_ok(method, headers, &state.config.server.public_origin) {
        return None;
    }
    Some(error_page(&ApiError::new(ErrorCode::CsrfRejected), None))
}

/// A message page with a follow-up link.
pub fn message(
    status: StatusCode,
    title: &str,
    kind: &'static str,
    text: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let page = MessagePage {
        layout: Layout::public(title),
        text: text.to_owned(),
        link: link.map(|(h, t)| (h.to_owned(), t.to_owned())),
        kind,
    };
    render(status, &page).into_response()
}
