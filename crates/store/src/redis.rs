//! Redis connection and health check.
//!
//! Redis holds what must be shared by instances but may be rebuilt: the replay cache (nonces
//! and signatures, `SET NX PX`), rate-limit counters (a GCRA Lua script) and revocation
//! fan-out. Durable security state lives in SQL. Every call has a short response timeout so a
//! stalled Redis turns into a fast, fail-closed answer rather than a hung request (R106).

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// The key prefix when none is configured.
pub const DEFAULT_PREFIX: &str = "gh:";

/// A multiplexed, reconnecting Redis connection. Clone freely.
///
/// Every key it writes starts with one prefix (`gh:` unless configured), so deployments that
/// share a Redis — staging beside production, two test suites — never share a nonce or a
/// rate-limit bucket.
#[derive(Clone)]
pub struct RedisHandle {
    conn: ConnectionManager,
    /// `<prefix>nonce:`
    nonce_prefix: std::sync::Arc<str>,
    /// `<prefix>rl:`
    rl_prefix: std::sync::Arc<str>,
}

impl std::fmt::Debug for RedisHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisHandle")
    }
}

/// Why Redis could not be used.
#[derive(Debug, thiserror::Error)]
#[error("redis unavailable: {0}")]
pub struct RedisError(pub String);

impl RedisHandle {
    /// Connects to `url` (`redis://host:port/db`), failing if the server does not answer
    /// within `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Self, RedisError> {
        let client = ::redis::Client::open(url).map_err(|e| RedisError(e.to_string()))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout))
            .set_number_of_retries(1);
        let conn = tokio::time::timeout(timeout, client.get_connection_manager_with_config(config))
            .await
            .map_err(|_| RedisError("connect timed out".into()))?
            .map_err(|e| RedisError(e.to_string()))?;
        let this = Self { conn, nonce_prefix: "".into(), rl_prefix: "".into() }.with_prefix(DEFAULT_PREFIX);
        this.ping().await?;
        Ok(this)
    }

    /// The same connection writing its keys under `prefix` (e.g. `gh-staging:`).
    pub fn with_prefix(mut self, prefix: &str) -> Self {
        self.nonce_prefix = format!("{prefix}nonce:").into();
        self.rl_prefix = format!("{prefix}rl:").into();
        self
    }

    /// `PING`; `Ok` only on `PONG`.
    pub async fn ping(&self) -> Result<(), RedisError> {
        let mut c = self.conn.clone();
        let pong: String = ::redis::cmd("PING").query_async(&mut c).await.map_err(|e| RedisError(e.to_string()))?;
        if pong == "PONG" { Ok(()) } else { Err(RedisError(format!("unexpected PING reply {pong:?}"))) }
    }

    /// The underlying connection, for the replay cache and rate limiter.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }
}

