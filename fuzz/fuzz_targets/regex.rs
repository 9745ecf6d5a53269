#![no_main]
use libfuzzer_sys::fuzz_target;
use tailship::adapt::regex::RegexParser;

fuzz_target!(|data: &[u8]| {
    // Input = pattern, a NUL, optional timestamp_format, a NUL, then lines.
    let text = String::from_utf8_lossy(data);
    let mut parts = text.splitn(3, '\0');
    let pattern = parts.next().unwrap_or("");
    let format = parts.next().filter(|f| !f.is_empty());
    let lines = parts.next().unwrap_or("");
    if pattern.len() > 200 {
        return; // keep compilation cheap; the parser, not the regex crate, is under test
    }
    let Ok(p) = RegexParser::new(pattern, format) else {
        return;
    };
    for line in lines.split('\n') {
        let _ = p.parse(line, 1_795_614_680_000_000_000);
    }
});
