//! The verifying gateway: reverse proxy and forward auth for signed exchange API requests.
//!
//! One pipeline serves both deployment modes (R68, exchange-auth.md §1.4):
//!
//! 1. per-IP budget (before any parsing, so garbage floods stay cheap);
//! 2. API key in the URL → refused (R73);
//! 3. route resolution on the normalised path; no rule → deny (fail closed);
//! 4. `signing::parse` (size limits, structure, key id);
//! 5. key lookup (cached ≤ 1 s); unknown → the same work as a bad signature;
//! 6. `signing::verify` (window, constant-time MAC or strict signature, query hash / digest);
//! 7. `apikey::authorize` (status, IP allowlist, scope, withdraw lock and cooling-off);
//! 8. replay insert (atomic, only now, so a forged request never burns a nonce);
//! 9. the key's budget for the route's group.
//!
//! Every outcome for a known key is counted in the usage log; denials are audited in
//! aggregated events; the request, once granted, carries a signed `X-Gatehouse-Identity`.

pub mod alerts;
pub mod config;
pub mod deny;
pub mod forward;
pub mod keys;
pub mod proxy;
pub mod usage;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::apikey::{ApiKeyId, KeyPolicy, RouteDenied, RouteTable, authorize};
use gatehouse_core::clock::{Span, Timestamp};
use gatehouse_core::ratelimit::{
    Decision, Gcra, GroupLimits, LocalLimiter, RateGroup, ip_rate_key, upbit_remaining_req,
};
use gatehouse_core::replay::ReplayKey;
use gatehouse_core::secret::SecretBytes;
use gatehouse_core::signing::{self, Denial, Dialect, DialectError, RawRequest, SigningPolicy};
use gatehouse_core::store::Store;
use gatehouse_core::upstream::{Identity, IdentitySigner};
use gatehouse_store::redis::RedisHandle;

use self::config::GatewayConfig;
use self::deny::Denied;
use self::keys::{CachedKey, KeyCache};
use self::usage::UsageLog;

/// A configured route prefix, compiled.
pub struct CompiledRoute {
    /// Incoming prefix.
    pub prefix: String,
    /// Dialect.
    pub dialect: Dialect,
    /// Upstream scheme + authority, e.g. `http://127.0.0.1:9000`.
    pub upstream: String,
    /// Strip the prefix before matching and forwarding.
    pub strip_prefix: bool,
    /// Route table.
    pub table: RouteTable,
    /// Rate-limit groups.
    pub limits: GroupLimits,
    /// Public GET paths forwarded without a signature.
    pub public: Vec<String>,
    /// Metrics label (`gateway:<prefix>`).
    pub metric_label: std::sync::Arc<str>,
}

impl CompiledRoute {
    /// Whether `path` belongs to this route (prefix at a segment boundary).
    pub fn matches(&self, path: &str) -> bool {
        path.strip_prefix(self.prefix.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    }

    /// The path to match and forward.
    pub fn inner_path<'a>(&self, path: &'a str) -> &'a str {
        if self.strip_prefix {
            let rest = &path[self.prefix.len().min(path.len())..];
            if rest.is_empty() { "/" } else { rest }
        } else {
            path
        }
    }
}

/// Where single-use records live.
pub enum ReplayBackend {
    /// Redis `SET NX PX`, shared by every instance. If Redis does not answer, signed requests
    /// are refused (fail closed, F3).
    Redis(RedisHandle),
    /// The database's replay table with group commit (embedded mode, or no Redis).
    Database,
    /// This process only (single instance, benchmarks); lost on restart.
    Memory(gatehouse_core::replay::ReplayCache),
}

/// Where rate-limit buckets live.
pub enum LimiterBackend {
    /// Redis GCRA script shared by every instance; when Redis fails, a local limiter with
    /// each limit divided by `instances` (F4: never unlimited).
    Redis {
        /// The shared Redis.
        redis: RedisHandle,
        /// The fallback limiter.
        local: LocalLimiter,
        /// How many instances share the limits.
        instances: gatehouse_core::ratelimit::DegradedShare,
    },
    /// This process only.
    Local(LocalLimiter),
}

