//! Password acceptance rules (R1–R7).
//!
//! The only rules are length and guessability. There are deliberately no character-class
//! rules (NIST SP 800-63B-4 says SHALL NOT) and no expiry.
//!
//! Guessability checks, each reported with its own reason code so the user knows what to change:
//! * `breached` — the password, lower-cased and with common character substitutions undone
//!   (`p@ssw0rd` → `password`), is in the bundled breach corpus list, or is such an entry with
//!   only digits and symbols added before or after (`password1234`, `!!dragon2025`).
//! * `repetitive` — a single repeated character or a run of one short pattern (`aaaaaaaaaaaa`,
//!   `abcabcabcabc`), or a keyboard / alphabet / digit sequence.
//! * `context` — contains the service name, one of its product words, or the local part of the
//!   user's own email address (R7).
//!
//! The list is `data/breached-passwords.txt`: the 30,000 most frequent passwords of the Xato
//! 10M leaked-password corpus as packaged by zxcvbn (MIT). Checking is local; the password never
//! leaves the process (R6).

use std::collections::HashSet;
use std::sync::OnceLock;

use serde::Serialize;

use super::Password;

/// Minimum length in code points (R1: 12, because a second factor is mandatory).
pub const MIN_CODE_POINTS: usize = 12;
/// Maximum length in code points (R2).
pub const MAX_CODE_POINTS: usize = 128;

static BREACHED_LIST: &str = include_str!("../../data/breached-passwords.txt");

fn breached() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| BREACHED_LIST.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect())
}

/// Why a password was refused. The `code()` is part of the API contract.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub enum PasswordRejection {
    /// Fewer than [`MIN_CODE_POINTS`] code points.
    #[error("password must be at least {MIN_CODE_POINTS} characters")]
    TooShort,
    /// More than [`MAX_CODE_POINTS`] code points.
    #[error("password must be at most {MAX_CODE_POINTS} characters")]
    TooLong,
    /// Found in (or trivially derived from) a breach corpus.
    #[error("this password appears in lists of passwords exposed in data breaches")]
    Breached,
    /// A repeated character or pattern, or a keyboard/alphabet sequence.
    #[error("this password is a repeated pattern or a simple sequence")]
    Repetitive,
    /// Contains the service's name or the user's own email name.
    #[error("this password contains the service name or your email name")]
    Context,
}

impl PasswordRejection {
    /// Stable reason code, shown to clients in `details.reason`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::TooShort => "too_short",
            Self::TooLong => "too_long",
            Self::Breached => "breached",
            Self::Repetitive => "repetitive",
            Self::Context => "context",
        }
    }
}

/// Context words for one check: the service's brand words plus the user's email local part.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    brand_words: Vec<String>,
}

impl PasswordPolicy {
    /// A policy that treats `brand_words` (for example `["gatehouse"]` plus the exchange's
    /// name) as guessable. Words shorter than 4 characters are ignored: they would reject too
    /// many good passphrases for too little gain.
    pub fn new<I, S>(brand_words: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let brand_words =
            brand_words.into_iter().map(|w| w.as_ref().to_lowercase()).filter(|w| w.chars().count() >= 4).collect();
        Self { brand_words }
    }

    /// Checks `password` for a user whose email is `email` (used for context words).
    pub fn check(&self, password: &Password, email: &str) -> Result<(), PasswordRejection> {
        let n = password.code_points();
        if n < MIN_CODE_POINTS {
            return Err(PasswordRejection::TooShort);
        }
        if n > MAX_CODE_POINTS {
            return Err(PasswordRejection::TooLong);
        }
        let lower = password.expose().to_lowercase();
        if is_breached(&lower) {
            return Err(PasswordRejection::Breached);
        }
        if is_repetitive(&lower) {
            return Err(PasswordRejection::Repetitive);
        }
        let local = email.split('@').next().unwrap_or("").to_lowercase();
        let unleet = unleet(&lower);
        let mut context = self.brand_words.iter().map(String::as_str).collect::<Vec<_>>();
        if local.chars().count() >= 4 {
            context.push(&local);
        }
        if context.iter().any(|w| lower.contains(w) || unleet.contains(w)) {
            return Err(PasswordRejection::Context);
        }
        Ok(())
    }
}

/// Undoes the substitutions people use to dress up a dictionary word.
fn unleet(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '@' | '4' => 'a',
            '3' => 'e',
            '1' | '!' | '|' => 'i',
            '0' => 'o',
            '$' | '5' => 's',
            '7' => 't',
            c => c,
        })
        .collect()
}

