//! The `logfmt` format: `key=value key2="quoted \"value\"" bare_key empty=`.
//!
//! Mapping onto the record:
//! - the first `ts` / `time` / `timestamp` whose value `timestamp::parse_any` reads (RFC 3339,
//!   log4j, Apache, epoch) becomes the event time;
//! - the first `level` / `lvl` / `severity` / `at` (Heroku's) whose value `normalize_level`
//!   knows becomes the level;
//! - the first `msg` / `message` becomes the message (empty when there is none);
//! - every other pair goes to `fields` under its own key, as a string (logfmt has no types);
//!   a bare key (`debug` alone) is `true`, `key=` is the empty string. A time or level whose
//!   value we cannot read stays a field, so nothing the application wrote is lost.
//!
//! Quoted values undo the escapes `\"`, `\\`, `\n`, `\r`, `\t` (any other `\x` is kept as
//! written); they borrow from the line when there is nothing to undo. A line is rejected when
//! it holds no `key=value` pair at all (free text is not logfmt) or when a key starts with `"`
//! or `=`. A quote that is not closed (a line cut by a length limit, a message with a stray
//! quote) takes the rest of the line as its value, noted with `Parsed::warn`; strict mode
//! (`parse_into_with`) rejects the line instead.

use std::borrow::Cow;

use super::parsed::{FieldValue, ParseError, Parsed};
use super::{normalize_level, timestamp};

const FORMAT: &str = "logfmt";

/// Parses one line into a fresh record.
pub fn parse(line: &str) -> Result<Parsed<'_>, ParseError> {
    let mut out = Parsed::default();
    parse_into(line, &mut out)?;
    Ok(out)
}

/// Parses one line (without its ending) into `out`, clearing it first, leniently.
pub fn parse_into<'a>(line: &'a str, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    parse_into_with(line, false, out)
}

const UNTERMINATED: &str = "unterminated quoted value";

/// Parses one line into `out`, clearing it first; `strict` rejects a line whose quote is not
/// closed rather than salvaging it (module docs).
pub fn parse_into_with<'a>(line: &'a str, strict: bool, out: &mut Parsed<'a>) -> Result<(), ParseError> {
    out.clear();
    let b = line.as_bytes();
    let mut i = 0;
    let mut pairs = 0usize;
    let mut seen = Seen::default();
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let (key, value, next) = pair(line, i, strict, out)?;
        i = next;
        let value = match value {
            Some(v) => {
                pairs += 1;
                v
            }
            None => FieldValue::Bool(true),
        };
        if let Some(value) = seen.well_known(key, value, out) {
            out.fields.push((Cow::Borrowed(key), value));
        }
    }
    if pairs == 0 {
        return Err(ParseError::new(FORMAT, "no key=value pair", 0));
    }
    Ok(())
}

/// The `key=value` (or bare `key`: no value) starting at `i`, and the index past it.
fn pair<'a>(
    line: &'a str,
    mut i: usize,
    strict: bool,
    out: &mut Parsed<'a>,
) -> Result<(&'a str, Option<FieldValue<'a>>, usize), ParseError> {
    let b = line.as_bytes();
    if b[i] == b'"' || b[i] == b'=' {
        return Err(ParseError::new(FORMAT, "a key cannot start with `\"` or `=`", i));
    }
    let key_start = i;
    while i < b.len() && !matches!(b[i], b'=' | b' ' | b'\t' | b'"') {
        i += 1;
    }
    if i < b.len() && b[i] == b'"' {
        return Err(ParseError::new(FORMAT, "quote inside a key", i));
    }
    let key = &line[key_start..i];
    if i >= b.len() || b[i] != b'=' {
        return Ok((key, None, i));
    }
    i += 1;
    if i < b.len() && b[i] == b'"' {
        let (v, next, closed) = quoted(line, i);
        if !closed {
            if strict {
                return Err(ParseError::new(FORMAT, UNTERMINATED, i));
            }
            out.warn(UNTERMINATED);
        }
        return Ok((key, Some(FieldValue::Str(v)), next));
    }
    let start = i;
    while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
        i += 1;
    }
    Ok((key, Some(FieldValue::str(&line[start..i])), i))
}

