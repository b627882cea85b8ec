//! The store conformance suite: every test runs on SQLite and on PostgreSQL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::Arc;

use common::T0;
use gatehouse_core::account::{Account, Email};
use gatehouse_core::audit::{AuditEvent, EventKind, Outcome, verify_chain};
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::ids::{DeviceId, SessionId, UserId};
use gatehouse_core::password::PasswordHashString;
use gatehouse_core::rng::{SecureRng, SeededRng};
use gatehouse_core::secret::{SecretBytes, Token, TokenHash};
use gatehouse_core::session::{RefreshOutcome, Session, SessionKind, SessionPolicy, derive_successor};
use gatehouse_core::store::{
    AccountStore, AuditStore, EmailToken, MailStore, NewSession, QueuedMail, RefreshRequest, SecretStore, SessionStore,
    SideEffects, Store, StoreError, ThrottleStore,
};
use gatehouse_core::throttle::{LockRule, ThrottlePolicy};
use gatehouse_store::SqlStore;

fn rng() -> SeededRng {
    SeededRng::new(42)
}

fn account(email: &str, rng: &dyn SecureRng) -> Account {
    common::account(email, false, rng)
}

fn email_token(a: &Account, rng: &dyn SecureRng) -> (Token, EmailToken) {
    let t = Token::generate(rng);
    let et = EmailToken {
        hash: t.hash(),
        user_id: a.id,
        purpose: "verify_email".into(),
        expires_at: T0.plus(Span::hours(24)),
    };
    (t, et)
}

fn event(kind: EventKind, user: UserId) -> AuditEvent {
    AuditEvent::new(kind, Outcome::Success).by_user(user)
}

async fn registered(store: &SqlStore, email: &str, rng: &dyn SecureRng) -> Account {
    let a = account(email, rng);
    let (_, et) = email_token(&a, rng);
    store.create_account(&a, &et, SideEffects::event(event(EventKind::AccountRegistered, a.id))).await.unwrap();
    a
}

struct Login {
    session: Session,
    access: Token,
    refresh: Token,
}

async fn login(store: &SqlStore, a: &Account, now: Timestamp, rng: &dyn SecureRng) -> Login {
    let session = Session {
        id: SessionId::generate(now, rng),
        user_id: a.id,
        device_id: DeviceId::generate(now, rng),
        ua_family: "curl/Other".into(),
        device_name: "curl on Other".into(),
        kind: SessionKind::Api,
        created_ip: "127.0.0.1".into(),
        last_ip: "127.0.0.1".into(),
        created_at: now,
        last_seen_at: now,
        expires_at: now.plus(Span::hours(12)),
        auth_time: now,
        revoked_at: None,
        revoke_reason: None,
    };
    let access = Token::generate(rng);
    let refresh = Token::generate(rng);
    let new = NewSession {
        session: session.clone(),
        access_hash: access.hash(),
        access_expires_at: now.plus(Span::minutes(10)),
        refresh_hash: refresh.hash(),
    };
    store.create_session(&new, &[], SideEffects::event(event(EventKind::LoginSucceeded, a.id))).await.unwrap();
    Login { session, access, refresh }
}

fn refresh_request(
    l: &Login,
    presented: &Token,
    key: &SecretBytes,
    now: Timestamp,
    grace: i64,
) -> (RefreshRequest, Token, Token) {
    let (succ, access) = derive_successor(key, presented).unwrap();
    let req = RefreshRequest {
        presented: presented.hash(),
        successor: succ.hash(),
        access: access.hash(),
        access_expires_at: now.plus(Span::minutes(10)),
        device: Some(l.session.device_id),
        ua_family: l.session.ua_family.clone(),
        ip: "127.0.0.1".into(),
        now,
        policy: SessionPolicy { refresh_grace_secs: grace, ..Default::default() },
    };
    (req, succ, access)
}

fn no_fx(_: &RefreshOutcome) -> SideEffects {
    SideEffects::default()
}

