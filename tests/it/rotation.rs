//! Rotation while the application writes: rename+create (logrotate's default, with the app
//! writing a little more to the renamed file before it reopens) and copytruncate.
//!
//! The writer is paced (100,000 lines/s in bursts of 256, ~15 MB/s) so a run spans ~4 s and
//! ~20 rotations without producing gigabytes; within a burst it writes as fast as it can.

use std::time::Duration;

use crate::util::*;

const LINES: u64 = 400_000;
const RATE: u64 = 100_000;
const EVERY: Duration = Duration::from_millis(200);

/// Runs a rename-rotating writer under `include` and checks that every line arrived exactly
/// once (files are tracked by inode, so a renamed file that still matches is not re-read).
fn rename_rotation(name: &str, include_rotated: bool) {
    let _heavy = heavy();
    let dir = TestDir::new(name);
    let logs = dir.subdir("logs");
    let live = logs.join("app.log");
    let glob = if include_rotated {
        format!("{}/app.log*", logs.display())
    } else {
        live.display().to_string()
    };
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[glob], &rx);
    let mut agent = Agent::start(&dir, &cfg);

    let w = Writer::spawn(
        WriterSpec::new(live.clone(), "app", LINES)
            .rate(RATE)
            .rotation(Rotation::Rename {
                every: EVERY,
                late_lines: 100,
            }),
    );
    let report = w.join();
    eprintln!(
        "writer: {} lines, {} rotations in {:.2?}",
        report.lines, report.rotations, report.elapsed
    );
    assert!(
        report.rotations >= 10,
        "the run should cover many rotations, got {}",
        report.rotations
    );

    wait_progress(Some(&mut agent), "all lines across rotations", STALL, LIMIT, || {
        let u = rx.unique("app");
        (u, u >= LINES)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", rx.summary(), rx.check("app", LINES)));
    let m = agent.metrics();
    stop_clean(&mut agent, &rx);

    let r = rx.check("app", LINES);
    eprintln!("{r}");
    assert_eq!(r.missing, 0, "no line lost across rename rotation: {r}");
    assert_eq!(
        r.duplicates, 0,
        "no line shipped twice (files are tracked by inode): {r}"
    );
    assert_eq!(r.beyond, 0, "{r}");
    rx.with_state(|s| assert_eq!(s.corrupt, 0, "lines arrive byte-exact: {:?}", s.corrupt_examples));
    if !include_rotated {
        let m = m.expect("metrics");
        assert!(
            m.val("tailship_rotations_total") > 0.0,
            "rotations are counted: {:?}",
            m.get("tailship_rotations_total")
        );
    }
}

#[test]
fn rename_rotation_every_200ms_live_name_only_loses_nothing() {
    rename_rotation("rename-live", false);
}

#[test]
fn rename_rotation_every_200ms_rotated_names_also_match_no_duplicates() {
    rename_rotation("rename-all", true);
}

/// copytruncate destroys, by itself, what the app writes between the copy and the truncation,
/// and a tailer that had not yet read the end of the file before the truncation can never read
/// it (the copy is not matched). So per generation of the file, only a *suffix* may be missing:
/// a missing line followed by a received one of the same generation means the agent skipped
/// lines it could have read (e.g. it missed a truncation and resumed at a stale offset in the
/// refilled file). The last generation, the live file at the end, must arrive whole.
#[test]
fn copytruncate_rotation_loses_only_the_documented_window() {
    let _heavy = heavy();
    let dir = TestDir::new("copytruncate");
    let logs = dir.subdir("logs");
    let live = logs.join("app.log");
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[live.display().to_string()], &rx);
    let mut agent = Agent::start(&dir, &cfg);

    let w = Writer::spawn(
        WriterSpec::new(live.clone(), "app", LINES)
            .rate(RATE)
            .rotation(Rotation::CopyTruncate { every: EVERY }),
    );
    let report = w.join();
    eprintln!(
        "writer: {} lines, {} copytruncates in {:.2?}",
        report.lines,
        report.copies.len(),
        report.elapsed
    );
    assert!(
        report.copies.len() >= 10,
        "the run should cover many truncations, got {}",
        report.copies.len()
    );
    // A last burst after the rotator stopped, so the final generation (the live file) is never
    // empty and the test knows what it must wait for.
    const TOTAL: u64 = LINES + 1000;
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().append(true).open(&live).unwrap();
        f.write_all(&corpus().lines("app", LINES, TOTAL - LINES)).unwrap();
    }
    let gens = copytruncate_generations(&report.copies, &live, "app", TOTAL);
    let last = gens.last().cloned().expect("at least one generation");

    // The live file's lines are all readable: wait for them (and hence for everything before).
    wait_progress(Some(&mut agent), "the last generation", STALL, LIMIT, || {
        let seen = rx.seen("app", TOTAL);
        let got = last.clone().filter(|&s| seen[s as usize] > 0).count() as u64;
        (rx.unique("app"), got == last.end - last.start)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", rx.summary(), rx.check("app", TOTAL)));
    let m = agent.metrics();
    stop_clean(&mut agent, &rx);

    let seen = rx.seen("app", TOTAL);
    let mut lost = 0u64;
    let mut violations = Vec::new();
    for (k, g) in gens.iter().enumerate() {
        let missing: Vec<u64> = g.clone().filter(|&s| seen[s as usize] == 0).collect();
        lost += missing.len() as u64;
        if let Some(&first_missing) = missing.first() {
            let is_suffix = (first_missing..g.end).all(|s| seen[s as usize] == 0);
            if !is_suffix || k == gens.len() - 1 {
                let received_after = (first_missing..g.end).filter(|&s| seen[s as usize] > 0).count();
                violations.push(format!(
                    "generation {k} {g:?}: {} missing from {first_missing}, but {received_after} later lines of it arrived{}",
                    missing.len(),
                    if k == gens.len() - 1 { " (last generation: nothing may be missing)" } else { "" }
                ));
            }
        }
    }
    let r = rx.check("app", TOTAL);
    eprintln!(
        "{r}\ncopytruncate: {} generations, {lost} lines lost inside the documented window",
        gens.len()
    );
    assert_eq!(
        gens.first().map(|g| g.start),
        Some(0),
        "generations should start at seq 0: {gens:?}"
    );
    assert!(
        violations.is_empty(),
        "lines lost outside the copytruncate window:\n{}",
        violations.join("\n")
    );
    assert_eq!(r.duplicates, 0, "no line shipped twice: {r}");
    rx.with_state(|s| assert_eq!(s.corrupt, 0, "lines arrive byte-exact: {:?}", s.corrupt_examples));
    let m = m.expect("metrics");
    assert!(
        m.val("tailship_truncations_total") > 0.0,
        "truncations are counted: {:?}",
        m.get("tailship_truncations_total")
    );
}

/// The race by which tailers lose lines under copytruncate: the file is truncated and refilled
/// past the offset the tailer had reached before it looks again, so `size < offset` never
/// shows. Here the agent is held back on purpose (receiver down, a 64 KiB in-flight cap) at a
/// small offset, then the file is truncated and refilled with ~6 MB of new lines. The new
/// generation must arrive whole (read from 0, not from the stale offset); of the old one only
/// a suffix may be missing.
#[test]
fn a_truncation_refilled_past_the_read_offset_is_still_detected() {
    let dir = TestDir::new("truncate-refill");
    let logs = dir.subdir("logs");
    let live = logs.join("app.log");
    let c = corpus();
    let mut rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[live.display().to_string()], &rx).top("max_inflight_bytes = 65536");
    let append = |bytes: &[u8]| {
        use std::io::Write;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&live)
            .unwrap()
            .write_all(bytes)
            .unwrap();
    };
    append(&c.lines("app", 0, 1000));
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "the first 1,000 lines", STALL, LIMIT, || {
        (rx.unique("app"), rx.unique("app") >= 1000)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));

    rx.stop();
    const GEN1: u64 = 20_000;
    append(&c.lines("app", 1000, GEN1 - 1000));
    let size1 = std::fs::metadata(&live).unwrap().len();
    // Wait until the agent has stopped reading (held by the in-flight cap).
    let mut last = -1.0;
    let stalled = wait_until(Duration::from_secs(20), || {
        let b = agent.metrics().map_or(-2.0, |m| m.val("tailship_bytes_read_total"));
        let same = b == last;
        last = b;
        std::thread::sleep(Duration::from_millis(300));
        same
    });
    assert!(
        stalled,
        "the agent kept reading with the receiver down and a 64 KiB cap"
    );
    assert!(
        last < (size1 - (1 << 20)) as f64,
        "precondition: the agent should be held back well before the end of the file (read {last} of {size1} bytes)"
    );

    // copytruncate, and the app refills the file far past the stale offset at once.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&live)
        .unwrap()
        .set_len(0)
        .unwrap();
    const TOTAL: u64 = 60_000;
    append(&c.lines("app", GEN1, TOTAL - GEN1));
    eprintln!(
        "agent held at {last} of {size1} bytes; truncated and refilled to {} bytes",
        std::fs::metadata(&live).unwrap().len()
    );
    rx.restart();
    wait_progress(Some(&mut agent), "the whole new generation", STALL, LIMIT, || {
        let seen = rx.seen("app", TOTAL);
        let got = (GEN1..TOTAL).filter(|&s| seen[s as usize] > 0).count() as u64;
        (got, got == TOTAL - GEN1)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", rx.summary(), rx.check("app", TOTAL)));
    let m = agent.metrics();
    stop_clean(&mut agent, &rx);

    let seen = rx.seen("app", TOTAL);
    let r = rx.check("app", TOTAL);
    eprintln!("{r}");
    let first_missing = (0..GEN1).find(|&s| seen[s as usize] == 0);
    if let Some(f) = first_missing {
        let later = (f..GEN1).filter(|&s| seen[s as usize] > 0).count();
        assert_eq!(
            later, 0,
            "old generation: only a suffix may be lost, but {later} lines after seq {f} arrived: {r}"
        );
    }
    // The tcp sink writes again what the receiver had not settled when it was stopped: those
    // duplicates, and no others.
    let resent = m.as_ref().map_or(0.0, |m| m.val("tailship_sink_resent_records_total"));
    assert!(r.duplicates as f64 <= resent, "{resent} resent: {r}");
    // The line the agent had begun to read when the file was cut may arrive as its start,
    // marked `truncated`; nothing else may be mangled.
    rx.with_state(|s| {
        assert_eq!(s.corrupt, 0, "{:?}", s.corrupt_examples);
        assert!(s.cut <= 1, "{} cut lines", s.cut);
    });
    let m = m.expect("metrics");
    assert!(
        m.val("tailship_truncations_total") >= 1.0,
        "the truncation is counted: {:?}",
        m.get("tailship_truncations_total")
    );
}
