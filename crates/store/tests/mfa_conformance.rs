//! Second-factor storage, on SQLite and PostgreSQL: every single-use check-and-set succeeds
//! exactly once under concurrency (F8), and the rules around it hold.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{T0, user};
use gatehouse_core::clock::Span;
use gatehouse_core::ids::{SessionId, UserId};
use gatehouse_core::mfa::StoredBackupCode;
use gatehouse_core::mfa::store::{CeremonyRow, MfaStore, MfaToken, MfaTokenMatch, MfaTokenPurpose};
use gatehouse_core::rng::{SecureRng, SeededRng};
use gatehouse_core::secret::Token;
use gatehouse_core::store::SideEffects;

/// `n` accounts (`{prefix}{i}@example.com`) with TOTP active, step 100 used.
async fn totp_users(store: &gatehouse_store::SqlStore, prefix: &str, n: usize, rng: &dyn SecureRng) -> Vec<UserId> {
    let mut users = Vec::with_capacity(n);
    for i in 0..n {
        let u = user(store, &format!("{prefix}{i}@example.com"), rng).await;
        assert!(store.begin_totp(u, b"seed", T0, SideEffects::default()).await.unwrap());
        assert!(store.activate_totp(u, 100, None, T0, SideEffects::default()).await.unwrap());
        users.push(u);
    }
    users
}

on_every_backend!(totp_steps_are_single_use_and_monotonic, |store, _clock| {
    let rng = SeededRng::new(7);
    let u = user(&store, "t@example.com", &rng).await;
    assert!(store.begin_totp(u, b"sealed-seed", T0, SideEffects::default()).await.unwrap());
    assert!(store.find_totp(u).await.unwrap().unwrap().confirmed_at.is_none());
    // A second pending enrolment replaces the first; an active one blocks a new one.
    assert!(store.begin_totp(u, b"sealed-seed-2", T0, SideEffects::default()).await.unwrap());
    assert!(store.activate_totp(u, 100, None, T0, SideEffects::default()).await.unwrap());
    assert!(!store.begin_totp(u, b"x", T0, SideEffects::default()).await.unwrap());
    assert!(!store.activate_totp(u, 101, None, T0, SideEffects::default()).await.unwrap(), "already active");
    assert!(!store.consume_totp_step(u, 100, T0, SideEffects::default()).await.unwrap(), "step used at activation");
    assert!(!store.consume_totp_step(u, 99, T0, SideEffects::default()).await.unwrap(), "older step");
    assert!(store.consume_totp_step(u, 101, T0, SideEffects::default()).await.unwrap());
    let mut tasks = vec![];
    for _ in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.consume_totp_step(u, 102, T0, SideEffects::default()).await.unwrap() }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1, "one step, twenty parallel submissions, one success");
    assert_eq!(store.find_totp(u).await.unwrap().unwrap().last_step, Some(102));
    assert!(store.delete_totp(u, SideEffects::default()).await.unwrap());
    assert!(store.find_totp(u).await.unwrap().is_none());
    // A new seed starts a new step history.
    assert!(store.begin_totp(u, b"new-seed", T0, SideEffects::default()).await.unwrap());
    assert!(store.activate_totp(u, 101, None, T0, SideEffects::default()).await.unwrap());
    assert!(store.consume_totp_step(u, 102, T0, SideEffects::default()).await.unwrap());
});

