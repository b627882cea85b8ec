//! Raw query strings and form bodies, read the way the exchange clients wrote them.
//!
//! Signed-request verification must work on the bytes as they arrived (exchange-auth.md §7):
//! a query string that went through a `HashMap` has lost its order and its duplicates, and a
//! re-encoded one is not what was signed. This module splits `k=v&k=v` text in wire order
//! without decoding it, percent-decodes (leniently, like Python's `unquote`: a `%` that does
//! not start a valid escape is kept), encodes like Python's `quote_plus`, and builds the two
//! Upbit `query_hash` canonical forms (exchange-auth.md §1.3):
//!
//! * **DOC** — the documented form: every pair percent-decoded, joined with `&` in wire order
//!   (`+` means space only in form bodies). ccxt and the Upbit docs hash this.
//! * **PYU** — pyupbit's form: `urlencode(params, doseq=True).replace("%5B%5D=", "[]=")`, i.e.
//!   the raw text with `%5B%5D=` turned back into `[]=` (for a query or form body), or the
//!   `quote_plus` encoding of the JSON pairs (for a JSON body).
//!
//! Every function is a single pass over its input (no quadratic work) and never panics.

use std::borrow::Cow;

use super::codec::hex_val;
use super::json_flat::{Entry, Scalar, Value};

/// One `key=value` segment in wire order, still percent-encoded. `value` is `None` when the
/// segment has no `=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RawPair<'a> {
    pub key: &'a [u8],
    pub value: Option<&'a [u8]>,
}

/// The segments of `raw`, split on `&`; empty segments (`a=1&&b=2`) are skipped.
pub(crate) fn pairs(raw: &[u8]) -> impl Iterator<Item = RawPair<'_>> {
    raw.split(|&b| b == b'&').filter(|s| !s.is_empty()).map(|seg| match seg.iter().position(|&b| b == b'=') {
        Some(i) => {
            let (key, rest) = seg.split_at(i);
            RawPair { key, value: rest.get(1..) }
        }
        None => RawPair { key: seg, value: None },
    })
}

/// Appends the percent-decoding of `input` to `out`. An invalid escape is copied as is
/// (Python `unquote` behaviour); `+` becomes a space only when `plus_is_space`.
pub(crate) fn pct_decode_into(out: &mut Vec<u8>, input: &[u8], plus_is_space: bool) {
    // Fast path (memchr): most keys and values have nothing to decode.
    let needs_decoding = input.contains(&b'%') || (plus_is_space && input.contains(&b'+'));
    if !needs_decoding {
        out.extend_from_slice(input);
        return;
    }
    let mut i = 0;
    while let Some(&c) = input.get(i) {
        if c == b'%' {
            let hi = input.get(i + 1).copied().and_then(hex_val);
            let lo = input.get(i + 2).copied().and_then(hex_val);
            if let (Some(hi), Some(lo)) = (hi, lo) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(if c == b'+' && plus_is_space { b' ' } else { c });
        i += 1;
    }
}

/// The percent-decoding of `input`, borrowed when there is nothing to decode.
pub(crate) fn pct_decode(input: &[u8], plus_is_space: bool) -> std::borrow::Cow<'_, [u8]> {
    if input.iter().any(|&c| c == b'%' || (plus_is_space && c == b'+')) {
        let mut out = Vec::with_capacity(input.len());
        pct_decode_into(&mut out, input, plus_is_space);
        std::borrow::Cow::Owned(out)
    } else {
        std::borrow::Cow::Borrowed(input)
    }
}

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// Appends Python's `urllib.parse.quote_plus(input)` to `out`: `A-Za-z0-9_.-~` kept, space
/// as `+`, every other byte as `%XX` (upper-case hex).
pub(crate) fn quote_plus_into(out: &mut Vec<u8>, input: &[u8]) {
    for &b in input {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => out.push(b),
            b' ' => out.push(b'+'),
            _ => {
                out.push(b'%');
                out.push(HEX_UPPER[usize::from(b >> 4)]);
                out.push(HEX_UPPER[usize::from(b & 0x0f)]);
            }
        }
    }
}

