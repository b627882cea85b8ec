//! Upbit: golden vectors from pyupbit/ccxt signing code, mutations, captures, edge cases.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use sha2::{Sha256, Sha512};

use super::*;
use crate::signing::testdata::{self, GOLDEN_NOW_MS, OwnedRequest, json, must, raw, str_of};

const SECRET: &str = "test-upbit-secret-key-0001-abcdefghijklmnop";
const ACCESS: &str = "test-upbit-access-key-0001";

fn key() -> VerifyKey {
    must!(VerifyKey::hmac_from_bytes(SECRET.as_bytes()))
}

fn now() -> Timestamp {
    Timestamp::from_millis(GOLDEN_NOW_MS)
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

/// Signs `header.payload` like PyJWT (compact JSON given as text).
fn jwt(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header), b64(payload));
    let tag = if header.contains("HS512") {
        let mut m = must!(<Hmac<Sha512> as KeyInit>::new_from_slice(SECRET.as_bytes()));
        m.update(input.as_bytes());
        m.finalize().into_bytes().to_vec()
    } else {
        let mut m = must!(<Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()));
        m.update(input.as_bytes());
        m.finalize().into_bytes().to_vec()
    };
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(tag))
}

const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

fn claims(extra: &str) -> String {
    format!(r#"{{"access_key":"{ACCESS}","nonce":"3f2c8a9e-1b4d-4c6e-9f00-112233445566"{extra}}}"#)
}

fn sha512_hex(s: &str) -> String {
    use sha2::Digest as _;
    hex::encode(Sha512::digest(s.as_bytes()))
}

fn bearer(token: &str) -> OwnedRequest {
    OwnedRequest::new("GET", "/v1/accounts").header("authorization", format!("Bearer {token}"))
}

fn golden() -> Vec<serde_json::Value> {
    let v = json(testdata::GOLDEN);
    must!(v["vectors"].as_array()).iter().filter(|v| str_of(v, "scheme") == "upbit").cloned().collect()
}

fn request_of(v: &serde_json::Value) -> OwnedRequest {
    let query = str_of(v, "query");
    let target = if query.is_empty() { str_of(v, "path").to_owned() } else { format!("{}?{query}", str_of(v, "path")) };
    let mut r = OwnedRequest::new(str_of(v, "method"), &target).header("authorization", str_of(v, "authorization"));
    if let Some(ct) = v["content_type"].as_str() {
        r = r.header("content-type", ct);
    }
    if let Some(body) = v["body"].as_str() {
        r = r.body(body);
    }
    r
}

fn run(owned: &OwnedRequest, policy: &UpbitPolicy) -> Result<Verified, UpbitError> {
    raw!(owned => req);
    verify(&parse(&req)?, &key(), now(), policy)
}

#[test]
fn golden_vectors_verify() {
    let vectors = golden();
    assert_eq!(vectors.len(), 9);
    for v in &vectors {
        let owned = request_of(v);
        let verified = must!(run(&owned, &UpbitPolicy::default()), "{}", str_of(v, "name"));
        assert_eq!(verified.key_id(), ACCESS);
        assert_eq!(verified.retention(), Span::days(7));
        let expected =
            ReplayKey::derive(Dialect::Upbit.as_str(), &[ACCESS.as_bytes(), b"3f2c8a9e-1b4d-4c6e-9f00-112233445566"]);
        assert_eq!(verified.replay_key(), &expected, "{}", str_of(v, "name"));
    }
}

/// Changes one byte inside the first parameter value of a query, form or JSON body.
fn mutate_params(text: &str) -> String {
    let mut bytes = text.as_bytes().to_vec();
    let start = text.find(['=', ':']).map_or(0, |i| i + 1);
    if let Some(b) = bytes.iter_mut().skip(start).find(|b| b.is_ascii_alphanumeric()) {
        *b = if *b == b'0' { b'1' } else { b'0' };
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Every golden vector fails when one parameter byte, the nonce, the signature or the `alg`
/// changes — and still verifies on another method and path, which Upbit does not bind.
#[test]
fn golden_vector_mutations_fail_with_the_right_error() {
    let policy = UpbitPolicy::default();
    for v in &golden() {
        let name = str_of(v, "name");
        let original = request_of(v);
        let token = must!(str_of(v, "authorization").strip_prefix("Bearer ")).to_owned();
        let segments: Vec<&str> = token.split('.').collect();

        // One query/body byte (or a parameter added to a parameter-less request).
        let mut m = original.clone();
        if !m.body.is_empty() {
            m.body = mutate_params(&String::from_utf8_lossy(&m.body)).into_bytes();
        } else if let Some((path, q)) = m.target.split_once('?') {
            m.target = format!("{path}?{}", mutate_params(q));
        } else {
            m.target.push_str("?market=KRW-BTC");
        }
        assert!(matches!(run(&m, &policy), Err(UpbitError::InvalidQueryPayload(_))), "{name}: param byte");

        // Another nonce under the same signature.
        let payload = String::from_utf8_lossy(&must!(URL_SAFE_NO_PAD.decode(segments[1]))).replace("3f2c", "3f2d");
        let forged = format!("{}.{}.{}", segments[0], b64(&payload), segments[2]);
        let mut m = original.clone();
        m.set_header("authorization", format!("Bearer {forged}"));
        assert_eq!(run(&m, &policy).err(), Some(UpbitError::JwtVerification("signature mismatch")), "{name}: nonce");

        // One signature character.
        let mut sig = segments[2].as_bytes().to_vec();
        sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
        let forged = format!("{}.{}.{}", segments[0], segments[1], String::from_utf8_lossy(&sig));
        m.set_header("authorization", format!("Bearer {forged}"));
        assert!(matches!(run(&m, &policy), Err(UpbitError::JwtVerification(_))), "{name}: signature");

        // Another alg under the same signature: HS512 (wrong tag length), HS384, none.
        for header in [r#"{"alg":"HS512","typ":"JWT"}"#, r#"{"alg":"HS384","typ":"JWT"}"#, r#"{"alg":"none"}"#] {
            let forged = format!("{}.{}.{}", b64(header), segments[1], segments[2]);
            m.set_header("authorization", format!("Bearer {forged}"));
            assert!(matches!(run(&m, &policy), Err(UpbitError::JwtVerification(_))), "{name}: {header}");
        }

        // Not bound by Upbit (§1.8): the same token on another method and path verifies.
        let mut m = original.clone();
        m.method = "DELETE".into();
        m.target = m.target.replacen("/v1/", "/v1/orders/open/", 1);
        assert!(run(&m, &policy).is_ok(), "{name}: method/path are not bound by the Upbit spec");
    }
}

/// exchange-auth.md §5.1: with PYU off, exactly the two pyupbit requests whose values need
/// encoding ([31] identifier `my id/1:+x`, [32] `start_time` in a form body) stop verifying.
#[test]
fn captures_need_pyu_exactly_where_documented() {
    let strict = UpbitPolicy { accept_pyupbit_form: false, ..UpbitPolicy::default() };
    let mut needs_pyu = Vec::new();
    for c in testdata::captures().iter().filter(|c| c.headers.iter().any(|(n, _)| n == "authorization")) {
        let owned = OwnedRequest::from(c);
        raw!(owned => req);
        let parsed = must!(parse(&req), "[{}]", c.index);
        let now = Timestamp::from_millis(c.ts_ms);
        assert!(verify(&parsed, &key(), now, &UpbitPolicy::default()).is_ok(), "[{}]", c.index);
        if let Err(e) = verify(&parsed, &key(), now, &strict) {
            assert_eq!(e, UpbitError::InvalidQueryPayload("query_hash mismatch"));
            needs_pyu.push(c.index);
        }
    }
    assert_eq!(needs_pyu, [31, 32]);
}

#[test]
fn hs512_is_accepted_and_bound_to_its_own_tag() {
    let token = jwt(r#"{"alg":"HS512","typ":"JWT"}"#, &claims(""));
    let verified = run(&bearer(&token), &UpbitPolicy::default());
    assert!(verified.is_ok());
    let raw_req = bearer(&token);
    raw!(raw_req => req);
    assert_eq!(must!(parse(&req)).alg(), JwtAlg::Hs512);
    // A key of another kind never verifies an HMAC JWT.
    let ed = must!(VerifyKey::ed25519_from_bytes(&must!(hex::decode(
        "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
    ))));
    assert!(matches!(
        verify(&must!(parse(&req)), &ed, now(), &UpbitPolicy::default()),
        Err(UpbitError::JwtVerification(_))
    ));
}

#[test]
fn malformed_tokens_are_refused_before_any_key_lookup() {
    use UpbitError::{JwtVerification as Jwt, NoAuthorizationToken};
    let good = jwt(HS256, &claims(""));
    let p = claims("");
    type Expect = fn(&UpbitError) -> bool;
    let cases: Vec<(OwnedRequest, Expect)> = vec![
        (OwnedRequest::new("GET", "/v1/accounts"), |e| *e == NoAuthorizationToken),
        (OwnedRequest::new("GET", "/").header("authorization", format!("Basic {good}")), |e| {
            *e == NoAuthorizationToken
        }),
        (OwnedRequest::new("GET", "/").header("authorization", "Bearer "), |e| *e == NoAuthorizationToken),
        (bearer(&good).header("authorization", format!("Bearer {good}")), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(r#"{"alg":"none","typ":"JWT"}"#, &p)), |e| matches!(e, Jwt(_))),
        (bearer(&format!("{}.{}.", b64(r#"{"alg":"none"}"#), b64(&p))), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(r#"{"alg":"RS256"}"#, &p)), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(r#"{"alg":"ES256"}"#, &p)), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(r#"{"alg":"HS384"}"#, &p)), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(r#"{"alg":"hs256"}"#, &p)), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(r#"{"typ":"JWT"}"#, &p)), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(r#"{"alg":"HS256","crit":["b64"]}"#, &p)), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(r#"{"alg":"HS256","typ":"at+jwt"}"#, &p)), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(r#"{"alg":"HS256","alg":"HS256"}"#, &p)), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(r#"["HS256"]"#, &p)), |e| matches!(e, Jwt(_))),
        (bearer(&jwt("not json", &p)), |e| matches!(e, Jwt(_))),
        (bearer(&jwt(HS256, r#"{"access_key":"a","nonce":"n","x":{"nested":1}}"#)), |e| matches!(e, Jwt(_))),
        (bearer(&format!("{good}.extra")), |e| matches!(e, Jwt(_))),
        (bearer(&good.replacen('.', "..", 1)), |e| matches!(e, Jwt(_))),
        (bearer(&format!("{good}=")), |e| matches!(e, Jwt(_))),
        (bearer(&format!("{} ", good)), |e| matches!(e, Jwt(_))),
        (bearer(&"a".repeat(MAX_JWT_LEN + 1)), |e| *e == Jwt("token too long")),
        (bearer(&jwt(HS256, &format!(r#"{{"access_key":"{ACCESS}","nonce":"{}"}}"#, "x".repeat(1 << 20)))), |e| {
            *e == Jwt("token too long")
        }),
    ];
    for (n, (owned, ok)) in cases.iter().enumerate() {
        raw!(owned => req);
        let err = parse(&req).err();
        assert!(err.as_ref().is_some_and(ok), "case {n}: {err:?}");
    }
}

#[test]
fn claims_are_checked_after_the_header() {
    let cases = [
        r#"{"nonce":"n"}"#.to_owned(),
        format!(r#"{{"access_key":"{ACCESS}"}}"#),
        format!(r#"{{"access_key":"{ACCESS}","nonce":""}}"#),
        format!(r#"{{"access_key":"{ACCESS}","nonce":1556000000000}}"#),
        format!(r#"{{"access_key":"{ACCESS}","nonce":"{}"}}"#, "n".repeat(MAX_NONCE_LEN + 1)),
        format!(r#"{{"access_key":"{ACCESS}","nonce":"a\nb"}}"#),
        r#"{"access_key":"has space","nonce":"n"}"#.to_owned(),
        claims(r#","query_hash":"abc""#),
        claims(&format!(r#","query_hash":"{}""#, "zz".repeat(64))),
        claims(&format!(r#","query_hash":"{}","query_hash_alg":"SHA256""#, sha512_hex("a=1"))),
        claims(r#","timestamp":"1700000000000""#),
        claims(r#","timestamp":1.7e12"#),
        claims(r#","exp":-1"#),
    ];
    for (n, payload) in cases.iter().enumerate() {
        let owned = bearer(&jwt(HS256, payload));
        raw!(owned => req);
        assert!(matches!(parse(&req), Err(UpbitError::InvalidQueryPayload(_))), "case {n}: {payload}");
    }
    // A nonce of exactly 64 bytes is fine, and upper-case query_hash hex is accepted.
    let owned = bearer(&jwt(HS256, &format!(r#"{{"access_key":"{ACCESS}","nonce":"{}"}}"#, "n".repeat(64))));
    assert!(run(&owned, &UpbitPolicy::default()).is_ok());
    let h = sha512_hex("market=KRW-BTC").to_uppercase();
    let mut owned = bearer(&jwt(HS256, &claims(&format!(r#","query_hash":"{h}","query_hash_alg":"SHA512""#))));
    owned.target = "/v1/orders?market=KRW-BTC".into();
    assert!(run(&owned, &UpbitPolicy::default()).is_ok());
}

fn with_params(target: &str, content_type: Option<&str>, body: &str, hashed: &str) -> OwnedRequest {
    let token = jwt(HS256, &claims(&format!(r#","query_hash":"{}","query_hash_alg":"SHA512""#, sha512_hex(hashed))));
    let mut r = bearer(&token).body(body);
    r.target = target.into();
    if let Some(ct) = content_type {
        r = r.header("content-type", ct);
    }
    r
}

#[test]
fn params_that_cannot_be_bound_are_refused_after_the_mac() {
    use UpbitError::InvalidQueryPayload as Iqp;
    let p = UpbitPolicy::default();
    let json_ct = Some("application/json; charset=utf-8");
    let cases = [
        (
            with_params("/v1/orders?a=1", Some("application/x-www-form-urlencoded"), "a=1", "a=1"),
            Iqp("parameters in query and body"),
        ),
        (with_params("/v1/orders", json_ct, r#"{"a":{"b":1}}"#, "a=1"), Iqp("nested JSON body")),
        (with_params("/v1/orders", json_ct, r#"{"a":null}"#, "a="), Iqp("null in JSON body")),
        (with_params("/v1/orders", json_ct, r#"{"a":1,"a":2}"#, "a=1&a=2"), Iqp("duplicate key in JSON body")),
        (with_params("/v1/orders", json_ct, r#"{"a":True}"#, "a=True"), Iqp("body is not a JSON object")),
        (with_params("/v1/orders", Some("text/plain"), "a=1", "a=1"), Iqp("body is neither form-encoded nor JSON")),
        (with_params("/v1/orders", None, "a=1", "a=1"), Iqp("body is neither form-encoded nor JSON")),
        (with_params("/v1/orders", json_ct, &"1".repeat(MAX_BODY_LEN + 1), "a=1"), Iqp("body too large")),
        (with_params(&format!("/v1/orders?a={}", "1".repeat(MAX_QUERY_LEN)), None, "", "a=1"), Iqp("query too long")),
        (with_params("/v1/accounts", None, "", "x"), Iqp("query_hash without parameters")),
        (with_params("/v1/orders?a=2", None, "", "a=1"), Iqp("query_hash mismatch")),
    ];
    for (n, (owned, expected)) in cases.iter().enumerate() {
        assert_eq!(run(owned, &p).err(), Some(*expected), "case {n}");
    }
    // The same requests with a bad MAC answer jwt_verification: nothing about the parameters
    // is revealed before authentication (§1.4 order).
    let (mut forged, _) = cases[1].clone();
    let auth = String::from_utf8_lossy(&forged.headers[0].1).replace(".", ".x").replacen(".x", ".", 1);
    forged.set_header("authorization", auth);
    assert!(matches!(run(&forged, &p), Err(UpbitError::JwtVerification(_))));
    // Empty JSON object and bare `?`: no parameters, no hash needed.
    assert!(run(&bearer(&jwt(HS256, &claims(""))).header("content-type", "application/json").body("{}"), &p).is_ok());
    let mut bare = bearer(&jwt(HS256, &claims("")));
    bare.target = "/v1/accounts?".into();
    assert!(run(&bare, &p).is_ok());
}

#[test]
fn json_arrays_numbers_and_bools_hash_like_the_docs() {
    let body = r#"{"market":"KRW-BTC","states[]":["wait","watch"],"limit":10,"price":100.0,"ok":true}"#;
    let doc = "market=KRW-BTC&states[]=wait&states[]=watch&limit=10&price=100.0&ok=true";
    let owned = with_params("/v1/orders", Some("application/json"), body, doc);
    assert!(run(&owned, &UpbitPolicy::default()).is_ok());
}

#[test]
fn time_claims_are_enforced_at_exact_instants() {
    let p = UpbitPolicy::default();
    let t = GOLDEN_NOW_MS;
    let at = |extra: String| run(&bearer(&jwt(HS256, &claims(&extra))), &p);
    assert!(at(format!(r#","timestamp":{}"#, t - 60_000)).is_ok());
    assert_eq!(at(format!(r#","timestamp":{}"#, t - 60_001)).err(), Some(UpbitError::JwtVerification("token too old")));
    assert!(at(format!(r#","timestamp":{}"#, t + 5_000)).is_ok());
    assert_eq!(
        at(format!(r#","timestamp":{}"#, t + 5_001)).err(),
        Some(UpbitError::JwtVerification("token issued in the future"))
    );
    assert!(at(format!(r#","iat":{}"#, t / 1000 - 60)).is_ok());
    assert!(at(format!(r#","iat":{}"#, t / 1000 - 61)).is_err());
    // exp: rejected from exp + 5 s leeway on; nbf: accepted from nbf − 5 s on.
    assert!(at(format!(r#","exp":{}"#, t / 1000 - 4)).is_ok());
    assert_eq!(at(format!(r#","exp":{}"#, t / 1000 - 5)).err(), Some(UpbitError::JwtVerification("token expired")));
    assert!(at(format!(r#","nbf":{}"#, t / 1000 + 5)).is_ok());
    assert!(at(format!(r#","nbf":{}"#, t / 1000 + 6)).is_err());

    let required = UpbitPolicy { require_timestamp: true, ..UpbitPolicy::default() };
    assert_eq!(
        run(&bearer(&jwt(HS256, &claims(""))), &required).err(),
        Some(UpbitError::JwtVerification("time claim required"))
    );
    assert!(run(&bearer(&jwt(HS256, &claims(&format!(r#","timestamp":{t}"#)))), &required).is_ok());
}

#[test]
fn replay_key_is_access_key_and_nonce_only() {
    let p = UpbitPolicy::default();
    let a = must!(run(&bearer(&jwt(HS256, &claims(""))), &p));
    let b = must!(run(&bearer(&jwt(r#"{"alg":"HS512","typ":"JWT"}"#, &claims(r#","timestamp":1700000000000"#))), &p));
    assert_eq!(a.replay_key(), b.replay_key(), "same (access_key, nonce) is the same request");
    let other = claims("").replace("3f2c", "0000");
    let c = must!(run(&bearer(&jwt(HS256, &other)), &p));
    assert_ne!(a.replay_key(), c.replay_key());
}

#[test]
fn unknown_keys_and_denials() {
    let owned = bearer(&jwt(HS256, &claims("")));
    raw!(owned => req);
    let parsed = must!(parse(&req));
    assert_eq!(reject_unknown_key(&parsed, &UpbitPolicy::default()), UpbitError::InvalidAccessKey);
    let hidden = UpbitPolicy { hide_unknown_keys: true, ..UpbitPolicy::default() };
    assert_eq!(reject_unknown_key(&parsed, &hidden).name(), "jwt_verification");
    assert_eq!(UpbitError::from(Denial::Replayed).name(), "nonce_used");
    assert_eq!(parsed.key_id(), ACCESS);
    assert_eq!(parsed.nonce(), "3f2c8a9e-1b4d-4c6e-9f00-112233445566");
}

proptest! {
    #[test]
    fn jwt_splitter_never_panics(token in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = split_jwt(&token);
    }

    #[test]
    fn jwt_splitter_never_panics_on_jwt_like_text(token in "[A-Za-z0-9_.=-]{0,120}") {
        if let Some(parts) = split_jwt(token.as_bytes()) {
            prop_assert!(token.as_bytes().starts_with(parts.signing_input));
        }
    }

    #[test]
    fn parse_never_panics(header in proptest::collection::vec(any::<u8>(), 0..300), body in proptest::collection::vec(any::<u8>(), 0..100)) {
        let owned = OwnedRequest::new("POST", "/v1/orders")
            .header("authorization", [b"Bearer ".as_slice(), &header].concat())
            .header("content-type", "application/json")
            .body(body);
        raw!(owned => req);
        if let Ok(parsed) = parse(&req) {
            let _ = verify(&parsed, &key(), now(), &UpbitPolicy::default());
        }
    }

    #[test]
    fn parse_never_panics_on_structured_garbage(payload in r#"\{("[a-z_]{1,10}":("[ -~]{0,8}"|[0-9.e-]{1,6}|\[[0-9,"a]{0,6}\]|true|null|\{\}),?){0,5}\}"#) {
        let owned = bearer(&jwt(HS256, &payload)).header("content-type", "application/json").body(payload.clone());
        raw!(owned => req);
        if let Ok(parsed) = parse(&req) {
            let _ = verify(&parsed, &key(), now(), &UpbitPolicy::default());
        }
    }
}

/// The verbatim header fast path decides exactly what decoding and parsing the header would.
#[test]
fn known_headers_agree_with_the_general_path() {
    for (segment, alg) in KNOWN_HEADERS {
        let decoded = URL_SAFE_NO_PAD.decode(segment).ok();
        assert_eq!(decoded.map(|d| parse_header(&d)), Some(Ok(alg)), "{}", String::from_utf8_lossy(segment));
    }
    // And a token that uses one still verifies end to end, with either alg.
    for header in [HS256, r#"{"alg":"HS512","typ":"JWT"}"#] {
        let owned = bearer(&jwt(header, &claims("")));
        raw!(owned => req);
        let parsed = must!(parse(&req));
        assert!(verify(&parsed, &key(), now(), &UpbitPolicy::default()).is_ok(), "{header}");
    }
}
