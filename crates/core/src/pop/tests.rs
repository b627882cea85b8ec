//! Shared fixtures for the proof-of-possession tests, the Wycheproof vectors (ECDSA P-256
//! P1363, Ed25519, JWK).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::*;
use crate::signing::testdata::{self, must, str_of};

macro_rules! testdata_file {
    ($rel:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/", $rel))
    };
}

pub(crate) const RFC9449: &[u8] = testdata_file!("rfc/rfc9449_dpop.json");
const WYCHEPROOF_P256_P1363: &[u8] = testdata_file!("wycheproof/testvectors_v1/ecdsa_secp256r1_sha256_p1363_test.json");
const WYCHEPROOF_JWK: &[u8] = testdata_file!("wycheproof/testvectors_v1/json_web_key_test.json");

pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub(crate) fn unhex(s: &str) -> Vec<u8> {
    must!(hex::decode(s), "hex {s}")
}

/// A deterministic client key (fixed private bytes; ES256 signatures are RFC 6979).
pub(crate) enum TestKey {
    Ec(Box<p256::ecdsa::SigningKey>),
    Ed(Box<ed25519_dalek::SigningKey>),
}

impl TestKey {
    pub(crate) fn ec(seed: u8) -> Self {
        Self::Ec(Box::new(must!(p256::ecdsa::SigningKey::from_slice(&[seed; 32]))))
    }

    pub(crate) fn ed(seed: u8) -> Self {
        Self::Ed(Box::new(ed25519_dalek::SigningKey::from_bytes(&[seed; 32])))
    }

    pub(crate) fn alg(&self) -> &'static str {
        match self {
            Self::Ec(_) => "ES256",
            Self::Ed(_) => "EdDSA",
        }
    }

    /// The public JWK, as a client would put it in the `jwk` header.
    pub(crate) fn jwk(&self) -> Value {
        match self {
            Self::Ec(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                let (x, y) = (must!(point.x()), must!(point.y()));
                json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)})
            }
            Self::Ed(k) => json!({"kty": "OKP", "crv": "Ed25519", "x": b64(k.verifying_key().as_bytes())}),
        }
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> Vec<u8> {
        match self {
            Self::Ec(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(k.as_ref(), msg);
                sig.to_bytes().to_vec()
            }
            Self::Ed(k) => ed25519_dalek::Signer::sign(k.as_ref(), msg).to_bytes().to_vec(),
        }
    }
}

