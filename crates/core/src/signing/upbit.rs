//! Upbit Open API request authentication: `Authorization: Bearer <JWT>` (HS256/HS512) whose
//! claims carry `access_key`, a single-use `nonce` and — when the request has parameters — a
//! `query_hash` (SHA-512 of the canonical parameter string). Spec: exchange-auth.md §1
//! (§1.2 JWT, §1.3 canonicalisation, §1.4 verification order, §1.5 errors).
//!
//! What it verifies, in §1.4 order: the bearer token is a compact JWS of exactly three
//! base64url segments whose header is a JSON object with `alg` ∈ {HS256, HS512} and no `crit`
//! (so `none`, `RS*`, `ES*`, `HS384` and extensions are refused: alg-confusion and `crit`
//! downgrade attacks); the claims name a key and a nonce; the MAC is checked in constant time
//! over the **received** `b64(header).b64(payload)` bytes (never a re-serialisation); then the
//! `query_hash` binds the parameters — the DOC form or, behind
//! [`UpbitPolicy::accept_pyupbit_form`], pyupbit's PYU form (both injective, so neither is
//! weaker). Optional `timestamp` (ms, Bithumb style), `iat`, `exp`, `nbf` claims are enforced
//! when present (and a time claim can be required by policy).
//!
//! Hardening beyond Upbit, compatible with every captured client: parameters in both the URL
//! query and a body are refused (otherwise the body would travel unsigned), as is a non-empty
//! body that is neither form-encoded nor JSON; nested JSON, `null`, duplicate JSON keys, more
//! than [`MAX_PARAMS`](super::MAX_PARAMS) values, tokens over [`MAX_JWT_LEN`] and bodies over
//! [`MAX_BODY_LEN`] are refused. Nonces are 1..=[`MAX_NONCE_LEN`] bytes (UUIDs are 36).
//!
//! Not bound (the Upbit spec, §1.8): method and path. The nonce is the only replay defence
//! for tokens without a time claim, so the replay key is kept for
//! [`UpbitPolicy::nonce_retention`]; after that a captured time-less token could be replayed —
//! the documented residual risk (keys live ≤ 1 year; use a retention as long as is affordable).
//!
//! Deviation from §1.4: the `query_hash` check (step 7) runs inside [`verify`], before the
//! server's expired-key and IP checks (step 6), so a request failing both reports
//! `invalid_query_payload`. Both are post-authentication answers; nothing leaks.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha512};
use subtle::ConstantTimeEq as _;

use super::codec;
use super::json_flat::{self, Entry, JsonError, Scalar, Value};
use super::query::{doc_json, doc_raw, pyu_json, pyu_raw};
use super::{
    Denial, Dialect, Header, InlineStr, MAX_BODY_LEN, MAX_JWT_LEN, MAX_KEY_ID_LEN, MAX_NONCE_LEN, MAX_QUERY_LEN,
    MAX_TARGET_LEN, RawRequest, ReplayKey, Verified, VerifyKey, is_key_id, is_media_type, json_string, key,
    key::SignatureAlg,
};
use crate::clock::{Span, Timestamp};

/// Upbit verification parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpbitPolicy {
    /// Accept pyupbit's `query_hash` form (PYU) besides the documented one (DOC)
    /// (`UPBIT_ACCEPT_PYUPBIT_FORM`, exchange-auth.md §1.3). Default on: pyupbit requests whose
    /// values need encoding only match PYU.
    pub accept_pyupbit_form: bool,
    /// Answer an unknown `access_key` with `jwt_verification` instead of `invalid_access_key`,
    /// so the answer is no key-existence oracle (§1.4 step 4 hardening). Default off (ccxt
    /// maps `invalid_access_key`).
    pub hide_unknown_keys: bool,
    /// Refuse tokens without a `timestamp` (ms) or `iat` claim. Default off: pyupbit and ccxt
    /// send none.
    pub require_timestamp: bool,
    /// Oldest accepted `timestamp`/`iat`, relative to now (default 60 s, as R59).
    pub timestamp_max_age: Span,
    /// Furthest-future accepted `timestamp`/`iat`, and the leeway for `exp`/`nbf` (default
    /// 5 s; F5 caps JWT leeway at 5 s).
    pub timestamp_max_future: Span,
    /// How long a nonce is remembered (default 7 days).
    pub nonce_retention: Span,
}

