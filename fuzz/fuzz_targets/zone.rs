//! cargo +nightly fuzz run zone: see steerdns::fuzzing::zone_text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steerdns::fuzzing::zone_text(data));
