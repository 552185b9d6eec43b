//! Fuzzes a CloudEvent POSTed over plain HTTP: binary mode (headers and a
//! body), structured mode and batches, each event checked as a publish.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::cloudevent(bytes));
