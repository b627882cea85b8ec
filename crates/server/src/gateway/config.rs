//! `[gateway]`: the proxied routes, their dialects and upstreams, signing and rate-limit
//! policy, and the secret shared with the upstream for identity assertions.

use gatehouse_core::apikey::RouteTableConfig;
use gatehouse_core::ratelimit::GroupLimitConfig;
use gatehouse_core::secret::SecretString;
use gatehouse_core::signing::{Dialect, SigningPolicy};
use serde::{Deserialize, Serialize};

/// One proxied route prefix.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Incoming path prefix, e.g. `/v1` (Upbit) or `/api` (Binance). Must start with `/`
    /// and never overlap gatehouse's own `/_gh`.
    pub prefix: String,
    /// Signing dialect.
    pub dialect: Dialect,
    /// Upstream base URL (`http://host:port`); requests keep their path unless
    /// `strip_prefix` is set.
    pub upstream: String,
    /// Remove `prefix` before matching the route table and forwarding (`/native/v1/orders`
    /// → `/v1/orders`).
    #[serde(default)]
    pub strip_prefix: bool,
    /// Route table: `upbit`, `binance` or the name of a `[gateway.tables.<name>]`.
    pub table: String,
    /// Rate-limit groups: `upbit`, `binance` or the name of a `[gateway.limits.<name>]`.
    #[serde(default)]
    pub limits: Option<String>,
    /// Public GET paths (exact, after `strip_prefix`) forwarded without a signature, such as
    /// Binance's `/api/v3/ping` and `/api/v3/time`: only the per-IP budget applies, and no
    /// identity is asserted to the upstream.
    #[serde(default)]
    pub public: Vec<String>,
}

/// `[gateway]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    /// Proxied routes; empty disables the proxy.
    pub routes: Vec<RouteConfig>,
    /// Custom route tables by name.
    pub tables: std::collections::BTreeMap<String, RouteTableConfig>,
    /// Custom rate-limit group sets by name.
    pub limits: std::collections::BTreeMap<String, Vec<GroupLimitConfig>>,
    /// Signing policy of the three dialects.
    pub signing: SigningPolicy,
    /// Secret shared with the upstream to sign `X-Gatehouse-Identity` (base64url, ≥ 32
    /// bytes). Required when routes are configured.
    pub identity_secret: SecretString,
    /// How long a key record is cached, in ms (revocations reach every instance within it;
    /// F16 needs ≤ 1000; capped at 1000).
    pub key_cache_ms: u64,
    /// Largest proxied body, in bytes.
    pub max_body_bytes: usize,
    /// Requests per second admitted from one client IP before any verification (1..=1000;
    /// 0 disables the per-IP budget — benchmarks only).
    pub per_ip_per_second: u32,
    /// Upstream connect + response-header timeout, in ms.
    pub upstream_timeout_ms: u64,
    /// Where single-use nonces and signatures are recorded: `auto` (Redis when configured,
    /// else the database), `database`, or `memory` (one process only; lost on restart).
    pub replay_store: super::ReplayMode,
    /// How many instances share the limits; when Redis fails, each enforces 1/N (F4).
    pub instances: u32,
    /// Entries of the in-memory replay store (`replay_store = "memory"`): when full, signed
    /// requests get 503 until entries expire (live nonces are never evicted). Size it for
    /// the signed-request rate × the longest window (Binance: 62 s).
    pub replay_memory_capacity: usize,
    /// How often expiry reminders are checked, in seconds (reminders at 30, 7 and 1 days).
    pub reminder_check_secs: u64,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            routes: vec![],
            tables: Default::default(),
            limits: Default::default(),
            signing: SigningPolicy::default(),
            identity_secret: SecretString::default(),
            key_cache_ms: 500,
            max_body_bytes: 64 * 1024,
            per_ip_per_second: 200,
            upstream_timeout_ms: 10_000,
            replay_store: super::ReplayMode::Auto,
            instances: 1,
            reminder_check_secs: 3600,
            replay_memory_capacity: 4_000_000,
        }
    }
}
