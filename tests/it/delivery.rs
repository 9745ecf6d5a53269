//! Plain delivery: every line of several growing files arrives exactly once and in order per
//! file; the NDJSON record carries the keys of the contract with stable ids; `**` globs,
//! excludes and directories created later; the metrics and health endpoints and JSON logs.

use std::fs;
use std::time::{Duration, Instant};

use crate::util::*;

#[test]
fn three_files_300k_lines_each_arrive_exactly_once_in_order() {
    const N: u64 = 300_000;
    let _heavy = heavy();
    let dir = TestDir::new("three-files");
    let logs = dir.subdir("logs");
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let mut agent = Agent::start(&dir, &cfg);

    // The files grow while the agent tails them (full speed, no pacing): discovery of new
    // files, reading behind a writer, and catching up all happen in this one run.
    let t0 = Instant::now();
    let writers: Vec<Writer> = (0..3)
        .map(|i| Writer::spawn(WriterSpec::new(logs.join(format!("f{i}.log")), &format!("f{i}"), N)))
        .collect();
    let bytes: u64 = writers.into_iter().map(|w| w.join().bytes).sum();
    wait_progress(Some(&mut agent), "3 × 300,000 lines", STALL, LIMIT, || {
        let u = rx.unique_total();
        (u, u >= 3 * N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    let took = t0.elapsed();
    // A record counts as sent when its batch settles (`settle` after the receiver's TCP
    // acknowledged it), so the counter may trail the receiver by the last batches.
    let mut m = None;
    wait_until(Duration::from_secs(10), || {
        m = agent.metrics();
        m.as_ref()
            .and_then(|m| m.get_with("tailship_records_sent_total", "sink=\"out\""))
            .is_some_and(|v| v >= (3 * N) as f64)
    });
    stop_clean(&mut agent, &rx);
    eprintln!(
        "3 × {N} lines ({:.1} MB) delivered in {took:.2?} ({:.1} MB/s)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / took.as_secs_f64()
    );

    for i in 0..3 {
        let r = rx.check(&format!("f{i}"), N);
        eprintln!("{r}");
        assert!(
            r.missing == 0 && r.duplicates == 0 && r.out_of_order == 0 && r.beyond == 0,
            "every line exactly once and in order per file: {r}"
        );
        assert_eq!(r.id_collisions, 0, "ids must be unique per line: {r}");
    }
    rx.with_state(|s| {
        assert_eq!(s.bad_json, 0, "records must be valid JSON: {:?}", s.bad_json_examples);
        assert_eq!(
            s.corrupt, 0,
            "messages must be the lines as written: {:?}",
            s.corrupt_examples
        );
    });
    let m = m.expect("metrics endpoint answered");
    assert!(
        m.val("tailship_lines_read_total") >= (3 * N) as f64,
        "lines_read_total {:?}",
        m.get("tailship_lines_read_total")
    );
    assert!(
        m.val("tailship_bytes_read_total") >= bytes as f64,
        "bytes_read_total {:?}",
        m.get("tailship_bytes_read_total")
    );
    assert!(
        m.get_with("tailship_records_sent_total", "sink=\"out\"").unwrap_or(0.0) >= (3 * N) as f64,
        "records_sent_total{{sink=\"out\"}} {:?}",
        m.get_with("tailship_records_sent_total", "sink=\"out\"")
    );
}

#[test]
fn raw_record_has_the_contract_keys_and_stable_ids() {
    let dir = TestDir::new("record-keys");
    let logs = dir.subdir("logs");
    let file = logs.join("a.log");
    // Quotes, a backslash, a tab and non-ASCII: all must survive JSON encoding unchanged.
    let lines = [
        "first line",
        "second \"quoted\" line with a \\ and a \t tab",
        "third: grüße ✓",
    ];
    let mut text = String::new();
    let mut offsets = Vec::new();
    for l in lines {
        offsets.push(text.len() as u64);
        text.push_str(l);
        text.push('\n');
    }
    fs::write(&file, &text).unwrap();

    let rx = Receiver::keeping();
    let mut cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "3 records", STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= 3)
    })
    .unwrap();
    stop_clean(&mut agent, &rx);

    let recs = rx.records();
    assert_eq!(
        recs.len(),
        3,
        "one record per line: {:?}",
        recs.iter().map(|r| r.brief()).collect::<Vec<_>>()
    );
    for (i, r) in recs.iter().enumerate() {
        let j = &r.json;
        assert!(j.is_object(), "record is a JSON object: {}", r.brief());
        assert_eq!(
            r.message,
            lines[i],
            "message is the line without its newline: {}",
            r.brief()
        );
        assert_eq!(r.file(), file.to_str().unwrap(), "file is the path read: {}", r.brief());
        assert_eq!(
            r.offset(),
            Some(offsets[i]),
            "offset is the line's start: {}",
            r.brief()
        );
        assert!(!r.id().is_empty(), "id present: {}", r.brief());
        for key in ["timestamp", "observed_timestamp"] {
            let ts = r
                .str(key)
                .unwrap_or_else(|| panic!("{key} present as a string: {}", r.brief()));
            assert!(
                ts.len() >= 20
                    && ts.as_bytes()[4] == b'-'
                    && ts.as_bytes()[10] == b'T'
                    && (ts.ends_with('Z') || ts.contains('+')),
                "{key} is RFC 3339: {ts:?}"
            );
        }
        if let Some(f) = j.get("fields") {
            assert!(f.is_object(), "fields is an object: {}", r.brief());
        }
        if let Some(res) = j.get("resource") {
            assert!(res.is_object(), "resource is an object: {}", r.brief());
        }
    }
    let ids: Vec<&str> = recs.iter().map(|r| r.id()).collect();
    assert!(
        ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
        "ids differ per line: {ids:?}"
    );

    // A second agent with an empty data dir reads the same file again from 0: the same lines
    // must get the same ids (that is what lets a sink deduplicate replays).
    cfg.data_dir = dir.subdir("data2");
    cfg.fresh_metrics_port();
    let mut again = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut again), "3 more records", STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= 6)
    })
    .unwrap();
    stop_clean(&mut again, &rx);
    let recs = rx.records();
    let ids2: Vec<&str> = recs[3..].iter().map(|r| r.id()).collect();
    assert_eq!(ids, ids2, "ids are deterministic per file and offset");
}

