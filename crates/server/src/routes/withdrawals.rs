//! Withdrawal address book, allowlist-only mode and transaction-bound withdrawal intents.
//!
//! Flow (R78): `POST /withdrawals` creates a pending intent and answers its canonical JSON and
//! hash; `POST /withdrawals/{id}/confirm` takes the echoed hash and a step-up proof bound to
//! it, re-checks every rule inside one transaction and moves the intent to `confirmed` by a
//! conditional update; the delivery worker then hands it to the back end, keyed by its id.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::Span;
use gatehouse_core::friction::LinkAction;
use gatehouse_core::friction_store::ConfirmOutcome;
use gatehouse_core::ids::SessionId;
use gatehouse_core::secret::ct_eq_bytes;
use gatehouse_core::stepup::{FactorStrength, SensitiveAction};
use gatehouse_core::store::SideEffects;
use gatehouse_core::withdrawal::{
    self, AddressEntry, Amount, Asset, Destination, Intent, IntentDetails, IntentState, Refusal, WithdrawalContext,
    hash_canonical, parse_label,
};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth::Authenticated;
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::friction::{action_link, ensure_settings_unlocked, intent_json};
use crate::http::ApiJson;
use crate::mail::friction_templates as templates;
use crate::state::AppState;
use crate::stepup::{self, StepUpInput};

/// Most live (not cancelled) address-book entries per account.
pub const MAX_BOOK_ENTRIES: usize = 100;

fn invalid(msg: &'static str) -> ApiError {
    ApiError::new(ErrorCode::InvalidWithdrawal).message(msg)
}

/// The error answering a refusal.
pub fn refusal_error(r: Refusal) -> ApiError {
    match r {
        Refusal::Frozen => ApiError::new(ErrorCode::AccountFrozen),
        Refusal::Held(until) => {
            ApiError::new(ErrorCode::WithdrawalsHeld).details(json!({ "held_until": until.to_rfc3339() }))
        }
        Refusal::AddressNotActive(at) => {
            ApiError::new(ErrorCode::AddressNotActive).details(json!({ "active_at": at.to_rfc3339() }))
        }
        Refusal::NotAllowlisted => ApiError::new(ErrorCode::AddressNotAllowlisted),
        Refusal::DailyLimit => ApiError::new(ErrorCode::DailyLimitExceeded),
    }
}

fn refusal_name(r: Refusal) -> &'static str {
    match r {
        Refusal::Frozen => "frozen",
        Refusal::Held(_) => "hold",
        Refusal::AddressNotActive(_) => "address_not_active",
        Refusal::NotAllowlisted => "not_allowlisted",
        Refusal::DailyLimit => "daily_limit",
    }
}

async fn refuse(state: &AppState, auth: &Authenticated, r: Refusal, intent: Option<&str>) -> ApiError {
    let mut e = auth.event(EventKind::WithdrawalRefused, Outcome::Denied).with("reason", refusal_name(r));
    if let Some(i) = intent {
        e = e.with("intent", i);
    }
    if let Err(err) = state.store.append(vec![e]).await {
        return err.into();
    }
    refusal_error(r)
}

fn address_json(e: &AddressEntry, now: gatehouse_core::clock::Timestamp) -> Value {
    json!({
        "id": e.id,
        "asset": e.asset.as_str(),
        "address": e.address.as_str(),
        "label": e.label,
        "state": e.state(now),
        "created_at": e.created_at.to_rfc3339(),
        "active_at": e.active_at.to_rfc3339(),
        "cancelled_at": e.cancelled_at.map(|t| t.to_rfc3339()),
    })
}

/// `POST /_gh/api/v1/withdrawal-addresses`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddAddress {
    asset: String,
    address: String,
    label: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    step_up_token: Option<String>,
}

