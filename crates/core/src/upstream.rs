//! The identity assertion gatehouse adds to requests it forwards to the exchange back end.
//!
//! After a signed request is verified and authorised, the proxy removes every client-sent
//! header in the `X-Gatehouse-` namespace and adds one `X-Gatehouse-Identity` header:
//!
//! ```text
//! v1;user=<uuid>;key=<uuid>;scopes=view_assets,place_orders;dialect=upbit;ts=<unix ms>;sig=<base64url>
//! ```
//!
//! `sig` is HMAC-SHA-256, under a secret shared with the upstream, over
//! `"gatehouse-identity-v1\n" user \n key \n scopes \n dialect \n ts \n METHOD \n path`. The
//! method and path are part of the MAC, so an assertion cannot be moved to another route, and
//! `ts` lets the upstream refuse stale assertions. The upstream needs only this module (or the
//! ten lines it describes) to check who is calling; it never sees exchange signatures.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::apikey::{ApiKeyId, ScopeSet};
use crate::clock::{Span, Timestamp};
use crate::ids::UserId;
use crate::secret::SecretBytes;

/// Header name.
pub const IDENTITY_HEADER: &str = "x-gatehouse-identity";
/// Prefix of every header gatehouse owns; client-sent ones are stripped.
pub const HEADER_PREFIX: &str = "x-gatehouse-";

/// Who a forwarded request acts for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The account.
    pub user: UserId,
    /// The API key that signed the request.
    pub key: ApiKeyId,
    /// The key's scopes.
    pub scopes: ScopeSet,
    /// The signing dialect (`upbit`, `binance`, `rfc9421`).
    pub dialect: String,
    /// When gatehouse made the assertion.
    pub ts: Timestamp,
}

/// Why an assertion was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    /// Not of the expected shape.
    #[error("malformed identity assertion")]
    Malformed,
    /// The MAC does not match (wrong secret, tampered, or another method/path).
    #[error("identity assertion signature invalid")]
    BadSignature,
    /// Older than the accepted age (or from the future).
    #[error("identity assertion expired")]
    Stale,
}

/// The MAC over an assertion's `user`, `key`, `scopes`, `dialect` and `ts` values, exactly as
/// they appear in the header, and the request's method and path.
fn mac(keyed: &Hmac<Sha256>, fields: [&str; 5], method: &str, path: &str) -> Hmac<Sha256> {
    let mut m = keyed.clone();
    m.update(b"gatehouse-identity-v1\n");
    for part in fields.into_iter().chain([method, path]) {
        m.update(part.as_bytes());
        m.update(b"\n");
    }
    m
}

/// Signs and checks identity assertions under one secret: the HMAC key schedule (two SHA-256
/// blocks) is done once here, not per assertion.
#[derive(Clone)]
pub struct IdentitySigner {
    keyed: Option<Hmac<Sha256>>,
}

impl std::fmt::Debug for IdentitySigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdentitySigner(..)")
    }
}

impl IdentitySigner {
    /// A signer for `secret`.
    pub fn new(secret: &SecretBytes) -> Self {
        Self { keyed: <Hmac<Sha256>>::new_from_slice(secret.expose()).ok() }
    }

    /// The header value asserting `id` for `method path`: the same bytes as [`sign`].
    ///
    /// Built in one buffer: the MAC covers the value's own `user` … `ts` fields, so they are
    /// written once and fed to the MAC from there (as [`verify`](Self::verify) reads them).
    pub fn sign(&self, id: &Identity, method: &str, path: &str) -> String {
        use std::fmt::Write as _;
        let mut out = String::with_capacity(160 + id.dialect.len());
        // (start, end) of the user, key, scopes, dialect and ts values in `out`
        let mut fields = [(0usize, 0usize); 5];
        for (i, name) in ["v1;user=", ";key=", ";scopes=", ";dialect=", ";ts="].into_iter().enumerate() {
            out.push_str(name);
            let start = out.len();
            let _ = match i {
                0 => write!(out, "{}", id.user),
                1 => write!(out, "{}", id.key),
                2 => {
                    for (n, s) in id.scopes.iter().enumerate() {
                        if n > 0 {
                            out.push(',');
                        }
                        out.push_str(s.name());
                    }
                    Ok(())
                }
                3 => out.write_str(&id.dialect),
                _ => write!(out, "{}", id.ts.as_millis()),
            };
            fields[i] = (start, out.len());
        }
        if let Some(keyed) = &self.keyed {
            let tag = mac(keyed, fields.map(|(start, end)| &out[start..end]), method, path).finalize().into_bytes();
            out.push_str(";sig=");
            URL_SAFE_NO_PAD.encode_string(tag, &mut out);
        } else {
            out.push_str(";sig=");
        }
        out
    }

