//! One test per RFC 9449 §4.3 check (and more), with ES256 and EdDSA proofs made here from
//! fixed keys.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::*;
use crate::pop::tests::{HTU, NOW, NOW_S, TOKEN, TestKey, b64, ctx};
use crate::pop::{Confirmation, ath_for};
use crate::replay::{InsertOutcome, ReplayCache, ReplayKey};
use crate::secret::SecretBytes;
use crate::signing::testdata::must;

fn policy() -> DpopPolicy {
    DpopPolicy::default()
}

type Summary = Result<(String, ReplayKey, Timestamp, JwsAlg), DpopError>;

fn summary(r: &Result<VerifiedProof, DpopError>) -> Summary {
    r.as_ref().map(|ok| (ok.jkt().to_string(), *ok.jti_replay_key(), ok.iat(), ok.alg())).map_err(Clone::clone)
}

thread_local! {
    /// One caching verifier per test thread, shared by every check in it.
    static VERIFIER: DpopVerifier = DpopVerifier::new(policy(), 64);
}

/// Verifies `proof` against the default resource-server context for `key`, changed by `f`;
/// the caching [`DpopVerifier`] (cold, then warm) must give the same answer.
fn check_with(key: &TestKey, proof: &str, f: impl FnOnce(&mut ProofContext<'_>)) -> Result<VerifiedProof, DpopError> {
    let jkt = key.jkt();
    let mut c = ctx(&jkt);
    f(&mut c);
    let plain = verify_proof(&[proof.as_bytes()], &c, &policy());
    for _ in 0..2 {
        let cached = VERIFIER.with(|v| v.verify(&[proof.as_bytes()], &c));
        assert_eq!(summary(&cached), summary(&plain), "cached and plain verification differ");
    }
    plain
}

fn check(key: &TestKey, proof: &str) -> Result<VerifiedProof, DpopError> {
    check_with(key, proof, |_| {})
}

/// A proof by `key` with its claims changed by `f`.
fn with_claims(key: &TestKey, f: impl FnOnce(&mut Value)) -> String {
    let mut claims = key.claims();
    f(&mut claims);
    key.jws(&key.header().to_string(), &claims.to_string())
}

/// A proof by `key` with its header changed by `f`.
fn with_header(key: &TestKey, f: impl FnOnce(&mut Value)) -> String {
    let mut header = key.header();
    f(&mut header);
    key.jws(&header.to_string(), &key.claims().to_string())
}

fn keys() -> [TestKey; 2] {
    [TestKey::ec(0x11), TestKey::ed(0x22)]
}

#[test]
fn own_es256_and_eddsa_proofs_verify() {
    for key in keys() {
        let ok = must!(check(&key, &key.proof()), "{}", key.alg());
        assert_eq!(ok.jkt().as_str(), key.jkt());
        assert_eq!(ok.alg().as_str(), key.alg());
        assert_eq!(ok.iat(), NOW);
        // Token endpoint: no access token, no expected key; `ath` is then not required.
        let proof = with_claims(&key, |c| {
            c.as_object_mut().map(|o| o.remove("ath"));
            c["htm"] = json!("POST");
            c["htu"] = json!("https://api.gatehouse.test/oauth/token");
        });
        let issued = must!(check_with(&key, &proof, |c| {
            c.method = "POST";
            c.htu = "https://api.gatehouse.test/oauth/token";
            c.access_token = None;
            c.expected_jkt = None;
        }));
        assert_eq!(issued.confirmation(), Confirmation::dpop(ok.jkt().clone()));
    }
}

#[test]
fn check_1_exactly_one_dpop_header() {
    let key = TestKey::ec(0x11);
    let jkt = key.jkt();
    let p = key.proof();
    let run = |values: &[&[u8]]| verify_proof(values, &ctx(&jkt), &policy()).err();
    assert_eq!(run(&[]), Some(DpopError::Missing));
    assert_eq!(run(&[b""]), Some(DpopError::Missing));
    assert_eq!(run(&[b"  "]), Some(DpopError::Missing));
    assert_eq!(run(&[p.as_bytes(), p.as_bytes()]), Some(DpopError::MultipleProofs));
    assert_eq!(run(&[format!("{p}, {p}").as_bytes()]), Some(DpopError::MultipleProofs));
    assert_eq!(run(&[format!(" {p} ").as_bytes()]), None, "surrounding white space is not a second proof");
}

#[test]
fn check_2_one_well_formed_jws() {
    let key = TestKey::ec(0x11);
    let p = key.proof();
    let (h, rest) = must!(p.split_once('.'));
    let (pl, s) = must!(rest.split_once('.'));
    let malformed = |proof: String| {
        let e = check(&key, &proof).err();
        assert!(matches!(e, Some(DpopError::Malformed(_))), "{proof:.40}: {e:?}");
    };
    malformed(format!("{h}{pl}{s}")); // two dots missing
    malformed(format!("{h}.{pl}{s}")); // one dot missing
    malformed(format!("{h}.{pl}.{s}.{s}"));
    malformed(format!(".{pl}.{s}"));
    malformed(format!("{h}..{s}"));
    malformed(format!("{h}=.{pl}.{s}")); // padding
    malformed(format!("+{}.{pl}.{s}", &h[1..]));
    malformed(format!("{h}.{pl}.{s}=="));
    malformed(format!("{}.{pl}.{s}", b64("[1,2]")));
    malformed(format!("{}.{pl}.{s}", b64("{\"alg\":\"ES256\"")));
    malformed(format!("{h}.{pl}.{s}\u{e9}"));
    // Duplicate header members are refused, not resolved (RFC 7515 §5.2, RFC 8725 §3.1).
    let jwk = key.jwk().to_string();
    malformed(
        key.jws(&format!(r#"{{"typ":"dpop+jwt","alg":"ES256","alg":"ES256","jwk":{jwk}}}"#), &key.claims().to_string()),
    );
    malformed(
        key.jws(&format!(r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{jwk},"jwk":{jwk}}}"#), &key.claims().to_string()),
    );
    // No extensions, no key references besides `jwk`, and a `jwk` there must be.
    malformed(with_header(&key, |hd| hd["crit"] = json!(["b64"])));
    malformed(with_header(&key, |hd| hd["jku"] = json!("https://attacker.example/jwks")));
    malformed(with_header(&key, |hd| hd["x5u"] = json!("https://attacker.example/cert")));
    malformed(with_header(&key, |hd| hd["x5c"] = json!(["MIIB"])));
    malformed(with_header(&key, |hd| {
        hd.as_object_mut().map(|o| o.remove("jwk"));
    }));
    malformed(with_header(&key, |hd| {
        hd.as_object_mut().map(|o| o.remove("alg"));
    }));
    // Size bound, before any parsing.
    let huge = format!("{h}.{}.{s}", "A".repeat(8 * 1024));
    assert_eq!(check(&key, &huge).err(), Some(DpopError::TooLarge));
    assert_eq!(DpopError::TooLarge.status(Endpoint::Resource), 400);
}

#[test]
fn check_3_required_claims() {
    for key in keys() {
        for claim in ["jti", "htm", "htu", "iat", "ath"] {
            let proof = with_claims(&key, |c| {
                c.as_object_mut().map(|o| o.remove(claim));
            });
            assert_eq!(check(&key, &proof).err(), Some(DpopError::MissingClaim(claim)), "{claim}");
        }
        let empty_jti = with_claims(&key, |c| c["jti"] = json!(""));
        assert_eq!(check(&key, &empty_jti).err(), Some(DpopError::MissingClaim("jti")));
        for (claim, bad) in
            [("iat", json!("1700000000")), ("htu", json!(1)), ("htm", json!(["GET"])), ("jti", json!(7))]
        {
            let proof = with_claims(&key, |c| c[claim] = bad);
            assert_eq!(check(&key, &proof).err(), Some(DpopError::InvalidClaims), "{claim}");
        }
        let dup = key.jws(
            &key.header().to_string(),
            &format!(
                r#"{{"jti":"a","htm":"GET","htu":"{HTU}","htu":"https://other/","iat":{NOW_S},"ath":"{}"}}"#,
                ath_for(TOKEN)
            ),
        );
        assert_eq!(check(&key, &dup).err(), Some(DpopError::InvalidClaims));
        let not_object = key.jws(&key.header().to_string(), "[1]");
        assert_eq!(check(&key, &not_object).err(), Some(DpopError::InvalidClaims));
    }
}

#[test]
fn check_4_typ_is_dpop_jwt() {
    let key = TestKey::ed(0x22);
    for typ in [json!("JWT"), json!("at+jwt"), json!("dpop"), json!("dpop+jwt; x=1"), Value::Null] {
        let proof = with_header(&key, |h| h["typ"] = typ.clone());
        assert_eq!(check(&key, &proof).err(), Some(DpopError::BadTyp), "{typ}");
    }
    let proof = with_header(&key, |h| {
        h.as_object_mut().map(|o| o.remove("typ"));
    });
    assert_eq!(check(&key, &proof).err(), Some(DpopError::BadTyp));
    // A `typ` that is not a string is a malformed header (check 2), not another type.
    let numeric = with_header(&key, |h| h["typ"] = json!(1));
    assert!(matches!(check(&key, &numeric).err(), Some(DpopError::Malformed(_))));
    for typ in ["DPoP+JWT", "application/dpop+jwt"] {
        assert!(check(&key, &with_header(&key, |h| h["typ"] = json!(typ))).is_ok(), "{typ}");
    }
}

#[test]
fn check_5_alg_asymmetric_and_allowed() {
    let key = TestKey::ec(0x11);
    let claims = key.claims().to_string();
    // HS256 "signed" with the public key as the HMAC secret: the classic confusion attack.
    let hs_header = json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": key.jwk()}).to_string();
    let input = format!("{}.{}", b64(&hs_header), b64(&claims));
    let mut mac = must!(<Hmac<Sha256> as KeyInit>::new_from_slice(key.jwk().to_string().as_bytes()));
    mac.update(input.as_bytes());
    let hs256 = format!("{input}.{}", b64(mac.finalize().into_bytes()));
    assert_eq!(check(&key, &hs256).err(), Some(DpopError::AlgNotAllowed));

    let none_header = json!({"typ": "dpop+jwt", "alg": "none", "jwk": key.jwk()}).to_string();
    let none = format!("{}.{}.", b64(&none_header), b64(&claims));
    assert_eq!(check(&key, &none).err(), Some(DpopError::AlgNotAllowed));

    for alg in ["RS256", "PS256", "ES384", "ES256K", "Ed25519", "es256", "NONE", "HS512"] {
        let proof = with_header(&key, |h| h["alg"] = json!(alg));
        assert_eq!(check(&key, &proof).err(), Some(DpopError::AlgNotAllowed), "{alg}");
    }
    // A policy narrower than the default refuses the other algorithm.
    let only_eddsa = DpopPolicy { allowed_algs: vec![JwsAlg::EdDsa], ..policy() };
    let jkt = key.jkt();
    let err = verify_proof(&[key.proof().as_bytes()], &ctx(&jkt), &only_eddsa).err();
    assert_eq!(err, Some(DpopError::AlgNotAllowed));
    assert_eq!(policy().algs(), "ES256 EdDSA");
}

/// `n − s` for a P-256 signature `r ‖ s`: the other valid signature of the same message.
fn malleate(sig: &[u8]) -> Vec<u8> {
    const N: [u8; 32] = [
        0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xbc, 0xe6,
        0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51,
    ];
    let mut out = sig.to_vec();
    let mut borrow = 0i16;
    for i in (0..32).rev() {
        let d = i16::from(N[i]) - i16::from(sig[32 + i]) - borrow;
        borrow = i16::from(d < 0);
        out[32 + i] = u8::try_from(d.rem_euclid(256)).unwrap_or(0);
    }
    out
}

#[test]
fn check_6_signature_over_the_received_bytes_with_the_header_jwk() {
    for key in keys() {
        let other = match key {
            TestKey::Ec(_) => TestKey::ec(0x33),
            TestKey::Ed(_) => TestKey::ed(0x44),
        };
        // Signed by another key, header carries ours.
        let forged = other.jws(&key.header().to_string(), &key.claims().to_string());
        assert_eq!(check(&key, &forged).err(), Some(DpopError::BadSignature), "{}", key.alg());
        // Truncated and empty signatures.
        let p = key.proof();
        let dot = must!(p.rfind('.'));
        let sig = must!(base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, &p[dot + 1..]));
        assert_eq!(check(&key, &format!("{}.{}", &p[..dot], b64(&sig[..63]))).err(), Some(DpopError::BadSignature));
        assert_eq!(
            check(&key, &format!("{}.{}", &p[..dot], b64([&sig[..], &[0]].concat()))).err(),
            Some(DpopError::BadSignature)
        );
        assert_eq!(check(&key, &p[..=dot]).err(), Some(DpopError::BadSignature));
        // The same JSON re-serialised (white space) is a different signed byte string.
        let spaced =
            format!("{}.{}.{}", b64(format!("{} ", key.header())), b64(key.claims().to_string()), &p[dot + 1..]);
        assert_eq!(check(&key, &spaced).err(), Some(DpopError::BadSignature));
    }
    // The `jwk` must suit `alg`.
    let (ec, ed) = (TestKey::ec(0x11), TestKey::ed(0x22));
    let mismatched =
        ed.jws(&json!({"typ": "dpop+jwt", "alg": "EdDSA", "jwk": ec.jwk()}).to_string(), &ec.claims().to_string());
    assert_eq!(check(&ec, &mismatched).err(), Some(DpopError::InvalidKey(JwkError::AlgMismatch)));
    let bad_point = with_header(&ec, |h| h["jwk"]["y"] = h["jwk"]["x"].clone());
    assert_eq!(check(&ec, &bad_point).err(), Some(DpopError::InvalidKey(JwkError::InvalidPoint)));
    let rsa = with_header(&ec, |h| h["jwk"] = json!({"kty": "RSA", "n": "AQAB", "e": "AQAB"}));
    assert_eq!(check(&ec, &rsa).err(), Some(DpopError::InvalidKey(JwkError::UnsupportedKty)));

    // ES256: an ASN.1 DER signature is not JOSE's r ‖ s.
    let input = format!("{}.{}", b64(ec.header().to_string()), b64(ec.claims().to_string()));
    let TestKey::Ec(sk) = &ec else { unreachable!() };
    let der: p256::ecdsa::DerSignature = p256::ecdsa::signature::Signer::sign(sk.as_ref(), input.as_bytes());
    let der_proof = format!("{input}.{}", b64(der.as_bytes()));
    assert_eq!(check(&ec, &der_proof).err(), Some(DpopError::BadSignature));

    // ES256 low-S is not required by JOSE: (r, n − s) verifies too, and since the replay key
    // is built from the jti, not the signature, the malleated twin is still a replay.
    let sig = ec.sign(input.as_bytes());
    let twin = format!("{input}.{}", b64(malleate(&sig)));
    let (a, b) = (must!(check(&ec, &format!("{input}.{}", b64(&sig)))), must!(check(&ec, &twin)));
    assert_eq!(a.jti_replay_key(), b.jti_replay_key());
}

#[test]
fn check_7_no_private_key_in_jwk() {
    let ec = TestKey::ec(0x11);
    let TestKey::Ec(sk) = &ec else { unreachable!() };
    let d = b64(sk.to_bytes());
    let with_d = with_header(&ec, |h| h["jwk"]["d"] = json!(d));
    assert_eq!(check(&ec, &with_d).err(), Some(DpopError::PrivateKey));
    assert_eq!(DpopError::PrivateKey.check(), Some(7));
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        let proof = with_header(&ec, |h| h["jwk"][member] = Value::Null);
        assert_eq!(check(&ec, &proof).err(), Some(DpopError::PrivateKey), "{member}");
    }
    let ed = TestKey::ed(0x22);
    let with_d = with_header(&ed, |h| h["jwk"]["d"] = json!(b64([0x22; 32])));
    assert_eq!(check(&ed, &with_d).err(), Some(DpopError::PrivateKey));
}

#[test]
fn check_8_htm_is_the_method() {
    let key = TestKey::ec(0x11);
    let proof = key.proof(); // GET
    assert_eq!(check_with(&key, &proof, |c| c.method = "POST").err(), Some(DpopError::HtmMismatch));
    let lower = with_claims(&key, |c| c["htm"] = json!("get"));
    assert_eq!(check(&key, &lower).err(), Some(DpopError::HtmMismatch), "methods are case-sensitive");
}

#[test]
fn check_9_htu_is_the_uri_without_query_and_fragment() {
    let key = TestKey::ed(0x22);
    // The claim's query and fragment are ignored (RFC 9449 §4.3 check 9): compared on the path.
    for htu in [
        "https://api.gatehouse.test/v1/orders?a=1",
        "https://api.gatehouse.test/v1/orders#top",
        "HTTPS://API.gatehouse.test:443/v1/%6Frders",
        "https://api.gatehouse.test/v1/x/../orders",
    ] {
        assert!(check(&key, &with_claims(&key, |c| c["htu"] = json!(htu))).is_ok(), "{htu}");
    }
    // …and the request's own query too.
    let plain = key.proof();
    assert!(check_with(&key, &plain, |c| c.htu = "https://api.gatehouse.test/v1/orders?symbol=BTC").is_ok());
    for htu in [
        "https://api.gatehouse.test/v1/orders/",
        "https://api.gatehouse.test/v1/withdrawals?a=1",
        "https://api.gatehouse.test/v1/orders%3Fa=1",
        "http://api.gatehouse.test/v1/orders",
        "https://api.gatehouse.test:8443/v1/orders",
        "https://evil.test/v1/orders",
        "/v1/orders",
        "https://user@api.gatehouse.test/v1/orders",
    ] {
        let proof = with_claims(&key, |c| c["htu"] = json!(htu));
        assert_eq!(check(&key, &proof).err(), Some(DpopError::HtuMismatch), "{htu}");
    }
    assert_eq!(check_with(&key, &plain, |c| c.htu = "not a uri").err(), Some(DpopError::HtuMismatch));
}

#[test]
fn check_10_server_nonce() {
    let key = TestKey::ec(0x11);
    let jkt = key.jkt();
    let current = ["nonce-2", "nonce-1"];
    let no_nonce = key.proof();
    let with = |n: &str| with_claims(&key, |c| c["nonce"] = json!(n));
    let run = |proof: &str, rule: NonceRule<'_>| {
        verify_proof(&[proof.as_bytes()], &ProofContext { nonce: rule, ..ctx(&jkt) }, &policy())
    };
    // Missing after a nonce was issued: refused, never a downgrade to "nonces not in use".
    let e = must!(run(&no_nonce, NonceRule::Required(&current)).err());
    assert_eq!(e, DpopError::NonceMissing);
    assert_eq!((e.oauth_error(Endpoint::Resource), e.status(Endpoint::Resource)), ("use_dpop_nonce", 401));
    assert_eq!((e.oauth_error(Endpoint::Token), e.status(Endpoint::Token)), ("use_dpop_nonce", 400));
    assert_eq!(run(&with("nonce-3"), NonceRule::Required(&current)).err(), Some(DpopError::NonceInvalid));
    assert_eq!(run(&with("nonce-"), NonceRule::Required(&current)).err(), Some(DpopError::NonceInvalid));
    assert!(run(&with("nonce-1"), NonceRule::Required(&current)).is_ok());
    assert!(run(&with("anything"), NonceRule::None).is_ok(), "not checked when not required");

    // Stateless nonces: the current one verifies, one from two buckets ago does not.
    let nonces = must!(DpopNonces::new(&SecretBytes::new(vec![9; 32]), DpopNonces::DEFAULT_BUCKET));
    let fresh = nonces.nonce_for(NOW);
    let stale = nonces.nonce_for(NOW.minus(Span::minutes(10)));
    assert!(run(&with(&fresh), NonceRule::Issued(&nonces)).is_ok());
    assert_eq!(run(&with(&stale), NonceRule::Issued(&nonces)).err(), Some(DpopError::NonceInvalid));
    assert_eq!(run(&no_nonce, NonceRule::Issued(&nonces)).err(), Some(DpopError::NonceMissing));
}

