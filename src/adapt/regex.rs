//! The `regex` format: a user pattern with named captures, compiled once per source.
//!
//! Mapping onto the record:
//! - the `timestamp` capture → event time: with `timestamp_format` (chrono's strftime syntax,
//!   e.g. `%y%m%d %H%M%S`; a layout without a year takes it from "now" with the New Year rule,
//!   one without an offset means UTC) first, then the built-in shapes of
//!   `timestamp::parse_any` (RFC 3339, log4j `2015-07-29 17:41:44,747`, Apache
//!   `17/May/2015:10:05:03 +0000`, epoch s/ms/µs/ns). Unreadable → no event time, and the text
//!   is kept as the field `timestamp`;
//! - the `level` capture → level via `normalize_level`; an unknown name stays the field `level`;
//! - the `message` capture → message; without one the whole line is the message;
//! - every other named capture → a string field named after the capture. Capture names may
//!   contain `.`, so OpenTelemetry names can be used directly: `(?P<process.pid>\d+)`.
//!   A capture that took no part in the match is left out.
//!
//! The pattern is not anchored for you; write `^…$` to require the whole line. A line the
//! pattern does not match is rejected.

use std::borrow::Cow;

use regex::{CaptureLocations, Regex};

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
    #[error("{0}")]
    TimestampFormat(String),
    #[error("timestamp_format is set but the pattern has no `timestamp` capture")]
    FormatWithoutTimestamp,
}

/// Per-caller scratch space of `RegexParser::parse_into` (capture positions), made by
/// `RegexParser::locations` and reused across lines.
#[derive(Debug)]
pub struct Scratch {
    locs: CaptureLocations,
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
}

impl RegexParser {
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
            p.layout = Some(Layout::new(f).map_err(RegexError::TimestampFormat)?);
        }
        Ok(p)
    }

    /// Scratch space for `parse_into`, reusable across lines.
    pub fn locations(&self) -> Scratch {
        Scratch {
            locs: self.re.capture_locations(),
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
        if self.re.captures_read(&mut scratch.locs, line).is_none() {
            return Err(ParseError::new(FORMAT, "line does not match the pattern", 0));
        }
        let locs = &scratch.locs;
        let span = |i: usize| locs.get(i);
        let group = |i: Option<usize>| i.and_then(span).map(|(s, e)| &line[s..e]);
        if let Some(t) = group(self.timestamp) {
            out.timestamp_ns = self
                .layout
                .as_ref()
                .and_then(|l| l.parse(t, now_ns))
                .or_else(|| timestamp::parse_any(t));
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

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let p = RegexParser::new(r"^(?P<timestamp>\S+) (?P<level>\S+) (?P<message>.*)$", Some("%Y-%m-%dT%H:%M:%S%.f")).unwrap();
            let _ = p.parse(&s, NOW);
        }
    }
}
