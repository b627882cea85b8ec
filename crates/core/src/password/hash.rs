//! Argon2id password hashing (R8, R17).
//!
//! Hashing is CPU- and memory-hard on purpose (≈ 15–25 ms and 19 MiB per call at the default
//! parameters), so callers must run it on the bounded worker pool of the server, behind the
//! cheap checks, never on the request path directly (F10).

use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use serde::{Deserialize, Serialize};

use super::Password;
use crate::rng::SecureRng;

/// Argon2id cost parameters. The floor is OWASP's m = 19456 KiB, t = 2, p = 1 (R8); the
/// server refuses to start with weaker ones (except the documented test profile).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl HashParams {
    /// OWASP / ASVS minimum: m = 19456 KiB, t = 2, p = 1.
    pub const MINIMUM: HashParams = HashParams { m_kib: 19_456, t: 2, p: 1 };

    /// Whether these parameters meet [`HashParams::MINIMUM`] (or an equivalent OWASP
    /// profile: m = 47104/t = 1, m = 12288/t = 3, …, which all cost at least m·t ≈ 38 MiB-passes).
    pub fn meets_minimum(&self) -> bool {
        let work = u64::from(self.m_kib) * u64::from(self.t);
        self.p >= 1 && self.m_kib >= 7168 && work >= 36_864
    }

    /// Whether a hash made with `self` is weaker than one made with `target` in any dimension.
    pub fn is_weaker_than(&self, target: &HashParams) -> bool {
        self.m_kib < target.m_kib || self.t < target.t || self.p < target.p
    }
}

impl Default for HashParams {
    fn default() -> Self {
        Self::MINIMUM
    }
}

/// A PHC-format Argon2id hash string, e.g. `$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PasswordHashString(String);

impl PasswordHashString {
    /// Wraps a stored hash string.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The PHC text, for storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The parameters recorded in the string, if it parses.
    pub fn params(&self) -> Option<HashParams> {
        let phc = argon2::PasswordHash::new(&self.0).ok()?;
        let p = Params::try_from(&phc).ok()?;
        Some(HashParams { m_kib: p.m_cost(), t: p.t_cost(), p: p.p_cost() })
    }
}

impl std::fmt::Debug for PasswordHashString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not a secret in the sense of a token, but an offline-crackable verifier: keep it out
        // of logs anyway.
        f.write_str("PasswordHashString([REDACTED])")
    }
}

/// Result of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verification {
    /// The password matches. `needs_rehash` is set when the stored parameters are weaker than
    /// the configured ones: the caller should store a fresh hash now that it has the password.
    Match {
        /// Rehash and store on this login.
        needs_rehash: bool,
    },
    /// The password does not match (or the stored string is unusable: fail closed).
    Mismatch,
}

/// Hashes and verifies passwords with fixed, configured parameters.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: HashParams,
    dummy: PasswordHashString,
}

/// Errors from hashing.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// Parameters Argon2 itself rejects.
    #[error("invalid argon2 parameters")]
    Params,
    /// Hashing failed.
    #[error("argon2 failure")]
    Argon2,
}

impl PasswordHasher {
    /// A hasher for `params`. Computes the dummy hash used for unknown users once, here.
    pub fn new(params: HashParams, rng: &dyn SecureRng) -> Result<Self, HashError> {
        let mut this = Self { params, dummy: PasswordHashString(String::new()) };
        let throwaway = Password::new("dummy-password-for-timing-parity").map_err(|_| HashError::Params)?;
        this.dummy = this.hash(&throwaway, rng)?;
        Ok(this)
    }

    /// The configured parameters.
    pub fn params(&self) -> HashParams {
        self.params
    }

    fn argon2(&self) -> Result<Argon2<'static>, HashError> {
        let params =
            Params::new(self.params.m_kib, self.params.t, self.params.p, None).map_err(|_| HashError::Params)?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Hashes `password` with a fresh 128-bit salt from `rng`.
    pub fn hash(&self, password: &Password, rng: &dyn SecureRng) -> Result<PasswordHashString, HashError> {
        let salt = crate::rng::random_bytes::<16>(rng);
        let phc = self
            .argon2()?
            .hash_password_with_salt(password.expose().as_bytes(), &salt)
            .map_err(|_| HashError::Argon2)?;
        Ok(PasswordHashString(phc.to_string()))
    }

    /// Checks `password` against `stored`, using the parameters recorded in `stored`.
    pub fn verify(&self, password: &Password, stored: &PasswordHashString) -> Verification {
        let Ok(argon2) = self.argon2() else {
            return Verification::Mismatch;
        };
        match argon2.verify_password(password.expose().as_bytes(), stored.as_str()) {
            Ok(()) => {
                let needs_rehash = stored.params().is_none_or(|p| p.is_weaker_than(&self.params));
                Verification::Match { needs_rehash }
            }
            Err(_) => Verification::Mismatch,
        }
    }

