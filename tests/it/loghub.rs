//! loghub's `*_structured.csv` as the oracle for its logs in `tests/data/loghub`: which
//! CSV columns say what a line's time, level, fields and message are. Shared by the parsers'
//! unit tests (`src/adapt/corpus_tests.rs`, which includes this file by path) and the end-to-end
//! tests of the agent (`tests/it/formats.rs`), so both check the same mapping. Only std and
//! chrono here: it compiles in both crates.
//!
//! Messages are to be compared with surrounding whitespace trimmed: loghub's CSV strips it (e.g.
//! `Linux_2k.log` lines ending in a space), while the parsers keep the message as logged.

#![allow(dead_code)] // each includer uses part of it

use std::collections::HashMap;
use std::path::Path;

use chrono::{Datelike, NaiveDate, NaiveDateTime};

/// One CSV row: column → value.
pub type Row = HashMap<String, String>;

/// A small RFC 4180 reader: quoted fields with `""` escapes, no line breaks inside fields
/// (none in loghub's CSVs). Returns rows as header → value maps.
pub fn csv(path: &Path) -> Vec<Row> {
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
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header = split(lines.next().expect("CSV header"));
    lines
        .map(|l| {
            let row = split(l);
            assert_eq!(row.len(), header.len(), "{}: {l}", path.display());
            header.iter().cloned().zip(row).collect()
        })
        .collect()
}

/// A line's time as loghub gives it.
#[derive(Debug, Clone, PartialEq)]
pub enum When {
    /// A complete time, read as UTC.
    At(NaiveDateTime),
    /// A time logged without its year (syslog, logcat), here in the leap year 2000 so that
    /// `Feb 29` exists; `place` gives it its year.
    YearLess(NaiveDateTime),
}

const NS: i64 = 1_000_000_000;
/// How far ahead of "now" a year-less time may be before it is taken to be last year's.
const NEW_YEAR_SLACK_NS: i64 = 7 * 86_400 * NS;

fn ns(t: NaiveDateTime) -> i64 {
    t.and_utc().timestamp_nanos_opt().unwrap()
}

impl When {
    /// Nanoseconds since the epoch, UTC; a year-less time takes the year of `now_ns` unless
    /// that puts it more than seven days after `now_ns`, then the year before (the New Year
    /// rule: a `Dec 31` line read on January 1st was written last year).
    pub fn place(&self, now_ns: i64) -> i64 {
        match *self {
            When::At(t) => ns(t),
            When::YearLess(t) => {
                let year = chrono::DateTime::from_timestamp_nanos(now_ns).year();
                let in_year = |y: i32| t.with_year(y).map(ns);
                match in_year(year) {
                    Some(v) if v <= now_ns + NEW_YEAR_SLACK_NS => v,
                    _ => (1..=8)
                        .find_map(|back| in_year(year - back))
                        .expect("a year with this date"),
                }
            }
        }
    }
}

/// What loghub says one line holds.
#[derive(Debug, Clone, PartialEq)]
pub struct Oracle {
    pub when: When,
    /// The level as loghub writes it (`INFO`, `notice`, `D`); `None` when the log has none.
    pub level: Option<String>,
    /// Record fields and their values as text (an empty value: the field is absent).
    pub fields: Vec<(&'static str, String)>,
    pub message: String,
}

/// The loghub logs, the parser that reads each, and for the `regex` ones the example config
/// (in `examples/formats/`) whose pattern is checked. Year-less logs are placed relative to a
/// "now" chosen by the test.
pub const LOGS: [(&str, &str, &str); 9] = [
    ("Linux_2k.log", "syslog", "linux-syslog.toml"),
    ("OpenSSH_2k.log", "syslog", "openssh-syslog.toml"),
    ("HDFS_2k.log", "regex", "hdfs.toml"),
    ("Zookeeper_2k.log", "regex", "zookeeper.toml"),
    ("Spark_2k.log", "regex", "spark.toml"),
    ("Hadoop_2k.log", "regex", "hadoop.toml"),
    ("Apache_2k.log", "regex", "apache-error.toml"),
    ("HealthApp_2k.log", "regex", "healthapp.toml"),
    ("Android_2k.log", "regex", "android.toml"),
];

fn col<'r>(r: &'r Row, k: &str) -> &'r str {
    r.get(k).unwrap_or_else(|| panic!("no CSV column {k}"))
}

fn at(text: &str, layout: &str) -> NaiveDateTime {
    NaiveDateTime::parse_from_str(text, layout).unwrap_or_else(|e| panic!("{text:?} / {layout}: {e}"))
}

