//! Fuzzes a gRPC-Web call's body (binary frames or base64 text) through the edge's layers: answered, never a fault.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| gateway::fuzzing::grpc_web(bytes));
