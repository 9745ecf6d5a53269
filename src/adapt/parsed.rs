//! The shape every line-format parser of the adapter stage returns: the parts of the
//! normalized record (ARCHITECTURE.md, "The record") that a line of that format carries, borrowed
//! from the line wherever the format allows it.
//!
//! Design for the encoder: a string value is a `Cow` that borrows from the line unless the
//! format had escapes to undo, so writing it as JSON is one escape pass and no allocation;
//! numbers are `i64`/`f64`; nested data (syslog structured data) is a small vector of pairs.
//! Keys are `Cow<'a, str>` too: the OpenTelemetry-style names the parsers use are `&'static`,
//! logfmt keys borrow from the line and regex capture names from the compiled pattern.
//!
//! A `Parsed` can be reused across the lines of a chunk (`parse_into` functions clear it
//! first), so its field vector is allocated once per chunk rather than per line.

use std::borrow::Cow;
use std::fmt;

pub use crate::record::Stream;

use super::Level;

/// A value of the record's `fields`.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue<'a> {
    /// Text, unescaped; borrowed from the line unless unescaping changed it.
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A nested object, keys in the order of the line (syslog structured data).
    Map(Vec<(Cow<'a, str>, FieldValue<'a>)>),
    /// Text that is already valid JSON (a value of a `docker` line other than `log`, `stream`
    /// and `time`, e.g. `attrs`): the encoder copies it as it stands.
    Json(Cow<'a, str>),
}

impl<'a> FieldValue<'a> {
    /// A borrowed string value.
    pub fn str(s: &'a str) -> FieldValue<'a> {
        FieldValue::Str(Cow::Borrowed(s))
    }

    /// The text of a `Str` value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            FieldValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value of an `Int`.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            FieldValue::Int(n) => Some(*n),
            _ => None,
        }
    }
}

/// One key of `fields` with its value.
pub type Field<'a> = (Cow<'a, str>, FieldValue<'a>);

/// The record parts one line (or one joined event) carries.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parsed<'a> {
    /// Event time in nanoseconds since the epoch; `None` when the line had none we could read
    /// (the caller then uses the observed time and counts it).
    pub timestamp_ns: Option<i64>,
    pub level: Option<Level>,
    /// The message; empty when the format's line had none (the encoder leaves it out).
    pub message: Cow<'a, str>,
    /// `stdout` / `stderr` for the container formats.
    pub stream: Option<Stream>,
    /// Everything else the parser found, in the order of the line.
    pub fields: Vec<Field<'a>>,
    /// The line is a piece of a longer message (`cri` tag `P`, a `docker` `log` without its
    /// trailing newline); the joiners put the pieces back together.
    pub partial: bool,
    /// A joiner cut this message at its byte cap; the rest of it was dropped.
    pub truncated: bool,
    /// The line had a time (a `timestamp` capture, a `ts=` pair) that could not be read; it
    /// is kept as a field, the record gets the observed time, and the metrics count it.
    pub time_unparsed: bool,
    /// A lenient parse salvaged the line but could not read one part of it (malformed
    /// structured data, a weekday that contradicts the date, ...): the first such reason.
    /// `warn` also writes it into `fields` as `parse_warning`, so it reaches the record with
    /// no help from the encoder; this copy lets a caller count such lines without a search.
    pub warning: Option<&'static str>,
}

impl<'a> Parsed<'a> {
    /// Empties the record for the next line, keeping the field vector's allocation.
    pub fn clear(&mut self) {
        self.timestamp_ns = None;
        self.level = None;
        self.message = Cow::Borrowed("");
        self.stream = None;
        self.fields.clear();
        self.partial = false;
        self.truncated = false;
        self.time_unparsed = false;
        self.warning = None;
    }

