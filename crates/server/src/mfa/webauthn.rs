//! WebAuthn with webauthn-rs: the relying party built from configuration, ceremony state kept
//! in the database (single use, 300 s, any instance can finish it), assertion checks with user
//! verification always required, and sign-counter regressions flagged as suspected clones.
//!
//! Every credential is registered through webauthn-rs's passkey ceremony, which requires user
//! verification (R35): a "security key" is a non-discoverable credential used as a second
//! factor after the password, a "passkey" a discoverable one that can also sign in without a
//! password. For step-up the challenge commits to the action and the binding:
//! `challenge = SHA-256("gatehouse step-up v1" ‖ random 32 bytes ‖ action ‖ binding)`, so the
//! authenticator's signature covers exactly what is being approved.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::account::Account;
use gatehouse_core::audit::{EventKind, Outcome};
use gatehouse_core::clock::Span;
use gatehouse_core::ids::UserId;
use gatehouse_core::mfa::store::CeremonyRow;
use gatehouse_core::store::SideEffects;
use hmac::{KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    Passkey, PasskeyAuthentication, PublicKeyCredential, RequestChallengeResponse, Url, Uuid, Webauthn,
    WebauthnBuilder, WebauthnError,
};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::ClientCtx;
use crate::mfa::{count_failure, event_for, mail};
use crate::state::AppState;

/// Ceremony lifetime (R29: 300 000 ms).
pub const CEREMONY_SECS: i64 = 300;

/// Longest credential id accepted (R32).
pub const MAX_CRED_ID_BYTES: usize = 1023;

/// The relying party, from `[mfa.webauthn]` and `server.public_origin` (never from a request, R34).
pub fn relying_party(state: &AppState) -> ApiResult<Webauthn> {
    let cfg = &state.config.mfa.webauthn;
    let origins: Vec<String> =
        if cfg.origins.is_empty() { vec![state.config.server.public_origin.clone()] } else { cfg.origins.clone() };
    let first =
        origins.first().and_then(|o| Url::parse(o).ok()).ok_or_else(|| ApiError::internal("webauthn", "origin"))?;
    let rp_id =
        if cfg.rp_id.is_empty() { first.host_str().unwrap_or("localhost").to_owned() } else { cfg.rp_id.clone() };
    let mut b = WebauthnBuilder::new(&rp_id, &first)
        .map_err(|e| ApiError::internal("webauthn", e))?
        .rp_name(&cfg.rp_name)
        .timeout(std::time::Duration::from_secs(CEREMONY_SECS as u64))
        .allow_any_port(cfg.danger_allow_any_port);
    for o in origins.iter().skip(1) {
        if let Ok(u) = Url::parse(o) {
            b = b.append_allowed_origin(&u);
        }
    }
    b.build().map_err(|e| ApiError::internal("webauthn", e))
}

/// The opaque WebAuthn user handle of a user: a UUID from an HMAC under a server secret, so
/// it carries neither the email nor the user id (R33) and is the same on every instance.
pub fn user_handle(state: &AppState, user: UserId) -> Uuid {
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(state.refresh_key.expose()).unwrap_or_else(|_| {
        <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(&[0u8; 32]).unwrap_or_else(|_| unreachable_mac())
    });
    mac.update(b"gatehouse webauthn user handle v1");
    mac.update(user.to_string().as_bytes());
    let out = mac.finalize().into_bytes();
    let mut b = [0u8; 16];
    b.copy_from_slice(&out[..16]);
    uuid::Builder::from_random_bytes(b).into_uuid()
}

#[allow(clippy::panic)]
fn unreachable_mac() -> hmac::Hmac<Sha256> {
    // HMAC accepts keys of every length; this cannot happen.
    panic!("hmac key")
}

/// base64url (no padding) of a credential id, the form browsers use for `id`.
pub fn cred_id_text(id: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(id)
}

/// The user's usable credentials as webauthn-rs passkeys (flagged ones excluded).
pub async fn passkeys_of(state: &AppState, user: UserId) -> ApiResult<Vec<Passkey>> {
    let rows = state.store.list_webauthn_credentials(user).await?;
    rows.iter()
        .filter(|r| r.flagged_at.is_none())
        .map(|r| {
            serde_json::from_str::<Passkey>(&r.credential).map_err(|e| ApiError::internal("webauthn credential", e))
        })
        .collect()
}

/// Replaces the challenge of an authentication ceremony (state and options alike) with one
/// that commits to `commit` (the action and binding of a step-up).
pub fn commit_challenge(
    state: &AppState,
    rcr: &RequestChallengeResponse,
    auth: &PasskeyAuthentication,
    commit: &[u8],
) -> ApiResult<(Value, Value)> {
    let mut options = serde_json::to_value(rcr).map_err(|e| ApiError::internal("webauthn", e))?;
    let mut st = serde_json::to_value(auth).map_err(|e| ApiError::internal("webauthn", e))?;
    let nonce = gatehouse_core::rng::random_bytes::<32>(state.rng.as_ref());
    let mut h = Sha256::new();
    h.update(b"gatehouse step-up v1");
    h.update(nonce);
    h.update(commit);
    let challenge = URL_SAFE_NO_PAD.encode(h.finalize());
    let (Some(o), Some(s)) = (
        options.get_mut("publicKey").and_then(|p| p.get_mut("challenge")),
        st.get_mut("ast").and_then(|a| a.get_mut("challenge")),
    ) else {
        return Err(ApiError::internal("webauthn", "challenge fields not found"));
    };
    *o = Value::from(challenge.clone());
    *s = Value::from(challenge);
    Ok((options, st))
}

