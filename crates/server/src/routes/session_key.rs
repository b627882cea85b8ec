//! The bound-browser-session script (issue 9) and, in test mode only, a page that loads it.
//! The real pages (login, security centre) include the same script.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::pages::{Layout, render};
use crate::state::AppState;

/// The script: creates a non-extractable P-256 key in IndexedDB at login and signs DPoP
/// proofs with it for the cookie session (see the file's header).
pub const SESSION_KEY_JS: &str = include_str!("../../assets/session-key.js");

/// `GET /_gh/assets/session-key.js`
pub async fn script() -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        ],
        SESSION_KEY_JS,
    )
        .into_response()
}

/// The test page: the pages' layout plus the script.
#[derive(askama::Template)]
#[template(path = "bound_session_test.html")]
pub struct TestPage {
    layout: Layout,
    origin: String,
}

/// `GET /_gh/test/bound-session` (only with `testing.danger_manual_clock`): a page in the
/// pages' layout (page CSP and headers) that loads the script, for the browser test. The
/// script signs `htu` with the configured public origin (`data-origin`, escaped by askama).
pub async fn test_page(State(state): State<AppState>) -> Response {
    let page =
        TestPage { layout: Layout::public("Bound session test"), origin: state.config.server.public_origin.clone() };
    render(StatusCode::OK, &page)
}
