//! The tamper-evident audit trail (R94–R98, F13).
//!
//! Every security event is written in the **same transaction** as the state change it
//! describes, so there is never a change without its event nor an event without its change.
//!
//! Events form a hash chain: record *n* stores `prev_hash` (the hash of record *n − 1*, zeros
//! for the first), and `hash = SHA-256(prev_hash ‖ canonical(record))`, where the canonical
//! form length-prefixes every field including the sequence number. A row that is edited,
//! deleted, inserted or moved breaks the chain at that row. Each hash also carries
//! `mac = HMAC-SHA-256(audit_key, hash)` with a key that lives outside the database (sealed
//! under the master key), so someone who can write the database but not read the master key
//! cannot rebuild a consistent chain after tampering. Truncating the *tail* is not visible
//! from the chain alone; [`verify_chain`] accepts an externally recorded checkpoint
//! (`seq:hash`) to close that gap.
//!
//! Details never hold secrets: no passwords, codes, tokens or signatures; token references
//! are short hash prefixes.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::clock::Timestamp;
use crate::ids::UserId;
use crate::secret::SecretBytes;

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident => $name:literal,)*) => {
        /// What happened. The string names are stable: they appear in the API, the security
        /// history and the documentation.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum EventKind {
            $($(#[$doc])* #[serde(rename = $name)] $variant,)*
        }

        impl EventKind {
            /// Stable name.
            pub fn as_str(&self) -> &'static str {
                match self { $(Self::$variant => $name,)* }
            }

            /// Parses a stable name.
            pub fn parse(s: &str) -> Option<Self> {
                match s { $($name => Some(Self::$variant),)* _ => None }
            }

            /// Every kind, for documentation and tests.
            pub const ALL: &'static [EventKind] = &[$(Self::$variant,)*];
        }
    };
}

