//! Liveness and readiness probes.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use serde_json::json;

use crate::state::AppState;

/// `GET /healthz`: the process is up.
pub async fn healthz() -> impl IntoResponse {
    Json(json!({ "status": "ok" }))
}

/// Largest clock difference with the database server before the instance reports unready
/// (F5): nonce retention and token expiry assume instances agree on the time.
pub const MAX_CLOCK_SKEW_MS: i64 = 1000;

/// `GET /readyz`: ready only when the database (and Redis, when configured) answers within a
/// second and this instance's clock is within 1 s of the database server's. A load balancer
/// takes an unready instance out of rotation.
pub async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let db = matches!(tokio::time::timeout(Duration::from_secs(1), state.store.ping()).await, Ok(Ok(())));
    let skew_ms = match tokio::time::timeout(Duration::from_secs(1), state.store.db_time()).await {
        Ok(Ok(Some(db_now))) => {
            // Half the round trip is the best estimate of when the database read its clock.
            Some(state.clock.now().since(db_now).as_millis())
        }
        _ => None,
    };
    let clock_ok = skew_ms.is_none_or(|s| s.abs() <= MAX_CLOCK_SKEW_MS);
    let redis = match &state.redis {
        None => None,
        Some(r) => Some(matches!(tokio::time::timeout(Duration::from_secs(1), r.ping()).await, Ok(Ok(())))),
    };
    let ready = db && redis.unwrap_or(true) && clock_ok;
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (
        status,
        Json(json!({
            "status": if ready { "ready" } else { "unavailable" },
            "database": if db { "ok" } else { "unavailable" },
            "redis": match redis { None => "disabled", Some(true) => "ok", Some(false) => "unavailable" },
            "clock_skew_ms": skew_ms,
            "clock": if clock_ok { "ok" } else { "skewed" },
        })),
    )
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    let mail = state.store.pending_mail().await.ok().map(|n| n as f64).unwrap_or(-1.0);
    let hooks = state.store.pending_webhooks().await.ok().map(|n| n as f64).unwrap_or(-1.0);
    let extra = [
        (
            "gatehouse_password_hashes_total",
            "counter",
            "Argon2 operations started (hash or verify).",
            state.hash_pool.hashes() as f64,
        ),
        (
            "gatehouse_password_hash_shed_total",
            "counter",
            "Requests refused because the hashing pool was full.",
            state.hash_pool.shed() as f64,
        ),
        ("gatehouse_mail_outbox_pending", "gauge", "Messages waiting for delivery (-1: store unavailable).", mail),
        ("gatehouse_webhook_outbox_pending", "gauge", "Webhooks waiting for delivery (-1: store unavailable).", hooks),
    ];
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render(&extra))
}
