#![no_main]
use libfuzzer_sys::fuzz_target;
use tailship::adapt::docker;
use tailship::adapt::join::DockerJoiner;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut joiner = DockerJoiner::new(64);
    for line in text.split('\n') {
        if let Ok(p) = docker::parse(line) {
            let _ = joiner.push(p);
        }
    }
    let _ = joiner.flush();
});
