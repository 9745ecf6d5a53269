#![no_main]
use libfuzzer_sys::fuzz_target;
use tailship::adapt::cri;
use tailship::adapt::join::CriJoiner;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    // A small cap, so truncation at character boundaries is exercised too.
    let mut joiner = CriJoiner::new(64);
    for line in text.split('\n') {
        if let Ok(p) = cri::parse(line) {
            if let Some(r) = joiner.push(p) {
                assert!(r.message.len() <= 64 || !r.truncated);
            }
        }
    }
    for r in joiner.flush() {
        assert!(r.partial && r.message.len() <= 64);
    }
});
