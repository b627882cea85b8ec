//! RFC 8941 Structured Field Values: the dictionary parser and the inner-list serializer that
//! RFC 9421 (`Signature-Input`, `Signature`) and RFC 9530 (`Content-Digest`) are built on.
//!
//! Only what those fields need is implemented, but it is implemented to the letter of
//! RFC 8941 §4.2 (parsing) and §4.1 (serialization), because the `@signature-params` line of a
//! signature base is the *serialization of the parsed value* (RFC 9421 §2.3): a lenient parser
//! or a sloppy serializer would make two different wire values share one signature base.
//!
//! Deviations, all stricter than the RFC: a duplicated dictionary key or parameter key is an
//! error instead of "last one wins" (a parser differential is how a signed value and an acted-on
//! value drift apart), and byte sequences must be canonical padded base64. Parsing is a single
//! left-to-right pass; every loop consumes input, so work is linear in the field length.
//!
//! Keys, tokens and escape-free strings borrow the field text (a `Signature-Input` parses
//! with a handful of allocations, not one per component and parameter).

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::codec;

/// Why a structured field was refused. Deliberately coarse: the caller maps every variant to
/// its dialect's "malformed" error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SfError {
    /// The text is not a valid RFC 8941 value of the expected type.
    #[error("invalid structured field syntax")]
    Syntax,
    /// A dictionary key or a parameter key appears twice.
    #[error("duplicate key in structured field")]
    DuplicateKey,
}

/// An RFC 8941 bare item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum BareItem<'a> {
    /// `sf-integer`, at most 15 digits.
    Integer(i64),
    /// `sf-decimal`, held exactly as thousandths.
    Decimal(i64),
    /// `sf-string` (printable ASCII), borrowed unless it had escapes.
    String(Cow<'a, str>),
    /// `sf-token`.
    Token(Cow<'a, str>),
    /// `sf-binary`.
    ByteSeq(Vec<u8>),
    /// `sf-boolean`.
    Boolean(bool),
}

/// Parameters, in wire order, keys unique.
pub(crate) type Params<'a> = Vec<(Cow<'a, str>, BareItem<'a>)>;

/// A bare item with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Item<'a> {
    pub bare: BareItem<'a>,
    pub params: Params<'a>,
}

/// An inner list with its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InnerList<'a> {
    pub items: Vec<Item<'a>>,
    pub params: Params<'a>,
}

/// The value of a dictionary member.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Member<'a> {
    Item(Item<'a>),
    InnerList(InnerList<'a>),
}

/// A dictionary: members in wire order, keys unique.
pub(crate) type Dictionary<'a> = Vec<(Cow<'a, str>, Member<'a>)>;

/// Parses an RFC 8941 dictionary (§4.2.2), keeping members in wire order.
pub(crate) fn parse_dictionary(input: &[u8]) -> Result<Dictionary<'_>, SfError> {
    // Every byte of a structured field is ASCII, so anything else fails to parse anyway;
    // refusing it up front lets the parser slice `&str`s without re-validating each one.
    let text = std::str::from_utf8(input).ok().filter(|t| t.is_ascii()).ok_or(SfError::Syntax)?;
    let mut p = Parser { b: input, s: text, i: 0 };
    p.skip_sp();
    let mut out: Dictionary<'_> = Vec::new();
    if p.at_end() {
        return Ok(out);
    }
    loop {
        let key = p.key()?;
        let member = if p.eat(b'=') {
            p.item_or_inner_list()?
        } else {
            Member::Item(Item { bare: BareItem::Boolean(true), params: p.params()? })
        };
        out.push((key, member));
        p.skip_ows();
        if p.at_end() {
            return if has_duplicate_keys(&out) { Err(SfError::DuplicateKey) } else { Ok(out) };
        }
        if !p.eat(b',') {
            return Err(SfError::Syntax);
        }
        p.skip_ows();
        if p.at_end() {
            return Err(SfError::Syntax);
        }
    }
}

