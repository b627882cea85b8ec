//! The OpenAPI description of the friction endpoints (issue 5): withdrawals, the settings
//! lock, emailed links and recovery requests (the staff side is in `openapi_admin.rs`). Kept
//! apart from `openapi.rs` and merged into the document by [`extend`].

use serde_json::{Map, Value, json};

fn err(d: &str) -> Value {
    json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn op(summary: &str, body: Option<&str>, ok: u16, errs: &[u16], secured: bool, id_param: bool) -> Value {
    let mut responses = Map::new();
    responses.insert(
        ok.to_string(),
        json!({ "description": "OK", "content": { "application/json": { "schema": { "type": "object" } } } }),
    );
    for c in errs {
        responses.insert(c.to_string(), err("Error (see the code)"));
    }
    responses.insert("500".into(), err("Internal error (quote request_id)"));
    let mut o = json!({ "summary": summary, "responses": responses });
    if let Some(schema) = body {
        o["requestBody"] = json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } });
    }
    o["security"] = if secured { json!([{ "bearer": [] }, { "cookie": [] }]) } else { json!([]) };
    if id_param {
        o["parameters"] =
            json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "string", "maxLength": 64 } }]);
    }
    o
}

fn string(max: u32) -> Value {
    json!({ "type": "string", "maxLength": max })
}

