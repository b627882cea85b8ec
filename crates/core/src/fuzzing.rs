//! Fuzz harnesses (ADR 0010): one function per parser that an attacker reaches before
//! authentication, each feeding the raw bytes in and asserting the parser's invariants.
//!
//! The cargo-fuzz targets in `fuzz/fuzz_targets/` are one-line calls into these functions, so
//! what libFuzzer explores is exactly the code the server runs. The unit tests at the bottom
//! replay the committed seed corpus (`fuzz/corpus/<target>/`) through the same functions on the
//! stable toolchain, so every reproducer that ever crashed a target stays a regression test.
//!
//! Invariants asserted, beyond "never panics":
//! * **round trips** — `decode(encode(x)) == x` (base32, `quote_plus`/percent-decoding), a
//!   compact JWS re-encodes to the exact received bytes, a parsed `Signature-Input` member
//!   re-parses from its own serialization to the same value;
//! * **sign → verify** — a request the harness signs correctly with the dialect's own rules
//!   (Upbit `query_hash`, Binance payload, RFC 9421 signature base) is never refused for its
//!   signature: the canonicaliser on the verifying side agrees with the one on the signing side;
//! * **differentials** — the flat JSON scanner agrees with `serde_json` on every object both
//!   accept; the cookie and bearer parsers find what was put there;
//! * **bounds** — parsed key ids and nonces stay within the documented limits; the client IP
//!   comes from the peer unless the peer is trusted.
//!
//! Input layout: most harnesses need several fields; they split the input on `0xFF` (a byte that
//! never occurs in UTF-8), see [`fields`].
#![allow(clippy::panic, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::net::IpAddr;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256, Sha512};

use crate::apikey::{ClientIpSource, TrustedProxies};
use crate::clock::Timestamp;
use crate::signing::json_flat::{self, Scalar, Value};
use crate::signing::query::{doc_raw, pairs, pct_decode, pyu_json, pyu_raw, quote_plus_into};
use crate::signing::rfc9421::SignatureInput;
use crate::signing::sf::{self, Member};
use crate::signing::{
    BinanceError, BinancePolicy, MAX_KEY_ID_LEN, MAX_NONCE_LEN, RawRequest, Rfc9421Error, Rfc9421Policy, UpbitError,
    UpbitPolicy, VerifyKey, binance, rfc9421, upbit,
};

/// The HMAC secret every signing harness uses.
const SECRET: &[u8] = b"fuzzing-secret-0123456789abcdef";
/// The instant every verification happens at (2026-01-01T00:00:00Z).
const NOW: Timestamp = Timestamp::from_millis(1_767_225_600_000);

/// Splits `data` on `0xFF` into exactly `N` fields; missing fields are empty, the last field
/// keeps any further separators.
pub fn fields<const N: usize>(data: &[u8]) -> [&[u8]; N] {
    let mut out = [&[][..]; N];
    let mut rest = data;
    for (i, slot) in out.iter_mut().enumerate() {
        if i + 1 == N {
            *slot = rest;
            break;
        }
        match rest.iter().position(|&b| b == 0xFF) {
            Some(p) => {
                *slot = &rest[..p];
                rest = &rest[p + 1..];
            }
            None => {
                *slot = rest;
                rest = &[];
            }
        }
    }
    out
}

fn text(b: &[u8]) -> Option<&str> {
    std::str::from_utf8(b).ok()
}

fn key() -> VerifyKey {
    VerifyKey::hmac_from_bytes(SECRET).unwrap()
}

fn hmac256(parts: &[&[u8]]) -> Vec<u8> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(SECRET).unwrap();
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().to_vec()
}