/// Which of the record's own keys (time, level, message) a line has given already: the first
/// readable one of each wins, later ones stay fields.
#[derive(Default)]
struct Seen {
    time: bool,
    level: bool,
    msg: bool,
}

impl Seen {
    /// Takes `value` into `out`'s time, level or message if `key` names one still open;
    /// returns it back if it stays a field.
    fn well_known<'a>(&mut self, key: &str, value: FieldValue<'a>, out: &mut Parsed<'a>) -> Option<FieldValue<'a>> {
        let FieldValue::Str(s) = &value else {
            return Some(value);
        };
        match key {
            "ts" | "time" | "timestamp" if !self.time => {
                if let Some(t) = timestamp::parse_any(s) {
                    out.timestamp_ns = Some(t);
                    self.time = true;
                    return None;
                }
                out.time_unparsed = true;
            }
            // `at` is Heroku's (router, dynos, many Ruby loggers): `at=info`, `at=error`.
            "level" | "lvl" | "severity" | "at" if !self.level => {
                if let Some(l) = normalize_level(s) {
                    out.level = Some(l);
                    self.level = true;
                    return None;
                }
            }
            "msg" | "message" if !self.msg => {
                if let FieldValue::Str(s) = value {
                    out.message = s;
                }
                self.msg = true;
                return None;
            }
            _ => {}
        }
        Some(value)
    }
}

