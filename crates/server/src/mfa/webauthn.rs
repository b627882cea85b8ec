//! WebAuthn with webauthn-rs: the relying party built from configuration, ceremony state kept
//! in the database (single use, 300 s, any instance can finish it), assertion checks with user
//! verification always required, and sign-counter regressions flagged as suspected clones.
//!
//! Every credential is registered with the options of webauthn-rs's passkey ceremony, which requires user
//! verification (R35): a "security key" is a non-discoverable credential used as a second
//! factor after the password, a "passkey" a discoverable one that can also sign in without a
//! password. For step-up the challenge commits to the action and the binding:
//! `challenge = SHA-256("gatehouse step-up v1" ‖ random 32 bytes ‖ action ‖ binding)`, so the
//! authenticator's signature covers exactly what is being approved.
//!
//! The user handle (R33) is 64 random bytes per account, stored at its first registration and
//! carrying no PII. webauthn-rs's passkey API takes a 16-byte UUID, so registration is built
//! with webauthn-rs-core (the same version and the same options as
//! `Webauthn::start_passkey_registration`); authentication stays on webauthn-rs. Credentials
//! registered before carry the older HMAC-derived UUID handle, still accepted at sign-in.

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
    CreationChallengeResponse, Passkey, PasskeyAuthentication, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};
use webauthn_rs_core::WebauthnCore;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, COSEAlgorithm, CredProtect, CredentialID, CredentialProtectionPolicy,
    RegistrationState, RequestRegistrationExtensions, UserVerificationPolicy,
};

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::ClientCtx;
use crate::mfa::{count_failure, event_for, mail};
use crate::state::AppState;

/// Ceremony lifetime (R29: 300 000 ms).
pub const CEREMONY_SECS: i64 = 300;

/// Longest credential id accepted (R32).
pub const MAX_CRED_ID_BYTES: usize = 1023;

/// Length of a user handle (R33: 64 random bytes, the most WebAuthn allows).
pub const USER_HANDLE_BYTES: usize = 64;

/// The relying party's id and origins, from configuration only.
fn rp_settings(state: &AppState) -> ApiResult<(String, Url, Vec<String>)> {
    let cfg = &state.config.mfa.webauthn;
    let origins: Vec<String> =
        if cfg.origins.is_empty() { vec![state.config.server.public_origin.clone()] } else { cfg.origins.clone() };
    let first =
        origins.first().and_then(|o| Url::parse(o).ok()).ok_or_else(|| ApiError::internal("webauthn", "origin"))?;
    let rp_id =
        if cfg.rp_id.is_empty() { first.host_str().unwrap_or("localhost").to_owned() } else { cfg.rp_id.clone() };
    Ok((rp_id, first, origins))
}

/// The relying party for registrations: webauthn-rs-core with exactly the settings
/// [`relying_party`] gives webauthn-rs (its builder does the same), because only the core
/// accepts a 64-byte user handle.
fn registration_party(state: &AppState) -> ApiResult<WebauthnCore> {
    let cfg = &state.config.mfa.webauthn;
    let (rp_id, _, origins) = rp_settings(state)?;
    let origins: Vec<Url> = origins.iter().filter_map(|o| Url::parse(o).ok()).collect();
    Ok(WebauthnCore::new_unsafe_experts_only(
        &cfg.rp_name,
        &rp_id,
        origins,
        std::time::Duration::from_secs(CEREMONY_SECS as u64),
        Some(false),
        Some(cfg.danger_allow_any_port),
    ))
}

/// Starts a registration for `handle` with the options of webauthn-rs's passkey registration
/// (user verification required, credProtect UV-required, no attestation, secure algorithms).
pub fn start_registration(
    state: &AppState,
    handle: &[u8],
    name: &str,
    exclude: Vec<CredentialID>,
) -> ApiResult<(CreationChallengeResponse, RegistrationState)> {
    let core = registration_party(state)?;
    let extensions = RequestRegistrationExtensions {
        cred_protect: Some(CredProtect {
            credential_protection_policy: CredentialProtectionPolicy::UserVerificationRequired,
            enforce_credential_protection_policy: Some(false),
        }),
        uvm: Some(true),
        cred_props: Some(true),
        min_pin_length: None,
        hmac_create_secret: None,
    };
    let builder = core
        .new_challenge_register_builder(handle, name, name)
        .map_err(|e| ApiError::internal("webauthn", e))?
        .attestation(AttestationConveyancePreference::None)
        .credential_algorithms(COSEAlgorithm::secure_algs())
        .require_resident_key(false)
        .authenticator_attachment(None)
        .user_verification_policy(UserVerificationPolicy::Required)
        .reject_synchronised_authenticators(false)
        .exclude_credentials(Some(exclude))
        .hints(None)
        .extensions(Some(extensions));
    core.generate_challenge_register(builder).map_err(|e| ApiError::internal("webauthn", e))
}

