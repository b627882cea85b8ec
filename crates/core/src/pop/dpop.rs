//! DPoP proof verification: RFC 9449 §4.3, all twelve checks, at the token endpoint and at
//! the resource server.
//!
//! [`verify_proof`] takes every `DPoP` header line of the request, what the server knows about
//! the request ([`ProofContext`]) and the [`DpopPolicy`], and returns a [`VerifiedProof`] (the
//! only way to obtain one) or a [`DpopError`] naming the failed check.
//!
//! | § 4.3 | check | error |
//! |---|---|---|
//! | 1 | exactly one `DPoP` header (a comma-folded value counts as several) | [`DpopError::Missing`], [`DpopError::MultipleProofs`] |
//! | 2 | one compact JWS, ≤ [`DpopPolicy::max_proof_len`], canonical base64url, JSON header, no `crit`/`jku`/`x5u`/`x5c` | [`DpopError::TooLarge`], [`DpopError::Malformed`] |
//! | 3 | `jti`, `htm`, `htu`, `iat` present and typed; `ath` when a token is presented | [`DpopError::MissingClaim`], [`DpopError::InvalidClaims`] |
//! | 4 | `typ` is `dpop+jwt` | [`DpopError::BadTyp`] |
//! | 5 | `alg` is asymmetric and allowed (ES256, EdDSA) | [`DpopError::AlgNotAllowed`] |
//! | 6 | the signature verifies with the header `jwk` over the received bytes | [`DpopError::InvalidKey`], [`DpopError::BadSignature`] |
//! | 7 | the `jwk` holds no private key | [`DpopError::PrivateKey`] |
//! | 8 | `htm` equals the method | [`DpopError::HtmMismatch`] |
//! | 9 | `htu` equals the URI, query and fragment ignored, RFC 3986 normalised | [`DpopError::HtuMismatch`] |
//! | 10 | `nonce` is a current server nonce when nonces are required | [`DpopError::NonceMissing`], [`DpopError::NonceInvalid`] |
//! | 11 | `now − 60 s ≤ iat ≤ now + 5 s` | [`DpopError::IatTooOld`], [`DpopError::IatInFuture`] |
//! | 12 | `ath` = b64url(SHA-256(token)); the `jwk` thumbprint = the token's `cnf.jkt` | [`DpopError::AthMismatch`], [`DpopError::JktMismatch`] |
//! | §11.1 | `jti` ≤ 64 bytes | [`DpopError::JtiTooLong`] |
//!
//! Order: the header checks (5 first: the most dangerous member), then the signature, and only
//! then is the payload decoded and any claim read (RFC 8725 §3.1, R53).
//!
//! ## Replay (§11.1, R59)
//! A verified proof carries [`VerifiedProof::jti_replay_key`] =
//! `ReplayKey::derive("dpop-jti", [jkt, normalised htu, jti])` and its retention
//! (`max_age + future_skew + max_clock_skew + margin`, 68 s by default, F5). The server inserts
//! it atomically (`SET NX PX` / [`crate::replay::ReplayCache::insert_if_absent`]) **after**
//! this function returned `Ok` — never before and never for a failed proof, so nobody can
//! burn a legitimate client's `jti` with garbage — and refuses a duplicate as a replay (401).
//! Scoping the key by thumbprint means one client's `jti`s cannot collide with another's.
//!
//! ## Server usage
//! * Build one [`DpopVerifier`] (policy + a bounded cache of validated client keys) and share
//!   it; [`verify_proof`] is the same check without the cache.
//! * Token endpoint: `access_token: None`; `expected_jkt: None` for a code grant, the refresh
//!   token's `cnf.jkt` for a refresh grant (R60); bind the new tokens with
//!   [`VerifiedProof::confirmation`].
//! * Resource server: `access_token: Some(token)` and `expected_jkt: Some(cnf.jkt)`; a token
//!   whose `cnf` has a `jkt` must arrive with the `DPoP` scheme, never `Bearer`, and a request
//!   with both `Authorization: Bearer` and `DPoP` is a 400 (R60: the server's job).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::Confirmation;
use super::htu::normalize_htu;
use super::jwk::{Jkt, JwkCache, JwkError, JwsAlg, RawJwk, present};
use super::nonce::DpopNonces;
use crate::clock::{Span, Timestamp};
use crate::replay::ReplayKey;