#[test]
fn check_11_iat_window() {
    let key = TestKey::ed(0x22);
    let at = |iat: Value| check(&key, &with_claims(&key, |c| c["iat"] = iat));
    assert_eq!(at(json!(NOW_S - 61)).err(), Some(DpopError::IatTooOld));
    assert!(at(json!(NOW_S - 60)).is_ok());
    assert!(at(json!(NOW_S + 5)).is_ok());
    assert_eq!(at(json!(NOW_S + 6)).err(), Some(DpopError::IatInFuture));
    assert!(at(json!(NOW_S as f64 + 0.5)).is_ok(), "fractional NumericDate");
    assert_eq!(at(json!(NOW_S as f64 + 5.001)).err(), Some(DpopError::IatInFuture));
    assert_eq!(at(json!(0)).err(), Some(DpopError::IatTooOld));
    assert_eq!(at(json!(-1)).err(), Some(DpopError::IatTooOld));
    assert_eq!(at(json!(i64::MAX)).err(), Some(DpopError::InvalidClaims));
    assert_eq!(at(json!(u64::MAX)).err(), Some(DpopError::InvalidClaims));
    assert_eq!(at(json!(1e300)).err(), Some(DpopError::InvalidClaims));
}

#[test]
fn check_12_ath_and_jkt_bind_the_token_and_key() {
    let key = TestKey::ec(0x11);
    let proof = key.proof();
    // ath over the exact token string: any other string fails.
    for token in ["gh_at_other", " gh_at_Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU", &TOKEN[..TOKEN.len() - 1]] {
        assert_eq!(check_with(&key, &proof, |c| c.access_token = Some(token)).err(), Some(DpopError::AthMismatch));
    }
    let wrong_ath = with_claims(&key, |c| c["ath"] = json!(ath_for("gh_at_other")));
    assert_eq!(check(&key, &wrong_ath).err(), Some(DpopError::AthMismatch));
    // The right hash, encoded non-canonically (an unused low bit set in the last character),
    // padded, or in the standard alphabet.
    let ath = ath_for(TOKEN);
    const ALPHABET: &str = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let last = must!(ALPHABET.find(must!(ath.chars().last())));
    let tweaked = format!("{}{}", &ath[..42], &ALPHABET[last ^ 1..=last ^ 1]);
    for variant in [tweaked, format!("{ath}="), ath.replace('-', "+").replace('_', "/")] {
        if variant != ath {
            let proof = with_claims(&key, |c| c["ath"] = json!(variant));
            assert_eq!(check(&key, &proof).err(), Some(DpopError::AthMismatch), "{variant}");
        }
    }
    // The token is bound to another key.
    let (jkt, other) = (key.jkt(), TestKey::ec(0x33).jkt());
    let bound_to_other = ProofContext { expected_jkt: Some(&other), ..ctx(&jkt) };
    let e = must!(verify_proof(&[proof.as_bytes()], &bound_to_other, &policy()).err());
    assert_eq!(e, DpopError::JktMismatch);
    assert_eq!((e.status(Endpoint::Resource), e.oauth_error(Endpoint::Resource)), (401, "invalid_token"));
    assert_eq!((e.status(Endpoint::Token), e.oauth_error(Endpoint::Token)), (400, "invalid_grant"));
    assert_eq!(check_with(&key, &proof, |c| c.expected_jkt = Some("")).err(), Some(DpopError::JktMismatch));
    // A token without cnf.jkt presented with a proof: fail closed.
    assert_eq!(check_with(&key, &proof, |c| c.expected_jkt = None).err(), Some(DpopError::JktMismatch));
}

