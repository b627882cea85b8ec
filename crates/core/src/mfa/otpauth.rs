//! `otpauth://totp/…` provisioning URIs (Google Authenticator "Key Uri Format"), and the
//! enrolment QR code rendered as inline SVG.
//!
//! # Building
//!
//! [`OtpAuthUri::to_uri`] writes
//! `otpauth://totp/<issuer>:<account>?secret=<base32>&issuer=<issuer>&algorithm=SHA1&digits=6&period=30`:
//! issuer and account are percent-encoded with everything but RFC 3986 unreserved characters
//! (`A–Z a–z 0–9 - . _ ~`) escaped, so a space is `%20` (never `+`), `@` is `%40`, and a
//! `:`, `&`, `?` or `#` inside a name can never be read as syntax. The secret is unpadded
//! uppercase base32. All three parameters are always written, even at their defaults, so an
//! app that guesses defaults differently still gets the right ones. Names containing `:` or
//! control characters, and names with leading or trailing whitespace, are refused (the format
//! forbids a colon inside either name, and allows spaces before the account, which a parser
//! then drops).
//!
//! # Parsing (import, R27)
//!
//! [`OtpAuthUri::parse`] is strict; it refuses rather than guesses:
//! * at most [`MAX_URI_LEN`] bytes, printable ASCII only (RFC 3986); no fragment;
//! * scheme `otpauth` and type `totp` (ASCII case-insensitive); `hotp` is refused;
//! * the label is percent-decoded (strictly: `%` + two hex digits, valid UTF-8, no control
//!   characters) and split at its only `:` (literal or `%3A`) into issuer and account; leading
//!   spaces of the account are dropped, as the format allows; the account must not be empty;
//! * query parameters: `secret` (required, strict base32, 128–512 bits), `issuer`,
//!   `algorithm` (`SHA1`/`SHA256`/`SHA512`), `digits` (`6` or `8`; `10` is refused), `period`
//!   ([`TotpParams::MIN_PERIOD`]..=[`TotpParams::MAX_PERIOD`] seconds), numbers written as
//!   plain decimals without sign or leading zero; `image` (FreeOTP's logo)
//!   is ignored; any other parameter, a duplicate parameter, or an empty pair is refused. In
//!   query values `+` means a space (form encoding, as every URI library decodes it);
//! * if the issuer appears both in the label and as a parameter, they must be equal.
//!
//! # Attack stopped
//!
//! A crafted import URI cannot smuggle a weak seed, an unsupported code length or an absurd
//! period past validation, nor panic the parser (property-tested). The URI and the QR code
//! contain the seed, so both are returned as [`SecretString`] and must be shown only during
//! enrolment (R26).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use qrcode::render::svg;
use qrcode::{EcLevel, QrCode};

use super::totp::{Algorithm, Digits, TotpError, TotpParams, TotpSecret};
use crate::secret::SecretString;

/// Longest URI accepted by [`OtpAuthUri::parse`], in bytes.
pub const MAX_URI_LEN: usize = 2048;

/// Longest issuer or account name, in characters.
pub const MAX_NAME_CHARS: usize = 128;

