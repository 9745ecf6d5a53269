//! Odd inputs the agent must take in stride: a 10 MiB line, a last line without newline, an
//! empty file, invalid UTF-8, files deleted before they were read, an unreadable file, a
//! directory and a FIFO matching the glob; plus the `json` format and `read_from = "end"`.
//! In each case the other files keep flowing and nothing is silently dropped.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::util::*;

fn append(path: &Path, bytes: &[u8]) {
    let mut f = OpenOptions::new().create(true).append(true).open(path).unwrap();
    f.write_all(bytes).unwrap();
}

fn glob_in(dir: &Path) -> Vec<String> {
    vec![format!("{}/*.log", dir.display())]
}

/// Waits for `n` lines at the receiver, failing with the agent's diagnostics otherwise.
fn wait_lines(agent: &mut Agent, rx: &Receiver, n: u64) {
    wait_progress(Some(agent), &format!("{n} lines"), STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= n)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
}

#[test]
fn a_10mib_line_arrives_as_10_marked_pieces() {
    const LEN: usize = 10 << 20;
    let dir = TestDir::new("long-line");
    let logs = dir.subdir("logs");
    // ASCII only: where the agent cuts (at 1 MiB) is then unambiguous and each piece is valid
    // UTF-8 on its own, so the reassembled text must equal the line byte for byte.
    let ascii: String = corpus()
        .text(LEN)
        .chars()
        .map(|c| if c.is_ascii() { c } else { '?' })
        .collect();
    let mut long = ascii.into_bytes();
    long.resize(LEN, b'.');
    let long = String::from_utf8(long).unwrap();
    let mut content = b"before the long line\n".to_vec();
    content.extend_from_slice(long.as_bytes());
    content.extend_from_slice(b"\nafter the long line\n");
    fs::write(logs.join("long.log"), &content).unwrap();

    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &glob_in(&logs), &rx);
    let mut agent = Agent::start(&dir, &cfg);
    wait_lines(&mut agent, &rx, 12);
    let m = agent.metrics();
    stop_clean(&mut agent, &rx);

    let recs = rx.records();
    let briefs: Vec<String> = recs.iter().map(|r| r.brief()).collect();
    assert_eq!(recs.len(), 12, "1 + 10 pieces + 1 records: {briefs:#?}");
    assert_eq!(recs[0].message, "before the long line");
    assert_eq!(
        recs[11].message, "after the long line",
        "the line after the long one is intact"
    );
    let pieces = &recs[1..11];
    for (i, p) in pieces.iter().enumerate() {
        assert!(
            p.message.len() <= 1 << 20,
            "piece {i} is at most max_line_bytes: {}",
            p.message.len()
        );
        assert_eq!(
            p.mark("truncated"),
            i < 9,
            "piece {i}: truncated mark on every piece but the last: {}",
            p.brief()
        );
        assert_eq!(
            p.mark("continuation"),
            i > 0,
            "piece {i}: continuation mark on every piece but the first: {}",
            p.brief()
        );
    }
    let offsets: Vec<Option<u64>> = pieces.iter().map(|p| p.offset()).collect();
    assert!(
        offsets.windows(2).all(|w| w[0] <= w[1]),
        "pieces arrive in file order: {offsets:?}"
    );
    let joined: String = pieces.iter().map(|p| p.message.as_str()).collect();
    assert_eq!(joined.len(), LEN, "reassembled length");
    assert!(joined == long, "the reassembled pieces equal the original line");
    let m = m.expect("metrics");
    assert!(
        m.val("tailship_lines_split_total") >= 1.0,
        "over-long lines are counted: {:?}",
        m.get("tailship_lines_split_total")
    );
}

