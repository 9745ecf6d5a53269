//! `auto`: picking a source's format from the first lines of its file.
//!
//! The rule: every candidate parser is run on the sample's non-empty lines (at most
//! `MAX_SAMPLE`); a format qualifies when it accepts at least 80 % of them (and at least one).
//! Among qualifying formats the most specific wins, in this order: `docker` (JSON with a string
//! `log`), `json`, `cri`, `klog`, `combined`, `common`, `syslog`, `logfmt`. Specific formats come
//! first because a looser one can accept their lines too (a `combined` line is not `logfmt`,
//! but a `docker` line is `json`). `logfmt` only counts a line where at least half of the
//! tokens are `key=value` pairs, so prose with one `=` does not pass. Nothing qualifying →
//! `raw`. The 80 % leaves room for a stack trace or a banner among the first lines. A line a
//! parser only salvaged (it notes a `parse_warning`: `<13>` and free text, a logfmt quote
//! never closed) does not count for that format.
//!
//! `regex` is never detected: it needs a pattern.

use super::parsed::{FieldValue, Parsed};
use super::{access, cri, docker, json, klog, logfmt, syslog};

/// Lines of the sample looked at, at most.
pub const MAX_SAMPLE: usize = 50;

/// A format `auto` can pick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Detected {
    Docker,
    Json,
    Cri,
    Klog,
    Combined,
    Common,
    Syslog,
    Logfmt,
    Raw,
}

impl Detected {
    /// The format's config name.
    pub fn as_str(self) -> &'static str {
        match self {
            Detected::Docker => "docker",
            Detected::Json => "json",
            Detected::Cri => "cri",
            Detected::Klog => "klog",
            Detected::Combined => "combined",
            Detected::Common => "common",
            Detected::Syslog => "syslog",
            Detected::Logfmt => "logfmt",
            Detected::Raw => "raw",
        }
    }
}

/// What `detect` decided and on what evidence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Detection {
    pub format: Detected,
    /// Sample lines the chosen format accepted (for `raw`: all of them).
    pub matched: usize,
    /// Non-empty sample lines looked at.
    pub sampled: usize,
}

const ORDER: [Detected; 8] = [
    Detected::Docker,
    Detected::Json,
    Detected::Cri,
    Detected::Klog,
    Detected::Combined,
    Detected::Common,
    Detected::Syslog,
    Detected::Logfmt,
];

fn accepts(format: Detected, line: &str, now_ns: i64) -> bool {
    match format {
        Detected::Docker => docker::parse(line).is_ok(),
        Detected::Json => json::JsonLine::parse(line).is_ok(),
        Detected::Cri => cri::parse(line).is_ok(),
        Detected::Klog => klog::parse(line, now_ns).is_ok(),
        Detected::Combined => access::parse_combined(line)
            .is_ok_and(|p| p.field("user_agent.original").is_some() || line.ends_with("\"-\"")),
        Detected::Common => access::parse_common(line).is_ok(),
        Detected::Syslog => syslog::parse(line, now_ns).is_ok_and(|p| p.warning.is_none()),
        Detected::Logfmt => logfmt::parse(line).is_ok_and(|p| p.warning.is_none() && mostly_pairs(&p)),
        Detected::Raw => true,
    }
}

fn mostly_pairs(p: &Parsed) -> bool {
    let bare = p.fields.iter().filter(|f| f.1 == FieldValue::Bool(true)).count();
    let lifted =
        usize::from(p.timestamp_ns.is_some()) + usize::from(p.level.is_some()) + usize::from(!p.message.is_empty());
    let pairs = p.fields.len() - bare + lifted;
    pairs >= 1 && bare <= pairs
}

/// Picks a format for a file whose first lines are `lines` (line endings removed); `now_ns`
/// is for the year-less time formats. Pure: the same lines give the same answer.
pub fn detect<S: AsRef<str>>(lines: &[S], now_ns: i64) -> Detection {
    let sample: Vec<&str> = lines
        .iter()
        .map(|l| l.as_ref())
        .filter(|l| !l.trim().is_empty())
        .take(MAX_SAMPLE)
        .collect();
    let n = sample.len();
    if n > 0 {
        for format in ORDER {
            let matched = sample.iter().filter(|l| accepts(format, l, now_ns)).count();
            if matched * 5 >= n * 4 {
                return Detection {
                    format,
                    matched,
                    sampled: n,
                };
            }
        }
    }
    Detection {
        format: Detected::Raw,
        matched: n,
        sampled: n,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #[test]
        fn never_panics(lines in proptest::collection::vec("\\PC*", 0..8)) {
            let d = detect(&lines, NOW);
            prop_assert!(d.matched <= d.sampled);
        }
    }

    const NOW: i64 = 1_795_614_680_000_000_000;

    fn pick(lines: &[&str]) -> Detected {
        detect(lines, NOW).format
    }

    #[test]
    fn picks_each_format() {
        assert_eq!(
            pick(&[r#"{"log":"x\n","stream":"stdout","time":"2026-11-25T13:51:20Z"}"#]),
            Detected::Docker
        );
        assert_eq!(pick(&[r#"{"level":"info","msg":"x"}"#, r#"{"a":1}"#]), Detected::Json);
        assert_eq!(
            pick(&[
                "2026-11-25T13:51:20.1Z stdout F hi",
                "2026-11-25T13:51:20.1Z stderr P x"
            ]),
            Detected::Cri
        );
        assert_eq!(pick(&["I1125 12:00:00.000000    1234 file.go:42] msg"]), Detected::Klog);
        assert_eq!(
            pick(&[r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5 "-" "curl/8""#]),
            Detected::Combined
        );
        assert_eq!(
            pick(&[r#"1.2.3.4 - - [10/Oct/2000:13:55:36 +0000] "GET / HTTP/1.1" 200 5"#]),
            Detected::Common
        );
        assert_eq!(
            pick(&["Jun 14 15:16:01 combo sshd[1]: hi", "<13>1 - - - - - - x"]),
            Detected::Syslog
        );
        assert_eq!(pick(&["level=info msg=hi a=1", "ts=1 x=2"]), Detected::Logfmt);
        assert_eq!(pick(&["just some words", "and x=1 more words here"]), Detected::Raw);
        assert_eq!(
            detect::<&str>(&[], NOW),
            Detection {
                format: Detected::Raw,
                matched: 0,
                sampled: 0
            }
        );
    }

    #[test]
    fn tolerates_a_fifth_of_strangers() {
        let mut lines = vec!["Jun 14 15:16:01 combo sshd[1]: hi"; 8];
        lines.extend(["\tat some.trace()", ""]);
        lines.push("banner text");
        let d = detect(&lines, NOW);
        assert_eq!((d.format, d.matched, d.sampled), (Detected::Syslog, 8, 10));
        lines.push("third stranger");
        assert_eq!(pick(&lines), Detected::Raw);
    }

    #[test]
    fn salvaged_lines_do_not_count() {
        // The syslog parser salvages `<PRI>` + text and logfmt an unclosed quote; neither
        // makes a file of such lines that format.
        assert_eq!(pick(&["<13>just a message"; 5]), Detected::Raw);
        assert_eq!(pick(&[r#"a=1 b="never closed"#; 5]), Detected::Raw);
        // Lines read leniently without a warning still do.
        assert_eq!(
            pick(&["<133>Jun 13 16:33:35 haproxy[73411]: Proxy started."; 5]),
            Detected::Syslog
        );
    }
}
