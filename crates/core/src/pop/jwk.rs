//! Public JSON Web Keys (RFC 7517) for proof of possession, and their RFC 7638 thumbprints.
//!
//! Accepted: EC P-256 (`{"kty":"EC","crv":"P-256","x","y"}`, RFC 7518 §6.2) for `ES256`, and
//! OKP Ed25519 (`{"kty":"OKP","crv":"Ed25519","x"}`, RFC 8037 §2) for `EdDSA`. Nothing else:
//! RSA, `oct`, other curves.
//!
//! Refused, because each is how a JOSE library has been fooled before:
//! * **Private material** — `d`, and for completeness `p`, `q`, `dp`, `dq`, `qi`, `oth` (RSA)
//!   and `k` (symmetric) — even when `null`. A DPoP `jwk` with a private part means the client
//!   leaked its key (RFC 9449 §4.3 check 7); a symmetric `k` is how HMAC/public-key confusion
//!   starts.
//! * Coordinates that are not canonical unpadded base64url of exactly 32 bytes (RFC 7518
//!   §6.2.1.2 requires the full length), P-256 points not on the curve (invalid-curve attacks),
//!   the point at infinity, non-canonical and small-order Ed25519 points (forgeable keys).
//! * A `use` other than `sig`, `key_ops` without `verify`, an `alg` member that does not name
//!   this key's algorithm (Wycheproof `json_web_key_test.json`), and duplicate members.
//!
//! The thumbprint (RFC 7638 §3) is SHA-256 over the required members in lexicographic order
//! without whitespace — `{"crv","kty","x","y"}` or `{"crv","kty","x"}` — base64url-encoded.
//! Coordinates are stored as bytes and re-encoded; since only canonical base64url is accepted,
//! the re-encoding is the received text and every key has exactly one thumbprint.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Verifier as _;
use serde::{Deserialize, Deserializer, Serialize};
use subtle::ConstantTimeEq as _;

use super::{b64url_sha256, is_b64url_sha256};

/// A JWS signature algorithm gatehouse verifies for proofs of possession. Only asymmetric
/// algorithms exist here: there is no way to name `none` or an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum JwsAlg {
    /// ECDSA P-256 with SHA-256, signature `r ‖ s` (64 bytes, RFC 7518 §3.4).
    #[serde(rename = "ES256")]
    Es256,
    /// Ed25519 (RFC 8037 §3.1), strict verification.
    #[serde(rename = "EdDSA")]
    EdDsa,
}

impl JwsAlg {
    /// The `alg` header value (case-sensitive, RFC 7515 §4.1.1).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
        }
    }

    /// The algorithm an `alg` value names, if it is one of ours (`none`, `HS256`, `RS256`,
    /// `ES384`, `Ed25519`… are all `None`).
    pub fn from_header(alg: &str) -> Option<Self> {
        match alg {
            "ES256" => Some(Self::Es256),
            "EdDSA" => Some(Self::EdDsa),
            _ => None,
        }
    }
}

/// Why a JWK was refused. Codes are stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JwkError {
    /// Not a JSON object, a member of the wrong type, or a duplicate member.
    #[error("jwk is not a well-formed JSON object")]
    Syntax,
    /// A private key member (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`) or a symmetric key (`k`).
    #[error("jwk contains private key member {0:?}")]
    PrivateMember(&'static str),
    /// `kty` is missing or not `EC`/`OKP`.
    #[error("unsupported jwk kty")]
    UnsupportedKty,
    /// `crv` is missing or not `P-256` (EC) / `Ed25519` (OKP).
    #[error("unsupported jwk crv")]
    UnsupportedCurve,
    /// A required coordinate is missing.
    #[error("jwk member {0:?} is missing")]
    MissingMember(&'static str),
    /// A coordinate is not canonical unpadded base64url of exactly 32 bytes.
    #[error("jwk member {0:?} is not 32 bytes of canonical base64url")]
    BadCoordinate(&'static str),
    /// The P-256 point is not on the curve (or is the identity), or the Ed25519 encoding is not
    /// a canonical point.
    #[error("jwk is not a valid curve point")]
    InvalidPoint,
    /// A small-order Ed25519 key, for which signatures can be forged.
    #[error("weak (small-order) Ed25519 key")]
    WeakKey,
    /// `use` is not `sig`, or `key_ops` lacks `verify`.
    #[error("jwk is not a signature verification key")]
    WrongUse,
    /// The `alg` member names another algorithm than this key's.
    #[error("jwk alg does not match its key type")]
    AlgMismatch,
}

impl JwkError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Syntax => "jwk_syntax",
            Self::PrivateMember(_) => "jwk_private_member",
            Self::UnsupportedKty => "jwk_unsupported_kty",
            Self::UnsupportedCurve => "jwk_unsupported_crv",
            Self::MissingMember(_) => "jwk_missing_member",
            Self::BadCoordinate(_) => "jwk_bad_coordinate",
            Self::InvalidPoint => "jwk_invalid_point",
            Self::WeakKey => "jwk_weak_key",
            Self::WrongUse => "jwk_wrong_use",
            Self::AlgMismatch => "jwk_alg_mismatch",
        }
    }
}

