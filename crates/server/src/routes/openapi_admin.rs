//! The OpenAPI description of the staff endpoints (issues 5 and 7): the recovery review queue
//! and decisions, account freeze and unfreeze, and the audit log. Every one of them needs an
//! admin session signed in with WebAuthn (ADR 0012), so each names `admin_required` and
//! `admin_webauthn_required` among its 403 answers. Merged into the document by [`extend`].
//!
//! Each error response lists the stable codes it can carry, in its description and in
//! `x-error-codes` (an OpenAPI extension field; `docs/api-errors.md` explains every code). A
//! unit test checks that every listed code exists and answers with the status it is listed
//! under, so this table cannot drift from `ErrorCode::status`.

use serde_json::{Map, Value, json};

/// The codes an authenticated request can be refused with before its handler runs (a bound
/// session's proof of possession included, issue 9).
const UNAUTHENTICATED: &[&str] = &[
    "unauthenticated",
    "token_expired",
    "session_expired",
    "device_mismatch",
    "dpop_proof_rejected",
    "cert_binding_rejected",
];

/// A malformed request, or a DPoP proof that is malformed or lacks the server's nonce.
const MALFORMED: &[&str] = &["invalid_request", "invalid_dpop_proof", "use_dpop_nonce"];

/// What every admin endpoint answers for a session that is not a WebAuthn-signed-in admin.
const NOT_ADMIN: &[&str] = &["admin_required", "admin_webauthn_required"];

/// A cookie-authenticated change from another site (R50).
const CSRF: &[&str] = &["csrf_rejected"];

/// A re-entered password (recovery decisions, freeze, unfreeze).
const REAUTH: &[&str] = &["reauth_required", "reauth_failed"];

