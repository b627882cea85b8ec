//! Redis connection and health check.
//!
//! Redis holds what must be shared by instances but may be rebuilt: the replay cache (nonces
//! and signatures, `SET NX PX`), rate-limit counters (a GCRA Lua script) and revocation
//! fan-out. Durable security state lives in SQL. Every call has a short response timeout so a
//! stalled Redis turns into a fast, fail-closed answer rather than a hung request (R106).

use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// A multiplexed, reconnecting Redis connection. Clone freely.
#[derive(Clone)]
pub struct RedisHandle {
    conn: ConnectionManager,
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
        let this = Self { conn };
        this.ping().await?;
        Ok(this)
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
    /// `SET gh:nonce:<hex> 1 NX PX <ttl>`: true when the key was fresh. Atomic across every
    /// instance sharing this Redis (F7).
    pub async fn insert_if_absent(
        &self,
        key: &gatehouse_core::replay::ReplayKey,
        ttl: gatehouse_core::clock::Span,
    ) -> Result<bool, RedisError> {
        let mut c = self.conn.clone();
        let reply: Option<String> = ::redis::cmd("SET")
            .arg(key.redis_key("gh:nonce:"))
            .arg(1)
            .arg("NX")
            .arg("PX")
            .arg(ttl.as_millis().max(1))
            .query_async(&mut c)
            .await
            .map_err(|e| RedisError(e.to_string()))?;
        Ok(reply.is_some())
    }

    /// Runs the shared GCRA script for `key` (`gh:rl:` prefix added) and returns the decision
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
            .key(format!("gh:rl:{key}"))
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
