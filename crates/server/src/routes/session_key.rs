//! The bound-browser-session script (issue 9) and, in test mode only, a bare page that loads
//! it. The real pages (login, security centre) include the same script.

use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

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

/// `GET /_gh/test/bound-session` (only with `testing.danger_manual_clock`): an empty page that
/// loads the script under a strict CSP, for the browser test. The script signs `htu` with the
/// configured public origin.
pub async fn test_page(State(state): State<AppState>) -> Response {
    let origin = html_attr(&state.config.server.public_origin);
    let body = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>bound session test</title>\
         <script src=\"/_gh/assets/session-key.js\" data-origin=\"{origin}\"></script></head>\
         <body><p>bound session test page</p></body></html>"
    );
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(
                    "default-src 'none'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'",
                ),
            ),
        ],
        body,
    )
        .into_response()
}

/// Escapes a value for a double-quoted HTML attribute.
fn html_attr(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '"' => "&quot;".to_owned(),
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}