/// Upbit: the compact-JWS splitter, the full request parser, and sign → verify with a
/// `query_hash` over a fuzzed query or form body.
///
/// Fields: `token`, `query`, `body`, `content-type`.
pub fn upbit_jwt(data: &[u8]) {
    let [token, query, body, ctype] = fields::<4>(data);

    // 1. A split JWS is the received bytes cut at its two dots: its (still encoded) segments
    //    join back to the token and the signing input is its prefix. (Decoding is checked
    //    strictly later, by the parser, against the base64 crate in codec's tests.)
    if let Some(parts) = upbit::split_jwt(token) {
        let again = [parts.header, parts.payload, parts.signature].join(&b"."[..]);
        assert_eq!(again, token, "JWS segments do not join back to the token");
        assert!(token.starts_with(parts.signing_input));
        assert_eq!(parts.signing_input.len(), parts.header.len() + 1 + parts.payload.len());
    }

    // 2. The fuzzed token in a fuzzed request: no panic; parsed ids stay bounded; a token
    //    the harness did not sign never verifies.
    let query_s = text(query).unwrap_or_default();
    let target = if query_s.is_empty() { "/v1/orders".to_owned() } else { format!("/v1/orders?{query_s}") };
    let mut authorization = b"Bearer ".to_vec();
    authorization.extend_from_slice(token);
    let headers = [("authorization", authorization.as_slice()), ("content-type", ctype)];
    let req = RawRequest { method: "POST", target: &target, authority: "gh.example", headers: &headers, body };
    if let Ok(parsed) = upbit::parse(&req) {
        assert!(parsed.key_id().len() <= MAX_KEY_ID_LEN && parsed.nonce().len() <= MAX_NONCE_LEN);
        let _ = upbit::reject_unknown_key(&parsed, &UpbitPolicy::default());
        let forged = upbit::verify(&parsed, &key(), NOW, &UpbitPolicy::default());
        assert!(forged.is_err(), "an unsigned fuzz token verified");
    }

    // 3. Sign → verify: parameters in the query (body empty) or in a form body.
    let (target, body, ctype, doc) = if body.is_empty() {
        (target, &[][..], &b""[..], doc_raw(query_s.as_bytes(), false))
    } else {
        ("/v1/orders".to_owned(), body, &b"application/x-www-form-urlencoded"[..], doc_raw(body, true))
    };
    let mut claims = serde_json::json!({
        "access_key": "fuzz-access-key",
        "nonce": "0f2c9f4e-7d1b-4a3e-9c55-2b8f0d6a1e77",
        "timestamp": NOW.as_millis(),
    });
    if doc.1 > 0 {
        claims["query_hash"] = hex::encode(Sha512::digest(&doc.0)).into();
        claims["query_hash_alg"] = "SHA512".into();
    }
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let jwt = format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(hmac256(&[signing_input.as_bytes()])));
    let authorization = format!("Bearer {jwt}");
    let headers = [("authorization", authorization.as_bytes()), ("content-type", ctype)];
    let req = RawRequest { method: "GET", target: &target, authority: "gh.example", headers: &headers, body };
    let parsed = upbit::parse(&req).expect("the harness's own token parses");
    match upbit::verify(&parsed, &key(), NOW, &UpbitPolicy::default()) {
        Ok(v) => assert_eq!(v.key_id(), "fuzz-access-key"),
        Err(UpbitError::InvalidQueryPayload("query too long" | "body too large")) => {}
        Err(e) => panic!("a correctly signed Upbit request was refused: {e}"),
    }
}

