#![no_main]
use libfuzzer_sys::fuzz_target;
use tailship::adapt::logfmt;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    if let Ok(p) = logfmt::parse(&line) {
        // Every borrowed part is a slice of the line or an unescaped copy: both are valid UTF-8.
        let _ = p.message.len();
    }
    let mut out = tailship::adapt::Parsed::default();
    let _ = logfmt::parse_into_with(&line, true, &mut out);
});
