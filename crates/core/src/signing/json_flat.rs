//! An order-preserving scanner for *flat* JSON objects: JWT headers and claims, and the Upbit
//! JSON bodies whose key/value pairs a `query_hash` covers (exchange-auth.md §1.3).
//!
//! Why not `serde_json::Value`: the hash is defined over the pairs in **document order** with
//! numbers as their **token text**, so a map that sorts keys or a parser that turns `100.0`
//! into `100` would hash something other than what the client sent. The scanner keeps both.
//!
//! Accepted: one object whose values are strings, numbers, booleans, or arrays of those.
//! Refused, so nothing is ever guessed (§1.3 "reject rather than guess"): nested objects or
//! arrays ([`JsonError::Nested`]), `null` ([`JsonError::Null`]), a key that appears twice
//! ([`JsonError::DuplicateKey`] — two parsers that keep different duplicates are how a signed
//! value and an executed value drift apart), more than [`MAX_PARAMS`] values, lone
//! surrogates, invalid UTF-8 and anything RFC 8259 does not allow. The scan is one pass plus
//! an `O(n log n)` duplicate check; it never panics.

use std::borrow::Cow;

use super::MAX_PARAMS;

/// A JSON scalar: a string's decoded value, a number's exact token text, or a boolean.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Num(&'a str),
    Bool(bool),
}

/// A member value: one scalar or a flat array of scalars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value<'a> {
    Scalar(Scalar<'a>),
    Array(Vec<Scalar<'a>>),
}

/// One object member, in document order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry<'a> {
    pub key: Cow<'a, str>,
    pub value: Value<'a>,
}

/// Why a body or JWT segment is not a flat JSON object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum JsonError {
    /// Not JSON, not UTF-8, or not an object.
    #[error("not a JSON object")]
    Syntax,
    /// A nested object, or an array inside an array.
    #[error("nested JSON value")]
    Nested,
    /// A `null` value.
    #[error("JSON null")]
    Null,
    /// The same key twice.
    #[error("duplicate JSON key")]
    DuplicateKey,
    /// More than [`MAX_PARAMS`] values.
    #[error("too many JSON values")]
    TooMany,
}

/// Parses `input` as one flat JSON object.
pub(crate) fn parse_object(input: &[u8]) -> Result<Vec<Entry<'_>>, JsonError> {
    let text = std::str::from_utf8(input).map_err(|_| JsonError::Syntax)?;
    let mut c = Cursor { s: text, i: 0 };
    c.ws();
    c.expect(b'{')?;
    let mut entries: Vec<Entry<'_>> = Vec::new();
    let mut values = 0usize;
    c.ws();
    if !c.eat(b'}') {
        loop {
            c.ws();
            let key = c.string()?;
            c.ws();
            c.expect(b':')?;
            c.ws();
            let value = c.value()?;
            values += match &value {
                Value::Scalar(_) => 1,
                Value::Array(a) => a.len().max(1),
            };
            if values > MAX_PARAMS {
                return Err(JsonError::TooMany);
            }
            entries.push(Entry { key, value });
            c.ws();
            if c.eat(b'}') {
                break;
            }
            c.expect(b',')?;
        }
    }
    c.ws();
    if c.peek().is_some() {
        return Err(JsonError::Syntax);
    }
    if has_duplicate_key(&entries) {
        return Err(JsonError::DuplicateKey);
    }
    Ok(entries)
}

/// Pairwise for the few members of a JWT or order body (at most 16² comparisons, no
/// allocation); sort-based, `O(n log n)`, above that.
fn has_duplicate_key(entries: &[Entry<'_>]) -> bool {
    if entries.len() <= 16 {
        return entries.iter().enumerate().any(|(i, a)| entries.iter().skip(i + 1).any(|b| a.key == b.key));
    }
    let mut keys: Vec<&str> = entries.iter().map(|e| e.key.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w.first() == w.get(1))
}

/// Finds the member `key` (keys are unique after [`parse_object`]).
pub(crate) fn get<'e, 'a>(entries: &'e [Entry<'a>], key: &str) -> Option<&'e Value<'a>> {
    entries.iter().find(|e| e.key == key).map(|e| &e.value)
}

/// The index of the first `"`, `\\` or control character (< 0x20) in `s`: eight bytes at a
/// time (SWAR), since JWT claims are mostly long strings (a 128-digit `query_hash`, a UUID).
/// In each word the lowest flagged byte is exact: the zero-byte tests can only misflag bytes
/// above a true hit (through a borrow), never below one.
fn string_stop(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w;
    let (words, tail) = s.as_chunks::<8>();
    for (i, word) in words.iter().enumerate() {
        let w = u64::from_le_bytes(*word);
        let hits = (has_zero(w ^ (ONES * u64::from(b'"')))
            | has_zero(w ^ (ONES * u64::from(b'\\')))
            | (w.wrapping_sub(ONES * 0x20) & !w))
            & HIGH;
        if hits != 0 {
            return Some(i * 8 + (hits.trailing_zeros() / 8) as usize);
        }
    }
    tail.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20).map(|p| words.len() * 8 + p)
}

