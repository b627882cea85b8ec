//! What the second-factor flows need from a database: TOTP factors and their used steps,
//! backup-code sets, short-lived MFA tokens (pending logins, step-up proofs), per-session
//! step-up memory, and WebAuthn credentials and ceremonies.
//!
//! Every check-and-set here is one atomic statement (F8): a TOTP step is consumed by inserting
//! the unique row `(user, step)` and advancing `last_step` only if it grows; a backup code by
//! `UPDATE … SET used_at WHERE used_at IS NULL`; a token or ceremony by
//! `UPDATE … SET used_at WHERE used_at IS NULL AND expires_at > now RETURNING …`. A caller
//! succeeds only when its write changed a row, so the same code or token submitted to two
//! instances at once succeeds exactly once.

use async_trait::async_trait;

use crate::clock::Timestamp;
use crate::crypto::envelope::Aad;
use crate::ids::{SessionId, UserId};
use crate::mfa::StoredBackupCode;
use crate::secret::TokenHash;
use crate::store::{SideEffects, StoreResult};

/// A TOTP factor as stored: the seed sealed under the master key (AAD: [`totp_seed_aad`]).
#[derive(Debug, Clone)]
pub struct TotpFactor {
    /// Owner.
    pub user_id: UserId,
    /// Sealed 160-bit seed.
    pub seed_sealed: Vec<u8>,
    /// When enrolment started.
    pub created_at: Timestamp,
    /// When the first correct code activated it; `None` while pending.
    pub confirmed_at: Option<Timestamp>,
    /// The newest time step accepted.
    pub last_step: Option<u64>,
}

/// Associated data sealing a user's SMS number.
pub fn sms_number_aad(user: &UserId) -> Aad {
    Aad::new(&["mfa_sms_number", &user.to_string(), "v1"])
}

/// An SMS number waiting for the code sent to it (R39).
#[derive(Debug, Clone)]
pub struct PendingSmsNumber {
    /// Whose.
    pub user_id: UserId,
    /// The number, sealed under [`sms_number_aad`].
    pub phone_sealed: Vec<u8>,
    /// Keyed hash of the code sent to it.
    pub code_hash: TokenHash,
    /// When the code was made.
    pub created_at: Timestamp,
    /// When the code stops working.
    pub expires_at: Timestamp,
    /// Codes one account may have sent per window (SMS pumping).
    pub max_sends: u32,
    /// Sends count against a window that began strictly after this instant (`now − window`);
    /// a window that began at it or earlier has ended — windows are half-open, `[start,
    /// start + window)` — and the next send starts a new one.
    pub window_start_after: Timestamp,
}

/// Associated data sealing a user's TOTP seed to its row (R26, R88).
pub fn totp_seed_aad(user: &UserId) -> Aad {
    Aad::new(&["mfa_totp_seed", &user.to_string(), "v1"])
}

/// One stored backup code of the current set.
#[derive(Debug, Clone)]
pub struct BackupCodeRow {
    /// Position in the set (0–9), stable.
    pub position: u32,
    /// Argon2id PHC string.
    pub hash: StoredBackupCode,
    /// Whether it has been used.
    pub used: bool,
}

/// What a short-lived MFA token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MfaTokenPurpose {
    /// Password checked; a second factor is still due (the pending-login token).
    Login,
    /// A factor was proven for one action (the step-up token).
    StepUp,
    /// An SMS code, bound to one pending login (stored as a keyed hash of the code).
    Sms,
}

impl MfaTokenPurpose {
    /// Stored name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::StepUp => "step_up",
            Self::Sms => "sms",
        }
    }
}

/// A short-lived, single-use token, stored by its SHA-256.
#[derive(Debug, Clone)]
pub struct MfaToken {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// Whose.
    pub user_id: UserId,
    /// What for.
    pub purpose: MfaTokenPurpose,
    /// The session that asked (step-up), empty for a pending login.
    pub session_id: Option<SessionId>,
    /// The action it was proven for (step-up), else empty.
    pub action: String,
    /// Hex of the 32-byte binding, or empty.
    pub binding: String,
    /// The factor used (`totp`, `backup_code`, `webauthn`, `password`), or empty.
    pub factor: String,
    /// Strength proven (`password`, `any_second_factor`, `phishing_resistant`), or empty.
    pub strength: String,
    /// Non-secret JSON facts (the requested session type of a pending login).
    pub detail: String,
    /// When minted (= when the factor was verified).
    pub created_at: Timestamp,
    /// Expiry.
    pub expires_at: Timestamp,
}

