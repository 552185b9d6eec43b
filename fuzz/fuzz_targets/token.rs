//! Fuzzes an authorization value: read as a bearer token and verified; none passes unsigned.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::token(bytes));
