//! The `docker` format: Docker's json-file driver, one JSON object per line:
//! `{"log":"text\n","stream":"stderr","time":"2026-11-25T13:51:20.123456789Z"}`.
//!
//! Mapping: `log` → message, without its trailing newline; a `log` that does not end in a
//! newline is a piece of a message Docker split (16 KiB pieces) and is marked `partial` for
//! `join::DockerJoiner`. `stream` → `stream`, `time` → event time. Any other key (`attrs` with
//! `--log-opt labels=...`) goes to `fields` as its raw JSON text (`FieldValue::Json`). A `time`
//! that is not an RFC 3339 string (`"time": 123`) is unreadable: kept as a field, with
//! `time_unparsed` set.
//!
//! The object is read by the `json` adapter without its key lifting (so it is validated the
//! same way, but `time`, `level`, `msg` mean nothing special); `log` borrows
//! from the line when its only escape is the final `\n`, which is the common case. A line is
//! rejected when it is not a JSON object, or `log` is missing or not a string.

use std::borrow::Cow;

use serde_json::value::RawValue;

use super::json::{self, JsonLine};
use super::parsed::{FieldValue, ParseError, Parsed, Stream};
use super::timestamp;

const FORMAT: &str = "docker";

/// Parses one line into a fresh record.
pub fn parse(line: &str) -> Result<Parsed<'_>, ParseError> {
    let mut out = Parsed::default();
    parse_into(line, &mut out)?;
    Ok(out)
}

/// Parses one line (without its ending) into `out`, clearing it first.
pub fn parse_into<'a>(line: &'a str, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    out.clear();
    let mut j = JsonLine::default();
    // Nothing lifted: the json format's time, level and message keys are not Docker's, and
    // its reading of a number `time` as epoch seconds would be wrong here.
    json::parse_fields_into(line, &mut j).map_err(|_| ParseError::new(FORMAT, "not a JSON object", 0))?;
    let mut log = None;
    let mut time_seen = false;
    for f in j.fields.drain(..) {
        match &*f.key {
            "log" if log.is_none() => log = Some(f.value),
            "stream" if out.stream.is_none() => {
                out.stream = string(f.value).and_then(|s| Stream::from_name(&s));
                if out.stream.is_none() {
                    out.fields.push((f.key, FieldValue::Json(Cow::Borrowed(f.value.get()))));
                }
            }
            // Docker writes `time` as an RFC 3339 string; anything else is a time we cannot
            // read (the record gets the read time), kept as written.
            "time" if !time_seen => {
                time_seen = true;
                out.timestamp_ns = string(f.value).and_then(|s| timestamp::rfc3339(&s));
                if out.timestamp_ns.is_none() {
                    out.time_unparsed = true;
                    out.fields.push((f.key, FieldValue::Json(Cow::Borrowed(f.value.get()))));
                }
            }
            _ => out.fields.push((f.key, FieldValue::Json(Cow::Borrowed(f.value.get())))),
        }
    }
    let raw = log.ok_or(ParseError::new(FORMAT, "no `log` key", 0))?.get();
    let (message, ended) = log_text(raw).ok_or(ParseError::new(FORMAT, "`log` is not a string", 0))?;
    out.message = message;
    out.partial = !ended;
    Ok(())
}

/// The text of a JSON string literal (quotes included), borrowed when it has no escapes.
fn string(raw: &RawValue) -> Option<Cow<'_, str>> {
    let text = raw.get();
    let inner = text.strip_prefix('"')?.strip_suffix('"')?;
    if !inner.contains('\\') {
        return Some(Cow::Borrowed(inner));
    }
    serde_json::from_str::<String>(text).ok().map(Cow::Owned)
}