fn year_less(text: &str, layout: &str) -> When {
    When::YearLess(at(&format!("2000 {text}"), &format!("%Y {layout}")))
}

/// The oracle of one row of `log`'s CSV (`log` as in `LOGS`).
pub fn expect(log: &str, r: &Row) -> Oracle {
    let s = |k: &str| col(r, k).to_owned();
    let level = |k: &str| Some(s(k));
    match log {
        "Linux_2k.log" => Oracle {
            when: year_less(
                &format!("{} {} {}", col(r, "Month"), col(r, "Date"), col(r, "Time")),
                "%b %d %H:%M:%S",
            ),
            // No <PRI> in the file: no level. loghub's `Level` column holds the hostname here.
            level: None,
            fields: vec![
                ("host.hostname", s("Level")),
                ("syslog.appname", s("Component")),
                ("process.pid", s("PID")),
            ],
            message: s("Content"),
        },
        "OpenSSH_2k.log" => Oracle {
            when: year_less(
                &format!("{} {} {}", col(r, "Date"), col(r, "Day"), col(r, "Time")),
                "%b %d %H:%M:%S",
            ),
            level: None,
            // loghub's `Component` column holds the hostname here.
            fields: vec![("host.hostname", s("Component")), ("process.pid", s("Pid"))],
            message: s("Content"),
        },
        "HDFS_2k.log" => Oracle {
            when: When::At(at(&format!("{} {}", col(r, "Date"), col(r, "Time")), "%y%m%d %H%M%S")),
            level: level("Level"),
            fields: vec![("process.pid", s("Pid")), ("component", s("Component"))],
            message: s("Content"),
        },
        "Zookeeper_2k.log" => {
            // loghub cuts `thread:class` at the first `:`, the example at the last; compare the
            // whole bracket and the class name.
            let bracket = format!("{}:{}", col(r, "Node"), col(r, "Component"));
            let (thread, class) = bracket.rsplit_once(':').unwrap();
            Oracle {
                when: When::At(at(
                    &format!("{} {}", col(r, "Date"), col(r, "Time")),
                    "%Y-%m-%d %H:%M:%S,%3f",
                )),
                level: level("Level"),
                fields: vec![
                    ("thread.name", thread.to_owned()),
                    ("component", class.to_owned()),
                    ("code.lineno", s("Id")),
                ],
                message: s("Content"),
            }
        }
        "Spark_2k.log" => Oracle {
            when: When::At(at(
                &format!("{} {}", col(r, "Date"), col(r, "Time")),
                "%y/%m/%d %H:%M:%S",
            )),
            level: level("Level"),
            fields: vec![("component", s("Component"))],
            message: s("Content"),
        },
        "Hadoop_2k.log" => Oracle {
            when: When::At(at(
                &format!("{} {}", col(r, "Date"), col(r, "Time")),
                "%Y-%m-%d %H:%M:%S,%3f",
            )),
            level: level("Level"),
            fields: vec![("thread.name", s("Process")), ("component", s("Component"))],
            message: s("Content"),
        },
        "Apache_2k.log" => Oracle {
            when: When::At(at(col(r, "Time"), "%a %b %d %H:%M:%S %Y")),
            level: level("Level"),
            fields: vec![],
            message: s("Content"),
        },
        "HealthApp_2k.log" => {
            // `20171223-22:53:7:6`: unpadded fields, the last one milliseconds.
            let t = col(r, "Time");
            let (date, clock) = t.split_once('-').unwrap();
            let p: Vec<u32> = clock.split(':').map(|x| x.parse().unwrap()).collect();
            let day = NaiveDate::parse_from_str(date, "%Y%m%d").unwrap();
            Oracle {
                when: When::At(day.and_hms_milli_opt(p[0], p[1], p[2], p[3]).unwrap()),
                level: None,
                fields: vec![("component", s("Component")), ("process.pid", s("Pid"))],
                message: s("Content"),
            }
        }
        "Android_2k.log" => Oracle {
            // logcat writes no year.
            when: year_less(&format!("{} {}", col(r, "Date"), col(r, "Time")), "%m-%d %H:%M:%S%.3f"),
            level: level("Level"),
            fields: vec![
                ("process.pid", s("Pid")),
                ("thread.id", s("Tid")),
                ("component", s("Component")),
            ],
            message: s("Content"),
        },
        other => panic!("no loghub oracle for {other}"),
    }
}
