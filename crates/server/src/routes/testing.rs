//! Test-only clock control, mounted only with `testing.danger_manual_clock = true`.

use axum::Json;
use axum::extract::State;
use gatehouse_core::clock::{Span, Timestamp};
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::ApiJson;
use crate::state::AppState;

/// `POST /_gh/test/clock`: `{"advance_ms": n}` or `{"set_ms": t}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClockRequest {
    advance_ms: Option<i64>,
    set_ms: Option<i64>,
}

/// Moves the server's manual clock.
pub async fn clock(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<ClockRequest>,
) -> ApiResult<Json<serde_json::Value>> {
    let Some(c) = &state.manual_clock else { return Err(ApiError::new(ErrorCode::NotFound)) };
    if let Some(ms) = req.advance_ms {
        c.advance(Span::millis(ms));
    }
    if let Some(t) = req.set_ms {
        c.set(Timestamp::from_millis(t));
    }
    Ok(Json(json!({ "now_ms": gatehouse_core::clock::Clock::now(c).as_millis() })))
}
