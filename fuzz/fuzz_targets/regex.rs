//! The `regex` target: `tailship::fuzzing::regex` (the same entry point its property tests drive).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tailship::fuzzing::regex(data));
