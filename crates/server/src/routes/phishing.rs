//! Anti-phishing surfaces: the URL checker API. Its page and the official-channels page are
//! in [`crate::pages::phishing`].

use axum::Json;
use axum::extract::{Query, State};
use serde::Deserialize;
use serde_json::json;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;

/// `[phishing]`: what is official.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PhishingConfig {
    /// Official domains (the exchange's and gatehouse's), e.g. `["upbit.com"]`.
    pub official_domains: Vec<String>,
    /// Brand words impersonators use, e.g. `["upbit"]`.
    pub brand_words: Vec<String>,
    /// Official pages on other sites (app-store listings), `https://…`.
    pub app_links: Vec<String>,
    /// Official support addresses shown on the official-channels page.
    pub support_addresses: Vec<String>,
}

impl Default for PhishingConfig {
    fn default() -> Self {
        Self {
            official_domains: vec!["gatehouse.example".into()],
            brand_words: vec!["gatehouse".into()],
            app_links: vec![],
            support_addresses: vec!["security@gatehouse.example".into()],
        }
    }
}

/// Query of the checker.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckQuery {
    /// The URL to judge (≤ 2048 bytes).
    #[serde(default)]
    url: String,
}

fn checker(state: &AppState) -> ApiResult<&gatehouse_core::phishing::UrlChecker> {
    state.url_checker.as_ref().ok_or_else(|| ApiError::new(ErrorCode::NotFound))
}

/// `GET /_gh/api/v1/check-url?url=…`: official, lookalike or unknown, with the reasons.
pub async fn check_api(
    State(state): State<AppState>,
    Query(q): Query<CheckQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    if q.url.len() > 2048 {
        return Err(ApiError::new(ErrorCode::InvalidRequest).message("url is longer than 2048 bytes"));
    }
    let v = checker(&state)?.check(&q.url);
    let reasons: Vec<_> =
        v.reasons.iter().map(|r| json!({ "code": r.code(), "explanation": r.explanation() })).collect();
    Ok(Json(json!({
        "class": v.class.code(),
        "advice": v.class.advice(),
        "host": v.host,
        "unicode_host": v.unicode_host,
        "reasons": reasons,
        "summary": v.summary(),
    })))
}
