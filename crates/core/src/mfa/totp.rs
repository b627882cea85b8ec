//! Time-based one-time passwords: HOTP (RFC 4226) and TOTP (RFC 6238), hand-rolled on
//! `hmac` + `sha1`/`sha2` so that the whole algorithm fits on one screen and can be audited.
//!
//! # Algorithm
//!
//! * HOTP (RFC 4226 §5.3): `HOTP(K, C) = Truncate(HMAC(K, C)) mod 10^digits`, with `C` a
//!   **64-bit big-endian** counter and the dynamic truncation of §5.4 (offset = low nibble of
//!   the last MAC byte, 31 bits read from there).
//! * TOTP (RFC 6238 §4): `C = T = floor((now − T0) / X)` with `T0 = 0` and `X` = the period.
//!   `T` is a `u64`, so the algorithm keeps working after 2038 (and after 2106; R22).
//!
//! # Invariants
//!
//! * Seeds ([`TotpSecret`]) are at least 128 bits; new ones are exactly 160 bits from the
//!   injected CSPRNG (RFC 4226 §4 R6, RFC 6238 §5.1, R21). They print as `[REDACTED]` and are
//!   zeroed on drop (R93). The raw bytes are handed to the caller only to be sealed with
//!   [`crate::crypto::envelope::Keyring::seal`] (R26).
//! * Enrolment always uses [`TotpParams::ENROLMENT`]: SHA-1, 6 digits, 30 s (R22), because many
//!   authenticator apps silently ignore other algorithms. SHA-256/512 and 8 digits exist for the
//!   RFC vectors and for validated import.
//! * Time comes only from the `now` argument, which must be the server's clock (R25).
//!
//! # Verification ([`verify`])
//!
//! * Only the steps `{T−1, T, T+1}` are accepted (RFC 6238 §5.2, R23): one step of network
//!   delay or clock skew either way, and nothing further.
//! * All three candidates are computed and compared in constant time and the results are
//!   combined with `subtle`, without short-circuit (R90), so timing does not reveal which
//!   step (if any) matched.
//! * A correct code whose step is `≤ last_used_step` is refused as
//!   [`TotpCheck::Replayed`] (RFC 6238 §5.2: "the verifier MUST NOT accept the second attempt
//!   of the OTP after the successful validation has been issued for the first OTP"; R24), a
//!   distinct outcome so the caller can audit `totp_replay` and notify the user.
//!
//! # Storage contract (R24, F8)
//!
//! [`verify`] is pure; the single-use guarantee needs the store's help. On
//! [`TotpCheck::Accepted`]`{ step }` the caller must persist the step with one atomic,
//! conditional write and treat the login as successful **only if that write changed a row**:
//!
//! ```sql
//! UPDATE mfa_totp SET last_step = :step
//!  WHERE id = :factor_id AND (last_step IS NULL OR last_step < :step)
//! ```
//!
//! Zero rows updated means another request (possibly on another instance) consumed this step
//! or a later one between the read of `last_used_step` and the write: the caller treats it
//! exactly like [`TotpCheck::Replayed`] (deny, `totp_replay` audit event, notification). The
//! `last_used_step` passed to [`verify`] may therefore be read without a lock; it only lets the
//! common replay be reported without a write.
//!
//! # Attacks stopped
//!
//! Replay of an observed code (single use), guessing beyond the window (three codes per attempt;
//! with the attempt throttle that is ≤ 0.03 %, see [`crate::mfa`]), timing side channels on the
//! comparison, client-supplied clocks, and 2038-style counter overflow. Phishing is **not**
//! stopped: a code typed into a fake site can be relayed within its window. WebAuthn is the
//! phishing-resistant factor.

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::base32;
use crate::clock::Timestamp;
use crate::rng::SecureRng;
use crate::secret::{SecretBytes, SecretString};

/// Length of a newly generated seed: 160 bits, the HMAC-SHA-1 output size (R21).
pub const SEED_BYTES: usize = 20;

/// Shortest seed accepted on import: 128 bits (RFC 4226 §4 R6, R21).
pub const MIN_SEED_BYTES: usize = 16;

