//! The markdown report.

use std::fmt::Write as _;

use crate::Config;
use crate::replay::Outcome;
use crate::traffic::{AttackKind, Behaviour};

/// A finished run.
#[derive(Debug, Clone)]
pub struct Report {
    /// The configuration.
    pub config: Config,
    /// The measurements.
    pub outcome: Outcome,
    /// Accounts.
    pub users: usize,
    /// Chains generated (sessions, API batches, attacks, failed stuffing attempts).
    pub chains: usize,
}

fn pct(n: u32, d: u32) -> String {
    if d == 0 { "–".to_owned() } else { format!("{:.2} %", 100.0 * f64::from(n) / f64::from(d)) }
}

impl Report {
    /// Attacks stepped up or blocked before the sensitive action, over all attacks.
    pub fn detection_rate(&self) -> f64 {
        let (c, n) = self
            .outcome
            .attacks
            .iter()
            .filter(|(k, _)| k.in_model())
            .fold((0, 0), |(c, n), (_, a)| (c + a.caught(), n + a.instances));
        if n == 0 { 0.0 } else { f64::from(c) / f64::from(n) }
    }

    /// Legitimate sessions and API batches challenged, over all of them.
    pub fn false_challenge_rate(&self) -> f64 {
        let (c, n) = self.outcome.normal.values().fold((0, 0), |(c, n), s| (c + s.challenged, n + s.sessions));
        if n == 0 { 0.0 } else { f64::from(c) / f64::from(n) }
    }

    /// The command that reproduces this report.
    pub fn command(&self) -> String {
        let c = &self.config;
        format!(
            "cargo run --release -p risk-eval -- --seed {} --users {} --days {} --warmup-days {}",
            c.seed, c.users, c.days, c.warmup_days
        )
    }

    /// The report as markdown.
    pub fn markdown(&self) -> String {
        let o = &self.outcome;
        let mut s = String::new();
        let c = &self.config;
        let _ = writeln!(s, "## Risk engine on synthetic traffic (seed {})\n", c.seed);
        let _ = writeln!(s, "Command: `{}`\n", self.command());
        let (web, api): (Vec<_>, Vec<_>) = o.normal.iter().partition(|(b, _)| !b.is_api());
        let web_n: u32 = web.iter().map(|(_, n)| n.sessions).sum();
        let api_n: u32 = api.iter().map(|(_, n)| n.sessions).sum();
        let attacks_n: u32 = o.attacks.iter().filter(|(k, _)| k.in_model()).map(|(_, a)| a.instances).sum();
        let _ = writeln!(
            s,
            "{} users, {} days ({} warm-up, {} measured); {} measured legitimate sessions and {} API batches; \
             {} attack instances; {} requests ({} evaluated by the engine); largest profile {} bytes of JSON.\n",
            self.users,
            c.days,
            c.warmup_days,
            c.days - c.warmup_days,
            web_n,
            api_n,
            attacks_n,
            o.requests,
            o.evaluations,
            o.max_profile_bytes
        );
        let _ = writeln!(s, "### Attacks stepped up or blocked before the sensitive action (target ≥ 95 %)\n");
        let _ = writeln!(s, "| attack | instances | step-up | deny | freeze | caught at first request | caught |");
        let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|");
        let mut tot = crate::replay::AttackCounts::default();
        for k in AttackKind::ALL {
            let a = o.attacks.get(&k).copied().unwrap_or_default();
            tot.instances += a.instances;
            tot.stepped_up += a.stepped_up;
            tot.denied += a.denied;
            tot.frozen += a.frozen;
            tot.at_first_request += a.at_first_request;
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {} | **{}** |",
                k.label(),
                a.instances,
                a.stepped_up,
                a.denied,
                a.frozen,
                a.at_first_request,
                pct(a.caught(), a.instances)
            );
        }
        let _ = writeln!(
            s,
            "| **all attacks** | {} | {} | {} | {} | {} | **{}** |\n",
            tot.instances,
            tot.stepped_up,
            tot.denied,
            tot.frozen,
            tot.at_first_request,
            pct(tot.caught(), tot.instances)
        );
        let k = AttackKind::ClonedSessionReplay;
        let a = o.attacks.get(&k).copied().unwrap_or_default();
        let _ = writeln!(
            s,
            "Outside the threat model and the total (a limit, shown so it is not hidden): {} — {} instances, \
             {} caught ({}).\n",
            k.label(),
            a.instances,
            a.caught(),
            pct(a.caught(), a.instances)
        );
        let _ = writeln!(s, "### Legitimate sessions challenged (target ≤ 2 %)\n");
        let _ = writeln!(s, "| behaviour | sessions | challenged | rate |");
        let _ = writeln!(s, "|---|---:|---:|---:|");
        let (mut wn, mut wc, mut an, mut ac) = (0, 0, 0, 0);
        for b in Behaviour::ALL {
            let n = o.normal.get(&b).copied().unwrap_or_default();
            if b.is_api() {
                an += n.sessions;
                ac += n.challenged;
            } else {
                wn += n.sessions;
                wc += n.challenged;
            }
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} |",
                b.label(),
                n.sessions,
                n.challenged,
                pct(n.challenged, n.sessions)
            );
        }
        let _ = writeln!(s, "| **web/app sessions** | {wn} | {wc} | **{}** |", pct(wc, wn));
        let _ = writeln!(s, "| **API batches** | {an} | {ac} | **{}** |", pct(ac, an));
        let _ = writeln!(s, "| **all legitimate** | {} | {} | **{}** |", wn + an, wc + ac, pct(wc + ac, wn + an));
        s
    }
}