impl Default for UpbitPolicy {
    fn default() -> Self {
        Self {
            accept_pyupbit_form: true,
            hide_unknown_keys: false,
            require_timestamp: false,
            timestamp_max_age: Span::secs(60),
            timestamp_max_future: Span::secs(5),
            nonce_retention: Span::days(7),
        }
    }
}

impl UpbitPolicy {
    /// Checks the numbers; returns what is wrong.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.timestamp_max_age <= Span::ZERO || self.timestamp_max_age > Span::hours(1) {
            return Err("signing.upbit.timestamp_max_age must be in (0, 1 h]");
        }
        if self.timestamp_max_future < Span::ZERO || self.timestamp_max_future > Span::secs(5) {
            return Err("signing.upbit.timestamp_max_future must be in [0, 5 s] (F5)");
        }
        if self.nonce_retention < Span::hours(1) {
            return Err("signing.upbit.nonce_retention must be at least 1 h");
        }
        Ok(())
    }
}

/// An Upbit authentication failure. Every variant answers HTTP 401 with the body
/// `{"error":{"name":…,"message":…}}`; the `&'static str` reasons are for logs only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpbitError {
    /// No `Authorization` header, or not `Bearer` (§1.4 step 1).
    #[error("no_authorization_token")]
    NoAuthorizationToken,
    /// Malformed token, refused `alg`, bad MAC, stale time claim (steps 2, 5).
    #[error("jwt_verification: {0}")]
    JwtVerification(&'static str),
    /// Missing/invalid claims, or parameters not matching `query_hash` (steps 3, 7).
    #[error("invalid_query_payload: {0}")]
    InvalidQueryPayload(&'static str),
    /// Unknown `access_key` (step 4; see [`UpbitPolicy::hide_unknown_keys`]).
    #[error("invalid_access_key")]
    InvalidAccessKey,
    /// Expired or revoked key (step 6, decided by the server).
    #[error("expired_access_key")]
    ExpiredAccessKey,
    /// The nonce was already used (step 9, decided by the server).
    #[error("nonce_used")]
    NonceUsed,
    /// Caller IP not allow-listed (step 6, decided by the server).
    #[error("no_authorization_ip")]
    NoAuthorizationIp,
    /// The key lacks the endpoint's permission group (step 8, decided by the server).
    #[error("out_of_scope")]
    OutOfScope,
}

impl UpbitError {
    /// The Upbit error `name`.
    pub fn name(&self) -> &'static str {
        match self {
            Self::NoAuthorizationToken => "no_authorization_token",
            Self::JwtVerification(_) => "jwt_verification",
            Self::InvalidQueryPayload(_) => "invalid_query_payload",
            Self::InvalidAccessKey => "invalid_access_key",
            Self::ExpiredAccessKey => "expired_access_key",
            Self::NonceUsed => "nonce_used",
            Self::NoAuthorizationIp => "no_authorization_ip",
            Self::OutOfScope => "out_of_scope",
        }
    }

    /// The message Upbit sends for this name (§1.5; ccxt matches `This key has expired.`
    /// exactly). `no_authorization_token` has no observed message; ours is in English.
    pub fn message(&self) -> &'static str {
        match self {
            Self::NoAuthorizationToken => "Authorization token is missing.",
            Self::JwtVerification(_) => "Jwt 토큰 검증에 실패했습니다.",
            Self::InvalidQueryPayload(_) => "Jwt의 query를 검증하는데 실패하였습니다.",
            Self::InvalidAccessKey => "잘못된 엑세스 키입니다.",
            Self::ExpiredAccessKey => "This key has expired.",
            Self::NonceUsed => "This temporary number has already been used.",
            Self::NoAuthorizationIp => "This is not a verified IP.",
            Self::OutOfScope => "권한이 부족합니다.",
        }
    }

    /// The HTTP status: 401 for every authentication error (§1.5).
    pub fn status(&self) -> u16 {
        401
    }

    /// The response body.
    pub fn body(&self) -> String {
        format!(r#"{{"error":{{"name":{},"message":{}}}}}"#, json_string(self.name()), json_string(self.message()))
    }
}

