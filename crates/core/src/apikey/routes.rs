//! The route table: which scope each exchange endpoint needs, and which rate-limit group it
//! counts against (R64, R70).
//!
//! **Fail closed.** A request whose method and path match no rule is denied
//! ([`RouteDenied::NoRoute`]); so is a path that does not normalise ([`RouteDenied::InvalidPath`],
//! see [`super::path`]). A rule never means "anything goes": a rule with `scope = "none"` still
//! requires an authenticated, active key, it only needs no permission group (Upbit's
//! `GET /v1/status/wallet`, `GET /v1/api_keys`).
//!
//! The attack this stops: a read-only key reaching a trading or withdrawal endpoint through a
//! path the table did not anticipate (an unlisted endpoint, a method swap such as `GET` →
//! `DELETE /v1/orders/open`, or a path trick).
//!
//! ## Configuration
//!
//! ```toml
//! [[routes]]
//! method = "POST"            # exact, upper case (RFC 9110 §9.1: methods are case-sensitive)
//! path = "/v1/orders"        # a pattern, see below
//! scope = "place_orders"     # a scope name, or "none"; required, there is no default
//! group = "order"            # rate-limit group, [a-z-]{1,32}
//! weight = 1                 # optional, default 1: how many units of the group it costs
//! ```
//!
//! Patterns: an exact path (`/v1/orders`); `{name}` for exactly one segment
//! (`/v1/pockets/{id}`); a final `/*` for one or more further segments (`/v1/pockets/*` matches
//! `/v1/pockets/a` and `/v1/pockets/a/b`, not `/v1/pockets` itself). Literal segments must be in
//! normalised form. `HEAD` is not implied by `GET`: list it if you want it.
//!
//! When several rules match, the most specific wins: compared segment by segment, a literal
//! beats `{param}`, which beats `*`. Two rules with the same method and the same shape (equal
//! up to parameter names) are a configuration error, so the order of rules in the file never
//! matters.
//!
//! [`RouteTable::upbit_default`] is exchange-auth.md §1.6 (every listed endpoint, exact
//! methods); [`RouteTable::binance_default`] covers the Binance spot and capital endpoints the
//! supported clients use.

use serde::{Deserialize, Serialize};

use super::path::{NormalizedPath, PathError, normalize_path};
use super::scope::Scope;
use crate::ratelimit::RateGroup;

/// An HTTP method the table can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Method {
    /// `GET`
    Get,
    /// `HEAD`
    Head,
    /// `POST`
    Post,
    /// `PUT`
    Put,
    /// `PATCH`
    Patch,
    /// `DELETE`
    Delete,
    /// `OPTIONS`
    Options,
}

impl Method {
    /// Parses an upper-case method name (case-sensitive, RFC 9110 §9.1).
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    /// The method name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }
}

/// What a route demands of the key beyond being valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RouteAccess {
    /// Any active key of the account (config: `scope = "none"`).
    AnyKey,
    /// The key must hold this scope.
    Scope(Scope),
}

impl RouteAccess {
    /// The scope required, if any.
    pub const fn required_scope(self) -> Option<Scope> {
        match self {
            RouteAccess::AnyKey => None,
            RouteAccess::Scope(s) => Some(s),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    Param(String),
    Rest,
}

impl Segment {
    fn rank(&self) -> u8 {
        match self {
            Segment::Literal(_) => 0,
            Segment::Param(_) => 1,
            Segment::Rest => 2,
        }
    }
}

/// A validated path pattern (see the module docs for the syntax).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathPattern {
    text: String,
    segments: Vec<Segment>,
}

/// Longest accepted pattern, in bytes.
const MAX_PATTERN_LEN: usize = 256;

impl PathPattern {
    /// Parses a pattern; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        if text.len() > MAX_PATTERN_LEN {
            return Err("pattern longer than 256 bytes");
        }
        if !text.starts_with('/') {
            return Err("pattern must start with '/'");
        }
        let mut segments = Vec::new();
        if text != "/" {
            let parts: Vec<&str> = text.split('/').skip(1).collect();
            for (i, part) in parts.iter().enumerate() {
                let seg = if part.is_empty() {
                    return Err("empty segment ('//' or a trailing '/')");
                } else if *part == "*" {
                    if i + 1 != parts.len() {
                        return Err("'*' is only allowed as the last segment");
                    }
                    Segment::Rest
                } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                    let valid = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_')
                        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !valid {
                        return Err("parameter names are [a-z_][a-z0-9_]*");
                    }
                    Segment::Param(name.to_owned())
                } else {
                    let single = format!("/{part}");
                    if part.contains('*') {
                        return Err("'*' is only allowed as a whole last segment");
                    }
                    match normalize_path(&single) {
                        Ok(n) if n.as_str() == single => Segment::Literal((*part).to_owned()),
                        _ => {
                            return Err("literal segments must be non-empty and in normalised form");
                        }
                    }
                };
                segments.push(seg);
            }
        }
        Ok(Self { text: text.to_owned(), segments })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `path` matches.
    pub fn matches(&self, path: &NormalizedPath) -> bool {
        let mut segs = path.segments();
        for pat in &self.segments {
            match pat {
                Segment::Rest => return segs.next().is_some(),
                Segment::Param(_) => {
                    if segs.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(lit) => {
                    if segs.next() != Some(lit.as_str()) {
                        return false;
                    }
                }
            }
        }
        segs.next().is_none()
    }

    fn specificity(&self) -> Vec<u8> {
        self.segments.iter().map(Segment::rank).collect()
    }

    /// The pattern with parameter names erased: two patterns with equal shapes match exactly
    /// the same paths.
    fn shape(&self) -> Vec<Option<&str>> {
        self.segments
            .iter()
            .map(|s| match s {
                Segment::Literal(l) => Some(l.as_str()),
                Segment::Param(_) => None,
                Segment::Rest => Some("/*"),
            })
            .collect()
    }
}

