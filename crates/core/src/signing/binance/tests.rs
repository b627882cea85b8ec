//! Binance: golden vectors from ccxt/python-binance signing code, the docs' vectors, timing
//! edges at exact instants, parameter rules and mutations.

use ed25519_dalek::Signer as _;
use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use super::*;
use crate::signing::testdata::{self, GOLDEN_NOW_MS, OwnedRequest, json, must, raw, str_of};

const SECRET: &str = "test-binance-secret-0001";
const API_KEY: &str = "test-binance-api-key-0001";
/// RFC 8032 §7.1 TEST 1.
const ED_SECRET: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const ED_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

fn hmac_key() -> VerifyKey {
    must!(VerifyKey::hmac_from_bytes(SECRET.as_bytes()))
}

fn golden_keys() -> (VerifyKey, VerifyKey) {
    let g = json(testdata::GOLDEN);
    (
        must!(VerifyKey::ed25519_from_pem(str_of(&g["keys"], "binance_ed25519_public_pem"))),
        must!(VerifyKey::rsa_from_pem(str_of(&g["keys"], "binance_rsa_public_pem"))),
    )
}

fn now() -> Timestamp {
    Timestamp::from_millis(GOLDEN_NOW_MS)
}

fn hmac_hex(payload: &str) -> String {
    let mut m = must!(<Hmac<Sha256> as KeyInit>::new_from_slice(SECRET.as_bytes()));
    m.update(payload.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn ed_sign(payload: &str) -> String {
    let sk: [u8; 32] = must!(must!(hex::decode(ED_SECRET)).try_into());
    let sig = ed25519_dalek::SigningKey::from_bytes(&sk).sign(payload.as_bytes());
    let b64 = STANDARD.encode(sig.to_bytes());
    b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

/// A GET whose query `params` is signed with HMAC (hex) and carries the signature last.
fn signed_get(params: &str) -> OwnedRequest {
    OwnedRequest::new("GET", &format!("/api/v3/account?{params}&signature={}", hmac_hex(params)))
        .header("x-mbx-apikey", API_KEY)
}

fn run(owned: &OwnedRequest, key: &VerifyKey, now: Timestamp) -> Result<Verified, BinanceError> {
    raw!(owned => req);
    verify(&parse(&req)?, key, now, &BinancePolicy::default())
}

fn golden() -> Vec<serde_json::Value> {
    let v = json(testdata::GOLDEN);
    must!(v["vectors"].as_array()).iter().filter(|v| str_of(v, "scheme") == "binance").cloned().collect()
}

fn request_of(v: &serde_json::Value) -> OwnedRequest {
    let query = str_of(v, "query");
    let target = if query.is_empty() { str_of(v, "path").to_owned() } else { format!("{}?{query}", str_of(v, "path")) };
    let mut r =
        OwnedRequest::new(str_of(v, "method"), &target).header("x-mbx-apikey", str_of(&v["headers"], "X-MBX-APIKEY"));
    if let Some(ct) = v["content_type"].as_str() {
        r = r.header("content-type", ct);
    }
    if let Some(body) = v["body"].as_str() {
        r = r.body(body);
    }
    r
}

fn key_for(v: &serde_json::Value) -> VerifyKey {
    let (ed, rsa) = golden_keys();
    match str_of(v, "key_type") {
        "ed25519" => ed,
        "rsa" => rsa,
        _ => hmac_key(),
    }
}

#[test]
fn golden_vectors_verify() {
    let vectors = golden();
    assert_eq!(vectors.len(), 12);
    for v in &vectors {
        let verified = must!(run(&request_of(v), &key_for(v), now()), "{}", str_of(v, "name"));
        assert_eq!(verified.key_id(), API_KEY);
        // recvWindow=10000 → 10 s + 1 s future + 1 s skew + 2 s margin.
        assert_eq!(verified.retention(), Span::secs(14), "{}", str_of(v, "name"));
    }
}

#[test]
fn binance_docs_hmac_vectors() {
    let v = json(testdata::GOLDEN);
    let docs: Vec<_> = must!(v["vectors"].as_array()).iter().filter(|v| str_of(v, "scheme") == "binance-doc").collect();
    assert_eq!(docs.len(), 2);
    for d in docs {
        let key = must!(VerifyKey::hmac_from_bytes(str_of(d, "secret").as_bytes()));
        let payload = str_of(d, "payload");
        let owned = OwnedRequest::new("POST", "/api/v3/order")
            .header("x-mbx-apikey", "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("{payload}&signature={}", str_of(d, "signature").to_uppercase()));
        let at = Timestamp::from_millis(1_499_827_319_559);
        assert!(run(&owned, &key, at).is_ok(), "{payload} (upper-case hex)");
    }
}

/// Every golden vector fails when one payload byte, the timestamp, the signature or the key
/// type changes — and still verifies on another method and path, which Binance does not bind.
#[test]
fn golden_vector_mutations_fail_with_the_right_error() {
    for v in &golden() {
        let name = str_of(v, "name");
        let key = key_for(v);
        let original = request_of(v);
        let in_body = !original.body.is_empty();
        let edit = |f: &dyn Fn(&str) -> String| {
            let mut m = original.clone();
            if in_body {
                m.body = f(&String::from_utf8_lossy(&m.body)).into_bytes();
            } else {
                m.target = f(&m.target);
            }
            m
        };
        // One payload byte: the quantity or recvWindow value.
        let m = edit(&|s| s.replacen("recvWindow=10000", "recvWindow=10001", 1));
        assert_eq!(run(&m, &key, now()).err(), Some(BinanceError::InvalidSignature), "{name}: payload byte");
        // The timestamp ("nonce"): still in the window, but signed bytes changed.
        let m = edit(&|s| s.replacen("timestamp=1700000000000", "timestamp=1699999999999", 1));
        assert_eq!(run(&m, &key, now()).err(), Some(BinanceError::InvalidSignature), "{name}: timestamp");
        // One signature character (kept within the alphabet).
        let m = edit(&|s| {
            let (head, sig) = s.rsplit_once("signature=").unwrap_or_default();
            let flipped = if sig.starts_with('0') {
                sig.replacen('0', "1", 1)
            } else {
                format!("0{}", sig.get(1..).unwrap_or_default())
            };
            format!("{head}signature={flipped}")
        });
        assert_eq!(run(&m, &key, now()).err(), Some(BinanceError::InvalidSignature), "{name}: signature");
        // Another key type: the signature is never interpreted under the wrong algorithm.
        let (ed, rsa) = golden_keys();
        for other in [hmac_key(), ed, rsa].into_iter().filter(|k| k.kind() != key.kind()) {
            assert_eq!(run(&original, &other, now()).err(), Some(BinanceError::InvalidSignature), "{name}: {other:?}");
        }
        // Not bound by Binance (§2.6): another method and path verify.
        let mut m = original.clone();
        m.method = "DELETE".into();
        m.target = m.target.replacen("/api/v3/", "/api/v3/openOrders/", 1);
        assert!(run(&m, &key, now()).is_ok(), "{name}: method/path are not bound by the Binance spec");
    }
}

#[test]
fn timing_edges_at_exact_instants() {
    let t = GOLDEN_NOW_MS;
    let at = |ts: i64, window: &str| {
        let params =
            if window.is_empty() { format!("timestamp={ts}") } else { format!("timestamp={ts}&recvWindow={window}") };
        run(&signed_get(&params), &hmac_key(), now())
    };
    // recvWindow 5000 (explicit and default): now − 5000 accepted, now − 5001 rejected.
    for w in ["5000", ""] {
        assert!(at(t - 5000, w).is_ok(), "{w:?}");
        assert_eq!(at(t - 5001, w).err(), Some(BinanceError::TimestampOutsideWindow), "{w:?}");
    }
    // Future: now + 999 accepted, now + 1000 rejected.
    assert!(at(t + 999, "5000").is_ok());
    assert_eq!(at(t + 1000, "5000").err(), Some(BinanceError::TimestampAhead));
    assert_eq!(at(t + 1001, "5000").err(), Some(BinanceError::TimestampAhead));
    // recvWindow bounds: 60000 accepted, 60001 / 60000.001 → −1131; decimals to µs.
    assert!(at(t - 60_000, "60000").is_ok());
    assert_eq!(at(t, "60001").err(), Some(BinanceError::BadRecvWindow));
    assert_eq!(at(t, "60000.001").err(), Some(BinanceError::BadRecvWindow));
    assert_eq!(at(t, "99999999999999999999").err(), Some(BinanceError::BadRecvWindow));
    assert!(at(t - 5000, "5000.000").is_ok());
    assert!(at(t - 5000, "4999.999").is_err());
    assert_eq!(at(t, "1.2345").err(), Some(BinanceError::MandatoryParam("recvWindow")));
    assert_eq!(at(t, "-1").err(), Some(BinanceError::MandatoryParam("recvWindow")));
    // µs timestamps (> 10^14), compared at µs precision.
    let us = t * 1000;
    assert!(at(us - 5_000_000, "5000").is_ok());
    assert_eq!(at(us - 5_000_001, "5000").err(), Some(BinanceError::TimestampOutsideWindow));
    assert!(at(us - 4_999_999, "4999.999").is_ok());
    assert_eq!(at(us - 5_000_000, "4999.999").err(), Some(BinanceError::TimestampOutsideWindow));
    assert!(at(us + 999_999, "5000").is_ok());
    assert_eq!(at(us + 1_000_000, "5000").err(), Some(BinanceError::TimestampAhead));
    // A per-deployment cap below 60 s.
    let capped = BinancePolicy { max_recv_window: Span::secs(10), ..BinancePolicy::default() };
    let owned = signed_get(&format!("timestamp={t}&recvWindow=10001"));
    raw!(owned => req);
    assert_eq!(verify(&must!(parse(&req)), &hmac_key(), now(), &capped).err(), Some(BinanceError::BadRecvWindow));
}

#[test]
fn ed25519_with_microsecond_timestamps() {
    let key = must!(VerifyKey::ed25519_from_bytes(&must!(hex::decode(ED_PUBLIC))));
    let params = format!("symbol=BTCUSDT&timestamp={}&recvWindow=5000", GOLDEN_NOW_MS * 1000 - 1);
    let owned = OwnedRequest::new("GET", &format!("/api/v3/openOrders?{params}&signature={}", ed_sign(&params)))
        .header("x-mbx-apikey", API_KEY);
    let v = must!(run(&owned, &key, now()));
    assert_eq!(v.retention(), Span::secs(9));
    // Base64 is case-sensitive: swapping the case of one letter breaks it.
    let swapped: String =
        owned.target.chars().rev().collect::<String>().replacen(|c: char| c.is_ascii_lowercase(), "Q", 1);
    let mut m = owned.clone();
    m.target = swapped.chars().rev().collect();
    assert_eq!(run(&m, &key, now()).err(), Some(BinanceError::InvalidSignature));
    // Unpadded or double-encoded base64 is refused (strict: decoded exactly once).
    let mut m = owned.clone();
    m.target = owned.target.replace("%3D%3D", "");
    assert_eq!(run(&m, &key, now()).err(), Some(BinanceError::InvalidSignature));
    let mut m = owned.clone();
    m.target = owned.target.replace("%2B", "%252B").replace("%2F", "%252F").replace("%3D", "%253D");
    assert_eq!(run(&m, &key, now()).err(), Some(BinanceError::InvalidSignature));
}

#[test]
fn mixed_query_and_body_payload() {
    // The docs' example 3: query and body concatenated without a separator.
    let t = GOLDEN_NOW_MS;
    let (q, b) = ("symbol=LTCBTC&side=BUY", format!("quantity=1&timestamp={t}"));
    let owned = OwnedRequest::new("POST", &format!("/api/v3/order?{q}"))
        .header("x-mbx-apikey", API_KEY)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("{b}&signature={}", hmac_hex(&format!("{q}{b}"))));
    assert!(run(&owned, &hmac_key(), now()).is_ok());
    // The same bytes with an `&` separator are a different payload.
    let mut m = owned.clone();
    m.body = format!("{b}&signature={}", hmac_hex(&format!("{q}&{b}"))).into_bytes();
    assert_eq!(run(&m, &hmac_key(), now()).err(), Some(BinanceError::InvalidSignature));
}

#[test]
fn parameter_rules() {
    use BinanceError::*;
    let t = GOLDEN_NOW_MS;
    let form = "application/x-www-form-urlencoded";
    let post = |query: &str, body: &str| {
        OwnedRequest::new("POST", &format!("/api/v3/order{query}"))
            .header("x-mbx-apikey", API_KEY)
            .header("content-type", form)
            .body(body)
    };
    let sig = hmac_hex("x");
    let cases: Vec<(OwnedRequest, BinanceError)> = vec![
        (OwnedRequest::new("GET", "/api/v3/account?timestamp=1&signature=ab"), BadApiKeyFormat),
        (signed_get("timestamp=1").header("x-mbx-apikey", API_KEY), BadApiKeyFormat),
        (OwnedRequest::new("GET", "/").header("x-mbx-apikey", "has space"), BadApiKeyFormat),
        (OwnedRequest::new("GET", "/").header("x-mbx-apikey", ""), BadApiKeyFormat),
        (
            OwnedRequest::new("GET", &format!("/?timestamp={t}")).header("x-mbx-apikey", API_KEY),
            MandatoryParam("signature"),
        ),
        (
            OwnedRequest::new("GET", &format!("/?signature={sig}&timestamp={t}")).header("x-mbx-apikey", API_KEY),
            MandatoryParam("signature"),
        ),
        (post(&format!("?timestamp={t}&signature={sig}"), "quantity=1"), MandatoryParam("signature")),
        (signed_get("recvWindow=5000"), MandatoryParam("timestamp")),
        (signed_get("timestamp=abc"), MandatoryParam("timestamp")),
        (signed_get("timestamp=-1"), MandatoryParam("timestamp")),
        (signed_get("timestamp=1234567890123456789"), MandatoryParam("timestamp")),
        (signed_get(&format!("a=1&a=2&timestamp={t}")), DuplicateParameter),
        (signed_get(&format!("timestamp={t}&timest%61mp={t}")), DuplicateParameter),
        (signed_get(&format!("timestamp={t}&signature=00")), DuplicateParameter),
        (
            post(&format!("?symbol=BTCUSDT&timestamp={t}"), &format!("symbol=ETHUSDT&signature={sig}")),
            DuplicateParameter,
        ),
        (
            OwnedRequest::new("POST", "/api/v3/order")
                .header("x-mbx-apikey", API_KEY)
                .header("content-type", "application/json")
                .body(format!(r#"{{"timestamp":{t}}}&signature={sig}"#)),
            MalformedRequest,
        ),
        (OwnedRequest::new("POST", "/api/v3/order").header("x-mbx-apikey", API_KEY).body("a=1"), MalformedRequest),
        (post("", &format!("timestamp={t}&signature={}", "ab".repeat(600))), MandatoryParam("signature")),
        (post("", &format!("timestamp={t}&signature=")), MandatoryParam("signature")),
        (post("", &"a=1&".repeat(MAX_BODY_LEN / 3)), TooManyParameters),
        (
            post(
                "",
                &format!(
                    "{}timestamp={t}&signature={sig}",
                    (0..MAX_PARAMS).map(|i| format!("p{i}=1&")).collect::<String>()
                ),
            ),
            TooManyParameters,
        ),
        (signed_get(&format!("timestamp={t}&x={}", "1".repeat(MAX_QUERY_LEN))), TooManyParameters),
    ];
    for (n, (owned, expected)) in cases.iter().enumerate() {
        assert_eq!(
            run(owned, &hmac_key(), now()).err(),
            Some(*expected),
            "case {n}: {} {:?}",
            owned.target,
            owned.headers
        );
    }
}

#[test]
fn replay_key_is_the_decoded_signature() {
    let params = format!("timestamp={GOLDEN_NOW_MS}");
    let lower = signed_get(&params);
    let mut upper = lower.clone();
    let (head, sig) = must!(lower.target.rsplit_once("signature="));
    upper.target = format!("{head}signature={}", sig.to_uppercase());
    let a = must!(run(&lower, &hmac_key(), now()));
    let b = must!(run(&upper, &hmac_key(), now()));
    assert_eq!(a.replay_key(), b.replay_key(), "hex case must not make a new request");
    let c = must!(run(&signed_get(&format!("{params}&recvWindow=6000")), &hmac_key(), now()));
    assert_ne!(a.replay_key(), c.replay_key());
    assert_eq!(a.retention(), Span::secs(9));
}

#[test]
fn unknown_keys_spend_the_work_and_answer_2015() {
    let owned = signed_get(&format!("timestamp={GOLDEN_NOW_MS}"));
    raw!(owned => req);
    let parsed = must!(parse(&req));
    assert_eq!(reject_unknown_key(&parsed), BinanceError::RejectedApiKey);
    assert_eq!(parsed.key_id(), API_KEY);
    assert_eq!(BinanceError::from(Denial::IpNotAllowed), BinanceError::RejectedApiKey);
}

proptest! {
    #[test]
    fn parse_never_panics(query in "[a-zA-Z0-9=&%+.]{0,120}", body in proptest::collection::vec(any::<u8>(), 0..120)) {
        let owned = OwnedRequest::new("POST", &format!("/api/v3/order?{query}"))
            .header("x-mbx-apikey", API_KEY)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        raw!(owned => req);
        if let Ok(parsed) = parse(&req) {
            let _ = verify(&parsed, &hmac_key(), now(), &BinancePolicy::default());
            let _ = reject_unknown_key(&parsed);
        }
    }

    #[test]
    fn signed_requests_verify_and_any_byte_change_fails(
        params in proptest::collection::vec(("[a-zA-Z]{1,8}", "[a-zA-Z0-9%.:/_-]{0,10}"), 0..5),
        flip in any::<prop::sample::Index>(),
    ) {
        let mut seen = std::collections::HashSet::new();
        let mut q: Vec<String> = params
            .iter()
            .filter(|(k, _)| k != "signature" && k != "timestamp" && k != "recvWindow" && seen.insert(k.clone()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        q.push(format!("timestamp={GOLDEN_NOW_MS}"));
        let payload = q.join("&");
        let owned = signed_get(&payload);
        prop_assert!(run(&owned, &hmac_key(), now()).is_ok(), "{}", payload);
        let i = flip.index(payload.len());
        let mut bytes = payload.clone().into_bytes();
        bytes[i] = if bytes[i] == b'x' { b'y' } else { b'x' };
        let mut m = owned.clone();
        m.target = owned.target.replacen(&payload, &String::from_utf8_lossy(&bytes), 1);
        prop_assert!(run(&m, &hmac_key(), now()).is_err());
    }
}