/// Selects the token a consumer may use: everything must match or nothing is consumed.
#[derive(Debug, Clone)]
pub struct MfaTokenMatch<'a> {
    /// SHA-256 of the presented token.
    pub hash: TokenHash,
    /// Expected purpose.
    pub purpose: MfaTokenPurpose,
    /// Expected owner, when known (step-up).
    pub user_id: Option<UserId>,
    /// Expected session (step-up), when known.
    pub session_id: Option<SessionId>,
    /// Expected action (step-up).
    pub action: Option<&'a str>,
    /// Expected binding hex (step-up; empty for none).
    pub binding: Option<&'a str>,
}

/// The factor a step-up used, marked used in the same write as the grant (already verified
/// by the caller; the store only records it, atomically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FactorUse {
    /// Nothing to mark (WebAuthn: the ceremony was taken and the counter updated before).
    Nothing,
    /// A TOTP time step: refused, and nothing written, if it (or a later step) was used.
    TotpStep(u64),
    /// A backup code by position: refused, and nothing written, if it was used.
    BackupCode(u32),
}

/// The session's new access token after a step-up (R43): every earlier access token of the
/// session is deleted and this one inserted, in the same write as the grant.
#[derive(Debug, Clone, Copy)]
pub struct AccessRotation {
    /// SHA-256 of the new access token.
    pub hash: TokenHash,
    /// Its expiry.
    pub expires_at: Timestamp,
}

/// Everything a successful step-up writes, as one atomic unit: the factor use, the step-up
/// token (its `session_id`, `strength` and `created_at` are also the session's remembered
/// proof) and the rotated access token.
#[derive(Debug, Clone)]
pub struct StepUpGrant {
    /// The factor to mark used.
    pub used: FactorUse,
    /// The step-up token to store (purpose `step_up`, with a session).
    pub token: MfaToken,
    /// The session's new access token, if it rotates.
    pub access: Option<AccessRotation>,
}

/// A stored WebAuthn credential (the webauthn-rs credential as JSON: public key and counter,
/// no secret).
#[derive(Debug, Clone)]
pub struct WebAuthnCredentialRow {
    /// base64url credential id.
    pub id: String,
    /// Owner.
    pub user_id: UserId,
    /// The user's name for it.
    pub name: String,
    /// `security_key` or `passkey`.
    pub kind: String,
    /// webauthn-rs credential JSON.
    pub credential: String,
    /// When registered.
    pub created_at: Timestamp,
    /// Last successful use.
    pub last_used_at: Option<Timestamp>,
    /// Set when a sign-counter regression was seen (suspected clone); such a credential is
    /// refused until removed.
    pub flagged_at: Option<Timestamp>,
}

/// Server-side WebAuthn ceremony state (registration or authentication), single use.
#[derive(Debug, Clone)]
pub struct CeremonyRow {
    /// Random id handed to the client.
    pub id: String,
    /// The user, when known (passwordless login starts without one).
    pub user_id: Option<UserId>,
    /// `register`, `login`, `step_up`, `passkey_login`.
    pub kind: String,
    /// webauthn-rs state JSON (contains the challenge; never sent to the client).
    pub state: String,
    /// Non-secret JSON facts: name, action, binding, session.
    pub detail: String,
    /// Expiry (R29: 300 s).
    pub expires_at: Timestamp,
}

