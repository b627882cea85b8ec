//! Storage for withdrawals, holds, the settings lock, emailed action links and recovery
//! cases. Same rules as [`crate::store`]: every mutating call commits its change, its audit
//! events, mail and holds in one transaction, and check-and-set steps are conditional updates.

use async_trait::async_trait;

use crate::clock::{Span, Timestamp};
use crate::friction::{FrictionState, LinkAction, WithdrawalHold};
use crate::ids::UserId;
use crate::password::PasswordHashString;
use crate::recovery::{ApprovalDecision, RecoveryCase};
use crate::secret::TokenHash;
use crate::store::{EmailToken, SideEffects, StoreResult};
use crate::withdrawal::{AddressEntry, Intent, Refusal};

/// The result of confirming an intent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfirmOutcome {
    /// This call moved it to `confirmed` and queued its delivery.
    Confirmed,
    /// It was already confirmed (a retry): nothing changed.
    AlreadyConfirmed,
    /// Unknown, not the caller's, cancelled or expired.
    NotConfirmable,
    /// A rule refuses it now (re-checked inside the transaction).
    Refused(Refusal),
}

/// Builds side effects for a redeemed link from the owner, the owner's address, the action
/// and whether it changed anything (the store calls it inside the transaction, so the notice
/// commits with the action).
pub type LinkEffects<'a> = &'a (dyn for<'l> Fn(UserId, &'l str, &'l LinkAction, bool) -> SideEffects + Send + Sync);

/// Builds side effects for a completed password reset from the owner and the owner's address.
pub type ResetEffects<'a> = &'a (dyn for<'l> Fn(UserId, &'l str) -> SideEffects + Send + Sync);

/// Friction and recovery storage.
#[async_trait]
pub trait FrictionStore: Send + Sync {
    /// The account's friction settings (defaults when it has none).
    async fn find_friction(&self, user: UserId) -> StoreResult<FrictionState>;
    /// Sets or clears the sealed anti-phishing code.
    async fn set_anti_phishing_code(&self, user: UserId, sealed: Option<String>, fx: SideEffects) -> StoreResult<()>;
    /// Turns allowlist-only mode on or off.
    async fn set_allowlist_only(&self, user: UserId, on: bool, fx: SideEffects) -> StoreResult<()>;
    /// Locks security settings; false if already locked (nothing written then).
    async fn lock_settings(&self, user: UserId, now: Timestamp, fx: SideEffects) -> StoreResult<bool>;
    /// Schedules the unlock at `at` (with its cancel link); false if not locked or an unlock
    /// is already waiting.
    async fn request_settings_unlock(
        &self,
        user: UserId,
        at: Timestamp,
        now: Timestamp,
        cancel: &EmailToken,
        fx: SideEffects,
    ) -> StoreResult<bool>;
    /// Cancels a waiting unlock; false if none was waiting.
    async fn cancel_settings_unlock(&self, user: UserId, now: Timestamp, fx: SideEffects) -> StoreResult<bool>;
    /// Marks an account high-value (operator CLI).
    async fn set_high_value(&self, user: UserId, on: bool, fx: SideEffects) -> StoreResult<()>;
    /// Stores a single-use emailed link token.
    async fn create_link(&self, token: &EmailToken, fx: SideEffects) -> StoreResult<()>;
    /// Consumes a link token and performs its action in the same transaction. Returns the
    /// owner, the action and whether it changed anything; `None` if the token is unknown,
    /// used, expired or not an action link.
    async fn redeem_link(
        &self,
        hash: TokenHash,
        now: Timestamp,
        fx: LinkEffects<'_>,
    ) -> StoreResult<Option<(UserId, LinkAction, bool)>>;
    /// Consumes a `password_reset` token, sets the new hash, revokes every session and
    /// commits `fx(user, email)` (which carries the hold and the notice). `None` if the token
    /// is not valid.
    async fn complete_password_reset(
        &self,
        hash: TokenHash,
        new_hash: &PasswordHashString,
        now: Timestamp,
        fx: ResetEffects<'_>,
    ) -> StoreResult<Option<UserId>>;

    /// Adds an address-book entry with its cancel link.
    async fn add_withdrawal_address(
        &self,
        entry: &AddressEntry,
        cancel: &EmailToken,
        fx: SideEffects,
    ) -> StoreResult<()>;
    /// The owner's entries, newest first.
    async fn list_withdrawal_addresses(&self, user: UserId) -> StoreResult<Vec<AddressEntry>>;
    /// Cancels a not-yet-cancelled entry of `user`; false if there is none.
    async fn cancel_withdrawal_address(
        &self,
        user: UserId,
        id: &str,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool>;

    /// Stores a new pending intent.
    async fn create_intent(&self, intent: &Intent, fx: SideEffects) -> StoreResult<()>;
    /// An intent by id.
    async fn find_intent(&self, id: &str) -> StoreResult<Option<Intent>>;
    /// Base units of `asset` confirmed by `user` at or after `since`.
    async fn confirmed_units_since(&self, user: UserId, asset: &str, since: Timestamp) -> StoreResult<i64>;
    /// Confirms an intent atomically: re-checks frozen, hold, address and daily limit under the
    /// account's row lock, then `pending → confirmed` by conditional update.
    async fn confirm_intent(
        &self,
        id: &str,
        user: UserId,
        now: Timestamp,
        daily_limit: i64,
        fx: SideEffects,
    ) -> StoreResult<ConfirmOutcome>;
    /// Claims confirmed, undelivered intents due at `now`, leasing them for `lease`.
    async fn claim_intents(&self, now: Timestamp, lease: Span, limit: u32) -> StoreResult<Vec<Intent>>;
    /// Records the back end's acknowledgement.
    async fn mark_intent_delivered(&self, id: &str, now: Timestamp) -> StoreResult<()>;
    /// Records a failed delivery; the next attempt is at `retry_at`.
    async fn mark_intent_failed(&self, id: &str, error: &str, retry_at: Timestamp) -> StoreResult<()>;

    /// Opens a recovery case with its cancel link, unless the account already has an open case
    /// (then nothing is written and the answer is false): one case at a time, so a stranger
    /// cannot flood the owner and the reviewers.
    async fn create_recovery_case(
        &self,
        case: &RecoveryCase,
        cancel: &EmailToken,
        fx: SideEffects,
    ) -> StoreResult<bool>;
    /// Cases, newest first (open ones only when `open_only`).
    async fn list_recovery_cases(&self, open_only: bool, limit: u32) -> StoreResult<Vec<RecoveryCase>>;
    /// One case.
    async fn find_recovery_case(&self, id: &str) -> StoreResult<Option<RecoveryCase>>;
    /// Applies `reviewer`'s approval under the case's row lock ([`crate::recovery::decide_approval`]).
    /// On `Execute` it revokes every session and refresh family, suspends API keys, resets
    /// second factors, lifts a freeze and records `hold` — all in one transaction with
    /// `fx(decision)`. Returns the decision (`None`: no such case).
    async fn approve_recovery(
        &self,
        id: &str,
        reviewer: UserId,
        now: Timestamp,
        hold: WithdrawalHold,
        fx: &(dyn for<'c> Fn(&'c RecoveryCase, ApprovalDecision) -> SideEffects + Send + Sync),
    ) -> StoreResult<Option<ApprovalDecision>>;
    /// Rejects an open case; false if it is not open.
    async fn reject_recovery(&self, id: &str, reviewer: UserId, now: Timestamp, fx: SideEffects) -> StoreResult<bool>;
}