#[test]
fn recursive_globs_excludes_and_new_directories() {
    const N: u64 = 50;
    let dir = TestDir::new("globs");
    let logs = dir.subdir("logs");
    let c = corpus();
    let put = |rel: &str, tag: &str| {
        let p = logs.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, c.lines(tag, 0, N)).unwrap();
    };
    put("a.log", "a");
    put("sub/b.log", "b");
    put("sub/deeper/c.log", "c");
    put("sub/skip.log", "skip");
    put("notes.txt", "txt");

    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/**/*.log", logs.display())], &rx).exclude(&["**/skip.log"]);
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "a, b, c", STALL, LIMIT, || {
        let u = rx.unique("a") + rx.unique("b") + rx.unique("c");
        (u, u >= 3 * N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));

    // Directories created after the start must be watched too (or found by the rescan).
    put("new/deep/d.log", "d");
    put("sub/e.log", "e");
    wait_progress(Some(&mut agent), "d and e (created after start)", STALL, LIMIT, || {
        let u = rx.unique("d") + rx.unique("e");
        (u, u >= 2 * N)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);

    for tag in ["a", "b", "c", "d", "e"] {
        let r = rx.check(tag, N);
        assert!(r.missing == 0 && r.duplicates == 0, "{r}");
    }
    assert_eq!(rx.unique("skip"), 0, "excluded file was shipped");
    assert_eq!(rx.unique("txt"), 0, "file not matching the glob was shipped");
}

