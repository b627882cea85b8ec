//! Fuzz target `upbit_jwt`: see `gatehouse_core::fuzzing::upbit_jwt` for the input layout and invariants.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| gatehouse_core::fuzzing::upbit_jwt(data));
