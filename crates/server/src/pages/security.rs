//! The security centre: overview with password change, devices with revoke, and the
//! security history from the audit log.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gatehouse_core::password::policy::MIN_CODE_POINTS;
use serde::Deserialize;
use serde_json::{Value, json};

use super::form::{Field, PageForm};
use super::proof::{self, ProofFields, ProofForm};
use super::{Layout, Signed, api, error_page, render, see_other, when};
use crate::error::{ApiError, ErrorCode};
use crate::routes;
use crate::state::AppState;
use gatehouse_core::stepup::SensitiveAction;

/// Query of the signed-in pages.
#[derive(Debug, Default, Deserialize)]
pub struct PageQuery {
    #[serde(default)]
    notice: Option<String>,
    #[serde(default)]
    before: Option<i64>,
}

/// The security centre's front page.
#[derive(askama::Template)]
#[template(path = "security.html")]
pub struct OverviewPage {
    layout: Layout,
    email: String,
    verified: bool,
    created_at: String,
    password_changed_at: String,
    current: Field,
    new: Field,
    code: Option<Field>,
    has_factor: bool,
}

fn overview_page(who: &Signed, current: Field, new: Field, code: Option<Field>) -> OverviewPage {
    let a = &who.0.account;
    OverviewPage {
        layout: Layout::signed("Security centre", who, "security"),
        email: a.email.as_str().to_owned(),
        verified: a.email_verified_at.is_some(),
        created_at: when(&a.created_at.to_rfc3339()),
        password_changed_at: when(&a.password_changed_at.to_rfc3339()),
        current,
        new,
        has_factor: code.is_some(),
        code,
    }
}

fn password_fields(with_code: bool) -> (Field, Field, Option<Field>) {
    (
        Field::new("current_password", "Current password", "password", "current-password"),
        Field::new("new_password", "New password", "password", "new-password")
            .hint(format!("At least {MIN_CODE_POINTS} characters. Changing it signs out every other device.")),
        ProofFields::new("password-change", with_code).code,
    )
}

/// `GET /_gh/account/security`
pub async fn overview(State(state): State<AppState>, who: Signed, Query(q): Query<PageQuery>) -> Response {
    let with_code = match proof::needs_code(&state, &who).await {
        Ok(b) => b,
        Err(e) => return error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    };
    let (current, new, code) = password_fields(with_code);
    let mut page = overview_page(&who, current, new, code);
    page.layout = page.layout.with_notice(q.notice.as_deref());
    render(StatusCode::OK, &page)
}

/// Body of the password-change form.
#[derive(Debug, Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    current_password: String,
    #[serde(default)]
    new_password: String,
    #[serde(default)]
    code: String,
}