/// Adds an address: settings not locked, step-up, then usable only after the activation delay;
/// the notice carries a cancel link.
pub async fn add_address(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<AddAddress>,
) -> ApiResult<Response> {
    ensure_settings_unlocked(&state, &auth, "withdrawal_address").await?;
    let asset = Asset::parse(&req.asset)
        .filter(|a| state.config.friction.rule(a).is_some())
        .ok_or_else(|| invalid("Unknown asset."))?;
    let address = Destination::parse(&req.address).ok_or_else(|| invalid("That is not a valid address."))?;
    let label = parse_label(&req.label).ok_or_else(|| invalid("The label must be 1-64 characters."))?;
    let book = state.store.list_withdrawal_addresses(auth.account.id).await?;
    if book.iter().filter(|e| e.cancelled_at.is_none()).count() >= MAX_BOOK_ENTRIES {
        return Err(invalid("The address book is full; cancel an address first."));
    }
    let input = StepUpInput { password: req.password.as_deref(), step_up_token: req.step_up_token.as_deref() };
    let proof = stepup::require(&state, &auth, SensitiveAction::AddWithdrawalAddress, None, input).await?;
    let now = state.clock.now();
    let id = SessionId::generate(now, state.rng.as_ref()).to_string();
    let entry = AddressEntry {
        id: id.clone(),
        user_id: auth.account.id,
        asset,
        address,
        label,
        created_at: now,
        active_at: now.plus(Span::secs(state.config.friction.address_activation_secs)),
        cancelled_at: None,
    };
    let (token, link) = action_link(&state, auth.account.id, &LinkAction::CancelAddress(id.clone()));
    let mail = state.mail(
        auth.account.email.as_str(),
        &templates::address_added(
            entry.asset.as_str(),
            entry.address.as_str(),
            &entry.label,
            &entry.active_at.to_rfc3339(),
            &link,
        ),
    )?;
    let ev = auth
        .event(EventKind::WithdrawalAddressAdded, Outcome::Success)
        .with("address_id", id)
        .with("asset", entry.asset.as_str())
        .with("address", entry.address.as_str())
        .with("active_at", entry.active_at.to_rfc3339())
        .with("step_up", json!(proof.strength()));
    state.store.add_withdrawal_address(&entry, &token, SideEffects::event(ev).mail(mail)).await?;
    state.wake_mailer();
    Ok((StatusCode::CREATED, Json(address_json(&entry, now))).into_response())
}

