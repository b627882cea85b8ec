//! Signed webhooks to the security team: queued durably with the state change or alert that
//! causes them, delivered by a worker until the receiver answers 2xx.
//!
//! Each delivery is a `POST` of the JSON body with:
//! * `X-Gatehouse-Event: <topic>`
//! * `X-Gatehouse-Delivery: <id>` — stable across retries: the receiver's idempotency key;
//! * `X-Gatehouse-Signature: t=<unix ms>,v1=<hex HMAC-SHA256(secret, "<t>.<id>.<body>")>`.
//!
//! The receiver recomputes the MAC with the shared secret and refuses old timestamps.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use gatehouse_core::clock::{Clock, Span, Timestamp};
use gatehouse_core::rng::SecureRng;
use gatehouse_core::secret::SecretBytes;
use gatehouse_core::store::{QueuedWebhook, StoreError, WebhookStore};
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use tokio::sync::Notify;

use gatehouse_core::secret::SecretString;

/// `[notify]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Where security webhooks go (`http://…`); empty disables them.
    pub security_webhook_url: String,
    /// Shared secret for `X-Gatehouse-Signature` (≥ 32 characters).
    pub security_webhook_secret: SecretString,
    /// Per-attempt timeout, in ms.
    pub timeout_ms: u64,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self { security_webhook_url: String::new(), security_webhook_secret: SecretString::default(), timeout_ms: 5000 }
    }
}

impl NotifyConfig {
    /// Refuses an incomplete configuration.
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.security_webhook_url.is_empty() {
            return Ok(());
        }
        if !self.security_webhook_url.starts_with("http://") && !self.security_webhook_url.starts_with("https://") {
            return Err("notify.security_webhook_url must be an http(s) URL");
        }
        if self.security_webhook_secret.expose().len() < 32 {
            return Err("notify.security_webhook_secret must be at least 32 characters");
        }
        Ok(())
    }

    /// Whether webhooks are configured.
    pub fn enabled(&self) -> bool {
        !self.security_webhook_url.is_empty()
    }
}

/// A webhook row for `topic` with `body`.
pub fn webhook(topic: &str, body: serde_json::Value, now: Timestamp, rng: &dyn SecureRng) -> QueuedWebhook {
    QueuedWebhook {
        id: gatehouse_core::ids::SessionId::generate(now, rng).to_string(),
        topic: topic.to_owned(),
        body: body.to_string(),
        created_at: now,
    }
}

/// `t=<ms>,v1=<hex>` over `"<t>.<id>.<body>"`.
pub fn signature(secret: &SecretBytes, id: &str, t: Timestamp, body: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256>>::new_from_slice(secret.expose()) else { return String::new() };
    mac.update(format!("{}.{id}.", t.as_millis()).as_bytes());
    mac.update(body.as_bytes());
    format!("t={},v1={}", t.as_millis(), hex::encode(mac.finalize().into_bytes()))
}

/// The delivery worker.
pub struct WebhookWorker {
    store: Arc<dyn WebhookStore>,
    clock: Arc<dyn Clock>,
    url: String,
    secret: SecretBytes,
    client: crate::gateway::proxy::HttpClient,
    wake: Arc<Notify>,
}

impl WebhookWorker {
    /// Builds the worker.
    pub fn new(cfg: &NotifyConfig, store: Arc<dyn WebhookStore>, clock: Arc<dyn Clock>, wake: Arc<Notify>) -> Self {
        Self {
            store,
            clock,
            url: cfg.security_webhook_url.clone(),
            secret: SecretBytes::new(cfg.security_webhook_secret.expose().as_bytes().to_vec()),
            client: crate::gateway::proxy::client(Duration::from_millis(cfg.timeout_ms)),
            wake,
        }
    }

    async fn deliver(&self, h: &QueuedWebhook) -> anyhow::Result<()> {
        let sig = signature(&self.secret, &h.id, self.clock.now(), &h.body);
        let req = hyper::Request::post(&self.url)
            .header("content-type", "application/json")
            .header("x-gatehouse-event", &h.topic)
            .header("x-gatehouse-delivery", &h.id)
            .header("x-gatehouse-signature", sig)
            .body(Full::new(Bytes::from(h.body.clone())))?;
        let resp = tokio::time::timeout(Duration::from_secs(10), self.client.request(req)).await??;
        if resp.status().is_success() { Ok(()) } else { anyhow::bail!("receiver answered {}", resp.status()) }
    }

    /// Delivers what is due.
    pub async fn run_once(&self) -> Result<usize, StoreError> {
        let batch = self.store.claim_webhooks(self.clock.now(), Span::secs(60), 20).await?;
        let mut n = 0;
        for h in &batch {
            match self.deliver(h).await {
                Ok(()) => {
                    self.store.mark_webhook_delivered(&h.id, self.clock.now()).await?;
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(delivery = %h.id, topic = %h.topic, error = %e, "webhook delivery failed; will retry");
                    self.store.mark_webhook_failed(&h.id, &e.to_string(), self.clock.now().plus(Span::secs(5))).await?;
                }
            }
        }
        Ok(n)
    }

    /// Runs forever.
    pub async fn run(self) {
        loop {
            match self.run_once().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "webhook outbox unavailable"),
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), self.wake.notified()).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_binds_time_id_and_body() {
        let k = SecretBytes::new(b"0123456789abcdef0123456789abcdef".to_vec());
        let t = Timestamp::from_millis(1_800_000_000_000);
        let a = signature(&k, "d1", t, "{}");
        assert!(a.starts_with("t=1800000000000,v1="));
        assert_ne!(a, signature(&k, "d2", t, "{}"));
        assert_ne!(a, signature(&k, "d1", t, "{ }"));
        assert_ne!(a, signature(&k, "d1", Timestamp::from_millis(1), "{}"));
    }
}
