//! Confirmation of a sign-in the risk engine challenged (see [`crate::risk::assess_login`]).
//!
//! The emailed link opens a page with a button ([`crate::pages::confirm`]); only the POST
//! consumes the token, so mail scanners that prefetch links cannot use it up. The page's form
//! calls this JSON endpoint's handler.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::json;

use crate::error::ApiResult;
use crate::http::{ApiJson, ClientCtx};
use crate::state::AppState;

/// What the emailed link carries (also the body of the JSON endpoint and of the page's form).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Confirmation {
    token: String,
    ip: String,
    device: String,
    ua: String,
}

/// `POST /_gh/api/v1/sessions/confirm-sign-in`
pub async fn api(
    State(state): State<AppState>,
    client: ClientCtx,
    ApiJson(c): ApiJson<Confirmation>,
) -> ApiResult<Json<serde_json::Value>> {
    crate::risk::confirm_sign_in(&state, &client, &c.token, &c.ip, &c.device, &c.ua).await?;
    Ok(Json(json!({ "status": "confirmed" })))
}
