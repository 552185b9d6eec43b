//! Fuzzes a StreamingSubscribeRequest: its subscribe or its settle, decoded and checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::streaming_subscribe(bytes));
