//! Fuzz target `base32`: see `gatehouse_core::fuzzing::base32` for the input layout and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::base32(data));
