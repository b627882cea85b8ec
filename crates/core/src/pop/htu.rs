//! The `htu` comparison of RFC 9449 §4.3 check 9: the claim must match the request URI
//! "ignoring any query and fragment parts", after syntax- and scheme-based normalisation
//! (RFC 3986 §6.2.2 and §6.2.3).
//!
//! [`normalize_htu`] maps a URI to `scheme://host[:port]/path` with:
//! * query (`?…`) and fragment (`#…`) removed — on both sides, as check 9 says;
//! * scheme and host lower-cased (§6.2.2.1); the scheme must be `http` or `https`;
//! * an empty or default port removed (80 for `http`, 443 for `https`; §6.2.3), other ports
//!   written without leading zeros;
//! * percent-encodings of unreserved characters decoded and every other percent-encoding
//!   upper-cased (§6.2.2.2);
//! * dot segments removed (§6.2.2.3, the algorithm of §5.2.4) and an empty path made `/`.
//!
//! Refused (no normalised form, so the proof cannot match): userinfo (`user@host`), an empty
//! host, a malformed port or percent-encoding, and any byte that cannot appear in a URI
//! (controls, space, non-ASCII). Nothing here guesses: two URIs match only if RFC 3986 says
//! they are equivalent.
//!
//! Why the query is ignored rather than refused in the claim: check 9 is written as a
//! comparison "ignoring" query and fragment, and clients exist that put the full URL in
//! `htu`. DPoP therefore never binds the query; routes whose parameters matter carry them in
//! a signed body or use request signing (`crate::signing`).

use std::borrow::Cow;

use crate::signing::codec::hex_val;

/// The normalised form of `uri` without query and fragment, or `None` if it is not an
/// absolute `http`/`https` URI we can normalise.
pub fn normalize_htu(uri: &str) -> Option<String> {
    if !uri.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let uri = uri.split_once('#').map_or(uri, |(u, _)| u);
    let uri = uri.split_once('?').map_or(uri, |(u, _)| u);
    let (scheme, rest) = uri.split_once("://")?;
    let (scheme, default_port) = if scheme.eq_ignore_ascii_case("https") {
        ("https", 443)
    } else if scheme.eq_ignore_ascii_case("http") {
        ("http", 80)
    } else {
        return None;
    };
    let (authority, path) = rest.find('/').map_or((rest, ""), |i| rest.split_at(i));
    if authority.contains('@') || authority.contains('%') {
        return None;
    }
    let (host, port) = split_host_port(authority)?;
    if host.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(uri.len() + 1);
    out.push_str(scheme);
    out.push_str("://");
    out.extend(host.chars().map(|c| c.to_ascii_lowercase()));
    match port {
        Some(p) if p != default_port => {
            out.push(':');
            out.push_str(&p.to_string());
        }
        _ => {}
    }
    let path = if path.contains('%') { Cow::Owned(normalize_percent(path)?) } else { Cow::Borrowed(path) };
    remove_dot_segments(if path.is_empty() { "/" } else { &path }, &mut out);
    Some(out)
}

/// Splits `host[:port]` (with `[v6]` literals); `Some(None)` port for absent or empty.
fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')?;
        let (host, after) = authority.split_at(end + 1);
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => None,
        Some(p) if p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse::<u16>().ok()?),
        Some(_) => return None,
    };
    Some((host, port))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes `%XX` of unreserved characters, upper-cases the others; `None` on a bad `%`.
fn normalize_percent(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let (hi, lo) = (*bytes.get(i + 1)?, *bytes.get(i + 2)?);
            let v = hex_val(hi)? << 4 | hex_val(lo)?;
            if is_unreserved(v) {
                out.push(char::from(v));
            } else {
                out.push('%');
                out.push(char::from(hi.to_ascii_uppercase()));
                out.push(char::from(lo.to_ascii_uppercase()));
            }
            i += 3;
        } else {
            out.push(char::from(b));
            i += 1;
        }
    }
    Some(out)
}