impl From<Denial> for UpbitError {
    fn from(d: Denial) -> Self {
        match d {
            Denial::Replayed => Self::NonceUsed,
            Denial::KeyExpired => Self::ExpiredAccessKey,
            Denial::IpNotAllowed => Self::NoAuthorizationIp,
            Denial::OutOfScope => Self::OutOfScope,
        }
    }
}

/// The JWS algorithm; only these two are ever accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlg {
    /// HMAC-SHA-256 (pyupbit, ccxt).
    Hs256,
    /// HMAC-SHA-512 (the docs' recommendation).
    Hs512,
}

impl JwtAlg {
    fn signature_alg(self) -> SignatureAlg {
        match self {
            Self::Hs256 => SignatureAlg::HmacSha256,
            Self::Hs512 => SignatureAlg::HmacSha512,
        }
    }

    fn tag_len(self) -> usize {
        match self {
            Self::Hs256 => 32,
            Self::Hs512 => 64,
        }
    }
}

/// Where the request's parameters are (§1.3 `params_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Params<'a> {
    None,
    Query(&'a [u8]),
    Form(&'a [u8]),
    Json(&'a [u8]),
    /// Parameters that cannot be bound; reported after the MAC check (§1.4 step 7).
    Invalid(&'static str),
}

/// Longest tag of an accepted alg (HS512).
const MAX_TAG_LEN: usize = 64;

/// A parsed Upbit request: claims extracted, nothing verified yet.
#[derive(Debug, Clone)]
pub struct UpbitRequest<'a> {
    access_key: InlineStr<MAX_KEY_ID_LEN>,
    nonce: InlineStr<MAX_NONCE_LEN>,
    alg: JwtAlg,
    signing_input: &'a [u8],
    /// The tag; its first `alg.tag_len()` bytes.
    signature: [u8; MAX_TAG_LEN],
    query_hash: Option<[u8; 64]>,
    timestamp_ms: Option<i64>,
    iat_s: Option<i64>,
    exp_s: Option<i64>,
    nbf_s: Option<i64>,
    params: Params<'a>,
}

impl UpbitRequest<'_> {
    /// The `access_key` claim: the key to look up.
    pub fn key_id(&self) -> &str {
        self.access_key.as_str()
    }

    /// The `nonce` claim.
    pub fn nonce(&self) -> &str {
        self.nonce.as_str()
    }

    /// The JWS algorithm.
    pub fn alg(&self) -> JwtAlg {
        self.alg
    }

    fn tag(&self) -> &[u8] {
        self.signature.get(..self.alg.tag_len()).unwrap_or_default()
    }
}

/// The three base64url segments of a compact JWS (still encoded), and the signed bytes as
/// received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JwtParts<'a> {
    pub header: &'a [u8],
    pub payload: &'a [u8],
    pub signing_input: &'a [u8],
    pub signature: &'a [u8],
}

/// Splits a compact JWS into exactly three non-empty segments. Their characters are checked
/// by the strict base64url decoder ([`decode_segment`]), which refuses every byte outside
/// `A-Za-z0-9-_`.
pub(crate) fn split_jwt(token: &[u8]) -> Option<JwtParts<'_>> {
    // `.` is searched word-at-a-time.
    let dot = |s: &[u8]| codec::find_byte(s, b'.');
    let h = dot(token)?;
    let (header, rest) = (token.get(..h)?, token.get(h + 1..)?);
    let p = dot(rest)?;
    let (payload, signature) = (rest.get(..p)?, rest.get(p + 1..)?);
    if dot(signature).is_some() || header.is_empty() || payload.is_empty() || signature.is_empty() {
        return None;
    }
    Some(JwtParts { header, payload, signing_input: token.get(..h + 1 + p)?, signature })
}

/// Decodes a base64url segment into `stack` when it fits, else into `heap`.
fn decode_segment<'b>(segment: &[u8], stack: &'b mut [u8], heap: &'b mut Vec<u8>) -> Option<&'b [u8]> {
    let len = codec::b64url_decoded_len(segment.len())?;
    let buf: &'b mut [u8] = if len <= stack.len() {
        stack
    } else {
        heap.resize(len, 0);
        heap.as_mut_slice()
    };
    let n = codec::b64url_decode(segment, buf)?;
    buf.get(..n)
}