impl RedisHandle {
    /// `SET <prefix>nonce:<hex> 1 NX PX <ttl>`: true when the key was fresh. Atomic across
    /// every instance sharing this Redis and prefix (F7).
    pub async fn insert_if_absent(
        &self,
        key: &gatehouse_core::replay::ReplayKey,
        ttl: gatehouse_core::clock::Span,
    ) -> Result<bool, RedisError> {
        let mut c = self.conn.clone();
        let reply: Option<String> = ::redis::cmd("SET")
            .arg(key.redis_key(&self.nonce_prefix))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1))
            .query_async(&mut c)
            .await
            .map_err(|e| RedisError(e.to_string()))?;
        Ok(reply.is_some())
    }

    /// Runs the shared GCRA script for `key` (`<prefix>rl:` added) and returns the decision
    /// in the core's terms. The script uses Redis `TIME`, so instances need no shared clock.
    pub async fn gcra(
        &self,
        key: &str,
        gcra: &gatehouse_core::ratelimit::Gcra,
        cost: u32,
    ) -> Result<gatehouse_core::ratelimit::Decision, RedisError> {
        static SCRIPT: std::sync::OnceLock<::redis::Script> = std::sync::OnceLock::new();
        let script = SCRIPT.get_or_init(|| ::redis::Script::new(gatehouse_core::ratelimit::GCRA_LUA));
        let v = self.run_gcra(&mut script.key(format!("{}{key}", self.rl_prefix)), gcra, cost).await?;
        decision(&v)
    }

    /// [`insert_if_absent`](Self::insert_if_absent) and then, only when the record was fresh,
    /// [`gcra`](Self::gcra) — in one script, one round trip (`REPLAY_GCRA_LUA`). `Ok(None)`: a
    /// replay (the bucket is untouched); `Ok(Some(decision))`: fresh, and the budget's answer.
    pub async fn insert_then_gcra(
        &self,
        record: &gatehouse_core::replay::ReplayKey,
        ttl: gatehouse_core::clock::Span,
        key: &str,
        gcra: &gatehouse_core::ratelimit::Gcra,
        cost: u32,
    ) -> Result<Option<gatehouse_core::ratelimit::Decision>, RedisError> {
        static SCRIPT: std::sync::OnceLock<::redis::Script> = std::sync::OnceLock::new();
        let script = SCRIPT.get_or_init(|| ::redis::Script::new(gatehouse_core::ratelimit::REPLAY_GCRA_LUA));
        let mut invocation = script.key(record.redis_key(&self.nonce_prefix));
        invocation.key(format!("{}{key}", self.rl_prefix)).arg(ttl.as_millis().max(1));
        let v = self.run_gcra(&mut invocation, gcra, cost).await?;
        if v.is_empty() { Ok(None) } else { decision(&v).map(Some) }
    }

    /// Runs a GCRA script with its last three arguments, T, tau and cost (both scripts take
    /// them last), appended to `invocation`.
    async fn run_gcra(
        &self,
        invocation: &mut ::redis::ScriptInvocation<'_>,
        gcra: &gatehouse_core::ratelimit::Gcra,
        cost: u32,
    ) -> Result<Vec<i64>, RedisError> {
        let mut c = self.conn.clone();
        invocation
            .arg(gcra.emission_interval().as_millis())
            .arg(gcra.tau().as_millis())
            .arg(cost)
            .invoke_async(&mut c)
            .await
            .map_err(|e| RedisError(e.to_string()))
    }
}

