//! Reading a pasted link the way a browser would, to find the host it really leads to.
//!
//! The attack here is the parser differential: a link that one parser reads as `upbit.com` and
//! the browser opens as `evil.tld`. So this follows the WHATWG URL Standard (the browsers'
//! parser) for the parts that decide the host, not RFC 3986:
//!
//! * leading and trailing C0 controls and spaces are trimmed, tabs and newlines removed;
//! * for web schemes (`http`, `https`, `ws`, `wss`, `ftp`) any run of `/` and `\` follows
//!   the scheme, and `\` ends the authority like `/` does (`https://evil.tld\@upbit.com` is
//!   `evil.tld`); the userinfo ends at the **last** `@` of the authority;
//! * the host is percent-decoded, then mapped as UTS #46 does for the cases that matter
//!   (NFKC, lower case, ideographic full stops to `.`), one trailing dot dropped;
//! * a host whose last label is a number is an IPv4 address in any of the forms browsers
//!   accept (`0x7f.1`, `0177.0.0.1`, `2130706433`), or invalid;
//! * `xn--` labels are decoded (RFC 3492) and must be canonical, and Unicode labels encoded,
//!   so every host has an ASCII form and a display form.
//!
//! A link without a scheme (`upbit.com/login`) is read as `https://`. Anything this parser
//! cannot read with confidence is an error, which the checker reports as malformed; it never
//! guesses a host. Deliberately stricter than browsers: ASCII host characters other than
//! letters, digits, `-` and `_`, invisible and bidirectional-control characters, and empty
//! labels are refused. UTS #46 bidi and joiner rules are not implemented; such hosts are
//! reported as IDN and checked for confusables like any other.

use std::borrow::Cow;
use std::net::{Ipv4Addr, Ipv6Addr};

use percent_encoding::percent_decode_str;
use unicode_normalization::UnicodeNormalization;

use super::punycode;

/// Longest input the checker reads, in bytes. Links longer than this are refused whole.
pub const MAX_INPUT_BYTES: usize = 2048;
/// Longest host in ASCII form (RFC 1035 §2.3.4, without the trailing dot).
const MAX_HOST_BYTES: usize = 253;
/// Longest label in ASCII form (RFC 1035 §2.3.4).
const MAX_LABEL_BYTES: usize = 63;

/// Schemes whose URLs have a host we can check.
const WEB_SCHEMES: [&str; 5] = ["https", "http", "wss", "ws", "ftp"];
/// Schemes that are recognised as such even without `//`, none of which leads to a web host.
const OTHER_SCHEMES: [&str; 14] = [
    "javascript",
    "data",
    "vbscript",
    "file",
    "filesystem",
    "blob",
    "about",
    "mailto",
    "tel",
    "sms",
    "intent",
    "view-source",
    "chrome",
    "market",
];

/// Why input could not be read as a web address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ParseError {
    /// Nothing but whitespace.
    Empty,
    /// More than [`MAX_INPUT_BYTES`].
    TooLong,
    /// A scheme that does not lead to a web host (`javascript:`, `data:`, `mailto:` …).
    NotWeb(String),
    /// No host between the scheme and the path.
    NoHost,
    /// A port that is not a number from 0 to 65535.
    BadPort,
    /// A host that is not a valid domain, IPv4 or IPv6 address.
    BadHost(&'static str),
}

impl ParseError {
    /// Fixed English description, used as the `detail` of the malformed reason.
    pub(crate) fn detail(&self) -> &'static str {
        match self {
            Self::Empty => "the input is empty",
            Self::TooLong => "the input is longer than 2048 bytes",
            Self::NotWeb(_) => "this is not a web address",
            Self::NoHost => "there is no host name",
            Self::BadPort => "the port is not a number from 0 to 65535",
            Self::BadHost(why) => why,
        }
    }
}

/// A host name in both of its forms, label by label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Domain {
    /// ASCII labels (`xn--` form for IDN labels), lower case.
    pub(crate) ascii: Vec<String>,
    /// Display labels (Unicode), lower case, NFC.
    pub(crate) unicode: Vec<String>,
}

