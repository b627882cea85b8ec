-- Foundation: accounts, emailed tokens, login throttle, sessions and tokens, audit chain,
-- server secrets, mail outbox. Times are Unix milliseconds (BIGINT); flags are 0/1 BIGINT;
-- ids are hyphenated UUID text. The PostgreSQL migration defines the same tables.

CREATE TABLE accounts (
    id TEXT PRIMARY KEY,
    email TEXT NOT NULL UNIQUE,
    email_verified_at BIGINT,
    password_hash TEXT NOT NULL,
    status TEXT NOT NULL,
    is_admin BIGINT NOT NULL DEFAULT 0,
    high_value BIGINT NOT NULL DEFAULT 0,
    created_at BIGINT NOT NULL,
    password_changed_at BIGINT NOT NULL
);

CREATE TABLE email_tokens (
    hash BYTEA PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES accounts(id),
    purpose TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at BIGINT
);
CREATE INDEX email_tokens_user ON email_tokens(user_id);

CREATE TABLE login_throttle (
    key TEXT PRIMARY KEY,
    consecutive BIGINT NOT NULL,
    last_failure_at BIGINT,
    locked_until BIGINT
);

CREATE TABLE sessions (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES accounts(id),
    device_id TEXT NOT NULL,
    ua_family TEXT NOT NULL,
    device_name TEXT NOT NULL,
    kind TEXT NOT NULL,
    created_ip TEXT NOT NULL,
    last_ip TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    auth_time BIGINT NOT NULL,
    revoked_at BIGINT,
    revoke_reason TEXT
);
CREATE INDEX sessions_user ON sessions(user_id);
CREATE INDEX sessions_user_device ON sessions(user_id, device_id);

CREATE TABLE access_tokens (
    hash BYTEA PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX access_tokens_session ON access_tokens(session_id);

CREATE TABLE refresh_tokens (
    hash BYTEA PRIMARY KEY,
    session_id TEXT NOT NULL REFERENCES sessions(id),
    state TEXT NOT NULL,
    successor BYTEA,
    created_at BIGINT NOT NULL,
    used_at BIGINT,
    expires_at BIGINT NOT NULL
);
CREATE INDEX refresh_tokens_session ON refresh_tokens(session_id);

CREATE TABLE audit_events (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    instance TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    subject TEXT,
    ip TEXT,
    request_id TEXT,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash BYTEA NOT NULL,
    hash BYTEA NOT NULL,
    mac BYTEA NOT NULL
);
CREATE INDEX audit_events_subject ON audit_events(subject, seq);

-- One row: the chain head. Appenders update it first, which serialises them.
CREATE TABLE audit_head (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    seq BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode('0000000000000000000000000000000000000000000000000000000000000000', 'hex'));

CREATE TABLE server_secrets (
    name TEXT PRIMARY KEY,
    sealed BYTEA NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE mail_outbox (
    id TEXT PRIMARY KEY,
    recipient TEXT NOT NULL,
    sealed BYTEA,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    sent_at BIGINT,
    last_error TEXT
);
CREATE INDEX mail_outbox_due ON mail_outbox(sent_at, next_attempt_at);
