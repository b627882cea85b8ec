//! Punycode (RFC 3492): the Bootstring encoding IDNA uses for `xn--` labels.
//!
//! A lookalike domain reaches the user as `xn--upbt-n9d.com` in one place (a mail header, a
//! certificate, a log line) and as `upbіt.com` in another (the address bar). The checker
//! has to see both forms to compare them with the official names, so it decodes every `xn--`
//! label and encodes every Unicode label it is given.
//!
//! This is the plain RFC 3492 algorithm (§6.1 bias adaptation, §6.2 decoding, §6.3 encoding)
//! with the §5 parameters for Punycode. It works on the part *after* `xn--`; the `xn--` prefix
//! and the IDNA rules around it (mapping, validity) belong to the caller. Invariants:
//!
//! * every integer step is checked: an input that would overflow (§6.4) is an error, never a
//!   wrapped value, so a crafted label cannot decode to something other than what it says;
//! * decoded code points are valid `char`s (no surrogates) and never basic (ASCII) ones, which
//!   the encoding may only carry literally;
//! * inputs and outputs are bounded by [`MAX_LEN`] code points, which keeps the quadratic
//!   insertion loop cheap whatever the input.
//!
//! Mixed-case annotation (§A) is not implemented: case is not meaningful in host names, and
//! basic code points keep the case they were given.

/// Longest input or output, in code points. DNS labels are at most 63 octets, so this is far
/// more than any host needs; the limit only bounds the work on hostile input.
pub const MAX_LEN: usize = 1024;

const BASE: u32 = 36;
const T_MIN: u32 = 1;
const T_MAX: u32 = 26;
const SKEW: u32 = 38;
const DAMP: u32 = 700;
const INITIAL_BIAS: u32 = 72;
const INITIAL_N: u32 = 0x80;
const DELIMITER: char = '-';

/// Why a string could not be decoded or encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PunycodeError {
    /// An encoded string contained a non-ASCII character.
    #[error("punycode input must be ASCII")]
    NotAscii,
    /// A character that is not a base-36 digit appeared where a digit was expected.
    #[error("punycode input contains an invalid digit")]
    InvalidDigit,
    /// The input ended in the middle of a variable-length integer.
    #[error("punycode input is truncated")]
    Truncated,
    /// An intermediate value did not fit (RFC 3492 §6.4).
    #[error("punycode value overflows")]
    Overflow,
    /// A decoded value is a surrogate, out of Unicode's range, or a basic code point.
    #[error("punycode input decodes to an invalid code point")]
    InvalidCodePoint,
    /// More than [`MAX_LEN`] code points.
    #[error("punycode input is too long")]
    TooLong,
}

/// RFC 3492 §6.1.
fn adapt(delta: u32, num_points: u32, first_time: bool) -> u32 {
    let mut delta = if first_time { delta / DAMP } else { delta / 2 };
    delta += delta / num_points.max(1);
    let mut k = 0;
    while delta > ((BASE - T_MIN) * T_MAX) / 2 {
        delta /= BASE - T_MIN;
        k += BASE;
    }
    k + (((BASE - T_MIN + 1) * delta) / (delta + SKEW))
}

/// The threshold `t` for position `k` (RFC 3492 §6.2, §6.3).
fn threshold(k: u32, bias: u32) -> u32 {
    if k <= bias {
        T_MIN
    } else if k >= bias + T_MAX {
        T_MAX
    } else {
        k - bias
    }
}

fn digit_value(c: char) -> Option<u32> {
    match c {
        'a'..='z' => Some(u32::from(c) - u32::from('a')),
        'A'..='Z' => Some(u32::from(c) - u32::from('A')),
        '0'..='9' => Some(u32::from(c) - u32::from('0') + 26),
        _ => None,
    }
}

fn digit_char(d: u32) -> char {
    // d < 36 by construction; the fallback is unreachable but keeps this total.
    match d {
        0..=25 => char::from_u32(u32::from('a') + d).unwrap_or('a'),
        _ => char::from_u32(u32::from('0') + d - 26).unwrap_or('0'),
    }
}

