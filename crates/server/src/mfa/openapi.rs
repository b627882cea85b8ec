//! The second-factor and step-up part of the OpenAPI document (merged into
//! [`crate::routes::openapi::document`]).

use serde_json::{Value, json};

fn err(d: &str) -> Value {
    json!({ "description": d, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } } })
}

fn post(summary: &str, schema: &str, ok: u16, ok_desc: &str, secured: bool) -> Value {
    let mut responses = serde_json::Map::new();
    responses.insert(
        ok.to_string(),
        json!({ "description": ok_desc, "content": { "application/json": { "schema": { "type": "object" } } } }),
    );
    for (c, d) in [
        ("400", "Malformed, or the factor is not allowed here (factor_not_allowed)"),
        ("401", "Not authenticated, wrong or replayed code, pending login invalid"),
        ("403", "Step-up or a second factor required, or the token does not fit"),
        ("409", "Factor exists, or no pending enrolment"),
        ("413", "Too large"),
        ("415", "Not JSON"),
        ("429", "Throttled (shared with password failures)"),
        ("500", "Internal"),
        ("503", "Unavailable"),
    ] {
        responses.insert(c.into(), err(d));
    }
    json!({
        "summary": summary,
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } } },
        "security": if secured { json!([{ "bearer": [] }, { "cookie": [] }]) } else { json!([]) },
        "responses": responses,
    })
}

