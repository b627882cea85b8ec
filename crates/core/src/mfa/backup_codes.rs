//! Backup (recovery) codes: ten single-use look-up secrets, stored as Argon2id hashes.
//!
//! # Codes
//!
//! [`CODE_COUNT`] = 10 codes per set, each [`CODE_CHARS`] = 10 characters of Crockford base32
//! (`0–9 A–Z` without `I L O U`), so **50 bits** per code from the injected CSPRNG (R36 asks for
//! ≥ 20). They are shown once, grouped as `ABCDE-FGHJK`, and the codes of one set are distinct.
//!
//! Input is normalised before anything else ([`normalize`]): ASCII case is ignored, `-` and
//! spaces are dropped, and Crockford's aliases are applied (`O`→`0`, `I`/`L`→`1`); `U`, any
//! other character, or a length other than 10 after that is refused. Input longer than 64
//! bytes is refused unread.
//!
//! # Decision record: how the codes are hashed (R37)
//!
//! **Context.** A 50-bit code is below the 112-bit line of R37 / NIST SP 800-63B §5.1.2.2, so it
//! must be stored with an approved password hash and a salt: a plain or peppered fast hash of
//! 2⁵⁰ candidates is a few GPU-days of work. At the same time a login attempt must cost bounded
//! CPU (F10: an attacker should not be able to buy ten Argon2 runs per request), and the time
//! taken must not reveal which of the ten codes matched, or how many are left.
//!
//! Options considered:
//! 1. *One Argon2id hash per code, each with its own salt, checked against every stored code.*
//!    To keep one attempt affordable this needs parameters ten times lighter, and the attacker's
//!    cost per guess drops by the same factor: the stored codes are no stronger than one hash
//!    at 1/10 of the cost.
//! 2. *A lookup tag (a prefix of the code, or HMAC(pepper, code)) plus one Argon2id hash.* A
//!    plain prefix gives away entropy. A peppered HMAC tag is fine while the pepper is secret,
//!    but whoever holds both the dump and the pepper can test all 2⁵⁰ codes against the tag at
//!    HMAC speed, bypassing the Argon2id hash entirely.
//! 3. *A plain HMAC-SHA256 with a server pepper.* Cheap, but again only as strong as the
//!    pepper's secrecy, and the stored rows would not be the `$argon2id$` strings R37 asks for.
//!
//! **Decision.** Every code of a set is hashed with Argon2id **at the full password
//! parameters** (default m = 19456 KiB, t = 2, p = 1) and **one random 128-bit salt shared by
//! the set** (fresh for every set and every user). Each row is a complete PHC string
//! `$argon2id$v=19$m=19456,t=2,p=1$<set salt>$<hash>`. To check a presented code,
//! [`BackupCodeSet::verify`] runs Argon2id **once** with that salt and compares the 32-byte
//! result with every stored hash in constant time, selecting the matching index with `subtle`
//! and never stopping early.
//!
//! **Consequences.**
//! * CPU per attempt: exactly one Argon2id evaluation, the same as a password check, whatever
//!   the number of codes; plus ten 32-byte constant-time comparisons.
//! * Offline, one guess costs one full Argon2id run and is tested against all ten codes of the
//!   set at once (that is what sharing the salt gives away). Expected work to recover *some*
//!   code of one user: about 2⁵⁰ / 11 ≈ 2^46.5 full-cost Argon2id runs. Option 1 at the same
//!   server budget costs the attacker 2⁴⁹ runs at a tenth of the cost, ≈ 2^45.7 full-cost
//!   equivalents: the shared salt is the *stronger* design for the same CPU spent per login,
//!   and memory hardness at 19 MiB is what hurts GPUs. All ten codes: ≈ 2⁵⁰ full runs.
//! * The salt is still unique per set, so nothing can be precomputed across users or sets.
//! * No pepper is needed, so a leaked key cannot downgrade the storage. (A pepper could be
//!   added later through `Argon2::new_with_secret` without changing the row format's shape.)
//! * The rows of one set must share parameters and salt; [`BackupCodeSet::verify`] refuses a
//!   mixed or corrupt set with [`BackupCodeError::CorruptStore`] rather than guess.
//!
//! # Storage contract (R36, F8)
//!
//! * Store each [`StoredBackupCode`] as its own row `(id, user_id, position, hash, used_at)`.
//!   Regeneration replaces the whole set in one transaction (old rows deleted), so no old code
//!   survives (R36).
//! * Pass **all rows of the current set, used ones included, in a stable order** to
//!   [`BackupCodeSet::verify`]: the work does not then depend on how many codes are left, and a
//!   used code is recognised so it can be answered "already used" and audited
//!   (`backup_code_replay`).
//! * On `Some(index)`, consume the row with one atomic, conditional write and succeed **only if
//!   it changed a row**:
//!   ```sql
//!   UPDATE mfa_backup_code SET used_at = :now
//!    WHERE id = :id AND used_at IS NULL
//!   ```
//!   (PostgreSQL may add `RETURNING id`.) Zero rows means the code was already used, possibly a
//!   moment ago by a parallel request on another instance: deny and emit the replay event.
//! * A failed check counts toward the per-account failure counter like any factor (R15).
//!
//! # Attacks stopped
//!
//! Offline recovery of codes from a dump (Argon2id, salted), reuse (single use through the
//! store), CPU exhaustion (one Argon2id per attempt), and timing leaks about which code matched.

