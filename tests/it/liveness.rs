//! `/healthz` sees a stall (issue 11): a sink thread stuck in a write that never returns turns
//! it 503 naming the sink, and SIGTERM still ends the agent within `shutdown_timeout` and its
//! grace; a collector that is down is not a stall, so `/healthz` stays 200 meanwhile.

use std::fs;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::util::*;

/// The `stdout` sink writes to a pipe nobody reads: once the pipe is full its write blocks
/// for ever. `/healthz` turns 503 after `stall_timeout` naming that sink; `/readyz` is not
/// what says it; SIGTERM ends the process within `shutdown_timeout` plus the 5 s grace though
/// the write never returns.
#[test]
fn a_sink_stuck_in_a_write_fails_healthz_and_does_not_hold_up_the_shutdown() {
    let dir = TestDir::new("stall-stdout");
    let logs = dir.subdir("logs");
    // Far more than a pipe holds (64 KiB by default).
    fs::write(logs.join("a.log"), corpus().lines("a", 0, 20_000)).unwrap();
    let rx = Receiver::ndjson();
    let mut cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx)
        .top("stall_timeout = \"2s\"")
        .top("shutdown_timeout = \"2s\"");
    cfg.sink = vec!["type = \"stdout\"".into()];
    let (reader, writer) = std::io::pipe().expect("a pipe");
    let mut agent = Agent::start_with(&dir, &cfg, &[], |c| {
        c.stdout(Stdio::from(writer));
    });
    let addr = agent.metrics_addr.expect("metrics address");
    let mut body = String::new();
    let stalled = wait_until(Duration::from_secs(60), || match http_get(addr, "/healthz") {
        Ok((503, b)) => {
            body = b;
            true
        }
        _ => false,
    });
    assert!(stalled, "healthz never saw the stuck sink\n{}", agent.diag());
    assert!(body.contains("sink \"out\""), "healthz names the stuck sink: {body:?}");

    let stopping = Instant::now();
    agent.sigterm();
    let code = agent.wait_exit(Duration::from_secs(30));
    let took = stopping.elapsed();
    assert!(code.is_some(), "still running 30 s after SIGTERM\n{}", agent.diag());
    assert!(
        took < Duration::from_secs(15),
        "the stop took {took:?} (shutdown_timeout 2 s + 5 s grace)"
    );
    assert!(
        agent.stderr().contains("did not stop at the hard stop"),
        "the stuck thread is named in the log\n{}",
        agent.stderr_tail(10)
    );
    drop(reader);
}

/// A tcp collector that is not there: the sink retries for longer than `stall_timeout`, and
/// `/healthz` stays 200 throughout (restarting the agent would not bring the collector back),
/// while the tailer stops at the in-flight budget. Once the collector is up, everything flows.
#[test]
fn a_collector_that_is_down_is_not_a_stall() {
    let dir = TestDir::new("stall-down");
    let logs = dir.subdir("logs");
    fs::write(logs.join("a.log"), corpus().lines("a", 0, 200)).unwrap();
    let mut rx = Receiver::ndjson();
    rx.stop();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx).top("stall_timeout = \"1s\"");
    let mut agent = Agent::start(&dir, &cfg);
    let addr = agent.metrics_addr.expect("metrics address");
    let retried = wait_until(Duration::from_secs(30), || {
        agent
            .metrics()
            .is_some_and(|m| m.get_with("tailship_send_retries_total", "out").unwrap_or(0.0) >= 1.0)
    });
    assert!(retried, "the sink never retried\n{}", agent.diag());
    // Three stall timeouts of a collector that is down: healthz answers 200 at every look.
    let until = Instant::now() + Duration::from_secs(3);
    while Instant::now() < until {
        let (status, body) = http_get(addr, "/healthz").expect("healthz answers");
        assert_eq!(status, 200, "healthz while the collector is down: {body}");
        std::thread::sleep(Duration::from_millis(100));
    }
    rx.restart();
    wait_progress(
        Some(&mut agent),
        "200 lines after the collector came up",
        STALL,
        LIMIT,
        || {
            let u = rx.unique("a");
            (u, u >= 200)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);
}
