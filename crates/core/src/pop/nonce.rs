//! Stateless DPoP server nonces (RFC 9449 §8 and §9).
//!
//! A nonce is `base64url(HMAC-SHA-256(secret, "gatehouse-dpop-nonce-v1" ‖ bucket)[..16])`,
//! where `bucket = ⌊now / bucket length⌋`. Every instance holding the same secret issues and
//! accepts the same nonces, so no shared store is needed. A nonce is accepted in its own
//! bucket and the next one: between one and two bucket lengths after it was issued (5–10 min
//! by default).
//!
//! What it stops: a client whose clock was set ahead (or an attacker with brief access to the
//! client's key) pre-computing proofs for later use — the server's nonce cannot be predicted,
//! so a proof can be no older than the nonce it carries (RFC 9449 §11.2).
//!
//! Server contract: when a proof is refused with [`DpopError::NonceMissing`] or
//! [`DpopError::NonceInvalid`](super::DpopError::NonceInvalid), answer `use_dpop_nonce` with a
//! `DPoP-Nonce: nonce_for(now)` header (and send that header on successful responses too, so
//! clients roll over before their nonce ages out). Once a nonce was required for a client or
//! endpoint, keep requiring it: a proof without one is refused ([`NonceRule`]), never treated
//! as "nonces not in use" (no downgrade, R59).
//!
//! Clock skew (F5): an instance whose clock lags by `s` still sees the previous bucket for `s`
//! after a faster instance moved on, and refuses the newest nonce for that long; the client
//! gets `use_dpop_nonce` with the lagging instance's nonce, which every instance accepts, and
//! retries once. Skew up to the bucket length never locks a client out.
//!
//! [`DpopError::NonceMissing`]: super::DpopError::NonceMissing
//! [`NonceRule`]: super::NonceRule

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::{Choice, ConstantTimeEq as _};

use crate::clock::{Span, Timestamp};
use crate::secret::SecretBytes;

const DOMAIN: &[u8] = b"gatehouse-dpop-nonce-v1\0";
/// Bytes of HMAC output kept: 128 bits, 22 base64url characters.
const TAG_LEN: usize = 16;
const NONCE_LEN: usize = 22;

/// Why a nonce configuration was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NonceConfigError {
    /// The secret must be at least 32 bytes (256 bits).
    #[error("DPoP nonce secret must be at least 32 bytes")]
    ShortSecret,
    /// The bucket must be at least one second.
    #[error("DPoP nonce bucket must be at least 1 s")]
    Bucket,
}

/// Issues and checks stateless DPoP nonces; cheap to clone and share. The secret is absorbed
/// into a pre-keyed HMAC state and never printed.
#[derive(Clone)]
pub struct DpopNonces {
    mac: Hmac<Sha256>,
    bucket_ms: i64,
}

impl std::fmt::Debug for DpopNonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DpopNonces([REDACTED], bucket {} ms)", self.bucket_ms)
    }
}

impl DpopNonces {
    /// Default bucket length: nonces live 5 to 10 minutes.
    pub const DEFAULT_BUCKET: Span = Span::minutes(5);

    /// Nonces keyed by `secret` (≥ 32 bytes, shared by every instance) rotating every `bucket`.
    pub fn new(secret: &SecretBytes, bucket: Span) -> Result<Self, NonceConfigError> {
        if secret.expose().len() < 32 {
            return Err(NonceConfigError::ShortSecret);
        }
        if bucket < Span::secs(1) {
            return Err(NonceConfigError::Bucket);
        }
        let mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(secret.expose()).map_err(|_| NonceConfigError::ShortSecret)?;
        Ok(Self { mac, bucket_ms: bucket.as_millis() })
    }

    fn tag(&self, bucket: i64) -> [u8; TAG_LEN] {
        let mut mac = self.mac.clone();
        mac.update(DOMAIN);
        mac.update(&bucket.to_be_bytes());
        let full = mac.finalize().into_bytes();
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(&full[..TAG_LEN]);
        out
    }

