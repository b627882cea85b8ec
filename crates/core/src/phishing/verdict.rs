//! What the checker answers: a class, the host in both forms, and the reasons.
//!
//! Reason codes ([`Reason::code`]) are part of the API contract: the API returns them, the page
//! and the CLI print them, clients may match on them. They are the serde tag of [`Reason`], so
//! the JSON form is `{"code": "edit_distance", "official": "upbit.com", "distance": 1}`.
//! Reasons are kept sorted (declaration order, then fields), so the same input always gives
//! the same list in the same order.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The checker's answer. There is deliberately no "safe": a host that is not official and
/// does not imitate an official one is [`Class::Unknown`], which says nothing about safety.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Class {
    /// The link leads to an official domain (or one of its subdomains, or a configured
    /// official app link). Warnings such as plain http may still be present.
    Official,
    /// The link imitates an official address: a confusable or near-miss name, the brand in a
    /// foreign domain, subdomain, path or user name.
    Lookalike,
    /// Not official, no imitation found, or unreadable. Unknown does **not** mean safe.
    Unknown,
}

impl Class {
    /// Stable code: `official`, `lookalike`, `unknown`.
    pub fn code(self) -> &'static str {
        match self {
            Self::Official => "official",
            Self::Lookalike => "lookalike",
            Self::Unknown => "unknown",
        }
    }

    /// What the user should make of it, in one phrase.
    pub fn advice(self) -> &'static str {
        match self {
            Self::Official => "an official address of the exchange",
            Self::Lookalike => "imitates an official address: do not sign in, do not send funds",
            Self::Unknown => "not an official address; unknown does not mean safe",
        }
    }
}

impl fmt::Display for Class {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// One finding about a link. Official domains are named in ASCII (punycode) form.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Reason {
    /// `official_domain`: the host is an official domain.
    OfficialDomain {
        /// The official domain.
        official: String,
    },
    /// `subdomain_of_official`: the host is a subdomain of an official domain (label boundary).
    SubdomainOfOfficial {
        /// The official domain it is under.
        official: String,
    },
    /// `official_app_link`: the link is one of the configured official links on another site
    /// (an app-store listing, an official social account).
    OfficialAppLink {
        /// The configured link it matches.
        link: String,
    },
    /// `confusable_with`: the registrable label looks the same as an official one once
    /// confusable characters are folded (UTS #39 skeleton).
    ConfusableWith {
        /// The official domain imitated.
        official: String,
        /// The host's registrable domain as a skeleton.
        skeleton: String,
    },
    /// `edit_distance`: the registrable label is one or two edits from an official one.
    EditDistance {
        /// The official domain imitated.
        official: String,
        /// Edits (insert, delete, substitute, swap neighbours) between the two labels.
        distance: u32,
    },
    /// `other_tld`: the official label under another public suffix (`upbit.co`, `upbit.net`).
    OtherTld {
        /// The official domain imitated.
        official: String,
    },
    /// `brand_in_registrable_label`: a brand word inside a foreign registrable label
    /// (`upbit-login.com`).
    BrandInRegistrableLabel {
        /// The brand word found.
        brand: String,
    },
    /// `brand_in_subdomain`: a brand word in a subdomain of a foreign domain
    /// (`upbit.com.secure-login.xyz`), or as the site name on a hosting provider
    /// (`upbit.github.io`).
    BrandInSubdomain {
        /// The brand word found.
        brand: String,
    },
    /// `brand_in_path`: a brand word in the path under a foreign domain (`evil.tld/upbit/`).
    BrandInPath {
        /// The brand word found.
        brand: String,
    },
    /// `brand_in_userinfo`: a brand word before the `@` (`https://upbit.com@evil.tld/`).
    BrandInUserinfo {
        /// The brand word found.
        brand: String,
    },
    /// `userinfo_in_url`: the link carries a user name (and maybe a password) before the `@`.
    UserinfoInUrl,
    /// `not_official`: the host is not an official domain.
    NotOfficial,
    /// `punycode`: the host has internationalised labels.
    Punycode {
        /// The host in display (Unicode) form.
        decoded: String,
    },
    /// `mixed_script`: a label mixes scripts (Latin with Cyrillic, …).
    MixedScript {
        /// The label, in display form.
        label: String,
        /// The scripts found, by English name.
        scripts: Vec<String>,
    },
    /// `free_hosting`: the host is on a free-hosting service.
    FreeHosting {
        /// The provider's name.
        provider: String,
        /// The provider's domain.
        domain: String,
    },
    /// `site_builder`: the host is on a site builder or page service.
    SiteBuilder {
        /// The provider's name.
        provider: String,
        /// The provider's domain.
        domain: String,
    },
    /// `url_shortener`: the host is a URL shortener; where the link leads cannot be told.
    UrlShortener {
        /// The provider's name.
        provider: String,
        /// The shortener's domain.
        domain: String,
    },
    /// `ip_literal_host`: the host is an IP address.
    IpLiteralHost {
        /// The address, canonical form.
        ip: String,
        /// Written in a non-canonical form (`0x7f.1`, `2130706433`, percent-encoded).
        obfuscated: bool,
    },
    /// `non_https_scheme`: the scheme is not `https`.
    NonHttpsScheme {
        /// The scheme, lower case.
        scheme: String,
    },
    /// `scheme_assumed`: there was no scheme; the link was checked as `https://`.
    SchemeAssumed,
    /// `malformed`: the input could not be read as a web address.
    Malformed {
        /// Why, in English.
        detail: String,
    },
}