on_every_backend!(backup_codes_are_single_use_and_replaced_as_a_set, |store, _clock| {
    let rng = SeededRng::new(8);
    let u = user(&store, "b@example.com", &rng).await;
    let set: Vec<_> = (0..10).map(|i| StoredBackupCode::from_stored(format!("$argon2id$v=19$code{i}"))).collect();
    store.replace_backup_codes(u, &set, T0, SideEffects::default()).await.unwrap();
    let mut tasks = vec![];
    for _ in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.consume_backup_code(u, 3, T0, SideEffects::default()).await.unwrap() }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    let rows = store.backup_codes(u).await.unwrap();
    assert_eq!((rows.len(), rows.iter().filter(|r| r.used).count()), (10, 1));
    assert_eq!(rows.iter().map(|r| r.position).collect::<Vec<_>>(), (0..10).collect::<Vec<_>>());
    // Regeneration: a whole new set, nothing used, the old hashes gone.
    let fresh: Vec<_> = (0..10).map(|i| StoredBackupCode::from_stored(format!("$argon2id$v=19$new{i}"))).collect();
    store.replace_backup_codes(u, &fresh, T0, SideEffects::default()).await.unwrap();
    let rows = store.backup_codes(u).await.unwrap();
    assert!(rows.iter().all(|r| !r.used && r.hash.as_str().contains("new")));
});

