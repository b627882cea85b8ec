//! A short-lived cache of API-key records and their verification keys.
//!
//! Verification must not cost a database round trip per request, but a revocation must reach
//! every instance quickly (F16: ≤ 1 s). Entries live `key_cache_ms` (default 1 s, measured
//! on the monotonic clock); unknown ids are cached as absent for the same time so a flood of
//! made-up ids cannot turn into a flood of queries. Local changes (revoke, rotate, unlock)
//! invalidate the entry at once.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use gatehouse_core::apikey::{ApiKey, ApiKeyId, KeyKind};
use gatehouse_core::crypto::envelope::Keyring;
use gatehouse_core::signing::VerifyKey;
use gatehouse_core::store::{Store, StoreError, api_key_secret_aad};

use crate::sharded::{PARTS, Sharded};

/// A key ready for verification.
pub struct CachedKey {
    /// The record.
    pub key: ApiKey,
    /// Its verification key.
    pub verify: VerifyKey,
    /// The key id as text (risk memory), formatted once.
    pub id_text: String,
    /// The forward-auth answer's `X-Gatehouse-User`, `-Key` and `-Scopes` values (the scopes
    /// as comma-separated names), built once per cache fill.
    pub identity_headers: [HeaderValue; 3],
}

impl CachedKey {
    /// A cache entry for `key`.
    pub fn new(key: ApiKey, verify: VerifyKey) -> Self {
        let scopes = key.scopes.iter().map(|s| s.name()).collect::<Vec<_>>().join(",");
        let id_text = key.id.to_string();
        // uuids and scope names are visible ASCII: these values are always valid
        let value = |s: &str| HeaderValue::from_str(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"));
        let identity_headers = [value(&key.owner.to_string()), value(&id_text), value(&scopes)];
        Self { id_text, identity_headers, key, verify }
    }
}

type Entry = (Option<Arc<CachedKey>>, Instant);

/// The cache, split by key id into [`Sharded`] parts so that request threads do not all queue
/// on one lock. Bounded: when a part is full, that part is cleared (every entry can be re-read).
pub struct KeyCache {
    parts: Sharded<HashMap<ApiKeyId, Entry>>,
    ttl: Duration,
    /// Entries per part.
    part_capacity: usize,
}

impl KeyCache {
    /// A cache keeping at most about `capacity` entries for `ttl` each.
    pub fn new(ttl: Duration, capacity: usize) -> Self {
        Self { parts: Sharded::default(), ttl, part_capacity: capacity.div_ceil(PARTS).max(1) }
    }

    fn cached(&self, id: &ApiKeyId) -> Option<Option<Arc<CachedKey>>> {
        let map = self.parts.part(id);
        let (value, at) = map.get(id)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    /// Forgets `id` (after a local change).
    pub fn invalidate(&self, id: &ApiKeyId) {
        self.parts.part(id).remove(id);
    }

    /// The key with this id, from the cache or the store. `Ok(None)` for unknown ids and for
    /// keys whose material cannot be used (logged: fail closed).
    pub async fn get(
        &self,
        id: &ApiKeyId,
        store: &dyn Store,
        keyring: &Keyring,
    ) -> Result<Option<Arc<CachedKey>>, StoreError> {
        if let Some(hit) = self.cached(id) {
            return Ok(hit);
        }
        let loaded = match store.find_api_key(*id).await? {
            None => None,
            Some(stored) => {
                let verify = match stored.key.kind {
                    KeyKind::Hmac => stored.secret_sealed.as_deref().and_then(|sealed| {
                        let secret =
                            keyring.open(sealed, &api_key_secret_aad(&stored.key.id, &stored.key.owner)).ok()?;
                        VerifyKey::hmac_from_bytes(secret.expose()).ok()
                    }),
                    KeyKind::Ed25519 | KeyKind::Rsa => stored
                        .public_key
                        .as_deref()
                        .and_then(|pem| std::str::from_utf8(pem).ok())
                        .and_then(|pem| VerifyKey::from_public_pem(pem).ok()),
                };
                match verify {
                    Some(verify) => Some(Arc::new(CachedKey::new(stored.key, verify))),
                    None => {
                        tracing::error!(key_id = %id, "API key material unusable (wrong master key or corrupt row)");
                        None
                    }
                }
            }
        };
        let mut m = self.parts.part(id);
        if m.len() >= self.part_capacity {
            m.clear();
        }
        m.insert(*id, (loaded.clone(), Instant::now()));
        Ok(loaded)
    }
}
