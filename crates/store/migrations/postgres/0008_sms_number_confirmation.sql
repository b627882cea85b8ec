-- R39: an SMS number is usable only once a code sent to it was confirmed. A number being set
-- or changed waits here with the keyed hash of its code (HMAC under a server secret, bound to
-- the user and the number); the confirmed number, if any, stays in mfa_sms until then.
-- sends / window_start bound how many codes one account can have sent (SMS pumping); a
-- confirmed row stays with expires_at = 0 so that its count still applies.
CREATE TABLE mfa_sms_pending (
    user_id TEXT PRIMARY KEY REFERENCES accounts(id),
    phone_sealed BYTEA NOT NULL,
    code_hash BYTEA NOT NULL,
    sends BIGINT NOT NULL,
    window_start BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
