//! The admin console (issue 7): pages for staff under `/_gh/admin/…`, and the admin JSON
//! endpoints they need that the API did not have yet (freeze, unfreeze, audit log).
//!
//! Invariants:
//! - **WebAuthn only.** Every admin page and endpoint here needs a signed-in admin whose
//!   *current session* was established with a WebAuthn factor (a passkey alone, or password
//!   and security key). The proof is the session's own `login_succeeded` audit record, which
//!   names the session and the factors checked (written in the same transaction as the
//!   session, so it cannot be missing or forged by a client). Anyone else: 403, or a redirect
//!   to `/_gh/admin/sign-in`, which runs the passkey ceremony from `/_gh/assets/webauthn.js`.
//! - **One code path.** The recovery pages call the recovery API's handlers in process (two
//!   different reviewers for high-value cases is the API's rule, shown as "awaiting second
//!   reviewer").
//! - **Freeze and unfreeze are audited with the admin as actor**, need the admin's password
//!   re-entered, and unfreezing never lifts a withdrawal hold (holds are a separate record).
//! - **The audit viewer is read-only**.

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use gatehouse_core::account::{Account, Email};
use gatehouse_core::audit::{AuditRecord, EventKind, Outcome};
use gatehouse_core::store::SideEffects;
use serde::Deserialize;
use serde_json::{Value, json};

use super::form::PageForm;
use super::{Layout, api, error_page, render, see_other, when};
use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::{ApiJson, ApiQuery, COOKIE_REFRESH, ClientCtx, cookie};
use crate::routes::recovery;
use crate::state::AppState;

/// Routes of the console and of its JSON endpoints.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/_gh/admin", get(|| async { see_other("/_gh/admin/recovery", HeaderMap::new()) }))
        .route("/_gh/admin/sign-in", get(sign_in_page))
        .route("/_gh/admin/recovery", get(queue))
        .route("/_gh/admin/recovery/{id}", get(case))
        .route("/_gh/admin/recovery/{id}/{action}", post(decide))
        .route("/_gh/admin/accounts", get(accounts_page))
        .route("/_gh/admin/accounts/{action}", post(accounts_act))
        .route("/_gh/admin/audit", get(audit_page))
        .route("/_gh/api/v1/admin/accounts/freeze", post(api_freeze))
        .route("/_gh/api/v1/admin/accounts/unfreeze", post(api_unfreeze))
        .route("/_gh/api/v1/admin/audit", get(api_audit))
}

/// Factor names a sign-in records that are WebAuthn ceremonies.
const WEBAUTHN_FACTORS: &[&str] = &["passkey", "webauthn"];

/// How far back the sign-in record of the current session is looked for in the admin's own
/// history (newest first; a session's sign-in is among its latest events in practice).
const SIGN_IN_LOOKBACK: u32 = 200;

/// Whether the `login_succeeded` record of `auth`'s session names a WebAuthn factor.
pub async fn signed_in_with_webauthn(state: &AppState, auth: &Authenticated) -> ApiResult<bool> {
    let session = auth.session.id.to_string();
    let records = state.store.history(auth.account.id, None, SIGN_IN_LOOKBACK).await?;
    Ok(records.iter().filter(|r| r.kind == EventKind::LoginSucceeded.as_str()).any(|r| {
        let d: Value = serde_json::from_str(&r.details).unwrap_or(Value::Null);
        d["session"].as_str() == Some(session.as_str())
            && d["factors"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x.as_str().is_some_and(|x| WEBAUTHN_FACTORS.contains(&x))))
    }))
}

/// The API rule: an admin, signed in with WebAuthn.
pub async fn require_admin_webauthn(state: &AppState, auth: &Authenticated) -> ApiResult<()> {
    if !auth.account.is_admin {
        return Err(ApiError::new(ErrorCode::AdminRequired));
    }
    if !signed_in_with_webauthn(state, auth).await? {
        return Err(ApiError::new(ErrorCode::AdminWebAuthnRequired));
    }
    Ok(())
}

