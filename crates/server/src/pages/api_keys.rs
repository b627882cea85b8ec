//! API keys: list and create (scopes, IP allowlist, kind; the secret shown once), and per key
//! its usage, rotate, unlock withdrawals, change the allowlist, revoke. Every change asks for
//! the password again, as the API does.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gatehouse_core::apikey::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

use super::form::{Field, PageForm};
use super::proof::{self, ProofFields, ProofForm};
use super::{Layout, Signed, api, error_page, render, see_other, when};
use crate::error::{ApiError, ErrorCode};
use crate::routes;
use crate::state::AppState;
use gatehouse_core::stepup::SensitiveAction;

/// Most form fields a key form may carry (7 scopes and a handful of inputs).
const MAX_FORM_PAIRS: usize = 32;

/// One scope checkbox.
#[derive(Debug)]
pub struct ScopeBox {
    name: &'static str,
    label: &'static str,
    checked: bool,
}

fn scope_label(s: Scope) -> &'static str {
    match s {
        Scope::ViewAssets => "View balances",
        Scope::ViewOrders => "View orders and trades",
        Scope::PlaceOrders => "Place and cancel orders",
        Scope::ViewWithdrawals => "View withdrawals",
        Scope::Withdraw => "Withdraw (needs an IP allowlist; starts locked)",
        Scope::ViewDeposits => "View deposits",
        Scope::Deposit => "Create deposit addresses",
    }
}

/// The create form's state.
#[derive(Debug)]
pub struct CreateForm {
    label: Field,
    kind: String,
    kind_error: Option<String>,
    public_key: Field,
    scopes: Vec<ScopeBox>,
    scopes_error: Option<String>,
    allowlist: Field,
    proof: ProofFields,
}

impl CreateForm {
    fn new(with_code: bool) -> Self {
        Self {
            label: Field::new("label", "Label", "text", "off").hint("What the key is for, e.g. \"trading bot\"."),
            kind: "hmac".into(),
            kind_error: None,
            public_key: Field::new("public_key", "Public key (Ed25519 or RSA only)", "textarea", "off")
                .hint("PEM, or for Ed25519 the 32-byte key in base64. Leave empty for HMAC.")
                .optional(),
            scopes: Scope::ALL
                .into_iter()
                .map(|s| ScopeBox { name: s.name(), label: scope_label(s), checked: s == Scope::ViewAssets })
                .collect(),
            scopes_error: None,
            allowlist: Field::new("allowlist", "IP allowlist", "textarea", "off")
                .hint("One address or CIDR range per line, at most 10. Required for withdrawals.")
                .optional(),
            proof: ProofFields::new("create", with_code),
        }
    }

    /// Whether the kind option `k` is selected.
    fn is_kind(&self, k: &str) -> bool {
        self.kind == k
    }
}

/// One key in the list.
#[derive(Debug)]
pub struct KeyRow {
    id: String,
    label: String,
    kind: String,
    scopes: String,
    allowlist: String,
    status: String,
    usable: bool,
    withdraw_locked: bool,
    created_at: String,
    expires_at: String,
    last_used: String,
}

fn key_row(k: &Value) -> KeyRow {
    let allow = api::strings(k, "allowlist");
    KeyRow {
        id: api::text(k, "id"),
        label: api::text(k, "label"),
        kind: api::text(k, "kind"),
        scopes: api::strings(k, "scopes").join(", "),
        allowlist: if allow.is_empty() { "any address".into() } else { allow.join(", ") },
        status: api::text(k, "status"),
        usable: k["usable"] == json!(true),
        withdraw_locked: k["withdraw_locked"] == json!(true),
        created_at: when(&api::text(k, "created_at")),
        expires_at: when(&api::text(k, "expires_at")),
        last_used: k["last_used"].get("at").and_then(Value::as_str).map(when).unwrap_or_else(|| "never".into()),
    }
}

