//! The OpenAPI 3.1 document describing gatehouse's own JSON API, served at
//! `/_gh/api/openapi.json`. Written by hand next to the routes it describes; the schemathesis
//! run in the test suite checks that the server keeps to it.

use axum::Json;
use serde_json::{Value, json};

use crate::error::ErrorCode;

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } }
    })
}

fn errors(codes: &[u16]) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    for c in codes {
        let d = match c {
            400 => "Malformed request",
            401 => "Not authenticated",
            403 => "Forbidden",
            404 => "Not found",
            413 => "Body too large",
            415 => "Body must be application/json",
            429 => "Too many attempts (see Retry-After)",
            503 => "Overloaded or a dependency is unavailable (see Retry-After)",
            _ => "Error",
        };
        m.insert(c.to_string(), error_response(d));
    }
    m.insert("500".into(), error_response("Internal error (quote request_id)"));
    m
}

fn op(summary: &str, body: Option<&str>, ok: (u16, &str, Value), errs: &[u16], secured: bool) -> Value {
    let mut responses = errors(errs);
    responses.insert(
        ok.0.to_string(),
        if ok.2.is_null() {
            json!({ "description": ok.1 })
        } else {
            json!({ "description": ok.1, "content": { "application/json": { "schema": ok.2 } } })
        },
    );
    let mut o = json!({ "summary": summary, "responses": responses });
    if let Some(schema) = body {
        o["requestBody"] = json!({
            "required": true,
            "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{schema}") } } }
        });
    }
    if secured {
        o["security"] = json!([{ "bearer": [] }, { "cookie": [] }, { "dpop": [] }]);
    } else {
        o["security"] = json!([]);
    }
    o
}

fn key_action(summary: &str) -> Value {
    json!({
        "summary": summary,
        "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
        "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/KeyChangeRequest" } } } },
        "security": [{ "bearer": [] }, { "cookie": [] }],
        "responses": {
            "200": { "description": "Done", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ApiKey" } } } },
            "201": { "description": "Successor created", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ApiKey" } } } },
            "400": error_response("Malformed or against the key rules"),
            "401": error_response("Not authenticated"),
            "403": error_response("Re-authentication needed or failed"),
            "404": error_response("No such key"),
            "413": error_response("Too large"),
            "415": error_response("Not JSON"),
            "429": error_response("Throttled"),
            "500": error_response("Internal"),
            "503": error_response("Unavailable")
        }
    })
}

// schemathesis (ADR 0010): the email rule of `Email::parse`, so the document describes exactly
// the addresses the server accepts: surrounding Unicode whitespace (trimmed), a local part of
// 1–64 printable ASCII characters without `@ " ( ) , : ; < > [ \ ]`, and at least two
// dot-separated LDH labels of 1–63 characters that neither start nor end with `-`.
pub(crate) fn email_schema() -> Value {
    const WS: &str = "[\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]*";
    const LABEL: &str = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";
    let pattern = format!("^{WS}[!#-'*+\\-./0-9=?A-Z^-~]{{1,64}}@{LABEL}(?:\\.{LABEL})+{WS}$");
    json!({ "type": "string", "maxLength": 254, "pattern": pattern })
}

