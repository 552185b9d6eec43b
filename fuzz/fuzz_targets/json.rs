//! Fuzzes JSON text to a Struct and back, and a client's Struct to JSON.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::json(bytes));
