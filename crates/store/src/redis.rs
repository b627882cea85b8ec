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