use argon2::password_hash::PasswordHasher as _;
use argon2::{Algorithm, Argon2, Params, PasswordHash, Version};
use serde::{Deserialize, Serialize};
use subtle::{Choice, ConditionallySelectable, ConstantTimeEq};
use zeroize::Zeroizing;

use crate::password::HashParams;
use crate::rng::SecureRng;
use crate::secret::SecretString;

/// Codes per set.
pub const CODE_COUNT: usize = 10;

/// Characters per code (5 bits each: 50 bits).
pub const CODE_CHARS: usize = 10;

/// Crockford's base32 alphabet.
const CROCKFORD: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";

/// Longest presented input looked at, in bytes.
const MAX_INPUT: usize = 64;

/// Salt bytes per set.
const SALT_BYTES: usize = 16;

/// Argon2 output bytes per code.
const HASH_BYTES: usize = 32;

/// Errors from generating or checking backup codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BackupCodeError {
    /// The Argon2 parameters are invalid or Argon2 failed.
    #[error("argon2 failure while hashing backup codes")]
    Hash,
    /// The stored rows are not Argon2id strings of one set (unparseable, another algorithm,
    /// or mixed salts or parameters). Fail closed and alert: this is data corruption or
    /// tampering, never user error.
    #[error("stored backup codes are corrupt or come from different sets")]
    CorruptStore,
}

/// One stored code: an Argon2id PHC string (`$argon2id$v=19$…`). Safe to store; not to log.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct StoredBackupCode(String);

impl StoredBackupCode {
    /// Wraps a string read from storage.
    pub fn from_stored(s: String) -> Self {
        Self(s)
    }

    /// The PHC text, for storage.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for StoredBackupCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // An offline-crackable verifier: keep it out of logs.
        f.write_str("StoredBackupCode([REDACTED])")
    }
}

/// Generation and verification of one user's set of backup codes.
#[derive(Debug, Clone, Copy)]
pub struct BackupCodeSet;

/// The canonical form of a presented or generated code: 10 Crockford characters.
type Canonical = Zeroizing<[u8; CODE_CHARS]>;

/// A random code: each byte's low 5 bits pick a character (256 is a multiple of 32, so there
/// is no bias).
fn random_code(rng: &dyn SecureRng) -> Canonical {
    let mut code = Zeroizing::new([0u8; CODE_CHARS]);
    rng.fill(code.as_mut());
    for c in code.iter_mut() {
        *c = CROCKFORD.get(usize::from(*c & 0x1f)).copied().unwrap_or(b'0');
    }
    code
}

fn display(code: &Canonical) -> SecretString {
    let mut s = String::with_capacity(CODE_CHARS + 1);
    for (i, &c) in code.iter().enumerate() {
        if i == CODE_CHARS / 2 {
            s.push('-');
        }
        s.push(char::from(c));
    }
    SecretString::new(s)
}

fn canonical_char(b: u8) -> Option<u8> {
    match b.to_ascii_uppercase() {
        b'O' => Some(b'0'),
        b'I' | b'L' => Some(b'1'),
        c if CROCKFORD.contains(&c) => Some(c),
        _ => None,
    }
}

fn canonicalize(input: &str) -> Option<Canonical> {
    if input.len() > MAX_INPUT {
        return None;
    }
    let mut out = Zeroizing::new([0u8; CODE_CHARS]);
    let mut n = 0;
    for b in input.bytes().filter(|&b| b != b'-' && b != b' ') {
        *out.get_mut(n)? = canonical_char(b)?;
        n += 1;
    }
    (n == CODE_CHARS).then_some(out)
}

/// The canonical 10-character form of a typed code (see the module documentation for the
/// rules), or `None` if it cannot be one of ours.
pub fn normalize(input: &str) -> Option<SecretString> {
    let code = canonicalize(input)?;
    Some(SecretString::new(code.iter().map(|&c| char::from(c)).collect()))
}

