//! Crash and restart: `kill -9` the agent twice in the middle of a 1,000,000-line run and start
//! it again on the same data dir. Every line must arrive at least once; the duplicates are the
//! replay from the last committed checkpoint and must stay bounded; a replayed line must carry
//! the same `id` as its first delivery.

use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn kill9_twice_during_a_million_lines_loses_nothing() {
    const PER_FILE: u64 = 500_000;
    const FILES: u64 = 2;
    const TOTAL: u64 = PER_FILE * FILES;
    const INFLIGHT: u64 = 16 << 20;
    let _heavy = heavy();
    let dir = TestDir::new("kill9");
    let logs = dir.subdir("logs");
    let rx = Receiver::ndjson();
    let mut cfg =
        Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx).top(&format!("max_inflight_bytes = {INFLIGHT}"));
    let mut agent = Agent::start(&dir, &cfg);

    // Paced at 150,000 lines/s in all (~7 s of writing) so both kills land while the files are
    // still growing, not after the fact.
    let writers: Vec<Writer> = (0..FILES)
        .map(|i| {
            Writer::spawn(WriterSpec::new(logs.join(format!("k{i}.log")), &format!("k{i}"), PER_FILE).rate(75_000))
        })
        .collect();
    let t0 = Instant::now();

    for (n, at) in [300_000u64, 650_000].into_iter().enumerate() {
        wait_progress(
            Some(&mut agent),
            &format!("{at} lines before kill #{}", n + 1),
            STALL,
            LIMIT,
            || {
                let u = rx.unique_total();
                (u, u >= at)
            },
        )
        .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
        let written: u64 = writers.iter().map(|w| w.written()).sum();
        agent.kill9();
        eprintln!(
            "kill -9 #{} at {:.2?}: {} unique lines received, {written} written",
            n + 1,
            t0.elapsed(),
            rx.unique_total()
        );
        cfg.fresh_metrics_port();
        agent = Agent::start(&dir, &cfg);
    }
    let wrote: u64 = writers.into_iter().map(|w| w.join().lines).sum();
    assert_eq!(wrote, TOTAL);

    wait_progress(
        Some(&mut agent),
        "all 1,000,000 lines after two restarts",
        STALL,
        LIMIT,
        || {
            let u = rx.unique_total();
            (u, u >= TOTAL)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);

    let c = corpus();
    let mut dup_lines = 0u64;
    let mut dup_bytes = 0u64;
    for i in 0..FILES {
        let tag = format!("k{i}");
        let r = rx.check(&tag, PER_FILE);
        eprintln!("{r}");
        assert_eq!(r.missing, 0, "every line at least once: {r}");
        assert_eq!(r.beyond, 0, "{r}");
        assert_eq!(
            r.id_changes, 0,
            "a replayed line must carry the id of its first delivery: {r}"
        );
        assert_eq!(r.id_collisions, 0, "ids are unique per line: {r}");
        dup_lines += r.duplicates;
        let seen = rx.seen(&tag, PER_FILE);
        for (seq, &n) in seen.iter().enumerate() {
            if n > 1 {
                dup_bytes += (n as u64 - 1) * c.line_len(&tag, seq as u64);
            }
        }
    }
    rx.with_state(|s| {
        assert_eq!(s.corrupt, 0, "lines arrive byte-exact: {:?}", s.corrupt_examples);
        assert_eq!(
            s.bad_json, 0,
            "a killed connection may end mid-record, but that part is dropped by the receiver, not mangled: {:?}",
            s.bad_json_examples
        );
        eprintln!(
            "records cut by the kills (receiver saw a partial last line): {}",
            s.partial_at_close
        );
    });
    let bound = 3 * INFLIGHT;
    eprintln!(
        "duplicates after 2 × kill -9: {dup_lines} lines, {:.1} MiB (bound {} MiB = 3 × max_inflight_bytes); {} connections",
        dup_bytes as f64 / (1 << 20) as f64,
        bound >> 20,
        rx.accepted()
    );
    assert!(
        dup_bytes < bound,
        "duplicates should be bounded by what was in flight: {dup_lines} lines / {dup_bytes} bytes ≥ {bound} bytes"
    );
}

