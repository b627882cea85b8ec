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

mod json_flat;
pub mod key;
mod query;
mod sf;
#[cfg(test)]
pub(crate) mod testdata;

pub use key::{KeyError, KeyKind, SignatureAlg, VerifyKey};

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