/// The replay-key namespace of DPoP `jti`s.
pub const REPLAY_NAMESPACE: &str = "dpop-jti";

/// Verification parameters. Every field has a safe default (R59, F5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpopPolicy {
    /// Oldest accepted `iat`, relative to now (default 60 s).
    pub max_age: Span,
    /// Furthest-future accepted `iat` (default 5 s: client clocks run fast).
    pub future_skew: Span,
    /// Longest accepted `jti`, in bytes (default 64; RFC 9449 §11.1 "unnecessarily large").
    pub max_jti_len: usize,
    /// Accepted algorithms (default ES256 and EdDSA; nothing else can be named).
    pub allowed_algs: Vec<JwsAlg>,
    /// Longest accepted proof, in bytes (default 8 KiB).
    pub max_proof_len: usize,
    /// Largest clock offset between instances (default 1 s; F5), for the `jti` retention.
    pub max_clock_skew: Span,
    /// Extra `jti` retention (default 2 s).
    pub replay_margin: Span,
}

impl Default for DpopPolicy {
    fn default() -> Self {
        Self {
            max_age: Span::secs(60),
            future_skew: Span::secs(5),
            max_jti_len: 64,
            allowed_algs: vec![JwsAlg::Es256, JwsAlg::EdDsa],
            max_proof_len: 8 * 1024,
            max_clock_skew: Span::secs(1),
            replay_margin: Span::secs(2),
        }
    }
}

impl DpopPolicy {
    /// Checks the numbers; returns what is wrong.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.max_age <= Span::ZERO || self.max_age > Span::minutes(10) {
            return Err("dpop.max_age must be within (0, 10 min]");
        }
        if self.future_skew < Span::ZERO || self.future_skew > Span::minutes(1) {
            return Err("dpop.future_skew must be within [0, 60 s]");
        }
        if !(16..=256).contains(&self.max_jti_len) {
            return Err("dpop.max_jti_len must be within 16..=256");
        }
        if self.allowed_algs.is_empty() {
            return Err("dpop.allowed_algs must not be empty");
        }
        if !(1024..=16 * 1024).contains(&self.max_proof_len) {
            return Err("dpop.max_proof_len must be within 1 KiB..=16 KiB");
        }
        if self.max_clock_skew < Span::ZERO || self.replay_margin < Span::ZERO {
            return Err("dpop.max_clock_skew and dpop.replay_margin must not be negative");
        }
        Ok(())
    }

    /// How long a `jti` must be remembered: as long as any instance could still accept its
    /// proof (`max_age + future_skew + max_clock_skew + margin`, F5).
    pub fn jti_retention(&self) -> Span {
        crate::signing::windowed_retention(self.max_age, self.future_skew, self.max_clock_skew, self.replay_margin)
    }

    /// The value for `dpop_signing_alg_values_supported` / the `algs` challenge parameter,
    /// space-separated (RFC 9449 §5.1, §7.1).
    pub fn algs(&self) -> String {
        self.allowed_algs.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(" ")
    }
}

/// Whether the proof must carry a server nonce (check 10).
#[derive(Debug, Clone, Copy)]
pub enum NonceRule<'a> {
    /// No nonce is required; a `nonce` claim, if any, is not checked.
    None,
    /// A nonce is required and must equal one of these (compared in constant time).
    Required(&'a [&'a str]),
    /// A nonce is required and must be current for these stateless nonces at `ctx.now`.
    Issued(&'a DpopNonces),
}