/// The verifying gateway.
pub struct Gateway {
    /// Routes, longest prefix first.
    pub routes: Vec<CompiledRoute>,
    /// Signing policy.
    pub signing: SigningPolicy,
    /// Key rules.
    pub key_policy: KeyPolicy,
    /// Key cache.
    pub keys: KeyCache,
    /// Signs identity assertions (keyed once with `gateway.identity_secret`).
    pub identity: IdentitySigner,
    /// Replay store.
    pub replay: ReplayBackend,
    /// Rate limiter.
    pub limiter: LimiterBackend,
    /// Per-IP budget (`None`: disabled).
    pub per_ip: Option<Gcra>,
    /// Usage accumulator.
    pub usage: UsageLog,
    /// Largest body.
    pub max_body: usize,
    /// Upstream HTTP client.
    pub client: proxy::HttpClient,
    /// Group named in `Remaining-Req` before a route is known.
    pub default_group: RateGroup,
    /// Metrics sink (set by the server).
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// Risk engine (set by the server when enabled).
    pub risk: Option<Arc<crate::risk::RiskService>>,
    /// Risk challenges waiting to be audited, notified and (for `freeze`) acted on by the
    /// flush loop, which owns the state needed for that.
    pub risk_alerts: std::sync::Mutex<Vec<RiskAlert>>,
}

/// A risk decision on an API-key request, handled asynchronously by the flush loop.
#[derive(Debug, Clone)]
pub struct RiskAlert {
    /// The key's owner.
    pub owner: gatehouse_core::ids::UserId,
    /// The key.
    pub key: ApiKeyId,
    /// The client IP.
    pub ip: IpAddr,
    /// The route.
    pub route: String,
    /// The assessment.
    pub assessment: gatehouse_core::risk::Assessment,
}

/// A request that passed every check.
pub struct Granted {
    /// The key.
    pub key: Arc<CachedKey>,
    /// The signed identity header value.
    pub identity: String,
    /// The normalised path to forward.
    pub path: String,
    /// Headers to add to the answer (`Remaining-Req`, rate-limit headers).
    pub headers: Vec<(&'static str, String)>,
    /// Route label for the usage log (`METHOD pattern`).
    pub route_label: Arc<str>,
}

/// What the caller knows about the request besides its bytes.
pub struct Caller<'a> {
    /// Client IP (trusted-proxy rules applied).
    pub ip: IpAddr,
    /// User agent.
    pub user_agent: Option<&'a str>,
    /// Now.
    pub now: Timestamp,
}

fn upbit_header(
    dialect: Dialect,
    group: &RateGroup,
    decision: Option<&Decision>,
    gcra: Option<&Gcra>,
) -> Vec<(&'static str, String)> {
    if dialect != Dialect::Upbit {
        return vec![];
    }
    let value = match (decision, gcra) {
        (Some(d), _) => upbit_remaining_req(group, d),
        (None, Some(g)) => {
            format!("group={group}; min={}; sec={}", gatehouse_core::ratelimit::UPBIT_MIN_FIELD, g.burst())
        }
        (None, None) => format!("group={group}; min={}; sec=0", gatehouse_core::ratelimit::UPBIT_MIN_FIELD),
    };
    vec![("remaining-req", value)]
}

