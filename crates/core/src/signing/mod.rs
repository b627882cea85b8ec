//! Verification of signed API requests in three dialects, from the raw bytes of the request.
//!
//! | dialect | wire format | binds | replay defence | spec |
//! |---|---|---|---|---|
//! | [`upbit`] | `Authorization: Bearer <JWT>` HS256/HS512 + `query_hash` | params (query, form or JSON body) | single-use nonce | exchange-auth.md §1 |
//! | [`binance`] | `X-MBX-APIKEY` + `signature` (HMAC hex / Ed25519 / RSA base64) | raw query ++ raw body | time window; each signature single-use | exchange-auth.md §2 |
//! | [`rfc9421`] | `Signature-Input` / `Signature` + `Content-Digest` | method, authority, path, query, body digest, created, nonce, keyid | window + single-use nonce | RFC 9421, RFC 9530 |
//!
//! Upbit and Binance bind **neither the method nor the path** — that is their specification
//! (exchange-auth.md §1.8, §2.6), reproduced so unmodified clients (pyupbit, ccxt,
//! python-binance) work: a signed `GET /api/v3/openOrders?…` is byte for byte a valid signed
//! `DELETE /api/v3/openOrders?…`. [`Verified::binds_method_and_path`] says which guarantee a
//! request carries so the server can demand [`rfc9421`] for sensitive routes.
//!
//! ## The three phases (R68)
//!
//! 1. [`parse`] — cheap, no key material: size limits, structure, the key id. Malformed input
//!    gets the dialect's own error, never a panic and never super-linear work.
//! 2. The server looks the key id up (asynchronously) and builds a [`VerifyKey`]. An unknown
//!    id goes to [`reject_unknown_key`], which spends the same work as a bad signature.
//! 3. [`verify`] — timestamp window, constant-time MAC compare or strict signature check,
//!    `query_hash` / `Content-Digest`. It returns a [`Verified`] — the only way to obtain one —
//!    carrying the [`ReplayKey`] and its retention. The server inserts that key atomically
//!    (`SET NX PX` / `INSERT … ON CONFLICT DO NOTHING`, F7) **only after** `verify` succeeded,
//!    so a forged request can never burn a legitimate nonce, and answers a duplicate with
//!    [`DialectError::denial`]`(…, `[`Denial::Replayed`]`)`.
//!
//! Attacks stopped: forged and tampered requests (MAC/signature over the exact received
//! bytes, never a re-serialisation), replay (single-use nonces/signatures, windows), algorithm
//! confusion (`alg` pinned per key kind), parser differentials (duplicate parameters, headers
//! and JSON keys refused), key-existence probing (uniform unknown-key path), and resource
//! exhaustion (hard size limits below).

pub mod binance;
pub(crate) mod codec;
mod content_digest;
pub(crate) mod json_flat;
pub mod key;
pub(crate) mod query;
pub mod rfc9421;
pub(crate) mod sf;
#[cfg(test)]
pub(crate) mod testdata;
pub mod upbit;

use serde::{Deserialize, Serialize};

use crate::clock::{Span, Timestamp};

pub use binance::{BinanceError, BinancePolicy, BinanceRequest};
pub use key::{KeyError, KeyKind, SignatureAlg, VerifyKey};
pub use rfc9421::{Rfc9421Error, Rfc9421Policy, Rfc9421Request};
pub use upbit::{UpbitError, UpbitPolicy, UpbitRequest};

/// Longest accepted JWT (`Authorization: Bearer …`), in bytes.
pub const MAX_JWT_LEN: usize = 8 * 1024;
/// Longest accepted request target (path + `?` + query), in bytes.
pub const MAX_TARGET_LEN: usize = 16 * 1024;
/// Longest accepted raw query string, in bytes.
pub const MAX_QUERY_LEN: usize = 8 * 1024;
/// Largest body that is canonicalised, hashed or digested, in bytes.
pub const MAX_BODY_LEN: usize = 64 * 1024;
/// Longest accepted `Signature-Input` or `Signature` field, in bytes.
pub const MAX_SIGNATURE_FIELD_LEN: usize = 4 * 1024;
/// Most parameters (query + body, or JSON values) in one request.
pub const MAX_PARAMS: usize = 512;
/// Longest accepted nonce, in bytes (R67).
pub const MAX_NONCE_LEN: usize = 64;
/// Longest accepted key id (Upbit `access_key`, `X-MBX-APIKEY`, RFC 9421 `keyid`), in bytes.
pub const MAX_KEY_ID_LEN: usize = 128;

/// The request as it arrived, before any framework parsing. Everything is borrowed; nothing
/// is decoded or normalised by the caller.
#[derive(Debug, Clone, Copy)]
pub struct RawRequest<'a> {
    /// The method, exactly as on the request line (`GET`).
    pub method: &'a str,
    /// The raw request-target: path + optional `?` + raw query, exactly as on the wire
    /// (origin form).
    pub target: &'a str,
    /// The authority (`Host` / `:authority`), `host[:port]`, without a default port.
    pub authority: &'a str,
    /// Every header line in order; names lower-case, values raw.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// The raw body (possibly empty; GET bodies are real — pyupbit sends them).
    pub body: &'a [u8],
}

