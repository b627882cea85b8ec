//! RFC 9421: the RFC's own B.2.5/B.2.6 vectors reproduced exactly, then our profile end to end
//! with bases built independently of the code under test.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::Signer as _;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256, Sha512};

use super::*;
use crate::signing::testdata::{self, GOLDEN_NOW_MS, OwnedRequest, json, must, raw, str_of};

const SECRET: &[u8] = b"gatehouse-rfc9421-test-secret-0123456789abcdef";
/// RFC 8032 §7.1 TEST 2.
const ED_SECRET: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";
const NONCE: &str = "b3k2pq9x7m4n1v8c";
const BODY: &str = r#"{"symbol":"BTC-USDT","qty":"1"}"#;

#[derive(Clone)]
enum Signer {
    Hmac,
    Ed25519,
}

fn signing_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&must!(must!(hex::decode(ED_SECRET)).try_into()))
}

fn key(s: &Signer) -> VerifyKey {
    match s {
        Signer::Hmac => must!(VerifyKey::hmac_from_bytes(SECRET)),
        Signer::Ed25519 => must!(VerifyKey::ed25519_from_bytes(signing_key().verifying_key().as_bytes())),
    }
}

fn now() -> Timestamp {
    Timestamp::from_millis(GOLDEN_NOW_MS)
}

fn created() -> i64 {
    GOLDEN_NOW_MS / 1000
}