/// The GCRA script's reply `{allowed, retry_after, remaining, reset_after, now}` in the core's
/// terms.
fn decision(v: &[i64]) -> Result<gatehouse_core::ratelimit::Decision, RedisError> {
    use gatehouse_core::clock::{Span, Timestamp};
    use gatehouse_core::ratelimit::Decision;
    let [allowed, retry_after, remaining, reset_after, now] = v[..] else {
        return Err(RedisError("unexpected GCRA reply".into()));
    };
    Ok(if allowed == 1 {
        Decision::Allow {
            new_tat: Timestamp::from_millis(now.saturating_add(reset_after)),
            remaining: u32::try_from(remaining).unwrap_or(0),
            reset_after: Span::millis(reset_after),
        }
    } else {
        Decision::Deny { retry_after: Span::millis(retry_after.max(1)), reset_after: Span::millis(reset_after) }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use gatehouse_core::clock::Span;
    use gatehouse_core::ratelimit::{Decision, Gcra};
    use gatehouse_core::replay::ReplayKey;

    /// Needs the Redis at 127.0.0.1:6379 that `scripts/test` makes sure of; fails, never
    /// skips, without it.
    async fn handle(prefix: &str) -> RedisHandle {
        RedisHandle::connect("redis://127.0.0.1:6379", Duration::from_secs(2))
            .await
            .expect("Redis at 127.0.0.1:6379 (scripts/test starts it)")
            .with_prefix(prefix)
    }

    #[tokio::test]
    async fn deployments_with_different_prefixes_share_nothing() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let run = format!("{}-{nanos}", std::process::id());
        let (a, b) = (handle(&format!("ghtest-a-{run}:")).await, handle(&format!("ghtest-b-{run}:")).await);
        let key = ReplayKey::derive("prefix-test", &[run.as_bytes()]);
        let ttl = Span::secs(30);
        assert!(a.insert_if_absent(&key, ttl).await.unwrap(), "fresh under a");
        assert!(b.insert_if_absent(&key, ttl).await.unwrap(), "fresh under b: another deployment");
        assert!(!a.insert_if_absent(&key, ttl).await.unwrap(), "replayed under a");
        let a2 = handle(&format!("ghtest-a-{run}:")).await;
        assert!(!a2.insert_if_absent(&key, ttl).await.unwrap(), "another instance of a sees it");
        // One request per minute, no burst: a's bucket empties, b's is its own.
        let gcra = Gcra::per_period(1, Span::minutes(1), 1).unwrap();
        let allowed = |d: Decision| matches!(d, Decision::Allow { .. });
        assert!(allowed(a.gcra("k", &gcra, 1).await.unwrap()));
        assert!(!allowed(a2.gcra("k", &gcra, 1).await.unwrap()), "a's instances share the bucket");
        assert!(allowed(b.gcra("k", &gcra, 1).await.unwrap()), "b has its own bucket");
    }

    /// The one-round-trip form behaves as `SET NX PX` followed by the GCRA script: a fresh
    /// record gets the budget's decision (a denial still burns the record), a replay leaves the
    /// bucket alone, and bad arguments write nothing.
    #[tokio::test]
    async fn record_then_budget_in_one_script() {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let h = handle(&format!("ghtest-rg-{}-{nanos}:", std::process::id())).await;
        let ttl = Span::secs(30);
        let record = |i: u32| ReplayKey::derive("replay-gcra-test", &[&i.to_be_bytes()]);
        // Two requests at once, then one per minute.
        let gcra = Gcra::per_period(1, Span::minutes(1), 2).unwrap();
        let allowed = |d: Option<Decision>| match d {
            Some(Decision::Allow { remaining, .. }) => Some(remaining),
            _ => None,
        };
        assert_eq!(allowed(h.insert_then_gcra(&record(1), ttl, "k", &gcra, 1).await.unwrap()), Some(1));
        // The same record again: a replay, and the bucket did not move (one request still fits).
        assert!(h.insert_then_gcra(&record(1), ttl, "k", &gcra, 1).await.unwrap().is_none(), "replay");
        assert!(!h.insert_if_absent(&record(1), ttl).await.unwrap(), "the script's record is the plain one");
        assert_eq!(allowed(h.insert_then_gcra(&record(2), ttl, "k", &gcra, 1).await.unwrap()), Some(0));
        // Over budget: refused, and the record is burnt all the same.
        let denied = h.insert_then_gcra(&record(3), ttl, "k", &gcra, 1).await.unwrap();
        assert!(matches!(denied, Some(Decision::Deny { retry_after, .. }) if retry_after > Span::ZERO), "{denied:?}");
        assert!(h.insert_then_gcra(&record(3), ttl, "k", &gcra, 1).await.unwrap().is_none(), "burnt when denied");
        // A cost of 0 is refused by the script before it writes the record.
        assert!(h.insert_then_gcra(&record(4), ttl, "other", &gcra, 0).await.is_err());
        assert!(h.insert_if_absent(&record(4), ttl).await.unwrap(), "bad arguments wrote nothing");
        // Each record lives as long as asked.
        let mut c = h.connection();
        let pttl: i64 =
            ::redis::cmd("PTTL").arg(record(2).redis_key(&h.nonce_prefix)).query_async(&mut c).await.unwrap();
        assert!((29_000..=30_000).contains(&pttl), "pttl {pttl}");
    }
}