/// One validated rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteRule {
    /// The method it applies to.
    pub method: Method,
    /// The path pattern.
    pub pattern: PathPattern,
    /// The scope the key needs.
    pub access: RouteAccess,
    /// The rate-limit group the request counts against.
    pub group: RateGroup,
    /// Units of the group one request costs (≥ 1; Binance "request weight").
    pub weight: u32,
    /// `METHOD pattern`, the rule's name in usage counts and risk observations (built once).
    pub label: std::sync::Arc<str>,
}

/// One rule as written in configuration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Upper-case HTTP method.
    pub method: String,
    /// Path pattern.
    pub path: String,
    /// A scope name or `"none"`.
    pub scope: String,
    /// Rate-limit group name.
    pub group: String,
    /// Cost in group units; 1 when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<u32>,
}

/// The `[[routes]]` section of the configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteTableConfig {
    /// The rules, in any order.
    pub routes: Vec<RouteConfig>,
}

/// Largest accepted weight.
pub const MAX_WEIGHT: u32 = 10_000;

/// Why a route configuration was refused; `index` is the position in `routes`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteConfigError {
    /// The table has no rule (it would deny everything; almost certainly a mistake).
    #[error("route table is empty")]
    Empty,
    /// Not an upper-case method name of [`Method`].
    #[error("routes[{index}]: unknown method {method:?}")]
    Method {
        /// Rule position.
        index: usize,
        /// What was written (shortened).
        method: String,
    },
    /// The path pattern is invalid.
    #[error("routes[{index}]: invalid path pattern: {reason}")]
    Pattern {
        /// Rule position.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Neither `"none"` nor a scope name.
    #[error("routes[{index}]: unknown scope {scope:?}")]
    Scope {
        /// Rule position.
        index: usize,
        /// What was written (shortened).
        scope: String,
    },
    /// The group name is invalid.
    #[error("routes[{index}]: invalid group: {reason}")]
    Group {
        /// Rule position.
        index: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Weight 0 or above [`MAX_WEIGHT`].
    #[error("routes[{index}]: weight must be 1..=10000")]
    Weight {
        /// Rule position.
        index: usize,
    },
    /// Another rule has the same method and pattern shape.
    #[error("routes[{index}]: duplicate of an earlier rule for {method} {path}")]
    Duplicate {
        /// Rule position.
        index: usize,
        /// Method.
        method: &'static str,
        /// Pattern.
        path: String,
    },
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

/// Why a request was not matched to a rule. Both mean "deny"; the dialect decides the answer
/// (native: 404; Upbit: 401 `out_of_scope` or 404; Binance: −2015 or 404).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RouteDenied {
    /// The path did not normalise (a path trick or a malformed target).
    #[error("invalid request path: {0}")]
    InvalidPath(PathError),
    /// The method is unknown, or no rule matches this method and path.
    #[error("no route")]
    NoRoute,
}

/// A matched request: the rule and the canonical path to forward upstream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedRoute<'a> {
    /// The rule that applies.
    pub rule: &'a RouteRule,
    /// The normalised path; forward this, not the raw target.
    pub path: NormalizedPath,
}

/// A validated, ordered set of rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteTable {
    /// Sorted by (method, specificity): the first match is the most specific one.
    rules: Vec<RouteRule>,
}

