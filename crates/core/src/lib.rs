//! # gatehouse-core
//!
//! All of gatehouse's security logic, with no I/O of its own: no HTTP, no database, no clock
//! and no randomness except what the caller passes in. Storage is reached through the traits
//! in [`store`], time through [`clock::Clock`], randomness through [`rng::SecureRng`].
//!
//! That shape is the threat model's first line: every rule (a token's lifetime, a throttling
//! delay, a TOTP step, a replay window) is a function of its inputs and can be tested at an
//! exact instant, and every decision that cannot be made (a store that does not answer) is a
//! denial, never an allowance.
//!
//! Modules are concerns: [`account`], [`session`], [`throttle`], [`audit`], [`password`],
//! [`crypto`], [`secret`], [`risk`], [`pop`] (DPoP and mTLS-bound tokens).

pub mod account;
pub mod apikey;
pub mod audit;
pub mod clock;
pub mod crypto;
pub mod device;
pub mod headers;
// friction (issue 5): withdrawals, holds, settings lock, recovery
pub mod friction;
pub mod friction_store;
pub mod recovery;
pub mod withdrawal;
// end friction
pub mod ids;
pub mod mfa;
pub mod password;
pub mod phishing;
pub mod pop;
pub mod ratelimit;
pub mod replay;
pub mod risk;
pub mod rng;
pub mod secret;
pub mod session;
pub mod signing;
pub mod stepup;
pub mod store;
pub mod throttle;
pub mod upstream;

// fuzzing (ADR 0010): invariant-checking harnesses for `fuzz/`, replayed over the seed corpus
// by the unit tests.
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub mod fuzzing;
