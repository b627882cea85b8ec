//! Second factors (feat/mfa): TOTP, backup codes, MFA tokens, session proofs, WebAuthn.
//! Every consume is one conditional write (F8); see [`gatehouse_core::mfa::store`].

use async_trait::async_trait;
use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::{SessionId, UserId};
use gatehouse_core::mfa::StoredBackupCode;
use gatehouse_core::mfa::store::{
    BackupCodeRow, CeremonyRow, FactorUse, MfaStore, MfaToken, MfaTokenMatch, MfaTokenPurpose, PendingSmsNumber,
    StepUpGrant, TotpFactor, WebAuthnCredentialRow,
};
use gatehouse_core::secret::TokenHash;
use gatehouse_core::store::{SideEffects, StoreError, StoreResult};
use sqlx::any::AnyRow;

use super::group::Tx;
use super::rows::{blob, hash32, i64_col, opt_i64, opt_text, opt_ts, text, ts, user_id};
use super::{SqlStore, map_err};

fn step_i64(step: u64) -> StoreResult<i64> {
    i64::try_from(step).map_err(|_| StoreError::Other("TOTP step out of range".into()))
}

fn totp_row(row: &AnyRow) -> StoreResult<TotpFactor> {
    Ok(TotpFactor {
        user_id: user_id(row, "user_id")?,
        seed_sealed: blob(row, "seed_sealed")?,
        created_at: ts(row, "created_at")?,
        confirmed_at: opt_ts(row, "confirmed_at")?,
        last_step: opt_i64(row, "last_step")?.and_then(|s| u64::try_from(s).ok()),
    })
}

fn purpose_of(s: &str) -> StoreResult<MfaTokenPurpose> {
    match s {
        "login" => Ok(MfaTokenPurpose::Login),
        "step_up" => Ok(MfaTokenPurpose::StepUp),
        "sms" => Ok(MfaTokenPurpose::Sms),
        _ => Err(StoreError::Corrupt("mfa token purpose".into())),
    }
}

const TOKEN_COLS: &str =
    "hash, user_id, purpose, session_id, action, binding, factor, strength, detail, created_at, expires_at";

fn token_row(row: &AnyRow) -> StoreResult<MfaToken> {
    let session = text(row, "session_id")?;
    Ok(MfaToken {
        hash: TokenHash::from_bytes(hash32(row, "hash")?),
        user_id: user_id(row, "user_id")?,
        purpose: purpose_of(&text(row, "purpose")?)?,
        session_id: if session.is_empty() {
            None
        } else {
            Some(SessionId::parse(&session).ok_or_else(|| StoreError::Corrupt("mfa token session".into()))?)
        },
        action: text(row, "action")?,
        binding: text(row, "binding")?,
        factor: text(row, "factor")?,
        strength: text(row, "strength")?,
        detail: text(row, "detail")?,
        created_at: ts(row, "created_at")?,
        expires_at: ts(row, "expires_at")?,
    })
}

const CRED_COLS: &str = "id, user_id, name, kind, credential, created_at, last_used_at, flagged_at";

fn cred_row(row: &AnyRow) -> StoreResult<WebAuthnCredentialRow> {
    Ok(WebAuthnCredentialRow {
        id: text(row, "id")?,
        user_id: user_id(row, "user_id")?,
        name: text(row, "name")?,
        kind: text(row, "kind")?,
        credential: text(row, "credential")?,
        created_at: ts(row, "created_at")?,
        last_used_at: opt_ts(row, "last_used_at")?,
        flagged_at: opt_ts(row, "flagged_at")?,
    })
}

