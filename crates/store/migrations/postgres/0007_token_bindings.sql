-- Proof of possession (issue 9): what every token of a session is bound to. Written with the
-- session in one transaction and never updated; an unbound session has no row.
-- jkt: RFC 7638 thumbprint of the DPoP key (RFC 9449 §6.1); x5t_s256: SHA-256 thumbprint of
-- the client certificate (RFC 8705 §3.1). Both are public values (base64url, 43 characters).
CREATE TABLE token_bindings (
    session_id TEXT PRIMARY KEY REFERENCES sessions(id),
    jkt TEXT,
    x5t_s256 TEXT,
    created_at BIGINT NOT NULL,
    CHECK (jkt IS NOT NULL OR x5t_s256 IS NOT NULL)
);
