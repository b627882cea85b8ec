//! SMS-number confirmation (R39) and WebAuthn user handles (R33), on SQLite and PostgreSQL:
//! the send limit per window, confirmation by the right unexpired code only, side effects only
//! with the write they record, and one handle per account (first writer wins).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{T0, user};
use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::ids::UserId;
use gatehouse_core::mfa::store::{MfaStore, PendingSmsNumber};
use gatehouse_core::rng::SeededRng;
use gatehouse_core::secret::TokenHash;
use gatehouse_core::store::{AuditStore, SideEffects};

/// A distinct code hash per tag.
fn code(tag: u8) -> TokenHash {
    TokenHash::from_bytes([tag; 32])
}

/// A pending number sent at `at` (code valid 10 min), at most `max_sends` codes per hour.
fn pending(user: UserId, phone: &[u8], hash: TokenHash, at: Timestamp, max_sends: u32) -> PendingSmsNumber {
    PendingSmsNumber {
        user_id: user,
        phone_sealed: phone.to_vec(),
        code_hash: hash,
        created_at: at,
        expires_at: at.plus(Span::minutes(10)),
        max_sends,
        window_start_after: at.minus(Span::hours(1)),
    }
}

fn sent(user: UserId) -> SideEffects {
    SideEffects::event(AuditEvent::new(EventKind::SmsCodeSent, Outcome::Success).by_user(user))
}

fn number_set(user: UserId) -> SideEffects {
    SideEffects::event(AuditEvent::new(EventKind::SmsNumberSet, Outcome::Success).by_user(user))
}

/// How many audit records of `kind` the chain holds.
async fn events(store: &gatehouse_store::SqlStore, kind: &str) -> usize {
    store.records_after(0, 10_000).await.unwrap().into_iter().filter(|r| r.kind == kind).count()
}

on_every_backend!(webauthn_user_handle_is_stored_once_per_account, |store, _clock| {
    let rng = SeededRng::new(21);
    let a = user(&store, "ha@example.com", &rng).await;
    let b = user(&store, "hb@example.com", &rng).await;
    let (first, second) = ([1u8; 64], [2u8; 64]);
    assert_eq!(store.webauthn_user_handle(a, &first, T0).await.unwrap(), first.to_vec(), "the fresh handle is stored");
    assert_eq!(
        store.webauthn_user_handle(a, &second, T0.plus(Span::secs(1))).await.unwrap(),
        first.to_vec(),
        "a later call gets the stored handle, not its own fresh one"
    );
    assert_eq!(store.webauthn_user_handle(b, &second, T0).await.unwrap(), second.to_vec(), "each account its own");
    assert_eq!(store.webauthn_user_handle(a, &[3u8; 64], T0).await.unwrap(), first.to_vec(), "a is unchanged by b");
    // First writer wins across instances: twenty racing fresh handles, one is kept by all.
    let c = user(&store, "hc@example.com", &rng).await;
    let mut tasks = vec![];
    for i in 0..20u8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.webauthn_user_handle(c, &[100 + i; 64], T0).await.unwrap() }));
    }
    let mut got = vec![];
    for t in tasks {
        got.push(t.await.unwrap());
    }
    assert!(got.iter().all(|h| *h == got[0]), "every racer sees the same handle");
    assert!((0..20u8).any(|i| got[0] == vec![100 + i; 64]), "and it is one of theirs");
    assert_eq!(store.webauthn_user_handle(c, &[99u8; 64], T0).await.unwrap(), got[0]);
});

