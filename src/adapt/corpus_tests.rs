//! Conformance of the parsers on the real logs in `tests/data` (see its README): loghub's
//! `*_structured.csv` is the oracle for time, level, component/pid and message on every line.
//! Each test prints `agreeing/total` and fails on any disagreement, or when its file is missing.
//!
//! Which CSV column says what is in `tests/it/loghub.rs`, shared with the end-to-end tests of
//! the agent (`tests/it/formats.rs`). Messages are compared with surrounding whitespace trimmed:
//! loghub's CSV strips it (e.g. `Linux_2k.log` lines ending in a space), while the parsers keep
//! the message as logged.

use std::path::{Path, PathBuf};

use super::multiline::{MultilineJoiner, Rule};
use super::parsed::{FieldValue, Parsed};
use super::regex::RegexParser;
use super::{access, json, normalize_level, syslog, Level};

#[path = "../../tests/it/loghub.rs"]
mod loghub;

/// A file of `tests/data`; panics when it is not there (a test never passes without its data).
fn corpus(rel: &str) -> PathBuf {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data")).join(rel);
    assert!(
        p.is_file(),
        "{} is missing: the parser conformance tests need it",
        p.display()
    );
    p
}

/// The file's lines without their `\n` / `\r\n` endings (as the tailer hands them over).
fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect()
}

