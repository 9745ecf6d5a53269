//! The `json` format: one JSON object per line. The event time, level and message are lifted
//! out of their usual keys; every other key goes to the record's `fields` unchanged.
//!
//! Parsing borrows from the line: a field value is kept as the raw JSON text it was written as
//! (`&RawValue`, validated by serde_json but never rebuilt into a tree), so the encoder copies
//! it straight into its output, and a key is copied only when it had escapes to undo. A
//! `JsonLine` is meant to be reused across the lines of a chunk so that its field list is
//! allocated once, not per line.

use std::borrow::Cow;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Number;

use super::{level_from_number, normalize_level, Level};
use crate::timefmt;

/// Keys lifted into the record, in priority order within each group: the first one present in
/// the line is used.
/// `@timestamp` and `log.level` are the Elastic Common Schema's (ecs-logging libraries).
const TIME_KEYS: [&str; 4] = ["timestamp", "time", "ts", "@timestamp"];
const LEVEL_KEYS: [&str; 3] = ["level", "severity", "log.level"];
const MESSAGE_KEYS: [&str; 2] = ["message", "msg"];

/// One parsed line, borrowing from it.
#[derive(Debug, Default)]
pub struct JsonLine<'a> {
    /// The event time, when the line's time key held a time `timefmt::parse_timestamp` reads.
    pub timestamp_ns: Option<i64>,
    /// A time key was there but its value is not a time we read (it stays in `fields`).
    pub time_unparsed: bool,
    /// The normalized level, when the line's level key held a name or number we know.
    pub level: Option<Level>,
    pub message: Option<Message<'a>>,
    /// Every key not lifted above, in the order of the line (duplicates kept as written).
    pub fields: Vec<Field<'a>>,
}

/// The message as the line held it, in the form that is cheapest to write back as JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message<'a> {
    /// A JSON string literal exactly as written in the line, quotes included: it is already
    /// valid JSON and is copied as it stands.
    Literal(&'a str),
    /// The JSON text of a message that was not a string (`{"msg": {"a": 1}}` → `{"a": 1}`);
    /// the record carries this text as its message string, so it must be escaped.
    Text(&'a str),
}

/// A key of `fields` and its value's JSON text.
#[derive(Debug)]
pub struct Field<'a> {
    /// The key, unescaped: borrowed from the line unless it had escapes.
    pub key: Cow<'a, str>,
    pub value: &'a RawValue,
}

/// A line that is not one JSON object; carries serde_json's message, which says where.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(#[from] serde_json::Error);

impl<'a> JsonLine<'a> {
    /// Parses `line` into a fresh `JsonLine`. Prefer `parse_into` when parsing many lines.
    pub fn parse(line: &'a str) -> Result<JsonLine<'a>, ParseError> {
        let mut rec = JsonLine::default();
        parse_into(line, &mut rec)?;
        Ok(rec)
    }
}

/// Parses `line` (one line without its ending) into `rec`, reusing `rec`'s field list.
/// On error `rec` holds an unspecified part of the line and should not be used.
pub fn parse_into<'a>(line: &'a str, rec: &mut JsonLine<'a>) -> Result<(), ParseError> {
    let found = read(line, rec)?;
    lift(rec, &found);
    Ok(())
}

/// `parse_into` without lifting anything: every key stays in `fields`, for formats whose own
/// keys mean something else than the json format's (Docker's `time` is only ever a string).
pub fn parse_fields_into<'a>(line: &'a str, rec: &mut JsonLine<'a>) -> Result<(), ParseError> {
    read(line, rec).map(|_| ())
}

/// Clears `rec` and reads `line`'s keys into its `fields`, noting where the liftable ones are.
fn read<'a>(line: &'a str, rec: &mut JsonLine<'a>) -> Result<Found, ParseError> {
    rec.timestamp_ns = None;
    rec.time_unparsed = false;
    rec.level = None;
    rec.message = None;
    rec.fields.clear();
    let mut found = Found::default();
    let mut de = serde_json::Deserializer::from_str(line);
    ObjectSeed {
        rec: &mut *rec,
        found: &mut found,
    }
    .deserialize(&mut de)?;
    de.end()?;
    Ok(found)
}