/// The document.
pub fn document() -> Value {
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    let obj = |props: Value, required: &[&str]| json!({ "type": "object", "properties": props, "required": required });
    let any_obj = json!({ "type": "object" });
    let p = super::PREFIX;
    let mut doc = json!({
        "openapi": "3.1.0",
        "info": {
            "title": "gatehouse",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "Accounts, sessions and the security history of gatehouse, the access layer of a cryptocurrency exchange. Error codes are stable; see docs/api-errors.md."
        },
        "paths": {
            "/healthz": { "get": op("Liveness", None, (200, "Up", any_obj.clone()), &[], false) },
            "/readyz": { "get": op("Readiness", None, (200, "Ready", any_obj.clone()), &[503], false) },
            format!("{p}/api/v1/accounts"): { "post": op("Register", Some("RegisterRequest"), (202, "Verification link sent (same answer for taken addresses)", any_obj.clone()), &[400, 413, 415, 503], false) },
            format!("{p}/api/v1/accounts/verify-email"): { "post": op("Verify an email address", Some("VerifyRequest"), (200, "Verified", any_obj.clone()), &[400, 413, 415, 503], false) },
            format!("{p}/api/v1/sessions"): {
                "post": op("Sign in", Some("LoginRequest"), (201, "Signed in", json!({"$ref": "#/components/schemas/TokenResponse"})), &[400, 401, 403, 413, 415, 429, 503], false),
                "get": op("Device list", None, (200, "Live sessions", any_obj.clone()), &[401, 403, 503], true)
            },
            format!("{p}/api/v1/sessions/refresh"): { "post": op("Rotate a refresh token", Some("RefreshRequest"), (200, "New token pair", json!({"$ref": "#/components/schemas/TokenResponse"})), &[400, 401, 403, 413, 415, 503], false) },
            format!("{p}/api/v1/sessions/current"): { "delete": op("Sign out", None, (204, "Signed out", Value::Null), &[401, 403, 503], true) },
            format!("{p}/api/v1/sessions/revoke-others"): { "post": op("Sign out every other device", Some("ReauthRequest"), (200, "Revoked", any_obj.clone()), &[400, 401, 403, 413, 415, 429, 503], true) },
            format!("{p}/api/v1/sessions/{{id}}/revoke"): { "post": {
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "summary": "Sign out one device",
                "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ReauthRequest" } } } },
                "security": [{ "bearer": [] }, { "cookie": [] }],
                "responses": { "204": { "description": "Revoked" }, "400": error_response("Malformed"), "401": error_response("Not authenticated"), "403": error_response("Re-authentication needed or failed"), "404": error_response("No such session"), "413": error_response("Too large"), "415": error_response("Not JSON"), "429": error_response("Throttled"), "500": error_response("Internal"), "503": error_response("Unavailable") }
            } },
            format!("{p}/api/v1/api-keys"): {
                "post": op("Create an API key (the HMAC secret is in this answer only)", Some("CreateKeyRequest"), (201, "Created", json!({"$ref": "#/components/schemas/ApiKey"})), &[400, 401, 403, 413, 415, 429, 503], true),
                "get": op("List API keys (never secrets)", None, (200, "Keys", any_obj.clone()), &[401, 403, 503], true)
            },
            format!("{p}/api/v1/api-keys/{{id}}"): { "get": {
                "summary": "An API key with its usage counts",
                "parameters": [{ "name": "id", "in": "path", "required": true, "schema": { "type": "string" } }],
                "security": [{ "bearer": [] }, { "cookie": [] }],
                "responses": { "200": { "description": "Key", "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ApiKey" } } } }, "401": error_response("Not authenticated"), "403": error_response("Forbidden"), "404": error_response("No such key"), "500": error_response("Internal"), "503": error_response("Unavailable") }
            } },
            format!("{p}/api/v1/api-keys/{{id}}/revoke"): { "post": key_action("Revoke an API key") },
            format!("{p}/api/v1/api-keys/{{id}}/rotate"): { "post": key_action("Rotate: issue a successor; this key keeps working for the overlap") },
            format!("{p}/api/v1/api-keys/{{id}}/unlock-withdraw"): { "post": key_action("Lift the withdraw safety lock") },
            format!("{p}/api/v1/api-keys/{{id}}/allowlist"): { "post": key_action("Replace the IP allowlist (widening a withdraw key waits)") },
            format!("{p}/api/v1/account"): { "get": op("The signed-in account", None, (200, "Account", any_obj.clone()), &[401, 403, 503], true) },
            format!("{p}/api/v1/account/password"): { "post": op("Change the password", Some("ChangePasswordRequest"), (200, "Changed; other sessions revoked", any_obj.clone()), &[400, 401, 403, 413, 415, 429, 503], true) },
            format!("{p}/api/v1/account/security-history"): { "get": {
                "summary": "The user's security history (audit events), newest first",
                "parameters": [
                    { "name": "before", "in": "query", "required": false, "schema": { "type": "integer", "format": "int64" } },
                    { "name": "limit", "in": "query", "required": false, "schema": { "type": "integer", "minimum": 1, "maximum": 200 } }
                ],
                "security": [{ "bearer": [] }, { "cookie": [] }],
                "responses": { "200": { "description": "Events", "content": { "application/json": { "schema": any_obj.clone() } } }, "400": error_response("Malformed"), "401": error_response("Not authenticated"), "403": error_response("Forbidden"), "500": error_response("Internal"), "503": error_response("Unavailable") }
            } }
        },
        "components": {
            "securitySchemes": {
                "bearer": { "type": "http", "scheme": "bearer", "description": "API sessions also send the device id in the Gatehouse-Device header." },
                "cookie": { "type": "apiKey", "in": "cookie", "name": "__Host-gh_at" },
                // proof of possession (issue 9)
                "dpop": { "type": "http", "scheme": "DPoP", "description": "RFC 9449: `Authorization: DPoP <token>` plus a `DPoP` proof header (ES256 or EdDSA, with `ath`) on every request. Sessions are bound by sending a `DPoP` proof to POST /sessions (and each refresh); then `token_type` is `DPoP` and `cnf.jkt` the key's RFC 7638 thumbprint. With `pop.require_nonce`, proofs carry the `DPoP-Nonce` response header's value. A token bound to a client certificate (`cnf[\"x5t#S256\"]`, RFC 8705) must arrive on a connection presenting that certificate." }
            },
            "schemas": {
                "Error": obj(json!({ "error": obj(json!({
                    "code": { "type": "string", "enum": codes },
                    "message": { "type": "string" },
                    "request_id": { "type": "string" },
                    "details": { "type": "object" }
                }), &["code", "message", "request_id"]) }), &["error"]),
                "RegisterRequest": { "type": "object", "additionalProperties": false, "required": ["email", "password"], "properties": { "email": email_schema(), "password": { "type": "string", "maxLength": 4096 } } },
                "VerifyRequest": { "type": "object", "additionalProperties": false, "required": ["token"], "properties": { "token": { "type": "string" } } },
                "LoginRequest": { "type": "object", "additionalProperties": false, "required": ["email", "password"], "properties": { "email": email_schema(), "password": { "type": "string", "maxLength": 4096 }, "session_type": { "type": "string", "enum": ["api", "browser"] } } },
                "RefreshRequest": { "type": "object", "additionalProperties": false, "required": ["refresh_token"], "properties": { "refresh_token": { "type": "string" } } },
                "ReauthRequest": { "type": "object", "additionalProperties": false, "properties": { "password": { "type": "string", "maxLength": 4096 } } },
                "ChangePasswordRequest": { "type": "object", "additionalProperties": false, "required": ["new_password"], "properties": { "current_password": { "type": "string", "maxLength": 4096 }, "new_password": { "type": "string", "maxLength": 4096 } } },
                "CreateKeyRequest": { "type": "object", "additionalProperties": false, "required": ["label", "kind"], "properties": {
                    "password": { "type": "string", "maxLength": 4096 },
                    "label": { "type": "string", "minLength": 1, "maxLength": 64 },
                    "kind": { "type": "string", "enum": ["hmac", "ed25519", "rsa"] },
                    "scopes": { "type": "array", "items": { "type": "string", "enum": ["view_assets", "view_orders", "place_orders", "view_withdrawals", "withdraw", "view_deposits", "deposit"] } },
                    "allowlist": { "type": "array", "maxItems": 10, "items": { "type": "string" } },
                    "expires_at_ms": { "type": "integer" },
                    "public_key": { "type": "string", "maxLength": 8192 }
                } },
                "KeyChangeRequest": { "type": "object", "additionalProperties": false, "properties": {
                    "password": { "type": "string", "maxLength": 4096 },
                    "allowlist": { "type": "array", "maxItems": 10, "items": { "type": "string" } },
                    "kind": { "type": "string", "enum": ["hmac", "ed25519", "rsa"] },
                    "public_key": { "type": "string", "maxLength": 8192 }
                } },
                "ApiKey": { "type": "object", "required": ["id", "label", "kind", "scopes", "status", "expires_at"], "properties": {
                    "id": { "type": "string" }, "label": { "type": "string" }, "kind": { "type": "string" },
                    "scopes": { "type": "array", "items": { "type": "string" } }, "allowlist": { "type": "array", "items": { "type": "string" } },
                    "status": { "type": "string", "enum": ["active", "locked", "suspended", "revoked"] },
                    "secret": { "type": "string", "description": "HMAC keys only, in the create/rotate answer only" },
                    "expires_at": { "type": "string" }, "valid_until": { "type": ["string", "null"] },
                    "usage": { "type": "array", "items": { "type": "object" } }
                } },
                "TokenResponse": { "type": "object", "required": ["status", "session_id", "device_id", "expires_in"], "properties": {
                    "status": { "type": "string" }, "session_id": { "type": "string" }, "device_id": { "type": "string" },
                    "expires_in": { "type": "integer" }, "session_expires_at": { "type": "string" },
                    "token_type": { "type": "string" }, "access_token": { "type": "string" }, "refresh_token": { "type": "string" },
                    "factors": { "type": "array", "items": { "type": "string" } }, "notices": { "type": "array", "items": { "type": "string" } },
                    // proof of possession (issue 9)
                    "cnf": { "type": "object", "description": "What the session's tokens are bound to (RFC 7800): `jkt` (DPoP key thumbprint) and/or `x5t#S256` (client certificate thumbprint).", "properties": { "jkt": { "type": "string" }, "x5t#S256": { "type": "string" } } }
                } }
            }
        }
    });
    // second factors and step-up (feat/mfa)
    crate::mfa::openapi::extend(&mut doc, p);
    super::openapi_friction::extend(&mut doc); // friction (issue 5)
    super::openapi_admin::extend(&mut doc); // recovery review, freeze, audit (issues 5 and 7)
    doc
}

/// `GET /_gh/api/openapi.json`
pub async fn serve() -> Json<Value> {
    Json(document())
}