impl Domain {
    /// The ASCII form, labels joined with dots.
    pub(crate) fn ascii_host(&self) -> String {
        self.ascii.join(".")
    }

    /// The display form.
    pub(crate) fn unicode_host(&self) -> String {
        self.unicode.join(".")
    }

    /// Some label is an internationalised (non-ASCII) one.
    pub(crate) fn is_idn(&self) -> bool {
        self.ascii.iter().zip(&self.unicode).any(|(a, u)| a != u)
    }
}

/// Where a URL leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    /// A domain name.
    Domain(Domain),
    /// An IPv4 address; `obfuscated` when it was not written in dotted-decimal form.
    Ipv4 { addr: Ipv4Addr, obfuscated: bool },
    /// An IPv6 address (written in brackets).
    Ipv6(Ipv6Addr),
}

impl Host {
    /// ASCII form: punycode labels, dotted-decimal IPv4, bracketed IPv6.
    pub(crate) fn ascii(&self) -> String {
        match self {
            Self::Domain(d) => d.ascii_host(),
            Self::Ipv4 { addr, .. } => addr.to_string(),
            Self::Ipv6(addr) => format!("[{addr}]"),
        }
    }

    /// Display form (Unicode labels).
    pub(crate) fn unicode(&self) -> String {
        match self {
            Self::Domain(d) => d.unicode_host(),
            _ => self.ascii(),
        }
    }
}

/// The parts of a URL the checker looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ParsedUrl {
    /// Lower-case scheme; `None` when the input had none.
    pub(crate) scheme: Option<String>,
    /// Userinfo as written (before the last `@`), when it is not empty.
    pub(crate) userinfo: Option<String>,
    /// The host.
    pub(crate) host: Host,
    /// The port, when one was written.
    pub(crate) port: Option<u16>,
    /// The path as written, `\` turned into `/`.
    pub(crate) path: String,
    /// The query as written, without `?`.
    pub(crate) query: Option<String>,
}

/// Reads `input` as a web address.
pub(crate) fn parse(input: &str) -> Result<ParsedUrl, ParseError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(ParseError::TooLong);
    }
    let cleaned: String =
        input.trim_matches(|c: char| c <= ' ').chars().filter(|c| !matches!(c, '\t' | '\n' | '\r')).collect();
    if cleaned.is_empty() {
        return Err(ParseError::Empty);
    }
    let (scheme, rest) = split_scheme(&cleaned)?;
    let rest = rest.trim_start_matches(['/', '\\']);
    let end = rest.find(['/', '\\', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (userinfo, host_port) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    // "@host" and ":@host" carry no credentials: browsers drop them.
    let userinfo = userinfo.filter(|u| u.chars().any(|c| c != ':')).map(str::to_string);
    let (host, port) = split_host_port(host_port)?;
    let before_fragment = tail.split_once('#').map_or(tail, |(b, _)| b);
    let (path, query) = match before_fragment.split_once('?') {
        Some((p, q)) => (p, Some(q.to_string())),
        None => (before_fragment, None),
    };
    Ok(ParsedUrl { scheme, userinfo, host, port, path: path.replace('\\', "/"), query })
}

/// Splits off a scheme when the input has one. `upbit.com:443/x` has none: a scheme is
/// recognised only when it is a known one or is followed by `//`.
fn split_scheme(s: &str) -> Result<(Option<String>, &str), ParseError> {
    let Some((candidate, rest)) = s.split_once(':') else {
        return Ok((None, s));
    };
    let grammar = candidate.starts_with(|c: char| c.is_ascii_alphabetic())
        && candidate.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !grammar {
        return Ok((None, s));
    }
    let scheme = candidate.to_ascii_lowercase();
    if WEB_SCHEMES.contains(&scheme.as_str()) {
        return Ok((Some(scheme), rest));
    }
    if OTHER_SCHEMES.contains(&scheme.as_str()) || rest.starts_with("//") {
        return Err(ParseError::NotWeb(scheme));
    }
    Ok((None, s))
}

fn split_host_port(host_port: &str) -> Result<(Host, Option<u16>), ParseError> {
    if let Some(inner) = host_port.strip_prefix('[') {
        let (literal, after) = inner.split_once(']').ok_or(ParseError::BadHost("an IPv6 bracket is not closed"))?;
        let port = match after {
            "" => None,
            _ => parse_port(after.strip_prefix(':').ok_or(ParseError::BadHost("text follows an IPv6 address"))?)?,
        };
        if literal.contains('%') {
            return Err(ParseError::BadHost("IPv6 zone identifiers are not allowed"));
        }
        let addr = literal.parse::<Ipv6Addr>().map_err(|_| ParseError::BadHost("invalid IPv6 address"))?;
        return Ok((Host::Ipv6(addr), port));
    }
    let (host, port) = match host_port.split_once(':') {
        Some((h, p)) => (h, parse_port(p)?),
        None => (host_port, None),
    };
    Ok((parse_host(host)?, port))
}

fn parse_port(p: &str) -> Result<Option<u16>, ParseError> {
    if p.is_empty() {
        return Ok(None);
    }
    if !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ParseError::BadPort);
    }
    let digits = p.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(Some(0));
    }
    if digits.len() > 5 {
        return Err(ParseError::BadPort);
    }
    digits.parse::<u16>().map(Some).map_err(|_| ParseError::BadPort)
}

