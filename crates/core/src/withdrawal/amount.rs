//! Decimal amounts as integer base units (10^-8), parsed strictly.

use std::fmt;

/// Fractional digits kept (satoshi precision).
pub const DECIMALS: u32 = 8;
const SCALE: i64 = 100_000_000;
/// Largest amount accepted, in whole units (keeps sums far from `i64::MAX`).
const MAX_WHOLE: i64 = 90_000_000_000;

/// Why an amount was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// Not a plain positive decimal (`12.5`), too many decimals, zero, or too large.
    #[error("the amount must be a positive decimal with at most 8 decimals")]
    Invalid,
}

/// A positive amount in base units.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i64);

impl Amount {
    /// Parses `"12"`, `"0.5"`, `"1.23456789"`. Refuses signs, exponents, spaces, empty
    /// parts (`".5"`, `"5."`), leading zeros beyond one, more than 8 decimals, zero, and
    /// anything above 9·10^10.
    pub fn parse(raw: &str) -> Result<Self, AmountError> {
        if raw.is_empty() || raw.len() > 24 {
            return Err(AmountError::Invalid);
        }
        let (whole, frac) = match raw.split_once('.') {
            Some((w, f)) => (w, Some(f)),
            None => (raw, None),
        };
        let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        if !digits(whole) || (whole.len() > 1 && whole.starts_with('0')) {
            return Err(AmountError::Invalid);
        }
        let whole: i64 = whole.parse().map_err(|_| AmountError::Invalid)?;
        if whole > MAX_WHOLE {
            return Err(AmountError::Invalid);
        }
        let mut units = whole * SCALE;
        if let Some(f) = frac {
            if !digits(f) || f.len() > DECIMALS as usize {
                return Err(AmountError::Invalid);
            }
            let padded = format!("{f:0<8}");
            units += padded.parse::<i64>().map_err(|_| AmountError::Invalid)?;
        }
        if units <= 0 || units > MAX_WHOLE * SCALE {
            return Err(AmountError::Invalid);
        }
        Ok(Self(units))
    }

    /// From stored base units.
    pub fn from_units(units: i64) -> Option<Self> {
        (units > 0 && units <= MAX_WHOLE * SCALE).then_some(Self(units))
    }

    /// Base units.
    pub fn units(self) -> i64 {
        self.0
    }
}

impl fmt::Display for Amount {
    /// The canonical form: no trailing fractional zeros, no trailing dot.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / SCALE;
        let frac = self.0 % SCALE;
        if frac == 0 {
            write!(f, "{whole}")
        } else {
            let s = format!("{frac:08}");
            write!(f, "{whole}.{}", s.trim_end_matches('0'))
        }
    }
}