/// The key list and the create form.
#[derive(askama::Template)]
#[template(path = "api_keys.html")]
pub struct KeysPage {
    layout: Layout,
    keys: Vec<KeyRow>,
    form: CreateForm,
    error: Option<String>,
}

async fn keys_page(state: &AppState, who: &Signed, form: CreateForm) -> Result<KeysPage, ApiError> {
    let list = api::answer(routes::keys::list(State(state.clone()), who.0.clone()).await).await?;
    let keys = list.body["api_keys"].as_array().map(|a| a.iter().map(key_row).collect()).unwrap_or_default();
    Ok(KeysPage { layout: Layout::signed("API keys", who, "api-keys"), keys, form, error: None })
}

/// Query of the key pages.
#[derive(Debug, Default, Deserialize)]
pub struct KeyQuery {
    #[serde(default)]
    notice: Option<String>,
}

/// `GET /_gh/account/api-keys`
pub async fn list(State(state): State<AppState>, who: Signed, Query(q): Query<KeyQuery>) -> Response {
    let form = match proof::needs_code(&state, &who).await {
        Ok(c) => CreateForm::new(c),
        Err(e) => return error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    };
    match keys_page(&state, &who, form).await {
        Ok(mut page) => {
            page.layout = page.layout.with_notice(q.notice.as_deref());
            render(StatusCode::OK, &page)
        }
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}

/// The one-time display of a new secret.
#[derive(askama::Template)]
#[template(path = "api_key_secret.html")]
pub struct SecretPage {
    layout: Layout,
    key: KeyRow,
    secret: Option<String>,
    rotated: bool,
}

fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default()
}

