//! RFC 4648 base32 (the §6 "standard" alphabet `A–Z 2–7`) for TOTP seeds.
//!
//! Seeds travel as base32 in `otpauth://` URIs and in the "enter this key manually" text of the
//! enrolment page, and they come back the same way on import. The encoder writes the canonical
//! form; the decoder is **strict** (R27, RFC 4648 §3.3 and §3.5) so that one seed has exactly
//! one accepted spelling and a malformed one is refused instead of being "repaired" into a
//! different key.
//!
//! # What the decoder accepts
//!
//! * Characters `A–Z` and `2–7`, and their lowercase forms `a–z` (case is folded per
//!   character, so mixed case is accepted). Nothing else: no whitespace, no hyphens, no `0`,
//!   `1`, `8`, `9`, no non-ASCII (RFC 4648 §3.3: "implementations MUST reject the encoded data if
//!   it contains characters outside the base alphabet").
//! * Either **no padding**, or **exactly the correct padding**: `=` only at the end, the total
//!   length a multiple of 8, and the number of `=` equal to what the data length requires
//!   (6, 4, 3 or 1). `"MY======"` is accepted, `"MY="`, `"MY========"`, `"M=Y====="` are not.
//! * Unpadded data whose length modulo 8 is 0, 2, 4, 5 or 7; lengths 1, 3 and 6 (mod 8) cannot
//!   come from any byte string and are refused.
//! * The unused low bits of the last character must be zero (RFC 4648 §3.5, "canonical
//!   encoding"): `"MZ"` is refused because `"MY"` is the only encoding of `f`.
//!
//! The empty string decodes to no bytes; callers that need a minimum length (a TOTP seed) check
//! it themselves.
//!
//! The decoded bytes are returned in a [`Zeroizing`] buffer because they are usually a seed.

use zeroize::{Zeroize as _, Zeroizing};

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// Why a base32 string was refused. Positions are byte offsets into the input; the offending
/// character itself is never included (the input may be a secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Base32Error {
    /// A byte outside `A–Z`, `a–z`, `2–7` and trailing `=`.
    #[error("character at offset {position} is not in the base32 alphabet")]
    InvalidCharacter {
        /// Byte offset of the first offending character.
        position: usize,
    },
    /// `=` somewhere other than at the end, or the wrong number of `=` for the data length.
    #[error("base32 padding is misplaced or has the wrong length")]
    InvalidPadding,
    /// A data length (1, 3 or 6 modulo 8) that no byte string encodes to.
    #[error("base32 data has an impossible length")]
    InvalidLength,
    /// The unused bits of the last character are not zero (non-canonical encoding).
    #[error("base32 trailing bits are not zero")]
    NonZeroTrailingBits,
}

/// Encodes `bytes` as uppercase RFC 4648 base32 **without** padding (the form authenticator
/// apps expect in `secret=`).
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(5) * 8);
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    for &b in bytes {
        buffer = (buffer << 8) | u16::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(symbol((buffer >> bits) & 0x1f));
        }
        // Keep only the bits not yet written, so the buffer never overflows.
        buffer &= (1u16 << bits) - 1;
    }
    if bits > 0 {
        out.push(symbol((buffer << (5 - bits)) & 0x1f));
    }
    buffer.zeroize();
    out
}

fn symbol(v: u16) -> char {
    char::from(ALPHABET.get(usize::from(v)).copied().unwrap_or(b'A'))
}

/// The 5-bit value of one base32 character, case-insensitively.
fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a'),
        b'2'..=b'7' => Some(c - b'2' + 26),
        _ => None,
    }
}

