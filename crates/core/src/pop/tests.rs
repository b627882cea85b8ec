//! Shared fixtures for the proof-of-possession tests, the RFC 9449 example, the Wycheproof
//! vectors (ECDSA P-256 P1363, Ed25519, JWS, JWK) and the never-panic property tests.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;
use crate::clock::{Span, Timestamp};
use crate::replay::ReplayKey;
use crate::signing::testdata::{self, must, str_of};

macro_rules! testdata_file {
    ($rel:literal) => {
        include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../testdata/", $rel))
    };
}

pub(crate) const RFC9449: &[u8] = testdata_file!("rfc/rfc9449_dpop.json");
const WYCHEPROOF_P256_P1363: &[u8] = testdata_file!("wycheproof/testvectors_v1/ecdsa_secp256r1_sha256_p1363_test.json");
const WYCHEPROOF_JWS: &[u8] = testdata_file!("wycheproof/testvectors_v1/json_web_signature_test.json");
const WYCHEPROOF_JWK: &[u8] = testdata_file!("wycheproof/testvectors_v1/json_web_key_test.json");

/// The instant of the generated proofs (2023-11-14T22:13:20Z).
pub(crate) const NOW_S: i64 = 1_700_000_000;
pub(crate) const NOW: Timestamp = Timestamp::from_secs(NOW_S);
pub(crate) const HTU: &str = "https://api.gatehouse.test/v1/orders";
pub(crate) const TOKEN: &str = "gh_at_Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU";

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

    pub(crate) fn jkt(&self) -> String {
        must!(PublicJwk::from_json(self.jwk().to_string().as_bytes())).thumbprint().as_str().to_owned()
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

    /// A compact JWS of `header` and `claims` (serialised as given).
    pub(crate) fn jws(&self, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        format!("{input}.{}", b64(self.sign(input.as_bytes())))
    }

    pub(crate) fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()})
    }

    /// A proof for `GET HTU` at `NOW` carrying `ath` of `TOKEN`.
    pub(crate) fn claims(&self) -> Value {
        json!({"jti": "e1j3V_bKic8-LAEB", "htm": "GET", "htu": HTU, "iat": NOW_S, "ath": ath_for(TOKEN)})
    }

    pub(crate) fn proof(&self) -> String {
        self.jws(&self.header().to_string(), &self.claims().to_string())
    }
}

/// The resource-server context matching [`TestKey::proof`].
pub(crate) fn ctx<'a>(jkt: &'a str) -> ProofContext<'a> {
    ProofContext {
        method: "GET",
        htu: HTU,
        now: NOW,
        access_token: Some(TOKEN),
        expected_jkt: Some(jkt),
        nonce: NonceRule::None,
    }
}