impl Gateway {
    /// Builds the gateway from configuration.
    pub fn new(
        cfg: &GatewayConfig,
        key_policy: KeyPolicy,
        redis: Option<RedisHandle>,
        replay_mode: ReplayMode,
        instances: u32,
    ) -> anyhow::Result<Self> {
        cfg.signing.validate().map_err(|e| anyhow::anyhow!("gateway.signing: {e}"))?;
        key_policy.validate().map_err(|e| anyhow::anyhow!("apikey: {e}"))?;
        let mut routes = Vec::new();
        for r in &cfg.routes {
            if !r.prefix.starts_with('/') || r.prefix.starts_with(crate::routes::PREFIX) || r.prefix.ends_with('/') {
                anyhow::bail!(
                    "gateway route prefix {:?} must start with '/', not end with '/', and not be under /_gh",
                    r.prefix
                );
            }
            let upstream = r.upstream.trim_end_matches('/').to_owned();
            if !upstream.starts_with("http://") {
                anyhow::bail!("gateway upstream {:?} must be an http:// URL", r.upstream);
            }
            let table = match r.table.as_str() {
                "upbit" => RouteTable::upbit_default(),
                "binance" => RouteTable::binance_default(),
                name => RouteTable::from_config(
                    cfg.tables.get(name).ok_or_else(|| anyhow::anyhow!("gateway.tables.{name} is not defined"))?,
                )
                .map_err(|e| anyhow::anyhow!("gateway.tables.{name}: {e}"))?,
            };
            let limits_name = r.limits.clone().unwrap_or_else(|| r.table.clone());
            let limits = match limits_name.as_str() {
                "upbit" => GroupLimits::upbit_default(),
                "binance" => GroupLimits::binance_default(),
                name => GroupLimits::from_config(
                    cfg.limits.get(name).ok_or_else(|| anyhow::anyhow!("gateway.limits.{name} is not defined"))?,
                )
                .map_err(|e| anyhow::anyhow!("gateway.limits.{name}: {e}"))?,
            };
            limits.check_routes(&table).map_err(|e| anyhow::anyhow!("gateway route {}: {e}", r.prefix))?;
            routes.push(CompiledRoute {
                prefix: r.prefix.clone(),
                dialect: r.dialect,
                upstream,
                strip_prefix: r.strip_prefix,
                table,
                limits,
                public: r.public.clone(),
                metric_label: format!("gateway:{}", r.prefix).into(),
            });
        }
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let secret = URL_SAFE_NO_PAD.decode(cfg.identity_secret.expose().trim()).unwrap_or_default();
        if !routes.is_empty() && secret.len() < 32 {
            anyhow::bail!("gateway.identity_secret must be at least 32 bytes of base64url when routes are configured");
        }
        let replay = match (replay_mode, &redis) {
            (ReplayMode::Memory, _) => {
                ReplayBackend::Memory(gatehouse_core::replay::ReplayCache::new(cfg.replay_memory_capacity))
            }
            (ReplayMode::Auto, Some(r)) => ReplayBackend::Redis(r.clone()),
            _ => ReplayBackend::Database,
        };
        let limiter = match &redis {
            Some(r) => LimiterBackend::Redis {
                redis: r.clone(),
                local: LocalLimiter::new(200_000),
                instances: gatehouse_core::ratelimit::DegradedShare::new(instances.max(1)),
            },
            None => LimiterBackend::Local(LocalLimiter::new(200_000)),
        };
        let per_ip = match cfg.per_ip_per_second {
            0 => None,
            n => Some(
                Gcra::per_period(n, Span::secs(1), n).map_err(|e| anyhow::anyhow!("gateway.per_ip_per_second: {e}"))?,
            ),
        };
        Ok(Self {
            routes,
            signing: cfg.signing.clone(),
            key_policy,
            keys: KeyCache::new(Duration::from_millis(cfg.key_cache_ms.min(1000)), 100_000),
            identity: IdentitySigner::new(&SecretBytes::new(secret)),
            replay,
            limiter,
            per_ip,
            usage: UsageLog::default(),
            max_body: cfg.max_body_bytes,
            client: proxy::client(Duration::from_millis(cfg.upstream_timeout_ms)),
            default_group: RateGroup::new("default").map_err(|e| anyhow::anyhow!("{e:?}"))?,
            metrics: None,
            risk: None,
            risk_alerts: std::sync::Mutex::new(Vec::new()),
        })
    }

