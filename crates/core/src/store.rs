//! Storage traits: what the security logic needs from a database, one small trait per
//! capability (the lldap shape). `gatehouse-store` implements them for SQLite and PostgreSQL.
//!
//! Rules every implementation keeps:
//! * A mutating call commits its state change, the audit events in its [`SideEffects`] and
//!   any queued mail **in one transaction**, or none of them (F13).
//! * Check-and-set operations (refresh rotation, token consumption, throttle counters) are
//!   atomic across instances: conditional `UPDATE … WHERE state = 'active'` or
//!   `INSERT … ON CONFLICT`, never read-then-write outside a transaction (F7–F9).
//! * A store that cannot answer returns [`StoreError::Unavailable`]; callers deny (503).

use async_trait::async_trait;

use crate::account::{Account, Email};
use crate::audit::{AuditEvent, AuditRecord};
use crate::clock::{Span, Timestamp};
use crate::ids::{DeviceId, SessionId, UserId};
use crate::password::PasswordHashString;
use crate::secret::TokenHash;
use crate::session::{RefreshOutcome, Session, SessionPolicy};
use crate::throttle::{FailureCounter, LockRule};

/// Storage failures, as callers need to tell them apart.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database did not answer in time or the connection failed: deny with 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A uniqueness rule was violated (for example, the email is taken).
    #[error("conflict")]
    Conflict,
    /// Stored data could not be interpreted: deny, and look at the logs.
    #[error("corrupt stored data: {0}")]
    Corrupt(String),
    /// Anything else: deny with 500 and an error id.
    #[error("store error: {0}")]
    Other(String),
}

/// Convenience alias.
pub type StoreResult<T> = Result<T, StoreError>;

/// A queued email, its content sealed with the envelope keyring (mail carries links with
/// tokens, so bodies are never stored in clear).
#[derive(Debug, Clone)]
pub struct QueuedMail {
    /// Outbox row id (also the AAD of the sealed content).
    pub id: String,
    /// Recipient address.
    pub recipient: String,
    /// Sealed JSON `{subject, text, html}`.
    pub sealed: Vec<u8>,
    /// When it was queued.
    pub created_at: Timestamp,
}

/// A webhook to the security team (or the exchange back end), queued durably and delivered
/// with retries; `id` doubles as the idempotency key the receiver deduplicates on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedWebhook {
    /// Delivery id and idempotency key.
    pub id: String,
    /// Event topic, e.g. `api_key.new_network`.
    pub topic: String,
    /// JSON body (never secrets).
    pub body: String,
    /// When it was queued.
    pub created_at: Timestamp,
}

/// What commits together with a state change.
#[derive(Debug, Clone, Default)]
pub struct SideEffects {
    /// Audit events, appended to the chain in order.
    pub events: Vec<AuditEvent>,
    /// Mail to send once committed.
    pub mails: Vec<QueuedMail>,
    /// Webhooks to deliver once committed.
    pub webhooks: Vec<QueuedWebhook>,
    // friction (issue 5): a withdrawal hold recorded with the change that causes it.
    /// A withdrawal hold to record (extends, never shortens, an existing hold).
    pub hold: Option<crate::friction::WithdrawalHold>,
    // end friction
}

impl SideEffects {
    /// Just one audit event.
    pub fn event(e: AuditEvent) -> Self {
        Self { events: vec![e], ..Default::default() }
    }

    /// Adds an event.
    pub fn and(mut self, e: AuditEvent) -> Self {
        self.events.push(e);
        self
    }

    /// Adds a mail.
    pub fn mail(mut self, m: QueuedMail) -> Self {
        self.mails.push(m);
        self
    }

    /// Adds a webhook.
    pub fn webhook(mut self, w: QueuedWebhook) -> Self {
        self.webhooks.push(w);
        self
    }

    // friction (issue 5)
    /// Holds the user's withdrawals until `until` (a security change happened).
    pub fn hold(mut self, user: UserId, until: Timestamp, reason: &str) -> Self {
        self.hold = Some(crate::friction::WithdrawalHold { user, until, reason: reason.to_owned() });
        self
    }
    // end friction
}

/// A single-use emailed token (verification link, later: reset links).
#[derive(Debug, Clone)]
pub struct EmailToken {
    /// SHA-256 of the token.
    pub hash: TokenHash,
    /// Account it belongs to.
    pub user_id: UserId,
    /// What it is for, e.g. `verify_email`.
    pub purpose: String,
    /// Expiry.
    pub expires_at: Timestamp,
}

