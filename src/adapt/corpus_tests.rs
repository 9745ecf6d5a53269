//! Conformance of the parsers on the real logs in `../shared/corpus` (see its README): loghub's
//! `*_structured.csv` is the oracle for time, level, component/pid and message on every line.
//! Each test prints `agreeing/total` and fails on any disagreement; when the corpus directory
//! is missing (a checkout without `shared/`) it prints a note and passes.
//!
//! Messages are compared with surrounding whitespace trimmed: loghub's CSV strips it (e.g.
//! `Linux_2k.log` lines ending in a space), while the parsers keep the message as logged.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDateTime;

use super::multiline::{MultilineJoiner, Rule};
use super::parsed::{FieldValue, Parsed};
use super::regex::RegexParser;
use super::{access, json, normalize_level, syslog, Level};

fn corpus(rel: &str) -> Option<PathBuf> {
    let p = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus")).join(rel);
    if p.exists() {
        Some(p)
    } else {
        eprintln!("note: {} is missing; corpus conformance test skipped", p.display());
        None
    }
}

/// The file's lines without their `\n` / `\r\n` endings (as the tailer hands them over).
fn lines(path: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(path).unwrap();
    let text = text.strip_suffix('\n').unwrap_or(&text);
    text.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect()
}

/// A small RFC 4180 reader: quoted fields with `""` escapes, no line breaks inside fields
/// (none in loghub's CSVs). Returns rows as header → value maps.
fn csv(path: &Path) -> Vec<HashMap<String, String>> {
    fn split(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut cur = String::new();
        let mut quoted = false;
        let mut chars = line.chars().peekable();
        while let Some(c) = chars.next() {
            match (c, quoted) {
                ('"', true) if chars.peek() == Some(&'"') => {
                    cur.push('"');
                    chars.next();
                }
                ('"', _) => quoted = !quoted,
                (',', false) => out.push(std::mem::take(&mut cur)),
                _ => cur.push(c),
            }
        }
        out.push(cur);
        out
    }
    let all = lines(path);
    let header = split(&all[0]);
    all[1..]
        .iter()
        .map(|l| {
            let row = split(l);
            assert_eq!(row.len(), header.len(), "{l}");
            header.iter().cloned().zip(row).collect()
        })
        .collect()
}

/// What loghub says one line holds.
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

fn utc(text: &str, layout: &str) -> i64 {
    NaiveDateTime::parse_from_str(text, layout)
        .unwrap_or_else(|e| panic!("{text:?} / {layout}: {e}"))
        .and_utc()
        .timestamp_nanos_opt()
        .unwrap()
}

/// Checks every line of `log` against its CSV row; panics listing the first disagreements.
fn conform(
    log: &str,
    mut parse: impl FnMut(&str) -> Option<Parsed<'static>>,
    expect: impl Fn(&HashMap<String, String>) -> Expect,
) {
    let (Some(log_path), Some(csv_path)) = (corpus(log), corpus(&format!("{log}_structured.csv"))) else {
        return;
    };
    let lines = lines(&log_path);
    let rows = csv(&csv_path);
    assert_eq!(lines.len(), rows.len(), "{log}: lines vs CSV rows");
    let mut bad = Vec::new();
    let mut exact_messages = 0;
    for (n, (line, row)) in lines.iter().zip(&rows).enumerate() {
        let want = expect(row);
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

fn regex_conform(example_file: &str, log: &str, now_ns: i64, expect: impl Fn(&HashMap<String, String>) -> Expect) {
    let parser = example(example_file);
    conform(
        log,
        |line| parser.parse(line, now_ns).ok().map(Parsed::into_owned),
        expect,
    );
}

fn row<'r>(r: &'r HashMap<String, String>, k: &str) -> &'r str {
    r.get(k).unwrap_or_else(|| panic!("no CSV column {k}"))
}

fn lvl(s: &str) -> Option<Level> {
    Some(normalize_level(s).unwrap_or_else(|| panic!("loghub level {s:?} unknown")))
}

const END_2005: i64 = 1_136_073_599_000_000_000; // 2005-12-31T23:59:59Z
const END_2017: i64 = 1_514_764_799_000_000_000; // 2017-12-31T23:59:59Z
const END_2026: i64 = 1_798_761_599_000_000_000; // 2026-12-31T23:59:59Z

#[test]
fn linux_syslog() {
    conform(
        "loghub/Linux_2k.log",
        |l| syslog::parse(l, END_2026).ok().map(Parsed::into_owned),
        |r| Expect {
            timestamp_ns: Some(utc(
                &format!("2026 {} {} {}", row(r, "Month"), row(r, "Date"), row(r, "Time")),
                "%Y %b %d %H:%M:%S",
            )),
            level: None,
            // loghub's `Level` column holds the hostname here.
            fields: vec![
                ("host.hostname", row(r, "Level").to_owned()),
                ("syslog.appname", row(r, "Component").to_owned()),
                ("process.pid", row(r, "PID").to_owned()),
            ],
            message: row(r, "Content").to_owned(),
        },
    );
}

#[test]
fn openssh_syslog() {
    conform(
        "loghub/OpenSSH_2k.log",
        |l| syslog::parse(l, END_2026).ok().map(Parsed::into_owned),
        |r| Expect {
            timestamp_ns: Some(utc(
                &format!("2026 {} {} {}", row(r, "Date"), row(r, "Day"), row(r, "Time")),
                "%Y %b %d %H:%M:%S",
            )),
            level: None,
            // loghub's `Component` column holds the hostname here.
            fields: vec![
                ("host.hostname", row(r, "Component").to_owned()),
                ("process.pid", row(r, "Pid").to_owned()),
            ],
            message: row(r, "Content").to_owned(),
        },
    );
}

