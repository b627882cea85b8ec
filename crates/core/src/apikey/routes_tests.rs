//! Tests of the route table and its defaults.

use super::*;

fn scope_of(t: &RouteTable, m: &str, p: &str) -> Option<RouteAccess> {
    t.lookup(m, p).map(|r| r.access)
}

fn cfg(rows: &[(&str, &str, &str, &str)]) -> RouteTableConfig {
    RouteTableConfig {
        routes: rows
            .iter()
            .map(|(m, p, s, g)| RouteConfig {
                method: (*m).into(),
                path: (*p).into(),
                scope: (*s).into(),
                group: (*g).into(),
                weight: None,
            })
            .collect(),
    }
}

#[test]
fn defaults_are_valid_and_complete() {
    let up = RouteTable::from_config(&RouteTableConfig::upbit_default());
    assert_eq!(up.map(|t| t.rules().len()), Ok(UPBIT.len()));
    let bn = RouteTable::from_config(&RouteTableConfig::binance_default());
    assert_eq!(bn.map(|t| t.rules().len()), Ok(BINANCE.len()));
}

#[test]
fn upbit_table_maps_every_group() {
    let t = RouteTable::upbit_default();
    use RouteAccess::*;
    assert_eq!(scope_of(&t, "GET", "/v1/status/wallet"), Some(AnyKey));
    assert_eq!(scope_of(&t, "GET", "/v1/api_keys"), Some(AnyKey));
    assert_eq!(scope_of(&t, "GET", "/v1/accounts"), Some(Scope(super::Scope::ViewAssets)));
    assert_eq!(scope_of(&t, "GET", "/v1/orders/open"), Some(Scope(super::Scope::ViewOrders)));
    assert_eq!(scope_of(&t, "DELETE", "/v1/orders/open"), Some(Scope(super::Scope::PlaceOrders)));
    assert_eq!(scope_of(&t, "POST", "/v1/withdraws/coin"), Some(Scope(super::Scope::Withdraw)));
    assert_eq!(scope_of(&t, "GET", "/v1/withdraws"), Some(Scope(super::Scope::ViewWithdrawals)));
    assert_eq!(scope_of(&t, "GET", "/v1/deposits"), Some(Scope(super::Scope::ViewDeposits)));
    assert_eq!(scope_of(&t, "POST", "/v1/deposits/generate_coin_address"), Some(Scope(super::Scope::Deposit)));
    let g = |m, p| t.lookup(m, p).map(|r| r.group.as_str().to_owned());
    assert_eq!(g("POST", "/v1/orders").as_deref(), Some("order"));
    assert_eq!(g("POST", "/v1/orders/test").as_deref(), Some("order-test"));
    assert_eq!(g("DELETE", "/v1/orders/open").as_deref(), Some("order-cancel-all"));
    assert_eq!(g("GET", "/v1/accounts").as_deref(), Some("default"));
}

#[test]
fn binance_table() {
    let t = RouteTable::binance_default();
    use super::Scope as S;
    let s = |m, p| t.lookup(m, p).and_then(|r| r.access.required_scope());
    assert_eq!(s("GET", "/api/v3/account"), Some(S::ViewAssets));
    for p in ["/api/v3/order", "/api/v3/openOrders", "/api/v3/allOrders", "/api/v3/myTrades"] {
        assert_eq!(s("GET", p), Some(S::ViewOrders), "{p}");
    }
    assert_eq!(s("POST", "/api/v3/order"), Some(S::PlaceOrders));
    assert_eq!(s("DELETE", "/api/v3/order"), Some(S::PlaceOrders));
    assert_eq!(s("DELETE", "/api/v3/openOrders"), Some(S::PlaceOrders));
    assert_eq!(s("POST", "/api/v3/order/test"), Some(S::PlaceOrders));
    assert_eq!(s("POST", "/sapi/v1/capital/withdraw/apply"), Some(S::Withdraw));
    assert_eq!(s("GET", "/sapi/v1/capital/withdraw/history"), Some(S::ViewWithdrawals));
    assert_eq!(s("GET", "/sapi/v1/capital/deposit/hisrec"), Some(S::ViewDeposits));
    assert_eq!(s("GET", "/sapi/v1/capital/deposit/address"), Some(S::ViewDeposits));
    assert_eq!(t.lookup("GET", "/api/v3/account").map(|r| r.weight), Some(20));
}

#[test]
fn unmatched_is_denied_with_a_distinct_outcome() {
    let t = RouteTable::upbit_default();
    assert_eq!(t.resolve("PUT", "/v1/orders").err(), Some(RouteDenied::NoRoute));
    assert_eq!(t.resolve("get", "/v1/accounts").err(), Some(RouteDenied::NoRoute));
    assert_eq!(t.resolve("HEAD", "/v1/accounts").err(), Some(RouteDenied::NoRoute));
    assert_eq!(t.resolve("GET", "/v1/pockets").err(), Some(RouteDenied::NoRoute));
    assert_eq!(t.resolve("GET", "/V1/ACCOUNTS").err(), Some(RouteDenied::NoRoute));
    assert_eq!(t.resolve("BREW", "/v1/accounts").err(), Some(RouteDenied::NoRoute));
    assert!(RouteTable::deny_all().lookup("GET", "/v1/accounts").is_none());
}

