//! Anti-phishing URL checker: is this link the exchange, an imitation of it, or neither?
//!
//! The attack: a link in a mail, a chat or an ad that leads to a copy of the exchange's login
//! or withdrawal page. Users are told to "check the address", which does not work against
//! `upbіt.com` (Cyrillic `і`), `upbit.com.secure-login.xyz`, `https://upbit.com@evil.tld/` or
//! `upbit.github.io`. [`UrlChecker::check`] reads a pasted link the way a browser would
//! ([`parse`]), finds the host it really leads to, and answers with a [`Verdict`]: a
//! [`Class`] and the [`Reason`]s for it. The API, the page and `gatehouse check-url URL` are
//! thin layers over it.
//!
//! # The answer
//!
//! * **Official** only when the host equals an official domain or is a subdomain of one at a
//!   label boundary (`evilupbit.com` is not under `upbit.com`; `upbit.com.evil.tld` is not
//!   either), or the link is one of the configured official app links, and the link carries
//!   no userinfo. A missing scheme is read as `https://` and noted (`scheme_assumed`). Plain
//!   `http://` to an official host stays **official with a `non_https_scheme` warning**: the
//!   host is ours, so the link is not phishing, but the page can be altered on an untrusted
//!   network and the summary tells the user to type the address instead.
//! * **Lookalike** when the link imitates an official address: the registrable label is
//!   confusable with an official one (UTS #39 skeleton, [`confusables`]), one or two edits
//!   away from it, or the same under another suffix (`upbit.co`); a brand word appears in the
//!   registrable label (`upbit-login.com`), in a subdomain (`upbit.com.secure-login.xyz`,
//!   `upbit.github.io`), in the path under a foreign host (`evil.tld/upbit/`), or before the
//!   `@` (`upbit.com@evil.tld`).
//! * **Unknown** otherwise, including malformed input. Unknown is never "safe", and the
//!   wording everywhere says so; reasons such as `url_shortener`, `free_hosting`,
//!   `ip_literal_host`, `punycode` or `mixed_script` tell the user why to be careful.
//!
//! Only the path is searched for brand words, not the query or fragment: every search or
//! share link (`?q=upbit`) would otherwise be a lookalike.
//!
//! Edit distances allowed: 1 for official labels of 3 to 5 characters, 2 from 6 characters,
//! none below 3 (every two-letter name is one edit from every other). Brand words shorter than
//! 4 characters match only whole tokens (`okx` in `okx-login`, not in `tokxyz`); longer ones
//! match anywhere, after folding confusables. Brand words of 5 or more characters also match
//! a token one or two edits away (`upblt-login.com`). Official registrable labels are brand
//! words too. A false "lookalike" costs a user a second look; a missed one can cost an account,
//! so the thresholds lean towards warning.
//!
//! # Invariants
//!
//! * [`UrlChecker::check`] is total: any input, of any length, gives a verdict; it never
//!   panics (property-tested) and reads at most [`MAX_INPUT_BYTES`] (longer input is
//!   malformed).
//! * The verdict's `host` is the ASCII (punycode) form, `unicode_host` the display form;
//!   checking either of them again gives the same `host`.
//! * Reasons are sorted and unique, so the same link always gives the same answer.
//! * A host the parser is not sure about is malformed (unknown), never guessed into official.
//!
//! # Not done here
//!
//! No network: redirects, shortener targets, DNS, certificates and page content are not
//! looked at, and the bundled lists are small curated ones (see `data/phishing/`), not the
//! Public Suffix List or a threat feed. UTS #46 bidi and joiner rules are not implemented.

pub mod confusables;
mod domains;
mod parse;
pub mod punycode;
mod verdict;

use serde::{Deserialize, Serialize};

pub use parse::MAX_INPUT_BYTES;
pub use verdict::{Class, Reason, Verdict};

use confusables::{edit_distance, mixed_scripts, skeleton};
use domains::{ProviderKind, provider_of, public_suffix};
use parse::{Domain, Host, ParseError, ParsedUrl};

/// Most official domains in one configuration.
pub const MAX_OFFICIAL_DOMAINS: usize = 32;
/// Most brand words in one configuration.
pub const MAX_BRAND_WORDS: usize = 32;
/// Most official app links in one configuration.
pub const MAX_APP_LINKS: usize = 32;
/// Shortest brand word, in characters.
pub const MIN_BRAND_CHARS: usize = 3;
/// Longest brand word, in characters (a DNS label's length).
const MAX_BRAND_CHARS: usize = 63;
/// Longest configuration value echoed back in an error.
const MAX_SHOWN: usize = 100;

