//! Visual similarity: confusable skeletons, mixed-script labels, edit distance.
//!
//! The attack: a domain that *looks* like the exchange's (`upbіt.com` with a Cyrillic `і`,
//! `rnicrosoft.com`, `upb1t.com`) and passes a glance at the address bar. Three measures find
//! it, all pure functions of strings:
//!
//! * [`skeleton`] folds a string to a prototype in the manner of Unicode UTS #39 §4
//!   ("skeleton(X)"), so two strings that look alike get the same skeleton. It uses a compact
//!   table of the confusables that matter for Latin brand names (Cyrillic, Greek and Armenian
//!   letters, digit–letter pairs, `m`/`rn`, `w`/`vv`, `d`/`cl`) rather than the full
//!   `confusables.txt`. It goes further than UTS #39 in one way on purpose: combining marks are
//!   dropped, so `upbít` and `upbit` share a skeleton. A false match costs a warning on a page
//!   the user did not need; a miss costs an account.
//! * [`mixed_scripts`] reports a label that mixes scripts in a way UTS #39 §5.2 "Highly
//!   Restrictive" would refuse: Latin with Cyrillic or Greek, for instance. Latin mixed with
//!   Han and Kana, Han and Bopomofo, or Han and Hangul is allowed, as in UTS #39.
//! * [`edit_distance`] is the optimal-string-alignment form of Damerau–Levenshtein distance
//!   (insertions, deletions, substitutions, adjacent transpositions), counted in characters.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Longest string [`edit_distance`] compares exactly; longer inputs are truncated to it. Host
/// labels are at most 63 characters, so this never changes a host comparison.
const MAX_DISTANCE_LEN: usize = 256;

/// The prototype of one lower-case character, when it differs from the character itself.
///
/// Sources: Unicode `confusables.txt` (UTS #39) entries whose prototype is a Latin letter, as
/// mapped by the table's "MA" type; the Latin-to-Latin entries `m → rn`, `w → vv`, `d → cl`,
/// `1 → l`, `0 → O` (lower-cased here, since hosts are compared in lower case); and, beyond
/// the table, the Greek `υ → u` and `ω → w` seen in phishing domains.
fn prototype(c: char) -> Option<&'static str> {
    Some(match c {
        // Latin letters and digits.
        'm' => "rn",
        'w' => "vv",
        'd' => "cl",
        '0' => "o",
        '1' | '|' => "l",
        'ı' | 'ɩ' => "i",
        'ȷ' => "j",
        'ɑ' => "a",
        'ɡ' => "g",
        'ǀ' => "l",
        // Cyrillic.
        'а' => "a",
        'е' => "e",
        'һ' => "h",
        'і' => "i",
        'ј' => "j",
        'ӏ' => "l",
        'о' => "o",
        'р' => "p",
        'ԛ' => "q",
        'ѕ' => "s",
        'с' => "c",
        'ԁ' => "cl",
        'у' => "y",
        'ԝ' => "vv",
        'х' => "x",
        'ѵ' => "v",
        // Greek.
        'α' => "a",
        'γ' => "y",
        'ι' => "i",
        'κ' => "k",
        'ν' => "v",
        'ο' => "o",
        'ρ' => "p",
        'σ' => "o",
        'υ' => "u",
        'χ' => "x",
        'ω' => "vv",
        // Armenian.
        'հ' => "h",
        'ո' => "n",
        'ս' => "u",
        'օ' => "o",
        'ց' => "g",
        'զ' => "q",
        _ => return None,
    })
}

/// The confusable skeleton of `s`: NFKC (folds fullwidth and mathematical letters), lower
/// case, NFD, combining marks dropped, then each character replaced by its prototype.
///
/// Two strings with equal skeletons look alike; the skeleton itself is not meant for display
/// (`dm` becomes `clrn`).
pub fn skeleton(s: &str) -> String {
    let folded = s.nfkc().collect::<String>().to_lowercase();
    let mut out = String::with_capacity(folded.len());
    for c in folded.nfd() {
        if is_combining_mark(c) {
            continue;
        }
        match prototype(c) {
            Some(p) => out.push_str(p),
            None => out.push(c),
        }
    }
    out
}

