//! Second factors: the factor list, TOTP enrolment (QR code, then one code to confirm; the
//! first factor also gets backup codes, shown once), TOTP removal, security-key removal and
//! backup-code regeneration, each behind the API's own step-up rules.
//!
//! Removing a security key or passkey goes through the API's `webauthn/remove` handler with a
//! `change_factors` step-up token. Without script the form carries a code (authenticator app or
//! backup code, which every account with a key has) and the page mints the token through the
//! API's step-up endpoint; with script, `/_gh/assets/webauthn.js` can mint it with a security
//! key instead and post it in the same form.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use base64::Engine as _;
use gatehouse_core::stepup::SensitiveAction;
use serde::Deserialize;
use serde_json::json;

use super::form::{Field, PageForm};
use super::proof::{self, ProofFields, ProofForm};
use super::{Layout, Signed, api, error_page, render, see_other, when};
use crate::error::{ApiError, ErrorCode};
use crate::routes;
use crate::state::AppState;

/// One security key or passkey, with its removal form's code field.
#[derive(Debug)]
pub struct KeyRow {
    id: String,
    code: Field,
    name: String,
    kind: String,
    created_at: String,
    last_used: String,
}

/// The factor list with its forms.
#[derive(askama::Template)]
#[template(path = "factors.html")]
pub struct FactorsPage {
    layout: Layout,
    totp: bool,
    backup_remaining: i64,
    backup_total: i64,
    keys: Vec<KeyRow>,
    enrol: ProofFields,
    remove: ProofFields,
    regenerate: ProofFields,
    key_name: Field,
    add_key: ProofFields,
}