/// Header segments real clients send, exactly (PyJWT — so pyupbit — and ccxt write
/// `{"alg":…,"typ":"JWT"}`; other JWT libraries put `typ` first). A token carrying one of
/// them is decided without decoding its header: [`parse_header`] gives each of these the same
/// answer (see the `known_headers_agree_with_the_general_path` test).
const KNOWN_HEADERS: [(&[u8], JwtAlg); 4] = [
    (b"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9", JwtAlg::Hs256), // {"alg":"HS256","typ":"JWT"}
    (b"eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9", JwtAlg::Hs512), // {"alg":"HS512","typ":"JWT"}
    (b"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9", JwtAlg::Hs256), // {"typ":"JWT","alg":"HS256"}
    (b"eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzUxMiJ9", JwtAlg::Hs512), // {"typ":"JWT","alg":"HS512"}
];

/// The alg of a decoded JOSE header: `alg` ∈ {HS256, HS512}, no `crit`, `typ` (if any) `JWT`.
fn parse_header(header: &[u8]) -> Result<JwtAlg, UpbitError> {
    use UpbitError::JwtVerification as Jwt;
    let header = json_flat::parse_object(header).map_err(|_| Jwt("header is not a flat JSON object"))?;
    let alg = match claim_str(&header, "alg") {
        Some("HS256") => JwtAlg::Hs256,
        Some("HS512") => JwtAlg::Hs512,
        _ => return Err(Jwt("alg is not HS256 or HS512")),
    };
    if json_flat::get(&header, "crit").is_some() {
        return Err(Jwt("crit header"));
    }
    if json_flat::get(&header, "typ").is_some()
        && !claim_str(&header, "typ").is_some_and(|t| t.eq_ignore_ascii_case("JWT"))
    {
        return Err(Jwt("typ is not JWT"));
    }
    Ok(alg)
}

fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(7)?;
    scheme.eq_ignore_ascii_case(b"bearer ").then_some(token)
}