fn lines(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

/// `POST /_gh/account/api-keys`: the API's create; the answer page shows the secret once.
pub async fn create(
    State(state): State<AppState>,
    who: Signed,
    PageForm(pairs): PageForm<Vec<(String, String)>>,
) -> Response {
    let user = Some(who.0.account.email.as_str().to_owned());
    if pairs.len() > MAX_FORM_PAIRS {
        return error_page(&ApiError::new(ErrorCode::PayloadTooLarge), user);
    }
    let scopes: Vec<&str> = pairs.iter().filter(|(k, _)| k == "scopes").map(|(_, v)| v.as_str()).collect();
    let kind = field(&pairs, "kind");
    let public_key = field(&pairs, "public_key").trim();
    let result = async {
        let proof = proof::fields(&state, &who, SensitiveAction::CreateApiKey, &ProofForm::from_pairs(&pairs)).await?;
        let mut req = json!({
            "label": field(&pairs, "label"),
            "kind": kind,
            "scopes": scopes,
            "allowlist": lines(field(&pairs, "allowlist")),
        });
        if !public_key.is_empty() {
            req["public_key"] = json!(public_key);
        }
        proof::merge(&mut req, proof, "password");
        let b = api::body(req)?;
        api::answer(routes::keys::create(State(state.clone()), who.0.clone(), b).await).await
    }
    .await;
    let e = match result {
        Ok(a) => {
            let page = SecretPage {
                layout: Layout::signed("API key created", &who, "api-keys"),
                key: key_row(&a.body),
                secret: a.body.get("secret").and_then(Value::as_str).map(str::to_owned),
                rotated: false,
            };
            return render(StatusCode::CREATED, &page);
        }
        Err(e) => e,
    };
    // Show the form again with what was typed (never the password) and the error in place.
    let mut form = match proof::needs_code(&state, &who).await {
        Ok(c) => CreateForm::new(c),
        Err(e2) => return error_page(&e2, user),
    };
    form.label = form.label.value(field(&pairs, "label").chars().take(64).collect::<String>());
    form.kind = kind.chars().take(16).collect();
    form.public_key = form.public_key.value(public_key.chars().take(8192).collect::<String>());
    form.allowlist = form.allowlist.value(field(&pairs, "allowlist").chars().take(2048).collect::<String>());
    for b in &mut form.scopes {
        b.checked = scopes.contains(&b.name);
    }
    let msg = e.message.to_string();
    let lower = msg.to_ascii_lowercase();
    let mut general = None;
    match e.code {
        _ if proof::proof_error(&e).is_some() => {
            form.proof = form.proof.error(msg, proof::proof_error(&e) == Some(true));
        }
        ErrorCode::InvalidKeyRequest | ErrorCode::InvalidRequest => {
            if lower.contains("public key") {
                form.public_key = form.public_key.error(msg);
            } else if lower.contains("allowlist") || lower.contains("cidr") || lower.contains("address") {
                form.allowlist = form.allowlist.error(msg);
            } else if lower.contains("scope") || lower.contains("withdraw") {
                form.scopes_error = Some(msg);
            } else if lower.contains("label") {
                form.label = form.label.error(msg);
            } else if lower.contains("kind") || lower.contains("variant") {
                form.kind_error = Some(msg);
            } else {
                general = Some(msg);
            }
        }
        ErrorCode::KeyLimit => general = Some(msg),
        _ => return error_page(&e, user),
    }
    match keys_page(&state, &who, form).await {
        Ok(mut page) => {
            page.error = general;
            render(e.code.status(), &page)
        }
        Err(e2) => error_page(&e2, user),
    }
}

/// One usage line of a key.
#[derive(Debug)]
pub struct UsageRow {
    route: String,
    outcome: String,
    count: i64,
    last_at: String,
}

/// One key with its usage and actions.
#[derive(askama::Template)]
#[template(path = "api_key.html")]
pub struct KeyPage {
    layout: Layout,
    key: KeyRow,
    usage: Vec<UsageRow>,
    pending: Option<String>,
    rotate: ProofFields,
    unlock: ProofFields,
    revoke: ProofFields,
    allowlist: Field,
    allowlist_proof: ProofFields,
}

async fn key_page(state: &AppState, who: &Signed, id: &str) -> Result<KeyPage, ApiError> {
    let a = api::answer(routes::keys::get(State(state.clone()), who.0.clone(), Path(id.to_owned())).await).await?;
    let key = key_row(&a.body);
    let usage = a.body["usage"]
        .as_array()
        .map(|u| {
            u.iter()
                .map(|r| UsageRow {
                    route: api::text(r, "route"),
                    outcome: api::text(r, "outcome"),
                    count: r["count"].as_i64().unwrap_or(0),
                    last_at: when(&api::text(r, "last_at")),
                })
                .collect()
        })
        .unwrap_or_default();
    let pending = a.body["pending_allowlist"].as_object().map(|p| {
        let list: Vec<String> = p
            .get("allowlist")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default();
        format!("{} from {}", list.join(", "), when(p.get("effective_at").and_then(Value::as_str).unwrap_or_default()))
    });
    let current = api::strings(&a.body, "allowlist").join("\n");
    let with_code = proof::needs_code(state, who).await?;
    Ok(KeyPage {
        layout: Layout::signed(format!("API key “{}”", key.label), who, "api-keys"),
        usage,
        pending,
        rotate: ProofFields::new("rotate", with_code),
        unlock: ProofFields::new("unlock", with_code),
        revoke: ProofFields::new("revoke", with_code),
        allowlist: Field::new("allowlist", "IP allowlist", "textarea", "off")
            .hint("One address or CIDR range per line. Narrowing applies at once; widening a withdrawal key waits.")
            .value(current)
            .optional(),
        allowlist_proof: ProofFields::new("allowlist", with_code),
        key,
    })
}

/// `GET /_gh/account/api-keys/{id}`
pub async fn detail(
    State(state): State<AppState>,
    who: Signed,
    Path(id): Path<String>,
    Query(q): Query<KeyQuery>,
) -> Response {
    match key_page(&state, &who, &id).await {
        Ok(mut page) => {
            page.layout = page.layout.with_notice(q.notice.as_deref());
            render(StatusCode::OK, &page)
        }
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}

/// Body of the per-key forms.
#[derive(Debug, Deserialize)]
pub struct ActForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    allowlist: Option<String>,
}

/// `POST /_gh/account/api-keys/{id}/{rotate|unlock-withdraw|allowlist|revoke}`
pub async fn act(
    State(state): State<AppState>,
    who: Signed,
    Path((id, action)): Path<(String, String)>,
    PageForm(f): PageForm<ActForm>,
) -> Response {
    let user = Some(who.0.account.email.as_str().to_owned());
    let sensitive = match action.as_str() {
        "rotate" => SensitiveAction::RotateApiKey,
        "unlock-withdraw" => SensitiveAction::UnlockApiKey,
        "allowlist" | "revoke" => SensitiveAction::ChangeApiKey,
        _ => return error_page(&ApiError::new(ErrorCode::NotFound), user),
    };
    let built = async {
        let proof = proof::fields(&state, &who, sensitive, &ProofForm { password: f.password, code: f.code }).await?;
        let mut req = json!({});
        if action == "allowlist" {
            req["allowlist"] = json!(lines(f.allowlist.as_deref().unwrap_or_default()));
        }
        proof::merge(&mut req, proof, "password");
        api::body(req)
    }
    .await;
    let body = match built {
        Ok(b) => b,
        Err(e) => return act_error(&state, &who, &id, &action, e, f.allowlist).await,
    };
    let s = State(state.clone());
    let (a, p) = (who.0.clone(), Path(id.clone()));
    let result = match action.as_str() {
        "rotate" => api::answer(routes::keys::rotate(s, a, p, body).await).await,
        "unlock-withdraw" => api::answer(routes::keys::unlock_withdraw(s, a, p, body).await).await,
        "allowlist" => api::answer(routes::keys::allowlist(s, a, p, body).await).await,
        "revoke" => api::answer(routes::keys::revoke(s, a, p, body).await).await,
        _ => return error_page(&ApiError::new(ErrorCode::NotFound), user),
    };
    let answer = match result {
        Ok(a) => a,
        Err(e) => return act_error(&state, &who, &id, &action, e, f.allowlist).await,
    };
    let back = |notice: &str| see_other(&format!("/_gh/account/api-keys/{id}?notice={notice}"), HeaderMap::new());
    match action.as_str() {
        "rotate" => render(
            StatusCode::CREATED,
            &SecretPage {
                layout: Layout::signed("API key rotated", &who, "api-keys"),
                key: key_row(&answer.body),
                secret: answer.body.get("secret").and_then(Value::as_str).map(str::to_owned),
                rotated: true,
            },
        ),
        "unlock-withdraw" => back("key_unlocked"),
        "allowlist" => back("allowlist_changed"),
        _ => see_other("/_gh/account/api-keys?notice=key_revoked", HeaderMap::new()),
    }
}

async fn act_error(
    state: &AppState,
    who: &Signed,
    id: &str,
    action: &str,
    e: ApiError,
    allowlist: Option<String>,
) -> Response {
    let user = Some(who.0.account.email.as_str().to_owned());
    let mut page = match key_page(state, who, id).await {
        Ok(p) => p,
        Err(e2) => return error_page(&e2, user),
    };
    let msg = e.message.to_string();
    let on_code = proof::proof_error(&e) == Some(true);
    match (action, proof::proof_error(&e).is_some()) {
        ("rotate", true) => page.rotate = page.rotate.error(msg, on_code),
        ("unlock-withdraw", true) => page.unlock = page.unlock.error(msg, on_code),
        ("revoke", true) => page.revoke = page.revoke.error(msg, on_code),
        ("allowlist", true) => page.allowlist_proof = page.allowlist_proof.error(msg, on_code),
        ("allowlist", false) if matches!(e.code, ErrorCode::InvalidKeyRequest | ErrorCode::InvalidRequest) => {
            page.allowlist = page.allowlist.value(allowlist.unwrap_or_default().chars().take(2048).collect::<String>());
            page.allowlist = page.allowlist.error(msg);
        }
        _ => return error_page(&e, user),
    }
    render(e.code.status(), &page)
}
