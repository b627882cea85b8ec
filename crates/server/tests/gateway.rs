//! The gateway end to end: unmodified exchange clients (pyupbit, ccxt, python-binance and an
//! RFC 9421 client from PyPI) through the gatehouse proxy to a test upstream, and the errors
//! each receives for a bad signature, a replayed nonce, an expired key, a disallowed IP and a
//! missing scope.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use base64::Engine as _;
use common::upstream::Upstream;
use common::{Backend, Device, Server, SmtpSink, register_verified, scratch};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";
const SECRET: [u8; 32] = [7; 32];

/// A fixed Ed25519 test key pair (RFC 8032 test 1 secret key), PEM-encoded.
const ED25519_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIJ1hsZ3v/VpguoRK9JLsLMREScVpezJpGXA7rAMcrn9g\n-----END PRIVATE KEY-----\n";
const ED25519_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----\nMCowBQYDK2VwAyEA11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\n-----END PUBLIC KEY-----\n";

fn config(upstream: &str) -> String {
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(SECRET);
    format!(
        r#"
[gateway]
identity_secret = "{secret}"

[[gateway.routes]]
prefix = "/v1"
dialect = "upbit"
upstream = "{upstream}"
table = "upbit"

[[gateway.routes]]
prefix = "/api"
dialect = "binance"
upstream = "{upstream}"
table = "binance"
public = ["/api/v3/ping", "/api/v3/time"]

[[gateway.routes]]
prefix = "/native"
dialect = "rfc9421"
upstream = "{upstream}"
strip_prefix = true
table = "upbit"
"#
    )
}

struct Env {
    _sink: SmtpSink,
    srv: Server,
    upstream: Upstream,
    owner: Device,
    mfa: common::mfa::Mfa,
}

async fn setup(backend: Backend) -> Env {
    let dir = scratch("gateway");
    let sink = SmtpSink::start(&dir);
    let upstream = Upstream::start(&SECRET).await;
    let srv = Server::start_with_config(backend, &sink, &config(&upstream.base), &[]).await;
    register_verified(&srv, &sink, "trader@example.com", PW).await;
    let mut owner = Device::new("python-requests/2.34.2");
    assert_eq!(owner.login(&srv, "trader@example.com", PW).await.0, 201);
    let mfa = common::mfa::enrol_totp(&srv, &owner, PW).await;
    Env { _sink: sink, srv, upstream, owner, mfa }
}

/// Creates a key through the owner's API; returns (id, secret or private PEM).
async fn key(env: &mut Env, body: Value) -> (String, Value) {
    let mut body = body;
    body["step_up_token"] = json!(env.mfa.step_up(&env.srv, &mut env.owner, "create_api_key").await);
    let (s, k) = env.owner.post(&env.srv.api("/api-keys"), body).await;
    assert_eq!(s, 201, "{k}");
    (k["id"].as_str().unwrap().to_owned(), k)
}

async fn hmac_key(env: &mut Env, scopes: Value, allow: Value) -> Value {
    let (id, k) = key(env, json!({ "label": "bot", "kind": "hmac", "scopes": scopes, "allowlist": allow })).await;
    json!({ "id": id, "secret": k["secret"] })
}

async fn ed_key(env: &mut Env, scopes: Value) -> Value {
    let (id, _) =
        key(env, json!({ "label": "ed", "kind": "ed25519", "scopes": scopes, "public_key": ED25519_PUBLIC_PEM })).await;
    json!({ "id": id, "private_key_pem": ED25519_PRIVATE_PEM })
}