/// Adds the friction paths and request schemas to `doc`.
pub fn extend(doc: &mut Value) {
    let p = format!("{}/api/v1", super::PREFIX);
    let auth_errs: &[u16] = &[400, 401, 403, 409, 413, 415, 429, 503];
    let paths = [
        (
            format!("{p}/withdrawal-addresses"),
            json!({
                "post": op("Add a withdrawal address (step-up; usable after the activation delay; settings_locked while locked)", Some("AddAddressRequest"), 201, auth_errs, true, false),
                "get": op("The withdrawal address book", None, 200, &[401, 403, 503], true, false)
            }),
        ),
        (
            format!("{p}/withdrawal-addresses/{{id}}/cancel"),
            json!({ "post": op("Cancel an address", None, 200, &[401, 403, 404, 503], true, true) }),
        ),
        (
            format!("{p}/withdrawal-settings"),
            json!({
                "post": op("Allowlist-only mode on (free) or off (step-up)", Some("WithdrawalSettingsRequest"), 200, auth_errs, true, false),
                "get": op("Allowlist-only mode, hold and freeze", None, 200, &[401, 403, 503], true, false)
            }),
        ),
        (
            format!("{p}/withdrawals"),
            json!({ "post": op("Create a withdrawal intent (answers its canonical JSON and hash)", Some("CreateWithdrawalRequest"), 201, auth_errs, true, false) }),
        ),
        (
            format!("{p}/withdrawals/{{id}}"),
            json!({ "get": op("A withdrawal intent and its delivery", None, 200, &[401, 403, 404, 503], true, true) }),
        ),
        (
            format!("{p}/withdrawals/{{id}}/confirm"),
            json!({ "post": op("Confirm an intent: echo its hash, step-up bound to it (idempotent)", Some("ConfirmWithdrawalRequest"), 200, &[400, 401, 403, 404, 409, 413, 415, 429, 503], true, true) }),
        ),
        (
            format!("{p}/account/settings-lock"),
            json!({
                "post": op("Lock security settings now", None, 200, &[401, 403, 503], true, false),
                "get": op("Settings-lock status", None, 200, &[401, 403, 503], true, false)
            }),
        ),
        (
            format!("{p}/account/settings-lock/unlock"),
            json!({ "post": op("Request the unlock (step-up; takes effect after the delay; every channel notified)", Some("StepUpRequest"), 200, auth_errs, true, false) }),
        ),
        (
            format!("{p}/account/settings-lock/cancel-unlock"),
            json!({ "post": op("Cancel a waiting unlock", None, 200, &[401, 403, 503], true, false) }),
        ),
        (
            format!("{p}/account/anti-phishing-code"),
            json!({ "post": op("Set or clear the anti-phishing code shown in every email (step-up)", Some("AntiPhishingCodeRequest"), 200, auth_errs, true, false) }),
        ),
        (
            format!("{p}/links/redeem"),
            json!({ "post": op("Redeem a single-use link from a notice (freeze, cancel address/unlock/recovery)", Some("LinkRedeemRequest"), 200, &[400, 413, 415, 503], false, false) }),
        ),
        (
            format!("{p}/account/email"),
            json!({ "post": op("Change the login email address: step-up, then a link to the new address", Some("ChangeEmailRequest"), 202, auth_errs, true, false) }),
        ),
        (
            format!("{p}/account/email/confirm"),
            json!({ "post": op("Confirm a new email address with the emailed token", Some("ConfirmEmailRequest"), 200, &[400, 409, 413, 415, 503], false, false) }),
        ),
        (
            format!("{p}/sessions/confirm-sign-in"),
            json!({ "post": op("Confirm a sign-in the risk engine held, with the emailed link's parameters", Some("ConfirmSignInRequest"), 200, &[400, 413, 415, 503], false, false) }),
        ),
        (
            format!("{p}/recovery/password-reset"),
            json!({ "post": op("Email a password-reset link (same answer for unknown addresses)", Some("PasswordResetRequest"), 202, &[400, 413, 415, 503], false, false) }),
        ),
        (
            format!("{p}/recovery/password-reset/complete"),
            json!({ "post": op("Set a new password with the emailed token (second factors are kept)", Some("PasswordResetCompleteRequest"), 200, &[400, 413, 415, 503], false, false) }),
        ),
        (
            format!("{p}/recovery/cases"),
            json!({ "post": op("Open a lost-second-factor recovery case (same answer for unknown addresses)", Some("RecoveryCaseRequest"), 202, &[400, 413, 415, 503], false, false) }),
        ),
    ];
    // Either proof may be left out or sent as null (the same thing to the server).
    let nullable = |max: u32| json!({ "type": ["string", "null"], "maxLength": max });
    let step_up = json!({ "password": nullable(4096), "step_up_token": nullable(512) });
    let with_step_up = |mut props: Value, required: &[&str]| {
        if let (Some(p), Some(s)) = (props.as_object_mut(), step_up.as_object()) {
            p.extend(s.clone());
        }
        json!({ "type": "object", "additionalProperties": false, "required": required, "properties": props })
    };
    let schemas = [
        (
            "AddAddressRequest",
            with_step_up(
                json!({ "asset": string(10), "address": string(128), "label": string(64) }),
                &["asset", "address", "label"],
            ),
        ),
        (
            "WithdrawalSettingsRequest",
            with_step_up(json!({ "allowlist_only": { "type": "boolean" } }), &["allowlist_only"]),
        ),
        (
            "CreateWithdrawalRequest",
            json!({ "type": "object", "additionalProperties": false, "required": ["asset", "amount", "destination"], "properties": {
            "asset": string(10), "amount": { "type": "string", "maxLength": 24, "pattern": "^(0|[1-9][0-9]*)(\\.[0-9]{1,8})?$" }, "destination": string(128) } }),
        ),
        (
            "ConfirmWithdrawalRequest",
            with_step_up(
                json!({ "intent_hash": { "type": "string", "minLength": 64, "maxLength": 64 } }),
                &["intent_hash"],
            ),
        ),
        ("StepUpRequest", with_step_up(json!({}), &[])),
        (
            "AntiPhishingCodeRequest",
            with_step_up(json!({ "code": { "type": ["string", "null"], "minLength": 4, "maxLength": 32 } }), &["code"]),
        ),
        (
            "LinkRedeemRequest",
            json!({ "type": "object", "additionalProperties": false, "required": ["token"], "properties": { "token": string(64) } }),
        ),
        (
            "ChangeEmailRequest",
            json!({ "type": "object", "additionalProperties": false, "required": ["new_email"], "properties": { "new_email": super::openapi::email_schema(), "password": string(4096), "step_up_token": string(64) } }),
        ),
        (
            "ConfirmEmailRequest",
            json!({ "type": "object", "additionalProperties": false, "properties": { "token": string(64), "email": string(254) } }),
        ),
        (
            "ConfirmSignInRequest",
            json!({ "type": "object", "additionalProperties": false, "properties": { "token": string(64), "ip": string(45), "device": string(36), "ua": string(64) } }),
        ),
        (
            "PasswordResetRequest",
            json!({ "type": "object", "additionalProperties": false, "required": ["email"], "properties": { "email": super::openapi::email_schema() } }),
        ),
        (
            "PasswordResetCompleteRequest",
            json!({ "type": "object", "additionalProperties": false, "required": ["token", "new_password"], "properties": { "token": string(64), "new_password": string(4096) } }),
        ),
        (
            "RecoveryCaseRequest",
            json!({ "type": "object", "additionalProperties": false, "required": ["email", "evidence"], "properties": { "email": super::openapi::email_schema(), "evidence": { "type": "string", "minLength": 1, "maxLength": 4000 } } }),
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
mod tests {
    #[test]
    fn every_friction_path_and_schema_is_in_the_document() {
        let doc = super::super::openapi::document();
        for path in [
            "/_gh/api/v1/withdrawals/{id}/confirm",
            "/_gh/api/v1/admin/recovery/{id}/approve",
            "/_gh/api/v1/links/redeem",
        ] {
            assert!(doc["paths"][path].is_object(), "{path}");
        }
        // Every request-body reference resolves.
        let text = doc.to_string();
        for name in ["AddAddressRequest", "ConfirmWithdrawalRequest", "RecoveryCaseRequest", "ReviewDecisionRequest"] {
            assert!(text.contains(&format!("#/components/schemas/{name}")));
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
        let codes =
            doc["components"]["schemas"]["Error"]["properties"]["error"]["properties"]["code"]["enum"].to_string();
        for c in ["settings_locked", "withdrawals_held", "intent_mismatch", "recovery_waiting"] {
            assert!(codes.contains(c), "{c}");
        }
    }
}
