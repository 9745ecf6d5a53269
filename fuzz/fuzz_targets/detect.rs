//! The `detect` target: `tailship::fuzzing::detect_format` (the same entry point its property tests drive).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tailship::fuzzing::detect_format(data));