/// A signed-in admin on a console page (session established with WebAuthn).
#[derive(Debug, Clone)]
pub struct Admin(pub Authenticated);

impl FromRequestParts<AppState> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let auth = match Authenticated::from_request_parts(parts, state).await {
            Ok(a) => a,
            Err(e) => {
                return Err(match e.code {
                    // The access token lives minutes: refresh through the API's rotation (the
                    // session, and so its WebAuthn sign-in record, stays the same) and come back.
                    ErrorCode::TokenExpired
                        if parts.method == Method::GET && cookie(&parts.headers, COOKIE_REFRESH).is_some() =>
                    {
                        refresh_and_return(state, parts).await
                    }
                    ErrorCode::Unauthenticated
                    | ErrorCode::TokenExpired
                    | ErrorCode::SessionExpired
                    | ErrorCode::DeviceMismatch => see_other("/_gh/admin/sign-in", HeaderMap::new()),
                    _ => error_page(&e, None),
                });
            }
        };
        let user = Some(auth.account.email.as_str().to_owned());
        match require_admin_webauthn(state, &auth).await {
            Ok(()) => Ok(Self(auth)),
            Err(e) if e.code == ErrorCode::AdminWebAuthnRequired => Err(render(
                StatusCode::FORBIDDEN,
                &super::MessagePage {
                    layout: Layout { user, ..Layout::public("Sign in with a passkey") },
                    text: e.message.to_string(),
                    link: Some(("/_gh/admin/sign-in".into(), "Admin sign-in".into())),
                    kind: e.code.as_str(),
                },
            )),
            Err(e) => Err(error_page(&e, user)),
        }
    }
}

async fn refresh_and_return(state: &AppState, parts: &Parts) -> Response {
    // Only back to a console page (the route matched one; this keeps it so).
    let back = parts.uri.path_and_query().map_or("/_gh/admin/recovery", |p| p.as_str());
    let back = if back.starts_with("/_gh/admin/") && !back.contains("//") { back } else { "/_gh/admin/recovery" };
    let client = ClientCtx::from_parts(parts, &state.trusted_proxies);
    let result = crate::routes::sessions::refresh(
        State(state.clone()),
        client,
        crate::pop::PopCtx::from_parts(parts, state),
        Method::POST,
        parts.headers.clone(),
        Bytes::new(),
    )
    .await;
    match api::answer(result).await {
        Ok(a) => see_other(back, a.cookies),
        Err(_) => see_other("/_gh/admin/sign-in", HeaderMap::new()),
    }
}

fn layout(title: impl Into<String>, who: &Admin, section: &'static str) -> Layout {
    Layout { title: title.into(), user: Some(who.0.account.email.as_str().to_owned()), notice: None, section }
}

fn admin_notice(key: Option<&str>) -> Option<&'static str> {
    Some(match key? {
        "approved" => "Your approval was recorded.",
        "executed" => "The case was approved and the recovery carried out.",
        "awaiting_second_reviewer" => "Your approval was recorded. The case is awaiting a second reviewer.",
        "rejected" => "The case was rejected.",
        "frozen" => "The account was frozen.",
        "unfrozen" => "The account was unfrozen. Any withdrawal hold stays in place.",
        _ => return None,
    })
}

#[derive(Debug, Default, Deserialize)]
struct NoticeQuery {
    #[serde(default)]
    notice: Option<String>,
}

// --- sign-in ----------------------------------------------------------------------------

#[derive(askama::Template)]
#[template(path = "admin_sign_in.html")]
struct SignInPage {
    layout: Layout,
}

/// `GET /_gh/admin/sign-in`: the passkey ceremony (script from `/_gh/assets/webauthn.js`).
async fn sign_in_page() -> Response {
    render(StatusCode::OK, &SignInPage { layout: Layout::public("Admin sign-in") })
}