/// Accounts and their emailed tokens.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates an account with its verification token. [`StoreError::Conflict`] if the email
    /// is taken (nothing is written then).
    async fn create_account(&self, account: &Account, token: &EmailToken, fx: SideEffects) -> StoreResult<()>;
    /// The account with this email.
    async fn find_account_by_email(&self, email: &Email) -> StoreResult<Option<Account>>;
    /// The account with this id.
    async fn find_account(&self, id: UserId) -> StoreResult<Option<Account>>;
    /// Consumes a token of `purpose` (single use, unexpired) and, for `verify_email`, marks
    /// the address verified; for `change_email:<address>`, makes `<address>` the account's
    /// verified login name in the same transaction ([`StoreError::Conflict`] and nothing
    /// consumed when another account has it). Returns the account, or `None` if the token is unknown, used or
    /// expired. `fx` is built from the returned id by the caller's closure.
    async fn consume_email_token(
        &self,
        hash: TokenHash,
        purpose: &str,
        now: Timestamp,
        fx: &(dyn Fn(UserId) -> SideEffects + Send + Sync),
    ) -> StoreResult<Option<UserId>>;
    /// Queues side effects that belong to no state change (a duplicate-registration notice).
    async fn record(&self, fx: SideEffects) -> StoreResult<()>;
    /// Whose unused, unexpired token of `purpose` this is, without consuming it.
    async fn email_token_owner(&self, hash: TokenHash, purpose: &str, now: Timestamp) -> StoreResult<Option<UserId>>;
    /// Stores an emailed single-use token for an existing account (e.g. a sign-in
    /// confirmation), with its mail and audit events.
    async fn issue_email_token(&self, token: &EmailToken, now: Timestamp, fx: SideEffects) -> StoreResult<()>;
    /// Replaces the password hash and revokes every session except `keep` (R46).
    async fn change_password(
        &self,
        user: UserId,
        new_hash: &PasswordHashString,
        keep: Option<SessionId>,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<u64>;
    /// Upgrades the stored hash if it is still `old` (rehash on login).
    async fn rehash_password(
        &self,
        user: UserId,
        old: &PasswordHashString,
        new: &PasswordHashString,
        fx: SideEffects,
    ) -> StoreResult<bool>;
    /// Sets the staff flag (operator CLI).
    async fn set_admin(&self, user: UserId, is_admin: bool, fx: SideEffects) -> StoreResult<()>;
    /// Freezes an account in one transaction: marks it frozen, revokes every session and
    /// refresh family, suspends every API key that is not revoked. Idempotent; returns
    /// false when it was already frozen (nothing written then).
    async fn freeze_account(&self, user: UserId, reason: &str, now: Timestamp, fx: SideEffects) -> StoreResult<bool>;
    /// Lifts a freeze (after the owner re-verified or recovery); keys stay suspended until
    /// their owner resumes them.
    async fn unfreeze_account(&self, user: UserId, fx: SideEffects) -> StoreResult<bool>;
}

/// Behavioural risk profiles, persisted as JSON written by the risk engine.
#[async_trait]
pub trait RiskStore: Send + Sync {
    /// The user's profile JSON.
    async fn load_risk_profile(&self, user: UserId) -> StoreResult<Option<String>>;
    /// Saves profiles (upserts).
    async fn save_risk_profiles(&self, profiles: &[(UserId, String)], now: Timestamp) -> StoreResult<()>;
    /// The population statistics JSON.
    async fn load_risk_global(&self) -> StoreResult<Option<String>>;
    /// Saves the population statistics.
    async fn save_risk_global(&self, stats: &str, now: Timestamp) -> StoreResult<()>;
}

/// Shared login-failure counters (F4: the database is the source of truth).
#[async_trait]
pub trait ThrottleStore: Send + Sync {
    /// Current counters for `keys` (missing keys read as zero), in the same order.
    async fn load_counters(&self, keys: &[String]) -> StoreResult<Vec<FailureCounter>>;
    /// Atomically counts one failure against each key, applying `rule` to the first (the
    /// account counter), and commits `fx` plus `on_lock` if this failure crossed the lock
    /// threshold. Returns the account counter after the update.
    async fn record_failure(
        &self,
        keys: &[String],
        rule: LockRule,
        now: Timestamp,
        fx: SideEffects,
        on_lock: AuditEvent,
    ) -> StoreResult<FailureCounter>;
}