/// `GET /_gh/api/v1/withdrawal-addresses`
pub async fn list_addresses(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Json<Value>> {
    let now = state.clock.now();
    let list = state.store.list_withdrawal_addresses(auth.account.id).await?;
    Ok(Json(json!({ "addresses": list.iter().map(|e| address_json(e, now)).collect::<Vec<_>>() })))
}

/// `POST /_gh/api/v1/withdrawal-addresses/{id}/cancel`: removing a destination only makes
/// the account safer, so it needs no step-up.
pub async fn cancel_address(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    if id.len() > 64 {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    let now = state.clock.now();
    let ev = auth.event(EventKind::WithdrawalAddressCancelled, Outcome::Success).with("address_id", id.clone());
    if !state.store.cancel_withdrawal_address(auth.account.id, &id, now, SideEffects::event(ev)).await? {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    Ok(Json(json!({ "status": "cancelled" })))
}

/// `POST /_gh/api/v1/withdrawal-settings`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalSettings {
    allowlist_only: bool,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    step_up_token: Option<String>,
}

/// Turns allowlist-only mode on (free) or off (settings not locked, step-up).
pub async fn set_settings(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<WithdrawalSettings>,
) -> ApiResult<Json<Value>> {
    // Turning the mode on needs no proof, but a proof sent along is still held to its bounds
    // (the same as every request body: oversized input is refused, never ignored).
    if req.password.as_ref().is_some_and(|p| p.chars().count() > 4096)
        || req.step_up_token.as_ref().is_some_and(|t| t.chars().count() > 512)
    {
        return Err(crate::error::ApiError::new(crate::error::ErrorCode::InvalidRequest)
            .message("The password or step-up token is too long."));
    }
    if !req.allowlist_only {
        ensure_settings_unlocked(&state, &auth, "withdrawal_allowlist_only").await?;
        let input = StepUpInput { password: req.password.as_deref(), step_up_token: req.step_up_token.as_deref() };
        stepup::require(&state, &auth, SensitiveAction::AddWithdrawalAddress, None, input).await?;
    }
    let ev = auth.event(EventKind::WithdrawalAllowlistModeChanged, Outcome::Success).with("on", req.allowlist_only);
    state.store.set_allowlist_only(auth.account.id, req.allowlist_only, SideEffects::event(ev)).await?;
    settings(State(state), auth).await
}

/// `GET /_gh/api/v1/withdrawal-settings`: mode, hold and freeze.
pub async fn settings(State(state): State<AppState>, auth: Authenticated) -> ApiResult<Json<Value>> {
    let f = state.store.find_friction(auth.account.id).await?;
    let now = state.clock.now();
    Ok(Json(json!({
        "allowlist_only": f.allowlist_only,
        "withdrawals_held_until": f.hold_at(now).map(|t| t.to_rfc3339()),
        "frozen": auth.account.is_frozen(),
    })))
}

/// `POST /_gh/api/v1/withdrawals`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateIntent {
    asset: String,
    /// Decimal string, at most 8 decimals.
    amount: String,
    destination: String,
}

/// Creates a pending intent after checking every rule (they are checked again at confirmation).
pub async fn create(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiJson(req): ApiJson<CreateIntent>,
) -> ApiResult<Response> {
    let asset = Asset::parse(&req.asset).ok_or_else(|| invalid("Unknown asset."))?;
    let (limit, pr_above) = state.config.friction.rule(&asset).ok_or_else(|| invalid("Unknown asset."))?;
    let amount = Amount::parse(&req.amount)
        .map_err(|_| invalid("The amount must be a positive decimal with at most 8 decimals."))?;
    let destination = Destination::parse(&req.destination).ok_or_else(|| invalid("That is not a valid address."))?;
    let now = state.clock.now();
    let f = state.store.find_friction(auth.account.id).await?;
    let entries: Vec<AddressEntry> = state
        .store
        .list_withdrawal_addresses(auth.account.id)
        .await?
        .into_iter()
        .filter(|e| e.asset == asset && e.address == destination)
        .collect();
    let used = state.store.confirmed_units_since(auth.account.id, asset.as_str(), now.minus(Span::hours(24))).await?;
    let ctx = WithdrawalContext {
        frozen: auth.account.is_frozen(),
        held_until: f.held_until,
        allowlist_only: f.allowlist_only,
        entries: &entries,
        used_today: used,
        daily_limit: limit,
    };
    let entry = match withdrawal::check(&ctx, amount.units(), now) {
        Ok(e) => e,
        Err(r) => return Err(refuse(&state, &auth, r, None).await),
    };
    let id = SessionId::generate(now, state.rng.as_ref()).to_string();
    let details = IntentDetails {
        v: 1,
        id: id.clone(),
        user: auth.account.id.to_string(),
        asset: asset.as_str().to_owned(),
        amount: amount.to_string(),
        destination: destination.as_str().to_owned(),
        label: entry.map(|e| e.label.clone()),
        created_at_ms: now.as_millis(),
        expires_at_ms: now.plus(Span::secs(state.config.friction.intent_ttl_secs)).as_millis(),
    };
    let canonical = details.canonical_json();
    let intent = Intent {
        details,
        canonical,
        units: amount.units(),
        state: IntentState::Pending,
        confirmed_at: None,
        delivered_at: None,
        attempts: 0,
    };
    let ev = auth
        .event(EventKind::WithdrawalIntentCreated, Outcome::Success)
        .with("intent", id)
        .with("asset", asset.as_str())
        .with("amount", amount.to_string())
        .with("destination", destination.as_str());
    state.store.create_intent(&intent, SideEffects::event(ev)).await?;
    let required = if amount.units() > pr_above { FactorStrength::PhishingResistant } else { FactorStrength::Password };
    let mut body = intent_json(&intent);
    body["required_step_up"] = json!(required);
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

async fn owned_intent(state: &AppState, auth: &Authenticated, id: &str) -> ApiResult<Intent> {
    if id.len() > 64 {
        return Err(ApiError::new(ErrorCode::NotFound));
    }
    match state.store.find_intent(id).await? {
        Some(i) if i.user() == Some(auth.account.id) => Ok(i),
        _ => Err(ApiError::new(ErrorCode::NotFound)),
    }
}

/// `GET /_gh/api/v1/withdrawals/{id}`: exactly what is (or was) approved, and its delivery.
pub async fn get(State(state): State<AppState>, auth: Authenticated, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    Ok(Json(intent_json(&owned_intent(&state, &auth, &id).await?)))
}

/// `POST /_gh/api/v1/withdrawals/{id}/confirm`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfirmIntent {
    /// The hex SHA-256 of the intent as shown: the confirmation commits to it.
    intent_hash: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    step_up_token: Option<String>,
}

/// Confirms an intent with a step-up bound to its hash; idempotent.
pub async fn confirm(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ConfirmIntent>,
) -> ApiResult<Json<Value>> {
    let intent = owned_intent(&state, &auth, &id).await?;
    if intent.state == IntentState::Confirmed {
        let mut body = intent_json(&intent);
        body["status"] = json!("already_confirmed");
        return Ok(Json(body));
    }
    if !intent.is_confirmable(state.clock.now()) {
        return Err(ApiError::new(ErrorCode::IntentNotConfirmable));
    }
    let hash = hash_canonical(&intent.canonical);
    let echoed = hex::decode(req.intent_hash.trim()).unwrap_or_default();
    if !ct_eq_bytes(&echoed, &hash) {
        return Err(ApiError::new(ErrorCode::IntentMismatch));
    }
    let asset = Asset::parse(&intent.details.asset).ok_or_else(|| invalid("Unknown asset."))?;
    let (limit, pr_above) = state.config.friction.rule(&asset).ok_or_else(|| invalid("Unknown asset."))?;
    let input = StepUpInput { password: req.password.as_deref(), step_up_token: req.step_up_token.as_deref() };
    let proof = stepup::require(&state, &auth, SensitiveAction::Withdraw, Some(hash), input).await?;
    let required = if intent.units > pr_above { FactorStrength::PhishingResistant } else { FactorStrength::Password };
    let bound = proof.action() == SensitiveAction::Withdraw && proof.binding().is_some_and(|b| ct_eq_bytes(b, &hash));
    if !bound || proof.strength() < required {
        let e = auth
            .event(EventKind::WithdrawalRefused, Outcome::Denied)
            .with("reason", if bound { "step_up_too_weak" } else { "step_up_not_bound" })
            .with("intent", id.clone())
            .with("required", json!(required))
            .with("presented", json!(proof.strength()));
        state.store.append(vec![e]).await?;
        return Err(ApiError::new(ErrorCode::StepUpTooWeak).details(json!({ "required": required })));
    }
    let now = state.clock.now();
    let hash_hex = hex::encode(hash);
    let mail = state.mail(
        auth.account.email.as_str(),
        &templates::withdrawal_confirmed(
            &intent.details.asset,
            &intent.details.amount,
            &intent.details.destination,
            &hash_hex,
        ),
    )?;
    let ev = auth
        .event(EventKind::WithdrawalConfirmed, Outcome::Success)
        .with("intent", id.clone())
        .with("intent_hash", hash_hex)
        .with("asset", intent.details.asset.clone())
        .with("amount", intent.details.amount.clone())
        .with("destination", intent.details.destination.clone())
        .with("step_up", json!(proof.strength()))
        .with("step_up_at", proof.verified_at().to_rfc3339());
    let status =
        match state.store.confirm_intent(&id, auth.account.id, now, limit, SideEffects::event(ev).mail(mail)).await? {
            ConfirmOutcome::Confirmed => {
                state.wake_mailer();
                state.intent_wake.notify_one();
                "confirmed"
            }
            // A concurrent confirmation won the conditional update: nothing more happens.
            ConfirmOutcome::AlreadyConfirmed => "already_confirmed",
            ConfirmOutcome::NotConfirmable => return Err(ApiError::new(ErrorCode::IntentNotConfirmable)),
            ConfirmOutcome::Refused(r) => return Err(refuse(&state, &auth, r, Some(&id)).await),
        };
    let intent = owned_intent(&state, &auth, &id).await?;
    let mut body = intent_json(&intent);
    body["status"] = json!(status);
    Ok(Json(body))
}
