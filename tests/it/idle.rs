//! Idle cost: 1,000 tailed files and no writes. Discovery is inotify plus a stat-only reconcile
//! (every 5 s by default), so after the initial read the agent should sleep: the test measures
//! its utime+stime over 10 s and wants less than 0.1 s.

use std::fs;
use std::thread;
use std::time::Duration;

use crate::util::*;

#[test]
fn idle_with_1000_files_uses_under_100ms_cpu_in_10s() {
    const FILES: u64 = 1000;
    let dir = TestDir::new("idle");
    let logs = dir.subdir("logs");
    let c = corpus();
    for i in 0..FILES {
        fs::write(logs.join(format!("f{i:04}.log")), c.lines("idle", i, 1)).unwrap();
    }
    // The line of file i is seq i of "idle", so one tag covers all files.
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(
        Some(&mut agent),
        "one line from each of 1,000 files",
        STALL,
        LIMIT,
        || (rx.unique("idle"), rx.unique("idle") >= FILES),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));

    // Let the initial read settle: the last batch, the checkpoint (written within a second of
    // a change), the first reconcile.
    thread::sleep(Duration::from_secs(3));
    let before = agent.stat().expect("agent /proc stat");
    let lines_before = rx.lines();
    thread::sleep(Duration::from_secs(10));
    let after = agent.stat().expect("agent /proc stat");
    let cpu = after.cpu_s - before.cpu_s;
    let open = agent.metrics().map(|m| m.val("tailship_open_files"));
    eprintln!(
        "idle: {FILES} files, {:?} open; CPU over 10 s: {cpu:.3} s (total {:.2} s); RSS {:.1} MiB",
        open,
        after.cpu_s,
        after.rss_kib as f64 / 1024.0
    );
    assert_eq!(rx.lines(), lines_before, "nothing is sent while nothing is written");
    stop_clean(&mut agent, &rx);
    let r = rx.check("idle", FILES);
    assert!(r.missing == 0 && r.duplicates == 0, "{r}");
    assert!(
        cpu < 0.1,
        "idle CPU over 10 s with {FILES} files: {cpu:.3} s (want < 0.1 s)"
    );
}
