//! The per-request policy checks the server runs on a key after its signature verified
//! (R64, R69, R74; exchange-auth.md §1.4 step 6–8).
//!
//! [`authorize`] applies, in this order, and stops at the first failure:
//! 1. **status**: revoked, suspended, expired (past `expires_at`, or a rotated key past its
//!    `valid_until`) — each its own [`KeyDenied`] variant;
//! 2. **IP allowlist** on the true client address (`None` = unknown = denied); a route that
//!    needs `withdraw` is refused from every address when the list is empty, a second line of
//!    defence behind the creation rule;
//! 3. **scope** required by the route;
//! 4. **withdraw lock** (a `Locked` key on a `withdraw` route), then the **cooling-off**
//!    after `withdraw` was granted.
//!
//! Success yields [`Authorized`], which only this function can build: the rate limiter and
//! the forwarder take it, so they cannot be reached with an unchecked key (authorisation by
//! type). Each denial maps to each dialect's own error ([`KeyDenied::upbit`],
//! [`KeyDenied::binance`]); Binance deliberately answers −2015 for all of them.

use std::net::IpAddr;

use super::key::{ApiKey, ApiKeyId, ApiKeyStatus, KeyPolicy};
use super::routes::{RouteAccess, RouteRule};
use super::scope::Scope;
use crate::clock::{Span, Timestamp};
use crate::ids::UserId;
use crate::ratelimit::RateGroup;

/// Why a verified key may not make this request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyDenied {
    /// The key was revoked.
    #[error("API key revoked")]
    Revoked,
    /// The key is suspended.
    #[error("API key suspended")]
    Suspended,
    /// The key is past its expiry or its rotation overlap.
    #[error("API key expired")]
    Expired,
    /// The client address is not in the key's allowlist, or unknown.
    #[error("client IP not allowed for this API key")]
    IpNotAllowed,
    /// The key lacks the scope the route needs.
    #[error("API key lacks scope {required}")]
    OutOfScope {
        /// The missing scope.
        required: Scope,
    },
    /// The key's withdraw safety lock is on.
    #[error("withdrawals locked for this API key")]
    WithdrawLocked,
    /// `withdraw` was granted too recently (R74).
    #[error("withdraw scope cooling off")]
    CoolingOff {
        /// When withdrawals become possible.
        until: Timestamp,
    },
}

/// An Upbit-dialect error (exchange-auth.md §1.5): `{"error":{"name":…,"message":…}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpbitError {
    /// HTTP status.
    pub status: u16,
    /// `error.name`.
    pub name: &'static str,
    /// `error.message` (the strings clients match on, e.g. ccxt's `This key has expired.`).
    pub message: &'static str,
}

/// A Binance-dialect error (exchange-auth.md §2.4): `{"code":…,"msg":…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BinanceError {
    /// HTTP status.
    pub status: u16,
    /// `code`.
    pub code: i32,
    /// `msg`.
    pub msg: &'static str,
}

impl KeyDenied {
    /// gatehouse's own stable error code (native dialect and audit events).
    pub const fn code(self) -> &'static str {
        match self {
            KeyDenied::Revoked => "key_revoked",
            KeyDenied::Suspended => "key_suspended",
            KeyDenied::Expired => "key_expired",
            KeyDenied::IpNotAllowed => "ip_not_allowed",
            KeyDenied::OutOfScope { .. } => "out_of_scope",
            KeyDenied::WithdrawLocked => "withdraw_locked",
            KeyDenied::CoolingOff { .. } => "cooling_off",
        }
    }

    /// HTTP status in the native dialect: 401 for key state, 403 for everything else.
    pub const fn status(self) -> u16 {
        match self {
            KeyDenied::Revoked | KeyDenied::Suspended | KeyDenied::Expired => 401,
            _ => 403,
        }
    }

    /// The Upbit answer. Revoked and suspended keys answer like expired ones (§1.4 step 6);
    /// the cooling-off answers like the withdraw lock, the closest error Upbit clients know.
    pub const fn upbit(self) -> UpbitError {
        match self {
            KeyDenied::Revoked | KeyDenied::Suspended | KeyDenied::Expired => {
                UpbitError { status: 401, name: "expired_access_key", message: "This key has expired." }
            }
            KeyDenied::IpNotAllowed => {
                UpbitError { status: 401, name: "no_authorization_ip", message: "This is not a verified IP." }
            }
            KeyDenied::OutOfScope { .. } => {
                UpbitError { status: 401, name: "out_of_scope", message: "권한이 부족합니다." }
            }
            KeyDenied::WithdrawLocked | KeyDenied::CoolingOff { .. } => UpbitError {
                status: 403,
                name: "open_api_withdraw_locked",
                message: "Withdrawals are locked for this API key.",
            },
        }
    }

    /// The Binance answer: −2015 for every case, as Binance does (§2.5).
    pub const fn binance(self) -> BinanceError {
        BinanceError { status: 401, code: -2015, msg: "Invalid API-key, IP, or permissions for action." }
    }
}