async fn chain_ok(store: &SqlStore) -> i64 {
    let records = store.records_after(0, 100_000).await.unwrap();
    verify_chain(&records, &SecretBytes::new(vec![7; 32]), None).expect("audit chain verifies")
}

on_every_backend!(accounts_are_unique_by_email, |store, _clock| {
    let rng = rng();
    let a = registered(&store, "Alice@Example.com", &rng).await;
    let found = store.find_account_by_email(&Email::parse("alice@example.com").unwrap()).await.unwrap().unwrap();
    assert_eq!(found.id, a.id);
    assert_eq!(store.find_account(a.id).await.unwrap().map(|x| x.email), Some(a.email.clone()));
    let dup = account("alice@example.com", &rng);
    let (_, et) = email_token(&dup, &rng);
    let err = store.create_account(&dup, &et, SideEffects::event(event(EventKind::AccountRegistered, dup.id))).await;
    assert!(matches!(err, Err(StoreError::Conflict)), "{err:?}");
    // The failed insert wrote nothing, not even its audit event.
    assert_eq!(chain_ok(&store).await, 1);
    assert!(store.find_account(dup.id).await.unwrap().is_none());
});

on_every_backend!(email_tokens_are_single_use_and_expire, |store, _clock| {
    let rng = rng();
    let a = account("bob@example.com", &rng);
    let (t, et) = email_token(&a, &rng);
    store.create_account(&a, &et, SideEffects::default()).await.unwrap();
    let fx = |u: UserId| SideEffects::event(event(EventKind::EmailVerified, u));
    let now = T0.plus(Span::hours(1));
    assert_eq!(store.consume_email_token(t.hash(), "reset", now, &fx).await.unwrap(), None, "wrong purpose");
    assert_eq!(store.consume_email_token(t.hash(), "verify_email", now, &fx).await.unwrap(), Some(a.id));
    assert_eq!(store.consume_email_token(t.hash(), "verify_email", now, &fx).await.unwrap(), None, "second use");
    let verified = store.find_account(a.id).await.unwrap().unwrap();
    assert_eq!(verified.email_verified_at, Some(now));
    let b = account("carol@example.com", &rng);
    let (t2, et2) = email_token(&b, &rng);
    store.create_account(&b, &et2, SideEffects::default()).await.unwrap();
    let late = T0.plus(Span::hours(24));
    assert_eq!(store.consume_email_token(t2.hash(), "verify_email", late, &fx).await.unwrap(), None, "expired");
    assert_eq!(chain_ok(&store).await, 1);
});