fn err(codes: &[&str]) -> Value {
    json!({
        "description": format!("Error: {}", codes.join(", ")),
        "x-error-codes": codes,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

/// One operation: `errs` maps each status to the codes it can carry (413, 415, 500 and 503
/// are added where they apply).
fn op(summary: &str, body: Option<&str>, errs: &[(u16, &[&str])], params: Value) -> Value {
    let mut responses = Map::new();
    responses.insert(
        "200".into(),
        json!({ "description": "OK", "content": { "application/json": { "schema": { "type": "object" } } } }),
    );
    let mut all: Vec<(u16, Vec<&str>)> = errs.iter().map(|(s, c)| (*s, c.to_vec())).collect();
    if body.is_some() {
        all.push((413, vec!["payload_too_large"]));
        all.push((415, vec!["unsupported_media_type"]));
    }
    all.push((500, vec!["internal"]));
    all.push((503, vec!["overloaded", "unavailable"]));
    for (status, codes) in &all {
        responses.insert(status.to_string(), err(codes));
    }
    let mut o = json!({
        "summary": summary,
        "responses": responses,
        "security": [{ "bearer": [] }, { "cookie": [] }, { "dpop": [] }],
    });
    if let Some(schema) = body {
        o["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    }
    if params.as_array().is_some_and(|p| !p.is_empty()) {
        o["parameters"] = params;
    }
    o
}

fn codes(parts: &[&[&'static str]]) -> Vec<&'static str> {
    parts.iter().flat_map(|p| p.iter().copied()).collect()
}

fn string(max: u32) -> Value {
    json!({ "type": "string", "maxLength": max })
}

/// Adds the staff paths and their request schemas to `doc`.
pub fn extend(doc: &mut Value) {
    let p = format!("{}/api/v1", super::PREFIX);
    let id = json!([{ "name": "id", "in": "path", "required": true, "schema": string(64) }]);
    let forbidden = codes(&[NOT_ADMIN]);
    let forbidden_reauth = codes(&[NOT_ADMIN, CSRF, REAUTH]);
    let decision_conflicts: &[&str] = &["recovery_waiting", "reviewer_conflict", "recovery_closed"];
    let paths = [
        (
            format!("{p}/admin/recovery"),
            json!({ "get": op(
                "Recovery review queue (admin signed in with WebAuthn)",
                None,
                &[(400, MALFORMED), (401, UNAUTHENTICATED), (403, &forbidden)],
                json!([{ "name": "state", "in": "query", "required": false, "schema": { "type": "string", "enum": ["open", "all"] } }]),
            ) }),
        ),
        (
            format!("{p}/admin/recovery/{{id}}"),
            json!({ "get": op(
                "A recovery case with its evidence (admin signed in with WebAuthn)",
                None,
                &[(400, MALFORMED), (401, UNAUTHENTICATED), (403, &forbidden), (404, &["not_found"])],
                id.clone(),
            ) }),
        ),
        (
            format!("{p}/admin/recovery/{{id}}/approve"),
            json!({ "post": op(
                "Approve a case after its waiting period (a different second reviewer for high-value accounts; the reviewer's password re-entered)",
                Some("ReviewDecisionRequest"),
                &[(400, MALFORMED), (401, UNAUTHENTICATED), (403, &forbidden_reauth), (404, &["not_found"]), (409, decision_conflicts), (429, &["rate_limited"])],
                id.clone(),
            ) }),
        ),
        (
            format!("{p}/admin/recovery/{{id}}/reject"),
            json!({ "post": op(
                "Reject a recovery case (the reviewer's password re-entered; never one's own case)",
                Some("ReviewDecisionRequest"),
                &[(400, MALFORMED), (401, UNAUTHENTICATED), (403, &forbidden_reauth), (404, &["not_found"]), (409, &["reviewer_conflict", "recovery_closed"]), (429, &["rate_limited"])],
                id,
            ) }),
        ),
        (
            format!("{p}/admin/accounts/freeze"),
            json!({ "post": op(
                "Freeze an account: sessions end, API keys stop, nothing changes until recovery or unfreeze (audited with the admin as actor)",
                Some("AdminAccountRequest"),
                &[(400, MALFORMED), (401, UNAUTHENTICATED), (403, &forbidden_reauth), (404, &["not_found"]), (429, &["rate_limited"])],
                json!([]),
            ) }),
        ),
        (
            format!("{p}/admin/accounts/unfreeze"),
            json!({ "post": op(
                "Unfreeze an account (withdrawal holds stay until they end)",
                Some("AdminAccountRequest"),
                &[(400, MALFORMED), (401, UNAUTHENTICATED), (403, &forbidden_reauth), (404, &["not_found"]), (429, &["rate_limited"])],
                json!([]),
            ) }),
        ),
        (
            format!("{p}/admin/audit"),
            json!({ "get": op(
                "The audit log, newest first, 50 a page (all accounts, or one by email; optionally one event kind)",
                None,
                &[(400, MALFORMED), (401, UNAUTHENTICATED), (403, &forbidden), (404, &["not_found"])],
                json!([
                    { "name": "email", "in": "query", "required": false, "schema": string(254), "description": "Only events about this account (404 if there is none)." },
                    { "name": "kind", "in": "query", "required": false, "schema": string(64), "description": "Only events of this kind, e.g. login_succeeded." },
                    { "name": "before", "in": "query", "required": false, "schema": { "type": "integer", "format": "int64" }, "description": "The next_before of the previous page." }
                ]),
            ) }),
        ),
    ];
    let schemas = [
        (
            "ReviewDecisionRequest",
            json!({ "type": "object", "additionalProperties": false, "properties": { "password": string(4096), "note": string(500) } }),
        ),
        (
            "AdminAccountRequest",
            json!({ "type": "object", "additionalProperties": false, "required": ["email"], "properties": {
                "email": string(254), "password": string(4096), "reason": string(500) } }),
        ),
    ];
    if let Some(obj) = doc["paths"].as_object_mut() {
        for (path, item) in paths {
            obj.insert(path, item);
        }
    }
    if let Some(obj) = doc["components"]["schemas"].as_object_mut() {
        for (name, schema) in schemas {
            obj.insert(name.to_owned(), schema);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly
mod tests {
    use crate::error::ErrorCode;

    #[test]
    fn every_admin_endpoint_is_described_with_its_codes() {
        let doc = super::super::openapi::document();
        for (path, method) in [
            ("/_gh/api/v1/admin/recovery", "get"),
            ("/_gh/api/v1/admin/recovery/{id}", "get"),
            ("/_gh/api/v1/admin/recovery/{id}/approve", "post"),
            ("/_gh/api/v1/admin/recovery/{id}/reject", "post"),
            ("/_gh/api/v1/admin/accounts/freeze", "post"),
            ("/_gh/api/v1/admin/accounts/unfreeze", "post"),
            ("/_gh/api/v1/admin/audit", "get"),
        ] {
            let o = &doc["paths"][path][method];
            assert!(o.is_object(), "{method} {path}");
            let forbidden = o["responses"]["403"]["x-error-codes"].to_string();
            assert!(forbidden.contains("\"admin_webauthn_required\""), "{path}: {forbidden}");
            // Every listed code exists and answers with the status it is listed under.
            for (status, resp) in o["responses"].as_object().unwrap() {
                for code in resp["x-error-codes"].as_array().into_iter().flatten() {
                    let code = code.as_str().unwrap();
                    let known = ErrorCode::ALL.iter().find(|c| c.as_str() == code);
                    let known = known.unwrap_or_else(|| panic!("{path}: unknown code {code}"));
                    assert_eq!(known.status().as_str(), status, "{path}: {code}");
                }
            }
        }
        for name in ["ReviewDecisionRequest", "AdminAccountRequest"] {
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
    }
}