#[test]
fn a_last_line_without_newline_ships_after_the_partial_timeout() {
    let dir = TestDir::new("no-newline");
    let logs = dir.subdir("logs");
    let a = logs.join("a.log");
    fs::write(&a, "ready\n").unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &glob_in(&logs), &rx).source("partial_line_timeout = \"1s\"");
    let mut agent = Agent::start(&dir, &cfg);
    wait_lines(&mut agent, &rx, 1);

    let t = Instant::now();
    append(&a, b"complete line\nno newline at the end");
    wait_lines(&mut agent, &rx, 3);
    let latency = t.elapsed();
    let recs = rx.records();
    assert_eq!(recs[1].message, "complete line");
    assert_eq!(
        recs[2].message,
        "no newline at the end",
        "the unterminated line arrives whole: {}",
        recs[2].brief()
    );
    eprintln!("unterminated last line arrived {latency:.2?} after it was written (partial_line_timeout 1s)");
    assert!(
        latency >= Duration::from_millis(800),
        "an unterminated line waits for partial_line_timeout before it is shipped ({latency:?})"
    );
    assert!(latency <= Duration::from_secs(10), "…but not much longer ({latency:?})");

    // A line written in two parts within the timeout is one record, not two.
    let b = logs.join("b.log");
    append(&b, b"first half, ");
    thread::sleep(Duration::from_millis(300));
    append(&b, b"second half\n");
    wait_lines(&mut agent, &rx, 4);
    let m = agent.metrics();
    stop_clean(&mut agent, &rx);
    let recs = rx.records();
    assert_eq!(
        recs.len(),
        4,
        "{:?}",
        recs.iter().map(|r| r.brief()).collect::<Vec<_>>()
    );
    assert_eq!(
        recs[3].message, "first half, second half",
        "a line completed within the timeout is one record"
    );
    let m = m.expect("metrics");
    assert!(
        m.val("tailship_partial_lines_flushed_total") >= 1.0,
        "flushed partial lines are counted: {:?}",
        m.get("tailship_partial_lines_flushed_total")
    );
}

#[test]
fn an_empty_file_is_fine() {
    let dir = TestDir::new("empty");
    let logs = dir.subdir("logs");
    let empty = logs.join("empty.log");
    fs::write(&empty, "").unwrap();
    fs::write(logs.join("good.log"), corpus().lines("good", 0, 100)).unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &glob_in(&logs), &rx);
    let mut agent = Agent::start(&dir, &cfg);
    wait_lines(&mut agent, &rx, 100);
    assert!(agent.alive());
    let m = agent.metrics().expect("metrics");
    assert_eq!(
        m.val("tailship_open_errors_total"),
        0.0,
        "an empty file is not an error"
    );

    // It is tailed like any other file once something is written to it.
    append(&empty, &corpus().lines("late", 0, 5));
    wait_lines(&mut agent, &rx, 105);
    stop_clean(&mut agent, &rx);
    let from_empty: Vec<String> = rx
        .records()
        .iter()
        .filter(|r| r.file() == empty.to_str().unwrap())
        .map(|r| r.message.clone())
        .collect();
    assert_eq!(
        from_empty.len(),
        5,
        "only the lines written later come from the empty file: {from_empty:?}"
    );
    assert_eq!(rx.check("late", 5).missing, 0);
}

#[test]
fn invalid_utf8_is_replaced_and_counted() {
    let dir = TestDir::new("utf8");
    let logs = dir.subdir("logs");
    fs::write(
        logs.join("bad.log"),
        b"valid before\nbad \xff\xfe bytes \xc3( here\nvalid after\n",
    )
    .unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &glob_in(&logs), &rx);
    let mut agent = Agent::start(&dir, &cfg);
    wait_lines(&mut agent, &rx, 3);
    let m = agent.metrics();
    stop_clean(&mut agent, &rx);
    let recs = rx.records();
    assert_eq!(recs.len(), 3, "the line with invalid bytes is shipped, not dropped");
    assert_eq!(recs[0].message, "valid before");
    assert_eq!(recs[2].message, "valid after");
    let bad = &recs[1].message;
    assert!(bad.contains('\u{FFFD}'), "invalid bytes become U+FFFD: {bad:?}");
    assert!(
        bad.starts_with("bad ") && bad.contains(" bytes ") && bad.ends_with("( here"),
        "the valid parts are kept: {bad:?}"
    );
    let m = m.expect("metrics");
    assert!(
        m.val("tailship_invalid_utf8_lines_total") >= 1.0,
        "counted: {:?}",
        m.get("tailship_invalid_utf8_lines_total")
    );
}

