//! Table-driven tests of the checker's rules, configuration checks and property tests.

use super::*;
use proptest::prelude::*;

const APPLE: &str = "https://apps.apple.com/kr/app/upbit/id1139643397";
const PLAY: &str = "https://play.google.com/store/apps/details?id=com.dunamu.exchange.upbit";

fn config() -> OfficialConfig {
    OfficialConfig {
        domains: vec!["upbit.com".into(), "gatehouse.example".into()],
        brand_words: vec!["upbit".into(), "Gatehouse".into(), "업비트".into()],
        app_links: vec![APPLE.into(), PLAY.into()],
    }
}

fn checker() -> UrlChecker {
    let Ok(c) = UrlChecker::new(config()) else { unreachable!() };
    c
}

fn codes(v: &Verdict) -> Vec<&'static str> {
    v.reasons.iter().map(Reason::code).collect()
}

use Class::{Lookalike, Official, Unknown};

#[test]
fn the_table() {
    let c = checker();
    #[rustfmt::skip]
    let table: &[(&str, Class, &str, &[&str])] = &[
        // Official: the domain or a subdomain, whatever the spelling.
        ("https://upbit.com/", Official, "upbit.com", &["official_domain"]),
        ("https://www.upbit.com/login", Official, "www.upbit.com", &["subdomain_of_official"]),
        ("https://a.b.gatehouse.example/x", Official, "a.b.gatehouse.example", &["subdomain_of_official"]),
        ("upbit.com/login", Official, "upbit.com", &["official_domain", "scheme_assumed"]),
        ("HTTPS://UPBIT.COM./", Official, "upbit.com", &["official_domain"]),
        ("https://upbit.com:443/x", Official, "upbit.com", &["official_domain"]),
        ("https://%75pbit%2Ecom/", Official, "upbit.com", &["official_domain"]),
        ("https://ｕｐｂｉｔ．ｃｏｍ/", Official, "upbit.com", &["official_domain"]),
        // A browser reads `\` as `/`: this leads to upbit.com.
        ("https://upbit.com\\@evil.tld/", Official, "upbit.com", &["official_domain"]),
        // Plain http to an official host: official, with a warning.
        ("http://upbit.com", Official, "upbit.com", &["official_domain", "non_https_scheme"]),
        ("ftp://upbit.com/", Official, "upbit.com", &["official_domain", "non_https_scheme"]),
        // Official app links on other sites.
        (APPLE, Official, "apps.apple.com", &["official_app_link"]),
        ("https://apps.apple.com/kr/app/upbit/id1139643397/reviews", Official, "apps.apple.com", &["official_app_link"]),
        ("https://play.google.com/store/apps/details?hl=ko&id=com.dunamu.exchange.upbit", Official,
         "play.google.com", &["official_app_link"]),
        // ... but not a neighbouring page, nor a longer app id, nor a dot-segment escape.
        ("https://apps.apple.com/kr/app/upbit/id1139643397/../../evil/id6", Lookalike, "apps.apple.com",
         &["brand_in_path", "not_official"]),
        ("https://apps.apple.com/kr/app/upbit/id11396433970", Lookalike, "apps.apple.com",
         &["brand_in_path", "not_official"]),
        ("https://play.google.com/store/apps/details?id=com.dunamu.exchange.upbit.evil", Unknown,
         "play.google.com", &["not_official"]),
        ("https://play.google.com/store/apps/details?id=evil&id=com.dunamu.exchange.upbit", Unknown,
         "play.google.com", &["not_official"]),
        // Userinfo: never official; the brand before the @ is the classic trick.
        ("https://upbit.com@evil.tld/", Lookalike, "evil.tld", &["brand_in_userinfo", "userinfo_in_url", "not_official"]),
        ("https://www.upbit.com%2Flogin@evil.tld/", Lookalike, "evil.tld",
         &["brand_in_userinfo", "userinfo_in_url", "not_official"]),
        ("https://user:pass@example.org/", Unknown, "example.org", &["userinfo_in_url", "not_official"]),
        ("https://user@upbit.com/", Unknown, "upbit.com", &["official_domain", "userinfo_in_url"]),
        // Brand in a subdomain of a foreign domain.
        ("https://upbit.com.secure-login.xyz/", Lookalike, "upbit.com.secure-login.xyz",
         &["brand_in_subdomain", "not_official"]),
        ("https://upbit.com-secure.xyz/", Lookalike, "upbit.com-secure.xyz", &["brand_in_subdomain", "not_official"]),
        ("https://gatehouse.example.evil.tld/", Lookalike, "gatehouse.example.evil.tld",
         &["brand_in_subdomain", "not_official"]),
        ("https://login.upblt.evil.tld/", Lookalike, "login.upblt.evil.tld", &["brand_in_subdomain", "not_official"]),
        // The U+2215 division slash is not a slash: all of this is one host.
        ("https://upbit.com\u{2215}login.evil.tld/", Lookalike, "upbit.xn--comlogin-0f7d.evil.tld",
         &["brand_in_subdomain", "not_official", "punycode"]),
        // Punycode and confusables, both directions.
        ("https://xn--upbt-n9d.com/", Lookalike, "xn--upbt-n9d.com",
         &["confusable_with", "not_official", "punycode", "mixed_script"]),
        ("https://upb\u{456}t.com/", Lookalike, "xn--upbt-n9d.com",
         &["confusable_with", "not_official", "punycode", "mixed_script"]),
        ("https://upb\u{456}t.net/login", Lookalike, "xn--upbt-n9d.net",
         &["confusable_with", "not_official", "punycode", "mixed_script"]),
        ("https://upb\u{ED}t.com/", Lookalike, "xn--upbt-xpa.com", &["confusable_with", "not_official", "punycode"]),
        ("https://upb1t.com/", Lookalike, "upb1t.com", &["edit_distance", "not_official"]),
        ("https://gatehou5e.example.net/", Lookalike, "gatehou5e.example.net",
         &["brand_in_subdomain", "not_official"]),
        ("https://업비트.com/", Lookalike, "xn--9w3b70lgul.com", &["brand_in_registrable_label", "not_official", "punycode"]),
        ("https://업비트-이벤트.kr/", Lookalike, "xn----jw2fq5bsypw7bm91ada.kr",
         &["brand_in_registrable_label", "not_official", "punycode"]),
        // Small edit distance.
        ("https://upblt.com", Lookalike, "upblt.com", &["edit_distance", "not_official"]),
        ("https://upbiit.com", Lookalike, "upbiit.com", &["edit_distance", "not_official"]),
        ("https://pubit.com", Lookalike, "pubit.com", &["edit_distance", "not_official"]),
        ("https://up-bit.com", Lookalike, "up-bit.com", &["edit_distance", "not_official"]),
        ("https://gaethuose.example", Lookalike, "gaethuose.example", &["edit_distance", "not_official"]),
        ("https://upbat.co.kr/", Lookalike, "upbat.co.kr", &["edit_distance", "not_official"]),
        // Brand in the registrable label, and the same label under another suffix.
        ("https://upbit-login.com", Lookalike, "upbit-login.com", &["brand_in_registrable_label", "not_official"]),
        ("https://evilupbit.com", Lookalike, "evilupbit.com", &["brand_in_registrable_label", "not_official"]),
        ("https://upblt-support.com", Lookalike, "upblt-support.com", &["brand_in_registrable_label", "not_official"]),
        ("https://upbit.co", Lookalike, "upbit.co", &["other_tld", "not_official"]),
        ("https://upbit.net", Lookalike, "upbit.net", &["other_tld", "not_official"]),
        ("https://www.upbit.co.kr/", Lookalike, "www.upbit.co.kr", &["other_tld", "not_official"]),
        ("https://gatehouse.com", Lookalike, "gatehouse.com", &["other_tld", "not_official"]),
        // Brand in the path under a foreign domain.
        ("https://evil.tld/upbit/", Lookalike, "evil.tld", &["brand_in_path", "not_official"]),
        ("https://evil.tld/%55PB%C4%B1T/login", Lookalike, "evil.tld", &["brand_in_path", "not_official"]),
        ("https://evil.tld\\@upbit.com/", Lookalike, "evil.tld", &["brand_in_path", "not_official"]),
        // Free hosting, site builders, shorteners: alone unknown, with the brand lookalike.
        ("https://upbit.github.io/", Lookalike, "upbit.github.io", &["brand_in_subdomain", "not_official", "free_hosting"]),
        ("https://upbit-event.wixsite.com/home", Lookalike, "upbit-event.wixsite.com",
         &["brand_in_subdomain", "not_official", "site_builder"]),
        ("https://sites.google.com/view/upbit-event", Lookalike, "sites.google.com",
         &["brand_in_path", "not_official", "site_builder"]),
        ("https://my-project.netlify.app/", Unknown, "my-project.netlify.app", &["not_official", "free_hosting"]),
        ("https://github.io/", Unknown, "github.io", &["not_official", "free_hosting"]),
        ("https://bit.ly/abc", Unknown, "bit.ly", &["not_official", "url_shortener"]),
        ("https://bit.ly/upbit-airdrop", Lookalike, "bit.ly", &["brand_in_path", "not_official", "url_shortener"]),
        // IP literals, plain and disguised.
        ("https://127.0.0.1/", Unknown, "127.0.0.1", &["not_official", "ip_literal_host"]),
        ("https://0x7f.0.0.1/", Unknown, "127.0.0.1", &["not_official", "ip_literal_host"]),
        ("http://2130706433/upbit", Lookalike, "127.0.0.1",
         &["brand_in_path", "not_official", "ip_literal_host", "non_https_scheme"]),
        ("https://[2001:db8::1]:8443/", Unknown, "[2001:db8::1]", &["not_official", "ip_literal_host"]),
        // Neither official nor imitation: unknown, never safe.
        ("https://example.org/", Unknown, "example.org", &["not_official"]),
        ("https://upbeat-music.com/", Unknown, "upbeat-music.com", &["not_official"]),
        ("https://xn--80ak6aa92e.com/", Unknown, "xn--80ak6aa92e.com", &["not_official", "punycode"]),
        ("https://p\u{3B1}ypal.com/", Unknown, "xn--pypal-d9d.com", &["not_official", "punycode", "mixed_script"]),
        // Malformed.
        ("", Unknown, "", &["malformed"]),
        ("   ", Unknown, "", &["malformed"]),
        ("not a url at all", Unknown, "", &["malformed"]),
        ("https://", Unknown, "", &["malformed"]),
        ("https://upbit..com/", Unknown, "", &["malformed"]),
        ("https://256.1.1.1/", Unknown, "", &["malformed"]),
        ("https://xn--upbit-.com/", Unknown, "", &["malformed"]),
        ("javascript:alert(1)", Unknown, "", &["non_https_scheme", "malformed"]),
        ("data:text/html;base64,PHNjcmlwdD4=", Unknown, "", &["non_https_scheme", "malformed"]),
    ];
    for (input, class, host, expected) in table {
        let v = c.check(input);
        assert_eq!((v.class, v.host.as_str(), codes(&v)), (*class, *host, expected.to_vec()), "{input}");
    }
}

