//! Fuzzes an AcknowledgeRequest: decoded and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::acknowledge(bytes));