/// Decodes a Punycode string (without the `xn--` prefix) to Unicode (RFC 3492 §6.2).
pub fn decode(input: &str) -> Result<String, PunycodeError> {
    if !input.is_ascii() {
        return Err(PunycodeError::NotAscii);
    }
    if input.len() > MAX_LEN {
        return Err(PunycodeError::TooLong);
    }
    // Everything before the last delimiter is basic code points, copied as they are; a
    // delimiter at position 0 is not one (§6.2: "if b > 0").
    let (basic, digits) = match input.rfind(DELIMITER) {
        Some(pos) if pos > 0 => (&input[..pos], &input[pos + 1..]),
        _ => ("", input),
    };
    let mut output: Vec<char> = basic.chars().collect();
    let mut n = INITIAL_N;
    let mut i: u32 = 0;
    let mut bias = INITIAL_BIAS;
    let mut digits = digits.chars().peekable();
    while digits.peek().is_some() {
        let old_i = i;
        let mut w: u32 = 1;
        let mut k = BASE;
        loop {
            let c = digits.next().ok_or(PunycodeError::Truncated)?;
            let digit = digit_value(c).ok_or(PunycodeError::InvalidDigit)?;
            i = digit.checked_mul(w).and_then(|dw| i.checked_add(dw)).ok_or(PunycodeError::Overflow)?;
            let t = threshold(k, bias);
            if digit < t {
                break;
            }
            w = w.checked_mul(BASE - t).ok_or(PunycodeError::Overflow)?;
            k = k.checked_add(BASE).ok_or(PunycodeError::Overflow)?;
        }
        let len = u32::try_from(output.len() + 1).map_err(|_| PunycodeError::TooLong)?;
        bias = adapt(i - old_i, len, old_i == 0);
        n = n.checked_add(i / len).ok_or(PunycodeError::Overflow)?;
        i %= len;
        if n < INITIAL_N {
            return Err(PunycodeError::InvalidCodePoint);
        }
        let c = char::from_u32(n).ok_or(PunycodeError::InvalidCodePoint)?;
        if output.len() >= MAX_LEN {
            return Err(PunycodeError::TooLong);
        }
        // i < len = output.len() + 1, so the position is always valid.
        output.insert(i as usize, c);
        i += 1;
    }
    Ok(output.into_iter().collect())
}