/// Proof that a key passed [`authorize`] for a route. Only `authorize` builds one.
#[derive(Debug, Clone, Copy)]
pub struct Authorized<'a> {
    key: &'a ApiKey,
    rule: &'a RouteRule,
}

impl<'a> Authorized<'a> {
    /// The key.
    pub fn key_id(&self) -> ApiKeyId {
        self.key.id
    }

    /// The account the request acts for.
    pub fn owner(&self) -> UserId {
        self.key.owner
    }

    /// The route it was authorised for.
    pub fn rule(&self) -> &'a RouteRule {
        self.rule
    }

    /// The rate-limit group to charge.
    pub fn group(&self) -> &'a RateGroup {
        &self.rule.group
    }

    /// How many units of the group to charge.
    pub fn weight(&self) -> u32 {
        self.rule.weight
    }
}

/// Runs the policy checks (module docs) for `key` on `rule`, from `client_ip` (`None`: the
/// server could not establish it), at `now`.
pub fn authorize<'a>(
    key: &'a ApiKey,
    rule: &'a RouteRule,
    client_ip: Option<IpAddr>,
    now: Timestamp,
    policy: &KeyPolicy,
) -> Result<Authorized<'a>, KeyDenied> {
    match key.status {
        ApiKeyStatus::Revoked => return Err(KeyDenied::Revoked),
        ApiKeyStatus::Suspended => return Err(KeyDenied::Suspended),
        ApiKeyStatus::Active | ApiKeyStatus::Locked => {}
    }
    if key.is_expired(now) {
        return Err(KeyDenied::Expired);
    }
    let needs_withdraw = rule.access == RouteAccess::Scope(Scope::Withdraw);
    let allowlist = key.effective_allowlist(now);
    if !allowlist.permits(client_ip) || (needs_withdraw && allowlist.is_empty()) {
        return Err(KeyDenied::IpNotAllowed);
    }
    if let Some(required) = rule.access.required_scope()
        && !key.scopes.contains(required)
    {
        return Err(KeyDenied::OutOfScope { required });
    }
    if needs_withdraw {
        if key.status == ApiKeyStatus::Locked {
            return Err(KeyDenied::WithdrawLocked);
        }
        // A withdraw key without a grant time is treated as granted now: fail closed.
        let granted = key.withdraw_granted_at.unwrap_or(now);
        let until = granted.plus(Span::secs(policy.withdraw_cooling_off_secs));
        if now < until {
            return Err(KeyDenied::CoolingOff { until });
        }
    }
    Ok(Authorized { key, rule })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apikey::allowlist::IpAllowlist;
    use crate::apikey::key::tests::{T0, allow, at_h, new_key};
    use crate::apikey::routes::RouteTable;
    use crate::apikey::scope::ScopeSet;

    fn ip(s: &str) -> Option<IpAddr> {
        s.parse().ok()
    }

    fn check(key: &ApiKey, m: &str, p: &str, client: Option<IpAddr>, now: Timestamp) -> Result<(), KeyDenied> {
        let table = RouteTable::upbit_default();
        let Some(rule) = table.lookup(m, p) else { unreachable!("{m} {p}") };
        authorize(key, rule, client, now, &KeyPolicy::default()).map(|_| ())
    }

    #[test]
    fn read_key_cannot_trade_or_withdraw() {
        let k = new_key(ScopeSet::read_only_default(), IpAllowlist::empty());
        let c = ip("203.0.113.9");
        assert_eq!(check(&k, "GET", "/v1/accounts", c, T0), Ok(()));
        assert_eq!(check(&k, "GET", "/v1/status/wallet", c, T0), Ok(()));
        assert_eq!(check(&k, "POST", "/v1/orders", c, T0), Err(KeyDenied::OutOfScope { required: Scope::PlaceOrders }));
        assert_eq!(
            check(&k, "DELETE", "/v1/orders/open", c, T0),
            Err(KeyDenied::OutOfScope { required: Scope::PlaceOrders })
        );
        // A withdraw route from a key without an allowlist is refused before its scope.
        assert_eq!(check(&k, "POST", "/v1/withdraws/coin", c, T0), Err(KeyDenied::IpNotAllowed));
    }

    #[test]
    fn status_comes_first_and_each_state_is_distinct() {
        let c = ip("203.0.113.9");
        let mut k = new_key(ScopeSet::read_only_default(), allow(&["198.51.100.1"]));
        // Expired beats the (also failing) allowlist check.
        let end = k.expires_at;
        assert_eq!(check(&k, "GET", "/v1/accounts", c, end), Err(KeyDenied::Expired));
        assert_eq!(check(&k, "GET", "/v1/accounts", c, end.minus(Span::millis(1))), Err(KeyDenied::IpNotAllowed));
        let _ = k.suspend();
        assert_eq!(check(&k, "GET", "/v1/accounts", c, T0), Err(KeyDenied::Suspended));
        k.revoke(T0);
        assert_eq!(check(&k, "GET", "/v1/accounts", c, T0), Err(KeyDenied::Revoked));
    }

    #[test]
    fn rotated_key_expires_at_valid_until() {
        let mut k = new_key(ScopeSet::read_only_default(), IpAllowlist::empty());
        let rng = crate::rng::SeededRng::new(5);
        let next = k.rotate(ApiKeyId::generate(&rng), crate::apikey::KeyKind::Ed25519, at_h(1), &KeyPolicy::default());
        let Ok(next) = next else { unreachable!() };
        let c = ip("203.0.113.9");
        assert_eq!(check(&k, "GET", "/v1/accounts", c, at_h(25).minus(Span::millis(1))), Ok(()));
        assert_eq!(check(&k, "GET", "/v1/accounts", c, at_h(25)), Err(KeyDenied::Expired));
        assert_eq!(check(&next, "GET", "/v1/accounts", c, at_h(25)), Ok(()));
    }

    #[test]
    fn allowlist_uses_the_true_client_and_unknown_is_denied() {
        let k = new_key(ScopeSet::read_only_default(), allow(&["203.0.113.0/24", "2001:db8::/48"]));
        assert_eq!(check(&k, "GET", "/v1/accounts", ip("203.0.113.200"), T0), Ok(()));
        assert_eq!(check(&k, "GET", "/v1/accounts", ip("::ffff:203.0.113.200"), T0), Ok(()));
        assert_eq!(check(&k, "GET", "/v1/accounts", ip("2001:db8::5"), T0), Ok(()));
        assert_eq!(check(&k, "GET", "/v1/accounts", ip("203.0.114.1"), T0), Err(KeyDenied::IpNotAllowed));
        assert_eq!(check(&k, "GET", "/v1/accounts", None, T0), Err(KeyDenied::IpNotAllowed));
        let open = new_key(ScopeSet::read_only_default(), IpAllowlist::empty());
        assert_eq!(check(&open, "GET", "/v1/accounts", None, T0), Err(KeyDenied::IpNotAllowed));
        // A spoofed X-Forwarded-For from an untrusted peer changes nothing (R19).
        let Ok(proxies) = crate::apikey::TrustedProxies::parse(["10.0.0.0/8"]) else { unreachable!() };
        let Some(peer) = ip("198.51.100.66") else { unreachable!() };
        let client = proxies.client_ip(peer, ["203.0.113.5"]).ip;
        assert_eq!(check(&k, "GET", "/v1/accounts", Some(client), T0), Err(KeyDenied::IpNotAllowed));
    }

    #[test]
    fn withdraw_needs_unlock_and_cooling_off() {
        let scopes = ScopeSet::read_only_default().with(Scope::Withdraw);
        let mut k = new_key(scopes, allow(&["203.0.113.7"]));
        let c = ip("203.0.113.7");
        // Locked at creation; the lock does not affect other routes.
        assert_eq!(check(&k, "POST", "/v1/withdraws/coin", c, at_h(30)), Err(KeyDenied::WithdrawLocked));
        assert_eq!(check(&k, "GET", "/v1/withdraws", c, at_h(30)), Ok(()));
        let _ = k.unlock_withdraw();
        let until = T0.plus(Span::hours(24));
        let just_before = until.minus(Span::millis(1));
        assert_eq!(check(&k, "POST", "/v1/withdraws/coin", c, just_before), Err(KeyDenied::CoolingOff { until }));
        assert_eq!(check(&k, "POST", "/v1/withdraws/coin", c, until), Ok(()));
        assert_eq!(check(&k, "POST", "/v1/withdraws/coin", ip("203.0.113.8"), until), Err(KeyDenied::IpNotAllowed));
        // A corrupt record without a grant time never gets out of cooling-off.
        k.withdraw_granted_at = None;
        assert!(matches!(check(&k, "POST", "/v1/withdraws/coin", c, at_h(1000)), Err(KeyDenied::CoolingOff { .. })));
        // A record with withdraw but no allowlist (should not exist) cannot withdraw.
        k.withdraw_granted_at = Some(T0);
        k.allowlist = IpAllowlist::empty();
        assert_eq!(check(&k, "POST", "/v1/withdraws/coin", c, at_h(30)), Err(KeyDenied::IpNotAllowed));
    }

    #[test]
    fn authorized_carries_the_rate_limit_charge() {
        let k = new_key(ScopeSet::read_only_default().with(Scope::PlaceOrders), IpAllowlist::empty());
        let table = RouteTable::upbit_default();
        let Some(rule) = table.lookup("POST", "/v1/orders") else { unreachable!() };
        let Ok(a) = authorize(&k, rule, ip("203.0.113.9"), T0, &KeyPolicy::default()) else { unreachable!() };
        assert_eq!((a.key_id(), a.owner(), a.group().as_str(), a.weight()), (k.id, k.owner, "order", 1));
        assert_eq!(a.rule().pattern.as_str(), "/v1/orders");
    }

    #[test]
    fn dialect_mapping_is_exhaustive_and_stable() {
        let all = [
            KeyDenied::Revoked,
            KeyDenied::Suspended,
            KeyDenied::Expired,
            KeyDenied::IpNotAllowed,
            KeyDenied::OutOfScope { required: Scope::Withdraw },
            KeyDenied::WithdrawLocked,
            KeyDenied::CoolingOff { until: T0 },
        ];
        let codes: Vec<_> = all.iter().map(|d| d.code()).collect();
        assert_eq!(
            codes,
            [
                "key_revoked",
                "key_suspended",
                "key_expired",
                "ip_not_allowed",
                "out_of_scope",
                "withdraw_locked",
                "cooling_off"
            ]
        );
        let upbit: Vec<_> = all.iter().map(|d| (d.upbit().status, d.upbit().name)).collect();
        assert_eq!(
            upbit,
            [
                (401, "expired_access_key"),
                (401, "expired_access_key"),
                (401, "expired_access_key"),
                (401, "no_authorization_ip"),
                (401, "out_of_scope"),
                (403, "open_api_withdraw_locked"),
                (403, "open_api_withdraw_locked"),
            ]
        );
        assert_eq!(KeyDenied::Expired.upbit().message, "This key has expired.");
        assert!(all.iter().all(|d| d.binance()
            == BinanceError { status: 401, code: -2015, msg: "Invalid API-key, IP, or permissions for action." }));
        assert_eq!(KeyDenied::CoolingOff { until: T0 }.status(), 403);
        assert_eq!(KeyDenied::Expired.status(), 401);
    }
}
