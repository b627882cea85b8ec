//! Second factors: TOTP (RFC 6238), backup codes, and the vocabulary the step-up policy uses
//! to compare factors.
//!
//! Everything here is pure: time arrives as a [`Timestamp`](crate::clock::Timestamp) argument
//! (the server's clock, R25), randomness through [`SecureRng`](crate::rng::SecureRng), and the
//! single-use guarantees are completed by the store with atomic conditional updates whose exact
//! form is documented on [`totp`] and [`backup_codes`].
//!
//! | module | what | spec |
//! |---|---|---|
//! | [`base32`] | strict RFC 4648 base32 for seeds | RFC 4648 §3.3, §3.5, §6 |
//! | [`totp`] | HOTP/TOTP generation and verification, window and replay rules | RFC 4226 §5, RFC 6238 §4–§5 |
//! | [`otpauth`] | `otpauth://totp/…` URI building, strict parsing, inline SVG QR code | Google Key URI format |
//! | [`backup_codes`] | 10 single-use 50-bit recovery codes, Argon2id-hashed | NIST SP 800-63B §5.1.2 |
//!
//! # Threat model
//!
//! * **Offline theft of the database.** TOTP seeds are stored sealed by the caller
//!   ([`crate::crypto::envelope`], R26); this module only hands out the raw seed as
//!   [`SecretBytes`](crate::secret::SecretBytes). Backup codes are stored as Argon2id hashes
//!   (R37), so a dump does not yield usable codes cheaply.
//! * **Replay** of an observed TOTP code or backup code: refused (single use, R24/R36), including
//!   the race of one code submitted to two instances at once (F8), via the store contracts.
//! * **Online guessing.** [`totp::verify`] accepts 3 codes (steps `T−1`, `T`, `T+1`) of 10⁶ per
//!   attempt. Failed second factors count toward the per-account failure counter (R15), which
//!   locks after at most 100 failures (R12), so an attacker succeeds with probability at most
//!   3 × 100 / 10⁶ = **0.03 %** (R28). Backup codes have 50 bits each; 10 live codes against
//!   100 attempts give ≤ 10 × 100 / 2⁵⁰ ≈ 10⁻¹².
//! * **Timing.** Every secret-dependent comparison is constant-time and does not stop at the
//!   first match (R90).
//! * **Phishing is not stopped by TOTP or backup codes.** A user who types a code into a fake
//!   site hands the attacker a code that is valid for up to 90 s (or, for a backup code, until it
//!   is used). Only WebAuthn binds the credential to the origin; see
//!   [`FactorKind::is_phishing_resistant`]. The step-up policy should require WebAuthn for the
//!   most sensitive operations (withdrawal address changes, API key creation) where it exists.

pub mod backup_codes;
pub mod base32;
pub mod otpauth;
pub mod store;
pub mod totp;

use serde::{Deserialize, Serialize};

pub use backup_codes::{BackupCodeError, BackupCodeSet, StoredBackupCode};
pub use base32::Base32Error;
pub use otpauth::{OtpAuthError, OtpAuthUri};
pub use totp::{
    Algorithm, Digits, TotpCheck, TotpCode, TotpError, TotpParams, TotpSecret, code_at, hotp, step_at, verify,
};

/// The kinds of second factor gatehouse knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorKind {
    /// RFC 6238 authenticator app.
    Totp,
    /// WebAuthn / passkey / security key.
    #[serde(rename = "webauthn")]
    WebAuthn,
    /// One of the single-use recovery codes.
    BackupCode,
    /// One-time code sent by SMS (NIST SP 800-63B §5.1.3.3 "restricted").
    Sms,
}

/// How much a factor is trusted, ordered from weakest to strongest, so that a policy can say
/// `kind.strength() >= FactorStrength::Standard`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FactorStrength {
    /// Exposed to SIM swap and SS7 interception; never enough on its own for step-up.
    Restricted,
    /// Recovery only: long-lived until used and phishable. Enough to get back in and
    /// re-enrol, not to authorise sensitive operations.
    Recovery,
    /// A possession factor with a short-lived code, but phishable (TOTP).
    Standard,
    /// Origin-bound, verifier-impersonation resistant (WebAuthn).
    PhishingResistant,
}

impl FactorKind {
    /// Every kind, in a stable order.
    pub const ALL: [FactorKind; 4] = [FactorKind::Totp, FactorKind::WebAuthn, FactorKind::BackupCode, FactorKind::Sms];

    /// The stable name used in audit events and API bodies.
    pub const fn as_str(self) -> &'static str {
        match self {
            FactorKind::Totp => "totp",
            FactorKind::WebAuthn => "webauthn",
            FactorKind::BackupCode => "backup_code",
            FactorKind::Sms => "sms",
        }
    }

    /// How much the step-up policy may trust this factor.
    pub const fn strength(self) -> FactorStrength {
        match self {
            FactorKind::Sms => FactorStrength::Restricted,
            FactorKind::BackupCode => FactorStrength::Recovery,
            FactorKind::Totp => FactorStrength::Standard,
            FactorKind::WebAuthn => FactorStrength::PhishingResistant,
        }
    }

    /// Whether a phishing site cannot relay this factor (only WebAuthn: the browser binds the
    /// assertion to the origin).
    pub const fn is_phishing_resistant(self) -> bool {
        matches!(self.strength(), FactorStrength::PhishingResistant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_webauthn_is_phishing_resistant_and_strengths_are_ordered() {
        let resistant: Vec<_> = FactorKind::ALL.into_iter().filter(|k| k.is_phishing_resistant()).collect();
        assert_eq!(resistant, vec![FactorKind::WebAuthn]);
        assert!(FactorKind::WebAuthn.strength() > FactorKind::Totp.strength());
        assert!(FactorKind::Totp.strength() > FactorKind::BackupCode.strength());
        assert!(FactorKind::BackupCode.strength() > FactorKind::Sms.strength());
    }

    #[test]
    fn names_are_stable() {
        for k in FactorKind::ALL {
            assert_eq!(serde_json::to_string(&k).ok(), Some(format!("\"{}\"", k.as_str())));
        }
    }

    #[test]
    fn brute_force_bound_on_record() {
        // R28: 3 codes per attempt, at most 100 attempts, 10^6 codes.
        let p = 3.0 * 100.0 / 1e6;
        assert!((p - 0.0003_f64).abs() < 1e-12);
    }
}