/// Characters that do not show: soft hyphen, zero-width and joiner characters, bidirectional
/// controls, invisible operators, the byte-order mark, tag characters, variation selectors.
fn is_invisible(c: char) -> bool {
    matches!(u32::from(c),
        0xAD | 0x34F | 0x61C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F | 0x200B..=0x200F
        | 0x202A..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFB
        | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A | 0xE0000..=0xE0FFF)
}

/// The UTS #46 mapping as far as the checker needs it: NFKC, lower case, NFC, and the
/// ideographic full stops that browsers treat as dots. Also used for configured brand words.
pub(crate) fn map_text(s: &str) -> String {
    let lower = s.nfkc().collect::<String>().to_lowercase();
    lower.nfc().map(|c| if matches!(c, '\u{3002}' | '\u{FF0E}' | '\u{FF61}') { '.' } else { c }).collect()
}

fn is_label_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'
    } else {
        !(c.is_whitespace() || c.is_control() || is_invisible(c))
    }
}

/// Reads a host that is not in brackets: a domain name or an IPv4 address. Also used to
/// validate configured domains.
pub(crate) fn parse_host(raw: &str) -> Result<Host, ParseError> {
    if raw.is_empty() {
        return Err(ParseError::NoHost);
    }
    let decoded = percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ParseError::BadHost("percent-encoded bytes are not UTF-8"))?;
    if decoded.chars().any(|c| is_invisible(c) || c.is_control()) {
        return Err(ParseError::BadHost("the host contains invisible or control characters"));
    }
    let mapped = map_text(&decoded);
    if !mapped.chars().all(|c| c == '.' || is_label_char(c)) {
        return Err(ParseError::BadHost("the host contains a character not allowed in host names"));
    }
    let host = mapped.strip_suffix('.').unwrap_or(&mapped);
    if host.is_empty() {
        return Err(ParseError::NoHost);
    }
    let labels: Vec<&str> = host.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(ParseError::BadHost("the host has an empty label"));
    }
    if labels.last().is_some_and(|l| ends_in_number(l)) {
        let addr = parse_ipv4(&labels).ok_or(ParseError::BadHost("invalid IPv4 address"))?;
        let written = raw.to_ascii_lowercase();
        let obfuscated = addr.to_string() != written.strip_suffix('.').unwrap_or(&written);
        return Ok(Host::Ipv4 { addr, obfuscated });
    }
    let mut domain = Domain { ascii: Vec::with_capacity(labels.len()), unicode: Vec::with_capacity(labels.len()) };
    for label in labels {
        let (ascii, unicode) = idna_label(label)?;
        if ascii.len() > MAX_LABEL_BYTES {
            return Err(ParseError::BadHost("a label is longer than 63 bytes"));
        }
        domain.ascii.push(ascii);
        domain.unicode.push(unicode);
    }
    if domain.ascii_host().len() > MAX_HOST_BYTES {
        return Err(ParseError::BadHost("the host is longer than 253 bytes"));
    }
    Ok(Host::Domain(domain))
}