impl Reason {
    /// Stable snake_case code (the serde tag).
    pub fn code(&self) -> &'static str {
        match self {
            Self::OfficialDomain { .. } => "official_domain",
            Self::SubdomainOfOfficial { .. } => "subdomain_of_official",
            Self::OfficialAppLink { .. } => "official_app_link",
            Self::ConfusableWith { .. } => "confusable_with",
            Self::EditDistance { .. } => "edit_distance",
            Self::OtherTld { .. } => "other_tld",
            Self::BrandInRegistrableLabel { .. } => "brand_in_registrable_label",
            Self::BrandInSubdomain { .. } => "brand_in_subdomain",
            Self::BrandInPath { .. } => "brand_in_path",
            Self::BrandInUserinfo { .. } => "brand_in_userinfo",
            Self::UserinfoInUrl => "userinfo_in_url",
            Self::NotOfficial => "not_official",
            Self::Punycode { .. } => "punycode",
            Self::MixedScript { .. } => "mixed_script",
            Self::FreeHosting { .. } => "free_hosting",
            Self::SiteBuilder { .. } => "site_builder",
            Self::UrlShortener { .. } => "url_shortener",
            Self::IpLiteralHost { .. } => "ip_literal_host",
            Self::NonHttpsScheme { .. } => "non_https_scheme",
            Self::SchemeAssumed => "scheme_assumed",
            Self::Malformed { .. } => "malformed",
        }
    }

    /// The reason names the host (or link) as official.
    pub fn is_official(&self) -> bool {
        matches!(self, Self::OfficialDomain { .. } | Self::SubdomainOfOfficial { .. } | Self::OfficialAppLink { .. })
    }

    /// The reason on its own makes a link a lookalike.
    pub fn is_imitation(&self) -> bool {
        matches!(
            self,
            Self::ConfusableWith { .. }
                | Self::EditDistance { .. }
                | Self::OtherTld { .. }
                | Self::BrandInRegistrableLabel { .. }
                | Self::BrandInSubdomain { .. }
                | Self::BrandInPath { .. }
                | Self::BrandInUserinfo { .. }
        )
    }

    /// A sentence for people.
    pub fn explanation(&self) -> String {
        match self {
            Self::OfficialDomain { official } => format!("{official} is an official domain"),
            Self::SubdomainOfOfficial { official } => format!("the host is inside the official domain {official}"),
            Self::OfficialAppLink { link } => format!("this is the official link {link}"),
            Self::ConfusableWith { official, skeleton } => {
                format!("the name looks like {official}: it reads \"{skeleton}\" once look-alike characters are folded")
            }
            Self::EditDistance { official, distance } => {
                let edits = if *distance == 1 { "one typing change" } else { "two typing changes" };
                format!("the name is {edits} away from {official}")
            }
            Self::OtherTld { official } => {
                format!("the name copies {official} under another ending; whoever registered it is not the exchange")
            }
            Self::BrandInRegistrableLabel { brand } => {
                format!("the site's own name contains \"{brand}\", but it is not an official domain")
            }
            Self::BrandInSubdomain { brand } => {
                format!("\"{brand}\" is only a subdomain here; the site belongs to the domain after it")
            }
            Self::BrandInPath { brand } => format!("\"{brand}\" appears in the path of a site that is not official"),
            Self::BrandInUserinfo { brand } => {
                format!("\"{brand}\" appears before the @, a part of the link the browser does not visit")
            }
            Self::UserinfoInUrl => "the link has a user name before the @; the site is what follows the @".to_string(),
            Self::NotOfficial => "the host is not an official domain; that alone does not make it safe".to_string(),
            Self::Punycode { decoded } => format!("the host is an internationalised name, displayed as {decoded}"),
            Self::MixedScript { label, scripts } => {
                format!("the label \"{label}\" mixes {} letters", scripts.join(" and "))
            }
            Self::FreeHosting { provider, domain } => {
                format!("the site is on {provider} ({domain}), where anyone can host pages")
            }
            Self::SiteBuilder { provider, domain } => {
                format!("the site is made with {provider} ({domain}), where anyone can publish pages")
            }
            Self::UrlShortener { provider, domain } => {
                format!("{domain} is a URL shortener ({provider}): the link does not say where it leads")
            }
            Self::IpLiteralHost { ip, obfuscated: true } => {
                format!("the host is the IP address {ip}, written in a disguised form")
            }
            Self::IpLiteralHost { ip, obfuscated: false } => {
                format!("the host is the IP address {ip}; the exchange does not send links to IP addresses")
            }
            Self::NonHttpsScheme { scheme } => {
                format!("the link uses {scheme}: instead of https:, so the page can be altered on the way")
            }
            Self::SchemeAssumed => "the link has no scheme; it was checked as https://".to_string(),
            Self::Malformed { detail } => format!("this cannot be read as a web address: {detail}"),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.explanation())
    }
}

