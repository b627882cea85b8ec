//! Tests of the key record rules, at fixed instants.

use super::*;
use crate::rng::SeededRng;

pub(crate) const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

pub(crate) fn at_h(h: i64) -> Timestamp {
    T0.plus(Span::hours(h))
}

pub(crate) fn owner() -> UserId {
    UserId::generate(T0, &SeededRng::new(7))
}

pub(crate) fn allow(entries: &[&str]) -> IpAllowlist {
    let Ok(l) = IpAllowlist::parse(entries) else { unreachable!() };
    l
}

pub(crate) fn new_key(scopes: ScopeSet, allowlist: IpAllowlist) -> ApiKey {
    let req = NewApiKey { label: "bot".into(), kind: KeyKind::Ed25519, scopes, allowlist, expires_at: None };
    let id = ApiKeyId::generate(&SeededRng::new(1));
    let Ok(k) = ApiKey::create(id, owner(), req, 0, T0, &KeyPolicy::default()) else { unreachable!() };
    k
}

fn req(scopes: ScopeSet, allowlist: IpAllowlist) -> NewApiKey {
    NewApiKey { label: "trading bot".into(), kind: KeyKind::Hmac, scopes, allowlist, expires_at: None }
}

fn create(r: NewApiKey, existing: u32) -> Result<ApiKey, KeyError> {
    ApiKey::create(ApiKeyId::generate(&SeededRng::new(2)), owner(), r, existing, T0, &KeyPolicy::default())
}

#[test]
fn key_ids_are_random_v4_and_parse_back() {
    let rng = SeededRng::new(3);
    let a = ApiKeyId::generate(&rng);
    let b = ApiKeyId::generate(&rng);
    assert_ne!(a, b);
    assert_eq!(a.as_uuid().get_version_num(), 4);
    assert_eq!(ApiKeyId::parse(&a.to_string()), Some(a));
    assert_eq!(ApiKeyId::parse(&a.as_uuid().simple().to_string()), None);
}

