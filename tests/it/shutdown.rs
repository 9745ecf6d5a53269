//! Graceful shutdown: SIGTERM (or SIGINT) right after a burst of lines was written. The agent
//! must read what is left, ship it, write the final checkpoint and exit 0 — and a restart must
//! not send any of it again (the checkpoint written at shutdown covers everything shipped).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::{Duration, Instant};

use crate::util::*;

fn shutdown_with_pending_lines(name: &str, sig: i32, lines: u64) {
    let dir = TestDir::new(name);
    let logs = dir.subdir("logs");
    let file = logs.join("app.log");
    let c = corpus();
    fs::write(&file, c.lines("app", 0, 1)).unwrap();
    let rx = Receiver::ndjson();
    let mut cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "the first line", STALL, LIMIT, || {
        (rx.unique("app"), rx.unique("app") >= 1)
    })
    .unwrap();

    // One burst, then the signal at once: nearly all of it is still on disk, unread.
    let burst = c.lines("app", 1, lines - 1);
    OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&burst)
        .unwrap();
    agent.signal(sig);
    let t = Instant::now();
    let at_signal = rx.unique("app");
    let code = agent.wait_exit(Duration::from_secs(40));
    let took = t.elapsed();
    assert!(
        rx.wait_drained(Duration::from_secs(10)),
        "connections closed after exit"
    );
    eprintln!(
        "{} lines ({:.1} MB) pending at the signal ({at_signal} already received); exit {code:?} after {took:.2?}",
        lines - 1,
        burst.len() as f64 / 1e6
    );
    assert_eq!(
        code,
        Some(0),
        "exit 0 after the signal once everything is shipped (None: still running after 40 s)"
    );
    let r = rx.check("app", lines);
    assert_eq!(r.missing, 0, "every pending line is shipped before exit: {r}");
    assert_eq!(r.duplicates, 0, "{r}");
    let ckpt = cfg.data_dir.join("checkpoints.json");
    assert!(ckpt.exists(), "the final checkpoint is written to {}", ckpt.display());

    // Restart: the next line must be the only thing sent.
    OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&c.lines("app", lines, 1))
        .unwrap();
    cfg.fresh_metrics_port();
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(
        Some(&mut agent),
        "the line written after the restart",
        STALL,
        LIMIT,
        || (rx.unique("app"), rx.unique("app") > lines),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);
    let r = rx.check("app", lines + 1);
    assert!(
        r.missing == 0 && r.duplicates == 0,
        "nothing re-sent after a clean restart: {r}"
    );
}

#[test]
fn sigterm_with_300k_pending_lines_ships_all_and_exits_0() {
    let _heavy = heavy();
    shutdown_with_pending_lines("sigterm", libc::SIGTERM, 300_000);
}

#[test]
fn sigint_with_pending_lines_ships_all_and_exits_0() {
    shutdown_with_pending_lines("sigint", libc::SIGINT, 50_000);
}

/// SIGTERM while the collector is down: the agent cannot ship, so it must give up after
/// `shutdown_timeout` (not hang), and since unacknowledged lines are not checkpointed, a
/// restart with the collector back delivers them: nothing lost.
#[test]
fn sigterm_with_the_collector_down_stops_within_shutdown_timeout_and_loses_nothing() {
    const N: u64 = 20_000;
    let dir = TestDir::new("sigterm-down");
    let logs = dir.subdir("logs");
    let file = logs.join("app.log");
    let c = corpus();
    fs::write(&file, c.lines("app", 0, 1000)).unwrap();
    let mut rx = Receiver::ndjson();
    let mut cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx).top("shutdown_timeout = \"3s\"");
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "1,000 lines", STALL, LIMIT, || {
        (rx.unique("app"), rx.unique("app") >= 1000)
    })
    .unwrap();

    rx.stop();
    OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(&c.lines("app", 1000, N - 1000))
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    agent.sigterm();
    let t = Instant::now();
    let code = agent.wait_exit(Duration::from_secs(20));
    eprintln!(
        "with the collector down: exit {code:?} {:.2?} after SIGTERM (shutdown_timeout 3s)",
        t.elapsed()
    );
    assert!(
        code.is_some(),
        "the agent must stop within shutdown_timeout even when it cannot ship"
    );
    assert!(
        t.elapsed() < Duration::from_secs(8),
        "stopped {:.2?} after SIGTERM, shutdown_timeout is 3s",
        t.elapsed()
    );

    rx.restart();
    cfg.fresh_metrics_port();
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "every line after the restart", STALL, LIMIT, || {
        (rx.unique("app"), rx.unique("app") >= N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);
    let r = rx.check("app", N);
    eprintln!("{r}");
    assert_eq!(r.missing, 0, "{r}");
}