on_every_backend!(throttle_counts_concurrent_failures_exactly_and_locks_once, |store, _clock| {
    let keys = vec!["acct:x".to_string(), "src:y".to_string()];
    let rule = LockRule { after: 10, duration: Span::minutes(30) };
    let on_lock = AuditEvent::new(EventKind::AccountLocked, Outcome::Denied);
    let mut tasks = Vec::new();
    for _ in 0..25 {
        let store = Arc::clone(&store);
        let keys = keys.clone();
        let on_lock = on_lock.clone();
        tasks.push(tokio::spawn(async move {
            let fx = SideEffects::event(AuditEvent::new(EventKind::LoginFailed, Outcome::Failure));
            store.record_failure(&keys, rule, T0, fx, on_lock).await.unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let counters = store.load_counters(&keys).await.unwrap();
    assert_eq!(counters[0].consecutive, 25);
    assert_eq!(counters[1].consecutive, 25);
    assert_eq!(counters[0].locked_until, Some(T0.plus(Span::minutes(30))));
    assert_eq!(counters[1].locked_until, None, "only the account counter locks");
    let records = store.records_after(0, 1000).await.unwrap();
    let locks = records.iter().filter(|r| r.kind == "account_locked").count();
    assert_eq!(locks, 1, "the lock event is written exactly once");
    assert_eq!(chain_ok(&store).await, 26);
    let none = store.load_counters(&["acct:unknown".to_string()]).await.unwrap();
    assert_eq!(none[0].consecutive, 0);
    let p = ThrottlePolicy::default();
    assert!(p.validate().is_ok());
});

on_every_backend!(sessions_list_revoke_and_known_devices, |store, _clock| {
    let rng = rng();
    let a = registered(&store, "dave@example.com", &rng).await;
    let l1 = login(&store, &a, T0, &rng).await;
    let l2 = login(&store, &a, T0.plus(Span::secs(1)), &rng).await;
    let l3 = login(&store, &a, T0.plus(Span::secs(2)), &rng).await;
    let found = store.find_by_access(l1.access.hash()).await.unwrap().unwrap();
    let (s, exp, acct) = (found.session, found.expires_at, found.account);
    assert_eq!(found.binding, None, "an unbound session has no binding");
    assert_eq!((s.id, acct.id, exp), (l1.session.id, a.id, T0.plus(Span::minutes(10))));
    assert!(store.find_by_access(TokenHash::from_bytes([9; 32])).await.unwrap().is_none());
    let listed: Vec<_> = store.list_sessions(a.id, T0).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, vec![l3.session.id, l2.session.id, l1.session.id]);
    assert!(store.is_known_device(a.id, l1.session.device_id).await.unwrap());
    assert!(!store.is_known_device(a.id, DeviceId::generate(T0, &rng)).await.unwrap());
    // Someone else's session id cannot be revoked.
    let b = registered(&store, "eve@example.com", &rng).await;
    assert!(!store.revoke_session(b.id, l1.session.id, "test", T0, SideEffects::default()).await.unwrap());
    assert!(store.revoke_session(a.id, l1.session.id, "revoked", T0, SideEffects::default()).await.unwrap());
    assert!(store.find_by_access(l1.access.hash()).await.unwrap().is_none(), "revocation is immediate");
    let n = store.revoke_other_sessions(a.id, Some(l3.session.id), "others", T0, SideEffects::default()).await.unwrap();
    assert_eq!(n, 1);
    let listed: Vec<_> = store.list_sessions(a.id, T0).await.unwrap().into_iter().map(|s| s.id).collect();
    assert_eq!(listed, vec![l3.session.id]);
    assert!(store.find_by_access(l2.access.hash()).await.unwrap().is_none());
    // The revoked session's refresh token is dead too.
    let key = SecretBytes::new(vec![3; 32]);
    let (req, _, _) = refresh_request(&l2, &l2.refresh, &key, T0.plus(Span::secs(5)), 0);
    assert_eq!(store.rotate_refresh(&req, &no_fx).await.unwrap(), RefreshOutcome::Invalid);
});

on_every_backend!(password_change_revokes_every_other_session, |store, _clock| {
    let rng = rng();
    let a = registered(&store, "frank@example.com", &rng).await;
    let keep = login(&store, &a, T0, &rng).await;
    let other = login(&store, &a, T0, &rng).await;
    let new_hash = PasswordHashString::from_stored("$argon2id$v=19$m=19456,t=2,p=1$bmV3$bmV3".into());
    let now = T0.plus(Span::minutes(1));
    let fx = SideEffects::event(event(EventKind::PasswordChanged, a.id));
    let n = store.change_password(a.id, &new_hash, Some(keep.session.id), now, fx).await.unwrap();
    assert_eq!(n, 1);
    let stored = store.find_account(a.id).await.unwrap().unwrap();
    assert_eq!(stored.password_hash, new_hash);
    assert_eq!(stored.password_changed_at, now);
    assert!(store.find_by_access(other.access.hash()).await.unwrap().is_none());
    assert!(store.find_by_access(keep.access.hash()).await.unwrap().is_some());
    // Rehash only applies to the hash it was computed from.
    let newer = PasswordHashString::from_stored("$argon2id$v=19$m=32768,t=2,p=1$eA$eA".into());
    assert!(
        !store
            .rehash_password(a.id, &PasswordHashString::from_stored("stale".into()), &newer, SideEffects::default())
            .await
            .unwrap()
    );
    assert!(store.rehash_password(a.id, &new_hash, &newer, SideEffects::default()).await.unwrap());
});

on_every_backend!(refresh_rotates_and_reuse_revokes_the_family, |store, _clock| {
    let rng = rng();
    let key = SecretBytes::new(vec![3; 32]);
    let a = registered(&store, "gina@example.com", &rng).await;
    let l = login(&store, &a, T0, &rng).await;
    let now = T0.plus(Span::minutes(5));
    let (req, r2, a2) = refresh_request(&l, &l.refresh, &key, now, 0);
    let fx = |o: &RefreshOutcome| match o {
        RefreshOutcome::Reuse { user_id, .. } => {
            SideEffects::event(AuditEvent::new(EventKind::RefreshReuse, Outcome::Denied).about(*user_id))
        }
        _ => SideEffects::default(),
    };
    assert!(matches!(store.rotate_refresh(&req, &fx).await.unwrap(), RefreshOutcome::Rotated { .. }));
    assert!(store.find_by_access(a2.hash()).await.unwrap().is_some());
    // R1 again: reuse → family and session revoked, R2 and its access token dead too.
    let (req_again, _, _) = refresh_request(&l, &l.refresh, &key, now.plus(Span::secs(1)), 0);
    assert!(matches!(store.rotate_refresh(&req_again, &fx).await.unwrap(), RefreshOutcome::Reuse { .. }));
    let (req2, _, _) = refresh_request(&l, &r2, &key, now.plus(Span::secs(2)), 0);
    assert_eq!(store.rotate_refresh(&req2, &fx).await.unwrap(), RefreshOutcome::Invalid);
    assert!(store.find_by_access(a2.hash()).await.unwrap().is_none());
    assert!(store.find_by_access(l.access.hash()).await.unwrap().is_none());
    let records = store.records_after(0, 100).await.unwrap();
    assert!(records.iter().any(|r| r.kind == "refresh_reuse"));
    // A refresh from another device is refused without rotating.
    let l2 = login(&store, &a, now, &rng).await;
    let (mut req3, _, _) = refresh_request(&l2, &l2.refresh, &key, now, 0);
    req3.device = Some(DeviceId::generate(now, &rng));
    assert!(matches!(store.rotate_refresh(&req3, &fx).await.unwrap(), RefreshOutcome::DeviceMismatch { .. }));
    let (req4, _, _) = refresh_request(&l2, &l2.refresh, &key, now, 0);
    assert!(matches!(store.rotate_refresh(&req4, &fx).await.unwrap(), RefreshOutcome::Rotated { .. }));
    chain_ok(&store).await;
});

async fn race(store: &Arc<SqlStore>, grace: i64) -> (Vec<RefreshOutcome>, Token, Login) {
    let rng = rng();
    let key = SecretBytes::new(vec![3; 32]);
    let a = registered(store, &format!("race{grace}@example.com"), &rng).await;
    let l = login(store, &a, T0, &rng).await;
    let now = T0.plus(Span::minutes(1));
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let store = Arc::clone(store);
        let (req, _, _) = refresh_request(&l, &l.refresh, &key, now, grace);
        tasks.push(tokio::spawn(async move { store.rotate_refresh(&req, &no_fx).await.unwrap() }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    let (_, succ, _) = refresh_request(&l, &l.refresh, &key, now, grace);
    (outcomes, succ, l)
}

on_every_backend!(fifty_parallel_refreshes_without_grace_leave_no_live_branch, |store, _clock| {
    let (outcomes, succ, l) = race(&store, 0).await;
    let rotated = outcomes.iter().filter(|o| matches!(o, RefreshOutcome::Rotated { .. })).count();
    let reused = outcomes.iter().filter(|o| matches!(o, RefreshOutcome::Reuse { .. })).count();
    assert_eq!(rotated, 1, "{outcomes:?}");
    assert!(reused >= 1, "the losers trigger reuse detection");
    // The family is revoked: the single successor is dead as well.
    let key = SecretBytes::new(vec![3; 32]);
    let (req, _, _) = refresh_request(&l, &succ, &key, T0.plus(Span::minutes(2)), 0);
    assert_eq!(store.rotate_refresh(&req, &no_fx).await.unwrap(), RefreshOutcome::Invalid);
});

on_every_backend!(fifty_parallel_refreshes_within_grace_share_one_successor, |store, _clock| {
    let (outcomes, succ, l) = race(&store, 10).await;
    let rotated = outcomes.iter().filter(|o| matches!(o, RefreshOutcome::Rotated { .. })).count();
    let grace = outcomes.iter().filter(|o| matches!(o, RefreshOutcome::Grace { .. })).count();
    assert_eq!((rotated, grace), (1, 49), "{outcomes:?}");
    // Exactly one live successor, and it works once.
    let key = SecretBytes::new(vec![3; 32]);
    let (req, _, _) = refresh_request(&l, &succ, &key, T0.plus(Span::minutes(2)), 10);
    assert!(matches!(store.rotate_refresh(&req, &no_fx).await.unwrap(), RefreshOutcome::Rotated { .. }));
    // The original token outside the grace window is reuse.
    let (old, _, _) = refresh_request(&l, &l.refresh, &key, T0.plus(Span::minutes(3)), 10);
    assert!(matches!(store.rotate_refresh(&old, &no_fx).await.unwrap(), RefreshOutcome::Reuse { .. }));
});

on_every_backend!(audit_history_and_chain, |store, _clock| {
    let rng = rng();
    let a = registered(&store, "hana@example.com", &rng).await;
    let b = registered(&store, "ivan@example.com", &rng).await;
    for i in 0..5 {
        store.append(vec![event(EventKind::LoginFailed, a.id).with("i", i)]).await.unwrap();
    }
    store.append(vec![event(EventKind::LoginFailed, b.id)]).await.unwrap();
    let h = store.history(a.id, None, 3).await.unwrap();
    assert_eq!(h.len(), 3);
    assert!(h.windows(2).all(|w| w[0].seq > w[1].seq));
    assert!(h.iter().all(|r| r.subject.as_deref() == Some(a.id.to_string().as_str())));
    let older = store.history(a.id, Some(h[2].seq), 10).await.unwrap();
    assert_eq!(older.len(), 3, "2 more failures + registration");
    assert_eq!(chain_ok(&store).await, 8);
    // Concurrent appenders keep one linear chain.
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let store = Arc::clone(&store);
        let id = a.id;
        tasks.push(tokio::spawn(async move { store.append(vec![event(EventKind::Logout, id)]).await.unwrap() }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(chain_ok(&store).await, 28);
    // One append of many events (cut into multi-row inserts of 16, 16, 4 and 1) keeps their
    // order and the chain.
    let many: Vec<_> = (0..37).map(|i| event(EventKind::LoginFailed, b.id).with("i", i)).collect();
    store.append(many).await.unwrap();
    assert_eq!(chain_ok(&store).await, 65);
    let newest = store.history(b.id, None, 37).await.unwrap();
    let order: Vec<i64> = newest
        .iter()
        .rev()
        .map(|r| serde_json::from_str::<serde_json::Value>(&r.details).unwrap()["i"].as_i64().unwrap())
        .collect();
    let want: Vec<i64> = (0..37).collect();
    assert_eq!(order, want, "events keep the order they were given in");
});

on_every_backend!(secrets_are_created_once, |store, _clock| {
    let mut tasks = Vec::new();
    for i in 0..10u8 {
        let store = Arc::clone(&store);
        tasks.push(tokio::spawn(async move { store.get_or_init_secret("audit_key", vec![i; 8], T0).await.unwrap() }));
    }
    let mut values = Vec::new();
    for t in tasks {
        values.push(t.await.unwrap());
    }
    assert!(values.windows(2).all(|w| w[0] == w[1]), "{values:?}");
    assert_eq!(store.get_or_init_secret("audit_key", vec![99; 8], T0).await.unwrap(), values[0]);
});

on_every_backend!(mail_outbox_claims_once_and_retries, |store, _clock| {
    let m = QueuedMail { id: "m1".into(), recipient: "x@example.com".into(), sealed: vec![1, 2, 3], created_at: T0 };
    store.record(SideEffects::default().mail(m)).await.unwrap();
    assert_eq!(store.pending_mail().await.unwrap(), 1);
    let (a, b) = tokio::join!(store.claim_mail(T0, Span::secs(60), 10), store.claim_mail(T0, Span::secs(60), 10));
    assert_eq!(a.unwrap().len() + b.unwrap().len(), 1, "claimed by exactly one worker");
    assert!(store.claim_mail(T0.plus(Span::secs(30)), Span::secs(60), 10).await.unwrap().is_empty(), "leased");
    store.mark_mail_failed("m1", "smtp down", T0.plus(Span::secs(5))).await.unwrap();
    let again = store.claim_mail(T0.plus(Span::secs(5)), Span::secs(60), 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].sealed, vec![1, 2, 3]);
    store.mark_mail_sent("m1", T0.plus(Span::secs(6))).await.unwrap();
    assert_eq!(store.pending_mail().await.unwrap(), 0);
    assert!(store.claim_mail(T0.plus(Span::hours(1)), Span::secs(60), 10).await.unwrap().is_empty());
    store.ping().await.unwrap();
});

#[tokio::test]
async fn writes_fail_closed_without_an_audit_signer() {
    let clock = gatehouse_core::clock::ManualClock::new(T0);
    let store = SqlStore::connect(&common::fresh_sqlite_url(), Default::default(), Arc::new(clock)).await.unwrap();
    let rng = rng();
    let a = account("zed@example.com", &rng);
    let (_, et) = email_token(&a, &rng);
    let r = store.create_account(&a, &et, SideEffects::event(event(EventKind::AccountRegistered, a.id))).await;
    assert!(r.is_err());
    assert!(store.find_account(a.id).await.unwrap().is_none(), "no state change without its audit event");
}

mod keys_and_replay {
    use super::*;
    use gatehouse_core::apikey::{
        ApiKey, ApiKeyId, ApiKeyStatus, IpAllowlist, KeyKind, KeyPolicy, NewApiKey, ScopeSet,
    };
    use gatehouse_core::replay::ReplayKey;
    use gatehouse_core::store::{ApiKeyStore, KeyLastUse, KeyUsage, ReplayStore, StoredApiKey};

    fn new_key(owner: UserId, existing: u32, rng: &dyn SecureRng) -> ApiKey {
        let req = NewApiKey {
            label: "bot".into(),
            kind: KeyKind::Hmac,
            scopes: ScopeSet::read_only_default(),
            allowlist: IpAllowlist::empty(),
            expires_at: None,
        };
        ApiKey::create(ApiKeyId::generate(rng), owner, req, existing, T0, &KeyPolicy::default()).unwrap()
    }

    on_every_backend!(api_keys_round_trip_with_a_per_owner_limit, |store, _clock| {
        let rng = rng();
        let a = registered(&store, "keys@example.com", &rng).await;
        let mut ids = Vec::new();
        for i in 0..3 {
            let k = StoredApiKey { key: new_key(a.id, i, &rng), secret_sealed: Some(vec![1, 2, 3]), public_key: None };
            assert!(store.create_api_key(&k, 3, SideEffects::default()).await.unwrap());
            ids.push(k.key.id);
        }
        let over = StoredApiKey { key: new_key(a.id, 3, &rng), secret_sealed: None, public_key: Some(vec![9; 32]) };
        assert!(!store.create_api_key(&over, 3, SideEffects::default()).await.unwrap(), "limit enforced in the store");
        let found = store.find_api_key(ids[0]).await.unwrap().unwrap();
        assert_eq!(found.secret_sealed, Some(vec![1, 2, 3]));
        assert_eq!(found.key.id, ids[0]);
        assert_eq!(store.list_api_keys(a.id).await.unwrap().len(), 3);
        // Revoking frees a slot.
        let mut k = found.key.clone();
        k.revoke(T0);
        assert!(store.update_api_key(&k, SideEffects::default()).await.unwrap());
        assert_eq!(store.find_api_key(ids[0]).await.unwrap().unwrap().key.status, ApiKeyStatus::Revoked);
        assert!(store.create_api_key(&over, 3, SideEffects::default()).await.unwrap());
        // Another owner cannot update it.
        let b = registered(&store, "other@example.com", &rng).await;
        let mut stolen = k.clone();
        stolen.owner = b.id;
        assert!(!store.update_api_key(&stolen, SideEffects::default()).await.unwrap());
        // Usage and last use, batched.
        let u =
            KeyUsage { key_id: ids[1], route: "GET /v1/accounts".into(), outcome: "ok".into(), count: 3, last_at: T0 };
        store
            .flush_key_usage(
                &[u.clone(), u.clone()],
                &[KeyLastUse { key_id: ids[1], at: T0, ip: Some("10.0.0.1".into()), user_agent: Some("ccxt".into()) }],
            )
            .await
            .unwrap();
        let usage = store.key_usage(ids[1]).await.unwrap();
        assert_eq!(usage.len(), 1);
        assert_eq!(usage[0].count, 6);
        let last = store.find_api_key(ids[1]).await.unwrap().unwrap().key.last_used.unwrap();
        assert_eq!((last.at, last.ip.map(|i| i.to_string())), (T0, Some("10.0.0.1".into())));
    });

    on_every_backend!(expiry_reminders_advance_once_per_stage, |store, _clock| {
        let rng = rng();
        let a = registered(&store, "remind@example.com", &rng).await;
        let k = StoredApiKey { key: new_key(a.id, 0, &rng), secret_sealed: None, public_key: Some(vec![1; 32]) };
        assert!(store.create_api_key(&k, 10, SideEffects::default()).await.unwrap());
        let due = store.keys_expiring_before(k.key.expires_at.plus(Span::secs(1)), 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1, 0);
        let ev = || SideEffects::event(AuditEvent::new(EventKind::ApiKeyExpiryReminder, Outcome::Success));
        let (x, y) =
            tokio::join!(store.mark_key_reminded(k.key.id, 2, ev()), store.mark_key_reminded(k.key.id, 2, ev()));
        assert_eq!([x.unwrap(), y.unwrap()].iter().filter(|b| **b).count(), 1, "exactly one instance sends it");
        assert!(!store.mark_key_reminded(k.key.id, 1, ev()).await.unwrap(), "stages only move forward");
        assert!(store.mark_key_reminded(k.key.id, 3, ev()).await.unwrap());
        assert!(store.keys_expiring_before(k.key.expires_at, 10).await.unwrap().is_empty());
    });

    on_every_backend!(freezing_revokes_sessions_and_suspends_keys_once, |store, _clock| {
        use gatehouse_core::store::RiskStore;
        let rng = rng();
        let a = registered(&store, "freeze@example.com", &rng).await;
        let l = login(&store, &a, T0, &rng).await;
        let k = StoredApiKey { key: new_key(a.id, 0, &rng), secret_sealed: None, public_key: Some(vec![1; 32]) };
        assert!(store.create_api_key(&k, 10, SideEffects::default()).await.unwrap());
        let fx = || SideEffects::event(AuditEvent::new(EventKind::AccountFrozen, Outcome::Success).about(a.id));
        let (x, y) =
            tokio::join!(store.freeze_account(a.id, "test", T0, fx()), store.freeze_account(a.id, "test", T0, fx()));
        assert_eq!([x.unwrap(), y.unwrap()].iter().filter(|b| **b).count(), 1);
        assert!(store.find_account(a.id).await.unwrap().unwrap().is_frozen());
        assert!(store.find_by_access(l.access.hash()).await.unwrap().is_none(), "sessions revoked");
        assert_eq!(store.find_api_key(k.key.id).await.unwrap().unwrap().key.status, ApiKeyStatus::Suspended);
        assert!(store.unfreeze_account(a.id, SideEffects::default()).await.unwrap());
        assert!(!store.find_account(a.id).await.unwrap().unwrap().is_frozen());
        assert_eq!(chain_ok(&store).await, 3, "registration, login and exactly one freeze event");
        // Risk profiles round-trip.
        assert_eq!(store.load_risk_profile(a.id).await.unwrap(), None);
        store.save_risk_profiles(&[(a.id, "{\"v\":1}".into())], T0).await.unwrap();
        store.save_risk_profiles(&[(a.id, "{\"v\":2}".into())], T0).await.unwrap();
        assert_eq!(store.load_risk_profile(a.id).await.unwrap().as_deref(), Some("{\"v\":2}"));
        store.save_risk_global("{}", T0).await.unwrap();
        assert_eq!(store.load_risk_global().await.unwrap().as_deref(), Some("{}"));
    });

    // One batch mixing everything the writer must tell apart: new keys (more than one
    // multi-row statement's worth), copies of one new key, a live record and an expired one.
    on_every_backend!(replay_batches_mixing_new_live_expired_and_duplicate_keys, |store, _clock| {
        let key = |name: &str| ReplayKey::derive("batch", &[name.as_bytes()]);
        assert!(store.insert_if_absent(&key("live"), T0, Span::secs(60)).await.unwrap());
        assert!(store.insert_if_absent(&key("expired"), T0, Span::secs(1)).await.unwrap());
        let at = T0.plus(Span::secs(2));
        let mut names: Vec<String> = (0..37).map(|i| format!("new-{i}")).collect();
        names.extend(["live", "expired", "twice", "twice", "twice"].map(String::from));
        let barrier = Arc::new(tokio::sync::Barrier::new(names.len()));
        let tasks: Vec<_> = names
            .iter()
            .map(|n| {
                let (store, k, barrier) = (Arc::clone(&store), key(n), Arc::clone(&barrier));
                tokio::spawn(async move {
                    barrier.wait().await;
                    store.insert_if_absent(&k, at, Span::secs(60)).await.unwrap()
                })
            })
            .collect();
        let mut fresh = std::collections::BTreeMap::<&str, Vec<bool>>::new();
        for (n, t) in names.iter().zip(tasks) {
            fresh.entry(n.as_str()).or_default().push(t.await.unwrap());
        }
        assert!((0..37).all(|i| fresh[format!("new-{i}").as_str()] == [true]), "{fresh:?}");
        assert_eq!(fresh["live"], [false], "a live record wins");
        assert_eq!(fresh["expired"], [true], "an expired record is taken over");
        let mut twice = fresh["twice"].clone();
        twice.sort();
        assert_eq!(twice, [false, false, true], "one key three times: accepted once");
        // What was written stands: every key is now a replay.
        for n in ["new-0", "new-36", "expired", "twice", "live"] {
            assert!(!store.insert_if_absent(&key(n), at.plus(Span::secs(1)), Span::secs(60)).await.unwrap(), "{n}");
        }
    });

    on_every_backend!(replay_store_accepts_each_key_once_under_concurrency, |store, _clock| {
        let key = ReplayKey::derive("test", &[b"nonce-1"]);
        let mut tasks = Vec::new();
        for _ in 0..100 {
            let store = Arc::clone(&store);

            tasks.push(tokio::spawn(async move { store.insert_if_absent(&key, T0, Span::secs(60)).await.unwrap() }));
        }
        let mut fresh = 0;
        for t in tasks {
            if t.await.unwrap() {
                fresh += 1;
            }
        }
        assert_eq!(fresh, 1);
        // Still a replay inside the window, fresh again once it expired.
        assert!(!store.insert_if_absent(&key, T0.plus(Span::secs(59)), Span::secs(60)).await.unwrap());
        assert!(store.insert_if_absent(&key, T0.plus(Span::secs(60)), Span::secs(60)).await.unwrap());
        let other = ReplayKey::derive("test", &[b"nonce-2"]);
        assert!(store.insert_if_absent(&other, T0, Span::secs(1)).await.unwrap());
        assert_eq!(store.sweep_replay(T0.plus(Span::secs(2))).await.unwrap(), 1);
    });
}
