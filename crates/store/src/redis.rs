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
        use gatehouse_core::clock::{Span, Timestamp};
        use gatehouse_core::ratelimit::Decision;
        static SCRIPT: std::sync::OnceLock<::redis::Script> = std::sync::OnceLock::new();
        let script = SCRIPT.get_or_init(|| ::redis::Script::new(gatehouse_core::ratelimit::GCRA_LUA));
        let mut c = self.conn.clone();
        let v: Vec<i64> = script
            .key(format!("{}{key}", self.rl_prefix))
            .arg(gcra.emission_interval().as_millis())
            .arg(gcra.tau().as_millis())
            .arg(cost)
            .invoke_async(&mut c)
            .await
            .map_err(|e| RedisError(e.to_string()))?;
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
}
