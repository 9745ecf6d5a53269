//! The `regex` format: a user pattern with named captures, compiled once per source.
//!
//! Mapping onto the record:
//! - the `timestamp` capture → event time: with `timestamp_format` (chrono's strftime syntax,
//!   e.g. `%y%m%d %H%M%S`; a layout without a year takes it from "now" with the New Year rule,
//!   one without an offset means UTC) first, then the built-in shapes of
//!   `timestamp::parse_any` (RFC 3339, log4j `2015-07-29 17:41:44,747`, Apache
//!   `17/May/2015:10:05:03 +0000`, epoch s/ms/µs/ns). Unreadable → no event time, and the text
//!   is kept as the field `timestamp`. A weekday that contradicts the date is ignored and
//!   noted as the line's `parse_warning`;
//! - the `level` capture → level via `normalize_level`; an unknown name stays the field `level`;
//! - the `message` capture → message; without one the whole line is the message;
//! - every other named capture → a string field named after the capture. Capture names may
//!   contain `.`, so OpenTelemetry names can be used directly: `(?P<process.pid>\d+)`.
//!   A capture that took no part in the match is left out.
//!
//! The pattern is not anchored for you; write `^…$` to require the whole line. A line the
//! pattern does not match is rejected.
//!
//! Speed: the regex crate finds captures of an anchored pattern with its one-pass DFA, a few
//! hundred MB/s, well behind the hand-written formats. Typical patterns are a `^` followed by
//! literals, greedy runs of a class (`[^ ]+`, `\d{6}`, `.*`), capture groups, alternations and
//! `(…)?`; for those `Walk` matches in one forward pass, taking at every choice the option the
//! regex engine tries first (the longest run, the first alternative, an optional group taken),
//! and runs of "all but one to three ASCII bytes" are one `memchr`. A walk that gets through
//! took the path of highest priority that matches, which is the match the regex engine
//! reports (leftmost-first), so its spans are the same. When it fails after a choice point,
//! or meets a character its classes cannot judge (a non-ASCII character against `\d`, `\w`,
//! `\s`, which are Unicode-aware), the line goes to the regex engine, which decides. Patterns
//! with a construct the walk does not know (flags, lazy or repeated groups, other anchors and
//! escapes), or with a run that can also take what follows it (`(?P<thread>.*):`, which the
//! engine must cut back on every line), use the regex engine only.

use std::borrow::Cow;

use regex::{CaptureLocations, Regex};

mod walk;

use self::walk::Walk;
use super::normalize_level;
use super::parsed::{FieldValue, ParseError, Parsed};
use super::timestamp::{self, Layout};

const FORMAT: &str = "regex";