/// What a line holds, in the parser's terms.
#[derive(Debug, PartialEq)]
struct Expect {
    timestamp_ns: Option<i64>,
    level: Option<Level>,
    fields: Vec<(&'static str, String)>,
    message: String,
}

fn field_text(p: &Parsed, key: &str) -> Option<String> {
    match p.field(key)? {
        FieldValue::Str(s) => Some(s.to_string()),
        FieldValue::Int(n) => Some(n.to_string()),
        other => Some(format!("{other:?}")),
    }
}

/// Checks every line of `loghub/<log>` against its CSV row (year-less times placed relative to
/// `now_ns`); panics listing the first disagreements.
fn conform(log: &str, now_ns: i64, mut parse: impl FnMut(&str) -> Option<Parsed<'static>>) {
    let log_path = corpus(&format!("loghub/{log}"));
    let csv_path = corpus(&format!("loghub/{log}_structured.csv"));
    let lines = lines(&log_path);
    let rows = loghub::csv(&csv_path);
    assert_eq!(lines.len(), rows.len(), "{log}: lines vs CSV rows");
    let mut bad = Vec::new();
    let mut exact_messages = 0;
    for (n, (line, row)) in lines.iter().zip(&rows).enumerate() {
        let o = loghub::expect(log, row);
        let want = Expect {
            timestamp_ns: Some(o.when.place(now_ns)),
            level: o.level.as_deref().and_then(lvl),
            fields: o.fields,
            message: o.message,
        };
        let Some(p) = parse(line) else {
            bad.push(format!("line {}: rejected: {line}", n + 1));
            continue;
        };
        exact_messages += usize::from(p.message == want.message);
        let got = Expect {
            timestamp_ns: p.timestamp_ns,
            level: p.level,
            fields: want
                .fields
                .iter()
                .map(|(k, _)| (*k, field_text(&p, k).unwrap_or_default()))
                .collect(),
            message: p.message.trim().to_owned(),
        };
        let want = Expect {
            message: want.message.trim().to_owned(),
            ..want
        };
        if got != want {
            bad.push(format!("line {}: {line}\n  got  {got:?}\n  want {want:?}", n + 1));
        }
    }
    println!(
        "{log}: {}/{} lines agree with loghub ({exact_messages} messages identical before trimming)",
        lines.len() - bad.len(),
        lines.len()
    );
    assert!(
        bad.is_empty(),
        "{log}: {} lines disagree:\n{}",
        bad.len(),
        bad[..bad.len().min(8)].join("\n")
    );
}

/// The `[[sources]]` pattern and timestamp_format of an `examples/formats/*.toml` snippet.
fn example(name: &str) -> RegexParser {
    #[derive(serde::Deserialize)]
    struct File {
        sources: Vec<Source>,
    }
    #[derive(serde::Deserialize)]
    struct Source {
        format: String,
        pattern: String,
        timestamp_format: Option<String>,
    }
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/formats/").to_owned() + name;
    let file: File = toml::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let s = &file.sources[0];
    assert_eq!(s.format, "regex");
    RegexParser::new(&s.pattern, s.timestamp_format.as_deref()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The example config of a loghub log (see `loghub::LOGS`) checked on it.
fn example_of(log: &str) -> &'static str {
    loghub::LOGS
        .iter()
        .find(|(l, _, _)| *l == log)
        .map(|(_, _, e)| *e)
        .unwrap()
}

fn regex_conform(log: &str, now_ns: i64) {
    let parser = example(example_of(log));
    conform(log, now_ns, |line| {
        parser.parse(line, now_ns).ok().map(Parsed::into_owned)
    });
}

fn lvl(s: &str) -> Option<Level> {
    Some(normalize_level(s).unwrap_or_else(|| panic!("loghub level {s:?} unknown")))
}

const END_2005: i64 = 1_136_073_599_000_000_000; // 2005-12-31T23:59:59Z
const END_2017: i64 = 1_514_764_799_000_000_000; // 2017-12-31T23:59:59Z
const END_2026: i64 = 1_798_761_599_000_000_000; // 2026-12-31T23:59:59Z

#[test]
fn linux_syslog() {
    conform("Linux_2k.log", END_2026, |l| {
        syslog::parse(l, END_2026).ok().map(Parsed::into_owned)
    });
}

#[test]
fn openssh_syslog() {
    conform("OpenSSH_2k.log", END_2026, |l| {
        syslog::parse(l, END_2026).ok().map(Parsed::into_owned)
    });
}

#[test]
fn hdfs_regex() {
    regex_conform("HDFS_2k.log", END_2026);
}

#[test]
fn zookeeper_regex() {
    regex_conform("Zookeeper_2k.log", END_2026);
}

#[test]
fn spark_regex() {
    regex_conform("Spark_2k.log", END_2026);
}

#[test]
fn hadoop_regex() {
    regex_conform("Hadoop_2k.log", END_2026);
}

#[test]
fn apache_error_regex() {
    regex_conform("Apache_2k.log", END_2026);
}

#[test]
fn healthapp_regex() {
    regex_conform("HealthApp_2k.log", END_2026);
}

#[test]
fn android_regex() {
    regex_conform("Android_2k.log", END_2017);
}

#[test]
fn apache_combined_every_line() {
    let path = corpus("apache-combined/access.log");
    let lines = lines(&path);
    let mut out = Parsed::default();
    let mut errors = Vec::new();
    for (n, l) in lines.iter().enumerate() {
        match access::parse_into(l, access::Variant::Combined, &mut out) {
            Ok(()) => assert!(out.timestamp_ns.is_some() && out.field("http.response.status_code").is_some()),
            Err(e) => errors.push(format!("line {}: {e}: {l}", n + 1)),
        }
    }
    println!(
        "apache-combined/access.log: {}/{} lines parsed",
        lines.len() - errors.len(),
        lines.len()
    );
    assert_eq!(lines.len(), 10_000);
    assert!(errors.is_empty(), "{}", errors[..errors.len().min(8)].join("\n"));
}

#[test]
fn kafka_java_preset() {
    for file in ["java-multiline/kafka-server.log", "java-multiline/kafka-controller.log"] {
        let path = corpus(file);
        let lines = lines(&path);
        let starts = lines.iter().filter(|l| l.starts_with("[20")).count();
        let mut j = MultilineJoiner::new(Rule::preset("java").unwrap(), 1000, 1 << 20);
        let mut events: Vec<_> = lines.iter().filter_map(|l| j.push(l)).collect();
        events.extend(j.flush());
        println!(
            "{file}: {} events, {starts} timestamped lines, {} lines",
            events.len(),
            lines.len()
        );
        assert_eq!(events.len(), starts, "{file}");
        assert!(events
            .iter()
            .all(|e| e.text.starts_with("[20") && !e.truncated && !e.continuation));
        assert_eq!(events.iter().map(|e| e.lines).sum::<usize>(), lines.len());
    }
}

#[test]
fn nginxplus_json() {
    let path = corpus("json/nginxplus-status.log");
    let lines = lines(&path);
    let ok = lines.iter().filter(|l| json::JsonLine::parse(l).is_ok()).count();
    println!("json/nginxplus-status.log: {ok}/{} lines parsed", lines.len());
    assert_eq!((ok, lines.len()), (500, 500));
}

#[test]
fn year_less_corpora_agree_on_new_year() {
    // Apache error log dates are from December 2005 with the year written; syslog's are not:
    // read in January 2006, OpenSSH's `Dec 10` lines must land in 2005.
    let path = corpus("loghub/OpenSSH_2k.log");
    let jan_2006 = END_2005 + 86_400 * 1_000_000_000;
    for l in lines(&path).iter().take(50) {
        let t = syslog::parse(l, jan_2006).unwrap().timestamp_ns.unwrap();
        assert!(t < END_2005 && t > END_2005 - 40 * 86_400 * 1_000_000_000, "{l}");
    }
}