/// A new session with its first tokens.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// The session.
    pub session: Session,
    /// Hash of the first access token.
    pub access_hash: TokenHash,
    /// Its expiry.
    pub access_expires_at: Timestamp,
    /// Hash of the first refresh token.
    pub refresh_hash: TokenHash,
}

/// A refresh attempt, with everything the store needs to decide atomically.
#[derive(Debug, Clone)]
pub struct RefreshRequest {
    /// Hash of the presented token.
    pub presented: TokenHash,
    /// Hash of the derived successor refresh token.
    pub successor: TokenHash,
    /// Hash of the derived access token.
    pub access: TokenHash,
    /// Its expiry.
    pub access_expires_at: Timestamp,
    /// The presenting device and UA family (checked against the session's binding).
    pub device: Option<DeviceId>,
    /// UA family key.
    pub ua_family: String,
    /// Client IP.
    pub ip: String,
    /// Now.
    pub now: Timestamp,
    /// Lifetimes and grace.
    pub policy: SessionPolicy,
}

/// What an access token opens, as [`SessionStore::find_by_access`] reads it.
#[derive(Debug, Clone)]
pub struct AccessRecord {
    /// The session.
    pub session: Session,
    /// When the access token expires.
    pub expires_at: Timestamp,
    /// The session's owner.
    pub account: Account,
    /// The session's key or certificate binding, if it is sender-constrained (issue 9).
    pub binding: Option<crate::pop::Confirmation>,
}

/// Sessions, access tokens and refresh-token families.
#[async_trait]
pub trait SessionStore: Send + Sync {
    /// Creates a session with its tokens, resets the login counters in `reset_keys` (a full
    /// login succeeded, R14) and commits `fx`.
    async fn create_session(&self, new: &NewSession, reset_keys: &[String], fx: SideEffects) -> StoreResult<()>;
    /// The session an access token belongs to, with the token's expiry, its owner and the
    /// session's proof-of-possession binding — one read, since every authenticated request
    /// needs all four.
    async fn find_by_access(&self, hash: TokenHash) -> StoreResult<Option<AccessRecord>>;
    /// Records use (coarse: callers only call this when [`Session::needs_touch`]).
    async fn touch_session(&self, id: SessionId, now: Timestamp, ip: &str) -> StoreResult<()>;
    /// Rotates a refresh token atomically (see [`crate::session`]). `fx_for` builds the audit
    /// events for the outcome, committed with it.
    async fn rotate_refresh(
        &self,
        req: &RefreshRequest,
        fx_for: &(dyn for<'o> Fn(&'o RefreshOutcome) -> SideEffects + Send + Sync),
    ) -> StoreResult<RefreshOutcome>;
    /// Live sessions of a user, newest first.
    async fn list_sessions(&self, user: UserId, now: Timestamp) -> StoreResult<Vec<Session>>;
    /// Revokes one session of `user`; false if it is not theirs or already gone.
    async fn revoke_session(
        &self,
        user: UserId,
        id: SessionId,
        reason: &str,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool>;
    /// Revokes every live session of `user` except `keep`; returns how many.
    async fn revoke_other_sessions(
        &self,
        user: UserId,
        keep: Option<SessionId>,
        reason: &str,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<u64>;
    /// Whether `device` has completed a full login to `user` before (a trusted device for
    /// throttling).
    async fn is_known_device(&self, user: UserId, device: DeviceId) -> StoreResult<bool>;
    /// Marks the session freshly authenticated (re-entered password).
    async fn set_auth_time(&self, id: SessionId, now: Timestamp) -> StoreResult<()>;
}

/// The audit chain.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends events that accompany no state change.
    async fn append(&self, events: Vec<AuditEvent>) -> StoreResult<()>;
    /// A user's own security history (events whose subject is the user), newest first.
    async fn history(&self, user: UserId, before_seq: Option<i64>, limit: u32) -> StoreResult<Vec<AuditRecord>>;
    /// Records in chain order after `after_seq`, for verification.
    async fn records_after(&self, after_seq: i64, limit: u32) -> StoreResult<Vec<AuditRecord>>;
}