/// Longest seed accepted on import: 512 bits (the SHA-512 block of the RFC 6238 vectors).
pub const MAX_SEED_BYTES: usize = 64;

/// Longest presented code (in bytes, before normalisation) that is looked at at all.
const MAX_CODE_INPUT: usize = 32;

/// Errors from building TOTP parameters, seeds and codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    /// A seed shorter than [`MIN_SEED_BYTES`] or longer than [`MAX_SEED_BYTES`].
    #[error("TOTP seed must be {MIN_SEED_BYTES} to {MAX_SEED_BYTES} bytes, got {0}")]
    SeedLength(usize),
    /// The seed text is not strict RFC 4648 base32.
    #[error("TOTP seed is not valid base32: {0}")]
    Base32(#[from] base32::Base32Error),
    /// A digit count other than 6 or 8.
    #[error("TOTP codes must have 6 or 8 digits")]
    Digits,
    /// A period outside [`TotpParams::MIN_PERIOD`]..=[`TotpParams::MAX_PERIOD`].
    #[error("TOTP period must be between {} and {} seconds", TotpParams::MIN_PERIOD, TotpParams::MAX_PERIOD)]
    Period,
    /// An algorithm name other than `SHA1`, `SHA256` or `SHA512`.
    #[error("TOTP algorithm must be SHA1, SHA256 or SHA512")]
    Algorithm,
    /// A presented code that is not the configured number of ASCII digits.
    #[error("malformed TOTP code")]
    MalformedCode,
}

/// The HMAC hash function (RFC 6238 §1.2 allows SHA-1, SHA-256 and SHA-512).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Algorithm {
    /// HMAC-SHA-1: the only one enrolment uses (app interoperability).
    Sha1,
    /// HMAC-SHA-256: vectors and import only.
    Sha256,
    /// HMAC-SHA-512: vectors and import only.
    Sha512,
}

impl Algorithm {
    /// The name used in `otpauth://` URIs: `SHA1`, `SHA256`, `SHA512`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
        }
    }

    /// Parses an `otpauth://` algorithm name, ASCII case-insensitively (some generators write
    /// `sha1`). Anything else, including `SHA-1` and `MD5`, is refused.
    pub fn parse(s: &str) -> Result<Self, TotpError> {
        [Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512]
            .into_iter()
            .find(|a| a.as_str().eq_ignore_ascii_case(s))
            .ok_or(TotpError::Algorithm)
    }
}

/// Number of digits in a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Digits {
    /// Six digits: enrolment default (R22).
    Six,
    /// Eight digits: RFC 6238 Appendix B vectors and import.
    Eight,
}

impl Digits {
    /// The digit count as a number.
    pub const fn count(self) -> u32 {
        match self {
            Digits::Six => 6,
            Digits::Eight => 8,
        }
    }

    /// `6` or `8`; anything else (`7`, `10`, …) is refused.
    pub fn from_count(n: u32) -> Result<Self, TotpError> {
        match n {
            6 => Ok(Digits::Six),
            8 => Ok(Digits::Eight),
            _ => Err(TotpError::Digits),
        }
    }

    const fn modulus(self) -> u32 {
        match self {
            Digits::Six => 1_000_000,
            Digits::Eight => 100_000_000,
        }
    }
}

/// Validated TOTP parameters. Fields are private so an invalid combination cannot exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TotpParams {
    algorithm: Algorithm,
    digits: Digits,
    period: u32,
}

impl TotpParams {
    /// What every new enrolment uses: HMAC-SHA-1, 6 digits, 30 s (R22).
    pub const ENROLMENT: TotpParams = TotpParams { algorithm: Algorithm::Sha1, digits: Digits::Six, period: 30 };

    /// Shortest accepted period, in seconds.
    pub const MIN_PERIOD: u32 = 15;

    /// Longest accepted period, in seconds. Longer periods make a phished code live longer;
    /// 120 s still covers every authenticator we know of that deviates from 30 s.
    pub const MAX_PERIOD: u32 = 120;

