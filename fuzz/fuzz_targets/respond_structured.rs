//! cargo +nightly fuzz run respond_structured: see steerdns::fuzzing::respond_structured.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steerdns::fuzzing::respond_structured(data));
