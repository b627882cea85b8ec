//! API-key life cycle shared by the JSON API and the operator CLI: create, rotate, revoke,
//! unlock withdrawals, change the allowlist. The rules are in `gatehouse_core::apikey`; this
//! module mints the material (an HMAC secret shown exactly once, or a validated public key),
//! seals secrets under the master key, and writes through the store with the audit events.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gatehouse_core::apikey::{ApiKey, ApiKeyId, KeyError, KeyKind, KeyPolicy, NewApiKey};
use gatehouse_core::audit::AuditEvent;
use gatehouse_core::clock::Timestamp;
use gatehouse_core::crypto::envelope::Keyring;
use gatehouse_core::ids::UserId;
use gatehouse_core::rng::SecureRng;
use gatehouse_core::secret::SecretString;
use gatehouse_core::signing::VerifyKey;
use gatehouse_core::store::{SideEffects, Store, StoreError, StoredApiKey, api_key_secret_aad};
use serde_json::{Value, json};

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
pub enum KeyServiceError {
    /// The core rules refused it.
    #[error("{0}")]
    Rule(#[from] KeyError),
    /// The uploaded public key is unusable.
    #[error("invalid public key: {0}")]
    PublicKey(String),
    /// The account already has the maximum number of keys.
    #[error("key limit reached")]
    Limit,
    /// No such key for this owner.
    #[error("no such key")]
    NotFound,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Sealing failed.
    #[error("sealing the secret failed")]
    Seal,
}

/// Key material for a new key.
struct Material {
    secret: Option<SecretString>,
    sealed: Option<Vec<u8>>,
    public_key: Option<Vec<u8>>,
}

/// The DER prefix of an Ed25519 SubjectPublicKeyInfo (RFC 8410).
const ED25519_SPKI_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// Normalises an uploaded public key to PEM and checks that it parses as `kind`.
/// Ed25519 keys may also be given as 32 raw bytes in base64.
pub fn normalise_public_key(kind: KeyKind, text: &str) -> Result<String, KeyServiceError> {
    let text = text.trim();
    if text.len() > 8192 {
        return Err(KeyServiceError::PublicKey("too long".into()));
    }
    let pem = if text.starts_with("-----BEGIN PUBLIC KEY-----") {
        text.to_owned()
    } else if kind == KeyKind::Ed25519 {
        let raw = STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| KeyServiceError::PublicKey("expected a PEM public key or 32 bytes in base64".into()))?;
        if raw.len() != 32 {
            return Err(KeyServiceError::PublicKey("an Ed25519 public key is 32 bytes".into()));
        }
        let mut der = ED25519_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&raw);
        format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", STANDARD.encode(der))
    } else {
        return Err(KeyServiceError::PublicKey("expected a PEM public key (-----BEGIN PUBLIC KEY-----)".into()));
    };
    let parsed = match kind {
        KeyKind::Ed25519 => VerifyKey::ed25519_from_pem(&pem),
        KeyKind::Rsa => VerifyKey::rsa_from_pem(&pem),
        KeyKind::Hmac => return Err(KeyServiceError::PublicKey("HMAC keys take no public key".into())),
    };
    parsed.map_err(|e| KeyServiceError::PublicKey(e.to_string()))?;
    Ok(pem)
}

fn material(
    kind: KeyKind,
    public_key: Option<&str>,
    id: ApiKeyId,
    owner: UserId,
    keyring: &Keyring,
    rng: &dyn SecureRng,
) -> Result<Material, KeyServiceError> {
    match kind {
        KeyKind::Hmac => {
            if public_key.is_some() {
                return Err(KeyServiceError::PublicKey(
                    "HMAC keys take no public key; the server makes the secret".into(),
                ));
            }
            // 256 random bits as 43 base64url characters; clients use the string's bytes as the
            // HMAC key (Upbit, Binance), so the key has the full 256 bits of entropy (R63).
            let raw = gatehouse_core::rng::random_bytes::<32>(rng);
            let secret = SecretString::new(URL_SAFE_NO_PAD.encode(raw));
            let sealed = keyring
                .seal(secret.expose().as_bytes(), &api_key_secret_aad(&id, &owner), rng)
                .map_err(|_| KeyServiceError::Seal)?;
            Ok(Material { secret: Some(secret), sealed: Some(sealed), public_key: None })
        }
        KeyKind::Ed25519 | KeyKind::Rsa => {
            let text = public_key.ok_or_else(|| KeyServiceError::PublicKey("public_key is required".into()))?;
            let pem = normalise_public_key(kind, text)?;
            Ok(Material { secret: None, sealed: None, public_key: Some(pem.into_bytes()) })
        }
    }
}

