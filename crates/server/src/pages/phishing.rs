//! The official-channels page (linked from every footer and every email) and the URL
//! checker, in the common layout.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use super::form::Field;
use super::{Layout, render};
use crate::state::AppState;

/// Longest link the checker accepts (the API's limit).
const MAX_URL_BYTES: usize = 2048;

/// The official-channels page.
#[derive(askama::Template)]
#[template(path = "official.html")]
pub struct OfficialPage {
    layout: Layout,
    domains: Vec<String>,
    apps: Vec<String>,
    support: Vec<String>,
}

/// `GET /_gh/official`
pub async fn official(State(state): State<AppState>) -> Response {
    let c = &state.config.phishing;
    let page = OfficialPage {
        layout: Layout::public("Official channels"),
        domains: c.official_domains.clone(),
        apps: c.app_links.clone(),
        support: c.support_addresses.clone(),
    };
    render(StatusCode::OK, &page)
}

/// Query of the checker page.
#[derive(Debug, Deserialize)]
pub struct CheckQuery {
    #[serde(default)]
    url: String,
}

/// The checker's verdict, as shown.
#[derive(Debug)]
pub struct Verdict {
    class: &'static str,
    heading: String,
    advice: String,
    reasons: Vec<(String, String)>,
}

/// The URL checker page.
#[derive(askama::Template)]
#[template(path = "check_url.html")]
pub struct CheckPage {
    layout: Layout,
    url: Field,
    verdict: Option<Verdict>,
}

/// `GET /_gh/check-url?url=…`: a GET form; works without JavaScript.
pub async fn check_url(State(state): State<AppState>, Query(q): Query<CheckQuery>) -> Response {
    let mut url = Field::new("url", "Link", "text", "off")
        .hint("Paste a link you received. We tell you whether it is one of our official addresses.")
        .value(q.url.chars().take(MAX_URL_BYTES).collect::<String>());
    let mut verdict = None;
    let mut status = StatusCode::OK;
    if !q.url.is_empty() {
        match state.url_checker.as_ref() {
            Some(c) if q.url.len() <= MAX_URL_BYTES => {
                let v = c.check(&q.url);
                verdict = Some(Verdict {
                    class: v.class.code(),
                    heading: v.class.code().to_uppercase(),
                    advice: v.class.advice().to_owned(),
                    reasons: v.reasons.iter().map(|r| (r.code().to_owned(), r.explanation().to_string())).collect(),
                });
            }
            _ => {
                status = StatusCode::BAD_REQUEST;
                url = url.error("That link cannot be checked (at most 2048 characters).");
            }
        }
    }
    render(status, &CheckPage { layout: Layout::public("Check a link"), url, verdict })
}
