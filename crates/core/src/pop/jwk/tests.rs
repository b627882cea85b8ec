use serde_json::{Value, json};

use super::*;
use crate::pop::tests::{RFC9449, TestKey, b64};
use crate::signing::testdata::{self, must};

fn parse(v: &Value) -> Result<PublicJwk, JwkError> {
    PublicJwk::from_json(v.to_string().as_bytes())
}

fn rfc9449_jwk() -> Value {
    testdata::json(RFC9449)["jwk"].clone()
}

/// RFC 8037 Appendix A.2 public key (also RFC 8032 §7.1 TEST 1).
fn rfc8037_jwk() -> Value {
    json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"})
}

#[test]
fn rfc_thumbprints() {
    // RFC 9449 §6.1 (example key of §4.2) and RFC 8037 Appendix A.3.
    assert_eq!(must!(parse(&rfc9449_jwk())).thumbprint().as_str(), "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I");
    assert_eq!(must!(parse(&rfc8037_jwk())).thumbprint().as_str(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    assert_eq!(
        must!(parse(&rfc8037_jwk())).canonical_json(),
        r#"{"crv":"Ed25519","kty":"OKP","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#
    );
}

#[test]
fn thumbprint_ignores_member_order_and_optional_members() {
    let mut v = rfc9449_jwk();
    v["kid"] = json!("key-1");
    v["use"] = json!("sig");
    v["key_ops"] = json!(["verify", "sign"]);
    v["alg"] = json!("ES256");
    v["x5t"] = json!("ignored");
    let reordered =
        format!(r#"{{"y":{},"alg":"ES256","x":{},"crv":"P-256","kty":"EC"}}"#, rfc9449_jwk()["y"], rfc9449_jwk()["x"]);
    let expected = must!(parse(&rfc9449_jwk())).thumbprint();
    assert_eq!(must!(parse(&v)).thumbprint(), expected);
    assert_eq!(must!(PublicJwk::from_json(reordered.as_bytes())).thumbprint(), expected);
    // Member values are compared after decoding; no escape tricks change the key.
    let escaped = rfc9449_jwk().to_string().replace(r#""kty":"EC""#, r#""kty":"\u0045C""#);
    assert_eq!(must!(PublicJwk::from_json(escaped.as_bytes())).thumbprint(), expected);
}

#[test]
fn generated_keys_round_trip() {
    for key in [TestKey::ec(1), TestKey::ec(2), TestKey::ed(1), TestKey::ed(2)] {
        let jwk = must!(parse(&key.jwk()));
        assert_eq!(jwk.alg().as_str(), key.alg());
        let sig = key.sign(b"message");
        assert!(jwk.verify(jwk.alg(), b"message", &sig));
        assert!(!jwk.verify(jwk.alg(), b"messagf", &sig));
        let other = if jwk.alg() == JwsAlg::Es256 { JwsAlg::EdDsa } else { JwsAlg::Es256 };
        assert!(!jwk.verify(other, b"message", &sig), "a key verifies only its own algorithm");
    }
}

#[test]
fn malformed_and_unsupported_keys_are_refused() {
    let ec = rfc9449_jwk();
    let set = |k: &str, v: Value| {
        let mut j = ec.clone();
        j[k] = v;
        j
    };
    let drop = |k: &str| {
        let mut j = ec.clone();
        j.as_object_mut().map(|o| o.remove(k));
        j
    };
    let x = must!(ec["x"].as_str()).to_owned();
    let raw_x = must!(URL_SAFE_NO_PAD.decode(&x));
    let cases = [
        (set("kty", json!("RSA")), JwkError::UnsupportedKty),
        (set("kty", json!("oct")), JwkError::UnsupportedKty),
        (set("kty", json!("ec")), JwkError::UnsupportedKty),
        (drop("kty"), JwkError::UnsupportedKty),
        (set("crv", json!("P-384")), JwkError::UnsupportedCurve),
        (set("crv", json!("secp256k1")), JwkError::UnsupportedCurve),
        (drop("crv"), JwkError::UnsupportedCurve),
        (drop("y"), JwkError::MissingMember("y")),
        (drop("x"), JwkError::MissingMember("x")),
        (set("x", json!(format!("{x}="))), JwkError::BadCoordinate("x")),
        (set("x", json!(&x[1..])), JwkError::BadCoordinate("x")),
        (set("x", json!(format!("{x}AA"))), JwkError::BadCoordinate("x")),
        (set("x", json!(b64(&raw_x[1..]))), JwkError::BadCoordinate("x")),
        (set("x", json!(b64([&[0u8][..], &raw_x].concat()))), JwkError::BadCoordinate("x")),
        (set("x", json!(x.replace('-', "+").replace('_', "/"))), JwkError::BadCoordinate("x")),
        (set("x", json!(1)), JwkError::Syntax),
        (set("y", ec["x"].clone()), JwkError::InvalidPoint),
        (set("x", json!(b64([0u8; 32]))), JwkError::InvalidPoint),
        (set("x", json!(b64([0xffu8; 32]))), JwkError::InvalidPoint),
        (set("use", json!("enc")), JwkError::WrongUse),
        (set("key_ops", json!(["sign"])), JwkError::WrongUse),
        (set("alg", json!("ES384")), JwkError::AlgMismatch),
        (set("alg", json!("EdDSA")), JwkError::AlgMismatch),
        (set("alg", json!("none")), JwkError::AlgMismatch),
        (json!([1, 2]), JwkError::Syntax),
        (json!("EC"), JwkError::Syntax),
    ];
    for (jwk, want) in cases {
        assert_eq!(parse(&jwk).err(), Some(want), "{jwk}");
    }
    let dup = format!(r#"{{"kty":"EC","crv":"P-256","x":{},"x":{},"y":{}}}"#, ec["x"], ec["x"], ec["y"]);
    assert_eq!(PublicJwk::from_json(dup.as_bytes()).err(), Some(JwkError::Syntax));
    assert_eq!(PublicJwk::from_json(b"{").err(), Some(JwkError::Syntax));
    assert_eq!(PublicJwk::from_json(b"").err(), Some(JwkError::Syntax));
}

#[test]
fn weak_and_non_canonical_ed25519_keys_are_refused() {
    let okp = |x: [u8; 32]| json!({"kty": "OKP", "crv": "Ed25519", "x": b64(x)});
    // The identity (y = 1) and the point of order 2 (y = −1): small order.
    let mut identity = [0u8; 32];
    identity[0] = 1;
    assert_eq!(parse(&okp(identity)).err(), Some(JwkError::WeakKey));
    let mut minus_one = [0xffu8; 32];
    minus_one[0] = 0xec;
    minus_one[31] = 0x7f;
    assert_eq!(parse(&okp(minus_one)).err(), Some(JwkError::WeakKey));
    // y = p + 1 ≡ 1: a non-canonical encoding.
    let mut p_plus_one = [0xffu8; 32];
    p_plus_one[0] = 0xee;
    p_plus_one[31] = 0x7f;
    assert_eq!(parse(&okp(p_plus_one)).err(), Some(JwkError::InvalidPoint));
    let mut with_y = rfc8037_jwk();
    with_y["y"] = with_y["x"].clone();
    assert_eq!(parse(&with_y).err(), Some(JwkError::Syntax));
    let mut x448 = rfc8037_jwk();
    x448["crv"] = json!("Ed448");
    assert_eq!(parse(&x448).err(), Some(JwkError::UnsupportedCurve));
}

#[test]
fn private_members_are_refused_even_when_null() {
    for member in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        for value in [json!("AAAA"), Value::Null, json!(0)] {
            let mut j = rfc9449_jwk();
            j[member] = value;
            assert_eq!(parse(&j).err(), Some(JwkError::PrivateMember(member)), "{member}");
        }
    }
    assert_eq!(JwkError::PrivateMember("d").code(), "jwk_private_member");
}

#[test]
fn jkt_newtype() {
    let t = "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I";
    let jkt = must!(Jkt::parse(t));
    assert!(jkt.ct_eq_str(t) && !jkt.ct_eq_str(&t[1..]) && !jkt.ct_eq_str(""));
    assert_eq!(jkt.to_string(), t);
    for bad in ["", &t[1..], &format!("{t}A"), &format!("{t}="), &t.replace('-', "+")] {
        assert!(Jkt::parse(bad).is_none(), "{bad}");
    }
    // The last character carries unused bits; a non-zero one is not canonical.
    assert!(Jkt::parse(&format!("{}J", &t[..42])).is_none());
    assert_eq!(JwsAlg::from_header("ES256"), Some(JwsAlg::Es256));
    assert_eq!(JwsAlg::from_header("none"), None);
}