    /// Parameters for import or for test vectors, validated.
    pub fn new(algorithm: Algorithm, digits: Digits, period: u32) -> Result<Self, TotpError> {
        if !(Self::MIN_PERIOD..=Self::MAX_PERIOD).contains(&period) {
            return Err(TotpError::Period);
        }
        Ok(Self { algorithm, digits, period })
    }

    /// The HMAC hash.
    pub const fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// Digits per code.
    pub const fn digits(&self) -> Digits {
        self.digits
    }

    /// The time step `X`, in seconds.
    pub const fn period(&self) -> u32 {
        self.period
    }
}

impl Default for TotpParams {
    fn default() -> Self {
        Self::ENROLMENT
    }
}

/// A TOTP seed `K`. `Debug` shows only its length; the buffer is zeroed on drop.
#[derive(Clone)]
pub struct TotpSecret(SecretBytes);

impl TotpSecret {
    /// A fresh 160-bit seed from `rng` (R21).
    pub fn generate(rng: &dyn SecureRng) -> Self {
        let mut seed = Zeroizing::new(vec![0u8; SEED_BYTES]);
        rng.fill(&mut seed);
        Self(SecretBytes::new(std::mem::take(&mut *seed)))
    }

    /// Wraps raw seed bytes (from an opened envelope, or a test vector), checking the length.
    pub fn from_bytes(bytes: SecretBytes) -> Result<Self, TotpError> {
        let len = bytes.expose().len();
        if !(MIN_SEED_BYTES..=MAX_SEED_BYTES).contains(&len) {
            return Err(TotpError::SeedLength(len));
        }
        Ok(Self(bytes))
    }

    /// Decodes a seed typed or scanned by a user: strict base32 (see [`base32`]), then the
    /// length check of [`TotpSecret::from_bytes`] (R27).
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        let mut raw = base32::decode(text)?;
        Self::from_bytes(SecretBytes::new(std::mem::take(&mut *raw)))
    }

    /// The seed as unpadded uppercase base32, for the enrolment page's "enter this key" text
    /// and the `otpauth://` URI. Show it only during enrolment (R26).
    pub fn to_base32(&self) -> SecretString {
        SecretString::new(base32::encode(self.0.expose()))
    }

    /// The raw seed, for the caller to seal (envelope encryption, R26) before storing it.
    pub fn expose(&self) -> &SecretBytes {
        &self.0
    }
}

impl std::fmt::Debug for TotpSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TotpSecret({:?})", self.0)
    }
}

/// A presented code after normalisation: exactly [`Digits::count`] ASCII digits.
///
/// Whitespace policy: surrounding ASCII whitespace is trimmed (paste artefacts) and ASCII
/// spaces **inside** the code are removed, because authenticator apps display codes grouped as
/// `123 456`. Nothing else is tolerated: no tabs or newlines inside, no `-`, no signs, no
/// non-ASCII digits (`٣`, `３`). Input longer than 32 bytes is refused before it is looked at.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct TotpCode {
    value: u32,
    #[zeroize(skip)]
    digits: Digits,
}

impl TotpCode {
    /// Normalises and validates `input` for codes of `digits` digits.
    pub fn parse(input: &str, digits: Digits) -> Result<Self, TotpError> {
        if input.len() > MAX_CODE_INPUT {
            return Err(TotpError::MalformedCode);
        }
        let mut count = 0u32;
        let mut value = 0u32;
        for b in input.trim_ascii().bytes().filter(|&b| b != b' ') {
            if !b.is_ascii_digit() || count >= digits.count() {
                return Err(TotpError::MalformedCode);
            }
            value = value * 10 + u32::from(b - b'0');
            count += 1;
        }
        if count != digits.count() {
            return Err(TotpError::MalformedCode);
        }
        Ok(Self { value, digits })
    }

    /// The number of digits.
    pub const fn digits(&self) -> Digits {
        self.digits
    }
}

impl std::fmt::Debug for TotpCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpCode([REDACTED])")
    }
}

