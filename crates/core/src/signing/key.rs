//! Verification key material for signed API requests, prepared once per key so the
//! per-request work is only the cryptography itself.
//!
//! * **HMAC** (Upbit HS256/HS512, Binance HMAC-SHA256, RFC 9421 `hmac-sha256`): the secret is
//!   absorbed into pre-keyed `Hmac<Sha256>` and `Hmac<Sha512>` states at construction; a
//!   verification clones the state (no re-keying) and compares tags in constant time with
//!   `Mac::verify_slice`, which also refuses a tag of the wrong length — a truncated tag never
//!   verifies (Wycheproof truncated-tag groups, RFC 2104 §5). The states are key-equivalent
//!   secrets and are never printed. They are **not** wiped on drop yet: that needs the
//!   `zeroize` feature of `hmac` (and `sha2`), which this crate does not enable.
//! * **Ed25519** (Binance, RFC 9421 `ed25519`): the point is decompressed once; verification is
//!   `verify_strict` (RFC 8032 §5.1.7 plus rejection of small-order keys and `R`, and of
//!   non-canonical `S`), so malleated signatures and weak keys are refused (Wycheproof
//!   `SignatureMalleability`, `InvalidEncoding`). Weak (small-order) keys are refused at
//!   construction as well.
//! * **RSA** (Binance only): RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2), 2048–4096-bit
//!   moduli from an SPKI PEM. The signature must be exactly the modulus length.
//!
//! Attack stopped: algorithm confusion. A key only verifies the algorithms of its own kind
//! ([`SignatureAlg::key_kind`]); an HMAC secret can never be used as "the public key" of an
//! asymmetric check or the other way round, whatever the request claims.

use std::borrow::Cow;
use std::sync::OnceLock;

use ed25519_dalek::pkcs8::DecodePublicKey as _;
use hmac::{Hmac, KeyInit, Mac};
use rsa::signature::Verifier as _;
use rsa::traits::PublicKeyParts as _;
use sha2::{Sha256, Sha512};

use crate::secret::SecretBytes;

/// The kind of a key; each kind verifies only its own algorithms (the same kinds API keys
/// are created with).
pub use crate::apikey::KeyKind;

/// A signature algorithm a key can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SignatureAlg {
    /// HMAC-SHA-256, 32-byte tag (RFC 2104, FIPS 198-1).
    HmacSha256,
    /// HMAC-SHA-512, 64-byte tag.
    HmacSha512,
    /// Ed25519 (RFC 8032), 64-byte signature, strict verification.
    Ed25519,
    /// RSASSA-PKCS1-v1_5 with SHA-256 (RFC 8017 §8.2).
    RsaPkcs1v15Sha256,
}

impl SignatureAlg {
    /// The only key kind that may verify this algorithm.
    pub fn key_kind(self) -> KeyKind {
        match self {
            Self::HmacSha256 | Self::HmacSha512 => KeyKind::Hmac,
            Self::Ed25519 => KeyKind::Ed25519,
            Self::RsaPkcs1v15Sha256 => KeyKind::Rsa,
        }
    }
}

/// Why key material was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// An HMAC secret must not be empty.
    #[error("HMAC secret is empty")]
    EmptySecret,
    /// Not a valid Ed25519 public key (bad length, encoding or point).
    #[error("invalid Ed25519 public key")]
    InvalidEd25519,
    /// A small-order Ed25519 key, for which signatures can be forged.
    #[error("weak (small-order) Ed25519 public key")]
    WeakEd25519,
    /// Not a valid RSA public key in SPKI PEM form.
    #[error("invalid RSA public key")]
    InvalidRsa,
    /// RSA modulus outside 2048–4096 bits.
    #[error("RSA modulus must be 2048 to 4096 bits")]
    RsaSize,
}

/// Key material for one API key, ready to verify requests.
#[derive(Clone)]
pub enum VerifyKey {
    /// A shared secret (boxed: the two pre-keyed states are ~430 bytes).
    Hmac(Box<HmacKey>),
    /// An Ed25519 public key.
    Ed25519(Ed25519Key),
    /// An RSA public key.
    Rsa(RsaKey),
}