/// What the server knows about the request a proof came with.
#[derive(Debug, Clone, Copy)]
pub struct ProofContext<'a> {
    /// The request method, as received (case-sensitive, RFC 9110 §9.1).
    pub method: &'a str,
    /// The request URI as the server sees it: `scheme://authority/path` from the server's own
    /// configuration (public origin) and the request path, never from a client-supplied
    /// `Host`/`X-Forwarded-*` unless a trusted proxy set it. Query and fragment are ignored.
    pub htu: &'a str,
    /// The instant of the decision.
    pub now: Timestamp,
    /// The access token presented with the proof (resource server), or `None` (token endpoint).
    pub access_token: Option<&'a str>,
    /// The `cnf.jkt` the proof's key must match: the access token's at the resource server,
    /// the refresh token's for a refresh grant, `None` when issuing a first token. With an
    /// `access_token` it is required: `None` there fails with [`DpopError::JktMismatch`] (an
    /// unbound token cannot be used with the `DPoP` scheme).
    pub expected_jkt: Option<&'a str>,
    /// Whether a server nonce is required (check 10).
    pub nonce: NonceRule<'a>,
}

/// Where a proof was presented: decides the HTTP status and OAuth error of a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The token endpoint (RFC 9449 §5): errors are 400 with an RFC 6749 §5.2 body.
    Token,
    /// A protected resource (RFC 9449 §7): errors are 401 with `WWW-Authenticate: DPoP`, or
    /// 400 for malformed requests.
    Resource,
}

/// A proof that passed every check. Only [`verify_proof`] creates one.
#[derive(Debug, Clone)]
pub struct VerifiedProof {
    jkt: Jkt,
    jti_replay_key: ReplayKey,
    jti_retention: Span,
    iat: Timestamp,
    alg: JwsAlg,
}

impl VerifiedProof {
    /// The RFC 7638 thumbprint of the proof's key.
    pub fn jkt(&self) -> &Jkt {
        &self.jkt
    }

    /// The key the server records, atomically and only now, to make the proof single-use.
    pub fn jti_replay_key(&self) -> &ReplayKey {
        &self.jti_replay_key
    }

    /// How long to keep [`jti_replay_key`](Self::jti_replay_key).
    pub fn jti_retention(&self) -> Span {
        self.jti_retention
    }

    /// The proof's `iat`.
    pub fn iat(&self) -> Timestamp {
        self.iat
    }

    /// The algorithm the proof was signed with.
    pub fn alg(&self) -> JwsAlg {
        self.alg
    }

    /// The `cnf` claim binding a token to this proof's key (token endpoint).
    pub fn confirmation(&self) -> Confirmation {
        Confirmation::dpop(self.jkt.clone())
    }
}

