//! Time as an input.
//!
//! Security rules in gatehouse are functions of `now`: token expiry, throttling delays, TOTP steps,
//! replay windows. No code in `core` reads the system clock; callers pass a [`Timestamp`] taken
//! from a [`Clock`] once per decision, so one decision never mixes two instants and every rule can
//! be tested at an exact instant with [`ManualClock`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// An instant, in milliseconds since the Unix epoch (UTC).
///
/// Milliseconds are the finest unit any rule needs (Binance timestamps are milliseconds) and an
/// `i64` covers ±292 million years, so arithmetic here never needs to consider overflow in
/// practice; it still saturates rather than wrapping.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `ms` milliseconds after the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        Self(ms)
    }

    /// The instant `s` seconds after the epoch.
    pub const fn from_secs(s: i64) -> Self {
        Self(s.saturating_mul(1000))
    }

    /// Milliseconds since the epoch.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Whole seconds since the epoch (rounded towards negative infinity).
    pub const fn as_secs(self) -> i64 {
        self.0.div_euclid(1000)
    }

    /// This instant moved forward by `d` (saturating).
    pub const fn plus(self, d: Span) -> Self {
        Self(self.0.saturating_add(d.0))
    }

    /// This instant moved back by `d` (saturating).
    pub const fn minus(self, d: Span) -> Self {
        Self(self.0.saturating_sub(d.0))
    }

    /// The span from `earlier` to `self` (negative when `earlier` is later).
    pub const fn since(self, earlier: Timestamp) -> Span {
        Span(self.0.saturating_sub(earlier.0))
    }

    /// RFC 3339 text in UTC with a `Z` suffix and millisecond precision, as used in API bodies
    /// and audit records.
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000_000;
        match time::OffsetDateTime::from_unix_timestamp_nanos(nanos) {
            Ok(t) => {
                let fmt = time::macros::format_description!(
                    "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
                );
                t.format(&fmt).unwrap_or_else(|_| self.0.to_string())
            }
            Err(_) => self.0.to_string(),
        }
    }
}

/// A signed duration in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Span(i64);

impl Span {
    /// Zero length.
    pub const ZERO: Span = Span(0);

    /// `ms` milliseconds.
    pub const fn millis(ms: i64) -> Self {
        Self(ms)
    }

    /// `s` seconds.
    pub const fn secs(s: i64) -> Self {
        Self(s.saturating_mul(1000))
    }

    /// `m` minutes.
    pub const fn minutes(m: i64) -> Self {
        Self::secs(m.saturating_mul(60))
    }

    /// `h` hours.
    pub const fn hours(h: i64) -> Self {
        Self::minutes(h.saturating_mul(60))
    }

    /// `d` days.
    pub const fn days(d: i64) -> Self {
        Self::hours(d.saturating_mul(24))
    }

    /// Length in milliseconds.
    pub const fn as_millis(self) -> i64 {
        self.0
    }

    /// Length in whole seconds, rounded up, as used for `Retry-After`.
    pub const fn as_secs_ceil(self) -> i64 {
        let s = self.0.div_euclid(1000);
        if self.0.rem_euclid(1000) == 0 { s } else { s + 1 }
    }
}

/// A source of the current time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current instant.
    fn now(&self) -> Timestamp;
}

/// The operating system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        let ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Timestamp(ms)
    }
}

/// A clock that only moves when told to; shared between clones. For tests and for the
/// `--fake-clock` test hook of the server.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    /// A clock stopped at `at`.
    pub fn new(at: Timestamp) -> Self {
        Self(Arc::new(AtomicI64::new(at.as_millis())))
    }

    /// Moves the clock forward (or back, with a negative span).
    pub fn advance(&self, by: Span) {
        self.0.fetch_add(by.as_millis(), Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.as_millis(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp(self.0.load(Ordering::SeqCst))
    }
}

/// The system clock shifted by an offset that can be changed at run time: time keeps flowing
/// (clients signing with their own wall clock stay in step), and tests can still jump ahead to
/// an exact later instant. Used by the server's `testing.danger_manual_clock` switch.
#[derive(Debug, Clone, Default)]
pub struct AdjustableClock(Arc<AtomicI64>);

impl AdjustableClock {
    /// The system clock, unshifted.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward (or back, with a negative span).
    pub fn advance(&self, by: Span) {
        self.0.fetch_add(by.as_millis(), Ordering::SeqCst);
    }

    /// Jumps to `at` (time keeps flowing from there).
    pub fn set(&self, at: Timestamp) {
        self.0.store(at.since(SystemClock.now()).as_millis(), Ordering::SeqCst);
    }
}

impl Clock for AdjustableClock {
    fn now(&self) -> Timestamp {
        SystemClock.now().plus(Span::millis(self.0.load(Ordering::SeqCst)))
    }
}

/// A clock offset from another by a fixed span: models an instance whose clock is skewed
/// (fault scenario F5).
#[derive(Debug, Clone)]
pub struct OffsetClock<C> {
    inner: C,
    offset: Span,
}

impl<C: Clock> OffsetClock<C> {
    /// `inner` shifted by `offset`.
    pub fn new(inner: C, offset: Span) -> Self {
        Self { inner, offset }
    }
}

impl<C: Clock> Clock for OffsetClock<C> {
    fn now(&self) -> Timestamp {
        self.inner.now().plus(self.offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_is_utc_with_millis() {
        assert_eq!(Timestamp::from_millis(0).to_rfc3339(), "1970-01-01T00:00:00.000Z");
        assert_eq!(Timestamp::from_millis(1_700_000_000_123).to_rfc3339(), "2023-11-14T22:13:20.123Z");
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(Span::millis(1).as_secs_ceil(), 1);
        assert_eq!(Span::millis(1000).as_secs_ceil(), 1);
        assert_eq!(Span::millis(1001).as_secs_ceil(), 2);
        assert_eq!(Span::ZERO.as_secs_ceil(), 0);
    }

    #[test]
    fn adjustable_clock_jumps_and_keeps_flowing() {
        let c = AdjustableClock::new();
        let before = SystemClock.now();
        c.advance(Span::hours(2));
        let shifted = c.now();
        assert!(shifted.since(before) >= Span::hours(2));
        assert!(shifted.since(before) < Span::millis(Span::hours(2).as_millis() + 5_000));
        c.set(Timestamp::from_secs(1_000));
        assert!(c.now().since(Timestamp::from_secs(1_000)) < Span::secs(5));
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(Timestamp::from_secs(100));
        let shared = c.clone();
        assert_eq!(c.now(), Timestamp::from_secs(100));
        shared.advance(Span::secs(5));
        assert_eq!(c.now(), Timestamp::from_secs(105));
        let skewed = OffsetClock::new(c.clone(), Span::secs(-2));
        assert_eq!(skewed.now(), Timestamp::from_secs(103));
    }
}