    /// Spends the same work as [`verify`](Self::verify) against a hash no password matches,
    /// for unknown, locked and disabled accounts (R16, R17).
    pub fn verify_dummy(&self, password: &Password) {
        let _ = self.verify(password, &self.dummy);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;

    fn hasher(params: HashParams) -> PasswordHasher {
        match PasswordHasher::new(params, &SeededRng::new(9)) {
            Ok(h) => h,
            Err(e) => unreachable!("test hasher: {e}"),
        }
    }

    fn pw(s: &str) -> Password {
        Password::new(s).unwrap_or_else(|_| unreachable!())
    }

    #[test]
    fn stored_string_is_argon2id_with_the_configured_floor() {
        let h = hasher(HashParams::MINIMUM);
        let stored = h.hash(&pw("violet-tram-harbour"), &SeededRng::new(1)).ok();
        let stored = stored.as_ref().map(|s| s.as_str().to_owned()).unwrap_or_default();
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{stored}");
        // Salt: 16 bytes = 22 base64 characters without padding.
        let salt = stored.split('$').nth(4).unwrap_or("");
        assert_eq!(salt.len(), 22);
    }

    #[test]
    fn verify_matches_only_the_exact_normalised_password() {
        let h = hasher(HashParams::MINIMUM);
        let rng = SeededRng::new(2);
        let eighty: String = "abcdefghij-".chars().cycle().take(80).collect();
        let Ok(stored) = h.hash(&pw(&eighty), &rng) else { unreachable!() };
        assert_eq!(h.verify(&pw(&eighty), &stored), Verification::Match { needs_rehash: false });
        // No truncation: the first 72 characters are a different password (R4).
        let first72: String = eighty.chars().take(72).collect();
        assert_eq!(h.verify(&pw(&first72), &stored), Verification::Mismatch);
        // Emoji round-trip.
        let Ok(emoji) = h.hash(&pw("🦀🐙🌵🍋🚲🎻🧭🪁🦉🍄🛶🧩"), &rng) else { unreachable!() };
        assert!(matches!(h.verify(&pw("🦀🐙🌵🍋🚲🎻🧭🪁🦉🍄🛶🧩"), &emoji), Verification::Match { .. }));
        // Garbage stored value: fail closed.
        let junk = PasswordHashString::from_stored("not-a-hash".into());
        assert_eq!(h.verify(&pw(&eighty), &junk), Verification::Mismatch);
    }

    #[test]
    fn stronger_configuration_asks_for_rehash() {
        let rng = SeededRng::new(3);
        let weak = hasher(HashParams { m_kib: 8, t: 1, p: 1 });
        let Ok(stored) = weak.hash(&pw("violet-tram-harbour"), &rng) else { unreachable!() };
        let strong = hasher(HashParams { m_kib: 16, t: 1, p: 1 });
        assert_eq!(strong.verify(&pw("violet-tram-harbour"), &stored), Verification::Match { needs_rehash: true });
        assert_eq!(weak.verify(&pw("violet-tram-harbour"), &stored), Verification::Match { needs_rehash: false });
    }

    #[test]
    fn minimum_profiles() {
        assert!(HashParams::MINIMUM.meets_minimum());
        assert!(HashParams { m_kib: 47_104, t: 1, p: 1 }.meets_minimum());
        assert!(HashParams { m_kib: 12_288, t: 3, p: 1 }.meets_minimum());
        assert!(!HashParams { m_kib: 8, t: 1, p: 1 }.meets_minimum());
    }

    #[test]
    fn rfc9106_argon2id_vector() {
        // RFC 9106 §5.3: m = 32 KiB, t = 3, p = 4, with secret and associated data.
        let Ok(params) = Params::new(32, 3, 4, Some(32)) else { unreachable!() };
        let secret = [3u8; 8];
        let Ok(a) = Argon2::new_with_secret(&secret, Algorithm::Argon2id, Version::V0x13, params) else {
            unreachable!()
        };
        // Associated data is a Params field in this crate.
        let Ok(ad) = argon2::AssociatedData::new(&[4u8; 12]) else { unreachable!() };
        let Ok(params) = argon2::ParamsBuilder::new().m_cost(32).t_cost(3).p_cost(4).data(ad).output_len(32).build()
        else {
            unreachable!()
        };
        let Ok(a2) = Argon2::new_with_secret(&secret, Algorithm::Argon2id, Version::V0x13, params) else {
            unreachable!()
        };
        let _ = a;
        let mut out = [0u8; 32];
        assert!(a2.hash_password_into(&[1u8; 32], &[2u8; 16], &mut out).is_ok());
        assert_eq!(hex::encode(out), "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659");
    }
}