/// `POST /_gh/account/password`
pub async fn change_password(
    State(state): State<AppState>,
    who: Signed,
    PageForm(f): PageForm<PasswordForm>,
) -> Response {
    let form = ProofForm { password: f.current_password.clone(), code: f.code };
    let result = async {
        let proof = proof::fields(&state, &who, SensitiveAction::ChangePassword, &form).await?;
        let mut req = json!({ "new_password": f.new_password });
        proof::merge(&mut req, proof, "current_password");
        let b = api::body(req)?;
        api::answer(routes::me::change_password(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    let e = match result {
        Ok(_) => return see_other("/_gh/account/security?notice=password_changed", HeaderMap::new()),
        Err(e) => e,
    };
    let user = Some(who.0.account.email.as_str().to_owned());
    let with_code = match proof::needs_code(&state, &who).await {
        Ok(b) => b,
        Err(e2) => return error_page(&e2, user),
    };
    let (mut current, mut new, mut code) = password_fields(with_code);
    match (e.code.clone(), proof::proof_error(&e)) {
        (ErrorCode::WeakPassword | ErrorCode::InvalidRequest, _) => new = new.error(e.message.clone()),
        (_, Some(true)) if code.is_some() => code = code.map(|c| c.error(e.message.clone())),
        (_, Some(_)) => current = current.error(e.message.clone()),
        (_, None) => return error_page(&e, user),
    }
    render(e.code.status(), &overview_page(&who, current, new, code))
}

/// One signed-in device.
#[derive(Debug)]
pub struct DeviceRow {
    id: String,
    name: String,
    kind: String,
    ip: String,
    created_at: String,
    last_seen_at: String,
    current: bool,
    proof: ProofFields,
}

/// The device list.
#[derive(askama::Template)]
#[template(path = "devices.html")]
pub struct DevicesPage {
    layout: Layout,
    devices: Vec<DeviceRow>,
    others: ProofFields,
}

async fn devices_page(
    state: &AppState,
    who: &Signed,
    failed: Option<(&str, &ApiError)>,
) -> Result<DevicesPage, ApiError> {
    let with_code = proof::needs_code(state, who).await?;
    let on_code = failed.and_then(|(_, e)| proof::proof_error(e)).unwrap_or(false);
    let list = api::answer(routes::sessions::list(State(state.clone()), who.0.clone()).await).await?;
    let rows = list.body["sessions"].as_array().cloned().unwrap_or_default();
    let mut devices: Vec<DeviceRow> = rows
        .iter()
        .map(|s: &Value| {
            let id = api::text(s, "id");
            let mut proof = ProofFields::new(&id, with_code);
            if let Some((target, e)) = failed
                && target == id
            {
                proof = proof.error(e.message.clone(), on_code);
            }
            DeviceRow {
                name: api::text(s, "device_name"),
                kind: api::text(s, "kind"),
                ip: api::text(s, "ip"),
                created_at: when(&api::text(s, "created_at")),
                last_seen_at: when(&api::text(s, "last_seen_at")),
                current: s["current"] == json!(true),
                proof,
                id,
            }
        })
        .collect();
    devices.sort_by_key(|d| !d.current);
    let mut others = ProofFields::new("others", with_code);
    if let Some(("others", e)) = failed {
        others = others.error(e.message.clone(), on_code);
    }
    Ok(DevicesPage { layout: Layout::signed("Devices", who, "devices"), devices, others })
}

/// `GET /_gh/account/devices`
pub async fn devices(State(state): State<AppState>, who: Signed, Query(q): Query<PageQuery>) -> Response {
    match devices_page(&state, &who, None).await {
        Ok(mut page) => {
            page.layout = page.layout.with_notice(q.notice.as_deref());
            render(StatusCode::OK, &page)
        }
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}

/// Re-renders the device list with `e` on the form of `target`, or an error page.
async fn devices_error(state: &AppState, who: &Signed, target: &str, e: ApiError) -> Response {
    let user = Some(who.0.account.email.as_str().to_owned());
    if proof::proof_error(&e).is_none() {
        return error_page(&e, user);
    }
    match devices_page(state, who, Some((target, &e))).await {
        Ok(page) => render(e.code.status(), &page),
        Err(e2) => error_page(&e2, user),
    }
}

/// `POST /_gh/account/devices/{id}/revoke`: needs the password again (R47).
pub async fn revoke_device(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    PageForm(f): PageForm<ProofForm>,
) -> Response {
    let result = async {
        let b = api::body(proof::fields(&state, &who, SensitiveAction::RevokeSessions, &f).await?)?;
        api::answer(routes::sessions::revoke(State(state.clone()), who.0.clone(), Path(id.clone()), b).await).await
    }
    .await;
    match result {
        Ok(_) => see_other("/_gh/account/devices?notice=device_revoked", HeaderMap::new()),
        Err(e) => devices_error(&state, &who, &id, e).await,
    }
}

/// `POST /_gh/account/devices/revoke-others`
pub async fn revoke_others(State(state): State<AppState>, who: Signed, PageForm(f): PageForm<ProofForm>) -> Response {
    let result = async {
        let b = api::body(proof::fields(&state, &who, SensitiveAction::RevokeSessions, &f).await?)?;
        api::answer(routes::sessions::revoke_others(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    match result {
        Ok(_) => see_other("/_gh/account/devices?notice=others_revoked", HeaderMap::new()),
        Err(e) => devices_error(&state, &who, "others", e).await,
    }
}

/// One security event.
#[derive(Debug)]
pub struct EventRow {
    at: String,
    at_raw: String,
    kind: String,
    label: String,
    outcome: String,
    ip: String,
}

/// The security history.
#[derive(askama::Template)]
#[template(path = "history.html")]
pub struct HistoryPage {
    layout: Layout,
    events: Vec<EventRow>,
    older: Option<i64>,
}

/// `api_key_created` → "API key created".
fn humanise(kind: &str) -> String {
    let words = kind.replace(['_', '.'], " ");
    let words = words.strip_prefix("api ").map(|r| format!("API {r}")).unwrap_or(words);
    super::form::sentence(&words)
}

/// `GET /_gh/account/history?before=…`: the user's own audit events, newest first.
pub async fn history(State(state): State<AppState>, who: Signed, Query(q): Query<PageQuery>) -> Response {
    let query = match serde_json::from_value::<routes::me::HistoryQuery>(json!({ "before": q.before, "limit": 50 })) {
        Ok(v) => v,
        Err(e) => return error_page(&ApiError::internal("history query", e), None),
    };
    let result = routes::me::history(State(state), who.0.clone(), crate::http::ApiQuery(query)).await;
    let answer = match api::answer(result).await {
        Ok(a) => a,
        Err(e) => return error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    };
    let events = answer.body["events"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|e| {
                    let kind = api::text(e, "kind");
                    EventRow {
                        at: when(&api::text(e, "at")),
                        at_raw: api::text(e, "at"),
                        label: humanise(&kind),
                        kind,
                        outcome: api::text(e, "outcome"),
                        ip: api::text(e, "ip"),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    let page = HistoryPage {
        layout: Layout::signed("Security history", &who, "history"),
        events,
        older: answer.body["next_before"].as_i64(),
    };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::humanise;

    #[test]
    fn event_kinds_read_as_words() {
        assert_eq!(humanise("login_succeeded"), "Login succeeded");
        assert_eq!(humanise("api_key_created"), "API key created");
        assert_eq!(humanise(""), "");
    }
}