#[test]
fn files_deleted_before_they_are_read_do_not_stop_the_others() {
    const GOOD: u64 = 20_000;
    let dir = TestDir::new("deleted");
    let logs = dir.subdir("logs");
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &glob_in(&logs), &rx);
    let mut agent = Agent::start(&dir, &cfg);
    let w = Writer::spawn(WriterSpec::new(logs.join("good.log"), "good", GOOD).rate(5_000));

    // 200 files created and unlinked at once, racing discovery: some are never seen, some are
    // seen but gone before open(), some are opened and must then be drained.
    let c = corpus();
    for i in 0..200u64 {
        let p = logs.join(format!("gone-{i}.log"));
        fs::write(&p, c.lines("gone", i * 20, 20)).unwrap();
        fs::remove_file(&p).unwrap();
        thread::sleep(Duration::from_millis(10));
    }
    w.join();
    wait_progress(Some(&mut agent), "all good lines", STALL, LIMIT, || {
        let u = rx.unique("good");
        (u, u >= GOOD)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    let health = http_get(agent.metrics_addr.unwrap(), "/healthz").map(|(s, _)| s);
    assert!(matches!(health, Ok(200)), "healthy after the deletions: {health:?}");
    stop_clean(&mut agent, &rx);
    let r = rx.check("good", GOOD);
    assert!(r.missing == 0 && r.duplicates == 0, "{r}");
    rx.with_state(|s| {
        assert_eq!(
            s.corrupt, 0,
            "lines of deleted files, if shipped, are intact: {:?}",
            s.corrupt_examples
        )
    });
    eprintln!(
        "lines of deleted files that were shipped anyway: {} of 4000",
        rx.unique("gone")
    );
}

/// A file the agent may not open. Root ignores permission bits, so when the tests run as root
/// (as in CI) the agent is started as uid/gid 65534 ("nobody"): then `chmod 000` really makes
/// open() fail with EACCES, which is the case that matters in production.
#[test]
fn an_unreadable_file_is_logged_once_retried_and_the_others_flow() {
    let dir = TestDir::new("unreadable");
    let as_root = unsafe { libc::geteuid() } == 0;
    let logs = dir.subdir("logs");
    let data = dir.subdir("data");
    if as_root {
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o777)).unwrap();
        fs::set_permissions(&logs, fs::Permissions::from_mode(0o755)).unwrap();
    }
    let good = logs.join("good.log");
    let secret = logs.join("secret.log");
    fs::write(&good, corpus().lines("good", 0, 100)).unwrap();
    fs::write(&secret, corpus().lines("secret", 0, 100)).unwrap();
    fs::set_permissions(&good, fs::Permissions::from_mode(0o644)).unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o000)).unwrap();

    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &glob_in(&logs), &rx).top("rescan_interval = \"1s\"");
    let mut agent = Agent::start_with(&dir, &cfg, &[], |cmd| {
        if as_root {
            cmd.uid(65534).gid(65534);
        }
    });
    wait_progress(Some(&mut agent), "the readable file", STALL, LIMIT, || {
        (rx.unique("good"), rx.unique("good") >= 100)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    let name = secret.to_str().unwrap().to_owned();
    let mentions = |a: &Agent| a.stderr().lines().filter(|l| l.contains(&name)).count();
    assert!(
        wait_until(Duration::from_secs(10), || mentions(&agent) > 0),
        "the unreadable file is logged with its path"
    );
    let m = agent.metrics().expect("metrics");
    assert!(
        m.val("tailship_open_errors_total") >= 1.0,
        "open errors are counted: {:?}",
        m.get("tailship_open_errors_total")
    );

    // Three more rescans: retried, but not logged again each time.
    let first = mentions(&agent);
    thread::sleep(Duration::from_millis(3500));
    let later = mentions(&agent);
    assert_eq!(
        first,
        later,
        "logged once, not on every rescan:\n{}",
        agent.stderr_tail(20)
    );
    append(&good, &corpus().lines("good", 100, 100));
    wait_progress(
        Some(&mut agent),
        "more lines of the readable file",
        STALL,
        LIMIT,
        || (rx.unique("good"), rx.unique("good") >= 200),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    assert_eq!(rx.unique("secret"), 0);

    // Readable again: the next rescan picks it up.
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o644)).unwrap();
    wait_progress(Some(&mut agent), "the file after chmod 644", STALL, LIMIT, || {
        (rx.unique("secret"), rx.unique("secret") >= 100)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);
    assert_eq!(rx.check("secret", 100).missing, 0);
}

#[test]
fn a_directory_matching_the_glob_is_ignored() {
    let dir = TestDir::new("dir-match");
    let logs = dir.subdir("logs");
    let d = dir.subdir("logs/dir.log");
    fs::write(d.join("inner.log"), corpus().lines("inner", 0, 10)).unwrap();
    let good = logs.join("good.log");
    fs::write(&good, corpus().lines("good", 0, 100)).unwrap();
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &glob_in(&logs), &rx).top("rescan_interval = \"1s\"");
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "good lines", STALL, LIMIT, || {
        (rx.unique("good"), rx.unique("good") >= 100)
    })
    .unwrap();
    // After a couple of rescans the agent still tails the good file.
    thread::sleep(Duration::from_millis(2500));
    append(&good, &corpus().lines("good", 100, 100));
    wait_progress(Some(&mut agent), "more good lines", STALL, LIMIT, || {
        (rx.unique("good"), rx.unique("good") >= 200)
    })
    .unwrap();
    let m = agent.metrics().expect("metrics");
    stop_clean(&mut agent, &rx);
    assert_eq!(
        rx.unique("inner"),
        0,
        "files inside the directory do not match `*.log` (one level)"
    );
    assert_eq!(
        m.val("tailship_open_errors_total"),
        0.0,
        "a directory is skipped, not counted as an open error"
    );
}

