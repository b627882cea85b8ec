//! `[mfa]`: second factors and the step-up table.

use gatehouse_core::stepup::StepUpPolicy;
use serde::{Deserialize, Serialize};

/// `[mfa]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MfaConfig {
    /// Issuer shown in authenticator apps (`otpauth://totp/<issuer>:<email>`).
    pub issuer: String,
    /// Lifetime of the pending-login token between password and second factor, in seconds.
    pub pending_login_ttl_secs: i64,
    /// Lifetime of a step-up token, in seconds.
    pub step_up_ttl_secs: i64,
    /// How long a TOTP enrolment may wait for its first code, in seconds.
    pub enrolment_ttl_secs: i64,
    /// The step-up table: `[mfa.step_up.actions.<action>] strength = "…", max_age_secs = N`.
    pub step_up: StepUpPolicy,
    /// WebAuthn relying party.
    pub webauthn: WebAuthnConfig,
    /// SMS as a last resort (login only).
    pub sms: SmsConfig,
}

impl Default for MfaConfig {
    fn default() -> Self {
        Self {
            issuer: "gatehouse".into(),
            pending_login_ttl_secs: 300,
            step_up_ttl_secs: 300,
            enrolment_ttl_secs: 600,
            step_up: StepUpPolicy::default(),
            webauthn: WebAuthnConfig::default(),
            sms: SmsConfig::default(),
        }
    }
}

/// `[mfa.webauthn]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebAuthnConfig {
    /// RP ID: the registrable domain, pinned here and never taken from a request (R34).
    /// Empty: the host of `server.public_origin`.
    pub rp_id: String,
    /// RP name shown by the browser.
    pub rp_name: String,
    /// Allowed origins (exact match, R30). Empty: `server.public_origin`.
    pub origins: Vec<String>,
    /// Accept any port on the allowed origins' hosts (local development and tests only).
    pub danger_allow_any_port: bool,
}

impl Default for WebAuthnConfig {
    fn default() -> Self {
        Self { rp_id: String::new(), rp_name: "gatehouse".into(), origins: vec![], danger_allow_any_port: false }
    }
}

/// `[mfa.sms]`: an HTTP webhook to the operator's SMS provider. Empty URL: SMS is off.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// `https://…` endpoint that receives `{"to", "text"}` JSON.
    pub webhook_url: String,
    /// Code lifetime in seconds (R38: at most 600).
    pub code_ttl_secs: i64,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self { webhook_url: String::new(), code_ttl_secs: 300 }
    }
}

impl MfaConfig {
    /// Checks bounds.
    pub fn validate(&self) -> Result<(), &'static str> {
        self.step_up.validate()?;
        if !(30..=900).contains(&self.pending_login_ttl_secs) {
            return Err("mfa.pending_login_ttl_secs must be 30..=900");
        }
        if !(10..=900).contains(&self.step_up_ttl_secs) {
            return Err("mfa.step_up_ttl_secs must be 10..=900");
        }
        if !(60..=3600).contains(&self.enrolment_ttl_secs) {
            return Err("mfa.enrolment_ttl_secs must be 60..=3600");
        }
        if !(60..=600).contains(&self.sms.code_ttl_secs) {
            return Err("mfa.sms.code_ttl_secs must be 60..=600 (R38)");
        }
        if self.issuer.is_empty() || self.issuer.len() > 64 || self.issuer.contains(':') {
            return Err("mfa.issuer must be 1..=64 characters without ':'");
        }
        Ok(())
    }
}
