//! Certificate-bound tokens (RFC 8705 §3, R61): `cnf["x5t#S256"]` = base64url(SHA-256(DER of
//! the client certificate)), compared with the certificate of the connection the token
//! arrives on.
//!
//! What this module does: compute the thumbprint ([`CertBinding::from_der`]), compare it in
//! constant time ([`CertBinding::matches`], [`check_cert_binding`]), and turn the certificate
//! a trusted TLS-terminating proxy forwards in a header into DER ([`cert_from_proxy_header`]:
//! nginx `$ssl_client_escaped_cert`, i.e. URL-encoded PEM; plain PEM; or bare base64 DER),
//! strictly and within [`MAX_CERT_HEADER_LEN`].
//!
//! What it does **not** do: X.509 path validation, expiry, revocation or key usage. The TLS
//! layer (or the proxy, with `ssl_verify_client on`) validates the chain against the client CA
//! before the handshake completes; here only the outer DER framing is checked so that garbage
//! is refused early. The thumbprint binds the token to the exact certificate bytes, so a
//! forged or re-encoded certificate never matches.
//!
//! Server contract (R61): take the certificate from the TLS connection, or from the proxy
//! header **only** when the peer address is an allow-listed proxy (a client-supplied header
//! from anyone else is ignored, and the proxy must overwrite it). A token bound to a
//! certificate, presented without one or with another, is `401 invalid_token`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::{Confirmation, is_b64url_sha256};

/// Longest accepted certificate header value, in bytes (before percent-decoding).
pub const MAX_CERT_HEADER_LEN: usize = 16 * 1024;

/// Why a certificate binding or a forwarded certificate was refused. Every variant answers
/// `401 invalid_token` at a resource server ([`MtlsError::status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MtlsError {
    /// The token has no `x5t#S256` confirmation.
    #[error("mtls_not_cert_bound")]
    NotCertBound,
    /// The token is certificate-bound but the request came without a client certificate.
    #[error("mtls_cert_missing")]
    MissingCert,
    /// The certificate is not the one the token is bound to.
    #[error("mtls_cert_mismatch")]
    Mismatch,
    /// The forwarded certificate header is longer than [`MAX_CERT_HEADER_LEN`].
    #[error("mtls_cert_too_large")]
    TooLarge,
    /// The forwarded header is not a certificate: bad percent-encoding, PEM armour, base64 or
    /// DER framing.
    #[error("mtls_cert_malformed: {0}")]
    Malformed(&'static str),
    /// More than one certificate (a chain) where exactly the client's is expected.
    #[error("mtls_multiple_certs")]
    MultipleCerts,
}

impl MtlsError {
    /// The stable error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotCertBound => "mtls_not_cert_bound",
            Self::MissingCert => "mtls_cert_missing",
            Self::Mismatch => "mtls_cert_mismatch",
            Self::TooLarge => "mtls_cert_too_large",
            Self::Malformed(_) => "mtls_cert_malformed",
            Self::MultipleCerts => "mtls_multiple_certs",
        }
    }

    /// The HTTP status at a resource server: 401 (fail closed, R61).
    pub fn status(&self) -> u16 {
        401
    }

    /// The OAuth error (RFC 6750 §3.1, RFC 8705 §3).
    pub fn oauth_error(&self) -> &'static str {
        "invalid_token"
    }
}

/// The `x5t#S256` confirmation value: base64url(SHA-256(DER certificate)), 43 characters.
/// Compared in constant time.
#[derive(Clone, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CertBinding(String);

impl CertBinding {
    /// The binding of a DER certificate (token endpoint: the client's certificate).
    pub fn from_der(der: &[u8]) -> Self {
        Self(URL_SAFE_NO_PAD.encode(Sha256::digest(der)))
    }

    /// A binding from its text (a token's `cnf["x5t#S256"]`), if it has the right shape.
    pub fn parse(s: &str) -> Option<Self> {
        is_b64url_sha256(s).then(|| Self(s.to_owned()))
    }

    /// The base64url text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether `presented_der` (the connection's client certificate) is the bound one; the
    /// thumbprints are compared in constant time.
    pub fn matches(&self, presented_der: &[u8]) -> bool {
        let presented = Self::from_der(presented_der);
        self.0.len() == presented.0.len() && bool::from(self.0.as_bytes().ct_eq(presented.0.as_bytes()))
    }
}