// --- recovery queue ---------------------------------------------------------------------

/// One case as the pages show it.
#[derive(Debug)]
struct CaseRow {
    id: String,
    user: String,
    email: String,
    state: String,
    created_at: String,
    execute_after: String,
    required: u64,
    approvals: u64,
    status: &'static str,
}

async fn case_row(state: &AppState, v: &Value) -> CaseRow {
    let user = api::text(v, "user");
    let email = match gatehouse_core::ids::UserId::parse(&user) {
        Some(id) => state.store.find_account(id).await.ok().flatten().map(|a| a.email.as_str().to_owned()),
        None => None,
    };
    let st = api::text(v, "state");
    let required = v["required_approvals"].as_u64().unwrap_or(1);
    let approvals = v["approvals"].as_u64().unwrap_or(0);
    let status = match st.as_str() {
        "open" if approvals >= 1 && required >= 2 => "awaiting second reviewer",
        "open" => "awaiting review",
        "executed" => "executed",
        "rejected" => "rejected",
        "cancelled" => "cancelled",
        _ => "closed",
    };
    CaseRow {
        id: api::text(v, "id"),
        user,
        email: email.unwrap_or_default(),
        state: st,
        created_at: when(&api::text(v, "created_at")),
        execute_after: when(&api::text(v, "execute_after")),
        required,
        approvals,
        status,
    }
}

#[derive(askama::Template)]
#[template(path = "admin_queue.html")]
struct QueuePage {
    layout: Layout,
    cases: Vec<CaseRow>,
    all: bool,
}

#[derive(Debug, Default, Deserialize)]
struct QueueQuery {
    #[serde(default)]
    state: Option<String>,
}

/// `GET /_gh/admin/recovery`
async fn queue(State(state): State<AppState>, who: Admin, Query(q): Query<QueueQuery>) -> Response {
    let all = q.state.as_deref() == Some("all");
    let query = serde_json::from_value(json!({ "state": if all { "all" } else { "open" } }));
    let Ok(query) = query else { return error_page(&ApiError::new(ErrorCode::InvalidRequest), None) };
    let result = recovery::admin_list(State(state.clone()), who.0.clone(), ApiQuery(query)).await;
    match api::answer(result).await {
        Ok(a) => {
            let mut cases = Vec::new();
            for c in a.body["cases"].as_array().into_iter().flatten() {
                cases.push(case_row(&state, c).await);
            }
            render(StatusCode::OK, &QueuePage { layout: layout("Recovery review queue", &who, "admin"), cases, all })
        }
        Err(e) => error_page(&e, None),
    }
}

#[derive(askama::Template)]
#[template(path = "admin_case.html")]
struct CasePage {
    layout: Layout,
    case: CaseRow,
    evidence: String,
    error: Option<String>,
}

async fn case_page(
    state: &AppState,
    who: &Admin,
    id: String,
    notice: Option<&str>,
    error: Option<ApiError>,
) -> Response {
    let result = recovery::admin_get(State(state.clone()), who.0.clone(), Path(id)).await;
    match api::answer(result).await {
        Ok(a) => {
            let mut l = layout("Recovery case", who, "admin");
            l.notice = admin_notice(notice);
            let status = error.as_ref().map_or(StatusCode::OK, |e| e.code.status());
            let page = CasePage {
                layout: l,
                case: case_row(state, &a.body).await,
                evidence: api::text(&a.body, "evidence"),
                error: error.map(|e| e.message.to_string()),
            };
            render(status, &page)
        }
        Err(e) => error_page(&e, Some(who.0.account.email.as_str().to_owned())),
    }
}

/// `GET /_gh/admin/recovery/{id}`: the case with its evidence.
async fn case(
    State(state): State<AppState>,
    who: Admin,
    Path(id): Path<String>,
    Query(q): Query<NoticeQuery>,
) -> Response {
    case_page(&state, &who, id, q.notice.as_deref(), None).await
}