/// A FIFO whose name matches: open(O_RDONLY) on it would block until a writer shows up, so an
/// agent that opens whatever matches hangs its discovery (and its shutdown). Non-regular files
/// must be skipped.
#[test]
fn a_fifo_matching_the_glob_does_not_block_the_agent() {
    let dir = TestDir::new("fifo");
    let logs = dir.subdir("logs");
    let fifo = logs.join("pipe.log");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o644) }, 0, "mkfifo");
    let good = logs.join("good.log");
    fs::write(&good, corpus().lines("good", 0, 100)).unwrap();
    let rx = Receiver::ndjson();
    let cfg = Config::tcp(&dir, &glob_in(&logs), &rx).top("rescan_interval = \"1s\"");
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "good lines", STALL, LIMIT, || {
        (rx.unique("good"), rx.unique("good") >= 100)
    })
    .unwrap();
    thread::sleep(Duration::from_millis(2500));
    append(&good, &corpus().lines("good", 100, 100));
    fs::write(logs.join("new.log"), corpus().lines("new", 0, 10)).unwrap();
    wait_progress(
        Some(&mut agent),
        "lines written after the FIFO was seen",
        STALL,
        LIMIT,
        || {
            let u = rx.unique("good") + rx.unique("new");
            (u, u >= 210)
        },
    )
    .unwrap();
    stop_clean(&mut agent, &rx);
}

