//! Configuration: a TOML file, then `GATEHOUSE_*` environment variables (`__` separates
//! nesting levels: `GATEHOUSE_SERVER__LISTEN=0.0.0.0:8080`), then command-line flags.
//!
//! The file is parsed as given and then validated (ripgrep's habit): unknown keys are errors
//! (`deny_unknown_fields` everywhere), and every number is checked against the standards'
//! bounds before the server starts. Secrets are [`SecretString`]s, which print `[REDACTED]` in
//! `gatehouse config check` and in logs.

use std::net::SocketAddr;
use std::path::PathBuf;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use gatehouse_core::password::HashParams;
use gatehouse_core::secret::SecretString;
use gatehouse_core::session::SessionPolicy;
use gatehouse_core::throttle::ThrottlePolicy;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The whole configuration.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Listener, origin and proxy trust.
    pub server: ServerConfig,
    /// Databases.
    pub storage: StorageConfig,
    /// Master keys.
    pub secrets: SecretsConfig,
    /// Password policy and hashing.
    pub password: PasswordConfig,
    /// Login throttling.
    pub throttle: ThrottlePolicy,
    /// Session lifetimes.
    pub session: SessionPolicy,
    /// Outgoing mail.
    pub mail: MailConfig,
    /// API-key rules (limits, lifetimes, rotation overlap, withdraw delays).
    pub apikey: gatehouse_core::apikey::KeyPolicy,
    /// The verifying gateway (proxied routes and forward auth).
    pub gateway: crate::gateway::config::GatewayConfig,
    /// Security webhooks.
    pub notify: crate::notify::NotifyConfig,
    /// Behavioural risk scoring.
    pub risk: crate::risk::RiskConfig,
    /// What is official (URL checker, official-channels page).
    pub phishing: crate::routes::phishing::PhishingConfig,
    /// Second factors and the step-up table (feat/mfa).
    pub mfa: crate::mfa::config::MfaConfig,
    /// Switches that exist only for tests. Never enable in production.
    pub testing: TestingConfig,
    /// Proof of possession: DPoP and certificate-bound tokens (issue 9).
    pub pop: crate::pop::PopConfig,
    /// gatehouse's own TLS with client certificates (issue 9).
    pub tls: crate::tls::TlsConfig,
    // friction (issue 5)
    /// Withdrawals, holds, settings lock, recovery and email links.
    pub friction: crate::friction::FrictionConfig,
    // end friction
}

/// `[server]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The public origin users reach gatehouse at (scheme, host, port): used in email links
    /// and as the allowed `Origin` for cookie-authenticated state changes (CSRF, R50).
    pub public_origin: String,
    /// Peers whose `X-Forwarded-For` is believed (R19). Empty: the socket peer is the client.
    pub trusted_proxies: Vec<IpNet>,
    /// Name of this instance in audit records; defaults to the host name and process id.
    pub instance: String,
    /// `Host` values gatehouse answers to (`host` or `host:port`); requests naming another
    /// host get 421. Empty: any host (embedded use; set it in production).
    pub allowed_hosts: Vec<String>,
    /// Largest request body for gatehouse's own JSON endpoints, in bytes.
    pub max_body_bytes: usize,
    /// Bounded Argon2 worker pool: concurrent hashes (default: CPUs − 1, at least 1).
    pub hash_workers: usize,
    /// Hash requests that may wait for a worker; beyond this, logins get 503 at once (F10).
    pub hash_queue: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_origin: "http://localhost:8080".into(),
            trusted_proxies: vec![],
            instance: String::new(),
            allowed_hosts: vec![],
            max_body_bytes: 16 * 1024,
            // Leave a core for everything else: Argon2 at full tilt on every core would starve
            // token checks and signed-request verification during a login flood.
            hash_workers: cpus.saturating_sub(1).max(1),
            hash_queue: 2 * cpus,
        }
    }
}

/// `[storage]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Directory for embedded data: the SQLite database, the generated master key, mail files.
    pub data_dir: PathBuf,
    /// `postgres://…` for many instances; empty means SQLite in `data_dir`.
    pub database_url: SecretString,
    /// `redis://…`; empty disables Redis.
    pub redis_url: SecretString,
    /// Connection-pool size.
    pub db_max_connections: u32,
    /// Wait for a pooled connection before answering 503, in ms.
    pub db_acquire_timeout_ms: u64,
    /// PostgreSQL statement timeout, in ms (F2).
    pub db_statement_timeout_ms: u64,
    /// Group commit for hot-path writes (TOTP step use, step-up tokens, session touches): one
    /// fsync per batch instead of per request. Durability is the same either way.
    pub db_group_commit: bool,
    /// Redis connect and response timeout, in ms.
    pub redis_timeout_ms: u64,
    /// Prefix of every Redis key this deployment writes (nonces, rate-limit buckets). Give
    /// each deployment sharing a Redis its own (staging, production); instances of one
    /// deployment must share it.
    pub redis_prefix: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./gatehouse-data"),
            database_url: SecretString::default(),
            redis_url: SecretString::default(),
            db_max_connections: 16,
            db_acquire_timeout_ms: 2000,
            db_statement_timeout_ms: 2000,
            db_group_commit: true,
            redis_timeout_ms: 500,
            redis_prefix: gatehouse_store::redis::DEFAULT_PREFIX.to_owned(),
        }
    }
}

