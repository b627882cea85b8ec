//! Table-driven strict decoders for the hot path: unpadded base64url (JWT segments), padded
//! standard base64 (RFC 8941 byte sequences) and hex (`query_hash`). They accept exactly what
//! `base64`'s `URL_SAFE_NO_PAD` and `STANDARD` engines and `hex::decode_to_slice` accept
//! (checked against them by property tests below) — the right padding or none, no
//! whitespace, zero trailing bits — but without the general engines' per-call set-up, and
//! the unpadded one into a caller's buffer without allocating.

const INVALID: u8 = 0xff;

/// base64url alphabet → 6-bit value; every other byte is [`INVALID`].
static B64URL: [u8; 256] = {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// Standard base64 alphabet → 6-bit value; every other byte (`=` included) is [`INVALID`].
static B64STD: [u8; 256] = {
    let mut t = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        t[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    t
};

/// hex digit (either case) → 4-bit value; every other byte is [`INVALID`].
static HEX: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// The decoded length of `n` unpadded base64 characters, `None` when `n ≡ 1 (mod 4)`.
pub(crate) fn b64url_decoded_len(n: usize) -> Option<usize> {
    match n % 4 {
        0 => Some(n / 4 * 3),
        2 => Some(n / 4 * 3 + 1),
        3 => Some(n / 4 * 3 + 2),
        _ => None,
    }
}

/// Decodes unpadded base64url `input` into the start of `out`; the decoded length, or `None`
/// when `input` is not canonical unpadded base64url or `out` is too short.
pub(crate) fn b64url_decode(input: &[u8], out: &mut [u8]) -> Option<usize> {
    decode_unpadded(&B64URL, input, out)
}

/// Decodes canonical padded standard base64 (RFC 4648 §4, as `base64`'s `STANDARD` engine:
/// length a multiple of 4, `=` only as the final one or two characters, zero trailing bits),
/// the `sf-binary` encoding of RFC 8941.
pub(crate) fn b64_padded_decode(input: &[u8]) -> Option<Vec<u8>> {
    if !input.len().is_multiple_of(4) {
        return None;
    }
    let body = input.strip_suffix(b"==").or_else(|| input.strip_suffix(b"=")).unwrap_or(input);
    let mut out = vec![0u8; b64url_decoded_len(body.len())?];
    // Any `=` left inside `body` is an invalid character to the table.
    decode_unpadded(&B64STD, body, &mut out)?;
    Some(out)
}

fn decode_unpadded(table: &[u8; 256], input: &[u8], out: &mut [u8]) -> Option<usize> {
    let len = b64url_decoded_len(input.len())?;
    let out = out.get_mut(..len)?;
    let (chunks, tail) = input.as_chunks::<4>();
    let (out_chunks, out_tail) = out.as_chunks_mut::<3>();
    // Invalid characters are collected in `bad` and judged once, after the loop.
    let mut bad = 0u8;
    for (c, o) in chunks.iter().zip(out_chunks.iter_mut()) {
        let (a, b, c, d) =
            (table[usize::from(c[0])], table[usize::from(c[1])], table[usize::from(c[2])], table[usize::from(c[3])]);
        bad |= a | b | c | d;
        let n = u32::from(a) << 18 | u32::from(b) << 12 | u32::from(c) << 6 | u32::from(d);
        o[0] = (n >> 16) as u8;
        o[1] = (n >> 8) as u8;
        o[2] = n as u8;
    }
    if bad & 0x80 != 0 {
        return None;
    }
    match (tail, out_tail) {
        ([], []) => {}
        ([a, b], [x]) => {
            let (a, b) = (table[usize::from(*a)], table[usize::from(*b)]);
            // The last character's low 4 bits are padding and must be zero.
            if (a | b) & 0x80 != 0 || b & 0x0f != 0 {
                return None;
            }
            *x = a << 2 | b >> 4;
        }
        ([a, b, c], [x, y]) => {
            let (a, b, c) = (table[usize::from(*a)], table[usize::from(*b)], table[usize::from(*c)]);
            if (a | b | c) & 0x80 != 0 || c & 0x03 != 0 {
                return None;
            }
            *x = a << 2 | b >> 4;
            *y = b << 4 | c >> 2;
        }
        _ => return None,
    }
    Some(len)
}

/// The index of the first `byte` in `s`, eight bytes at a time (SWAR: in each word the
/// lowest flagged byte is exact, a borrow can only misflag bytes above a true hit).
pub(crate) fn find_byte(s: &[u8], byte: u8) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    let pattern = ONES * u64::from(byte);
    let (words, tail) = s.as_chunks::<8>();
    for (i, word) in words.iter().enumerate() {
        let x = u64::from_le_bytes(*word) ^ pattern;
        let hits = x.wrapping_sub(ONES) & !x & HIGH;
        if hits != 0 {
            return Some(i * 8 + (hits.trailing_zeros() / 8) as usize);
        }
    }
    tail.iter().position(|&c| c == byte).map(|p| words.len() * 8 + p)
}

/// The value of one hex digit (either case).
pub(crate) fn hex_val(b: u8) -> Option<u8> {
    let v = HEX[usize::from(b)];
    (v != INVALID).then_some(v)
}

/// Decodes exactly `2 × out.len()` hex digits (either case) into `out`; `false` on any other
/// input.
pub(crate) fn hex_decode(input: &[u8], out: &mut [u8]) -> bool {
    if input.len() != 2 * out.len() {
        return false;
    }
    let mut bad = 0u8;
    for (pair, o) in input.as_chunks::<2>().0.iter().zip(out.iter_mut()) {
        let (hi, lo) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        bad |= hi | lo;
        *o = hi << 4 | lo;
    }
    bad & 0x80 == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use proptest::prelude::*;

    fn decode(input: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![0u8; input.len()];
        let n = b64url_decode(input, &mut out)?;
        out.truncate(n);
        Some(out)
    }

    #[test]
    fn examples() {
        assert_eq!(decode(b"").as_deref(), Some(&b""[..]));
        assert_eq!(decode(b"eyJhbGciOiJIUzI1NiJ9").as_deref(), Some(&br#"{"alg":"HS256"}"#[..]));
        assert_eq!(decode(b"-_8").as_deref(), Some(&[0xfb, 0xff][..]));
        for bad in [&b"A"[..], b"AB==", b"AB=", b"+/8", b"AB", b"ABD", b"A B", b"ABCDE"] {
            assert_eq!(decode(bad), None, "{bad:?}");
        }
        let mut short = [0u8; 2];
        assert_eq!(b64url_decode(b"AAAA", &mut short), None);
        let mut h = [0u8; 2];
        assert!(hex_decode(b"aF09", &mut h));
        assert_eq!(h, [0xaf, 0x09]);
        assert!(!hex_decode(b"aF0", &mut h));
        assert!(!hex_decode(b"aG09", &mut h));
        assert!(!hex_decode(b"aF09aa", &mut h));
    }

    proptest! {
        /// Accepts exactly what the `base64` engine accepts, with the same bytes.
        #[test]
        fn b64url_agrees_with_the_base64_crate(input in "[A-Za-z0-9_=+/ -]{0,40}") {
            prop_assert_eq!(decode(input.as_bytes()), URL_SAFE_NO_PAD.decode(&input).ok());
        }

        /// Accepts exactly what the padded `STANDARD` engine accepts, with the same bytes.
        #[test]
        fn padded_agrees_with_the_base64_crate(input in "[A-Za-z0-9_=+/ -]{0,40}") {
            prop_assert_eq!(b64_padded_decode(input.as_bytes()), STANDARD.decode(&input).ok());
        }

        #[test]
        fn padded_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let text = STANDARD.encode(&bytes);
            prop_assert_eq!(b64_padded_decode(text.as_bytes()), Some(bytes));
            for bad in [format!("{text}="), format!("={text}"), text.replacen('A', "=", 1)] {
                prop_assert_eq!(b64_padded_decode(bad.as_bytes()), STANDARD.decode(&bad).ok());
            }
        }

        #[test]
        fn b64url_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            let text = URL_SAFE_NO_PAD.encode(&bytes);
            prop_assert_eq!(decode(text.as_bytes()), Some(bytes));
        }

        #[test]
        fn b64url_agrees_on_arbitrary_bytes(input in proptest::collection::vec(any::<u8>(), 0..40)) {
            prop_assert_eq!(decode(&input), URL_SAFE_NO_PAD.decode(&input).ok());
        }

        #[test]
        fn find_byte_agrees_with_position(input in proptest::collection::vec(prop_oneof![Just(b'.'), Just(b'/'), Just(b'-'), Just(0u8), Just(0xaeu8), any::<u8>()], 0..40)) {
            prop_assert_eq!(find_byte(&input, b'.'), input.iter().position(|&c| c == b'.'));
        }

        #[test]
        fn hex_agrees_with_the_hex_crate(input in "[0-9a-fA-FgG ]{0,12}") {
            let mut ours = vec![0u8; input.len() / 2];
            let mut theirs = ours.clone();
            let ok = hex_decode(input.as_bytes(), &mut ours);
            prop_assert_eq!(ok, hex::decode_to_slice(input.as_bytes(), &mut theirs).is_ok());
            if ok {
                prop_assert_eq!(ours, theirs);
            }
        }
    }
}