fn digest_header(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// The component value, computed here independently of `component_value`.
fn value_of(r: &OwnedRequest, c: &str) -> String {
    let (path, query) = r.target.split_once('?').unwrap_or((r.target.as_str(), ""));
    match c {
        "@method" => r.method.clone(),
        "@authority" => r.authority.to_lowercase(),
        "@path" => path.to_owned(),
        "@query" => format!("?{query}"),
        field => r
            .headers
            .iter()
            .filter(|(n, _)| n == field)
            .map(|(_, v)| String::from_utf8_lossy(v).trim().to_owned())
            .collect::<Vec<_>>()
            .join(", "),
    }
}

/// Signs `r` over `components` with `params` (already serialized, e.g. `;created=1;…`).
fn sign_with(mut r: OwnedRequest, components: &[&str], params: &str, signer: &Signer) -> OwnedRequest {
    let list = format!("({}){params}", components.iter().map(|c| format!("\"{c}\"")).collect::<Vec<_>>().join(" "));
    let mut base = String::new();
    for c in components {
        base.push_str(&format!("\"{c}\": {}\n", value_of(&r, c)));
    }
    base.push_str(&format!("\"@signature-params\": {list}"));
    let sig = match signer {
        Signer::Hmac => {
            let mut m = must!(<Hmac<Sha256> as KeyInit>::new_from_slice(SECRET));
            m.update(base.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        Signer::Ed25519 => signing_key().sign(base.as_bytes()).to_bytes().to_vec(),
    };
    r.set_header("signature-input", format!("sig1={list}"));
    r.set_header("signature", format!("sig1=:{}:", STANDARD.encode(sig)));
    r
}

fn header_of(r: &OwnedRequest, name: &str) -> String {
    r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| String::from_utf8_lossy(v).into_owned()).unwrap_or_default()
}

fn default_params() -> String {
    format!(r#";created={};keyid="key-1";nonce="{NONCE}""#, created())
}

fn post() -> OwnedRequest {
    OwnedRequest::new("POST", "/api/v1/orders?symbol=BTC-USDT&side=buy")
        .header("content-type", "application/json")
        .header("content-digest", digest_header(BODY.as_bytes()))
        .body(BODY)
}

const ALL: [&str; 5] = ["@method", "@authority", "@path", "@query", "content-digest"];

fn signed_post(signer: &Signer) -> OwnedRequest {
    sign_with(post(), &ALL, &default_params(), signer)
}

fn run(r: &OwnedRequest, signer: &Signer, at: Timestamp) -> Result<Verified, Rfc9421Error> {
    raw!(r => req);
    verify(&parse(&req)?, &key(signer), at, &Rfc9421Policy::default())
}

/// The test request of RFC 9421 Appendix B.2.
fn rfc_request() -> OwnedRequest {
    let mut r = OwnedRequest::new("POST", "/foo?param=Value&Pet=dog")
        .header("host", "example.com")
        .header("date", "Tue, 20 Apr 2021 02:07:55 GMT")
        .header("content-type", "application/json")
        .header(
            "content-digest",
            "sha-512=:WZDPaVn/7XgHaAy8pmojAkGWoRx2UFChF41A2svX+TaPm+AbwAgBWnrIiYllu7BNNyealdVLvRwEmTHWXvJwew==:",
        )
        .header("content-length", "18")
        .body(r#"{"hello": "world"}"#);
    r.authority = "example.com".into();
    r
}

#[test]
fn rfc9421_b25_and_b26_reproduce_exactly() {
    let v = json(testdata::RFC9421);
    let keys = &v["keys"];
    let hmac = must!(VerifyKey::hmac_from_bytes(&must!(
        STANDARD.decode(str_of(&keys["test-shared-secret"], "secret_base64"))
    )));
    let ed_public = must!(URL_SAFE_NO_PAD.decode(str_of(&keys["test-key-ed25519"]["jwk"], "x")));
    let ed = must!(VerifyKey::ed25519_from_bytes(&ed_public));
    let ed_private: [u8; 32] =
        must!(must!(URL_SAFE_NO_PAD.decode(str_of(&keys["test-key-ed25519"]["jwk"], "d"))).try_into());

    let vectors = must!(v["vectors"].as_array());
    assert_eq!(vectors.len(), 2);
    for t in vectors {
        let name = str_of(t, "name");
        let mut r = rfc_request();
        r.set_header("signature-input", str_of(t, "signature_input"));
        r.set_header("signature", str_of(t, "signature"));
        raw!(r => req);

        let inputs = must!(SignatureInput::parse_field(str_of(t, "signature_input").as_bytes()));
        let [input] = inputs.as_slice() else { unreachable!("{name}: one member") };
        let base = must!(signature_base(&req, input), "{name}");
        assert_eq!(String::from_utf8_lossy(&base), str_of(t, "signature_base"), "{name}: signature base");
        assert!(!base.ends_with(b"\n"));

        let sigs = must!(sf::parse_dictionary(str_of(t, "signature").as_bytes()));
        let [(label, Member::Item(sf::Item { bare: BareItem::ByteSeq(sig), .. }))] = sigs.as_slice() else {
            unreachable!("{name}: one byte-sequence member")
        };
        assert_eq!(label, input.label());
        let (k, alg) = if name == "B.2.5" { (&hmac, SignatureAlg::HmacSha256) } else { (&ed, SignatureAlg::Ed25519) };
        assert!(k.verify_signature(alg, &base, sig), "{name}: signature");
        assert!(!k.verify_signature(alg, &base[1..], sig), "{name}: altered base");
        if name == "B.2.6" {
            let again = ed25519_dalek::SigningKey::from_bytes(&ed_private).sign(&base);
            assert_eq!(again.to_bytes().as_slice(), sig.as_slice(), "B.2.6 re-signed");
        }

        // Our request verification enforces its own profile: these examples carry no nonce and
        // do not cover @method/@query, so they are refused before any key is consulted.
        assert!(matches!(parse(&req), Err(Rfc9421Error::MissingComponent(_))), "{name}");
    }
    // The example request's Content-Digest is right (RFC 9530 §B.2).
    let r = rfc_request();
    raw!(r => req);
    let d = must!(ContentDigest::parse(&req));
    assert!(d.matches(req.body));
}

#[test]
fn signed_requests_verify() {
    for signer in [Signer::Hmac, Signer::Ed25519] {
        let v = must!(run(&signed_post(&signer), &signer, now()));
        assert_eq!(v.key_id(), "key-1");
        assert!(v.binds_method_and_path());
        assert_eq!(v.retention(), Span::secs(308));
        assert_eq!(v.replay_key(), &ReplayKey::derive(Dialect::Rfc9421.as_str(), &[b"key-1", NONCE.as_bytes()]));
        // GET without a body needs no content-digest; reordered components are fine.
        let get = OwnedRequest::new("GET", "/api/v1/orders");
        let get = sign_with(get, &["@query", "@path", "@method", "@authority"], &default_params(), &signer);
        assert!(run(&get, &signer, now()).is_ok());
        // Extra covered fields and parameters in another order, with alg and expires.
        let params = format!(
            r#";keyid="key-1";alg="{}";created={};expires={};nonce="{NONCE}";tag="app""#,
            if matches!(signer, Signer::Hmac) { "hmac-sha256" } else { "ed25519" },
            created(),
            created() + 60
        );
        let r = sign_with(
            post(),
            &["content-type", "@method", "@authority", "@path", "@query", "content-digest"],
            &params,
            &signer,
        );
        assert!(run(&r, &signer, now()).is_ok());
    }
}

#[test]
fn every_covered_part_is_bound() {
    for signer in [Signer::Hmac, Signer::Ed25519] {
        let good = signed_post(&signer);
        let invalid = |r: &OwnedRequest| run(r, &signer, now()).err();
        let mut m = good.clone();
        m.method = "DELETE".into();
        assert!(matches!(invalid(&m), Some(Rfc9421Error::InvalidSignature(_))), "method");
        let mut m = good.clone();
        m.authority = "evil.example.com".into();
        assert!(matches!(invalid(&m), Some(Rfc9421Error::InvalidSignature(_))), "authority");
        let mut m = good.clone();
        m.target = m.target.replace("/orders", "/withdrawals");
        assert!(matches!(invalid(&m), Some(Rfc9421Error::InvalidSignature(_))), "path");
        let mut m = good.clone();
        m.target = m.target.replace("side=buy", "side=sell");
        assert!(matches!(invalid(&m), Some(Rfc9421Error::InvalidSignature(_))), "query");
        let mut m = good.clone();
        m.body = BODY.replace('1', "9").into_bytes();
        assert_eq!(invalid(&m), Some(Rfc9421Error::DigestMismatch), "body");
        m.set_header("content-digest", digest_header(&m.body));
        assert!(matches!(invalid(&m), Some(Rfc9421Error::InvalidSignature(_))), "body with a fresh digest");
        for (from, to) in [
            (format!("created={}", created()), format!("created={}", created() - 1)),
            (NONCE.to_owned(), NONCE.replace('b', "c")),
            ("keyid=\"key-1\"".to_owned(), "keyid=\"key-2\"".to_owned()),
        ] {
            let mut m = good.clone();
            let input = header_of(&good, "signature-input").replace(&from, &to);
            m.set_header("signature-input", input);
            assert!(matches!(invalid(&m), Some(Rfc9421Error::InvalidSignature(_))), "{from} → {to}");
        }
        // The signature itself.
        let mut m = good.clone();
        let sig = header_of(&good, "signature");
        let rest = sig.strip_prefix("sig1=:").unwrap_or_default();
        let flipped = if rest.starts_with('A') {
            format!("sig1=:B{}", rest.get(1..).unwrap_or_default())
        } else {
            format!("sig1=:A{}", rest.get(1..).unwrap_or_default())
        };
        m.set_header("signature", flipped);
        assert!(matches!(invalid(&m), Some(Rfc9421Error::InvalidSignature(_))), "signature");
    }
}

#[test]
fn window_edges_at_exact_instants() {
    let s = Signer::Hmac;
    let at = |created: i64, expires: Option<i64>| {
        let exp = expires.map(|e| format!(";expires={e}")).unwrap_or_default();
        let r = sign_with(post(), &ALL, &format!(r#";created={created}{exp};keyid="key-1";nonce="{NONCE}""#), &s);
        run(&r, &s, now())
    };
    let c = created();
    assert!(at(c - 300, None).is_ok());
    assert_eq!(at(c - 301, None).err(), Some(Rfc9421Error::Expired("created too old")));
    assert!(at(c + 5, None).is_ok());
    assert_eq!(at(c + 6, None).err(), Some(Rfc9421Error::NotYetValid));
    assert!(at(c - 10, Some(c + 1)).is_ok());
    assert_eq!(at(c - 10, Some(c)).err(), Some(Rfc9421Error::Expired("expires passed")));
    assert_eq!(at(c, Some(c - 1)).err(), Some(Rfc9421Error::Malformed("expires before created")));
    // A stricter policy.
    let r = sign_with(post(), &ALL, &format!(r#";created={};keyid="key-1";nonce="{NONCE}""#, c - 31), &s);
    raw!(r => req);
    let strict = Rfc9421Policy { max_age: Span::secs(30), ..Rfc9421Policy::default() };
    assert!(matches!(verify(&must!(parse(&req)), &key(&s), now(), &strict), Err(Rfc9421Error::Expired(_))));
}

#[test]
fn alg_must_match_the_key() {
    let with_alg = |alg: &str, signer: &Signer| {
        sign_with(post(), &ALL, &format!(r#";created={};keyid="key-1";nonce="{NONCE}";alg="{alg}""#, created()), signer)
    };
    let r = with_alg("ed25519", &Signer::Hmac);
    assert_eq!(run(&r, &Signer::Hmac, now()).err(), Some(Rfc9421Error::InvalidSignature("alg does not match the key")));
    let r = with_alg("hmac-sha256", &Signer::Ed25519);
    assert!(matches!(run(&r, &Signer::Ed25519, now()), Err(Rfc9421Error::InvalidSignature(_))));
    for alg in ["rsa-pss-sha512", "rsa-v1_5-sha256", "ecdsa-p256-sha256", "HMAC-SHA256", ""] {
        let r = with_alg(alg, &Signer::Hmac);
        assert_eq!(run(&r, &Signer::Hmac, now()).err(), Some(Rfc9421Error::UnsupportedAlgorithm), "{alg:?}");
    }
    // An RSA key never verifies an RFC 9421 request.
    let g = json(testdata::GOLDEN);
    let rsa = must!(VerifyKey::rsa_from_pem(str_of(&g["keys"], "binance_rsa_public_pem")));
    let r = signed_post(&Signer::Hmac);
    raw!(r => req);
    assert!(matches!(
        verify(&must!(parse(&req)), &rsa, now(), &Rfc9421Policy::default()),
        Err(Rfc9421Error::InvalidSignature(_))
    ));
}

#[test]
fn content_digest_algorithms() {
    let s = Signer::Hmac;
    let both = format!(
        "sha-512=:{}:, {}, unixsum=:AAAA:",
        STANDARD.encode(Sha512::digest(BODY)),
        digest_header(BODY.as_bytes())
    );
    let mut r = post();
    r.set_header("content-digest", both);
    assert!(run(&sign_with(r.clone(), &ALL, &default_params(), &s), &s, now()).is_ok());
    // One wrong digest among two fails the request.
    let bad = format!("sha-512=:{}:, {}", STANDARD.encode(Sha512::digest(b"other")), digest_header(BODY.as_bytes()));
    r.set_header("content-digest", bad);
    assert_eq!(run(&sign_with(r, &ALL, &default_params(), &s), &s, now()).err(), Some(Rfc9421Error::DigestMismatch));
    // A digest covered on a GET without a body is checked too (over the empty body).
    let get = OwnedRequest::new("GET", "/x").header("content-digest", digest_header(b""));
    assert!(run(&sign_with(get, &ALL, &default_params(), &s), &s, now()).is_ok());
}

#[test]
fn unknown_keys_and_denials() {
    for signer in [Signer::Hmac, Signer::Ed25519] {
        let r = signed_post(&signer);
        raw!(r => req);
        let parsed = must!(parse(&req));
        assert_eq!(reject_unknown_key(&parsed), Rfc9421Error::InvalidSignature("unknown keyid"));
        assert_eq!(parsed.key_id(), "key-1");
        assert_eq!(parsed.nonce(), NONCE);
        assert!(parsed.signature_base().starts_with(b"\"@method\": POST\n\"@authority\": api.example.com\n"));
    }
    assert_eq!(Rfc9421Error::from(Denial::OutOfScope).status(), 403);
}

mod refusals;