/// Binance: the request parser on fuzzed parts, and sign → verify over a fuzzed query.
///
/// Fields: `query`, `body`, `X-MBX-APIKEY`, `content-type`.
pub fn binance(data: &[u8]) {
    let [query, body, api_key, ctype] = fields::<4>(data);
    let query = text(query).unwrap_or_default();
    let target = format!("/api/v3/order?{query}");
    let headers = [("x-mbx-apikey", api_key), ("content-type", ctype)];
    let req = RawRequest { method: "POST", target: &target, authority: "gh.example", headers: &headers, body };
    if let Ok(parsed) = binance::parse(&req) {
        assert!(parsed.key_id().len() <= MAX_KEY_ID_LEN);
        let _ = binance::reject_unknown_key(&parsed);
        let _ = binance::verify(&parsed, &key(), NOW, &BinancePolicy::default());
    }

    // Sign → verify: the signature over `query` appended as the last parameter.
    let signature = hex::encode(hmac256(&[query.as_bytes()]));
    let target = format!("/api/v3/order?{query}&signature={signature}");
    let headers = [("x-mbx-apikey", &b"fuzz-api-key"[..])];
    let req = RawRequest { method: "GET", target: &target, authority: "gh.example", headers: &headers, body: &[] };
    if let Ok(parsed) = binance::parse(&req) {
        assert_eq!(parsed.payload(), [query.as_bytes(), &[][..]], "the signed payload is not what was signed");
        let result = binance::verify(&parsed, &key(), NOW, &BinancePolicy::default());
        assert_ne!(result.err(), Some(BinanceError::InvalidSignature), "a correctly signed request was refused");
    }
}

/// RFC 9421 / RFC 8941: the structured-field dictionary parser and inner-list serializer
/// (round trip), `Signature-Input` (round trip), the request parser, and sign → verify over
/// the signature base it builds.
///
/// Fields: `Signature-Input`, `Signature`, `Content-Digest`, `query`, `body`.
pub fn rfc9421(data: &[u8]) {
    let [sig_input, sig, digest, query, body] = fields::<5>(data);

    // 1. Structured fields: every inner list re-parses from its serialization to itself.
    if let Ok(dict) = sf::parse_dictionary(sig_input) {
        for (k, member) in &dict {
            if let Member::InnerList(list) = member {
                let again = format!("{k}={}", sf::serialize_inner_list(list));
                let reparsed = sf::parse_dictionary(again.as_bytes()).expect("a serialization re-parses");
                assert_eq!(reparsed, vec![(k.clone(), member.clone())], "serialize∘parse is not the identity");
            }
        }
    }

    // 2. `Signature-Input` members re-parse from `label=<signature-params>` to themselves.
    let inputs = SignatureInput::parse_field(sig_input);
    if let Ok(inputs) = &inputs {
        for input in inputs {
            let again = format!("{}={}", input.label(), input.signature_params());
            let reparsed = SignatureInput::parse_field(again.as_bytes()).expect("@signature-params re-parses");
            assert_eq!(reparsed.as_slice(), std::slice::from_ref(input));
        }
    }

    // 3. The fuzzed request: no panic.
    let query = text(query).unwrap_or_default();
    let target = if query.is_empty() { "/v1/withdraw".to_owned() } else { format!("/v1/withdraw?{query}") };
    let headers = [
        ("signature-input", sig_input),
        ("signature", sig),
        ("content-digest", digest),
        ("content-type", &b"application/json"[..]),
    ];
    let req = RawRequest { method: "POST", target: &target, authority: "gh.example", headers: &headers, body };
    if let Ok(parsed) = rfc9421::parse(&req) {
        let _ = rfc9421::reject_unknown_key(&parsed);
        assert!(rfc9421::verify(&parsed, &key(), NOW, &Rfc9421Policy::default()).is_err(), "unsigned request verified");
    }

    // 4. Sign → verify over our own base: never "signature mismatch".
    let Ok([input]) = inputs.as_deref() else { return };
    if input.components().iter().any(|c| c.starts_with("signature")) {
        return; // a signature cannot cover itself
    }
    let digest_value = format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)));
    let mut headers = vec![
        ("signature-input", sig_input),
        ("content-digest", digest_value.as_bytes()),
        ("content-type", &b"application/json"[..]),
    ];
    let unsigned = RawRequest { method: "POST", target: &target, authority: "gh.example", headers: &headers, body };
    let Ok(base) = rfc9421::signature_base(&unsigned, input) else { return };
    let signature = format!("{}=:{}:", input.label(), STANDARD.encode(hmac256(&[&base])));
    headers.push(("signature", signature.as_bytes()));
    let req = RawRequest { method: "POST", target: &target, authority: "gh.example", headers: &headers, body };
    if let Ok(parsed) = rfc9421::parse(&req) {
        assert_eq!(parsed.signature_base(), base.as_slice(), "parse built a different signature base");
        match rfc9421::verify(&parsed, &key(), NOW, &Rfc9421Policy::default()) {
            Err(Rfc9421Error::InvalidSignature("signature mismatch")) => {
                panic!("a correctly signed RFC 9421 request was refused")
            }
            Err(Rfc9421Error::DigestMismatch) => panic!("our own Content-Digest did not match"),
            _ => {}
        }
    }
}