/// Everything a key operation needs.
pub struct KeyOps<'a> {
    /// The store.
    pub store: &'a dyn Store,
    /// Master keys.
    pub keyring: &'a Keyring,
    /// Randomness.
    pub rng: &'a dyn SecureRng,
    /// Rules.
    pub policy: &'a KeyPolicy,
}

impl KeyOps<'_> {
    /// Creates a key; returns the record and, for HMAC keys, the secret to show once.
    pub async fn create(
        &self,
        owner: UserId,
        req: NewApiKey,
        public_key: Option<&str>,
        now: Timestamp,
        event: impl FnOnce(&ApiKey) -> AuditEvent,
        extra: SideEffects,
    ) -> Result<(ApiKey, Option<SecretString>), KeyServiceError> {
        let existing = self.store.list_api_keys(owner).await?.iter().filter(|k| k.revoked_at.is_none()).count();
        let id = ApiKeyId::generate(self.rng);
        let kind = req.kind;
        let key = ApiKey::create(id, owner, req, u32::try_from(existing).unwrap_or(u32::MAX), now, self.policy)?;
        let m = material(kind, public_key, id, owner, self.keyring, self.rng)?;
        let stored = StoredApiKey { key: key.clone(), secret_sealed: m.sealed, public_key: m.public_key };
        let mut fx = extra;
        fx.events.insert(0, event(&key));
        if !self.store.create_api_key(&stored, self.policy.max_keys_per_account, fx).await? {
            return Err(KeyServiceError::Limit);
        }
        Ok((key, m.secret))
    }

    /// Loads a key of `owner`.
    pub async fn owned(&self, owner: UserId, id: ApiKeyId) -> Result<ApiKey, KeyServiceError> {
        match self.store.find_api_key(id).await? {
            Some(k) if k.key.owner == owner => Ok(k.key),
            _ => Err(KeyServiceError::NotFound),
        }
    }

    /// Rotates a key: the successor gets fresh material, the predecessor keeps working until
    /// `min(its expiry, now + grace)`.
    pub async fn rotate(
        &self,
        owner: UserId,
        id: ApiKeyId,
        kind: Option<KeyKind>,
        public_key: Option<&str>,
        now: Timestamp,
        event: impl FnOnce(&ApiKey, &ApiKey) -> AuditEvent,
    ) -> Result<(ApiKey, Option<SecretString>), KeyServiceError> {
        let mut old = self.owned(owner, id).await?;
        let kind = kind.unwrap_or(old.kind);
        let new_id = ApiKeyId::generate(self.rng);
        let next = old.rotate(new_id, kind, now, self.policy)?;
        let m = material(kind, public_key, new_id, owner, self.keyring, self.rng)?;
        let stored = StoredApiKey { key: next.clone(), secret_sealed: m.sealed, public_key: m.public_key };
        self.store.rotate_api_key(&old, &stored, SideEffects::event(event(&old, &next))).await?;
        Ok((next, m.secret))
    }

    /// Applies `change` to a key of `owner` and saves it with `event`.
    pub async fn modify(
        &self,
        owner: UserId,
        id: ApiKeyId,
        change: impl FnOnce(&mut ApiKey) -> Result<(), KeyError>,
        event: impl FnOnce(&ApiKey) -> AuditEvent,
    ) -> Result<ApiKey, KeyServiceError> {
        let mut key = self.owned(owner, id).await?;
        change(&mut key)?;
        if !self.store.update_api_key(&key, SideEffects::event(event(&key))).await? {
            return Err(KeyServiceError::NotFound);
        }
        Ok(key)
    }
}

/// The public view of a key (never a secret).
pub fn key_json(k: &ApiKey, now: Timestamp) -> Value {
    json!({
        "id": k.id.to_string(),
        "label": k.label.as_str(),
        "kind": k.kind,
        "scopes": k.scopes,
        "allowlist": k.allowlist,
        "pending_allowlist": k.pending_allowlist.as_ref().map(|p| json!({
            "allowlist": p.allowlist,
            "effective_at": p.effective_at.to_rfc3339(),
        })),
        "status": k.status,
        "usable": k.is_usable(now),
        "withdraw_locked": k.status == gatehouse_core::apikey::ApiKeyStatus::Locked,
        "created_at": k.created_at.to_rfc3339(),
        "expires_at": k.expires_at.to_rfc3339(),
        "valid_until": k.valid_until.map(|t| t.to_rfc3339()),
        "rotated_from": k.rotated_from.map(|i| i.to_string()),
        "successor": k.successor.map(|i| i.to_string()),
        "revoked_at": k.revoked_at.map(|t| t.to_rfc3339()),
        "last_used": k.last_used.as_ref().map(|l| json!({
            "at": l.at.to_rfc3339(),
            "ip": l.ip.map(|i| i.to_string()),
            "user_agent": l.user_agent,
        })),
    })
}
