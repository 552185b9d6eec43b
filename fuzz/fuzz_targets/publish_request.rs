//! Fuzzes a PublishEventRequest: decoded, checked, and (when it passes) mapped to a record and back unchanged.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::publish(bytes));
