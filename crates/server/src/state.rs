//! Shared server state: configuration, store, clock, randomness and the services built from
//! them. Handlers receive it as `State<AppState>`; tests build it with their own clock and RNG.

use std::sync::Arc;

use gatehouse_core::clock::{AdjustableClock, Clock};
use gatehouse_core::crypto::envelope::Keyring;
use gatehouse_core::password::{PasswordHasher, PasswordPolicy};
use gatehouse_core::rng::SecureRng;
use gatehouse_core::secret::SecretBytes;
use gatehouse_core::store::{QueuedMail, Store};
use gatehouse_store::redis::RedisHandle;
use tokio::sync::Notify;

use crate::config::Config;
use crate::hashing::HashPool;
use crate::mail::{self, MailContent};

/// Everything a handler needs. Cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

/// The contents of [`AppState`].
pub struct Inner {
    /// Validated configuration.
    pub config: Config,
    /// The database.
    pub store: Arc<dyn Store>,
    /// Redis, when configured.
    pub redis: Option<RedisHandle>,
    /// Time.
    pub clock: Arc<dyn Clock>,
    /// The test clock, when `testing.danger_manual_clock` is on.
    pub manual_clock: Option<AdjustableClock>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: gatehouse_core::apikey::TrustedProxies,
    /// Randomness.
    pub rng: Arc<dyn SecureRng>,
    /// Master keys.
    pub keyring: Keyring,
    /// Refresh-token derivation key.
    pub refresh_key: SecretBytes,
    /// Argon2id hasher.
    pub hasher: PasswordHasher,
    /// Password acceptance rules.
    pub password_policy: PasswordPolicy,
    /// Bounded hashing pool.
    pub hash_pool: HashPool,
    /// The verifying gateway.
    pub gateway: Option<Arc<crate::gateway::Gateway>>,
    /// Wakes the mail worker after a commit that queued mail.
    pub mail_wake: Arc<Notify>,
    /// Wakes the webhook worker.
    pub webhook_wake: Arc<Notify>,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// The URL checker (anti-phishing).
    pub url_checker: Option<gatehouse_core::phishing::UrlChecker>,
    /// The risk engine, when enabled.
    pub risk: Option<Arc<crate::risk::RiskService>>,
    /// Proof of possession (issue 9): DPoP verifier, nonces, forwarded-certificate header.
    pub pop: Arc<crate::pop::PopService>,
    // friction (issue 5)
    /// Wakes the withdrawal delivery worker after a confirmation.
    pub intent_wake: Arc<Notify>,
    // end friction
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    /// Wraps the parts.
    pub fn new(inner: Inner) -> Self {
        Self(Arc::new(inner))
    }

    /// Seals a message for the outbox.
    pub fn mail(&self, to: &str, content: &MailContent) -> Result<QueuedMail, crate::error::ApiError> {
        mail::queue(&self.keyring, self.rng.as_ref(), to, content, self.clock.now())
            .map_err(|e| crate::error::ApiError::internal("mail sealing", e))
    }

    /// A webhook for the security team, or `None` when webhooks are not configured.
    pub fn webhook(&self, topic: &str, body: serde_json::Value) -> Option<gatehouse_core::store::QueuedWebhook> {
        self.config.notify.enabled().then(|| crate::notify::webhook(topic, body, self.clock.now(), self.rng.as_ref()))
    }

    /// Tells the webhook worker there is something to deliver.
    pub fn wake_webhooks(&self) {
        self.webhook_wake.notify_one();
    }

    /// Tells the mail worker there is something to send.
    pub fn wake_mailer(&self) {
        self.mail_wake.notify_one();
    }
}