/// The result of looking a header up by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Header<'a> {
    Absent,
    One(&'a [u8]),
    Repeated,
}

impl<'a> RawRequest<'a> {
    /// The path part of the target (before the first `?`).
    pub fn path(&self) -> &'a str {
        self.target.split_once('?').map_or(self.target, |(p, _)| p)
    }

    /// The raw query (after the first `?`), `None` when the target has no `?`.
    pub fn query(&self) -> Option<&'a str> {
        self.target.split_once('?').map(|(_, q)| q)
    }

    /// The single value of header `name` (lower-case), or whether it is absent or repeated.
    pub(crate) fn header(&self, name: &str) -> Header<'a> {
        let mut found = Header::Absent;
        for (n, v) in self.headers {
            if n.eq_ignore_ascii_case(name) {
                if found != Header::Absent {
                    return Header::Repeated;
                }
                found = Header::One(v);
            }
        }
        found
    }

    /// Every value of header `name`, in order.
    pub(crate) fn header_values<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'a [u8]> + 's {
        self.headers.iter().filter(move |(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// Whether a `Content-Type` value names `media` (case-insensitive, parameters ignored).
pub(crate) fn is_media_type(content_type: &[u8], media: &str) -> bool {
    let essence = content_type.split(|&b| b == b';').next().unwrap_or_default();
    essence.trim_ascii().eq_ignore_ascii_case(media.as_bytes())
}

/// `s` as a JSON string literal (quoted and escaped).
pub(crate) fn json_string(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

/// Whether `s` is a plausible key id: 1..=[`MAX_KEY_ID_LEN`] visible ASCII characters.
pub(crate) fn is_key_id(s: &[u8]) -> bool {
    !s.is_empty() && s.len() <= MAX_KEY_ID_LEN && s.iter().all(|b| b.is_ascii_graphic())
}

/// A short string kept inline (key ids ≤ [`MAX_KEY_ID_LEN`] bytes, nonces ≤
/// [`MAX_NONCE_LEN`]), so a parsed request holds no heap memory of its own.
#[derive(Clone)]
pub(crate) struct InlineStr<const N: usize> {
    len: usize,
    bytes: [u8; N],
}

impl<const N: usize> InlineStr<N> {
    pub(crate) fn new(s: &str) -> Option<Self> {
        let mut bytes = [0u8; N];
        bytes.get_mut(..s.len())?.copy_from_slice(s.as_bytes());
        Some(Self { len: s.len(), bytes })
    }

    pub(crate) fn as_str(&self) -> &str {
        // Always valid: `new` copied a whole `&str`.
        std::str::from_utf8(self.bytes.get(..self.len).unwrap_or_default()).unwrap_or_default()
    }
}

impl<const N: usize> std::fmt::Debug for InlineStr<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.as_str().fmt(f)
    }
}

/// A signing dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Upbit Open API JWT (exchange-auth.md §1).
    Upbit,
    /// Binance Spot SIGNED endpoints (exchange-auth.md §2).
    Binance,
    /// HTTP Message Signatures (RFC 9421), gatehouse's native scheme.
    Rfc9421,
}

impl Dialect {
    /// The dialect's name in configuration and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Upbit => "upbit",
            Self::Binance => "binance",
            Self::Rfc9421 => "rfc9421",
        }
    }
}

/// The value the server records, atomically and only after [`verify`] succeeded, to make a
/// request single-use: SHA-256 over a domain tag, the dialect and the length-prefixed
/// identifying parts (Upbit `(access_key, nonce)`, Binance `(api key, signature bytes)`,
/// RFC 9421 `(keyid, nonce)`). Fixed size, so the replay store holds neither nonces nor
pub use crate::replay::ReplayKey;

/// Proof that a request passed [`verify`]. Only `verify` can build one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    dialect: Dialect,
    key_id: String,
    replay_key: ReplayKey,
    retention: Span,
    binds_method_and_path: bool,
}

impl Verified {
    /// The dialect that verified the request.
    pub fn dialect(&self) -> Dialect {
        self.dialect
    }

    /// The key id the request was signed with.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// What to insert into the replay store (atomically; a duplicate means replay).
    pub fn replay_key(&self) -> &ReplayKey {
        &self.replay_key
    }

    /// How long the replay store must keep [`Verified::replay_key`] (its TTL).
    pub fn retention(&self) -> Span {
        self.retention
    }

    /// Whether the signature covers the method and path (only [`Dialect::Rfc9421`]).
    pub fn binds_method_and_path(&self) -> bool {
        self.binds_method_and_path
    }
}

/// A denial decided by the server after [`verify`], to be answered in the dialect's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// The replay key was already present.
    Replayed,
    /// The key is expired or revoked.
    KeyExpired,
    /// The client address is not in the key's allowlist.
    IpNotAllowed,
    /// The key lacks the permission the endpoint needs.
    OutOfScope,
}

