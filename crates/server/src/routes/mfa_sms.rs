//! SMS as a last-resort login factor (placeholder until the SMS sender lands).

use axum::response::Response;
use gatehouse_core::account::Account;
use gatehouse_core::mfa::store::MfaToken;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::http::ClientCtx;
use crate::state::AppState;

/// Finishes a login with an SMS code bound to `pending`.
pub async fn finish_login(
    _state: &AppState,
    _client: &ClientCtx,
    _account: &Account,
    _pending: &MfaToken,
    _code: &str,
    _cnf: Option<&gatehouse_core::pop::Confirmation>,
) -> ApiResult<Response> {
    Err(ApiError::new(ErrorCode::FactorNotAllowed).message("SMS is not enabled."))
}