/// Pre-keyed HMAC states for one secret; never printed (see the module docs on zeroing).
#[derive(Clone)]
pub struct HmacKey {
    sha256: Hmac<Sha256>,
    sha512: Hmac<Sha512>,
}

/// A decompressed, non-weak Ed25519 public key.
#[derive(Clone, Debug)]
pub struct Ed25519Key(ed25519_dalek::VerifyingKey);

/// An RSA public key for PKCS#1 v1.5 / SHA-256 verification.
#[derive(Clone, Debug)]
pub struct RsaKey {
    key: rsa::pkcs1v15::VerifyingKey<Sha256>,
    modulus_len: usize,
}

impl std::fmt::Debug for VerifyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hmac(_) => f.write_str("VerifyKey::Hmac([REDACTED])"),
            Self::Ed25519(k) => write!(f, "VerifyKey::Ed25519({})", hex::encode(k.0.as_bytes())),
            Self::Rsa(k) => write!(f, "VerifyKey::Rsa({} bits)", k.modulus_len * 8),
        }
    }
}

impl VerifyKey {
    /// An HMAC key from a secret (the raw secret bytes, e.g. the UTF-8 of an Upbit secret key
    /// string, which is not base64-decoded: exchange-auth.md §0). Issuance enforces the
    /// ≥ 256-bit rule of R63; verification accepts any non-empty secret so imported and test
    /// keys work.
    pub fn hmac(secret: &SecretBytes) -> Result<Self, KeyError> {
        Self::hmac_from_bytes(secret.expose())
    }

    /// As [`VerifyKey::hmac`], from a plain slice (wipe it after use).
    pub fn hmac_from_bytes(secret: &[u8]) -> Result<Self, KeyError> {
        if secret.is_empty() {
            return Err(KeyError::EmptySecret);
        }
        let sha256 = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).map_err(|_| KeyError::EmptySecret)?;
        let sha512 = <Hmac<Sha512> as KeyInit>::new_from_slice(secret).map_err(|_| KeyError::EmptySecret)?;
        Ok(Self::Hmac(Box::new(HmacKey { sha256, sha512 })))
    }

    /// An Ed25519 key from its 32-byte encoding (RFC 8032 §5.1.5).
    pub fn ed25519_from_bytes(public_key: &[u8]) -> Result<Self, KeyError> {
        let bytes: &[u8; 32] = public_key.try_into().map_err(|_| KeyError::InvalidEd25519)?;
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes).map_err(|_| KeyError::InvalidEd25519)?;
        if key.is_weak() {
            return Err(KeyError::WeakEd25519);
        }
        Ok(Self::Ed25519(Ed25519Key(key)))
    }

    /// An Ed25519 key from an SPKI PEM (`-----BEGIN PUBLIC KEY-----`), the form Binance
    /// users register.
    pub fn ed25519_from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_public_key_pem(pem).map_err(|_| KeyError::InvalidEd25519)?;
        Self::ed25519_from_bytes(key.as_bytes())
    }

    /// An RSA key from an SPKI PEM (`-----BEGIN PUBLIC KEY-----`; PKCS#8 form only, as
    /// Binance requires), 2048 to 4096 bits.
    pub fn rsa_from_pem(pem: &str) -> Result<Self, KeyError> {
        let key = rsa::RsaPublicKey::from_public_key_pem(pem).map_err(|_| KeyError::InvalidRsa)?;
        let modulus_len = key.size();
        if !(256..=512).contains(&modulus_len) {
            return Err(KeyError::RsaSize);
        }
        Ok(Self::Rsa(RsaKey { key: rsa::pkcs1v15::VerifyingKey::new(key), modulus_len }))
    }

    /// An Ed25519 or RSA key from an SPKI PEM, whichever it is.
    pub fn from_public_pem(pem: &str) -> Result<Self, KeyError> {
        Self::ed25519_from_pem(pem).or_else(|_| Self::rsa_from_pem(pem))
    }

    /// The kind of this key.
    pub fn kind(&self) -> KeyKind {
        match self {
            Self::Hmac(_) => KeyKind::Hmac,
            Self::Ed25519(_) => KeyKind::Ed25519,
            Self::Rsa(_) => KeyKind::Rsa,
        }
    }

    /// Whether `signature` is a valid `alg` signature (or tag) of `message` under this key.
    /// `false` when `alg` does not belong to this key's kind.
    pub fn verify_signature(&self, alg: SignatureAlg, message: &[u8], signature: &[u8]) -> bool {
        self.verify_parts(alg, &[message], signature)
    }

    /// As [`VerifyKey::verify_signature`] for a message given as consecutive parts (Binance's
    /// query ++ body) without copying it for HMAC.
    pub(crate) fn verify_parts(&self, alg: SignatureAlg, parts: &[&[u8]], signature: &[u8]) -> bool {
        match (self, alg) {
            (Self::Hmac(k), SignatureAlg::HmacSha256) => {
                let mut mac = k.sha256.clone();
                parts.iter().for_each(|p| mac.update(p));
                mac.verify_slice(signature).is_ok()
            }
            (Self::Hmac(k), SignatureAlg::HmacSha512) => {
                let mut mac = k.sha512.clone();
                parts.iter().for_each(|p| mac.update(p));
                mac.verify_slice(signature).is_ok()
            }
            (Self::Ed25519(k), SignatureAlg::Ed25519) => {
                let Ok(sig) = ed25519_dalek::Signature::from_slice(signature) else {
                    return false;
                };
                k.0.verify_strict(&joined(parts), &sig).is_ok()
            }
            (Self::Rsa(k), SignatureAlg::RsaPkcs1v15Sha256) => {
                if signature.len() != k.modulus_len {
                    return false;
                }
                let Ok(sig) = rsa::pkcs1v15::Signature::try_from(signature) else {
                    return false;
                };
                k.key.verify(&joined(parts), &sig).is_ok()
            }
            _ => false,
        }
    }
}