/// `[secrets]`
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SecretsConfig {
    /// Master keys inline (`<id>:<base64url>` entries separated by commas); normally from the
    /// environment: `GATEHOUSE_SECRETS__MASTER_KEYS`.
    pub master_keys: SecretString,
    /// A file holding the master keys, one entry per line.
    pub master_key_file: Option<PathBuf>,
}

/// `[password]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PasswordConfig {
    /// Argon2id parameters (floor: m = 19456 KiB, t = 2, p = 1).
    pub argon2: HashParams,
    /// Words no password may contain (the exchange's and the product's names).
    pub brand_words: Vec<String>,
}

impl Default for PasswordConfig {
    fn default() -> Self {
        Self { argon2: HashParams::MINIMUM, brand_words: vec!["gatehouse".into()] }
    }
}

/// How mail leaves the server.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum MailTransport {
    /// Write `.eml` files (mode 0600) to `<data_dir>/mail/`: the no-setup default.
    File,
    /// SMTP without TLS (local relays and test sinks only).
    Smtp,
    /// SMTP with STARTTLS.
    Starttls,
    /// SMTP over implicit TLS (port 465).
    Tls,
}

/// `[mail]`
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MailConfig {
    /// Transport.
    pub transport: MailTransport,
    /// SMTP host.
    pub smtp_host: String,
    /// SMTP port.
    pub smtp_port: u16,
    /// SMTP user, if the relay needs one.
    pub smtp_username: String,
    /// SMTP password.
    pub smtp_password: SecretString,
    /// Sender address.
    pub from: String,
    /// Per-attempt SMTP timeout, in ms.
    pub timeout_ms: u64,
}

impl Default for MailConfig {
    fn default() -> Self {
        Self {
            transport: MailTransport::File,
            smtp_host: "127.0.0.1".into(),
            smtp_port: 25,
            smtp_username: String::new(),
            smtp_password: SecretString::default(),
            from: "gatehouse <security@localhost>".into(),
            timeout_ms: 5000,
        }
    }
}

/// `[testing]`: switches for the end-to-end suite.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TestingConfig {
    /// Shift the wall clock by an offset tests move through `POST /_gh/test/clock` (time keeps flowing).
    pub danger_manual_clock: bool,
    /// Allow Argon2 parameters below the floor (fast tests only).
    pub danger_weak_hashing: bool,
}

/// A configuration error, with the key at fault.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

/// Command-line overrides (highest precedence).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Overrides {
    /// `--listen`
    pub listen: Option<SocketAddr>,
    /// `--data-dir`
    pub data_dir: Option<PathBuf>,
    /// `--database-url`
    pub database_url: Option<String>,
    /// `--redis-url`
    pub redis_url: Option<String>,
}

