//! # risk-eval
//!
//! A labelled synthetic-traffic harness for gatehouse's behavioural risk engine
//! ([`gatehouse_core::risk`]). It generates users with realistic habits and four attacks
//! ([`traffic`]), replays every request through the real engine in time order — profiles learn
//! from the owners' trusted successes as they go, after a warm-up — and reports the share of
//! attacks stepped up or blocked before their sensitive action and the share of legitimate
//! sessions challenged ([`report`]).
//!
//! Targets: at least 95 % of attacks caught, at most 2 % of legitimate sessions challenged.
//! The generator's assumptions and limits are in `tools/risk-eval/README.md`.

pub mod rand;
pub mod replay;
pub mod report;
pub mod traffic;
pub mod world;

use std::sync::Arc;

use gatehouse_core::risk::{RiskEngine, RiskError, RiskPolicy};

/// One run's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Seed of the generator.
    pub seed: u64,
    /// Number of accounts.
    pub users: usize,
    /// Simulated days, warm-up included.
    pub days: i64,
    /// Days of history before anything is measured.
    pub warmup_days: i64,
}

impl Default for Config {
    fn default() -> Self {
        Self { seed: 1, users: 2000, days: 60, warmup_days: 30 }
    }
}

/// Generates the traffic for `cfg` and replays it through an engine with `policy`.
pub fn run(cfg: &Config, policy: RiskPolicy) -> Result<report::Report, RiskError> {
    let world = world::World::new();
    let traffic = traffic::generate(cfg, &world);
    let engine = RiskEngine::new(policy, Vec::new(), Some(Arc::new(world::WorldGeo(world))))?;
    let outcome = replay::replay(&traffic, &engine);
    Ok(report::Report { config: *cfg, outcome, users: traffic.users, chains: traffic.chains.len() })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic)] // tests fail loudly
mod tests {
    use super::*;

    #[test]
    fn small_run_meets_the_targets_and_is_deterministic() {
        let cfg = Config { seed: 1, users: 200, ..Config::default() };
        let a = run(&cfg, RiskPolicy::default()).unwrap();
        let md = a.markdown();
        println!("{md}");
        assert!(a.detection_rate() >= 0.95, "detection {:.3}\n{md}", a.detection_rate());
        assert!(a.false_challenge_rate() <= 0.02, "false challenges {:.4}\n{md}", a.false_challenge_rate());
        assert!(a.outcome.attacks.values().map(|c| c.instances).sum::<u32>() >= 20, "{md}");
        let b = run(&cfg, RiskPolicy::default()).unwrap();
        assert_eq!(b.markdown(), md, "same seed, same report");
    }
}