/// Everything except RFC 3986 unreserved characters is escaped.
const ESCAPE: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Why a URI could not be built or parsed. Variants never carry the secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OtpAuthError {
    /// More than [`MAX_URI_LEN`] bytes.
    #[error("otpauth URI is too long")]
    TooLong,
    /// Not an `otpauth://` URI, or not plain printable ASCII, or it has a fragment.
    #[error("not an otpauth URI")]
    NotOtpAuth,
    /// The type is not `totp` (for example `hotp`).
    #[error("only otpauth://totp URIs are supported")]
    UnsupportedType,
    /// Bad percent-encoding, invalid UTF-8 or a control character.
    #[error("invalid percent-encoding in otpauth URI")]
    Encoding,
    /// Issuer or account name empty, too long, with surrounding whitespace, or containing `:` or
    /// a control character.
    #[error("invalid issuer or account name")]
    Name,
    /// A query parameter this parser does not know.
    #[error("unknown otpauth parameter {0:?}")]
    UnknownParameter(String),
    /// The same parameter given twice, or an empty `&&` pair.
    #[error("duplicate or empty otpauth parameter")]
    DuplicateParameter,
    /// No `secret=` parameter.
    #[error("otpauth URI has no secret")]
    MissingSecret,
    /// The label's issuer and the `issuer=` parameter differ.
    #[error("issuer in label and issuer parameter differ")]
    IssuerMismatch,
    /// Secret, algorithm, digits or period failed validation.
    #[error(transparent)]
    Totp(#[from] TotpError),
    /// The QR encoder refused the data (too long for any QR version).
    #[error("cannot encode URI as a QR code")]
    Qr,
}

/// A TOTP factor's provisioning data: who it is for, the seed, and the parameters.
#[derive(Debug, Clone)]
pub struct OtpAuthUri {
    issuer: Option<String>,
    account: String,
    secret: TotpSecret,
    params: TotpParams,
}

fn check_name(name: &str) -> Result<(), OtpAuthError> {
    let ok = !name.is_empty()
        && name.trim() == name
        && name.chars().count() <= MAX_NAME_CHARS
        && !name.contains(':')
        && !name.chars().any(char::is_control);
    if ok { Ok(()) } else { Err(OtpAuthError::Name) }
}

/// Strict percent-decoding: every `%` starts a two-hex-digit escape, the result is UTF-8 and
/// has no control characters. With `form`, `+` is a space (query values).
fn decode_component(raw: &str, form: bool) -> Result<String, OtpAuthError> {
    let bytes = raw.as_bytes();
    for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'%') {
        let hex = bytes.get(i + 1..i + 3).ok_or(OtpAuthError::Encoding)?;
        if !hex.iter().all(u8::is_ascii_hexdigit) {
            return Err(OtpAuthError::Encoding);
        }
    }
    let spaced;
    let raw = if form {
        spaced = raw.replace('+', " ");
        spaced.as_str()
    } else {
        raw
    };
    let text = percent_decode_str(raw).decode_utf8().map_err(|_| OtpAuthError::Encoding)?;
    if text.chars().any(char::is_control) {
        return Err(OtpAuthError::Encoding);
    }
    Ok(text.into_owned())
}

impl OtpAuthUri {
    /// Provisioning data for a new enrolment. `issuer` is the service name shown in the app
    /// (e.g. `Gatehouse`), `account` the user's login. Use [`TotpParams::ENROLMENT`] for new
    /// factors.
    pub fn new(issuer: &str, account: &str, secret: TotpSecret, params: TotpParams) -> Result<Self, OtpAuthError> {
        check_name(issuer)?;
        check_name(account)?;
        Ok(Self { issuer: Some(issuer.to_owned()), account: account.to_owned(), secret, params })
    }

    /// The issuer, if the URI named one.
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The account name.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// The seed.
    pub fn secret(&self) -> &TotpSecret {
        &self.secret
    }

    /// The validated parameters.
    pub fn params(&self) -> &TotpParams {
        &self.params
    }

    /// The `otpauth://totp/…` text. Contains the seed: show it only during enrolment.
    pub fn to_uri(&self) -> SecretString {
        let account = utf8_percent_encode(&self.account, ESCAPE);
        let secret = self.secret.to_base32();
        let tail = format!(
            "algorithm={}&digits={}&period={}",
            self.params.algorithm().as_str(),
            self.params.digits().count(),
            self.params.period()
        );
        SecretString::new(match &self.issuer {
            Some(issuer) => {
                let issuer = utf8_percent_encode(issuer, ESCAPE);
                format!("otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&{tail}", secret.expose())
            }
            None => format!("otpauth://totp/{account}?secret={}&{tail}", secret.expose()),
        })
    }

