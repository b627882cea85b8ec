//! Proof of possession for OAuth tokens: sender-constrained access and refresh tokens that are
//! worthless to whoever steals them without the client's private key (R58–R62).
//!
//! | binding | the token carries (`cnf`, RFC 7800) | each request proves possession by | module |
//! |---|---|---|---|
//! | DPoP (RFC 9449) | `jkt`: RFC 7638 thumbprint of the client's public key | a fresh JWS over method, URI, time and token hash, in the `DPoP` header | [`dpop`], [`jwk`] |
//! | mTLS (RFC 8705 §3) | `x5t#S256`: SHA-256 of the client certificate | the TLS handshake (the certificate on the connection) | [`mtls`] |
//!
//! ## Threat model
//! * **Stolen tokens** (logs, a compromised proxy, a browser extension, a leaky client store):
//!   a bound token is refused without a proof made with the bound key ([`dpop::verify_proof`]
//!   check 12, [`mtls::CertBinding::matches`]). R62 issues only bound tokens for trading and
//!   withdrawal scopes.
//! * **Captured proofs**: a DPoP proof names one method and URI (checks 8, 9), is fresh for
//!   60 s (check 11), is bound to one access token (`ath`, check 12) and is single-use: the
//!   server records [`dpop::VerifiedProof::jti_replay_key`] atomically (the
//!   [`crate::replay`] contract) **after** every check passed, so unauthenticated garbage can
//!   never burn a legitimate `jti`. Server nonces ([`DpopNonces`], RFC 9449 §8) stop
//!   proofs pre-computed by a client whose clock was set ahead.
//! * **JOSE pitfalls** (RFC 8725): `alg: none`, HMAC algorithms (a public key used as an HMAC
//!   secret), RSA, `crit` extensions, key-locating headers other than `jwk` (`jku`, `x5u`,
//!   `x5c`), duplicate JSON members, non-canonical base64url, private key material in the
//!   `jwk`, points off the curve and small-order Ed25519 keys are all refused; the signature
//!   is checked over the **received** `header.payload` bytes and no claim is read before it
//!   verified.
//! * **Resource exhaustion**: proofs are bounded (8 KiB), `jti` is bounded (64 bytes), client
//!   certificates are bounded (16 KiB); every parser is linear and never panics (property
//!   tests).
//!
//! Everything here is pure: time comes in as `now`, nothing is stored, nothing is fetched.
//! What the server does with the results — the atomic `jti` insert, the `DPoP-Nonce` response
//! header, taking the certificate from the TLS layer or from an allow-listed proxy only — is
//! spelled out on each item.

pub mod dpop;
mod htu;
pub mod jwk;
pub mod mtls;
mod nonce;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

pub use dpop::{DpopError, DpopPolicy, DpopVerifier, Endpoint, NonceRule, ProofContext, VerifiedProof, verify_proof};
pub use htu::normalize_htu;
pub use jwk::{Jkt, JwkCache, JwkError, JwsAlg, PublicJwk};
pub use mtls::{CertBinding, MtlsError, cert_from_proxy_header, check_cert_binding};
pub use nonce::{DpopNonces, NonceConfigError};

/// The `cnf` (confirmation) claim of a sender-constrained token (RFC 7800 §3.1), with the two
/// members gatehouse issues: `jkt` (RFC 9449 §6.1) and `x5t#S256` (RFC 8705 §3.1). Other
/// members are ignored when read.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confirmation {
    /// The RFC 7638 thumbprint of the DPoP public key the token is bound to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<Jkt>,
    /// The SHA-256 thumbprint of the client certificate the token is bound to.
    #[serde(default, rename = "x5t#S256", skip_serializing_if = "Option::is_none")]
    pub x5t_s256: Option<CertBinding>,
}

impl Confirmation {
    /// `{"jkt": …}`: the token endpoint binds a token to the key of a verified proof.
    pub fn dpop(jkt: Jkt) -> Self {
        Self { jkt: Some(jkt), x5t_s256: None }
    }

    /// `{"x5t#S256": …}`: the token endpoint binds a token to the client certificate.
    pub fn mtls(binding: CertBinding) -> Self {
        Self { jkt: None, x5t_s256: Some(binding) }
    }

    /// Whether the token is bound to anything (R62: trading and withdrawal scopes require it).
    pub fn is_sender_constrained(&self) -> bool {
        self.jkt.is_some() || self.x5t_s256.is_some()
    }

    /// Whether the token is DPoP-bound, so it must be presented with the `DPoP` scheme and a
    /// proof, never as `Bearer` (RFC 9449 §7.2, R60).
    pub fn requires_dpop(&self) -> bool {
        self.jkt.is_some()
    }
}

/// The `ath` value of an access token: base64url(SHA-256(token)) over the exact token string
/// (RFC 9449 §4.2).
pub fn ath_for(access_token: &str) -> String {
    b64url_sha256(access_token.as_bytes())
}

/// base64url (no padding) of SHA-256: the encoding of `ath`, `jkt` and `x5t#S256`.
pub(crate) fn b64url_sha256(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(bytes))
}

/// Whether `s` is the base64url (no padding, canonical) encoding of exactly 32 bytes: the
/// shape of a SHA-256 thumbprint.
pub(crate) fn is_b64url_sha256(s: &str) -> bool {
    // One spare byte: the decoder sizes its output check by the conservative estimate (33).
    let mut out = [0u8; 33];
    s.len() == 43 && URL_SAFE_NO_PAD.decode_slice(s, &mut out).is_ok_and(|n| n == 32)
}

#[cfg(test)]
mod tests;
