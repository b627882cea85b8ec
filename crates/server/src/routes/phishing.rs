//! Anti-phishing surfaces: the URL checker (API and page) and the official-channels page,
//! linked from every page footer and every email.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{Html, IntoResponse, Response};
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

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;").replace('\'', "&#39;")
}

/// A minimal accessible page (the full page set uses templates; these two are plain).
pub fn page(title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width\">\
         <title>{t} — gatehouse</title></head><body><main><h1>{t}</h1>{body}</main>\
         <footer><p><a href=\"{p}/official\">Official channels</a> · <a href=\"{p}/check-url\">Check a link</a></p></footer></body></html>",
        t = esc(title),
        p = super::PREFIX,
    );
    (
        [(
            axum::http::header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        )],
        Html(html),
    )
        .into_response()
}

/// `GET /_gh/check-url`: the checker as a page (a GET form; works without JavaScript).
pub async fn check_page(State(state): State<AppState>, Query(q): Query<CheckQuery>) -> Response {
    let mut body = format!(
        "<p>Paste a link you received. We tell you whether it is one of our official addresses.</p>\
         <form method=\"get\" action=\"{}/check-url\"><label for=\"url\">Link</label> \
         <input id=\"url\" name=\"url\" type=\"text\" maxlength=\"2048\" size=\"60\" value=\"{}\"> \
         <button type=\"submit\">Check</button></form>",
        super::PREFIX,
        esc(&q.url)
    );
    if !q.url.is_empty() {
        match checker(&state) {
            Ok(c) if q.url.len() <= 2048 => {
                let v = c.check(&q.url);
                body.push_str(&format!(
                    "<section aria-live=\"polite\"><h2 id=\"verdict\" data-class=\"{}\">{}</h2><p>{}</p><ul>",
                    v.class.code(),
                    esc(&v.class.code().to_uppercase()),
                    esc(v.class.advice())
                ));
                for r in &v.reasons {
                    body.push_str(&format!("<li><code>{}</code> — {}</li>", r.code(), esc(&r.explanation())));
                }
                body.push_str("</ul></section>");
            }
            _ => body.push_str("<p>That link cannot be checked.</p>"),
        }
    }
    page("Check a link", &body)
}

/// `GET /_gh/official`: the official domains, app links and support addresses.
pub async fn official_page(State(state): State<AppState>) -> Response {
    let c = &state.config.phishing;
    let list = |items: &[String]| items.iter().map(|i| format!("<li><code>{}</code></li>", esc(i))).collect::<String>();
    let body = format!(
        "<p>These are the only addresses we use. We never ask for your password, codes or keys by email, chat or phone.</p>\
         <h2>Web addresses</h2><ul>{}</ul><h2>Apps</h2><ul>{}</ul><h2>Support</h2><ul>{}</ul>\
         <p>Not sure about a link? <a href=\"{}/check-url\">Check it here</a>.</p>",
        list(&c.official_domains),
        list(&c.app_links),
        list(&c.support_addresses),
        super::PREFIX
    );
    page("Official channels", &body)
}