    /// The URI as a QR code in an inline `<svg>` element (no XML declaration, no raster
    /// image, no `data:` URL), ready to embed in the enrolment page. Error correction level M,
    /// with the quiet zone. It encodes the seed: treat it like the seed.
    pub fn to_svg_qr(&self) -> Result<SecretString, OtpAuthError> {
        let uri = self.to_uri();
        let code =
            QrCode::with_error_correction_level(uri.expose().as_bytes(), EcLevel::M).map_err(|_| OtpAuthError::Qr)?;
        let image = code.render::<svg::Color<'_>>().min_dimensions(240, 240).quiet_zone(true).build();
        let inline = match image.find("<svg") {
            Some(start) => image.get(start..).unwrap_or_default().to_owned(),
            None => return Err(OtpAuthError::Qr),
        };
        Ok(SecretString::new(inline))
    }

    /// Parses and validates an `otpauth://totp/…` URI for import (see the module
    /// documentation for exactly what is accepted).
    pub fn parse(uri: &str) -> Result<Self, OtpAuthError> {
        if uri.len() > MAX_URI_LEN {
            return Err(OtpAuthError::TooLong);
        }
        if !uri.bytes().all(|b| b.is_ascii_graphic()) || uri.contains('#') {
            return Err(OtpAuthError::NotOtpAuth);
        }
        let (scheme, rest) = uri.split_once("://").ok_or(OtpAuthError::NotOtpAuth)?;
        if !scheme.eq_ignore_ascii_case("otpauth") {
            return Err(OtpAuthError::NotOtpAuth);
        }
        let (kind, rest) = rest.split_once('/').ok_or(OtpAuthError::NotOtpAuth)?;
        if !kind.eq_ignore_ascii_case("totp") {
            return Err(OtpAuthError::UnsupportedType);
        }
        let (label, query) = rest.split_once('?').ok_or(OtpAuthError::MissingSecret)?;

        let label = decode_component(label, false)?;
        let (label_issuer, account) = match label.split_once(':') {
            Some((issuer, account)) => (Some(issuer.to_owned()), account.trim_start_matches(' ').to_owned()),
            None => (None, label),
        };
        check_name(&account)?;
        if let Some(issuer) = &label_issuer {
            check_name(issuer)?;
        }

        let mut secret = None;
        let mut issuer = None;
        let mut algorithm = None;
        let mut digits = None;
        let mut period = None;
        for pair in query.split('&') {
            let (key, raw) = pair.split_once('=').ok_or(OtpAuthError::DuplicateParameter)?;
            let slot = match key {
                "secret" => &mut secret,
                "issuer" => &mut issuer,
                "algorithm" => &mut algorithm,
                "digits" => &mut digits,
                "period" => &mut period,
                "image" => continue,
                other => {
                    let shown: String = other.chars().take(32).collect();
                    return Err(OtpAuthError::UnknownParameter(shown));
                }
            };
            if slot.is_some() {
                return Err(OtpAuthError::DuplicateParameter);
            }
            // Form decoding (`+` as space) copies the text; the seed never needs it (base32 has
            // no `+`, which stays an invalid character), so the seed is not copied around.
            *slot = Some(SecretString::new(decode_component(raw, key != "secret")?));
        }

        let secret = secret.ok_or(OtpAuthError::MissingSecret)?;
        let secret = TotpSecret::from_base32(secret.expose())?;
        let algorithm = match &algorithm {
            Some(a) => Algorithm::parse(a.expose())?,
            None => Algorithm::Sha1,
        };
        let digits = match &digits {
            Some(d) => Digits::from_count(small_number(d.expose()).ok_or(TotpError::Digits)?)?,
            None => Digits::Six,
        };
        let period = match &period {
            Some(p) => small_number(p.expose()).ok_or(TotpError::Period)?,
            None => 30,
        };
        let params = TotpParams::new(algorithm, digits, period)?;

        let issuer = match (label_issuer, issuer) {
            (Some(label), Some(param)) if label != param.expose() => return Err(OtpAuthError::IssuerMismatch),
            (Some(label), _) => Some(label),
            (None, Some(param)) => {
                check_name(param.expose())?;
                Some(param.expose().to_owned())
            }
            (None, None) => None,
        };
        Ok(Self { issuer, account, secret, params })
    }
}

