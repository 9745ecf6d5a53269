//! The adapter formats end to end: each config of `examples/formats/` runs the real agent on a
//! copy of a real log from `tests/data`, and every record that reaches the receiver is
//! checked.
//!
//! The source settings (format, pattern, timestamp_format, multiline, …) are read from the
//! example file itself, so what is tested is what the examples tell users to write; only
//! `include`, `data_dir` and the sink are the test's own.
//!
//! loghub's `*_structured.csv` is the oracle for its nine logs, with the mapping in `loghub.rs`
//! that the parsers' unit tests (`src/adapt/corpus_tests.rs`) use too: time, level, the
//! component/pid/thread fields and the message of every line, messages compared with
//! surrounding whitespace trimmed (loghub strips it). The year-less formats (syslog, logcat) take
//! their year from the agent's clock with the New Year rule (the current year, unless that puts
//! the line more than seven days in the future), so the test places them relative to its own
//! start. A missing data file fails the test, as it does the unit tests.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::loghub;
use crate::util::*;

// ---------------------------------------------------------------------------------------------
// Running an example on corpus files
// ---------------------------------------------------------------------------------------------

fn example_path(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/formats")).join(name)
}

/// A TOML value written inline (strings through `q`, tables as `{ "k" = v, … }`).
fn inline(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => q(s),
        toml::Value::Integer(n) => n.to_string(),
        toml::Value::Float(f) => format!("{f:?}"),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Datetime(d) => d.to_string(),
        toml::Value::Array(a) => format!("[{}]", a.iter().map(inline).collect::<Vec<_>>().join(", ")),
        toml::Value::Table(t) => format!(
            "{{ {} }}",
            t.iter()
                .map(|(k, v)| format!("{} = {}", q(k), inline(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The example's `[[sources]]` entry as the test's source: its format, and every other key
/// except `name`, `include`, `exclude` and `read_from` (which are the test's) as source lines.
fn example_source(name: &str) -> (String, Vec<String>) {
    let path = example_path(name);
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let file: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let sources = file
        .get("sources")
        .and_then(|s| s.as_array())
        .unwrap_or_else(|| panic!("{}: no [[sources]]", path.display()));
    assert_eq!(sources.len(), 1, "{}: one source per example", path.display());
    let src = sources[0].as_table().unwrap();
    let format = src
        .get("format")
        .and_then(|f| f.as_str())
        .unwrap_or_else(|| panic!("{}: no format", path.display()))
        .to_owned();
    let lines = src
        .iter()
        .filter(|(k, _)| !matches!(k.as_str(), "name" | "include" | "exclude" | "read_from" | "format"))
        .map(|(k, v)| format!("{} = {}", q(k), inline(v)))
        .collect();
    (format, lines)
}

/// A file of `tests/data`; panics when it is not there.
fn corpus_file(rel: &str) -> PathBuf {
    let p = corpus_dir().join(rel);
    assert!(p.is_file(), "{} is missing: this test needs it", p.display());
    p
}

/// The lines of a file as the tailer sees them: (offset, text without `\n`); a last line
/// without a newline is a line too.
fn file_lines(bytes: &[u8]) -> Vec<(u64, String)> {
    let mut out = Vec::new();
    let mut start = 0usize;
    while start < bytes.len() {
        let end = memchr::memchr(b'\n', &bytes[start..]).map_or(bytes.len(), |i| start + i);
        out.push((start as u64, String::from_utf8_lossy(&bytes[start..end]).into_owned()));
        start = end + 1;
    }
    out
}

/// A file's lines as the tailer sees them: (offset, text without `\n`).
type Lines = Vec<(u64, String)>;

/// What one run of an example produced.
struct Run {
    /// Per copied file (by corpus-relative name): its path in the test dir and its lines.
    files: Vec<(String, PathBuf, Lines)>,
    records: Vec<Record>,
    /// Taken once every record had arrived.
    metrics: Metrics,
}

impl Run {
    /// Records of one copied file, in offset order.
    fn records_of(&self, path: &Path) -> Vec<&Record> {
        let p = path.to_string_lossy();
        let mut v: Vec<&Record> = self.records.iter().filter(|r| r.file() == p).collect();
        v.sort_by_key(|r| r.offset());
        v
    }

    /// `tailship_parse_errors_total` of the source (exposed from the start, 0 included).
    fn parse_errors(&self) -> Option<f64> {
        self.metrics.get_with("tailship_parse_errors_total", "source=\"app\"")
    }
}

/// Copies `corpus_files` into a fresh test dir, runs the agent with the source of `example`
/// on them, waits for `expected(lines of each file)` records in all, stops it cleanly and
/// returns what arrived.
fn run_example(name: &str, example: &str, corpus_files: &[&str], expected: impl Fn(&[(u64, String)]) -> usize) -> Run {
    let dir = TestDir::new(name);
    let logs = dir.subdir("logs");
    let mut files = Vec::new();
    let mut want = 0;
    for rel in corpus_files {
        let src = corpus_file(rel);
        let bytes = fs::read(&src).unwrap();
        let dst = logs.join(Path::new(rel).file_name().unwrap());
        fs::write(&dst, &bytes).unwrap();
        let lines = file_lines(&bytes);
        want += expected(&lines);
        files.push((rel.to_string(), dst, lines));
    }

    let (format, source_lines) = example_source(example);
    let rx = Receiver::keeping();
    let mut cfg = Config::tcp(&dir, &[format!("{}/*.log", logs.display())], &rx).format(&format);
    for l in &source_lines {
        cfg = cfg.source(l);
    }
    let mut agent = Agent::start(&dir, &cfg);
    let want = want as u64;
    wait_progress(Some(&mut agent), &format!("{want} records"), STALL, LIMIT, || {
        (rx.lines(), rx.lines() >= want)
    })
    .unwrap_or_else(|e| panic!("{example}: {e}\n{}\nconfig:\n{}", rx.summary(), cfg.render()));
    let metrics = agent.metrics().expect("metrics");
    stop_clean(&mut agent, &rx);
    let records = rx.records();
    let bad_json = rx.with_state(|s| s.bad_json);
    assert_eq!(bad_json, 0, "{example}: every record is a JSON line: {}", rx.summary());
    assert_eq!(
        records.len() as u64,
        want,
        "{example}: exactly one record per expected event, no duplicates: {}",
        rx.summary()
    );
    Run {
        files,
        records,
        metrics,
    }
}

// ---------------------------------------------------------------------------------------------
// Reading records
// ---------------------------------------------------------------------------------------------

/// A field by its name as the parser wrote it (`process.pid` as one key), or else as a path of
/// nested objects.
fn field<'r>(r: &'r Record, name: &str) -> Option<&'r Value> {
    let fields = r.json.get("fields")?;
    if let Some(v) = fields.get(name) {
        return Some(v);
    }
    name.split('.').try_fold(fields, |v, k| v.get(k))
}

/// A field's value as text: strings as they are, numbers as written.
fn field_text(r: &Record, name: &str) -> Option<String> {
    field(r, name).map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// The record's `timestamp` in nanoseconds since the epoch.
fn record_time(r: &Record) -> Option<i64> {
    DateTime::parse_from_rfc3339(r.str("timestamp")?)
        .ok()?
        .timestamp_nanos_opt()
}

fn rfc3339(ns: i64) -> String {
    DateTime::<Utc>::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

// ---------------------------------------------------------------------------------------------
// loghub: syslog and regex against the CSVs
// ---------------------------------------------------------------------------------------------

/// The record's spelling of a level as loghub writes it (the record's normalized severities).
fn level(s: &str) -> String {
    match s.to_ascii_lowercase().as_str() {
        "v" | "verbose" | "trace" => "trace",
        "d" | "debug" => "debug",
        "i" | "info" | "notice" => "info",
        "w" | "warn" | "warning" => "warn",
        "e" | "error" | "err" => "error",
        "f" | "fatal" | "crit" | "critical" | "alert" | "emerg" => "fatal",
        _ => panic!("loghub level {s:?} unknown"),
    }
    .to_owned()
}

/// A record's or the oracle's view of one line, for comparison and messages.
#[derive(Debug, PartialEq)]
struct Seen {
    time: Option<String>,
    level: Option<String>,
    fields: Vec<(&'static str, String)>,
    message: String,
}

/// Runs the example config of `loghub/<log>` (see `loghub::LOGS`) on a copy of it and checks
/// every record against the CSV row of its line (found by offset): time, level, the oracle's
/// fields, the trimmed message, no parse error; and no parse error counted.
fn agrees_with_loghub(log: &str) {
    let (_, format, example) = *loghub::LOGS.iter().find(|(l, _, _)| *l == log).unwrap();
    let now_ns = Utc::now().timestamp_nanos_opt().unwrap();
    let rel = format!("loghub/{log}");
    let csv_path = corpus_file(&format!("{rel}_structured.csv"));
    let run = run_example(example.trim_end_matches(".toml"), example, &[&rel], |lines| lines.len());
    assert_eq!(example_source(example).0, format, "{example}: the format under test");
    let rows = loghub::csv(&csv_path);
    let (_, path, lines) = &run.files[0];
    assert_eq!(lines.len(), rows.len(), "{log}: lines vs CSV rows");
    let index: HashMap<u64, usize> = lines.iter().enumerate().map(|(i, (off, _))| (*off, i)).collect();

    let mut seen = vec![0u32; lines.len()];
    let mut bad = Vec::new();
    let mut exact = 0;
    let recs = run.records_of(path);
    assert_eq!(
        recs.len(),
        lines.len(),
        "{log}: every record comes from the copied file"
    );
    for r in recs {
        let Some(&i) = r.offset().and_then(|o| index.get(&o)) else {
            bad.push(format!("a record at no line's offset: {}", r.brief()));
            continue;
        };
        seen[i] += 1;
        let o = loghub::expect(log, &rows[i]);
        exact += usize::from(r.message == o.message);
        let got = Seen {
            time: record_time(r).map(rfc3339),
            level: r.str("level").map(str::to_owned),
            fields: o
                .fields
                .iter()
                .map(|(k, _)| (*k, field_text(r, k).unwrap_or_default()))
                .collect(),
            message: r.message.trim().to_owned(),
        };
        let want = Seen {
            time: Some(rfc3339(o.when.place(now_ns))),
            level: o.level.as_deref().map(level),
            fields: o.fields,
            message: o.message.trim().to_owned(),
        };
        if got != want || field(r, "parse_error").is_some() {
            bad.push(format!(
                "line {}: {}\n  got  {got:?}\n  want {want:?}\n  record {}",
                i + 1,
                lines[i].1,
                r.brief()
            ));
        }
    }
    let missing: Vec<usize> = (0..lines.len()).filter(|&i| seen[i] != 1).map(|i| i + 1).collect();
    println!(
        "{log} via examples/formats/{example}: {}/{} records agree with loghub ({exact} messages identical before trimming)",
        lines.len() - bad.len(),
        lines.len()
    );
    assert!(
        missing.is_empty(),
        "{log}: lines without exactly one record: {:?}",
        &missing[..missing.len().min(20)]
    );
    assert!(
        bad.is_empty(),
        "{log}: {} records disagree with loghub:\n{}",
        bad.len(),
        bad[..bad.len().min(8)].join("\n")
    );
    assert_eq!(run.parse_errors(), Some(0.0), "{log}: no parse errors counted");
}

#[test]
fn linux_syslog_agrees_with_loghub() {
    agrees_with_loghub("Linux_2k.log");
}

#[test]
fn openssh_syslog_agrees_with_loghub() {
    agrees_with_loghub("OpenSSH_2k.log");
}

#[test]
fn hdfs_regex_agrees_with_loghub() {
    agrees_with_loghub("HDFS_2k.log");
}

#[test]
fn zookeeper_regex_agrees_with_loghub() {
    agrees_with_loghub("Zookeeper_2k.log");
}

#[test]
fn spark_regex_agrees_with_loghub() {
    agrees_with_loghub("Spark_2k.log");
}

#[test]
fn hadoop_regex_agrees_with_loghub() {
    agrees_with_loghub("Hadoop_2k.log");
}

#[test]
fn apache_error_regex_agrees_with_loghub() {
    agrees_with_loghub("Apache_2k.log");
}

#[test]
fn healthapp_regex_agrees_with_loghub() {
    agrees_with_loghub("HealthApp_2k.log");
}

#[test]
fn android_regex_agrees_with_loghub() {
    agrees_with_loghub("Android_2k.log");
}

// ---------------------------------------------------------------------------------------------
// combined, java multiline, json
// ---------------------------------------------------------------------------------------------

#[test]
fn apache_combined_ships_every_line_parsed() {
    let run = run_example(
        "combined",
        "apache-combined.toml",
        &["apache-combined/access.log"],
        |l| l.len(),
    );
    let (_, path, lines) = &run.files[0];
    assert_eq!(lines.len(), 10_000);
    let by_offset: HashMap<u64, &str> = lines.iter().map(|(o, l)| (*o, l.as_str())).collect();
    let recs = run.records_of(path);
    assert_eq!(recs.len(), 10_000, "one record per line");
    let mut bad = Vec::new();
    let mut offsets = Vec::with_capacity(recs.len());
    for r in &recs {
        let line = r.offset().and_then(|o| by_offset.get(&o)).copied();
        offsets.push(r.offset());
        let mut why = String::new();
        if let Some(e) = field(r, "parse_error") {
            let _ = write!(why, "parse_error {e}; ");
        }
        if line != Some(r.message.as_str()) {
            let _ = write!(why, "message is not the line at its offset ({line:?}); ");
        }
        let status = field(r, "http.response.status_code").and_then(|v| v.as_i64());
        if !status.is_some_and(|s| (100..600).contains(&s)) {
            let _ = write!(why, "no integer http.response.status_code; ");
        }
        if !r.str("timestamp").is_some_and(|t| t.starts_with("2015-05-")) {
            let _ = write!(why, "event time not from the line (May 2015); ");
        }
        let want_level = match status {
            Some(s) if s >= 500 => Some("error"),
            Some(s) if s >= 400 => Some("warn"),
            _ => Some("info"),
        };
        if r.str("level") != want_level {
            let _ = write!(why, "level {:?}, want {want_level:?}; ", r.str("level"));
        }
        if !why.is_empty() {
            bad.push(format!("{why}\n  {}", r.brief()));
        }
    }
    offsets.dedup();
    assert_eq!(offsets.len(), 10_000, "10,000 distinct lines");
    assert!(
        bad.is_empty(),
        "{} of 10,000 records are wrong:\n{}",
        bad.len(),
        bad[..bad.len().min(8)].join("\n")
    );
    assert_eq!(run.parse_errors(), Some(0.0), "/metrics counts no parse error");
}

#[test]
fn kafka_stack_traces_join_into_one_record_per_event() {
    let files = ["java-multiline/kafka-server.log", "java-multiline/kafka-controller.log"];
    let starts = |lines: &[(u64, String)]| lines.iter().filter(|(_, l)| l.starts_with("[20")).count();
    let run = run_example("kafka", "kafka-java.toml", &files, starts);
    for (rel, path, lines) in &run.files {
        let recs = run.records_of(path);
        let starts = starts(lines);
        let briefs = || recs.iter().take(5).map(|r| r.brief()).collect::<Vec<_>>();
        println!(
            "{rel}: {} records for {starts} timestamped lines, {} lines",
            recs.len(),
            lines.len()
        );
        assert_eq!(recs.len(), starts, "{rel}: one record per `[20…` line: {:#?}", briefs());
        // Every event begins at a `[20…` line, at that line's offset.
        let start_offsets: Vec<u64> = lines
            .iter()
            .filter(|(_, l)| l.starts_with("[20"))
            .map(|(o, _)| *o)
            .collect();
        let rec_offsets: Vec<u64> = recs.iter().map(|r| r.offset().unwrap_or(u64::MAX)).collect();
        assert_eq!(
            rec_offsets, start_offsets,
            "{rel}: records at the offsets of the event starts"
        );
        for r in &recs {
            assert!(r.message.starts_with("[20"), "{rel}: {}", r.brief());
            assert_eq!(
                field_text(r, "service.name").as_deref(),
                Some("kafka"),
                "{rel}: the example's static field is on every record: {}",
                r.brief()
            );
            assert!(field(r, "parse_error").is_none(), "{rel}: {}", r.brief());
            assert!(
                !r.mark("truncated") && !r.mark("continuation"),
                "{rel}: no event reaches the limits: {}",
                r.brief()
            );
        }
        // No line lost, none repeated, none out of place: the messages in offset order, joined
        // by newlines, are the file.
        let total: usize = recs.iter().map(|r| r.message.split('\n').count()).sum();
        assert_eq!(
            total,
            lines.len(),
            "{rel}: lines across all messages vs lines of the file"
        );
        let joined = recs.iter().map(|r| r.message.as_str()).collect::<Vec<_>>().join("\n");
        let file = lines.iter().map(|(_, l)| l.as_str()).collect::<Vec<_>>().join("\n");
        if joined != file {
            let at = joined.lines().zip(file.lines()).position(|(a, b)| a != b).unwrap_or(0);
            panic!(
                "{rel}: the joined messages differ from the file at line {}: {:?} vs {:?}",
                at + 1,
                joined.lines().nth(at),
                file.lines().nth(at)
            );
        }
        let traces = lines.iter().filter(|(_, l)| l.starts_with("\tat ")).count();
        let multi = recs.iter().filter(|r| r.message.contains("\n\tat ")).count();
        assert!(
            traces > 0 && multi > 0,
            "{rel}: the file has stack traces ({traces} `at` lines) and they are in messages ({multi} records)"
        );
    }
    assert_eq!(run.parse_errors(), Some(0.0), "/metrics counts no parse error");
}

#[test]
fn nginx_json_keeps_nested_objects() {
    let run = run_example("json", "nginx-json.toml", &["json/nginxplus-status.log"], |l| l.len());
    let (_, path, lines) = &run.files[0];
    assert_eq!(lines.len(), 500);
    let by_offset: HashMap<u64, &str> = lines.iter().map(|(o, l)| (*o, l.as_str())).collect();
    let recs = run.records_of(path);
    assert_eq!(recs.len(), 500);
    // Keys the json format lifts into the record rather than `fields`.
    const LIFTED: [&str; 7] = ["timestamp", "time", "ts", "level", "severity", "message", "msg"];
    for r in &recs {
        let line = r
            .offset()
            .and_then(|o| by_offset.get(&o))
            .unwrap_or_else(|| panic!("a record at no line's offset: {}", r.brief()));
        let original: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        assert!(field(r, "parse_error").is_none(), "{}", r.brief());
        let fields = r
            .json
            .get("fields")
            .and_then(|f| f.as_object())
            .unwrap_or_else(|| panic!("no fields: {}", r.brief()));
        for (k, v) in &original {
            if LIFTED.contains(&k.as_str()) {
                continue;
            }
            assert_eq!(fields.get(k), Some(v), "key {k} kept as written: {}", r.brief());
        }
        let extra: Vec<&String> = fields.keys().filter(|k| !original.contains_key(*k)).collect();
        assert!(extra.is_empty(), "fields not in the line: {extra:?}");
        assert!(
            fields.get("server_zones").is_some_and(|z| z.is_object()) && fields["connections"]["accepted"].is_u64(),
            "nested objects stay objects: {}",
            r.brief()
        );
        // `timestamp` is epoch milliseconds.
        let ms = original["timestamp"].as_i64().unwrap();
        assert_eq!(
            record_time(r),
            Some(ms * 1_000_000),
            "event time from the epoch-ms `timestamp`: {}",
            r.brief()
        );
    }
    assert_eq!(run.parse_errors(), Some(0.0), "/metrics counts no parse error");
}

#[test]
fn every_example_config_validates() {
    let dir = example_path("");
    let mut names: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 12, "{names:?}");
    for p in names {
        let out = std::process::Command::new(bin())
            .args(["validate", "--config"])
            .arg(&p)
            .env_remove("TAILSHIP_CONFIG")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            p.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
