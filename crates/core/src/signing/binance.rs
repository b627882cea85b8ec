//! Binance Spot SIGNED-endpoint authentication: `X-MBX-APIKEY` names the key, the last
//! parameter `signature` signs the **raw** query string concatenated (no separator) with the
//! **raw** body, each without its trailing `&signature=…`; `timestamp` and `recvWindow` bound
//! the request in time. Spec: exchange-auth.md §2 (§2.2 payload, §2.3 timing, §2.4 errors).
//!
//! Signatures (percent-decoded exactly once, then): HMAC-SHA256 as hex (case-insensitive),
//! compared in constant time; Ed25519 (`verify_strict`) and RSASSA-PKCS1-v1_5/SHA-256 as
//! standard padded base64 (case-sensitive). The payload is the bytes on the wire — since
//! 2026-01-15 Binance requires the percent-encoded form, so a client that signs the decoded
//! string but sends it encoded (python-binance POSTs with `:`/`/` in a value) fails with −1022,
//! as on Binance.
//!
//! Timing (§2.3, R66): `timestamp` in ms, or µs when > 10¹⁴; `recvWindow` in ms with up to 3
//! decimals, default 5000, at most 60000 (−1131). Refused when `timestamp ≥ now + 1000 ms` or
//! `now − timestamp > recvWindow` (−1021). All comparisons are in µs, exact at the edges.
//!
//! Attacks stopped, beyond Binance: parameter smuggling — a parameter present twice (in the
//! query, the body, or both, compared after percent-decoding) is −1101, where Binance would let
//! the query value win; a second `signature` is −1101; a body that is not form-encoded is
//! refused rather than signed-but-unparsed. Replay inside the window — Binance has no nonce, so
//! the replay key is the (decoded) signature, kept for `recvWindow + 1 s + max instance skew +
//! margin` (F5): each signed request is single-use. HMAC hex is decoded before it becomes the
//! replay key, so changing its letter case does not make a new request.
//!
//! Not bound (the Binance spec, §2.6): method and path.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use super::codec;
use super::query::{pairs, pct_decode};
use super::{
    Denial, Dialect, Header, MAX_BODY_LEN, MAX_PARAMS, MAX_QUERY_LEN, MAX_TARGET_LEN, RawRequest, ReplayKey, Verified,
    VerifyKey, is_key_id, is_media_type, json_string, key, key::KeyKind, key::SignatureAlg, windowed_retention,
};
use crate::clock::{Span, Timestamp};

/// Largest accepted `recvWindow` (Binance: 60000 ms).
pub const MAX_RECV_WINDOW: Span = Span::secs(60);
/// How far ahead of the server a `timestamp` may be (Binance: < 1000 ms).
pub const FUTURE_TOLERANCE: Span = Span::secs(1);
/// Longest accepted `signature` value after percent-decoding (RSA-4096 base64 is 684).
const MAX_SIGNATURE_LEN: usize = 1024;

/// Binance verification parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BinancePolicy {
    /// `recvWindow` when the request sends none (Binance: 5000 ms).
    pub default_recv_window: Span,
    /// Largest `recvWindow` accepted (≤ 60000 ms; lower it to shorten replay exposure).
    pub max_recv_window: Span,
    /// Worst clock difference between gatehouse instances (F5), added to the replay
    /// retention. Instances go unready above 1 s.
    pub max_instance_skew: Span,
    /// Extra replay retention on top of window + 1 s + skew (F5's "margin").
    pub retention_margin: Span,
}

impl Default for BinancePolicy {
    fn default() -> Self {
        Self {
            default_recv_window: Span::secs(5),
            max_recv_window: MAX_RECV_WINDOW,
            max_instance_skew: Span::secs(1),
            retention_margin: Span::secs(2),
        }
    }
}

impl BinancePolicy {
    /// Checks the numbers; returns what is wrong.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.max_recv_window <= Span::ZERO || self.max_recv_window > MAX_RECV_WINDOW {
            return Err("signing.binance.max_recv_window must be in (0, 60 s]");
        }
        if self.default_recv_window <= Span::ZERO || self.default_recv_window > self.max_recv_window {
            return Err("signing.binance.default_recv_window must be in (0, max_recv_window]");
        }
        if self.max_instance_skew < Span::ZERO || self.retention_margin < Span::ZERO {
            return Err("signing.binance skew and margin must not be negative");
        }
        Ok(())
    }
}