#[test]
fn hdfs_regex() {
    regex_conform("hdfs.toml", "loghub/HDFS_2k.log", END_2026, |r| Expect {
        timestamp_ns: Some(utc(&format!("{} {}", row(r, "Date"), row(r, "Time")), "%y%m%d %H%M%S")),
        level: lvl(row(r, "Level")),
        fields: vec![
            ("process.pid", row(r, "Pid").to_owned()),
            ("component", row(r, "Component").to_owned()),
        ],
        message: row(r, "Content").to_owned(),
    });
}

#[test]
fn zookeeper_regex() {
    regex_conform("zookeeper.toml", "loghub/Zookeeper_2k.log", END_2026, |r| {
        // loghub cuts `thread:class` at the first `:`, the example at the last; compare the
        // whole bracket and the class name.
        let bracket = format!("{}:{}", row(r, "Node"), row(r, "Component"));
        let (thread, class) = bracket.rsplit_once(':').unwrap();
        Expect {
            timestamp_ns: Some(utc(
                &format!("{} {}", row(r, "Date"), row(r, "Time")),
                "%Y-%m-%d %H:%M:%S,%3f",
            )),
            level: lvl(row(r, "Level")),
            fields: vec![
                ("thread.name", thread.to_owned()),
                ("component", class.to_owned()),
                ("code.lineno", row(r, "Id").to_owned()),
            ],
            message: row(r, "Content").to_owned(),
        }
    });
}

#[test]
fn spark_regex() {
    regex_conform("spark.toml", "loghub/Spark_2k.log", END_2026, |r| Expect {
        timestamp_ns: Some(utc(
            &format!("{} {}", row(r, "Date"), row(r, "Time")),
            "%y/%m/%d %H:%M:%S",
        )),
        level: lvl(row(r, "Level")),
        fields: vec![("component", row(r, "Component").to_owned())],
        message: row(r, "Content").to_owned(),
    });
}

#[test]
fn hadoop_regex() {
    regex_conform("hadoop.toml", "loghub/Hadoop_2k.log", END_2026, |r| Expect {
        timestamp_ns: Some(utc(
            &format!("{} {}", row(r, "Date"), row(r, "Time")),
            "%Y-%m-%d %H:%M:%S,%3f",
        )),
        level: lvl(row(r, "Level")),
        fields: vec![
            ("thread.name", row(r, "Process").to_owned()),
            ("component", row(r, "Component").to_owned()),
        ],
        message: row(r, "Content").to_owned(),
    });
}

#[test]
fn apache_error_regex() {
    regex_conform("apache-error.toml", "loghub/Apache_2k.log", END_2026, |r| Expect {
        timestamp_ns: Some(utc(row(r, "Time"), "%a %b %d %H:%M:%S %Y")),
        level: lvl(row(r, "Level")),
        fields: vec![],
        message: row(r, "Content").to_owned(),
    });
}

#[test]
fn healthapp_regex() {
    regex_conform("healthapp.toml", "loghub/HealthApp_2k.log", END_2026, |r| {
        // `20171223-22:53:7:6`: unpadded fields, the last one milliseconds.
        let t = row(r, "Time");
        let (date, clock) = t.split_once('-').unwrap();
        let p: Vec<i64> = clock.split(':').map(|x| x.parse().unwrap()).collect();
        let day = utc(&format!("{date} 00:00:00"), "%Y%m%d %H:%M:%S");
        Expect {
            timestamp_ns: Some(day + ((p[0] * 60 + p[1]) * 60 + p[2]) * 1_000_000_000 + p[3] * 1_000_000),
            level: None,
            fields: vec![
                ("component", row(r, "Component").to_owned()),
                ("process.pid", row(r, "Pid").to_owned()),
            ],
            message: row(r, "Content").to_owned(),
        }
    });
}

#[test]
fn android_regex() {
    regex_conform("android.toml", "loghub/Android_2k.log", END_2017, |r| Expect {
        timestamp_ns: Some(utc(
            &format!("2017-{} {}", row(r, "Date"), row(r, "Time")),
            "%Y-%m-%d %H:%M:%S%.3f",
        )),
        level: lvl(row(r, "Level")),
        fields: vec![
            ("process.pid", row(r, "Pid").to_owned()),
            ("thread.id", row(r, "Tid").to_owned()),
            ("component", row(r, "Component").to_owned()),
        ],
        message: row(r, "Content").to_owned(),
    });
}

#[test]
fn apache_combined_every_line() {
    let Some(path) = corpus("apache-combined/access.log") else {
        return;
    };
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
        let Some(path) = corpus(file) else { return };
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
    let Some(path) = corpus("json/nginxplus-status.log") else {
        return;
    };
    let lines = lines(&path);
    let ok = lines.iter().filter(|l| json::JsonLine::parse(l).is_ok()).count();
    println!("json/nginxplus-status.log: {ok}/{} lines parsed", lines.len());
    assert_eq!((ok, lines.len()), (500, 500));
}

#[test]
fn year_less_corpora_agree_on_new_year() {
    // Apache error log dates are from December 2005 with the year written; syslog's are not:
    // read in January 2006, OpenSSH's `Dec 10` lines must land in 2005.
    let Some(path) = corpus("loghub/OpenSSH_2k.log") else {
        return;
    };
    let jan_2006 = END_2005 + 86_400 * 1_000_000_000;
    for l in lines(&path).iter().take(50) {
        let t = syslog::parse(l, jan_2006).unwrap().timestamp_ns.unwrap();
        assert!(t < END_2005 && t > END_2005 - 40 * 86_400 * 1_000_000_000, "{l}");
    }
}
