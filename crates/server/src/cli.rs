//! The operator CLI: `serve`, `config check`, `audit verify`, `admin create`.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Parser, Subcommand};
use gatehouse_core::account::{Account, AccountStatus, Email};
use gatehouse_core::audit::{AuditEvent, ChainVerifier, EventKind, Outcome};
use gatehouse_core::clock::{Clock, SystemClock, Timestamp};
use gatehouse_core::friction_store::FrictionStore;
use gatehouse_core::ids::UserId;
use gatehouse_core::password::{Password, PasswordHasher, PasswordPolicy};
use gatehouse_core::rng::OsRng;
use gatehouse_core::secret::Token;
use gatehouse_core::store::{AccountStore, ApiKeyStore, AuditStore, EmailToken, SideEffects};
use gatehouse_store::{DbSettings, SqlStore};

use crate::config::{Config, Overrides};

/// gatehouse: the access layer of a cryptocurrency exchange.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Args, Clone, Default)]
struct Common {
    /// TOML configuration file (also `GATEHOUSE_CONFIG`).
    #[arg(long, env = "GATEHOUSE_CONFIG", global = true)]
    config: Option<PathBuf>,
    /// Listen address, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long, global = true)]
    listen: Option<std::net::SocketAddr>,
    /// Directory for embedded data (SQLite, generated master key, mail files).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// PostgreSQL URL; without it gatehouse runs on embedded SQLite.
    #[arg(long, global = true)]
    database_url: Option<String>,
    /// Redis URL (replay cache, rate limits, revocation fan-out).
    #[arg(long, global = true)]
    redis_url: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(CommonOnly),
    /// Configuration tools.
    Config {
        #[command(subcommand)]
        cmd: ConfigCmd,
    },
    /// Audit-trail tools.
    Audit {
        #[command(subcommand)]
        cmd: AuditCmd,
    },
    /// Administrator accounts.
    Admin {
        #[command(subcommand)]
        cmd: AdminCmd,
    },
    /// Is this link one of ours? Answers official, lookalike or unknown, with the reasons.
    CheckUrl {
        #[command(flatten)]
        common: Common,
        /// The link.
        url: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// API keys of an account (operator tools; no re-authentication: the operator is trusted).
    Apikey {
        #[command(subcommand)]
        cmd: ApikeyCmd,
    },
}

#[derive(Debug, Subcommand)]
enum ApikeyCmd {
    /// Create a key; prints the secret of an HMAC key once.
    Create {
        #[command(flatten)]
        common: Common,
        /// Owner's email.
        #[arg(long)]
        email: String,
        /// Label.
        #[arg(long)]
        label: String,
        /// hmac, ed25519 or rsa.
        #[arg(long, default_value = "hmac")]
        kind: String,
        /// Comma-separated scopes (default: read-only).
        #[arg(long)]
        scopes: Option<String>,
        /// Allowed CIDR (repeat for several).
        #[arg(long = "allow")]
        allow: Vec<String>,
        /// File with the PEM public key (ed25519, rsa).
        #[arg(long)]
        public_key_file: Option<PathBuf>,
        /// Lift the withdraw safety lock at once (operator decision; audited).
        #[arg(long)]
        unlock_withdraw: bool,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// List an account's keys (never secrets).
    List {
        #[command(flatten)]
        common: Common,
        /// Owner's email.
        #[arg(long)]
        email: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key.
    Revoke {
        #[command(flatten)]
        common: Common,
        /// Owner's email.
        #[arg(long)]
        email: String,
        /// Key id.
        #[arg(long)]
        id: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Rotate a key: a successor is issued, the key keeps working for the overlap.
    Rotate {
        #[command(flatten)]
        common: Common,
        /// Owner's email.
        #[arg(long)]
        email: String,
        /// Key id.
        #[arg(long)]
        id: String,
        /// File with the successor's PEM public key (asymmetric keys).
        #[arg(long)]
        public_key_file: Option<PathBuf>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct CommonOnly {
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Subcommand)]
enum ConfigCmd {
    /// Validate and print the effective configuration, secrets redacted.
    Check(CommonOnly),
}

#[derive(Debug, Subcommand)]
enum AuditCmd {
    /// Walk the hash chain; exit 1 naming the first bad event.
    Verify {
        #[command(flatten)]
        common: Common,
        /// An externally recorded checkpoint `SEQ:HEXHASH` the chain must reach.
        #[arg(long)]
        checkpoint: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCmd {
    /// Create a staff account (verified email, `is_admin`). Reads the password from stdin.
    Create {
        #[command(flatten)]
        common: Common,
        /// The administrator's email address.
        #[arg(long)]
        email: String,
    },
    // friction (issue 5)
    /// Make an existing, verified account staff (a recovery reviewer).
    Grant {
        #[command(flatten)]
        common: Common,
        /// The account's email address.
        email: String,
    },
    /// Mark an account high-value (two reviewers for its recovery; `--off` to clear).
    HighValue {
        #[command(flatten)]
        common: Common,
        /// The account's email address.
        email: String,
        /// Clear the flag instead.
        #[arg(long)]
        off: bool,
    },
    // end friction
}

fn load(common: &Common) -> Result<Config, String> {
    let overrides = Overrides {
        listen: common.listen,
        data_dir: common.data_dir.clone(),
        database_url: common.database_url.clone(),
        redis_url: common.redis_url.clone(),
    };
    Config::load(common.config.as_deref(), &overrides).map_err(|e| format!("configuration error: {e}"))
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("GATEHOUSE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}

/// Entry point.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match cli.command {
            Command::Serve(c) => {
                let cfg = load(&c.common)?;
                let runtime = crate::app::build(cfg).await.map_err(|e| format!("startup failed: {e:#}"))?;
                crate::app::serve(runtime).await.map_err(|e| format!("server failed: {e:#}"))
            }
            Command::Config { cmd: ConfigCmd::Check(c) } => {
                let cfg = load(&c.common)?;
                print!("{}", cfg.to_redacted_toml());
                Ok(())
            }
            Command::Audit { cmd: AuditCmd::Verify { common, checkpoint } } => audit_verify(&common, checkpoint).await,
            Command::Admin { cmd: AdminCmd::Create { common, email } } => admin_create(&common, &email).await,
            // friction (issue 5)
            Command::Admin { cmd: AdminCmd::Grant { common, email } } => {
                admin_flag(&common, &email, "admin", true).await
            }
            Command::Admin { cmd: AdminCmd::HighValue { common, email, off } } => {
                admin_flag(&common, &email, "high_value", !off).await
            }
            // end friction
            Command::Apikey { cmd } => apikey(cmd).await,
            Command::CheckUrl { common, url, json } => check_url(&common, &url, json),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(msg) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

async fn open_store(cfg: &Config) -> Result<(SqlStore, crate::keys::ServerSecrets), String> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let keyring = crate::keys::load_keyring(cfg, &OsRng).map_err(|e| e.to_string())?;
    let store = SqlStore::connect(&cfg.database_url(), DbSettings::default(), clock.clone())
        .await
        .map_err(|e| format!("database: {e}"))?;
    let secrets =
        crate::keys::server_secrets(&store, &keyring, &OsRng, clock.now()).await.map_err(|e| e.to_string())?;
    store.set_audit_signer(secrets.audit_key.clone(), &format!("cli-{}", std::process::id()));
    Ok((store, secrets))
}

fn parse_checkpoint(s: &str) -> Result<(i64, [u8; 32]), String> {
    let (seq, hash) = s.split_once(':').ok_or("checkpoint must be SEQ:HEXHASH")?;
    let seq = seq.parse().map_err(|_| "checkpoint sequence must be a number")?;
    let hash: [u8; 32] =
        hex::decode(hash).ok().and_then(|h| h.try_into().ok()).ok_or("checkpoint hash must be 64 hex characters")?;
    Ok((seq, hash))
}

async fn audit_verify(common: &Common, checkpoint: Option<String>) -> Result<(), String> {
    let cfg = load(common)?;
    let checkpoint = checkpoint.as_deref().map(parse_checkpoint).transpose()?;
    let (store, secrets) = open_store(&cfg).await?;
    let mut verifier = ChainVerifier::new(&secrets.audit_key);
    let mut after = 0;
    let mut reached_checkpoint = checkpoint.is_none();
    loop {
        let page = store.records_after(after, 1000).await.map_err(|e| e.to_string())?;
        if page.is_empty() {
            break;
        }
        for r in &page {
            // Gaps and reordering show up as a sequence mismatch; edits as a hash mismatch.
            if let Err(e) = verifier.push(r) {
                return Err(format!("audit chain FAILED at event {}: {e}", e.seq()));
            }
            if let Some((seq, hash)) = checkpoint
                && r.seq == seq
            {
                if r.hash != hash {
                    return Err(format!("audit chain FAILED at event {seq}: differs from the checkpoint"));
                }
                reached_checkpoint = true;
            }
            after = r.seq;
        }
    }
    if !reached_checkpoint {
        return Err("audit chain FAILED: it ends before the checkpoint (events were removed from the end)".into());
    }
    println!("audit chain OK: {} events, head {}", verifier.count(), hex::encode(verifier.head()));
    Ok(())
}

// friction (issue 5)
/// Sets the staff or high-value flag of an existing account, audited.
async fn admin_flag(common: &Common, email: &str, flag: &str, on: bool) -> Result<(), String> {
    let cfg = load(common)?;
    let email = Email::parse(email).map_err(|_| "not a valid email address".to_owned())?;
    let (store, _) = open_store(&cfg).await?;
    let account = store
        .find_account_by_email(&email)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| "no account with this email".to_owned())?;
    if flag == "admin" {
        if account.email_verified_at.is_none() {
            return Err("the account's email address is not verified".into());
        }
        let e = AuditEvent::new(EventKind::AdminGranted, Outcome::Success).about(account.id).with("on", on);
        store.set_admin(account.id, on, SideEffects::event(e)).await.map_err(|e| e.to_string())?;
    } else {
        let e = AuditEvent::new(EventKind::HighValueChanged, Outcome::Success).about(account.id).with("on", on);
        store.set_high_value(account.id, on, SideEffects::event(e)).await.map_err(|e| e.to_string())?;
    }
    println!("{flag} = {on} for {} ({})", account.email, account.id);
    Ok(())
}
// end friction

async fn admin_create(common: &Common, email: &str) -> Result<(), String> {
    let cfg = load(common)?;
    let email = Email::parse(email).map_err(|_| "not a valid email address".to_owned())?;
    let mut raw = String::new();
    std::io::stdin().read_to_string(&mut raw).map_err(|e| e.to_string())?;
    let password = Password::new(raw.trim_end_matches(['\n', '\r'])).map_err(|_| "password too long".to_owned())?;
    PasswordPolicy::new(&cfg.password.brand_words)
        .check(&password, email.as_str())
        .map_err(|r| format!("password refused ({}): {r}", r.code()))?;
    let hasher = PasswordHasher::new(cfg.password.argon2, &OsRng).map_err(|e| e.to_string())?;
    let hash = hasher.hash(&password, &OsRng).map_err(|e| e.to_string())?;
    let (store, _) = open_store(&cfg).await?;
    let now: Timestamp = SystemClock.now();
    let account = Account {
        id: UserId::generate(now, &OsRng),
        email: email.clone(),
        email_verified_at: Some(now),
        password_hash: hash,
        status: AccountStatus::Active,
        is_admin: true,
        high_value: true,
        created_at: now,
        password_changed_at: now,
        frozen_at: None,
    };
    // The token row is required by the schema's creation path; it is already consumed.
    let token = EmailToken {
        hash: Token::generate(&OsRng).hash(),
        user_id: account.id,
        purpose: "none".into(),
        expires_at: now,
    };
    let fx = SideEffects::event(AuditEvent::new(EventKind::AdminCreated, Outcome::Success).about(account.id));
    store.create_account(&account, &token, fx).await.map_err(|e| match e {
        gatehouse_core::store::StoreError::Conflict => "an account with this email already exists".to_owned(),
        other => other.to_string(),
    })?;
    println!("created administrator {} ({})", account.email, account.id);
    Ok(())
}

fn print_key(v: &serde_json::Value, json_out: bool) {
    if json_out {
        println!("{v}");
    } else {
        println!(
            "{}  {}  kind={}  scopes={}  status={}  expires={}",
            v["id"].as_str().unwrap_or(""),
            v["label"].as_str().unwrap_or(""),
            v["kind"].as_str().unwrap_or(""),
            v["scopes"],
            v["status"].as_str().unwrap_or(""),
            v["expires_at"].as_str().unwrap_or("")
        );
        if let Some(s) = v["secret"].as_str() {
            println!("secret (shown once): {s}");
        }
    }
}

async fn apikey(cmd: ApikeyCmd) -> Result<(), String> {
    use gatehouse_core::apikey::{ApiKeyId, IpAllowlist, KeyKind, NewApiKey, ScopeSet};
    let common = match &cmd {
        ApikeyCmd::Create { common, .. }
        | ApikeyCmd::List { common, .. }
        | ApikeyCmd::Revoke { common, .. }
        | ApikeyCmd::Rotate { common, .. } => common.clone(),
    };
    let cfg = load(&common)?;
    let (store, _) = open_store(&cfg).await?;
    let keyring = crate::keys::load_keyring(&cfg, &OsRng).map_err(|e| e.to_string())?;
    let ops = crate::apikeys::KeyOps { store: &store, keyring: &keyring, rng: &OsRng, policy: &cfg.apikey };
    let owner_of = |email: &str| {
        let email = Email::parse(email).map_err(|_| "not a valid email address".to_owned());
        let store = &store;
        async move {
            let email = email?;
            store
                .find_account_by_email(&email)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| "no such account".to_owned())
        }
    };
    let now = SystemClock.now();
    let operator = |kind: EventKind| AuditEvent::new(kind, Outcome::Success).with("via", "operator_cli");
    match cmd {
        ApikeyCmd::Create { email, label, kind, scopes, allow, public_key_file, unlock_withdraw, json, .. } => {
            let owner = owner_of(&email).await?;
            let kind: KeyKind = serde_json::from_value(serde_json::Value::from(kind.as_str()))
                .map_err(|_| "kind must be hmac, ed25519 or rsa".to_owned())?;
            let scopes = match scopes {
                Some(s) => ScopeSet::parse_names(s.split(',').map(str::trim).filter(|s| !s.is_empty()))
                    .map_err(|e| e.to_string())?,
                None => ScopeSet::read_only_default(),
            };
            let allowlist = IpAllowlist::parse(&allow).map_err(|e| e.to_string())?;
            let pem = match public_key_file {
                Some(f) => Some(std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?),
                None => None,
            };
            let req = NewApiKey { label, kind, scopes, allowlist, expires_at: None };
            let (mut key, secret) = ops
                .create(
                    owner.id,
                    req,
                    pem.as_deref(),
                    now,
                    |k| operator(EventKind::ApiKeyCreated).about(owner.id).with("key", k.id.to_string()),
                    SideEffects::default(),
                )
                .await
                .map_err(|e| e.to_string())?;
            if unlock_withdraw {
                key = ops
                    .modify(
                        owner.id,
                        key.id,
                        |k| k.unlock_withdraw(),
                        |k| operator(EventKind::ApiKeyWithdrawUnlocked).about(owner.id).with("key", k.id.to_string()),
                    )
                    .await
                    .map_err(|e| e.to_string())?;
            }
            let mut v = crate::apikeys::key_json(&key, now);
            if let Some(s) = secret {
                v["secret"] = serde_json::Value::from(s.expose());
            }
            print_key(&v, json);
        }
        ApikeyCmd::List { email, json, .. } => {
            let owner = owner_of(&email).await?;
            let keys = store.list_api_keys(owner.id).await.map_err(|e| e.to_string())?;
            let list: Vec<_> = keys.iter().map(|k| crate::apikeys::key_json(k, now)).collect();
            if json {
                println!("{}", serde_json::Value::from(list));
            } else {
                for v in &list {
                    print_key(v, false);
                }
            }
        }
        ApikeyCmd::Revoke { email, id, json, .. } => {
            let owner = owner_of(&email).await?;
            let id = ApiKeyId::parse(&id).ok_or("not a key id")?;
            let key = ops
                .modify(
                    owner.id,
                    id,
                    |k| {
                        k.revoke(now);
                        Ok(())
                    },
                    |k| operator(EventKind::ApiKeyRevoked).about(owner.id).with("key", k.id.to_string()),
                )
                .await
                .map_err(|e| e.to_string())?;
            print_key(&crate::apikeys::key_json(&key, now), json);
        }
        ApikeyCmd::Rotate { email, id, public_key_file, json, .. } => {
            let owner = owner_of(&email).await?;
            let id = ApiKeyId::parse(&id).ok_or("not a key id")?;
            let pem = match public_key_file {
                Some(f) => Some(std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?),
                None => None,
            };
            let (next, secret) = ops
                .rotate(owner.id, id, None, pem.as_deref(), now, |old, new| {
                    operator(EventKind::ApiKeyRotated)
                        .about(owner.id)
                        .with("key", old.id.to_string())
                        .with("successor", new.id.to_string())
                })
                .await
                .map_err(|e| e.to_string())?;
            let mut v = crate::apikeys::key_json(&next, now);
            if let Some(s) = secret {
                v["secret"] = serde_json::Value::from(s.expose());
            }
            print_key(&v, json);
        }
    }
    Ok(())
}

fn check_url(common: &Common, url: &str, json_out: bool) -> Result<(), String> {
    let cfg = load(common)?;
    let checker = gatehouse_core::phishing::UrlChecker::new(gatehouse_core::phishing::OfficialConfig {
        domains: cfg.phishing.official_domains.clone(),
        brand_words: cfg.phishing.brand_words.clone(),
        app_links: cfg.phishing.app_links.clone(),
    })
    .map_err(|e| format!("phishing configuration: {e}"))?;
    let v = checker.check(url);
    if json_out {
        let reasons: Vec<_> =
            v.reasons.iter().map(|r| serde_json::json!({ "code": r.code(), "explanation": r.explanation() })).collect();
        println!(
            "{}",
            serde_json::json!({ "class": v.class.code(), "host": v.host, "unicode_host": v.unicode_host, "reasons": reasons })
        );
    } else {
        println!("{}", v.summary());
        for r in &v.reasons {
            println!("  - {}: {}", r.code(), r.explanation());
        }
    }
    Ok(())
}