#[derive(Debug, Deserialize)]
struct DecisionForm {
    #[serde(default)]
    password: String,
    #[serde(default)]
    note: String,
}

/// `POST /_gh/admin/recovery/{id}/approve|reject`
async fn decide(
    State(state): State<AppState>,
    who: Admin,
    Path((id, action)): Path<(String, String)>,
    PageForm(f): PageForm<DecisionForm>,
) -> Response {
    let body = match api::body(json!({ "password": f.password, "note": f.note })) {
        Ok(b) => b,
        Err(e) => return case_page(&state, &who, id, None, Some(e)).await,
    };
    let result = match action.as_str() {
        "approve" => {
            api::answer(recovery::admin_approve(State(state.clone()), who.0.clone(), Path(id.clone()), body).await)
                .await
        }
        "reject" => {
            api::answer(recovery::admin_reject(State(state.clone()), who.0.clone(), Path(id.clone()), body).await).await
        }
        _ => return error_page(&ApiError::new(ErrorCode::NotFound), None),
    };
    match result {
        Ok(a) => {
            let notice = match (action.as_str(), api::text(&a.body, "status").as_str()) {
                ("reject", _) => "rejected",
                (_, "executed") => "executed",
                (_, "awaiting_second_reviewer") => "awaiting_second_reviewer",
                _ => "approved",
            };
            see_other(&format!("/_gh/admin/recovery/{}?notice={notice}", urlencode(&id)), HeaderMap::new())
        }
        Err(e) => case_page(&state, &who, id, None, Some(e)).await,
    }
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") }
        })
        .collect()
}

// --- freeze / unfreeze ------------------------------------------------------------------

/// `POST /_gh/api/v1/admin/accounts/freeze|unfreeze`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountAction {
    /// The account's address.
    email: String,
    /// The admin's password, re-entered.
    #[serde(default)]
    password: Option<String>,
    /// Why (kept in the audit record), ≤ 500 characters.
    #[serde(default)]
    reason: Option<String>,
}

async fn target(state: &AppState, email: &str) -> ApiResult<Account> {
    let email = Email::parse(email).map_err(|_| ApiError::new(ErrorCode::NotFound))?;
    state.store.find_account_by_email(&email).await?.ok_or_else(|| ApiError::new(ErrorCode::NotFound))
}

async fn freeze_or_unfreeze(
    state: &AppState,
    auth: &Authenticated,
    req: AccountAction,
    freeze: bool,
) -> ApiResult<Value> {
    require_admin_webauthn(state, auth).await?;
    crate::routes::sessions::reauthenticate(state, auth, req.password.as_deref()).await?;
    let account = target(state, &req.email).await?;
    let reason: String = req.reason.unwrap_or_default().chars().take(500).collect();
    let kind = if freeze { EventKind::AccountFrozen } else { EventKind::AccountUnfrozen };
    let ev = auth.event(kind, Outcome::Success).about(account.id).with("by", "admin").with("reason", reason.clone());
    let fx = SideEffects::event(ev);
    let changed = if freeze {
        let why = if reason.is_empty() { "admin".to_owned() } else { format!("admin: {reason}") };
        state.store.freeze_account(account.id, &why, state.clock.now(), fx).await?
    } else {
        state.store.unfreeze_account(account.id, fx).await?
    };
    if freeze && changed {
        crate::friction::invalidate_keys(state, account.id).await?;
    }
    Ok(json!({ "user": account.id.to_string(), "frozen": freeze, "changed": changed }))
}

async fn api_freeze(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<AccountAction>,
) -> ApiResult<Json<Value>> {
    freeze_or_unfreeze(&state, &auth, req, true).await.map(Json)
}

async fn api_unfreeze(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<AccountAction>,
) -> ApiResult<Json<Value>> {
    freeze_or_unfreeze(&state, &auth, req, false).await.map(Json)
}

#[derive(askama::Template)]
#[template(path = "admin_accounts.html")]
struct AccountsPage {
    layout: Layout,
    email: String,
    error: Option<String>,
}