/// The outcome of [`verify`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpCheck {
    /// The code is correct for `step`, which is newer than the last used step. The caller must
    /// now consume `step` with the atomic conditional update described in the module
    /// documentation, and succeed only if that update changed a row.
    Accepted {
        /// The time step (`T`) the code belongs to.
        step: u64,
    },
    /// The code is correct for `step`, but `step ≤ last_used_step`: a replayed or stale code.
    /// Deny, emit a `totp_replay` audit event and notify the user (R24).
    Replayed {
        /// The already-consumed step the code belongs to.
        step: u64,
    },
    /// The code is well-formed but matches none of `T−1`, `T`, `T+1` (or `now` is before the
    /// epoch). Counts as a failed attempt.
    Rejected,
    /// The input is not a code of the configured length (see [`TotpCode`]). Counts as a failed
    /// attempt too; it is answered without computing any HMAC.
    Malformed,
}

impl TotpCheck {
    /// Whether the code may be accepted (subject to the store's atomic step update).
    pub const fn is_accepted(&self) -> bool {
        matches!(self, TotpCheck::Accepted { .. })
    }
}

/// HMAC of `msg` under `key` with the chosen hash. `None` cannot happen (HMAC takes keys of any
/// length) but is handled rather than unwrapped; callers treat it as "no match".
pub(crate) fn hmac_digest(algorithm: Algorithm, key: &[u8], msg: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    fn run<M: Mac + KeyInit>(key: &[u8], msg: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let mut mac = <M as KeyInit>::new_from_slice(key).ok()?;
        mac.update(msg);
        Some(Zeroizing::new(mac.finalize().into_bytes().to_vec()))
    }
    match algorithm {
        Algorithm::Sha1 => run::<Hmac<Sha1>>(key, msg),
        Algorithm::Sha256 => run::<Hmac<Sha256>>(key, msg),
        Algorithm::Sha512 => run::<Hmac<Sha512>>(key, msg),
    }
}

/// RFC 4226 §5.4 dynamic truncation: 31 bits starting at the offset named by the low nibble of
/// the last byte. `None` only for a MAC shorter than 20 bytes, which no supported hash produces.
pub(crate) fn dynamic_truncate(mac: &[u8]) -> Option<u32> {
    let offset = usize::from(mac.last()? & 0x0f);
    let window: [u8; 4] = mac.get(offset..offset + 4)?.try_into().ok()?;
    Some(u32::from_be_bytes(window) & 0x7fff_ffff)
}

/// The HOTP value for `counter`, reduced to `digits` digits.
fn hotp_value(secret: &TotpSecret, algorithm: Algorithm, digits: Digits, counter: u64) -> Option<u32> {
    let mac = hmac_digest(algorithm, secret.0.expose(), &counter.to_be_bytes())?;
    Some(dynamic_truncate(&mac)? % digits.modulus())
}

fn format_code(value: u32, digits: Digits) -> String {
    format!("{value:0width$}", width = digits.count() as usize)
}

/// The RFC 4226 HOTP code for `counter`, zero-padded to `digits` digits.
pub fn hotp(secret: &TotpSecret, algorithm: Algorithm, digits: Digits, counter: u64) -> String {
    // An empty string never equals a code, so the impossible HMAC failure fails closed.
    hotp_value(secret, algorithm, digits, counter).map(|v| format_code(v, digits)).unwrap_or_default()
}

/// The time step `T = floor(now / period)` (RFC 6238 §4.2, `T0 = 0`); `None` before the epoch.
pub fn step_at(params: &TotpParams, now: Timestamp) -> Option<u64> {
    let ms = u64::try_from(now.as_millis()).ok()?;
    Some(ms / (u64::from(params.period) * 1000))
}

/// The code an authenticator shows at `now`. Instants before the epoch give the code of step
/// 0 (no authenticator produces those; [`verify`] refuses them).
pub fn code_at(secret: &TotpSecret, params: &TotpParams, now: Timestamp) -> String {
    let step = step_at(params, now).unwrap_or(0);
    hotp(secret, params.algorithm, params.digits, step)
}

