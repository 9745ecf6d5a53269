//! The adapter stage through the real binary, where it crosses process boundaries: `cri`
//! pieces joined across appends with Kubernetes metadata read off a `/var/log/pods` path (node
//! mode), a multiline event held back across `kill -9` and read again whole, the timeout that
//! ships a quiet file's last event, `auto` reporting what it picked, and parse errors counted
//! per source. (The corpus, format by format, is in `formats.rs`.)

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::util::*;

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

/// Waits until the receiver holds `n` records.
fn wait_records(agent: &mut Agent, rx: &Receiver, n: u64) {
    wait_progress(Some(agent), &format!("{n} records"), STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= n)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
}

/// Waits until the agent's metric `name` (labels containing `labels`) reaches `v`.
fn wait_metric(agent: &mut Agent, name: &str, labels: &str, v: f64) {
    let ok = wait_until(Duration::from_secs(30), || {
        agent
            .metrics()
            .and_then(|m| m.get_with(name, labels))
            .is_some_and(|x| x >= v)
    });
    assert!(ok, "{name}{{{labels}}} did not reach {v}: {}", agent.diag());
}

#[test]
fn node_mode_cri_pieces_join_across_appends_with_pod_metadata() {
    let dir = TestDir::new("cri-node");
    // Metadata is read only off the kubelet's own absolute path.
    let pod = KubeletPodDir::new("cri-node", "web-7d9f8", "0f1e2d3c-aaaa", "nginx");
    let log = pod.container_dir.join("0.log");
    fs::write(&log, b"2026-11-25T12:00:00.000000001Z stdout F hello\n").unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", pod.container_dir.display())], &rx).format("cri");
    // Node mode: no pod identity of the agent's own (the DaemonSet sets only NODE_NAME).
    let mut agent = Agent::start_with(&dir, &cfg, &[], |c| {
        c.env("NODE_NAME", "node-7")
            .env("KUBERNETES_SERVICE_HOST", "10.0.0.1")
            .env_remove("POD_NAME")
            .env_remove("POD_NAMESPACE")
            .env_remove("POD_UID")
            .env_remove("CONTAINER_NAME");
    });
    wait_records(&mut agent, &rx, 1);

    // Two pieces of a long stdout line, with a whole stderr line between them; the last piece
    // comes in a later write, so the pieces are read in different chunks.
    append(
        &log,
        b"2026-11-25T12:00:01.000000001Z stdout P part one, \n2026-11-25T12:00:01.000000002Z stderr F oops\n",
    );
    wait_records(&mut agent, &rx, 2);
    wait_metric(&mut agent, "tailship_lines_read_total", "", 3.0);
    append(&log, b"2026-11-25T12:00:01.000000003Z stdout F part two\n");
    wait_records(&mut agent, &rx, 3);
    stop_clean(&mut agent, &rx);

    let recs = rx.records();
    let msgs: Vec<&str> = recs.iter().map(|r| r.message.as_str()).collect();
    assert_eq!(msgs, vec!["hello", "oops", "part one, part two"]);
    let joined = &recs[2];
    assert_eq!(joined.str("stream"), Some("stdout"));
    assert_eq!(joined.str("timestamp"), Some("2026-11-25T12:00:01.000000001Z"));
    let first_len = "2026-11-25T12:00:00.000000001Z stdout F hello\n".len() as u64;
    assert_eq!(joined.offset(), Some(first_len), "the record starts at its first piece");
    let res = &joined.json["resource"];
    assert_eq!(res["k8s.namespace.name"], pod.namespace.as_str());
    assert_eq!(res["k8s.pod.name"], "web-7d9f8");
    assert_eq!(res["k8s.pod.uid"], "0f1e2d3c-aaaa");
    assert_eq!(res["k8s.container.name"], "nginx");
    assert_eq!(res["k8s.node.name"], "node-7");
}

const TRACE_HEAD: &str = "2026-11-25 12:00:00,001 INFO starting\n\
2026-11-25 12:00:01,002 ERROR request failed\n\
java.lang.IllegalStateException: boom\n\
\tat com.example.Handler.run(Handler.java:42)\n";
const TRACE_TAIL: &str = "\tat java.lang.Thread.run(Thread.java:833)\n\
Caused by: java.io.IOException: disk\n\
\t... 1 more\n\
2026-11-25 12:00:02,003 INFO recovered\n";

