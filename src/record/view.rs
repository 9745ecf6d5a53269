//! Reading any record of a batch the same way, whatever its body: `RecordRef`. The protocol
//! sinks (OTLP, Loki, Splunk, Elasticsearch) and the dead-letter file read records through
//! it; the NDJSON hot path walks the bodies itself.

use std::borrow::Cow;

use super::{Body, Field, Flags, Level, Records, Stream, Text, Value};

/// One record, borrowed from its batch.
#[derive(Debug, Clone)]
pub struct RecordRef<'a> {
    pub records: &'a Records,
    /// Its position in the batch, and the next record's.
    pub pos: usize,
    pub next: usize,
    pub time_ns: Option<i64>,
    pub observed_ns: i64,
    pub offset: u64,
    pub level: Option<Level>,
    pub message: Option<Text>,
    pub stream: Option<Stream>,
    pub flags: Flags,
    /// Its parsed fields (a parse error is the last of them).
    parsed: &'a [Field],
}

/// A field value, borrowed.
#[derive(Debug, Clone)]
pub enum ValueRef<'a> {
    Str(Cow<'a, str>),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// A nested object; read its entries with `RecordRef::value` / `RecordRef::key`.
    Map(&'a [Field]),
    /// JSON text as the line wrote it.
    Json(Cow<'a, str>),
}

/// A key of `fields` and its value, borrowed.
#[derive(Debug, Clone)]
pub struct FieldRef<'a> {
    pub key: Cow<'a, str>,
    pub value: ValueRef<'a>,
}

impl<'a> RecordRef<'a> {
    /// The event time, or the observed time when the record has none.
    pub fn time_or_observed(&self) -> i64 {
        self.time_ns.unwrap_or(self.observed_ns)
    }

    /// The message text (empty when the record has none).
    pub fn message_text(&self) -> Cow<'a, str> {
        self.message.map_or(Cow::Borrowed(""), |t| self.records.text(t))
    }

    /// The file path the record was read from.
    pub fn file(&self) -> &'a str {
        &self.records.context.file.path
    }

    /// The record's `id`: the file's id prefix and the offset.
    pub fn id(&self) -> String {
        format!("{}{}", self.records.context.file.id_prefix, self.offset)
    }

    pub fn key(&self, text: Text) -> Cow<'a, str> {
        self.records.text(text)
    }

    pub fn value(&self, v: &'a Value) -> ValueRef<'a> {
        match *v {
            Value::Str(t) => ValueRef::Str(self.records.text(t)),
            Value::Int(n) => ValueRef::Int(n),
            Value::Float(f) => ValueRef::Float(f),
            Value::Bool(b) => ValueRef::Bool(b),
            Value::Map { start, len } => ValueRef::Map(self.records.fields((start, len))),
            Value::Json(t) => ValueRef::Json(String::from_utf8_lossy(self.records.bytes(t))),
        }
    }

    /// Every member of the record's `fields`, in the order NDJSON writes them: the parsed
    /// fields (a parse error last), the marks, then the source's static fields.
    pub fn fields(&self) -> Vec<FieldRef<'a>> {
        let mut out: Vec<FieldRef<'a>> = self
            .parsed
            .iter()
            .map(|f| FieldRef {
                key: self.key(f.key),
                value: self.value(&f.value),
            })
            .collect();
        for (set, key) in [
            (self.flags.continuation, "continuation"),
            (self.flags.truncated, "truncated"),
            (self.flags.partial, "partial"),
        ] {
            if set {
                out.push(FieldRef {
                    key: Cow::Borrowed(key),
                    value: ValueRef::Bool(true),
                });
            }
        }
        for (k, v) in self.records.context.static_fields.iter() {
            out.push(FieldRef {
                key: Cow::Borrowed(k),
                value: ValueRef::Str(Cow::Borrowed(v)),
            });
        }
        out
    }

    /// How many members `fields` has (what `fields()` would list, without making the list).
    pub fn field_count(&self) -> usize {
        let f = self.flags;
        self.parsed.len()
            + usize::from(f.continuation)
            + usize::from(f.truncated)
            + usize::from(f.partial)
            + self.records.context.static_fields.len()
    }

    /// The value of the field named `key`, as text: a string as it is, anything else as its
    /// JSON text.
    pub fn field_text(&self, key: &str) -> Option<Cow<'a, str>> {
        let found = self.fields().into_iter().find(|f| f.key == key)?;
        Some(match found.value {
            ValueRef::Str(s) => s,
            ValueRef::Int(n) => Cow::Owned(n.to_string()),
            ValueRef::Float(f) => Cow::Owned(f.to_string()),
            ValueRef::Bool(b) => Cow::Borrowed(if b { "true" } else { "false" }),
            ValueRef::Json(j) => match serde_json::from_str::<String>(&j) {
                Ok(s) => Cow::Owned(s),
                Err(_) => j,
            },
            ValueRef::Map(_) => return None,
        })
    }
}

impl Records {
    /// The record at position `pos` and the position of the next one; `None` at the end.
    pub fn record_at(&self, pos: usize) -> Option<(RecordRef<'_>, usize)> {
        match &self.body {
            Body::Lines { .. } => {
                let chunk = self.chunk.as_ref()?;
                let d = &chunk.data[..];
                if pos >= d.len() {
                    return None;
                }
                let line = chunk.line_at(pos);
                let (end, next, terminated) = (line.end, line.next, line.terminated);
                let r = RecordRef {
                    records: self,
                    pos,
                    next,
                    time_ns: None,
                    observed_ns: chunk.observed_ns,
                    offset: chunk.start + pos as u64,
                    level: None,
                    message: Some(Text::Chunk {
                        start: pos as u32,
                        len: (end - pos) as u32,
                    }),
                    stream: None,
                    flags: Flags {
                        continuation: pos == 0 && chunk.head_continues,
                        truncated: !terminated && chunk.tail_truncated,
                        partial: false,
                    },
                    parsed: &[],
                };
                Some((r, next))
            }
            Body::Table(t) => {
                let rec = t.records.get(pos)?;
                let r = RecordRef {
                    records: self,
                    pos,
                    next: pos + 1,
                    time_ns: rec.time_ns,
                    observed_ns: rec.observed_ns,
                    offset: rec.offset,
                    level: rec.level,
                    message: rec.message,
                    stream: rec.stream,
                    flags: rec.flags,
                    parsed: self.fields(rec.fields),
                };
                Some((r, pos + 1))
            }
        }
    }

    /// The records from position `from` up to `to`.
    pub fn iter(&self, from: usize, to: usize) -> impl Iterator<Item = RecordRef<'_>> {
        let mut pos = from;
        std::iter::from_fn(move || {
            if pos >= to {
                return None;
            }
            let (r, next) = self.record_at(pos)?;
            pos = next;
            Some(r)
        })
    }
}
