//! Fuzzes a policy document: parsed, and asked about principals and topics.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::policy(bytes));