/// A Binance error: body `{"code":…,"msg":…}` (§2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BinanceError {
    /// −2014, 401: `X-MBX-APIKEY` missing, repeated or malformed.
    #[error("-2014 bad API-key format")]
    BadApiKeyFormat,
    /// −2015, 401: unknown key, IP not allowed, or missing permission (deliberately vague).
    #[error("-2015 rejected API key")]
    RejectedApiKey,
    /// −1022, 400: the signature does not verify.
    #[error("-1022 invalid signature")]
    InvalidSignature,
    /// −1021, 400: `now − timestamp > recvWindow`.
    #[error("-1021 timestamp outside recvWindow")]
    TimestampOutsideWindow,
    /// −1021, 400: `timestamp ≥ now + 1000 ms`.
    #[error("-1021 timestamp ahead of server")]
    TimestampAhead,
    /// −1021, 400: this signature was already accepted (gatehouse's single-use rule).
    #[error("-1021 replayed signature")]
    Replayed,
    /// −1131, 400: `recvWindow` above the maximum.
    #[error("-1131 bad recvWindow")]
    BadRecvWindow,
    /// −1102, 400: a mandatory parameter is missing, empty or malformed.
    #[error("-1102 mandatory parameter {0}")]
    MandatoryParam(&'static str),
    /// −1102, 400: the request cannot carry parameters (e.g. a body that is not form-encoded).
    #[error("-1102 malformed request")]
    MalformedRequest,
    /// −1101, 400: a parameter appears more than once.
    #[error("-1101 duplicate parameter")]
    DuplicateParameter,
    /// −1101, 400: more parameters or bytes than accepted.
    #[error("-1101 too many parameters")]
    TooManyParameters,
}

impl BinanceError {
    /// The Binance error code.
    pub fn code(&self) -> i32 {
        match self {
            Self::BadApiKeyFormat => -2014,
            Self::RejectedApiKey => -2015,
            Self::InvalidSignature => -1022,
            Self::TimestampOutsideWindow | Self::TimestampAhead | Self::Replayed => -1021,
            Self::BadRecvWindow => -1131,
            Self::MandatoryParam(_) | Self::MalformedRequest => -1102,
            Self::DuplicateParameter | Self::TooManyParameters => -1101,
        }
    }

    /// The message, as Binance words it (errors.md).
    pub fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::BadApiKeyFormat => "API-key format invalid.",
            Self::RejectedApiKey => "Invalid API-key, IP, or permissions for action.",
            Self::InvalidSignature => "Signature for this request is not valid.",
            Self::TimestampOutsideWindow => "Timestamp for this request is outside of the recvWindow.",
            Self::TimestampAhead => "Timestamp for this request was 1000ms ahead of the server's time.",
            Self::Replayed => "Duplicate request: this signature was already used.",
            Self::BadRecvWindow => "recvWindow must be less than 60000",
            Self::MandatoryParam(name) => {
                return Cow::Owned(format!("Mandatory parameter '{name}' was not sent, was empty/null, or malformed."));
            }
            Self::MalformedRequest => "A mandatory parameter was not sent, was empty/null, or malformed.",
            Self::DuplicateParameter => "Duplicate values for a parameter detected.",
            Self::TooManyParameters => "Too many parameters sent for this endpoint.",
        })
    }

    /// The HTTP status: 401 for key errors, 400 otherwise (§2.4).
    pub fn status(&self) -> u16 {
        match self {
            Self::BadApiKeyFormat | Self::RejectedApiKey => 401,
            _ => 400,
        }
    }

    /// The response body.
    pub fn body(&self) -> String {
        format!(r#"{{"code":{},"msg":{}}}"#, self.code(), json_string(&self.message()))
    }
}

impl From<Denial> for BinanceError {
    fn from(d: Denial) -> Self {
        match d {
            Denial::Replayed => Self::Replayed,
            // §2.5: permission failures and IP mismatches both surface as −2015.
            Denial::KeyExpired | Denial::IpNotAllowed | Denial::OutOfScope => Self::RejectedApiKey,
        }
    }
}

/// A parsed Binance request: parameters located and checked, nothing verified yet.
#[derive(Debug, Clone)]
pub struct BinanceRequest<'a> {
    api_key: &'a str,
    query: &'a [u8],
    body: &'a [u8],
    signature: Vec<u8>,
    timestamp_us: i64,
    recv_window_us: Option<i64>,
}

impl BinanceRequest<'_> {
    /// The `X-MBX-APIKEY` value: the key to look up.
    pub fn key_id(&self) -> &str {
        self.api_key
    }

    /// The signed payload: query ++ body without the signature (two parts, no separator).
    pub fn payload(&self) -> [&[u8]; 2] {
        [self.query, self.body]
    }
}