async fn insert_codes(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    user: UserId,
    codes: &[StoredBackupCode],
    now: Timestamp,
) -> StoreResult<()> {
    sqlx::query("DELETE FROM mfa_backup_codes WHERE user_id = $1")
        .bind(user.to_string())
        .execute(&mut **tx)
        .await
        .map_err(map_err)?;
    for (i, c) in codes.iter().enumerate() {
        sqlx::query("INSERT INTO mfa_backup_codes (user_id, position, hash, created_at) VALUES ($1, $2, $3, $4)")
            .bind(user.to_string())
            .bind(i as i64)
            .bind(c.as_str().to_owned())
            .bind(now.as_millis())
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

#[async_trait]
impl MfaStore for SqlStore {
    async fn find_totp(&self, user: UserId) -> StoreResult<Option<TotpFactor>> {
        let row = sqlx::query(
            "SELECT user_id, seed_sealed, created_at, confirmed_at, last_step FROM mfa_totp WHERE user_id = $1",
        )
        .bind(user.to_string())
        .fetch_optional(&mut *self.reader().await?)
        .await
        .map_err(map_err)?;
        row.as_ref().map(totp_row).transpose()
    }

    async fn begin_totp(&self, user: UserId, seed_sealed: &[u8], now: Timestamp, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1 AND confirmed_at IS NULL")
            .bind(user.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        let r = sqlx::query(
            "INSERT INTO mfa_totp (user_id, seed_sealed, created_at) VALUES ($1, $2, $3) ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user.to_string())
        .bind(seed_sealed.to_vec())
        .bind(now.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn activate_totp(
        &self,
        user: UserId,
        step: u64,
        backup: Option<&[StoredBackupCode]>,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool> {
        let step = step_i64(step)?;
        let mut w = self.begin().await?;
        let r = sqlx::query(
            "UPDATE mfa_totp SET confirmed_at = $1, last_step = $2 WHERE user_id = $3 AND confirmed_at IS NULL",
        )
        .bind(now.as_millis())
        .bind(step)
        .bind(user.to_string())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        // The enrolment code's step is the first accepted one (`last_step`, set above).
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        if let Some(codes) = backup {
            insert_codes(&mut w.tx, user, codes, now).await?;
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn consume_totp_step(&self, user: UserId, step: u64, _now: Timestamp, fx: SideEffects) -> StoreResult<bool> {
        let step = step_i64(step)?;
        let user = user.to_string();
        // Group commit (see `group`): `last_step` and the success event commit
        // together in the next batch, and the answer waits for that commit.
        self.grouped(
            Box::new(move |mut tx| {
                let user = user.clone();
                Box::pin(async move {
                    let r = consume_step(&mut tx, &user, step).await;
                    (tx, r)
                })
            }),
            fx,
        )
        .await
    }

    async fn delete_totp(&self, user: UserId, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query("DELETE FROM mfa_totp WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn backup_codes(&self, user: UserId) -> StoreResult<Vec<BackupCodeRow>> {
        let rows =
            sqlx::query("SELECT position, hash, used_at FROM mfa_backup_codes WHERE user_id = $1 ORDER BY position")
                .bind(user.to_string())
                .fetch_all(&mut *self.reader().await?)
                .await
                .map_err(map_err)?;
        rows.iter()
            .map(|r| {
                Ok(BackupCodeRow {
                    position: u32::try_from(i64_col(r, "position")?)
                        .map_err(|_| StoreError::Corrupt("backup code position".into()))?,
                    hash: StoredBackupCode::from_stored(text(r, "hash")?),
                    used: opt_i64(r, "used_at")?.is_some(),
                })
            })
            .collect()
    }

    async fn replace_backup_codes(
        &self,
        user: UserId,
        codes: &[StoredBackupCode],
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<()> {
        let mut w = self.begin().await?;
        insert_codes(&mut w.tx, user, codes, now).await?;
        self.finish(w, fx).await
    }

    async fn consume_backup_code(
        &self,
        user: UserId,
        position: u32,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        if !consume_code(&mut w.tx, &user.to_string(), position, now.as_millis()).await? {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn create_mfa_token(&self, t: &MfaToken, fx: SideEffects) -> StoreResult<()> {
        let t = t.clone();
        self.grouped(
            Box::new(move |mut tx| {
                let t = t.clone();
                Box::pin(async move {
                    let r = insert_token(&mut tx, &t).await.map(|()| true);
                    (tx, r)
                })
            }),
            fx,
        )
        .await
        .map(|_| ())
    }

    async fn find_mfa_token(
        &self,
        hash: TokenHash,
        purpose: MfaTokenPurpose,
        now: Timestamp,
    ) -> StoreResult<Option<MfaToken>> {
        let sql = format!(
            "SELECT {TOKEN_COLS} FROM mfa_tokens WHERE hash = $1 AND purpose = $2 AND used_at IS NULL AND expires_at > $3"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(hash.as_bytes().to_vec())
            .bind(purpose.as_str())
            .bind(now.as_millis())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        row.as_ref().map(token_row).transpose()
    }

    async fn consume_mfa_token(&self, m: &MfaTokenMatch<'_>, now: Timestamp) -> StoreResult<Option<MfaToken>> {
        let mut w = self.begin().await?;
        let sql = format!(
            "UPDATE mfa_tokens SET used_at = $1 WHERE hash = $2 AND purpose = $3 AND used_at IS NULL AND expires_at > $1 \
             AND ($4 = '' OR user_id = $4) AND ($5 = '' OR session_id = $5) AND ($6 = '-' OR action = $6) \
             AND ($7 = '-' OR binding = $7) RETURNING {TOKEN_COLS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(now.as_millis())
            .bind(m.hash.as_bytes().to_vec())
            .bind(m.purpose.as_str())
            .bind(m.user_id.map(|u| u.to_string()).unwrap_or_default())
            .bind(m.session_id.map(|s| s.to_string()).unwrap_or_default())
            .bind(m.action.unwrap_or("-").to_owned())
            .bind(m.binding.unwrap_or("-").to_owned())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(map_err)?;
        let token = row.as_ref().map(token_row).transpose()?;
        w.tx.commit().await.map_err(map_err)?;
        Ok(token)
    }

    async fn note_session_proof(
        &self,
        session: SessionId,
        user: UserId,
        strength: &str,
        at: Timestamp,
    ) -> StoreResult<()> {
        let (session, user, strength, at) =
            (session.to_string(), user.to_string(), strength.to_owned(), at.as_millis());
        self.grouped(
            Box::new(move |mut tx| {
                let (session, user, strength) = (session.clone(), user.clone(), strength.clone());
                Box::pin(async move {
                    let r = note_proof(&mut tx, session, user, strength, at).await.map(|()| true);
                    (tx, r)
                })
            }),
            SideEffects::default(),
        )
        .await
        .map(|_| ())
    }

    async fn grant_step_up(&self, grant: &StepUpGrant, fx: SideEffects) -> StoreResult<bool> {
        let g = grant.clone();
        let session = g.token.session_id.ok_or_else(|| StoreError::Other("step-up token without a session".into()))?;
        let sqlite = self.backend == super::Backend::Sqlite;
        // Group commit (ADR 0013): the factor use, the token, the proof, the rotated access
        // token and `fx` commit together in the next batch, or — the factor already used —
        // none of them does. The answer waits for that commit.
        self.grouped(
            Box::new(move |mut tx| {
                let g = g.clone();
                Box::pin(async move {
                    let r = write_grant(&mut tx, &g, session, sqlite).await;
                    (tx, r)
                })
            }),
            fx,
        )
        .await
    }

    async fn session_proof(&self, session: SessionId) -> StoreResult<Option<(String, Timestamp)>> {
        let row = sqlx::query("SELECT strength, verified_at FROM mfa_session_proofs WHERE session_id = $1")
            .bind(session.to_string())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        row.map(|r| Ok((text(&r, "strength")?, ts(&r, "verified_at")?))).transpose()
    }

    async fn webauthn_user_handle(&self, user: UserId, fresh: &[u8], now: Timestamp) -> StoreResult<Vec<u8>> {
        let mut w = self.begin().await?;
        sqlx::query(
            "INSERT INTO webauthn_user_handles (user_id, handle, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO NOTHING",
        )
        .bind(user.to_string())
        .bind(fresh.to_vec())
        .bind(now.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        let row = sqlx::query("SELECT handle FROM webauthn_user_handles WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_one(&mut *w.tx)
            .await
            .map_err(map_err)?;
        let handle = blob(&row, "handle")?;
        w.tx.commit().await.map_err(map_err)?;
        Ok(handle)
    }

    async fn create_webauthn_credential(&self, c: &WebAuthnCredentialRow, fx: SideEffects) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query(
            "INSERT INTO webauthn_credentials (id, user_id, name, kind, credential, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.id.clone())
        .bind(c.user_id.to_string())
        .bind(c.name.clone())
        .bind(c.kind.clone())
        .bind(c.credential.clone())
        .bind(c.created_at.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        self.finish(w, fx).await
    }

    async fn list_webauthn_credentials(&self, user: UserId) -> StoreResult<Vec<WebAuthnCredentialRow>> {
        let sql = format!("SELECT {CRED_COLS} FROM webauthn_credentials WHERE user_id = $1 ORDER BY created_at, id");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(user.to_string())
            .fetch_all(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        rows.iter().map(cred_row).collect()
    }

    async fn find_webauthn_credential(&self, id: &str) -> StoreResult<Option<WebAuthnCredentialRow>> {
        let sql = format!("SELECT {CRED_COLS} FROM webauthn_credentials WHERE id = $1");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id.to_owned())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        row.as_ref().map(cred_row).transpose()
    }

    async fn update_webauthn_credential(
        &self,
        id: &str,
        credential: &str,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query(
            "UPDATE webauthn_credentials SET credential = $1, last_used_at = $2 WHERE id = $3 AND flagged_at IS NULL",
        )
        .bind(credential.to_owned())
        .bind(now.as_millis())
        .bind(id.to_owned())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn flag_webauthn_credential(&self, id: &str, now: Timestamp, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query("UPDATE webauthn_credentials SET flagged_at = $1 WHERE id = $2 AND flagged_at IS NULL")
            .bind(now.as_millis())
            .bind(id.to_owned())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn delete_webauthn_credential(&self, user: UserId, id: &str, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query("DELETE FROM webauthn_credentials WHERE id = $1 AND user_id = $2")
            .bind(id.to_owned())
            .bind(user.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        if r.rows_affected() == 0 {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn begin_sms_number(&self, p: &PendingSmsNumber, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let user = p.user_id.to_string();
        // The portable `SELECT … FOR UPDATE`: concurrent sets for one account count in turn.
        sqlx::query("UPDATE mfa_sms_pending SET sends = sends WHERE user_id = $1")
            .bind(user.clone())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        let row = sqlx::query("SELECT sends, window_start FROM mfa_sms_pending WHERE user_id = $1")
            .bind(user.clone())
            .fetch_optional(&mut *w.tx)
            .await
            .map_err(map_err)?;
        let (sends, window_start) = match row {
            Some(r) if i64_col(&r, "window_start")? > p.window_start_after.as_millis() => {
                (i64_col(&r, "sends")? + 1, i64_col(&r, "window_start")?)
            }
            _ => (1, p.created_at.as_millis()),
        };
        if sends > i64::from(p.max_sends) {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO mfa_sms_pending (user_id, phone_sealed, code_hash, sends, window_start, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (user_id) DO UPDATE SET phone_sealed = excluded.phone_sealed, \
             code_hash = excluded.code_hash, sends = excluded.sends, window_start = excluded.window_start, \
             created_at = excluded.created_at, expires_at = excluded.expires_at",
        )
        .bind(user)
        .bind(p.phone_sealed.clone())
        .bind(p.code_hash.as_bytes().to_vec())
        .bind(sends)
        .bind(window_start)
        .bind(p.created_at.as_millis())
        .bind(p.expires_at.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn confirm_sms_number(
        &self,
        user: UserId,
        code_hash: TokenHash,
        now: Timestamp,
        fx: SideEffects,
    ) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        // One conditional UPDATE … RETURNING: a code confirms its number once, on any instance.
        // The row stays (expired) so that its send count still limits the next codes.
        let row = sqlx::query(
            "UPDATE mfa_sms_pending SET expires_at = 0 WHERE user_id = $1 AND code_hash = $2 AND expires_at > $3 \
             RETURNING phone_sealed",
        )
        .bind(user.to_string())
        .bind(code_hash.as_bytes().to_vec())
        .bind(now.as_millis())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?;
        let Some(row) = row else { return Ok(false) };
        sqlx::query(
            "INSERT INTO mfa_sms (user_id, phone_sealed, created_at) VALUES ($1, $2, $3) \
             ON CONFLICT (user_id) DO UPDATE SET phone_sealed = excluded.phone_sealed, created_at = excluded.created_at",
        )
        .bind(user.to_string())
        .bind(blob(&row, "phone_sealed")?)
        .bind(now.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn find_sms_number(&self, user: UserId) -> StoreResult<Option<Vec<u8>>> {
        let row = sqlx::query("SELECT phone_sealed FROM mfa_sms WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        row.as_ref().map(|r| blob(r, "phone_sealed")).transpose()
    }

    async fn delete_sms_number(&self, user: UserId, fx: SideEffects) -> StoreResult<bool> {
        let mut w = self.begin().await?;
        let r = sqlx::query("DELETE FROM mfa_sms WHERE user_id = $1")
            .bind(user.to_string())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        // The pending row also holds the window's send count (SMS pumping, R39): removing the
        // number must not unsend its codes, or set/remove/set would buy `max_sends` more per
        // window. So the row stays with its count, and its number and code are wiped and it is
        // expired (`expires_at = 0`, as after a confirmation): nothing can confirm it.
        let pending = sqlx::query(
            "UPDATE mfa_sms_pending SET phone_sealed = $2, code_hash = $2, expires_at = 0 \
             WHERE user_id = $1 AND expires_at <> 0",
        )
        .bind(user.to_string())
        .bind(Vec::<u8>::new())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        if r.rows_affected() + pending.rows_affected() == 0 {
            return Ok(false);
        }
        self.finish(w, fx).await?;
        Ok(true)
    }

    async fn revoke_mfa_tokens(&self, purpose: MfaTokenPurpose, binding: &str, now: Timestamp) -> StoreResult<u64> {
        let mut w = self.begin().await?;
        let r =
            sqlx::query("UPDATE mfa_tokens SET used_at = $1 WHERE purpose = $2 AND binding = $3 AND used_at IS NULL")
                .bind(now.as_millis())
                .bind(purpose.as_str())
                .bind(binding.to_owned())
                .execute(&mut *w.tx)
                .await
                .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)?;
        Ok(r.rows_affected())
    }

    async fn count_mfa_tokens(&self, purpose: MfaTokenPurpose, binding: &str) -> StoreResult<u64> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM mfa_tokens WHERE purpose = $1 AND binding = $2")
            .bind(purpose.as_str())
            .bind(binding.to_owned())
            .fetch_one(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        Ok(u64::try_from(i64_col(&row, "n")?).unwrap_or(0))
    }

    async fn create_ceremony(&self, c: &CeremonyRow) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query(
            "INSERT INTO webauthn_ceremonies (id, user_id, kind, state, detail, expires_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(c.id.clone())
        .bind(c.user_id.map(|u| u.to_string()))
        .bind(c.kind.clone())
        .bind(c.state.clone())
        .bind(c.detail.clone())
        .bind(c.expires_at.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        sqlx::query("DELETE FROM webauthn_ceremonies WHERE expires_at < $1")
            .bind(c.expires_at.as_millis() - 3_600_000)
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)
    }

    async fn take_ceremony(&self, id: &str, kind: &str, now: Timestamp) -> StoreResult<Option<CeremonyRow>> {
        let mut w = self.begin().await?;
        // DELETE … RETURNING: of two instances finishing the same ceremony, one gets the row.
        let row = sqlx::query(
            "DELETE FROM webauthn_ceremonies WHERE id = $1 AND kind = $2 \
             RETURNING id, user_id, kind, state, detail, expires_at",
        )
        .bind(id.to_owned())
        .bind(kind.to_owned())
        .fetch_optional(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)?;
        let Some(r) = row else { return Ok(None) };
        let c = CeremonyRow {
            id: text(&r, "id")?,
            user_id: opt_text(&r, "user_id")?
                .map(|u| UserId::parse(&u).ok_or_else(|| StoreError::Corrupt("ceremony user".into())))
                .transpose()?,
            kind: text(&r, "kind")?,
            state: text(&r, "state")?,
            detail: text(&r, "detail")?,
            expires_at: ts(&r, "expires_at")?,
        };
        Ok((now < c.expires_at).then_some(c))
    }
}

/// Marks `step` used for `user`; `Ok(false)` when it (or a later step) already was.
async fn consume_step(tx: &mut Tx, user: &str, step: i64) -> StoreResult<bool> {
    // Compare-and-set on the newest accepted step: only a step newer than every accepted one
    // moves it (RFC 6238 §5.2), so a step is single use. A second use of the same step — from
    // any instance, or earlier in the same batch — finds `last_step` already there and changes
    // nothing (F8): PostgreSQL re-checks the condition after the row lock, SQLite has one writer.
    let up = sqlx::query(
        "UPDATE mfa_totp SET last_step = $1 WHERE user_id = $2 AND confirmed_at IS NOT NULL \
         AND (last_step IS NULL OR last_step < $1)",
    )
    .bind(step)
    .bind(user.to_owned())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(up.rows_affected() == 1)
}

async fn insert_token(tx: &mut Tx, t: &MfaToken) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO mfa_tokens (hash, user_id, purpose, session_id, action, binding, factor, strength, detail, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(t.hash.as_bytes().to_vec())
    .bind(t.user_id.to_string())
    .bind(t.purpose.as_str())
    .bind(t.session_id.map(|s| s.to_string()).unwrap_or_default())
    .bind(t.action.clone())
    .bind(t.binding.clone())
    .bind(t.factor.clone())
    .bind(t.strength.clone())
    .bind(t.detail.clone())
    .bind(t.created_at.as_millis())
    .bind(t.expires_at.as_millis())
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    sweep_tokens(tx, t).await
}

/// Expired tokens are swept as new ones arrive, at one insert in 16 (chosen by the new token's
/// random hash): the table stays bounded without a sweep statement per insert.
async fn sweep_tokens(tx: &mut Tx, t: &MfaToken) -> StoreResult<()> {
    if t.hash.as_bytes()[0] & 0x0f == 0 {
        sqlx::query("DELETE FROM mfa_tokens WHERE expires_at < $1")
            .bind(t.created_at.as_millis() - 3_600_000)
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
    }
    Ok(())
}

/// Marks backup code `position` of `user` used; `Ok(false)` when it already was.
async fn consume_code(tx: &mut Tx, user: &str, position: u32, now: i64) -> StoreResult<bool> {
    let r = sqlx::query(
        "UPDATE mfa_backup_codes SET used_at = $1 WHERE user_id = $2 AND position = $3 AND used_at IS NULL",
    )
    .bind(now)
    .bind(user.to_owned())
    .bind(i64::from(position))
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(r.rows_affected() > 0)
}

/// Remembers that `session` proved `strength` at `at` (the newest proof replaces the last).
async fn note_proof(tx: &mut Tx, session: String, user: String, strength: String, at: i64) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO mfa_session_proofs (session_id, user_id, strength, verified_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (session_id) DO UPDATE SET strength = excluded.strength, verified_at = excluded.verified_at",
    )
    .bind(session)
    .bind(user)
    .bind(strength)
    .bind(at)
    .execute(&mut **tx)
    .await
    .map_err(map_err)?;
    Ok(())
}

/// What a grant writes once its factor use is accepted, as one SQLite request (ADR 0016):
/// the token, the session's proof and the rotated access token. The statements share one
/// argument list (`$N` are global across them); `$8` is the session, `$12` the step-up time.
const GRANT_TAIL_SQLITE: &str = "\
INSERT INTO mfa_tokens (hash, user_id, purpose, session_id, action, binding, factor, strength, detail, created_at, expires_at) \
 VALUES ($1, $2, $3, $8, $4, $5, $6, $7, $9, $12, $10);
INSERT INTO mfa_session_proofs (session_id, user_id, strength, verified_at) VALUES ($8, $2, $7, $12) \
 ON CONFLICT (session_id) DO UPDATE SET strength = excluded.strength, verified_at = excluded.verified_at;
DELETE FROM access_tokens WHERE session_id = $8;
INSERT INTO access_tokens (hash, session_id, created_at, expires_at) VALUES ($11, $8, $12, $13);";

/// The statements of [`MfaStore::grant_step_up`]; `Ok(false)` (the caller rolls back) when
/// the factor use is refused. On SQLite, everything after the factor use goes to the
/// connection's thread as one request instead of four (ADR 0016); PostgreSQL cannot prepare
/// several statements at once and runs them one by one.
async fn write_grant(tx: &mut Tx, g: &StepUpGrant, session: SessionId, sqlite: bool) -> StoreResult<bool> {
    let user = g.token.user_id.to_string();
    let now = g.token.created_at.as_millis();
    let fresh = match g.used {
        FactorUse::Nothing => true,
        FactorUse::TotpStep(step) => consume_step(tx, &user, step_i64(step)?).await?,
        FactorUse::BackupCode(position) => consume_code(tx, &user, position, now).await?,
    };
    if !fresh {
        return Ok(false);
    }
    if sqlite && let Some(access) = &g.access {
        let t = &g.token;
        sqlx::query(GRANT_TAIL_SQLITE)
            .bind(t.hash.as_bytes().to_vec())
            .bind(user)
            .bind(t.purpose.as_str())
            .bind(t.action.clone())
            .bind(t.binding.clone())
            .bind(t.factor.clone())
            .bind(t.strength.clone())
            .bind(session.to_string())
            .bind(t.detail.clone())
            .bind(t.expires_at.as_millis())
            .bind(access.hash.as_bytes().to_vec())
            .bind(now)
            .bind(access.expires_at.as_millis())
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
        sweep_tokens(tx, t).await?;
        return Ok(true);
    }
    insert_token(tx, &g.token).await?;
    note_proof(tx, session.to_string(), user, g.token.strength.clone(), now).await?;
    if let Some(access) = g.access {
        // R43: the session keeps its id (step-up tokens, bindings and the refresh family hang
        // on it); only the bearer value changes, and every earlier one stops working.
        sqlx::query("DELETE FROM access_tokens WHERE session_id = $1")
            .bind(session.to_string())
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
        sqlx::query("INSERT INTO access_tokens (hash, session_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(access.hash.as_bytes().to_vec())
            .bind(session.to_string())
            .bind(now)
            .bind(access.expires_at.as_millis())
            .execute(&mut **tx)
            .await
            .map_err(map_err)?;
    }
    Ok(true)
}
