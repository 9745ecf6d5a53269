//! Every fuzz target's entry point under proptest, on each `cargo test`: arbitrary bytes, and
//! valid lines of the format with a few bytes changed, inserted, removed or cut off (what
//! reaches the deep paths of a parser more often than noise does). Case counts are bounded so
//! the whole set runs in seconds; `fuzz/` runs the same entry points for longer.

use proptest::prelude::*;
use proptest::sample::Index;

use super::*;

const CASES: u32 = 512;
/// Compiling a pattern per case is slow; the regex target gets fewer.
const REGEX_CASES: u32 = 64;

/// `default` cases a property, or `TAILSHIP_FUZZ_CASES` when set: a longer run by hand
/// (`fuzz/README.md`).
fn cases(default: u32) -> u32 {
    std::env::var("TAILSHIP_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const LOGFMT: &[&str] = &[
    r#"ts=2026-11-25T13:51:20Z level=info msg="hello \"world\"" user=bob dur=1.5s"#,
    r#"level=warn msg= empty="" flag key=va\lue"#,
];
const CRI: &[&str] = &[
    "2026-11-25T13:51:20.123456789Z stdout P part one\n2026-11-25T13:51:20.2Z stdout F and the rest",
    "2026-11-25T13:51:20.123456789+01:00 stderr F é whole line\n2026-11-25T13:51:21Z stderr P ünïcödé",
];
const DOCKER: &[&str] = &[
    r#"{"log":"hello\n","stream":"stdout","time":"2026-11-25T13:51:20.123456789Z"}"#,
    "{\"log\":\"part \\u00e9\",\"stream\":\"stderr\",\"time\":\"2026-11-25T13:51:20Z\"}\n{\"log\":\"rest\\n\",\"stream\":\"stderr\",\"time\":\"2026-11-25T13:51:21Z\",\"attrs\":{\"a\":1}}",
];
const HTTP_BODIES: &[&str] = &[
    "{\"message\":\"a\",\"n\":1}\n{\"log\":\"b\",\"o\":{\"k\":[1,2.5,null,true]}}\n",
    "[\n  {\"msg\": \"x \\\" y\",\n   \"nested\": {\n     \"a\": \"\\n\"\n   }\n  }\n]",
];
const SYSLOG: &[&str] = &[
    r#"<34>1 2026-11-25T13:51:20.003Z host app 123 ID47 [exampleSDID@32473 iut="3" eventSource="App\]"] message"#,
    "<13>Nov 25 13:51:20 host app[12]: message",
    "<165>1 - - - - - - \u{feff}BOM message",
];
const ACCESS: &[&str] = &[
    r#"127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 "http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)""#,
    r#"::1 - - [25/Nov/2026:13:51:20 +0000] "POST /a?b=\"c\" HTTP/1.1" 404 - "-" "-""#,
];
const KLOG: &[&str] = &[
    r#"I1125 13:51:20.123456   12345 main.go:42] "message" key="value" n=1"#,
    "E1125 13:51:20.123456 1 x.go:1] plain text message",
];
const REGEX: &[&str] = &[
    "^(?P<time>\\S+) (?P<level>\\w+) (?P<message>.*)$\0%Y-%m-%dT%H:%M:%S%z\x002026-11-25T13:51:20+0100 INFO hello\nbad line",
    "(?P<a>\\d+)-(?P<b>[a-z]*)\0\x0012-ab\n-",
];
const MULTILINE: &[&str] = &[
    "2026-11-25 13:51:20,000 ERROR boom\njava.lang.IllegalStateException: bad\n\tat a.B.c(B.java:1)\n\t... 3 more\nCaused by: x.Y: z\nnext",
    "Traceback (most recent call last):\n  File \"a.py\", line 1\nValueError: v\n\ngoroutine 1 [running]:\nmain.main()\n\tmain.go:5 +0x1\nexit status 2",
];
/// A line of each format `auto` tells apart.
const DETECT: &[&str] = &[LOGFMT[0], CRI[0], DOCKER[0], SYSLOG[1], ACCESS[0], KLOG[0]];
const TIMESTAMPS: &[&str] = &[
    "2026-11-25T13:51:20.123456789+01:00",
    "Nov 25 13:51:20",
    "10/Oct/2000:13:55:36 -0700",
    "2026-11-25 13:51:20,123",
    "Wed Nov 25 13:51:20 2026",
    "11-25 13:51:20.123",
];

/// One of `samples` (or all of them, one a line), with up to 4 edits.
fn near(samples: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    let edits = proptest::collection::vec((any::<Index>(), 0u8..4, any::<u8>()), 0..4);
    (0..=samples.len(), edits).prop_map(move |(i, edits)| {
        let mut b = match samples.get(i) {
            Some(s) => s.as_bytes().to_vec(),
            None => samples.join("\n").into_bytes(),
        };
        for (at, kind, byte) in edits {
            if b.is_empty() {
                b.push(byte);
                continue;
            }
            let at = at.index(b.len());
            match kind {
                0 => b[at] = byte,
                1 => b.insert(at, byte),
                2 => {
                    b.remove(at);
                }
                _ => b.truncate(at),
            }
        }
        b
    })
}

/// The input of a target that reads "now" from its first 8 bytes.
fn with_now(b: &[u8]) -> Vec<u8> {
    let mut out = NOW_NS.to_le_bytes().to_vec();
    out.extend_from_slice(b);
    out
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..256)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(CASES)))]

    #[test]
    fn logfmt_takes_any_bytes(b in bytes()) { logfmt(&b) }
    #[test]
    fn logfmt_takes_near_valid_lines(b in near(LOGFMT)) { logfmt(&b) }

    #[test]
    fn cri_takes_any_bytes(b in bytes()) { cri(&b) }
    #[test]
    fn cri_takes_near_valid_lines(b in near(CRI)) { cri(&b) }

    #[test]
    fn docker_takes_any_bytes(b in bytes()) { docker(&b) }
    #[test]
    fn docker_takes_near_valid_lines(b in near(DOCKER)) { docker(&b) }

    #[test]
    fn syslog_takes_any_bytes(b in bytes()) { syslog(&b) }
    #[test]
    fn syslog_takes_near_valid_lines(b in near(SYSLOG)) { syslog(&with_now(&b)) }

    #[test]
    fn the_syslog_input_writes_one_json_line_for_any_bytes(b in bytes()) { syslog_input(&b) }
    #[test]
    fn the_syslog_input_writes_one_json_line_for_near_valid_messages(b in near(SYSLOG)) { syslog_input(&with_now(&b)) }

    #[test]
    fn the_http_input_takes_any_bytes(b in bytes()) { http_input(&b) }
    #[test]
    fn the_http_input_takes_near_valid_bodies(b in near(HTTP_BODIES)) { http_input(&b) }

    #[test]
    fn access_takes_any_bytes(b in bytes()) { access(&b) }
    #[test]
    fn access_takes_near_valid_lines(b in near(ACCESS)) { access(&b) }

    #[test]
    fn klog_takes_any_bytes(b in bytes()) { klog(&b) }
    #[test]
    fn klog_takes_near_valid_lines(b in near(KLOG)) { klog(&with_now(&b)) }

    #[test]
    fn multiline_takes_any_bytes(b in bytes()) { multiline(&b) }
    #[test]
    fn multiline_takes_near_valid_lines(b in near(MULTILINE)) { multiline(&b) }

    #[test]
    fn detect_takes_any_bytes(b in bytes()) { detect_format(&b) }
    #[test]
    fn detect_takes_near_valid_lines(b in near(DETECT)) {
        detect_format(&b)
    }

    #[test]
    fn timestamps_take_any_bytes(b in bytes()) { timestamps(&b) }
    #[test]
    fn timestamps_take_near_valid_times(b in near(TIMESTAMPS)) { timestamps(&with_now(&b)) }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases(REGEX_CASES)))]

    #[test]
    fn regex_takes_any_bytes(b in bytes()) { regex(&b) }
    #[test]
    fn regex_takes_near_valid_patterns_and_lines(b in near(REGEX)) { regex(&b) }
}
