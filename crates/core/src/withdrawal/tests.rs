use super::*;
use crate::clock::Span;
use crate::rng::SeededRng;

const T0: Timestamp = Timestamp::from_secs(1_800_000_000);

#[test]
fn amounts_parse_strictly_and_print_canonically() {
    for (raw, units, canon) in [
        ("1", 100_000_000, "1"),
        ("0.5", 50_000_000, "0.5"),
        ("1.23456789", 123_456_789, "1.23456789"),
        ("10.10", 1_010_000_000, "10.1"),
        ("0.00000001", 1, "0.00000001"),
    ] {
        let a = Amount::parse(raw).unwrap();
        assert_eq!(a.units(), units, "{raw}");
        assert_eq!(a.to_string(), canon);
    }
    for bad in
        ["", "0", "0.0", "-1", "+1", "1e3", " 1", "1 ", ".5", "5.", "01", "1.123456789", "NaN", "1,5", "99999999999"]
    {
        assert_eq!(Amount::parse(bad), Err(AmountError::Invalid), "{bad:?}");
    }
}

#[test]
fn assets_addresses_and_labels_are_validated() {
    assert_eq!(Asset::parse("btc").unwrap().as_str(), "BTC");
    assert!(Asset::parse("B").is_none());
    assert!(Asset::parse("BTC-X").is_none());
    assert!(Destination::parse("bc1qxy2kgdygjrsqtzq2n0yrf2493p83kkfjhx0wlh").is_some());
    assert!(Destination::parse("short").is_none());
    assert!(Destination::parse("bc1q<script>aaaaaaaa").is_none());
    assert!(Destination::parse(&"a".repeat(129)).is_none());
    assert!(parse_label("cold wallet").is_some());
    assert!(parse_label("").is_none());
    assert!(parse_label("a\u{7}b").is_none());
}

fn entry(active_at: Timestamp, cancelled: bool) -> AddressEntry {
    let rng = SeededRng::new(3);
    let user = UserId::generate(T0, &rng);
    AddressEntry {
        id: "e1".into(),
        user_id: user,
        asset: Asset::parse("BTC").unwrap(),
        address: Destination::parse("bc1qdestination000").unwrap(),
        label: "cold".into(),
        created_at: T0,
        active_at,
        cancelled_at: cancelled.then_some(T0),
    }
}

fn ctx(entries: &[AddressEntry]) -> WithdrawalContext<'_> {
    WithdrawalContext {
        frozen: false,
        held_until: None,
        allowlist_only: false,
        entries,
        used_today: 0,
        daily_limit: 10 * 100_000_000,
    }
}

#[test]
fn refusals_in_order_frozen_hold_address_limit() {
    let pending = [entry(T0.plus(Span::hours(24)), false)];
    let active = [entry(T0, false)];
    let one = 100_000_000;
    let mut c = ctx(&active);
    assert!(check(&c, one, T0).unwrap().is_some());
    c.frozen = true;
    assert_eq!(check(&c, one, T0), Err(Refusal::Frozen));
    c.frozen = false;
    c.held_until = Some(T0.plus(Span::hours(1)));
    assert_eq!(check(&c, one, T0), Err(Refusal::Held(T0.plus(Span::hours(1)))));
    assert!(check(&c, one, T0.plus(Span::hours(1))).is_ok(), "the hold ends exactly at its end");
    let c = ctx(&pending);
    assert_eq!(check(&c, one, T0), Err(Refusal::AddressNotActive(T0.plus(Span::hours(24)))));
    assert!(check(&c, one, T0.plus(Span::hours(24))).is_ok());
    let cancelled = [entry(T0, true)];
    assert_eq!(check(&ctx(&cancelled), one, T0), Err(Refusal::NotAllowlisted));
    let mut c = ctx(&[]);
    assert_eq!(check(&c, one, T0), Ok(None), "unknown destinations pass unless allowlist-only");
    c.allowlist_only = true;
    assert_eq!(check(&c, one, T0), Err(Refusal::NotAllowlisted));
    let mut c = ctx(&active);
    c.used_today = 9 * one;
    assert!(check(&c, one, T0).is_ok());
    assert_eq!(check(&c, one + 1, T0), Err(Refusal::DailyLimit));
    c.used_today = i64::MAX;
    assert_eq!(check(&c, one, T0), Err(Refusal::DailyLimit), "overflow is a refusal");
}

#[test]
fn the_intent_hash_commits_to_every_detail() {
    let d = IntentDetails {
        v: 1,
        id: "i1".into(),
        user: "u".into(),
        asset: "BTC".into(),
        amount: "1.5".into(),
        destination: "bc1qdestination000".into(),
        label: None,
        created_at_ms: 1,
        expires_at_ms: 2,
    };
    let h = d.hash();
    assert_eq!(h, hash_canonical(&d.canonical_json()));
    let mut other = d.clone();
    other.amount = "1.50000001".into();
    assert_ne!(other.hash(), h);
    let mut other = d.clone();
    other.destination = "bc1qattacker00000".into();
    assert_ne!(other.hash(), h);
    let back: IntentDetails = serde_json::from_str(&d.canonical_json()).unwrap();
    assert_eq!(back, d);
}
