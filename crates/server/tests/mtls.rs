//! Certificate-bound tokens end to end (issue 9, RFC 8705 §3, R61): gatehouse terminates TLS
//! itself and asks for client certificates; the test makes its own CA, server and client
//! certificates (rcgen) and talks to the spawned binary with curl. Tokens issued on a
//! connection with certificate A carry `cnf["x5t#S256"]` and are refused with certificate B
//! or none; behind a TLS-terminating proxy the certificate header is believed only from a
//! trusted proxy.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use common::{Backend, Server, SmtpSink, register_verified, scratch, token_from_mail};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType,
};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

const PW: &str = "violet tram harbour 77";
const UA: &str = "mtls-client/1.0";
const DEVICE: &str = "01890000-0000-7000-8000-0000000000c1";

/// A certificate and its key, written as PEM files.
struct Pem {
    cert: PathBuf,
    key: PathBuf,
    der: Vec<u8>,
}

fn write(dir: &Path, name: &str, cert: &rcgen::Certificate, key: &KeyPair) -> Pem {
    let (c, k) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    Pem { cert: c, key: k, der: cert.der().to_vec() }
}

/// A CA, a server certificate for 127.0.0.1 and two client certificates, all from the CA;
/// plus a self-signed client certificate from nobody.
struct Pki {
    ca: PathBuf,
    server: Pem,
    a: Pem,
    b: Pem,
    stranger: Pem,
}

fn pki(dir: &Path) -> Pki {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "gatehouse test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca_cert.pem()).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let leaf = |name: &str, server: bool| {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(if server { vec!["localhost".to_owned()] } else { vec![] }).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        if server {
            p.subject_alt_names.push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        } else {
            p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        }
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = p.signed_by(&key, &issuer).unwrap();
        write(dir, name, &cert, &key)
    };
    let server = leaf("server", true);
    let a = leaf("client-a", false);
    let b = leaf("client-b", false);
    let stranger_key = KeyPair::generate().unwrap();
    let mut sp = CertificateParams::new(Vec::<String>::new()).unwrap();
    sp.distinguished_name.push(DnType::CommonName, "client-a");
    let stranger = write(dir, "stranger", &sp.self_signed(&stranger_key).unwrap(), &stranger_key);
    Pki { ca: ca_path, server, a, b, stranger }
}

fn x5t(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(der))
}

/// `curl` over TLS to the server, trusting the test CA, with an optional client certificate.
/// Returns the status (0 when the handshake failed) and the JSON body.
fn curl(
    pki: &Pki,
    url: &str,
    method: &str,
    cert: Option<&Pem>,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut c = Command::new("curl");
    c.args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-X", method, "--cacert"]).arg(&pki.ca);
    c.args(["-H", &format!("user-agent: {UA}"), "-H", &format!("gatehouse-device: {DEVICE}")]);
    if let Some(p) = cert {
        c.arg("--cert").arg(&p.cert).arg("--key").arg(&p.key);
    }
    if let Some(t) = bearer {
        c.args(["-H", &format!("authorization: Bearer {t}")]);
    }
    if let Some(b) = body {
        c.args(["-H", "content-type: application/json", "--data-binary", &b.to_string()]);
    }
    let out = c.arg(url).output().expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), serde_json::from_str(body).unwrap_or(Value::Null))
}

async fn tls_server(sink: &SmtpSink, pki: &Pki) -> Server {
    let toml = format!(
        "[tls]\ncert = {:?}\nkey = {:?}\nclient_ca = {:?}\nrequest_client_cert = true\n",
        pki.server.cert.display().to_string(),
        pki.server.key.display().to_string(),
        pki.ca.display().to_string(),
    );
    // The test presents wrong certificates for one account on purpose; the risk engine counts
    // those against it (see bound_session.rs for that effect). Here the binding is under test.
    Server::start_with_config(Backend::Sqlite, sink, &toml, &[("GATEHOUSE_RISK__ENABLED", "false")]).await
}