/// `GET /_gh/admin/accounts`
async fn accounts_page(who: Admin, Query(q): Query<NoticeQuery>) -> Response {
    let mut l = layout("Freeze or unfreeze an account", &who, "admin");
    l.notice = admin_notice(q.notice.as_deref());
    render(StatusCode::OK, &AccountsPage { layout: l, email: String::new(), error: None })
}

#[derive(Debug, Deserialize)]
struct AccountForm {
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    reason: String,
}

/// `POST /_gh/admin/accounts/freeze|unfreeze`
async fn accounts_act(
    State(state): State<AppState>,
    who: Admin,
    Path(action): Path<String>,
    PageForm(f): PageForm<AccountForm>,
) -> Response {
    let freeze = match action.as_str() {
        "freeze" => true,
        "unfreeze" => false,
        _ => return error_page(&ApiError::new(ErrorCode::NotFound), None),
    };
    let req = AccountAction { email: f.email.clone(), password: Some(f.password), reason: Some(f.reason) };
    match freeze_or_unfreeze(&state, &who.0, req, freeze).await {
        Ok(_) => see_other(
            &format!("/_gh/admin/accounts?notice={}", if freeze { "frozen" } else { "unfrozen" }),
            HeaderMap::new(),
        ),
        Err(e) => {
            let page = AccountsPage {
                layout: layout("Freeze or unfreeze an account", &who, "admin"),
                email: f.email,
                error: Some(e.message.to_string()),
            };
            render(e.code.status(), &page)
        }
    }
}

// --- audit viewer -----------------------------------------------------------------------

/// Events per page of the viewer.
const AUDIT_PAGE: u32 = 50;
/// Records scanned per filtered page (kind filter over the chain).
const AUDIT_SCAN: u32 = 500;

/// `GET /_gh/api/v1/admin/audit` and the viewer's query.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Only events about this account.
    #[serde(default)]
    email: Option<String>,
    /// Only events of this kind (`login_succeeded`, …).
    #[serde(default)]
    kind: Option<String>,
    /// Page: events before this sequence number (newest first).
    #[serde(default)]
    before: Option<i64>,
}

fn record_json(r: &AuditRecord) -> Value {
    json!({
        "seq": r.seq,
        "at": r.at.to_rfc3339(),
        "kind": r.kind,
        "actor": r.actor,
        "subject": r.subject,
        "ip": r.ip,
        "outcome": r.outcome,
        "details": serde_json::from_str::<Value>(&r.details).unwrap_or(Value::Null),
    })
}

/// The newest events (all accounts, or one account by email), optionally of one kind, before
/// `before`; answers the page and the `before` of the next page.
async fn audit_events(state: &AppState, q: &AuditQuery) -> ApiResult<(Vec<AuditRecord>, Option<i64>)> {
    let kind = q.kind.as_deref().map(str::trim).filter(|k| !k.is_empty());
    if kind.is_some_and(|k| k.len() > 64) {
        return Err(ApiError::new(ErrorCode::InvalidRequest).message("Unknown event kind."));
    }
    let keep = |r: &AuditRecord| kind.is_none_or(|k| r.kind == k);
    let email = q.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    let mut out = Vec::new();
    let mut before = q.before;
    if let Some(email) = email {
        let account = target(state, email).await?;
        loop {
            let batch = state.store.history(account.id, before, AUDIT_SCAN).await?;
            let n = batch.len();
            for r in batch {
                before = Some(r.seq);
                if keep(&r) {
                    out.push(r);
                    if out.len() == AUDIT_PAGE as usize {
                        return Ok((out, before));
                    }
                }
            }
            if n < AUDIT_SCAN as usize {
                return Ok((out, None));
            }
        }
    }
    // All accounts: the chain is read forward, so walk back from the end in windows.
    let end = match before {
        Some(b) => b,
        None => latest_seq(state).await? + 1,
    };
    let mut hi = end;
    while hi > 1 {
        let lo = (hi - i64::from(AUDIT_SCAN)).max(1);
        let mut batch: Vec<AuditRecord> =
            state.store.records_after(lo - 1, AUDIT_SCAN).await?.into_iter().filter(|r| r.seq < hi).collect();
        batch.reverse();
        for r in batch {
            if keep(&r) {
                let seq = r.seq;
                out.push(r);
                if out.len() == AUDIT_PAGE as usize {
                    return Ok((out, (seq > 1).then_some(seq)));
                }
            }
        }
        hi = lo;
    }
    Ok((out, None))
}

