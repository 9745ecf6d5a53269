#![no_main]
use libfuzzer_sys::fuzz_target;
use tailship::adapt::syslog;

fuzz_target!(|data: &[u8]| {
    // The first 8 bytes choose "now" (the year-less RFC 3164 time depends on it).
    let (now, rest) = if data.len() >= 8 {
        data.split_at(8)
    } else {
        (&[0u8; 8][..], data)
    };
    let now = i64::from_le_bytes(now.try_into().unwrap());
    let line = String::from_utf8_lossy(rest);
    let _ = syslog::parse(&line, now);
    let _ = syslog::parse_strict(&line, now);
});
