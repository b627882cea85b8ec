//! `Content-Digest` (RFC 9530): the body digest an RFC 9421 signature covers, so a signature
//! over the headers also binds the body.
//!
//! The field is an RFC 8941 dictionary of `algorithm=:base64 digest:`. We understand
//! `sha-256` and `sha-512` (RFC 9530 §5, "standard"); other algorithms, including the
//! insecure `md5`, `sha` and checksums, are ignored as §2 allows — but at least one of ours
//! must be present, and **every** one present must match the raw body, compared in constant
//! time. A repeated field, a digest of the wrong length, or a field over 1 KiB is refused, so
//! an attacker cannot add a second, unchecked digest beside a correct one.

use sha2::{Digest as _, Sha256, Sha512};
use subtle::ConstantTimeEq as _;

use super::sf::{self, BareItem, Member};
use super::{Header, RawRequest};

/// Longest accepted `Content-Digest` field.
const MAX_FIELD_LEN: usize = 1024;

/// The supported digests a `Content-Digest` field carries (at least one is `Some`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ContentDigest {
    sha256: Option<[u8; 32]>,
    sha512: Option<[u8; 64]>,
}

impl ContentDigest {
    /// Reads the single `Content-Digest` field of `req`; the error is a reason for logs.
    pub(crate) fn parse(req: &RawRequest<'_>) -> Result<Self, &'static str> {
        let value = match req.header("content-digest") {
            Header::One(v) if v.len() <= MAX_FIELD_LEN => v,
            Header::One(_) => return Err("too long"),
            Header::Absent => return Err("absent"),
            Header::Repeated => return Err("repeated"),
        };
        let dict = sf::parse_dictionary(value).map_err(|_| "not a dictionary")?;
        let (mut sha256, mut sha512) = (None, None);
        for (alg, member) in dict {
            let Member::Item(sf::Item { bare: BareItem::ByteSeq(bytes), .. }) = member else {
                return Err("value is not a byte sequence");
            };
            match alg.as_ref() {
                "sha-256" => sha256 = Some(bytes.try_into().map_err(|_| "sha-256 length")?),
                "sha-512" => sha512 = Some(bytes.try_into().map_err(|_| "sha-512 length")?),
                _ => {}
            }
        }
        if sha256.is_none() && sha512.is_none() {
            return Err("no sha-256 or sha-512");
        }
        Ok(Self { sha256, sha512 })
    }

    /// Whether every digest present matches `body`.
    pub(crate) fn matches(&self, body: &[u8]) -> bool {
        let ok256 = self.sha256.is_none_or(|want| bool::from(want.ct_eq(Sha256::digest(body).as_slice())));
        let ok512 = self.sha512.is_none_or(|want| bool::from(want.ct_eq(Sha512::digest(body).as_slice())));
        ok256 && ok512
    }
}