async fn factors_page(state: &AppState, who: &Signed) -> Result<FactorsPage, ApiError> {
    let a = api::answer(routes::mfa::list(State(state.clone()), who.0.clone()).await).await?;
    let b = &a.body;
    let has = b["has_second_factor"] == json!(true);
    let keys = b["webauthn"]
        .as_array()
        .map(|l| {
            l.iter()
                .enumerate()
                .map(|(i, k)| KeyRow {
                    id: api::text(k, "id"),
                    code: Field::new("code", "Authentication code", "text", "one-time-code")
                        .id(format!("code-key-{i}"))
                        .hint("To remove this key: a code from your authenticator app, or a backup code."),
                    name: api::text(k, "name"),
                    kind: api::text(k, "kind"),
                    created_at: when(&api::text(k, "created_at")),
                    last_used: k["last_used_at"].as_str().map(when).unwrap_or_else(|| "never".into()),
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(FactorsPage {
        layout: Layout::signed("Second factors", who, "factors"),
        totp: b["totp"]["enabled"] == json!(true),
        backup_remaining: b["backup_codes"]["remaining"].as_i64().unwrap_or(0),
        backup_total: b["backup_codes"]["total"].as_i64().unwrap_or(0),
        keys,
        enrol: ProofFields::new("enrol", has),
        remove: ProofFields::new("remove", has),
        regenerate: ProofFields::new("regenerate", has),
        key_name: Field::new("name", "Name of the key", "text", "off")
            .id("key-name")
            .hint("So you can tell your keys apart, e.g. \"blue YubiKey\"."),
        add_key: ProofFields::new("key", has),
    })
}

/// Query of the factor page.
#[derive(Debug, Default, Deserialize)]
pub struct FactorsQuery {
    #[serde(default)]
    notice: Option<String>,
}

/// `GET /_gh/account/factors`
pub async fn list(State(state): State<AppState>, who: Signed, Query(q): Query<FactorsQuery>) -> Response {
    match factors_page(&state, &who).await {
        Ok(mut p) => {
            p.layout = p.layout.with_notice(q.notice.as_deref());
            render(StatusCode::OK, &p)
        }
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}

async fn failed(state: &AppState, who: &Signed, form: &str, e: ApiError) -> Response {
    let user = Some(who.0.account.email.as_str().to_owned());
    let Some(on_code) = proof::proof_error(&e) else { return error_page(&e, user) };
    match factors_page(state, who).await {
        Ok(mut p) => {
            let msg = e.message.to_string();
            match form {
                "enrol" => p.enrol = p.enrol.error(msg, on_code),
                "remove" => p.remove = p.remove.error(msg, on_code),
                "regenerate" => p.regenerate = p.regenerate.error(msg, on_code),
                other => {
                    // `key:{id}`, a key's removal form: its only field is the code.
                    let id = other.strip_prefix("key:").unwrap_or_default();
                    let Some(row) = p.keys.iter_mut().find(|k| k.id == id) else { return error_page(&e, user) };
                    row.code = row.code.clone().error(msg);
                }
            }
            render(e.code.status(), &p)
        }
        Err(e2) => error_page(&e2, user),
    }
}

/// TOTP enrolment: the QR code, the secret as text, and the confirmation form.
#[derive(askama::Template)]
#[template(path = "totp_enrol.html")]
pub struct EnrolPage {
    layout: Layout,
    qr_data_url: String,
    secret: String,
    code: Field,
}

fn enrol_page(who: &Signed, qr_svg: &str, secret: &str, code: Field) -> EnrolPage {
    EnrolPage {
        layout: Layout::signed("Set up your authenticator app", who, "factors"),
        qr_data_url: format!(
            "data:image/svg+xml;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(qr_svg.as_bytes())
        ),
        secret: secret.to_owned(),
        code,
    }
}

fn confirm_field() -> Field {
    Field::new("code", "Code from the app", "text", "one-time-code")
        .id("totp-code")
        .hint("Scan the QR code (or type the key), then enter the 6-digit code the app shows.")
}

/// `POST /_gh/account/factors/totp`: starts enrolment (the API's `totp_start`).
pub async fn totp_start(State(state): State<AppState>, who: Signed, PageForm(f): PageForm<ProofForm>) -> Response {
    let result = async {
        let b = api::body(proof::fields(&state, &who, SensitiveAction::ChangeFactors, &f).await?)?;
        api::answer(routes::mfa::totp_start(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    match result {
        Ok(a) => render(
            StatusCode::CREATED,
            &enrol_page(&who, &api::text(&a.body, "qr_svg"), &api::text(&a.body, "secret"), confirm_field()),
        ),
        Err(e) => failed(&state, &who, "enrol", e).await,
    }
}

/// Body of the enrolment confirmation.
#[derive(Debug, Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    code: String,
}

/// The backup codes, shown once.
#[derive(askama::Template)]
#[template(path = "backup_codes.html")]
pub struct CodesPage {
    layout: Layout,
    codes: Vec<String>,
}

/// `POST /_gh/account/factors/totp/confirm`
pub async fn totp_confirm(State(state): State<AppState>, who: Signed, PageForm(f): PageForm<ConfirmForm>) -> Response {
    let result = async {
        let b = api::body(json!({ "code": f.code.trim() }))?;
        api::answer(routes::mfa::totp_confirm(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    match result {
        Ok(a) => {
            let codes = api::strings(&a.body, "backup_codes");
            if codes.is_empty() {
                return see_other("/_gh/account/factors?notice=totp_enabled", HeaderMap::new());
            }
            render(
                StatusCode::OK,
                &CodesPage { layout: Layout::signed("Save your backup codes", &who, "factors"), codes },
            )
        }
        Err(e) if e.code == ErrorCode::InvalidCode => {
            // The pending enrolment stays; its QR code is not shown again (it is not stored in
            // the clear): the person enters a fresh code from the app they already set up.
            let page = EnrolAgain {
                layout: Layout::signed("Set up your authenticator app", &who, "factors"),
                code: confirm_field().error(e.message.clone()),
            };
            render(e.code.status(), &page)
        }
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}

/// Enrolment confirmation after a wrong code.
#[derive(askama::Template)]
#[template(path = "totp_enrol_again.html")]
pub struct EnrolAgain {
    layout: Layout,
    code: Field,
}

/// `POST /_gh/account/factors/totp/remove`
pub async fn totp_remove(State(state): State<AppState>, who: Signed, PageForm(f): PageForm<ProofForm>) -> Response {
    let result = async {
        let b = api::body(proof::fields(&state, &who, SensitiveAction::ChangeFactors, &f).await?)?;
        api::answer(routes::mfa::totp_remove(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    match result {
        Ok(_) => see_other("/_gh/account/factors?notice=totp_removed", HeaderMap::new()),
        Err(e) => failed(&state, &who, "remove", e).await,
    }
}

/// `POST /_gh/account/backup-codes`
pub async fn regenerate(State(state): State<AppState>, who: Signed, PageForm(f): PageForm<ProofForm>) -> Response {
    let result = async {
        let b = api::body(proof::fields(&state, &who, SensitiveAction::ChangeFactors, &f).await?)?;
        api::answer(routes::mfa::backup_regenerate(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    match result {
        Ok(a) => render(
            StatusCode::CREATED,
            &CodesPage {
                layout: Layout::signed("Your new backup codes", &who, "factors"),
                codes: api::strings(&a.body, "backup_codes"),
            },
        ),
        Err(e) => failed(&state, &who, "regenerate", e).await,
    }
}

/// Body of a key's removal form: a code (authenticator app or backup code), or the step-up
/// token `/_gh/assets/webauthn.js` obtained with a security key.
#[derive(Debug, Default, Deserialize)]
pub struct RemoveKeyForm {
    #[serde(default)]
    code: String,
    #[serde(default)]
    step_up_token: String,
}

/// `POST /_gh/account/factors/keys/{id}/remove`: the API's `webauthn/remove`, with a
/// `change_factors` step-up token (minted here from the code through the API's step-up).
pub async fn key_remove(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    PageForm(f): PageForm<RemoveKeyForm>,
) -> Response {
    let result = async {
        let token = match (f.step_up_token.trim(), f.code.trim()) {
            (t, _) if !t.is_empty() => Some(t.to_owned()),
            (_, "") => None, // the API answers step_up_required, shown on the code field
            (_, code) => {
                let form = ProofForm { password: String::new(), code: code.to_owned() };
                let p = proof::fields(&state, &who, SensitiveAction::ChangeFactors, &form).await?;
                Some(api::text(&p, "step_up_token"))
            }
        };
        let b = api::body(json!({ "id": id, "step_up_token": token }))?;
        api::answer(routes::mfa_webauthn::remove(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    match result {
        Ok(_) => see_other("/_gh/account/factors?notice=key_removed", HeaderMap::new()),
        Err(e) => failed(&state, &who, &format!("key:{id}"), e).await,
    }
}
