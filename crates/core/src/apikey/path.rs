//! Request-path normalisation for scope checks.
//!
//! A scope check is only as good as the agreement between the path gatehouse matched and the
//! path the upstream executes. Path tricks make them disagree: `/v1/status/../withdraws/coin`
//! (dot segments), `/v1/withdraws%2Fcoin` (an encoded slash some servers decode),
//! `/v1/status/..;/withdraws/coin` (Tomcat path parameters), `/v1//orders` (servers that merge
//! slashes), `\` (servers that treat it as `/`), double encoding (`%252F`), overlong or non-ASCII
//! bytes. Each would let a path match a permissive rule while the upstream runs a sensitive one.
//!
//! The rule here is **refuse, don't interpret**: a legitimate exchange client never sends any
//! of these, so [`normalize_path`] rejects them instead of guessing what the upstream would do.
//! What it accepts, it puts in one canonical form (RFC 3986 §6.2.2):
//!
//! * The input is the path component only: it starts with `/`, has no `?` or `#`, and is at
//!   most [`MAX_PATH_LEN`] bytes.
//! * Every byte is an RFC 3986 `pchar` or `/` (unreserved, sub-delims except `;`, `:`, `@`,
//!   percent-encoding). Everything else is refused: spaces, controls, `\`, `;`, non-ASCII, and
//!   the characters RFC 3986 excludes (`"<>[]^`{|}`).
//! * Percent-encoded **unreserved** characters are decoded (§6.2.2.2: `%41` is `A`, `%2E` is
//!   `.`); other encodings of printable ASCII are kept with upper-case hex (§6.2.2.1). Encoded
//!   `/`, `\`, `%`, `;`, space, controls, `DEL` and non-ASCII octets are refused.
//! * Empty segments are refused: `//` anywhere and a trailing `/` (other than the root path
//!   `/` itself). gatehouse does not merge slashes, because upstreams disagree on whether they do.
//! * Dot segments `.` and `..` are refused (after decoding, so `%2E%2E` is caught too), not
//!   resolved.
//!
//! Matching is case-sensitive (RFC 3986 §6.2.2.1 leaves the path case-sensitive). Because the
//! route table denies every unmatched path, a case variant such as `/V1/ORDERS` is denied, not
//! let through. The server must forward [`NormalizedPath::as_str`] upstream (not the raw
//! target), so the path whose scope was checked is the path that runs.
//!
//! Normalisation is idempotent: a normalised path normalises to itself (property-tested).

use std::fmt;

use crate::signing::codec::hex_val;

/// Longest accepted path, in bytes. Exchange paths are under 64 bytes.
pub const MAX_PATH_LEN: usize = 2048;

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// Empty, or not starting with `/` (absolute-form and `*` targets included).
    #[error("path must start with '/'")]
    NotAbsolute,
    /// Longer than [`MAX_PATH_LEN`].
    #[error("path too long")]
    TooLong,
    /// A byte outside the accepted set (see the module docs), at this offset.
    #[error("invalid character in path at byte {0}")]
    InvalidChar(usize),
    /// `%` not followed by two hex digits, at this offset.
    #[error("malformed percent-encoding at byte {0}")]
    MalformedPercent(usize),
    /// A percent-encoding of a byte that must never be encoded in a path (`/`, `\`, `%`, `;`,
    /// controls, non-ASCII), at this offset.
    #[error("forbidden percent-encoded byte at byte {0}")]
    ForbiddenEncoding(usize),
    /// `//` or a trailing `/`.
    #[error("empty path segment")]
    EmptySegment,
    /// A `.` or `..` segment.
    #[error("dot segment in path")]
    DotSegment,
}

/// A path in canonical form, as produced by [`normalize_path`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath(String);

impl NormalizedPath {
    /// The canonical text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The segments between slashes (none for the root path `/`).
    pub fn segments(&self) -> impl Iterator<Item = &str> {
        self.0.split('/').skip(1).filter(|s| !s.is_empty())
    }
}

impl fmt::Debug for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Literal bytes accepted as they are: unreserved, sub-delims without `;`, `:`, `@`, `/`.
fn is_plain(b: u8) -> bool {
    is_unreserved(b)
        || matches!(b, b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'=' | b':' | b'@' | b'/')
}