/// Encodes a Unicode string to Punycode, without the `xn--` prefix (RFC 3492 §6.3).
pub fn encode(input: &str) -> Result<String, PunycodeError> {
    let chars: Vec<char> = input.chars().collect();
    if chars.len() > MAX_LEN {
        return Err(PunycodeError::TooLong);
    }
    let mut output: String = chars.iter().filter(|c| c.is_ascii()).collect();
    let basic = u32::try_from(output.len()).map_err(|_| PunycodeError::TooLong)?;
    let total = u32::try_from(chars.len()).map_err(|_| PunycodeError::TooLong)?;
    if basic > 0 {
        output.push(DELIMITER);
    }
    let mut n = INITIAL_N;
    let mut delta: u32 = 0;
    let mut bias = INITIAL_BIAS;
    let mut handled = basic;
    while handled < total {
        // The smallest code point not yet handled; one exists because handled < total.
        let Some(m) = chars.iter().map(|c| u32::from(*c)).filter(|c| *c >= n).min() else {
            return Err(PunycodeError::InvalidCodePoint);
        };
        delta = (m - n).checked_mul(handled + 1).and_then(|d| delta.checked_add(d)).ok_or(PunycodeError::Overflow)?;
        n = m;
        for c in chars.iter().map(|c| u32::from(*c)) {
            if c < n {
                delta = delta.checked_add(1).ok_or(PunycodeError::Overflow)?;
            }
            if c == n {
                let mut q = delta;
                let mut k = BASE;
                loop {
                    let t = threshold(k, bias);
                    if q < t {
                        break;
                    }
                    output.push(digit_char(t + (q - t) % (BASE - t)));
                    q = (q - t) / (BASE - t);
                    k += BASE;
                }
                output.push(digit_char(q));
                bias = adapt(delta, handled + 1, handled == basic);
                delta = 0;
                handled += 1;
            }
        }
        delta = delta.checked_add(1).ok_or(PunycodeError::Overflow)?;
        n = n.checked_add(1).ok_or(PunycodeError::Overflow)?;
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn from_points(points: &[u32]) -> String {
        points.iter().filter_map(|p| char::from_u32(*p)).collect()
    }

    /// RFC 3492 §7.1 sample strings: (A), (B), (C), (D), (L), (S).
    fn vectors() -> Vec<(String, &'static str)> {
        vec![
            (
                from_points(&[
                    0x0644, 0x064A, 0x0647, 0x0645, 0x0627, 0x0628, 0x062A, 0x0643, 0x0644, 0x0645, 0x0648, 0x0634,
                    0x0639, 0x0631, 0x0628, 0x064A, 0x061F,
                ]),
                "egbpdaj6bu4bxfgehfvwxn",
            ),
            (
                from_points(&[0x4ED6, 0x4EEC, 0x4E3A, 0x4EC0, 0x4E48, 0x4E0D, 0x8BF4, 0x4E2D, 0x6587]),
                "ihqwcrb4cv8a8dqg056pqjye",
            ),
            (
                from_points(&[0x4ED6, 0x5011, 0x7232, 0x4EC0, 0x9EBD, 0x4E0D, 0x8AAA, 0x4E2D, 0x6587]),
                "ihqwctvzc91f659drss3x8bo0yb",
            ),
            ("Pro\u{10D}prost\u{11B}nemluv\u{ED}\u{10D}esky".to_string(), "Proprostnemluvesky-uyb24dma41a"),
            (from_points(&[0x33, 0x5E74, 0x42, 0x7D44, 0x91D1, 0x516B, 0x5148, 0x751F]), "3B-ww4c5e180e575a65lsy2b"),
            ("-> $1.00 <-".to_string(), "-> $1.00 <--"),
        ]
    }

    #[test]
    fn rfc_3492_sample_strings_decode_and_encode_exactly() {
        for (unicode, puny) in vectors() {
            assert_eq!(decode(puny).as_deref(), Ok(unicode.as_str()), "decode {puny}");
            assert_eq!(encode(&unicode).as_deref(), Ok(puny), "encode {unicode}");
        }
        // (L) is "3年B組金八先生".
        assert_eq!(decode("3B-ww4c5e180e575a65lsy2b").as_deref(), Ok("3年B組金八先生"));
    }

    #[test]
    fn decoding_digits_is_case_insensitive_and_basic_case_is_kept() {
        assert_eq!(decode("IHQWCRB4CV8A8DQG056PQJYE"), decode("ihqwcrb4cv8a8dqg056pqjye"));
        assert_eq!(decode("3B-WW4C5E180E575A65LSY2B").as_deref(), Ok("3年B組金八先生"));
    }

    #[test]
    fn a_cyrillic_lookalike_label_round_trips() {
        // "upbіt" with U+0456 CYRILLIC SMALL LETTER BYELORUSSIAN-UKRAINIAN I.
        assert_eq!(encode("upb\u{456}t").as_deref(), Ok("upbt-n9d"));
        assert_eq!(decode("upbt-n9d").as_deref(), Ok("upb\u{456}t"));
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        assert_eq!(decode("ab\u{e9}"), Err(PunycodeError::NotAscii));
        assert_eq!(decode("abc-!!"), Err(PunycodeError::InvalidDigit));
        // A digit at or above the threshold announces more digits that never come.
        assert_eq!(decode("abc-9"), Err(PunycodeError::Truncated));
        // A leading delimiter is not a delimiter (b = 0), and '-' is not a digit.
        assert_eq!(decode("-abc"), Err(PunycodeError::InvalidDigit));
        assert_eq!(decode("99999999999999"), Err(PunycodeError::Overflow));
        // Decodes to U+D800, a surrogate.
        assert_eq!(decode("ib9b"), Err(PunycodeError::InvalidCodePoint));
        assert_eq!(decode(&"a".repeat(MAX_LEN + 1)), Err(PunycodeError::TooLong));
        assert_eq!(decode("").as_deref(), Ok(""));
        assert_eq!(encode("").as_deref(), Ok(""));
    }

    proptest! {
        #[test]
        fn encode_then_decode_is_the_identity(s in "\\PC{0,40}") {
            let Ok(encoded) = encode(&s) else { unreachable!("encoding {s:?}") };
            prop_assert!(encoded.is_ascii());
            prop_assert_eq!(decode(&encoded), Ok(s));
        }

        #[test]
        fn decoding_never_panics_and_reencodes_canonically(s in "[a-zA-Z0-9-]{0,40}") {
            if let Ok(d) = decode(&s) {
                prop_assert!(d.chars().count() <= MAX_LEN);
                prop_assert_eq!(encode(&d).ok().and_then(|e| decode(&e).ok()), Some(d));
            }
        }
    }
}