impl PartialEq for CertBinding {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len() && bool::from(self.0.as_bytes().ct_eq(other.0.as_bytes()))
    }
}

// Equal values have equal bytes, so hashing the bytes agrees with the constant-time `eq`.
impl std::hash::Hash for CertBinding {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl std::fmt::Debug for CertBinding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CertBinding({})", self.0)
    }
}

impl TryFrom<String> for CertBinding {
    type Error = &'static str;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        if is_b64url_sha256(&s) { Ok(Self(s)) } else { Err("not a SHA-256 certificate thumbprint") }
    }
}

impl From<CertBinding> for String {
    fn from(b: CertBinding) -> Self {
        b.0
    }
}

/// The resource-server check for a certificate-bound token: `Ok` only when the token's `cnf`
/// has an `x5t#S256` and `presented_der` is that certificate.
pub fn check_cert_binding(cnf: &Confirmation, presented_der: Option<&[u8]>) -> Result<(), MtlsError> {
    let binding = cnf.x5t_s256.as_ref().ok_or(MtlsError::NotCertBound)?;
    let der = presented_der.ok_or(MtlsError::MissingCert)?;
    if binding.matches(der) { Ok(()) } else { Err(MtlsError::Mismatch) }
}

/// Strict percent-decoding: `%XX` with two hex digits; `+` stays `+` (not form encoding).
fn percent_decode(value: &[u8]) -> Result<Vec<u8>, MtlsError> {
    let mut out = Vec::with_capacity(value.len());
    let mut rest = value;
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'%' {
            let (hex, tail) = tail.split_at_checked(2).ok_or(MtlsError::Malformed("truncated percent-encoding"))?;
            let text = std::str::from_utf8(hex).map_err(|_| MtlsError::Malformed("bad percent-encoding"))?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return Err(MtlsError::Malformed("bad percent-encoding"));
            }
            out.push(u8::from_str_radix(text, 16).map_err(|_| MtlsError::Malformed("bad percent-encoding"))?);
            rest = tail;
        } else {
            out.push(b);
            rest = tail;
        }
    }
    Ok(out)
}

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The DER certificate in a header set by a trusted proxy: URL-encoded PEM (nginx
/// `$ssl_client_escaped_cert`), plain PEM, or bare standard base64 of the DER. Exactly one
/// certificate, at most [`MAX_CERT_HEADER_LEN`] bytes, with sound outer DER framing. Call it
/// only for requests from an allow-listed proxy address.
pub fn cert_from_proxy_header(value: &[u8]) -> Result<Vec<u8>, MtlsError> {
    if value.len() > MAX_CERT_HEADER_LEN {
        return Err(MtlsError::TooLarge);
    }
    let decoded = percent_decode(value.trim_ascii())?;
    let text = std::str::from_utf8(&decoded).map_err(|_| MtlsError::Malformed("not ASCII"))?.trim_ascii();
    if text.is_empty() {
        return Err(MtlsError::MissingCert);
    }
    let body = if text.starts_with("-----") {
        let inner = text
            .strip_prefix(BEGIN)
            .and_then(|t| t.strip_suffix(END))
            .ok_or(MtlsError::Malformed("not a PEM CERTIFICATE"))?;
        if inner.contains('-') {
            return Err(MtlsError::MultipleCerts);
        }
        inner
    } else {
        text
    };
    // RFC 7468 §3: line breaks and other white space may separate the base64 lines.
    let b64: Vec<u8> = body.bytes().filter(|b| !matches!(b, b' ' | b'\t' | b'\r' | b'\n')).collect();
    let der = STANDARD.decode(&b64).map_err(|_| MtlsError::Malformed("bad base64"))?;
    check_der_framing(&der)?;
    Ok(der)
}

/// Checks the outer framing of a DER certificate: one definite-length `SEQUENCE` (minimal
/// length encoding) spanning exactly the input and starting with a `SEQUENCE`
/// (`tbsCertificate`). Not X.509 validation (see the module docs).
pub fn check_der_framing(der: &[u8]) -> Result<(), MtlsError> {
    let bad = MtlsError::Malformed("not a DER certificate");
    let (&tag, rest) = der.split_first().ok_or(bad)?;
    let (&first, rest) = rest.split_first().ok_or(bad)?;
    let (len, rest) = match first {
        0..=0x7f => (usize::from(first), rest),
        0x81 => match rest.split_first() {
            Some((&l, rest)) if l >= 0x80 => (usize::from(l), rest),
            _ => return Err(bad),
        },
        0x82 => match rest.split_first_chunk::<2>() {
            Some((l, rest)) if l[0] != 0 => (usize::from(u16::from_be_bytes(*l)), rest),
            _ => return Err(bad),
        },
        _ => return Err(bad),
    };
    if tag != 0x30 || rest.len() != len || rest.first() != Some(&0x30) {
        return Err(bad);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::testdata::must;

    /// Two self-signed P-256 test certificates (`openssl req -x509 -newkey ec …`); their
    /// thumbprints were computed with `openssl x509 -outform DER | openssl dgst -sha256`.
    const CERT_A: &str = "-----BEGIN CERTIFICATE-----
MIIBhjCCASygAwIBAgIBATAKBggqhkjOPQQDAjAiMSAwHgYDVQQDDBdnYXRlaG91
c2UtdGVzdC1jbGllbnQtYTAeFw0yNjExMjkxNzE5MzNaFw0zNjExMjYxNzE5MzNa
MCIxIDAeBgNVBAMMF2dhdGVob3VzZS10ZXN0LWNsaWVudC1hMFkwEwYHKoZIzj0C
AQYIKoZIzj0DAQcDQgAEfc5ZaDKyvME8loVPcM/nGm8DMXz4LryJQnlf3W2i6WCe
RXYp0R5dwuYIt6Ug+jg3vTGlHRuzoSUoJgMenGz7+aNTMFEwHQYDVR0OBBYEFIJ+
pbngTAaw/ugBVAhTgfzvs9dVMB8GA1UdIwQYMBaAFIJ+pbngTAaw/ugBVAhTgfzv
s9dVMA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIgZGumrqUeaYZ3
9cfB6ccF280e1m8LvZAvEd7SdnrmACECIQCWJI0/OlPZf9wfSfFQqInNqCgWdEs/
xKYqVy211oT+2A==
-----END CERTIFICATE-----
";
    const CERT_A_X5T: &str = "LhkZZ2wcEDGlyuhWlHsxY-e3WGgd0zeOam_XglfUqJg";
    const CERT_B: &str = "-----BEGIN CERTIFICATE-----
MIIBhjCCASygAwIBAgIBATAKBggqhkjOPQQDAjAiMSAwHgYDVQQDDBdnYXRlaG91
c2UtdGVzdC1jbGllbnQtYjAeFw0yNjExMjkxNzE5MzNaFw0zNjExMjYxNzE5MzNa
MCIxIDAeBgNVBAMMF2dhdGVob3VzZS10ZXN0LWNsaWVudC1iMFkwEwYHKoZIzj0C
AQYIKoZIzj0DAQcDQgAEP80lt5kinpvcQo/Z+6fBEdpNBKvGndqEqVVYll9mSZoS
jy68NYd4Np2IG2PVrmW72R+AKJYxyXY84hcLA06rtqNTMFEwHQYDVR0OBBYEFIbp
3cHWV3XVegbeY/LLpxVv0RP6MB8GA1UdIwQYMBaAFIbp3cHWV3XVegbeY/LLpxVv
0RP6MA8GA1UdEwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSAAwRQIhAPdjJ/7tLwNj
dgNBQS/Y2U027GtBrKyOj7MMd0o5vFoxAiBIKKZimH9vgBXBqlNgZOOweurHTatc
HFBFa6aSmPDuRg==
-----END CERTIFICATE-----
";
    const CERT_B_X5T: &str = "rwttsumozn5Br2GoBmqSc-jMKWzYeW5yz2ugvFjLZns";

    /// nginx `$ssl_client_escaped_cert`: every byte outside the unreserved set escaped.
    fn escaped(pem: &str) -> String {
        pem.bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect()
    }

    fn der(pem: &str) -> Vec<u8> {
        must!(cert_from_proxy_header(pem.as_bytes()))
    }

    #[test]
    fn thumbprints_match_openssl() {
        assert_eq!(CertBinding::from_der(&der(CERT_A)).as_str(), CERT_A_X5T);
        assert_eq!(CertBinding::from_der(&der(CERT_B)).as_str(), CERT_B_X5T);
        assert_eq!(der(CERT_A).len(), 394);
    }

    #[test]
    fn every_forwarding_form_gives_the_same_der() {
        let a = der(CERT_A);
        assert_eq!(der(&escaped(CERT_A)), a);
        assert_eq!(der(&CERT_A.replace('\n', "\r\n")), a);
        assert_eq!(der(&CERT_A.replace('\n', "\n\t")), a);
        assert_eq!(der(&STANDARD.encode(&a)), a);
        assert_eq!(der(&format!("  {}  ", escaped(CERT_A))), a);
    }

    #[test]
    fn token_from_cert_a_on_a_connection_with_cert_b_is_refused() {
        let (a, b) = (der(CERT_A), der(CERT_B));
        let cnf = Confirmation::mtls(CertBinding::from_der(&a));
        assert_eq!(check_cert_binding(&cnf, Some(&a)), Ok(()));
        assert_eq!(check_cert_binding(&cnf, Some(&b)), Err(MtlsError::Mismatch));
        assert_eq!(check_cert_binding(&cnf, None), Err(MtlsError::MissingCert));
        assert_eq!(check_cert_binding(&Confirmation::default(), Some(&a)), Err(MtlsError::NotCertBound));
        assert!(CertBinding::from_der(&a).matches(&a));
        assert!(!CertBinding::from_der(&a).matches(&b));
        for e in [MtlsError::Mismatch, MtlsError::MissingCert, MtlsError::Malformed("x")] {
            assert_eq!((e.status(), e.oauth_error()), (401, "invalid_token"));
        }
    }

    #[test]
    fn cnf_claim_round_trips_with_the_rfc8705_member_name() {
        let cnf = Confirmation::mtls(must!(CertBinding::parse(CERT_A_X5T)));
        let json = must!(serde_json::to_string(&cnf));
        assert_eq!(json, format!(r#"{{"x5t#S256":"{CERT_A_X5T}"}}"#));
        let back: Confirmation = must!(serde_json::from_str(&json));
        assert_eq!(back, cnf);
        assert!(back.is_sender_constrained() && !back.requires_dpop());
        assert!(serde_json::from_str::<Confirmation>(r#"{"x5t#S256":"short"}"#).is_err());
        assert!(CertBinding::parse(&format!("{CERT_A_X5T}=")).is_none());
    }

    #[test]
    fn malformed_forwarded_certificates_are_refused() {
        let a = der(CERT_A);
        let chain = format!("{CERT_A}{CERT_B}");
        let cases: Vec<(String, MtlsError)> = vec![
            ("A".repeat(MAX_CERT_HEADER_LEN + 1), MtlsError::TooLarge),
            (String::new(), MtlsError::MissingCert),
            (chain.clone(), MtlsError::MultipleCerts),
            (escaped(&chain), MtlsError::MultipleCerts),
            ("%zz".into(), MtlsError::Malformed("bad percent-encoding")),
            ("%4".into(), MtlsError::Malformed("truncated percent-encoding")),
            (CERT_A.replace("CERTIFICATE-----\n", "PUBLIC KEY-----\n"), MtlsError::Malformed("not a PEM CERTIFICATE")),
            (CERT_A.replace("xKYq", "xK*q"), MtlsError::Malformed("bad base64")),
            (STANDARD.encode(&a[..a.len() - 1]), MtlsError::Malformed("not a DER certificate")),
            (STANDARD.encode([&a[..], &[0]].concat()), MtlsError::Malformed("not a DER certificate")),
            (STANDARD.encode([0x30, 0x03, 0x02, 0x01, 0x00]), MtlsError::Malformed("not a DER certificate")),
            (STANDARD.encode([0x30, 0x81, 0x02, 0x30, 0x00]), MtlsError::Malformed("not a DER certificate")),
            (STANDARD.encode([0x31, 0x02, 0x30, 0x00]), MtlsError::Malformed("not a DER certificate")),
            ("MA==".into(), MtlsError::Malformed("not a DER certificate")),
        ];
        for (input, want) in cases {
            assert_eq!(cert_from_proxy_header(input.as_bytes()), Err(want), "{:?}", &input[..input.len().min(60)]);
        }
        // '+' is a base64 character, not a space: form-decoding it would corrupt the cert.
        assert!(CERT_A.contains('+'));
        assert_eq!(cert_from_proxy_header(CERT_A.replace('\n', "%0A").as_bytes()), Ok(a));
    }
}
