//! Replays the traffic through the real engine in time order, the way the server would:
//! count the attempt, evaluate, act on the decision, learn only from trusted successes.

use std::collections::BTreeMap;

use gatehouse_core::risk::{
    ApiUse, Decision, GlobalStats, Observation, RiskAction, RiskEngine, UserProfile, VelocityTracker,
};

use crate::traffic::{Actor, AttackKind, Behaviour, StepKind, Traffic};

/// Counts for one attack kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttackCounts {
    /// Attack instances.
    pub instances: u32,
    /// Instances stopped by a step-up.
    pub stepped_up: u32,
    /// Instances stopped by a denial.
    pub denied: u32,
    /// Instances stopped by a freeze.
    pub frozen: u32,
    /// Of those stopped, how many at the first request (login or first call).
    pub at_first_request: u32,
}

impl AttackCounts {
    /// Instances stepped up or blocked before the sensitive action went through.
    pub fn caught(&self) -> u32 {
        self.stepped_up + self.denied + self.frozen
    }
}

/// Counts for one kind of legitimate behaviour.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NormalCounts {
    /// Sessions (or API batches) in the measured period.
    pub sessions: u32,
    /// Of those, how many met any step-up, denial or freeze.
    pub challenged: u32,
}

/// What the replay measured.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// Per attack.
    pub attacks: BTreeMap<AttackKind, AttackCounts>,
    /// Per behaviour.
    pub normal: BTreeMap<Behaviour, NormalCounts>,
    /// Requests evaluated by the engine.
    pub evaluations: u64,
    /// Requests in the traffic (evaluated or only counted).
    pub requests: u64,
    /// Largest serialised profile, bytes.
    pub max_profile_bytes: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct ChainState {
    stopped: bool,
    first: bool,
    worst: Option<Decision>,
    challenged_at_first: bool,
}

fn route_of(scope: gatehouse_core::apikey::Scope) -> &'static str {
    use gatehouse_core::apikey::Scope;
    match scope {
        Scope::ViewAssets => "GET /v1/accounts",
        Scope::ViewOrders => "GET /v1/orders",
        Scope::PlaceOrders => "POST /v1/orders",
        Scope::ViewWithdrawals => "GET /v1/withdraws",
        Scope::Withdraw => "POST /v1/withdraws/coin",
        Scope::ViewDeposits => "GET /v1/deposits",
        Scope::Deposit => "POST /v1/deposits/generate_coin_address",
    }
}

