//! Login throttling that cannot be turned into a lockout weapon (R12–R16, R20, F4, F10).
//!
//! Counters are keyed by the *normalised email*, not by account, so an unknown address is
//! throttled exactly like a known one: the answers reveal nothing about which addresses exist.
//! Two counters are kept, both in the shared store (all instances see them):
//!
//! * the **account counter** — every failure of any factor from anywhere (R13, R15);
//! * the **source counter** — failures for this email from one client (IP address, or device
//!   id when the client presents one).
//!
//! Each counter yields a progressive delay: the first [`ThrottlePolicy::free_failures`]
//! failures are free, then 30 s doubling up to 1 h (R13). A request must wait for the larger
//! of the two delays, except that a **trusted device** (one that has completed a full login to
//! this account before) is only subject to its own source counter: an attacker hammering an
//! account from elsewhere slows himself down, not the owner on her own laptop.
//!
//! After [`ThrottlePolicy::lock_after`] consecutive failures (100 for customers, 10 for staff:
//! R12, R20) the account is locked for [`ThrottlePolicy::lock_for`] (time-based unlock) and a
//! password reset also lifts it. A lock is never revealed: the login answer is the same
//! generic failure as a wrong password (R16). Only a fully successful login (every factor)
//! resets the counters (R14).

use serde::{Deserialize, Serialize};

use crate::clock::{Span, Timestamp};

/// Throttling parameters. Defaults are the R13 numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ThrottlePolicy {
    /// Failures allowed without any delay.
    pub free_failures: u32,
    /// Delay after the first failure beyond the free ones, in seconds; doubles per failure.
    pub base_delay_secs: i64,
    /// Largest delay, in seconds.
    pub max_delay_secs: i64,
    /// Consecutive failures that lock the account (customers).
    pub lock_after: u32,
    /// Consecutive failures that lock a staff account (R20: ≤ 10).
    pub admin_lock_after: u32,
    /// How long a lock lasts, in seconds (customers).
    pub lock_for_secs: i64,
    /// How long a staff lock lasts, in seconds (R20: ≥ 30 min).
    pub admin_lock_for_secs: i64,
}

impl Default for ThrottlePolicy {
    fn default() -> Self {
        Self {
            free_failures: 5,
            base_delay_secs: 30,
            max_delay_secs: 3600,
            lock_after: 100,
            admin_lock_after: 10,
            lock_for_secs: 24 * 3600,
            admin_lock_for_secs: 30 * 60,
        }
    }
}

/// One counter as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureCounter {
    /// Failures since the last full success.
    pub consecutive: u32,
    /// When the last failure happened.
    pub last_failure_at: Option<Timestamp>,
    /// Set when the lock threshold was crossed.
    pub locked_until: Option<Timestamp>,
}

/// What the throttle says about an attempt, before any password hashing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// Go ahead and check the credentials.
    Allow,
    /// Too soon after the last failure: answer 429 with `Retry-After`.
    Wait(Span),
    /// Locked: answer exactly as for a wrong password, without checking anything.
    Locked,
}

/// Thresholds for one account class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockRule {
    /// Consecutive failures that lock.
    pub after: u32,
    /// Lock duration.
    pub duration: Span,
}

impl ThrottlePolicy {
    /// A configuration whose numbers stay inside the standards' bounds; returns what is wrong.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.lock_after == 0 || self.lock_after > 100 {
            return Err("throttle.lock_after must be 1..=100 (NIST SP 800-63B §5.2.2)");
        }
        if self.admin_lock_after == 0 || self.admin_lock_after > 10 {
            return Err("throttle.admin_lock_after must be 1..=10 (PCI DSS 8.3.4)");
        }
        if self.admin_lock_for_secs < 30 * 60 {
            return Err("throttle.admin_lock_for_secs must be at least 1800 (PCI DSS 8.3.4)");
        }
        if self.base_delay_secs < 0 || self.max_delay_secs < self.base_delay_secs || self.lock_for_secs <= 0 {
            return Err("throttle delays must be non-negative and max_delay_secs >= base_delay_secs");
        }
        Ok(())
    }

    /// The lock rule for a customer or a staff account.
    pub fn lock_rule(&self, is_admin: bool) -> LockRule {
        if is_admin {
            LockRule { after: self.admin_lock_after, duration: Span::secs(self.admin_lock_for_secs) }
        } else {
            LockRule { after: self.lock_after, duration: Span::secs(self.lock_for_secs) }
        }
    }

    /// The wait imposed after `failures` consecutive failures.
    pub fn delay_after(&self, failures: u32) -> Span {
        if failures <= self.free_failures {
            return Span::ZERO;
        }
        let doublings = (failures - self.free_failures - 1).min(40);
        let secs = self.base_delay_secs.saturating_mul(1i64 << doublings).min(self.max_delay_secs);
        Span::secs(secs)
    }

    fn wait_for(&self, c: &FailureCounter, now: Timestamp) -> Span {
        let Some(last) = c.last_failure_at else {
            return Span::ZERO;
        };
        let ready_at = last.plus(self.delay_after(c.consecutive));
        if ready_at > now { ready_at.since(now) } else { Span::ZERO }
    }

    /// Decides whether an attempt may proceed to credential checking.
    pub fn decide(
        &self,
        account: &FailureCounter,
        source: &FailureCounter,
        trusted_device: bool,
        now: Timestamp,
    ) -> ThrottleDecision {
        if account.locked_until.is_some_and(|t| t > now) {
            return ThrottleDecision::Locked;
        }
        let mut wait = self.wait_for(source, now);
        if !trusted_device {
            wait = wait.max(self.wait_for(account, now));
        }
        if wait > Span::ZERO { ThrottleDecision::Wait(wait) } else { ThrottleDecision::Allow }
    }

    /// The counter after one more failure at `now`, applying `rule`. The store performs the
    /// same update atomically; this is its specification and its unit-tested form.
    pub fn after_failure(&self, c: &FailureCounter, rule: LockRule, now: Timestamp) -> FailureCounter {
        let consecutive = c.consecutive.saturating_add(1);
        let locked_until = if consecutive >= rule.after { Some(now.plus(rule.duration)) } else { c.locked_until };
        FailureCounter { consecutive, last_failure_at: Some(now), locked_until }
    }
}

