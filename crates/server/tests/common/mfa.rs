//! Second-factor helpers for end-to-end tests: enrol TOTP for a test account, compute codes
//! at the server's clock (never reusing a step), and fetch step-up tokens (adopting the access
//! token each step-up rotates, R43).

use std::sync::Mutex;

use gatehouse_core::clock::Timestamp;
use gatehouse_core::mfa::{TotpParams, TotpSecret, code_at};
use serde_json::{Value, json};

use super::{Device, Server};

/// An enrolled authenticator app plus the backup codes that came with it.
pub struct Mfa {
    pub secret_b32: String,
    last_step: Mutex<Option<u64>>,
    pub backup_codes: Mutex<Vec<String>>,
}

/// The server's current time (the test clock endpoint answers it).
pub async fn server_now_ms(srv: &Server) -> i64 {
    let r =
        reqwest::Client::new().post(srv.url("/_gh/test/clock")).json(&json!({ "advance_ms": 0 })).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    v["now_ms"].as_i64().unwrap()
}

/// The TOTP code of `secret_b32` at `ms`.
pub fn totp_at(secret_b32: &str, ms: i64) -> String {
    let s = TotpSecret::from_base32(secret_b32).unwrap();
    code_at(&s, &TotpParams::ENROLMENT, Timestamp::from_millis(ms))
}

/// Enrols TOTP for the signed-in `dev` (first factor: password) and keeps the backup codes.
pub async fn enrol_totp(srv: &Server, dev: &Device, password: &str) -> Mfa {
    let (s, start) = dev.post(&srv.api("/account/factors/totp"), json!({ "password": password })).await;
    assert_eq!(s, 201, "{start}");
    let secret_b32 = start["secret"].as_str().unwrap().to_owned();
    let now = server_now_ms(srv).await;
    let code = totp_at(&secret_b32, now);
    let (s, done) = dev.post(&srv.api("/account/factors/totp/confirm"), json!({ "code": code })).await;
    assert_eq!(s, 200, "{done}");
    // Backup codes come with the first second factor only.
    let codes = done["backup_codes"]
        .as_array()
        .map(|a| a.iter().map(|c| c.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    Mfa { secret_b32, last_step: Mutex::new(Some((now / 30_000) as u64)), backup_codes: Mutex::new(codes) }
}

impl Mfa {
    /// A fresh (method, code): an unused TOTP step inside the server's window, else a backup
    /// code, else the server clock is moved on one step.
    pub async fn fresh(&self, srv: &Server) -> (&'static str, String) {
        loop {
            let now = server_now_ms(srv).await;
            let step = (now / 30_000) as u64;
            // Near a step boundary the server may cross it before it checks: skip T−1 then.
            let near_end = now % 30_000 > 27_000;
            let candidates = [step.checked_sub(1).filter(|_| !near_end), Some(step), Some(step + 1)];
            {
                let mut last = self.last_step.lock().unwrap();
                if let Some(s) = candidates.into_iter().flatten().find(|s| last.is_none_or(|l| *s > l)) {
                    *last = Some(s);
                    return ("totp", totp_at(&self.secret_b32, (s as i64) * 30_000));
                }
            }
            if let Some(c) = self.backup_codes.lock().unwrap().pop() {
                return ("backup_code", c);
            }
            srv.advance(30_000).await;
        }
    }

    /// A fresh TOTP code (moves the server clock on when the window is used up).
    pub async fn totp(&self, srv: &Server) -> String {
        loop {
            let now = server_now_ms(srv).await;
            let step = (now / 30_000) as u64;
            let near_end = now % 30_000 > 27_000;
            let candidates = [step.checked_sub(1).filter(|_| !near_end), Some(step), Some(step + 1)];
            {
                let mut last = self.last_step.lock().unwrap();
                if let Some(s) = candidates.into_iter().flatten().find(|s| last.is_none_or(|l| *s > l)) {
                    *last = Some(s);
                    return totp_at(&self.secret_b32, (s as i64) * 30_000);
                }
            }
            srv.advance(30_000).await;
        }
    }

    /// A step-up token for `action` (optionally bound to a 32-byte hex value); `dev` adopts
    /// the session's rotated access token (R43).
    pub async fn step_up_bound(&self, srv: &Server, dev: &mut Device, action: &str, binding: Option<&str>) -> String {
        let (method, code) = self.fresh(srv).await;
        let mut body = json!({ "action": action, "method": method, "code": code });
        if let Some(b) = binding {
            body["binding"] = json!(b);
        }
        let (s, v) = dev.step_up_post(&srv.api("/account/step-up"), body).await;
        assert_eq!(s, 201, "step-up for {action}: {v}");
        assert!(v["access_token"].is_string(), "a step-up rotates the access token (R43): {v}");
        v["step_up_token"].as_str().unwrap().to_owned()
    }

    /// A step-up token for `action`; `dev` adopts the rotated access token.
    pub async fn step_up(&self, srv: &Server, dev: &mut Device, action: &str) -> String {
        self.step_up_bound(srv, dev, action, None).await
    }

    /// Signs `dev` in with password and a TOTP code.
    pub async fn login(&self, srv: &Server, dev: &mut Device, email: &str, password: &str) -> (u16, Value) {
        let (s, v) = dev.post(&srv.api("/sessions"), json!({ "email": email, "password": password })).await;
        assert_eq!((s, v["status"].as_str()), (200, Some("second_factor_required")), "{v}");
        let code = self.totp(srv).await;
        let saved = dev.access.take();
        let (s, body) = dev
            .post(
                &srv.api("/sessions/second-factor"),
                json!({ "pending_token": v["pending_token"], "method": "totp", "code": code }),
            )
            .await;
        if s == 201 {
            dev.access = body["access_token"].as_str().map(String::from);
            dev.refresh = body["refresh_token"].as_str().map(String::from);
            dev.device_id = body["device_id"].as_str().map(String::from);
        } else {
            dev.access = saved;
        }
        (s, body)
    }
}