impl Config {
    /// Loads file (if any) → environment → overrides, then validates.
    pub fn load(file: Option<&std::path::Path>, overrides: &Overrides) -> Result<Self, ConfigError> {
        // No `Serialized::defaults`: secrets serialise as "[REDACTED]"; serde defaults fill gaps.
        let mut fig = Figment::new();
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigError(format!("config file {} does not exist", path.display())));
            }
            fig = fig.merge(Toml::file_exact(path));
        }
        fig = fig.merge(Env::prefixed("GATEHOUSE_").ignore(&["CONFIG", "LOG"]).split("__"));
        let mut cfg: Config = fig.extract().map_err(|e| ConfigError(e.to_string()))?;
        if let Some(l) = overrides.listen {
            cfg.server.listen = l;
        }
        if let Some(d) = &overrides.data_dir {
            cfg.storage.data_dir = d.clone();
        }
        if let Some(u) = &overrides.database_url {
            cfg.storage.database_url = SecretString::from(u.as_str());
        }
        if let Some(u) = &overrides.redis_url {
            cfg.storage.redis_url = SecretString::from(u.as_str());
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks every value against its bounds.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let e = |m: &str| Err(ConfigError(m.to_owned()));
        if !self.testing.danger_weak_hashing && !self.password.argon2.meets_minimum() {
            return e("password.argon2 is below m=19456 KiB, t=2, p=1 (R8)");
        }
        self.throttle.validate().map_err(|m| ConfigError(m.into()))?;
        self.session.validate().map_err(|m| ConfigError(m.into()))?;
        if !(1024..=1024 * 1024).contains(&self.server.max_body_bytes) {
            return e("server.max_body_bytes must be 1024..=1048576");
        }
        if self.server.hash_workers == 0 || self.server.hash_workers > 64 {
            return e("server.hash_workers must be 1..=64");
        }
        if self.server.hash_queue > 4096 {
            return e("server.hash_queue must be at most 4096");
        }
        let origin = self.server.public_origin.as_str();
        let valid_origin = (origin.starts_with("http://") || origin.starts_with("https://"))
            && !origin.trim_start_matches("https://").trim_start_matches("http://").contains('/');
        if !valid_origin {
            return e("server.public_origin must be scheme://host[:port] with no path");
        }
        let db = self.storage.database_url.expose();
        if !db.is_empty() && gatehouse_store::Backend::of_url(db).is_none() {
            return e("storage.database_url must start with postgres:// (or sqlite:)");
        }
        let redis = self.storage.redis_url.expose();
        if !(redis.is_empty() || redis.starts_with("redis://") || redis.starts_with("rediss://")) {
            return e("storage.redis_url must start with redis:// or rediss://");
        }
        let p = &self.storage.redis_prefix;
        if p.is_empty() || p.len() > 32 || !p.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b)) {
            return e("storage.redis_prefix must be 1 to 32 characters of A-Z, a-z, 0-9, '-', '_', '.', ':'");
        }
        self.apikey.validate().map_err(|m| ConfigError(m.into()))?;
        self.notify.validate().map_err(|m| ConfigError(m.into()))?;
        // feat/mfa
        self.mfa.validate().map_err(|m| ConfigError(m.into()))?;
        // proof of possession (issue 9)
        self.pop.validate().map_err(ConfigError)?;
        self.tls.validate().map_err(ConfigError)?;
        // friction (issue 5)
        self.friction.validate().map_err(ConfigError)?;
        // end friction
        if self.mail.transport != MailTransport::File && self.mail.smtp_host.is_empty() {
            return e("mail.smtp_host is required for SMTP transports");
        }
        Ok(())
    }

    /// The database URL in effect: PostgreSQL if configured, else SQLite in the data dir.
    pub fn database_url(&self) -> String {
        let db = self.storage.database_url.expose();
        if db.is_empty() {
            format!("sqlite://{}", self.storage.data_dir.join("gatehouse.db").display())
        } else {
            db.to_owned()
        }
    }

    /// Whether this is the embedded (SQLite) deployment.
    pub fn is_embedded(&self) -> bool {
        self.storage.database_url.expose().is_empty() || self.storage.database_url.expose().starts_with("sqlite:")
    }

    /// The instance name for audit records.
    pub fn instance_name(&self) -> String {
        if !self.server.instance.is_empty() {
            return self.server.instance.clone();
        }
        let host = std::fs::read_to_string("/etc/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
        let host = if host.is_empty() { "gatehouse".to_owned() } else { host };
        format!("{host}-{}", std::process::id())
    }

    /// The effective configuration as TOML, secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# could not render configuration: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn unknown_keys_are_errors() {
        let dir = std::env::temp_dir().join(format!("ghcfg-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let f = dir.join("bad.toml");
        let _ = std::fs::write(&f, "[server]\nlisten = \"127.0.0.1:1\"\nlisten_typo = 3\n");
        let err = Config::load(Some(&f), &Overrides::default()).err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains("listen_typo"), "{err}");
    }

    #[test]
    fn redis_prefix_is_bounded_and_plain() {
        let with = |p: &str| {
            let mut c = Config::default();
            c.storage.redis_prefix = p.to_owned();
            c.validate().is_ok()
        };
        assert!(with("gh:") && with("gh-staging:") && with("a.b_c-1:"));
        for bad in ["", "has space:", "new\nline", "{hash}:", &"x".repeat(33)] {
            assert!(!with(bad), "{bad:?} accepted");
        }
    }

    #[test]
    fn weak_hashing_is_refused() {
        let mut c = Config::default();
        c.password.argon2 = HashParams { m_kib: 8, t: 1, p: 1 };
        assert!(c.validate().is_err());
        c.testing.danger_weak_hashing = true;
        assert!(c.validate().is_ok());
    }

    #[test]
    fn secrets_are_redacted_in_the_effective_config() {
        let mut c = Config::default();
        c.secrets.master_keys = SecretString::from("1:canary-master-key");
        c.storage.database_url = SecretString::from("postgres://user:canary-pw@db/x");
        let text = c.to_redacted_toml();
        assert!(!text.contains("canary"), "{text}");
        assert!(text.contains("[REDACTED]"));
    }
}