/// Whether two entries share a key: pairwise for a handful (no allocation), sort-based
/// (`O(n log n)`) above that, so a 4 KiB field of 800 one-letter members costs no more than
/// a sort — never a quadratic scan.
fn has_duplicate_keys<T>(entries: &[(Cow<'_, str>, T)]) -> bool {
    if entries.len() <= 16 {
        return entries.iter().enumerate().any(|(i, (a, _))| entries.iter().skip(i + 1).any(|(b, _)| a == b));
    }
    let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_ref()).collect();
    keys.sort_unstable();
    keys.windows(2).any(|w| w.first() == w.get(1))
}

/// Serializes an inner list with its parameters (RFC 8941 §4.1.1.1).
pub(crate) fn serialize_inner_list(list: &InnerList<'_>) -> String {
    let mut out = Vec::with_capacity(128);
    serialize_inner_list_into(&mut out, list);
    // Every serialized byte is ASCII (strings and tokens were parsed as ASCII, keys are
    // lower-case ASCII, byte sequences become base64), so this never replaces anything.
    String::from_utf8_lossy(&out).into_owned()
}

/// Appends the serialization of an inner list with its parameters (RFC 8941 §4.1.1.1).
pub(crate) fn serialize_inner_list_into(out: &mut Vec<u8>, list: &InnerList<'_>) {
    out.push(b'(');
    for (n, item) in list.items.iter().enumerate() {
        if n > 0 {
            out.push(b' ');
        }
        serialize_bare(out, &item.bare);
        serialize_params(out, &item.params);
    }
    out.push(b')');
    serialize_params(out, &list.params);
}

/// Serializes one `sf-string` (RFC 8941 §4.1.6).
fn serialize_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let mut rest = s.as_bytes();
    while let Some(i) = rest.iter().position(|&c| c == b'"' || c == b'\\') {
        let (head, tail) = rest.split_at(i);
        out.extend_from_slice(head);
        out.push(b'\\');
        let (escaped, after) = tail.split_at(1);
        out.extend_from_slice(escaped);
        rest = after;
    }
    out.extend_from_slice(rest);
    out.push(b'"');
}

fn serialize_params(out: &mut Vec<u8>, params: &Params<'_>) {
    for (k, v) in params {
        out.push(b';');
        out.extend_from_slice(k.as_bytes());
        if *v != BareItem::Boolean(true) {
            out.push(b'=');
            serialize_bare(out, v);
        }
    }
}

/// Appends the decimal digits of `n` (no `fmt` machinery: this runs for every request).
fn serialize_integer(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut v = n;
    loop {
        start -= 1;
        if let Some(d) = digits.get_mut(start) {
            *d = b'0' + (v % 10) as u8;
        }
        v /= 10;
        if v == 0 || start == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(start..).unwrap_or_default());
}

fn serialize_bare(out: &mut Vec<u8>, v: &BareItem<'_>) {
    match v {
        BareItem::Integer(n) => {
            if *n < 0 {
                out.push(b'-');
            }
            serialize_integer(out, n.unsigned_abs());
        }
        BareItem::Decimal(thousandths) => {
            if *thousandths < 0 {
                out.push(b'-');
            }
            let abs = thousandths.unsigned_abs();
            serialize_integer(out, abs / 1000);
            out.push(b'.');
            let frac = format!("{:03}", abs % 1000);
            out.extend_from_slice(frac.trim_end_matches('0').as_bytes());
            if frac == "000" {
                out.push(b'0');
            }
        }
        BareItem::String(s) => serialize_string(out, s),
        BareItem::Token(t) => out.extend_from_slice(t.as_bytes()),
        BareItem::ByteSeq(b) => {
            out.push(b':');
            out.extend_from_slice(STANDARD.encode(b).as_bytes());
            out.push(b':');
        }
        BareItem::Boolean(b) => out.extend_from_slice(if *b { b"?1" } else { b"?0" }),
    }
}

