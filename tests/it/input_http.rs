//! The `http` input against real clients: `curl --data-binary` of NDJSON and of a JSON array,
//! Python's `urllib.request` with gzip (stdlib) → 100,000 records delivered; a malformed line
//! → 400 naming it, counted, nothing of that request delivered; a 100 MB body → 413 and the
//! input serves on; a full spool → 429 with `Retry-After`, and every accepted record arrives
//! once the sink is back; `kill -9` while Python posts: every record answered 200 arrives; a
//! body slower than `read_timeout` → 408; a spool that cannot be written → 503 with
//! `Retry-After`, and the input recovers.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::util::*;

const CLIENT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/http_client.py");
const SOURCE: &str = "app-http";
const PATH: &str = "/ingest";

/// An agent with one `http` source at `port` and `PATH`, shipping NDJSON to `rx`.
fn start(dir: &TestDir, rx: &Receiver, port: u16, extra: &str) -> Agent {
    let source = format!(
        "[[sources]]\nname = \"{SOURCE}\"\ntype = \"http\"\naddress = \"127.0.0.1:{port}\"\npath = \"{PATH}\"\n{extra}"
    );
    let mut agent = network_agent(dir, rx, &source);
    wait_listening(&mut agent, port);
    agent
}

fn record(seq: u64) -> String {
    format!("{{\"message\":\"http record {seq}\",\"seq\":{seq},\"level\":\"warn\",\"nested\":{{\"k\":[1,2]}}}}")
}

fn ndjson(first: u64, n: u64) -> Vec<u8> {
    (first..first + n)
        .map(|s| record(s) + "\n")
        .collect::<String>()
        .into_bytes()
}

fn array(first: u64, n: u64) -> Vec<u8> {
    let items: Vec<String> = (first..first + n).map(record).collect();
    format!("[\n  {}\n]", items.join(",\n  ")).into_bytes()
}