/// An RFC 7638 JWK SHA-256 thumbprint (the `jkt` of RFC 9449 §6.1): 43 characters of
/// base64url. Compared in constant time.
#[derive(Clone, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Jkt(String);

impl Jkt {
    /// A thumbprint from its text, if it has the shape of one (43 canonical base64url
    /// characters encoding 32 bytes).
    pub fn parse(s: &str) -> Option<Self> {
        is_b64url_sha256(s).then(|| Self(s.to_owned()))
    }

    /// The base64url text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Constant-time comparison with a thumbprint's text (e.g. a token's `cnf.jkt`).
    pub fn ct_eq_str(&self, other: &str) -> bool {
        self.0.len() == other.len() && bool::from(self.0.as_bytes().ct_eq(other.as_bytes()))
    }
}

impl PartialEq for Jkt {
    fn eq(&self, other: &Self) -> bool {
        self.ct_eq_str(&other.0)
    }
}

// Equal values have equal bytes, so hashing the bytes agrees with the constant-time `eq`.
impl std::hash::Hash for Jkt {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl std::fmt::Debug for Jkt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Jkt({})", self.0)
    }
}

impl std::fmt::Display for Jkt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Jkt {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if is_b64url_sha256(&s) { Ok(Self(s)) } else { Err("not a SHA-256 JWK thumbprint") }
    }
}

impl From<Jkt> for String {
    fn from(j: Jkt) -> Self {
        j.0
    }
}

/// A validated public key from a JWK, ready to verify signatures.
#[derive(Clone)]
pub struct PublicJwk(Inner);

#[derive(Clone)]
enum Inner {
    P256 { key: p256::ecdsa::VerifyingKey, x: [u8; 32], y: [u8; 32] },
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl std::fmt::Debug for PublicJwk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicJwk({})", self.canonical_json())
    }
}

/// The members of a JWK as received; unknown members are ignored, duplicates of these refused.
#[derive(Deserialize)]
pub(crate) struct RawJwk<'a> {
    #[serde(borrow, default)]
    kty: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    crv: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    x: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    y: Option<Cow<'a, str>>,
    #[serde(borrow, default, rename = "use")]
    use_: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    key_ops: Option<Vec<Cow<'a, str>>>,
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(default, deserialize_with = "present")]
    d: bool,
    #[serde(default, deserialize_with = "present")]
    p: bool,
    #[serde(default, deserialize_with = "present")]
    q: bool,
    #[serde(default, deserialize_with = "present")]
    dp: bool,
    #[serde(default, deserialize_with = "present")]
    dq: bool,
    #[serde(default, deserialize_with = "present")]
    qi: bool,
    #[serde(default, deserialize_with = "present")]
    oth: bool,
    #[serde(default, deserialize_with = "present")]
    k: bool,
}

/// `true` when the member is present, whatever its value (`null` included).
pub(crate) fn present<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(d).map(|_| true)
}

/// Decodes canonical unpadded base64url of exactly 32 bytes.
fn coordinate(v: Option<&Cow<'_, str>>, name: &'static str) -> Result<[u8; 32], JwkError> {
    let s = v.ok_or(JwkError::MissingMember(name))?;
    // 43 characters is the only canonical unpadded length for 32 bytes; one spare output byte
    // because the decoder checks the buffer against its conservative estimate.
    let mut out = [0u8; 33];
    match URL_SAFE_NO_PAD.decode_slice(s.as_bytes(), &mut out) {
        Ok(32) if s.len() == 43 => {
            let mut c = [0u8; 32];
            c.copy_from_slice(&out[..32]);
            Ok(c)
        }
        _ => Err(JwkError::BadCoordinate(name)),
    }
}