on_every_backend!(sms_number_sends_are_limited_per_window, |store, _clock| {
    let rng = SeededRng::new(22);
    let u = user(&store, "sl@example.com", &rng).await;
    // Three codes within the hour: accepted, each with its event; the number is only pending.
    for (i, tag) in [1u8, 2, 3].into_iter().enumerate() {
        let at = T0.plus(Span::minutes(i as i64));
        assert!(store.begin_sms_number(&pending(u, b"phone-1", code(tag), at, 3), sent(u)).await.unwrap());
        assert_eq!(events(&store, "sms_code_sent").await, i + 1, "the event commits with the accepted send");
    }
    assert!(store.find_sms_number(u).await.unwrap().is_none(), "a pending number is not returned");
    // The fourth in the same window: refused, and nothing written — neither the row nor the event.
    let at = T0.plus(Span::minutes(3));
    assert!(!store.begin_sms_number(&pending(u, b"phone-2", code(4), at, 3), sent(u)).await.unwrap());
    assert_eq!(events(&store, "sms_code_sent").await, 3, "no event for a refused send");
    assert!(
        !store.confirm_sms_number(u, code(4), at, SideEffects::default()).await.unwrap(),
        "the refused code was not stored"
    );
    // A window that still includes the first send (it started 1 ms before it) still refuses.
    let mut p = pending(u, b"phone-2", code(5), T0.plus(Span::minutes(59)), 3);
    p.window_start_after = T0.minus(Span::millis(1));
    assert!(!store.begin_sms_number(&p, sent(u)).await.unwrap());
    // A higher limit allows one more in the same window (the count is 3, not reset).
    assert!(store.begin_sms_number(&pending(u, b"phone-2", code(6), at, 4), sent(u)).await.unwrap());
    assert!(!store.begin_sms_number(&pending(u, b"phone-2", code(7), at, 4), sent(u)).await.unwrap());
    assert_eq!(events(&store, "sms_code_sent").await, 4);
    // The last accepted code (3) is still the pending one: the refused sends changed nothing.
    assert!(!store.confirm_sms_number(u, code(3), at, SideEffects::default()).await.unwrap(), "replaced by 6");
    assert!(!store.confirm_sms_number(u, code(7), at, SideEffects::default()).await.unwrap());
    // Once the window moved past the first send, sends start over: windows are half-open, so
    // exactly an hour after the first send (the window [T0, T0 + 1 h) has ended) is enough.
    let later = T0.plus(Span::hours(1));
    for tag in [8u8, 9, 10] {
        assert!(store.begin_sms_number(&pending(u, b"phone-3", code(tag), later, 3), sent(u)).await.unwrap());
    }
    assert!(!store.begin_sms_number(&pending(u, b"phone-3", code(11), later, 3), sent(u)).await.unwrap());
    assert_eq!(events(&store, "sms_code_sent").await, 7);
    // Other accounts have their own count.
    let v = user(&store, "sl2@example.com", &rng).await;
    assert!(store.begin_sms_number(&pending(v, b"phone-v", code(12), later, 1), sent(v)).await.unwrap());
    assert!(!store.begin_sms_number(&pending(v, b"phone-v", code(13), later, 1), sent(v)).await.unwrap());
});

on_every_backend!(sms_number_is_confirmed_by_its_unexpired_code_only, |store, _clock| {
    let rng = SeededRng::new(23);
    let u = user(&store, "sc@example.com", &rng).await;
    let other = user(&store, "sc2@example.com", &rng).await;
    assert!(store.begin_sms_number(&pending(u, b"phone-1", code(1), T0, 5), sent(u)).await.unwrap());
    let expiry = T0.plus(Span::minutes(10));
    // Wrong code, another account's, or expired (at its expiry instant): false, nothing written.
    assert!(!store.confirm_sms_number(u, code(2), T0, number_set(u)).await.unwrap(), "wrong code");
    assert!(!store.confirm_sms_number(other, code(1), T0, number_set(other)).await.unwrap(), "other account");
    assert!(!store.confirm_sms_number(u, code(1), expiry, number_set(u)).await.unwrap(), "expired");
    assert!(store.find_sms_number(u).await.unwrap().is_none());
    assert!(store.find_sms_number(other).await.unwrap().is_none());
    assert_eq!(events(&store, "sms_number_set").await, 0, "no event for a refused confirmation");
    // The right code, before expiry: the number is confirmed, with its event.
    let before = expiry.minus(Span::millis(1));
    assert!(store.confirm_sms_number(u, code(1), before, number_set(u)).await.unwrap());
    assert_eq!(store.find_sms_number(u).await.unwrap(), Some(b"phone-1".to_vec()));
    assert_eq!(events(&store, "sms_number_set").await, 1);
    // The pending code is spent: a second confirmation fails and writes nothing.
    assert!(!store.confirm_sms_number(u, code(1), before, number_set(u)).await.unwrap(), "single use");
    assert_eq!(events(&store, "sms_number_set").await, 1);
    // Twenty racing confirmations of one code: one wins.
    let at = T0.plus(Span::minutes(1));
    assert!(store.begin_sms_number(&pending(u, b"phone-2", code(3), at, 5), sent(u)).await.unwrap());
    let mut tasks = vec![];
    for _ in 0..20 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move { s.confirm_sms_number(u, code(3), at, number_set(u)).await.unwrap() }));
    }
    let mut wins = 0;
    for t in tasks {
        wins += usize::from(t.await.unwrap());
    }
    assert_eq!(wins, 1);
    assert_eq!(events(&store, "sms_number_set").await, 2, "one event, for the confirmation that won");
    assert_eq!(store.find_sms_number(u).await.unwrap(), Some(b"phone-2".to_vec()));
});