struct Parser<'a> {
    b: &'a [u8],
    /// `b` as text (all ASCII).
    s: &'a str,
    i: usize,
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn at_end(&self) -> bool {
        self.i >= self.b.len()
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == Some(c) {
            self.i += 1;
            true
        } else {
            false
        }
    }

    fn skip_sp(&mut self) {
        while self.peek() == Some(b' ') {
            self.i += 1;
        }
    }

    fn skip_ows(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.i += 1;
        }
    }

    /// `key = ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" )`
    fn key(&mut self) -> Result<Cow<'a, str>, SfError> {
        let start = self.i;
        match self.peek() {
            Some(b'a'..=b'z' | b'*') => self.i += 1,
            _ => return Err(SfError::Syntax),
        }
        while matches!(self.peek(), Some(b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'.' | b'*')) {
            self.i += 1;
        }
        self.ascii(start)
    }

    /// The bytes from `start` to the cursor, known to be ASCII by the caller's grammar.
    fn ascii(&self, start: usize) -> Result<Cow<'a, str>, SfError> {
        self.s.get(start..self.i).map(Cow::Borrowed).ok_or(SfError::Syntax)
    }

    fn params(&mut self) -> Result<Params<'a>, SfError> {
        let mut out: Params<'a> = Vec::new();
        while self.eat(b';') {
            if out.is_empty() {
                out.reserve(4);
            }
            self.skip_sp();
            let key = self.key()?;
            let value = if self.eat(b'=') { self.bare_item()? } else { BareItem::Boolean(true) };
            out.push((key, value));
        }
        if has_duplicate_keys(&out) {
            return Err(SfError::DuplicateKey);
        }
        Ok(out)
    }

    fn item_or_inner_list(&mut self) -> Result<Member<'a>, SfError> {
        if self.peek() == Some(b'(') { self.inner_list().map(Member::InnerList) } else { self.item().map(Member::Item) }
    }

    fn item(&mut self) -> Result<Item<'a>, SfError> {
        let bare = self.bare_item()?;
        let params = self.params()?;
        Ok(Item { bare, params })
    }

    fn inner_list(&mut self) -> Result<InnerList<'a>, SfError> {
        if !self.eat(b'(') {
            return Err(SfError::Syntax);
        }
        // Sized for a typical `Signature-Input` (five to seven components) in one allocation.
        let mut items = Vec::with_capacity(8);
        loop {
            self.skip_sp();
            if self.eat(b')') {
                let params = self.params()?;
                return Ok(InnerList { items, params });
            }
            items.push(self.item()?);
            if !matches!(self.peek(), Some(b' ' | b')')) {
                return Err(SfError::Syntax);
            }
        }
    }

    fn bare_item(&mut self) -> Result<BareItem<'a>, SfError> {
        match self.peek() {
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b'"') => self.string().map(BareItem::String),
            Some(b':') => self.byte_seq().map(BareItem::ByteSeq),
            Some(b'?') => self.boolean().map(BareItem::Boolean),
            Some(b'A'..=b'Z' | b'a'..=b'z' | b'*') => self.token().map(BareItem::Token),
            _ => Err(SfError::Syntax),
        }
    }

    /// RFC 8941 §4.2.4: at most 15 integer digits, or 12 + up to 3 fractional digits.
    fn number(&mut self) -> Result<BareItem<'a>, SfError> {
        let negative = self.eat(b'-');
        let mut int_digits = 0usize;
        let mut value: i64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            int_digits += 1;
            if int_digits > 15 {
                return Err(SfError::Syntax);
            }
            value = value * 10 + i64::from(d - b'0');
            self.i += 1;
        }
        if int_digits == 0 {
            return Err(SfError::Syntax);
        }
        if !self.eat(b'.') {
            return Ok(BareItem::Integer(if negative { -value } else { value }));
        }
        if int_digits > 12 {
            return Err(SfError::Syntax);
        }
        let mut frac_digits = 0u32;
        let mut frac: i64 = 0;
        while let Some(d @ b'0'..=b'9') = self.peek() {
            frac_digits += 1;
            if frac_digits > 3 {
                return Err(SfError::Syntax);
            }
            frac = frac * 10 + i64::from(d - b'0');
            self.i += 1;
        }
        if frac_digits == 0 {
            return Err(SfError::Syntax);
        }
        let thousandths = value * 1000 + frac * 10i64.pow(3 - frac_digits);
        Ok(BareItem::Decimal(if negative { -thousandths } else { thousandths }))
    }

    fn string(&mut self) -> Result<Cow<'a, str>, SfError> {
        if !self.eat(b'"') {
            return Err(SfError::Syntax);
        }
        // Fast path: no escapes before the closing quote, borrowed.
        let rest = self.b.get(self.i..).ok_or(SfError::Syntax)?;
        let stop = rest.iter().position(|&c| c == b'"' || c == b'\\' || !(0x20..=0x7e).contains(&c));
        if let Some(end) = stop
            && rest.get(end) == Some(&b'"')
        {
            let text = self.s.get(self.i..self.i + end).ok_or(SfError::Syntax)?;
            self.i += end + 1;
            return Ok(Cow::Borrowed(text));
        }
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err(SfError::Syntax),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(Cow::Owned(out));
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => out.push(char::from(c)),
                        _ => return Err(SfError::Syntax),
                    }
                    self.i += 1;
                }
                Some(c @ 0x20..=0x7e) => {
                    out.push(char::from(c));
                    self.i += 1;
                }
                Some(_) => return Err(SfError::Syntax),
            }
        }
    }

    fn token(&mut self) -> Result<Cow<'a, str>, SfError> {
        let start = self.i;
        self.i += 1;
        while let Some(c) = self.peek() {
            let tchar = c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~:/".contains(&c);
            if !tchar {
                break;
            }
            self.i += 1;
        }
        self.ascii(start)
    }

    /// `":" *(ALPHA / DIGIT / "+" / "/" / "=") ":"`. The strict padded base64 decoder checks
    /// the alphabet, so the scan only looks for the closing colon.
    fn byte_seq(&mut self) -> Result<Vec<u8>, SfError> {
        if !self.eat(b':') {
            return Err(SfError::Syntax);
        }
        let rest = self.b.get(self.i..).ok_or(SfError::Syntax)?;
        let len = rest.iter().position(|&c| c == b':').ok_or(SfError::Syntax)?;
        let encoded = rest.get(..len).ok_or(SfError::Syntax)?;
        self.i += len + 1;
        codec::b64_padded_decode(encoded).ok_or(SfError::Syntax)
    }

    fn boolean(&mut self) -> Result<bool, SfError> {
        if !self.eat(b'?') {
            return Err(SfError::Syntax);
        }
        if self.eat(b'1') {
            Ok(true)
        } else if self.eat(b'0') {
            Ok(false)
        } else {
            Err(SfError::Syntax)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dict(s: &str) -> Result<Dictionary<'_>, SfError> {
        parse_dictionary(s.as_bytes())
    }

    fn inner(s: &str) -> Option<InnerList<'_>> {
        match dict(s).ok()?.into_iter().next()? {
            (_, Member::InnerList(l)) => Some(l),
            _ => None,
        }
    }

    #[test]
    fn parses_the_rfc9421_signature_input_example() {
        let Some(l) = inner(r#"sig-b26=("date" "@method" "@path");created=1618884473;keyid="test-key-ed25519""#) else {
            unreachable!()
        };
        assert_eq!(l.items.len(), 3);
        assert_eq!(l.items[1].bare, BareItem::String("@method".into()));
        assert_eq!(l.params[0], ("created".into(), BareItem::Integer(1_618_884_473)));
        assert_eq!(l.params[1], ("keyid".into(), BareItem::String("test-key-ed25519".into())));
        assert_eq!(
            serialize_inner_list(&l),
            r#"("date" "@method" "@path");created=1618884473;keyid="test-key-ed25519""#
        );
    }

    #[test]
    fn serialization_is_canonical() {
        // Extra spaces inside the list are allowed on the wire but not in the serialization.
        let Some(l) = inner(r#"a=(  "x"   "y" );n=007;d=1.50;t=tok;b;f=?0;s="q\"\\""#) else { unreachable!() };
        assert_eq!(serialize_inner_list(&l), r#"("x" "y");n=7;d=1.5;t=tok;b;f=?0;s="q\"\\""#);
    }

    #[test]
    fn dictionary_forms() {
        let Ok(d) = dict("a=1, b;x=?0,  c=:AQID:, d=\"s\" , e=tok") else { unreachable!() };
        let keys: Vec<&str> = d.iter().map(|(k, _)| k.as_ref()).collect();
        assert_eq!(keys, ["a", "b", "c", "d", "e"]);
        assert!(matches!(&d[2].1, Member::Item(Item { bare: BareItem::ByteSeq(b), .. }) if b == &[1, 2, 3]));
        assert!(matches!(&d[1].1, Member::Item(Item { bare: BareItem::Boolean(true), params }) if params.len() == 1));
        assert_eq!(dict("").map(|d| d.len()), Ok(0));
        assert_eq!(dict("  ").map(|d| d.len()), Ok(0));
    }

    #[test]
    fn rejects_malformed_and_duplicates() {
        for bad in [
            "a=1,",
            "a=1,,b=2",
            "A=1",
            "a=(1 2",
            "a=(\"x\"\"y\")",
            "a=\"unterminated",
            "a=\"bad\\escape\"",
            "a=:not base64!:",
            "a=:AQI:",
            "a=?2",
            "a=1234567890123456",
            "a=1.2345",
            "a=1.",
            "a=-",
            "a=1 b=2",
            "a=\"\u{7f}\"",
        ] {
            assert_eq!(dict(bad).err(), Some(SfError::Syntax), "{bad:?}");
        }
        assert_eq!(dict("a=1, a=2").err(), Some(SfError::DuplicateKey));
        // Large fields take the sort-based path.
        let many: Vec<String> = (0..800).map(|i| format!("k{i}=1")).collect();
        assert_eq!(dict(&many.join(",")).map(|d| d.len()), Ok(800));
        assert_eq!(dict(&format!("{},k7=2", many.join(","))).err(), Some(SfError::DuplicateKey));
        let params: String = (0..300).map(|i| format!(";p{i}")).collect();
        assert!(dict(&format!("a=1{params}")).is_ok());
        assert_eq!(dict(&format!("a=1{params};p299")).err(), Some(SfError::DuplicateKey));
        assert_eq!(dict("a=1;p;p").err(), Some(SfError::DuplicateKey));
    }

    fn arb_bare() -> impl Strategy<Value = BareItem<'static>> {
        prop_oneof![
            (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(BareItem::Integer),
            (-999_999_999_999_999i64..=999_999_999_999_999).prop_map(BareItem::Decimal),
            "[ -~]{0,20}".prop_map(|s| BareItem::String(Cow::Owned(s))),
            "[A-Za-z*][A-Za-z0-9:/!#$%&'*+.^_`|~-]{0,10}".prop_map(|t| BareItem::Token(Cow::Owned(t))),
            proptest::collection::vec(any::<u8>(), 0..20).prop_map(BareItem::ByteSeq),
            any::<bool>().prop_map(BareItem::Boolean),
        ]
    }

    fn arb_params() -> impl Strategy<Value = Params<'static>> {
        proptest::collection::btree_map("[a-z*][a-z0-9_.*-]{0,6}", arb_bare(), 0..4)
            .prop_map(|m| m.into_iter().map(|(k, v)| (Cow::Owned(k), v)).collect())
    }

    proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_dictionary(&input);
        }

        #[test]
        fn never_panics_on_field_like_text(input in "[a-z0-9=,;:()\" ?*.+/\\\\-]{0,80}") {
            let _ = parse_dictionary(input.as_bytes());
        }

        #[test]
        fn inner_lists_round_trip(
            items in proptest::collection::vec((arb_bare(), arb_params()), 0..6),
            params in arb_params(),
        ) {
            let list = InnerList {
                items: items.into_iter().map(|(bare, params)| Item { bare, params }).collect(),
                params,
            };
            let text = format!("sig={}", serialize_inner_list(&list));
            let parsed = parse_dictionary(text.as_bytes());
            prop_assert_eq!(parsed, Ok(vec![(Cow::Borrowed("sig"), Member::InnerList(list))]));
        }
    }
}
