//! Fuzzes any Kafka record (headers and value) becoming an event without loss.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::record(bytes));
