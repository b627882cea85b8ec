//! SMS as a last resort: a pluggable sender (an HTTP webhook to the operator's SMS provider or
//! relay: `POST {"to", "text"}` as JSON) and codes that are 6 digits, expire within 10 minutes,
//! are single use, bound to the pending login that asked, stored only as a keyed hash, and
//! replaced by a resend (R38). SMS is never accepted for step-up (R39), and a number is used
//! only after the code sent to it when it was set was confirmed (R39: validated numbers only).

use std::time::Duration;

use bytes::Bytes;
use gatehouse_core::secret::TokenHash;
use hmac::{KeyInit, Mac};
use http_body_util::Full;
use sha2::Sha256;

use crate::error::{ApiError, ApiResult};
use crate::state::AppState;

/// The stored form of an SMS code: HMAC-SHA-256 under a server secret of the pending login it
/// belongs to and the code, so a 6-digit code cannot be recovered from a dump by enumeration
/// without the key, and a code from one login does not match another.
pub fn code_hash(state: &AppState, binding: &str, code: &str) -> TokenHash {
    let mut out = [0u8; 32];
    if let Ok(mut mac) = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(state.refresh_key.expose()) {
        mac.update(b"gatehouse sms code v1\0");
        mac.update(binding.as_bytes());
        mac.update(b"\0");
        mac.update(code.as_bytes());
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    TokenHash::from_bytes(out)
}

/// The stored form of the code that confirms a number being set for `user` (R39): keyed like
/// [`code_hash`], bound to the account and to this purpose, so a sign-in code never confirms a
/// number and the reverse.
pub fn confirmation_hash(state: &AppState, user: gatehouse_core::ids::UserId, code: &str) -> TokenHash {
    code_hash(state, &format!("number confirmation\0{user}"), code)
}

/// The last two digits of a number, for answers (`…67`).
pub fn masked(phone: &str) -> String {
    let tail: String = phone.chars().rev().take(2).collect::<Vec<_>>().into_iter().rev().collect();
    format!("…{tail}")
}

/// A new 6-digit code from the injected RNG.
pub fn new_code(state: &AppState) -> String {
    format!("{:06}", gatehouse_core::rng::random_below(state.rng.as_ref(), 1_000_000))
}

/// Hands the message to the operator's SMS webhook. The number and the code are never logged.
pub async fn send(state: &AppState, to: &str, text: &str) -> ApiResult<()> {
    let url = &state.config.mfa.sms.webhook_url;
    let body = serde_json::json!({ "to": to, "text": text }).to_string();
    let client = crate::gateway::proxy::client(Duration::from_secs(5));
    let req = hyper::Request::post(url.as_str())
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| ApiError::internal("sms request", e))?;
    let resp = tokio::time::timeout(Duration::from_secs(10), client.request(req))
        .await
        .map_err(|_| ApiError::new(crate::error::ErrorCode::Unavailable))?
        .map_err(|e| {
            tracing::warn!(error = %e, "sms webhook unreachable");
            ApiError::new(crate::error::ErrorCode::Unavailable)
        })?;
    if !resp.status().is_success() {
        tracing::warn!(status = %resp.status(), "sms webhook refused the message");
        return Err(ApiError::new(crate::error::ErrorCode::Unavailable));
    }
    Ok(())
}

/// Validates an E.164 number (`+` and 7–15 digits).
pub fn valid_number(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or("");
    (7..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) && !digits.starts_with('0')
}
