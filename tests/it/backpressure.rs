//! Backpressure: the collector goes away for 10 s in the middle of a run. The agent must stop
//! reading once `max_inflight_bytes` are in flight (the files are the buffer), keep its memory
//! flat (under 64 MiB, the sidecar's limit), reconnect when the collector is back and catch up
//! without losing a line.
//!
//! The receiver goes down the way a collector shuts down: it stops listening (connects are
//! refused), sends FIN on the open connection and reads on until the agent closes its side (at
//! most 3 s). An agent that only notices a dead peer when a write fails would have had data
//! "acknowledged" into a socket nobody reads; the receiver counts those forced closes.

use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn receiver_down_for_10s_no_loss_bounded_memory_and_catch_up() {
    const LINES: u64 = 480_000;
    const INFLIGHT: u64 = 16 << 20;
    const RSS_LIMIT_KIB: u64 = 64 << 10;
    let _heavy = heavy();
    let dir = TestDir::new("receiver-down");
    let logs = dir.subdir("logs");
    let mut rx = Receiver::ndjson();
    let cfg =
        Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx).top(&format!("max_inflight_bytes = {INFLIGHT}"));
    let mut agent = Agent::start(&dir, &cfg);
    let sampler = RssSampler::start(agent.pid);

    // 30,000 lines/s (~4.5 MB/s) for 16 s: ~45 MB pile up on disk while the receiver is down,
    // well past the in-flight cap.
    let w = Writer::spawn(WriterSpec::new(logs.join("app.log"), "app", LINES).rate(30_000));
    wait_progress(
        Some(&mut agent),
        "60,000 lines before the receiver goes down",
        STALL,
        LIMIT,
        || {
            let u = rx.unique("app");
            (u, u >= 60_000)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));

    let down = Instant::now();
    rx.stop();
    let at_stop = rx.unique("app");
    eprintln!("receiver down after {at_stop} lines (stop took {:.2?})", down.elapsed());
    let (mut max_inflight, mut max_rss_down, mut samples) = (0.0f64, 0u64, 0);
    while down.elapsed() < Duration::from_secs(10) {
        assert!(agent.alive(), "the agent must survive a missing collector");
        if let Some(m) = agent.metrics() {
            max_inflight = max_inflight.max(m.val("tailship_inflight_bytes"));
        }
        if let Some(st) = agent.stat() {
            max_rss_down = max_rss_down.max(st.rss_kib);
            samples += 1;
        }
        thread::sleep(Duration::from_millis(200));
    }
    let m_down = agent.metrics().expect("metrics while the receiver is down");
    let written_while_down = w.written();
    rx.restart();
    eprintln!(
        "receiver back after {:.2?}: writer at {written_while_down} lines; while down: max inflight {:.1} MiB, max RSS {:.1} MiB ({samples} samples)",
        down.elapsed(),
        max_inflight / (1 << 20) as f64,
        max_rss_down as f64 / 1024.0
    );

    let wrote = w.join().lines;
    assert_eq!(wrote, LINES);
    let back = Instant::now();
    wait_progress(
        Some(&mut agent),
        "catch-up after the receiver came back",
        STALL,
        LIMIT,
        || {
            let u = rx.unique("app");
            (u, u >= LINES)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}\n{}", rx.summary(), rx.check("app", LINES)));
    eprintln!("caught up {:.2?} after the writer finished", back.elapsed());
    let (max_rss, n) = sampler.finish();
    let hwm = agent.stat().map(|s| s.hwm_kib).unwrap_or(0);
    stop_clean(&mut agent, &rx);

    let r = rx.check("app", LINES);
    eprintln!(
        "{r}\nRSS: max sampled {:.1} MiB over {n} samples, VmHWM {:.1} MiB",
        max_rss as f64 / 1024.0,
        hwm as f64 / 1024.0
    );
    let (forced, discarded) = rx.with_state(|s| (s.forced_closes, s.discarded_bytes));
    eprintln!(
        "connections: {}; force-closed after an unanswered FIN: {forced} ({discarded} bytes discarded)",
        rx.accepted()
    );
    assert_eq!(
        r.missing, 0,
        "no line lost while the receiver was down: {r}\n(receiver force-closed {forced} connections that stayed open 3 s after its FIN, discarding {discarded} unread bytes)"
    );
    assert!(
        max_rss < RSS_LIMIT_KIB,
        "agent RSS must stay under 64 MiB: max {max_rss} KiB"
    );
    assert!(max_rss_down < RSS_LIMIT_KIB, "agent RSS while down: {max_rss_down} KiB");
    // The cap is on bytes read but not acknowledged; one read buffer past it is tolerated.
    assert!(
        max_inflight <= (INFLIGHT + (1 << 20)) as f64,
        "in-flight bytes must respect max_inflight_bytes: max {max_inflight}"
    );
    let failures = m_down
        .get_with("tailship_send_retries_total", "sink=\"out\"")
        .unwrap_or(0.0)
        + m_down
            .get_with("tailship_send_errors_total", "sink=\"out\"")
            .unwrap_or(0.0);
    assert!(
        failures > 0.0,
        "failed sends/connects while down are counted (retries or errors):\n{}",
        m_down.text
    );
    assert!(
        rx.accepted() >= 2,
        "the agent reconnected ({} connections)",
        rx.accepted()
    );
    rx.with_state(|s| assert_eq!(s.corrupt, 0, "{:?}", s.corrupt_examples));
    eprintln!(
        "duplicates after the outage: {} (at-least-once; not asserted)",
        r.duplicates
    );
}
