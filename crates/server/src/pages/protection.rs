//! Account protection (issue 5): the settings lock, the anti-phishing code and withdrawal
//! addresses with their activation state. Every change goes through the API's handler, so the
//! lock, the step-up, the delays and the notices with their cancel links are the API's.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gatehouse_core::stepup::SensitiveAction;
use serde::Deserialize;
use serde_json::json;

use super::form::{Field, PageForm};
use super::proof::{self, ProofFields, ProofForm};
use super::{Layout, Signed, api, error_page, render, see_other, when};
use crate::error::{ApiError, ErrorCode};
use crate::routes;
use crate::state::AppState;

/// Query of the protection pages.
#[derive(Debug, Default, Deserialize)]
pub struct NoticeQuery {
    #[serde(default)]
    notice: Option<String>,
}

/// The protection page.
#[derive(askama::Template)]
#[template(path = "protection.html")]
pub struct ProtectionPage {
    layout: Layout,
    locked: bool,
    unlock_at: Option<String>,
    unlock: ProofFields,
    code: Field,
    code_proof: ProofFields,
}

async fn protection_page(state: &AppState, who: &Signed) -> Result<ProtectionPage, ApiError> {
    let s = api::answer(routes::settings_lock::status(State(state.clone()), who.0.clone()).await).await?;
    let with_code = proof::needs_code(state, who).await?;
    Ok(ProtectionPage {
        layout: Layout::signed("Account protection", who, "protection"),
        locked: s.body["locked"] == json!(true),
        unlock_at: s.body["unlock_at"].as_str().map(when),
        unlock: ProofFields::new("unlock", with_code),
        code: Field::new("code_text", "Anti-phishing code", "text", "off").id("anti-phishing-code").hint(
            "4 to 32 letters, digits or spaces. Every email from us will show it; an email without it is not from us.",
        ),
        code_proof: ProofFields::new("apc", with_code),
    })
}