/// `curl --data-binary @file` of `body` with `ctype`; (status, body). Fails loudly when curl
/// is missing.
fn curl(dir: &TestDir, port: u16, ctype: &str, body: &[u8]) -> (u16, String) {
    let file = dir.join("body");
    std::fs::write(&file, body).unwrap();
    let out = Command::new("curl")
        .args(["-sS", "-o", "-", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Content-Type: {ctype}"))
        .arg("--data-binary")
        .arg(format!("@{}", file.display()))
        .arg(format!("http://127.0.0.1:{port}{PATH}"))
        .output()
        .expect("curl runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

fn python(port: u16, count: u64, first: u64, batch: u64, acked: &std::path::Path) -> Child {
    Command::new("python3")
        .args([
            CLIENT,
            &format!("http://127.0.0.1:{port}{PATH}"),
            &count.to_string(),
            &first.to_string(),
            &batch.to_string(),
        ])
        .arg(acked)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 runs")
}

/// `method` of `body` to `path` over a raw connection; (status, head lower-cased, body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<(u16, String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    let framed = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
    if !framed("content-length") && !framed("transfer-encoding") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes())?;
    // A refused body may be cut off by the server's answer: not this helper's error.
    let _ = s.write_all(body);
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(raw.len());
    let head = String::from_utf8_lossy(&raw[..split]).to_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = String::from_utf8_lossy(raw.get(split + 4..).unwrap_or_default()).into_owned();
    Ok((status, head, body))
}

const NDJSON: (&str, &str) = ("Content-Type", "application/x-ndjson");

#[test]
fn curl_and_python_urllib_with_gzip_deliver_100000_records() {
    const CURL_NDJSON: u64 = 40_000;
    const CURL_ARRAY: u64 = 30_000;
    const PYTHON: u64 = 30_000;
    const TOTAL: u64 = CURL_NDJSON + CURL_ARRAY + PYTHON;
    let _heavy = heavy();
    let dir = TestDir::new("http-clients");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "");
    let acked = dir.join("acked");
    let py = python(port, PYTHON, CURL_NDJSON + CURL_ARRAY, 1_000, &acked);
    for first in (0..CURL_NDJSON).step_by(10_000) {
        let (status, body) = curl(&dir, port, "application/x-ndjson", &ndjson(first, 10_000));
        assert_eq!(
            (status, body.as_str()),
            (200, "{\"accepted\":10000}"),
            "{}",
            agent.diag()
        );
    }
    for first in (CURL_NDJSON..CURL_NDJSON + CURL_ARRAY).step_by(10_000) {
        let (status, body) = curl(&dir, port, "application/json", &array(first, 10_000));
        assert_eq!(
            (status, body.as_str()),
            (200, "{\"accepted\":10000}"),
            "{}",
            agent.diag()
        );
    }
    finish_client(py, "the http client");
    assert_eq!(
        acked_seqs(&acked).len() as u64,
        PYTHON,
        "every Python batch answered 200"
    );
    wait_progress(Some(&mut agent), "every record", STALL, LIMIT, || {
        let n = by_seq(&rx).len() as u64;
        (n, n >= TOTAL)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", agent.diag()));
    let got = by_seq(&rx);
    for seq in 0..TOTAL {
        let r = &got[&seq];
        assert_eq!(r.message, format!("http record {seq}"), "{}", r.brief());
        assert_eq!(r.str("level"), Some("warn"), "{}", r.brief());
        if seq < CURL_NDJSON + CURL_ARRAY {
            let k = r.field("nested").and_then(|v| v.get("k")).and_then(|v| v.get(1));
            assert_eq!(k.and_then(|v| v.as_u64()), Some(2), "{}", r.brief());
        }
    }
    let m = agent.metrics().expect("metrics");
    assert_eq!(
        m.get_with("tailship_input_records_accepted_total", SOURCE),
        Some(TOTAL as f64)
    );
    println!("http: {TOTAL} records (curl NDJSON, curl JSON array, urllib gzip) delivered");
}

#[test]
fn malformed_oversized_and_misrouted_requests_get_clear_answers_and_are_counted() {
    let dir = TestDir::new("http-bad");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "max_request_bytes = 1048576");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    // Line 3 is not an object: 400 naming it; seqs 100..105 must never arrive.
    let mut bad = ndjson(100, 2);
    bad.extend_from_slice(b"[\"an array\"]\n");
    bad.extend_from_slice(&ndjson(102, 3));
    let (status, body) = curl(&dir, port, "application/x-ndjson", &bad);
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("line 3") && body.contains("not a JSON object"), "{body}");
    // 100 MB announced: 413 from its length; the same without a length, once past the cap.
    let chunk = vec![b'x'; 4 << 20];
    let (status, _, _) = request(addr, "POST", PATH, &[NDJSON, ("Content-Length", "104857600")], &chunk).unwrap();
    assert_eq!(status, 413, "a 100 MB body");
    let mut chunked = Vec::new();
    chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
    chunked.extend_from_slice(&chunk);
    chunked.extend_from_slice(b"\r\n0\r\n\r\n");
    let (status, _, _) = request(
        addr,
        "POST",
        PATH,
        &[NDJSON, ("Transfer-Encoding", "chunked")],
        &chunked,
    )
    .unwrap_or_default();
    assert_eq!(status, 413, "a chunked body past the cap");
    let (status, _, _) = request(addr, "POST", PATH, &[NDJSON, ("Content-Encoding", "br")], b"{}").unwrap();
    assert_eq!(status, 415, "another encoding");
    let (status, _, _) = request(addr, "GET", PATH, &[], b"").unwrap();
    assert_eq!(status, 405, "GET");
    let (status, _, _) = request(addr, "POST", "/other", &[NDJSON], &ndjson(0, 1)).unwrap();
    assert_eq!(status, 404, "another path");
    // The input serves on.
    let (status, body) = curl(&dir, port, "application/x-ndjson", &ndjson(0, 5));
    assert_eq!((status, body.as_str()), (200, "{\"accepted\":5}"));
    assert!(wait_until(LIMIT, || by_seq(&rx).len() >= 5), "{}", agent.diag());
    let got = by_seq(&rx);
    assert!(
        (100..105).all(|s| !got.contains_key(&s)),
        "part of the refused request arrived"
    );
    let m = agent.metrics().expect("metrics");
    let rejected = m
        .get_with("tailship_input_requests_rejected_total", SOURCE)
        .unwrap_or(0.0);
    assert!(
        rejected >= 4.0,
        "malformed, 100 MB, chunked past the cap, encoding: {rejected}\n{}",
        m.text
    );
    assert!(agent.alive(), "{}", agent.diag());
}

#[test]
fn a_full_spool_answers_429_and_nothing_accepted_is_lost() {
    let dir = TestDir::new("http-full");
    let mut rx = Receiver::keeping();
    rx.stop();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "max_spool_bytes = 1048576");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let (mut accepted, mut seq) = (Vec::new(), 0u64);
    let mut pushed_back = None;
    for _ in 0..200 {
        let (status, head, _) = request(addr, "POST", PATH, &[NDJSON], &ndjson(seq, 500)).unwrap();
        match status {
            200 => accepted.extend(seq..seq + 500),
            429 => {
                pushed_back = Some(head);
                break;
            }
            other => panic!("status {other}\n{}", agent.diag()),
        }
        seq += 500;
    }
    let head = pushed_back.expect("a 429 once the spool is full");
    assert!(head.contains("retry-after: 1"), "{head}");
    rx.restart();
    wait_seqs_delivered(&mut agent, &rx, "every accepted record", &accepted);
    let refused: HashSet<u64> = (seq..seq + 500).collect();
    assert!(
        by_seq(&rx).keys().all(|s| !refused.contains(s)),
        "the refused request arrived"
    );
    let m = agent.metrics().expect("metrics");
    assert!(m.get_with("tailship_input_pushbacks_total", SOURCE).unwrap_or(0.0) >= 1.0);
    println!(
        "http: {} accepted before the 429, all delivered after the sink came back",
        accepted.len()
    );
}

