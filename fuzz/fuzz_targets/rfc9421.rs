//! Fuzz target `rfc9421`: see `gatehouse_core::fuzzing::rfc9421` for the input layout and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::rfc9421(data));