#[test]
fn path_tricks_cannot_reach_a_stronger_route_through_a_weaker_one() {
    // A wildcard "none" rule is the worst case: a trick that escapes it would reach the
    // withdrawal endpoint with a key that has no scope at all.
    let Ok(t) = RouteTable::from_config(&cfg(&[
        ("GET", "/v1/status/*", "none", "default"),
        ("POST", "/v1/withdraws/coin", "withdraw", "default"),
        ("GET", "/v1/withdraws/coin", "view_withdrawals", "default"),
    ])) else {
        unreachable!()
    };
    for p in [
        "/v1/status/../withdraws/coin",
        "/v1/status/%2E%2E/withdraws/coin",
        "/v1/status/..%2Fwithdraws%2Fcoin",
        "/v1/status/..;/withdraws/coin",
        "/v1/status/x/..%5C..%5Cwithdraws%5Ccoin",
        "/v1/status/%252E%252E/withdraws/coin",
    ] {
        assert!(matches!(t.resolve("GET", p), Err(RouteDenied::InvalidPath(_))), "{p} -> {:?}", t.resolve("GET", p));
    }
    for p in ["/v1//withdraws/coin", "/v1/withdraws/coin/", "/v1/withdraws/coin%3B"] {
        assert!(t.lookup("GET", p).is_none(), "{p}");
    }
    // Encoded unreserved characters are decoded, so they reach the rule they spell.
    let r = t.resolve("POST", "/v1/%77ithdraws/coin");
    assert_eq!(
        r.map(|r| (r.rule.access, r.path.as_str().to_owned())).ok(),
        Some((RouteAccess::Scope(super::Scope::Withdraw), "/v1/withdraws/coin".to_owned()))
    );
}

#[test]
fn most_specific_rule_wins_regardless_of_order() {
    let rows = [
        ("GET", "/v1/pockets/*", "none", "default"),
        ("GET", "/v1/pockets/{id}", "view_assets", "default"),
        ("GET", "/v1/pockets/{id}/orders", "view_orders", "default"),
        ("GET", "/v1/pockets/main", "view_deposits", "default"),
    ];
    for rev in [false, true] {
        let mut rows = rows.to_vec();
        if rev {
            rows.reverse();
        }
        let Ok(t) = RouteTable::from_config(&cfg(&rows)) else { unreachable!() };
        let s = |p| t.lookup("GET", p).map(|r| r.pattern.as_str().to_owned());
        assert_eq!(s("/v1/pockets/main").as_deref(), Some("/v1/pockets/main"));
        assert_eq!(s("/v1/pockets/abc").as_deref(), Some("/v1/pockets/{id}"));
        assert_eq!(s("/v1/pockets/abc/orders").as_deref(), Some("/v1/pockets/{id}/orders"));
        assert_eq!(s("/v1/pockets/abc/trades").as_deref(), Some("/v1/pockets/*"));
        assert_eq!(s("/v1/pockets"), None);
    }
}

#[test]
fn config_validation() {
    let e = |rows: &[(&str, &str, &str, &str)]| RouteTable::from_config(&cfg(rows)).err();
    assert_eq!(e(&[]), Some(RouteConfigError::Empty));
    assert!(matches!(e(&[("get", "/a", "none", "default")]), Some(RouteConfigError::Method { .. })));
    assert!(matches!(e(&[("GET", "/a", "admin", "default")]), Some(RouteConfigError::Scope { .. })));
    assert!(matches!(e(&[("GET", "/a", "", "default")]), Some(RouteConfigError::Scope { .. })));
    assert!(matches!(e(&[("GET", "/a", "none", "Order")]), Some(RouteConfigError::Group { .. })));
    for bad in ["a", "/a/", "/a//b", "/a/*/b", "/a/{Id}", "/a/{}", "/a/../b", "/a/%2F", "/a/b*"] {
        assert!(matches!(e(&[("GET", bad, "none", "default")]), Some(RouteConfigError::Pattern { .. })), "{bad}");
    }
    assert!(matches!(
        e(&[("GET", "/a/{x}", "none", "default"), ("GET", "/a/{y}", "view_assets", "default")]),
        Some(RouteConfigError::Duplicate { index: 1, .. })
    ));
    assert!(e(&[("GET", "/a/{x}", "none", "default"), ("POST", "/a/{y}", "view_assets", "default")]).is_none());
    let mut c = cfg(&[("GET", "/a", "none", "default")]);
    c.routes[0].weight = Some(0);
    assert_eq!(RouteTable::from_config(&c).err(), Some(RouteConfigError::Weight { index: 0 }));
}

#[test]
fn config_parses_from_json_and_refuses_unknown_fields() {
    let json = r#"{"routes":[{"method":"POST","path":"/v1/orders","scope":"place_orders","group":"order"}]}"#;
    let Ok(c) = serde_json::from_str::<RouteTableConfig>(json) else { unreachable!() };
    let Ok(t) = RouteTable::from_config(&c) else { unreachable!() };
    assert_eq!(t.lookup("POST", "/v1/orders").map(|r| r.weight), Some(1));
    let extra = r#"{"routes":[{"method":"GET","path":"/a","scope":"none","group":"g","allow":true}]}"#;
    assert!(serde_json::from_str::<RouteTableConfig>(extra).is_err());
    let missing = r#"{"routes":[{"method":"GET","path":"/a","group":"g"}]}"#;
    assert!(serde_json::from_str::<RouteTableConfig>(missing).is_err());
}