impl RouteTable {
    /// A table that matches nothing: every request is denied.
    pub fn deny_all() -> Self {
        Self { rules: Vec::new() }
    }

    /// Validates a configuration.
    pub fn from_config(cfg: &RouteTableConfig) -> Result<Self, RouteConfigError> {
        if cfg.routes.is_empty() {
            return Err(RouteConfigError::Empty);
        }
        let mut rules: Vec<RouteRule> = Vec::with_capacity(cfg.routes.len());
        for (index, r) in cfg.routes.iter().enumerate() {
            let method = Method::parse(&r.method)
                .ok_or_else(|| RouteConfigError::Method { index, method: shorten(&r.method) })?;
            let pattern = PathPattern::parse(&r.path).map_err(|reason| RouteConfigError::Pattern { index, reason })?;
            let access = if r.scope == "none" {
                RouteAccess::AnyKey
            } else {
                Scope::from_name(&r.scope)
                    .map(RouteAccess::Scope)
                    .ok_or_else(|| RouteConfigError::Scope { index, scope: shorten(&r.scope) })?
            };
            let group = RateGroup::new(&r.group).map_err(|e| RouteConfigError::Group { index, reason: e.reason() })?;
            let weight = r.weight.unwrap_or(1);
            if weight == 0 || weight > MAX_WEIGHT {
                return Err(RouteConfigError::Weight { index });
            }
            if rules.iter().any(|o| o.method == method && o.pattern.shape() == pattern.shape()) {
                return Err(RouteConfigError::Duplicate { index, method: method.as_str(), path: shorten(&r.path) });
            }
            let label = format!("{} {}", method.as_str(), pattern.as_str()).into();
            rules.push(RouteRule { method, pattern, access, group, weight, label });
        }
        rules.sort_by_key(|r| (r.method, r.pattern.specificity()));
        Ok(Self { rules })
    }

    /// The Upbit table of exchange-auth.md §1.6, with the §1.7 groups.
    ///
    /// Groups: `order` for order creation, `order-test` for the test order,
    /// `order-cancel-all` for `DELETE /v1/orders/open`, `default` for everything else.
    /// `POST /v1/deposits/generate_coin_address` needs `deposit`: Upbit's docs disagree
    /// (view-deposits in the table, deposit on the endpoint's own page) and creating an
    /// address is a state change, so the stricter reading is used. `/v1/pockets*` is not
    /// listed (no scope models it), so it is denied.
    pub fn upbit_default() -> Self {
        Self::from_config(&RouteTableConfig::upbit_default()).unwrap_or_else(|_| Self::deny_all())
    }

    /// Binance spot and capital endpoints used by ccxt and python-binance. Groups:
    /// `default` (request weight per minute), `order` (orders placed), `sapi` (the `/sapi`
    /// weight budget). Weights approximate Binance's published ones; tune them in
    /// configuration. Public market-data endpoints (`/api/v3/ping`, `/time`, `depth`, …) need
    /// no key and are not in this table.
    pub fn binance_default() -> Self {
        Self::from_config(&RouteTableConfig::binance_default()).unwrap_or_else(|_| Self::deny_all())
    }

    /// The rule for `method` and raw `path`, if any. `None` means deny.
    pub fn lookup(&self, method: &str, path: &str) -> Option<&RouteRule> {
        self.resolve(method, path).ok().map(|r| r.rule)
    }

    /// Like [`lookup`](Self::lookup), but says why a request was denied and returns the
    /// normalised path the server must forward.
    pub fn resolve(&self, method: &str, path: &str) -> Result<ResolvedRoute<'_>, RouteDenied> {
        let path = normalize_path(path).map_err(RouteDenied::InvalidPath)?;
        let method = Method::parse(method).ok_or(RouteDenied::NoRoute)?;
        self.rules
            .iter()
            .find(|r| r.method == method && r.pattern.matches(&path))
            .map(|rule| ResolvedRoute { rule, path })
            .ok_or(RouteDenied::NoRoute)
    }

    /// Every rule, most specific first within each method.
    pub fn rules(&self) -> &[RouteRule] {
        &self.rules
    }
}

type Row = (&'static str, &'static str, &'static str, &'static str, u32);

fn rows_to_config(rows: &[Row]) -> RouteTableConfig {
    RouteTableConfig {
        routes: rows
            .iter()
            .map(|(method, path, scope, group, weight)| RouteConfig {
                method: (*method).to_owned(),
                path: (*path).to_owned(),
                scope: (*scope).to_owned(),
                group: (*group).to_owned(),
                weight: (*weight != 1).then_some(*weight),
            })
            .collect(),
    }
}

