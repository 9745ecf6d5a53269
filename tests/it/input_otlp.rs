//! The `otlp` input against the OpenTelemetry Python SDK (its stdlib logging bridge and the
//! OTLP exporters over HTTP and gRPC, from PyPI; `.ci/run` installs them): numbered records
//! arrive with body, severity and attributes; `kill -9` while the SDK sends loses nothing it
//! saw acknowledged; bad requests get clear answers and are counted; a full spool pushes back
//! with 429 and Retry-After, and nothing accepted is lost once the collector is back; the
//! collector down for 20 s while the SDK sends: pushback, nothing acknowledged lost, RSS bounded.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::logs::v1::{ExportLogsServiceRequest, ExportLogsServiceResponse};
use opentelemetry_proto::tonic::common::v1::{any_value::Value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs};
use prost::Message;

use crate::util::*;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/otlp_client.py");
const GRPC_PUSH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/otlp_grpc_push.py");

/// An agent with one `otlp` source on `http` (and `grpc`), shipping NDJSON to `rx`.
fn start(dir: &TestDir, rx: &Receiver, http: u16, grpc: Option<u16>, extra: &str) -> Agent {
    let grpc = grpc.map_or(String::new(), |p| format!("grpc_address = \"127.0.0.1:{p}\"\n"));
    let source =
        format!("[[sources]]\nname = \"app-otlp\"\ntype = \"otlp\"\naddress = \"127.0.0.1:{http}\"\n{grpc}{extra}");
    let mut agent = network_agent(dir, rx, &source);
    wait_listening(&mut agent, http);
    agent
}

