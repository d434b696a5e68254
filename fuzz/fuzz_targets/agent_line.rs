//! cargo +nightly fuzz run agent_line: see steerdns::fuzzing::agent_line.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| steerdns::fuzzing::agent_line(data));