/// A writing system, as far as mixed-script detection needs one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Script {
    /// Latin letters, including accented and IPA letters.
    Latin,
    /// Greek and Coptic.
    Greek,
    /// Cyrillic.
    Cyrillic,
    /// Armenian.
    Armenian,
    /// Hebrew.
    Hebrew,
    /// Arabic.
    Arabic,
    /// Devanagari.
    Devanagari,
    /// Thai.
    Thai,
    /// Georgian.
    Georgian,
    /// Cherokee (several letters look like Latin capitals).
    Cherokee,
    /// Hangul (Korean).
    Hangul,
    /// Hiragana.
    Hiragana,
    /// Katakana.
    Katakana,
    /// Bopomofo.
    Bopomofo,
    /// Han ideographs.
    Han,
    /// A letter of any other script.
    Other,
}

impl Script {
    /// English name of the script, for explanations.
    pub fn name(self) -> &'static str {
        match self {
            Self::Latin => "Latin",
            Self::Greek => "Greek",
            Self::Cyrillic => "Cyrillic",
            Self::Armenian => "Armenian",
            Self::Hebrew => "Hebrew",
            Self::Arabic => "Arabic",
            Self::Devanagari => "Devanagari",
            Self::Thai => "Thai",
            Self::Georgian => "Georgian",
            Self::Cherokee => "Cherokee",
            Self::Hangul => "Hangul",
            Self::Hiragana => "Hiragana",
            Self::Katakana => "Katakana",
            Self::Bopomofo => "Bopomofo",
            Self::Han => "Han",
            Self::Other => "other",
        }
    }
}

/// The script of a letter; `None` for digits, punctuation, symbols and combining marks, which
/// belong to every script (Unicode's Common and Inherited).
pub fn script_of(c: char) -> Option<Script> {
    if !c.is_alphabetic() || is_combining_mark(c) {
        return None;
    }
    let s = match u32::from(c) {
        0x41..=0x5A | 0x61..=0x7A | 0xAA | 0xBA | 0xC0..=0x24F | 0x250..=0x2AF | 0x1D00..=0x1D7F => Script::Latin,
        0x1E00..=0x1EFF | 0x2C60..=0x2C7F | 0xA720..=0xA7FF | 0xAB30..=0xAB6F | 0xFF21..=0xFF3A => Script::Latin,
        0xFF41..=0xFF5A => Script::Latin,
        0x370..=0x3FF | 0x1F00..=0x1FFF => Script::Greek,
        0x400..=0x52F | 0x1C80..=0x1C8F | 0x2DE0..=0x2DFF | 0xA640..=0xA69F => Script::Cyrillic,
        0x531..=0x58F | 0xFB13..=0xFB17 => Script::Armenian,
        0x591..=0x5FF | 0xFB1D..=0xFB4F => Script::Hebrew,
        0x600..=0x6FF | 0x750..=0x77F | 0x8A0..=0x8FF | 0xFB50..=0xFDFF | 0xFE70..=0xFEFF => Script::Arabic,
        0x900..=0x97F => Script::Devanagari,
        0xE00..=0xE7F => Script::Thai,
        0x10A0..=0x10FF | 0x2D00..=0x2D2F => Script::Georgian,
        0x13A0..=0x13FF | 0xAB70..=0xABBF => Script::Cherokee,
        0x1100..=0x11FF | 0x3130..=0x318F | 0xA960..=0xA97F | 0xAC00..=0xD7FF | 0xFFA0..=0xFFDC => Script::Hangul,
        0x3040..=0x309F => Script::Hiragana,
        0x30A0..=0x30FF | 0x31F0..=0x31FF | 0xFF66..=0xFF9F => Script::Katakana,
        0x3100..=0x312F | 0x31A0..=0x31BF => Script::Bopomofo,
        0x2E80..=0x2FDF | 0x3005..=0x3007 | 0x3021..=0x3029 | 0x3038..=0x303B | 0x3400..=0x4DBF => Script::Han,
        0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x3FFFF => Script::Han,
        _ => Script::Other,
    };
    Some(s)
}

/// The scripts of `label`'s letters when their combination is not one UTS #39 "Highly
/// Restrictive" allows; `None` when the label is single-script or an allowed CJK mix.
pub fn mixed_scripts(label: &str) -> Option<Vec<Script>> {
    let mut scripts: Vec<Script> = label.chars().filter_map(script_of).collect();
    scripts.sort_unstable();
    scripts.dedup();
    if scripts.len() <= 1 {
        return None;
    }
    use Script::{Bopomofo, Han, Hangul, Hiragana, Katakana, Latin};
    let allowed: [&[Script]; 3] = [&[Latin, Han, Hiragana, Katakana], &[Latin, Han, Bopomofo], &[Latin, Han, Hangul]];
    if allowed.iter().any(|set| scripts.iter().all(|s| set.contains(s))) {
        return None;
    }
    Some(scripts)
}

