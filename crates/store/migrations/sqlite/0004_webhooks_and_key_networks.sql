-- Signed webhooks to the security team (durable outbox), and the networks each API key has
-- been used from (for new-network alerts).

CREATE TABLE webhook_outbox (
    id TEXT PRIMARY KEY,
    topic TEXT NOT NULL,
    body TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT
);
CREATE INDEX webhook_outbox_due ON webhook_outbox(delivered_at, next_attempt_at);

CREATE TABLE api_key_networks (
    key_id TEXT NOT NULL,
    network TEXT NOT NULL,
    first_seen BIGINT NOT NULL,
    PRIMARY KEY (key_id, network)
);

-- Which expiry reminder an API key last received (0 none, 1 at 30 days, 2 at 7 days, 3 at 1 day).
ALTER TABLE api_keys ADD COLUMN reminded_stage BIGINT NOT NULL DEFAULT 0;
CREATE INDEX api_keys_expiry ON api_keys(expires_at);