/// The highest sequence number in the chain. Sequence numbers start at 1 without gaps, so
/// "is there a record after `n`" is monotone: probe doubling steps, then bisect (O(log n)
/// single-record reads).
async fn latest_seq(state: &AppState) -> ApiResult<i64> {
    let exists_after = |n: i64| async move { Ok::<_, ApiError>(!state.store.records_after(n, 1).await?.is_empty()) };
    if !exists_after(0).await? {
        return Ok(0);
    }
    // Invariant: a record exists with seq > lo - 1 (i.e. seq lo exists), none after hi.
    let mut lo = 1_i64;
    let mut step = 1_i64;
    while exists_after(lo + step - 1).await? {
        lo += step;
        step = step.saturating_mul(2);
    }
    let mut hi = lo + step - 1;
    while lo < hi {
        let mid = lo + (hi - lo + 1) / 2;
        if exists_after(mid - 1).await? { lo = mid } else { hi = mid - 1 }
    }
    Ok(lo)
}

async fn api_audit(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
    require_admin_webauthn(&state, &auth).await?;
    let (events, next) = audit_events(&state, &q).await?;
    Ok(Json(json!({ "events": events.iter().map(record_json).collect::<Vec<_>>(), "next_before": next })))
}

/// One event as the viewer shows it.
struct EventRow {
    seq: i64,
    at: String,
    kind: String,
    actor: String,
    subject: String,
    outcome: String,
    details: String,
}

#[derive(askama::Template)]
#[template(path = "admin_audit.html")]
struct AuditPage {
    layout: Layout,
    email: String,
    kind: String,
    events: Vec<EventRow>,
    next: Option<String>,
    error: Option<String>,
}

/// `GET /_gh/admin/audit?email=&kind=&before=`
async fn audit_page(State(state): State<AppState>, who: Admin, Query(q): Query<AuditQuery>) -> Response {
    let email = q.email.clone().unwrap_or_default();
    let kind = q.kind.clone().unwrap_or_default();
    let (events, next, error) = match audit_events(&state, &q).await {
        Ok((ev, next)) => (ev, next, None),
        Err(e) => (Vec::new(), None, Some(e.message.to_string())),
    };
    let rows = events
        .iter()
        .map(|r| EventRow {
            seq: r.seq,
            at: when(&r.at.to_rfc3339()),
            kind: r.kind.clone(),
            actor: r.actor.clone().unwrap_or_default(),
            subject: r.subject.clone().unwrap_or_default(),
            outcome: r.outcome.clone(),
            details: r.details.clone(),
        })
        .collect();
    let next =
        next.map(|b| format!("/_gh/admin/audit?email={}&kind={}&before={b}", urlencode(&email), urlencode(&kind)));
    let page = AuditPage { layout: layout("Audit log", &who, "admin"), email, kind, events: rows, next, error };
    render(StatusCode::OK, &page)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices_are_fixed() {
        assert_eq!(admin_notice(Some("frozen")), Some("The account was frozen."));
        assert_eq!(admin_notice(Some("<b>")), None);
    }

    #[test]
    fn ids_are_encoded_in_links() {
        assert_eq!(urlencode("a b/c"), "a%20b%2Fc");
        assert_eq!(urlencode("x@y.z"), "x%40y.z");
    }
}
