#![no_main]
use libfuzzer_sys::fuzz_target;
use tailship::adapt::klog;

fuzz_target!(|data: &[u8]| {
    let (now, rest) = if data.len() >= 8 {
        data.split_at(8)
    } else {
        (&[0u8; 8][..], data)
    };
    let now = i64::from_le_bytes(now.try_into().unwrap());
    let _ = klog::parse(&String::from_utf8_lossy(rest), now);
});