/// `query_hash` canonicalisation: percent-decoding and `quote_plus` round trip, the DOC and
/// PYU forms, and the flat JSON scanner against `serde_json`.
///
/// Fields: `raw query or form text`, `JSON body`.
pub fn query_hash(data: &[u8]) {
    let [raw, json] = fields::<2>(data);

    let mut quoted = Vec::new();
    quote_plus_into(&mut quoted, raw);
    assert_eq!(pct_decode(&quoted, true).as_ref(), raw, "unquote(quote_plus(x)) != x");
    assert!(quoted.iter().all(|b| b.is_ascii_graphic()), "quote_plus left a byte unescaped");
    for plus in [false, true] {
        assert!(pct_decode(raw, plus).len() <= raw.len());
        let (doc, n) = doc_raw(raw, plus);
        assert_eq!(n, pairs(raw).count());
        assert!(doc.len() <= raw.len());
    }
    if !raw.windows(7).any(|w| w == b"%5B%5D=") {
        assert_eq!(pyu_raw(raw), raw);
    }

    let Ok(entries) = json_flat::parse_object(json) else { return };
    let _ = pyu_json(&entries);
    // Differential: whatever the scanner accepts, serde_json reads the same way.
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(json) else {
        // serde_json refuses numbers beyond f64; everything else it must accept.
        let number_out_of_range = serde_json::from_slice::<serde_json::Value>(json)
            .err()
            .is_some_and(|e| e.to_string().contains("number out of range"));
        assert!(number_out_of_range, "the flat scanner accepted what serde_json refuses");
        return;
    };
    assert_eq!(map.len(), entries.len(), "member count differs from serde_json");
    for e in &entries {
        let theirs = map.get(e.key.as_ref()).expect("key missing in serde_json's reading");
        let scalar_eq = |ours: &Scalar<'_>, theirs: &serde_json::Value| match (ours, theirs) {
            (Scalar::Str(s), serde_json::Value::String(t)) => s == t,
            (Scalar::Bool(b), serde_json::Value::Bool(t)) => b == t,
            (Scalar::Num(_), serde_json::Value::Number(_)) => true,
            _ => false,
        };
        let same = match (&e.value, theirs) {
            (Value::Scalar(s), t) => scalar_eq(s, t),
            (Value::Array(items), serde_json::Value::Array(ts)) => {
                items.len() == ts.len() && items.iter().zip(ts).all(|(s, t)| scalar_eq(s, t))
            }
            _ => false,
        };
        assert!(same, "value of {:?} differs from serde_json", e.key);
    }
}

/// Base32 (TOTP seeds): `decode(encode(b)) == b`, and an accepted string is the canonical
/// encoding of what it decodes to (case and padding aside).
pub fn base32(data: &[u8]) {
    use crate::mfa::base32::{decode, encode};
    let encoded = encode(data);
    assert_eq!(decode(&encoded).expect("own encoding decodes").as_slice(), data);
    let Some(s) = text(data) else { return };
    if let Ok(bytes) = decode(s) {
        assert_eq!(encode(&bytes), s.trim_end_matches('=').to_ascii_uppercase(), "non-canonical base32 accepted");
    }
}