#[test]
fn reasons_carry_the_details() {
    let c = checker();
    let v = c.check("https://xn--upbt-n9d.com/");
    assert_eq!(v.unicode_host, "upb\u{456}t.com");
    assert_eq!(
        v.reasons,
        vec![
            Reason::ConfusableWith { official: "upbit.com".into(), skeleton: "upbit.com".into() },
            Reason::NotOfficial,
            Reason::Punycode { decoded: "upb\u{456}t.com".into() },
            Reason::MixedScript { label: "upb\u{456}t".into(), scripts: vec!["Latin".into(), "Cyrillic".into()] },
        ]
    );
    assert_eq!(
        c.check("https://upblt.com").reasons[0],
        Reason::EditDistance { official: "upbit.com".into(), distance: 1 }
    );
    assert_eq!(c.check("https://upbit.co").reasons[0], Reason::OtherTld { official: "upbit.com".into() });
    assert_eq!(c.check("https://evil.tld/upbit").reasons[0], Reason::BrandInPath { brand: "upbit".into() });
    assert_eq!(c.check("https://업비트.com/").reasons[0], Reason::BrandInRegistrableLabel { brand: "업비트".into() });
    assert_eq!(
        c.check("https://gatehouse.example.evil.tld").reasons[0],
        Reason::BrandInSubdomain { brand: "gatehouse".into() }
    );
    assert!(
        c.check("https://0x7f.1/")
            .reasons
            .contains(&Reason::IpLiteralHost { ip: "127.0.0.1".into(), obfuscated: true })
    );
    assert!(
        c.check("https://127.0.0.1/")
            .reasons
            .contains(&Reason::IpLiteralHost { ip: "127.0.0.1".into(), obfuscated: false })
    );
    assert!(
        c.check("https://x.github.io/")
            .reasons
            .contains(&Reason::FreeHosting { provider: "GitHub Pages".into(), domain: "github.io".into() })
    );
    assert!(c.check("http://upbit.com").reasons.contains(&Reason::NonHttpsScheme { scheme: "http".into() }));
    assert_eq!(c.check(APPLE).reasons, vec![Reason::OfficialAppLink { link: APPLE.into() }]);
}