/// Where the first occurrence of each lifted key sits in `fields`.
#[derive(Default)]
struct Found {
    time: [Option<usize>; TIME_KEYS.len()],
    level: [Option<usize>; LEVEL_KEYS.len()],
    message: [Option<usize>; 2],
}

impl Found {
    fn note(&mut self, key: &str, idx: usize) {
        let slot = if let Some(i) = TIME_KEYS.iter().position(|k| *k == key) {
            &mut self.time[i]
        } else if let Some(i) = LEVEL_KEYS.iter().position(|k| *k == key) {
            &mut self.level[i]
        } else if let Some(i) = MESSAGE_KEYS.iter().position(|k| *k == key) {
            &mut self.message[i]
        } else {
            return;
        };
        slot.get_or_insert(idx);
    }
}

/// Moves the time, level and message out of `fields`. A time or level value we cannot read
/// stays a field, so nothing the application logged is lost.
fn lift<'a>(rec: &mut JsonLine<'a>, found: &Found) {
    let mut lifted = [usize::MAX; 3];
    if let Some(i) = found.time.iter().flatten().next().copied() {
        rec.timestamp_ns = time_of(rec.fields[i].value);
        rec.time_unparsed = rec.timestamp_ns.is_none();
        if rec.timestamp_ns.is_some() {
            lifted[0] = i;
        }
    }
    if let Some(i) = found.level.iter().flatten().next().copied() {
        rec.level = level_of(rec.fields[i].value);
        if rec.level.is_some() {
            lifted[1] = i;
        }
    }
    if let Some(i) = found.message.iter().flatten().next().copied() {
        let raw = rec.fields[i].value.get();
        rec.message = Some(if raw.starts_with('"') {
            Message::Literal(raw)
        } else {
            Message::Text(raw)
        });
        lifted[2] = i;
    }
    // Highest index first, so the earlier indexes stay valid.
    lifted.sort_unstable_by(|a, b| b.cmp(a));
    for i in lifted {
        if i != usize::MAX {
            rec.fields.remove(i);
        }
    }
}

fn time_of(raw: &RawValue) -> Option<i64> {
    let text = raw.get();
    if text.starts_with('"') {
        let s: Str = serde_json::from_str(text).ok()?;
        timefmt::parse_timestamp_str(&s.0)
    } else {
        let n: Number = serde_json::from_str(text).ok()?;
        timefmt::parse_timestamp_number(&n)
    }
}

fn level_of(raw: &RawValue) -> Option<Level> {
    let text = raw.get();
    if text.starts_with('"') {
        let s: Str = serde_json::from_str(text).ok()?;
        normalize_level(&s.0)
    } else {
        let n: Number = serde_json::from_str(text).ok()?;
        level_from_number(n.as_i64()?)
    }
}

// === deserialization ===

/// A string that borrows from the input when it had no escapes (serde's own `Cow<str>` always
/// copies).
struct Str<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for Str<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct StrVisitor;
        impl<'de> Visitor<'de> for StrVisitor {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(StrVisitor)
    }
}

/// Fills a `JsonLine`'s fields from the top-level object, noting where the lifted keys are.
struct ObjectSeed<'r, 'a> {
    rec: &'r mut JsonLine<'a>,
    found: &'r mut Found,
}