fn argon2_for(params: Params) -> Argon2<'static> {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The parsed, validated shape shared by every row of one set.
struct ParsedSet {
    params: Params,
    salt: Vec<u8>,
    hashes: Vec<[u8; HASH_BYTES]>,
}

fn parse_set(stored: &[StoredBackupCode]) -> Result<ParsedSet, BackupCodeError> {
    let mut first: Option<(String, Vec<u8>, Params)> = None;
    let mut hashes = Vec::with_capacity(stored.len());
    for row in stored {
        let phc = PasswordHash::new(row.as_str()).map_err(|_| BackupCodeError::CorruptStore)?;
        if phc.algorithm.as_str() != "argon2id" || phc.version != Some(0x13) {
            return Err(BackupCodeError::CorruptStore);
        }
        let salt = phc.salt.as_ref().map(|s| s.as_ref().to_vec()).ok_or(BackupCodeError::CorruptStore)?;
        let hash: [u8; HASH_BYTES] =
            phc.hash.as_ref().and_then(|h| h.as_bytes().try_into().ok()).ok_or(BackupCodeError::CorruptStore)?;
        let params_text = phc.params.as_str().to_owned();
        match &first {
            None => {
                let params = Params::try_from(&phc).map_err(|_| BackupCodeError::CorruptStore)?;
                first = Some((params_text, salt, params));
            }
            Some((p, s, _)) if *p == params_text && *s == salt => {}
            Some(_) => return Err(BackupCodeError::CorruptStore),
        }
        hashes.push(hash);
    }
    let (_, salt, params) = first.ok_or(BackupCodeError::CorruptStore)?;
    Ok(ParsedSet { params, salt, hashes })
}

impl BackupCodeSet {
    /// Mints a new set of [`CODE_COUNT`] distinct codes from `rng` and hashes them with
    /// Argon2id at `params` (pass the configured password parameters) under one fresh salt.
    ///
    /// Returns the codes to show the user **once**, as `ABCDE-FGHJK`, and the rows to store, in
    /// the same order. Costs [`CODE_COUNT`] Argon2id runs: run it on the hashing worker pool.
    pub fn generate(
        rng: &dyn SecureRng,
        params: HashParams,
    ) -> Result<(Vec<SecretString>, Vec<StoredBackupCode>), BackupCodeError> {
        let argon_params =
            Params::new(params.m_kib, params.t, params.p, Some(HASH_BYTES)).map_err(|_| BackupCodeError::Hash)?;
        let argon2 = argon2_for(argon_params);
        let salt = crate::rng::random_bytes::<SALT_BYTES>(rng);

        let mut codes: Vec<Canonical> = Vec::with_capacity(CODE_COUNT);
        while codes.len() < CODE_COUNT {
            let code = random_code(rng);
            // A repeat has probability ~45/2^50; excluded anyway so positions stay unambiguous.
            if !codes.iter().any(|c| **c == *code) {
                codes.push(code);
            }
        }

        let mut shown = Vec::with_capacity(CODE_COUNT);
        let mut stored = Vec::with_capacity(CODE_COUNT);
        for code in &codes {
            let phc = argon2.hash_password_with_salt(code.as_ref(), &salt).map_err(|_| BackupCodeError::Hash)?;
            stored.push(StoredBackupCode(phc.to_string()));
            shown.push(display(code));
        }
        Ok((shown, stored))
    }

