//! The periodic flush of the usage log, and the alerts it raises (R72, issue 3 §9): a key used
//! from a network it had not been used from, a burst of bad signatures, scope violations. Each
//! alert is an audit event, an email to the owner and a signed webhook to the security team,
//! committed together.

use std::collections::BTreeSet;
use std::time::Duration;

use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::risk::features::network_prefix;
use gatehouse_core::store::{SideEffects, StoreError};
use serde_json::json;

use crate::mail::templates;
use crate::state::AppState;

/// Bad signatures per key within one flush window that raise an alert.
pub const BAD_SIGNATURE_ALERT: u64 = 10;

/// Flushes once; returns how many alerts were raised.
pub async fn flush(state: &AppState) -> Result<usize, StoreError> {
    let Some(gw) = state.gateway.as_ref() else { return Ok(0) };
    let risk_alerts = gw.risk_alerts.lock().map(|mut q| std::mem::take(&mut *q)).unwrap_or_default();
    let mut alerts = handle_risk(state, risk_alerts).await?;
    if let Some(r) = &state.risk {
        r.flush(state.store.as_ref(), state.clock.now()).await?;
    }
    let f = gw.usage.drain();
    if f.usage.is_empty() && f.last.is_empty() {
        return Ok(alerts);
    }
    let now = state.clock.now();
    state.store.flush_key_usage(&f.usage, &f.last).await?;
    // In the order they were first seen, once each: the first network a key ever uses is not
    // "new", the next ones are.
    let mut networks: Vec<_> = Vec::new();
    for (k, _, ip) in &f.ips {
        if let Ok(ip) = ip.parse() {
            let n = (*k, network_prefix(ip));
            if !networks.contains(&n) {
                networks.push(n);
            }
        }
    }
    let fresh = state.store.note_key_networks(&networks, now).await?;
    let mut fx = SideEffects { events: f.events, ..Default::default() };
    for (key_id, network) in fresh {
        let Some(owner) = f.ips.iter().find(|(k, _, _)| *k == key_id).map(|(_, o, _)| *o) else { continue };
        let ip = f
            .ips
            .iter()
            .find(|(k, _, ip)| *k == key_id && ip.parse().map(network_prefix).ok().as_ref() == Some(&network));
        let ip = ip.map(|(_, _, ip)| ip.clone()).unwrap_or_default();
        alerts += 1;
        fx.events.push(
            AuditEvent::new(EventKind::ApiKeyNewNetwork, Outcome::Success)
                .about(owner)
                .with("key", key_id.to_string())
                .with("network", network.clone())
                .with("ip", ip.clone()),
        );
        alert(state, &mut fx, owner, key_id, "api_key.new_network", json!({ "network": network, "ip": ip }), |label| {
            templates::api_key_new_network(label, &ip)
        })
        .await?;
    }
    for (key_id, owner, count) in f.bad_signatures {
        if count >= BAD_SIGNATURE_ALERT {
            alerts += 1;
            alert(state, &mut fx, owner, key_id, "api_key.bad_signatures", json!({ "count": count }), |label| {
                templates::api_key_abuse(label, &format!("{count} requests with an invalid signature"))
            })
            .await?;
        }
    }
    let mut scope_keys = BTreeSet::new();
    for (key_id, owner, route) in f.scope_violations {
        if scope_keys.insert(key_id) {
            alerts += 1;
            alert(state, &mut fx, owner, key_id, "api_key.scope_violation", json!({ "route": route }), |label| {
                templates::api_key_abuse(label, &format!("calls to {route}, which the key may not use"))
            })
            .await?;
        }
    }
    state.store.record(fx).await?;
    state.wake_mailer();
    state.wake_webhooks();
    Ok(alerts)
}