/// Why a `regex` source's configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum RegexError {
    #[error("invalid pattern: {0}")]
    Pattern(#[from] regex::Error),
    #[error("the pattern has no named capture (write e.g. `(?P<message>.*)`)")]
    NoNamedCapture,
    #[error(transparent)]
    TimestampFormat(#[from] timestamp::LayoutError),
    #[error("timestamp_format is set but the pattern has no `timestamp` capture")]
    FormatWithoutTimestamp,
}

/// Per-caller scratch space of `RegexParser::parse_into` (capture positions), made by
/// `RegexParser::locations` and reused across lines.
#[derive(Debug)]
pub struct Scratch {
    locs: CaptureLocations,
    /// The match's capture spans by index, from the walk or copied from `locs`.
    spans: Vec<Option<(usize, usize)>>,
}

/// A compiled `regex` format.
#[derive(Debug, Clone)]
pub struct RegexParser {
    re: Regex,
    timestamp: Option<usize>,
    level: Option<usize>,
    message: Option<usize>,
    /// (group index, name) of every other named capture, in pattern order.
    fields: Vec<(usize, String)>,
    layout: Option<Layout>,
    /// The pattern as a forward walk, when it is in the subset the walk knows.
    walk: Option<Walk>,
}

impl RegexParser {
    /// The pattern as written (for `tailship validate --print`).
    pub fn pattern(&self) -> &str {
        self.re.as_str()
    }

    /// Compiles `pattern`; `timestamp_format` is an optional strftime-like layout for the
    /// `timestamp` capture.
    pub fn new(pattern: &str, timestamp_format: Option<&str>) -> Result<RegexParser, RegexError> {
        let re = Regex::new(pattern)?;
        let mut p = RegexParser {
            timestamp: None,
            level: None,
            message: None,
            fields: Vec::new(),
            layout: None,
            walk: Walk::compile(pattern, &re),
            re: re.clone(),
        };
        for (i, name) in re.capture_names().enumerate() {
            let Some(name) = name else { continue };
            match name {
                "timestamp" => p.timestamp = Some(i),
                "level" => p.level = Some(i),
                "message" => p.message = Some(i),
                _ => p.fields.push((i, name.to_owned())),
            }
        }
        if p.timestamp.is_none() && p.level.is_none() && p.message.is_none() && p.fields.is_empty() {
            return Err(RegexError::NoNamedCapture);
        }
        if let Some(f) = timestamp_format {
            if p.timestamp.is_none() {
                return Err(RegexError::FormatWithoutTimestamp);
            }
            p.layout = Some(Layout::new(f)?);
        }
        Ok(p)
    }

    /// Scratch space for `parse_into`, reusable across lines.
    pub fn locations(&self) -> Scratch {
        Scratch {
            locs: self.re.capture_locations(),
            spans: vec![None; self.re.captures_len()],
        }
    }

    /// Parses one line into a fresh record; `now_ns` supplies a year the layout lacks.
    pub fn parse<'a>(&'a self, line: &'a str, now_ns: i64) -> Result<Parsed<'a>, ParseError> {
        let mut out = Parsed::default();
        let mut locs = self.locations();
        self.parse_into(line, now_ns, &mut out, &mut locs)?;
        Ok(out)
    }

    /// Parses one line (without its ending) into `out`, clearing it first.
    pub fn parse_into<'a>(
        &'a self,
        line: &'a str,
        now_ns: i64,
        out: &mut Parsed<'a>,
        scratch: &mut Scratch,
    ) -> Result<(), ParseError> {
        out.clear();
        if scratch.spans.len() != self.re.captures_len() {
            // Scratch made by another parser: the walk indexes spans by capture number.
            *scratch = self.locations();
        }
        let walked = self.walk.as_ref().and_then(|w| w.run(line, &mut scratch.spans));
        if walked.is_none() {
            if self.re.captures_read(&mut scratch.locs, line).is_none() {
                return Err(ParseError::new(FORMAT, "line does not match the pattern", 0));
            }
            for (i, s) in scratch.spans.iter_mut().enumerate() {
                *s = scratch.locs.get(i);
            }
        }
        let spans = &scratch.spans;
        let span = |i: usize| spans.get(i).copied().flatten();
        let group = |i: Option<usize>| i.and_then(span).map(|(s, e)| &line[s..e]);
        if let Some(t) = group(self.timestamp) {
            match self.layout.as_ref().and_then(|l| l.parse_noting(t, now_ns)) {
                Some((ns, warning)) => {
                    out.timestamp_ns = Some(ns);
                    if let Some(w) = warning {
                        out.warn(w);
                    }
                }
                None => out.timestamp_ns = timestamp::parse_any(t),
            }
            if out.timestamp_ns.is_none() {
                out.time_unparsed = true;
                out.push("timestamp", FieldValue::str(t));
            }
        }
        if let Some(l) = group(self.level) {
            out.level = normalize_level(l.trim());
            if out.level.is_none() {
                out.push("level", FieldValue::str(l));
            }
        }
        out.message = Cow::Borrowed(match self.message {
            Some(_) => group(self.message).unwrap_or(""),
            None => line,
        });
        for (i, name) in &self.fields {
            if let Some((s, e)) = span(*i) {
                out.fields
                    .push((Cow::Borrowed(name.as_str()), FieldValue::str(&line[s..e])));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::strategy::ValueTree;

    use super::*;
    use crate::adapt::Level;

    const NOW: i64 = 1_795_614_680_000_000_000;

    #[test]
    fn maps_the_captures() {
        let p = RegexParser::new(
            r"^(?P<timestamp>\d{6} \d{6}) (?P<process.pid>\d+) (?P<level>\w+) (?P<component>[^:]+): (?P<message>.*)$",
            Some("%y%m%d %H%M%S"),
        )
        .unwrap();
        let r = p
            .parse(
                "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 terminating",
                NOW,
            )
            .unwrap();
        assert_eq!(r.timestamp_ns, Some(1_226_262_975_000_000_000));
        assert_eq!(r.level, Some(Level::Info));
        assert_eq!(r.message, "PacketResponder 1 terminating");
        assert_eq!(r.field("process.pid"), Some(&FieldValue::str("148")));
        assert_eq!(
            r.field("component"),
            Some(&FieldValue::str("dfs.DataNode$PacketResponder"))
        );
        assert_eq!(
            p.parse("no match", NOW).unwrap_err().reason,
            "line does not match the pattern"
        );
    }

    #[test]
    fn builtin_times_unknown_levels_and_no_message_capture() {
        let p = RegexParser::new(r"^(?P<timestamp>\S+ \S+) (?P<level>\S+)(?: (?P<opt>x))?", None).unwrap();
        let r = p.parse("2015-07-29 17:41:44,747 chatty rest", NOW).unwrap();
        assert_eq!(r.timestamp_ns, Some(1_438_191_704_747_000_000));
        assert_eq!(r.level, None);
        assert_eq!(r.field("level"), Some(&FieldValue::str("chatty")));
        assert_eq!(r.field("opt"), None);
        assert_eq!(r.message, "2015-07-29 17:41:44,747 chatty rest");
        let r = p.parse("not-a time warn", NOW).unwrap();
        assert_eq!(r.timestamp_ns, None);
        assert_eq!(r.field("timestamp"), Some(&FieldValue::str("not-a time")));
        assert_eq!(r.level, Some(Level::Warn));
    }

    #[test]
    fn config_errors_name_the_problem() {
        let e = RegexParser::new("(?P<message>", None).unwrap_err();
        assert!(e.to_string().starts_with("invalid pattern:"), "{e}");
        assert!(matches!(
            RegexParser::new("(.*)", None),
            Err(RegexError::NoNamedCapture)
        ));
        assert!(matches!(
            RegexParser::new("(?P<message>.*)", Some("%Y")),
            Err(RegexError::FormatWithoutTimestamp)
        ));
        let e = RegexParser::new("(?P<timestamp>.*)", Some("%Q")).unwrap_err();
        assert!(e.to_string().contains("timestamp_format"), "{e}");
    }

    const COMBINED: &str = r#"^(?P<client.address>[^ ]+) (?P<ident>[^ ]+) (?P<user.name>[^ ]+) \[(?P<timestamp>[^\]]+)\] "(?P<http.request.method>[^ ]+) (?P<url.path>[^ ]+) (?P<proto>[^"]*)" (?P<status>[0-9]{3}) (?P<bytes>[0-9]+|-)(?: "(?P<referer>[^"]*)" "(?P<user_agent.original>[^"]*)")?"#;
    const HDFS: &str =
        r"^(?P<timestamp>\d{6} \d{6}) (?P<process.pid>\d+) (?P<level>[A-Z]+) (?P<component>[^:]+): (?P<message>.*)$";

    /// Patterns in the walk's subset, for the differential tests; not all pass
    /// `runs_stop_cleanly`, so that failures after choice points are exercised too.
    const WALKED: &[&str] = &[
        COMBINED,
        HDFS,
        r"^(?P<a>\S+) (?P<b>\w*)(?:-(?P<c>[a-c]{1,2}|x\d|))?(?P<d>[.;]?)",
        r"^(?:(?P<a>[^ab]+)|(?P<b>a+)|b)(?P<c>[b-d]?)[^\s]*$",
        r"^(?P<t>\d{2}/\d{2}) \[(?P<l>[A-Z]+)\] (?P<m>[^\]]*)",
        r"^(?P<a>x?)(?P<b>[^x:]{2,5}):é(?P<c>[a ]?)",
    ];

    /// A generator for lines shaped like `pattern`: proptest would fill `\d`, `\S` and `\w`
    /// with any Unicode digit, non-space or word character, which the walk hands to the regex
    /// engine, so mostly ASCII ones are asked for.
    fn lines_like(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
        let p = pattern.trim_start_matches('^').trim_end_matches('$');
        let p = p
            .replace(r"\d", "[0-9]")
            .replace(r"\S", "[!-~]")
            .replace(r"\w", "[a-z_0-9]");
        proptest::string::string_regex(&p).unwrap()
    }

    fn regex_spans(re: &Regex, line: &str) -> Option<Vec<Option<(usize, usize)>>> {
        let mut locs = re.capture_locations();
        re.captures_read(&mut locs, line)?;
        Some((0..locs.len()).map(|i| locs.get(i)).collect())
    }

    /// The walk's spans when it vouches for a match; they must equal the regex engine's.
    fn check_walk(pattern: &str, line: &str) -> bool {
        let re = Regex::new(pattern).unwrap();
        let walk = Walk::parse(pattern, &re).unwrap_or_else(|| panic!("{pattern} not walked"));
        let mut spans = vec![None; re.captures_len()];
        if walk.run(line, &mut spans).is_none() {
            return false;
        }
        assert_eq!(Some(spans), regex_spans(&re, line), "{pattern} on {line:?}");
        true
    }

    #[test]
    fn walk_covers_the_usual_patterns() {
        let line = r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 7 "-" "curl""#;
        assert!(check_walk(COMBINED, line));
        assert!(check_walk(
            COMBINED,
            r#"1.2.3.4 - - [17/May/2015:10:05:03 +0000] "GET /a HTTP/1.1" 200 -"#
        ));
        assert!(check_walk(
            HDFS,
            "081109 203615 148 INFO dfs.DataNode: PacketResponder 1 terminating"
        ));
        // Unicode digits: the regex engine decides.
        assert!(!check_walk(HDFS, "081109 203615 1٤8 INFO dfs.DataNode: x"));
        for p in WALKED {
            assert!(Walk::parse(p, &Regex::new(p).unwrap()).is_some(), "{p}");
        }
        for p in [COMBINED, HDFS] {
            assert!(Walk::compile(p, &Regex::new(p).unwrap()).is_some(), "{p}");
        }
        for p in [
            r"(?P<a>x)",        // not anchored
            r"^(?P<a>x)|y",     // only the first alternative anchored
            r"^(?i)(?P<a>x)",   // flags
            r"^(?P<a>.*?):",    // lazy
            r"^(?P<a>.*):",     // a run the regex engine cuts back
            r"^(?:(?P<a>x) )+", // repeated group
            r"^(?P<a>\bx)",     // other escapes
            r"^(?P<a>\<x)",
            r"^(?P<a>[[:alpha:]]+)", // nested class
            r"^(?P<a>[a-z&&[^x]]+)", // class set operation
            r"^(?P<a>[é]+)",         // non-ASCII class member
            r"^(?P<a>x)(?P<b>\p{L})",
        ] {
            assert!(Walk::compile(p, &Regex::new(p).unwrap()).is_none(), "{p}");
        }
    }

    /// The differential test below only checks lines the walk vouches for: make sure that is
    /// a good share of the lines generated from each pattern, so it checks something.
    #[test]
    fn walk_vouches_for_generated_lines() {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        for p in WALKED {
            let gen = lines_like(p);
            let walked = (0..200)
                .filter(|_| check_walk(p, &gen.new_tree(&mut runner).unwrap().current()))
                .count();
            assert!(walked > 50, "{p}: {walked} of 200");
        }
    }

    #[test]
    fn fallback_lines_parse_as_before() {
        let p = RegexParser::new(HDFS, Some("%y%m%d %H%M%S")).unwrap();
        let r = p.parse("081109 203615 1٤8 INFO dfs.DataNode: x", NOW).unwrap();
        assert_eq!(r.field("process.pid"), Some(&FieldValue::str("1٤8")));
        assert_eq!(r.message, "x");
        assert!(p.parse("081109 203615 148 INFO dfs.DataNode: x\ny", NOW).is_err());
    }

    proptest! {
        /// Lines shaped like each pattern (proptest generates them from the pattern), then
        /// bent by an insertion from a tricky alphabet.
        #[test]
        fn walk_agrees_with_the_regex_engine(
            k in 0..WALKED.len(),
            seed in any::<u64>(),
            ins in prop::sample::select(vec!["", " ", "\"", "]", "-", "x", "a", "b", "é", "٣", "\n", "7", ":"]),
            at in any::<prop::sample::Index>(),
        ) {
            let pattern = WALKED[k];
            let gen = lines_like(pattern);
            let mut runner = proptest::test_runner::TestRunner::new_with_rng(
                Default::default(),
                proptest::test_runner::TestRng::from_seed(proptest::test_runner::RngAlgorithm::ChaCha, &{
                    let mut s = [0u8; 32];
                    s[..8].copy_from_slice(&seed.to_le_bytes());
                    s
                }),
            );
            let mut line = gen.new_tree(&mut runner).unwrap().current();
            check_walk(pattern, &line);
            let cut = line.char_indices().map(|(i, _)| i).chain([line.len()]).collect::<Vec<_>>();
            line.insert_str(cut[at.index(cut.len())], ins);
            check_walk(pattern, &line);
        }

        #[test]
        fn never_panics(s in "\\PC*") {
            let p = RegexParser::new(r"^(?P<timestamp>\S+) (?P<level>\S+) (?P<message>.*)$", Some("%Y-%m-%dT%H:%M:%S%.f")).unwrap();
            let _ = p.parse(&s, NOW);
        }
    }
}