#[test]
fn a_multiline_event_held_at_kill_9_is_read_again_whole() {
    let dir = TestDir::new("multiline-kill9");
    let logs = dir.subdir("logs");
    let log = logs.join("app.log");
    fs::write(&log, TRACE_HEAD).unwrap();
    let rx = Receiver::keeping();
    let mut cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx)
        .source("multiline = { preset = \"java\", timeout_ms = 600000 }");
    let mut agent = Agent::start(&dir, &cfg);
    wait_records(&mut agent, &rx, 1);
    // The checkpoint stops at the first line of the trace's event, still being collected.
    let event_start = TRACE_HEAD.find("2026-11-25 12:00:01").unwrap() as u64;
    let ok = wait_until(Duration::from_secs(30), || {
        checkpoint_offsets(&cfg).iter().any(|(_, o)| *o == event_start)
    });
    assert!(ok, "checkpoint at the event's start: {:?}", checkpoint_offsets(&cfg));
    agent.kill9();
    assert_eq!(rx.lines(), 1, "the unfinished event was not shipped");

    append(&log, TRACE_TAIL.as_bytes());
    cfg.fresh_metrics_port();
    let mut agent = Agent::start(&dir, &cfg);
    wait_records(&mut agent, &rx, 2);
    stop_clean(&mut agent, &rx);

    let recs = rx.records();
    let msgs: Vec<&str> = recs.iter().map(|r| r.message.as_str()).collect();
    let whole = format!("{}{}", &TRACE_HEAD[event_start as usize..], TRACE_TAIL);
    let mut events: Vec<&str> = whole.trim_end().split("\n2026").collect();
    assert_eq!(events.len(), 2);
    events[1] = "2026-11-25 12:00:02,003 INFO recovered";
    assert_eq!(
        msgs,
        vec!["2026-11-25 12:00:00,001 INFO starting", events[0], events[1]],
        "each event once, the trace whole"
    );
    assert_eq!(recs[1].offset(), Some(event_start));
}

#[test]
fn the_last_event_of_a_quiet_file_ships_after_the_timeout() {
    let dir = TestDir::new("multiline-timeout");
    let logs = dir.subdir("logs");
    fs::write(logs.join("app.log"), TRACE_HEAD).unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx)
        .format("regex")
        .source(r#"pattern = '^(?P<timestamp>\S+ \S+) (?P<level>[A-Z]+) (?P<message>.*)$'"#)
        .source("multiline = { preset = \"java\", timeout_ms = 300 }");
    let mut agent = Agent::start(&dir, &cfg);
    wait_records(&mut agent, &rx, 2);
    stop_clean(&mut agent, &rx);
    let recs = rx.records();
    assert_eq!(recs[1].str("level"), Some("error"));
    assert_eq!(
        recs[1].message,
        "request failed\njava.lang.IllegalStateException: boom\n\tat com.example.Handler.run(Handler.java:42)"
    );
    assert_eq!(recs[1].str("timestamp"), Some("2026-11-25T12:00:01.002000000Z"));
    assert_eq!(rx.lines(), 2);
}

#[test]
fn auto_says_what_it_picked_and_parse_errors_are_counted() {
    // 4 of the access log's 5 lines parse: 80 %, what `auto` asks of a format.
    let dir = TestDir::new("auto");
    let logs = dir.subdir("logs");
    fs::write(
        logs.join("containerd.log"),
        b"2026-11-25T12:00:00Z stdout F one\n2026-11-25T12:00:01Z stderr F two\n",
    )
    .unwrap();
    fs::write(
        logs.join("access.log"),
        b"10.0.0.1 - - [25/Nov/2026:12:00:00 +0000] \"GET / HTTP/1.1\" 503 12 \"-\" \"curl/8\"\n\
10.0.0.2 - - [25/Nov/2026:12:00:01 +0000] \"GET /a HTTP/1.1\" 200 5 \"-\" \"curl/8\"\n\
10.0.0.3 - - [25/Nov/2026:12:00:02 +0000] \"GET /b HTTP/1.1\" 404 0 \"-\" \"curl/8\"\n\
10.0.0.4 - bob [25/Nov/2026:12:00:03 +0000] \"POST /c HTTP/1.1\" 201 2 \"-\" \"curl/8\"\n\
this line is not an access log line\n",
    )
    .unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx).format("auto");
    let mut agent = Agent::start(&dir, &cfg);
    wait_records(&mut agent, &rx, 7);
    wait_metric(&mut agent, "tailship_auto_detected_files_total", "format=\"cri\"", 1.0);
    wait_metric(
        &mut agent,
        "tailship_auto_detected_files_total",
        "format=\"combined\"",
        1.0,
    );
    wait_metric(&mut agent, "tailship_parse_errors_total", "source=\"app\"", 1.0);
    let log = agent.stderr();
    stop_clean(&mut agent, &rx);
    assert!(
        log.contains("auto: detected the file's format") && log.contains("combined"),
        "the pick is logged: {log}"
    );
    let recs = rx.records();
    let access: Vec<&Record> = recs.iter().filter(|r| r.file().ends_with("access.log")).collect();
    assert_eq!(access[0].str("level"), Some("error"), "503 is an error");
    assert_eq!(
        access[0].field("http.response.status_code"),
        Some(&serde_json::json!(503))
    );
    assert_eq!(access[2].str("level"), Some("warn"), "404 is a warning");
    assert_eq!(access[4].message, "this line is not an access log line");
    assert!(access[4].field("parse_error").is_some());
    let cri: Vec<&Record> = recs.iter().filter(|r| r.file().ends_with("containerd.log")).collect();
    assert_eq!(cri[1].str("stream"), Some("stderr"));
}
