//! A load-independent speed check of the parsers: each `#[ignore]`d test parses a corpus-built
//! input `SPEED_REPS` times (default 20), for `valgrind --tool=callgrind` to count instructions.
//! Wall-clock benchmarks (`benches/adapt.rs`) swing with whatever else the machine compiles;
//! instruction counts do not, so a before/after comparison of one parser is fair on a busy host.
//!
//! Run one with (the setup is counted too; run with `SPEED_REPS=0` and subtract):
//! `SPEED_REPS=20 valgrind --tool=callgrind --callgrind-out-file=/dev/null <conformance binary> --ignored --exact speed::syslog_file`

use std::path::Path;

use tailship::adapt::regex::RegexParser;
use tailship::adapt::{access, cri, docker, klog, logfmt, syslog, Parsed};

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data");
const NOW: i64 = 1_798_761_599_000_000_000; // 2026-12-31T23:59:59Z

fn reps() -> usize {
    std::env::var("SPEED_REPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20)
}

/// The lines of a corpus file; fails loudly when the corpus is missing, since a speed run
/// that measured nothing would report a bogus improvement.
fn lines(rel: &str) -> Vec<String> {
    let path = Path::new(CORPUS).join(rel);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l).to_owned())
        .collect()
}

fn syslog_lines() -> Vec<String> {
    let mut v = lines("loghub/Linux_2k.log");
    v.extend(lines("loghub/OpenSSH_2k.log"));
    v
}

fn container_lines() -> Vec<String> {
    let mut v = lines("apache-combined/access.log");
    v.extend(lines("java-multiline/kafka-server.log"));
    v
}

/// Parses every line `reps()` times with `f`; every line must parse.
fn drive<'a>(lines: &'a [String], mut f: impl FnMut(&'a str) -> bool) {
    for _ in 0..reps() {
        let ok = lines.iter().filter(|l| f(std::hint::black_box(l.as_str()))).count();
        assert_eq!(ok, lines.len(), "some lines were rejected");
    }
}

#[test]
#[ignore]
fn syslog_file() {
    let input = syslog_lines();
    let mut out = Parsed::default();
    drive(&input, |l| syslog::parse_into(l, NOW, &mut out).is_ok());
}

#[test]
#[ignore]
fn syslog_3164_pri() {
    let input: Vec<String> = syslog_lines()
        .iter()
        .enumerate()
        .map(|(i, l)| format!("<{}>{l}", 8 + i % 184))
        .collect();
    let mut out = Parsed::default();
    drive(&input, |l| syslog::parse_into(l, NOW, &mut out).is_ok());
}

#[test]
#[ignore]
fn syslog_5424() {
    // The file lines rewritten as RFC 5424, half of them with structured data.
    let input: Vec<String> = syslog_lines()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let rest = l.get(16..).unwrap_or("");
            let sd = if i % 2 == 0 {
                r#"[meta@32473 seq="1" src="a\"b"]"#
            } else {
                "-"
            };
            format!(
                "<{}>1 2026-11-25T13:51:20.{:06}Z combo app{} {} ID{} {sd} {rest}",
                8 + i % 184,
                i,
                i % 7,
                i % 9000,
                i % 50
            )
        })
        .collect();
    let mut out = Parsed::default();
    drive(&input, |l| syslog::parse_into(l, NOW, &mut out).is_ok());
}

#[test]
#[ignore]
fn docker() {
    let input: Vec<String> = container_lines()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            serde_json::json!({"log": format!("{l}\n"), "stream": "stdout", "time": format!("2026-11-25T13:51:{:02}.{:09}Z", i % 60, i * 7919 % 1_000_000_000)})
                .to_string()
        })
        .collect();
    let mut out = Parsed::default();
    drive(&input, |l| docker::parse_into(l, &mut out).is_ok());
}

#[test]
#[ignore]
fn cri() {
    let input: Vec<String> = container_lines()
        .iter()
        .enumerate()
        .map(|(i, l)| {
            format!(
                "2026-11-25T13:51:{:02}.{:09}Z stdout F {l}",
                i % 60,
                i * 7919 % 1_000_000_000
            )
        })
        .collect();
    let mut out = Parsed::default();
    drive(&input, |l| cri::parse_into(l, &mut out).is_ok());
}

#[test]
#[ignore]
fn combined() {
    let input = lines("apache-combined/access.log");
    let mut out = Parsed::default();
    drive(&input, |l| {
        access::parse_into(l, access::Variant::Combined, &mut out).is_ok()
    });
}

#[test]
#[ignore]
fn klog_and_logfmt() {
    let input: Vec<String> = lines("loghub/HDFS_2k.log")
        .iter()
        .enumerate()
        .map(|(i, l)| {
            format!(
                "I1109 20:36:15.{:06} {:>7} datanode.go:{}] {}",
                i,
                1000 + i,
                i % 300,
                l.get(20..).unwrap_or("")
            )
        })
        .collect();
    let mut out = Parsed::default();
    drive(&input, |l| klog::parse_into(l, NOW, &mut out).is_ok());
    let input: Vec<String> = lines("loghub/HDFS_2k.log")
        .iter()
        .map(|l| format!("ts=2026-11-25T13:51:20Z level=info msg=\"{}\"", l.replace('"', "'")))
        .collect();
    let mut out = Parsed::default();
    drive(&input, |l| logfmt::parse_into(l, &mut out).is_ok());
}

#[test]
#[ignore]
fn regex_layouts() {
    let hdfs = RegexParser::new(
        r"^(?P<timestamp>\d{6} \d{6}) (?P<process.pid>\d+) (?P<level>[A-Z]+) (?P<component>[^:]+): (?P<message>.*)$",
        Some("%y%m%d %H%M%S"),
    )
    .unwrap();
    let mut locs = hdfs.locations();
    let input = lines("loghub/HDFS_2k.log");
    let mut out = Parsed::default();
    drive(&input, |l| hdfs.parse_into(l, NOW, &mut out, &mut locs).is_ok());
    // A chrono layout (weekday and month names), as Apache's error log writes its time.
    let apache = RegexParser::new(
        r"^\[(?P<timestamp>[^\]]+)\] \[(?P<level>\w+)\] (?P<message>.*)$",
        Some("%a %b %d %H:%M:%S %Y"),
    )
    .unwrap();
    let mut locs = apache.locations();
    let input = lines("loghub/Apache_2k.log");
    let mut out = Parsed::default();
    drive(&input, |l| apache.parse_into(l, NOW, &mut out, &mut locs).is_ok());
}

#[test]
#[ignore]
fn json() {
    // nginx plus status lines, and the syslog lines as pino-style objects (time, level, msg).
    let mut input = lines("json/nginxplus-status.log");
    input.extend(syslog_lines().iter().enumerate().map(|(i, l)| {
        serde_json::json!({"level": 30, "time": 1_795_614_680_123i64 + i as i64, "pid": 42, "hostname": "web-1", "msg": l}).to_string()
    }));
    let mut rec = tailship::adapt::json::JsonLine::default();
    drive(&input, |l| tailship::adapt::json::parse_into(l, &mut rec).is_ok());
}