impl<'r, 'de> DeserializeSeed<'de> for ObjectSeed<'r, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'r, 'de> Visitor<'de> for ObjectSeed<'r, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Str(key)) = map.next_key::<Str<'de>>()? {
            let value: &'de RawValue = map.next_value()?;
            self.found.note(&key, self.rec.fields.len());
            self.rec.fields.push(Field { key, value });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys<'a>(rec: &'a JsonLine) -> Vec<(&'a str, &'a str)> {
        rec.fields.iter().map(|f| (&*f.key, f.value.get())).collect()
    }

    #[test]
    fn lifts_time_level_message_and_keeps_the_rest_in_order() {
        let line =
            r#"{"z":1,"time":"2026-11-25T13:51:20.5Z","level":"WARNING","msg":"disk \"full\"","a":{"b":[1,2]},"ts":7}"#;
        let rec = JsonLine::parse(line).unwrap();
        assert_eq!(rec.timestamp_ns, Some(1_795_614_680_500_000_000));
        assert_eq!(rec.level, Some(Level::Warn));
        assert_eq!(rec.message, Some(Message::Literal(r#""disk \"full\"""#)));
        assert_eq!(keys(&rec), vec![("z", "1"), ("a", r#"{"b":[1,2]}"#), ("ts", "7")]);
    }

    #[test]
    fn priority_is_timestamp_then_time_then_ts() {
        let rec = JsonLine::parse(
            r#"{"ts":1,"time":2,"timestamp":3,"message":"a","msg":"b","severity":"error","level":"info"}"#,
        )
        .unwrap();
        assert_eq!(rec.timestamp_ns, Some(3_000_000_000));
        assert_eq!(rec.level, Some(Level::Info));
        assert_eq!(rec.message, Some(Message::Literal(r#""a""#)));
        assert_eq!(
            keys(&rec),
            vec![
                ("ts", "1"),
                ("time", "2"),
                ("msg", r#""b""#),
                ("severity", r#""error""#)
            ]
        );
    }

    #[test]
    fn unreadable_time_and_level_stay_fields() {
        let rec = JsonLine::parse(r#"{"timestamp":"last tuesday","level":"chatty","time":5}"#).unwrap();
        assert_eq!(rec.timestamp_ns, None);
        assert_eq!(rec.level, None);
        assert_eq!(
            keys(&rec),
            vec![
                ("timestamp", r#""last tuesday""#),
                ("level", r#""chatty""#),
                ("time", "5")
            ]
        );
    }

    #[test]
    fn numeric_level_and_non_string_message() {
        let rec = JsonLine::parse(r#"{"level":50,"msg":{"code": 7},"time":1700000000123}"#).unwrap();
        assert_eq!(rec.level, Some(Level::Error));
        assert_eq!(rec.message, Some(Message::Text(r#"{"code": 7}"#)));
        assert_eq!(rec.timestamp_ns, Some(1_700_000_000_123_000_000));
        assert!(rec.fields.is_empty());
    }

    #[test]
    fn escaped_keys_are_unescaped_and_escaped_values_kept_raw() {
        let rec = JsonLine::parse(r#"{"a\"b":"x\ny","\u006cevel":"debug"}"#).unwrap();
        assert_eq!(rec.level, Some(Level::Debug));
        assert_eq!(keys(&rec), vec![("a\"b", r#""x\ny""#)]);
        assert!(matches!(rec.fields[0].key, Cow::Owned(_)));
    }

    #[test]
    fn reuse_clears_the_previous_line() {
        let mut rec = JsonLine::default();
        parse_into(r#"{"level":"info","a":1,"b":2}"#, &mut rec).unwrap();
        parse_into(r#"{"c":3}"#, &mut rec).unwrap();
        assert_eq!(rec.level, None);
        assert_eq!(keys(&rec), vec![("c", "3")]);
    }

    #[test]
    fn non_objects_and_garbage_are_errors_with_serde_messages() {
        for (line, want) in [
            ("[1,2]", "expected a JSON object"),
            ("\"text\"", "expected a JSON object"),
            ("42", "expected a JSON object"),
            ("", "EOF while parsing"),
            ("{\"a\":1", "EOF while parsing"),
            ("{\"a\":1} trailing", "trailing characters"),
            ("{\"a\":tru}", "expected ident"),
            ("plain text line", "expected value"),
        ] {
            let err = JsonLine::parse(line).unwrap_err().to_string();
            assert!(err.contains(want), "{line:?}: {err}");
        }
    }

    #[test]
    fn empty_object_and_whitespace() {
        let rec = JsonLine::parse("  { }  ").unwrap();
        assert!(rec.fields.is_empty() && rec.message.is_none());
    }
}