#[test]
fn new_keys_are_read_only_by_default_and_expire_in_a_year() {
    let Ok(r) = serde_json::from_str::<NewApiKey>(r#"{"label":"x","kind":"ed25519"}"#) else { unreachable!() };
    assert_eq!(r.scopes, ScopeSet::read_only_default());
    let Ok(k) = create(r, 0) else { unreachable!() };
    assert_eq!(k.status, ApiKeyStatus::Active);
    assert_eq!(k.expires_at, T0.plus(Span::days(365)));
    assert!(k.is_usable(T0.plus(Span::days(365)).minus(Span::millis(1))));
    assert!(!k.is_usable(T0.plus(Span::days(365))));
    assert!(serde_json::from_str::<NewApiKey>(r#"{"label":"x","kind":"hmac_sha1"}"#).is_err());
    assert!(serde_json::from_str::<NewApiKey>(r#"{"label":"x","kind":"hmac","admin":true}"#).is_err());
}

#[test]
fn creation_limits() {
    let ro = || req(ScopeSet::read_only_default(), IpAllowlist::empty());
    assert!(create(ro(), 9).is_ok());
    assert_eq!(create(ro(), 10).err(), Some(KeyError::TooManyKeys { max: 10 }));
    let mut r = ro();
    r.expires_at = Some(T0.plus(Span::minutes(59)));
    assert_eq!(create(r, 0).err(), Some(KeyError::ExpiryTooSoon));
    let mut r = ro();
    r.expires_at = Some(T0.plus(Span::days(365)).plus(Span::millis(1)));
    assert_eq!(create(r, 0).err(), Some(KeyError::ExpiryTooLate));
    let mut r = ro();
    r.expires_at = Some(T0.plus(Span::days(30)));
    assert_eq!(create(r, 0).map(|k| k.expires_at), Ok(T0.plus(Span::days(30))));
}

#[test]
fn labels() {
    for ok in ["bot", "내 트레이딩 봇", &"x".repeat(64), "a b"] {
        assert!(KeyLabel::parse(ok).is_ok(), "{ok:?}");
    }
    assert_eq!(KeyLabel::parse(""), Err(LabelError::Empty));
    assert_eq!(KeyLabel::parse(&"é".repeat(65)), Err(LabelError::TooLong));
    assert_eq!(KeyLabel::parse(" bot"), Err(LabelError::Whitespace));
    assert_eq!(KeyLabel::parse("bot\n"), Err(LabelError::Whitespace));
    for bad in ["b\u{0}t", "bot\u{202E}gnp.exe", "b\u{200B}ot", "b\u{7f}t", "\u{FEFF}bot"] {
        assert_eq!(KeyLabel::parse(bad), Err(LabelError::ForbiddenChar), "{bad:?}");
    }
    let mut r = req(ScopeSet::EMPTY, IpAllowlist::empty());
    r.label = String::new();
    assert_eq!(create(r, 0).err(), Some(KeyError::Label(LabelError::Empty)));
}

#[test]
fn withdraw_needs_an_allowlist_and_starts_locked() {
    let w = ScopeSet::read_only_default().with(Scope::Withdraw);
    assert_eq!(create(req(w, IpAllowlist::empty()), 0).err(), Some(KeyError::WithdrawNeedsAllowlist));
    let Ok(k) = create(req(w, allow(&["203.0.113.7"])), 0) else { unreachable!() };
    assert_eq!(k.status, ApiKeyStatus::Locked);
    assert_eq!(k.withdraw_granted_at, Some(T0));
    let strict = KeyPolicy { withdraw_requires_asymmetric: true, ..KeyPolicy::default() };
    let r = req(w, allow(&["203.0.113.7"]));
    let id = ApiKeyId::generate(&SeededRng::new(4));
    assert_eq!(ApiKey::create(id, owner(), r, 0, T0, &strict).err(), Some(KeyError::WithdrawNeedsAsymmetricKey));
}

#[test]
fn widening_a_withdraw_allowlist_waits_a_day() {
    let policy = KeyPolicy::default();
    let mut k = new_key(ScopeSet::EMPTY.with(Scope::Withdraw), allow(&["203.0.113.7"]));
    // Narrowing or equal: immediate.
    assert_eq!(k.change_allowlist(allow(&["203.0.113.7"]), at_h(1), &policy), Ok(AllowlistChange::Immediate));
    // Widening: pending for 24 h; the old list stays in force until then.
    let wider = allow(&["203.0.113.7", "198.51.100.1"]);
    let change = k.change_allowlist(wider.clone(), at_h(2), &policy);
    assert_eq!(change, Ok(AllowlistChange::Delayed { effective_at: at_h(26) }));
    assert_eq!(k.effective_allowlist(at_h(25)), &allow(&["203.0.113.7"]));
    assert_eq!(k.effective_allowlist(at_h(26)), &wider);
    k.settle_allowlist(at_h(26));
    assert_eq!((&k.allowlist, &k.pending_allowlist), (&wider, &None));
    // Removing the list of a withdraw key is refused outright.
    assert_eq!(k.change_allowlist(IpAllowlist::empty(), at_h(27), &policy), Err(KeyError::WithdrawNeedsAllowlist));
    // A read-only key's list changes at once, even when widened.
    let mut r = new_key(ScopeSet::read_only_default(), allow(&["203.0.113.7"]));
    assert_eq!(r.change_allowlist(IpAllowlist::empty(), at_h(1), &policy), Ok(AllowlistChange::Immediate));
    assert!(r.allowlist.is_empty());
}

#[test]
fn granting_withdraw_later_locks_and_restarts_cooling_off() {
    let policy = KeyPolicy::default();
    let mut k = new_key(ScopeSet::read_only_default(), IpAllowlist::empty());
    let w = ScopeSet::read_only_default().with(Scope::Withdraw);
    assert_eq!(k.change_scopes(w, at_h(100), &policy), Err(KeyError::WithdrawNeedsAllowlist));
    assert_eq!(k.change_allowlist(allow(&["203.0.113.7"]), at_h(100), &policy), Ok(AllowlistChange::Immediate));
    assert_eq!(k.change_scopes(w, at_h(100), &policy), Ok(()));
    assert_eq!((k.status, k.withdraw_granted_at), (ApiKeyStatus::Locked, Some(at_h(100))));
    assert_eq!(k.change_scopes(ScopeSet::read_only_default(), at_h(101), &policy), Ok(()));
    assert_eq!(k.withdraw_granted_at, None);
}

#[test]
fn rotation_overlap_is_min_of_expiry_and_grace() {
    let policy = KeyPolicy::default();
    let rng = SeededRng::new(9);
    let mut old = new_key(ScopeSet::read_only_default(), IpAllowlist::empty());
    let Ok(next) = old.rotate(ApiKeyId::generate(&rng), KeyKind::Ed25519, at_h(10), &policy) else { unreachable!() };
    assert_eq!(old.valid_until, Some(at_h(34)));
    assert_eq!(old.successor, Some(next.id));
    assert_eq!(next.rotated_from, Some(old.id));
    assert_eq!((next.created_at, next.expires_at), (at_h(10), at_h(10).plus(Span::days(365))));
    assert!(old.is_usable(at_h(34).minus(Span::millis(1))));
    assert!(!old.is_usable(at_h(34)));
    // Already rotated: refused.
    assert_eq!(
        old.rotate(ApiKeyId::generate(&rng), KeyKind::Hmac, at_h(11), &policy).err(),
        Some(KeyError::InvalidState)
    );
    // Close to expiry the overlap ends at expiry.
    let mut late = new_key(ScopeSet::read_only_default(), IpAllowlist::empty());
    let near_end = late.expires_at.minus(Span::hours(2));
    assert!(late.rotate(ApiKeyId::generate(&rng), KeyKind::Hmac, near_end, &policy).is_ok());
    assert_eq!(late.valid_until, Some(late.expires_at));
    // A withdraw key's successor starts locked with its own cooling-off.
    let mut w = new_key(ScopeSet::EMPTY.with(Scope::Withdraw), allow(&["203.0.113.7"]));
    let Ok(wn) = w.rotate(ApiKeyId::generate(&rng), KeyKind::Ed25519, at_h(48), &policy) else { unreachable!() };
    assert_eq!((wn.status, wn.withdraw_granted_at), (ApiKeyStatus::Locked, Some(at_h(48))));
}

#[test]
fn life_cycle_transitions() {
    let mut k = new_key(ScopeSet::EMPTY.with(Scope::Withdraw), allow(&["203.0.113.7"]));
    assert_eq!(k.status, ApiKeyStatus::Locked);
    assert_eq!(k.unlock_withdraw(), Ok(()));
    assert_eq!(k.status, ApiKeyStatus::Active);
    assert_eq!(k.suspend(), Ok(()));
    assert_eq!(k.unlock_withdraw(), Err(KeyError::InvalidState));
    // Coming back from a suspension re-locks withdrawals.
    assert_eq!(k.resume(), Ok(()));
    assert_eq!(k.status, ApiKeyStatus::Locked);
    assert_eq!(k.resume(), Err(KeyError::InvalidState));
    k.revoke(at_h(5));
    k.revoke(at_h(6));
    assert_eq!((k.status, k.revoked_at), (ApiKeyStatus::Revoked, Some(at_h(5))));
    assert_eq!(k.suspend(), Err(KeyError::InvalidState));
    assert_eq!(k.lock_withdraw(), Err(KeyError::InvalidState));
    assert_eq!(k.change_scopes(ScopeSet::EMPTY, at_h(7), &KeyPolicy::default()), Err(KeyError::InvalidState));
    let mut r = new_key(ScopeSet::read_only_default(), IpAllowlist::empty());
    assert_eq!(r.resume(), Err(KeyError::InvalidState));
    assert_eq!(r.lock_withdraw(), Ok(()));
}

#[test]
fn usage_is_recorded_cleanly() {
    let mut k = new_key(ScopeSet::read_only_default(), IpAllowlist::empty());
    let Ok(ip) = "::ffff:203.0.113.9".parse::<IpAddr>() else { unreachable!() };
    let ua = format!("ccxt/4.5\r\nX-Injected: 1{}", "a".repeat(500));
    k.record_use(at_h(3), Some(ip), Some(&ua));
    let Some(last) = &k.last_used else { unreachable!() };
    assert_eq!(last.at, at_h(3));
    assert_eq!(last.ip.map(|i| i.to_string()).as_deref(), Some("203.0.113.9"));
    let Some(ua) = &last.user_agent else { unreachable!() };
    assert!(ua.starts_with("ccxt/4.5X-Injected: 1"));
    assert_eq!(ua.chars().count(), 256);
}

#[test]
fn policy_validation() {
    assert_eq!(KeyPolicy::default().validate(), Ok(()));
    for bad in [
        KeyPolicy { max_keys_per_account: 0, ..KeyPolicy::default() },
        KeyPolicy { max_lifetime_days: 366, ..KeyPolicy::default() },
        KeyPolicy { default_lifetime_days: 400, ..KeyPolicy::default() },
        KeyPolicy { min_lifetime_secs: 10, ..KeyPolicy::default() },
        KeyPolicy { rotation_grace_secs: 8 * 86_400, ..KeyPolicy::default() },
        KeyPolicy { withdraw_cooling_off_secs: -1, ..KeyPolicy::default() },
    ] {
        assert!(bad.validate().is_err(), "{bad:?}");
    }
}

#[test]
fn records_round_trip_through_json() {
    let k = new_key(ScopeSet::EMPTY.with(Scope::Withdraw), allow(&["203.0.113.7"]));
    let json = serde_json::to_string(&k).unwrap_or_default();
    assert!(json.contains(r#""scopes":["withdraw"]"#), "{json}");
    assert!(json.contains(r#""status":"locked""#), "{json}");
    assert_eq!(serde_json::from_str::<ApiKey>(&json).ok(), Some(k));
}