/// Verification parameters of all dialects; defaults are the documented numbers. Durations
/// ([`Span`]) are integers of milliseconds in configuration (`nonce_retention = 604800000`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigningPolicy {
    /// Upbit dialect.
    pub upbit: UpbitPolicy,
    /// Binance dialect.
    pub binance: BinancePolicy,
    /// RFC 9421 dialect.
    pub rfc9421: Rfc9421Policy,
}

impl SigningPolicy {
    /// Checks the numbers against their bounds; returns what is wrong.
    pub fn validate(&self) -> Result<(), &'static str> {
        self.upbit.validate()?;
        self.binance.validate()?;
        self.rfc9421.validate()
    }
}

/// An error in the format of the dialect that produced it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DialectError {
    /// Upbit error (`{"error":{"name","message"}}`).
    #[error(transparent)]
    Upbit(#[from] UpbitError),
    /// Binance error (`{"code","msg"}`).
    #[error(transparent)]
    Binance(#[from] BinanceError),
    /// RFC 9421 error (`{"error":{"code","message"}}`).
    #[error(transparent)]
    Rfc9421(#[from] Rfc9421Error),
}

impl DialectError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            Self::Upbit(e) => e.status(),
            Self::Binance(e) => e.status(),
            Self::Rfc9421(e) => e.status(),
        }
    }

    /// The JSON body to answer with (never contains internal detail).
    pub fn body(&self) -> String {
        match self {
            Self::Upbit(e) => e.body(),
            Self::Binance(e) => e.body(),
            Self::Rfc9421(e) => e.body(),
        }
    }

    /// The dialect's answer to a denial decided after verification.
    pub fn denial(dialect: Dialect, denial: Denial) -> Self {
        match dialect {
            Dialect::Upbit => UpbitError::from(denial).into(),
            Dialect::Binance => BinanceError::from(denial).into(),
            Dialect::Rfc9421 => Rfc9421Error::from(denial).into(),
        }
    }
}

/// A parsed request of any dialect, ready for key lookup.
#[derive(Debug, Clone)]
pub enum ParsedRequest<'a> {
    /// Upbit.
    Upbit(UpbitRequest<'a>),
    /// Binance.
    Binance(BinanceRequest<'a>),
    /// RFC 9421.
    Rfc9421(Rfc9421Request<'a>),
}

impl ParsedRequest<'_> {
    /// The key id to look up.
    pub fn key_id(&self) -> &str {
        match self {
            Self::Upbit(r) => r.key_id(),
            Self::Binance(r) => r.key_id(),
            Self::Rfc9421(r) => r.key_id(),
        }
    }

    /// The dialect.
    pub fn dialect(&self) -> Dialect {
        match self {
            Self::Upbit(_) => Dialect::Upbit,
            Self::Binance(_) => Dialect::Binance,
            Self::Rfc9421(_) => Dialect::Rfc9421,
        }
    }
}

/// Phase 1: parses `req` as `dialect` (no key material).
pub fn parse<'a>(dialect: Dialect, req: &RawRequest<'a>) -> Result<ParsedRequest<'a>, DialectError> {
    Ok(match dialect {
        Dialect::Upbit => ParsedRequest::Upbit(upbit::parse(req)?),
        Dialect::Binance => ParsedRequest::Binance(binance::parse(req)?),
        Dialect::Rfc9421 => ParsedRequest::Rfc9421(rfc9421::parse(req)?),
    })
}

/// Phase 3: verifies a parsed request with the key its id resolved to, at `now`.
pub fn verify(
    parsed: &ParsedRequest<'_>,
    key: &VerifyKey,
    now: Timestamp,
    policy: &SigningPolicy,
) -> Result<Verified, DialectError> {
    Ok(match parsed {
        ParsedRequest::Upbit(r) => upbit::verify(r, key, now, &policy.upbit)?,
        ParsedRequest::Binance(r) => binance::verify(r, key, now, &policy.binance)?,
        ParsedRequest::Rfc9421(r) => rfc9421::verify(r, key, now, &policy.rfc9421)?,
    })
}

/// Phase 2, unknown key id: spends the work of a failed verification and returns the
/// dialect's answer (R68: an unknown key follows the same path as a bad signature).
pub fn reject_unknown_key(parsed: &ParsedRequest<'_>, policy: &SigningPolicy) -> DialectError {
    match parsed {
        ParsedRequest::Upbit(r) => upbit::reject_unknown_key(r, &policy.upbit).into(),
        ParsedRequest::Binance(r) => binance::reject_unknown_key(r).into(),
        ParsedRequest::Rfc9421(r) => rfc9421::reject_unknown_key(r).into(),
    }
}

/// Retention for a windowed replay key (F5): the window, the accepted future skew, the worst
/// clock difference between instances and a margin — otherwise a request accepted by a
/// fast-clock instance could be replayed to a slow-clock one after its key expired.
pub(crate) fn windowed_retention(window: Span, future: Span, skew: Span, margin: Span) -> Span {
    Span::millis(
        window
            .as_millis()
            .saturating_add(future.as_millis())
            .saturating_add(skew.as_millis())
            .saturating_add(margin.as_millis()),
    )
}

#[cfg(test)]
mod tests;
