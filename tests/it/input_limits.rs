//! The network inputs under a connection flood: 10,000 idle connections, half to an `otlp`
//! input (each sends half a request head, then nothing) and half to a `forward` input (half a
//! msgpack message, then nothing). The agent holds at most `max_connections` per input, closes
//! the rest at once (counted), closes the idle ones it holds after `read_timeout`, keeps its
//! memory bounded, and serves real clients (an OTLP request, fluent-logger) all along.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use crate::util::*;

const FORWARD_CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/forward_client.py");
const CONNECTIONS: usize = 10_000;
const MAX_CONNECTIONS: usize = 256;

/// True once the agent has closed `s` (EOF or reset), false while it is open and quiet.
fn closed_by_peer(mut s: &TcpStream) -> bool {
    let _ = s.set_nonblocking(true);
    let mut b = [0u8; 512];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
            Err(_) => return true,
        }
    }
}

/// One OTLP/HTTP request of `n` records numbered from `first`; the status, or `None` when
/// the connection was closed before an answer (refused at the cap).
fn post_otlp(addr: SocketAddr, first: u64, n: u64) -> Option<u16> {
    let records = (first..first + n)
        .map(|i| LogRecord {
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!("flood {i}"))),
            }),
            attributes: vec![KeyValue {
                key: "seq".into(),
                value: Some(AnyValue {
                    value: Some(Value::IntValue(i as i64)),
                }),
                ..Default::default()
            }],
            ..Default::default()
        })
        .collect();
    let body = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "POST /v1/logs HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/x-protobuf\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(&body).ok()?;
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.split_whitespace().nth(1).and_then(|c| c.parse().ok())
}

#[test]
fn ten_thousand_idle_connections_are_capped_timed_out_and_real_clients_are_served() {
    let _heavy = heavy();
    let dir = TestDir::new("input-flood");
    let rx = Receiver::keeping();
    let (otlp, forward) = (free_port(), free_port());
    let sources = format!(
        "[[sources]]\nname = \"app-otlp\"\ntype = \"otlp\"\naddress = \"127.0.0.1:{otlp}\"\nread_timeout = \"2s\"\nmax_connections = {MAX_CONNECTIONS}\n\n\
         [[sources]]\nname = \"app-fwd\"\ntype = \"forward\"\naddress = \"127.0.0.1:{forward}\"\nread_timeout = \"2s\"\nmax_connections = {MAX_CONNECTIONS}"
    );
    let mut agent = network_agent(&dir, &rx, &sources);
    wait_listening(&mut agent, otlp);
    wait_listening(&mut agent, forward);
    let (otlp_addr, fwd_addr) = (
        SocketAddr::from(([127, 0, 0, 1], otlp)),
        SocketAddr::from(([127, 0, 0, 1], forward)),
    );
    assert_eq!(post_otlp(otlp_addr, 0, 10), Some(200), "{}", agent.diag());
    assert!(
        wait_until(Duration::from_secs(20), || rx.records().len() == 10),
        "the first 10 records"
    );
    let before_kib = agent.stat().expect("stat").rss_kib;
    let rss = RssSampler::start(agent.pid);

    // The flood: half a request head to the OTLP input; the first bytes of a Forward message
    // (an array of 3, a tag string's header) to the forward input; then nothing.
    let started = Instant::now();
    let mut idle = Vec::with_capacity(CONNECTIONS);
    let mut failed = 0;
    for i in 0..CONNECTIONS {
        let (addr, partial): (SocketAddr, &[u8]) = if i % 2 == 0 {
            (otlp_addr, b"POST /v1/logs HTTP/1.1\r\nHost: x\r\nX-Half: ")
        } else {
            (fwd_addr, b"\x93\xa3ap")
        };
        match TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(mut s) => {
                let _ = s.write_all(partial);
                idle.push(s);
            }
            Err(_) => failed += 1,
        }
    }
    let flooded = started.elapsed();
    assert!(
        idle.len() >= CONNECTIONS * 9 / 10,
        "{failed} of {CONNECTIONS} connections could not be made"
    );

    // Real clients, while the test still holds every idle socket: an OTLP request retried
    // until the cap has room (the idle ones time out after 2 s), and fluent-logger.
    let mut status = None;
    let served = wait_until(Duration::from_secs(20), || {
        status = post_otlp(otlp_addr, 10, 10);
        status == Some(200)
    });
    let otlp_served_after = started.elapsed();
    assert!(
        served,
        "no OTLP request accepted within 20 s (last: {status:?})\n{}",
        agent.diag()
    );
    let logger = Command::new("python3")
        .args([FORWARD_CLIENT, "logger", &forward.to_string(), "1000", "100000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let out = logger.wait_with_output().expect("wait for fluent-logger");
    assert!(
        out.status.success(),
        "fluent-logger failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        wait_until(Duration::from_secs(30), || rx.records().len() == 1020),
        "{} of 1,020 records arrived\n{}",
        rx.records().len(),
        agent.diag()
    );

    // Every idle connection is closed by the agent: at once past the cap, the rest after
    // read_timeout.
    let all_closed = wait_until(Duration::from_secs(20), || {
        idle.iter().filter(|s| !closed_by_peer(s)).count() == 0
    });
    let still_open = idle.iter().filter(|s| !closed_by_peer(s)).count();
    assert!(all_closed, "{still_open} idle connections still open after 20 s");
    let closed_after = started.elapsed();
    let m = agent.metrics().expect("metrics");
    for source in ["app-otlp", "app-fwd"] {
        let refused = m
            .get_with("tailship_input_connections_refused_total", source)
            .unwrap_or(0.0);
        assert!(
            refused >= (CONNECTIONS / 2 - MAX_CONNECTIONS) as f64 * 0.9,
            "{source}: {refused} connections refused at the cap\n{}",
            m.text
        );
        let open = m.get_with("tailship_input_connections", source).unwrap_or(-1.0);
        assert!(
            open <= 1.0,
            "{source}: {open} connections still counted open\n{}",
            m.text
        );
    }
    for s in &idle {
        let _ = s.shutdown(Shutdown::Both);
    }
    drop(idle);
    let (peak_kib, _) = rss.finish();
    eprintln!(
        "input flood: {CONNECTIONS} connections in {flooded:?}; OTLP served after {otlp_served_after:?}; all idle closed after {closed_after:?}; RSS {before_kib} KiB before, peak {peak_kib} KiB"
    );
    assert!(
        peak_kib < before_kib + (48 << 10),
        "RSS grew from {before_kib} KiB to {peak_kib} KiB"
    );
    assert!(agent.alive(), "{}", agent.diag());
    agent.sigterm();
    assert_eq!(agent.wait_exit(Duration::from_secs(20)), Some(0), "{}", agent.diag());
}