/// A canonical decimal of at most 4 ASCII digits (no sign, no spaces, no leading zero);
/// `None` otherwise.
fn small_number(s: &str) -> Option<u32> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0')) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Timestamp;
    use crate::mfa::totp::code_at;
    use crate::rng::SeededRng;
    use crate::secret::SecretBytes;
    use proptest::prelude::*;

    const RFC_B32: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

    fn rfc_secret() -> TotpSecret {
        let Ok(s) = TotpSecret::from_bytes(SecretBytes::new(b"12345678901234567890".to_vec())) else { unreachable!() };
        s
    }

    fn parse(s: &str) -> Result<OtpAuthUri, OtpAuthError> {
        OtpAuthUri::parse(s)
    }

    #[test]
    fn builds_the_canonical_uri_with_escaped_names() {
        let Ok(u) = OtpAuthUri::new("Gatehouse Exchange", "alice+1@example.com", rfc_secret(), TotpParams::ENROLMENT)
        else {
            unreachable!()
        };
        assert_eq!(
            u.to_uri().expose(),
            format!(
                "otpauth://totp/Gatehouse%20Exchange:alice%2B1%40example.com?secret={RFC_B32}\
                 &issuer=Gatehouse%20Exchange&algorithm=SHA1&digits=6&period=30"
            )
        );
        // Syntax characters inside a name are escaped, so they survive a round trip.
        let Ok(u) = OtpAuthUri::new("A&B?#%/", "x y", rfc_secret(), TotpParams::ENROLMENT) else { unreachable!() };
        let uri = u.to_uri();
        assert!(uri.expose().starts_with("otpauth://totp/A%26B%3F%23%25%2F:x%20y?"), "{}", uri.expose());
        let Ok(back) = parse(uri.expose()) else { unreachable!() };
        assert_eq!((back.issuer(), back.account()), (Some("A&B?#%/"), "x y"));
    }

    #[test]
    fn names_with_colons_or_controls_are_refused_at_build_time() {
        for (issuer, account) in
            [("Gate:house", "alice"), ("Gatehouse", "al:ice"), ("", "alice"), ("G", ""), ("G", "a\nb")]
        {
            assert_eq!(
                OtpAuthUri::new(issuer, account, rfc_secret(), TotpParams::ENROLMENT).err(),
                Some(OtpAuthError::Name),
                "{issuer:?} {account:?}"
            );
        }
        let long = "x".repeat(MAX_NAME_CHARS + 1);
        assert!(OtpAuthUri::new("G", &long, rfc_secret(), TotpParams::ENROLMENT).is_err());
    }

    #[test]
    fn round_trip_preserves_everything() {
        let secret = TotpSecret::generate(&SeededRng::new(4));
        let Ok(params) = TotpParams::new(Algorithm::Sha256, Digits::Eight, 60) else { unreachable!() };
        let Ok(u) = OtpAuthUri::new("Gatehouse", "bob@example.com", secret.clone(), params) else { unreachable!() };
        let Ok(back) = parse(u.to_uri().expose()) else { unreachable!() };
        assert_eq!(back.issuer(), Some("Gatehouse"));
        assert_eq!(back.account(), "bob@example.com");
        assert_eq!(back.params(), &params);
        assert_eq!(back.secret().expose().expose(), secret.expose().expose());
        let now = Timestamp::from_secs(1_700_000_000);
        assert_eq!(code_at(back.secret(), back.params(), now), code_at(&secret, &params, now));
    }

    #[test]
    fn accepts_the_common_variants() {
        // Minimal form: defaults apply.
        let Ok(u) = parse(&format!("otpauth://totp/alice?secret={RFC_B32}")) else { unreachable!() };
        assert_eq!((u.issuer(), u.account(), *u.params()), (None, "alice", TotpParams::ENROLMENT));
        // Encoded colon, space before the account, lowercase secret and algorithm, padding.
        let lower = RFC_B32.to_ascii_lowercase();
        let uri =
            format!("OTPAUTH://TOTP/ACME%3A%20alice?secret={lower}&algorithm=sha512&digits=8&period=30&issuer=ACME");
        let Ok(u) = parse(&uri) else { unreachable!("{uri}") };
        assert_eq!((u.issuer(), u.account()), (Some("ACME"), "alice"));
        assert_eq!(u.params().algorithm(), Algorithm::Sha512);
        // Issuer only as a parameter, `+` as a space in the query, `image` ignored.
        let Ok(u) =
            parse(&format!("otpauth://totp/alice?secret={RFC_B32}&issuer=Big+Corp&image=https%3A%2F%2Fx%2Fy.png"))
        else {
            unreachable!()
        };
        assert_eq!(u.issuer(), Some("Big Corp"));
        // Padded secret with encoded `=`: 20 bytes is 32 characters, no padding needed, so use
        // a 16-byte seed (26 characters + 6 pad).
        let sixteen = crate::mfa::base32::encode(&[7u8; 16]);
        let Ok(u) = parse(&format!("otpauth://totp/a?secret={sixteen}%3D%3D%3D%3D%3D%3D")) else { unreachable!() };
        assert_eq!(u.secret().expose().expose(), &[7u8; 16]);
    }

    #[test]
    fn refuses_invalid_imports() {
        let s = RFC_B32;
        let cases: Vec<(String, OtpAuthError)> = vec![
            (format!("otpauth://totp/a?secret={s}&digits=10"), OtpAuthError::Totp(TotpError::Digits)),
            (format!("otpauth://totp/a?secret={s}&digits=7"), OtpAuthError::Totp(TotpError::Digits)),
            (format!("otpauth://totp/a?secret={s}&digits=-6"), OtpAuthError::Totp(TotpError::Digits)),
            (format!("otpauth://totp/a?secret={s}&digits=06"), OtpAuthError::Totp(TotpError::Digits)),
            (format!("otpauth://totp/a?secret={s}&period=0"), OtpAuthError::Totp(TotpError::Period)),
            (format!("otpauth://totp/a?secret={s}&period=99999"), OtpAuthError::Totp(TotpError::Period)),
            (format!("otpauth://totp/a?secret={s}&algorithm=MD5"), OtpAuthError::Totp(TotpError::Algorithm)),
            ("otpauth://totp/a?secret=JBSWY3DPEHPK3PXP".into(), OtpAuthError::Totp(TotpError::SeedLength(10))),
            ("otpauth://totp/a?issuer=x".into(), OtpAuthError::MissingSecret),
            ("otpauth://totp/a".into(), OtpAuthError::MissingSecret),
            (format!("otpauth://hotp/a?secret={s}&counter=1"), OtpAuthError::UnsupportedType),
            (format!("https://totp/a?secret={s}"), OtpAuthError::NotOtpAuth),
            (format!("otpauth://totp/a?secret={s}&secret={s}"), OtpAuthError::DuplicateParameter),
            (format!("otpauth://totp/a?secret={s}&&digits=6"), OtpAuthError::DuplicateParameter),
            (format!("otpauth://totp/a?secret={s}&foo=1"), OtpAuthError::UnknownParameter("foo".into())),
            (format!("otpauth://totp/A:a?secret={s}&issuer=B"), OtpAuthError::IssuerMismatch),
            (format!("otpauth://totp/A:b:c?secret={s}"), OtpAuthError::Name),
            (format!("otpauth://totp/A:?secret={s}"), OtpAuthError::Name),
            (format!("otpauth://totp/?secret={s}"), OtpAuthError::Name),
            (format!("otpauth://totp/a%ZZ?secret={s}"), OtpAuthError::Encoding),
            (format!("otpauth://totp/a%?secret={s}"), OtpAuthError::Encoding),
            (format!("otpauth://totp/a%0A?secret={s}"), OtpAuthError::Encoding),
            (format!("otpauth://totp/a%FF?secret={s}"), OtpAuthError::Encoding),
            (format!("otpauth://totp/a b?secret={s}"), OtpAuthError::NotOtpAuth),
            (format!("otpauth://totp/a?secret={s}#frag"), OtpAuthError::NotOtpAuth),
            (format!("otpauth://totp/é?secret={s}"), OtpAuthError::NotOtpAuth),
            (format!("otpauth://totp/a?secret={s}&issuer={}", "x".repeat(MAX_URI_LEN)), OtpAuthError::TooLong),
        ];
        for (uri, want) in cases {
            assert_eq!(parse(&uri).err(), Some(want), "{uri}");
        }
        assert!(matches!(parse("otpauth://totp/a?secret=JBSWY3DP!"), Err(OtpAuthError::Totp(TotpError::Base32(_)))));
        // Lowercase secret with `=` padding in the wrong place (R27).
        let bad_pad = format!("otpauth://totp/a?secret={}", "gezd=gnbvgy3tqojqgezdgnbvgy3tqojq");
        assert!(matches!(parse(&bad_pad), Err(OtpAuthError::Totp(TotpError::Base32(_)))));
    }

    #[test]
    fn errors_never_contain_the_secret() {
        let uri = format!("otpauth://totp/a?secret={RFC_B32}&digits=10");
        let Err(e) = parse(&uri) else { unreachable!() };
        assert!(!format!("{e} {e:?}").contains(RFC_B32));
        let Ok(u) = parse(&format!("otpauth://totp/a?secret={RFC_B32}")) else { unreachable!() };
        assert!(!format!("{u:?}").contains(RFC_B32));
        assert!(!format!("{:?}", u.to_uri()).contains(RFC_B32));
    }

    #[test]
    fn qr_code_is_inline_svg() {
        let Ok(u) = OtpAuthUri::new("Gatehouse", "alice@example.com", rfc_secret(), TotpParams::ENROLMENT) else {
            unreachable!()
        };
        let Ok(svg) = u.to_svg_qr() else { unreachable!() };
        let svg = svg.expose();
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""), "{}", &svg[..60.min(svg.len())]);
        assert!(svg.ends_with("</svg>"));
        assert!(!svg.contains("<?xml") && !svg.contains("data:") && !svg.contains("<image"));
        assert!(!svg.contains(RFC_B32), "the seed is only in the QR modules, never as text");
        // Same input, same picture; a different seed, a different picture.
        assert_eq!(u.to_svg_qr().ok().map(|s| s.expose().to_owned()).as_deref(), Some(svg));
        let Ok(other) = OtpAuthUri::new(
            "Gatehouse",
            "alice@example.com",
            TotpSecret::generate(&SeededRng::new(1)),
            TotpParams::ENROLMENT,
        ) else {
            unreachable!()
        };
        assert_ne!(other.to_svg_qr().ok().map(|s| s.expose().to_owned()).as_deref(), Some(svg));
    }

    proptest! {
        #[test]
        fn parser_never_panics(s in "otpauth://totp/[ -~]{0,80}") {
            let _ = parse(&s);
        }

        #[test]
        fn parser_never_panics_on_anything(s in "\\PC{0,120}") {
            let _ = parse(&s);
        }

        #[test]
        fn names_round_trip(issuer in "[^:\\p{Cc}]{1,40}", account in "[^:\\p{Cc}]{1,40}") {
            prop_assume!(issuer.trim() == issuer && account.trim() == account);
            let built = OtpAuthUri::new(&issuer, &account, rfc_secret(), TotpParams::ENROLMENT);
            prop_assert!(built.is_ok());
            if let Ok(u) = built {
                let back = parse(u.to_uri().expose());
                prop_assert!(back.is_ok(), "{:?}", back.err());
                if let Ok(b) = back {
                    prop_assert_eq!(b.issuer(), Some(issuer.as_str()));
                    prop_assert_eq!(b.account(), account.as_str());
                }
            }
        }
    }
}