/// Why a proof was refused. Each variant names the RFC 9449 §4.3 check it enforces
/// ([`DpopError::check`]); codes are stable ([`DpopError::code`]). The details in the
/// `Display` text are for logs; clients get the code and the OAuth error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DpopError {
    /// Check 1: no `DPoP` header (or an empty one).
    #[error("dpop_proof_missing")]
    Missing,
    /// Check 1: more than one `DPoP` header, or one value holding several (comma-folded).
    #[error("dpop_multiple_proofs")]
    MultipleProofs,
    /// Check 2: the proof is longer than [`DpopPolicy::max_proof_len`].
    #[error("dpop_proof_too_large")]
    TooLarge,
    /// Check 2: not a compact JWS with a JSON header (the detail says what).
    #[error("dpop_malformed: {0}")]
    Malformed(&'static str),
    /// Check 3: a required claim is missing (or `jti` is empty).
    #[error("dpop_missing_claim: {0}")]
    MissingClaim(&'static str),
    /// Check 3: the payload is not a JSON object, or a claim has the wrong type or a duplicate.
    #[error("dpop_invalid_claims")]
    InvalidClaims,
    /// Check 4: `typ` is not `dpop+jwt`.
    #[error("dpop_bad_typ")]
    BadTyp,
    /// Check 5: `alg` is `none`, symmetric, unknown or not allowed.
    #[error("dpop_alg_not_allowed")]
    AlgNotAllowed,
    /// Check 6: the `jwk` is not a usable public key for `alg`.
    #[error("dpop_invalid_jwk: {0}")]
    InvalidKey(JwkError),
    /// Check 6: the signature does not verify.
    #[error("dpop_bad_signature")]
    BadSignature,
    /// Check 7: the `jwk` contains a private key.
    #[error("dpop_private_key")]
    PrivateKey,
    /// Check 8: `htm` is not the request method.
    #[error("dpop_htm_mismatch")]
    HtmMismatch,
    /// Check 9: `htu` is not the request URI (or either cannot be normalised).
    #[error("dpop_htu_mismatch")]
    HtuMismatch,
    /// Checks 3/10: a nonce is required and the proof has none (also after a nonce was
    /// issued: no downgrade).
    #[error("dpop_nonce_missing")]
    NonceMissing,
    /// Check 10: the nonce is not a current server nonce.
    #[error("dpop_nonce_invalid")]
    NonceInvalid,
    /// Check 11: `iat` is older than [`DpopPolicy::max_age`].
    #[error("dpop_iat_too_old")]
    IatTooOld,
    /// Check 11: `iat` is further ahead than [`DpopPolicy::future_skew`].
    #[error("dpop_iat_in_future")]
    IatInFuture,
    /// Check 12: `ath` is not the hash of the presented access token.
    #[error("dpop_ath_mismatch")]
    AthMismatch,
    /// Check 12: the proof's key is not the key the token is bound to.
    #[error("dpop_jkt_mismatch")]
    JktMismatch,
    /// RFC 9449 §11.1: `jti` longer than [`DpopPolicy::max_jti_len`].
    #[error("dpop_jti_too_long")]
    JtiTooLong,
}

impl DpopError {
    /// The stable error code (also the `Display` prefix).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "dpop_proof_missing",
            Self::MultipleProofs => "dpop_multiple_proofs",
            Self::TooLarge => "dpop_proof_too_large",
            Self::Malformed(_) => "dpop_malformed",
            Self::MissingClaim(_) => "dpop_missing_claim",
            Self::InvalidClaims => "dpop_invalid_claims",
            Self::BadTyp => "dpop_bad_typ",
            Self::AlgNotAllowed => "dpop_alg_not_allowed",
            Self::InvalidKey(_) => "dpop_invalid_jwk",
            Self::BadSignature => "dpop_bad_signature",
            Self::PrivateKey => "dpop_private_key",
            Self::HtmMismatch => "dpop_htm_mismatch",
            Self::HtuMismatch => "dpop_htu_mismatch",
            Self::NonceMissing => "dpop_nonce_missing",
            Self::NonceInvalid => "dpop_nonce_invalid",
            Self::IatTooOld => "dpop_iat_too_old",
            Self::IatInFuture => "dpop_iat_in_future",
            Self::AthMismatch => "dpop_ath_mismatch",
            Self::JktMismatch => "dpop_jkt_mismatch",
            Self::JtiTooLong => "dpop_jti_too_long",
        }
    }

    /// The RFC 9449 §4.3 check this error enforces (1–12); `None` for the `jti` bound.
    pub fn check(&self) -> Option<u8> {
        Some(match self {
            Self::Missing | Self::MultipleProofs => 1,
            Self::TooLarge | Self::Malformed(_) => 2,
            Self::MissingClaim(_) | Self::InvalidClaims => 3,
            Self::BadTyp => 4,
            Self::AlgNotAllowed => 5,
            Self::InvalidKey(_) | Self::BadSignature => 6,
            Self::PrivateKey => 7,
            Self::HtmMismatch => 8,
            Self::HtuMismatch => 9,
            Self::NonceMissing | Self::NonceInvalid => 10,
            Self::IatTooOld | Self::IatInFuture => 11,
            Self::AthMismatch | Self::JktMismatch => 12,
            Self::JtiTooLong => return None,
        })
    }

    /// Malformed requests rather than bad proofs: 400 even at a resource server (R59).
    fn is_bad_request(&self) -> bool {
        matches!(self, Self::MultipleProofs | Self::TooLarge | Self::JtiTooLong)
    }

    /// The HTTP status at `at`.
    pub fn status(&self, at: Endpoint) -> u16 {
        match at {
            Endpoint::Token => 400,
            Endpoint::Resource if self.is_bad_request() => 400,
            Endpoint::Resource => 401,
        }
    }

    /// The OAuth `error` value at `at` (RFC 9449 §5, §7.1, §8; RFC 6749 §5.2; RFC 6750 §3.1).
    /// `use_dpop_nonce` must come with a fresh `DPoP-Nonce` header.
    pub fn oauth_error(&self, at: Endpoint) -> &'static str {
        match (self, at) {
            (Self::NonceMissing | Self::NonceInvalid, _) => "use_dpop_nonce",
            // A refresh token presented with another key (R60).
            (Self::JktMismatch, Endpoint::Token) => "invalid_grant",
            (Self::JktMismatch, Endpoint::Resource) => "invalid_token",
            (e, Endpoint::Resource) if e.is_bad_request() => "invalid_request",
            _ => "invalid_dpop_proof",
        }
    }
}