/// Server-wide long-lived secrets, sealed under the master key.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// The sealed secret called `name`, storing `candidate` first if there is none yet
    /// (first start). Concurrent first starts agree on one value.
    async fn get_or_init_secret(&self, name: &str, candidate: Vec<u8>, now: Timestamp) -> StoreResult<Vec<u8>>;
}

/// The mail outbox.
#[async_trait]
pub trait MailStore: Send + Sync {
    /// Claims up to `limit` messages due at `now`, pushing their next attempt `lease` ahead
    /// so another instance does not send them concurrently.
    async fn claim_mail(&self, now: Timestamp, lease: Span, limit: u32) -> StoreResult<Vec<QueuedMail>>;
    /// Marks a message sent and wipes its sealed body.
    async fn mark_mail_sent(&self, id: &str, now: Timestamp) -> StoreResult<()>;
    /// Records a failed attempt; the next one is at `retry_at`.
    async fn mark_mail_failed(&self, id: &str, error: &str, retry_at: Timestamp) -> StoreResult<()>;
    /// Messages not yet sent (a readiness and metrics figure).
    async fn pending_mail(&self) -> StoreResult<u64>;
}

/// An API key as stored: the record and its verification material.
#[derive(Debug, Clone)]
pub struct StoredApiKey {
    /// The record (scopes, allowlist, state, rotation, last use).
    pub key: crate::apikey::ApiKey,
    /// HMAC secret sealed under the master key (AAD: [`api_key_secret_aad`]).
    pub secret_sealed: Option<Vec<u8>>,
    /// Ed25519 raw public key or RSA SPKI DER.
    pub public_key: Option<Vec<u8>>,
}

/// Associated data sealing an API key's HMAC secret to its row (R88).
pub fn api_key_secret_aad(id: &crate::apikey::ApiKeyId, owner: &UserId) -> crate::crypto::envelope::Aad {
    crate::crypto::envelope::Aad::new(&["api_key_secret", &id.to_string(), &owner.to_string(), "v1"])
}

/// Usage counts accumulated in memory and flushed in batches (R72).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    /// The key.
    pub key_id: crate::apikey::ApiKeyId,
    /// Route pattern (`POST /v1/orders`).
    pub route: String,
    /// `ok` or a denial reason.
    pub outcome: String,
    /// How many since the last flush.
    pub count: u64,
    /// Latest occurrence.
    pub last_at: Timestamp,
}

/// The last successful use of a key, flushed in batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLastUse {
    /// The key.
    pub key_id: crate::apikey::ApiKeyId,
    /// When.
    pub at: Timestamp,
    /// Client IP.
    pub ip: Option<String>,
    /// Cleaned user agent.
    pub user_agent: Option<String>,
}

/// API keys.
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Creates a key unless its owner already has `max_live` keys that are not revoked
    /// (checked in the same transaction). Returns false when over the limit.
    async fn create_api_key(&self, key: &StoredApiKey, max_live: u32, fx: SideEffects) -> StoreResult<bool>;
    /// The key with this id, with its material.
    async fn find_api_key(&self, id: crate::apikey::ApiKeyId) -> StoreResult<Option<StoredApiKey>>;
    /// The owner's keys (records only), newest first.
    async fn list_api_keys(&self, owner: UserId) -> StoreResult<Vec<crate::apikey::ApiKey>>;
    /// Replaces the record of an existing key of `owner`; false if there is none.
    async fn update_api_key(&self, key: &crate::apikey::ApiKey, fx: SideEffects) -> StoreResult<bool>;
    /// Saves the rotated predecessor and creates its successor in one transaction.
    async fn rotate_api_key(
        &self,
        predecessor: &crate::apikey::ApiKey,
        successor: &StoredApiKey,
        fx: SideEffects,
    ) -> StoreResult<()>;
    /// Adds usage counts and last-use facts accumulated since the last flush.
    async fn flush_key_usage(&self, usage: &[KeyUsage], last: &[KeyLastUse]) -> StoreResult<()>;
    /// Usage counts of one key.
    async fn key_usage(&self, id: crate::apikey::ApiKeyId) -> StoreResult<Vec<KeyUsage>>;
    /// Keys that are not revoked and expire before `before`, with the last reminder stage
    /// they received.
    async fn keys_expiring_before(
        &self,
        before: Timestamp,
        limit: u32,
    ) -> StoreResult<Vec<(crate::apikey::ApiKey, u8)>>;
    /// Moves a key to reminder `stage` if it is still below it, committing `fx` (the reminder
    /// mail and its audit event) only then. False when another instance already did.
    async fn mark_key_reminded(&self, id: crate::apikey::ApiKeyId, stage: u8, fx: SideEffects) -> StoreResult<bool>;
    /// Records the networks keys were used from; returns the ones that are new for a key
    /// that had been used from some other network before (first use is not "new").
    async fn note_key_networks(
        &self,
        seen: &[(crate::apikey::ApiKeyId, String)],
        now: Timestamp,
    ) -> StoreResult<Vec<(crate::apikey::ApiKeyId, String)>>;
}