/// Puts `raw` (the path component of a request target) in canonical form, or refuses it.
/// See the module docs for the exact rules.
pub fn normalize_path(raw: &str) -> Result<NormalizedPath, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotAbsolute);
    }
    if bytes.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (Some(hi), Some(lo)) =
                (bytes.get(i + 1).copied().and_then(hex_val), bytes.get(i + 2).copied().and_then(hex_val))
            else {
                return Err(PathError::MalformedPercent(i));
            };
            let decoded = (hi << 4) | lo;
            if is_unreserved(decoded) {
                out.push(char::from(decoded));
            } else if decoded.is_ascii_graphic() && !matches!(decoded, b'/' | b'\\' | b'%' | b';') {
                out.push('%');
                out.push(char::from(b"0123456789ABCDEF"[usize::from(hi)]));
                out.push(char::from(b"0123456789ABCDEF"[usize::from(lo)]));
            } else {
                return Err(PathError::ForbiddenEncoding(i));
            }
            i += 3;
        } else if is_plain(b) {
            out.push(char::from(b));
            i += 1;
        } else {
            return Err(PathError::InvalidChar(i));
        }
    }
    if out != "/" {
        for seg in out.split('/').skip(1) {
            match seg {
                "" => return Err(PathError::EmptySegment),
                "." | ".." => return Err(PathError::DotSegment),
                _ => {}
            }
        }
    }
    Ok(NormalizedPath(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ok(raw: &str) -> String {
        normalize_path(raw).map(|p| p.0).unwrap_or_else(|e| format!("ERR {e:?}"))
    }

    #[test]
    fn accepts_exchange_paths_unchanged() {
        for p in [
            "/",
            "/v1/orders",
            "/v1/orders/cancel_and_new",
            "/api/v3/order/test",
            "/sapi/v1/capital/withdraw/apply",
            "/v1/pockets/3f2a-9c:x@y~z",
        ] {
            assert_eq!(ok(p), p);
        }
    }

    #[test]
    fn decodes_unreserved_and_uppercases_other_encodings() {
        assert_eq!(ok("/v1/%6Frders"), "/v1/orders");
        assert_eq!(ok("/v1/%7e%2d"), "/v1/~-");
        assert_eq!(ok("/a%3ab"), "/a%3Ab");
        assert_eq!(ok("/a%21b%7C"), "/a%21b%7C");
        // An encoded space is refused like a raw one.
        assert_eq!(normalize_path("/a%20b"), Err(PathError::ForbiddenEncoding(2)));
    }

    #[test]
    fn refuses_dot_segments_in_every_spelling() {
        for p in [
            "/v1/status/../withdraws/coin",
            "/v1/./orders",
            "/..",
            "/v1/status/%2E%2E/withdraws/coin",
            "/v1/status/%2e./withdraws/coin",
            "/v1/orders/.",
        ] {
            assert_eq!(normalize_path(p), Err(PathError::DotSegment), "{p}");
        }
        // Three dots is an ordinary segment name, not a dot segment.
        assert_eq!(ok("/a/.../b"), "/a/.../b");
    }

    #[test]
    fn refuses_encoded_separators_and_double_encoding() {
        for p in [
            "/v1/withdraws%2Fcoin",
            "/v1/withdraws%2fcoin",
            "/v1/withdraws%5Ccoin",
            "/v1/withdraws%252Fcoin",
            "/v1/status/..%3B/withdraws",
            "/v1/orders%00",
            "/v1/orders%0A",
            "/v1/orders%7F",
            "/v1/orders%C0%AF",
        ] {
            assert!(matches!(normalize_path(p), Err(PathError::ForbiddenEncoding(_))), "{p}");
        }
        for p in ["/v1/orders%", "/v1/orders%2", "/v1/orders%G0", "/v1/orders%%32F"] {
            assert!(matches!(normalize_path(p), Err(PathError::MalformedPercent(_))), "{p}");
        }
    }

    #[test]
    fn refuses_path_parameters_backslashes_and_odd_bytes() {
        for p in [
            "/v1/status/..;/withdraws/coin",
            "/v1/withdraws/coin;jsessionid=1",
            "/v1\\withdraws",
            "/v1/orders?x=1",
            "/v1/orders#frag",
            "/v1/ord ers",
            "/v1/orders\t",
            "/v1/ｏrders",
            "/v1/{id}",
            "/v1/[x]",
        ] {
            assert!(matches!(normalize_path(p), Err(PathError::InvalidChar(_))), "{p}");
        }
    }

    #[test]
    fn refuses_empty_segments_and_non_origin_form() {
        for p in ["//v1/orders", "/v1//orders", "/v1/orders/", "/v1/orders//"] {
            assert_eq!(normalize_path(p), Err(PathError::EmptySegment), "{p}");
        }
        for p in ["", "v1/orders", "*", "http://evil/v1/orders"] {
            assert_eq!(normalize_path(p), Err(PathError::NotAbsolute), "{p}");
        }
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert_eq!(normalize_path(&long), Err(PathError::TooLong));
    }

    #[test]
    fn segments_of_root_and_paths() {
        let Ok(root) = normalize_path("/") else { unreachable!() };
        assert_eq!(root.segments().count(), 0);
        let Ok(p) = normalize_path("/v1/orders/open") else { unreachable!() };
        assert_eq!(p.segments().collect::<Vec<_>>(), ["v1", "orders", "open"]);
    }

    proptest! {
        #[test]
        fn never_panics_and_is_idempotent(raw in "\\PC{0,64}") {
            if let Ok(p) = normalize_path(&raw) {
                prop_assert_eq!(normalize_path(p.as_str()), Ok(p.clone()));
                prop_assert!(p.as_str().starts_with('/'));
            }
        }

        #[test]
        fn path_like_inputs_are_idempotent_and_never_contain_dot_segments(
            raw in "(/([a-zA-Z0-9._~;\\\\-]|%[0-9a-fA-F]{2}|%){0,6}){1,6}"
        ) {
            if let Ok(p) = normalize_path(&raw) {
                prop_assert_eq!(normalize_path(p.as_str()), Ok(p.clone()));
                prop_assert!(p.segments().all(|s| s != "." && s != ".." && !s.is_empty()));
                prop_assert!(!p.as_str().contains("%2F") && !p.as_str().contains("%25"));
                prop_assert!(!p.as_str().contains(';') && !p.as_str().contains('\\'));
            }
        }
    }
}