#[test]
fn input_length_is_bounded() {
    let c = checker();
    let base = "https://upbit.com/";
    let exact = format!("{base}{}", "a".repeat(MAX_INPUT_BYTES - base.len()));
    assert_eq!(c.check(&exact).class, Official);
    let over = format!("{exact}a");
    assert_eq!(codes(&c.check(&over)), vec!["malformed"]);
    assert_eq!(codes(&c.check(&"x".repeat(1_000_000))), vec!["malformed"]);
}

#[test]
fn summaries_say_what_to_do_and_that_unknown_is_not_safe() {
    let c = checker();
    assert_eq!(
        c.check("https://xn--upbt-n9d.com/").summary(),
        "lookalike: upb\u{456}t.com (xn--upbt-n9d.com) — imitates an official address: do not sign in, do not send \
         funds [confusable_with, not_official, punycode, mixed_script]"
    );
    assert_eq!(
        c.check("https://upbit.com/").summary(),
        "official: upbit.com — an official address of the exchange [official_domain]"
    );
    assert_eq!(
        c.check("http://upbit.com/").summary(),
        "official: upbit.com — an official address of the exchange, but not over https: type the address yourself \
         [official_domain, non_https_scheme]"
    );
    assert_eq!(
        c.check("https://example.org/").to_string(),
        "unknown: example.org — not an official address; unknown does not mean safe [not_official]"
    );
    assert_eq!(
        c.check("").summary(),
        "unknown: (no host) — not an official address; unknown does not mean safe [malformed]"
    );
    assert_eq!(
        c.check("https://user@upbit.com/").summary(),
        "unknown: upbit.com — an official host, but official links never carry a user name: type the address \
         yourself [official_domain, userinfo_in_url]"
    );
    for r in c.check("https://upbit.com@evil.tld/upbit").reasons {
        assert!(!r.explanation().is_empty());
    }
}