/// `log`'s text without its trailing newline, and whether it had one.
fn log_text(raw: &str) -> Option<(Cow<'_, str>, bool)> {
    let inner = raw.strip_prefix('"')?.strip_suffix('"')?;
    // Common case: the only escape is the final `\n`.
    if let Some(body) = inner.strip_suffix("\\n") {
        if !body.contains('\\') {
            return Some((Cow::Borrowed(body), true));
        }
    }
    if !inner.contains('\\') {
        return Some((Cow::Borrowed(inner), false));
    }
    let mut s: String = serde_json::from_str(raw).ok()?;
    let ended = s.ends_with('\n');
    if ended {
        s.pop();
    }
    Some((Cow::Owned(s), ended))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::adapt::join::DockerJoiner;

    #[test]
    fn parses_the_three_keys() {
        let p = parse(r#"{"log":"hello world\n","stream":"stderr","time":"2026-11-25T13:51:20.123456789Z"}"#).unwrap();
        assert!(matches!(p.message, Cow::Borrowed("hello world")));
        assert_eq!(p.stream, Some(Stream::Stderr));
        assert_eq!(p.timestamp_ns, Some(1_795_614_680_123_456_789));
        assert!(!p.partial && p.fields.is_empty());
    }

    #[test]
    fn escapes_partial_and_extra_keys() {
        let p = parse(
            r#"{"log":"say \"hi\"\t\u00fc\n","stream":"stdout","time":"2026-11-25T13:51:20Z","attrs":{"a":"b"}}"#,
        )
        .unwrap();
        assert_eq!(p.message, "say \"hi\"\tü");
        assert_eq!(
            p.fields,
            vec![(Cow::Borrowed("attrs"), FieldValue::Json(Cow::Borrowed(r#"{"a":"b"}"#)))]
        );
        let p = parse(r#"{"log":"no newline","stream":"stdout","time":"2026-11-25T13:51:20Z"}"#).unwrap();
        assert!(p.partial);
        let p = parse(r#"{"log":"back\\n","stream":"stdout","time":"x"}"#).unwrap();
        assert_eq!(p.message, "back\\n");
        assert!(p.partial);
        assert_eq!(p.timestamp_ns, None);
        assert!(p.time_unparsed);
        assert_eq!(p.field("time"), Some(&FieldValue::Json(Cow::Borrowed("\"x\""))));
        let p = parse(r#"{"log":"\n","stream":"stdout"}"#).unwrap();
        assert_eq!((&*p.message, p.partial), ("", false));
    }

    #[test]
    fn a_time_that_is_not_a_string_is_unreadable() {
        for time in ["123", "1795614680", "null", "{\"s\":1}", "\"yesterday\""] {
            let line = format!(r#"{{"log":"x\n","stream":"stdout","time":{time}}}"#);
            let p = parse(&line).unwrap();
            assert_eq!(p.timestamp_ns, None, "{line}");
            assert!(p.time_unparsed, "{line}");
            assert_eq!(p.field("time"), Some(&FieldValue::Json(Cow::Borrowed(time))), "{line}");
        }
        // The json format's own keys are plain fields here, under their names.
        let p = parse(r#"{"log":"x\n","level":"error","msg":"m","timestamp":"2026-11-25T13:51:20Z"}"#).unwrap();
        assert_eq!((p.timestamp_ns, p.level, p.time_unparsed), (None, None, false));
        assert_eq!(p.field("level"), Some(&FieldValue::Json(Cow::Borrowed("\"error\""))));
        assert_eq!(p.field("msg"), Some(&FieldValue::Json(Cow::Borrowed("\"m\""))));
        assert!(p.field("timestamp").is_some());
    }

    #[test]
    fn rejects() {
        for (line, reason) in [
            ("", "not a JSON object"),
            ("plain", "not a JSON object"),
            (r#"{"log":"x\n""#, "not a JSON object"),
            (r#"{"stream":"stdout"}"#, "no `log` key"),
            (r#"{"log":42}"#, "`log` is not a string"),
        ] {
            assert_eq!(parse(line).unwrap_err().reason, reason, "{line:?}");
        }
    }

    #[test]
    fn split_line_at_eof_is_flushed_partial() {
        let mut j = DockerJoiner::new(1 << 20);
        let a = r#"{"log":"first half ","stream":"stdout","time":"2026-11-25T13:51:20Z"}"#;
        let b = r#"{"log":"second half\n","stream":"stdout","time":"2026-11-25T13:51:21Z"}"#;
        let c = r#"{"log":"cut by rotation","stream":"stdout","time":"2026-11-25T13:51:22Z"}"#;
        assert!(j.push(parse(a).unwrap()).is_none());
        let r = j.push(parse(b).unwrap()).unwrap();
        assert_eq!(r.message, "first half second half");
        assert_eq!(r.timestamp_ns, Some(1_795_614_680_000_000_000));
        assert!(j.push(parse(c).unwrap()).is_none());
        let left = j.flush();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].message, "cut by rotation");
        assert!(left[0].partial);
        assert!(!j.is_pending());
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn joining_ignores_piece_boundaries(
            messages in proptest::collection::vec((any::<bool>(), "[^\\n]{0,50}"), 0..6),
            piece in 1usize..16,
        ) {
            let mut lines = Vec::new();
            for (stderr, m) in &messages {
                let stream = if *stderr { "stderr" } else { "stdout" };
                let chars: Vec<char> = m.chars().collect();
                let mut pieces: Vec<String> = chars.chunks(piece).map(|c| c.iter().collect()).collect();
                if pieces.is_empty() {
                    pieces.push(String::new());
                }
                let n = pieces.len();
                for (k, p) in pieces.into_iter().enumerate() {
                    let log = if k + 1 == n { format!("{p}\n") } else { p };
                    lines.push(serde_json::json!({"log": log, "stream": stream, "time": "2026-11-25T13:51:20Z"}).to_string());
                }
            }
            let mut j = DockerJoiner::new(usize::MAX);
            let mut got = Vec::new();
            for l in &lines {
                if let Some(r) = j.push(parse(l).unwrap()) {
                    got.push((r.stream == Some(Stream::Stderr), r.message.into_owned()));
                }
            }
            prop_assert!(!j.is_pending());
            for stderr in [false, true] {
                let want: Vec<&String> = messages.iter().filter(|m| m.0 == stderr).map(|m| &m.1).collect();
                let have: Vec<&String> = got.iter().filter(|g| g.0 == stderr).map(|g| &g.1).collect();
                prop_assert_eq!(want, have);
            }
        }
    }
}
