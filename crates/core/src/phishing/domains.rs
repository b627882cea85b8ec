//! Which label of a host its owner chose, and which hosts anyone can publish under.
//!
//! An impersonator picks one label: the registrable one (`upbit-login` in `upbit-login.com`,
//! `upbit` in `upbit.co.kr` or `upbit.github.io`). To find it the checker needs public
//! suffixes, and it bundles a small curated list instead of the full Public Suffix List
//! (`data/phishing/suffixes.txt` explains why that is enough: unknown suffixes fall back to
//! the PSL default rule, one label). Free-hosting and site-builder domains from
//! `data/phishing/providers.txt` are suffixes too, as private PSL entries are: `upbit` in
//! `upbit.github.io` is a name anyone could have registered there. Shorteners are listed in the
//! same file but are not suffixes (`bit.ly/x` belongs to Bitly).

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

static SUFFIX_LIST: &str = include_str!("../../data/phishing/suffixes.txt");
static PROVIDER_LIST: &str = include_str!("../../data/phishing/providers.txt");

/// What a listed provider offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProviderKind {
    /// Free or self-service hosting, tunnels, storage buckets.
    FreeHosting,
    /// Site builders and page or form services.
    SiteBuilder,
    /// URL shorteners.
    Shortener,
}

/// One entry of `providers.txt`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Provider {
    pub(crate) kind: ProviderKind,
    pub(crate) domain: &'static str,
    pub(crate) name: &'static str,
}

fn data_lines(text: &'static str) -> impl Iterator<Item = &'static str> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#'))
}

fn is_list_domain(d: &str) -> bool {
    !d.is_empty()
        && d.split('.')
            .all(|l| !l.is_empty() && l.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'))
}

fn parse_provider(line: &'static str) -> Option<Provider> {
    let (kind, rest) = line.split_once(char::is_whitespace)?;
    let (domain, name) = rest.trim_start().split_once(char::is_whitespace)?;
    let kind = match kind {
        "hosting" => ProviderKind::FreeHosting,
        "builder" => ProviderKind::SiteBuilder,
        "shortener" => ProviderKind::Shortener,
        _ => return None,
    };
    let name = name.trim();
    (is_list_domain(domain) && !name.is_empty()).then_some(Provider { kind, domain, name })
}

fn suffixes() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| data_lines(SUFFIX_LIST).filter(|l| is_list_domain(l)).collect())
}

fn providers() -> &'static HashMap<&'static str, Provider> {
    static MAP: OnceLock<HashMap<&'static str, Provider>> = OnceLock::new();
    MAP.get_or_init(|| data_lines(PROVIDER_LIST).filter_map(parse_provider).map(|p| (p.domain, p)).collect())
}

/// The listed provider whose domain is `host` or a parent of it, the most specific first.
/// `host` is the ASCII form, lower case, without a trailing dot.
pub(crate) fn provider_of(host: &str) -> Option<Provider> {
    let mut rest = host;
    loop {
        if let Some(p) = providers().get(rest) {
            return Some(*p);
        }
        rest = rest.split_once('.')?.1;
    }
}

/// The public suffix of a host, as a count of its trailing labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Suffix {
    /// How many trailing labels form the suffix (1 for the default rule; 0 only for no labels).
    pub(crate) labels: usize,
    /// The suffix is a hosting or site-builder domain (a private suffix), not a TLD.
    pub(crate) private: bool,
}

/// The longest listed suffix of `labels` (ASCII form, lower case), or the last label.
pub(crate) fn public_suffix(labels: &[String]) -> Suffix {
    let n = labels.len();
    for i in 0..n {
        let candidate = labels[i..].join(".");
        if let Some(p) = providers().get(candidate.as_str())
            && p.kind != ProviderKind::Shortener
        {
            return Suffix { labels: n - i, private: true };
        }
        if suffixes().contains(candidate.as_str()) {
            return Suffix { labels: n - i, private: false };
        }
    }
    Suffix { labels: n.min(1), private: false }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(host: &str) -> Vec<String> {
        host.split('.').map(str::to_string).collect()
    }

    #[test]
    fn every_bundled_line_parses_and_is_unique() {
        let suffix_lines: Vec<_> = data_lines(SUFFIX_LIST).collect();
        assert!(suffix_lines.iter().all(|l| is_list_domain(l) && l.contains('.')), "{suffix_lines:?}");
        assert_eq!(suffixes().len(), suffix_lines.len());
        let provider_lines: Vec<_> = data_lines(PROVIDER_LIST).collect();
        assert!(provider_lines.iter().all(|l| parse_provider(l).is_some()));
        assert_eq!(providers().len(), provider_lines.len());
        assert!(providers().keys().all(|d| !suffixes().contains(d)));
        assert!(suffixes().len() >= 100);
        assert!(providers().len() >= 100);
    }

    #[test]
    fn suffixes_find_the_owner_chosen_label() {
        assert_eq!(public_suffix(&labels("upbit.com")), Suffix { labels: 1, private: false });
        assert_eq!(public_suffix(&labels("www.upbit.co.kr")), Suffix { labels: 2, private: false });
        assert_eq!(public_suffix(&labels("a.b.example.co.uk")), Suffix { labels: 2, private: false });
        assert_eq!(public_suffix(&labels("upbit.github.io")), Suffix { labels: 2, private: true });
        assert_eq!(public_suffix(&labels("bucket.s3.amazonaws.com")), Suffix { labels: 3, private: true });
        assert_eq!(public_suffix(&labels("sites.google.com")), Suffix { labels: 3, private: true });
        // Shorteners are ordinary registrable domains.
        assert_eq!(public_suffix(&labels("bit.ly")), Suffix { labels: 1, private: false });
        assert_eq!(public_suffix(&labels("co.kr")), Suffix { labels: 2, private: false });
        assert_eq!(public_suffix(&labels("localhost")), Suffix { labels: 1, private: false });
        assert_eq!(public_suffix(&[]), Suffix { labels: 0, private: false });
    }

    #[test]
    fn providers_match_at_label_boundaries_most_specific_first() {
        let kind = |h: &str| provider_of(h).map(|p| (p.kind, p.name));
        assert_eq!(kind("upbit.github.io"), Some((ProviderKind::FreeHosting, "GitHub Pages")));
        assert_eq!(kind("github.io"), Some((ProviderKind::FreeHosting, "GitHub Pages")));
        assert_eq!(kind("evilgithub.io"), None);
        assert_eq!(kind("x.wixsite.com"), Some((ProviderKind::SiteBuilder, "Wix")));
        assert_eq!(kind("bit.ly"), Some((ProviderKind::Shortener, "Bitly")));
        assert_eq!(kind("google.com"), None);
        assert_eq!(provider_of("sites.google.com").map(|p| p.domain), Some("sites.google.com"));
        assert_eq!(kind(""), None);
    }
}