#[test]
fn jti_is_bounded() {
    let key = TestKey::ec(0x11);
    assert!(check(&key, &with_claims(&key, |c| c["jti"] = json!("j".repeat(64)))).is_ok());
    let e = must!(check(&key, &with_claims(&key, |c| c["jti"] = json!("j".repeat(65)))).err());
    assert_eq!(e, DpopError::JtiTooLong);
    assert_eq!((e.status(Endpoint::Resource), e.oauth_error(Endpoint::Resource)), (400, "invalid_request"));
    assert_eq!(
        check(&key, &with_claims(&key, |c| c["jti"] = json!("j".repeat(4000)))).err(),
        Some(DpopError::JtiTooLong)
    );
    // A 10 KB jti cannot fit in a proof: the size bound refuses it first, also with a 400.
    let e = must!(check(&key, &with_claims(&key, |c| c["jti"] = json!("j".repeat(10 * 1024)))).err());
    assert_eq!((e.status(Endpoint::Resource), e), (400, DpopError::TooLarge));
}

/// The server flow: verify, then record the jti atomically. A failed proof is never recorded,
/// a replay of a verified one is caught, and keys are scoped per client key.
#[test]
fn replay_key_is_recorded_only_after_every_check() {
    let cache = ReplayCache::new(100);
    let serve = |key: &TestKey, proof: &str| -> Result<(), &'static str> {
        let ok = check(key, proof).map_err(|e| e.code())?;
        match cache.insert_if_absent(ok.jti_replay_key(), NOW, ok.jti_retention()) {
            InsertOutcome::Fresh => Ok(()),
            InsertOutcome::Replayed => Err("replay"),
            InsertOutcome::Unavailable => Err("unavailable"),
        }
    };
    let (key, other) = (TestKey::ec(0x11), TestKey::ed(0x22));
    let proof = key.proof();
    // A broken proof with the same jti first: refused and not recorded.
    assert_eq!(serve(&key, &with_claims(&key, |c| c["htm"] = json!("DELETE"))), Err("dpop_htm_mismatch"));
    assert!(cache.is_empty());
    assert_eq!(serve(&key, &proof), Ok(()));
    assert_eq!(serve(&key, &proof), Err("replay"));
    // Another client's proof with the same jti is its own key.
    assert_eq!(serve(&other, &other.proof()), Ok(()));
    assert_eq!(cache.len(), 2);
    // The same jti for another URI is another key too (the replay key is scoped to htu).
    let elsewhere = with_claims(&key, |c| c["htu"] = json!("https://api.gatehouse.test/v1/orders/1"));
    let ok = must!(check_with(&key, &elsewhere, |c| c.htu = "https://api.gatehouse.test/v1/orders/1"));
    assert!(cache.insert_if_absent(ok.jti_replay_key(), NOW, ok.jti_retention()).is_fresh());
}