/// Runs one client call through the Python harness.
fn client(env: &Env, client: &str, call: &str, key: &Value, repeat: u32) -> Vec<Value> {
    let spec = json!({ "base": env.srv.base, "client": client, "call": call, "key": key, "repeat": repeat });
    let out = std::process::Command::new(common::python())
        .arg(common::workspace().join("tests/conformance/clients.py"))
        .arg(spec.to_string())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().unwrap_or("");
    let v: Value = serde_json::from_str(line).unwrap_or_else(|_| {
        panic!("{client} {call}: no result\nstdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr))
    });
    v["results"].as_array().unwrap().clone()
}

fn ok(r: &Value) -> &Value {
    assert_eq!(r["ok"], true, "expected success, got {r}");
    &r["data"]
}

fn err(r: &Value) -> (String, String) {
    assert_eq!(r["ok"], false, "expected an error, got {r}");
    (r["error"].as_str().unwrap_or("").to_owned(), r["message"].as_str().unwrap_or("").to_owned())
}

fn trade() -> Value {
    json!(["view_assets", "view_orders", "place_orders"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upbit_clients_succeed_and_get_the_right_errors() {
    let mut env = setup(Backend::Sqlite).await;
    let k = hmac_key(&mut env, trade(), json!([])).await;
    // pyupbit: accounts (no params), orders (GET with a form body), POST order, DELETE order.
    let r = client(&env, "pyupbit", "accounts", &k, 1);
    let data = ok(&r[0]);
    assert_eq!(data["balances"][0]["currency"], "KRW");
    assert!(data["remaining_req"]["group"].is_string(), "Remaining-Req parsed by pyupbit: {data}");
    ok(&client(&env, "pyupbit", "order_get", &k, 1)[0]);
    ok(&client(&env, "pyupbit", "order_post", &k, 1)[0]);
    ok(&client(&env, "pyupbit", "order_post_tricky", &k, 1)[0]);
    ok(&client(&env, "pyupbit", "order_delete", &k, 1)[0]);
    // ccxt upbit.
    assert_eq!(ok(&client(&env, "ccxt_upbit", "accounts", &k, 1)[0])[0]["currency"], "KRW");
    ok(&client(&env, "ccxt_upbit", "orders_closed", &k, 1)[0]);
    ok(&client(&env, "ccxt_upbit", "order_post", &k, 1)[0]);
    ok(&client(&env, "ccxt_upbit", "order_delete", &k, 1)[0]);
    // Each forwarded request carried a verified identity for this key, and the client's
    // credentials were not forwarded.
    let seen = env.upstream.seen();
    assert!(seen.len() >= 9);
    for s in &seen {
        let id = s.identity.as_ref().unwrap();
        assert_eq!(id.key.to_string(), k["id"].as_str().unwrap());
        assert!(!s.headers.iter().any(|(h, _)| h == "authorization"), "{s:?}");
    }

    // Bad signature.
    let bad = json!({ "id": k["id"], "secret": "not-the-secret-0000000000000000000000000000" });
    assert_eq!(err(&client(&env, "pyupbit", "accounts", &bad, 1)[0]).0, "JwtVerification");
    assert_eq!(err(&client(&env, "ccxt_upbit", "accounts", &bad, 1)[0]).0, "AuthenticationError");
    // Replayed nonce: the identical request twice.
    let r = client(&env, "pyupbit", "accounts", &k, 2);
    ok(&r[0]);
    assert_eq!(err(&r[1]).0, "NonceUsed");
    let r = client(&env, "ccxt_upbit", "accounts", &k, 2);
    ok(&r[0]);
    let (class, msg) = err(&r[1]);
    assert!(class == "ExchangeError" && msg.contains("nonce_used"), "{class} {msg}");
    // Missing scope: a read-only key placing an order.
    let ro = hmac_key(&mut env, json!(["view_assets"]), json!([])).await;
    assert_eq!(err(&client(&env, "pyupbit", "order_post", &ro, 1)[0]).0, "OutOfScope");
    assert_eq!(err(&client(&env, "ccxt_upbit", "order_post", &ro, 1)[0]).0, "PermissionDenied");
    // Disallowed IP: the client is 127.0.0.1.
    let far = hmac_key(&mut env, trade(), json!(["10.0.0.0/24"])).await;
    let r = client(&env, "pyupbit", "accounts", &far, 1);
    // pyupbit does not know the current error name and returns the error as data.
    assert_eq!(ok(&r[0])["balances"]["error"]["name"], "no_authorization_ip");
    let (class, msg) = err(&client(&env, "ccxt_upbit", "accounts", &far, 1)[0]);
    assert!(msg.contains("no_authorization_ip"), "{class} {msg}");
    // Expired key: the minimum lifetime is one hour; move the server's clock past it.
    let (eid, ek) = key(
        &mut env,
        json!({ "label": "short", "kind": "hmac", "scopes": trade(), "expires_at_ms": now_ms() + 3_600_000 + 60_000 }),
    )
    .await;
    let expiring = json!({ "id": eid, "secret": ek["secret"] });
    ok(&client(&env, "pyupbit", "accounts", &expiring, 1)[0]);
    env.srv.advance(2 * 3_600_000).await;
    assert_eq!(err(&client(&env, "pyupbit", "accounts", &expiring, 1)[0]).0, "ExpiredAccessKey");
    assert_eq!(err(&client(&env, "ccxt_upbit", "accounts", &expiring, 1)[0]).0, "AuthenticationError");
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binance_clients_succeed_and_get_the_right_errors() {
    let mut env = setup(Backend::Sqlite).await;
    let scopes = json!(["view_assets", "view_orders", "place_orders"]);
    let hk = hmac_key(&mut env, scopes.clone(), json!([])).await;
    let ek = ed_key(&mut env, scopes.clone()).await;
    for (name, k) in [("hmac", &hk), ("ed25519", &ek)] {
        for c in ["ccxt_binance", "python_binance"] {
            let acct = ok(&client(&env, c, "account", k, 1)[0]).clone();
            assert_eq!(acct["canTrade"], true, "{c} {name}");
            ok(&client(&env, c, "order_post", k, 1)[0]);
            // Replay: the identical signed request twice (timestamp pinned).
            let r = client(&env, c, "order_post", k, 2);
            ok(&r[0]);
            let (class, msg) = err(&r[1]);
            assert!(msg.contains("-1021"), "{c} {name}: {class} {msg}");
        }
    }
    // Bad signature: −1022.
    let bad = json!({ "id": hk["id"], "secret": "wrong-secret-00000000000000000000000000000" });
    let (class, msg) = err(&client(&env, "ccxt_binance", "account", &bad, 1)[0]);
    assert!(class == "AuthenticationError" && msg.contains("-1022"), "{class} {msg}");
    let (class, msg) = err(&client(&env, "python_binance", "account", &bad, 1)[0]);
    assert!(class == "BinanceAPIException" && msg.contains("-1022"), "{class} {msg}");
    // Missing scope, disallowed IP and expired key: −2015 for all, as Binance does.
    let ro = hmac_key(&mut env, json!(["view_assets"]), json!([])).await;
    let far = hmac_key(&mut env, scopes.clone(), json!(["10.0.0.0/24"])).await;
    for (k, call) in [(&ro, "order_post"), (&far, "account")] {
        for c in ["ccxt_binance", "python_binance"] {
            let (class, msg) = err(&client(&env, c, call, k, 1)[0]);
            assert!(msg.contains("-2015"), "{c} {call}: {class} {msg}");
        }
    }
    let (eid, body) = key(
        &mut env,
        json!({ "label": "short", "kind": "hmac", "scopes": scopes, "expires_at_ms": now_ms() + 3_600_000 + 60_000 }),
    )
    .await;
    let expiring = json!({ "id": eid, "secret": body["secret"] });
    env.srv.advance(2 * 3_600_000).await;
    // The clients take their timestamp from the real clock; tell them the server's time.
    for c in ["ccxt_binance", "python_binance"] {
        let r = client(&env, c, "account", &expiring, 1);
        let (class, msg) = err(&r[0]);
        assert!(msg.contains("-2015") || msg.contains("-1021"), "{c}: {class} {msg}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rfc9421_client_succeeds_and_gets_the_right_errors() {
    let mut env = setup(Backend::Sqlite).await;
    let hk = hmac_key(&mut env, trade(), json!([])).await;
    let ek = ed_key(&mut env, trade()).await;
    for k in [&hk, &ek] {
        let data = ok(&client(&env, "rfc9421", "accounts", k, 1)[0]).clone();
        assert_eq!(data[0]["currency"], "KRW");
        ok(&client(&env, "rfc9421", "order_post", k, 1)[0]);
        let r = client(&env, "rfc9421", "order_post", k, 2);
        ok(&r[0]);
        assert_eq!((r[1]["status"].as_i64(), r[1]["code"].as_str()), (Some(401), Some("replay")));
    }
    // The native dialect forwards without its prefix, with the identity bound to the path.
    assert!(env.upstream.seen().iter().any(|s| s.path == "/v1/orders" && s.identity.is_some()));
    let bad = json!({ "id": hk["id"], "secret": "wrong-secret-00000000000000000000000000000" });
    let r = client(&env, "rfc9421", "accounts", &bad, 1);
    assert_eq!((r[0]["status"].as_i64(), r[0]["code"].as_str()), (Some(401), Some("invalid_signature")));
    let ro = hmac_key(&mut env, json!(["view_assets"]), json!([])).await;
    let r = client(&env, "rfc9421", "order_post", &ro, 1);
    assert_eq!((r[0]["status"].as_i64(), r[0]["code"].as_str()), (Some(403), Some("out_of_scope")));
    let far = hmac_key(&mut env, trade(), json!(["10.0.0.0/24"])).await;
    let r = client(&env, "rfc9421", "accounts", &far, 1);
    assert_eq!((r[0]["status"].as_i64(), r[0]["code"].as_str()), (Some(403), Some("ip_not_allowed")));
}

/// A Binance HMAC-signed `GET /api/v3/account`, built the way ccxt does.
fn binance_get(base: &str, key_id: &str, secret: &str, ts_ms: i64, extra: &str) -> reqwest::RequestBuilder {
    use hmac::{Hmac, KeyInit, Mac};
    let query = format!("timestamp={ts_ms}&recvWindow=10000{extra}");
    let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(query.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    reqwest::Client::new().get(format!("{base}/api/v3/account?{query}&signature={sig}")).header("x-mbx-apikey", key_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_log_alerts_and_denials_are_recorded() {
    let hook_secret = "webhook-secret-0123456789abcdef-0123";
    let hooks = common::upstream::WebhookSink::start(hook_secret).await;
    let dir = scratch("usage");
    let sink = SmtpSink::start(&dir);
    let upstream = Upstream::start(&SECRET).await;
    let cfg = format!(
        "{}\n[notify]\nsecurity_webhook_url = \"{}\"\nsecurity_webhook_secret = \"{hook_secret}\"\n\n[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        config(&upstream.base),
        hooks.url
    );
    let srv = Server::start_with_config(Backend::Sqlite, &sink, &cfg, &[]).await;
    register_verified(&srv, &sink, "trader@example.com", PW).await;
    let mut owner = Device::new("python-requests/2.34.2");
    assert_eq!(owner.login(&srv, "trader@example.com", PW).await.0, 201);
    let mfa = common::mfa::enrol_totp(&srv, &owner, PW).await;
    let mut env = Env { _sink: SmtpSink::start(&scratch("unused")), srv, upstream, owner, mfa };
    let k = hmac_key(&mut env, trade(), json!([])).await;
    let (id, secret) = (k["id"].as_str().unwrap(), k["secret"].as_str().unwrap());
    let now = now_ms();
    // Three good calls from one network, then one from another network.
    for i in 0..3 {
        let r = binance_get(&env.srv.base, id, secret, now + i, "")
            .header("x-forwarded-for", "203.0.113.5")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let r = binance_get(&env.srv.base, id, secret, now + 10, "")
        .header("x-forwarded-for", "198.51.100.7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let alert = hooks.wait_for("api_key.new_network").await;
    assert_eq!(alert["key"], id);
    assert_eq!(alert["network"], "198.51.100.0/24");
    sink.wait_for("trader@example.com", "used from a new network");
    // Ten bad signatures: one alert.
    for i in 0..10 {
        let r = binance_get(&env.srv.base, id, "wrong-secret", now + 100 + i, "").send().await.unwrap();
        assert_eq!(r.status(), 400);
    }
    hooks.wait_for("api_key.bad_signatures").await;
    // A scope violation (read-only key placing an order is easier through a client; here a
    // read-only key calling the account endpoint of another scope).
    let ro = hmac_key(&mut env, json!(["view_orders"]), json!([])).await;
    let r = binance_get(&env.srv.base, ro["id"].as_str().unwrap(), ro["secret"].as_str().unwrap(), now + 200, "")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    hooks.wait_for("api_key.scope_violation").await;
    // Last use and counts per route and outcome; denials in the security history.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, detail) = env.owner.get(&env.srv.api(&format!("/api-keys/{id}"))).await;
        let ok_count =
            detail["usage"].as_array().unwrap().iter().find(|u| u["outcome"] == "ok").map(|u| u["count"].clone());
        if ok_count == Some(json!(4)) {
            assert_eq!(detail["last_used"]["ip"], "198.51.100.7");
            let bad = detail["usage"].as_array().unwrap().iter().find(|u| u["outcome"] == "bad_signature").unwrap();
            assert_eq!(bad["count"], 10);
            break;
        }
        assert!(std::time::Instant::now() < deadline, "usage never flushed: {detail}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, hist) = env.owner.get(&env.srv.api("/account/security-history?limit=200")).await;
    let kinds: Vec<_> =
        hist["events"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap().to_owned()).collect();
    assert!(kinds.contains(&"api_key_denied".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"api_key_new_network".to_owned()), "{kinds:?}");
    assert!(kinds.contains(&"api_key_created".to_owned()), "{kinds:?}");
    // A key in the URL is refused without being processed (R73).
    let r = reqwest::get(format!("{}/api/v3/account?apiKey={id}&timestamp=1", env.srv.base)).await.unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_sharing_redis_accept_a_signed_request_once() {
    let dir = scratch("two");
    let sink = SmtpSink::start(&dir);
    let upstream = Upstream::start(&SECRET).await;
    let cfg = config(&upstream.base);
    let a = Server::start_with_config(
        Backend::Postgres,
        &sink,
        &cfg,
        &[("GATEHOUSE_STORAGE__REDIS_URL", "redis://127.0.0.1:6379")],
    )
    .await;
    // The second instance shares the first one's database, master key and Redis.
    let mut env_b: Vec<(&str, &str)> = vec![("GATEHOUSE_STORAGE__REDIS_URL", "redis://127.0.0.1:6379")];
    let url = a.database_url.clone().unwrap();
    env_b.push(("GATEHOUSE_STORAGE__DATABASE_URL", &url));
    env_b.push(("GATEHOUSE_SECRETS__MASTER_KEYS", common::TEST_MASTER_KEY));
    let b = Server::start_with_config(Backend::Sqlite, &sink, &cfg, &env_b).await;
    register_verified(&a, &sink, "shared@example.com", PW).await;
    let mut owner = Device::new("python-requests/2.34.2");
    assert_eq!(owner.login(&a, "shared@example.com", PW).await.0, 201);
    let mfa = common::mfa::enrol_totp(&a, &owner, PW).await;
    let t = mfa.step_up(&a, &mut owner, "create_api_key").await;
    let (_, k) = owner
        .post(&a.api("/api-keys"), json!({ "label": "bot", "kind": "hmac", "scopes": trade(), "step_up_token": t }))
        .await;
    let (id, secret) = (k["id"].as_str().unwrap().to_owned(), k["secret"].as_str().unwrap().to_owned());
    for round in 0..20 {
        let ts = now_ms() + round;
        let extra = format!("&n={round}");
        let (ra, rb) = tokio::join!(
            binance_get(&a.base, &id, &secret, ts, &extra).send(),
            binance_get(&b.base, &id, &secret, ts, &extra).send()
        );
        let statuses = [ra.unwrap().status().as_u16(), rb.unwrap().status().as_u16()];
        let mut sorted = statuses;
        sorted.sort();
        assert_eq!(sorted, [200, 400], "round {round}: exactly one instance accepts ({statuses:?})");
    }
    // A revocation on A is honoured by B within a second (F16; key records are cached 500 ms).
    let t = mfa.step_up(&a, &mut owner, "change_api_key").await;
    let (s, _) = owner.post(&a.api(&format!("/api-keys/{id}/revoke")), json!({ "step_up_token": t })).await;
    assert_eq!(s, 200);
    let revoked_at = std::time::Instant::now();
    let mut n = 1000;
    loop {
        n += 1;
        let r = binance_get(&b.base, &id, &secret, now_ms(), &format!("&n={n}")).send().await.unwrap();
        if r.status() == 401 {
            break;
        }
        assert!(revoked_at.elapsed() < std::time::Duration::from_millis(1000), "B still accepts a revoked key");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// An Upbit-style JWT for a call without parameters (what pyupbit sends for /v1/accounts).
fn upbit_token(key_id: &str, secret: &str, nonce: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = b64(json!({ "access_key": key_id, "nonce": nonce }).to_string().as_bytes());
    let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{header}.{payload}").as_bytes());
    format!("{header}.{payload}.{}", b64(&mac.finalize().into_bytes()))
}

async fn upbit_call(
    base: &str,
    method: &str,
    path: &str,
    key_id: &str,
    secret: &str,
    body: Option<Value>,
) -> (u16, Value) {
    use sha2::Digest;
    let nonce = uuid_like();
    let token = match &body {
        None => upbit_token(key_id, secret, &nonce),
        Some(b) => {
            use hmac::{Hmac, KeyInit, Mac};
            let pairs: Vec<String> =
                b.as_object().unwrap().iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect();
            let qh = hex::encode(sha2::Sha512::digest(pairs.join("&").as_bytes()));
            let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
            let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
            let payload =
                b64(json!({ "access_key": key_id, "nonce": nonce, "query_hash": qh, "query_hash_alg": "SHA512" })
                    .to_string()
                    .as_bytes());
            let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{header}.{payload}").as_bytes());
            format!("{header}.{payload}.{}", b64(&mac.finalize().into_bytes()))
        }
    };
    let c = reqwest::Client::new();
    let mut r = c.request(method.parse().unwrap(), format!("{base}{path}")).bearer_auth(token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    assert!(r.headers().contains_key("remaining-req"), "Remaining-Req on every Upbit answer");
    (s, r.json().await.unwrap_or(Value::Null))
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{:08x}-0000-4000-8000-{:012x}", std::process::id(), N.fetch_add(1, Ordering::SeqCst) + now_ms() as u64)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_overlaps_and_withdraw_keys_start_locked() {
    let mut env = setup(Backend::Sqlite).await;
    let base = env.srv.base.clone();
    // Rotation: both keys work during the overlap; the old one stops after the grace.
    let k = hmac_key(&mut env, trade(), json!([])).await;
    let (id, secret) = (k["id"].as_str().unwrap().to_owned(), k["secret"].as_str().unwrap().to_owned());
    let t = env.mfa.step_up(&env.srv, &mut env.owner, "rotate_api_key").await;
    let (s, next) =
        env.owner.post(&env.srv.api(&format!("/api-keys/{id}/rotate")), json!({ "step_up_token": t })).await;
    assert_eq!(s, 201, "{next}");
    let (nid, nsecret) = (next["id"].as_str().unwrap().to_owned(), next["secret"].as_str().unwrap().to_owned());
    assert_ne!(nid, id);
    assert_eq!(upbit_call(&base, "GET", "/v1/accounts", &id, &secret, None).await.0, 200);
    assert_eq!(upbit_call(&base, "GET", "/v1/accounts", &nid, &nsecret, None).await.0, 200);
    env.srv.advance(24 * 3_600_000 + 1000).await;
    let (s, body) = upbit_call(&base, "GET", "/v1/accounts", &id, &secret, None).await;
    assert_eq!((s, body["error"]["name"].as_str()), (401, Some("expired_access_key")));
    assert_eq!(upbit_call(&base, "GET", "/v1/accounts", &nid, &nsecret, None).await.0, 200);
    // The owner's own session has ended by now (12 h); sign in again.
    assert_eq!(env.mfa.login(&env.srv, &mut env.owner, "trader@example.com", PW).await.0, 201);
    // The list never shows a secret.
    let (_, list) = env.owner.get(&env.srv.api("/api-keys")).await;
    assert!(!list.to_string().contains(&nsecret));

    // Withdraw needs an allowlist…
    let all = json!(["view_assets", "withdraw"]);
    let t = env.mfa.step_up(&env.srv, &mut env.owner, "create_api_key").await;
    let (s, body) = env
        .owner
        .post(&env.srv.api("/api-keys"), json!({ "label": "w", "kind": "hmac", "scopes": all, "step_up_token": t }))
        .await;
    assert_eq!((s, body["error"]["code"].as_str()), (400, Some("invalid_key_request")), "{body}");
    // …starts locked (403 open_api_withdraw_locked)…
    let (wid, wk) =
        key(&mut env, json!({ "label": "w", "kind": "hmac", "scopes": all, "allowlist": ["127.0.0.1/32"] })).await;
    assert_eq!(wk["status"], "locked");
    let wsecret = wk["secret"].as_str().unwrap().to_owned();
    let coin = json!({ "currency": "BTC", "net_type": "BTC", "amount": "0.01", "address": "bc1qexample" });
    let (s, body) = upbit_call(&base, "POST", "/v1/withdraws/coin", &wid, &wsecret, Some(coin.clone())).await;
    assert_eq!((s, body["error"]["name"].as_str()), (403, Some("open_api_withdraw_locked")), "{body}");
    // …and after the owner unlocks it, still waits out the 24 h cooling-off (R74).
    let t = env.mfa.step_up(&env.srv, &mut env.owner, "unlock_api_key").await;
    let (s, _) =
        env.owner.post(&env.srv.api(&format!("/api-keys/{wid}/unlock-withdraw")), json!({ "step_up_token": t })).await;
    assert_eq!(s, 200);
    let (s, _) = upbit_call(&base, "POST", "/v1/withdraws/coin", &wid, &wsecret, Some(coin.clone())).await;
    assert_eq!(s, 403);
    env.srv.advance(24 * 3_600_000 + 1000).await;
    let (s, body) = upbit_call(&base, "POST", "/v1/withdraws/coin", &wid, &wsecret, Some(coin)).await;
    assert_eq!(s, 200, "{body}");
    // The upstream saw the identity with the withdraw scope.
    let seen = env.upstream.seen();
    let w = seen.iter().find(|s| s.path == "/v1/withdraws/coin").unwrap();
    assert!(w.identity.as_ref().unwrap().scopes.has_withdraw());
    // friction (issue 5): a password change holds withdrawals through keys too.
    assert_eq!(env.mfa.login(&env.srv, &mut env.owner, "trader@example.com", PW).await.0, 201);
    let t = env.mfa.step_up(&env.srv, &mut env.owner, "change_password").await;
    let (s, b) = env
        .owner
        .post(
            &env.srv.api("/account/password"),
            json!({ "current_password": PW, "new_password": "amber kite lantern 31", "step_up_token": t }),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let coin = json!({ "currency": "BTC", "net_type": "BTC", "amount": "0.02", "address": "bc1qexample" });
    let (s, _) = upbit_call(&base, "POST", "/v1/withdraws/coin", &wid, &wsecret, Some(coin.clone())).await;
    assert_eq!(s, 403, "held after the password change");
    let (s, _) = upbit_call(&base, "GET", "/v1/accounts", &wid, &wsecret, None).await;
    assert_eq!(s, 200, "reading is not held");
    env.srv.advance(24 * 3_600_000 + 60_000).await;
    let (s, body) = upbit_call(&base, "POST", "/v1/withdraws/coin", &wid, &wsecret, Some(coin)).await;
    assert_eq!(s, 200, "{body}");
    // end friction
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn expiring_keys_get_one_reminder_per_stage() {
    let dir = scratch("remind");
    let sink = SmtpSink::start(&dir);
    let upstream = Upstream::start(&SECRET).await;
    let cfg = config(&upstream.base).replacen("[gateway]\n", "[gateway]\nreminder_check_secs = 1\n", 1);
    let srv = Server::start_with_config(Backend::Sqlite, &sink, &cfg, &[]).await;
    register_verified(&srv, &sink, "soon@example.com", PW).await;
    let mut owner = Device::new("python-requests/2.34.2");
    assert_eq!(owner.login(&srv, "soon@example.com", PW).await.0, 201);
    let mfa = common::mfa::enrol_totp(&srv, &owner, PW).await;
    let t = mfa.step_up(&srv, &mut owner, "create_api_key").await;
    let (s, _) = owner
        .post(&srv.api("/api-keys"), json!({ "label": "short-lived", "kind": "hmac", "step_up_token": t, "expires_at_ms": now_ms() + 2 * 86_400_000 }))
        .await;
    assert_eq!(s, 201);
    sink.wait_for("soon@example.com", "expires soon");
    // The 1-day stage sends the next one; the checks in between (one a second) sent nothing.
    srv.advance(86_400_000 + 60_000).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while sink.count_for("soon@example.com", "expires soon") < 2 {
        assert!(std::time::Instant::now() < deadline, "no second reminder");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    while srv.metric("gatehouse_mail_outbox_pending").await > 0.0 {
        assert!(std::time::Instant::now() < deadline, "mail outbox never drained");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(sink.count_for("soon@example.com", "expires soon"), 2, "one reminder per stage");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_cli_manages_keys_with_json_output() {
    let env = setup(Backend::Sqlite).await;
    let data = env.srv.data_dir();
    let out = env.srv.cli(
        &["apikey", "create", "--email", "trader@example.com", "--label", "cli", "--scopes", "view_assets", "--json"],
        &data,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    let (id, secret) = (created["id"].as_str().unwrap().to_owned(), created["secret"].as_str().unwrap().to_owned());
    assert_eq!(secret.len(), 43, "256-bit secret");
    assert_eq!(upbit_call(&env.srv.base, "GET", "/v1/accounts", &id, &secret, None).await.0, 200);
    let out = env.srv.cli(&["apikey", "list", "--email", "trader@example.com", "--json"], &data);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&secret), "list never shows secrets");
    let out = env.srv.cli(&["apikey", "rotate", "--email", "trader@example.com", "--id", &id, "--json"], &data);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let rotated: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rotated["rotated_from"], id.as_str());
    let out = env.srv.cli(&["apikey", "revoke", "--email", "trader@example.com", "--id", &id, "--json"], &data);
    assert!(out.status.success());
    // The revocation is visible to the running server within the key-cache time.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
    loop {
        let (s, _) = upbit_call(&env.srv.base, "GET", "/v1/accounts", &id, &secret, None).await;
        if s == 401 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "revocation never seen");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_that_fails_verification_does_not_burn_its_nonce() {
    let mut env = setup(Backend::Sqlite).await;
    let k = hmac_key(&mut env, trade(), json!([])).await;
    let (id, secret) = (k["id"].as_str().unwrap(), k["secret"].as_str().unwrap());
    let token = upbit_token(id, secret, "9d1c2b7a-0000-4000-8000-00000000abcd");
    // The attacker replays the token with a forged signature segment: refused…
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let c = reqwest::Client::new();
    let r = c.get(format!("{}/v1/accounts", env.srv.base)).bearer_auth(&forged).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // …and the nonce is still fresh for the legitimate request, which works exactly once.
    let r = c.get(format!("{}/v1/accounts", env.srv.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Proxied answers on plain HTTP are served outside the router (app::answer_direct) with the
    // same edge duties: request id, security headers, `Remaining-Req`, metrics by route label.
    let edge_headers = |r: &reqwest::Response| {
        let h = r.headers();
        assert_eq!(h["x-request-id"].len(), 16, "{h:?}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{h:?}");
        assert!(h.contains_key("content-security-policy") && h.contains_key("remaining-req"), "{h:?}");
    };
    edge_headers(&r);
    let r = c.get(format!("{}/v1/accounts", env.srv.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    edge_headers(&r);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["name"], "nonce_used");
    let metrics = c.get(format!("{}/metrics", env.srv.base)).send().await.unwrap().text().await.unwrap();
    for (status, n) in [("200", 1), ("401", 2)] {
        let line =
            format!(r#"gatehouse_http_requests_total{{route="gateway:/v1",method="GET",status="{status}"}} {n}"#);
        assert!(metrics.lines().any(|l| l == line), "{line} missing from:\n{metrics}");
    }
    // Even after a crash and restart, the nonce stays used (database replay store).
    env.srv.restart();
    let r = c.get(format!("{}/v1/accounts", env.srv.base)).bearer_auth(&token).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["name"], "nonce_used");
    let parameters_token = upbit_token(id, secret, "9d1c2b7a-0000-4000-8000-00000000abce");
    let r = c
        .get(format!("{}/v1/accounts?market=KRW-BTC", env.srv.base))
        .bearer_auth(&parameters_token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "parameters without a query_hash are refused");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["name"], "invalid_query_payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leaked_key_used_from_a_new_network_is_stopped_before_trading() {
    let hook_secret = "webhook-secret-0123456789abcdef-0123";
    let hooks = common::upstream::WebhookSink::start(hook_secret).await;
    let dir = scratch("risk-key");
    let sink = SmtpSink::start(&dir);
    let upstream = Upstream::start(&SECRET).await;
    let cfg = format!(
        "{}\n[notify]\nsecurity_webhook_url = \"{}\"\nsecurity_webhook_secret = \"{hook_secret}\"\n\n[server]\ntrusted_proxies = [\"127.0.0.1/32\"]\n",
        config(&upstream.base),
        hooks.url
    );
    let srv = Server::start_with_config(Backend::Sqlite, &sink, &cfg, &[]).await;
    register_verified(&srv, &sink, "bot@example.com", PW).await;
    let mut owner = Device::new("python-requests/2.34.2");
    assert_eq!(owner.login(&srv, "bot@example.com", PW).await.0, 201);
    let mfa = common::mfa::enrol_totp(&srv, &owner, PW).await;
    let mut env = Env { _sink: SmtpSink::start(&scratch("unused")), srv, upstream, owner, mfa };
    let k = hmac_key(&mut env, trade(), json!([])).await;
    let (id, secret) = (k["id"].as_str().unwrap().to_owned(), k["secret"].as_str().unwrap().to_owned());
    let order =
        json!({ "market": "KRW-BTC", "side": "bid", "volume": "0.001", "price": "1000000", "ord_type": "limit" });
    let call = |ip: &'static str, method: &'static str, path: &'static str, body: Option<Value>| {
        let (id, secret, base) = (id.clone(), secret.clone(), env.srv.base.clone());
        async move {
            use sha2::Digest;
            let nonce = uuid_like();
            let token = match &body {
                None => upbit_token(&id, &secret, &nonce),
                Some(b) => {
                    use hmac::{Hmac, KeyInit, Mac};
                    let pairs: Vec<String> =
                        b.as_object().unwrap().iter().map(|(k, v)| format!("{k}={}", v.as_str().unwrap())).collect();
                    let qh = hex::encode(sha2::Sha512::digest(pairs.join("&").as_bytes()));
                    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
                    let header = b64(br#"{"alg":"HS256","typ":"JWT"}"#);
                    let payload =
                        b64(json!({ "access_key": id, "nonce": nonce, "query_hash": qh }).to_string().as_bytes());
                    let mut mac = <Hmac<sha2::Sha256>>::new_from_slice(secret.as_bytes()).unwrap();
                    mac.update(format!("{header}.{payload}").as_bytes());
                    format!("{header}.{payload}.{}", b64(&mac.finalize().into_bytes()))
                }
            };
            let c = reqwest::Client::new();
            let mut r = c
                .request(method.parse().unwrap(), format!("{base}{path}"))
                .bearer_auth(token)
                .header("x-forwarded-for", ip)
                .header("user-agent", "trading-bot/1.0");
            if let Some(b) = body {
                r = r.json(&b);
            }
            let r = r.send().await.unwrap();
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    // The bot's habits over a few days: its own server, mostly reading, an order a day.
    for day in 0..5 {
        assert_eq!(call("203.0.113.10", "POST", "/v1/orders", Some(order.clone())).await.0, 200);
        for _ in 0..15 {
            assert_eq!(call("203.0.113.10", "GET", "/v1/accounts", None).await.0, 200);
            // A busy key is scored (and learned from) once a second: spread the calls out.
            env.srv.advance(1100).await;
        }
        if day < 4 {
            env.srv.advance(86_400_000).await;
            // Let the flush loop persist what was learned.
            tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
        }
    }
    // The leaked key, from somebody else's network, tries to trade: scored step-up (an API
    // client cannot answer a challenge, so trading is refused) before the upstream sees it,
    // audited with its reasons, and the security team and the owner are told.
    let before = env.upstream.seen().len();
    let (s, body) = call("198.51.100.7", "POST", "/v1/orders", Some(order.clone())).await;
    assert_eq!(s, 401, "{body}");
    assert_eq!(env.upstream.seen().len(), before);
    let hook = hooks.wait_for("risk.decision").await;
    assert!(hook["user"].is_string());
    assert!(
        hook["reasons"].as_array().unwrap().iter().any(|r| r["signal"].as_str().unwrap_or("").contains("network")),
        "{hook}"
    );
    sink.wait_for("bot@example.com", "Unusual activity");
    assert_eq!(env.mfa.login(&env.srv, &mut env.owner, "bot@example.com", PW).await.0, 201);
    let (_, hist) = env.owner.get(&env.srv.api("/account/security-history?limit=200")).await;
    assert!(hist["events"].as_array().unwrap().iter().any(|e| e["kind"] == "risk_decision"), "{hist}");
    // The owner's own server keeps working.
    assert_eq!(call("203.0.113.10", "POST", "/v1/orders", Some(order)).await.0, 200);
}
