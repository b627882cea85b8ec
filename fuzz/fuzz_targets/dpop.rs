//! Fuzz target `dpop`: see `gatehouse_core::fuzzing::dpop` for the input layout and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::dpop(data));