/// The JOSE header members DPoP uses; others are ignored, duplicates of these refused.
#[derive(Deserialize)]
struct RawHeader<'a> {
    #[serde(borrow, default)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    jwk: Option<RawJwk<'a>>,
    #[serde(default, deserialize_with = "present")]
    crit: bool,
    #[serde(default, deserialize_with = "present")]
    jku: bool,
    #[serde(default, deserialize_with = "present")]
    x5u: bool,
    #[serde(default, deserialize_with = "present")]
    x5c: bool,
}

/// The claims DPoP uses; others are ignored, duplicates of these refused.
#[derive(Deserialize)]
struct RawClaims<'a> {
    #[serde(borrow, default)]
    jti: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htm: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    htu: Option<Cow<'a, str>>,
    #[serde(default)]
    iat: Option<serde_json::Number>,
    #[serde(borrow, default)]
    ath: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    nonce: Option<Cow<'a, str>>,
}

/// A compact JWS split at its dots: the decoded header, the payload and signature segments,
/// and the signed bytes as received.
struct Jws<'a> {
    header: Vec<u8>,
    payload_b64: &'a str,
    signing_input: &'a [u8],
    signature: Vec<u8>,
}

fn split(token: &[u8]) -> Result<Jws<'_>, DpopError> {
    use DpopError::Malformed;
    let text = std::str::from_utf8(token).map_err(|_| Malformed("not ASCII"))?;
    let (h, rest) = text.split_once('.').ok_or(Malformed("not a compact JWS"))?;
    let (p, s) = rest.split_once('.').ok_or(Malformed("not a compact JWS"))?;
    if s.contains('.') {
        return Err(Malformed("not a compact JWS"));
    }
    if h.is_empty() || p.is_empty() {
        return Err(Malformed("empty header or payload"));
    }
    // An empty signature is decoded (to nothing) so that `alg: none` is reported as such.
    Ok(Jws {
        header: URL_SAFE_NO_PAD.decode(h).map_err(|_| Malformed("header is not base64url"))?,
        payload_b64: p,
        signing_input: token.get(..h.len() + 1 + p.len()).ok_or(Malformed("not a compact JWS"))?,
        signature: URL_SAFE_NO_PAD.decode(s).map_err(|_| Malformed("signature is not base64url"))?,
    })
}

/// `typ` compares as a media type: case-insensitive, `application/` prefix optional
/// (RFC 7515 §4.1.9).
fn is_dpop_typ(typ: &str) -> bool {
    typ.eq_ignore_ascii_case("dpop+jwt") || typ.eq_ignore_ascii_case("application/dpop+jwt")
}

/// A NumericDate (RFC 7519 §2) as milliseconds; fractions are kept to the millisecond.
fn numeric_date_ms(n: &serde_json::Number) -> Option<i64> {
    if let Some(s) = n.as_i64() {
        return s.checked_mul(1000);
    }
    let f = n.as_f64().filter(|f| f.is_finite() && f.abs() < 1e15)?;
    #[allow(clippy::cast_possible_truncation)]
    Some((f * 1000.0).floor() as i64)
}