/// The webhook outbox.
#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// Claims up to `limit` webhooks due at `now`, leasing them for `lease`.
    async fn claim_webhooks(&self, now: Timestamp, lease: Span, limit: u32) -> StoreResult<Vec<QueuedWebhook>>;
    /// Marks a webhook delivered.
    async fn mark_webhook_delivered(&self, id: &str, now: Timestamp) -> StoreResult<()>;
    /// Records a failed attempt; the next one is at `retry_at`.
    async fn mark_webhook_failed(&self, id: &str, error: &str, retry_at: Timestamp) -> StoreResult<()>;
    /// Webhooks not yet delivered.
    async fn pending_webhooks(&self) -> StoreResult<u64>;
}

/// The durable replay store: single-use nonces and signatures shared by every instance that
/// uses this database (F3 fallback when Redis is unavailable, and embedded mode).
#[async_trait]
pub trait ReplayStore: Send + Sync {
    /// Records `key` until `now + ttl` unless a live record exists. True when fresh.
    async fn insert_if_absent(&self, key: &crate::replay::ReplayKey, now: Timestamp, ttl: Span) -> StoreResult<bool>;
    /// Deletes expired records; returns how many.
    async fn sweep_replay(&self, now: Timestamp) -> StoreResult<u64>;
}

// --- proof of possession (issue 9) ---

/// The bound session a refresh token belongs to ([`TokenBindingStore::find_refresh_binding`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshBinding {
    /// The session (the refresh family).
    pub session_id: SessionId,
    /// Its owner.
    pub user_id: UserId,
    /// What every token of the session is bound to.
    pub cnf: crate::pop::Confirmation,
}

/// Sender-constrained sessions (RFC 9449 §5/§6.1, RFC 8705 §3): the `cnf` every access and
/// refresh token of a session is bound to. A binding is written with its session, in the same
/// transaction, and never changes afterwards; an unbound session has no row.
#[async_trait]
pub trait TokenBindingStore: Send + Sync {
    /// [`SessionStore::create_session`] plus the session's binding, in one transaction.
    async fn create_bound_session(
        &self,
        new: &NewSession,
        cnf: &crate::pop::Confirmation,
        reset_keys: &[String],
        fx: SideEffects,
    ) -> StoreResult<()>;
    /// The binding of a session; `None` when it is not bound.
    async fn find_binding(&self, session: SessionId) -> StoreResult<Option<crate::pop::Confirmation>>;
    /// The bound session a refresh token (any state) belongs to; `None` when the token is
    /// unknown or its session unbound.
    async fn find_refresh_binding(&self, refresh: TokenHash) -> StoreResult<Option<RefreshBinding>>;
}

// --- end proof of possession ---

/// The database server's own clock, for detecting skew between instances (F5). `None` when
/// the database shares this process's clock (SQLite).
pub type DbTimeFuture<'a> =
    std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<Option<Timestamp>>> + Send + 'a>>;

/// Everything the server needs, as one object.
pub trait Store:
    AccountStore
    + ThrottleStore
    + SessionStore
    + AuditStore
    + SecretStore
    + MailStore
    + ApiKeyStore
    + ReplayStore
    + WebhookStore
    + RiskStore
    // second factors (feat/mfa)
    + crate::mfa::store::MfaStore
    + TokenBindingStore
    + crate::friction_store::FrictionStore
{
    /// Whether the database answers (readiness).
    fn ping(&self) -> futures_ping::PingFuture<'_>;
    /// The database server's clock.
    fn db_time(&self) -> DbTimeFuture<'_>;
}

