-- A TOTP step is single use through `mfa_totp.last_step` alone: one conditional UPDATE
-- (`last_step < step`) is the compare-and-set that every instance goes through, so the
-- per-step rows added nothing and cost two statements on every verification.
DROP TABLE mfa_totp_steps;