/// The checker's answer about one link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// Official, lookalike or unknown.
    pub class: Class,
    /// The host in ASCII form (punycode labels, canonical IP); empty when malformed.
    pub host: String,
    /// The host as a browser would display it (Unicode labels); empty when malformed.
    pub unicode_host: String,
    /// Why, sorted and without duplicates.
    pub reasons: Vec<Reason>,
}

impl Verdict {
    /// Builds a verdict from its findings: sorts them and derives the class.
    ///
    /// The class rule: a malformed link is unknown; a link with an official host (or an
    /// official app link) is official unless it carries userinfo (then unknown: it does lead
    /// to us, but no official link looks like that); otherwise any imitation finding makes it
    /// a lookalike; everything else is unknown.
    pub(crate) fn from_reasons(host: String, unicode_host: String, mut reasons: Vec<Reason>) -> Self {
        reasons.sort();
        reasons.dedup();
        let has = |p: fn(&Reason) -> bool| reasons.iter().any(p);
        let class = if has(|r| matches!(r, Reason::Malformed { .. })) {
            Class::Unknown
        } else if has(Reason::is_official) {
            if has(|r| matches!(r, Reason::UserinfoInUrl)) { Class::Unknown } else { Class::Official }
        } else if has(Reason::is_imitation) {
            Class::Lookalike
        } else {
            Class::Unknown
        };
        Self { class, host, unicode_host, reasons }
    }

    /// The class is [`Class::Official`].
    pub fn is_official(&self) -> bool {
        self.class == Class::Official
    }

    /// One line for the CLI, for example
    /// `lookalike: upbіt.com (xn--upbt-n9d.com) — imitates an official address: do not sign
    /// in, do not send funds [confusable_with, not_official, punycode, mixed_script]`.
    pub fn summary(&self) -> String {
        let shown = if self.host.is_empty() {
            "(no host)".to_string()
        } else if self.unicode_host != self.host {
            format!("{} ({})", self.unicode_host, self.host)
        } else {
            self.host.clone()
        };
        let has = |p: fn(&Reason) -> bool| self.reasons.iter().any(p);
        let mut advice = self.class.advice().to_string();
        if self.class == Class::Official && has(|r| matches!(r, Reason::NonHttpsScheme { .. })) {
            advice.push_str(", but not over https: type the address yourself");
        }
        if self.class == Class::Unknown && has(Reason::is_official) {
            advice = "an official host, but official links never carry a user name: type the address yourself".into();
        }
        let codes: Vec<&str> = self.reasons.iter().map(Reason::code).collect();
        format!("{}: {shown} — {advice} [{}]", self.class, codes.join(", "))
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary())
    }
}