/// Optimal-string-alignment distance between `a` and `b`, in characters: the fewest
/// insertions, deletions, substitutions and adjacent transpositions that turn one into the
/// other (no substring is edited twice). Inputs longer than 256 characters are truncated.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(MAX_DISTANCE_LEN).collect();
    let b: Vec<char> = b.chars().take(MAX_DISTANCE_LEN).collect();
    let width = b.len() + 1;
    // Three rows: two back (for transpositions), previous, current.
    let mut two_back = vec![0usize; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur = vec![0usize; width];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..width {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(two_back[j - 2] + 1);
            }
            cur[j] = d;
        }
        std::mem::swap(&mut two_back, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn lookalikes_share_a_skeleton() {
        let upbit = skeleton("upbit");
        for look in [
            "upb\u{456}t",   // Cyrillic і
            "\u{443}pbit",   // Cyrillic у is y, not u: must differ (checked below)
            "upbıt",         // dotless i
            "upbít",         // combining acute dropped
            "ｕｐｂｉｔ",    // fullwidth, folded by NFKC
            "UPBIT",         // case
            "\u{1D42E}pbit", // mathematical bold u
        ] {
            if look.starts_with('\u{443}') {
                assert_ne!(skeleton(look), upbit);
            } else {
                assert_eq!(skeleton(look), upbit, "{look}");
            }
        }
        assert_eq!(skeleton("rnicrosoft"), skeleton("microsoft"));
        assert_eq!(skeleton("vvallet"), skeleton("wallet"));
        assert_eq!(skeleton("clunamu"), skeleton("dunamu"));
        assert_eq!(skeleton("g00gle"), skeleton("google"));
        assert_eq!(skeleton("pay\u{440}al"), skeleton("paypal")); // Cyrillic р
        assert_eq!(skeleton("\u{3BF}kx"), skeleton("okx")); // Greek omicron
        assert_eq!(skeleton("\u{56F}"), "\u{56F}"); // unmapped letters stay
        assert_ne!(skeleton("upbit"), skeleton("upblt"));
    }

    #[test]
    fn mixed_scripts_are_reported_but_cjk_mixes_are_allowed() {
        assert_eq!(mixed_scripts("upb\u{456}t"), Some(vec![Script::Latin, Script::Cyrillic]));
        assert_eq!(mixed_scripts("p\u{3B1}ypal"), Some(vec![Script::Latin, Script::Greek]));
        assert_eq!(mixed_scripts("upbit"), None);
        assert_eq!(mixed_scripts("\u{443}\u{440}\u{431}\u{456}\u{442}"), None); // all Cyrillic
        assert_eq!(mixed_scripts("업비트"), None);
        assert_eq!(mixed_scripts("upbit업비트"), None); // Latin + Hangul
        assert_eq!(mixed_scripts("3年b組"), None); // Latin + Han
        assert_eq!(mixed_scripts("upbit-123"), None); // digits are common
        assert!(mixed_scripts("upbit\u{5D0}").is_some()); // Latin + Hebrew
        assert!(mixed_scripts("\u{430}업비트").is_some()); // Cyrillic + Hangul
    }

    #[test]
    fn edit_distance_counts_transpositions_once() {
        assert_eq!(edit_distance("upbit", "upbit"), 0);
        assert_eq!(edit_distance("upbit", "upblt"), 1); // substitution
        assert_eq!(edit_distance("upbit", "upbiit"), 1); // insertion
        assert_eq!(edit_distance("upbit", "upbt"), 1); // deletion
        assert_eq!(edit_distance("upbit", "pubit"), 1); // transposition
        assert_eq!(edit_distance("upbit", "upbit-login"), 6);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("gatehouse", "gaethuose"), 2);
        assert_eq!(edit_distance("ca", "abc"), 3); // OSA, not unrestricted Damerau–Levenshtein
        assert_eq!(edit_distance("업비트", "업비드"), 1);
    }

    proptest! {
        #[test]
        fn skeleton_is_idempotent_and_total(s in "\\PC{0,40}") {
            let k = skeleton(&s);
            prop_assert_eq!(skeleton(&k), k);
            let _ = mixed_scripts(&s);
        }

        #[test]
        fn edit_distance_is_a_symmetric_bounded_measure(a in "[a-e]{0,12}", b in "[a-e]{0,12}") {
            let d = edit_distance(&a, &b);
            prop_assert_eq!(d, edit_distance(&b, &a));
            prop_assert!(d <= a.chars().count().max(b.chars().count()));
            prop_assert_eq!(d == 0, a == b);
        }
    }
}