event_kinds! {
    /// An account was registered.
    AccountRegistered => "account_registered",
    /// Someone tried to register an address that already has an account.
    RegistrationDuplicate => "registration_duplicate",
    /// The email address was verified.
    EmailVerified => "email_verified",
    /// A change of the login email address was requested (link sent to the new address).
    EmailChangeRequested => "email_change_requested",
    /// The login email address was changed (the new address proven by its link).
    EmailChanged => "email_changed",
    /// A full login succeeded.
    LoginSucceeded => "login_succeeded",
    /// A login failed (wrong password, unknown account, locked, disabled).
    LoginFailed => "login_failed",
    /// A login was refused by throttling before credentials were checked.
    LoginThrottled => "login_throttled",
    /// The failure threshold was crossed and the account locked.
    AccountLocked => "account_locked",
    /// A refresh token was exchanged.
    TokenRefreshed => "token_refreshed",
    /// A used refresh token was presented again; the family was revoked.
    RefreshReuse => "refresh_reuse",
    /// A session token was presented from another device.
    SessionDeviceMismatch => "session_device_mismatch",
    /// A session was ended by its owner (logout).
    Logout => "logout",
    /// A session was revoked from the device list.
    SessionRevoked => "session_revoked",
    /// All other sessions were revoked.
    SessionsRevokedOthers => "sessions_revoked_others",
    /// The password was changed.
    PasswordChanged => "password_changed",
    /// A password change was refused (wrong current password or policy).
    PasswordChangeFailed => "password_change_failed",
    /// A stored password hash was upgraded to the configured parameters.
    PasswordRehashed => "password_rehashed",
    /// An administrator account was created with the operator CLI.
    AdminCreated => "admin_created",
    /// An API key was created.
    ApiKeyCreated => "api_key_created",
    /// An API key was rotated (successor issued).
    ApiKeyRotated => "api_key_rotated",
    /// An API key was revoked.
    ApiKeyRevoked => "api_key_revoked",
    /// An API key's withdraw safety lock was lifted.
    ApiKeyWithdrawUnlocked => "api_key_withdraw_unlocked",
    /// An API key's IP allowlist was changed.
    ApiKeyAllowlistChanged => "api_key_allowlist_changed",
    /// Signed requests with a known key were refused (aggregated per key, route and reason).
    ApiKeyDenied => "api_key_denied",
    /// The account was frozen (by its owner, the security team or the risk engine).
    AccountFrozen => "account_frozen",
    /// A freeze was lifted.
    AccountUnfrozen => "account_unfrozen",
    /// The risk engine assessed a request (score, decision and reasons in the details).
    RiskDecision => "risk_decision",
    /// The owner confirmed a challenged sign-in with the emailed link.
    SignInConfirmed => "sign_in_confirmed",
    /// An API key's owner was reminded that it expires soon.
    ApiKeyExpiryReminder => "api_key_expiry_reminder",
    /// An API key was used from a network it had not been used from before.
    ApiKeyNewNetwork => "api_key_new_network",
    // second factors and step-up (feat/mfa)
    /// A TOTP enrolment was started (seed generated, not yet active).
    TotpEnrolmentStarted => "totp_enrolment_started",
    /// A TOTP factor was activated by its first correct code.
    TotpEnabled => "totp_enabled",
    /// The TOTP factor was removed.
    TotpDisabled => "totp_disabled",
    /// A wrong TOTP code was presented.
    TotpFailed => "totp_failed",
    /// An already-used TOTP time step was presented again (R24).
    TotpReplay => "totp_replay",
    /// A TOTP code was accepted (its time step is now used; commits with the step record).
    TotpVerified => "totp_verified",
    /// A new backup-code set was generated (the old one stopped working).
    BackupCodesGenerated => "backup_codes_generated",
    /// A backup code was used.
    BackupCodeUsed => "backup_code_used",
    /// A wrong backup code was presented.
    BackupCodeFailed => "backup_code_failed",
    /// An already-used backup code was presented again.
    BackupCodeReplay => "backup_code_replay",
    /// The password was right; the login waits for a second factor.
    LoginSecondFactorPending => "login_second_factor_pending",
    /// A factor was proven for a sensitive action; a step-up token was issued.
    StepUpSucceeded => "step_up_succeeded",
    /// A sensitive action was refused for want of a (strong enough, fresh) proof.
    StepUpDenied => "step_up_denied",
    /// A WebAuthn credential (security key or passkey) was registered.
    WebAuthnRegistered => "webauthn_registered",
    /// A WebAuthn credential was removed.
    WebAuthnRemoved => "webauthn_removed",
    /// A WebAuthn assertion or registration failed verification.
    WebAuthnFailed => "webauthn_failed",
    /// A WebAuthn sign counter went backwards: the credential was flagged (R31).
    WebAuthnCloneSuspected => "webauthn_clone_suspected",
    /// An SMS code was sent for a pending login.
    SmsCodeSent => "sms_code_sent",
    /// An SMS number was set as a last-resort factor (confirmed with the code sent to it).
    SmsNumberSet => "sms_number_set",
    /// A wrong SMS code was presented (confirming a number).
    SmsCodeFailed => "sms_code_failed",
    // --- proof of possession (issue 9: DPoP, mTLS-bound tokens, bound browser sessions) ---
    /// A DPoP proof or a client-certificate binding was refused (check and code in the details).
    PopProofRejected => "pop_proof_rejected",
    /// A bound refresh token came with another key or certificate: its family was revoked.
    PopBindingMismatch => "pop_binding_mismatch",
    // --- end proof of possession ---
    // friction (issue 5): withdrawals, holds, settings lock, recovery, anti-phishing
    /// A withdrawal address was added to the address book (pending its activation delay).
    WithdrawalAddressAdded => "withdrawal_address_added",
    /// A withdrawal address was cancelled by its owner.
    WithdrawalAddressCancelled => "withdrawal_address_cancelled",
    /// Allowlist-only withdrawal mode was turned on or off.
    WithdrawalAllowlistModeChanged => "withdrawal_allowlist_mode_changed",
    /// A withdrawal intent was created (not yet approved).
    WithdrawalIntentCreated => "withdrawal_intent_created",
    /// A withdrawal was refused (frozen, hold, address, limit, step-up).
    WithdrawalRefused => "withdrawal_refused",
    /// A withdrawal intent was confirmed with a bound step-up and queued for the back end.
    WithdrawalConfirmed => "withdrawal_confirmed",
    /// The exchange back end acknowledged a confirmed withdrawal.
    WithdrawalDelivered => "withdrawal_delivered",
    /// Security settings were locked.
    SettingsLocked => "settings_locked",
    /// An unlock of the security settings was requested (takes effect after the delay).
    SettingsUnlockRequested => "settings_unlock_requested",
    /// A waiting settings unlock was cancelled.
    SettingsUnlockCancelled => "settings_unlock_cancelled",
    /// A security-setting change was refused because settings are locked.
    SettingsChangeRefused => "settings_change_refused",
    /// The anti-phishing code was set or cleared.
    AntiPhishingCodeChanged => "anti_phishing_code_changed",
    /// A password-reset link was requested for an existing account.
    PasswordResetRequested => "password_reset_requested",
    /// A password was reset with an emailed link.
    PasswordResetCompleted => "password_reset_completed",
    /// A lost-factor recovery case was opened.
    RecoveryRequested => "recovery_requested",
    /// A reviewer approved a recovery case (more approvals may be needed).
    RecoveryApproved => "recovery_approved",
    /// A reviewer's approval was refused (too early, own case, same reviewer, closed).
    RecoveryApprovalRefused => "recovery_approval_refused",
    /// A recovery was carried out: sessions revoked, keys suspended, factors reset, hold set.
    RecoveryExecuted => "recovery_executed",
    /// A reviewer rejected a recovery case.
    RecoveryRejected => "recovery_rejected",
    /// A recovery case was cancelled from its notice link.
    RecoveryCancelled => "recovery_cancelled",
    /// An account's high-value flag was changed with the operator CLI.
    HighValueChanged => "high_value_changed",
    /// An account was made staff with the operator CLI.
    AdminGranted => "admin_granted",
    // end friction
}

