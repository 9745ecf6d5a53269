#![no_main]
use libfuzzer_sys::fuzz_target;
use tailship::adapt::timestamp;

fuzz_target!(|data: &[u8]| {
    let (now, rest) = if data.len() >= 8 {
        data.split_at(8)
    } else {
        (&[0u8; 8][..], data)
    };
    let now = i64::from_le_bytes(now.try_into().unwrap());
    let s = String::from_utf8_lossy(rest);
    let _ = timestamp::parse_any(&s);
    let _ = timestamp::rfc3164_prefix(s.as_bytes(), now);
    let _ = timestamp::apache(&s);
    let _ = timestamp::log4j(&s);
    if let Ok(layout) = timestamp::Layout::new("%m-%d %H:%M:%S%.3f") {
        let _ = layout.parse(&s, now);
    }
    // Chrono layouts: a weekday to check against the date, an offset without a year.
    for format in ["%a %b %d %H:%M:%S %Y", "%b %d %H:%M:%S %z"] {
        if let Ok(layout) = timestamp::Layout::new(format) {
            let _ = layout.parse_noting(&s, now);
        }
    }
});