/// Registers and verifies `email` over curl (the server speaks only TLS).
fn register_over_tls(srv: &Server, sink: &SmtpSink, pki: &Pki, email: &str) {
    let (s, _) = curl(pki, &srv.api("/accounts"), "POST", None, None, Some(json!({"email": email, "password": PW})));
    assert_eq!(s, 202);
    let token = token_from_mail(&sink.wait_for(email, "Verify your email"));
    let (s, _) = curl(pki, &srv.api("/accounts/verify-email"), "POST", None, None, Some(json!({"token": token})));
    assert_eq!(s, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_issued_with_a_client_certificate_need_that_certificate() {
    let dir = scratch("mtls");
    let sink = SmtpSink::start(&dir);
    let pki = pki(&dir);
    let srv = tls_server(&sink, &pki).await;
    assert!(srv.base.starts_with("https://"), "{}", srv.base);
    let email = "mtls@example.com";
    register_over_tls(&srv, &sink, &pki, email);
    let login = json!({"email": email, "password": PW});

    // Login with certificate A: the tokens carry cnf["x5t#S256"] of A (RFC 8705 §3.1).
    let (s, body) = curl(&pki, &srv.api("/sessions"), "POST", Some(&pki.a), None, Some(login.clone()));
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["cnf"]["x5t#S256"], x5t(&pki.a.der), "{body}");
    assert_eq!(body["token_type"], "Bearer");
    let at = body["access_token"].as_str().unwrap().to_owned();
    let rt = body["refresh_token"].as_str().unwrap().to_owned();

    // With A: accepted. With B or no certificate: 401 (R61).
    let (s, me) = curl(&pki, &srv.api("/account"), "GET", Some(&pki.a), Some(&at), None);
    assert_eq!((s, me["email"].as_str()), (200, Some(email)), "{me}");
    let (s, e) = curl(&pki, &srv.api("/account"), "GET", Some(&pki.b), Some(&at), None);
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("cert_binding_rejected")), "{e}");
    let (s, e) = curl(&pki, &srv.api("/account"), "GET", None, Some(&at), None);
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("cert_binding_rejected")), "{e}");

    // A certificate that does not chain to the configured CA never gets past the handshake,
    // even with the same subject as A.
    let (s, _) = curl(&pki, &srv.api("/account"), "GET", Some(&pki.stranger), Some(&at), None);
    assert_eq!(s, 0, "handshake refused");

    // Refresh with A: a new certificate-bound pair.
    let (s, r) =
        curl(&pki, &srv.api("/sessions/refresh"), "POST", Some(&pki.a), None, Some(json!({"refresh_token": rt})));
    assert_eq!((s, r["cnf"]["x5t#S256"].as_str()), (200, Some(x5t(&pki.a.der).as_str())), "{r}");
    let at2 = r["access_token"].as_str().unwrap().to_owned();
    let rt2 = r["refresh_token"].as_str().unwrap().to_owned();
    // Without a certificate: refused, the family survives.
    let (s, e) = curl(&pki, &srv.api("/sessions/refresh"), "POST", None, None, Some(json!({"refresh_token": rt2})));
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("cert_binding_rejected")), "{e}");
    assert_eq!(curl(&pki, &srv.api("/account"), "GET", Some(&pki.a), Some(&at2), None).0, 200);
    // With B: invalid_grant, and the family is revoked.
    let (s, e) =
        curl(&pki, &srv.api("/sessions/refresh"), "POST", Some(&pki.b), None, Some(json!({"refresh_token": rt2})));
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_grant")), "{e}");
    assert_eq!(curl(&pki, &srv.api("/account"), "GET", Some(&pki.a), Some(&at2), None).0, 401, "family revoked");

    // Without a certificate the session is unbound and works without one.
    let (s, body) = curl(&pki, &srv.api("/sessions"), "POST", None, None, Some(login));
    assert_eq!(s, 201, "{body}");
    assert!(body.get("cnf").is_none(), "{body}");
    let plain = body["access_token"].as_str().unwrap().to_owned();
    let (s, h) = curl(&pki, &srv.api("/account/security-history?limit=200"), "GET", None, Some(&plain), None);
    assert_eq!(s, 200, "{h}");
    let kinds: Vec<&str> = h["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(kinds.iter().filter(|k| **k == "pop_binding_mismatch").count(), 1, "{kinds:?}");
    assert!(kinds.iter().filter(|k| **k == "pop_proof_rejected").count() >= 3, "{kinds:?}");
}

/// A plain-HTTP server whose certificate header is `x-client-cert`, trusting `proxies`.
async fn proxied(sink: &SmtpSink, proxies: &str) -> Server {
    let toml = format!("[server]\ntrusted_proxies = [{proxies}]\n\n[pop]\ncert_header = \"x-client-cert\"\n");
    Server::start_with_config(Backend::Sqlite, sink, &toml, &[]).await
}

async fn send(
    srv: &Server,
    method: reqwest::Method,
    path: &str,
    cert: Option<&[u8]>,
    bearer: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = reqwest::Client::new()
        .request(method, srv.api(path))
        .header("user-agent", UA)
        .header("gatehouse-device", DEVICE);
    if let Some(der) = cert {
        r = r.header("x-client-cert", STANDARD.encode(der));
    }
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.unwrap();
    (resp.status().as_u16(), resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_certificate_header_is_believed_only_from_a_trusted_proxy() {
    let dir = scratch("mtls-proxy");
    let sink = SmtpSink::start(&dir);
    let pki = pki(&dir);
    let login = |email: &str| json!({"email": email, "password": PW});

    // The test is the trusted proxy (127.0.0.1): the header binds the session.
    let srv = proxied(&sink, "\"127.0.0.1/32\"").await;
    register_verified(&srv, &sink, "proxied@example.com", PW).await;
    let (s, body) =
        send(&srv, reqwest::Method::POST, "/sessions", Some(&pki.a.der), None, Some(login("proxied@example.com")))
            .await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(body["cnf"]["x5t#S256"], x5t(&pki.a.der));
    let at = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(send(&srv, reqwest::Method::GET, "/account", Some(&pki.a.der), Some(&at), None).await.0, 200);
    let (s, e) = send(&srv, reqwest::Method::GET, "/account", Some(&pki.b.der), Some(&at), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (401, Some("cert_binding_rejected")), "{e}");
    assert_eq!(send(&srv, reqwest::Method::GET, "/account", None, Some(&at), None).await.0, 401);
    // A header that is not a certificate counts as none.
    let (s, _) = send(&srv, reqwest::Method::GET, "/account", Some(b"not a certificate"), Some(&at), None).await;
    assert_eq!(s, 401);

    // From an untrusted peer the header is ignored: no binding is created from it.
    let open = proxied(&sink, "\"10.9.8.0/24\"").await;
    register_verified(&open, &sink, "direct@example.com", PW).await;
    let (s, body) =
        send(&open, reqwest::Method::POST, "/sessions", Some(&pki.a.der), None, Some(login("direct@example.com")))
            .await;
    assert_eq!(s, 201, "{body}");
    assert!(body.get("cnf").is_none(), "client-supplied certificate header ignored: {body}");
}