/// `Cookie`: the value found lies inside one pair of one line, a planted cookie is found, and
/// a second cookie of the same name hides both.
///
/// Fields: `name`, `value`, `Cookie lines (newline-separated)`.
pub fn cookie(data: &[u8]) {
    use crate::headers::{cookie_value, is_cookie_name, is_cookie_value};
    let [name, value, lines] = fields::<3>(data);
    let (Some(name), Some(value), Some(lines)) = (text(name), text(value), text(lines)) else { return };
    let lines: Vec<&str> = lines.split('\n').collect();
    let found = cookie_value(lines.iter().copied(), name);
    if let Some(v) = found {
        assert!(!v.contains(';'), "a cookie value spans pairs");
        let inside = lines.iter().any(|l| {
            let range = l.as_bytes().as_ptr_range();
            range.contains(&v.as_ptr()) || (v.is_empty() && v.as_ptr() == range.end)
        });
        assert!(inside, "the value is not a slice of a header line");
    }
    if !is_cookie_name(name) || !is_cookie_value(value) || name == "gh_other" {
        return;
    }
    let planted = format!("gh_other=1; {name}={value}");
    assert_eq!(cookie_value([planted.as_str()], name), Some(value), "a planted cookie was not found");
    let mut all = lines.clone();
    all.push(&planted);
    let occurrences = lines
        .iter()
        .flat_map(|l| l.split(';'))
        .filter(|p| p.trim().split_once('=').is_some_and(|(k, _)| k == name))
        .count();
    assert_eq!(found.is_some(), occurrences == 1, "a cookie present once was not found, or a duplicate was believed");
    let expected = if occurrences == 0 { Some(value) } else { None };
    assert_eq!(cookie_value(all.iter().copied(), name), expected, "a duplicate cookie was believed");
}

/// `X-Forwarded-For` under the trusted-proxy rules, and `Authorization: Bearer`.
///
/// Fields: `peer address (4 or 16 bytes)`, `X-Forwarded-For lines (newline-separated)`,
/// `Authorization value`.
pub fn headers(data: &[u8]) {
    use crate::headers::bearer_credentials;
    let [peer, xff, authorization] = fields::<3>(data);
    let peer: IpAddr = match peer.len() {
        4 => IpAddr::from(<[u8; 4]>::try_from(peer).unwrap()),
        16 => IpAddr::from(<[u8; 16]>::try_from(peer).unwrap()),
        n if n % 2 == 0 => IpAddr::from([10, 0, 0, 1]),
        _ => IpAddr::from([203, 0, 113, 9]),
    };
    let trusted = TrustedProxies::parse(["10.0.0.0/8", "192.168.0.0/16", "::1", "fd00::/8"]).unwrap();
    if let Some(xff) = text(xff) {
        let client = trusted.client_ip(peer, xff.split('\n'));
        if !trusted.is_trusted(peer) {
            assert_eq!(client.ip, peer.to_canonical(), "an untrusted peer's header was believed");
            assert!(!client.malformed);
        }
        match client.source {
            ClientIpSource::Peer => assert_eq!(client.ip, peer.to_canonical()),
            ClientIpSource::ForwardedFor => {
                assert!(!client.malformed);
                assert!(trusted.is_trusted(peer));
            }
        }
    }
    if let Some(value) = text(authorization)
        && let Some(token) = bearer_credentials(value)
    {
        assert_eq!(token, token.trim());
        assert!(value.get(..7).is_some_and(|s| s.eq_ignore_ascii_case("bearer ")), "not the Bearer scheme");
        assert_eq!(bearer_credentials(&format!("Bearer {token}")), Some(token));
    }
}