fn check_nonce(rule: &NonceRule<'_>, nonce: Option<&str>, now: Timestamp) -> Result<(), DpopError> {
    let accepted = match (rule, nonce) {
        (NonceRule::None, _) => return Ok(()),
        (_, None) => return Err(DpopError::NonceMissing),
        (NonceRule::Required(current), Some(n)) => {
            // Every candidate is compared; no early exit.
            current
                .iter()
                .fold(false, |hit, c| hit | (c.len() == n.len() && bool::from(c.as_bytes().ct_eq(n.as_bytes()))))
        }
        (NonceRule::Issued(nonces), Some(n)) => nonces.is_current(n, now),
    };
    if accepted { Ok(()) } else { Err(DpopError::NonceInvalid) }
}

/// Verifies a DPoP proof: RFC 9449 §4.3 checks 1–12 (see the module table). `header_values`
/// holds every `DPoP` header line of the request, in order. On success the server must still
/// record [`VerifiedProof::jti_replay_key`] atomically and refuse a duplicate.
///
/// A server verifying many proofs should use a [`DpopVerifier`], which caches validated keys.
pub fn verify_proof(
    header_values: &[&[u8]],
    ctx: &ProofContext<'_>,
    policy: &DpopPolicy,
) -> Result<VerifiedProof, DpopError> {
    verify(header_values, ctx, policy, None)
}

/// [`verify_proof`] with a policy and a cache of validated client keys, shared by all requests
/// (`Arc<DpopVerifier>`). Same checks, same results; a repeat key skips its point validation
/// and thumbprint.
#[derive(Debug)]
pub struct DpopVerifier {
    policy: DpopPolicy,
    keys: JwkCache,
}

impl DpopVerifier {
    /// Default number of cached keys (about 3 MB).
    pub const DEFAULT_KEY_CACHE: usize = 10_000;

    /// A verifier applying `policy`, caching up to `key_cache` client keys.
    pub fn new(policy: DpopPolicy, key_cache: usize) -> Self {
        Self { policy, keys: JwkCache::new(key_cache) }
    }

    /// The policy.
    pub fn policy(&self) -> &DpopPolicy {
        &self.policy
    }

    /// The key cache (for metrics).
    pub fn key_cache(&self) -> &JwkCache {
        &self.keys
    }

    /// As [`verify_proof`].
    pub fn verify(&self, header_values: &[&[u8]], ctx: &ProofContext<'_>) -> Result<VerifiedProof, DpopError> {
        verify(header_values, ctx, &self.policy, Some(&self.keys))
    }
}

