//! Master keys and the server's own long-lived secrets.
//!
//! * The master keyring (key-encryption keys) never enters the database. In production it
//!   comes from `GATEHOUSE_SECRETS__MASTER_KEYS` or a key file; a PostgreSQL deployment without
//!   one refuses to start (R92). In embedded mode the first start generates one into
//!   `<data_dir>/master.key` with mode 0600 and says so in the log.
//! * Server secrets (the audit-chain MAC key, the refresh-token derivation key) are random,
//!   generated once, stored sealed in the database and never regenerated on restart (F19):
//!   every instance and every restart uses the same ones.

use std::path::Path;

use gatehouse_core::clock::Timestamp;
use gatehouse_core::crypto::envelope::{Aad, Keyring};
use gatehouse_core::rng::SecureRng;
use gatehouse_core::secret::SecretBytes;
use gatehouse_core::store::SecretStore;

use crate::config::Config;

/// Loads (or, embedded, creates) the master keyring.
pub fn load_keyring(cfg: &Config, rng: &dyn SecureRng) -> anyhow::Result<Keyring> {
    let inline = cfg.secrets.master_keys.expose();
    if !inline.is_empty() {
        return Keyring::parse(inline).map_err(|e| anyhow::anyhow!("secrets.master_keys: {e}"));
    }
    if let Some(file) = &cfg.secrets.master_key_file {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("cannot read master key file {}: {e}", file.display()))?;
        return Keyring::parse(&text).map_err(|e| anyhow::anyhow!("master key file {}: {e}", file.display()));
    }
    if !cfg.is_embedded() {
        anyhow::bail!(
            "no master key: set GATEHOUSE_SECRETS__MASTER_KEYS or secrets.master_key_file (required with PostgreSQL)"
        );
    }
    let path = cfg.storage.data_dir.join("master.key");
    if path.exists() {
        let text =
            std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        return Keyring::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let ring = Keyring::generate(rng);
    write_private(&path, ring.to_text().expose())?;
    tracing::warn!(
        path = %path.display(),
        "generated a new master key for embedded mode; back this file up: without it, encrypted secrets cannot be read"
    );
    Ok(ring)
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut f = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// The server's long-lived secrets.
#[derive(Debug, Clone)]
pub struct ServerSecrets {
    /// MAC key of the audit chain.
    pub audit_key: SecretBytes,
    /// Key from which refresh-token successors are derived.
    pub refresh_key: SecretBytes,
}

async fn secret(
    store: &dyn SecretStore,
    ring: &Keyring,
    rng: &dyn SecureRng,
    name: &str,
    now: Timestamp,
) -> anyhow::Result<SecretBytes> {
    let aad = Aad::new(&["server_secret", name]);
    let fresh = gatehouse_core::rng::random_bytes::<32>(rng);
    let candidate = ring.seal(&fresh, &aad, rng)?;
    let sealed = store.get_or_init_secret(name, candidate, now).await?;
    ring.open(&sealed, &aad).map_err(|e| anyhow::anyhow!("server secret {name}: {e} (wrong master key?)"))
}

/// Loads or creates the server secrets.
pub async fn server_secrets(
    store: &dyn SecretStore,
    ring: &Keyring,
    rng: &dyn SecureRng,
    now: Timestamp,
) -> anyhow::Result<ServerSecrets> {
    Ok(ServerSecrets {
        audit_key: secret(store, ring, rng, "audit_mac_key", now).await?,
        refresh_key: secret(store, ring, rng, "refresh_derivation_key", now).await?,
    })
}
