-- API keys, their usage counts, and the durable replay store (nonces and signatures).

CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    owner TEXT NOT NULL REFERENCES accounts(id),
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    -- The key record (scopes, allowlist, rotation, last use) as JSON; no secret in it.
    record TEXT NOT NULL,
    -- HMAC secret sealed under the master key (AAD binds it to this row), or NULL.
    secret_sealed BYTEA,
    -- Ed25519 (32 raw bytes) or RSA (SPKI DER) public key, or NULL.
    public_key BYTEA,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    -- Last successful use, flushed in batches (the record's own last_used is ignored).
    last_used_at BIGINT,
    last_used_ip TEXT,
    last_used_ua TEXT
);
CREATE INDEX api_keys_owner ON api_keys(owner);

CREATE TABLE api_key_usage (
    key_id TEXT NOT NULL,
    route TEXT NOT NULL,
    outcome TEXT NOT NULL,
    count BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    PRIMARY KEY (key_id, route, outcome)
);

CREATE TABLE replay_nonces (
    key BYTEA PRIMARY KEY,
    expires_at BIGINT NOT NULL
);
CREATE INDEX replay_nonces_expiry ON replay_nonces(expires_at);
