//! The `http` sink against a real HTTP server on 127.0.0.1 (`http_server`): a collector that
//! fails for a while (500s, then 429 with `Retry-After`), one that rejects a batch (400 →
//! dead-letter file), one that never answers (timeouts), gzip/zstd/JSON-array bodies, auth
//! headers, and `kill -9` while the sink is retrying.

use std::fs;
use std::time::{Duration, Instant};

use crate::http_server::*;
use crate::util::*;

fn write_lines(path: &std::path::Path, tag: &str, n: u64) {
    fs::write(path, corpus().lines(tag, 0, n)).unwrap();
}

fn wait_all(agent: &mut Agent, rx: &HttpReceiver, tag: &str, n: u64, what: &str) {
    wait_progress(Some(agent), what, STALL, LIMIT, || {
        let u = rx.unique(tag);
        (u, u >= n)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
}

#[test]
fn http_500s_then_429_retry_after_then_200_delivers_every_record_once() {
    const N: u64 = 3000;
    let dir = TestDir::new("http-retry");
    let logs = dir.subdir("logs");
    write_lines(&logs.join("a.log"), "r", N);
    let first = std::sync::Mutex::new(None::<Instant>);
    let mut throttled = 0;
    let rx = HttpReceiver::start(
        false,
        Box::new(move |seen| {
            let t0 = *first.lock().unwrap().get_or_insert(seen.at);
            if seen.at.duration_since(t0) < Duration::from_secs(10) {
                Reply::Status(500, vec![], "collector warming up".into())
            } else if throttled < 2 {
                throttled += 1;
                Reply::Status(429, vec![("Retry-After", "2".into())], "slow down".into())
            } else {
                Reply::Status(200, vec![], "{}".into())
            }
        }),
    );
    let cfg = http_config(
        &dir,
        &[format!("{}/*.log", logs.display())],
        &rx.url("/ingest"),
        &["retry = { initial_backoff = \"100ms\", max_backoff = \"1s\" }"],
    );
    let cfg = cfg.batch("{ max_events = 500, max_bytes = 1048576, linger_ms = 50 }");
    let mut agent = Agent::start(&dir, &cfg);
    wait_all(&mut agent, &rx, "r", N, "every record after the outage");
    let m = agent.metrics().expect("metrics");
    stop_clean_http(&mut agent);

    let r = rx.check("r", N);
    assert_eq!(r.missing, 0, "{r}");
    assert_eq!(r.duplicates, 0, "a record delivered once: {r}");
    assert_eq!(r.id_changes + r.id_collisions, 0, "{r}");
    assert!(m.get_with("tailship_http_requests_total", "status=\"5xx\"").unwrap() >= 5.0);
    assert_eq!(m.get_with("tailship_http_requests_total", "status=\"4xx\""), Some(2.0));
    assert!(m.get_with("tailship_send_retries_total", "sink=\"out\"").unwrap() >= 7.0);
    assert!(
        m.get_with("tailship_http_request_duration_seconds_count", "sink=\"out\"")
            .unwrap()
            >= 8.0
    );

    // Retry-After: 2 was honoured: after each 429, no request for the next ~2 s.
    let reqs = rx.requests();
    for (i, r) in reqs.iter().enumerate().filter(|(_, r)| r.status == 429) {
        if let Some(next) = reqs[i + 1..].first() {
            let gap = next.at.duration_since(r.at);
            // With concurrency 2, the other in-flight request may retry on its own schedule;
            // what must hold is that *this* batch's next try (same first record) waited.
            let again = reqs[i + 1..].iter().find(|n| n.records.first() == r.records.first());
            if let Some(again) = again {
                let gap2 = again.at.duration_since(r.at);
                assert!(
                    gap2 >= Duration::from_millis(1900),
                    "retried after {gap2:?} (next request {gap:?})"
                );
            }
        }
    }
}

#[test]
fn http_400_for_one_batch_dead_letters_it_and_the_checkpoint_moves_on() {
    const N: u64 = 1000;
    let dir = TestDir::new("http-400");
    let logs = dir.subdir("logs");
    write_lines(&logs.join("a.log"), "d", N);
    let body = format!("mapping error: field [level] {}", "x".repeat(1000));
    let rx = HttpReceiver::start(
        true,
        Box::new(move |seen| {
            if seen.n == 2 {
                Reply::Status(400, vec![], body.clone())
            } else {
                Reply::Status(200, vec![], "{}".into())
            }
        }),
    );
    let cfg = http_config(
        &dir,
        &[format!("{}/*.log", logs.display())],
        &rx.url("/ingest"),
        &["concurrency = 1"],
    );
    let cfg = cfg.batch("{ max_events = 100, max_bytes = 1048576, linger_ms = 50 }");
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "accepted + dead-lettered = all", STALL, LIMIT, || {
        let n = rx.unique("d") + dead_letters(&cfg).len() as u64;
        (n, n >= N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    let file_len = fs::metadata(logs.join("a.log")).unwrap().len();
    wait_progress(
        Some(&mut agent),
        "the checkpoint at the end of the file",
        STALL,
        LIMIT,
        || {
            let off = checkpoint_offsets(&cfg).iter().map(|(_, o)| *o).max().unwrap_or(0);
            (off, off == file_len)
        },
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    let m = agent.metrics().expect("metrics");
    stop_clean_http(&mut agent);

    let rejected = rx.rejected_ids();
    assert_eq!(rejected.len(), 100, "one batch of 100 was rejected");
    let dead: Vec<serde_json::Value> = dead_letters(&cfg);
    let dead_ids: std::collections::HashSet<String> =
        dead.iter().map(|r| r["id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(
        dead_ids, rejected,
        "the dead-letter file holds exactly the rejected batch"
    );
    assert!(dead
        .iter()
        .all(|r| r["message"].as_str().is_some_and(|m| m.starts_with("d "))));
    let r = rx.check("d", N);
    assert_eq!(r.unique, N - 100, "everything else delivered: {r}");
    assert_eq!(r.duplicates, 0, "{r}");
    assert_eq!(
        m.get_with("tailship_dead_letter_records_total", "sink=\"out\""),
        Some(100.0)
    );
    assert_eq!(m.get_with("tailship_http_requests_total", "status=\"4xx\""), Some(1.0));
    assert_eq!(m.get_with("tailship_send_retries_total", "sink=\"out\""), Some(0.0));
    let log = agent.stderr();
    assert!(
        log.contains("mapping error: field [level]"),
        "the answer's body is logged"
    );
    assert!(
        !log.contains(&"x".repeat(600)),
        "only the first 512 bytes of the body are logged"
    );
}

#[test]
fn http_server_that_never_answers_times_out_retries_and_loses_nothing() {
    const N: u64 = 60_000;
    let dir = TestDir::new("http-hang");
    let logs = dir.subdir("logs");
    write_lines(&logs.join("a.log"), "h", N);
    let file_len = fs::metadata(logs.join("a.log")).unwrap().len();
    let answering = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let a = answering.clone();
    let rx = HttpReceiver::start(
        false,
        Box::new(move |_| {
            if a.load(std::sync::atomic::Ordering::SeqCst) {
                Reply::Status(200, vec![], "{}".into())
            } else {
                Reply::Hang
            }
        }),
    );
    let cfg = http_config(
        &dir,
        &[format!("{}/*.log", logs.display())],
        &rx.url("/ingest"),
        &[
            "timeout = \"1s\"",
            "retry = { initial_backoff = \"100ms\", max_backoff = \"500ms\" }",
        ],
    )
    .top("max_inflight_bytes = 1048576");
    let mut agent = Agent::start(&dir, &cfg);
    let rss = RssSampler::start(agent.pid);
    let addr = agent.metrics_addr.expect("metrics address");
    let timeouts = || {
        Metrics::fetch(addr)
            .ok()
            .and_then(|m| m.get_with("tailship_http_requests_total", "status=\"error\""))
            .unwrap_or(0.0) as u64
    };
    wait_progress(Some(&mut agent), "requests timing out", STALL, LIMIT, || {
        let n = timeouts();
        (n, n >= 4)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    let m = agent.metrics().expect("metrics");
    let errors = m
        .get_with("tailship_http_requests_total", "status=\"error\"")
        .unwrap_or(0.0);
    assert!(errors >= 4.0, "requests time out and are retried: {errors}");
    assert_eq!(rx.unique("h"), 0);
    // The tailer stopped at its budget (which one read of 256 KiB may cross) rather than
    // reading the whole file into memory. The request bodies of the batches in flight
    // (`concurrency` = 2, each at most `max_bytes` = 1 MiB and one record) are charged to the
    // budget too, once made from records already read: they may take it past the cap.
    let inflight = m.get("tailship_inflight_bytes").unwrap();
    let bound = 1048576 + (256 << 10) + 2 * (1048576 + (64 << 10));
    assert!(inflight <= bound as f64, "in flight {inflight} > {bound}");
    assert!(
        m.get("tailship_bytes_read_total").unwrap() < file_len as f64,
        "a stuck collector stops the reading"
    );

    answering.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_all(&mut agent, &rx, "h", N, "every record once the collector answers");
    let (peak_kib, _) = rss.finish();
    stop_clean_http(&mut agent);
    let r = rx.check("h", N);
    assert_eq!(r.missing, 0, "{r}");
    assert!(peak_kib < 96 * 1024, "peak RSS {peak_kib} KiB");
}

#[test]
fn http_bodies_gzip_zstd_and_json_array_decode_to_the_same_records_with_auth_headers() {
    const N: u64 = 700;
    let dir = TestDir::new("http-codecs");
    let logs = dir.subdir("logs");
    write_lines(&logs.join("a.log"), "c", N);
    let token_file = dir.join("token");
    fs::write(&token_file, "s3cr3t-t0ken\n").unwrap();
    let mut runs = Vec::new();
    for (i, (compression, encoding)) in [
        ("none", "ndjson"),
        ("gzip", "ndjson"),
        ("zstd", "ndjson"),
        ("gzip", "json_array"),
    ]
    .into_iter()
    .enumerate()
    {
        let rx = HttpReceiver::ok(true);
        let sub = TestDir::new(&format!("http-codecs-{i}"));
        let token_line = format!(
            "auth = {{ strategy = \"bearer\", token_file = {} }}",
            q(&token_file.to_string_lossy())
        );
        let cfg = http_config(
            &sub,
            &[format!("{}/*.log", logs.display())],
            &rx.url("/ingest"),
            &[
                &format!("compression = \"{compression}\""),
                "headers = { \"X-Tenant\" = \"team-a\" }",
                &token_line,
            ],
        )
        .encoding(encoding);
        let mut agent = Agent::start(&sub, &cfg);
        wait_all(&mut agent, &rx, "c", N, &format!("{compression}/{encoding}"));
        let m = agent.metrics().expect("metrics");
        stop_clean_http(&mut agent);
        assert!(rx.decode_errors().is_empty(), "{:?}", rx.decode_errors());
        for req in rx.requests() {
            let want_encoding = if compression == "none" { "" } else { compression };
            assert_eq!(req.content_encoding, want_encoding);
            let want_type = if encoding == "ndjson" {
                "application/x-ndjson"
            } else {
                "application/json"
            };
            assert_eq!(req.content_type, want_type);
            assert_eq!(req.authorization, "Bearer s3cr3t-t0ken");
            assert!(req.headers.contains(&("x-tenant".into(), "team-a".into())));
        }
        assert!(!agent.stderr().contains("s3cr3t"), "the token is never logged");
        let raw = m
            .get_with("tailship_http_bytes_uncompressed_total", "sink=\"out\"")
            .unwrap();
        let sent = m
            .get_with("tailship_http_bytes_compressed_total", "sink=\"out\"")
            .unwrap();
        if compression == "none" {
            assert!(sent >= raw, "{sent} < {raw}");
        } else {
            assert!(sent * 2.0 < raw, "{compression}: {sent} bytes sent for {raw}");
        }
        let mut records: Vec<String> = rx.records().iter().map(|r| r.json.to_string()).collect();
        records.sort();
        assert_eq!(records.len() as u64, N);
        runs.push(records);
    }
    // The observed time differs between runs; everything else must be identical.
    let strip = |v: &[String]| -> Vec<String> {
        v.iter()
            .map(|r| {
                let mut j: serde_json::Value = serde_json::from_str(r).unwrap();
                j.as_object_mut().unwrap().remove("timestamp");
                j.as_object_mut().unwrap().remove("observed_timestamp");
                j.to_string()
            })
            .collect()
    };
    for run in &runs[1..] {
        assert_eq!(strip(run), strip(&runs[0]));
    }
}

#[test]
fn http_kill9_while_retrying_then_restart_delivers_every_record() {
    const N: u64 = 5000;
    let dir = TestDir::new("http-kill9");
    let logs = dir.subdir("logs");
    write_lines(&logs.join("a.log"), "k", N);
    // The first three batches are accepted (the checkpoint moves), then the collector fails.
    let rx = HttpReceiver::start(
        false,
        Box::new(|seen| {
            if seen.n < 3 {
                Reply::Status(200, vec![], "{}".into())
            } else {
                Reply::Status(503, vec![], "unavailable".into())
            }
        }),
    );
    let cfg = http_config(
        &dir,
        &[format!("{}/*.log", logs.display())],
        &rx.url("/ingest"),
        &["retry = { initial_backoff = \"100ms\", max_backoff = \"500ms\" }"],
    );
    let mut cfg = cfg.batch("{ max_events = 250, max_bytes = 1048576, linger_ms = 50 }");
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "retries", STALL, LIMIT, || {
        let n = rx.requests().iter().filter(|r| r.status == 503).count() as u64;
        (n, n >= 6)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    agent.kill9();
    assert!(rx.unique("k") < N, "the kill came while records were still waiting");

    rx.set_policy(Box::new(|_| Reply::Status(200, vec![], "{}".into())));
    cfg.fresh_metrics_port();
    let mut agent = Agent::start(&dir, &cfg);
    wait_all(&mut agent, &rx, "k", N, "every record after the restart");
    stop_clean_http(&mut agent);
    let r = rx.check("k", N);
    assert_eq!(r.missing, 0, "{r}");
    assert_eq!(r.id_changes, 0, "replayed records keep their id: {r}");
}

/// SIGTERM and exit 0 (an HTTP sink has no connection for the receiver to see closed).
fn stop_clean_http(agent: &mut Agent) {
    agent.sigterm();
    assert_eq!(
        agent.wait_exit(Duration::from_secs(40)),
        Some(0),
        "exit 0 after SIGTERM"
    );
}