/// While the agent is stopped, one file is truncated and refilled past the saved offset (same
/// inode), another deleted and recreated (a new file, often with the old inode number). The
/// resume validator and the fingerprint must notice: both are read again from byte 0.
#[test]
fn files_truncated_or_replaced_while_the_agent_was_down_are_read_from_the_start() {
    use std::os::unix::fs::MetadataExt;
    let dir = TestDir::new("replaced-while-down");
    let logs = dir.subdir("logs");
    let (a, b) = (logs.join("a.log"), logs.join("b.log"));
    let c = corpus();
    std::fs::write(&a, c.lines("a", 0, 1000)).unwrap();
    std::fs::write(&b, c.lines("b", 0, 1000)).unwrap();
    let rx = Receiver::ndjson();
    let mut cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "2,000 lines", STALL, LIMIT, || {
        let u = rx.unique_total();
        (u, u >= 2000)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);

    let ino_b = std::fs::metadata(&b).unwrap().ino();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&a)
        .unwrap()
        .set_len(0)
        .unwrap();
    std::fs::write(&a, c.lines("a", 1000, 3000)).unwrap();
    std::fs::remove_file(&b).unwrap();
    // Inode reuse is the hard case for (device, inode) identity: try to get the old number
    // back (file systems hand a freed inode out again soon, unless a parallel test takes it).
    let mut candidates = Vec::new();
    for i in 0..2000 {
        let p = logs.join(format!("candidate-{i}.tmp"));
        std::fs::write(&p, b"").unwrap();
        let reused = std::fs::metadata(&p).unwrap().ino() == ino_b;
        candidates.push(p);
        if reused {
            break;
        }
    }
    let last = candidates.pop().unwrap();
    let reused = std::fs::metadata(&last).unwrap().ino() == ino_b;
    std::fs::write(&last, c.lines("b", 1000, 3000)).unwrap();
    std::fs::rename(&last, &b).unwrap();
    for p in candidates {
        std::fs::remove_file(p).unwrap();
    }
    eprintln!(
        "b.log recreated with {} inode",
        if reused { "the same (reused)" } else { "a new" }
    );

    cfg.fresh_metrics_port();
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "the new contents", STALL, LIMIT, || {
        let u = rx.unique_total();
        (u, u >= 8000)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}\n{}\n{}\n{}",
            rx.summary(),
            rx.check("a", 4000),
            rx.check("b", 4000)
        )
    });
    stop_clean(&mut agent, &rx);
    for tag in ["a", "b"] {
        let r = rx.check(tag, 4000);
        assert!(r.missing == 0 && r.duplicates == 0, "{r}");
    }
}

#[test]
fn a_file_rotated_while_the_agent_was_down_is_drained_from_its_checkpoint() {
    let dir = TestDir::new("rotated-while-down");
    let logs = dir.subdir("logs");
    let live = logs.join("app.log");
    let c = corpus();
    std::fs::write(&live, c.lines("r", 0, 1000)).unwrap();
    let rx = Receiver::ndjson();
    // Only the live name is tailed: the rotated copy is found through the checkpoint.
    let mut cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "1,000 lines", STALL, LIMIT, || {
        let u = rx.unique_total();
        (u, u >= 1000)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);

    // While it is down the app writes on, rotates by rename, and writes to a new file.
    let mut old = std::fs::OpenOptions::new().append(true).open(&live).unwrap();
    std::io::Write::write_all(&mut old, &c.lines("r", 1000, 500)).unwrap();
    drop(old);
    std::fs::rename(&live, logs.join("app.log.1")).unwrap();
    std::fs::write(&live, c.lines("r", 1500, 500)).unwrap();

    cfg.fresh_metrics_port();
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "2,000 lines", STALL, LIMIT, || {
        let u = rx.unique_total();
        (u, u >= 2000)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", rx.summary(), rx.check("r", 2000)));
    stop_clean(&mut agent, &rx);
    let r = rx.check("r", 2000);
    assert!(r.missing == 0 && r.duplicates == 0, "{r}");
}

/// A file the agent had read, but of which no sink had confirmed anything (the collector was
/// down), is renamed while the agent is down: its checkpoint says offset 0, and it must still
/// be found by its inode and drained. (Found by the model test's author reading the code.)
#[test]
fn a_file_renamed_while_down_with_its_checkpoint_at_zero_is_drained() {
    let dir = TestDir::new("renamed-at-zero");
    let logs = dir.subdir("logs");
    let live = logs.join("app.log");
    let mut rx = Receiver::keeping();
    let mut cfg = Config::tcp(&dir, &[live.display().to_string()], &rx);
    rx.stop();
    let mut agent = Agent::start(&dir, &cfg);
    std::fs::write(&live, corpus().lines("z", 0, 5)).unwrap();
    // Read and registered, nothing acknowledged: the collector is down.
    let registered = wait_until(Duration::from_secs(20), || {
        agent
            .metrics()
            .is_some_and(|m| m.val("tailship_lines_read_total") >= 5.0)
            && !checkpoint_offsets(&cfg).is_empty()
    });
    assert!(registered, "read and checkpointed at 0: {:?}", checkpoint_offsets(&cfg));
    assert!(
        checkpoint_offsets(&cfg).iter().all(|(_, o)| *o == 0),
        "{:?}",
        checkpoint_offsets(&cfg)
    );
    agent.kill9();
    std::fs::rename(&live, logs.join("app.log.1")).unwrap();
    std::fs::write(&live, corpus().lines("n", 0, 2)).unwrap();
    rx.restart();
    cfg.fresh_metrics_port();
    let mut agent = Agent::start(&dir, &cfg);
    let all = wait_until(Duration::from_secs(20), || rx.unique("z") >= 5 && rx.unique("n") >= 2);
    assert!(
        all,
        "z {} of 5, n {} of 2\n{}",
        rx.unique("z"),
        rx.unique("n"),
        agent.stderr_tail(20)
    );
    stop_clean(&mut agent, &rx);
}