/// Finishes a registration started by [`start_registration`] (or, for a ceremony begun before
/// R33, by webauthn-rs: its state is `{"rs": …}`), giving the credential as a webauthn-rs
/// passkey, as stored.
pub fn finish_registration(
    state: &AppState,
    stored: &str,
    credential: &RegisterPublicKeyCredential,
) -> ApiResult<Result<Passkey, WebauthnError>> {
    let v: Value = serde_json::from_str(stored).map_err(|e| ApiError::internal("webauthn state", e))?;
    let v = v.get("rs").cloned().unwrap_or(v);
    let rs: RegistrationState = serde_json::from_value(v).map_err(|e| ApiError::internal("webauthn state", e))?;
    let core = registration_party(state)?;
    Ok(match core.register_credential(credential, &rs, None) {
        // A webauthn-rs passkey is its core credential under `cred` (what
        // `Webauthn::finish_passkey_registration` returns for the same input).
        Ok(cred) => Ok(serde_json::from_value(serde_json::json!({ "cred": cred }))
            .map_err(|e| ApiError::internal("webauthn credential", e))?),
        Err(e) => Err(e),
    })
}

/// The account's user handle (R33): 64 random bytes made at its first registration.
pub async fn account_handle(state: &AppState, user: UserId) -> ApiResult<Vec<u8>> {
    let fresh = gatehouse_core::rng::random_bytes::<USER_HANDLE_BYTES>(state.rng.as_ref());
    Ok(state.store.webauthn_user_handle(user, &fresh, state.clock.now()).await?)
}

/// Whether a handle presented at passkey sign-in belongs to `user`: its 64-byte handle, or the
/// 16-byte one of credentials registered before R33. Compared in constant time.
pub async fn is_users_handle(state: &AppState, user: UserId, presented: &[u8]) -> ApiResult<bool> {
    let legacy = legacy_user_handle(state, user);
    if presented.len() == legacy.as_bytes().len() {
        return Ok(handle_matches(presented, legacy.as_bytes(), &[]));
    }
    let current = account_handle(state, user).await?;
    Ok(handle_matches(presented, legacy.as_bytes(), &current))
}

/// `presented` is the legacy 16-byte handle or the current 64-byte one (constant time; an
/// empty handle never matches).
fn handle_matches(presented: &[u8], legacy: &[u8], current: &[u8]) -> bool {
    use gatehouse_core::secret::ct_eq_bytes;
    !presented.is_empty() && (ct_eq_bytes(presented, legacy) || ct_eq_bytes(presented, current))
}

/// The relying party, from `[mfa.webauthn]` and `server.public_origin` (never from a request, R34).
pub fn relying_party(state: &AppState) -> ApiResult<Webauthn> {
    let cfg = &state.config.mfa.webauthn;
    let (rp_id, first, origins) = rp_settings(state)?;
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

/// The user handle given to credentials registered before R33: a UUID from an HMAC under a
/// server secret (no PII, the same on every instance). Still accepted at passkey sign-in.
pub fn legacy_user_handle(state: &AppState, user: UserId) -> Uuid {
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

#[cfg(test)]
mod tests {
    use super::handle_matches;

    #[test]
    fn old_and_new_user_handles_are_accepted_nothing_else() {
        let legacy = [7u8; 16];
        let current = [9u8; 64];
        assert!(handle_matches(&legacy, &legacy, &current), "credentials registered before R33");
        assert!(handle_matches(&current, &legacy, &current), "64-byte handle (R33)");
        assert!(!handle_matches(&[9u8; 63], &legacy, &current));
        assert!(!handle_matches(&[8u8; 64], &legacy, &current));
        assert!(!handle_matches(&[], &[], &[]), "an empty handle never matches");
    }
}
