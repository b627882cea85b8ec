//! A software WebAuthn authenticator for the Rust end-to-end tests that cannot afford a
//! browser: one ES256 (P-256) credential, "none" attestation, user presence and user
//! verification always asserted, a sign counter that goes up by one per assertion.
//!
//! It answers the server's own JSON ceremonies (`/account/webauthn/register/…`,
//! `/sessions/passkey/…`, `/account/step-up/webauthn/…`) with the bytes a real authenticator
//! and browser would send (W3C WebAuthn Level 2 §6.1 authenticator data, §6.5 attestation
//! object, §5.8.1 client data; RFC 8152 COSE key; RFC 8949 CBOR): the server verifies them with
//! webauthn-rs exactly as it verifies Chromium's. The browser tests (`tests/browser/*.mjs`)
//! still cover the real authenticator path; this one is for tests that only need a session
//! signed in with WebAuthn.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{Device, Server};

/// The origin and RP ID of a server running with the default configuration
/// (`server.public_origin = "http://localhost:8080"`, RP ID from its host).
pub const DEFAULT_ORIGIN: &str = "http://localhost:8080";

const FLAG_UP: u8 = 0x01;
const FLAG_UV: u8 = 0x04;
const FLAG_AT: u8 = 0x40;

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).unwrap_or_else(|e| panic!("base64url {s:?}: {e}"))
}

/// CBOR (RFC 8949 §3): the head of a data item of `major` type with argument `n`.
pub(crate) fn cbor_head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    match n {
        0..=23 => out.push(m | n as u8),
        24..=0xff => out.extend([m | 24, n as u8]),
        0x100..=0xffff => {
            out.push(m | 25);
            out.extend((n as u16).to_be_bytes());
        }
        _ => {
            out.push(m | 26);
            out.extend((n as u32).to_be_bytes());
        }
    }
}

pub(crate) fn cbor_int(out: &mut Vec<u8>, v: i64) {
    if v >= 0 { cbor_head(out, 0, v as u64) } else { cbor_head(out, 1, (-1 - v) as u64) }
}

fn cbor_bytes(out: &mut Vec<u8>, b: &[u8]) {
    cbor_head(out, 2, b.len() as u64);
    out.extend_from_slice(b);
}

