//! cargo +nightly fuzz run api_body: see steerdns::fuzzing::api_body.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steerdns::fuzzing::api_body(data));
