//! API keys: what a verified signed request may do (R63–R74, R19, F3–F7, F16, F17).
//!
//! Signature verification (the `signing` module) answers "who signed this". This module
//! answers "may that key do this, from there, now", as pure functions of the key record, the
//! request and `now`. The server runs the steps of one request in this order (R68,
//! exchange-auth.md §1.4):
//!
//! 1. [`proxy::TrustedProxies::client_ip`]: the true client address (R19);
//! 2. [`routes::RouteTable::resolve`]: the normalised path and the rule for method + path;
//!    no rule means deny (fail closed), path tricks are refused ([`path`]);
//! 3. *(signing module: parse, key lookup, timestamp, constant-time signature check)*;
//! 4. [`policy::authorize`]: key status → IP allowlist → scope → withdraw lock and
//!    cooling-off, each failure its own [`policy::KeyDenied`] so every dialect can answer in
//!    its own words;
//! 5. [`crate::replay`]: the nonce or signature is recorded, once;
//! 6. [`crate::ratelimit`]: the key's (or account's) budget for the route's group.
//!
//! Key records, creation rules, rotation and the life cycle are in [`key`]; scopes in
//! [`scope`]; allowlists in [`allowlist`].
//!
//! Threats in view: a stolen key used from elsewhere (allowlist), a read key reaching trading
//! or withdrawal endpoints (scopes, fail-closed routing, path normalisation), a fresh or
//! freshly widened key used to drain funds at once (lock, cooling-off, delayed widening),
//! spoofed proxy headers (trusted proxies only).

pub mod allowlist;
pub mod key;
pub mod path;
pub mod policy;
pub mod proxy;
pub mod routes;
pub mod scope;

pub use allowlist::{AllowlistError, IpAllowlist};
pub use key::{ApiKey, ApiKeyId, ApiKeyStatus, KeyError, KeyKind, KeyLabel, KeyPolicy, NewApiKey};
pub use path::{NormalizedPath, PathError, normalize_path};
pub use policy::{Authorized, KeyDenied, authorize};
pub use proxy::{ClientIp, ClientIpSource, ProxyConfigError, TrustedProxies};
pub use routes::{Method, RouteAccess, RouteDenied, RouteRule, RouteTable, RouteTableConfig};
pub use scope::{Scope, ScopeError, ScopeSet};
