//! A deterministic driver for instruction-count profiling of the signing path (the criterion
//! bench `benches/signing.rs` measures time; this measures work). It builds the bench's
//! requests and runs one case `N` times:
//!
//! ```sh
//! cargo build --release -p gatehouse-core --example signing_profile
//! valgrind --tool=callgrind --callgrind-out-file=cg.out \
//!     target/release/examples/signing_profile upbit parse+verify 10000
//! callgrind_annotate cg.out | head -40
//! ```
//!
//! Cases: `upbit`, `binance`, `rfc9421` (HMAC keys); modes: `parse+verify`, `parse`, `verify`.
//! Run once with `N = 0` and subtract, to remove the setup cost.

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gatehouse_core::clock::Timestamp;
use gatehouse_core::signing::{self, Dialect, RawRequest, SigningPolicy, VerifyKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256, Sha512};

const NOW_MS: i64 = 1_700_000_000_000;
const UPBIT_SECRET: &[u8] = b"test-upbit-secret-key-0001-abcdefghijklmnop";
const HMAC_SECRET: &[u8] = b"test-binance-secret-0001";
const BINANCE_PAYLOAD: &str = "timestamp=1700000000000&symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000&newClientOrderId=x-TEST0000000000000001&recvWindow=10000";

fn fail(what: &str) -> ! {
    eprintln!("signing_profile: {what}");
    std::process::exit(2)
}

fn hmac256(secret: &[u8], msg: &[u8]) -> Vec<u8> {
    let Ok(mut m) = <Hmac<Sha256> as KeyInit>::new_from_slice(secret) else { fail("hmac key") };
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

struct Req {
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
}

fn upbit_request() -> Req {
    let query = "market=KRW-BTC&state=wait&page=1&limit=100&order_by=desc";
    let payload = format!(
        r#"{{"access_key":"test-upbit-access-key-0001","nonce":"3f2c8a9e-1b4d-4c6e-9f00-112233445566","query_hash":"{}","query_hash_alg":"SHA512"}}"#,
        hex::encode(Sha512::digest(query))
    );
    let input =
        format!("{}.{}", URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#), URL_SAFE_NO_PAD.encode(payload));
    let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(hmac256(UPBIT_SECRET, input.as_bytes())));
    Req {
        method: "GET",
        target: format!("/v1/orders?{query}"),
        headers: vec![("authorization", format!("Bearer {token}").into_bytes())],
        body: Vec::new(),
    }
}

fn binance_request() -> Req {
    let signature = hex::encode(hmac256(HMAC_SECRET, BINANCE_PAYLOAD.as_bytes()));
    Req {
        method: "POST",
        target: "/api/v3/order".into(),
        headers: vec![
            ("x-mbx-apikey", b"test-binance-api-key-0001".to_vec()),
            ("content-type", b"application/x-www-form-urlencoded".to_vec()),
        ],
        body: format!("{BINANCE_PAYLOAD}&signature={signature}").into_bytes(),
    }
}

fn rfc9421_request() -> Req {
    let body = br#"{"symbol":"BTCUSDT","side":"BUY","type":"LIMIT","quantity":"0.001","price":"50000"}"#.to_vec();
    let digest = format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(&body)));
    let list = format!(
        r#"("@method" "@authority" "@path" "@query" "content-digest");created={};keyid="key-1";nonce="b3k2pq9x7m4n1v8c""#,
        NOW_MS / 1000
    );
    let base = format!(
        "\"@method\": POST\n\"@authority\": api.example.com\n\"@path\": /api/v1/orders\n\"@query\": ?symbol=BTCUSDT\n\"content-digest\": {digest}\n\"@signature-params\": {list}"
    );
    Req {
        method: "POST",
        target: "/api/v1/orders?symbol=BTCUSDT".into(),
        headers: vec![
            ("content-type", b"application/json".to_vec()),
            ("content-digest", digest.into_bytes()),
            ("signature-input", format!("sig1={list}").into_bytes()),
            ("signature", format!("sig1=:{}:", STANDARD.encode(hmac256(HMAC_SECRET, base.as_bytes()))).into_bytes()),
        ],
        body,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(case), Some(mode), Some(n)) = (args.get(1), args.get(2), args.get(3)) else {
        fail("usage: signing_profile upbit|binance|rfc9421 parse+verify|parse|verify N")
    };
    let Ok(n) = n.parse::<u64>() else { fail("N is not a number") };
    let (dialect, req, secret) = match case.as_str() {
        "upbit" => (Dialect::Upbit, upbit_request(), UPBIT_SECRET),
        "binance" => (Dialect::Binance, binance_request(), HMAC_SECRET),
        "rfc9421" => (Dialect::Rfc9421, rfc9421_request(), HMAC_SECRET),
        _ => fail("unknown case"),
    };
    let Ok(key) = VerifyKey::hmac_from_bytes(secret) else { fail("key") };
    let now = Timestamp::from_millis(NOW_MS);
    let policy = SigningPolicy::default();
    let headers: Vec<(&str, &[u8])> = req.headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
    let raw = RawRequest {
        method: req.method,
        target: &req.target,
        authority: "api.example.com",
        headers: &headers,
        body: &req.body,
    };
    let Ok(parsed) = signing::parse(dialect, &raw) else { fail("parse") };
    if signing::verify(&parsed, &key, now, &policy).is_err() {
        fail("verify");
    }
    let mut ok = 0u64;
    for _ in 0..n {
        let good = match mode.as_str() {
            "parse+verify" => {
                signing::parse(dialect, black_box(&raw)).and_then(|p| signing::verify(&p, &key, now, &policy)).is_ok()
            }
            "parse" => signing::parse(dialect, black_box(&raw)).is_ok(),
            "verify" => signing::verify(black_box(&parsed), &key, now, &policy).is_ok(),
            _ => fail("unknown mode"),
        };
        ok += u64::from(good);
    }
    println!("{case} {mode}: {ok}/{n} ok");
}