fn claim_str<'e>(entries: &'e [Entry<'_>], name: &str) -> Option<&'e str> {
    match json_flat::get(entries, name) {
        Some(Value::Scalar(Scalar::Str(s))) => Some(s.as_ref()),
        _ => None,
    }
}

/// A non-negative integer claim; `Err` when present but not one.
fn int_claim(entries: &[Entry<'_>], name: &'static str) -> Result<Option<i64>, UpbitError> {
    match json_flat::get(entries, name) {
        None => Ok(None),
        Some(Value::Scalar(Scalar::Num(n))) => {
            // Digits only: no sign, fraction or exponent.
            let digits = !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
            n.parse::<i64>().ok().filter(|_| digits).map(Some).ok_or(UpbitError::InvalidQueryPayload(name))
        }
        Some(_) => Err(UpbitError::InvalidQueryPayload(name)),
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

fn params_source<'a>(req: &RawRequest<'a>) -> Params<'a> {
    let query = req.query().unwrap_or_default().as_bytes();
    if req.target.len() > MAX_TARGET_LEN || query.len() > MAX_QUERY_LEN {
        return Params::Invalid("query too long");
    }
    if !query.is_empty() {
        return if req.body.is_empty() {
            Params::Query(query)
        } else {
            Params::Invalid("parameters in query and body")
        };
    }
    if req.body.is_empty() {
        return Params::None;
    }
    if req.body.len() > MAX_BODY_LEN {
        return Params::Invalid("body too large");
    }
    match req.header("content-type") {
        Header::One(ct) if is_media_type(ct, FORM) => Params::Form(req.body),
        Header::One(ct) if is_media_type(ct, "application/json") => Params::Json(req.body),
        _ => Params::Invalid("body is neither form-encoded nor JSON"),
    }
}

/// Phase 1: extracts the token and claims (§1.4 steps 1–3). No key material.
pub fn parse<'a>(req: &RawRequest<'a>) -> Result<UpbitRequest<'a>, UpbitError> {
    use UpbitError::{InvalidQueryPayload as Iqp, JwtVerification as Jwt};
    let value = match req.header("authorization") {
        Header::Absent => return Err(UpbitError::NoAuthorizationToken),
        Header::Repeated => return Err(Jwt("duplicate Authorization header")),
        Header::One(v) => v,
    };
    let token = bearer_token(value).filter(|t| !t.is_empty()).ok_or(UpbitError::NoAuthorizationToken)?;
    if token.len() > MAX_JWT_LEN {
        return Err(Jwt("token too long"));
    }
    let jwt = split_jwt(token).ok_or(Jwt("not a compact JWS"))?;

    // Every segment must decode before anything else is judged. Small segments (all real
    // ones) decode into stack buffers; a known header needs no decoding at all.
    let known = KNOWN_HEADERS.iter().find(|(h, _)| *h == jwt.header).map(|&(_, alg)| alg);
    let (mut header_stack, mut header_heap) = ([0u8; 256], Vec::new());
    let header = match known {
        Some(_) => None,
        None => Some(decode_segment(jwt.header, &mut header_stack, &mut header_heap).ok_or(Jwt("not a compact JWS"))?),
    };
    let (mut payload_stack, mut payload_heap) = ([0u8; 1024], Vec::new());
    let payload = decode_segment(jwt.payload, &mut payload_stack, &mut payload_heap).ok_or(Jwt("not a compact JWS"))?;
    let (mut sig_stack, mut sig_heap) = ([0u8; MAX_TAG_LEN], Vec::new());
    let sig = decode_segment(jwt.signature, &mut sig_stack, &mut sig_heap).ok_or(Jwt("not a compact JWS"))?;

    let alg = match (known, header) {
        (Some(alg), _) => alg,
        (None, Some(header)) => parse_header(header)?,
        (None, None) => return Err(Jwt("not a compact JWS")),
    };
    if sig.len() != alg.tag_len() {
        return Err(Jwt("signature length does not match alg"));
    }
    let mut signature = [0u8; MAX_TAG_LEN];
    signature.get_mut(..sig.len()).ok_or(Jwt("signature length does not match alg"))?.copy_from_slice(sig);
    let claims = json_flat::parse_object(payload).map_err(|_| Jwt("payload is not a flat JSON object"))?;

    let access_key = claim_str(&claims, "access_key").filter(|k| is_key_id(k.as_bytes())).ok_or(Iqp("access_key"))?;
    let nonce = claim_str(&claims, "nonce")
        .filter(|n| !n.is_empty() && n.len() <= MAX_NONCE_LEN && !n.chars().any(char::is_control))
        .ok_or(Iqp("nonce"))?;
    let query_hash = match json_flat::get(&claims, "query_hash") {
        None => None,
        Some(Value::Scalar(Scalar::Str(h))) if h.len() == 128 => {
            let mut out = [0u8; 64];
            if !codec::hex_decode(h.as_bytes(), &mut out) {
                return Err(Iqp("query_hash is not hex"));
            }
            Some(out)
        }
        Some(_) => return Err(Iqp("query_hash is not 128 hex digits")),
    };
    match json_flat::get(&claims, "query_hash_alg") {
        None => {}
        Some(Value::Scalar(Scalar::Str(a))) if a == "SHA512" => {}
        Some(_) => return Err(Iqp("query_hash_alg is not SHA512")),
    }
    Ok(UpbitRequest {
        access_key: InlineStr::new(access_key).ok_or(Iqp("access_key"))?,
        nonce: InlineStr::new(nonce).ok_or(Iqp("nonce"))?,
        alg,
        signing_input: jwt.signing_input,
        signature,
        query_hash,
        timestamp_ms: int_claim(&claims, "timestamp")?,
        iat_s: int_claim(&claims, "iat")?,
        exp_s: int_claim(&claims, "exp")?,
        nbf_s: int_claim(&claims, "nbf")?,
        params: params_source(req),
    })
}

fn check_times(r: &UpbitRequest<'_>, now: Timestamp, policy: &UpbitPolicy) -> Result<(), UpbitError> {
    let now = now.as_millis();
    let leeway = policy.timestamp_max_future.as_millis();
    let issued = [r.timestamp_ms, r.iat_s.map(|s| s.saturating_mul(1000))];
    if policy.require_timestamp && issued.iter().all(Option::is_none) {
        return Err(UpbitError::JwtVerification("time claim required"));
    }
    for t in issued.into_iter().flatten() {
        if now.saturating_sub(t) > policy.timestamp_max_age.as_millis() {
            return Err(UpbitError::JwtVerification("token too old"));
        }
        if t.saturating_sub(now) > leeway {
            return Err(UpbitError::JwtVerification("token issued in the future"));
        }
    }
    if r.exp_s.is_some_and(|exp| now >= exp.saturating_mul(1000).saturating_add(leeway)) {
        return Err(UpbitError::JwtVerification("token expired"));
    }
    if r.nbf_s.is_some_and(|nbf| now.saturating_add(leeway) < nbf.saturating_mul(1000)) {
        return Err(UpbitError::JwtVerification("token not yet valid"));
    }
    Ok(())
}

