//! The proof a sensitive form carries (R47): the password re-entered and, for an account with
//! a second factor, a code from the authenticator app. The page turns it into the API's own
//! proof fields for the action, so the step-up policy is the API's, not the page's.

use gatehouse_core::stepup::SensitiveAction;
use serde::Deserialize;
use serde_json::{Value, json};

use super::Signed;
use super::form::Field;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::state::AppState;

/// What a sensitive form posts besides its own fields.
#[derive(Debug, Default, Deserialize)]
pub struct ProofForm {
    /// The password, re-entered.
    #[serde(default)]
    pub password: String,
    /// A code from the authenticator app (or a backup code), when the account has one.
    #[serde(default)]
    pub code: String,
}

impl ProofForm {
    /// Reads the proof from repeated-key form pairs.
    pub fn from_pairs(pairs: &[(String, String)]) -> Self {
        let get = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
        Self { password: get("password"), code: get("code") }
    }
}

/// The proof controls of one form, as `_macros.html` renders them (`proof` macro).
#[derive(Debug, Clone)]
pub struct ProofFields {
    /// The password field.
    pub password: Field,
    /// The code field, for accounts with a second factor.
    pub code: Option<Field>,
}

impl ProofFields {
    /// The controls for the form named `id` (ids stay unique on pages with several forms).
    pub fn new(id: &str, with_code: bool) -> Self {
        let code = with_code.then(|| {
            Field::new("code", "Authentication code", "text", "one-time-code")
                .id(format!("code-{id}"))
                .hint("The 6-digit code from your authenticator app, or a backup code.")
        });
        Self { password: Field::password_again(id), code }
    }

    /// Puts `message` on the field it is about.
    pub fn error(mut self, message: impl Into<String>, on_code: bool) -> Self {
        match (&mut self.code, on_code) {
            (Some(c), true) => *c = c.clone().error(message),
            _ => self.password = self.password.error(message),
        }
        self
    }
}

/// `totp` for six digits, else `backup_code`.
pub fn code_method(code: &str) -> &'static str {
    if code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit()) { "totp" } else { "backup_code" }
}

/// Whether the signed-in account must give a code with sensitive actions.
pub async fn needs_code(state: &AppState, who: &Signed) -> ApiResult<bool> {
    Ok(crate::mfa::factors(state, &who.0.account).await?.has_second_factor())
}

/// The API's proof fields for `action` from what the form carried: with a code, a step-up
/// token minted by the API's own step-up endpoint (and the password, which some actions need
/// as well); without one, the password.
pub async fn fields(state: &AppState, who: &Signed, action: SensitiveAction, form: &ProofForm) -> ApiResult<Value> {
    let code = form.code.trim();
    if code.is_empty() {
        return Ok(json!({ "password": form.password }));
    }
    let b = super::api::body(json!({ "action": action.as_str(), "method": code_method(code), "code": code }))?;
    let a =
        super::api::answer(crate::routes::mfa::step_up(axum::extract::State(state.clone()), who.0.clone(), b).await)
            .await?;
    // The step-up rotated the access cookie (R43): the page's answer must carry the new one.
    super::api::keep_cookies(&a.cookies);
    Ok(json!({ "password": form.password, "step_up_token": super::api::text(&a.body, "step_up_token") }))
}

/// Whether `e` is about the proof (so the form is shown again with the message on a proof
/// field) and, if so, whether it is about the code rather than the password.
pub fn proof_error(e: &ApiError) -> Option<bool> {
    match e.code {
        ErrorCode::ReauthFailed | ErrorCode::ReauthRequired | ErrorCode::RateLimited | ErrorCode::PayloadTooLarge => {
            Some(false)
        }
        // Codes of the second-factor step-up (invalid_code, step_up_required, …).
        ref c if c.as_str().contains("code") || c.as_str().starts_with("step_up") => Some(true),
        ref c if c.as_str().ends_with("_required") && c.as_str() != "sign_in_confirmation_required" => Some(true),
        _ => None,
    }
}

/// Adds the proof fields to an API request body (`password` under `password_key`).
pub fn merge(body: &mut Value, proof: Value, password_key: &str) {
    let (Some(b), Value::Object(p)) = (body.as_object_mut(), proof) else { return };
    for (k, v) in p {
        let key = if k == "password" { password_key.to_owned() } else { k };
        b.insert(key, v);
    }
}