#[test]
fn error_codes_checks_and_statuses_are_stable() {
    use DpopError as E;
    let all = [
        (E::Missing, Some(1), 401),
        (E::MultipleProofs, Some(1), 400),
        (E::TooLarge, Some(2), 400),
        (E::Malformed("x"), Some(2), 401),
        (E::MissingClaim("jti"), Some(3), 401),
        (E::InvalidClaims, Some(3), 401),
        (E::BadTyp, Some(4), 401),
        (E::AlgNotAllowed, Some(5), 401),
        (E::InvalidKey(JwkError::InvalidPoint), Some(6), 401),
        (E::BadSignature, Some(6), 401),
        (E::PrivateKey, Some(7), 401),
        (E::HtmMismatch, Some(8), 401),
        (E::HtuMismatch, Some(9), 401),
        (E::NonceMissing, Some(10), 401),
        (E::NonceInvalid, Some(10), 401),
        (E::IatTooOld, Some(11), 401),
        (E::IatInFuture, Some(11), 401),
        (E::AthMismatch, Some(12), 401),
        (E::JktMismatch, Some(12), 401),
        (E::JtiTooLong, None, 400),
    ];
    let mut codes = std::collections::HashSet::new();
    for (e, check, status) in &all {
        assert!(codes.insert(e.code()), "duplicate code {}", e.code());
        assert!(e.code().starts_with("dpop_") && e.to_string().starts_with(e.code()), "{e:?}");
        assert_eq!(e.check(), *check, "{e:?}");
        assert_eq!(e.status(Endpoint::Resource), *status, "{e:?}");
        assert_eq!(e.status(Endpoint::Token), 400, "{e:?}");
        let at_token = e.oauth_error(Endpoint::Token);
        assert!(["invalid_dpop_proof", "use_dpop_nonce", "invalid_grant"].contains(&at_token), "{e:?}");
    }
    // Every one of the twelve checks has at least one error.
    let covered: std::collections::BTreeSet<u8> = all.iter().filter_map(|(e, ..)| e.check()).collect();
    assert_eq!(covered, (1..=12).collect());
    assert_eq!(E::BadSignature.oauth_error(Endpoint::Resource), "invalid_dpop_proof");
}