#[test]
fn confirmation_claims_serialise_as_rfc_members() {
    let jkt = must!(Jkt::parse("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"));
    let cnf = Confirmation::dpop(jkt.clone());
    assert_eq!(must!(serde_json::to_string(&cnf)), r#"{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"}"#);
    assert!(cnf.requires_dpop() && cnf.is_sender_constrained());
    assert!(!Confirmation::default().is_sender_constrained());
    let read: Confirmation =
        must!(serde_json::from_str(r#"{"jkt":"0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I","kid":"x"}"#));
    assert_eq!(read.jkt, Some(jkt));
    assert!(serde_json::from_str::<Confirmation>(r#"{"jkt":"not-a-thumbprint"}"#).is_err());
}

/// Wycheproof ECDSA P-256/SHA-256 with IEEE P1363 (`r ‖ s`) signatures — the JOSE ES256
/// encoding — through the JWK parser (`publicKeyJwk`) and the ES256 verifier.
#[test]
fn wycheproof_ecdsa_p256_p1363_through_es256() {
    testdata::assert_wycheproof_pinned("ecdsa_secp256r1_sha256_p1363_test.json", WYCHEPROOF_P256_P1363);
    let v = testdata::json(WYCHEPROOF_P256_P1363);
    let (mut valid, mut invalid, mut jwks) = (0, 0, 0);
    for group in must!(v["testGroups"].as_array()) {
        // Every group has the uncompressed point; most also a JWK, which must be the same key.
        let sec1 = unhex(str_of(&group["publicKey"], "uncompressed"));
        let (x, y) = (must!(<[u8; 32]>::try_from(&sec1[1..33])), must!(<[u8; 32]>::try_from(&sec1[33..])));
        let key = must!(PublicJwk::from_p256_coordinates(&x, &y));
        if group["publicKeyJwk"].is_object() {
            let jwk =
                must!(PublicJwk::from_json(group["publicKeyJwk"].to_string().as_bytes()), "{}", group["publicKeyJwk"]);
            assert_eq!(jwk.thumbprint(), key.thumbprint());
            jwks += 1;
        }
        for t in must!(t_array(group)) {
            let tc = &t["tcId"];
            let ok = key.verify(JwsAlg::Es256, &unhex(str_of(t, "msg")), &unhex(str_of(t, "sig")));
            assert!(!key.verify(JwsAlg::EdDsa, &unhex(str_of(t, "msg")), &unhex(str_of(t, "sig"))));
            match str_of(t, "result") {
                "valid" => {
                    assert!(ok, "tcId {tc} ({}) {:?} rejected", str_of(t, "comment"), t["flags"]);
                    valid += 1;
                }
                "invalid" => {
                    assert!(!ok, "tcId {tc} ({}) {:?} accepted", str_of(t, "comment"), t["flags"]);
                    invalid += 1;
                }
                other => unreachable!("tcId {tc}: result {other:?}"),
            }
        }
    }
    assert_eq!((valid, invalid, jwks), (173, 89, 103));
}

fn t_array(group: &Value) -> Option<&Vec<Value>> {
    group["tests"].as_array()
}

/// Wycheproof Ed25519 through the JWK parser (`publicKeyJwk`, OKP) and strict EdDSA; the same
/// split as `signing::key`'s `verify_strict` run.
#[test]
fn wycheproof_ed25519_through_eddsa() {
    testdata::assert_wycheproof_pinned("ed25519_test.json", testdata::WYCHEPROOF_ED25519);
    let v = testdata::json(testdata::WYCHEPROOF_ED25519);
    let (mut valid, mut invalid) = (0, 0);
    for group in must!(v["testGroups"].as_array()) {
        let key = PublicJwk::from_json(group["publicKeyJwk"].to_string().as_bytes());
        for t in must!(t_array(group)) {
            let tc = &t["tcId"];
            let ok =
                key.as_ref().is_ok_and(|k| k.verify(JwsAlg::EdDsa, &unhex(str_of(t, "msg")), &unhex(str_of(t, "sig"))));
            match str_of(t, "result") {
                "valid" => {
                    assert!(ok, "tcId {tc} ({}) {:?} rejected", str_of(t, "comment"), t["flags"]);
                    valid += 1;
                }
                "invalid" => {
                    assert!(!ok, "tcId {tc} ({}) {:?} accepted", str_of(t, "comment"), t["flags"]);
                    invalid += 1;
                }
                other => eprintln!("wycheproof ed25519 tcId {tc}: result {other:?}, we answered {ok}"),
            }
        }
    }
    assert_eq!((valid, invalid), (88, 63));
}

/// Splits a compact JWS the way [`verify_proof`] does and verifies it with a trusted key.
fn verify_compact(token: &str, key: &PublicJwk) -> bool {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    let (Ok(header), Ok(sig)) = (URL_SAFE_NO_PAD.decode(h), URL_SAFE_NO_PAD.decode(s)) else {
        return false;
    };
    let Ok(header) = serde_json::from_slice::<Value>(&header) else { return false };
    let Some(alg) = header["alg"].as_str().and_then(JwsAlg::from_header) else { return false };
    !h.is_empty() && !p.is_empty() && key.verify(alg, format!("{h}.{p}").as_bytes(), &sig)
}

/// Wycheproof JWK: every key of every group through [`PublicJwk::from_json`] — private and
/// symmetric keys refused as private, RSA refused as unsupported, and the EC P-256 groups
/// (wrong `alg`, `use: enc`, point off the curve, P-384) refused or failing their JWS.
#[test]
fn wycheproof_json_web_key() {
    testdata::assert_wycheproof_pinned("json_web_key_test.json", WYCHEPROOF_JWK);
    let v = testdata::json(WYCHEPROOF_JWK);
    let (mut checked, mut private) = (0, 0);
    for group in must!(v["testGroups"].as_array()) {
        let keys = |set: &Value| -> Vec<Value> {
            match set.get("keys").and_then(Value::as_array) {
                Some(keys) => keys.clone(),
                None if set.is_object() => vec![set.clone()],
                None => Vec::new(),
            }
        };
        // Private keysets may also hold public keys (the mixed-keyset group): only keys with
        // private material are checked here.
        for k in keys(&group["private"]).into_iter().filter(|k| k.get("d").is_some() || k.get("k").is_some()) {
            let err = PublicJwk::from_json(k.to_string().as_bytes()).err();
            assert!(matches!(err, Some(JwkError::PrivateMember(_))), "private {k}: {err:?}");
            private += 1;
        }
        for k in keys(&group["public"]) {
            let parsed = PublicJwk::from_json(k.to_string().as_bytes());
            match (k["kty"].as_str(), k["crv"].as_str()) {
                (Some("RSA"), _) => assert_eq!(parsed.err(), Some(JwkError::UnsupportedKty)),
                (Some("EC"), _) => {
                    for t in must!(t_array(group)) {
                        let ok =
                            parsed.as_ref().is_ok_and(|key| t["jws"].as_str().is_some_and(|j| verify_compact(j, key)));
                        assert_eq!(ok, str_of(t, "result") == "valid", "tcId {} {k}", t["tcId"]);
                        checked += 1;
                    }
                }
                other => unreachable!("unexpected key type {other:?}"),
            }
        }
    }
    assert_eq!((checked, private), (5, 27));
}

#[test]
fn wycheproof_jwk_refusals_name_the_reason() {
    let v = testdata::json(WYCHEPROOF_JWK);
    let by_comment = |c: &str| -> Option<JwkError> {
        let g = must!(v["testGroups"].as_array()).iter().find(|g| g["comment"] == c)?;
        let k = &g["public"]["keys"][0];
        PublicJwk::from_json(k.to_string().as_bytes()).err()
    };
    assert_eq!(by_comment("wrong_algorithm"), Some(JwkError::AlgMismatch));
    assert_eq!(by_comment("invalid_algorithm"), Some(JwkError::AlgMismatch));
    assert_eq!(by_comment("invalid_use"), Some(JwkError::WrongUse));
    assert_eq!(by_comment("invalid_point"), Some(JwkError::InvalidPoint));
    assert_eq!(by_comment("wrong_curve"), Some(JwkError::UnsupportedCurve));
    assert_eq!(by_comment("wrong_kty"), Some(JwkError::UnsupportedKty));
}