    /// Checks a header value for `method path` at `now`, accepting assertions up to `max_age`
    /// old (and at most 5 s in the future, for clock skew). The MAC is checked over the
    /// fields as sent, so only the exact bytes [`sign`](Self::sign) wrote pass.
    pub fn verify(
        &self,
        header: &str,
        method: &str,
        path: &str,
        now: Timestamp,
        max_age: Span,
    ) -> Result<Identity, IdentityError> {
        let mut fields = header.split(';');
        if fields.next() != Some("v1") {
            return Err(IdentityError::Malformed);
        }
        let mut get = |name: &str| -> Result<&str, IdentityError> {
            let f = fields.next().ok_or(IdentityError::Malformed)?;
            f.strip_prefix(name).and_then(|r| r.strip_prefix('=')).ok_or(IdentityError::Malformed)
        };
        let raw = [get("user")?, get("key")?, get("scopes")?, get("dialect")?, get("ts")?];
        let sig = URL_SAFE_NO_PAD.decode(get("sig")?).map_err(|_| IdentityError::Malformed)?;
        let [user, key, scopes, dialect, ts] = raw;
        let user = UserId::parse(user).ok_or(IdentityError::Malformed)?;
        let key = ApiKeyId::parse(key).ok_or(IdentityError::Malformed)?;
        let scopes =
            ScopeSet::parse_names(scopes.split(',').filter(|s| !s.is_empty())).map_err(|_| IdentityError::Malformed)?;
        let ts = Timestamp::from_millis(ts.parse().map_err(|_| IdentityError::Malformed)?);
        let keyed = self.keyed.as_ref().ok_or(IdentityError::BadSignature)?;
        mac(keyed, raw, method, path).verify_slice(&sig).map_err(|_| IdentityError::BadSignature)?;
        if now.since(ts) > max_age || ts.since(now) > Span::secs(5) {
            return Err(IdentityError::Stale);
        }
        Ok(Identity { user, key, scopes, dialect: dialect.to_owned(), ts })
    }
}

/// The header value asserting `id` for `method path`.
pub fn sign(secret: &SecretBytes, id: &Identity, method: &str, path: &str) -> String {
    IdentitySigner::new(secret).sign(id, method, path)
}

