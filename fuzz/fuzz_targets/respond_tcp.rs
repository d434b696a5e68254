//! cargo +nightly fuzz run respond_tcp: see steerdns::fuzzing::respond_tcp.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steerdns::fuzzing::respond_tcp(data));
