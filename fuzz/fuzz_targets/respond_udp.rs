//! cargo +nightly fuzz run respond_udp: see steerdns::fuzzing::respond_udp.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steerdns::fuzzing::respond_udp(data));
