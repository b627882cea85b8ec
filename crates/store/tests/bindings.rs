//! Token bindings (issue 9) on every backend: a bound session and its binding commit together
//! or not at all, the binding follows the refresh family through rotation, and unbound
//! sessions have none.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::T0;
use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::clock::Span;
use gatehouse_core::pop::{CertBinding, Confirmation, Jkt};
use gatehouse_core::rng::SeededRng;
use gatehouse_core::secret::{SecretBytes, Token};
use gatehouse_core::session::{RefreshOutcome, SessionPolicy, derive_successor};
use gatehouse_core::store::{AuditStore, RefreshRequest, SessionStore, SideEffects, StoreError, TokenBindingStore};

fn cnf() -> Confirmation {
    Confirmation {
        jkt: Jkt::parse("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"),
        x5t_s256: Some(CertBinding::from_der(b"\x30\x03\x30\x01\x00")),
    }
}

on_every_backend!(bound_sessions_keep_their_binding_through_rotation, |store, _clock| {
    let rng = SeededRng::new(9);
    let a = common::create_account(&store, "bound@example.com", false, &rng).await;

    // Bound: the binding is found by session and by every refresh token of the family.
    let (new, access, refresh) = common::new_session(a.id, &rng);
    let login = AuditEvent::new(EventKind::LoginSucceeded, Outcome::Success).by_user(a.id);
    store.create_bound_session(&new, &cnf(), &[], SideEffects::event(login)).await.unwrap();
    assert_eq!(store.find_binding(new.session.id).await.unwrap(), Some(cnf()));
    let by_token = store.find_by_access(access.hash()).await.unwrap().unwrap();
    assert_eq!((by_token.session.id, by_token.binding), (new.session.id, Some(cnf())), "one read gives the binding");
    let b = store.find_refresh_binding(refresh.hash()).await.unwrap().unwrap();
    assert_eq!((b.session_id, b.user_id, b.cnf), (new.session.id, a.id, cnf()));
    let key = SecretBytes::new(vec![3; 32]);
    let (succ, access) = derive_successor(&key, &refresh).unwrap();
    let req = RefreshRequest {
        presented: refresh.hash(),
        successor: succ.hash(),
        access: access.hash(),
        access_expires_at: T0.plus(Span::minutes(10)),
        device: Some(new.session.device_id),
        ua_family: new.session.ua_family.clone(),
        ip: "127.0.0.1".into(),
        now: T0,
        policy: SessionPolicy::default(),
    };
    assert!(matches!(
        store.rotate_refresh(&req, &|_| SideEffects::default()).await.unwrap(),
        RefreshOutcome::Rotated { .. }
    ));
    assert_eq!(store.find_refresh_binding(succ.hash()).await.unwrap().map(|b| b.cnf), Some(cnf()));
    // The used token still names its family (a thief presenting it is recognised).
    assert!(store.find_refresh_binding(refresh.hash()).await.unwrap().is_some());
    let (_, e, _) =
        store.history(a.id, None, 10).await.unwrap().into_iter().map(|r| (r.seq, r.kind, r.at)).next().unwrap();
    assert_eq!(e, "login_succeeded", "the audit event committed with the bound session");

    // Unbound: no binding anywhere.
    let (plain, plain_access, plain_refresh) = common::new_session(a.id, &rng);
    store.create_session(&plain, &[], SideEffects::default()).await.unwrap();
    assert_eq!(store.find_binding(plain.session.id).await.unwrap(), None);
    assert_eq!(store.find_by_access(plain_access.hash()).await.unwrap().unwrap().binding, None);
    assert!(store.find_refresh_binding(plain_refresh.hash()).await.unwrap().is_none());
    assert!(store.find_refresh_binding(Token::generate(&rng).hash()).await.unwrap().is_none());

    // An empty binding is refused and leaves nothing behind.
    let (empty, access, _) = common::new_session(a.id, &rng);
    let r = store.create_bound_session(&empty, &Confirmation::default(), &[], SideEffects::default()).await;
    assert!(matches!(r, Err(StoreError::Other(_))), "{r:?}");
    assert!(store.find_by_access(access.hash()).await.unwrap().is_none());
});
