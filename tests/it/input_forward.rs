//! The `forward` input against real clients: `fluent-logger` (PyPI; Message mode with
//! EventTime) and a msgpack client (PyPI's `msgpack`) sending Forward, PackedForward and
//! CompressedPackedForward messages with chunk ids and checking every ack → every record
//! delivered to the receiver; garbage and truncated msgpack on other connections are counted
//! and closed while the clients are served on.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/forward_client.py");

fn start(dir: &TestDir, rx: &Receiver, port: u16) -> Agent {
    start_with(dir, rx, port, "")
}

/// `start` with `extra` lines in the source.
fn start_with(dir: &TestDir, rx: &Receiver, port: u16, extra: &str) -> Agent {
    let source = format!(
        "[[sources]]\nname = \"app-fwd\"\ntype = \"forward\"\naddress = \"127.0.0.1:{port}\"\nread_timeout = \"5s\"\nmax_message_bytes = 1048576\n{extra}"
    );
    let mut agent = network_agent(dir, rx, &source);
    wait_listening(&mut agent, port);
    agent
}

fn client(kind: &str, port: u16, count: u64, first: u64) -> Child {
    client_args(kind, port, count, first, &[])
}

fn client_args(kind: &str, port: u16, count: u64, first: u64, more: &[&str]) -> Child {
    Command::new("python3")
        .args([CLIENT, kind, &port.to_string(), &count.to_string(), &first.to_string()])
        .args(more)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

fn seqs(rx: &Receiver) -> HashSet<u64> {
    rx.records()
        .into_iter()
        .filter_map(|r| r.field("seq")?.as_u64())
        .collect()
}

#[test]
fn fluent_logger_and_acked_packed_messages_all_arrive() {
    const LOGGER: u64 = 10_000;
    const PACKED: u64 = 30_000;
    let dir = TestDir::new("forward-input");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port);
    let a = client("logger", port, LOGGER, 0);
    let b = client("packed", port, PACKED, LOGGER);
    // Hostile neighbours on other connections while the clients send.
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut garbage = TcpStream::connect(addr).unwrap();
    let _ = garbage.write_all(b"\xc1\xc1 GET / HTTP/1.1\r\n\r\n");
    let mut truncated = TcpStream::connect(addr).unwrap();
    // A PackedForward header promising 1 MiB of entries, then the client goes away.
    let _ = truncated.write_all(&[0x93, 0xa1, b't', 0xc6, 0x00, 0x10, 0x00, 0x00, 0x92]);
    drop(truncated);
    let mut oversized = TcpStream::connect(addr).unwrap();
    let _ = oversized.write_all(&[0x93, 0xa1, b't', 0xc6, 0x7f, 0x00, 0x00, 0x00]);
    let _ = oversized.write_all(&vec![0u8; 2 << 20]);
    finish_client(a, "the forward client");
    finish_client(b, "the forward client");
    wait_progress(Some(&mut agent), "every record at the receiver", STALL, LIMIT, || {
        let n = seqs(&rx).len() as u64;
        (n, n >= LOGGER + PACKED)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let got = seqs(&rx);
    assert!((0..LOGGER + PACKED).all(|s| got.contains(&s)));
    let sample = rx
        .records()
        .into_iter()
        .find(|r| r.field("seq").and_then(|v| v.as_u64()) == Some(42))
        .unwrap();
    assert_eq!(sample.message, "forward record 42", "{}", sample.brief());
    assert_eq!(
        sample.field("tag").and_then(|v| v.as_str()),
        Some("app.line"),
        "{}",
        sample.brief()
    );
    // The garbage connection was closed by the agent.
    let _ = garbage.set_read_timeout(Some(Duration::from_secs(10)));
    let mut scratch = [0u8; 16];
    assert!(
        matches!(garbage.read(&mut scratch), Ok(0) | Err(_)),
        "garbage was answered"
    );
    let m = agent.metrics().expect("metrics");
    assert_eq!(
        m.get_with("tailship_input_records_accepted_total", "app-fwd"),
        Some((LOGGER + PACKED) as f64)
    );
    let rejected = m
        .get_with("tailship_input_requests_rejected_total", "app-fwd")
        .unwrap_or(0.0);
    assert!(rejected >= 2.0, "garbage and the oversized message counted: {rejected}");
    assert!(agent.alive());
}

/// PackedForward chunks acknowledged one by one while the agent is killed with `kill -9`
/// twice and restarted: every record of an acknowledged chunk is delivered.
#[test]
fn kill9_while_chunks_are_sent_loses_nothing_acknowledged() {
    const N: u64 = 40_000;
    let _heavy = heavy();
    let dir = TestDir::new("forward-kill9");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port);
    let acked = dir.join("acked");
    let c = client_args("acked", port, N, 0, &[&acked.to_string_lossy()]);
    for at in [5_000usize, 20_000] {
        assert!(
            wait_until(LIMIT, || acked_seqs(&acked).len() >= at),
            "{at} records acknowledged before the kill\n{}",
            agent.diag()
        );
        agent.kill9();
        agent = start(&dir, &rx, port);
    }
    finish_client(c, "the forward client");
    let acked = acked_seqs(&acked);
    assert_eq!(
        acked.len() as u64,
        N,
        "the client saw every chunk acknowledged in the end"
    );
    wait_progress(Some(&mut agent), "every acknowledged record", STALL, LIMIT, || {
        let got = seqs(&rx);
        let n = acked.iter().filter(|s| got.contains(s)).count() as u64;
        (n, n == acked.len() as u64)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let delivered = rx.records().len() as u64;
    eprintln!(
        "forward input kill -9 twice: {N} records acknowledged, {delivered} delivered ({} duplicates)",
        delivered.saturating_sub(N)
    );
}

/// The collector down and a 1 MiB spool: the input withholds the ack of the chunk that does
/// not fit (and counts the pushback), memory stays bounded; once the collector is back the
/// withheld chunk is acknowledged and every record arrives.
#[test]
fn a_full_spool_withholds_the_ack_and_nothing_acknowledged_is_lost() {
    const N: u64 = 30_000;
    let dir = TestDir::new("forward-full");
    let mut rx = Receiver::keeping();
    rx.stop();
    let port = free_port();
    let mut agent = start_with(&dir, &rx, port, "max_spool_bytes = 1048576");
    let before_kib = agent.stat().expect("stat").rss_kib;
    let rss = RssSampler::start(agent.pid);
    let acked = dir.join("acked");
    let c = client_args("acked", port, N, 0, &[&acked.to_string_lossy()]);
    // The client stalls: its acknowledged count stops growing well short of N.
    let mut last = (0usize, std::time::Instant::now());
    let stalled = wait_until(LIMIT, || {
        let n = acked_seqs(&acked).len();
        if n != last.0 {
            last = (n, std::time::Instant::now());
        }
        n > 0 && last.1.elapsed() > Duration::from_secs(3)
    });
    let held = acked_seqs(&acked).len() as u64;
    assert!(
        stalled && held < N,
        "the client never stalled ({held} acknowledged)\n{}",
        agent.diag()
    );
    let m = agent.metrics().expect("metrics");
    assert!(
        m.get_with("tailship_input_pushbacks_total", "app-fwd").unwrap_or(0.0) >= 1.0,
        "{}",
        m.text
    );
    rx.restart();
    finish_client(c, "the forward client");
    assert_eq!(acked_seqs(&acked).len() as u64, N);
    wait_progress(Some(&mut agent), "every record", STALL, LIMIT, || {
        let n = seqs(&rx).len() as u64;
        (n, n == N)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let (peak_kib, _) = rss.finish();
    eprintln!(
        "forward input, full spool: stalled at {held} of {N} acknowledged; RSS {before_kib} KiB before, peak {peak_kib} KiB"
    );
    assert!(
        peak_kib < before_kib + (32 << 10),
        "RSS grew from {before_kib} KiB to {peak_kib} KiB"
    );
}

/// `shared_key` on the input: a client that passes the handshake (written from the protocol's
/// text with Python's hashlib) is served; a wrong key gets a PONG saying so and nothing it
/// sends is kept; a client that skips the handshake (fluent-logger, which has none) is closed.
/// Each refusal is counted.
#[test]
fn the_shared_key_handshake_admits_the_right_key_only() {
    let dir = TestDir::new("forward-shared-key");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start_with(&dir, &rx, port, "shared_key = \"the-pods-own-key-0123\"");
    finish_client(
        client_args("shared", port, 1000, 0, &["the-pods-own-key-0123"]),
        "the forward client",
    );
    wait_progress(Some(&mut agent), "the right key's records", STALL, LIMIT, || {
        let n = seqs(&rx).len() as u64;
        (n, n == 1000)
    })
    .unwrap_or_else(|e| panic!("{e}"));

    let wrong = client_args("shared", port, 100, 5000, &["not-the-key"]);
    let out = wrong.wait_with_output().expect("wait for the client");
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("refused: shared key mismatch"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // fluent-logger sends its message where the PING belongs.
    let _ = client("logger", port, 10, 6000).wait();
    let m = agent.metrics().expect("metrics");
    assert!(
        m.get_with("tailship_input_requests_rejected_total", "app-fwd")
            .unwrap_or(0.0)
            >= 2.0,
        "{}",
        m.text
    );
    assert_eq!(
        m.get_with("tailship_input_records_accepted_total", "app-fwd"),
        Some(1000.0),
        "{}",
        m.text
    );
    assert_eq!(
        seqs(&rx).len(),
        1000,
        "nothing from the wrong key or the client without one"
    );
    assert!(
        !agent.stderr().contains("the-pods-own-key"),
        "the key reached the agent's log"
    );
}