    fn bucket(&self, now: Timestamp) -> i64 {
        now.as_millis().div_euclid(self.bucket_ms)
    }

    /// The nonce to send in `DPoP-Nonce` at `now`.
    pub fn nonce_for(&self, now: Timestamp) -> String {
        URL_SAFE_NO_PAD.encode(self.tag(self.bucket(now)))
    }

    /// Whether `nonce` was issued in the current or the previous bucket at `now`. Both
    /// candidates are always computed and compared in constant time.
    pub fn is_current(&self, nonce: &str, now: Timestamp) -> bool {
        let mut presented = [0u8; TAG_LEN + 1];
        let decoded =
            nonce.len() == NONCE_LEN && URL_SAFE_NO_PAD.decode_slice(nonce, &mut presented).is_ok_and(|n| n == TAG_LEN);
        let b = self.bucket(now);
        let presented = &presented[..TAG_LEN];
        let ok: Choice = presented.ct_eq(&self.tag(b)[..]) | presented.ct_eq(&self.tag(b.saturating_sub(1))[..]);
        decoded && bool::from(ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::testdata::must;

    const T0: Timestamp = Timestamp::from_millis(1_700_000_100_000);

    fn nonces(secret: u8) -> DpopNonces {
        must!(DpopNonces::new(&SecretBytes::new(vec![secret; 32]), DpopNonces::DEFAULT_BUCKET))
    }

    #[test]
    fn accepted_in_its_bucket_and_the_next_then_refused() {
        let n = nonces(1);
        let bucket = DpopNonces::DEFAULT_BUCKET.as_millis();
        let start = Timestamp::from_millis(T0.as_millis().div_euclid(bucket) * bucket);
        let nonce = n.nonce_for(start);
        assert_eq!(nonce.len(), 22);
        assert_eq!(n.nonce_for(start.plus(Span::millis(bucket - 1))), nonce);
        assert!(n.is_current(&nonce, start));
        assert!(n.is_current(&nonce, start.plus(Span::millis(2 * bucket - 1))));
        assert!(!n.is_current(&nonce, start.plus(Span::millis(2 * bucket))));
        assert!(!n.is_current(&nonce, start.minus(Span::millis(1))), "a nonce from the future bucket");
        assert_ne!(n.nonce_for(start.plus(Span::millis(bucket))), nonce);
    }

    #[test]
    fn instances_sharing_the_secret_agree_and_others_do_not() {
        let (a, b, other) = (nonces(1), nonces(1), nonces(2));
        let nonce = a.nonce_for(T0);
        assert!(b.is_current(&nonce, T0));
        assert!(!other.is_current(&nonce, T0));
        assert_eq!(a.nonce_for(T0), b.nonce_for(T0));
    }

    #[test]
    fn malformed_nonces_are_refused() {
        let n = nonces(1);
        let good = n.nonce_for(T0);
        for bad in
            ["", "x", &good[..21], &format!("{good}A"), &format!("{}=", &good[..21]), &format!("+{}", &good[1..])]
        {
            assert!(!n.is_current(bad, T0), "{bad:?}");
        }
        // The last character carries 4 unused bits: a non-canonical variant is refused.
        let mut chars: Vec<char> = good.chars().collect();
        let last = chars.len() - 1;
        chars[last] = if chars[last] == 'B' { 'C' } else { 'B' };
        let tweaked: String = chars.into_iter().collect();
        assert!(!n.is_current(&tweaked, T0));
    }

    #[test]
    fn weak_configuration_is_refused() {
        let short = SecretBytes::new(vec![1; 31]);
        assert_eq!(DpopNonces::new(&short, Span::minutes(5)).err(), Some(NonceConfigError::ShortSecret));
        let ok = SecretBytes::new(vec![1; 32]);
        assert_eq!(DpopNonces::new(&ok, Span::millis(999)).err(), Some(NonceConfigError::Bucket));
        assert!(!format!("{:?}", nonces(1)).contains("1, 1"));
    }
}
