//! Secret values and high-entropy tokens.
//!
//! * [`SecretString`] / [`SecretBytes`] hold a secret in memory, print `[REDACTED]` in `Debug`
//!   and `Display`, and zero their buffer on drop (R93, F22). Reading one takes an explicit
//!   `expose()` so every read of a secret is visible in review.
//! * [`Token`] is a 256-bit random bearer value (session, refresh, access, reset, verification
//!   tokens; R42) in unpadded base64url. The server keeps only its [`TokenHash`] (SHA-256, R57),
//!   looks rows up by that hash and compares hashes in constant time (R90).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::rng::SecureRng;

/// A secret string. `Debug` and `Display` never show it.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretString(Zeroizing<String>);

impl SecretString {
    /// Wraps `s`.
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// The secret itself. Call only where the value is used, never to log or format it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

impl From<&str> for SecretString {
    fn from(s: &str) -> Self {
        Self::new(s.to_owned())
    }
}

impl std::fmt::Debug for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl std::fmt::Display for SecretString {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl<'de> serde::Deserialize<'de> for SecretString {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

/// Serialises as `"[REDACTED]"`: a secret can be part of a struct that is printed (the
/// effective configuration), never of one that is sent.
impl serde::Serialize for SecretString {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[REDACTED]")
    }
}

/// Secret bytes. `Debug` never shows them.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps `b`.
    pub fn new(b: Vec<u8>) -> Self {
        Self(Zeroizing::new(b))
    }

    /// The secret itself.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[REDACTED {} bytes]", self.0.len())
    }
}

/// Number of random bytes in a [`Token`]: 256 bits, twice the R42 floor.
pub const TOKEN_BYTES: usize = 32;

/// A freshly minted or presented bearer token, as text. Redacted in `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(SecretString);

impl Token {
    /// Mints a new token from `rng`.
    pub fn generate(rng: &dyn SecureRng) -> Self {
        let mut raw = Zeroizing::new([0u8; TOKEN_BYTES]);
        rng.fill(raw.as_mut());
        Self(SecretString::new(URL_SAFE_NO_PAD.encode(raw.as_ref())))
    }

    /// Accepts a presented token if it has the shape of one of ours (43 base64url characters).
    /// Anything else cannot match a stored hash, so it is refused before any lookup.
    pub fn parse(s: &str) -> Option<Self> {
        let ok = s.len() == 43 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| Self(SecretString::from(s)))
    }

    /// The token text, to hand to its holder exactly once.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The value the server stores and looks up.
    pub fn hash(&self) -> TokenHash {
        TokenHash(Sha256::digest(self.0.expose().as_bytes()).into())
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token([REDACTED])")
    }
}

/// SHA-256 of a [`Token`]; safe to store and to log in hex (it reveals nothing usable).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenHash([u8; 32]);

impl TokenHash {
    /// Rebuilds a hash read from storage.
    pub fn from_bytes(b: [u8; 32]) -> Self {
        Self(b)
    }

    /// Rebuilds a hash from a stored slice; `None` unless it is exactly 32 bytes.
    pub fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 32]>::try_from(b).ok().map(Self)
    }

    /// The raw digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Constant-time equality (R90): a lookup by hash is followed by this comparison so a
    /// database collation or index quirk can never turn into an accepted token.
    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Short hex prefix for logs and audit details.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TokenHash({}…)", self.short())
    }
}

/// Constant-time comparison of two byte strings of possibly different lengths.
/// Lengths are not secret here (all our MACs and hashes have public, fixed sizes).
pub fn ct_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Wipes a byte buffer (for buffers that are not wrapped in a secret type).
pub fn wipe(buf: &mut [u8]) {
    buf.zeroize();
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::SeededRng;
    use std::collections::HashSet;

    #[test]
    fn debug_and_display_redact() {
        let s = SecretString::from("hunter2-canary");
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert_eq!(format!("{s}"), "[REDACTED]");
        let t = Token::generate(&SeededRng::new(1));
        assert!(!format!("{t:?}").contains(t.expose()));
        let b = SecretBytes::new(b"canary".to_vec());
        assert!(!format!("{b:?}").contains("canary"));
        assert_eq!(serde_json::to_string(&s).ok().as_deref(), Some("\"[REDACTED]\""));
    }

    #[test]
    fn token_has_256_bits_and_round_trips_through_parse() {
        let t = Token::generate(&SeededRng::new(2));
        assert_eq!(t.expose().len(), 43);
        let decoded = URL_SAFE_NO_PAD.decode(t.expose()).unwrap_or_default();
        assert_eq!(decoded.len(), TOKEN_BYTES);
        let back = Token::parse(t.expose());
        assert_eq!(back.map(|b| b.hash()), Some(t.hash()));
    }

    #[test]
    fn malformed_tokens_are_refused_before_lookup() {
        for bad in ["", "short", &"a".repeat(44), &format!("{}!", "a".repeat(42))] {
            assert!(Token::parse(bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn many_tokens_never_collide() {
        let rng = crate::rng::OsRng;
        let set: HashSet<_> = (0..100_000).map(|_| *Token::generate(&rng).hash().as_bytes()).collect();
        assert_eq!(set.len(), 100_000);
    }

    #[test]
    fn hash_comparison_is_exact() {
        let rng = SeededRng::new(3);
        let a = Token::generate(&rng).hash();
        let b = Token::generate(&rng).hash();
        assert!(a.ct_eq(&a));
        assert!(!a.ct_eq(&b));
        assert!(ct_eq_bytes(b"abc", b"abc"));
        assert!(!ct_eq_bytes(b"abc", b"abd"));
        assert!(!ct_eq_bytes(b"abc", b"ab"));
    }
}