    /// The route a path belongs to.
    pub fn route_for(&self, path: &str) -> Option<&CompiledRoute> {
        self.route_index(path).and_then(|i| self.routes.get(i))
    }

    /// The index in [`routes`](Self::routes) of the route a path belongs to.
    pub fn route_index(&self, path: &str) -> Option<usize> {
        self.routes.iter().position(|r| r.matches(path))
    }

    async fn limit(&self, key: &str, gcra: &Gcra, cost: u32, now: Timestamp) -> Option<Decision> {
        let d = self.limit_inner(key, gcra, cost, now).await;
        if let Some(m) = &self.metrics {
            let result = match &d {
                Some(Decision::Allow { .. }) => "allow",
                Some(Decision::Deny { .. }) => "deny",
                None => "unavailable",
            };
            m.inc("gatehouse_rate_limit_total", &[("result", result)]);
        }
        d
    }

    async fn limit_inner(&self, key: &str, gcra: &Gcra, cost: u32, now: Timestamp) -> Option<Decision> {
        match &self.limiter {
            LimiterBackend::Local(l) => l.check(key, gcra, cost, now).ok(),
            LimiterBackend::Redis { redis, local, instances } => match redis.gcra(key, gcra, cost).await {
                Ok(d) => Some(d),
                Err(e) => {
                    tracing::warn!(error = %e, "redis rate limiter unavailable; using the local share");
                    local.check(key, &gcra.divided(*instances), cost, now).ok()
                }
            },
        }
    }

    async fn insert_replay(&self, store: &dyn Store, key: &ReplayKey, now: Timestamp, ttl: Span) -> Option<bool> {
        let r = self.insert_replay_inner(store, key, now, ttl).await;
        if let Some(m) = &self.metrics {
            let result = match r {
                Some(true) => "fresh",
                Some(false) => "replayed",
                None => "unavailable",
            };
            m.inc("gatehouse_replay_inserts_total", &[("result", result)]);
        }
        r
    }

    async fn insert_replay_inner(&self, store: &dyn Store, key: &ReplayKey, now: Timestamp, ttl: Span) -> Option<bool> {
        match &self.replay {
            ReplayBackend::Memory(c) => match c.insert_if_absent(key, now, ttl) {
                gatehouse_core::replay::InsertOutcome::Fresh => Some(true),
                gatehouse_core::replay::InsertOutcome::Replayed => Some(false),
                gatehouse_core::replay::InsertOutcome::Unavailable => None,
            },
            ReplayBackend::Database => store.insert_if_absent(key, now, ttl).await.ok(),
            ReplayBackend::Redis(r) => match r.insert_if_absent(key, ttl).await {
                Ok(b) => Some(b),
                Err(e) => {
                    tracing::warn!(error = %e, "redis replay store unavailable; refusing signed requests");
                    None
                }
            },
        }
    }

    /// Steps 8 and 9 of [`check`](Self::check): the request's single-use record, then — only
    /// when it was fresh — the key's budget. With Redis holding both, one script does both in
    /// one round trip (`REPLAY_GCRA_LUA`: same order, same outcomes); if Redis does not answer
    /// the request is refused, as the replay step alone refuses it (fail closed, F3).
    async fn admit(
        &self,
        store: &dyn Store,
        record: &ReplayKey,
        ttl: Span,
        budget: &Budget<'_>,
        now: Timestamp,
    ) -> Admission {
        if let (ReplayBackend::Redis(redis), LimiterBackend::Redis { .. }) = (&self.replay, &self.limiter) {
            let r = redis.insert_then_gcra(record, ttl, budget.key, budget.gcra, budget.cost).await;
            if let Err(e) = &r {
                tracing::warn!(error = %e, "redis replay store unavailable; refusing signed requests");
            }
            if let Some(m) = &self.metrics {
                let (replay, limit) = match &r {
                    Ok(Some(Decision::Allow { .. })) => ("fresh", Some("allow")),
                    Ok(Some(Decision::Deny { .. })) => ("fresh", Some("deny")),
                    Ok(None) => ("replayed", None),
                    Err(_) => ("unavailable", None),
                };
                m.inc("gatehouse_replay_inserts_total", &[("result", replay)]);
                if let Some(result) = limit {
                    m.inc("gatehouse_rate_limit_total", &[("result", result)]);
                }
            }
            return match r {
                Ok(Some(d)) => Admission::Fresh(d),
                Ok(None) => Admission::Replayed,
                Err(_) => Admission::Unavailable,
            };
        }
        match self.insert_replay(store, record, now, ttl).await {
            Some(true) => {}
            Some(false) => return Admission::Replayed,
            None => return Admission::Unavailable,
        }
        match self.limit(budget.key, budget.gcra, budget.cost, now).await {
            Some(d) => Admission::Fresh(d),
            None => Admission::Unavailable,
        }
    }