#[test]
fn kill9_while_python_posts_loses_nothing_answered_200() {
    const N: u64 = 60_000;
    let _heavy = heavy();
    let dir = TestDir::new("http-kill9");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "");
    let acked = dir.join("acked");
    let c = python(port, N, 0, 200, &acked);
    for at in [10_000usize, 30_000] {
        assert!(
            wait_until(LIMIT, || acked_seqs(&acked).len() >= at),
            "{at} records acknowledged before the kill\n{}",
            agent.diag()
        );
        agent.kill9();
        agent = start(&dir, &rx, port, "");
    }
    finish_client(c, "the http client");
    let acked = acked_seqs(&acked);
    assert_eq!(acked.len() as u64, N);
    wait_seqs_delivered(&mut agent, &rx, "every acknowledged record", &acked);
    println!("http kill -9 twice: all {N} records answered 200 delivered");
}

/// A body that does not come within `read_timeout` is answered 408 and counted as rejected;
/// the input serves the next request.
#[test]
fn a_body_slower_than_read_timeout_gets_408_and_the_input_serves_on() {
    let dir = TestDir::new("http-408");
    let rx = Receiver::keeping();
    let port = free_port();
    let mut agent = start(&dir, &rx, port, "read_timeout = \"1s\"");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    // 100 of the 100,000 bytes announced, then nothing: a stalled (or slowloris) client.
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-ndjson\r\nContent-Length: 100000\r\n\r\n"
    );
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(&ndjson(0, 100)[..100]).unwrap();
    let started = std::time::Instant::now();
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    // Read until the whole head and body are in (the server may keep the connection open).
    while !String::from_utf8_lossy(&raw).contains("}") {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) => panic!("no answer within 20 s: {e}\n{}", agent.diag()),
        }
    }
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "answered before the timeout"
    );
    let (status, _, _) = request(addr, "POST", PATH, &[NDJSON], &ndjson(0, 10)).unwrap();
    assert_eq!(status, 200);
    wait_progress(Some(&mut agent), "the next request's records", STALL, LIMIT, || {
        let n = by_seq(&rx).len() as u64;
        (n, n == 10)
    })
    .unwrap_or_else(|e| panic!("{e}"));
    let m = agent.metrics().expect("metrics");
    assert_eq!(m.get_with("tailship_input_requests_rejected_total", SOURCE), Some(1.0));
}

/// A spool that cannot be written (here: the next segment's name taken by a directory, so the
/// roll fails) is answered 503 with `Retry-After`, logged, and nothing of that request kept;
/// once the obstacle is gone the input accepts again and every record answered 200 arrives.
#[test]
fn an_unwritable_spool_answers_503_with_retry_after_and_the_input_recovers() {
    let dir = TestDir::new("http-503");
    let rx = Receiver::keeping();
    let port = free_port();
    // A 4 MiB cap rolls segments at 1 MiB.
    let mut agent = start(&dir, &rx, port, "max_spool_bytes = 4194304");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let spool = dir.subdir("data").join("spool").join(SOURCE);
    let live = std::fs::read_dir(&spool)
        .unwrap_or_else(|e| panic!("{}: {e}", spool.display()))
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .to_str()?
                .strip_suffix(".ndjson")?
                .parse::<u64>()
                .ok()
        })
        .max()
        .expect("a live segment");
    let blocker = spool.join(format!("{:020}.ndjson", live + 1));
    std::fs::create_dir(&blocker).unwrap();
    let (mut accepted, mut seq) = (Vec::new(), 0u64);
    let mut unavailable = None;
    // 500 records of ~90 bytes a request: the 1 MiB segment is full within ~25.
    for _ in 0..100 {
        let (status, head, body) = request(addr, "POST", PATH, &[NDJSON], &ndjson(seq, 500)).unwrap();
        match status {
            200 => accepted.extend(seq..seq + 500),
            503 => {
                unavailable = Some((head, body));
                break;
            }
            other => panic!("status {other}: {body}\n{}", agent.diag()),
        }
        seq += 500;
    }
    let (head, body) = unavailable.expect("a 503 once the segment cannot roll");
    assert!(head.contains("retry-after: 1"), "{head}");
    assert!(body.contains("cannot write its spool"), "{body}");
    assert!(
        agent.logged_within("cannot write the spool", Duration::from_secs(10)),
        "the failure was not logged\n{}",
        agent.diag()
    );
    let refused: HashSet<u64> = (seq..seq + 500).collect();
    seq += 500;
    std::fs::remove_dir(&blocker).unwrap();
    let (status, _, body) = request(addr, "POST", PATH, &[NDJSON], &ndjson(seq, 500)).unwrap();
    assert_eq!(status, 200, "{body}\n{}", agent.diag());
    accepted.extend(seq..seq + 500);
    wait_seqs_delivered(&mut agent, &rx, "every record answered 200", &accepted);
    assert!(
        by_seq(&rx).keys().all(|s| !refused.contains(s)),
        "the request answered 503 arrived"
    );
    let m = agent.metrics().expect("metrics");
    assert!(m.get_with("tailship_input_pushbacks_total", SOURCE).unwrap_or(0.0) >= 1.0);
    assert!(agent.alive(), "{}", agent.diag());
}