/// Replays `traffic` through `engine`.
pub fn replay(traffic: &Traffic, engine: &RiskEngine) -> Outcome {
    let trace = std::env::var_os("RISK_EVAL_TRACE").is_some();
    let mut profiles: Vec<UserProfile> = (0..traffic.users).map(|_| UserProfile::new()).collect();
    let mut stats = GlobalStats::new();
    let mut tracker = VelocityTracker::new(1 << 20);
    let mut state = vec![ChainState { first: true, ..ChainState::default() }; traffic.chains.len()];
    let mut out = Outcome::default();

    for step in &traffic.steps {
        out.requests += 1;
        let ci = step.chain as usize;
        let (Some(chain), Some(st)) = (traffic.chains.get(ci), state.get_mut(ci)) else {
            continue;
        };
        if st.stopped {
            continue;
        }
        let Some(uid) = traffic.user_ids.get(chain.user as usize) else {
            continue;
        };
        let real = (chain.user as usize) < traffic.users;
        let t = step.t;
        if step.kind == StepKind::LoginFail {
            tracker.record_login(uid, chain.ip, false, t);
            continue;
        }
        if !real {
            continue;
        }
        let mut obs = Observation::new(chain.ip);
        obs.geo = engine.geo_for(chain.ip);
        let action = match step.kind {
            StepKind::Login => {
                tracker.record_login(uid, chain.ip, true, t);
                RiskAction::Login
            }
            StepKind::Refresh => RiskAction::Session,
            StepKind::Sensitive => RiskAction::Sensitive,
            StepKind::ApiCall { scope, .. } => {
                if let Some(k) = &chain.key {
                    tracker.record_api_call(k, t);
                    obs.api = Some(ApiUse { key_id: k.clone(), scope, route: route_of(scope).to_owned() });
                }
                RiskAction::ApiKeyUse
            }
            StepKind::LoginFail => continue,
        };
        if action != RiskAction::ApiKeyUse {
            obs.device = chain.device;
            obs.ua_family = Some(chain.ua.to_owned());
        }
        if matches!(action, RiskAction::Session | RiskAction::Sensitive) {
            obs.session = chain.binding.clone();
        }
        obs.velocity = tracker.velocity(Some(uid), chain.ip, chain.key.as_deref(), t);
        let Some(profile) = profiles.get_mut(chain.user as usize) else {
            continue;
        };
        let a = engine.evaluate(profile, &stats, &obs, action, t);
        out.evaluations += 1;
        if trace {
            let miss = matches!(chain.actor, Actor::Attack(_)) && !a.decision.is_challenge();
            let fp = matches!(chain.actor, Actor::Normal(_)) && chain.measured && a.decision.is_challenge();
            if miss || fp {
                let rs: Vec<String> = a.reasons.iter().map(|r| format!("{:?}={:.2}", r.signal, r.weight)).collect();
                eprintln!(
                    "{} {:?} {:?} score={} {:?} [{}]",
                    if miss { "MISS" } else { "FP" },
                    chain.actor,
                    action,
                    a.score,
                    a.decision,
                    rs.join(" ")
                );
            }
        }
        let first = st.first;
        st.first = false;
        if a.decision.is_challenge() {
            st.worst = Some(st.worst.map_or(a.decision, |w| w.max(a.decision)));
            if first {
                st.challenged_at_first = true;
            }
        }
        match chain.actor {
            Actor::Normal(_) => {
                // The owner passes any step-up; a denial or freeze ends a web session. For an
                // API key the owner confirms the new network (or unfreezes) from the web UI.
                if matches!(a.decision, Decision::Deny | Decision::Freeze) && action != RiskAction::ApiKeyUse {
                    st.stopped = true;
                } else if matches!(action, RiskAction::Login | RiskAction::ApiKeyUse) {
                    profile.learn(&obs, t);
                    if action == RiskAction::Login {
                        stats.learn(&obs, t);
                    }
                }
            }
            Actor::Attack(_) | Actor::StuffingNoise => {
                if a.decision.is_challenge() {
                    // The attacker cannot pass a step-up: the attack ends here, caught.
                    st.stopped = true;
                } else {
                    // Undetected: the server cannot tell and learns the attacker's values.
                    if matches!(action, RiskAction::Login | RiskAction::ApiKeyUse) {
                        profile.learn(&obs, t);
                        if action == RiskAction::Login {
                            stats.learn(&obs, t);
                        }
                    }
                    let goal = match step.kind {
                        StepKind::Sensitive => true,
                        StepKind::ApiCall { sensitive, .. } => sensitive,
                        _ => false,
                    };
                    if goal {
                        st.stopped = true; // the sensitive action went through: missed
                    }
                }
            }
        }
    }

    for (chain, st) in traffic.chains.iter().zip(&state) {
        match chain.actor {
            Actor::Normal(b) if chain.measured => {
                let c = out.normal.entry(b).or_default();
                c.sessions += 1;
                c.challenged += u32::from(st.worst.is_some());
            }
            Actor::Attack(k) => {
                let c = out.attacks.entry(k).or_default();
                c.instances += 1;
                match st.worst {
                    Some(Decision::StepUp) => c.stepped_up += 1,
                    Some(Decision::Deny) => c.denied += 1,
                    Some(Decision::Freeze) => c.frozen += 1,
                    _ => {}
                }
                c.at_first_request += u32::from(st.challenged_at_first);
            }
            _ => {}
        }
    }
    out.max_profile_bytes =
        profiles.iter().filter_map(|p| serde_json::to_vec(p).ok()).map(|v| v.len()).max().unwrap_or(0);
    out
}