/// Storage keys for the two counters. Emails are hashed so the throttle table holds no
/// addresses of people who never registered.
pub mod keys {
    use sha2::{Digest, Sha256};

    /// The account counter's key.
    pub fn account(email_normalised: &str) -> String {
        format!("acct:{}", hex::encode(Sha256::digest(email_normalised.as_bytes())))
    }

    /// The source counter's key: the email together with the client's IP or device id.
    pub fn source(email_normalised: &str, source: &str) -> String {
        let mut h = Sha256::new();
        h.update(email_normalised.as_bytes());
        h.update([0u8]);
        h.update(source.as_bytes());
        format!("src:{}", hex::encode(h.finalize()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

    #[test]
    fn delay_schedule_is_free_then_30s_doubling_to_an_hour() {
        let p = ThrottlePolicy::default();
        let secs: Vec<i64> = (0..=14).map(|n| p.delay_after(n).as_millis() / 1000).collect();
        assert_eq!(secs, vec![0, 0, 0, 0, 0, 0, 30, 60, 120, 240, 480, 960, 1920, 3600, 3600]);
        assert_eq!(p.delay_after(u32::MAX), Span::secs(3600));
    }

    #[test]
    fn sixth_failure_imposes_thirty_seconds() {
        let p = ThrottlePolicy::default();
        let rule = p.lock_rule(false);
        let mut c = FailureCounter::default();
        for i in 0..6 {
            c = p.after_failure(&c, rule, T0.plus(Span::secs(i)));
        }
        let at = T0.plus(Span::secs(5));
        assert_eq!(p.decide(&c, &FailureCounter::default(), false, at), ThrottleDecision::Wait(Span::secs(30)));
        assert_eq!(p.decide(&c, &FailureCounter::default(), false, at.plus(Span::secs(30))), ThrottleDecision::Allow);
        // The owner's trusted device is not slowed by the account counter…
        assert_eq!(p.decide(&c, &FailureCounter::default(), true, at), ThrottleDecision::Allow);
        // …but is by its own.
        assert_eq!(p.decide(&c, &c, true, at), ThrottleDecision::Wait(Span::secs(30)));
    }

    #[test]
    fn hundred_failures_lock_for_a_day_and_then_unlock() {
        let p = ThrottlePolicy::default();
        let rule = p.lock_rule(false);
        let mut c = FailureCounter::default();
        let mut now = T0;
        for _ in 0..99 {
            c = p.after_failure(&c, rule, now);
            now = now.plus(Span::hours(1));
        }
        assert_eq!(c.locked_until, None);
        c = p.after_failure(&c, rule, now);
        assert_eq!(c.locked_until, Some(now.plus(Span::hours(24))));
        let src = FailureCounter::default();
        assert_eq!(p.decide(&c, &src, true, now.plus(Span::hours(2))), ThrottleDecision::Locked);
        // Time-based unlock; the delay still applies (failures are still consecutive).
        let later = now.plus(Span::hours(24)).plus(Span::secs(1));
        assert_eq!(p.decide(&c, &src, false, later), ThrottleDecision::Allow);
    }

    #[test]
    fn staff_lock_after_ten_for_thirty_minutes() {
        let p = ThrottlePolicy::default();
        let rule = p.lock_rule(true);
        let mut c = FailureCounter::default();
        for i in 0..10 {
            c = p.after_failure(&c, rule, T0.plus(Span::hours(i)));
        }
        let last = T0.plus(Span::hours(9));
        assert_eq!(c.locked_until, Some(last.plus(Span::minutes(30))));
        let src = FailureCounter::default();
        assert_eq!(p.decide(&c, &src, false, last.plus(Span::minutes(29))), ThrottleDecision::Locked);
        assert_ne!(p.decide(&c, &src, false, last.plus(Span::minutes(31))), ThrottleDecision::Locked);
    }

    #[test]
    fn validation_keeps_the_standards_bounds() {
        assert!(ThrottlePolicy::default().validate().is_ok());
        assert!(ThrottlePolicy { lock_after: 101, ..Default::default() }.validate().is_err());
        assert!(ThrottlePolicy { admin_lock_after: 11, ..Default::default() }.validate().is_err());
        assert!(ThrottlePolicy { admin_lock_for_secs: 1799, ..Default::default() }.validate().is_err());
    }

    #[test]
    fn keys_do_not_contain_the_address() {
        let k = keys::account("alice@example.com");
        assert!(k.starts_with("acct:") && !k.contains("alice"));
        assert_ne!(keys::source("alice@example.com", "10.0.0.1"), keys::source("alice@example.com", "10.0.0.2"));
    }
}
