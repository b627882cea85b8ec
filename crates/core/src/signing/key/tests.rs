//! Third-party vectors through [`VerifyKey`]: RFC 4231, RFC 8032, Wycheproof HMAC-SHA256/512
//! and Ed25519, and the exchange keys of `golden_vectors.json`.

use super::*;
use crate::signing::testdata::{self, json, must, str_of};

fn unhex(s: &str) -> Vec<u8> {
    must!(hex::decode(s), "hex {s:?}")
}

#[test]
fn rfc4231_hmac_sha256() {
    let v = json(testdata::RFC4231);
    let vectors = must!(v["vectors"].as_array());
    assert_eq!(vectors.len(), 2);
    for t in vectors {
        let key = match t.get("key_hex") {
            Some(h) => unhex(h.as_str().unwrap_or_default()),
            None => str_of(t, "key_ascii").as_bytes().to_vec(),
        };
        let k = must!(VerifyKey::hmac_from_bytes(&key));
        let msg = str_of(t, "data_ascii").as_bytes();
        let tag = unhex(str_of(t, "hmac_sha256"));
        assert!(k.verify_signature(SignatureAlg::HmacSha256, msg, &tag), "case {}", t["case"]);
        let mut bad = tag.clone();
        bad[31] ^= 1;
        assert!(!k.verify_signature(SignatureAlg::HmacSha256, msg, &bad));
        assert!(!k.verify_signature(SignatureAlg::HmacSha256, msg, &tag[..16]), "truncated tag accepted");
        assert!(!k.verify_signature(SignatureAlg::HmacSha512, msg, &tag), "wrong hash accepted");
        assert!(!k.verify_signature(SignatureAlg::Ed25519, msg, &[tag.clone(), tag].concat()));
    }
}

/// Runs a Wycheproof MAC file. Groups whose `tagSize` is the full output are checked against
/// their expected result; truncated-tag groups are presented as full tags and must all be
/// rejected, because our API accepts only full-length tags (security-bar.md §4.3 tip 1).
fn wycheproof_mac(name: &str, bytes: &[u8], alg: SignatureAlg, full_bits: u64) -> (usize, usize) {
    testdata::assert_wycheproof_pinned(name, bytes);
    let v = json(bytes);
    let (mut full, mut truncated) = (0, 0);
    for group in must!(v["testGroups"].as_array()) {
        let tag_bits = group["tagSize"].as_u64().unwrap_or_default();
        for t in must!(group["tests"].as_array()) {
            let tc = &t["tcId"];
            let key = must!(VerifyKey::hmac_from_bytes(&unhex(str_of(t, "key"))), "tcId {tc}");
            let ok = key.verify_signature(alg, &unhex(str_of(t, "msg")), &unhex(str_of(t, "tag")));
            if tag_bits == full_bits {
                assert_eq!(ok, str_of(t, "result") == "valid", "{name} tcId {tc} ({})", str_of(t, "comment"));
                full += 1;
            } else {
                assert!(!ok, "{name} tcId {tc}: truncated {tag_bits}-bit tag accepted as a full tag");
                truncated += 1;
            }
        }
    }
    (full, truncated)
}

#[test]
fn wycheproof_hmac_sha256() {
    let (full, truncated) =
        wycheproof_mac("hmac_sha256_test.json", testdata::WYCHEPROOF_HMAC_SHA256, SignatureAlg::HmacSha256, 256);
    assert_eq!(full + truncated, 174);
    assert!(full >= 87 && truncated >= 87, "{full} full, {truncated} truncated");
}

#[test]
fn wycheproof_hmac_sha512() {
    let (full, truncated) =
        wycheproof_mac("hmac_sha512_test.json", testdata::WYCHEPROOF_HMAC_SHA512, SignatureAlg::HmacSha512, 512);
    assert_eq!(full + truncated, 174);
    assert!(full >= 87 && truncated >= 87, "{full} full, {truncated} truncated");
}

#[test]
fn rfc8032_ed25519() {
    let v = json(testdata::RFC8032);
    for t in must!(v["vectors"].as_array()) {
        let name = str_of(t, "name");
        let key = must!(VerifyKey::ed25519_from_bytes(&unhex(str_of(t, "public_key"))), "{name}");
        let msg = unhex(str_of(t, "message"));
        let sig = unhex(str_of(t, "signature"));
        assert!(key.verify_signature(SignatureAlg::Ed25519, &msg, &sig), "{name}");
        let mut bad = sig.clone();
        bad[0] ^= 1;
        assert!(!key.verify_signature(SignatureAlg::Ed25519, &msg, &bad), "{name}");
        assert!(!key.verify_signature(SignatureAlg::Ed25519, b"other", &sig), "{name}");
        assert!(!key.verify_signature(SignatureAlg::HmacSha256, &msg, &sig), "{name}: alg confusion");
        // The signing side agrees (the secret key is in the RFC).
        let sk: [u8; 32] = must!(unhex(str_of(t, "secret_key")).try_into());
        let signer = ed25519_dalek::SigningKey::from_bytes(&sk);
        use ed25519_dalek::Signer as _;
        assert_eq!(signer.sign(&msg).to_bytes().to_vec(), sig, "{name}");
    }
}