/// Runs the SDK client in the background: `count` records from `first`, their seqs appended
/// to `acked` as the exporter reports them exported.
fn client(protocol: &str, endpoint: &str, count: u64, first: u64, acked: &std::path::Path) -> Child {
    Command::new("python3")
        .args([CLIENT, protocol, endpoint, &count.to_string(), &first.to_string()])
        .arg(acked)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

#[test]
fn sdk_records_over_http_and_grpc_arrive_with_body_severity_and_attributes() {
    const HTTP: u64 = 100_000;
    const GRPC: u64 = 20_000;
    let _heavy = heavy();
    let dir = TestDir::new("otlp-sdk");
    let rx = Receiver::keeping();
    let (http, grpc) = (free_port(), free_port());
    let mut agent = start(&dir, &rx, http, Some(grpc), "");
    let acked = dir.join("acked");
    let a = client("http", &format!("http://127.0.0.1:{http}"), HTTP, 0, &acked);
    let b = client("grpc", &format!("127.0.0.1:{grpc}"), GRPC, HTTP, &acked);
    finish_client(a, "the OTLP client");
    finish_client(b, "the OTLP client");
    assert_eq!(acked_seqs(&acked).len() as u64, HTTP + GRPC, "every batch acknowledged");
    wait_progress(Some(&mut agent), "every record", STALL, LIMIT, || {
        let n = by_seq(&rx).len() as u64;
        (n, n >= HTTP + GRPC)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let got = by_seq(&rx);
    for seq in 0..HTTP + GRPC {
        let r = &got[&seq];
        let level = ["info", "warn", "error"][(seq % 3) as usize];
        assert_eq!(r.message, format!("otlp record {seq}"), "{}", r.brief());
        assert_eq!(r.str("level"), Some(level), "{}", r.brief());
        assert_eq!(r.field("tag").and_then(|v| v.as_str()), Some("otlp"), "{}", r.brief());
        let service = r.field("resource").and_then(|v| v.get("service.name"));
        assert_eq!(service.and_then(|v| v.as_str()), Some("webapp"), "{}", r.brief());
        assert!(r.str("timestamp").is_some_and(|t| t.starts_with("20")), "{}", r.brief());
    }
    let m = agent.metrics().expect("metrics");
    assert_eq!(
        m.get_with("tailship_input_records_accepted_total", "app-otlp"),
        Some((HTTP + GRPC) as f64)
    );
    // Delivered segments are deleted: the spool shrinks to (about) the live segment.
    assert!(
        wait_until(Duration::from_secs(20), || {
            agent
                .metrics()
                .and_then(|m| m.get_with("tailship_input_spool_bytes", "app-otlp"))
                .is_some_and(|b| b < (16 << 20) as f64)
        }),
        "the spool was not reclaimed"
    );
}

#[test]
fn kill9_while_the_sdk_sends_loses_nothing_it_saw_acknowledged() {
    const N: u64 = 60_000;
    let _heavy = heavy();
    let dir = TestDir::new("otlp-kill9");
    let rx = Receiver::keeping();
    let http = free_port();
    let mut agent = start(&dir, &rx, http, None, "");
    let acked = dir.join("acked");
    let c = client("http", &format!("http://127.0.0.1:{http}"), N, 0, &acked);
    for at in [10_000usize, 30_000] {
        assert!(
            wait_until(LIMIT, || acked_seqs(&acked).len() >= at),
            "{at} records acknowledged before the kill\n{}",
            agent.diag()
        );
        agent.kill9();
        agent = start(&dir, &rx, http, None, "");
    }
    finish_client(c, "the OTLP client");
    let acked = acked_seqs(&acked);
    assert!(acked.len() as u64 > 30_000, "{}", acked.len());
    wait_seqs_delivered(&mut agent, &rx, "every acknowledged record", &acked);
}

/// POSTs `body` to the input; (status, headers lower-cased, body).
fn post(addr: SocketAddr, headers: &[(&str, &str)], body: &[u8]) -> io::Result<(u16, String, Vec<u8>)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("POST /v1/logs HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let framed = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !framed("content-length") && !framed("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // A refused body may be cut off by the server's answer: that is not this helper's error.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, head, raw.get(split + 4..).unwrap_or_default().to_vec()))
}

/// A request of `n` records numbered from `first`, each with a body of `pad` bytes.
fn request(first: u64, n: u64, pad: usize) -> Vec<u8> {
    let records = (first..first + n)
        .map(|i| LogRecord {
            time_unix_nano: 1_800_000_000_000_000_000 + i,
            severity_number: 9,
            body: Some(AnyValue {
                value: Some(Value::StringValue(format!("{i} {}", "x".repeat(pad)))),
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
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            scope_logs: vec![ScopeLogs {
                log_records: records,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
    .encode_to_vec()
}

const PROTOBUF: (&str, &str) = ("Content-Type", "application/x-protobuf");

#[test]
fn bad_requests_get_clear_answers_are_counted_and_the_input_keeps_serving() {
    let dir = TestDir::new("otlp-bad");
    let rx = Receiver::keeping();
    let http = free_port();
    let mut agent = start(
        &dir,
        &rx,
        http,
        None,
        "max_message_bytes = 1048576\nmax_line_bytes = 4096",
    );
    let addr = SocketAddr::from(([127, 0, 0, 1], http));
    let (status, _, body) = post(addr, &[PROTOBUF], b"\x0a\xff\xff\xff\xff\x0f garbage").unwrap();
    assert_eq!(status, 400, "malformed protobuf");
    assert!(String::from_utf8_lossy(&body).contains("ExportLogsServiceRequest"));
    let (status, _, _) = post(addr, &[("Content-Type", "application/json")], b"{\"resourceLogs\": 7}").unwrap();
    assert_eq!(status, 400, "malformed JSON");
    let (status, _, _) = post(addr, &[("Content-Type", "text/plain")], b"hello").unwrap();
    assert_eq!(status, 415, "another content type");
    // 100 MB announced: refused from its length, before it is read.
    let chunk = vec![0u8; 4 << 20];
    let (status, _, _) = post(addr, &[PROTOBUF, ("Content-Length", "104857600")], &chunk).unwrap();
    assert_eq!(status, 413, "a 100 MB body");
    // The same without a length (chunked): refused once it passes the cap.
    let mut chunked = Vec::new();
    for _ in 0..2 {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(&chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let (status, _, _) = post(addr, &[PROTOBUF, ("Transfer-Encoding", "chunked")], &chunked).unwrap_or_default();
    assert!(status == 413 || status == 400, "chunked over the cap: {status}");
    // A record too long for a spool line is refused alone, with the reason.
    let mut req = ExportLogsServiceRequest::decode(&request(0, 2, 10)[..]).unwrap();
    let big = ExportLogsServiceRequest::decode(&request(2, 1, 8000)[..]).unwrap();
    req.resource_logs[0].scope_logs[0]
        .log_records
        .extend(big.resource_logs[0].scope_logs[0].log_records.clone());
    let (status, _, body) = post(addr, &[PROTOBUF], &req.encode_to_vec()).unwrap();
    assert_eq!(status, 200);
    let answer = ExportLogsServiceResponse::decode(&body[..]).unwrap();
    let partial = answer.partial_success.expect("a partial success");
    assert_eq!(partial.rejected_log_records, 1);
    assert!(
        partial.error_message.contains("max_line_bytes"),
        "{}",
        partial.error_message
    );
    assert!(
        wait_until(Duration::from_secs(20), || by_seq(&rx).len() == 2),
        "the two good records"
    );
    let m = agent.metrics().expect("metrics");
    assert_eq!(
        m.get_with("tailship_input_requests_rejected_total", "app-otlp"),
        Some(5.0),
        "{}",
        m.text
    );
    assert_eq!(
        m.get_with("tailship_input_records_rejected_total", "app-otlp"),
        Some(1.0)
    );
    assert!(agent.alive(), "{}", agent.diag());
}

#[test]
fn a_full_spool_pushes_back_and_nothing_accepted_is_lost() {
    let dir = TestDir::new("otlp-full");
    let mut rx = Receiver::keeping();
    rx.stop();
    let http = free_port();
    let mut agent = start(&dir, &rx, http, None, "max_spool_bytes = 1048576");
    let addr = SocketAddr::from(([127, 0, 0, 1], http));
    let (mut accepted, mut seq) = (Vec::new(), 0u64);
    let mut pushed_back = None;
    // Batches of 100 records of ~1 KiB: the 1 MiB spool fills within a dozen.
    for _ in 0..100 {
        let (status, head, _) = post(addr, &[PROTOBUF], &request(seq, 100, 1000)).unwrap();
        match status {
            200 => accepted.extend(seq..seq + 100),
            429 => {
                pushed_back = Some(head);
                break;
            }
            other => panic!("status {other}\n{}", agent.diag()),
        }
        seq += 100;
    }
    let head = pushed_back.expect("a 429 once the spool is full");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(!accepted.is_empty());
    rx.restart();
    wait_seqs_delivered(&mut agent, &rx, "every accepted record", &accepted);
    // Once delivered, the spool has room again.
    assert!(
        wait_until(LIMIT, || post(addr, &[PROTOBUF], &request(seq, 100, 1000))
            .is_ok_and(|(s, _, _)| s == 200)),
        "the spool never had room again\n{}",
        agent.diag()
    );
    let m = agent.metrics().expect("metrics");
    assert!(m.get_with("tailship_input_pushbacks_total", "app-otlp").unwrap_or(0.0) >= 1.0);
}

/// The same over gRPC, with grpcio's generated stub (PyPI): a full spool answers
/// `RESOURCE_EXHAUSTED`, and every call answered OK is delivered once the collector is back.
#[test]
fn a_full_spool_answers_grpc_resource_exhausted_and_nothing_accepted_is_lost() {
    let dir = TestDir::new("otlp-grpc-full");
    let mut rx = Receiver::keeping();
    rx.stop();
    let (http, grpc) = (free_port(), free_port());
    let mut agent = start(&dir, &rx, http, Some(grpc), "max_spool_bytes = 1048576");
    let acked = dir.join("acked");
    let out = Command::new("python3")
        .args([GRPC_PUSH, &format!("127.0.0.1:{grpc}"), "0"])
        .arg(&acked)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "the gRPC client failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("pushed back after"), "{said}");
    let accepted = acked_seqs(&acked);
    assert!(!accepted.is_empty(), "{said}");
    rx.restart();
    wait_seqs_delivered(&mut agent, &rx, "every accepted record", &accepted);
    let m = agent.metrics().expect("metrics");
    assert!(m.get_with("tailship_input_pushbacks_total", "app-otlp").unwrap_or(0.0) >= 1.0);
    eprintln!(
        "otlp gRPC, full spool: {} records accepted, then {said}",
        accepted.len()
    );
}

/// The outage: the collector is down for 20 s while the SDK sends. Once the 1 MiB
/// spool is full the agent answers 429 with `Retry-After`; the exporter retries and, after its
/// six tries, gives up on those batches (it never saw them acknowledged). Every record the
/// client saw acknowledged, and every record the agent counted as accepted, arrives once the
/// collector is back; the agent's RSS stays bounded while it pushes back (the backlog is on
/// disk, not in memory).
#[test]
fn the_collector_down_for_20s_while_the_sdk_sends_pushes_back_loses_nothing_acknowledged() {
    const N: u64 = 100_000;
    const OUTAGE: Duration = Duration::from_secs(20);
    /// Peak RSS allowed: the agent's usual ~30 MiB with room for the runtime's buffers; a
    /// backlog kept in memory would pass it (100,000 records are ~25 MB of spool lines).
    const MAX_HWM_KIB: u64 = 64 << 10;
    let _heavy = heavy();
    let dir = TestDir::new("otlp-outage");
    let mut rx = Receiver::keeping();
    rx.stop();
    let down = std::time::Instant::now();
    let http = free_port();
    let mut agent = start(&dir, &rx, http, None, "max_spool_bytes = 1048576");
    let acked = dir.join("acked");
    let c = client("http", &format!("http://127.0.0.1:{http}"), N, 0, &acked);
    let pushbacks = |agent: &Agent| {
        agent
            .metrics()
            .and_then(|m| m.get_with("tailship_input_pushbacks_total", "app-otlp"))
            .unwrap_or(0.0)
    };
    assert!(
        wait_until(OUTAGE, || pushbacks(&agent) >= 1.0),
        "no pushback within the outage\n{}",
        agent.diag()
    );
    let acked_at_pushback = acked_seqs(&acked).len();
    let mut hwm = 0;
    while down.elapsed() < OUTAGE {
        assert!(agent.alive(), "the agent died during the outage\n{}", agent.diag());
        if let Some((_, h)) = proc_mem_kib(agent.pid) {
            hwm = hwm.max(h);
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let refused = pushbacks(&agent);
    rx.restart();
    finish_client(c, "the OTLP client");
    let acked = acked_seqs(&acked);
    // The exporter gave up on what was pushed back for longer than its retries: fewer
    // acknowledged than sent, and most of them after the collector came back.
    assert!(
        acked.len() < N as usize,
        "the client saw no pushback: {} acknowledged",
        acked.len()
    );
    assert!(acked.len() > acked_at_pushback, "nothing acknowledged after the outage");
    wait_seqs_delivered(&mut agent, &rx, "every acknowledged record", &acked);
    let m = agent.metrics().expect("metrics");
    let accepted = m
        .get_with("tailship_input_records_accepted_total", "app-otlp")
        .expect("records accepted") as usize;
    assert!(
        wait_until(STALL, || by_seq(&rx).len() >= accepted),
        "{} records delivered, {accepted} accepted\n{}",
        by_seq(&rx).len(),
        agent.diag()
    );
    if let Some((_, h)) = proc_mem_kib(agent.pid) {
        hwm = hwm.max(h);
    }
    assert!(hwm <= MAX_HWM_KIB, "peak RSS {hwm} KiB over {MAX_HWM_KIB}");
    println!(
        "otlp, collector down {}s: {refused} requests pushed back, {} of {N} records acknowledged \
         ({acked_at_pushback} before the first pushback), {accepted} accepted and all delivered, \
         agent peak RSS {:.1} MiB",
        OUTAGE.as_secs(),
        acked.len(),
        hwm as f64 / 1024.0
    );
}
