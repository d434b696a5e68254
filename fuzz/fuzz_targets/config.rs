//! cargo +nightly fuzz run config: see steerdns::fuzzing::config_text.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steerdns::fuzzing::config_text(data));
