-- Behavioural risk profiles (JSON, bounded in size by the engine) and account freezes.

CREATE TABLE risk_profiles (
    user_id TEXT PRIMARY KEY REFERENCES accounts(id),
    profile TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE risk_global (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    stats TEXT NOT NULL,
    updated_at BIGINT NOT NULL
);

-- Set while the account is frozen (by its owner, the security team or the risk engine):
-- sessions revoked, API keys suspended, withdrawals blocked until the owner recovers.
ALTER TABLE accounts ADD COLUMN frozen_at BIGINT;
ALTER TABLE accounts ADD COLUMN frozen_reason TEXT;