fn verify(
    header_values: &[&[u8]],
    ctx: &ProofContext<'_>,
    policy: &DpopPolicy,
    keys: Option<&JwkCache>,
) -> Result<VerifiedProof, DpopError> {
    use DpopError::{Malformed, MissingClaim};

    // 1. Exactly one proof.
    let proof = match header_values {
        [] => return Err(DpopError::Missing),
        [one] => one.trim_ascii(),
        _ => return Err(DpopError::MultipleProofs),
    };
    if proof.is_empty() {
        return Err(DpopError::Missing);
    }
    if proof.len() > policy.max_proof_len {
        return Err(DpopError::TooLarge);
    }
    if proof.contains(&b',') {
        return Err(DpopError::MultipleProofs);
    }

    // 2. One well-formed JWS.
    let jws = split(proof)?;
    let header: RawHeader<'_> =
        serde_json::from_slice(&jws.header).map_err(|_| Malformed("header is not a JSON object"))?;

    // 5. Asymmetric, allowed algorithm.
    let alg = header.alg.as_deref().ok_or(Malformed("header has no alg"))?;
    let alg = JwsAlg::from_header(alg).filter(|a| policy.allowed_algs.contains(a)).ok_or(DpopError::AlgNotAllowed)?;

    // 4. Explicit type.
    if !header.typ.as_deref().is_some_and(is_dpop_typ) {
        return Err(DpopError::BadTyp);
    }
    if header.crit {
        return Err(Malformed("crit header"));
    }
    if header.jku || header.x5u || header.x5c {
        return Err(Malformed("key reference other than jwk"));
    }

    // 7. and 6. A public key of the right kind, and a valid signature over the received bytes.
    let jwk_error = |e| match e {
        JwkError::PrivateMember(_) => DpopError::PrivateKey,
        e => DpopError::InvalidKey(e),
    };
    let coords = header.jwk.ok_or(Malformed("header has no jwk"))?.coords().map_err(jwk_error)?;
    let (key, cached_jkt) = match keys {
        Some(cache) => cache.get_or_validate(coords).map(|(key, jkt)| (key, Some(jkt))),
        None => coords.key().map(|key| (key, None)),
    }
    .map_err(jwk_error)?;
    if key.alg() != alg {
        return Err(DpopError::InvalidKey(JwkError::AlgMismatch));
    }
    if !key.verify(alg, jws.signing_input, &jws.signature) {
        return Err(DpopError::BadSignature);
    }

    // 3. Claims, read only now.
    let payload = URL_SAFE_NO_PAD.decode(jws.payload_b64).map_err(|_| DpopError::InvalidClaims)?;
    let claims: RawClaims<'_> = serde_json::from_slice(&payload).map_err(|_| DpopError::InvalidClaims)?;
    let jti = claims.jti.filter(|j| !j.is_empty()).ok_or(MissingClaim("jti"))?;
    let htm = claims.htm.ok_or(MissingClaim("htm"))?;
    let htu = claims.htu.ok_or(MissingClaim("htu"))?;
    let iat = claims.iat.ok_or(MissingClaim("iat"))?;
    let ath = match ctx.access_token {
        Some(_) => Some(claims.ath.ok_or(MissingClaim("ath"))?),
        None => None,
    };
    if jti.len() > policy.max_jti_len {
        return Err(DpopError::JtiTooLong);
    }

    // 8. Method.
    if *htm != *ctx.method {
        return Err(DpopError::HtmMismatch);
    }

    // 9. URI without query and fragment, normalised.
    let server_htu = normalize_htu(ctx.htu).ok_or(DpopError::HtuMismatch)?;
    if normalize_htu(&htu).as_deref() != Some(server_htu.as_str()) {
        return Err(DpopError::HtuMismatch);
    }

    // 10. Server nonce.
    check_nonce(&ctx.nonce, claims.nonce.as_deref(), ctx.now)?;

    // 11. Freshness.
    let iat = Timestamp::from_millis(numeric_date_ms(&iat).ok_or(DpopError::InvalidClaims)?);
    if iat < ctx.now.minus(policy.max_age) {
        return Err(DpopError::IatTooOld);
    }
    if iat > ctx.now.plus(policy.future_skew) {
        return Err(DpopError::IatInFuture);
    }

    // 12. Token binding: ath over the exact token string, and the key thumbprint.
    if let (Some(token), Some(ath)) = (ctx.access_token, ath.as_deref()) {
        // Digests are compared, so a non-canonical encoding of the right hash fails too.
        let mut claimed = [0u8; 33];
        let decoded = ath.len() == 43 && URL_SAFE_NO_PAD.decode_slice(ath, &mut claimed).is_ok_and(|n| n == 32);
        let matches = claimed[..32].ct_eq(Sha256::digest(token.as_bytes()).as_slice());
        if !(decoded && bool::from(matches)) {
            return Err(DpopError::AthMismatch);
        }
    }
    let jkt = cached_jkt.unwrap_or_else(|| key.thumbprint());
    let bound = match ctx.expected_jkt {
        Some(expected) => jkt.ct_eq_str(expected),
        // A token presented with a proof must be bound to a key (RFC 9449 §7.1): fail closed
        // if the caller has no `cnf.jkt` for it.
        None => ctx.access_token.is_none(),
    };
    if !bound {
        return Err(DpopError::JktMismatch);
    }

    let jti_replay_key =
        ReplayKey::derive(REPLAY_NAMESPACE, &[jkt.as_str().as_bytes(), server_htu.as_bytes(), jti.as_bytes()]);
    Ok(VerifiedProof { jkt, jti_replay_key, jti_retention: policy.jti_retention(), iat, alg })
}

#[cfg(test)]
mod tests;