#[test]
fn policy_defaults_and_validation() {
    let p = policy();
    assert_eq!(p.validate(), Ok(()));
    assert_eq!((p.max_age, p.future_skew, p.max_jti_len, p.max_proof_len), (Span::secs(60), Span::secs(5), 64, 8192));
    assert_eq!(p.jti_retention(), Span::secs(68));
    assert!(DpopPolicy { max_age: Span::ZERO, ..policy() }.validate().is_err());
    assert!(DpopPolicy { allowed_algs: vec![], ..policy() }.validate().is_err());
    assert!(DpopPolicy { max_jti_len: 10_000, ..policy() }.validate().is_err());
    assert!(DpopPolicy { max_proof_len: 1 << 20, ..policy() }.validate().is_err());
    let parsed: DpopPolicy = must!(serde_json::from_str(r#"{"allowed_algs":["EdDSA"]}"#));
    assert_eq!(parsed.allowed_algs, vec![JwsAlg::EdDsa]);
    assert!(serde_json::from_str::<DpopPolicy>(r#"{"allowed_algs":["none"]}"#).is_err());
    assert!(serde_json::from_str::<DpopPolicy>(r#"{"allowed_algs":["HS256"]}"#).is_err());
}

#[test]
fn key_cache_holds_one_entry_per_valid_key_and_stays_bounded() {
    let verifier = DpopVerifier::new(policy(), 3);
    let run = |key: &TestKey, proof: &str| {
        let jkt = key.jkt();
        verifier.verify(&[proof.as_bytes()], &ctx(&jkt)).map(|ok| ok.jkt().to_string())
    };
    let (ec, ed) = (TestKey::ec(0x11), TestKey::ed(0x22));
    for _ in 0..3 {
        assert_eq!(run(&ec, &ec.proof()), Ok(ec.jkt()));
        assert_eq!(run(&ed, &ed.proof()), Ok(ed.jkt()));
    }
    assert_eq!(verifier.key_cache().len(), 2);
    // Invalid keys are not cached; a bad signature with a valid key still caches the key.
    let bad_point = with_header(&ec, |h| h["jwk"]["y"] = h["jwk"]["x"].clone());
    assert_eq!(run(&ec, &bad_point), Err(DpopError::InvalidKey(JwkError::InvalidPoint)));
    assert_eq!(verifier.key_cache().len(), 2);
    let other = TestKey::ec(0x33);
    let forged = ec.jws(&other.header().to_string(), &other.claims().to_string());
    assert_eq!(run(&other, &forged), Err(DpopError::BadSignature));
    assert_eq!(verifier.key_cache().len(), 3);
    // Full: emptied, then refilled.
    let fourth = TestKey::ed(0x44);
    assert_eq!(run(&fourth, &fourth.proof()), Ok(fourth.jkt()));
    assert_eq!(verifier.key_cache().len(), 1);
    assert_eq!(run(&ec, &ec.proof()), Ok(ec.jkt()));
    // Capacity 0 caches nothing and still verifies.
    let uncached = DpopVerifier::new(policy(), 0);
    let jkt = ec.jkt();
    assert!(uncached.verify(&[ec.proof().as_bytes()], &ctx(&jkt)).is_ok());
    assert!(uncached.key_cache().is_empty());
    assert_eq!(uncached.policy(), &policy());
}