#[test]
fn reason_codes_are_the_serde_tags() {
    let s = |v: &str| v.to_string();
    let all = vec![
        Reason::OfficialDomain { official: s("a") },
        Reason::SubdomainOfOfficial { official: s("a") },
        Reason::OfficialAppLink { link: s("a") },
        Reason::ConfusableWith { official: s("a"), skeleton: s("b") },
        Reason::EditDistance { official: s("a"), distance: 1 },
        Reason::OtherTld { official: s("a") },
        Reason::BrandInRegistrableLabel { brand: s("a") },
        Reason::BrandInSubdomain { brand: s("a") },
        Reason::BrandInPath { brand: s("a") },
        Reason::BrandInUserinfo { brand: s("a") },
        Reason::UserinfoInUrl,
        Reason::NotOfficial,
        Reason::Punycode { decoded: s("a") },
        Reason::MixedScript { label: s("a"), scripts: vec![s("Latin")] },
        Reason::FreeHosting { provider: s("a"), domain: s("b") },
        Reason::SiteBuilder { provider: s("a"), domain: s("b") },
        Reason::UrlShortener { provider: s("a"), domain: s("b") },
        Reason::IpLiteralHost { ip: s("a"), obfuscated: false },
        Reason::NonHttpsScheme { scheme: s("http") },
        Reason::SchemeAssumed,
        Reason::Malformed { detail: s("a") },
    ];
    let mut sorted = all.clone();
    sorted.sort();
    assert_eq!(sorted, all, "declaration order is the output order");
    for r in &all {
        let Ok(json) = serde_json::to_value(r) else { unreachable!() };
        assert_eq!(json["code"], r.code(), "{r:?}");
        assert_eq!(serde_json::from_value::<Reason>(json).ok().as_ref(), Some(r));
        assert!(!r.to_string().is_empty());
    }
    let Ok(v) = serde_json::to_value(checker().check("https://upblt.com")) else { unreachable!() };
    assert_eq!(v["class"], "lookalike");
    assert_eq!(v["reasons"][0], serde_json::json!({"code": "edit_distance", "official": "upbit.com", "distance": 1}));
}