/// Second factors.
#[async_trait]
pub trait MfaStore: Send + Sync {
    /// The user's TOTP factor, pending or active.
    async fn find_totp(&self, user: UserId) -> StoreResult<Option<TotpFactor>>;
    /// Starts (or restarts) a pending enrolment with a new sealed seed. False, and nothing
    /// written, when an active factor exists.
    async fn begin_totp(&self, user: UserId, seed_sealed: &[u8], now: Timestamp, fx: SideEffects) -> StoreResult<bool>;
    /// Activates the pending factor with its first accepted step; stores `backup` as the new
    /// backup-code set when given. False when there is no pending factor (or it changed).
    async fn activate_totp(
        &self,
        user: UserId,
        step: u64,
        backup: Option<&[StoredBackupCode]>,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool>;
    /// Consumes a time step of the active factor: true only if `(user, step)` was unused and
    /// `step` is newer than every accepted step. `fx` commits only then.
    async fn consume_totp_step(&self, user: UserId, step: u64, now: Timestamp, fx: SideEffects) -> StoreResult<bool>;
    /// Removes the TOTP factor (pending or active).
    async fn delete_totp(&self, user: UserId, fx: SideEffects) -> StoreResult<bool>;
    /// The current backup-code set, used ones included, by position.
    async fn backup_codes(&self, user: UserId) -> StoreResult<Vec<BackupCodeRow>>;
    /// Replaces the whole set (old codes stop working at once).
    async fn replace_backup_codes(
        &self,
        user: UserId,
        codes: &[StoredBackupCode],
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<()>;
    /// Uses one code: true only if it was unused. `fx` commits only then.
    async fn consume_backup_code(
        &self,
        user: UserId,
        position: u32,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool>;
    /// Stores a new token.
    async fn create_mfa_token(&self, token: &MfaToken, fx: SideEffects) -> StoreResult<()>;
    /// A live (unused, unexpired) token, without consuming it.
    async fn find_mfa_token(
        &self,
        hash: TokenHash,
        purpose: MfaTokenPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<MfaToken>>;
    /// Consumes a live token that matches `m` in every given field; `None` if there is none.
    async fn consume_mfa_token(&self, m: &MfaTokenMatch<'_>, now: Timestamp) -> StoreResult<Option<MfaToken>>;
    /// Remembers that `session` proved `strength` at `at` (for policies with a max age).
    async fn note_session_proof(
        &self,
        session: SessionId,
        user: UserId,
        strength: &str,
        at: Timestamp,
    ) -> StoreResult<()>;
    /// Commits a successful step-up in one write (one group commit on the SQL store, ADR
    /// 0013): marks `grant.used`, stores the step-up token, remembers the session's proof and
    /// rotates its access token. False, and nothing written (`fx` included), when the factor
    /// use is refused (a used TOTP step or backup code).
    async fn grant_step_up(&self, grant: &StepUpGrant, fx: SideEffects) -> StoreResult<bool>;
    /// The newest proof remembered for `session`.
    async fn session_proof(&self, session: SessionId) -> StoreResult<Option<(String, Timestamp)>>;
    /// The account's WebAuthn user handle (R33): the stored one, or `fresh` stored now if the
    /// account has none yet (first writer wins across instances).
    async fn webauthn_user_handle(&self, user: UserId, fresh: &[u8], now: Timestamp) -> StoreResult<Vec<u8>>;
    /// Stores a WebAuthn credential; [`crate::store::StoreError::Conflict`] if the id is
    /// registered to anyone already (R32).
    async fn create_webauthn_credential(&self, c: &WebAuthnCredentialRow, fx: SideEffects) -> StoreResult<()>;
    /// The user's credentials.
    async fn list_webauthn_credentials(&self, user: UserId) -> StoreResult<Vec<WebAuthnCredentialRow>>;
    /// A credential by id (any user: passwordless login).
    async fn find_webauthn_credential(&self, id: &str) -> StoreResult<Option<WebAuthnCredentialRow>>;
    /// Saves the credential JSON after a successful assertion (new counter).
    async fn update_webauthn_credential(
        &self,
        id: &str,
        credential: &str,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool>;
    /// Flags a credential (suspected clone).
    async fn flag_webauthn_credential(&self, id: &str, now: Timestamp, fx: SideEffects) -> StoreResult<bool>;
    /// Removes one of the user's credentials.
    async fn delete_webauthn_credential(&self, user: UserId, id: &str, fx: SideEffects) -> StoreResult<bool>;
    /// Stores `p` as the account's number waiting for confirmation (R39), replacing an earlier
    /// pending one; a confirmed number stays usable until `p` is confirmed. False, and nothing
    /// written, when `p.max_sends` codes were already sent in the current window.
    async fn begin_sms_number(&self, p: &PendingSmsNumber, fx: SideEffects) -> StoreResult<bool>;
    /// Confirms the pending number whose code hashes to `code_hash` (unexpired): it becomes the
    /// account's SMS number (replacing a confirmed one) and the pending code stops working (its
    /// send count still applies to the window). False, and nothing written, when there is no
    /// such pending number.
    async fn confirm_sms_number(
        &self,
        user: UserId,
        code_hash: TokenHash,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool>;
    /// The sealed SMS number, once confirmed (a pending one is not returned).
    async fn find_sms_number(&self, user: UserId) -> StoreResult<Option<Vec<u8>>>;
    /// Removes the SMS number, confirmed or pending. Codes already sent in the current window
    /// still count toward `max_sends` (removing a number does not unsend them).
    async fn delete_sms_number(&self, user: UserId, fx: SideEffects) -> StoreResult<bool>;
    /// Marks every live token of `purpose` with this `binding` used (an SMS resend replaces the
    /// earlier code, R38).
    async fn revoke_mfa_tokens(&self, purpose: MfaTokenPurpose, binding: &str, now: Timestamp) -> StoreResult<u64>;
    /// How many tokens of `purpose` were ever minted with this `binding` (used ones included):
    /// bounds SMS sends per pending login.
    async fn count_mfa_tokens(&self, purpose: MfaTokenPurpose, binding: &str) -> StoreResult<u64>;
    /// Stores ceremony state.
    async fn create_ceremony(&self, c: &CeremonyRow) -> StoreResult<()>;
    /// Takes ceremony state (single use: deleted as it is read; `None` if unknown, used or
    /// expired).
    async fn take_ceremony(&self, id: &str, kind: &str, now: Timestamp) -> StoreResult<Option<CeremonyRow>>;
}