fn check_query_hash(r: &UpbitRequest<'_>, policy: &UpbitPolicy) -> Result<(), UpbitError> {
    use UpbitError::InvalidQueryPayload as Iqp;
    let mut entries = Vec::new();
    let (doc, pairs) = match r.params {
        Params::None => (Cow::Borrowed(&[][..]), 0),
        Params::Invalid(why) => return Err(Iqp(why)),
        Params::Query(q) => doc_raw(q, false),
        Params::Form(b) => doc_raw(b, true),
        Params::Json(b) => {
            entries = json_flat::parse_object(b).map_err(|e| {
                Iqp(match e {
                    JsonError::Nested => "nested JSON body",
                    JsonError::Null => "null in JSON body",
                    JsonError::DuplicateKey => "duplicate key in JSON body",
                    JsonError::TooMany => "too many parameters",
                    JsonError::Syntax => "body is not a JSON object",
                })
            })?;
            let (doc, n) = doc_json(&entries);
            (Cow::Owned(doc), n)
        }
    };
    let claimed = match (pairs, r.query_hash) {
        (0, None) => return Ok(()),
        (0, Some(_)) => return Err(Iqp("query_hash without parameters")),
        (_, None) => return Err(Iqp("parameters without query_hash")),
        (_, Some(claimed)) => claimed,
    };
    // Each candidate is compared in constant time; PYU is only built when DOC does not match
    // (which form matched is not secret: both derive from the request itself).
    if bool::from(claimed.ct_eq(Sha512::digest(&doc).as_slice())) {
        return Ok(());
    }
    if policy.accept_pyupbit_form {
        let pyu = match r.params {
            Params::Query(raw) | Params::Form(raw) => pyu_raw(raw),
            Params::Json(_) => pyu_json(&entries),
            Params::None | Params::Invalid(_) => Vec::new(),
        };
        if pyu != doc.as_ref() && bool::from(claimed.ct_eq(Sha512::digest(&pyu).as_slice())) {
            return Ok(());
        }
    }
    Err(Iqp("query_hash mismatch"))
}

/// Phase 3: verifies the MAC with `key`, the time claims at `now` and the `query_hash`
/// (§1.4 steps 5 and 7). On success the replay key is `(access_key, nonce)`.
pub fn verify(
    r: &UpbitRequest<'_>,
    key: &VerifyKey,
    now: Timestamp,
    policy: &UpbitPolicy,
) -> Result<Verified, UpbitError> {
    check_times(r, now, policy)?;
    if !key.verify_parts(r.alg.signature_alg(), &[r.signing_input], r.tag()) {
        return Err(UpbitError::JwtVerification("signature mismatch"));
    }
    check_query_hash(r, policy)?;
    Ok(Verified {
        dialect: Dialect::Upbit,
        key_id: r.key_id().to_owned(),
        replay_key: ReplayKey::derive(Dialect::Upbit.as_str(), &[r.key_id().as_bytes(), r.nonce().as_bytes()]),
        retention: policy.nonce_retention,
        binds_method_and_path: false,
    })
}

/// Phase 2 for an unknown `access_key`: computes a MAC with a dummy key (same work as a bad
/// signature) and returns `invalid_access_key`, or `jwt_verification` when
/// [`UpbitPolicy::hide_unknown_keys`] is set.
pub fn reject_unknown_key(r: &UpbitRequest<'_>, policy: &UpbitPolicy) -> UpbitError {
    if let Some(dummy) = key::dummy_hmac() {
        std::hint::black_box(dummy.verify_parts(r.alg.signature_alg(), &[r.signing_input], r.tag()));
    }
    if policy.hide_unknown_keys {
        UpbitError::JwtVerification("unknown access_key")
    } else {
        UpbitError::InvalidAccessKey
    }
}

#[cfg(test)]
mod tests;