/// DPoP (RFC 9449) and its helpers: the proof verifier with and without its key cache (a
/// differential: the cache must never change an answer), `htu` normalisation (idempotent), a
/// JWK's canonical JSON (re-parses to the same thumbprint), and the mTLS certificate header.
///
/// Fields: `DPoP proof`, `htu`, `access token`.
pub fn dpop(data: &[u8]) {
    use crate::pop::{DpopPolicy, DpopVerifier, NonceRule, ProofContext, PublicJwk, normalize_htu, verify_proof};
    let [proof, htu, token] = fields::<3>(data);
    let htu = text(htu).unwrap_or_default();
    if let Some(n) = normalize_htu(htu) {
        assert_eq!(normalize_htu(&n).as_deref(), Some(n.as_str()), "htu normalisation is not idempotent");
    }
    let ctx = ProofContext {
        method: "POST",
        htu: "https://gh.example/_gh/api/v1/sessions",
        now: NOW,
        access_token: text(token).filter(|t| !t.is_empty()),
        expected_jkt: None,
        nonce: NonceRule::None,
    };
    let plain = verify_proof(&[proof], &ctx, &DpopPolicy::default()).map(|v| v.jkt().as_str().to_owned());
    let cached = DpopVerifier::new(DpopPolicy::default(), 4);
    for _ in 0..2 {
        let again = cached.verify(&[proof], &ctx).map(|v| v.jkt().as_str().to_owned());
        assert_eq!(again, plain, "the key cache changed the answer");
    }
    if let Ok(jwk) = PublicJwk::from_json(proof) {
        let again = PublicJwk::from_json(jwk.canonical_json().as_bytes()).expect("canonical JWK re-parses");
        assert_eq!(again.thumbprint().as_str(), jwk.thumbprint().as_str());
    }
    let _ = crate::pop::cert_from_proxy_header(proof);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replays every committed seed of `target` through `harness`.
    fn replay(target: &str, harness: fn(&[u8])) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            harness(&std::fs::read(&path).unwrap());
            n += 1;
        }
        assert!(n > 0, "no seeds in {}", dir.display());
    }

    #[test]
    fn fields_split_on_ff() {
        assert_eq!(fields::<3>(b"a\xffb\xffc\xffd"), [&b"a"[..], b"b", b"c\xffd"]);
        assert_eq!(fields::<3>(b"a"), [&b"a"[..], b"", b""]);
    }

    #[test]
    fn seed_corpus_upbit_jwt() {
        replay("upbit_jwt", upbit_jwt);
    }

    /// Found by `scripts/fuzz` after the parser started returning encoded segments: a token
    /// whose segments are not valid base64url at all (`a.b.c`) with a form-style query.
    #[test]
    fn upbit_jwt_reproducer_undecodable_segments() {
        upbit_jwt(b"a.b.c\xffa=%5B%5D&b%5B%5D=1&c=%zz+d");
    }

    #[test]
    fn seed_corpus_binance() {
        replay("binance", binance);
    }

    #[test]
    fn seed_corpus_rfc9421() {
        replay("rfc9421", rfc9421);
    }

    #[test]
    fn seed_corpus_query_hash() {
        replay("query_hash", query_hash);
    }

    #[test]
    fn seed_corpus_base32() {
        replay("base32", base32);
    }

    #[test]
    fn seed_corpus_cookie() {
        replay("cookie", cookie);
    }

    #[test]
    fn seed_corpus_dpop() {
        replay("dpop", dpop);
    }

    /// The committed ES256 proof is valid at [`NOW`], so the fuzzer starts from the success
    /// path of the verifier (where the cache differential matters), not only from refusals.
    #[test]
    fn dpop_seed_is_a_valid_proof() {
        use crate::pop::{DpopPolicy, NonceRule, ProofContext, verify_proof};
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/dpop/es256");
        let data = std::fs::read(dir).unwrap();
        let [proof, _, _] = fields::<3>(&data);
        let ctx = ProofContext {
            method: "POST",
            htu: "https://gh.example/_gh/api/v1/sessions",
            now: NOW,
            access_token: None,
            expected_jkt: None,
            nonce: NonceRule::None,
        };
        verify_proof(&[proof], &ctx, &DpopPolicy::default()).unwrap();
    }

    #[test]
    fn seed_corpus_headers() {
        replay("headers", headers);
    }
}