/// Checks a header value for `method path` at `now` (see [`IdentitySigner::verify`]).
pub fn verify(
    secret: &SecretBytes,
    header: &str,
    method: &str,
    path: &str,
    now: Timestamp,
    max_age: Span,
) -> Result<Identity, IdentityError> {
    IdentitySigner::new(secret).verify(header, method, path, now, max_age)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests fail loudly
mod tests {
    use super::*;
    use crate::apikey::Scope;
    use crate::rng::SeededRng;

    fn identity() -> Identity {
        let rng = SeededRng::new(1);
        let mut scopes = ScopeSet::read_only_default();
        scopes.insert(Scope::PlaceOrders);
        Identity {
            user: UserId::generate(Timestamp::from_secs(1), &rng),
            key: ApiKeyId::generate(&rng),
            scopes,
            dialect: "upbit".into(),
            ts: Timestamp::from_secs(1_800_000_000),
        }
    }

    /// The assertion as first written (one string per field, formatted twice): the one-buffer
    /// signer must produce exactly these bytes, which upstreams already verify.
    fn reference_sign(secret: &SecretBytes, id: &Identity, method: &str, path: &str) -> String {
        let scopes = id.scopes.iter().map(|x| x.name()).collect::<Vec<_>>().join(",");
        let mut m = <Hmac<Sha256>>::new_from_slice(secret.expose()).unwrap();
        m.update(b"gatehouse-identity-v1\n");
        for part in [
            id.user.to_string(),
            id.key.to_string(),
            scopes.clone(),
            id.dialect.clone(),
            id.ts.as_millis().to_string(),
            method.to_owned(),
            path.to_owned(),
        ] {
            m.update(part.as_bytes());
            m.update(b"\n");
        }
        let sig = URL_SAFE_NO_PAD.encode(m.finalize().into_bytes());
        format!(
            "v1;user={};key={};scopes={scopes};dialect={};ts={};sig={sig}",
            id.user,
            id.key,
            id.dialect,
            id.ts.as_millis()
        )
    }

    #[test]
    fn one_buffer_signer_matches_the_reference_bytes() {
        let k = SecretBytes::new(vec![5; 32]);
        let signer = IdentitySigner::new(&k);
        let mut id = identity();
        for (scopes, dialect, ts) in [
            (id.scopes, "upbit", 1_800_000_000_000),
            (ScopeSet::default(), "binance", 0),
            (ScopeSet::parse_names(["withdraw", "view_assets", "deposit"]).unwrap(), "rfc9421", -5),
        ] {
            id.scopes = scopes;
            id.dialect = dialect.into();
            id.ts = Timestamp::from_millis(ts);
            for (method, path) in [("GET", "/v1/accounts"), ("DELETE", ""), ("POST", "/api/v3/order?x=1")] {
                let h = signer.sign(&id, method, path);
                assert_eq!(h, reference_sign(&k, &id, method, path));
                assert_eq!(h, sign(&k, &id, method, path));
            }
        }
    }

    #[test]
    fn round_trip_and_binding() {
        let k = SecretBytes::new(vec![5; 32]);
        let id = identity();
        let h = sign(&k, &id, "POST", "/v1/orders");
        let now = id.ts.plus(Span::secs(1));
        assert_eq!(verify(&k, &h, "POST", "/v1/orders", now, Span::secs(30)), Ok(id.clone()));
        assert_eq!(verify(&k, &h, "DELETE", "/v1/orders", now, Span::secs(30)), Err(IdentityError::BadSignature));
        assert_eq!(verify(&k, &h, "POST", "/v1/withdraws/coin", now, Span::secs(30)), Err(IdentityError::BadSignature));
        let other = SecretBytes::new(vec![6; 32]);
        assert_eq!(verify(&other, &h, "POST", "/v1/orders", now, Span::secs(30)), Err(IdentityError::BadSignature));
        let late = id.ts.plus(Span::secs(31));
        assert_eq!(verify(&k, &h, "POST", "/v1/orders", late, Span::secs(30)), Err(IdentityError::Stale));
        // Widening the scopes breaks the MAC.
        let forged = h.replace("scopes=", "scopes=withdraw,");
        assert_eq!(verify(&k, &forged, "POST", "/v1/orders", now, Span::secs(30)), Err(IdentityError::BadSignature));
        assert_eq!(verify(&k, "garbage", "POST", "/", now, Span::secs(30)), Err(IdentityError::Malformed));
        // The MAC covers the fields as sent: a timestamp written another way is refused.
        let ms = id.ts.as_millis().to_string();
        let padded = h.replace(&format!("ts={ms}"), &format!("ts=0{ms}"));
        assert_eq!(verify(&k, &padded, "POST", "/v1/orders", now, Span::secs(30)), Err(IdentityError::BadSignature));
        // One signer keyed once verifies what it signed.
        let signer = IdentitySigner::new(&k);
        assert_eq!(signer.verify(&signer.sign(&id, "GET", "/x"), "GET", "/x", now, Span::secs(30)), Ok(id.clone()));
    }
}