on_every_backend!(a_confirmed_number_stays_until_its_replacement_is_confirmed, |store, _clock| {
    let rng = SeededRng::new(24);
    let u = user(&store, "sr@example.com", &rng).await;
    assert!(store.begin_sms_number(&pending(u, b"old", code(1), T0, 5), sent(u)).await.unwrap());
    assert!(store.confirm_sms_number(u, code(1), T0, SideEffects::default()).await.unwrap());
    // A new number being set: the confirmed one is still the account's.
    let at = T0.plus(Span::minutes(1));
    assert!(store.begin_sms_number(&pending(u, b"new", code(2), at, 5), sent(u)).await.unwrap());
    assert_eq!(store.find_sms_number(u).await.unwrap(), Some(b"old".to_vec()), "old kept while new is pending");
    // Replaced by yet another pending number: the earlier pending code no longer confirms.
    assert!(store.begin_sms_number(&pending(u, b"newer", code(3), at, 5), sent(u)).await.unwrap());
    assert!(!store.confirm_sms_number(u, code(2), at, SideEffects::default()).await.unwrap(), "replaced pending");
    assert_eq!(store.find_sms_number(u).await.unwrap(), Some(b"old".to_vec()));
    // A failed confirmation leaves the confirmed number as it was.
    assert!(!store.confirm_sms_number(u, code(3), at.plus(Span::minutes(10)), SideEffects::default()).await.unwrap());
    assert_eq!(store.find_sms_number(u).await.unwrap(), Some(b"old".to_vec()));
    assert!(store.confirm_sms_number(u, code(3), at, SideEffects::default()).await.unwrap());
    assert_eq!(store.find_sms_number(u).await.unwrap(), Some(b"newer".to_vec()), "replaced on confirmation");
    // Sends before a confirmation still count in its window: 3 so far, so a limit of 4 allows
    // one more and no other.
    assert!(store.begin_sms_number(&pending(u, b"x", code(4), at, 4), sent(u)).await.unwrap());
    assert!(!store.begin_sms_number(&pending(u, b"y", code(5), at, 4), sent(u)).await.unwrap());
    // Deleting removes both the confirmed and the pending number.
    assert!(store.delete_sms_number(u, SideEffects::default()).await.unwrap());
    assert!(store.find_sms_number(u).await.unwrap().is_none());
    assert!(!store.confirm_sms_number(u, code(4), at, SideEffects::default()).await.unwrap(), "pending gone");
    assert!(!store.delete_sms_number(u, SideEffects::default()).await.unwrap(), "nothing left to delete");
    // Only a pending number: delete removes it too (true), and it can no longer be confirmed.
    let v = user(&store, "sr2@example.com", &rng).await;
    assert!(store.begin_sms_number(&pending(v, b"v", code(6), at, 5), sent(v)).await.unwrap());
    assert!(store.delete_sms_number(v, SideEffects::default()).await.unwrap());
    assert!(!store.confirm_sms_number(v, code(6), at, SideEffects::default()).await.unwrap());
    assert!(store.find_sms_number(v).await.unwrap().is_none());
});

// The window's send count lives in the `mfa_sms_pending` row; `delete_sms_number` used to
// delete that row, so set/remove/set sent `max_sends` more codes within one window (SMS
// pumping). Removing the number does not unsend its codes: the count survives the removal.
on_every_backend!(deleting_the_number_does_not_reset_the_send_count, |store, _clock| {
    let rng = SeededRng::new(25);
    let u = user(&store, "sd@example.com", &rng).await;
    for (i, tag) in [1u8, 2, 3].into_iter().enumerate() {
        let at = T0.plus(Span::minutes(i as i64));
        assert!(store.begin_sms_number(&pending(u, b"phone", code(tag), at, 3), sent(u)).await.unwrap());
    }
    assert!(store.delete_sms_number(u, SideEffects::default()).await.unwrap());
    let at = T0.plus(Span::minutes(3));
    assert!(
        !store.begin_sms_number(&pending(u, b"phone", code(4), at, 3), sent(u)).await.unwrap(),
        "three codes were already sent in this window; deleting the number must not reset the count"
    );
});