/// Wycheproof Ed25519 through the strict verifier: every "invalid" vector is rejected, every
/// "valid" one accepted (there are no "acceptable" ones in this file; if one appears, the
/// answer is logged).
#[test]
fn wycheproof_ed25519_strict() {
    testdata::assert_wycheproof_pinned("ed25519_test.json", testdata::WYCHEPROOF_ED25519);
    let v = json(testdata::WYCHEPROOF_ED25519);
    let (mut valid, mut invalid) = (0, 0);
    for group in must!(v["testGroups"].as_array()) {
        let pk = unhex(group["publicKey"]["pk"].as_str().unwrap_or_default());
        let key = VerifyKey::ed25519_from_bytes(&pk);
        for t in must!(group["tests"].as_array()) {
            let tc = &t["tcId"];
            let ok = key.as_ref().is_ok_and(|k| {
                k.verify_signature(SignatureAlg::Ed25519, &unhex(str_of(t, "msg")), &unhex(str_of(t, "sig")))
            });
            match str_of(t, "result") {
                "valid" => {
                    assert!(ok, "tcId {tc} ({}) {:?} rejected", str_of(t, "comment"), t["flags"]);
                    valid += 1;
                }
                "invalid" => {
                    assert!(!ok, "tcId {tc} ({}) {:?} accepted", str_of(t, "comment"), t["flags"]);
                    invalid += 1;
                }
                other => {
                    eprintln!("wycheproof ed25519 tcId {tc}: result {other:?}, we answered {ok}")
                }
            }
        }
    }
    assert_eq!((valid, invalid), (88, 63));
}

#[test]
fn exchange_public_keys_parse_from_pem() {
    let v = json(testdata::GOLDEN);
    let ed = must!(VerifyKey::ed25519_from_pem(str_of(&v["keys"], "binance_ed25519_public_pem")));
    assert_eq!(ed.kind(), KeyKind::Ed25519);
    let rsa = must!(VerifyKey::rsa_from_pem(str_of(&v["keys"], "binance_rsa_public_pem")));
    assert_eq!(rsa.kind(), KeyKind::Rsa);
    assert_eq!(format!("{rsa:?}"), "VerifyKey::Rsa(2048 bits)");
    assert_eq!(must!(VerifyKey::from_public_pem(str_of(&v["keys"], "binance_rsa_public_pem"))).kind(), KeyKind::Rsa);
    assert_eq!(
        must!(VerifyKey::from_public_pem(str_of(&v["keys"], "binance_ed25519_public_pem"))).kind(),
        KeyKind::Ed25519
    );
    assert!(VerifyKey::rsa_from_pem(str_of(&v["keys"], "binance_ed25519_public_pem")).is_err());
    assert!(VerifyKey::ed25519_from_pem(str_of(&v["keys"], "binance_rsa_public_pem")).is_err());
    assert!(VerifyKey::from_public_pem("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n").is_err());
}

#[test]
fn refuses_bad_key_material() {
    assert_eq!(VerifyKey::hmac_from_bytes(b"").err(), Some(KeyError::EmptySecret));
    assert_eq!(VerifyKey::ed25519_from_bytes(&[1; 31]).err(), Some(KeyError::InvalidEd25519));
    // The identity point (small order): signatures could be forged for it.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(VerifyKey::ed25519_from_bytes(&identity).err(), Some(KeyError::WeakEd25519));
    let secret = crate::secret::SecretBytes::new(b"canary-secret".to_vec());
    let k = must!(VerifyKey::hmac(&secret));
    assert_eq!(k.kind(), KeyKind::Hmac);
    assert!(!format!("{k:?}").contains("canary"));
    assert!(dummy_hmac().is_some() && dummy_ed25519().is_some());
}

/// ed25519-speccheck ("Taming the many EdDSAs", Chalkias et al. 2020) cases 0–2: small-order
/// public keys are refused at construction, and a small-order `R` under a mixed-order key —
/// which the plain cofactorless check accepts — is refused by the strict verifier. Wycheproof
/// has no such case, so this is what proves `verify_strict` is in use.
#[test]
fn strict_verification_refuses_small_order_components() {
    const SMALL_ORDER_KEY: &str = "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa";
    assert_eq!(VerifyKey::ed25519_from_bytes(&unhex(SMALL_ORDER_KEY)).err(), Some(KeyError::WeakEd25519));

    let msg = unhex("aebf3f2601a0c8c5d39cc7d8911642f740b78168218da8471772b35f9d35b9ab");
    let pk = unhex("f7badec5b8abeaf699583992219b7b223f1df3fbbea919844e3f7c554a43dd43");
    let sig = unhex(
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac03fa\
         8c4bd45aecaca5b24fb97bc10ac27ac8751a7dfe1baff8b953ec9f5833ca260e",
    );
    let plain = must!(ed25519_dalek::VerifyingKey::from_bytes(&must!(pk.clone().try_into())));
    let signature = must!(ed25519_dalek::Signature::from_slice(&sig));
    assert!(ed25519_dalek::Verifier::verify(&plain, &msg, &signature).is_ok(), "the vector exercises the difference");
    let key = must!(VerifyKey::ed25519_from_bytes(&pk));
    assert!(!key.verify_signature(SignatureAlg::Ed25519, &msg, &sig), "small-order R accepted");
}
