-- Second factors (feat/mfa): TOTP seeds (sealed) and used steps, backup codes (Argon2id),
-- short-lived MFA tokens (pending logins, step-up proofs, stored by SHA-256), per-session
-- step-up memory, WebAuthn credentials, user handles and server-side ceremony state.

CREATE TABLE mfa_totp (
    user_id TEXT PRIMARY KEY REFERENCES accounts(id),
    -- 160-bit seed sealed under the master key (AAD binds it to the user): never in clear.
    seed_sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL,
    -- NULL while enrolment is pending (no correct code yet).
    confirmed_at BIGINT,
    last_step BIGINT
);

-- One row per accepted time step: the unique key makes a step single use across instances.
CREATE TABLE mfa_totp_steps (
    user_id TEXT NOT NULL,
    step BIGINT NOT NULL,
    used_at BIGINT NOT NULL,
    PRIMARY KEY (user_id, step)
);

CREATE TABLE mfa_backup_codes (
    user_id TEXT NOT NULL REFERENCES accounts(id),
    position BIGINT NOT NULL,
    -- $argon2id$… PHC string.
    hash TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    PRIMARY KEY (user_id, position)
);

CREATE TABLE mfa_tokens (
    hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL,
    purpose TEXT NOT NULL,
    session_id TEXT NOT NULL,
    action TEXT NOT NULL,
    binding TEXT NOT NULL,
    factor TEXT NOT NULL,
    strength TEXT NOT NULL,
    detail TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX mfa_tokens_expiry ON mfa_tokens(expires_at);

CREATE TABLE mfa_session_proofs (
    session_id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL,
    strength TEXT NOT NULL,
    verified_at BIGINT NOT NULL
);

CREATE TABLE webauthn_credentials (
    -- base64url credential id (at most 1023 bytes raw, R32); unique across all users.
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES accounts(id),
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    -- webauthn-rs credential JSON: public key and sign counter, no secret.
    credential TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_used_at BIGINT,
    flagged_at BIGINT
);
CREATE INDEX webauthn_credentials_user ON webauthn_credentials(user_id);

-- Ceremony state lives here, not in a cookie: any instance can finish it, once, before expiry.
CREATE TABLE webauthn_ceremonies (
    id TEXT PRIMARY KEY,
    user_id TEXT,
    kind TEXT NOT NULL,
    state TEXT NOT NULL,
    detail TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- SMS as a last resort (login only): the number sealed under the master key.
CREATE TABLE mfa_sms (
    user_id TEXT PRIMARY KEY REFERENCES accounts(id),
    phone_sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);