/// Checks a presented `code` at the server's `now`, given the last step this factor accepted.
///
/// Accepts only steps `T−1`, `T`, `T+1`; compares all three in constant time; refuses any step
/// `≤ last_used_step` as [`TotpCheck::Replayed`]. If the code matches several candidate steps
/// (a 1-in-10⁶ coincidence), the newest unused one is reported. See the module documentation
/// for the store's part of the contract.
pub fn verify(
    secret: &TotpSecret,
    params: &TotpParams,
    code: &str,
    now: Timestamp,
    last_used_step: Option<u64>,
) -> TotpCheck {
    let Ok(presented) = TotpCode::parse(code, params.digits) else { return TotpCheck::Malformed };
    let Some(current) = step_at(params, now) else { return TotpCheck::Rejected };

    let mut accepted = Choice::from(0);
    let mut accepted_step = 0u64;
    let mut replayed = Choice::from(0);
    let mut replayed_step = 0u64;
    // Ascending order: a later match overwrites an earlier one, so the newest step wins.
    for candidate in [current.checked_sub(1), Some(current), current.checked_add(1)] {
        // A missing candidate (T−1 at step 0) still costs one HMAC, masked out below.
        let exists = Choice::from(u8::from(candidate.is_some()));
        let step = candidate.unwrap_or(current);
        let expected = hotp_value(secret, params.algorithm, params.digits, step);
        let computed = Choice::from(u8::from(expected.is_some()));
        let mut expected = expected.unwrap_or(0);
        let matches = presented.value.ct_eq(&expected) & exists & computed;
        expected.zeroize();
        // Steps and `last_used_step` are not secret; only `matches` is.
        let fresh = Choice::from(u8::from(last_used_step.is_none_or(|last| step > last)));
        let is_accepted = matches & fresh;
        let is_replayed = matches & !fresh;
        accepted_step.conditional_assign(&step, is_accepted);
        replayed_step.conditional_assign(&step, is_replayed);
        accepted |= is_accepted;
        replayed |= is_replayed;
    }

    if bool::from(accepted) {
        TotpCheck::Accepted { step: accepted_step }
    } else if bool::from(replayed) {
        TotpCheck::Replayed { step: replayed_step }
    } else {
        TotpCheck::Rejected
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{OsRng, SeededRng};
    use serde_json::Value;
    use std::collections::HashSet;

    fn testdata(rel: &str) -> Value {
        let path = format!("{}/../../testdata/{rel}", env!("CARGO_MANIFEST_DIR"));
        let Ok(text) = std::fs::read_to_string(&path) else { unreachable!("missing {path}") };
        let Ok(json) = serde_json::from_str(&text) else { unreachable!("bad json {path}") };
        json
    }

    fn secret(bytes: &[u8]) -> TotpSecret {
        let Ok(s) = TotpSecret::from_bytes(SecretBytes::new(bytes.to_vec())) else { unreachable!() };
        s
    }

    fn rfc_secret() -> TotpSecret {
        secret(b"12345678901234567890")
    }

    fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
        v.get(key).and_then(Value::as_str).unwrap_or_default()
    }

    #[test]
    fn rfc4226_appendix_d_hotp_and_intermediates() {
        let d = testdata("rfc/rfc4226_hotp.json");
        let key = hex::decode(str_of(&d, "secret_hex")).unwrap_or_default();
        assert_eq!(key, b"12345678901234567890");
        let s = secret(&key);
        let vectors = d.get("vectors").and_then(Value::as_array).cloned().unwrap_or_default();
        assert_eq!(vectors.len(), 10);
        for v in &vectors {
            let count = v.get("count").and_then(Value::as_u64).unwrap_or(u64::MAX);
            let mac = hmac_digest(Algorithm::Sha1, &key, &count.to_be_bytes()).unwrap_or_default();
            assert_eq!(hex::encode(&*mac), str_of(v, "hmac_sha1_hex"), "count {count}");
            let truncated = dynamic_truncate(&mac);
            assert_eq!(truncated.map(u64::from), v.get("truncated_dec").and_then(Value::as_u64), "count {count}");
            assert_eq!(
                truncated.map(|t| format!("{t:x}")).as_deref(),
                Some(str_of(v, "truncated_hex")),
                "count {count}"
            );
            assert_eq!(hotp(&s, Algorithm::Sha1, Digits::Six, count), str_of(v, "hotp"), "count {count}");
        }
    }

    #[test]
    fn rfc6238_appendix_b_all_rows() {
        let d = testdata("rfc/rfc6238_totp.json");
        let seeds = d.get("seeds_ascii").cloned().unwrap_or(Value::Null);
        let vectors = d.get("vectors").and_then(Value::as_array).cloned().unwrap_or_default();
        assert_eq!(vectors.len(), 18);
        let mut saw_64_bit_counter = false;
        for v in &vectors {
            let mode = str_of(v, "mode");
            let Ok(alg) = Algorithm::parse(mode) else { unreachable!("{mode}") };
            let seed = str_of(&seeds, mode).as_bytes();
            assert_eq!(
                seed.len(),
                match alg {
                    Algorithm::Sha1 => 20,
                    Algorithm::Sha256 => 32,
                    Algorithm::Sha512 => 64,
                }
            );
            let s = secret(seed);
            let t = v.get("unix_time").and_then(Value::as_i64).unwrap_or(-1);
            let Ok(p8) = TotpParams::new(alg, Digits::Eight, 30) else { unreachable!() };
            let Ok(p6) = TotpParams::new(alg, Digits::Six, 30) else { unreachable!() };
            let now = Timestamp::from_secs(t);
            let step = step_at(&p8, now).unwrap_or_default();
            assert_eq!(format!("{step:016X}"), str_of(v, "T_hex"), "{t}");
            saw_64_bit_counter |= step > u64::from(u32::MAX) / 30 && t == 20_000_000_000;
            let expected = str_of(v, "totp");
            assert_eq!(code_at(&s, &p8, now), expected, "{mode} at {t}");
            // The 6-digit code is the low 6 digits of the 8-digit one.
            assert_eq!(code_at(&s, &p6, now), expected[2..], "{mode} at {t}");
            assert_eq!(verify(&s, &p8, expected, now, None), TotpCheck::Accepted { step }, "{mode} at {t}");
        }
        assert!(saw_64_bit_counter);
    }

    #[test]
    fn wycheproof_hmac_sha1_full_length_tags() {
        let d = testdata("wycheproof/testvectors_v1/hmac_sha1_test.json");
        let groups = d.get("testGroups").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut checked = 0;
        for g in groups.iter().filter(|g| g.get("tagSize").and_then(Value::as_u64) == Some(160)) {
            for t in g.get("tests").and_then(Value::as_array).into_iter().flatten() {
                let key = hex::decode(str_of(t, "key")).unwrap_or_default();
                let msg = hex::decode(str_of(t, "msg")).unwrap_or_default();
                let tag = hex::decode(str_of(t, "tag")).unwrap_or_default();
                let Some(mac) = hmac_digest(Algorithm::Sha1, &key, &msg) else { unreachable!() };
                let equal = crate::secret::ct_eq_bytes(&mac, &tag);
                let valid = str_of(t, "result") == "valid";
                assert_eq!(equal, valid, "tcId {:?}", t.get("tcId"));
                checked += 1;
            }
        }
        assert!(checked >= 80, "only {checked} full-length vectors");
    }

    /// HOTP values of the RFC seed for counters 0..=4 (RFC 4226 Appendix D), which are the
    /// 6-digit TOTP codes of steps 0..=4 for a 30 s period.
    const STEP_CODES: [&str; 5] = ["755224", "287082", "359152", "969429", "338314"];

    #[test]
    fn window_is_one_step_each_way_with_exact_edges() {
        let s = rfc_secret();
        let p = TotpParams::ENROLMENT;
        // 59.999 s is still step 1: steps 0, 1, 2 are accepted, step 3 (T+2) is not.
        let edge = Timestamp::from_millis(59_999);
        assert_eq!(step_at(&p, edge), Some(1));
        for (step, code) in STEP_CODES.iter().enumerate().take(3) {
            assert_eq!(verify(&s, &p, code, edge, None), TotpCheck::Accepted { step: step as u64 });
        }
        assert_eq!(verify(&s, &p, STEP_CODES[3], edge, None), TotpCheck::Rejected);
        // 60.000 s is step 2: step 0 is now T−2 and refused, step 3 is T+1 and accepted.
        let next = Timestamp::from_millis(60_000);
        assert_eq!(step_at(&p, next), Some(2));
        assert_eq!(verify(&s, &p, STEP_CODES[0], next, None), TotpCheck::Rejected);
        for (step, code) in STEP_CODES.iter().enumerate().take(4).skip(1) {
            assert_eq!(verify(&s, &p, code, next, None), TotpCheck::Accepted { step: step as u64 });
        }
        assert_eq!(verify(&s, &p, STEP_CODES[4], next, None), TotpCheck::Rejected);
        // At step 0 there is no T−1; T and T+1 still work.
        let start = Timestamp::from_millis(0);
        assert_eq!(verify(&s, &p, STEP_CODES[0], start, None), TotpCheck::Accepted { step: 0 });
        assert_eq!(verify(&s, &p, STEP_CODES[1], start, None), TotpCheck::Accepted { step: 1 });
        assert_eq!(verify(&s, &p, STEP_CODES[2], start, None), TotpCheck::Rejected);
    }

    #[test]
    fn used_steps_are_replays() {
        let s = rfc_secret();
        let p = TotpParams::ENROLMENT;
        let now = Timestamp::from_millis(45_000); // step 1
        assert_eq!(verify(&s, &p, STEP_CODES[1], now, None), TotpCheck::Accepted { step: 1 });
        // The same code again after step 1 was stored.
        assert_eq!(verify(&s, &p, STEP_CODES[1], now, Some(1)), TotpCheck::Replayed { step: 1 });
        // T−1's code after step T was used is refused too.
        assert_eq!(verify(&s, &p, STEP_CODES[0], now, Some(1)), TotpCheck::Replayed { step: 0 });
        // A newer step is still fine.
        assert_eq!(verify(&s, &p, STEP_CODES[2], now, Some(1)), TotpCheck::Accepted { step: 2 });
        // After T+1 was used, T's code is refused as well.
        assert_eq!(verify(&s, &p, STEP_CODES[1], now, Some(2)), TotpCheck::Replayed { step: 1 });
        // A wrong code is a plain rejection whatever was used before.
        assert_eq!(verify(&s, &p, "000000", now, Some(1)), TotpCheck::Rejected);
    }

    #[test]
    fn malformed_codes_are_refused_before_any_hmac() {
        let s = rfc_secret();
        let p = TotpParams::ENROLMENT;
        let now = Timestamp::from_millis(45_000);
        let long = "2".repeat(1000);
        for bad in
            ["", "28708", "2870821", "28708a", "287-082", "287\t082", "+287082", "２８７０８２", "287\n082", &long]
        {
            assert_eq!(verify(&s, &p, bad, now, None), TotpCheck::Malformed, "{bad:?}");
        }
        // Grouping spaces and surrounding whitespace are tolerated.
        for ok in ["287082", "287 082", " 287082\n", "2 8 7 0 8 2"] {
            assert_eq!(verify(&s, &p, ok, now, None), TotpCheck::Accepted { step: 1 }, "{ok:?}");
        }
        // An 8-digit code for 6-digit parameters is malformed, not a near miss.
        assert_eq!(verify(&s, &p, "41287082", now, None), TotpCheck::Malformed);
    }

    #[test]
    fn time_before_the_epoch_is_refused() {
        let s = rfc_secret();
        let p = TotpParams::ENROLMENT;
        let before = Timestamp::from_millis(-1);
        assert_eq!(step_at(&p, before), None);
        assert_eq!(verify(&s, &p, STEP_CODES[0], before, None), TotpCheck::Rejected);
    }

    #[test]
    fn parameters_are_validated() {
        assert_eq!(Digits::from_count(10), Err(TotpError::Digits));
        assert_eq!(Digits::from_count(7), Err(TotpError::Digits));
        assert_eq!(Digits::from_count(8), Ok(Digits::Eight));
        assert_eq!(TotpParams::new(Algorithm::Sha1, Digits::Six, 0), Err(TotpError::Period));
        assert_eq!(TotpParams::new(Algorithm::Sha1, Digits::Six, 14), Err(TotpError::Period));
        assert_eq!(TotpParams::new(Algorithm::Sha1, Digits::Six, 121), Err(TotpError::Period));
        assert!(TotpParams::new(Algorithm::Sha512, Digits::Eight, 60).is_ok());
        assert_eq!(Algorithm::parse("sha256"), Ok(Algorithm::Sha256));
        for bad in ["SHA-1", "MD5", "", "SHA1 "] {
            assert_eq!(Algorithm::parse(bad), Err(TotpError::Algorithm));
        }
        assert_eq!(TotpParams::default(), TotpParams::ENROLMENT);
    }

    #[test]
    fn seeds_have_the_right_length_and_stay_redacted() {
        assert_eq!(TotpSecret::from_bytes(SecretBytes::new(vec![1; 15])).err(), Some(TotpError::SeedLength(15)));
        assert_eq!(TotpSecret::from_bytes(SecretBytes::new(vec![1; 65])).err(), Some(TotpError::SeedLength(65)));
        // "JBSWY3DPEHPK3PXP" is the common 80-bit example seed: too short for R21.
        assert_eq!(TotpSecret::from_base32("JBSWY3DPEHPK3PXP").err(), Some(TotpError::SeedLength(10)));
        assert!(matches!(TotpSecret::from_base32("JBSWY3DP!"), Err(TotpError::Base32(_))));
        let s = TotpSecret::generate(&SeededRng::new(5));
        let b32 = s.to_base32();
        assert_eq!(b32.expose().len(), 32);
        let debug = format!("{s:?}");
        assert!(!debug.contains(b32.expose()) && debug.contains("REDACTED"), "{debug}");
        let Ok(back) = TotpSecret::from_base32(&b32.expose().to_ascii_lowercase()) else { unreachable!() };
        assert_eq!(back.expose().expose(), s.expose().expose());
        let Ok(code) = TotpCode::parse("123456", Digits::Six) else { unreachable!() };
        assert_eq!(format!("{code:?}"), "TotpCode([REDACTED])");
    }

    #[test]
    fn seeds_come_from_the_injected_rng() {
        let a = TotpSecret::generate(&SeededRng::new(11));
        let b = TotpSecret::generate(&SeededRng::new(11));
        let c = TotpSecret::generate(&SeededRng::new(12));
        assert_eq!(a.expose().expose(), b.expose().expose());
        assert_ne!(a.expose().expose(), c.expose().expose());
    }

    #[test]
    fn entropy_smoke_over_10k_seeds() {
        let seeds: Vec<Vec<u8>> =
            (0..10_000).map(|_| TotpSecret::generate(&OsRng).expose().expose().to_vec()).collect();
        assert!(seeds.iter().all(|s| s.len() == SEED_BYTES));
        assert_eq!(seeds.iter().collect::<HashSet<_>>().len(), 10_000);
        // χ² over byte values: 200 000 bytes in 256 bins, 255 degrees of freedom (mean 255,
        // sd ≈ 22.6). 400 is more than 6 sd out: a real generator never gets there, a stuck or
        // biased one (e.g. a seed that is half zeros) is far beyond it.
        let mut bins = [0u64; 256];
        for b in seeds.iter().flatten() {
            bins[usize::from(*b)] += 1;
        }
        let expected = (seeds.len() * SEED_BYTES) as f64 / 256.0;
        let chi2: f64 = bins.iter().map(|&o| (o as f64 - expected).powi(2) / expected).sum();
        assert!(chi2 < 400.0, "chi2 = {chi2}");
        // Bit balance: 1.6 M bits, sd 632; 6 sd is 3 800.
        let ones: u64 = seeds.iter().flatten().map(|b| u64::from(b.count_ones())).sum();
        assert!(ones.abs_diff(800_000) < 3_800, "ones = {ones}");
    }
}
