//! Fuzzes a JWKS document: parsed.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::jwks(bytes));