/// An event to append.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// What happened.
    pub kind: EventKind,
    /// Who acted (the user, an administrator, or none for the system).
    pub actor: Option<UserId>,
    /// Whose account it concerns.
    pub subject: Option<UserId>,
    /// Client IP, as determined by the trusted-proxy rules.
    pub ip: Option<String>,
    /// Request id for correlation with logs.
    pub request_id: Option<String>,
    /// `success`, `failure` or `denied`.
    pub outcome: Outcome,
    /// Extra facts as a JSON object. Never secrets.
    pub details: serde_json::Value,
}

/// Outcome of an audited operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The operation happened.
    Success,
    /// The operation failed (bad credentials, invalid input).
    Failure,
    /// A rule refused it (throttle, policy, binding).
    Denied,
}

impl Outcome {
    /// Stable name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Denied => "denied",
        }
    }

    /// Parses a stable name.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "success" => Some(Self::Success),
            "failure" => Some(Self::Failure),
            "denied" => Some(Self::Denied),
            _ => None,
        }
    }
}

impl AuditEvent {
    /// A new event of `kind` with the given outcome and no other facts yet.
    pub fn new(kind: EventKind, outcome: Outcome) -> Self {
        Self {
            kind,
            actor: None,
            subject: None,
            ip: None,
            request_id: None,
            outcome,
            details: serde_json::Value::Object(Default::default()),
        }
    }

    /// Sets actor and subject to the same user (a user acting on their own account).
    pub fn by_user(mut self, user: UserId) -> Self {
        self.actor = Some(user);
        self.subject = Some(user);
        self
    }

    /// Sets the subject only.
    pub fn about(mut self, user: UserId) -> Self {
        self.subject = Some(user);
        self
    }

    /// Adds one detail.
    pub fn with(mut self, key: &str, value: impl Into<serde_json::Value>) -> Self {
        if let serde_json::Value::Object(m) = &mut self.details {
            m.insert(key.to_owned(), value.into());
        }
        self
    }
}

/// A stored, chained record.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// Position in the chain, from 1, without gaps.
    pub seq: i64,
    /// When it was written.
    pub at: Timestamp,
    /// Instance that wrote it.
    pub instance: String,
    /// Event kind as stored (kept as text so that an unknown kind from a newer version still
    /// verifies).
    pub kind: String,
    /// Actor, as text.
    pub actor: Option<String>,
    /// Subject, as text.
    pub subject: Option<String>,
    /// Client IP.
    pub ip: Option<String>,
    /// Request id.
    pub request_id: Option<String>,
    /// Outcome, as text.
    pub outcome: String,
    /// Details as the exact JSON text that was hashed.
    pub details: String,
    /// Hash of the previous record.
    pub prev_hash: [u8; 32],
    /// This record's hash.
    pub hash: [u8; 32],
    /// HMAC of `hash` under the audit key.
    pub mac: [u8; 32],
}

fn put(buf: &mut Vec<u8>, field: Option<&str>) {
    match field {
        None => buf.extend_from_slice(&u32::MAX.to_be_bytes()),
        Some(s) => {
            buf.extend_from_slice(&(s.len() as u32).to_be_bytes());
            buf.extend_from_slice(s.as_bytes());
        }
    }
}

