//! Passwords: what we accept and how we store them.
//!
//! * **Policy** ([`policy`]): 12–128 Unicode code points after NFKC normalisation (R1, R2, R5),
//!   no composition rules and no expiry (R3), no truncation (R4), rejection of breached,
//!   repetitive and context-specific passwords with the reason shown (R6, R7). Input longer
//!   than [`MAX_PASSWORD_BYTES`] is refused before any normalisation or hashing (R2).
//! * **Storage** ([`hash`]): Argon2id, m = 19456 KiB, t = 2, p = 1 at least (R8), a 128-bit
//!   salt from the injected RNG, PHC strings so parameters travel with the hash, rehash on
//!   login when the configured parameters are stronger, and a dummy hash for unknown users so
//!   timing does not reveal whether an account exists (R17).
//!
//! Normalisation is applied identically when a password is set and when it is checked: both
//! paths go through [`Password::new`]. NFKC is the one deliberate exception to "verify exactly as
//! received" (ASVS 5 6.2.8): it makes `é` typed as U+00E9 and as `e` + U+0301 the same password.

pub mod hash;
pub mod policy;

use unicode_normalization::UnicodeNormalization;

use crate::secret::SecretString;

pub use hash::{HashParams, PasswordHashString, PasswordHasher};
pub use policy::{PasswordPolicy, PasswordRejection};

/// The largest password input, in bytes, that gatehouse will look at. Longer input is refused
/// before normalisation or hashing so it cannot cost CPU (R2; Django's long-password DoS).
pub const MAX_PASSWORD_BYTES: usize = 4096;

/// A password as the user typed it, NFKC-normalised. Redacted in `Debug`.
#[derive(Clone, Debug)]
pub struct Password(SecretString);

/// Why raw password input could not even be considered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordInputError {
    /// More than [`MAX_PASSWORD_BYTES`] bytes.
    #[error("password input too large")]
    TooLarge,
}

impl Password {
    /// Normalises `raw` (NFKC). Refuses oversized input without normalising it.
    pub fn new(raw: &str) -> Result<Self, PasswordInputError> {
        if raw.len() > MAX_PASSWORD_BYTES {
            return Err(PasswordInputError::TooLarge);
        }
        Ok(Self(SecretString::new(raw.nfkc().collect())))
    }

    /// The normalised password.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// Length in Unicode code points (R4: each code point counts as one character).
    pub fn code_points(&self) -> usize {
        self.0.expose().chars().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfkc_makes_composed_and_decomposed_forms_equal() {
        let composed = Password::new("caf\u{e9}-horse-battery").map(|p| p.expose().to_owned());
        let decomposed = Password::new("cafe\u{301}-horse-battery").map(|p| p.expose().to_owned());
        assert_eq!(composed, decomposed);
        let upper = Password::new("CAF\u{c9}-horse-battery").map(|p| p.expose().to_owned());
        assert_ne!(composed, upper);
    }

    #[test]
    fn oversized_input_is_refused_before_normalising() {
        let big = "a".repeat(MAX_PASSWORD_BYTES + 1);
        assert_eq!(Password::new(&big).err(), Some(PasswordInputError::TooLarge));
        assert!(Password::new(&"a".repeat(MAX_PASSWORD_BYTES)).is_ok());
    }
}