/// Adds the second-factor paths and schemas, and the `step_up_token` field of every request
/// that performs a sensitive action.
pub fn extend(doc: &mut Value, prefix: &str) {
    let api = format!("{prefix}/api/v1");
    let paths = [
        (
            format!("{api}/sessions/second-factor"),
            "post",
            post(
                "Finish a sign-in with a second factor (new session tokens)",
                "SecondFactorRequest",
                201,
                "Signed in",
                false,
            ),
        ),
        (
            format!("{api}/account/factors/totp"),
            "post",
            post(
                "Start TOTP enrolment: otpauth URI, base32 seed and SVG QR, shown once",
                "ProofRequest",
                201,
                "Pending enrolment",
                true,
            ),
        ),
        (
            format!("{api}/account/factors/totp/confirm"),
            "post",
            post(
                "Activate TOTP with its first code (first factor: backup codes in the answer)",
                "CodeRequest",
                200,
                "Enabled",
                true,
            ),
        ),
        (
            format!("{api}/account/factors/totp/remove"),
            "post",
            post("Remove TOTP (step-up change_factors)", "ProofRequest", 200, "Removed", true),
        ),
        (
            format!("{api}/account/backup-codes"),
            "post",
            post(
                "Regenerate the 10 backup codes (step-up change_factors)",
                "ProofRequest",
                201,
                "New codes, shown once",
                true,
            ),
        ),
        (
            format!("{api}/account/step-up"),
            "post",
            post(
                "Prove a factor for one action: a single-use step-up token; the session's access token is \
                 rotated (R43: `access_token` in the body for API sessions, a new `__Host-gh_at` cookie for \
                 browsers; the old one gets 401)",
                "StepUpRequest",
                201,
                "Step-up token and the session's new access token",
                true,
            ),
        ),
        // WebAuthn: security keys and passkeys (two-phase ceremonies, options per WebAuthn L3).
        (
            format!("{api}/account/webauthn/register/start"),
            "post",
            post(
                "Start registering a security key or passkey (first factor: password; else step-up change_factors)",
                "WebAuthnRegisterStart",
                200,
                "Ceremony id and creation options",
                true,
            ),
        ),
        (
            format!("{api}/account/webauthn/register/finish"),
            "post",
            post("Finish a registration", "WebAuthnFinish", 201, "Registered", true),
        ),
        (
            format!("{api}/account/webauthn/remove"),
            "post",
            post("Remove a credential (step-up change_factors)", "WebAuthnRemove", 200, "Removed", true),
        ),
        (
            format!("{api}/account/step-up/webauthn/start"),
            "post",
            post(
                "Start a step-up with a security key or passkey (user verification required)",
                "WebAuthnStepUpStart",
                200,
                "Ceremony id and request options",
                true,
            ),
        ),
        (
            format!("{api}/account/step-up/webauthn/finish"),
            "post",
            post(
                "Finish a WebAuthn step-up: a step-up token and the session's new access token (R43)",
                "WebAuthnFinish",
                201,
                "Step-up token and the session's new access token",
                true,
            ),
        ),
        (
            format!("{api}/sessions/second-factor/webauthn/start"),
            "post",
            post("Start the second step of a sign-in with a security key", "PendingRequest", 200, "Ceremony", false),
        ),
        (
            format!("{api}/sessions/second-factor/webauthn/finish"),
            "post",
            post("Finish a sign-in with a security key", "WebAuthnLoginFinish", 201, "Signed in", false),
        ),
        (format!("{api}/sessions/passkey/start"), "post", {
            // Takes no body (none is read).
            let mut op = post("Start a passwordless sign-in with a passkey", "Empty", 200, "Ceremony", false);
            if let Some(o) = op.as_object_mut() {
                o.remove("requestBody");
            }
            op
        }),
        (
            format!("{api}/sessions/passkey/finish"),
            "post",
            post("Finish a passkey sign-in (user verification required)", "WebAuthnFinish", 201, "Signed in", false),
        ),
        // SMS, the weaker last resort (R39): sign-in only, never step-up.
        (
            format!("{api}/account/factors/sms"),
            "post",
            post(
                "Set or change the SMS number (weaker: SIM swap); a code is sent to it (first factor: password; else step-up change_factors)",
                "SmsNumberRequest",
                200,
                "Code sent; pending_confirmation",
                true,
            ),
        ),
        (
            format!("{api}/account/factors/sms/confirm"),
            "post",
            post("Confirm the number being set with the code sent to it", "CodeRequest", 200, "Enabled", true),
        ),
        (
            format!("{api}/account/factors/sms/remove"),
            "post",
            post("Remove the SMS number (step-up change_factors)", "ProofRequest", 200, "Removed", true),
        ),
        (
            format!("{api}/sessions/second-factor/sms/send"),
            "post",
            post("Send a sign-in code by SMS for a pending login (weaker)", "PendingRequest", 200, "Sent", false),
        ),
    ];
    if let Some(p) = doc["paths"].as_object_mut() {
        for (path, method, op) in paths {
            p.insert(path, json!({ method: op }));
        }
        p.insert(
            format!("{api}/account/factors"),
            json!({ "get": {
                "summary": "Enrolled factors, remaining backup codes, WebAuthn credentials (SMS labelled weaker)",
                "security": [{ "bearer": [] }, { "cookie": [] }],
                "responses": { "200": { "description": "Factors", "content": { "application/json": { "schema": { "type": "object" } } } }, "401": err("Not authenticated"), "403": err("Forbidden"), "500": err("Internal"), "503": err("Unavailable") }
            } }),
        );
    }
    // A correct password for an account with a second factor answers 200 with a pending token.
    let login = format!("{api}/sessions");
    if let Some(r) = doc["paths"][&login]["post"]["responses"].as_object_mut() {
        r.insert("200".into(), json!({ "description": "Password accepted; a second factor is due (status second_factor_required, pending_token, methods)", "content": { "application/json": { "schema": { "type": "object" } } } }));
    }
    let token =
        json!({ "type": "string", "maxLength": 64, "description": "From POST /account/step-up for this action" });
    if let Some(s) = doc["components"]["schemas"].as_object_mut() {
        for name in ["ReauthRequest", "ChangePasswordRequest", "CreateKeyRequest", "KeyChangeRequest"] {
            if let Some(props) = s.get_mut(name).and_then(|v| v["properties"].as_object_mut()) {
                props.insert("step_up_token".into(), token.clone());
            }
        }
        let actions = json!([
            "create_api_key",
            "rotate_api_key",
            "unlock_api_key",
            "change_api_key",
            "withdraw",
            "add_withdrawal_address",
            "change_password",
            "change_email",
            "change_factors",
            "revoke_sessions",
            "lift_settings_lock"
        ]);
        s.insert("SecondFactorRequest".into(), json!({ "type": "object", "additionalProperties": false, "required": ["pending_token", "method", "code"], "properties": {
            "pending_token": { "type": "string", "maxLength": 64 },
            "method": { "type": "string", "enum": ["totp", "backup_code", "sms"] },
            "code": { "type": "string", "maxLength": 64 }
        } }));
        s.insert(
            "ProofRequest".into(),
            json!({ "type": "object", "additionalProperties": false, "properties": {
            "password": { "type": "string", "maxLength": 4096, "description": "Only for the first factor" },
            "step_up_token": token
        } }),
        );
        let cred = json!({ "type": "object", "description": "PublicKeyCredential as JSON (base64url fields)" });
        s.insert(
            "WebAuthnRegisterStart".into(),
            json!({ "type": "object", "additionalProperties": false, "required": ["name"], "properties": {
            "name": { "type": "string", "minLength": 1, "maxLength": 64 },
            "kind": { "type": "string", "enum": ["security_key", "passkey"] },
            "password": { "type": "string", "maxLength": 4096 },
            "step_up_token": token
        } }),
        );
        s.insert(
            "WebAuthnFinish".into(),
            json!({ "type": "object", "required": ["ceremony_id", "credential"], "properties": {
            "ceremony_id": { "type": "string", "maxLength": 64 }, "credential": cred,
            "session_type": { "type": "string", "enum": ["api", "browser"] }
        } }),
        );
        s.insert("WebAuthnLoginFinish".into(), json!({ "type": "object", "additionalProperties": false, "required": ["pending_token", "ceremony_id", "credential"], "properties": {
            "pending_token": { "type": "string", "maxLength": 64 }, "ceremony_id": { "type": "string", "maxLength": 64 }, "credential": cred
        } }));
        s.insert(
            "WebAuthnRemove".into(),
            json!({ "type": "object", "additionalProperties": false, "required": ["id"], "properties": {
            "id": { "type": "string", "maxLength": 1400 }, "step_up_token": token
        } }),
        );
        s.insert(
            "WebAuthnStepUpStart".into(),
            json!({ "type": "object", "additionalProperties": false, "required": ["action"], "properties": {
            "action": { "type": "string", "enum": actions.clone() },
            "binding": { "type": "string", "pattern": "^[0-9a-fA-F]{64}$" }
        } }),
        );
        s.insert("PendingRequest".into(), json!({ "type": "object", "additionalProperties": false, "required": ["pending_token"], "properties": { "pending_token": { "type": "string", "maxLength": 64 } } }));
        s.insert(
            "SmsNumberRequest".into(),
            json!({ "type": "object", "additionalProperties": false, "required": ["phone"], "properties": {
            "phone": { "type": "string", "pattern": "^\\+[1-9][0-9]{6,14}$" },
            "password": { "type": "string", "maxLength": 4096 },
            "step_up_token": token
        } }),
        );
        s.insert("Empty".into(), json!({ "type": "object" }));
        s.insert("CodeRequest".into(), json!({ "type": "object", "additionalProperties": false, "required": ["code"], "properties": { "code": { "type": "string", "maxLength": 64 } } }));
        s.insert("StepUpRequest".into(), json!({ "type": "object", "additionalProperties": false, "required": ["action", "method"], "properties": {
            "action": { "type": "string", "enum": actions },
            "binding": { "type": "string", "pattern": "^[0-9a-fA-F]{64}$", "description": "32-byte value being approved, hex" },
            "method": { "type": "string", "enum": ["totp", "backup_code", "webauthn", "sms"], "description": "sms is always refused (400)" },
            "code": { "type": "string", "maxLength": 64 }
        } }));
    }
}