#[test]
fn json_format_lifts_keys_and_marks_parse_errors() {
    let dir = TestDir::new("json");
    let logs = dir.subdir("logs");
    let text = concat!(
        r#"{"timestamp":"2024-05-01T12:00:00Z","level":"warn","message":"hello json","user":"bob","n":3}"#,
        "\n",
        r#"{"ts":"2024-05-01T12:00:01.5Z","severity":"ERROR","msg":"second","nested":{"a":1}}"#,
        "\n",
        "not json at all\n",
        r#"{"time":"2024-05-01T12:00:02Z","level":"info","message":"after"}"#,
        "\n",
    );
    fs::write(logs.join("app.log"), text).unwrap();
    let rx = Receiver::keeping();
    let cfg = Config::tcp(&dir, &glob_in(&logs), &rx).format("json");
    let mut agent = Agent::start(&dir, &cfg);
    wait_lines(&mut agent, &rx, 4);
    let m = agent.metrics();
    stop_clean(&mut agent, &rx);
    let recs = rx.records();
    assert_eq!(recs.len(), 4);
    let (r0, r1, r2, r3) = (&recs[0], &recs[1], &recs[2], &recs[3]);
    assert_eq!(r0.message, "hello json", "{}", r0.brief());
    assert_eq!(r0.str("level"), Some("warn"), "{}", r0.brief());
    assert!(
        r0.str("timestamp").unwrap_or("").starts_with("2024-05-01T12:00:00"),
        "event time lifted: {}",
        r0.brief()
    );
    assert_eq!(
        r0.field("user").and_then(|v| v.as_str()),
        Some("bob"),
        "other keys go to fields: {}",
        r0.brief()
    );
    assert_eq!(r0.field("n").and_then(|v| v.as_i64()), Some(3), "{}", r0.brief());
    for lifted in ["message", "level", "timestamp"] {
        assert!(
            r0.field(lifted).is_none(),
            "{lifted} is lifted, not repeated in fields: {}",
            r0.brief()
        );
    }
    assert_eq!(r1.message, "second", "msg is lifted: {}", r1.brief());
    assert_eq!(r1.str("level"), Some("error"), "severity is normalized: {}", r1.brief());
    assert!(
        r1.str("timestamp").unwrap_or("").starts_with("2024-05-01T12:00:01.5"),
        "ts is lifted: {}",
        r1.brief()
    );
    assert_eq!(
        r1.field("nested").and_then(|n| n.get("a")).and_then(|v| v.as_i64()),
        Some(1),
        "{}",
        r1.brief()
    );
    assert_eq!(
        r2.message,
        "not json at all",
        "a bad line is shipped raw: {}",
        r2.brief()
    );
    assert!(
        r2.field("parse_error").is_some_and(|v| v.is_string()),
        "with a parse_error mark: {}",
        r2.brief()
    );
    assert_eq!(r3.message, "after", "{}", r3.brief());
    let m = m.expect("metrics");
    assert!(
        m.get_with("tailship_parse_errors_total", "source=\"app\"")
            .unwrap_or(0.0)
            >= 1.0,
        "parse errors counted per source: {}",
        m.text
    );
}

#[test]
fn read_from_end_skips_history_but_not_new_files_or_restarts() {
    let dir = TestDir::new("read-from-end");
    let logs = dir.subdir("logs");
    let old = logs.join("old.log");
    fs::write(&old, corpus().lines("hist", 0, 100)).unwrap();
    let rx = Receiver::ndjson();
    let mut cfg = Config::tcp(&dir, &glob_in(&logs), &rx).read_from("end");
    let mut agent = Agent::start(&dir, &cfg);
    // Appending before the agent has positioned itself would make the new lines "history".
    let ready = wait_until(Duration::from_secs(20), || {
        agent.metrics().is_some_and(|m| m.val("tailship_open_files") >= 1.0)
    });
    assert!(ready, "the agent opened old.log (tailship_open_files ≥ 1)");
    append(&old, &corpus().lines("new", 0, 10));
    fs::write(logs.join("fresh.log"), corpus().lines("fresh", 0, 10)).unwrap();
    wait_progress(Some(&mut agent), "new and fresh lines", STALL, LIMIT, || {
        let u = rx.unique("new") + rx.unique("fresh");
        (u, u >= 20)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);

    // While stopped, more lines: a restart resumes at the checkpoint, not at the end.
    append(&old, &corpus().lines("new", 10, 10));
    cfg.fresh_metrics_port();
    let mut agent = Agent::start(&dir, &cfg);
    wait_progress(Some(&mut agent), "lines written while stopped", STALL, LIMIT, || {
        (rx.unique("new"), rx.unique("new") >= 20)
    })
    .unwrap_or_else(|e| panic!("{e}\n{}", rx.summary()));
    stop_clean(&mut agent, &rx);
    assert_eq!(rx.unique("hist"), 0, "history skipped with read_from = end");
    let (n, f) = (rx.check("new", 20), rx.check("fresh", 10));
    assert!(n.missing == 0 && n.duplicates == 0, "{n}");
    assert!(
        f.missing == 0 && f.duplicates == 0,
        "a file created after the start is read from its first byte: {f}"
    );
}