    /// Admits a request to a public path: the per-IP budget only.
    pub async fn check_public(&self, route: &CompiledRoute, caller: &Caller<'_>) -> Result<(), Denied> {
        let Some(per_ip) = &self.per_ip else { return Ok(()) };
        match self.limit(&ip_rate_key(caller.ip), per_ip, 1, caller.now).await {
            Some(Decision::Allow { .. }) => Ok(()),
            Some(Decision::Deny { retry_after, .. }) => {
                Err(Denied::rate_limited(route.dialect, retry_after.as_secs_ceil()))
            }
            None => Err(Denied::unavailable(route.dialect)),
        }
    }

    /// Runs the whole pipeline for one request, counting the decision.
    pub async fn check(
        &self,
        route: &CompiledRoute,
        req: &RawRequest<'_>,
        caller: &Caller<'_>,
        store: &dyn Store,
        keyring: &gatehouse_core::crypto::envelope::Keyring,
    ) -> Result<Granted, Denied> {
        let result = self.check_inner(route, req, caller, store, keyring).await;
        if let Some(m) = &self.metrics {
            let outcome = match &result {
                Ok(_) => "ok",
                Err(d) => d.reason,
            };
            m.inc("gatehouse_gateway_decisions_total", &[("dialect", route.dialect.as_str()), ("outcome", outcome)]);
        }
        result
    }

