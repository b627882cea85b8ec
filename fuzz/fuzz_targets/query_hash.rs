//! Fuzz target `query_hash`: see `gatehouse_core::fuzzing::query_hash` for the input layout and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::query_hash(data));
