//! The admin console (issue 7) driven by a real headless Chromium (playwright-core,
//! `tests/browser/admin.mjs`) with the DevTools virtual authenticator against the spawned
//! binary, on SQLite and on PostgreSQL: two admins add passkeys and sign in with them (their password-only sessions are
//! refused), approve a high-value recovery case as two different reviewers, freeze and
//! unfreeze an account and read the audit log; a non-admin is refused. The browser script
//! fails on any console error or failed request and writes screenshots to
//! `test-artifacts/screenshots/admin-{sqlite,postgres}/`; this side then checks through the JSON API what the
//! pages claimed (as a fourth admin signed in with a software passkey, `common::softkey`), and
//! that the admin endpoints refuse password-only and non-admin sessions.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::browser::run_browser;

use common::softkey::SoftKey;
use common::{Backend, Device, Server, SmtpSink, register_verified, scratch};
use serde_json::{Value, json};

const PW: &str = "violet tram harbour 77";
const HOUR: i64 = 3_600_000;

async fn login(srv: &Server, email: &str) -> Device {
    let mut d = Device::new("admin-check/1.0");
    let (s, b) = d.login(srv, email, PW).await;
    assert_eq!(s, 201, "{email}: {b}");
    d
}

fn code(b: &Value) -> Option<&str> {
    b["error"]["code"].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_in_chromium_sqlite() {
    admin_console_in_chromium(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_console_in_chromium_postgres() {
    admin_console_in_chromium(Backend::Postgres).await;
}

async fn admin_console_in_chromium(backend: Backend) {
    let dir = scratch("admin-pages");
    let sink = SmtpSink::start(&dir);
    // WebAuthn needs a domain for its RP ID: the browser uses `localhost`.
    let cfg = "[risk]\nenabled = false\n\n[mfa.webauthn]\nrp_id = \"localhost\"\n\
               origins = [\"http://localhost:8080\"]\ndanger_allow_any_port = true\n";
    let srv = Server::start_with_config(backend, &sink, cfg, &[]).await;
    let (a1, a2, user, owner) = ("rev1@example.com", "rev2@example.com", "pat@example.com", "grace@example.com");
    // A third admin who never adds a passkey (password only), and a fourth who checks the
    // JSON API with a software passkey.
    let (a3, a4) = ("rev3@example.com", "rev4@example.com");
    for e in [a1, a2, a3, a4, user, owner] {
        register_verified(&srv, &sink, e, PW).await;
    }
    for args in [
        ["admin", "grant", a1],
        ["admin", "grant", a2],
        ["admin", "grant", a3],
        ["admin", "grant", a4],
        ["admin", "high-value", owner],
    ] {
        let out = srv.cli(&args, &srv.data_dir());
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut key4 = SoftKey::for_default_origin(4);
    key4.register(&srv, &login(&srv, a4).await, "checker", PW).await;

    // A high-value case, past its waiting period.
    let anon = Device::new("recovery-form");
    let evidence = "I lost my phone; my ID card number ends in 1234.";
    let (s, _) = anon.post(&srv.api("/recovery/cases"), json!({ "email": owner, "evidence": evidence })).await;
    assert_eq!(s, 202);
    let checker = key4.sign_in(&srv, "admin-check/1.0").await;
    let (s, q) = checker.get(&srv.api("/admin/recovery")).await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(q["cases"][0]["required_approvals"], 2, "{q}");
    let case = q["cases"][0]["id"].as_str().unwrap().to_owned();
    // An ordinary case (one reviewer), to be rejected.
    let (s, _) = anon.post(&srv.api("/recovery/cases"), json!({ "email": user, "evidence": "lost it" })).await;
    assert_eq!(s, 202);
    let (_, q) = checker.get(&srv.api("/admin/recovery")).await;
    let case2 = q["cases"].as_array().unwrap().iter().find(|c| c["id"] != case.as_str()).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Enough events for the audit viewer to have a second page (50 a page).
    for _ in 0..20 {
        login(&srv, user).await;
    }
    srv.advance(72 * HOUR + 60_000).await;

    let base = srv.base.replace("127.0.0.1", "localhost");
    let env = [
        ("GH_BASE_URL", base.as_str()),
        ("GH_ADMIN1", a1),
        ("GH_ADMIN2", a2),
        ("GH_USER", user),
        ("GH_TARGET", owner),
        ("GH_CASE", case.as_str()),
        ("GH_CASE2", case2.as_str()),
        ("GH_PW", PW),
    ];
    let shots = if backend == Backend::Sqlite { "admin-sqlite" } else { "admin-postgres" };
    let result = run_browser("admin.mjs", &srv, &sink, shots, &env);
    assert!(result["pages"].as_u64().unwrap() >= 15, "{result}");

    // The case was carried out by two different reviewers.
    let checker = key4.sign_in(&srv, "admin-check/1.0").await;
    let (_, q) = checker.get(&srv.api("/admin/recovery?state=all")).await;
    let c = q["cases"].as_array().unwrap().iter().find(|c| c["id"] == case.as_str()).unwrap().clone();
    assert_eq!(c["state"], "executed", "{c}");
    assert_ne!(c["first_reviewer"], c["decided_by"], "{c}");
    let c2 = q["cases"].as_array().unwrap().iter().find(|c| c["id"] == case2.as_str()).unwrap().clone();
    assert_eq!(c2["state"], "rejected", "{c2}");
    // Unfrozen, but the recovery's withdrawal hold stays.
    let o = login(&srv, owner).await;
    let (s, me) = o.get(&srv.api("/account")).await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(me["friction"]["withdrawal_hold_reason"], "recovery", "{me}");

    // The console's endpoints: a password-only admin session and a non-admin are refused.
    let admin_pw_only = login(&srv, a3).await;
    let freeze = json!({ "email": user, "password": PW });
    let (s, b) = admin_pw_only.get(&srv.api("/admin/recovery")).await;
    assert_eq!((s, code(&b)), (403, Some("admin_webauthn_required")), "{b}");
    let (s, b) = admin_pw_only.post(&srv.api("/admin/accounts/freeze"), freeze.clone()).await;
    assert_eq!((s, code(&b)), (403, Some("admin_webauthn_required")), "{b}");
    let (s, b) = admin_pw_only.get(&srv.api("/admin/audit")).await;
    assert_eq!((s, code(&b)), (403, Some("admin_webauthn_required")), "{b}");
    let u = login(&srv, user).await;
    let (s, b) = u.post(&srv.api("/admin/accounts/unfreeze"), freeze).await;
    assert_eq!((s, code(&b)), (403, Some("admin_required")), "{b}");
    let (s, b) = u.get(&srv.api("/admin/audit")).await;
    assert_eq!((s, code(&b)), (403, Some("admin_required")), "{b}");
    // Nobody was frozen by those.
    assert_eq!(u.get(&srv.api("/account")).await.0, 200);

    // The owner's history shows the freeze and unfreeze, with the admin as actor.
    let (_, h) = o.get(&srv.api("/account/security-history")).await;
    let kinds: Vec<&str> = h["events"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(kinds.contains(&"account_frozen") && kinds.contains(&"account_unfrozen"), "{h}");
}

// The software authenticator's encoders (common::softkey), checked once here rather than in
// every test binary that includes the harness.
mod softkey_encoding {
    use super::common::softkey::{cbor_head, cbor_int, der_signature};

    #[test]
    fn cbor_heads_follow_rfc_8949() {
        let enc = |major, n| {
            let mut v = Vec::new();
            cbor_head(&mut v, major, n);
            v
        };
        assert_eq!(enc(0, 23), [0x17]);
        assert_eq!(enc(0, 24), [0x18, 0x18]);
        assert_eq!(enc(2, 300), [0x59, 0x01, 0x2c]);
        let mut v = Vec::new();
        cbor_int(&mut v, -7);
        assert_eq!(v, [0x26]);
    }

    #[test]
    fn der_integers_are_minimal_and_positive() {
        let mut raw = [0u8; 64];
        raw[0] = 0x80; // r with the high bit set: a leading zero keeps it positive
        raw[63] = 1; // s = 1: leading zeros dropped
        let der = der_signature(&raw);
        assert_eq!(&der[..4], &[0x30, 38, 0x02, 33]);
        assert_eq!(der[4], 0);
        assert_eq!(&der[der.len() - 3..], &[0x02, 1, 1]);
    }
}