/// Appends `input` with every `%5B%5D=` replaced by `[]=` (pyupbit's post-processing).
pub(crate) fn unbracket_into(out: &mut Vec<u8>, input: &[u8]) {
    const NEEDLE: &[u8] = b"%5B%5D=";
    let mut rest = input;
    while let Some(pos) = rest.iter().position(|&b| b == b'%') {
        let (head, tail) = rest.split_at(pos);
        out.extend_from_slice(head);
        if tail.starts_with(NEEDLE) {
            out.extend_from_slice(b"[]=");
            rest = tail.get(NEEDLE.len()..).unwrap_or_default();
        } else {
            out.push(b'%');
            rest = tail.get(1..).unwrap_or_default();
        }
    }
    out.extend_from_slice(rest);
}

/// The DOC form of a raw URL query (`plus_is_space = false`) or form body (`true`), and how
/// many parameters it holds. Borrowed when it is `raw` itself — nothing to decode (no `%`, and
/// no `+` in a form body) and no empty segment — which is what clients send in the common
/// case; otherwise rebuilt pair by pair.
pub(crate) fn doc_raw(raw: &[u8], plus_is_space: bool) -> (Cow<'_, [u8]>, usize) {
    if let Some(n) = verbatim_pairs(raw, plus_is_space) {
        return (Cow::Borrowed(raw), n);
    }
    let mut doc = Vec::with_capacity(raw.len());
    let mut n = 0;
    for p in pairs(raw) {
        if n > 0 {
            doc.push(b'&');
        }
        n += 1;
        pct_decode_into(&mut doc, p.key, plus_is_space);
        if let Some(v) = p.value {
            doc.push(b'=');
            pct_decode_into(&mut doc, v, plus_is_space);
        }
    }
    (Cow::Owned(doc), n)
}

/// The number of pairs in `raw` when its DOC form is `raw` itself: non-empty, no empty
/// segment (leading, trailing or doubled `&`), nothing percent-decoding would change.
fn verbatim_pairs(raw: &[u8], plus_is_space: bool) -> Option<usize> {
    let mut n = 1;
    let mut after_amp = true;
    for &b in raw {
        match b {
            b'%' => return None,
            b'+' if plus_is_space => return None,
            b'&' if after_amp => return None,
            b'&' => {
                n += 1;
                after_amp = true;
            }
            _ => after_amp = false,
        }
    }
    (!after_amp).then_some(n)
}

/// The PYU form of a raw URL query or form body.
pub(crate) fn pyu_raw(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    unbracket_into(&mut out, raw);
    out
}

fn scalar_text<'a>(s: &'a Scalar<'_>) -> &'a [u8] {
    match s {
        Scalar::Str(v) => v.as_bytes(),
        Scalar::Num(n) => n.as_bytes(),
        Scalar::Bool(true) => b"true",
        Scalar::Bool(false) => b"false",
    }
}

/// The `(key, value)` pairs of a flat JSON body in document order: arrays become one pair per
/// element with the key as written (`"states[]": ["a","b"]` → `states[]=a&states[]=b`).
fn json_pairs<'e>(entries: &'e [Entry<'_>]) -> impl Iterator<Item = (&'e [u8], &'e [u8])> {
    entries.iter().flat_map(|e| {
        let items = match &e.value {
            Value::Scalar(v) => std::slice::from_ref(v),
            Value::Array(items) => items.as_slice(),
        };
        items.iter().map(move |v| (e.key.as_bytes(), scalar_text(v)))
    })
}