/// What is official, as configured by the operator.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfficialConfig {
    /// The exchange's domains, e.g. `["upbit.com", "gatehouse.example"]`. Each one and all its
    /// subdomains are official. ASCII, punycode or Unicode; a trailing dot is fine.
    pub domains: Vec<String>,
    /// Names people recognise as the exchange, e.g. `["upbit", "gatehouse"]`; found in foreign
    /// labels, paths and userinfo. The official domains' own labels are added automatically.
    #[serde(default)]
    pub brand_words: Vec<String>,
    /// Official pages on other sites (app-store listings, official social accounts), e.g.
    /// `https://apps.apple.com/kr/app/id1139643397`. A link matches when it has the same host,
    /// its path starts with the listed path at a segment boundary (after resolving `..`), and
    /// every listed query parameter is present with exactly the listed value (so
    /// `details?id=com.exchange` does not match `details?id=com.exchange.evil`).
    #[serde(default)]
    pub app_links: Vec<String>,
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// `domains` is empty.
    #[error("at least one official domain is required")]
    NoOfficialDomains,
    /// A list is longer than its maximum.
    #[error("at most {max} {what} are allowed")]
    TooMany {
        /// Which list.
        what: &'static str,
        /// Its maximum.
        max: usize,
    },
    /// An official domain is not a domain name, is an IP address, a public suffix, a hosting
    /// provider's own domain or a URL shortener.
    #[error("official domain {domain:?} is invalid: {why}")]
    InvalidDomain {
        /// The value as given (shortened).
        domain: String,
        /// Why.
        why: &'static str,
    },
    /// A brand word is too short, too long or has characters other than letters, digits, `-`.
    #[error("brand word {word:?} is invalid: {why}")]
    InvalidBrandWord {
        /// The value as given (shortened).
        word: String,
        /// Why.
        why: &'static str,
    },
    /// An app link is not an `https://` link with a host and a path.
    #[error("official app link {link:?} is invalid: {why}")]
    InvalidAppLink {
        /// The value as given (shortened).
        link: String,
        /// Why.
        why: &'static str,
    },
}

fn shown(s: &str) -> String {
    s.chars().take(MAX_SHOWN).collect()
}

/// An official domain, prepared for comparisons.
#[derive(Debug, Clone)]
struct Official {
    /// The whole domain, ASCII form.
    ascii: String,
    /// Its registrable label, display form.
    label: String,
    label_skeleton: String,
    /// Registrable label and suffix, ASCII form.
    registrable: String,
}

#[derive(Debug, Clone)]
struct Brand {
    word: String,
    skeleton: String,
    chars: usize,
}

#[derive(Debug, Clone)]
struct AppLink {
    link: String,
    host: String,
    segments: Vec<String>,
    query: Vec<(String, String)>,
}

/// The checker: a validated [`OfficialConfig`], ready to answer [`UrlChecker::check`].
#[derive(Debug, Clone)]
pub struct UrlChecker {
    officials: Vec<Official>,
    brands: Vec<Brand>,
    app_links: Vec<AppLink>,
}

impl UrlChecker {
    /// Validates `config` and prepares the comparisons. Refuses empty or oversized lists,
    /// official domains that are not registrable domain names (IP addresses, public suffixes,
    /// hosting providers' own domains such as `github.io`, URL shorteners), brand words that
    /// are too short to match meaningfully, and app links without `https://`, host and path.
    pub fn new(config: OfficialConfig) -> Result<Self, ConfigError> {
        if config.domains.is_empty() {
            return Err(ConfigError::NoOfficialDomains);
        }
        for (what, len, max) in [
            ("official domains", config.domains.len(), MAX_OFFICIAL_DOMAINS),
            ("brand words", config.brand_words.len(), MAX_BRAND_WORDS),
            ("app links", config.app_links.len(), MAX_APP_LINKS),
        ] {
            if len > max {
                return Err(ConfigError::TooMany { what, max });
            }
        }
        let mut officials = config.domains.iter().map(|d| official(d)).collect::<Result<Vec<_>, _>>()?;
        officials.sort_by(|a, b| a.ascii.cmp(&b.ascii));
        officials.dedup_by(|a, b| a.ascii == b.ascii);
        let mut brands = config.brand_words.iter().map(|w| brand(w)).collect::<Result<Vec<_>, _>>()?;
        brands.extend(officials.iter().filter(|o| o.label.chars().count() >= MIN_BRAND_CHARS).map(|o| Brand {
            word: o.label.clone(),
            skeleton: o.label_skeleton.clone(),
            chars: o.label.chars().count(),
        }));
        brands.sort_by(|a, b| a.word.cmp(&b.word));
        brands.dedup_by(|a, b| a.skeleton == b.skeleton);
        let app_links = config.app_links.iter().map(|l| app_link(l)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { officials, brands, app_links })
    }

