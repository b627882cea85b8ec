//! Cryptographic building blocks shared by several concerns.

pub mod envelope;