    /// Checks a presented code against the stored rows of one set (all of them, used ones
    /// included; see the storage contract). Returns the index of the matching row, or `None`
    /// for a wrong or malformed code or an empty set.
    ///
    /// Runs Argon2id exactly once for a well-formed code and compares against every row in
    /// constant time. A malformed code is answered at once without hashing: its shape is
    /// public, so the shortcut reveals nothing.
    pub fn verify(presented: &str, stored: &[StoredBackupCode]) -> Result<Option<usize>, BackupCodeError> {
        let Some(code) = canonicalize(presented) else { return Ok(None) };
        if stored.is_empty() {
            return Ok(None);
        }
        let set = parse_set(stored)?;
        let mut computed = Zeroizing::new([0u8; HASH_BYTES]);
        argon2_for(set.params)
            .hash_password_into(code.as_ref(), &set.salt, computed.as_mut())
            .map_err(|_| BackupCodeError::Hash)?;

        let mut found = Choice::from(0);
        let mut index = 0u64;
        for (i, hash) in set.hashes.iter().enumerate() {
            let hit = computed.ct_eq(hash);
            index.conditional_assign(&(i as u64), hit);
            found |= hit;
        }
        Ok(bool::from(found).then_some(index as usize))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::{OsRng, SeededRng};
    use std::collections::HashSet;

    /// Cheap parameters so the unit tests stay fast; one test uses the real ones.
    const FAST: HashParams = HashParams { m_kib: 64, t: 1, p: 1 };

    fn fresh(seed: u64, params: HashParams) -> (Vec<SecretString>, Vec<StoredBackupCode>) {
        let Ok(set) = BackupCodeSet::generate(&SeededRng::new(seed), params) else { unreachable!() };
        set
    }

    fn shape_ok(s: &str) -> bool {
        let b = s.as_bytes();
        b.len() == 11 && b[5] == b'-' && b.iter().enumerate().all(|(i, c)| i == 5 || CROCKFORD.contains(c))
    }

    #[test]
    fn ten_distinct_grouped_codes_and_argon2id_rows() {
        let (shown, stored) = fresh(1, FAST);
        assert_eq!((shown.len(), stored.len()), (CODE_COUNT, CODE_COUNT));
        assert!(
            shown.iter().all(|c| shape_ok(c.expose())),
            "{:?}",
            shown.iter().map(|c| c.expose()).collect::<Vec<_>>()
        );
        assert_eq!(shown.iter().map(|c| c.expose()).collect::<HashSet<_>>().len(), CODE_COUNT);
        let salts: HashSet<_> = stored.iter().map(|s| s.as_str().split('$').nth(4).unwrap_or("").to_owned()).collect();
        assert_eq!(salts.len(), 1, "one salt per set");
        assert!(salts.iter().all(|s| s.len() == 22), "128-bit salt");
        for (code, row) in shown.iter().zip(&stored) {
            assert!(row.as_str().starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{}", row.as_str());
            let plain = code.expose().replace('-', "");
            assert!(!row.as_str().contains(&plain) && !row.as_str().contains(code.expose()));
        }
        // A second set gets a different salt and different codes.
        let (shown2, stored2) = fresh(2, FAST);
        assert_ne!(stored[0].as_str().split('$').nth(4), stored2[0].as_str().split('$').nth(4));
        assert!(shown.iter().all(|a| shown2.iter().all(|b| a.expose() != b.expose())));
    }

    #[test]
    fn each_code_matches_exactly_its_own_row() {
        let (shown, stored) = fresh(3, FAST);
        for (i, code) in shown.iter().enumerate() {
            assert_eq!(BackupCodeSet::verify(code.expose(), &stored), Ok(Some(i)));
            // Still found when the caller passes the rows in another (stable) order.
            let mut reversed = stored.clone();
            reversed.reverse();
            assert_eq!(BackupCodeSet::verify(code.expose(), &reversed), Ok(Some(CODE_COUNT - 1 - i)));
        }
    }

    #[test]
    fn wrong_and_malformed_codes_fail() {
        let (shown, stored) = fresh(4, FAST);
        // A well-formed code that is not in the set.
        let (other, _) = fresh(5, FAST);
        assert_eq!(BackupCodeSet::verify(other[0].expose(), &stored), Ok(None));
        // Change one character of a real code.
        let real = shown[0].expose();
        let flipped: String =
            real.chars().enumerate().map(|(i, c)| if i == 0 { if c == 'A' { 'B' } else { 'A' } } else { c }).collect();
        assert_eq!(BackupCodeSet::verify(&flipped, &stored), Ok(None));
        let long = "A".repeat(1000);
        for bad in ["", "ABCDE-FGHJ", "ABCDE-FGHJKM", "ABCDU-FGHJK", "ABCDE_FGHJK", "ÀBCDE-FGHJK", &long] {
            assert_eq!(BackupCodeSet::verify(bad, &stored), Ok(None), "{bad:?}");
        }
        // An empty set matches nothing.
        assert_eq!(BackupCodeSet::verify(real, &[]), Ok(None));
    }

    #[test]
    fn normalisation_rules() {
        assert_eq!(normalize("abcde-fghjk").map(|s| s.expose().to_owned()).as_deref(), Some("ABCDEFGHJK"));
        assert_eq!(normalize(" ab cde fghjk ").map(|s| s.expose().to_owned()).as_deref(), Some("ABCDEFGHJK"));
        assert_eq!(normalize("OoIiLl-0123").map(|s| s.expose().to_owned()).as_deref(), Some("0011110123"));
        for bad in ["ABCDE-FGHJU", "ABCDE\tFGHJK", "ABCDE-FGHJ", "ABCDEFGHJKX", "ABCDE+FGHJK"] {
            assert!(normalize(bad).is_none(), "{bad:?}");
        }
        // Typed variants of a real code verify.
        let (shown, stored) = fresh(6, FAST);
        for (i, code) in shown.iter().enumerate() {
            let typed = code.expose().to_ascii_lowercase().replace('0', "o").replace('1', "l").replace('-', " ");
            assert_eq!(BackupCodeSet::verify(&typed, &stored), Ok(Some(i)), "{typed}");
            let squashed = code.expose().replace('-', "").replace('1', "I");
            assert_eq!(BackupCodeSet::verify(&squashed, &stored), Ok(Some(i)));
        }
    }

    #[test]
    fn mixed_or_corrupt_sets_fail_closed() {
        let (shown, stored) = fresh(7, FAST);
        let (_, other) = fresh(8, FAST);
        let mut mixed = stored.clone();
        mixed[3] = other[3].clone();
        assert_eq!(BackupCodeSet::verify(shown[0].expose(), &mixed), Err(BackupCodeError::CorruptStore));
        let mut junk = stored.clone();
        junk[9] = StoredBackupCode::from_stored("not-a-hash".into());
        assert_eq!(BackupCodeSet::verify(shown[0].expose(), &junk), Err(BackupCodeError::CorruptStore));
        let mut argon2i = stored.clone();
        argon2i[0] = StoredBackupCode::from_stored(stored[0].as_str().replacen("argon2id", "argon2i", 1));
        assert_eq!(BackupCodeSet::verify(shown[0].expose(), &argon2i), Err(BackupCodeError::CorruptStore));
        // Rows with different parameters are not one set either.
        let (_, slow) = fresh(7, HashParams { m_kib: 128, t: 1, p: 1 });
        let mut params_mixed = stored.clone();
        params_mixed[1] = slow[1].clone();
        assert_eq!(BackupCodeSet::verify(shown[1].expose(), &params_mixed), Err(BackupCodeError::CorruptStore));
        assert_eq!(
            BackupCodeSet::generate(&SeededRng::new(1), HashParams { m_kib: 0, t: 0, p: 0 }).err(),
            Some(BackupCodeError::Hash)
        );
    }

    #[test]
    fn regeneration_invalidates_old_codes() {
        let (old_shown, _old_stored) = fresh(9, FAST);
        let (new_shown, new_stored) = fresh(10, FAST);
        for code in &old_shown {
            assert_eq!(BackupCodeSet::verify(code.expose(), &new_stored), Ok(None));
        }
        assert_eq!(BackupCodeSet::verify(new_shown[2].expose(), &new_stored), Ok(Some(2)));
    }

    #[test]
    fn production_parameters_round_trip() {
        let (shown, stored) = fresh(11, HashParams::MINIMUM);
        assert!(stored.iter().all(|r| r.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$")));
        assert_eq!(BackupCodeSet::verify(shown[7].expose(), &stored), Ok(Some(7)));
    }

    #[test]
    fn codes_carry_50_bits_from_the_rng() {
        // Same seed, same codes: everything comes from the injected generator.
        assert_eq!(*random_code(&SeededRng::new(1)), *random_code(&SeededRng::new(1)));
        let codes: Vec<[u8; CODE_CHARS]> = (0..10_000).map(|_| *random_code(&OsRng)).collect();
        assert_eq!(codes.iter().collect::<HashSet<_>>().len(), 10_000);
        // Every one of the 32 symbols appears in every position (each 1/32 of 10 000 ≈ 312).
        for pos in 0..CODE_CHARS {
            let used: HashSet<u8> = codes.iter().map(|c| c[pos]).collect();
            assert_eq!(used.len(), 32, "position {pos}");
        }
        // χ² over all 100 000 symbols, 31 degrees of freedom: a fair source stays far below 80.
        let mut bins = [0f64; 32];
        for c in codes.iter().flatten() {
            bins[CROCKFORD.iter().position(|x| x == c).unwrap_or(0)] += 1.0;
        }
        let expected = 100_000.0 / 32.0;
        let chi2: f64 = bins.iter().map(|o| (o - expected).powi(2) / expected).sum();
        assert!(chi2 < 80.0, "chi2 = {chi2}");
        assert_eq!(CODE_CHARS * 5, 50);
    }

    #[test]
    fn debug_is_redacted() {
        let (shown, stored) = fresh(12, FAST);
        assert_eq!(format!("{:?}", stored[0]), "StoredBackupCode([REDACTED])");
        assert!(!format!("{shown:?}").contains(shown[0].expose()));
    }
}
