//! The `multiline` target: `tailship::fuzzing::multiline` (the same entry point its property tests drive).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tailship::fuzzing::multiline(data));
