//! # gatehouse-server
//!
//! The HTTP face of gatehouse: its own JSON API and pages under `/_gh`, health probes, and
//! (in later modules) the verifying reverse proxy and forward-auth endpoint; plus
//! configuration and the operator CLI. All security decisions are delegated to
//! `gatehouse-core`; this crate only moves bytes, reads the clock once per request and
//! renders errors.

#![recursion_limit = "512"]

pub mod apikeys;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod drain;
pub mod error;
// friction (issue 5)
pub mod friction;
// end friction
pub mod gateway;
pub mod hashing;
pub mod http;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod mfa;
pub mod notify;
pub mod pages;
pub mod pop;
pub mod risk;
pub mod routes;
pub mod sharded;
pub mod state;
pub mod stepup;
// proof of possession (issue 9)
pub mod tls;