#[test]
fn metrics_health_and_json_logs() {
    let dir = TestDir::new("observability");
    let logs = dir.subdir("logs");
    let file = logs.join("a.log");
    fs::write(&file, corpus().lines("a", 0, 10)).unwrap();
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    // Per-file lag series are exported only when asked for.
    let path = dir.join("tailship.toml");
    fs::write(
        &path,
        cfg.render().replace("[metrics]\n", "[metrics]\nper_file = true\n"),
    )
    .unwrap();
    let args: Vec<String> = vec![
        "--config".into(),
        path.to_string_lossy().into_owned(),
        "--log-format".into(),
        "json".into(),
    ];
    let mut agent = Agent::spawn(&dir, &args, cfg.metrics_addr(), |_| {});
    wait_progress(Some(&mut agent), "10 lines", STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= 10)
    })
    .unwrap();
    let addr = agent.metrics_addr.unwrap();

    for path in ["/healthz", "/readyz"] {
        let mut last = None;
        let ok = wait_until(Duration::from_secs(10), || {
            last = Some(http_get(addr, path).map(|(s, _)| s));
            matches!(last, Some(Ok(200)))
        });
        assert!(ok, "GET {path} should answer 200 while running, got {last:?}");
    }

    // Counters are updated per batch, so the last batch may show up a moment after delivery.
    let mut m = Metrics::default();
    wait_until(Duration::from_secs(10), || {
        m = agent.metrics().unwrap_or_default();
        m.get_with("tailship_records_sent_total", "sink=\"out\"").unwrap_or(0.0) >= 10.0
    });
    let names = [
        "tailship_lines_read_total",
        "tailship_bytes_read_total",
        "tailship_records_sent_total",
        "tailship_batches_sent_total",
        "tailship_send_retries_total",
        "tailship_send_errors_total",
        "tailship_inflight_bytes",
        "tailship_open_files",
        "tailship_file_lag_bytes",
        "tailship_lag_bytes",
        "tailship_rotations_total",
        "tailship_truncations_total",
        "tailship_lines_split_total",
        "tailship_invalid_utf8_lines_total",
        "tailship_parse_errors_total",
        "tailship_open_errors_total",
        "tailship_partial_lines_flushed_total",
        "tailship_files_closed_before_eof_total",
    ];
    let absent: Vec<&str> = names.iter().copied().filter(|n| !m.has(n)).collect();
    assert!(
        absent.is_empty(),
        "metrics missing from /metrics: {absent:?}\n{}",
        m.text
    );
    assert!(m.val("tailship_lines_read_total") >= 10.0, "{}", m.text);
    assert!(
        m.get_with("tailship_records_sent_total", "sink=\"out\"").unwrap_or(0.0) >= 10.0,
        "{}",
        m.text
    );
    assert!(
        m.get_with("tailship_batches_sent_total", "sink=\"out\"").unwrap_or(0.0) >= 1.0,
        "{}",
        m.text
    );
    assert!(
        m.val("tailship_open_files") >= 1.0,
        "the tailed file is open: {}",
        m.text
    );
    assert!(
        m.get_with("tailship_file_lag_bytes", &format!("file=\"{}\"", file.display()))
            .is_some(),
        "per-file lag for {}: {}",
        file.display(),
        m.text
    );
    assert!(
        m.get_with("tailship_parse_errors_total", "source=\"app\"").is_some(),
        "{}",
        m.text
    );

    stop_clean(&mut agent, &rx);
    let stderr = agent.stderr();
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(!lines.is_empty(), "the agent logs something to stderr (start, stop)");
    for l in &lines {
        let v: Result<serde_json::Value, _> = serde_json::from_str(l);
        assert!(
            v.as_ref().is_ok_and(|v| v.is_object()),
            "--log-format json: every stderr line is a JSON object: {l:?}"
        );
    }
}

/// In a pod, stderr is a pipe to the container runtime, not a terminal: the default text logs
/// must not carry ANSI colour codes into the log store.
#[test]
fn text_logs_have_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = TestDir::new("no-ansi");
    let logs = dir.subdir("logs");
    std::fs::write(logs.join("a.log"), corpus().lines("a", 0, 10)).unwrap();
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx);
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "10 lines", STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= 10)
    })
    .unwrap();
    stop_clean(&mut agent, &rx);
    let stderr = agent.stderr();
    assert!(!stderr.trim().is_empty(), "the agent logs its start and stop");
    assert!(
        !stderr.contains('\u{1b}'),
        "ANSI escape codes in logs written to a file (colour only when stderr is a terminal):\n{}",
        stderr.lines().take(3).collect::<Vec<_>>().join("\n").escape_debug()
    );
}
