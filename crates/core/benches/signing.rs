//! In-process cost of verifying one signed request per dialect (parse + verify, and verify
//! alone), next to two baselines over a payload of the same size: one bare HMAC-SHA256 with a
//! pre-keyed state, and one bare `ed25519_dalek` `verify_strict` with a decompressed key.
//!
//! Run: `cargo bench -p gatehouse-core --bench signing -- --warm-up-time 1 --measurement-time 3`.
//! Targets: HMAC dialects ≤ 2.5 µs per request; Ed25519 dialects within 1.2× of one
//! signature verification.

use std::hint::black_box;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use gatehouse_core::clock::Timestamp;
use gatehouse_core::signing::{self, Dialect, RawRequest, SigningPolicy, VerifyKey};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest as _, Sha256, Sha512};

const NOW_MS: i64 = 1_700_000_000_000;
const UPBIT_SECRET: &[u8] = b"test-upbit-secret-key-0001-abcdefghijklmnop";
const HMAC_SECRET: &[u8] = b"test-binance-secret-0001";
const ED_SEED: [u8; 32] = [7; 32];
/// ccxt's POST /api/v3/order body without the signature (golden_vectors.json), 216 bytes.
const BINANCE_PAYLOAD: &str = "timestamp=1700000000000&symbol=BTCUSDT&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price=50000&newClientOrderId=x-TEST0000000000000001&recvWindow=10000";

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            eprintln!("bench setup failed: {what}: {e:?}");
            std::process::exit(1)
        }
    }
}

fn hmac256(secret: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut m = ok(<Hmac<Sha256> as KeyInit>::new_from_slice(secret), "hmac key");
    m.update(msg);
    m.finalize().into_bytes().to_vec()
}

fn pct(b64: &str) -> String {
    b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D")
}

/// An owned request plus its header list, to lend a `RawRequest`.
struct Req {
    method: &'static str,
    target: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Vec<u8>,
}

impl Req {
    fn with<R>(&self, f: impl FnOnce(&RawRequest<'_>) -> R) -> R {
        let headers: Vec<(&str, &[u8])> = self.headers.iter().map(|(n, v)| (*n, v.as_slice())).collect();
        f(&RawRequest {
            method: self.method,
            target: &self.target,
            authority: "api.example.com",
            headers: &headers,
            body: &self.body,
        })
    }
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

fn binance_request(signature: &str) -> Req {
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

fn rfc9421_request(sign: impl Fn(&[u8]) -> Vec<u8>) -> Req {
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
            ("signature", format!("sig1=:{}:", STANDARD.encode(sign(base.as_bytes()))).into_bytes()),
        ],
        body,
    }
}

fn bench(c: &mut Criterion) {
    let now = Timestamp::from_millis(NOW_MS);
    let policy = SigningPolicy::default();
    let signer = ed25519_dalek::SigningKey::from_bytes(&ED_SEED);
    let ed_key = ok(VerifyKey::ed25519_from_bytes(signer.verifying_key().as_bytes()), "ed25519 key");
    let upbit_key = ok(VerifyKey::hmac_from_bytes(UPBIT_SECRET), "upbit key");
    let hmac_key = ok(VerifyKey::hmac_from_bytes(HMAC_SECRET), "hmac key");

    let cases = [
        ("upbit_hs256_query_hash", Dialect::Upbit, upbit_request(), &upbit_key),
        (
            "binance_hmac",
            Dialect::Binance,
            binance_request(&hex::encode(hmac256(HMAC_SECRET, BINANCE_PAYLOAD.as_bytes()))),
            &hmac_key,
        ),
        (
            "binance_ed25519",
            Dialect::Binance,
            binance_request(&pct(&STANDARD.encode(signer.sign(BINANCE_PAYLOAD.as_bytes()).to_bytes()))),
            &ed_key,
        ),
        ("rfc9421_hmac", Dialect::Rfc9421, rfc9421_request(|m| hmac256(HMAC_SECRET, m)), &hmac_key),
        ("rfc9421_ed25519", Dialect::Rfc9421, rfc9421_request(|m| signer.sign(m).to_bytes().to_vec()), &ed_key),
    ];

    let mut g = c.benchmark_group("signing");
    for (name, dialect, req, key) in &cases {
        req.with(|raw| {
            let parsed = ok(signing::parse(*dialect, raw), name);
            ok(signing::verify(&parsed, key, now, &policy), name);
            g.bench_function(format!("{name}/parse+verify"), |b| {
                b.iter(|| {
                    let parsed = signing::parse(*dialect, black_box(raw));
                    parsed.and_then(|p| signing::verify(&p, key, now, &policy)).is_ok()
                })
            });
            g.bench_function(format!("{name}/verify"), |b| {
                b.iter(|| signing::verify(black_box(&parsed), key, now, &policy).is_ok())
            });
        });
    }

    // Baselines over the Binance payload (216 bytes).
    let msg = BINANCE_PAYLOAD.as_bytes();
    let keyed = ok(<Hmac<Sha256> as KeyInit>::new_from_slice(HMAC_SECRET), "hmac");
    let tag = hmac256(HMAC_SECRET, msg);
    g.bench_function("baseline/hmac_sha256_verify_cached_key", |b| {
        b.iter(|| {
            let mut m = keyed.clone();
            m.update(black_box(msg));
            m.verify_slice(&tag).is_ok()
        })
    });
    let vk = signer.verifying_key();
    let sig = signer.sign(msg);
    g.bench_function("baseline/ed25519_verify_strict", |b| b.iter(|| vk.verify_strict(black_box(msg), &sig).is_ok()));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