/// RFC 3986 §5.2.4 for an absolute path (starting with `/`), appended to `out`.
fn remove_dot_segments(path: &str, out: &mut String) {
    // Fast path: no "." or ".." segment (the usual case) leaves the path unchanged.
    if !path.split('/').any(|seg| seg == "." || seg == "..") {
        out.push_str(path);
        return;
    }
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let mut kept: Vec<&str> = Vec::with_capacity(segments.len());
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {}
            ".." => {
                kept.pop();
            }
            s => kept.push(s),
        }
        // A trailing "." or ".." leaves a directory: the output ends with "/".
        if i == last && matches!(*seg, "." | "..") {
            kept.push("");
        }
    }
    for seg in &kept {
        out.push('/');
        out.push_str(seg);
    }
    if kept.is_empty() {
        out.push('/');
    }
}

#[cfg(test)]
mod tests {
    use super::normalize_htu;

    fn n(s: &str) -> Option<String> {
        normalize_htu(s)
    }

    #[test]
    fn rfc3986_equivalents_normalise_to_one_form() {
        let base = Some("https://resource.example.org/protectedresource".to_owned());
        for u in [
            "https://resource.example.org/protectedresource",
            "HTTPS://Resource.Example.ORG/protectedresource",
            "https://resource.example.org:443/protectedresource",
            "https://resource.example.org:/protectedresource",
            "https://resource.example.org:00443/protectedresource",
            "https://resource.example.org/%70rotected%72esource",
            "https://resource.example.org/a/../protectedresource",
            "https://resource.example.org/./protectedresource",
            "https://resource.example.org/protectedresource?a=1",
            "https://resource.example.org/protectedresource#frag",
            "https://resource.example.org/protectedresource?a=1#f?g",
        ] {
            assert_eq!(n(u), base, "{u}");
        }
        assert_eq!(n("https://example.com").as_deref(), Some("https://example.com/"));
        assert_eq!(n("https://example.com?x=1").as_deref(), Some("https://example.com/"));
        assert_eq!(n("http://example.com:80/a").as_deref(), Some("http://example.com/a"));
        assert_eq!(n("http://example.com:443/a").as_deref(), Some("http://example.com:443/a"));
        assert_eq!(n("https://example.com:8443/a").as_deref(), Some("https://example.com:8443/a"));
        assert_eq!(n("https://[::1]:443/a").as_deref(), Some("https://[::1]/a"));
        assert_eq!(n("https://[FE80::1]:8443/a").as_deref(), Some("https://[fe80::1]:8443/a"));
        assert_eq!(n("https://h/a%2fb%3F").as_deref(), Some("https://h/a%2Fb%3F"));
        assert_eq!(n("https://h/a/b/c/./../../g").as_deref(), Some("https://h/a/g"));
        assert_eq!(n("https://h/a/..").as_deref(), Some("https://h/"));
        assert_eq!(n("https://h/..").as_deref(), Some("https://h/"));
        assert_eq!(n("https://h/a/.").as_deref(), Some("https://h/a/"));
        assert_eq!(n("https://h/a//b/").as_deref(), Some("https://h/a//b/"));
        assert_eq!(n("https://h/%2E%2E/x").as_deref(), Some("https://h/x"));
    }

    #[test]
    fn different_resources_stay_different() {
        let a = n("https://h/orders");
        for u in [
            "https://h/orders/",
            "https://h/Orders",
            "http://h/orders",
            "https://h:8443/orders",
            "https://h.example/orders",
            "https://h/orders%2F",
            "https://h/orders%3Fa=1",
        ] {
            assert_ne!(n(u), a, "{u}");
        }
    }

    #[test]
    fn unnormalisable_uris_are_refused() {
        for u in [
            "",
            "/orders",
            "h/orders",
            "ftp://h/x",
            "https:///x",
            "https://user@h/x",
            "https://user:pw@h/x",
            "https://h:99999/x",
            "https://h:12a/x",
            "https://h:+443/x",
            "https://[::1/x",
            "https://[::1]x/x",
            "https://h/a b",
            "https://h/\u{e9}",
            "https://h/%zz",
            "https://h/%4",
            "https://h/%",
            "https://h%2e/x",
            "https://h/\r\n",
        ] {
            assert_eq!(n(u), None, "{u:?}");
        }
    }
}