/// The quoted value starting at the `"` at `open`: its text, the index past the closing quote,
/// and whether there was one (without, the value is the rest of the line).
fn quoted(line: &str, open: usize) -> (Cow<'_, str>, usize, bool) {
    let b = line.as_bytes();
    let start = open + 1;
    let mut i = start;
    // Fast path: find the closing quote; only if a backslash comes first is there work.
    match memchr::memchr2(b'"', b'\\', &b[start..]) {
        None => return (Cow::Borrowed(&line[start..]), b.len(), false),
        Some(k) if b[start + k] == b'"' => return (Cow::Borrowed(&line[start..start + k]), start + k + 1, true),
        Some(_) => {}
    }
    let mut s = String::with_capacity(32);
    let mut run = start;
    while i < b.len() {
        match b[i] {
            b'"' => {
                s.push_str(&line[run..i]);
                return (Cow::Owned(s), i + 1, true);
            }
            b'\\' if i + 1 < b.len() => {
                s.push_str(&line[run..i]);
                match b[i + 1] {
                    b'"' => s.push('"'),
                    b'\\' => s.push('\\'),
                    b'n' => s.push('\n'),
                    b'r' => s.push('\r'),
                    b't' => s.push('\t'),
                    _ => {
                        // Unknown escape: keep the backslash; the next byte is copied as part
                        // of the following run (it may start a multi-byte character).
                        s.push('\\');
                        i += 1;
                        run = i;
                        continue;
                    }
                }
                i += 2;
                run = i;
            }
            _ => i += 1,
        }
    }
    s.push_str(&line[run.min(b.len())..]);
    (Cow::Owned(s), b.len(), false)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::adapt::Level;

    fn kv<'a>(p: &'a Parsed) -> Vec<(&'a str, FieldValue<'a>)> {
        p.fields.iter().map(|(k, v)| (&**k, v.clone())).collect()
    }

    #[test]
    fn lifts_and_keeps_the_rest() {
        let p = parse(r#"ts=2026-11-25T13:51:20Z level=warn msg="disk \"sda\" full" dev=sda pct=97.5 debug empty="#)
            .unwrap();
        assert_eq!(p.timestamp_ns, Some(1_795_614_680_000_000_000));
        assert_eq!(p.level, Some(Level::Warn));
        assert_eq!(p.message, "disk \"sda\" full");
        assert!(matches!(p.message, Cow::Owned(_)));
        assert_eq!(
            kv(&p),
            vec![
                ("dev", FieldValue::str("sda")),
                ("pct", FieldValue::str("97.5")),
                ("debug", FieldValue::Bool(true)),
                ("empty", FieldValue::str("")),
            ]
        );
    }

    #[test]
    fn quoted_values_borrow_without_escapes() {
        let p = parse(r#"msg="hello world" a="" b="x\\y\tz\q""#).unwrap();
        assert!(matches!(p.message, Cow::Borrowed("hello world")));
        assert_eq!(p.field("a"), Some(&FieldValue::str("")));
        assert_eq!(p.field("b").and_then(|v| v.as_str()), Some("x\\y\tz\\q"));
    }

    #[test]
    fn aliases_and_unreadable_values_stay_fields() {
        let p = parse("time=1795614680 lvl=E message=boom severity=info").unwrap();
        assert_eq!(p.timestamp_ns, Some(1_795_614_680_000_000_000));
        assert_eq!(p.level, Some(Level::Error));
        assert_eq!(p.message, "boom");
        assert_eq!(kv(&p), vec![("severity", FieldValue::str("info"))]);
        let p = parse("ts=whenever level=chatty x=1").unwrap();
        assert_eq!((p.timestamp_ns, p.level), (None, None));
        assert_eq!(p.fields.len(), 3);
        assert_eq!(p.message, "");
    }

    #[test]
    fn empty_message_and_unicode() {
        let p = parse("msg= k=ü \"").unwrap_err();
        assert_eq!(p.reason, "a key cannot start with `\"` or `=`");
        let p = parse("msg= k=ü").unwrap();
        assert_eq!(p.message, "");
        assert_eq!(p.field("k"), Some(&FieldValue::str("ü")));
        let p = parse(r#"msg="\ü""#).unwrap();
        assert_eq!(p.message, "\\ü");
    }

    #[test]
    fn rejects() {
        for (line, reason) in [
            ("just some text", "no key=value pair"),
            ("", "no key=value pair"),
            ("=x", "a key cannot start with `\"` or `=`"),
            (r#"k"ey=1"#, "quote inside a key"),
        ] {
            assert_eq!(parse(line).unwrap_err().reason, reason, "{line:?}");
        }
    }

    #[test]
    fn unterminated_quote_takes_the_rest_of_the_line() {
        for (line, value) in [
            (r#"level=info msg="cut by the limit"#, "cut by the limit"),
            (
                r#"level=info msg="a \"quoted\" word and \t a tab"#,
                "a \"quoted\" word and \t a tab",
            ),
            (r#"level=info msg="ends in backslash\"#, "ends in backslash\\"),
            (r#"level=info msg=""#, ""),
        ] {
            let p = parse(line).unwrap();
            assert_eq!(p.level, Some(Level::Info), "{line}");
            assert_eq!(p.message, value, "{line}");
            assert_eq!(p.warning, Some("unterminated quoted value"), "{line}");
            let mut out = Parsed::default();
            let e = parse_into_with(line, true, &mut out).unwrap_err();
            assert_eq!(e.reason, "unterminated quoted value", "{line}");
        }
        let p = parse(r#"a="x" b=2"#).unwrap();
        assert_eq!(p.warning, None);
    }

    proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
            let mut out = Parsed::default();
            let _ = parse_into_with(&s, true, &mut out);
        }

        /// Leniency only adds: a line strict mode reads is read the same way without it.
        #[test]
        fn lenient_agrees_where_strict_reads(s in "[a-z =\"\\\\ü]{0,40}") {
            let mut strict = Parsed::default();
            if parse_into_with(&s, true, &mut strict).is_ok() {
                prop_assert_eq!(Ok(strict), parse(&s));
            }
        }

        #[test]
        fn never_panics_on_logfmt_alphabet(s in "[a-z =\"\\\\ü]{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn quoted_round_trip(k in "[a-z_.]{1,8}", v in "[^\\x00]{0,30}") {
            let escaped = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n").replace('\t', "\\t").replace('\r', "\\r");
            let line = format!("{k}=\"{escaped}\"");
            let p = parse(&line).unwrap();
            let got = if ["msg", "message"].contains(&k.as_str()) {
                p.message.to_string()
            } else {
                match p.fields.first().map(|f| &f.1) {
                    Some(FieldValue::Str(s)) => s.to_string(),
                    _ => return Ok(()), // lifted as time/level
                }
            };
            prop_assert_eq!(got, v);
        }
    }
}
