//! The `klog` target: `tailship::fuzzing::klog` (the same entry point its property tests drive).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| tailship::fuzzing::klog(data));