const UPBIT: &[Row] = &[
    ("GET", "/v1/status/wallet", "none", "default", 1),
    ("GET", "/v1/api_keys", "none", "default", 1),
    ("GET", "/v1/accounts", "view_assets", "default", 1),
    ("GET", "/v1/orders/chance", "view_orders", "default", 1),
    // The older order-list endpoint, still what pyupbit's get_order calls.
    ("GET", "/v1/orders", "view_orders", "default", 1),
    ("GET", "/v1/order", "view_orders", "default", 1),
    ("GET", "/v1/orders/uuids", "view_orders", "default", 1),
    ("GET", "/v1/orders/open", "view_orders", "default", 1),
    ("GET", "/v1/orders/closed", "view_orders", "default", 1),
    ("POST", "/v1/orders", "place_orders", "order", 1),
    ("POST", "/v1/orders/test", "place_orders", "order-test", 1),
    ("DELETE", "/v1/order", "place_orders", "default", 1),
    ("DELETE", "/v1/orders/uuids", "place_orders", "default", 1),
    ("DELETE", "/v1/orders/open", "place_orders", "order-cancel-all", 1),
    ("POST", "/v1/orders/cancel_and_new", "place_orders", "order", 1),
    ("GET", "/v1/withdraws/chance", "view_withdrawals", "default", 1),
    ("GET", "/v1/withdraws/coin_addresses", "view_withdrawals", "default", 1),
    ("GET", "/v1/withdraw", "view_withdrawals", "default", 1),
    ("GET", "/v1/withdraws", "view_withdrawals", "default", 1),
    ("POST", "/v1/withdraws/coin", "withdraw", "default", 1),
    ("POST", "/v1/withdraws/krw", "withdraw", "default", 1),
    ("DELETE", "/v1/withdraws/coin", "withdraw", "default", 1),
    ("GET", "/v1/deposits/chance/coin", "view_deposits", "default", 1),
    ("GET", "/v1/deposits/coin_address", "view_deposits", "default", 1),
    ("GET", "/v1/deposits/coin_addresses", "view_deposits", "default", 1),
    ("GET", "/v1/deposit", "view_deposits", "default", 1),
    ("GET", "/v1/deposits", "view_deposits", "default", 1),
    ("GET", "/v1/travel_rule/vasps", "view_deposits", "default", 1),
    ("POST", "/v1/deposits/generate_coin_address", "deposit", "default", 1),
    ("POST", "/v1/deposits/krw", "deposit", "default", 1),
    ("POST", "/v1/travel_rule/deposit/uuid", "deposit", "default", 1),
    ("POST", "/v1/travel_rule/deposit/txid", "deposit", "default", 1),
];

const BINANCE: &[Row] = &[
    ("GET", "/api/v3/account", "view_assets", "default", 20),
    ("GET", "/api/v3/order", "view_orders", "default", 4),
    ("GET", "/api/v3/openOrders", "view_orders", "default", 6),
    ("GET", "/api/v3/allOrders", "view_orders", "default", 20),
    ("GET", "/api/v3/myTrades", "view_orders", "default", 20),
    ("POST", "/api/v3/order", "place_orders", "order", 1),
    ("POST", "/api/v3/order/test", "place_orders", "default", 1),
    ("POST", "/api/v3/order/cancelReplace", "place_orders", "order", 1),
    ("DELETE", "/api/v3/order", "place_orders", "default", 1),
    ("DELETE", "/api/v3/openOrders", "place_orders", "default", 1),
    ("POST", "/sapi/v1/capital/withdraw/apply", "withdraw", "sapi", 600),
    ("GET", "/sapi/v1/capital/withdraw/history", "view_withdrawals", "sapi", 1),
    ("GET", "/sapi/v1/capital/withdraw/address/list", "view_withdrawals", "sapi", 10),
    ("GET", "/sapi/v1/capital/deposit/hisrec", "view_deposits", "sapi", 1),
    ("GET", "/sapi/v1/capital/deposit/address", "view_deposits", "sapi", 10),
    ("GET", "/sapi/v1/capital/config/getall", "view_assets", "sapi", 10),
    ("GET", "/sapi/v1/account/apiRestrictions", "none", "sapi", 1),
];

impl RouteTableConfig {
    /// The configuration behind [`RouteTable::upbit_default`], to print or extend.
    pub fn upbit_default() -> Self {
        rows_to_config(UPBIT)
    }

    /// The configuration behind [`RouteTable::binance_default`], to print or extend.
    pub fn binance_default() -> Self {
        rows_to_config(BINANCE)
    }
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