struct Cursor<'a> {
    s: &'a str,
    i: usize,
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.i).copied()
    }

    fn eat(&mut self, b: u8) -> bool {
        if self.peek() == Some(b) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, b: u8) -> Result<(), JsonError> {
        if self.eat(b) { Ok(()) } else { Err(JsonError::Syntax) }
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn slice(&self, from: usize) -> Result<&'a str, JsonError> {
        self.s.get(from..self.i).ok_or(JsonError::Syntax)
    }

    fn value(&mut self) -> Result<Value<'a>, JsonError> {
        if self.eat(b'[') {
            let mut items = Vec::new();
            self.ws();
            if self.eat(b']') {
                return Ok(Value::Array(items));
            }
            loop {
                self.ws();
                if matches!(self.peek(), Some(b'[' | b'{')) {
                    return Err(JsonError::Nested);
                }
                items.push(self.scalar()?);
                if items.len() > MAX_PARAMS {
                    return Err(JsonError::TooMany);
                }
                self.ws();
                if self.eat(b']') {
                    return Ok(Value::Array(items));
                }
                self.expect(b',')?;
            }
        }
        if self.peek() == Some(b'{') {
            return Err(JsonError::Nested);
        }
        self.scalar().map(Value::Scalar)
    }

    fn scalar(&mut self) -> Result<Scalar<'a>, JsonError> {
        match self.peek() {
            Some(b'"') => self.string().map(Scalar::Str),
            Some(b'-' | b'0'..=b'9') => self.number().map(Scalar::Num),
            Some(b't') => self.literal("true").map(|()| Scalar::Bool(true)),
            Some(b'f') => self.literal("false").map(|()| Scalar::Bool(false)),
            Some(b'n') => self.literal("null").and(Err(JsonError::Null)),
            _ => Err(JsonError::Syntax),
        }
    }

    fn literal(&mut self, word: &str) -> Result<(), JsonError> {
        let end = self.i + word.len();
        if self.s.get(self.i..end) == Some(word) {
            self.i = end;
            Ok(())
        } else {
            Err(JsonError::Syntax)
        }
    }

    /// `-? (0 | [1-9][0-9]*) (\.[0-9]+)? ([eE][+-]?[0-9]+)?`, returned as written.
    fn number(&mut self) -> Result<&'a str, JsonError> {
        let start = self.i;
        self.eat(b'-');
        match self.peek() {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(JsonError::Syntax),
        }
        if self.eat(b'.') {
            self.require_digits()?;
        }
        if matches!(self.peek(), Some(b'e' | b'E')) {
            self.i += 1;
            if matches!(self.peek(), Some(b'+' | b'-')) {
                self.i += 1;
            }
            self.require_digits()?;
        }
        self.slice(start)
    }

    fn digits(&mut self) {
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.i += 1;
        }
    }

    fn require_digits(&mut self) -> Result<(), JsonError> {
        let start = self.i;
        self.digits();
        if self.i == start { Err(JsonError::Syntax) } else { Ok(()) }
    }

    fn string(&mut self) -> Result<Cow<'a, str>, JsonError> {
        self.expect(b'"')?;
        let start = self.i;
        // Fast path: no escapes, borrow the text.
        let rest = self.s.as_bytes().get(start..).ok_or(JsonError::Syntax)?;
        let end = string_stop(rest).ok_or(JsonError::Syntax)?;
        self.i = start + end;
        match rest.get(end) {
            Some(b'"') => {
                let s = self.slice(start)?;
                self.i += 1;
                return Ok(Cow::Borrowed(s));
            }
            Some(b'\\') => {}
            _ => return Err(JsonError::Syntax),
        }
        let mut out = String::from(self.slice(start)?);
        loop {
            let run = self.i;
            while matches!(self.peek(), Some(c) if c != b'"' && c != b'\\' && c >= 0x20) {
                self.i += 1;
            }
            out.push_str(self.slice(run)?);
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    out.push(self.escape()?);
                }
                _ => return Err(JsonError::Syntax),
            }
        }
    }

    fn escape(&mut self) -> Result<char, JsonError> {
        let c = self.peek().ok_or(JsonError::Syntax)?;
        self.i += 1;
        Ok(match c {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hi = self.hex4()?;
                let code = match hi {
                    0xD800..=0xDBFF => {
                        if !(self.eat(b'\\') && self.eat(b'u')) {
                            return Err(JsonError::Syntax);
                        }
                        let lo = self.hex4()?;
                        if !(0xDC00..=0xDFFF).contains(&lo) {
                            return Err(JsonError::Syntax);
                        }
                        0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00)
                    }
                    0xDC00..=0xDFFF => return Err(JsonError::Syntax),
                    _ => hi,
                };
                char::from_u32(code).ok_or(JsonError::Syntax)?
            }
            _ => return Err(JsonError::Syntax),
        })
    }

    fn hex4(&mut self) -> Result<u32, JsonError> {
        let digits = self.s.get(self.i..self.i + 4).ok_or(JsonError::Syntax)?;
        if !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(JsonError::Syntax);
        }
        self.i += 4;
        u32::from_str_radix(digits, 16).map_err(|_| JsonError::Syntax)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<Vec<Entry<'_>>, JsonError> {
        parse_object(s.as_bytes())
    }

    #[test]
    fn keeps_order_number_text_and_decodes_strings() {
        let Ok(e) =
            parse(r#" {"z": "a\u00e9\ud83d\ude00\n\"", "a": 100.0, "m": -1e+5, "b": [true, "x", 0], "e": []} "#)
        else {
            unreachable!()
        };
        let keys: Vec<&str> = e.iter().map(|e| e.key.as_ref()).collect();
        assert_eq!(keys, ["z", "a", "m", "b", "e"]);
        assert_eq!(e[0].value, Value::Scalar(Scalar::Str(Cow::Owned("aé😀\n\"".into()))));
        assert_eq!(e[1].value, Value::Scalar(Scalar::Num("100.0")));
        assert_eq!(e[2].value, Value::Scalar(Scalar::Num("-1e+5")));
        assert_eq!(
            e[3].value,
            Value::Array(vec![Scalar::Bool(true), Scalar::Str(Cow::Borrowed("x")), Scalar::Num("0")])
        );
        assert_eq!(get(&e, "e"), Some(&Value::Array(vec![])));
        assert!(matches!(&e[3].value, Value::Array(v) if matches!(v[1], Scalar::Str(Cow::Borrowed(_)))));
        assert_eq!(parse("{}").map(|e| e.len()), Ok(0));
    }

    #[test]
    fn refuses_what_it_cannot_canonicalise() {
        assert_eq!(parse(r#"{"a":{"b":1}}"#), Err(JsonError::Nested));
        assert_eq!(parse(r#"{"a":[[1]]}"#), Err(JsonError::Nested));
        assert_eq!(parse(r#"{"a":[{}]}"#), Err(JsonError::Nested));
        assert_eq!(parse(r#"{"a":null}"#), Err(JsonError::Null));
        assert_eq!(parse(r#"{"a":[null]}"#), Err(JsonError::Null));
        assert_eq!(parse(r#"{"a":1,"a":2}"#), Err(JsonError::DuplicateKey));
        assert_eq!(parse(r#"{"a":1,"\u0061":2}"#), Err(JsonError::DuplicateKey));
        for bad in [
            "",
            "[]",
            "\"a\"",
            "{",
            "{\"a\"}",
            "{\"a\":1,}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":.5}",
            "{\"a\":+1}",
            "{\"a\":True}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"tab\there\"}",
            "{\"a\":1} x",
            "\u{feff}{}",
            "{'a':1}",
        ] {
            assert_eq!(parse(bad), Err(JsonError::Syntax), "{bad:?}");
        }
        assert_eq!(parse_object(b"{\"a\":\"\xff\"}"), Err(JsonError::Syntax));
        let many = format!("{{\"a\":[{}]}}", vec!["1"; MAX_PARAMS + 1].join(","));
        assert_eq!(parse(&many), Err(JsonError::TooMany));
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = parse_object(&input);
        }

        /// The word-at-a-time scan finds the same byte as the obvious one.
        #[test]
        fn string_stop_agrees_with_a_byte_scan(
            input in proptest::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), 0u8..0x20, 0x20u8..=0xff, Just(0x7fu8), Just(0x80u8), Just(0xffu8)], 0..40),
            filler in 0usize..20,
        ) {
            let mut s = vec![b'a'; filler];
            s.extend_from_slice(&input);
            prop_assert_eq!(string_stop(&s), s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20));
        }

        #[test]
        fn never_panics_on_json_like_text(input in r#"[{}\[\]":,0-9a-z\\ .eE+-]{0,60}"#) {
            let _ = parse_object(input.as_bytes());
        }

        /// Agrees with serde_json on every flat object serde_json itself writes.
        #[test]
        fn agrees_with_serde_json(
            members in proptest::collection::btree_map("\\PC{0,8}", prop_oneof![
                "\\PC{0,12}".prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<bool>().prop_map(serde_json::Value::from),
                proptest::collection::vec("[ -~]{0,4}", 0..3).prop_map(serde_json::Value::from),
            ], 0..6)
        ) {
            let object: serde_json::Map<String, serde_json::Value> = members.clone().into_iter().collect();
            let text = serde_json::Value::Object(object).to_string();
            let Ok(entries) = parse_object(text.as_bytes()) else { unreachable!("{text}") };
            prop_assert_eq!(entries.len(), members.len());
            for e in &entries {
                let expected = &members[e.key.as_ref()];
                let ok = match (&e.value, expected) {
                    (Value::Scalar(Scalar::Str(s)), serde_json::Value::String(x)) => s == x,
                    (Value::Scalar(Scalar::Num(n)), serde_json::Value::Number(x)) => *n == x.to_string(),
                    (Value::Scalar(Scalar::Bool(b)), serde_json::Value::Bool(x)) => b == x,
                    (Value::Array(a), serde_json::Value::Array(x)) => a.len() == x.len(),
                    _ => false,
                };
                prop_assert!(ok, "{:?} vs {:?}", e.value, expected);
            }
        }
    }
}
