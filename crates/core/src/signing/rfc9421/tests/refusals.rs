//! Requests the profile refuses: missing coverage, malformed fields, injection attempts,
//! and arbitrary bytes (which must never panic).

use proptest::prelude::*;

use super::*;

#[test]
fn required_coverage_and_parameters() {
    use Rfc9421Error::{Malformed, MissingComponent};
    let s = Signer::Hmac;
    let p = default_params();
    let c = created();
    let cases: Vec<(OwnedRequest, Rfc9421Error)> = vec![
        (sign_with(post(), &["@method", "@authority", "@path", "content-digest"], &p, &s), MissingComponent("@query")),
        (sign_with(post(), &["@authority", "@path", "@query", "content-digest"], &p, &s), MissingComponent("@method")),
        (sign_with(post(), &["@method", "@authority", "@path", "@query"], &p, &s), MissingComponent("content-digest")),
        (sign_with(post(), &ALL, &format!(r#";keyid="key-1";nonce="{NONCE}""#), &s), MissingComponent("created")),
        (sign_with(post(), &ALL, &format!(r#";created={c};keyid="key-1""#), &s), MissingComponent("nonce")),
        (sign_with(post(), &ALL, &format!(r#";created={c};nonce="{NONCE}""#), &s), MissingComponent("keyid")),
        (
            sign_with(post(), &ALL, &format!(r#";created={c};keyid="key-1";nonce="short-nonce-15b""#), &s),
            Malformed("nonce must be 16 to 64 bytes"),
        ),
        (
            sign_with(post(), &ALL, &format!(r#";created={c};keyid="key-1";nonce="{}""#, "n".repeat(65)), &s),
            Malformed("nonce must be 16 to 64 bytes"),
        ),
        (sign_with(post(), &ALL, &format!(r#";created={c};keyid="";nonce="{NONCE}""#), &s), Malformed("keyid length")),
        (
            sign_with(post(), &ALL, &format!(r#";created="{c}";keyid="key-1";nonce="{NONCE}""#), &s),
            Malformed("created/expires must be non-negative integers"),
        ),
        (
            sign_with(post(), &ALL, &format!(r#";created=-1;keyid="key-1";nonce="{NONCE}""#), &s),
            Malformed("created/expires must be non-negative integers"),
        ),
        (
            sign_with(post(), &ALL, &format!(r#";created={c};keyid=key;nonce="{NONCE}""#), &s),
            Malformed("nonce/keyid/alg/tag must be strings"),
        ),
        (sign_with(post(), &ALL, &format!(r#"{p};foo="bar""#), &s), Malformed("unknown signature parameter")),
        (
            sign_with(post(), &["@method", "@method", "@authority", "@path", "@query", "content-digest"], &p, &s),
            Malformed("duplicate component"),
        ),
        (
            sign_with(post(), &["@Method", "@authority", "@path", "@query", "content-digest"], &p, &s),
            Malformed("invalid component identifier"),
        ),
        (
            sign_with(post(), &["@target-uri", "@method", "@authority", "@path", "@query", "content-digest"], &p, &s),
            Malformed("unsupported derived component"),
        ),
        (
            sign_with(post(), &["date", "@method", "@authority", "@path", "@query", "content-digest"], &p, &s),
            Malformed("covered field is absent"),
        ),
    ];
    for (n, (r, expected)) in cases.iter().enumerate() {
        raw!(r => req);
        assert_eq!(parse(&req).err(), Some(*expected), "case {n}");
    }
}

#[test]
fn malformed_fields_are_refused() {
    use Rfc9421Error::{Malformed, MalformedDigest, SignatureRequired};
    let good = signed_post(&Signer::Hmac);
    let si = header_of(&good, "signature-input");
    let variant = |f: &dyn Fn(&mut OwnedRequest)| {
        let mut r = good.clone();
        f(&mut r);
        raw!(r => req);
        parse(&req).err()
    };
    assert_eq!(variant(&|r| r.headers.retain(|(n, _)| !n.starts_with("signature"))), Some(SignatureRequired));
    assert!(matches!(variant(&|r| r.headers.retain(|(n, _)| n != "signature")), Some(Malformed(_))));
    assert!(matches!(
        variant(&|r| r.headers.push(("signature-input".into(), si.clone().into_bytes()))),
        Some(Malformed(_))
    ));
    assert!(matches!(variant(&|r| r.headers.push(("signature".into(), b"sig1=:AAAA:".to_vec()))), Some(Malformed(_))));
    assert!(matches!(
        variant(&|r| r.set_header("signature-input", format!("{si}, sig2={}", si.trim_start_matches("sig1=")))),
        Some(Malformed(_))
    ));
    assert!(matches!(variant(&|r| r.set_header("signature-input", si.replace("sig1=", "other="))), Some(Malformed(_))));
    assert!(matches!(variant(&|r| r.set_header("signature-input", format!("{si};x"))), Some(Malformed(_))));
    assert!(matches!(variant(&|r| r.set_header("signature-input", "sig1=\"not a list\"")), Some(Malformed(_))));
    assert!(matches!(
        variant(&|r| r.set_header("signature-input", format!("{si}{}", " ".repeat(MAX_SIGNATURE_FIELD_LEN)))),
        Some(Malformed(_))
    ));
    assert!(matches!(variant(&|r| r.set_header("signature", "sig1=:!!:")), Some(Malformed(_))));
    assert!(matches!(variant(&|r| r.set_header("signature", "sig1=\"text\"")), Some(Malformed(_))));
    assert!(matches!(variant(&|r| r.set_header("signature", "sig1=:AAAA:;p=1")), Some(Malformed(_))));
    assert!(matches!(variant(&|r| r.set_header("content-digest", "sha-256=:AAAA:")), Some(MalformedDigest(_))));
    assert!(matches!(
        variant(&|r| r.set_header("content-digest", "md5=:AAAAAAAAAAAAAAAAAAAAAA==:")),
        Some(MalformedDigest(_))
    ));
    assert!(matches!(
        variant(&|r| r.headers.push(("content-digest".into(), b"sha-256=:AAAA:".to_vec()))),
        Some(MalformedDigest(_))
    ));
    assert!(matches!(variant(&|r| r.headers.retain(|(n, _)| n != "content-digest")), Some(MalformedDigest("absent"))));
    assert!(matches!(variant(&|r| r.body = vec![b'x'; MAX_BODY_LEN + 1]), Some(Malformed(_))));
    assert!(matches!(variant(&|r| r.target = "http://api.example.com/api/v1/orders".into()), Some(Malformed(_))));
}

#[test]
fn covered_fields_cannot_inject_base_lines() {
    let s = Signer::Hmac;
    let evil = post().header("x-note", "a\n\"@method\": GET");
    let r = sign_with(
        evil,
        &["x-note", "@method", "@authority", "@path", "@query", "content-digest"],
        &default_params(),
        &s,
    );
    raw!(r => req);
    assert_eq!(parse(&req).err(), Some(Rfc9421Error::Malformed("control character in a covered field")));
    // Repeated covered fields are joined with ", " (RFC 9421 §2.1) and still verify.
    let twice = post().header("x-tag", " a ").header("x-tag", "b");
    let r = sign_with(
        twice,
        &["x-tag", "@method", "@authority", "@path", "@query", "content-digest"],
        &default_params(),
        &s,
    );
    assert!(run(&r, &s, now()).is_ok());
}

proptest! {
    #[test]
    fn parse_never_panics(
        input in proptest::collection::vec(any::<u8>(), 0..200),
        sig in proptest::collection::vec(any::<u8>(), 0..120),
        digest in proptest::collection::vec(any::<u8>(), 0..80),
    ) {
        let r = OwnedRequest::new("POST", "/x?y")
            .header("signature-input", input)
            .header("signature", sig)
            .header("content-digest", digest)
            .body("b");
        raw!(r => req);
        if let Ok(parsed) = parse(&req) {
            let _ = verify(&parsed, &key(&Signer::Hmac), now(), &Rfc9421Policy::default());
            let _ = reject_unknown_key(&parsed);
        }
    }

    #[test]
    fn parse_never_panics_on_field_like_input(
        components in proptest::collection::vec("@?[a-z-]{1,10}", 0..8),
        params in r#"(;[a-z]{1,8}(=("[ -~]{0,20}"|-?[0-9]{1,16}|\?[01]|[a-z]{1,5}|:[A-Za-z0-9+/=]{0,12}:))?){0,6}"#,
    ) {
        let list = format!("sig1=({}){params}", components.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(" "));
        let r = post().header("signature-input", list).header("signature", "sig1=:AAAA:");
        raw!(r => req);
        let _ = parse(&req);
    }
}
