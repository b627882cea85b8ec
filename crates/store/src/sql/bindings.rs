//! Token bindings (issue 9): the `cnf` of a sender-constrained session, written with the
//! session in one transaction (RFC 9449 §6.1, RFC 8705 §3.1).

use async_trait::async_trait;
use gatehouse_core::ids::SessionId;
use gatehouse_core::pop::{CertBinding, Confirmation, Jkt};
use gatehouse_core::secret::TokenHash;
use gatehouse_core::store::{NewSession, RefreshBinding, SideEffects, StoreError, StoreResult, TokenBindingStore};
use sqlx::any::AnyRow;

use super::rows;
use super::sessions::insert_session;
use super::{SqlStore, map_err};

/// The binding columns of a row; a stored value of the wrong shape is corruption, never
/// "unbound" (fail closed).
pub(crate) fn confirmation(row: &AnyRow) -> StoreResult<Confirmation> {
    let jkt = rows::opt_text(row, "jkt")?
        .map(|s| Jkt::parse(&s).ok_or_else(|| StoreError::Corrupt("token binding jkt".into())))
        .transpose()?;
    let x5t_s256 = rows::opt_text(row, "x5t_s256")?
        .map(|s| CertBinding::parse(&s).ok_or_else(|| StoreError::Corrupt("token binding x5t#S256".into())))
        .transpose()?;
    let cnf = Confirmation { jkt, x5t_s256 };
    if !cnf.is_sender_constrained() {
        return Err(StoreError::Corrupt("empty token binding".into()));
    }
    Ok(cnf)
}

#[async_trait]
impl TokenBindingStore for SqlStore {
    async fn create_bound_session(
        &self,
        new: &NewSession,
        cnf: &Confirmation,
        reset_keys: &[String],
        fx: SideEffects,
    ) -> StoreResult<()> {
        if !cnf.is_sender_constrained() {
            return Err(StoreError::Other("a bound session needs a jkt or an x5t#S256".into()));
        }
        let mut w = self.begin().await?;
        insert_session(&mut w.tx, new, reset_keys).await?;
        sqlx::query("INSERT INTO token_bindings (session_id, jkt, x5t_s256, created_at) VALUES ($1, $2, $3, $4)")
            .bind(new.session.id.to_string())
            .bind(cnf.jkt.as_ref().map(|j| j.as_str().to_owned()))
            .bind(cnf.x5t_s256.as_ref().map(|c| c.as_str().to_owned()))
            .bind(new.session.created_at.as_millis())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        self.finish(w, fx).await
    }

    async fn find_binding(&self, session: SessionId) -> StoreResult<Option<Confirmation>> {
        let row = sqlx::query("SELECT jkt, x5t_s256 FROM token_bindings WHERE session_id = $1")
            .bind(session.to_string())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        row.map(|r| confirmation(&r)).transpose()
    }

    async fn find_refresh_binding(&self, refresh: TokenHash) -> StoreResult<Option<RefreshBinding>> {
        let row = sqlx::query(
            "SELECT r.hash AS r_hash, s.id AS s_id, s.user_id AS s_user, b.jkt AS jkt, b.x5t_s256 AS x5t_s256 \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             JOIN token_bindings b ON b.session_id = s.id WHERE r.hash = $1",
        )
        .bind(refresh.as_bytes().to_vec())
        .fetch_optional(&mut *self.reader().await?)
        .await
        .map_err(map_err)?;
        let Some(row) = row else { return Ok(None) };
        // Looked up by hash; still compared in constant time (R57).
        if !TokenHash::from_bytes(rows::hash32(&row, "r_hash")?).ct_eq(&refresh) {
            return Ok(None);
        }
        Ok(Some(RefreshBinding {
            session_id: SessionId::parse(&rows::text(&row, "s_id")?)
                .ok_or_else(|| StoreError::Corrupt("binding session id".into()))?,
            user_id: rows::user_id(&row, "s_user")?,
            cnf: confirmation(&row)?,
        }))
    }
}
