//! Who is signed in, for pages: [`Signed`] wraps the API's [`Authenticated`] extractor (same
//! checks, including CSRF on posts) and turns its refusals into what a browser needs — a
//! redirect to the sign-in page, or a silent refresh when only the access token expired.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method};
use axum::response::{IntoResponse, Response};

use super::{api, error_page, is_safe_next, see_other};
use crate::auth::Authenticated;
use crate::error::ErrorCode;
use crate::http::{COOKIE_REFRESH, ClientCtx, cookie};
use crate::state::AppState;

/// A signed-in browser on a page.
#[derive(Debug, Clone)]
pub struct Signed(pub Authenticated);

impl FromRequestParts<AppState> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let err = match Authenticated::from_request_parts(parts, state).await {
            Ok(a) => return Ok(Self(a)),
            Err(e) => e,
        };
        let path = parts.uri.path();
        let back = if parts.method == Method::GET && is_safe_next(path) { path } else { "/_gh/account/security" };
        match err.code {
            // The access token lives minutes, the session hours: refresh through the API's own
            // rotation (reuse detection and all) and come back with a GET. A form post is not
            // replayed: the person submits it again on a fresh page.
            ErrorCode::TokenExpired if cookie(&parts.headers, COOKIE_REFRESH).is_some() => {
                Err(refresh_and_return(state, parts, back).await)
            }
            ErrorCode::Unauthenticated
            | ErrorCode::TokenExpired
            | ErrorCode::SessionExpired
            | ErrorCode::DeviceMismatch => {
                let notice = if err.code == ErrorCode::Unauthenticated { "" } else { "&notice=signed_in_again" };
                Err(see_other(&format!("/_gh/login?next={back}{notice}"), HeaderMap::new()))
            }
            _ => Err(error_page(&err, None)),
        }
    }
}

async fn refresh_and_return(state: &AppState, parts: &Parts, back: &str) -> Response {
    let client = ClientCtx::from_parts(parts, &state.trusted_proxies);
    let result = crate::routes::sessions::refresh(
        State(state.clone()),
        client,
        crate::pop::PopCtx::from_parts(parts, state),
        Method::POST,
        parts.headers.clone(),
        Bytes::new(),
    )
    .await;
    match api::answer(result).await {
        Ok(a) => see_other(back, a.cookies),
        Err(_) => see_other(&format!("/_gh/login?next={back}&notice=signed_in_again"), HeaderMap::new()),
    }
    .into_response()
}