/// A boxed readiness future (kept free of an async-trait to stay object-safe and cheap).
pub mod futures_ping {
    /// Resolves to `Ok(())` when the store answered.
    pub type PingFuture<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = super::StoreResult<()>> + Send + 'a>>;
}

/// Classifies a presented refresh token against its stored record and session. The store calls
/// this inside the transaction after its conditional update lost (or to decide whether to
/// attempt it), so the rule lives here, once.
pub fn classify_refresh(
    record: &crate::session::RefreshRecord,
    session: &Session,
    successor_matches: bool,
    now: Timestamp,
    policy: &SessionPolicy,
    is_admin: bool,
) -> RefreshDecision {
    use crate::session::RefreshState;
    if session.check(now, policy, is_admin).is_err() || now >= record.expires_at {
        return RefreshDecision::Invalid;
    }
    match record.state {
        RefreshState::Active => RefreshDecision::Rotate,
        RefreshState::Used => {
            let in_grace = record.used_at.is_some_and(|u| now < u.plus(policy.grace()));
            if in_grace && successor_matches { RefreshDecision::Grace } else { RefreshDecision::Reuse }
        }
        RefreshState::Revoked => RefreshDecision::Invalid,
    }
}

/// The decision [`classify_refresh`] makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Mark used and issue the successor.
    Rotate,
    /// Return the existing successor (grace).
    Grace,
    /// Revoke the family and the session.
    Reuse,
    /// Refuse without side effects.
    Invalid,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use crate::session::{RefreshRecord, RefreshState, SessionKind};

    const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

    fn fixtures() -> (Session, RefreshRecord) {
        let rng = SeededRng::new(1);
        let s = Session {
            id: SessionId::generate(T0, &rng),
            user_id: UserId::generate(T0, &rng),
            device_id: DeviceId::generate(T0, &rng),
            ua_family: "curl/Other".into(),
            device_name: "curl on Other".into(),
            kind: SessionKind::Api,
            created_ip: "127.0.0.1".into(),
            last_ip: "127.0.0.1".into(),
            created_at: T0,
            last_seen_at: T0,
            expires_at: T0.plus(Span::hours(12)),
            auth_time: T0,
            revoked_at: None,
            revoke_reason: None,
        };
        let r = RefreshRecord {
            hash: TokenHash::from_bytes([1; 32]),
            session_id: s.id,
            state: RefreshState::Active,
            successor: None,
            used_at: None,
            expires_at: s.expires_at,
        };
        (s, r)
    }

    #[test]
    fn refresh_decisions() {
        let (s, mut r) = fixtures();
        let p = SessionPolicy { refresh_grace_secs: 10, ..Default::default() };
        let now = T0.plus(Span::secs(5));
        assert_eq!(classify_refresh(&r, &s, false, now, &p, false), RefreshDecision::Rotate);
        r.state = RefreshState::Used;
        r.used_at = Some(now);
        assert_eq!(classify_refresh(&r, &s, true, now.plus(Span::secs(9)), &p, false), RefreshDecision::Grace);
        assert_eq!(classify_refresh(&r, &s, true, now.plus(Span::secs(10)), &p, false), RefreshDecision::Reuse);
        // An older generation never gets grace: its successor is not the presented successor.
        assert_eq!(classify_refresh(&r, &s, false, now, &p, false), RefreshDecision::Reuse);
        let p0 = SessionPolicy::default();
        assert_eq!(classify_refresh(&r, &s, true, now, &p0, false), RefreshDecision::Reuse);
        r.state = RefreshState::Revoked;
        assert_eq!(classify_refresh(&r, &s, true, now, &p, false), RefreshDecision::Invalid);
    }

    #[test]
    fn refresh_after_absolute_expiry_is_invalid() {
        let (s, r) = fixtures();
        let p = SessionPolicy::default();
        let mut live = s.clone();
        live.last_seen_at = T0.plus(Span::hours(12));
        let at = T0.plus(Span::hours(12)).plus(Span::secs(1));
        assert_eq!(classify_refresh(&r, &live, false, at, &p, false), RefreshDecision::Invalid);
        assert_eq!(classify_refresh(&r, &s, false, T0.plus(Span::minutes(31)), &p, false), RefreshDecision::Invalid);
    }
}