on_every_backend!(mfa_tokens_are_single_use_bound_and_expiring, |store, _clock| {
    let rng = SeededRng::new(9);
    let u = user(&store, "k@example.com", &rng).await;
    let session = SessionId::generate(T0, &rng);
    let token = Token::generate(&rng);
    let t = MfaToken {
        hash: token.hash(),
        user_id: u,
        purpose: MfaTokenPurpose::StepUp,
        session_id: Some(session),
        action: "withdraw".into(),
        binding: "ab".repeat(32),
        factor: "totp".into(),
        strength: "any_second_factor".into(),
        detail: "{}".into(),
        created_at: T0,
        expires_at: T0.plus(Span::secs(300)),
    };
    store.create_mfa_token(&t, SideEffects::default()).await.unwrap();
    let binding = "ab".repeat(32);
    let other = "cd".repeat(32);
    let m = |action: &'static str, b: String| MfaTokenMatch {
        hash: token.hash(),
        purpose: MfaTokenPurpose::StepUp,
        user_id: Some(u),
        session_id: Some(session),
        action: Some(action),
        binding: Some(Box::leak(b.into_boxed_str())),
    };
    // Another action or binding: refused, and the token is not burnt.
    assert!(store.consume_mfa_token(&m("create_api_key", binding.clone()), T0).await.unwrap().is_none());
    assert!(store.consume_mfa_token(&m("withdraw", other), T0).await.unwrap().is_none());
    // Expired: refused.
    assert!(
        store.consume_mfa_token(&m("withdraw", binding.clone()), T0.plus(Span::secs(300))).await.unwrap().is_none()
    );
    // Twenty at once: one wins.
    let mut tasks = vec![];
    for _ in 0..20 {
        let s = store.clone();
        let mm = m("withdraw", binding.clone());
        tasks.push(tokio::spawn(async move { s.consume_mfa_token(&mm, T0).await.unwrap().is_some() }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    // SMS resend: revoking a binding's live codes.
    let sms = Token::generate(&rng);
    let s = MfaToken { hash: sms.hash(), purpose: MfaTokenPurpose::Sms, session_id: None, ..t.clone() };
    store.create_mfa_token(&s, SideEffects::default()).await.unwrap();
    assert_eq!(store.revoke_mfa_tokens(MfaTokenPurpose::Sms, &binding, T0).await.unwrap(), 1);
    assert!(store.find_mfa_token(sms.hash(), MfaTokenPurpose::Sms, T0).await.unwrap().is_none());
});

on_every_backend!(webauthn_ceremonies_are_taken_once, |store, _clock| {
    let rng = SeededRng::new(10);
    let u = user(&store, "w@example.com", &rng).await;
    let c = CeremonyRow {
        id: "ceremony-1".into(),
        user_id: Some(u),
        kind: "step_up".into(),
        state: "{}".into(),
        detail: "{}".into(),
        expires_at: T0.plus(Span::secs(300)),
    };
    store.create_ceremony(&c).await.unwrap();
    assert!(store.take_ceremony("ceremony-1", "login", T0).await.unwrap().is_none(), "kind must match");
    let mut tasks = vec![];
    for _ in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.take_ceremony("ceremony-1", "step_up", T0).await.unwrap().is_some() }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    // An expired ceremony is not handed out (R29: after 300 s).
    store.create_ceremony(&CeremonyRow { id: "ceremony-2".into(), ..c }).await.unwrap();
    assert!(store.take_ceremony("ceremony-2", "step_up", T0.plus(Span::secs(301))).await.unwrap().is_none());
});

// Group commit (issue 4): concurrent marks land in shared batches, yet each keeps its own
// atomic outcome — one success per (user, step), duplicates inside a batch refused, and the
// success event commits with (and only with) the step it records.
on_every_backend!(batched_step_marks_keep_exactly_once_and_their_events, |store, _clock| {
    use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
    use gatehouse_core::store::AuditStore;
    let rng = SeededRng::new(11);
    let users = totp_users(&store, "g", 8, &rng).await;
    let mut tasks = vec![];
    for &u in &users {
        // Per user: six submissions of step 101 and two of the older step 100, all at once.
        for step in [101, 101, 100, 101, 101, 100, 101, 101] {
            let s = store.clone();
            tasks.push(tokio::spawn(async move {
                let e = AuditEvent::new(EventKind::TotpVerified, Outcome::Success).by_user(u).with("step", step);
                (u, s.consume_totp_step(u, step, T0, SideEffects::event(e)).await.unwrap())
            }));
        }
    }
    let mut wins = std::collections::HashMap::new();
    for t in tasks {
        let (u, won) = t.await.unwrap();
        *wins.entry(u).or_insert(0) += usize::from(won);
    }
    for u in &users {
        assert_eq!(wins[u], 1, "exactly one success per user and step");
        assert_eq!(store.find_totp(*u).await.unwrap().unwrap().last_step, Some(101));
        assert!(!store.consume_totp_step(*u, 101, T0, SideEffects::default()).await.unwrap(), "still used");
    }
    let verified =
        store.records_after(0, 10_000).await.unwrap().into_iter().filter(|r| r.kind == "totp_verified").count();
    assert_eq!(verified, users.len(), "one event per success, none for the refused marks");
});

// A failing operation in a group commit fails alone: the batch is rolled back and run again
// with a savepoint around each operation, so its neighbours still succeed and commit their
// events, and nothing of the failed one (nor its event) remains.
on_every_backend!(a_failing_operation_does_not_fail_its_batch, |store, _clock| {
    use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
    use gatehouse_core::store::AuditStore;
    let rng = SeededRng::new(12);
    let users = totp_users(&store, "f", 6, &rng).await;
    // A token whose hash is taken: inserting it again is a unique violation.
    let taken = MfaToken {
        hash: Token::generate(&rng).hash(),
        user_id: users[0],
        purpose: MfaTokenPurpose::StepUp,
        session_id: Some(SessionId::generate(T0, &rng)),
        action: "withdraw".into(),
        binding: String::new(),
        factor: "totp".into(),
        strength: "any_second_factor".into(),
        detail: "{}".into(),
        created_at: T0,
        expires_at: T0.plus(Span::secs(300)),
    };
    store.create_mfa_token(&taken, SideEffects::default()).await.unwrap();
    let mut marks = vec![];
    let mut dups = vec![];
    for (i, &u) in users.iter().enumerate() {
        let s = store.clone();
        marks.push(tokio::spawn(async move {
            let e = AuditEvent::new(EventKind::TotpVerified, Outcome::Success).by_user(u);
            s.consume_totp_step(u, 101, T0, SideEffects::event(e)).await.unwrap()
        }));
        if i % 2 == 0 {
            let (s, t) = (store.clone(), taken.clone());
            dups.push(tokio::spawn(async move {
                let e = AuditEvent::new(EventKind::StepUpSucceeded, Outcome::Success).by_user(t.user_id);
                s.create_mfa_token(&t, SideEffects::event(e)).await
            }));
        }
    }
    for m in marks {
        assert!(m.await.unwrap(), "every neighbour of the failing insert keeps its step");
    }
    for d in dups {
        assert!(d.await.unwrap().is_err(), "the duplicate token is refused");
    }
    let records = store.records_after(0, 10_000).await.unwrap();
    assert_eq!(records.iter().filter(|r| r.kind == "totp_verified").count(), users.len());
    assert_eq!(records.iter().filter(|r| r.kind == "step_up_succeeded").count(), 0, "no event of a failed write");
    for u in &users {
        assert_eq!(store.find_totp(*u).await.unwrap().unwrap().last_step, Some(101));
    }
});

// A step-up grant is one atomic write (issue 4, R43): the used step, the step-up token, the
// session's proof and its rotated access token (every earlier one gone) commit together; a
// grant whose step was already used writes none of it.
on_every_backend!(step_up_grants_commit_whole_or_not_at_all, |store, _clock| {
    use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
    use gatehouse_core::mfa::store::{AccessRotation, FactorUse, StepUpGrant};
    use gatehouse_core::store::{AuditStore, SessionStore};
    let rng = SeededRng::new(13);
    let u = totp_users(&store, "grant", 1, &rng).await[0];
    let (new, first_access, _) = common::new_session(u, &rng);
    let session = new.session.clone();
    store.create_session(&new, &[], SideEffects::default()).await.unwrap();
    let grant = |step: u64, rng: &SeededRng| {
        let token = Token::generate(rng);
        let access = Token::generate(rng);
        let g = StepUpGrant {
            used: FactorUse::TotpStep(step),
            token: MfaToken {
                hash: token.hash(),
                user_id: u,
                purpose: MfaTokenPurpose::StepUp,
                session_id: Some(session.id),
                action: "create_api_key".into(),
                // Every text column distinct, so a column written from the wrong argument shows.
                binding: "b1".repeat(32),
                factor: "totp".into(),
                strength: "any_second_factor".into(),
                detail: r#"{"factor":"totp"}"#.into(),
                created_at: T0,
                expires_at: T0.plus(Span::secs(300)),
            },
            access: Some(AccessRotation { hash: access.hash(), expires_at: T0.plus(Span::minutes(10)) }),
        };
        (g, token, access)
    };
    let ok = || SideEffects::event(AuditEvent::new(EventKind::StepUpSucceeded, Outcome::Success).by_user(u));
    let (g1, t1, a1) = grant(101, &rng);
    assert!(store.grant_step_up(&g1, ok()).await.unwrap());
    let stored = store.find_mfa_token(t1.hash(), MfaTokenPurpose::StepUp, T0).await.unwrap().expect("token stored");
    assert_eq!(format!("{stored:?}"), format!("{:?}", g1.token), "every column as granted");
    assert_eq!(store.session_proof(session.id).await.unwrap(), Some(("any_second_factor".into(), T0)));
    assert!(store.find_by_access(first_access.hash()).await.unwrap().is_none(), "the old access token is gone");
    assert_eq!(
        store.find_by_access(a1.hash()).await.unwrap().map(|r| (r.session.id, r.expires_at)),
        Some((session.id, T0.plus(Span::minutes(10))))
    );
    assert_eq!(store.find_totp(u).await.unwrap().unwrap().last_step, Some(101));
    // The same step again: refused, and nothing of it is written.
    let (g2, t2, a2) = grant(101, &rng);
    assert!(!store.grant_step_up(&g2, ok()).await.unwrap());
    assert!(store.find_mfa_token(t2.hash(), MfaTokenPurpose::StepUp, T0).await.unwrap().is_none());
    assert!(store.find_by_access(a2.hash()).await.unwrap().is_none(), "no rotation for a refused grant");
    assert!(store.find_by_access(a1.hash()).await.unwrap().is_some(), "the current token still works");
    let events = store.records_after(0, 1000).await.unwrap();
    assert_eq!(events.iter().filter(|r| r.kind == "step_up_succeeded").count(), 1, "one event, for the grant that won");
});
