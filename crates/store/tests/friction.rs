//! Conformance of the friction store on SQLite and PostgreSQL: atomic confirmation under
//! concurrency (R78), the daily limit under concurrency, holds that only grow, and single-use
//! action links.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::T0;
use gatehouse_core::account::Account;
use gatehouse_core::clock::Span;
use gatehouse_core::friction::LinkAction;
use gatehouse_core::friction_store::{ConfirmOutcome, FrictionStore};
use gatehouse_core::ids::UserId;
use gatehouse_core::rng::SeededRng;
use gatehouse_core::secret::Token;
use gatehouse_core::store::{AccountStore, EmailToken, SideEffects};
use gatehouse_core::withdrawal::{Intent, IntentDetails, IntentState, Refusal};
use gatehouse_store::SqlStore;

const ONE: i64 = 100_000_000;

fn intent(user: UserId, id: &str, units: i64) -> Intent {
    let details = IntentDetails {
        v: 1,
        id: id.into(),
        user: user.to_string(),
        asset: "BTC".into(),
        amount: format!("{}", units / ONE),
        destination: "bc1qdestination0001".into(),
        label: None,
        created_at_ms: T0.as_millis(),
        expires_at_ms: T0.plus(Span::minutes(10)).as_millis(),
    };
    let canonical = details.canonical_json();
    Intent {
        details,
        canonical,
        units,
        state: IntentState::Pending,
        confirmed_at: None,
        delivered_at: None,
        attempts: 0,
    }
}

on_every_backend!(concurrent_confirms_confirm_once_and_respect_the_limit, |store, _clock| {
    let a = account(&store, "a@example.com").await;
    store.create_intent(&intent(a.id, "i-1", ONE), SideEffects::default()).await.unwrap();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.confirm_intent("i-1", a.id, T0.plus(Span::secs(1)), 2 * ONE, SideEffects::default()).await.unwrap()
        }));
    }
    let mut outcomes = Vec::new();
    for t in tasks {
        outcomes.push(t.await.unwrap());
    }
    assert_eq!(outcomes.iter().filter(|o| **o == ConfirmOutcome::Confirmed).count(), 1, "{outcomes:?}");
    assert!(outcomes.iter().all(|o| matches!(o, ConfirmOutcome::Confirmed | ConfirmOutcome::AlreadyConfirmed)));
    // Claimed once for delivery, then leased.
    let now = T0.plus(Span::secs(2));
    assert_eq!(store.claim_intents(now, Span::secs(60), 10).await.unwrap().len(), 1);
    assert!(store.claim_intents(now, Span::secs(60), 10).await.unwrap().is_empty());

    // Two intents that together exceed the limit (1 used + 0.8 + 0.8 > 2): one wins.
    store.create_intent(&intent(a.id, "i-2", 8 * ONE / 10), SideEffects::default()).await.unwrap();
    store.create_intent(&intent(a.id, "i-3", 8 * ONE / 10), SideEffects::default()).await.unwrap();
    let (s2, s3) = (store.clone(), store.clone());
    let t2 = tokio::spawn(async move { s2.confirm_intent("i-2", a.id, now, 2 * ONE, SideEffects::default()).await });
    let t3 = tokio::spawn(async move { s3.confirm_intent("i-3", a.id, now, 2 * ONE, SideEffects::default()).await });
    let mut both = vec![t2.await.unwrap().unwrap(), t3.await.unwrap().unwrap()];
    both.sort_by_key(|o| format!("{o:?}"));
    assert_eq!(both, vec![ConfirmOutcome::Confirmed, ConfirmOutcome::Refused(Refusal::DailyLimit)]);
    assert_eq!(store.confirmed_units_since(a.id, "BTC", T0).await.unwrap(), ONE + 8 * ONE / 10);
    // Expired intents cannot be confirmed; another user's cannot either.
    store.create_intent(&intent(a.id, "i-4", 1), SideEffects::default()).await.unwrap();
    let late = T0.plus(Span::minutes(10));
    assert_eq!(
        store.confirm_intent("i-4", a.id, late, 2 * ONE, SideEffects::default()).await.unwrap(),
        ConfirmOutcome::NotConfirmable
    );
    let b = account(&store, "bb@example.com").await;
    assert_eq!(
        store.confirm_intent("i-4", b.id, now, 2 * ONE, SideEffects::default()).await.unwrap(),
        ConfirmOutcome::NotConfirmable
    );
});

on_every_backend!(holds_only_grow_and_commit_with_the_change, |store, _clock| {
    let a = account(&store, "h@example.com").await;
    let later = T0.plus(Span::hours(48));
    store.set_allowlist_only(a.id, false, SideEffects::default().hold(a.id, later, "recovery")).await.unwrap();
    let hash = a.password_hash.clone();
    store
        .change_password(
            a.id,
            &hash,
            None,
            T0,
            SideEffects::default().hold(a.id, T0.plus(Span::hours(24)), "password_change"),
        )
        .await
        .unwrap();
    let f = store.find_friction(a.id).await.unwrap();
    assert_eq!((f.held_until, f.hold_reason.as_deref()), (Some(later), Some("recovery")), "a shorter hold never wins");
    let longest = T0.plus(Span::hours(72));
    store.set_allowlist_only(a.id, true, SideEffects::default().hold(a.id, longest, "api_key_withdraw")).await.unwrap();
    let f = store.find_friction(a.id).await.unwrap();
    assert_eq!((f.held_until, f.allowlist_only), (Some(longest), true));
});

on_every_backend!(action_links_are_single_use_and_expire, |store, _clock| {
    let a = account(&store, "l@example.com").await;
    let rng = SeededRng::new(5);
    let t = Token::generate(&rng);
    let row = EmailToken {
        hash: t.hash(),
        user_id: a.id,
        purpose: LinkAction::Freeze.purpose(),
        expires_at: T0.plus(Span::hours(1)),
    };
    store.create_link(&row, SideEffects::default()).await.unwrap();
    let fx = |_: UserId, _: &str, _: &LinkAction, _: bool| SideEffects::default();
    assert_eq!(store.redeem_link(t.hash(), T0.plus(Span::hours(1)), &fx).await.unwrap(), None, "expired");
    assert_eq!(store.redeem_link(t.hash(), T0, &fx).await.unwrap(), Some((a.id, LinkAction::Freeze, true)));
    assert_eq!(store.redeem_link(t.hash(), T0, &fx).await.unwrap(), None, "used");
    assert!(store.find_account(a.id).await.unwrap().unwrap().is_frozen());
    // A verification token is not an action link.
    let v = Token::generate(&rng);
    let row = EmailToken {
        hash: v.hash(),
        user_id: a.id,
        purpose: "verify_email".into(),
        expires_at: T0.plus(Span::hours(1)),
    };
    store.create_link(&row, SideEffects::default()).await.unwrap();
    assert_eq!(store.redeem_link(v.hash(), T0, &fx).await.unwrap(), None);
});

/// An active, verified account (its ids drawn from a generator seeded by the address length).
async fn account(store: &SqlStore, email: &str) -> Account {
    common::create_account(store, email, true, &SeededRng::new(email.len() as u64)).await
}