impl AuditRecord {
    /// Builds the record that follows `prev_hash` at position `seq`, computing hash and MAC.
    pub fn chain(
        event: &AuditEvent,
        seq: i64,
        at: Timestamp,
        instance: &str,
        prev_hash: [u8; 32],
        key: &SecretBytes,
    ) -> Self {
        let mut r = AuditRecord {
            seq,
            at,
            instance: instance.to_owned(),
            kind: event.kind.as_str().to_owned(),
            actor: event.actor.map(|u| u.to_string()),
            subject: event.subject.map(|u| u.to_string()),
            ip: event.ip.clone(),
            request_id: event.request_id.clone(),
            outcome: event.outcome.as_str().to_owned(),
            details: event.details.to_string(),
            prev_hash,
            hash: [0; 32],
            mac: [0; 32],
        };
        r.hash = r.compute_hash();
        r.mac = mac(key, &r.hash);
        r
    }

    /// The canonical byte form that is hashed.
    pub fn canonical(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(256);
        buf.extend_from_slice(b"gatehouse-audit-v1");
        buf.extend_from_slice(&self.seq.to_be_bytes());
        buf.extend_from_slice(&self.at.as_millis().to_be_bytes());
        put(&mut buf, Some(&self.instance));
        put(&mut buf, Some(&self.kind));
        put(&mut buf, self.actor.as_deref());
        put(&mut buf, self.subject.as_deref());
        put(&mut buf, self.ip.as_deref());
        put(&mut buf, self.request_id.as_deref());
        put(&mut buf, Some(&self.outcome));
        put(&mut buf, Some(&self.details));
        buf
    }

    /// `SHA-256(prev_hash ‖ canonical)`.
    pub fn compute_hash(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.prev_hash);
        h.update(self.canonical());
        h.finalize().into()
    }
}

fn mac(key: &SecretBytes, hash: &[u8; 32]) -> [u8; 32] {
    match <Hmac<Sha256>>::new_from_slice(key.expose()) {
        Ok(mut m) => {
            m.update(hash);
            m.finalize().into_bytes().into()
        }
        // HMAC takes keys of any length; an all-zero MAC never verifies against a real one.
        Err(_) => [0; 32],
    }
}

/// Where and why a chain failed to verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A sequence number is missing, repeated or out of order (deletion or reordering).
    #[error("audit event {at_seq}: expected sequence number {expected}")]
    Gap {
        /// The sequence number found.
        at_seq: i64,
        /// The one expected.
        expected: i64,
    },
    /// `prev_hash` does not match the previous record's hash.
    #[error("audit event {0}: previous-hash link broken")]
    Link(i64),
    /// The stored hash does not match the record's contents (an edited row).
    #[error("audit event {0}: contents do not match its hash")]
    Content(i64),
    /// The MAC does not match (forged chain, or the wrong audit key).
    #[error("audit event {0}: MAC does not verify")]
    Mac(i64),
    /// The chain ends before an externally recorded checkpoint, or differs from it.
    #[error("audit chain does not reach checkpoint {0}")]
    Checkpoint(i64),
}

impl ChainError {
    /// The sequence number of the first bad event.
    pub fn seq(&self) -> i64 {
        match self {
            Self::Gap { at_seq, .. } => *at_seq,
            Self::Link(s) | Self::Content(s) | Self::Mac(s) | Self::Checkpoint(s) => *s,
        }
    }
}

/// Incremental chain verifier: feed records in stored order.
#[derive(Debug)]
pub struct ChainVerifier<'k> {
    key: &'k SecretBytes,
    expected_seq: i64,
    prev: [u8; 32],
}

impl<'k> ChainVerifier<'k> {
    /// Starts at the beginning of the chain.
    pub fn new(key: &'k SecretBytes) -> Self {
        Self { key, expected_seq: 1, prev: [0; 32] }
    }

    /// Checks the next record.
    pub fn push(&mut self, r: &AuditRecord) -> Result<(), ChainError> {
        if r.seq != self.expected_seq {
            return Err(ChainError::Gap { at_seq: r.seq, expected: self.expected_seq });
        }
        if !bool::from(r.prev_hash.ct_eq(&self.prev)) {
            return Err(ChainError::Link(r.seq));
        }
        if !bool::from(r.compute_hash().ct_eq(&r.hash)) {
            return Err(ChainError::Content(r.seq));
        }
        if !bool::from(mac(self.key, &r.hash).ct_eq(&r.mac)) {
            return Err(ChainError::Mac(r.seq));
        }
        self.prev = r.hash;
        self.expected_seq += 1;
        Ok(())
    }