    async fn check_inner(
        &self,
        route: &CompiledRoute,
        req: &RawRequest<'_>,
        caller: &Caller<'_>,
        store: &dyn Store,
        keyring: &gatehouse_core::crypto::envelope::Keyring,
    ) -> Result<Granted, Denied> {
        let dialect = route.dialect;
        let now = caller.now;
        let default_group = self.default_group.clone();
        let with_upbit = |mut d: Denied, group: &RateGroup| {
            d.headers.extend(upbit_header(dialect, group, None, None));
            d
        };
        // 1. Per-IP budget.
        if let Some(per_ip) = &self.per_ip {
            match self.limit(&ip_rate_key(caller.ip), per_ip, 1, now).await {
                Some(Decision::Allow { .. }) => {}
                Some(Decision::Deny { retry_after, .. }) => {
                    return Err(with_upbit(Denied::rate_limited(dialect, retry_after.as_secs_ceil()), &default_group));
                }
                None => return Err(with_upbit(Denied::unavailable(dialect), &default_group)),
            }
        }
        // 2. Credentials never travel in the URL (R73).
        if let Some(q) = req.query() {
            const CREDENTIALS: [&str; 6] = ["apikey", "api_key", "access_key", "x-mbx-apikey", "token", "access_token"];
            if q.split('&').any(|p| {
                let k = p.split_once('=').map_or(p, |(k, _)| k);
                CREDENTIALS.iter().any(|c| k.eq_ignore_ascii_case(c))
            }) {
                return Err(with_upbit(Denied::key_in_url(dialect), &default_group));
            }
        }
        // 3. Route.
        let inner = route.inner_path(req.path());
        let resolved = match route.table.resolve(req.method, inner) {
            Ok(r) => r,
            Err(RouteDenied::InvalidPath(_)) => return Err(with_upbit(Denied::bad_path(dialect), &default_group)),
            Err(RouteDenied::NoRoute) => return Err(with_upbit(Denied::no_route(dialect), &default_group)),
        };
        let rule = resolved.rule;
        let group = rule.group.clone();
        let gcra = route.limits.get(&group).copied();
        let route_label = &rule.label;
        let fail = |d: Denied| {
            let mut d = d;
            d.headers.extend(upbit_header(dialect, &group, None, gcra.as_ref()));
            d
        };
        // 4. Parse.
        let parsed = signing::parse(dialect, req).map_err(|e| fail(Denied::dialect(&e, "malformed")))?;
        // 5. Key lookup.
        let key = match ApiKeyId::parse(parsed.key_id()) {
            Some(id) => self.keys.get(&id, store, keyring).await.map_err(|_| fail(Denied::unavailable(dialect)))?,
            None => None,
        };
        let Some(key) = key else {
            let e = signing::reject_unknown_key(&parsed, &self.signing);
            return Err(fail(Denied::dialect(&e, "unknown_key")));
        };
        let fact = usage::Use {
            key: key.key.id,
            owner: key.key.owner,
            route: route_label,
            now,
            ip: caller.ip,
            user_agent: caller.user_agent,
        };
        let record = |outcome: &'static str| self.usage.record(&fact, outcome);
        let key_text = key.id_text.as_str();
        // 6. Verify.
        let verified = match signing::verify(&parsed, &key.verify, now, &self.signing) {
            Ok(v) => v,
            Err(e) => {
                let reason = classify(&e);
                record(reason);
                if let Some(r) = &self.risk {
                    r.record_bad_signature(key_text, now);
                }
                return Err(fail(Denied::dialect(&e, reason)));
            }
        };
        // 7. Authorise.
        if let Err(d) = authorize(&key.key, rule, Some(caller.ip), now, &self.key_policy) {
            let denied = Denied::key(dialect, d);
            record(denied.reason);
            return Err(fail(denied));
        }
        // friction (issue 5): withdrawals through a key are held after a security change too
        // (password, factors, recovery, a new withdraw key). Fail closed if the store is down.
        if rule.access.required_scope() == Some(gatehouse_core::apikey::Scope::Withdraw) {
            match store.find_friction(key.key.owner).await {
                Ok(f) => {
                    if let Some(until) = f.hold_at(now) {
                        let denied = Denied::key(dialect, gatehouse_core::apikey::KeyDenied::CoolingOff { until });
                        record(denied.reason);
                        return Err(fail(denied));
                    }
                }
                Err(_) => return Err(fail(Denied::unavailable(dialect))),
            }
        }
        // end friction
        // 7b. Behavioural risk of this key's use (R107): a new network, a rarely used scope, a
        // burst of calls or of bad signatures. Trading and withdrawal routes are refused from
        // "step-up" upwards (an API client cannot answer a challenge); reading from "deny".
        let scope_name = rule.access.required_scope().map(|s| s.name()).unwrap_or("none");
        let risk_obs = match &self.risk {
            None => None,
            Some(r)
                if r.recent_api_decision(key_text, caller.ip, scope_name, now)
                    == Some(gatehouse_core::risk::Decision::Allow) =>
            {
                None
            }
            Some(r) => {
                let mut obs = gatehouse_core::risk::Observation::new(caller.ip);
                obs.api = rule.access.required_scope().map(|scope| gatehouse_core::risk::ApiUse {
                    key_id: key_text.to_owned(),
                    scope,
                    route: route_label.to_string(),
                });
                obs.ua_family = caller.user_agent.map(|ua| gatehouse_core::device::UaFamily::parse(Some(ua)).key());
                let obs = r.observe(obs, Some(&key.key.owner), Some(key_text), now);
                let a = r
                    .assess(store, key.key.owner, &obs, gatehouse_core::risk::RiskAction::ApiKeyUse, now)
                    .await
                    .map_err(|_| fail(Denied::unavailable(dialect)))?;
                use gatehouse_core::risk::Decision as D;
                let sensitive = rule.access.required_scope().is_some_and(|s| !s.is_view());
                let refuse = match a.decision {
                    D::Allow => false,
                    D::StepUp => sensitive,
                    D::Deny | D::Freeze => true,
                };
                if a.decision != D::Allow
                    && let Ok(mut q) = self.risk_alerts.lock()
                    && q.len() < 10_000
                {
                    q.push(RiskAlert {
                        owner: key.key.owner,
                        key: key.key.id,
                        ip: caller.ip,
                        route: route_label.to_string(),
                        assessment: a.clone(),
                    });
                }
                if refuse {
                    record("risk_denied");
                    let mut d = Denied::key(dialect, gatehouse_core::apikey::KeyDenied::Suspended);
                    d.reason = "risk_denied";
                    return Err(fail(d));
                }
                r.remember_api_decision(key_text, caller.ip, scope_name, a.decision, now);
                Some(obs)
            }
        };
        // 8. Replay (only after everything else passed), then 9. the key's budget for this
        // group (a request refused 429 has burnt its signature all the same).
        let Some(gcra) = gcra else { return Err(fail(Denied::unavailable(dialect))) };
        let budget_key = format!("{}:{}", key.key.id, group);
        let budget = Budget { key: &budget_key, gcra: &gcra, cost: rule.weight };
        let decision = match self.admit(store, verified.replay_key(), verified.retention(), &budget, now).await {
            Admission::Fresh(d) => d,
            Admission::Replayed => {
                record("replayed");
                return Err(fail(Denied::dialect(&DialectError::denial(dialect, Denial::Replayed), "replayed")));
            }
            Admission::Unavailable => return Err(fail(Denied::unavailable(dialect))),
        };
        let mut headers = upbit_header(dialect, &group, Some(&decision), Some(&gcra));
        if let Decision::Deny { retry_after, .. } = decision {
            record("rate_limited");
            let mut d = Denied::rate_limited(dialect, retry_after.as_secs_ceil());
            d.headers.extend(headers);
            return Err(d);
        }
        if dialect == Dialect::Binance {
            headers.push(gatehouse_core::ratelimit::binance_used_weight(&gcra, &decision));
        }
        record("ok");
        if let Some(r) = &self.risk {
            r.record_api_call(key_text, now);
            // Learned once per assessment (at most once a second per network and scope).
            if let Some(obs) = &risk_obs {
                r.learn(key.key.owner, obs, now);
            }
        }
        let identity = Identity {
            user: key.key.owner,
            key: key.key.id,
            scopes: key.key.scopes,
            dialect: dialect.as_str().to_owned(),
            ts: now,
        };
        let path = resolved.path.as_str().to_owned();
        let identity = self.identity.sign(&identity, req.method, &path);
        Ok(Granted { key: key.clone(), identity, path, headers, route_label: Arc::clone(route_label) })
    }
}

/// A key's budget for one route group: the bucket, its limit and the route's weight.
struct Budget<'a> {
    key: &'a str,
    gcra: &'a Gcra,
    cost: u32,
}

/// What [`Gateway::admit`] found.
enum Admission {
    /// The record was fresh; the budget's decision.
    Fresh(Decision),
    /// The record existed: a replay.
    Replayed,
    /// The replay store could not answer (refuse: fail closed).
    Unavailable,
}

/// How the replay store is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReplayMode {
    /// Redis when configured, else the database.
    Auto,
    /// Always the database (group commit).
    Database,
    /// Process memory only (single instance; lost on restart).
    Memory,
}

fn classify(e: &DialectError) -> &'static str {
    let body = e.body();
    if body.contains("1021") || body.contains("signature_expired") || body.contains("signature_not_yet_valid") {
        "bad_timestamp"
    } else if body.contains("invalid_query_payload") || body.contains("digest_mismatch") {
        "bad_payload"
    } else {
        "bad_signature"
    }
}
