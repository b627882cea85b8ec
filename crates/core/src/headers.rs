//! Pure parsers for the request headers the server reads before it knows who is calling:
//! `Cookie` (RFC 6265 §5.4) and `Authorization: Bearer` (RFC 6750 §2.1).
//!
//! They live here, away from the HTTP framework, so that the fuzz targets (`fuzz/`, ADR 0010)
//! can drive exactly the code the server runs. Both take header text as it arrived and never
//! allocate, panic or do more than one pass over it.
//!
//! The attack the cookie rule stops is cookie tossing: a sibling subdomain or a plain-HTTP
//! response plants a second cookie of the same name, and the browser sends both. Which one a
//! parser keeps is then up to the parser; ours keeps neither.

/// The value of cookie `name` across every `Cookie` header line, if it is present exactly
/// once. Pairs are `;`-separated, surrounding spaces are trimmed, names compare exactly
/// (case-sensitive, RFC 6265 §5.4), the value is returned as written (not unquoted). A pair
/// without `=` is skipped.
pub fn cookie_value<'a, I>(lines: I, name: &str) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let mut found = None;
    for line in lines {
        for pair in line.split(';') {
            if let Some((k, val)) = pair.trim().split_once('=')
                && k == name
            {
                if found.is_some() {
                    // Two cookies of one name: a cookie-tossing attempt. Use neither.
                    return None;
                }
                found = Some(val);
            }
        }
    }
    found
}

/// Whether `name` is an RFC 6265 `cookie-name` (an RFC 9110 token).
pub fn is_cookie_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Whether `value` is an RFC 6265 `cookie-value` without quotes (`cookie-octet*`).
pub fn is_cookie_value(value: &str) -> bool {
    value.bytes().all(|b| matches!(b, 0x21 | 0x23..=0x2b | 0x2d..=0x3a | 0x3c..=0x5b | 0x5d..=0x7e))
}

/// The credentials of an `Authorization` value with the `Bearer` scheme (case-insensitive),
/// trimmed; `None` for any other scheme or a value without a space. The token may be empty —
/// the caller refuses it as it refuses any malformed token.
pub fn bearer_credentials(value: &str) -> Option<&str> {
    match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Some(token.trim()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_rules() {
        assert_eq!(cookie_value(["a=1; __Host-gh_at=x"], "__Host-gh_at"), Some("x"));
        assert_eq!(cookie_value(["a=1", "b=2;c=3"], "c"), Some("3"));
        assert_eq!(cookie_value(["a=1; a=2"], "a"), None);
        assert_eq!(cookie_value(["a=1", "a=2"], "a"), None);
        assert_eq!(cookie_value(["A=1"], "a"), None);
        assert_eq!(cookie_value(["a"], "a"), None);
        assert_eq!(cookie_value(["a=b=c"], "a"), Some("b=c"));
        assert_eq!(cookie_value(["a="], "a"), Some(""));
    }

    #[test]
    fn cookie_grammar() {
        assert!(is_cookie_name("__Host-gh_at"));
        assert!(!is_cookie_name(""));
        assert!(!is_cookie_name("a=b"));
        assert!(!is_cookie_name("a b"));
        assert!(is_cookie_value("abc-._~09"));
        assert!(is_cookie_value(""));
        for bad in ["a;b", "a b", "a,b", "\"a\"", "a\\b", "é"] {
            assert!(!is_cookie_value(bad), "{bad}");
        }
    }

    #[test]
    fn bearer_rules() {
        assert_eq!(bearer_credentials("Bearer abc"), Some("abc"));
        assert_eq!(bearer_credentials("bEaReR  abc "), Some("abc"));
        assert_eq!(bearer_credentials("Bearer "), Some(""));
        assert_eq!(bearer_credentials("Basic abc"), None);
        assert_eq!(bearer_credentials("Bearer"), None);
        assert_eq!(bearer_credentials(""), None);
    }
}