/// Starts an authentication ceremony for `account`; `commit` binds a step-up. Returns the
/// ceremony id and the options for `navigator.credentials.get`.
pub async fn start_assertion(
    state: &AppState,
    account: &Account,
    kind: &str,
    detail: Value,
    commit: Option<&[u8]>,
) -> ApiResult<(String, Value)> {
    let creds = passkeys_of(state, account.id).await?;
    if creds.is_empty() {
        return Err(ApiError::new(ErrorCode::FactorNotAllowed).message("No security key is registered."));
    }
    let wa = relying_party(state)?;
    let (rcr, st) = wa.start_passkey_authentication(&creds).map_err(|e| ApiError::internal("webauthn", e))?;
    let (options, st) = match commit {
        Some(c) => commit_challenge(state, &rcr, &st, c)?,
        None => (
            serde_json::to_value(&rcr).map_err(|e| ApiError::internal("webauthn", e))?,
            serde_json::to_value(&st).map_err(|e| ApiError::internal("webauthn", e))?,
        ),
    };
    let id = gatehouse_core::secret::Token::generate(state.rng.as_ref()).expose().to_owned();
    state
        .store
        .create_ceremony(&CeremonyRow {
            id: id.clone(),
            user_id: Some(account.id),
            kind: kind.to_owned(),
            state: st.to_string(),
            detail: detail.to_string(),
            expires_at: state.clock.now().plus(Span::secs(CEREMONY_SECS)),
        })
        .await?;
    Ok((id, options))
}

/// Takes the ceremony (single use, unexpired) of `kind` for `account`.
pub async fn take(state: &AppState, id: &str, kind: &str, account: Option<UserId>) -> ApiResult<CeremonyRow> {
    if id.len() > 64 {
        return Err(ApiError::new(ErrorCode::CeremonyInvalid));
    }
    let c = state
        .store
        .take_ceremony(id, kind, state.clock.now())
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::CeremonyInvalid))?;
    if account.is_some() && c.user_id != account {
        return Err(ApiError::new(ErrorCode::CeremonyInvalid));
    }
    Ok(c)
}

/// Verifies an assertion against the ceremony: user verification required, the credential
/// must belong to `account` and not be flagged; a counter regression flags it (R31). On
/// success the stored counter is updated. Failures count toward the login throttle.
pub async fn finish_assertion(
    state: &AppState,
    account: &Account,
    client: &ClientCtx,
    ceremony: &CeremonyRow,
    credential: &PublicKeyCredential,
    flow: &str,
) -> ApiResult<String> {
    let st: PasskeyAuthentication =
        serde_json::from_str(&ceremony.state).map_err(|e| ApiError::internal("webauthn state", e))?;
    let wa = relying_party(state)?;
    let failed = |reason: String| {
        event_for(account, client, EventKind::WebAuthnFailed, Outcome::Failure)
            .with("flow", flow.to_owned())
            .with("reason", reason)
    };
    let result = match wa.finish_passkey_authentication(credential, &st) {
        Ok(r) => r,
        Err(WebauthnError::CredentialPossibleCompromise) => {
            flag(state, account, client, &credential.id).await?;
            return Err(ApiError::new(ErrorCode::CredentialFlagged));
        }
        Err(e) => {
            count_failure(state, account, client, failed(e.to_string())).await?;
            return Err(ApiError::new(ErrorCode::WebAuthnFailed));
        }
    };
    if !result.user_verified() {
        count_failure(state, account, client, failed("user_not_verified".into())).await?;
        return Err(ApiError::new(ErrorCode::WebAuthnFailed));
    }
    let id = cred_id_text(result.cred_id());
    let row = state
        .store
        .find_webauthn_credential(&id)
        .await?
        .filter(|r| r.user_id == account.id)
        .ok_or_else(|| ApiError::new(ErrorCode::WebAuthnFailed))?;
    if row.flagged_at.is_some() {
        return Err(ApiError::new(ErrorCode::CredentialFlagged));
    }
    let mut pk: Passkey = serde_json::from_str(&row.credential).map_err(|e| ApiError::internal("webauthn", e))?;
    pk.update_credential(&result);
    let json = serde_json::to_string(&pk).map_err(|e| ApiError::internal("webauthn", e))?;
    if !state.store.update_webauthn_credential(&id, &json, state.clock.now(), SideEffects::default()).await? {
        return Err(ApiError::new(ErrorCode::CredentialFlagged));
    }
    Ok(id)
}

/// Flags a credential after a sign-counter regression: audited, the owner notified.
async fn flag(state: &AppState, account: &Account, client: &ClientCtx, id: &str) -> ApiResult<()> {
    let Some(row) = state.store.find_webauthn_credential(id).await?.filter(|r| r.user_id == account.id) else {
        return Ok(());
    };
    let e = event_for(account, client, EventKind::WebAuthnCloneSuspected, Outcome::Denied)
        .with("credential", row.name.clone())
        .with("credential_id", id.chars().take(16).collect::<String>());
    let m = state.mail(account.email.as_str(), &mail::clone_suspected(&row.name))?;
    state.store.flag_webauthn_credential(id, state.clock.now(), SideEffects::event(e).mail(m)).await?;
    state.wake_mailer();
    Ok(())
}
