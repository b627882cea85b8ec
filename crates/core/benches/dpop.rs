//! In-process cost of verifying one DPoP proof at a resource server (all twelve RFC 9449
//! §4.3 checks: header parse, JWK parse and point validation, signature, claims, `htu`
//! normalisation, `ath`, thumbprint, replay key), next to one bare signature verification over
//! a message of the same length (the proof's signing input) with a ready key:
//! `p256` ECDSA `verify` and `ed25519_dalek` `verify_strict`.
//!
//! `verifier_cached_key` is the same verification through a [`DpopVerifier`] that has seen the
//! client's key before (the steady state: a client signs every proof with one key), so the
//! point validation and thumbprint are skipped. The `from_…+verify` baselines add the key
//! decoding any verifier of a key that arrives with the message must do once.
//!
//! Run: `cargo bench -p gatehouse-core --bench dpop -- --warm-up-time 1 --measurement-time 3`
//! (`GH_BENCH_RATIOS=1` also prints load-robust ratios). Target: within 1.2× of the bare
//! verification of the proof's algorithm.

use std::hint::black_box;
use std::time::Instant;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use criterion::{Criterion, criterion_group, criterion_main};
use ed25519_dalek::Signer as _;
use gatehouse_core::clock::Timestamp;
use gatehouse_core::pop::{self, DpopPolicy, DpopVerifier, NonceRule, ProofContext};
use p256::ecdsa::signature::Verifier as _;

const NOW_S: i64 = 1_700_000_000;
const HTU: &str = "https://api.gatehouse.test/v1/orders";
const TOKEN: &str = "gh_at_Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

fn ok<T, E: std::fmt::Debug>(r: Result<T, E>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(e) => {
            eprintln!("bench setup failed: {what}: {e:?}");
            std::process::exit(1)
        }
    }
}

fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The signing input of a resource-server proof with `jwk`.
fn signing_input(alg: &str, jwk: &str) -> String {
    let header = format!(r#"{{"typ":"dpop+jwt","alg":"{alg}","jwk":{jwk}}}"#);
    let claims = format!(
        r#"{{"jti":"4f9c2b7e-0d1a-4c3b-9e8f-7a6b5c4d3e2f","htm":"GET","htu":"{HTU}","iat":{NOW_S},"ath":"{}"}}"#,
        pop::ath_for(TOKEN)
    );
    format!("{}.{}", b64(header), b64(claims))
}

fn bench(c: &mut Criterion) {
    let policy = DpopPolicy::default();
    let now = Timestamp::from_secs(NOW_S);

    let ec = ok(p256::ecdsa::SigningKey::from_slice(&[0x11; 32]), "p256 key");
    let point = ec.verifying_key().to_sec1_point(false);
    let (x, y) = (ok(point.x().ok_or("x"), "x"), ok(point.y().ok_or("y"), "y"));
    let ec_input =
        signing_input("ES256", &format!(r#"{{"kty":"EC","crv":"P-256","x":"{}","y":"{}"}}"#, b64(x), b64(y)));
    let ec_sig: p256::ecdsa::Signature = ec.sign(ec_input.as_bytes());
    let ec_proof = format!("{ec_input}.{}", b64(ec_sig.to_bytes()));

    let ed = ed25519_dalek::SigningKey::from_bytes(&[0x22; 32]);
    let ed_input = signing_input(
        "EdDSA",
        &format!(r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#, b64(ed.verifying_key().as_bytes())),
    );
    let ed_sig = ed.sign(ed_input.as_bytes());
    let ed_proof = format!("{ed_input}.{}", b64(ed_sig.to_bytes()));

    // The thumbprints the access token is bound to, from a token-endpoint style verification.
    let probe =
        ProofContext { method: "GET", htu: HTU, now, access_token: None, expected_jkt: None, nonce: NonceRule::None };
    let jkt_of = |proof: &str| ok(pop::verify_proof(&[proof.as_bytes()], &probe, &policy), "probe").jkt().to_string();
    let (ec_jkt, ed_jkt) = (jkt_of(&ec_proof), jkt_of(&ed_proof));
    let ec_ctx = ProofContext { access_token: Some(TOKEN), expected_jkt: Some(&ec_jkt), ..probe };
    let ed_ctx = ProofContext { access_token: Some(TOKEN), expected_jkt: Some(&ed_jkt), ..probe };

    let verifier = DpopVerifier::new(policy.clone(), DpopVerifier::DEFAULT_KEY_CACHE);
    let mut g = c.benchmark_group("dpop");
    for (name, proof, ctx) in [("es256", &ec_proof, &ec_ctx), ("eddsa", &ed_proof, &ed_ctx)] {
        ok(pop::verify_proof(&[proof.as_bytes()], ctx, &policy), name);
        ok(verifier.verify(&[proof.as_bytes()], ctx), name);
        eprintln!("{name}: proof {} bytes, signing input {} bytes", proof.len(), proof.rfind('.').unwrap_or(0));
        g.bench_function(format!("{name}/verify_proof"), |b| {
            b.iter(|| pop::verify_proof(&[black_box(proof.as_bytes())], ctx, &policy).is_ok())
        });
        g.bench_function(format!("{name}/verifier_cached_key"), |b| {
            b.iter(|| verifier.verify(&[black_box(proof.as_bytes())], ctx).is_ok())
        });
    }

    // Baselines: one verification over a message as long as the proof's signing input, with a
    // decoded key and signature.
    let ec_msg = vec![b'a'; ec_input.len()];
    let ec_vk = *ec.verifying_key();
    let ec_msg_sig: p256::ecdsa::Signature = ec.sign(&ec_msg);
    g.bench_function("baseline/p256_ecdsa_verify", |b| {
        b.iter(|| ec_vk.verify(black_box(&ec_msg), &ec_msg_sig).is_ok())
    });
    let ed_msg = vec![b'a'; ed_input.len()];
    let ed_vk = ed.verifying_key();
    let ed_msg_sig = ed.sign(&ed_msg);
    g.bench_function("baseline/ed25519_verify_strict", |b| {
        b.iter(|| ed_vk.verify_strict(black_box(&ed_msg), &ed_msg_sig).is_ok())
    });
    // What any verifier of a key that arrives with the message pays: decoding the key too.
    let ec_sec1 = ec_vk.to_sec1_point(false);
    g.bench_function("baseline/p256_from_sec1+verify", |b| {
        b.iter(|| {
            p256::ecdsa::VerifyingKey::from_sec1_point(black_box(&ec_sec1))
                .is_ok_and(|k| k.verify(black_box(&ec_msg), &ec_msg_sig).is_ok())
        })
    });
    let ed_bytes = ed_vk.to_bytes();
    g.bench_function("baseline/ed25519_from_bytes+verify_strict", |b| {
        b.iter(|| {
            ed25519_dalek::VerifyingKey::from_bytes(black_box(&ed_bytes))
                .is_ok_and(|k| k.verify_strict(black_box(&ed_msg), &ed_msg_sig).is_ok())
        })
    });
    g.finish();

    // On a shared machine criterion's means move with the load. With GH_BENCH_RATIOS=1, also
    // print the ratios from the fastest of many interleaved batches, which preemption by other
    // processes can only slow down, never speed up.
    if std::env::var_os("GH_BENCH_RATIOS").is_some() {
        let full_ec = || pop::verify_proof(&[ec_proof.as_bytes()], &ec_ctx, &policy).is_ok();
        let full_ed = || pop::verify_proof(&[ed_proof.as_bytes()], &ed_ctx, &policy).is_ok();
        let bare_ec = || ec_vk.verify(black_box(&ec_msg), &ec_msg_sig).is_ok();
        let bare_ed = || ed_vk.verify_strict(black_box(&ed_msg), &ed_msg_sig).is_ok();
        let cached_ec = || verifier.verify(&[ec_proof.as_bytes()], &ec_ctx).is_ok();
        let cached_ed = || verifier.verify(&[ed_proof.as_bytes()], &ed_ctx).is_ok();
        let cases: [(&str, &dyn Fn() -> bool); 6] = [
            ("es256/verify_proof", &full_ec),
            ("es256/verifier_cached_key", &cached_ec),
            ("p256 verify", &bare_ec),
            ("eddsa/verify_proof", &full_ed),
            ("eddsa/verifier_cached_key", &cached_ed),
            ("ed25519 verify_strict", &bare_ed),
        ];
        let mut best = [f64::MAX; 6];
        for _ in 0..300 {
            for (i, (_, f)) in cases.iter().enumerate() {
                let t = Instant::now();
                for _ in 0..20 {
                    black_box(f());
                }
                best[i] = best[i].min(t.elapsed().as_secs_f64() * 1e6 / 20.0);
            }
        }
        for ((name, _), us) in cases.iter().zip(best) {
            eprintln!("min-of-batches {name:<24} {us:8.1} µs");
        }
        eprintln!(
            "ratio verify_proof: es256 {:.3}, eddsa {:.3}; verifier with cached key: es256 {:.3}, eddsa {:.3}",
            best[0] / best[2],
            best[3] / best[5],
            best[1] / best[2],
            best[4] / best[5]
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