/// Decodes strict RFC 4648 base32 (see the module documentation for exactly what is accepted).
pub fn decode(input: &str) -> Result<Zeroizing<Vec<u8>>, Base32Error> {
    let raw = input.as_bytes();
    let data_len = raw.iter().position(|&c| c == b'=').unwrap_or(raw.len());
    let (data, padding) = raw.split_at(data_len);

    // Validate every data character first so that the error names the first bad byte.
    if let Some(position) = data.iter().position(|&c| value(c).is_none()) {
        return Err(Base32Error::InvalidCharacter { position });
    }
    if let Some(offset) = padding.iter().position(|&c| c != b'=') {
        // Something after the first `=`: a misplaced pad if it is alphabet, else a bad byte.
        let misplaced = padding.get(offset).is_some_and(|&c| value(c).is_some());
        return Err(if misplaced {
            Base32Error::InvalidPadding
        } else {
            Base32Error::InvalidCharacter { position: data_len + offset }
        });
    }

    let expected_pad = match data.len() % 8 {
        0 => 0,
        2 => 6,
        4 => 4,
        5 => 3,
        7 => 1,
        _ => return Err(Base32Error::InvalidLength),
    };
    if !padding.is_empty() && padding.len() != expected_pad {
        return Err(Base32Error::InvalidPadding);
    }

    let mut out = Zeroizing::new(Vec::with_capacity(data.len() * 5 / 8));
    let mut buffer: u16 = 0;
    let mut bits: u32 = 0;
    // Every byte of `data` was checked above; `filter_map` only restates that.
    for v in data.iter().filter_map(|&c| value(c)) {
        buffer = (buffer << 5) | u16::from(v);
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push(((buffer >> bits) & 0xff) as u8);
        }
        buffer &= (1u16 << bits) - 1;
    }
    // Whatever is left (fewer than 5 bits) is padding inside the last character: must be zero.
    let leftover_nonzero = buffer != 0;
    buffer.zeroize();
    if leftover_nonzero {
        return Err(Base32Error::NonZeroTrailingBits);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dec(s: &str) -> Result<Vec<u8>, Base32Error> {
        decode(s).map(|z| z.to_vec())
    }

    #[test]
    fn rfc4648_section10_vectors() {
        let cases: [(&[u8], &str, &str); 7] = [
            (b"", "", ""),
            (b"f", "MY", "MY======"),
            (b"fo", "MZXQ", "MZXQ===="),
            (b"foo", "MZXW6", "MZXW6==="),
            (b"foob", "MZXW6YQ", "MZXW6YQ="),
            (b"fooba", "MZXW6YTB", "MZXW6YTB"),
            (b"foobar", "MZXW6YTBOI", "MZXW6YTBOI======"),
        ];
        for (bytes, unpadded, padded) in cases {
            assert_eq!(encode(bytes), unpadded);
            assert_eq!(dec(unpadded).as_deref(), Ok(bytes), "{unpadded}");
            assert_eq!(dec(padded).as_deref(), Ok(bytes), "{padded}");
            assert_eq!(dec(&padded.to_ascii_lowercase()).as_deref(), Ok(bytes), "{padded}");
        }
    }

    #[test]
    fn rfc6238_seed_round_trips() {
        assert_eq!(encode(b"12345678901234567890"), "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
        assert_eq!(dec("gezdgnbvgy3tqojqGEZDGNBVGY3TQOJQ").as_deref(), Ok(&b"12345678901234567890"[..]));
    }

    #[test]
    fn characters_outside_the_alphabet_are_refused() {
        assert_eq!(dec("JBSWY3DP!"), Err(Base32Error::InvalidCharacter { position: 8 }));
        for bad in ["JBSW Y3DP", "JBSW-Y3DP", "JBSWY3D0", "JBSWY3D1", "JBSWY3D8", "JBSWÿ3DP", "JBSWY3DP\n"] {
            assert!(matches!(dec(bad), Err(Base32Error::InvalidCharacter { .. })), "{bad:?}");
        }
    }

    #[test]
    fn padding_must_be_exact_and_trailing() {
        for bad in ["MY=", "MY=====", "MY=======", "M=Y=====", "my==a===", "MZXW6YTB========", "========"] {
            assert!(
                matches!(dec(bad), Err(Base32Error::InvalidPadding | Base32Error::InvalidLength)),
                "{bad:?} gave {:?}",
                dec(bad)
            );
        }
        // Lowercase with padding in the wrong place (R27).
        assert_eq!(dec("jbsw=y3dp"), Err(Base32Error::InvalidPadding));
        assert_eq!(dec("MY==!==="), Err(Base32Error::InvalidCharacter { position: 4 }));
    }

    #[test]
    fn impossible_lengths_are_refused() {
        for bad in ["M", "MZX", "MZXW6Y", "M=======", "MZX=====", "MZXW6Y=="] {
            assert!(matches!(dec(bad), Err(Base32Error::InvalidLength | Base32Error::InvalidPadding)), "{bad:?}");
        }
    }

    #[test]
    fn non_zero_trailing_bits_are_refused() {
        // "MY" is f (0x66): M=12 (01100) Y=24 (11000); the low 2 bits of Y are pad bits.
        assert_eq!(dec("MZ"), Err(Base32Error::NonZeroTrailingBits));
        assert_eq!(dec("MZ======"), Err(Base32Error::NonZeroTrailingBits));
        assert_eq!(dec("MZXW6YR"), Err(Base32Error::NonZeroTrailingBits));
        assert_eq!(dec("MZXW6YQ"), Ok(b"foob".to_vec()));
    }

    proptest! {
        #[test]
        fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let text = encode(&bytes);
            prop_assert!(text.bytes().all(|c| ALPHABET.contains(&c)));
            prop_assert_eq!(dec(&text), Ok(bytes.clone()));
            prop_assert_eq!(dec(&text.to_ascii_lowercase()), Ok(bytes.clone()));
            // The correctly padded form decodes to the same bytes.
            let padded = format!("{text}{}", "=".repeat((8 - text.len() % 8) % 8));
            prop_assert_eq!(dec(&padded), Ok(bytes));
        }

        #[test]
        fn never_panics_on_arbitrary_text(s in ".{0,64}") {
            let _ = dec(&s);
        }

        #[test]
        fn never_panics_on_alphabet_soup(s in "[A-Za-z2-9=!0-1 ]{0,40}") {
            // Whatever is accepted re-encodes to the same bytes (canonical encoding).
            if let Ok(bytes) = dec(&s) {
                let again = encode(&bytes);
                prop_assert_eq!(dec(&again), Ok(bytes));
                prop_assert_eq!(again, s.trim_end_matches('=').to_ascii_uppercase());
            }
        }
    }
}