fn is_breached(lower: &str) -> bool {
    let list = breached();
    if list.contains(lower) {
        return true;
    }
    // The core word with digits/symbols added around it.
    let core = lower.trim_matches(|c: char| !c.is_alphabetic());
    if core.chars().count() >= 4 && (list.contains(core) || list.contains(unleet(core).as_str())) {
        return true;
    }
    // Substitutions inside the word: undo them, then strip the decoration again. Digits that
    // were substitutions are letters now, so only trailing/leading symbols and digits that
    // survive are stripped.
    let u = unleet(lower);
    let u_core = u.trim_matches(|c: char| !c.is_alphabetic());
    list.contains(u.as_str()) || (u_core.chars().count() >= 4 && list.contains(u_core))
}

fn is_repetitive(lower: &str) -> bool {
    let chars: Vec<char> = lower.chars().collect();
    // A run of one short unit: "aaaa…", "abab…", "abcabc…", up to 4-character units.
    for unit in 1..=4 {
        if chars.len() >= unit * 3 && chars.iter().enumerate().all(|(i, c)| *c == chars[i % unit]) {
            return true;
        }
    }
    // Monotone sequences with step ±1 ("abcdefghijkl", "123456789012" wraps are not counted).
    let steps: Vec<i64> = chars.windows(2).map(|w| i64::from(u32::from(w[1])) - i64::from(u32::from(w[0]))).collect();
    if !steps.is_empty() && (steps.iter().all(|s| *s == 1) || steps.iter().all(|s| *s == -1)) {
        return true;
    }
    // Keyboard rows and digit runs that wrap: "qwertyuiop[]", "1234567890-=", "123456789012".
    const ROWS: [&str; 4] = ["1234567890", "qwertyuiop", "asdfghjkl", "zxcvbnm"];
    let cycle_ok = |row: &str| {
        let r: Vec<char> = row.chars().collect();
        let Some(start) = r.iter().position(|c| *c == chars[0]) else {
            return false;
        };
        chars.iter().enumerate().all(|(i, c)| *c == r[(start + i) % r.len()])
    };
    ROWS.iter().any(|row| cycle_ok(row))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(pw: &str) -> Result<(), PasswordRejection> {
        let policy = PasswordPolicy::new(["gatehouse", "upbitx"]);
        let p = Password::new(pw).map_err(|_| PasswordRejection::TooLong)?;
        policy.check(&p, "alice.smith@example.com")
    }

    #[test]
    fn length_bounds_count_code_points() {
        assert_eq!(check("tram-violet-9"), Ok(())); // 13
        assert_eq!(check("tram-violet"), Err(PasswordRejection::TooShort)); // 11
        assert_eq!(check("tram-violet1"), Ok(())); // 12
        // 12 emoji are 12 code points but 48 bytes: accepted (R4).
        assert_eq!(check("🦀🐙🌵🍋🚲🎻🧭🪁🦉🍄🛶🧩"), Ok(()));
        let long: String = "x7-yellow-kite-".chars().cycle().take(129).collect();
        assert_eq!(check(&long), Err(PasswordRejection::TooLong));
        let max: String = "x7-yellow-kite-".chars().cycle().take(128).collect();
        assert_eq!(check(&max), Ok(()));
        let sixty_four: String = "river-stone-".chars().cycle().take(64).collect();
        assert_eq!(check(&sixty_four), Ok(()));
    }

    #[test]
    fn breached_passwords_are_refused_with_their_reason() {
        assert_eq!(check("password1234"), Err(PasswordRejection::Breached));
        assert_eq!(check("Password1234"), Err(PasswordRejection::Breached));
        assert_eq!(check("P@ssw0rd2025!!"), Err(PasswordRejection::Breached));
        assert_eq!(check("!!dragon123456"), Err(PasswordRejection::Breached));
        assert_eq!(check("qwerty123456"), Err(PasswordRejection::Breached));
        assert_eq!(PasswordRejection::Breached.code(), "breached");
    }

    #[test]
    fn no_composition_rules_only_guessability() {
        // All lower case, no digits, no symbols: fine when it is not guessable (R3).
        assert_eq!(check("correct horse battery staple"), Ok(()));
        assert_eq!(check("aaaaaaaaaaaa"), Err(PasswordRejection::Repetitive));
        assert_eq!(check("abcabcabcabc"), Err(PasswordRejection::Repetitive));
        assert_eq!(check("abcdefghijklm"), Err(PasswordRejection::Repetitive));
        assert_eq!(check("123456789012"), Err(PasswordRejection::Repetitive));
        assert_eq!(check("qwertyuiopqw"), Err(PasswordRejection::Repetitive));
    }

    #[test]
    fn context_words_are_refused() {
        assert_eq!(check("gatehouse2025!!"), Err(PasswordRejection::Context));
        assert_eq!(check("G4tehouse-rocks"), Err(PasswordRejection::Context));
        assert_eq!(check("my-alice.smith-pass"), Err(PasswordRejection::Context));
        assert_eq!(check("UpbitX-trader-2025"), Err(PasswordRejection::Context));
    }

    #[test]
    fn the_bundled_list_is_real_and_complete() {
        assert_eq!(breached().len(), 30_000);
        assert!(breached().contains("123456"));
    }
}