fn joined<'a>(parts: &[&'a [u8]]) -> Cow<'a, [u8]> {
    match parts {
        [] => Cow::Borrowed(&[]),
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.concat()),
    }
}

const DUMMY_HMAC_SECRET: &[u8] = b"gatehouse/unknown-key/dummy-hmac-secret";

/// RFC 8032 §7.1 TEST 1 public key.
const DUMMY_ED25519: [u8; 32] = [
    0xd7, 0x5a, 0x98, 0x01, 0x82, 0xb1, 0x0a, 0xb7, 0xd5, 0x4b, 0xfe, 0xd3, 0xc9, 0x64, 0x07, 0x3a, 0x0e, 0xe1, 0x72,
    0xf3, 0xda, 0xa6, 0x23, 0x25, 0xaf, 0x02, 0x1a, 0x68, 0xf7, 0x07, 0x51, 0x1a,
];

/// A fixed HMAC key used to spend the same work on a request for an unknown key as on one for
/// a known key with a bad signature (R68), so response timing does not reveal which key ids
/// exist. (Always `Some`; an `Option` only because construction is fallible in general.)
pub(crate) fn dummy_hmac() -> Option<&'static VerifyKey> {
    static KEY: OnceLock<Option<VerifyKey>> = OnceLock::new();
    KEY.get_or_init(|| VerifyKey::hmac_from_bytes(DUMMY_HMAC_SECRET).ok()).as_ref()
}

/// A fixed Ed25519 key for the same purpose as [`dummy_hmac`].
pub(crate) fn dummy_ed25519() -> Option<&'static VerifyKey> {
    static KEY: OnceLock<Option<VerifyKey>> = OnceLock::new();
    KEY.get_or_init(|| VerifyKey::ed25519_from_bytes(&DUMMY_ED25519).ok()).as_ref()
}

#[cfg(test)]
mod tests;
