//! HTTP routes, one module per concern. Everything gatehouse serves itself lives under
//! [`PREFIX`], which can never collide with a proxied exchange path such as `/v1/…` or
//! `/api/v3/…`; only the health probes sit at the root, by convention.

pub mod accounts;
pub mod confirm;
pub mod email;
pub mod health;
pub mod keys;
pub mod me;
pub mod mfa;
pub mod mfa_sms;
pub mod mfa_webauthn;
pub mod openapi;
// staff endpoints (issues 5 and 7)
pub mod openapi_admin;
pub mod phishing;
pub mod sessions;
// proof of possession (issue 9)
pub mod session_key;
pub mod testing;
// friction (issue 5)
pub mod links;
pub mod openapi_friction;
pub mod recovery;
pub mod settings_lock;
pub mod withdrawals;
// end friction

use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};

use crate::error::request_id;
use crate::http::ClientCtx;

/// Prefix of gatehouse's own routes.
pub const PREFIX: &str = "/_gh";

/// An audit event for an unauthenticated request, with IP and request id.
pub fn event(kind: EventKind, outcome: Outcome, client: &ClientCtx) -> AuditEvent {
    let mut e = AuditEvent::new(kind, outcome);
    e.ip = Some(client.ip.to_string());
    e.request_id = Some(request_id());
    e
}