    /// Notes that part of the line could not be read (see `warning`); only the first reason
    /// is kept, so a line gets at most one `parse_warning` field.
    pub fn warn(&mut self, reason: &'static str) {
        if self.warning.is_none() {
            self.warning = Some(reason);
            self.push("parse_warning", FieldValue::str(reason));
        }
    }

    /// The value of the first field named `key`.
    pub fn field(&self, key: &str) -> Option<&FieldValue<'a>> {
        self.fields.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// Appends a field with a static key.
    #[inline]
    pub fn push(&mut self, key: &'static str, value: FieldValue<'a>) {
        self.fields.push((Cow::Borrowed(key), value));
    }

    /// About how many heap bytes the record holds of its own (its owned text and its field
    /// list): what an event being joined is charged to the budget.
    pub fn heap_bytes(&self) -> usize {
        // The `Cow` itself, not its `str`: whether the text is owned is the question.
        #[allow(clippy::ptr_arg)]
        fn text(c: &Cow<'_, str>) -> usize {
            match c {
                Cow::Owned(s) => s.capacity(),
                Cow::Borrowed(_) => 0,
            }
        }
        fn value(v: &FieldValue<'_>) -> usize {
            match v {
                FieldValue::Str(s) | FieldValue::Json(s) => text(s),
                FieldValue::Map(m) => {
                    m.capacity() * std::mem::size_of::<Field<'_>>()
                        + m.iter().map(|(k, v)| text(k) + value(v)).sum::<usize>()
                }
                FieldValue::Int(_) | FieldValue::Float(_) | FieldValue::Bool(_) => 0,
            }
        }
        text(&self.message)
            + self.fields.capacity() * std::mem::size_of::<Field<'_>>()
            + self.fields.iter().map(|(k, v)| text(k) + value(v)).sum::<usize>()
    }

    /// Copies everything borrowed, for a record that must outlive its line.
    pub fn into_owned(self) -> Parsed<'static> {
        Parsed {
            timestamp_ns: self.timestamp_ns,
            level: self.level,
            message: Cow::Owned(self.message.into_owned()),
            stream: self.stream,
            fields: own_fields(self.fields),
            partial: self.partial,
            truncated: self.truncated,
            time_unparsed: self.time_unparsed,
            warning: self.warning,
        }
    }
}

fn own_fields(fields: Vec<Field<'_>>) -> Vec<Field<'static>> {
    fields
        .into_iter()
        .map(|(k, v)| (Cow::Owned(k.into_owned()), own_value(v)))
        .collect()
}

fn own_value(v: FieldValue<'_>) -> FieldValue<'static> {
    match v {
        FieldValue::Str(s) => FieldValue::Str(Cow::Owned(s.into_owned())),
        FieldValue::Int(n) => FieldValue::Int(n),
        FieldValue::Float(f) => FieldValue::Float(f),
        FieldValue::Bool(b) => FieldValue::Bool(b),
        FieldValue::Map(m) => FieldValue::Map(own_fields(m)),
        FieldValue::Json(j) => FieldValue::Json(Cow::Owned(j.into_owned())),
    }
}

/// A line its format's parser rejected. Carries only static text and a byte position, so a
/// stream of bad lines costs no allocation; the caller ships the line raw with a parse-error
/// mark and counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// The format's name (`logfmt`, `cri`, ...).
    pub format: &'static str,
    /// What was wrong, e.g. "expected `]` after the pid".
    pub reason: &'static str,
    /// Byte offset in the line where the parser gave up.
    pub at: usize,
}

impl ParseError {
    pub(crate) fn new(format: &'static str, reason: &'static str, at: usize) -> ParseError {
        ParseError { format, reason, at }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} at byte {}", self.format, self.reason, self.at)
    }
}

impl std::error::Error for ParseError {}

/// Parses a run of ASCII digits as a non-negative integer; `None` if empty, not all digits,
/// or too large.
#[inline]
pub(crate) fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in s {
        let d = b.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + u64::from(d);
    }
    Some(v)
}
