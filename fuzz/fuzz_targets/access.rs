#![no_main]
use libfuzzer_sys::fuzz_target;
use tailship::adapt::access;

fuzz_target!(|data: &[u8]| {
    let line = String::from_utf8_lossy(data);
    let _ = access::parse_combined(&line);
    let _ = access::parse_common(&line);
    let mut out = tailship::adapt::Parsed::default();
    let _ = access::parse_into_with(&line, access::Variant::Combined, true, &mut out);
});