/// `GET /_gh/account/protection`
pub async fn page(State(state): State<AppState>, who: Signed, Query(q): Query<NoticeQuery>) -> Response {
    match protection_page(&state, &who).await {
        Ok(mut p) => {
            p.layout = p.layout.with_notice(q.notice.as_deref());
            render(StatusCode::OK, &p)
        }
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}

fn back(notice: &str) -> Response {
    see_other(&format!("/_gh/account/protection?notice={notice}"), HeaderMap::new())
}

/// `POST /_gh/account/settings-lock`: locks at once (no proof: it only makes the account safer).
pub async fn lock(State(state): State<AppState>, who: Signed) -> Response {
    match api::answer(routes::settings_lock::lock(State(state), who.0.clone()).await).await {
        Ok(_) => back("settings_locked"),
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}

/// `POST /_gh/account/settings-lock/cancel`
pub async fn cancel_unlock(State(state): State<AppState>, who: Signed) -> Response {
    match api::answer(routes::settings_lock::cancel_unlock(State(state), who.0.clone()).await).await {
        Ok(_) => back("unlock_cancelled"),
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}

async fn protection_error(state: &AppState, who: &Signed, form: &str, e: ApiError) -> Response {
    let user = Some(who.0.account.email.as_str().to_owned());
    let mut p = match protection_page(state, who).await {
        Ok(p) => p,
        Err(e2) => return error_page(&e2, user),
    };
    let msg = e.message.to_string();
    match (form, proof::proof_error(&e)) {
        ("unlock", Some(on_code)) => p.unlock = p.unlock.error(msg, on_code),
        ("code", Some(on_code)) => p.code_proof = p.code_proof.error(msg, on_code),
        ("code", None) if e.code == ErrorCode::InvalidRequest => p.code = p.code.error(msg),
        _ => return error_page(&e, user),
    }
    render(e.code.status(), &p)
}

/// `POST /_gh/account/settings-lock/unlock`: schedules the unlock after the waiting period.
pub async fn unlock(State(state): State<AppState>, who: Signed, PageForm(f): PageForm<ProofForm>) -> Response {
    let result = async {
        let b = api::body(proof::fields(&state, &who, SensitiveAction::LiftSettingsLock, &f).await?)?;
        api::answer(routes::settings_lock::unlock(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    match result {
        Ok(_) => back("unlock_scheduled"),
        Err(e) => protection_error(&state, &who, "unlock", e).await,
    }
}

/// Body of the anti-phishing code form.
#[derive(Debug, Deserialize)]
pub struct CodeForm {
    #[serde(default)]
    code_text: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

/// `POST /_gh/account/anti-phishing-code`
pub async fn set_code(State(state): State<AppState>, who: Signed, PageForm(f): PageForm<CodeForm>) -> Response {
    let result = async {
        let form = ProofForm { password: f.password.clone(), code: f.code.clone() };
        let proof = proof::fields(&state, &who, SensitiveAction::ChangeFactors, &form).await?;
        let text = f.code_text.trim();
        let mut req = json!({ "code": if text.is_empty() { None } else { Some(text) } });
        proof::merge(&mut req, proof, "password");
        let b = api::body(req)?;
        api::answer(routes::settings_lock::set_code(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    match result {
        Ok(_) => back("code_saved"),
        Err(e) => protection_error(&state, &who, "code", e).await,
    }
}

/// One withdrawal address.
#[derive(Debug)]
pub struct AddressRow {
    id: String,
    asset: String,
    address: String,
    label: String,
    state: String,
    active_at: String,
}

/// Withdrawal addresses.
#[derive(askama::Template)]
#[template(path = "withdrawal_addresses.html")]
pub struct AddressesPage {
    layout: Layout,
    addresses: Vec<AddressRow>,
    asset: Field,
    address: Field,
    label: Field,
    proof: ProofFields,
}

async fn addresses_page(state: &AppState, who: &Signed) -> Result<AddressesPage, ApiError> {
    let a = api::answer(routes::withdrawals::list_addresses(State(state.clone()), who.0.clone()).await).await?;
    let addresses = a.body["addresses"]
        .as_array()
        .map(|l| {
            l.iter()
                .map(|e| AddressRow {
                    id: api::text(e, "id"),
                    asset: api::text(e, "asset"),
                    address: api::text(e, "address"),
                    label: api::text(e, "label"),
                    state: api::text(e, "state"),
                    active_at: when(&api::text(e, "active_at")),
                })
                .collect()
        })
        .unwrap_or_default();
    let with_code = proof::needs_code(state, who).await?;
    Ok(AddressesPage {
        layout: Layout::signed("Withdrawal addresses", who, "addresses"),
        addresses,
        asset: Field::new("asset", "Asset", "text", "off").hint("For example BTC or ETH."),
        address: Field::new("address", "Address", "text", "off"),
        label: Field::new("label", "Label", "text", "off").hint("A name you will recognise, e.g. \"cold wallet\"."),
        proof: ProofFields::new("address", with_code),
    })
}

/// `GET /_gh/account/withdrawal-addresses`
pub async fn addresses(State(state): State<AppState>, who: Signed, Query(q): Query<NoticeQuery>) -> Response {
    match addresses_page(&state, &who).await {
        Ok(mut p) => {
            p.layout = p.layout.with_notice(q.notice.as_deref());
            render(StatusCode::OK, &p)
        }
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}

/// Body of the add-address form.
#[derive(Debug, Deserialize)]
pub struct AddForm {
    #[serde(default)]
    asset: String,
    #[serde(default)]
    address: String,
    #[serde(default)]
    label: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
}

/// `POST /_gh/account/withdrawal-addresses`: usable only after the activation delay; the notice
/// email carries a cancel link.
pub async fn add_address(State(state): State<AppState>, who: Signed, PageForm(f): PageForm<AddForm>) -> Response {
    let result = async {
        let form = ProofForm { password: f.password.clone(), code: f.code.clone() };
        let proof = proof::fields(&state, &who, SensitiveAction::AddWithdrawalAddress, &form).await?;
        let mut req = json!({ "asset": f.asset.trim(), "address": f.address.trim(), "label": f.label.trim() });
        proof::merge(&mut req, proof, "password");
        let b = api::body(req)?;
        api::answer(routes::withdrawals::add_address(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    let e = match result {
        Ok(_) => return see_other("/_gh/account/withdrawal-addresses?notice=address_added", HeaderMap::new()),
        Err(e) => e,
    };
    let user = Some(who.0.account.email.as_str().to_owned());
    let mut p = match addresses_page(&state, &who).await {
        Ok(p) => p,
        Err(e2) => return error_page(&e2, user),
    };
    p.asset = p.asset.value(f.asset.chars().take(16).collect::<String>());
    p.address = p.address.value(f.address.chars().take(128).collect::<String>());
    p.label = p.label.value(f.label.chars().take(64).collect::<String>());
    let msg = e.message.to_string();
    let lower = msg.to_ascii_lowercase();
    match (e.code.clone(), proof::proof_error(&e)) {
        (_, Some(on_code)) => p.proof = p.proof.error(msg, on_code),
        (ErrorCode::InvalidRequest, _) if lower.contains("asset") => p.asset = p.asset.error(msg),
        (ErrorCode::InvalidRequest, _) if lower.contains("label") => p.label = p.label.error(msg),
        (ErrorCode::InvalidRequest, _) => p.address = p.address.error(msg),
        _ => return error_page(&e, user),
    }
    render(e.code.status(), &p)
}

/// `POST /_gh/account/withdrawal-addresses/{id}/cancel` (no proof: it only removes a destination).
pub async fn cancel_address(State(state): State<AppState>, who: Signed, Path(id): Path<String>) -> Response {
    match api::answer(routes::withdrawals::cancel_address(State(state), who.0.clone(), Path(id)).await).await {
        Ok(_) => see_other("/_gh/account/withdrawal-addresses?notice=address_cancelled", HeaderMap::new()),
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}