/// The decoded coordinates of an accepted key type: everything a key is, so also the key of
/// [`JwkCache`].
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Coords {
    P256([u8; 32], [u8; 32]),
    Ed25519([u8; 32]),
}

impl Coords {
    /// Validates the point (the expensive part: curve equation, or decompression and the
    /// small-order check).
    pub(crate) fn key(&self) -> Result<PublicJwk, JwkError> {
        match self {
            Self::P256(x, y) => PublicJwk::from_p256_coordinates(x, y),
            Self::Ed25519(x) => PublicJwk::from_ed25519_bytes(x),
        }
    }
}

impl RawJwk<'_> {
    /// Every check that needs no curve arithmetic, then the decoded coordinates.
    pub(crate) fn coords(&self) -> Result<Coords, JwkError> {
        let private = [
            (self.d, "d"),
            (self.p, "p"),
            (self.q, "q"),
            (self.dp, "dp"),
            (self.dq, "dq"),
            (self.qi, "qi"),
            (self.oth, "oth"),
            (self.k, "k"),
        ];
        if let Some((_, name)) = private.iter().find(|(present, _)| *present) {
            return Err(JwkError::PrivateMember(name));
        }
        let alg = match (self.kty.as_deref(), self.crv.as_deref()) {
            (Some("EC"), Some("P-256")) => JwsAlg::Es256,
            (Some("OKP"), Some("Ed25519")) => JwsAlg::EdDsa,
            (Some("EC" | "OKP"), _) => return Err(JwkError::UnsupportedCurve),
            _ => return Err(JwkError::UnsupportedKty),
        };
        if self.use_.as_deref().is_some_and(|u| u != "sig")
            || self.key_ops.as_ref().is_some_and(|ops| !ops.iter().any(|op| op == "verify"))
        {
            return Err(JwkError::WrongUse);
        }
        if self.alg.as_deref().is_some_and(|a| JwsAlg::from_header(a) != Some(alg)) {
            return Err(JwkError::AlgMismatch);
        }
        match alg {
            JwsAlg::Es256 => Ok(Coords::P256(coordinate(self.x.as_ref(), "x")?, coordinate(self.y.as_ref(), "y")?)),
            JwsAlg::EdDsa if self.y.is_some() => Err(JwkError::Syntax),
            JwsAlg::EdDsa => Ok(Coords::Ed25519(coordinate(self.x.as_ref(), "x")?)),
        }
    }

    pub(crate) fn into_key(self) -> Result<PublicJwk, JwkError> {
        self.coords()?.key()
    }
}

/// A bounded cache of validated public keys and their thumbprints, keyed by the decoded
/// coordinates. A DPoP client signs every request with the same key; with the cache the point
/// validation (an Ed25519 decompression, ~10 % of a verification) and the thumbprint are paid
/// once per key instead of once per request.
///
/// Safe to share between threads. Entries are a deterministic function of their key, so
/// nothing a client sends can make the cache answer differently from a fresh parse; invalid
/// keys are never stored. At capacity the cache is emptied and refilled (about 300 bytes per
/// entry): a flood of distinct keys only costs the uncached path.
pub struct JwkCache {
    map: Mutex<HashMap<Coords, (PublicJwk, Jkt)>>,
    capacity: usize,
}

impl std::fmt::Debug for JwkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwkCache").field("len", &self.len()).field("capacity", &self.capacity).finish()
    }
}

