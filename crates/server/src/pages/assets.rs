//! Static files for the pages (stylesheet, icon, and the WebAuthn script when it lands),
//! compiled into the binary. Served under `/_gh/assets/` because the page CSP allows script
//! and style only from our own origin, never inline.

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorCode};

/// Every asset: name, content type, bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("style.css", "text/css; charset=utf-8", include_str!("../../assets/style.css")),
    ("favicon.svg", "image/svg+xml", include_str!("../../assets/favicon.svg")),
    ("webauthn.js", "text/javascript; charset=utf-8", include_str!("../../assets/webauthn.js")),
];

/// `GET /_gh/assets/{name}`
pub async fn serve(Path(name): Path<String>) -> Response {
    match ASSETS.iter().find(|(n, _, _)| *n == name) {
        Some((_, mime, body)) => {
            (StatusCode::OK, [(header::CONTENT_TYPE, *mime), (header::CACHE_CONTROL, "public, max-age=3600")], *body)
                .into_response()
        }
        None => ApiError::new(ErrorCode::NotFound).into_response(),
    }
}