#[test]
fn rfc9449_example_proof_verifies_at_its_instant() {
    let v = testdata::json(RFC9449);
    let req = &v["resource_proof_request"];
    let iat = must!(req["iat"].as_i64());
    let (token, jkt, proof) =
        (str_of(&v, "access_token"), str_of(&v, "jkt_rfc7638_sha256"), str_of(&v, "resource_proof_jwt"));

    assert_eq!(ath_for(token), str_of(&v, "ath"), "ath of the example token");
    let key = must!(PublicJwk::from_json(v["jwk"].to_string().as_bytes()));
    assert_eq!(key.thumbprint().as_str(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    assert_eq!(key.thumbprint().as_str(), jkt);

    let policy = DpopPolicy::default();
    let ctx = ProofContext {
        method: str_of(req, "method"),
        htu: str_of(req, "htu"),
        now: Timestamp::from_secs(iat),
        access_token: Some(token),
        expected_jkt: Some(jkt),
        nonce: NonceRule::None,
    };
    let ok = must!(verify_proof(&[proof.as_bytes()], &ctx, &policy));
    assert_eq!(ok.jkt().as_str(), jkt);
    assert_eq!(ok.iat(), Timestamp::from_secs(iat));
    assert_eq!(ok.alg(), JwsAlg::Es256);
    assert_eq!(ok.jti_retention(), Span::secs(68));
    let expected_key = ReplayKey::derive(
        "dpop-jti",
        &[jkt.as_bytes(), b"https://resource.example.org/protectedresource", b"e1j3V_bKic8-LAEB"],
    );
    assert_eq!(*ok.jti_replay_key(), expected_key);
    assert_eq!(ok.confirmation(), Confirmation::dpop(must!(Jkt::parse(jkt))));

    // The window edges around the example's own instant.
    let at = |s: i64| {
        verify_proof(&[proof.as_bytes()], &ProofContext { now: Timestamp::from_secs(iat + s), ..ctx }, &policy)
    };
    assert!(at(60).is_ok());
    assert_eq!(at(61).err(), Some(DpopError::IatTooOld));
    assert!(at(-5).is_ok());
    assert_eq!(at(-6).err(), Some(DpopError::IatInFuture));

    // One changed byte anywhere in the signed part breaks the signature.
    let dot = must!(proof.rfind('.'));
    for i in [10, dot - 5] {
        let mut bytes = proof.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        assert!(verify_proof(&[&bytes], &ctx, &policy).is_err(), "byte {i}");
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

/// Wycheproof JWS: every EC P-256 group through the compact-JWS split, the `alg` gate and
/// ES256; every `AlgIsNone` and `WrongPrimitive` token through [`verify_proof`], which must
/// refuse it at check 5.
#[test]
fn wycheproof_json_web_signature() {
    testdata::assert_wycheproof_pinned("json_web_signature_test.json", WYCHEPROOF_JWS);
    let v = testdata::json(WYCHEPROOF_JWS);
    let (mut es256, mut alg_gate, mut skipped) = (0, 0, 0);
    for group in must!(v["testGroups"].as_array()) {
        let public = &group["public"];
        let ec_p256 = public["kty"] == "EC" && public["crv"] == "P-256";
        for t in must!(t_array(group)) {
            let tc = &t["tcId"];
            let flags: Vec<&str> = t["flags"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
            let Some(token) = t["jws"].as_str() else {
                skipped += 1; // JSON serialisation: not a compact JWS, never a DPoP header.
                continue;
            };
            if flags.iter().any(|f| matches!(*f, "AlgIsNone" | "WrongPrimitive")) {
                let jkt = TestKey::ec(1).jkt();
                let err = verify_proof(&[token.as_bytes()], &ctx(&jkt), &DpopPolicy::default()).err();
                assert_eq!(err, Some(DpopError::AlgNotAllowed), "tcId {tc} {flags:?}");
                alg_gate += 1;
            } else if ec_p256 {
                let ok = PublicJwk::from_json(public.to_string().as_bytes()).is_ok_and(|k| verify_compact(token, &k));
                assert_eq!(ok, str_of(t, "result") == "valid", "tcId {tc} ({})", str_of(t, "comment"));
                es256 += 1;
            } else {
                skipped += 1;
            }
        }
    }
    assert_eq!((es256, alg_gate), (41, 14), "{skipped} skipped (RSA, HMAC, P-521, JSON serialisation)");
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn parsers_never_panic_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        let policy = DpopPolicy::default();
        prop_assert!(verify_proof(&[&bytes], &ctx(jkt), &policy).is_err());
        let _ = PublicJwk::from_json(&bytes);
        let _ = cert_from_proxy_header(&bytes);
        let _ = mtls::check_der_framing(&bytes);
        let text = String::from_utf8_lossy(&bytes);
        let _ = normalize_htu(&text);
        let _ = Jkt::parse(&text);
        let _ = CertBinding::parse(&text);
    }

    #[test]
    fn jose_shaped_garbage_never_verifies(
        h in "[A-Za-z0-9_-]{0,120}", p in "[A-Za-z0-9_-]{0,120}", s in "[A-Za-z0-9_-]{0,90}",
    ) {
        let token = format!("{h}.{p}.{s}");
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        prop_assert!(verify_proof(&[token.as_bytes()], &ctx(jkt), &DpopPolicy::default()).is_err());
    }

    #[test]
    fn json_headers_with_arbitrary_members_never_panic(
        typ in prop_oneof![Just(json!("dpop+jwt")), Just(json!(1)), Just(Value::Null), any::<String>().prop_map(Value::from)],
        alg in prop_oneof![Just(json!("ES256")), Just(json!("EdDSA")), Just(json!("none")), Just(json!(["ES256"]))],
        x in any::<Vec<u8>>(), y in any::<Vec<u8>>(), extra in any::<String>(),
    ) {
        let header = json!({"typ": typ, "alg": alg, "jwk": {"kty": "EC", "crv": "P-256", "x": b64(&x), "y": b64(&y), extra: 1}});
        let token = format!("{}.{}.{}", b64(header.to_string()), b64("{}"), b64([0u8; 64]));
        let jkt = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
        prop_assert!(verify_proof(&[token.as_bytes()], &ctx(jkt), &DpopPolicy::default()).is_err());
    }

}

proptest! {
    // Each case runs ES256 verification, which is slow in unoptimised test builds.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_changed_byte_never_verifies(pos in any::<prop::sample::Index>(), to in any::<u8>()) {
        let key = TestKey::ec(7);
        let jkt = key.jkt();
        let mut proof = key.proof().into_bytes();
        let i = pos.index(proof.len());
        prop_assume!(proof[i] != to);
        proof[i] = to;
        prop_assert!(verify_proof(&[&proof], &ctx(&jkt), &DpopPolicy::default()).is_err());
    }
}