impl JwkCache {
    /// A cache of at most `capacity` keys (0 disables caching).
    pub fn new(capacity: usize) -> Self {
        Self { map: Mutex::new(HashMap::new()), capacity }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A poisoned map is still consistent (no code panics while holding the lock).
    fn lock(&self) -> MutexGuard<'_, HashMap<Coords, (PublicJwk, Jkt)>> {
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The validated key and thumbprint for `coords`, from the cache or computed (without
    /// holding the lock) and stored.
    pub(crate) fn get_or_validate(&self, coords: Coords) -> Result<(PublicJwk, Jkt), JwkError> {
        if let Some(hit) = self.lock().get(&coords) {
            return Ok(hit.clone());
        }
        let key = coords.key()?;
        let jkt = key.thumbprint();
        if self.capacity > 0 {
            let mut map = self.lock();
            if map.len() >= self.capacity {
                map.clear();
            }
            map.insert(coords, (key.clone(), jkt.clone()));
        }
        Ok((key, jkt))
    }
}

impl PublicJwk {
    /// Parses one JWK (a JSON object) strictly; see the module docs for what is refused.
    pub fn from_json(json: &[u8]) -> Result<Self, JwkError> {
        serde_json::from_slice::<RawJwk<'_>>(json).map_err(|_| JwkError::Syntax)?.into_key()
    }

    /// A P-256 key from its affine coordinates (32 bytes each, big-endian).
    pub fn from_p256_coordinates(x: &[u8; 32], y: &[u8; 32]) -> Result<Self, JwkError> {
        let mut sec1 = [0u8; 65];
        sec1[0] = 0x04;
        sec1[1..33].copy_from_slice(x);
        sec1[33..].copy_from_slice(y);
        // Checks y² = x³ − 3x + b with both coordinates reduced, and refuses the identity.
        let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1).map_err(|_| JwkError::InvalidPoint)?;
        Ok(Self(Inner::P256 { key, x: *x, y: *y }))
    }

    /// An Ed25519 key from its 32-byte encoding (RFC 8032 §5.1.5).
    pub fn from_ed25519_bytes(x: &[u8; 32]) -> Result<Self, JwkError> {
        // Non-canonical y (≥ 2²⁵⁵ − 19) would give one key two encodings and two thumbprints.
        let high = x[31] & 0x7f;
        if high == 0x7f && x[1..31].iter().all(|&b| b == 0xff) && x[0] >= 0xed {
            return Err(JwkError::InvalidPoint);
        }
        let key = ed25519_dalek::VerifyingKey::from_bytes(x).map_err(|_| JwkError::InvalidPoint)?;
        if key.is_weak() {
            return Err(JwkError::WeakKey);
        }
        Ok(Self(Inner::Ed25519(key)))
    }

    /// The one algorithm this key verifies.
    pub fn alg(&self) -> JwsAlg {
        match self.0 {
            Inner::P256 { .. } => JwsAlg::Es256,
            Inner::Ed25519(_) => JwsAlg::EdDsa,
        }
    }

    /// The RFC 7638 §3.2 thumbprint input: the required members, lexicographically ordered,
    /// no whitespace.
    pub fn canonical_json(&self) -> String {
        match &self.0 {
            Inner::P256 { x, y, .. } => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(x),
                URL_SAFE_NO_PAD.encode(y)
            ),
            Inner::Ed25519(k) => {
                format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, URL_SAFE_NO_PAD.encode(k.as_bytes()))
            }
        }
    }

    /// The RFC 7638 SHA-256 thumbprint.
    pub fn thumbprint(&self) -> Jkt {
        Jkt(b64url_sha256(self.canonical_json().as_bytes()))
    }

    /// Whether `signature` is a valid `alg` signature of `message` under this key. `false` when
    /// `alg` is not this key's algorithm, for a signature of the wrong length, for ES256
    /// scalars `r` or `s` that are zero or not below the group order, and for any signature
    /// `ed25519-dalek`'s `verify_strict` refuses (non-canonical `S`, small-order `R`).
    /// High-S ES256 signatures are accepted: JOSE does not require low-S (RFC 7518 §3.4).
    pub fn verify(&self, alg: JwsAlg, message: &[u8], signature: &[u8]) -> bool {
        match (&self.0, alg) {
            (Inner::P256 { key, .. }, JwsAlg::Es256) => {
                // `from_slice` requires exactly 64 bytes and 0 < r, s < n.
                p256::ecdsa::Signature::from_slice(signature).is_ok_and(|sig| key.verify(message, &sig).is_ok())
            }
            (Inner::Ed25519(key), JwsAlg::EdDsa) => ed25519_dalek::Signature::from_slice(signature)
                .is_ok_and(|sig| key.verify_strict(message, &sig).is_ok()),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
