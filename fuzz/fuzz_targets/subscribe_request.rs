//! Fuzzes a SubscribeRequest: decoded and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::subscribe(bytes));