/// One label in its ASCII and display forms.
fn idna_label(label: &str) -> Result<(String, String), ParseError> {
    if let Some(payload) = label.strip_prefix("xn--") {
        let decoded = punycode::decode(payload).map_err(|_| ParseError::BadHost("invalid punycode label"))?;
        // An xn-- label must stand for a non-ASCII label in normal form, written canonically:
        // anything else is a second spelling of some other name.
        if decoded.is_ascii() {
            return Err(ParseError::BadHost("a punycode label decodes to plain ASCII"));
        }
        if !decoded.chars().all(is_label_char) || map_text(&decoded) != decoded {
            return Err(ParseError::BadHost("a punycode label decodes to characters not allowed in host names"));
        }
        if punycode::encode(&decoded).ok().as_deref() != Some(payload) {
            return Err(ParseError::BadHost("a punycode label is not written canonically"));
        }
        return Ok((label.to_string(), decoded));
    }
    if label.is_ascii() {
        return Ok((label.to_string(), label.to_string()));
    }
    if map_text(label) != label {
        return Err(ParseError::BadHost("a label is not in normal form"));
    }
    let encoded = punycode::encode(label).map_err(|_| ParseError::BadHost("a label cannot be encoded"))?;
    Ok((format!("xn--{encoded}"), label.to_string()))
}

/// WHATWG "ends in a number": the last label is decimal digits or `0x` and hex digits.
fn ends_in_number(last: &str) -> bool {
    last.bytes().all(|b| b.is_ascii_digit())
        || last.strip_prefix("0x").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// One part of an IPv4 address: decimal, `0x` hex or `0`-prefixed octal (WHATWG "IPv4 number
/// parser"). Values above `u32::MAX` are refused while reading.
fn ipv4_number(part: &str) -> Option<u64> {
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x") {
        (hex, 16)
    } else if part.len() > 1 && part.starts_with('0') {
        (&part[1..], 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        // "0x" alone is zero; "" never reaches here (empty labels are refused).
        return Some(0);
    }
    let mut value: u64 = 0;
    for c in digits.chars() {
        value = value.checked_mul(u64::from(radix))?.checked_add(u64::from(c.to_digit(radix)?))?;
        if value > u64::from(u32::MAX) {
            return None;
        }
    }
    Some(value)
}

/// WHATWG "IPv4 parser": up to four parts, the last one filling the remaining bytes.
fn parse_ipv4(parts: &[&str]) -> Option<Ipv4Addr> {
    if parts.is_empty() || parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u64> = parts.iter().map(|p| ipv4_number(p)).collect::<Option<_>>()?;
    let (last, init) = numbers.split_last()?;
    if init.iter().any(|n| *n > 255) {
        return None;
    }
    // parts.len() is 1..=4, so the exponents below are in range.
    let exponent = u32::try_from(5 - numbers.len()).ok()?;
    if *last >= 256u64.pow(exponent) {
        return None;
    }
    let mut value = *last;
    for (i, n) in init.iter().enumerate() {
        value += n * 256u64.pow(u32::try_from(3 - i).ok()?);
    }
    Some(Ipv4Addr::from(u32::try_from(value).ok()?))
}

/// Percent-decodes `s`, replacing invalid UTF-8.
pub(crate) fn decode_lossy(s: &str) -> Cow<'_, str> {
    percent_decode_str(s).decode_utf8_lossy()
}

/// Path segments after removing dot segments (RFC 3986 §5.2.4, with `%2e` read as `.` as
/// browsers do) and empty segments, each percent-decoded.
pub(crate) fn path_segments(path: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for segment in path.split('/') {
        match segment.to_ascii_lowercase().as_str() {
            "" | "." | "%2e" => {}
            ".." | ".%2e" | "%2e." | "%2e%2e" => {
                out.pop();
            }
            _ => out.push(decode_lossy(segment).into_owned()),
        }
    }
    out
}