#[test]
fn configuration_is_validated() {
    let with = |domains: &[&str], brands: &[&str], links: &[&str]| {
        UrlChecker::new(OfficialConfig {
            domains: domains.iter().map(|s| s.to_string()).collect(),
            brand_words: brands.iter().map(|s| s.to_string()).collect(),
            app_links: links.iter().map(|s| s.to_string()).collect(),
        })
        .map(|c| c.official_domains().map(str::to_string).collect::<Vec<_>>())
    };
    assert_eq!(with(&[], &[], &[]), Err(ConfigError::NoOfficialDomains));
    assert_eq!(with(&["UPBIT.COM.", "upbit.com", " upbit.com "], &[], &[]), Ok(vec!["upbit.com".to_string()]));
    assert_eq!(with(&["업비트.com"], &[], &[]), Ok(vec!["xn--9w3b70lgul.com".to_string()]));
    for bad in
        ["", "com", "co.kr", "github.io", "s3.amazonaws.com", "bit.ly", "127.0.0.1", "https://upbit.com", "upbit.com/x"]
    {
        assert!(matches!(with(&[bad], &[], &[]), Err(ConfigError::InvalidDomain { .. })), "{bad}");
    }
    // A page on a hosting service can be an exchange's own (it is not a suffix itself).
    assert!(with(&["upbit.github.io"], &[], &[]).is_ok());
    for bad in ["ab", "up bit", "up.bit", "x".repeat(64).as_str()] {
        assert!(matches!(with(&["upbit.com"], &[bad], &[]), Err(ConfigError::InvalidBrandWord { .. })), "{bad}");
    }
    for bad in [
        "http://apps.apple.com/app/x",
        "apps.apple.com/app/x",
        "https://apps.apple.com/",
        "https://apps.apple.com/./../",
        "https://me@apps.apple.com/app/x",
        "https://apps.apple.com:8443/app/x",
        "https://1.2.3.4/app",
        "https://bit.ly/upbit",
        "javascript:alert(1)",
    ] {
        assert!(matches!(with(&["upbit.com"], &[], &[bad]), Err(ConfigError::InvalidAppLink { .. })), "{bad}");
    }
    let many: Vec<String> = (0..=MAX_OFFICIAL_DOMAINS).map(|i| format!("d{i}.com")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    assert_eq!(
        with(&many, &[], &[]),
        Err(ConfigError::TooMany { what: "official domains", max: MAX_OFFICIAL_DOMAINS })
    );
    let Err(e) = with(&["github.io"], &[], &[]) else { unreachable!() };
    assert!(e.to_string().contains("github.io"));
    // Unknown fields in the configuration file are refused.
    assert!(serde_json::from_str::<OfficialConfig>(r#"{"domains":["upbit.com"],"brand":["x"]}"#).is_err());
    assert!(serde_json::from_str::<OfficialConfig>(r#"{"domains":["upbit.com"]}"#).is_ok());
}

#[test]
fn an_idn_official_domain_is_official_in_both_forms() {
    let Ok(c) = UrlChecker::new(OfficialConfig { domains: vec!["xn--9w3b70lgul.com".into()], ..Default::default() })
    else {
        unreachable!()
    };
    for input in ["https://업비트.com/", "https://xn--9w3b70lgul.com/", "https://WWW.업비트.com/"] {
        assert_eq!(c.check(input).class, Official, "{input}");
    }
    assert_eq!(c.check("https://업비트.net/").class, Lookalike);
    assert_eq!(c.check("https://업비드.com/").class, Lookalike);
}

#[test]
fn parents_and_siblings_of_an_official_domain_are_not_official_nor_imitations() {
    let Ok(c) = UrlChecker::new(OfficialConfig { domains: vec!["app.gatehouse.example".into()], ..Default::default() })
    else {
        unreachable!()
    };
    assert_eq!(c.check("https://app.gatehouse.example/").class, Official);
    let v = c.check("https://gatehouse.example/gatehouse");
    assert_eq!((v.class, codes(&v)), (Unknown, vec!["not_official"]));
    assert_eq!(c.check("https://gatehouse.example.evil.tld/").class, Lookalike);
}

#[test]
fn short_names_get_no_edit_allowance() {
    let Ok(c) =
        UrlChecker::new(OfficialConfig { domains: vec!["ok.com".into(), "okx.com".into()], ..Default::default() })
    else {
        unreachable!()
    };
    assert_eq!(c.check("https://ox.com/").class, Lookalike); // one edit from okx (3 letters)
    // One edit from "ok" (no allowance at two letters), two from "okx" (allowance one).
    assert_eq!(c.check("https://o.com/").class, Unknown);
    let Ok(only_ok) = UrlChecker::new(OfficialConfig { domains: vec!["ok.com".into()], ..Default::default() }) else {
        unreachable!()
    };
    assert_eq!(only_ok.check("https://ox.com/").class, Unknown); // two letters: no allowance
    assert_eq!(only_ok.check("https://0k.com/").class, Lookalike); // but confusables still count
    assert_eq!(only_ok.check("https://ok.com@evil.tld/").class, Lookalike);
    // Three-letter brand words match whole tokens only.
    assert_eq!(c.check("https://evil.tld/okx/login").class, Lookalike);
    assert_eq!(c.check("https://evil.tld/tokxyz").class, Unknown);
}

/// URL-shaped strings built from the pieces that matter to the parser.
fn urlish() -> impl Strategy<Value = String> {
    "(https?://|//|ftp:|javascript:)?([a-z0-9.@:%/_?#&=\\\\\\[\\]-]|[іаеорсухí업]|ｕ|。|xn--|upbit|0x|%2e|%40){0,24}"
}

proptest! {
    #[test]
    fn check_never_panics(s in "\\PC{0,300}") {
        let v = checker().check(&s);
        prop_assert!(!v.reasons.is_empty());
    }

    #[test]
    fn check_never_panics_on_url_shaped_input(s in urlish()) {
        let _ = checker().check(&s);
    }

    #[test]
    fn verdicts_are_idempotent_on_their_own_host(s in urlish()) {
        let c = checker();
        let v = c.check(&s);
        if !v.host.is_empty() {
            prop_assert_eq!(&c.check(&v.host).host, &v.host, "{:?}", s);
            prop_assert_eq!(&c.check(&v.unicode_host).host, &v.host, "{:?}", s);
        }
    }

    #[test]
    fn reasons_are_sorted_unique_and_agree_with_the_class(s in urlish()) {
        let v = checker().check(&s);
        prop_assert!(v.reasons.windows(2).all(|w| w[0] < w[1]));
        let official = v.reasons.iter().any(Reason::is_official);
        prop_assert_eq!(v.class == Official, official && !v.reasons.contains(&Reason::UserinfoInUrl));
        if v.class == Official {
            let under = |d: &str| v.host == d || v.host.ends_with(&format!(".{d}"));
            let app = v.reasons.iter().any(|r| matches!(r, Reason::OfficialAppLink { .. }));
            prop_assert!(app || under("upbit.com") || under("gatehouse.example"));
        }
    }
}