fn cbor_text(out: &mut Vec<u8>, s: &str) {
    cbor_head(out, 3, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

/// DER `SEQUENCE { INTEGER r, INTEGER s }` from a fixed-size `r ‖ s` ECDSA signature (the
/// form WebAuthn carries for ES256, W3C WebAuthn §6.5.5).
pub(crate) fn der_signature(raw: &[u8]) -> Vec<u8> {
    fn int(x: &[u8]) -> Vec<u8> {
        let mut x = x;
        while x.len() > 1 && x[0] == 0 {
            x = &x[1..];
        }
        let mut v = vec![0x02];
        let pad = x[0] & 0x80 != 0;
        v.push((x.len() + usize::from(pad)) as u8);
        if pad {
            v.push(0);
        }
        v.extend_from_slice(x);
        v
    }
    let (r, s) = raw.split_at(raw.len() / 2);
    let body = [int(r), int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

/// One software authenticator holding one credential.
pub struct SoftKey {
    key: SigningKey,
    cred_id: Vec<u8>,
    origin: String,
    rp_id: String,
    /// The user handle the server gave at registration (returned by discoverable sign-in).
    user_handle: Option<Vec<u8>>,
    counter: u32,
}

impl SoftKey {
    /// A key from a fixed seed (deterministic, so a failing run can be replayed) for `origin`
    /// with the RP ID `rp_id`.
    pub fn new(seed: u8, origin: &str, rp_id: &str) -> Self {
        let key = SigningKey::from_slice(&[seed.max(1); 32]).unwrap();
        let mut label = b"gatehouse softkey credential ".to_vec();
        label.push(seed);
        let cred_id = Sha256::digest(&label).to_vec();
        Self { key, cred_id, origin: origin.into(), rp_id: rp_id.into(), user_handle: None, counter: 0 }
    }

    /// A key for a server on the default configuration.
    pub fn for_default_origin(seed: u8) -> Self {
        Self::new(seed, DEFAULT_ORIGIN, "localhost")
    }

    /// The credential id as the server names it (base64url).
    pub fn credential_id(&self) -> String {
        b64(&self.cred_id)
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        json!({ "type": kind, "challenge": challenge, "origin": self.origin, "crossOrigin": false })
            .to_string()
            .into_bytes()
    }

    fn cose_key(&self) -> Vec<u8> {
        let point = self.key.verifying_key().to_sec1_point(false);
        let mut out = Vec::new();
        cbor_head(&mut out, 5, 5);
        for (k, v) in [(1, 2), (3, -7), (-1, 1)] {
            // kty: EC2, alg: ES256, crv: P-256 (RFC 8152 §13.1.1)
            cbor_int(&mut out, k);
            cbor_int(&mut out, v);
        }
        cbor_int(&mut out, -2);
        cbor_bytes(&mut out, point.x().unwrap());
        cbor_int(&mut out, -3);
        cbor_bytes(&mut out, point.y().unwrap());
        out
    }

    fn auth_data(&self, flags: u8, attested: bool) -> Vec<u8> {
        let mut d = Sha256::digest(self.rp_id.as_bytes()).to_vec();
        d.push(flags);
        d.extend(self.counter.to_be_bytes());
        if attested {
            d.extend([0u8; 16]); // AAGUID: none
            d.extend((self.cred_id.len() as u16).to_be_bytes());
            d.extend(&self.cred_id);
            d.extend(self.cose_key());
        }
        d
    }

    /// `navigator.credentials.create` for the server's `options` (`{"publicKey": …}`):
    /// a `RegisterPublicKeyCredential` JSON with "none" attestation.
    pub fn create(&mut self, options: &Value) -> Value {
        let pk = &options["publicKey"];
        assert_eq!(pk["rp"]["id"].as_str(), Some(self.rp_id.as_str()), "RP ID: {options}");
        let algs: Vec<i64> =
            pk["pubKeyCredParams"].as_array().unwrap().iter().filter_map(|p| p["alg"].as_i64()).collect();
        assert!(algs.contains(&-7), "ES256 offered: {algs:?}");
        self.user_handle = Some(unb64(pk["user"]["id"].as_str().unwrap()));
        let client_data = self.client_data("webauthn.create", pk["challenge"].as_str().unwrap());
        let mut att = Vec::new();
        cbor_head(&mut att, 5, 3);
        cbor_text(&mut att, "fmt");
        cbor_text(&mut att, "none");
        cbor_text(&mut att, "attStmt");
        cbor_head(&mut att, 5, 0);
        cbor_text(&mut att, "authData");
        cbor_bytes(&mut att, &self.auth_data(FLAG_UP | FLAG_UV | FLAG_AT, true));
        json!({
            "id": self.credential_id(),
            "rawId": self.credential_id(),
            "type": "public-key",
            "extensions": {},
            "response": { "clientDataJSON": b64(client_data), "attestationObject": b64(att) },
        })
    }

    /// `navigator.credentials.get` for the server's `options`: a `PublicKeyCredential` JSON
    /// signed over `authenticatorData ‖ SHA-256(clientDataJSON)`, counter incremented.
    pub fn get(&mut self, options: &Value) -> Value {
        let pk = &options["publicKey"];
        assert_eq!(pk["rpId"].as_str(), Some(self.rp_id.as_str()), "RP ID: {options}");
        if let Some(allowed) = pk["allowCredentials"].as_array().filter(|a| !a.is_empty()) {
            assert!(allowed.iter().any(|c| c["id"] == self.credential_id().as_str()), "not an allowed credential");
        }
        self.counter += 1;
        let client_data = self.client_data("webauthn.get", pk["challenge"].as_str().unwrap());
        let auth_data = self.auth_data(FLAG_UP | FLAG_UV, false);
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let sig: p256::ecdsa::Signature = self.key.sign(&signed);
        json!({
            "id": self.credential_id(),
            "rawId": self.credential_id(),
            "type": "public-key",
            "extensions": {},
            "response": {
                "clientDataJSON": b64(client_data),
                "authenticatorData": b64(auth_data),
                "signature": b64(der_signature(&sig.to_bytes())),
                "userHandle": self.user_handle.as_ref().map(b64),
            },
        })
    }

    /// Registers this key as a passkey of the account signed in on `d` (the password is the
    /// proof for a first factor; later ones need `step_up_token` instead).
    pub async fn register(&mut self, srv: &Server, d: &Device, name: &str, password: &str) -> Value {
        let (s, start) = d
            .post(
                &srv.api("/account/webauthn/register/start"),
                json!({ "name": name, "kind": "passkey", "password": password }),
            )
            .await;
        assert_eq!(s, 200, "{start}");
        let credential = self.create(&start["options"]);
        let (s, reg) = d
            .post(
                &srv.api("/account/webauthn/register/finish"),
                json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
            )
            .await;
        assert_eq!(s, 201, "{reg}");
        assert_eq!(reg["id"].as_str(), Some(self.credential_id().as_str()));
        reg
    }

    /// Signs in with this passkey alone (an API session); answers the status and body of
    /// `/sessions/passkey/finish`, and keeps the tokens on `d` on success.
    pub async fn try_sign_in(&mut self, srv: &Server, d: &mut Device) -> (u16, Value) {
        let (s, start) = d.post(&srv.api("/sessions/passkey/start"), json!({})).await;
        assert_eq!(s, 200, "{start}");
        let credential = self.get(&start["options"]);
        let saved = d.access.take();
        let (s, body) = d
            .post(
                &srv.api("/sessions/passkey/finish"),
                json!({ "ceremony_id": start["ceremony_id"], "credential": credential }),
            )
            .await;
        if s == 201 {
            d.access = body["access_token"].as_str().map(String::from);
            d.refresh = body["refresh_token"].as_str().map(String::from);
            d.device_id = body["device_id"].as_str().map(String::from);
        } else {
            d.access = saved;
        }
        (s, body)
    }

    /// Signs in with this passkey on a new device `ua`; the session's factors say `passkey`.
    pub async fn sign_in(&mut self, srv: &Server, ua: &str) -> Device {
        let mut d = Device::new(ua);
        let (s, body) = self.try_sign_in(srv, &mut d).await;
        assert_eq!(s, 201, "{body}");
        assert_eq!(body["factors"], json!(["passkey"]), "{body}");
        d
    }
}
