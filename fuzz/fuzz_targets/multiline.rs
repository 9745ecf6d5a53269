#![no_main]
use libfuzzer_sys::fuzz_target;
use tailship::adapt::multiline::{MultilineJoiner, Rule};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for preset in ["java", "python", "go"] {
        let mut j = MultilineJoiner::new(Rule::preset(preset).unwrap(), 4, 40);
        let mut out = Vec::new();
        for line in text.split('\n') {
            out.extend(j.push(line));
        }
        out.extend(j.flush());
        // Nothing lost, nothing invented.
        let rejoined: Vec<&str> = out.iter().flat_map(|e| e.text.split('\n')).collect();
        let input: Vec<&str> = text.split('\n').collect();
        assert_eq!(rejoined, input);
    }
});
