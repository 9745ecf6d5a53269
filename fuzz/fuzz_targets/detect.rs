#![no_main]
use libfuzzer_sys::fuzz_target;
use tailship::adapt::detect::detect;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let lines: Vec<&str> = text.split('\n').collect();
    let d = detect(&lines, 1_795_614_680_000_000_000);
    assert!(d.matched <= d.sampled);
});
