-- Withdrawals, holds after security changes, the settings lock, anti-phishing codes and
-- lost-factor recovery cases (issue 5). Amounts are integer base units (10^-8).

-- Withdrawals are refused before this instant (Unix ms); only ever extended.
ALTER TABLE accounts ADD COLUMN withdrawals_held_until BIGINT;
ALTER TABLE accounts ADD COLUMN withdrawal_hold_reason TEXT;
ALTER TABLE accounts ADD COLUMN withdrawal_allowlist_only BIGINT NOT NULL DEFAULT 0;
ALTER TABLE accounts ADD COLUMN settings_locked_at BIGINT;
ALTER TABLE accounts ADD COLUMN settings_unlock_at BIGINT;
-- Sealed under the master keyring (base64url envelope), never in clear.
ALTER TABLE accounts ADD COLUMN anti_phishing_sealed TEXT;

CREATE TABLE withdrawal_addresses (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES accounts(id),
    asset TEXT NOT NULL,
    address TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    active_at BIGINT NOT NULL,
    cancelled_at BIGINT
);
CREATE INDEX withdrawal_addresses_user ON withdrawal_addresses(user_id, asset, address);

-- A confirmed intent is its own delivery outbox row: the id is the idempotency key.
CREATE TABLE withdrawal_intents (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES accounts(id),
    asset TEXT NOT NULL,
    units BIGINT NOT NULL,
    canonical TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    confirmed_at BIGINT,
    delivered_at BIGINT,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT,
    last_error TEXT
);
CREATE INDEX withdrawal_intents_user ON withdrawal_intents(user_id, asset, state, confirmed_at);
CREATE INDEX withdrawal_intents_due ON withdrawal_intents(state, delivered_at, next_attempt_at);

CREATE TABLE recovery_cases (
    id TEXT PRIMARY KEY,
    user_id TEXT NOT NULL REFERENCES accounts(id),
    state TEXT NOT NULL,
    evidence_sealed TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    execute_after BIGINT NOT NULL,
    required_approvals BIGINT NOT NULL,
    first_reviewer TEXT,
    decided_by TEXT,
    decided_at BIGINT
);
CREATE INDEX recovery_cases_state ON recovery_cases(state, created_at);
