//! The `checkpoint` target: `tailship::fuzzing::checkpoint`, the checkpoint file reader on
//! arbitrary `checkpoints.json` contents, in a scratch `data_dir` of this process.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("tailship-fuzz-checkpoint-{}", std::process::id()));
    tailship::fuzzing::checkpoint(&dir, data);
});