    /// The official domains, ASCII form, sorted.
    pub fn official_domains(&self) -> impl Iterator<Item = &str> {
        self.officials.iter().map(|o| o.ascii.as_str())
    }

    /// Checks one link (or bare host). Never panics; see the module docs for the rules.
    pub fn check(&self, input: &str) -> Verdict {
        let url = match parse::parse(input) {
            Ok(url) => url,
            Err(e) => return malformed(e),
        };
        let mut reasons = Vec::new();
        match url.scheme.as_deref() {
            None => reasons.push(Reason::SchemeAssumed),
            Some("https") => {}
            Some(scheme) => reasons.push(Reason::NonHttpsScheme { scheme: scheme.to_string() }),
        }
        if url.userinfo.is_some() {
            reasons.push(Reason::UserinfoInUrl);
        }
        match &url.host {
            Host::Domain(domain) => self.check_domain(domain, &url, &mut reasons),
            Host::Ipv4 { addr, obfuscated } => {
                reasons.push(Reason::IpLiteralHost { ip: addr.to_string(), obfuscated: *obfuscated });
                self.foreign_host(&url, &mut reasons);
            }
            Host::Ipv6(addr) => {
                reasons.push(Reason::IpLiteralHost { ip: addr.to_string(), obfuscated: false });
                self.foreign_host(&url, &mut reasons);
            }
        }
        Verdict::from_reasons(url.host.ascii(), url.host.unicode(), reasons)
    }

    fn check_domain(&self, domain: &Domain, url: &ParsedUrl, reasons: &mut Vec<Reason>) {
        let ascii = domain.ascii_host();
        if let Some(official) = self.officials.iter().find(|o| o.ascii == ascii) {
            reasons.push(Reason::OfficialDomain { official: official.ascii.clone() });
            return;
        }
        if let Some(official) = self.officials.iter().find(|o| is_subdomain(&ascii, &o.ascii)) {
            reasons.push(Reason::SubdomainOfOfficial { official: official.ascii.clone() });
            return;
        }
        if let Some(link) = self.app_link_for(&ascii, url) {
            reasons.push(Reason::OfficialAppLink { link });
            return;
        }
        let n = domain.ascii.len();
        let suffix = public_suffix(&domain.ascii);
        // The registrable label's index, unless the host is itself a public suffix.
        let registrable = (suffix.labels < n).then(|| n - suffix.labels - 1);
        if let Some(reg) = registrable {
            let registrable_domain = domain.ascii[reg..].join(".");
            if self.officials.iter().any(|o| o.registrable == registrable_domain) {
                // A parent or sibling of an official domain (officials `app.gatehouse.example`,
                // host `gatehouse.example`): same registrant, so no imitation, but not official.
                reasons.push(Reason::NotOfficial);
                return;
            }
        }
        self.foreign_host(url, reasons);
        if domain.is_idn() {
            reasons.push(Reason::Punycode { decoded: domain.unicode_host() });
        }
        for label in &domain.unicode {
            if let Some(scripts) = mixed_scripts(label) {
                let scripts = scripts.into_iter().map(|s| s.name().to_string()).collect();
                reasons.push(Reason::MixedScript { label: label.clone(), scripts });
            }
        }
        if let Some(p) = provider_of(&ascii) {
            let (provider, domain) = (p.name.to_string(), p.domain.to_string());
            reasons.push(match p.kind {
                ProviderKind::FreeHosting => Reason::FreeHosting { provider, domain },
                ProviderKind::SiteBuilder => Reason::SiteBuilder { provider, domain },
                ProviderKind::Shortener => Reason::UrlShortener { provider, domain },
            });
        }
        let Some(reg) = registrable else { return };
        let label = &domain.unicode[reg];
        let label_skeleton = skeleton(label);
        let suffix_shown = domain.unicode[reg + 1..].join(".");
        let mut imitates_label = false;
        for o in &self.officials {
            let official = o.ascii.clone();
            if *label == o.label {
                imitates_label = true;
                reasons.push(if suffix.private {
                    // `upbit.github.io`: a name anyone can take on a hosting service.
                    Reason::BrandInSubdomain { brand: o.label.clone() }
                } else {
                    Reason::OtherTld { official }
                });
            } else if label_skeleton == o.label_skeleton {
                imitates_label = true;
                reasons.push(Reason::ConfusableWith { official, skeleton: format!("{label_skeleton}.{suffix_shown}") });
            } else {
                let distance = edit_distance(label, &o.label).min(edit_distance(&label_skeleton, &o.label_skeleton));
                if distance >= 1 && distance <= max_edits(o.label.chars().count()) {
                    imitates_label = true;
                    let distance = u32::try_from(distance).unwrap_or(u32::MAX);
                    reasons.push(Reason::EditDistance { official, distance });
                }
            }
        }
        if !imitates_label {
            for b in self.brands.iter().filter(|b| has_brand(&label_skeleton, b, true)) {
                let brand = b.word.clone();
                reasons.push(if suffix.private {
                    Reason::BrandInSubdomain { brand }
                } else {
                    Reason::BrandInRegistrableLabel { brand }
                });
            }
        }
        for sub in &domain.unicode[..reg] {
            let sub_skeleton = skeleton(sub);
            for b in self.brands.iter().filter(|b| has_brand(&sub_skeleton, b, true)) {
                reasons.push(Reason::BrandInSubdomain { brand: b.word.clone() });
            }
        }
    }