/// The DOC form of a flat JSON body, and how many parameters it holds.
pub(crate) fn doc_json(entries: &[Entry<'_>]) -> (Vec<u8>, usize) {
    let mut doc = Vec::new();
    let mut n = 0;
    for (k, v) in json_pairs(entries) {
        if n > 0 {
            doc.push(b'&');
        }
        n += 1;
        doc.extend_from_slice(k);
        doc.push(b'=');
        doc.extend_from_slice(v);
    }
    (doc, n)
}

/// The PYU form of a flat JSON body: `urlencode(pairs, quote_via=quote_plus)` with
/// `%5B%5D=` turned back into `[]=`.
pub(crate) fn pyu_json(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut encoded = Vec::new();
    for (i, (k, v)) in json_pairs(entries).enumerate() {
        if i > 0 {
            encoded.push(b'&');
        }
        quote_plus_into(&mut encoded, k);
        encoded.push(b'=');
        quote_plus_into(&mut encoded, v);
    }
    pyu_raw(&encoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::signing::json_flat::parse_object;
    use proptest::prelude::*;

    struct Canonical {
        doc: Vec<u8>,
        pyu: Vec<u8>,
        pairs: usize,
    }

    fn canonical_raw(raw: &[u8], plus_is_space: bool) -> Canonical {
        let (doc, pairs) = doc_raw(raw, plus_is_space);
        let slow = doc_raw_slow(raw, plus_is_space);
        assert_eq!((doc.as_ref(), pairs), (slow.0.as_slice(), slow.1), "{:?}", s(raw));
        Canonical { doc: doc.into_owned(), pyu: pyu_raw(raw), pairs }
    }

    fn canonical_json(entries: &[crate::signing::json_flat::Entry<'_>]) -> Canonical {
        let (doc, pairs) = doc_json(entries);
        Canonical { doc, pyu: pyu_json(entries), pairs }
    }

    /// The DOC form always rebuilt pair by pair (the reference for the borrowed fast path).
    fn doc_raw_slow(raw: &[u8], plus_is_space: bool) -> (Vec<u8>, usize) {
        let mut doc = Vec::new();
        let mut n = 0;
        for p in pairs(raw) {
            if n > 0 {
                doc.push(b'&');
            }
            n += 1;
            pct_decode_into(&mut doc, p.key, plus_is_space);
            if let Some(v) = p.value {
                doc.push(b'=');
                pct_decode_into(&mut doc, v, plus_is_space);
            }
        }
        (doc, n)
    }

    #[test]
    fn verbatim_fast_path_edges() {
        for (raw, n) in [
            (&b"a=1"[..], Some(1)),
            (b"a=1&b&c=", Some(3)),
            (b"", None),
            (b"&a=1", None),
            (b"a=1&", None),
            (b"a=1&&b=2", None),
            (b"a=%41", None),
            (b"a=b+c", Some(1)),
        ] {
            assert_eq!(verbatim_pairs(raw, false), n, "{:?}", s(raw));
            let _ = canonical_raw(raw, false);
            let _ = canonical_raw(raw, true);
        }
        assert_eq!(verbatim_pairs(b"a=b+c", true), None);
    }

    fn s(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    #[test]
    fn splits_in_wire_order_and_keeps_duplicates() {
        let got: Vec<_> = pairs(b"a=1&&b&a=2&=x&c=").map(|p| (s(p.key), p.value.map(s))).collect();
        assert_eq!(
            got,
            [
                ("a".into(), Some("1".into())),
                ("b".into(), None),
                ("a".into(), Some("2".into())),
                ("".into(), Some("x".into())),
                ("c".into(), Some("".into())),
            ]
        );
    }

    #[test]
    fn decodes_like_python_unquote() {
        assert_eq!(pct_decode(b"a%20b+c", false).as_ref(), b"a b+c");
        assert_eq!(pct_decode(b"a%20b+c", true).as_ref(), b"a b c");
        assert_eq!(pct_decode(b"%E2%82%ac%", false).as_ref(), "€%".as_bytes());
        assert_eq!(pct_decode(b"%zz%4", false).as_ref(), b"%zz%4");
        assert!(matches!(pct_decode(b"plain", true), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn quotes_like_python_quote_plus() {
        let mut out = Vec::new();
        quote_plus_into(&mut out, "my id/1:+x~_.-[]é".as_bytes());
        assert_eq!(s(&out), "my+id%2F1%3A%2Bx~_.-%5B%5D%C3%A9");
    }

    #[test]
    fn documented_examples() {
        // exchange-auth.md §1.3: the docs' GET example (query as sent by requests) and POST body.
        let c = canonical_raw(b"market=KRW-BTC&states%5B%5D=wait&states%5B%5D=watch", false);
        assert_eq!(s(&c.doc), "market=KRW-BTC&states[]=wait&states[]=watch");
        assert_eq!(s(&c.pyu), "market=KRW-BTC&states[]=wait&states[]=watch");
        assert_eq!(c.pairs, 3);
        let body = br#"{"market":"KRW-BTC","side":"bid","volume":"0.01","price":"100.0","ord_type":"limit"}"#;
        let Ok(entries) = parse_object(body) else { unreachable!() };
        let c = canonical_json(&entries);
        assert_eq!(s(&c.doc), "market=KRW-BTC&side=bid&volume=0.01&price=100.0&ord_type=limit");
        assert_eq!(c.doc, c.pyu);
    }

    #[test]
    fn pyupbit_form_differs_only_where_encoding_is_needed() {
        let body = br#"{"identifier": "my id/1:+x", "n": 5, "ok": true, "states[]": ["a b", 2]}"#;
        let Ok(entries) = parse_object(body) else { unreachable!() };
        let c = canonical_json(&entries);
        assert_eq!(s(&c.doc), "identifier=my id/1:+x&n=5&ok=true&states[]=a b&states[]=2");
        assert_eq!(s(&c.pyu), "identifier=my+id%2F1%3A%2Bx&n=5&ok=true&states[]=a+b&states[]=2");
        let form = canonical_raw(b"start_time=2024-01-01T00%3A00%3A00%2B09%3A00&x=a+b", true);
        assert_eq!(s(&form.doc), "start_time=2024-01-01T00:00:00+09:00&x=a b");
        assert_eq!(s(&form.pyu), "start_time=2024-01-01T00%3A00%3A00%2B09%3A00&x=a+b");
    }

    /// Python's `quote(s, safe='')`, which ccxt's `urlencode` uses for URL queries.
    fn quote(v: &str) -> String {
        let mut out = Vec::new();
        quote_plus_into(&mut out, v.as_bytes());
        s(&out).replace('+', "%20")
    }

    fn quote_plus(v: &str) -> String {
        let mut out = Vec::new();
        quote_plus_into(&mut out, v.as_bytes());
        s(&out)
    }

    fn json_string(v: &str) -> String {
        serde_json::to_string(v).unwrap_or_default()
    }

    proptest! {
        #[test]
        fn pairs_and_decoding_never_panic(input in proptest::collection::vec(any::<u8>(), 0..300)) {
            let n = pairs(&input).count();
            prop_assert!(n <= input.len());
            let _ = canonical_raw(&input, true);
            let _ = canonical_raw(&input, false);
            let mut out = Vec::new();
            unbracket_into(&mut out, &input);
            prop_assert!(out.len() <= input.len());
        }

        /// For any flat parameter set, every transport the clients use canonicalises back to
        /// the documented `k=v&k=v` string, and the PYU form equals pyupbit's own output.
        #[test]
        fn doc_and_pyu_round_trip(
            params in proptest::collection::vec(("[a-z_]{1,8}(\\[\\])?", "[ -~é€한]{0,12}"), 1..6)
        ) {
            let expected_doc = params.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            let pyupbit = params
                .iter()
                .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
                .collect::<Vec<_>>()
                .join("&")
                .replace("%5B%5D=", "[]=");

            // ccxt: URL query encoded with `quote`.
            let query = params.iter().map(|(k, v)| format!("{}={}", quote(k), quote(v))).collect::<Vec<_>>().join("&");
            let c = canonical_raw(query.as_bytes(), false);
            prop_assert_eq!(s(&c.doc), expected_doc.clone());
            prop_assert_eq!(c.pairs, params.len());

            // pyupbit: form body encoded with `quote_plus`.
            let form = params.iter().map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v))).collect::<Vec<_>>().join("&");
            let c = canonical_raw(form.as_bytes(), true);
            prop_assert_eq!(s(&c.doc), expected_doc.clone());
            prop_assert_eq!(s(&c.pyu), pyupbit.clone());

            // JSON body (keys made unique, as a Python dict would).
            let mut seen = std::collections::BTreeSet::new();
            let unique: Vec<_> = params.iter().filter(|(k, _)| seen.insert(k.clone())).collect();
            let json = format!(
                "{{{}}}",
                unique.iter().map(|(k, v)| format!("{}: {}", json_string(k), json_string(v))).collect::<Vec<_>>().join(", ")
            );
            let Ok(entries) = parse_object(json.as_bytes()) else { unreachable!("{json}") };
            let c = canonical_json(&entries);
            let doc = unique.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
            let pyu = unique
                .iter()
                .map(|(k, v)| format!("{}={}", quote_plus(k), quote_plus(v)))
                .collect::<Vec<_>>()
                .join("&")
                .replace("%5B%5D=", "[]=");
            prop_assert_eq!(s(&c.doc), doc);
            prop_assert_eq!(s(&c.pyu), pyu);
        }
    }
}