/// `key=value` pairs of a query, `+` read as space, percent-decoded.
pub(crate) fn query_pairs(query: &str) -> Vec<(String, String)> {
    let decode = |s: &str| decode_lossy(&s.replace('+', " ")).into_owned();
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(input: &str) -> Result<String, ParseError> {
        parse(input).map(|u| u.host.ascii())
    }

    fn parsed(input: &str) -> ParsedUrl {
        let Ok(u) = parse(input) else { unreachable!("{input}") };
        u
    }

    #[test]
    fn hosts_are_found_whatever_the_spelling() {
        for (input, expected) in [
            ("https://upbit.com/", "upbit.com"),
            ("upbit.com/login", "upbit.com"),
            ("//upbit.com/x", "upbit.com"),
            ("HTTPS://WWW.UPBIT.COM/Login", "www.upbit.com"),
            ("https://upbit.com./", "upbit.com"),
            ("https://upbit.com:8443/x", "upbit.com"),
            ("upbit.com:443/login", "upbit.com"),
            ("https://%75pbit%2ecom/", "upbit.com"),
            ("https:upbit.com", "upbit.com"),
            ("https:\\\\upbit.com\\x", "upbit.com"),
            ("  \thttps://up\nbit.com/ \n", "upbit.com"),
            ("https://ｕｐｂｉｔ．ｃｏｍ/", "upbit.com"),
            ("https://upbit。com/", "upbit.com"),
            ("https://user:pw@upbit.com/", "upbit.com"),
            ("https://upbit.com@evil.tld/", "evil.tld"),
            ("https://a@b@evil.tld/", "evil.tld"),
            ("https://evil.tld\\@upbit.com/", "evil.tld"),
            ("https://evil.tld#@upbit.com", "evil.tld"),
            ("https://evil.tld?@upbit.com", "evil.tld"),
            ("https://upb\u{456}t.com/", "xn--upbt-n9d.com"),
            ("https://XN--UPBT-N9D.com/", "xn--upbt-n9d.com"),
            ("https://[::1]:8080/", "[::1]"),
            ("https://[::FFFF:127.0.0.1]/", "[::ffff:127.0.0.1]"),
            ("ws://upbit.com/", "upbit.com"),
        ] {
            assert_eq!(host(input).as_deref(), Ok(expected), "{input}");
        }
    }

    #[test]
    fn parts_are_split_where_browsers_split_them() {
        let u = parsed("https://me:secret@upbit.com:0443/a\\b?x=1#frag?y");
        assert_eq!(u.scheme.as_deref(), Some("https"));
        assert_eq!(u.userinfo.as_deref(), Some("me:secret"));
        assert_eq!(u.port, Some(443));
        assert_eq!(u.path, "/a/b");
        assert_eq!(u.query.as_deref(), Some("x=1"));
        let bare = parsed("upbit.com");
        assert_eq!(
            (bare.scheme, bare.userinfo, bare.port, bare.path, bare.query),
            (None, None, None, String::new(), None)
        );
        assert_eq!(parsed("https://@upbit.com/").userinfo, None);
        assert_eq!(parsed("https://:@upbit.com/").userinfo, None);
    }

    #[test]
    fn ipv4_in_every_browser_form() {
        let v4 = |input: &str| match parse(input).map(|u| u.host) {
            Ok(Host::Ipv4 { addr, obfuscated }) => Some((addr.to_string(), obfuscated)),
            _ => None,
        };
        assert_eq!(v4("https://127.0.0.1/"), Some(("127.0.0.1".into(), false)));
        assert_eq!(v4("https://127.0.0.1./"), Some(("127.0.0.1".into(), false)));
        assert_eq!(v4("https://0x7f.0.0.1/"), Some(("127.0.0.1".into(), true)));
        assert_eq!(v4("https://0x7f.1/"), Some(("127.0.0.1".into(), true)));
        assert_eq!(v4("https://0X7F.1/"), Some(("127.0.0.1".into(), true)));
        assert_eq!(v4("https://2130706433/"), Some(("127.0.0.1".into(), true)));
        assert_eq!(v4("https://0177.0.0.1/"), Some(("127.0.0.1".into(), true)));
        assert_eq!(v4("https://127.1/"), Some(("127.0.0.1".into(), true)));
        assert_eq!(v4("https://192.168.257/"), Some(("192.168.1.1".into(), true)));
        assert_eq!(v4("https://0x/"), Some(("0.0.0.0".into(), true)));
        assert_eq!(v4("https://%31%32%37.0.0.1/"), Some(("127.0.0.1".into(), true)));
        for bad in [
            "https://256.0.0.1/",
            "https://1.2.3.4.5/",
            "https://08.0.0.1/",
            "https://4294967296/",
            "https://1.2.3.256/",
            "https://99999999999999999999999/",
            "https://evil.0x1/",
            "https://0xg.1/",
        ] {
            assert_eq!(parse(bad).map(|u| u.host), Err(ParseError::BadHost("invalid IPv4 address")), "{bad}");
        }
        // Not ending in a number: a domain.
        assert_eq!(host("https://1.2.3.com/").as_deref(), Ok("1.2.3.com"));
    }

    #[test]
    fn unreadable_input_is_refused_not_guessed() {
        assert_eq!(parse(""), Err(ParseError::Empty));
        assert_eq!(parse(" \t\n "), Err(ParseError::Empty));
        assert_eq!(parse(&"a".repeat(MAX_INPUT_BYTES + 1)), Err(ParseError::TooLong));
        assert_eq!(parse("javascript:alert(1)"), Err(ParseError::NotWeb("javascript".into())));
        assert_eq!(parse("DATA:text/html,hi"), Err(ParseError::NotWeb("data".into())));
        assert_eq!(parse("hxxps://evil.tld/"), Err(ParseError::NotWeb("hxxps".into())));
        assert_eq!(parse("https://"), Err(ParseError::NoHost));
        // Browsers skip any number of slashes after a web scheme: this is the host "path".
        assert_eq!(host("https:///path").as_deref(), Ok("path"));
        assert_eq!(parse("https://upbit.com@/"), Err(ParseError::NoHost));
        assert_eq!(parse("https://upbit.com:99999/"), Err(ParseError::BadPort));
        assert_eq!(parse("https://upbit.com:80a/"), Err(ParseError::BadPort));
        for bad in [
            "https://up bit.com/",
            "https://upbit..com/",
            "https://upbit.com../",
            "https://.upbit.com/",
            "https://up%00bit.com/",
            "https://up%ffbit.com/",
            "https://up\u{200B}bit.com/",
            "https://up\u{202E}bit.com/",
            "https://upbit.com%40evil.tld/",
            "https://ev!l.tld/",
            "https://xn--upbit-.com/",
            "https://xn--.com/",
            "https://xn--zz.com/",
            "https://xn--UPBT-N9D-.com/",
            "https://[::1/",
            "https://[::1]x/",
            "https://[fe80::1%25eth0]/",
            "https://[1.2.3.4]/",
        ] {
            assert!(matches!(parse(bad), Err(ParseError::BadHost(_))), "{bad}: {:?}", parse(bad));
        }
        let long_label = format!("https://{}.com/", "a".repeat(64));
        assert!(matches!(parse(&long_label), Err(ParseError::BadHost(_))));
        let long_host = format!("https://{}com/", "abcdefghi.".repeat(26));
        assert!(matches!(parse(&long_host), Err(ParseError::BadHost(_))));
    }

    #[test]
    fn path_segments_resolve_dots_like_browsers() {
        assert_eq!(path_segments("/app/upbit/../evil"), vec!["app", "evil"]);
        assert_eq!(path_segments("/app/%2E%2E/evil/./x/"), vec!["evil", "x"]);
        assert_eq!(path_segments("//a//b/%2Fc"), vec!["a", "b", "/c"]);
        assert_eq!(path_segments("/../.."), Vec::<String>::new());
        assert_eq!(
            query_pairs("id=com.x&hl=ko&&q=a+b%21&flag"),
            vec![
                ("id".into(), "com.x".into()),
                ("hl".into(), "ko".into()),
                ("q".into(), "a b!".into()),
                ("flag".into(), String::new())
            ]
        );
    }
}
