//! Risk profiles and population statistics, as JSON the risk engine writes.

use async_trait::async_trait;
use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::UserId;
use gatehouse_core::store::{RiskStore, StoreResult};

use super::rows;
use super::{SqlStore, map_err};

#[async_trait]
impl RiskStore for SqlStore {
    async fn load_risk_profile(&self, user: UserId) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT profile FROM risk_profiles WHERE user_id = $1")
            .bind(user.to_string())
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        row.map(|r| rows::text(&r, "profile")).transpose()
    }

    async fn save_risk_profiles(&self, profiles: &[(UserId, String)], now: Timestamp) -> StoreResult<()> {
        if profiles.is_empty() {
            return Ok(());
        }
        let mut w = self.begin().await?;
        for (user, json) in profiles {
            sqlx::query(
                "INSERT INTO risk_profiles (user_id, profile, updated_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (user_id) DO UPDATE SET profile = $2, updated_at = $3",
            )
            .bind(user.to_string())
            .bind(json.clone())
            .bind(now.as_millis())
            .execute(&mut *w.tx)
            .await
            .map_err(map_err)?;
        }
        w.tx.commit().await.map_err(map_err)
    }

    async fn load_risk_global(&self) -> StoreResult<Option<String>> {
        let row = sqlx::query("SELECT stats FROM risk_global WHERE id = 1")
            .fetch_optional(&mut *self.reader().await?)
            .await
            .map_err(map_err)?;
        row.map(|r| rows::text(&r, "stats")).transpose()
    }

    async fn save_risk_global(&self, stats: &str, now: Timestamp) -> StoreResult<()> {
        let mut w = self.begin().await?;
        sqlx::query(
            "INSERT INTO risk_global (id, stats, updated_at) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET stats = $1, updated_at = $2",
        )
        .bind(stats.to_owned())
        .bind(now.as_millis())
        .execute(&mut *w.tx)
        .await
        .map_err(map_err)?;
        w.tx.commit().await.map_err(map_err)
    }
}