/// The API key of a request to a key-only (`USER_STREAM`) or public endpoint that carries
/// one: `Ok(None)` when absent, −2014 when repeated or malformed.
pub fn api_key<'a>(req: &RawRequest<'a>) -> Result<Option<&'a str>, BinanceError> {
    match req.header("x-mbx-apikey") {
        Header::Absent => Ok(None),
        Header::Repeated => Err(BinanceError::BadApiKeyFormat),
        Header::One(v) if is_key_id(v) => std::str::from_utf8(v).map(Some).map_err(|_| BinanceError::BadApiKeyFormat),
        Header::One(_) => Err(BinanceError::BadApiKeyFormat),
    }
}

/// Splits a trailing `signature=…` off `raw`: `(raw without it, encoded value)`.
fn strip_signature(raw: &[u8]) -> Option<(&[u8], &[u8])> {
    let (unsigned, last) = match raw.iter().rposition(|&b| b == b'&') {
        Some(i) => (raw.get(..i)?, raw.get(i + 1..)?),
        None => (&[][..], raw),
    };
    last.strip_prefix(b"signature=").map(|v| (unsigned, v))
}

/// `timestamp` in µs: digits only; ms unless above 10¹⁴ (then already µs).
fn parse_timestamp(v: &[u8]) -> Option<i64> {
    if v.is_empty() || v.len() > 18 || !v.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: i64 = std::str::from_utf8(v).ok()?.parse().ok()?;
    Some(if n > 100_000_000_000_000 { n } else { n.checked_mul(1000)? })
}

/// `recvWindow` in µs: `digits[.d{1,3}]`. `Err(true)` = too large, `Err(false)` = malformed.
fn parse_recv_window(v: &[u8]) -> Result<i64, bool> {
    let (int, frac) = match v.iter().position(|&b| b == b'.') {
        Some(i) => (v.get(..i).unwrap_or_default(), Some(v.get(i + 1..).unwrap_or_default())),
        None => (v, None),
    };
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !digits(int) || frac.is_some_and(|f| !digits(f) || f.len() > 3) {
        return Err(false);
    }
    if int.iter().skip_while(|&&b| b == b'0').count() > 6 {
        return Err(true);
    }
    let int_ms = int.iter().fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0'));
    let frac_us = frac.map_or(0, |f| {
        let scaled = f.iter().fold(0i64, |acc, &b| acc * 10 + i64::from(b - b'0'));
        scaled * 10i64.pow(3 - f.len() as u32)
    });
    Ok(int_ms * 1000 + frac_us)
}

/// Phase 1: locates the signature, checks the parameters, reads `timestamp`/`recvWindow`.
pub fn parse<'a>(req: &RawRequest<'a>) -> Result<BinanceRequest<'a>, BinanceError> {
    use BinanceError::{MandatoryParam, TooManyParameters};
    let api_key = api_key(req)?.ok_or(BinanceError::BadApiKeyFormat)?;
    let query = req.query().unwrap_or_default().as_bytes();
    if req.target.len() > MAX_TARGET_LEN || query.len() > MAX_QUERY_LEN || req.body.len() > MAX_BODY_LEN {
        return Err(TooManyParameters);
    }
    if !req.body.is_empty() {
        match req.header("content-type") {
            Header::One(ct) if is_media_type(ct, "application/x-www-form-urlencoded") => {}
            _ => return Err(BinanceError::MalformedRequest),
        }
    }
    // The signature is the last parameter: of the body when there is one, else of the query.
    let (query, body, encoded_sig) = if req.body.is_empty() {
        let (q, sig) = strip_signature(query).ok_or(MandatoryParam("signature"))?;
        (q, req.body, sig)
    } else {
        let (b, sig) = strip_signature(req.body).ok_or(MandatoryParam("signature"))?;
        (query, b, sig)
    };

    let mut names: Vec<Cow<'_, [u8]>> = Vec::new();
    let (mut timestamp, mut recv_window) = (None, None);
    for p in pairs(query).chain(pairs(body)) {
        if names.len() >= MAX_PARAMS {
            return Err(TooManyParameters);
        }
        let name = pct_decode(p.key, true);
        match name.as_ref() {
            b"signature" => return Err(BinanceError::DuplicateParameter),
            b"timestamp" => timestamp = Some(p.value.unwrap_or_default()),
            b"recvWindow" => recv_window = Some(p.value.unwrap_or_default()),
            _ => {}
        }
        names.push(name);
    }
    // `O(n log n)`, no hashing: a parameter sent twice (query, body, or both) is refused.
    names.sort_unstable();
    if names.windows(2).any(|w| w.first() == w.get(1)) {
        return Err(BinanceError::DuplicateParameter);
    }
    let timestamp_us =
        timestamp.and_then(|v| parse_timestamp(&pct_decode(v, true))).ok_or(MandatoryParam("timestamp"))?;
    let recv_window_us =
        match recv_window {
            None => None,
            Some(v) => Some(parse_recv_window(&pct_decode(v, true)).map_err(|too_large| {
                if too_large { BinanceError::BadRecvWindow } else { MandatoryParam("recvWindow") }
            })?),
        };
    let signature = pct_decode(encoded_sig, false).into_owned();
    if signature.is_empty() || signature.len() > MAX_SIGNATURE_LEN {
        return Err(MandatoryParam("signature"));
    }
    Ok(BinanceRequest { api_key, query, body, signature, timestamp_us, recv_window_us })
}

