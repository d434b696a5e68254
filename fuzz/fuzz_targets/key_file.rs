//! cargo +nightly fuzz run key_file: see steerdns::fuzzing::key_file.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steerdns::fuzzing::key_file(data));