    /// Findings for any host that is not official: the brand in the path or the userinfo.
    fn foreign_host(&self, url: &ParsedUrl, reasons: &mut Vec<Reason>) {
        reasons.push(Reason::NotOfficial);
        let path = skeleton(&parse::decode_lossy(&url.path));
        for b in self.brands.iter().filter(|b| has_brand(&path, b, false)) {
            reasons.push(Reason::BrandInPath { brand: b.word.clone() });
        }
        if let Some(userinfo) = &url.userinfo {
            let decoded = parse::decode_lossy(userinfo).to_lowercase();
            let userinfo_skeleton = skeleton(&decoded);
            let before = reasons.len();
            for b in self.brands.iter().filter(|b| has_brand(&userinfo_skeleton, b, false)) {
                reasons.push(Reason::BrandInUserinfo { brand: b.word.clone() });
            }
            if reasons.len() == before {
                // Official domains whose label is too short to be a brand word (`x.com`).
                for o in self.officials.iter().filter(|o| decoded.contains(o.ascii.as_str())) {
                    reasons.push(Reason::BrandInUserinfo { brand: o.ascii.clone() });
                }
            }
        }
    }

    fn app_link_for(&self, host: &str, url: &ParsedUrl) -> Option<String> {
        if !url.port.is_none_or(|p| p == 443 || p == 80) {
            return None;
        }
        let segments = parse::path_segments(&url.path);
        let pairs = url.query.as_deref().map(parse::query_pairs).unwrap_or_default();
        let query_ok = |required: &[(String, String)]| {
            required.iter().all(|(k, v)| {
                let mut values = pairs.iter().filter(|(pk, _)| pk == k).peekable();
                values.peek().is_some() && values.all(|(_, pv)| pv == v)
            })
        };
        self.app_links
            .iter()
            .find(|l| l.host == host && segments.starts_with(&l.segments) && query_ok(&l.query))
            .map(|l| l.link.clone())
    }
}

fn malformed(e: ParseError) -> Verdict {
    let mut reasons = vec![Reason::Malformed { detail: e.detail().to_string() }];
    if let ParseError::NotWeb(scheme) = e {
        reasons.push(Reason::NonHttpsScheme { scheme: shown(&scheme) });
    }
    Verdict::from_reasons(String::new(), String::new(), reasons)
}