/// Audits, notifies and (for `freeze`) acts on the risk challenges of API-key requests; one
/// notification per key and decision per flush window.
async fn handle_risk(state: &AppState, alerts: Vec<crate::gateway::RiskAlert>) -> Result<usize, StoreError> {
    use gatehouse_core::risk::{Decision, RiskAction};
    let mut seen = BTreeSet::new();
    let mut n = 0;
    for a in alerts {
        let mut fx = SideEffects::event(
            crate::risk::decision_event(a.owner, RiskAction::ApiKeyUse, &a.assessment, a.ip)
                .with("key", a.key.to_string())
                .with("route", a.route.clone()),
        );
        if !seen.insert((a.key, a.assessment.decision)) {
            state.store.record(fx).await?;
            continue;
        }
        n += 1;
        let what = format!("a request with your API key to {} from {}", a.route, a.ip);
        crate::risk::notify_challenge(state, &mut fx, a.owner, RiskAction::ApiKeyUse, &a.assessment, &what).await?;
        if a.assessment.decision == Decision::Freeze {
            let e = AuditEvent::new(EventKind::AccountFrozen, Outcome::Success)
                .about(a.owner)
                .with("by", "risk_engine")
                .with("score", a.assessment.score);
            fx.events.push(e);
            if !state.store.freeze_account(a.owner, "risk_engine", state.clock.now(), fx.clone()).await? {
                state.store.record(fx).await?;
            }
            for k in state.store.list_api_keys(a.owner).await? {
                if let Some(gw) = &state.gateway {
                    gw.keys.invalidate(&k.id);
                }
            }
        } else {
            state.store.record(fx).await?;
        }
    }
    if n > 0 {
        state.wake_mailer();
        state.wake_webhooks();
    }
    Ok(n)
}

async fn alert(
    state: &AppState,
    fx: &mut SideEffects,
    owner: gatehouse_core::ids::UserId,
    key_id: gatehouse_core::apikey::ApiKeyId,
    topic: &str,
    extra: serde_json::Value,
    mail: impl FnOnce(&str) -> crate::mail::MailContent,
) -> Result<(), StoreError> {
    let label = state
        .store
        .find_api_key(key_id)
        .await?
        .map(|k| k.key.label.as_str().to_owned())
        .unwrap_or_else(|| "API key".into());
    if let Some(account) = state.store.find_account(owner).await?
        && let Ok(m) = state.mail(account.email.as_str(), &mail(&label))
    {
        fx.mails.push(m);
    }
    let mut body = json!({ "topic": topic, "user": owner.to_string(), "key": key_id.to_string(), "at": state.clock.now().to_rfc3339() });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    if let Some(h) = state.webhook(topic, body) {
        fx.webhooks.push(h);
    }
    Ok(())
}

/// The reminder stage due for a key expiring in `left`: 1 within 30 days, 2 within 7, 3
/// within 1.
pub fn reminder_stage(left: gatehouse_core::clock::Span) -> u8 {
    use gatehouse_core::clock::Span;
    if left <= Span::days(1) {
        3
    } else if left <= Span::days(7) {
        2
    } else if left <= Span::days(30) {
        1
    } else {
        0
    }
}

/// Sends expiry reminders that are due; returns how many.
pub async fn remind_expiring(state: &AppState) -> Result<usize, StoreError> {
    use gatehouse_core::clock::Span;
    let now = state.clock.now();
    let mut sent = 0;
    for (key, stage) in state.store.keys_expiring_before(now.plus(Span::days(30)), 500).await? {
        let due = reminder_stage(key.expires_at.since(now));
        if due <= stage || key.expires_at <= now {
            continue;
        }
        let Some(account) = state.store.find_account(key.owner).await? else { continue };
        let Ok(mail) = state.mail(
            account.email.as_str(),
            &templates::api_key_expiring(key.label.as_str(), &key.expires_at.to_rfc3339()),
        ) else {
            continue;
        };
        let e = AuditEvent::new(EventKind::ApiKeyExpiryReminder, Outcome::Success)
            .about(key.owner)
            .with("key", key.id.to_string())
            .with("expires_at", key.expires_at.to_rfc3339());
        if state.store.mark_key_reminded(key.id, due, SideEffects::event(e).mail(mail)).await? {
            sent += 1;
        }
    }
    if sent > 0 {
        state.wake_mailer();
    }
    Ok(sent)
}

/// Flushes every `period` (and checks expiry reminders every `remind_every`) until the process
/// ends.
pub async fn run(state: AppState, period: Duration, remind_every: Duration) {
    let mut last_reminder: Option<std::time::Instant> = None;
    loop {
        tokio::time::sleep(period).await;
        if let Err(e) = flush(&state).await {
            tracing::warn!(error = %e, "API-key usage flush failed; counts kept for the next round");
        }
        if last_reminder.is_none_or(|t| t.elapsed() >= remind_every) {
            last_reminder = Some(std::time::Instant::now());
            if let Err(e) = remind_expiring(&state).await {
                tracing::warn!(error = %e, "API-key expiry reminders failed; will retry");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::clock::Span;

    #[test]
    fn reminder_stages() {
        assert_eq!(reminder_stage(Span::days(31)), 0);
        assert_eq!(reminder_stage(Span::days(30)), 1);
        assert_eq!(reminder_stage(Span::days(7)), 2);
        assert_eq!(reminder_stage(Span::hours(23)), 3);
    }
}
