//! The API-key usage log (R72): per key, last use (time, IP, user agent) and counts per route
//! and outcome, accumulated in memory and flushed in batches so the request path never waits
//! for a database write. Denials are also audited in aggregated events (one per key, route and
//! reason per flush), which bounds audit writes under a flood of bad signatures while still
//! recording every denial with its count.

use std::collections::HashMap;
use std::sync::Mutex;

use gatehouse_core::apikey::ApiKeyId;
use gatehouse_core::audit::{AuditEvent, EventKind, Outcome};
use gatehouse_core::clock::Timestamp;
use gatehouse_core::ids::UserId;
use gatehouse_core::store::{KeyLastUse, KeyUsage};

#[derive(Debug, Default)]
struct Counter {
    count: u64,
    last_at: Option<Timestamp>,
    owner: Option<UserId>,
    ips: Vec<String>,
}

/// What one flush hands to the store.
#[derive(Debug, Default)]
pub struct Flush {
    /// Usage counts.
    pub usage: Vec<KeyUsage>,
    /// Last successful uses.
    pub last: Vec<KeyLastUse>,
    /// Aggregated denial events.
    pub events: Vec<AuditEvent>,
    /// Successful uses per key with their IPs, oldest first (for new-network alerts).
    pub ips: Vec<(ApiKeyId, UserId, String)>,
    /// Bad-signature counts per key in this window.
    pub bad_signatures: Vec<(ApiKeyId, UserId, u64)>,
    /// Scope violations per key in this window.
    pub scope_violations: Vec<(ApiKeyId, UserId, String)>,
}

/// The facts of one request with a known key.
#[derive(Debug, Clone, Copy)]
pub struct Use<'a> {
    /// The key.
    pub key: ApiKeyId,
    /// Its owner.
    pub owner: UserId,
    /// Route label.
    pub route: &'a str,
    /// When.
    pub now: Timestamp,
    /// Client IP.
    pub ip: &'a str,
    /// User agent.
    pub user_agent: Option<&'a str>,
}

/// The in-memory accumulator.
#[derive(Debug, Default)]
pub struct UsageLog {
    counts: Mutex<HashMap<(ApiKeyId, String, &'static str), Counter>>,
    last: Mutex<HashMap<ApiKeyId, (UserId, KeyLastUse)>>,
    /// First successful use of each (key, IP) in this window, to order new-network checks.
    first_ok: Mutex<HashMap<(ApiKeyId, String), (UserId, Timestamp)>>,
}

impl UsageLog {
    /// Records one request outcome (`ok` or a denial reason) for a known key.
    pub fn record(&self, u: &Use<'_>, outcome: &'static str) {
        let Use { key, owner, route, now, ip, user_agent } = *u;
        if let Ok(mut m) = self.counts.lock() {
            let c = m.entry((key, route.to_owned(), outcome)).or_default();
            c.count += 1;
            c.last_at = Some(now);
            c.owner = Some(owner);
            if c.ips.len() < 8 && !c.ips.iter().any(|i| i == ip) {
                c.ips.push(ip.to_owned());
            }
        }
        if outcome == "ok"
            && let Ok(mut m) = self.first_ok.lock()
            && m.len() < 100_000
        {
            m.entry((key, ip.to_owned())).or_insert((owner, now));
        }
        if outcome == "ok"
            && let Ok(mut l) = self.last.lock()
        {
            let ua = user_agent.map(|u| u.chars().filter(|c| !c.is_control()).take(256).collect());
            l.insert(key, (owner, KeyLastUse { key_id: key, at: now, ip: Some(ip.to_owned()), user_agent: ua }));
        }
    }

    /// Takes everything accumulated so far.
    pub fn drain(&self) -> Flush {
        let counts = self.counts.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default();
        let last = self.last.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default();
        let first_ok = self.first_ok.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default();
        let mut f = Flush::default();
        let mut ips: Vec<_> = first_ok.into_iter().collect();
        ips.sort_by_key(|((k, ip), (_, at))| (*at, *k, ip.clone()));
        f.ips = ips.into_iter().map(|((k, ip), (owner, _))| (k, owner, ip)).collect();
        for ((key, route, outcome), c) in counts {
            let (Some(at), Some(owner)) = (c.last_at, c.owner) else { continue };
            f.usage.push(KeyUsage {
                key_id: key,
                route: route.clone(),
                outcome: outcome.to_owned(),
                count: c.count,
                last_at: at,
            });
            if outcome == "ok" {
                continue;
            }
            if outcome == "bad_signature" {
                f.bad_signatures.push((key, owner, c.count));
            }
            if outcome == "out_of_scope" {
                f.scope_violations.push((key, owner, route.clone()));
            }
            let mut e = AuditEvent::new(EventKind::ApiKeyDenied, Outcome::Denied).about(owner);
            e.ip = c.ips.first().cloned();
            f.events.push(
                e.with("key", key.to_string())
                    .with("route", route)
                    .with("reason", outcome)
                    .with("count", c.count)
                    .with("ips", c.ips)
                    .with("last_at", at.to_rfc3339()),
            );
        }
        f.last = last.into_values().map(|(_, l)| l).collect();
        f
    }
}