/// `host` is a proper subdomain of `parent` (label boundary, ASCII forms).
fn is_subdomain(host: &str, parent: &str) -> bool {
    host.strip_suffix(parent).is_some_and(|rest| rest.len() > 1 && rest.ends_with('.'))
}

/// Largest edit distance that still counts as imitation, by the official label's length.
fn max_edits(chars: usize) -> usize {
    match chars {
        0..=2 => 0,
        3..=5 => 1,
        _ => 2,
    }
}

/// Alphanumeric runs of a skeleton.
fn tokens(s: &str) -> impl Iterator<Item = &str> {
    s.split(|c: char| !c.is_alphanumeric()).filter(|t| !t.is_empty())
}

/// `text` (a skeleton) contains brand `b`: anywhere for words of 4 characters or more, as a
/// whole token for shorter ones, and, when `fuzzy`, as a token within the edit allowance for
/// words of 5 characters or more.
fn has_brand(text: &str, b: &Brand, fuzzy: bool) -> bool {
    if b.chars >= 4 && text.contains(b.skeleton.as_str()) {
        return true;
    }
    tokens(text).any(|t| {
        t == b.skeleton
            || (fuzzy && b.chars >= 5 && {
                let d = edit_distance(t, &b.skeleton);
                d >= 1 && d <= max_edits(b.chars)
            })
    })
}

fn official(text: &str) -> Result<Official, ConfigError> {
    let invalid = |why| ConfigError::InvalidDomain { domain: shown(text), why };
    let text = text.trim();
    if text.contains(['/', '\\', ':', '@', '?', '#', '[', ']']) {
        return Err(invalid("give a domain name only, without scheme, port or path"));
    }
    let domain = match parse::parse_host(text) {
        Ok(Host::Domain(d)) => d,
        Ok(_) => return Err(invalid("an IP address cannot be an official domain")),
        Err(e) => return Err(invalid(e.detail())),
    };
    let ascii = domain.ascii_host();
    let n = domain.ascii.len();
    let suffix = public_suffix(&domain.ascii);
    if suffix.labels >= n {
        return Err(invalid("a public suffix or a hosting provider's own domain cannot be official"));
    }
    if provider_of(&ascii).is_some_and(|p| p.kind == ProviderKind::Shortener) {
        return Err(invalid("a URL shortener cannot be official"));
    }
    let reg = n - suffix.labels - 1;
    let label = domain.unicode[reg].clone();
    Ok(Official { label_skeleton: skeleton(&label), label, registrable: domain.ascii[reg..].join("."), ascii })
}

fn brand(text: &str) -> Result<Brand, ConfigError> {
    let invalid = |why| ConfigError::InvalidBrandWord { word: shown(text), why };
    let word = parse::map_text(text.trim());
    let chars = word.chars().count();
    if chars < MIN_BRAND_CHARS {
        return Err(invalid("brand words need at least 3 characters"));
    }
    if chars > MAX_BRAND_CHARS {
        return Err(invalid("brand words have at most 63 characters"));
    }
    if !word.chars().all(|c| c.is_alphanumeric() || c == '-') {
        return Err(invalid("brand words have letters, digits and '-' only"));
    }
    Ok(Brand { skeleton: skeleton(&word), word, chars })
}

fn app_link(text: &str) -> Result<AppLink, ConfigError> {
    let invalid = |why| ConfigError::InvalidAppLink { link: shown(text), why };
    let url = parse::parse(text).map_err(|e| invalid(e.detail()))?;
    if url.scheme.as_deref() != Some("https") {
        return Err(invalid("app links start with https://"));
    }
    if url.userinfo.is_some() || url.port.is_some_and(|p| p != 443) {
        return Err(invalid("app links have no user name and no port"));
    }
    let Host::Domain(domain) = &url.host else {
        return Err(invalid("app links have a domain name, not an IP address"));
    };
    let host = domain.ascii_host();
    if provider_of(&host).is_some_and(|p| p.kind == ProviderKind::Shortener) {
        return Err(invalid("a shortened link cannot be verified"));
    }
    let segments = parse::path_segments(&url.path);
    if segments.is_empty() {
        return Err(invalid("app links have a path; whole sites belong in the official domains"));
    }
    let query = url.query.as_deref().map(parse::query_pairs).unwrap_or_default();
    Ok(AppLink { link: text.trim().to_string(), host, segments, query })
}

#[cfg(test)]
#[path = "tests.rs"]
mod tests;
