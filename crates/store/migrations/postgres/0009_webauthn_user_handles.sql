-- R33: each account's WebAuthn user handle, 64 random bytes made at its first registration
-- (no PII, not derived from anything). Credentials registered before this table existed carry
-- the older 16-byte HMAC-derived handle, which passkey sign-in still accepts.
CREATE TABLE webauthn_user_handles (
    user_id TEXT PRIMARY KEY REFERENCES accounts(id),
    handle BYTEA NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);