    /// Number of records verified so far.
    pub fn count(&self) -> i64 {
        self.expected_seq - 1
    }

    /// Hash of the last verified record (zeros before the first).
    pub fn head(&self) -> [u8; 32] {
        self.prev
    }
}

/// Verifies a whole chain in order, optionally against a checkpoint `(seq, hash)` recorded
/// elsewhere. Returns the number of records.
pub fn verify_chain<'a>(
    records: impl IntoIterator<Item = &'a AuditRecord>,
    key: &SecretBytes,
    checkpoint: Option<(i64, [u8; 32])>,
) -> Result<i64, ChainError> {
    let mut v = ChainVerifier::new(key);
    let mut seen_checkpoint = checkpoint.is_none();
    for r in records {
        v.push(r)?;
        if let Some((seq, hash)) = checkpoint
            && r.seq == seq
        {
            if !bool::from(r.hash.ct_eq(&hash)) {
                return Err(ChainError::Checkpoint(seq));
            }
            seen_checkpoint = true;
        }
    }
    match (seen_checkpoint, checkpoint) {
        (false, Some((seq, _))) => Err(ChainError::Checkpoint(seq)),
        _ => Ok(v.count()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SecretBytes {
        SecretBytes::new(vec![7; 32])
    }

    fn chain(n: i64) -> Vec<AuditRecord> {
        let mut prev = [0; 32];
        (1..=n)
            .map(|seq| {
                let e = AuditEvent::new(EventKind::LoginFailed, Outcome::Failure).with("n", seq);
                let r = AuditRecord::chain(&e, seq, Timestamp::from_secs(seq), "i1", prev, &key());
                prev = r.hash;
                r
            })
            .collect()
    }

    #[test]
    fn a_clean_chain_verifies() {
        let c = chain(5);
        assert_eq!(verify_chain(&c, &key(), None), Ok(5));
        assert_eq!(verify_chain(&c, &key(), Some((3, c[2].hash))), Ok(5));
        assert_eq!(verify_chain(&[], &key(), None), Ok(0));
    }

    #[test]
    fn an_edited_row_is_named() {
        let mut c = chain(5);
        c[2].details = r#"{"n":99}"#.into();
        assert_eq!(verify_chain(&c, &key(), None), Err(ChainError::Content(3)));
        let mut c = chain(5);
        c[1].at = Timestamp::from_secs(1000);
        assert_eq!(verify_chain(&c, &key(), None).map_err(|e| e.seq()), Err(2));
    }

    #[test]
    fn a_deleted_row_is_named() {
        let mut c = chain(5);
        c.remove(2);
        assert_eq!(verify_chain(&c, &key(), None), Err(ChainError::Gap { at_seq: 4, expected: 3 }));
    }

    #[test]
    fn swapped_rows_are_named() {
        let mut c = chain(5);
        c.swap(1, 3);
        assert_eq!(verify_chain(&c, &key(), None).map_err(|e| e.seq()), Err(4));
        // Swapping contents but keeping sequence numbers in place breaks the link.
        let mut c = chain(5);
        let (a, b) = (c[1].clone(), c[3].clone());
        c[1] = AuditRecord { seq: 2, ..b };
        c[3] = AuditRecord { seq: 4, ..a };
        assert_eq!(verify_chain(&c, &key(), None).map_err(|e| e.seq()), Err(2));
    }

    #[test]
    fn a_rebuilt_chain_without_the_key_fails_the_mac() {
        let mut c = chain(3);
        let forged_key = SecretBytes::new(vec![8; 32]);
        c[1].details = r#"{"n":42}"#.into();
        c[1].hash = c[1].compute_hash();
        c[1].mac = mac(&forged_key, &c[1].hash);
        c[2].prev_hash = c[1].hash;
        c[2].hash = c[2].compute_hash();
        c[2].mac = mac(&forged_key, &c[2].hash);
        assert_eq!(verify_chain(&c, &key(), None), Err(ChainError::Mac(2)));
    }

    #[test]
    fn tail_truncation_needs_a_checkpoint() {
        let c = chain(5);
        let checkpoint = Some((5, c[4].hash));
        assert_eq!(verify_chain(&c[..4], &key(), None), Ok(4));
        assert_eq!(verify_chain(&c[..4], &key(), checkpoint), Err(ChainError::Checkpoint(5)));
    }

    #[test]
    fn kind_names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::parse(k.as_str()), Some(*k));
            assert_eq!(serde_json::to_value(k).ok(), Some(serde_json::Value::from(k.as_str())));
        }
    }
}