/// Decodes the signature text for `kind`: hex for HMAC, padded standard base64 otherwise.
fn decode_signature(text: &[u8], kind: KeyKind) -> Option<Vec<u8>> {
    match kind {
        KeyKind::Hmac => {
            let mut sig = vec![0; 32];
            codec::hex_decode(text, &mut sig).then_some(sig)
        }
        KeyKind::Ed25519 | KeyKind::Rsa => STANDARD.decode(text).ok(),
    }
}

/// Phase 3: checks the window at `now`, then the signature with `key`. On success the replay
/// key is the decoded signature, retained for `recvWindow + 1 s + skew + margin`.
pub fn verify(
    r: &BinanceRequest<'_>,
    key: &VerifyKey,
    now: Timestamp,
    policy: &BinancePolicy,
) -> Result<Verified, BinanceError> {
    let window_us = r.recv_window_us.unwrap_or(policy.default_recv_window.as_millis().saturating_mul(1000));
    if window_us > policy.max_recv_window.as_millis().saturating_mul(1000) {
        return Err(BinanceError::BadRecvWindow);
    }
    let now_us = now.as_millis().saturating_mul(1000);
    if r.timestamp_us >= now_us.saturating_add(FUTURE_TOLERANCE.as_millis() * 1000) {
        return Err(BinanceError::TimestampAhead);
    }
    if now_us.saturating_sub(r.timestamp_us) > window_us {
        return Err(BinanceError::TimestampOutsideWindow);
    }
    let alg = match key.kind() {
        KeyKind::Hmac => SignatureAlg::HmacSha256,
        KeyKind::Ed25519 => SignatureAlg::Ed25519,
        KeyKind::Rsa => SignatureAlg::RsaPkcs1v15Sha256,
    };
    let sig = decode_signature(&r.signature, key.kind()).ok_or(BinanceError::InvalidSignature)?;
    if !key.verify_parts(alg, &r.payload(), &sig) {
        return Err(BinanceError::InvalidSignature);
    }
    let window = Span::millis((window_us + 999) / 1000);
    Ok(Verified {
        dialect: Dialect::Binance,
        key_id: r.api_key.to_owned(),
        replay_key: ReplayKey::derive(Dialect::Binance.as_str(), &[r.api_key.as_bytes(), &sig]),
        retention: windowed_retention(window, FUTURE_TOLERANCE, policy.max_instance_skew, policy.retention_margin),
        binds_method_and_path: false,
    })
}

/// Phase 2 for an unknown API key: checks the signature against a dummy key of the kind the
/// signature's shape suggests (hex → HMAC, 64-byte base64 → Ed25519), then returns −2015.
/// RSA keys are not imitated: their verification cost would reveal them anyway, and key ids
/// are public (R63).
pub fn reject_unknown_key(r: &BinanceRequest<'_>) -> BinanceError {
    let dummy = match decode_signature(&r.signature, KeyKind::Ed25519) {
        Some(sig) if sig.len() == 64 => key::dummy_ed25519().map(|k| (k, SignatureAlg::Ed25519, sig)),
        _ => key::dummy_hmac().map(|k| {
            let sig = decode_signature(&r.signature, KeyKind::Hmac).unwrap_or_default();
            (k, SignatureAlg::HmacSha256, sig)
        }),
    };
    if let Some((k, alg, sig)) = dummy {
        std::hint::black_box(k.verify_parts(alg, &r.payload(), &sig));
    }
    BinanceError::RejectedApiKey
}

#[cfg(test)]
mod tests;
